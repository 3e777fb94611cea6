"""Predicted against published: every row of ``lpu/data/published.csv`` beside the simulator's answer.

For each row, `lpu.simulate` is run under the row's conditions (system, model,
chips, precision, batch as users, prompt and output tokens; Groq's early-2024
576-chip system where a row names no chip count) and the row's metric is read
off the `Result`, with its range. A ``verify_s`` row (speculative decoding's
verify step: ``output_tokens`` rows for each of ``batch`` users) is predicted by
`lpu.speculation.gpu_verify_s`, as ``lpu.simulate(..., draft=...)`` charges it.
Calibration rows are marked: the model was fitted to them, so their error says nothing. GPU rows measured here in eager
mode (a Python loop launching every kernel) are marked ``modelled=False``:
the GPU model describes a compiled or graph-captured serving stack.
Introduced in ``notebooks/06_benchmarks.ipynb``; ``lpu bench`` prints it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pandas as pd

from . import hardware, models, published
from .system import simulate


def _num(v, default=None):
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


@lru_cache(maxsize=256)
def _simulated(model: str, system: str, chips: int, precision: str | None, users: int, prompt: int, out: int, serving: str | None):
    """`simulate` once per distinct condition (many rows share one: the table is deterministic, so reuse is exact)."""
    return simulate(model, system=system, chips=chips, precision=precision, users=users, prompt_tokens=prompt, output_tokens=out,
                    serving=serving)


@lru_cache(maxsize=256)
def _verified(model: str, system: str, chips: int, precision: str | None, users: int, rows: int, context: int, serving: str | None):
    from .speculation import gpu_verify_s

    return gpu_verify_s(model, system, chips, precision, users, rows, context, serving)


HOSTED_METRICS = ("ttft_s", "total_time_s")  # LPU rows are measured through Groq's public API: these include its network and queueing


def serving(row) -> str | None:
    """The GPU serving profile a row was measured under (`lpu.gpu.serving_for`: "ideal" where it says "no serving stack"); None for LPU rows."""
    if row.system == "lpu-v1":
        return None
    from . import gpu

    return gpu.serving_for(row.conditions)


def predict(row) -> tuple[float, float, float]:
    """(predicted, low, high) for one published row.

    LPU rows were measured through Groq's public API, so their first-token and total times are predicted as a
    client of a hosted API sees them (`lpu.result.Result.hosted`); output speed is the chips' (tokens stream at
    the system's pace).
    """
    metric = row.metric
    lpu = row.system == "lpu-v1"
    chips = int(_num(row.chips, published.lpu_system_chips() if lpu else 1))  # Groq's published system where a row names none
    users = int(_num(row.batch, 1))
    prompt = int(_num(row.prompt_tokens, 550))
    if metric == "verify_s":  # output_tokens: the rows per user; prompt_tokens: the context cached, as for an ITL row
        if lpu:
            raise ValueError("no prediction for verify_s rows of the LPU: lpu.simulate(..., draft=...) schedules its verify step")
        value, lo, hi = _verified(row.model, row.system, chips, _num(row.precision), users, int(row.output_tokens), prompt + 1, serving(row))
        return value, min(lo, value), max(hi, value)
    out = int(_num(row.output_tokens, 150 if metric != "total_time_s" else 100))
    if metric == "itl_s" and not lpu:  # prompt_tokens of an ITL row is the context already cached
        out = 2
    precision = _num(row.precision)
    if precision is not None:
        models.get_precision(precision)
    if metric not in ("output_tokens_per_s", "ttft_s", "itl_s", "total_time_s"):
        raise ValueError(f"no prediction for metric {row.metric!r}; known: output_tokens_per_s, ttft_s, itl_s, total_time_s, verify_s")
    r = _simulated(row.model, row.system, chips, precision, users, prompt, out, serving(row))
    if lpu and metric in HOSTED_METRICS:
        r = r.hosted()
    value = getattr(r, metric)
    if metric == "total_time_s" and metric not in r.ranges:  # composed from the first-token and per-token ranges
        lo = r.ranges["ttft_s"][0] + (out - 1) * r.ranges["itl_s"][0]
        hi = r.ranges["ttft_s"][1] + (out - 1) * r.ranges["itl_s"][1]
    else:
        lo, hi = r.ranges[metric]
    return value, min(lo, value), max(hi, value)


def table() -> pd.DataFrame:
    """Published against predicted, one row per published measurement, with error, range and whether it lies in the range."""
    rows = []
    for row in published.table().itertuples():
        pred, lo, hi = predict(row)
        rows.append(dict(system=row.system, model=row.model, metric=row.metric, batch=_num(row.batch), tokens=_num(row.prompt_tokens),
                         output_tokens=_num(row.output_tokens), date=row.date, published=row.value, predicted=pred, low=lo, high=hi, error=pred / row.value - 1,
                         half_width=(hi - lo) / 2 / pred, inside=bool(lo <= row.value <= hi), role=row.role,
                         modelled="eager" not in str(row.conditions), source=row.source))
    return pd.DataFrame(rows)


def verify_steps(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """The measured speculative verify steps (``verify_s`` rows of `table`, default all) beside the simulator's, each
    also as a multiple of the one-row step of the same model, GPU, users and day: what the rows add (notebook 03).

    Columns: system, model, users, rows, measured_s, predicted_s, low_s, high_s, error, inside, measured_over_one_row,
    predicted_over_one_row.
    """
    df = table() if df is None else df
    v = df[df.metric == "verify_s"]
    out = pd.DataFrame(dict(system=v.system.values, model=v.model.values, users=v.batch.astype(int).values,
                            rows=v.output_tokens.astype(int).values, date=v.date.values, measured_s=v.published.values,
                            predicted_s=v.predicted.values, low_s=v.low.values, high_s=v.high.values, error=v.error.values,
                            inside=v.inside.values))
    key = ["system", "model", "users", "date"]
    one = out[out.rows == 1].set_index(key)
    missing = out.set_index(key).index.difference(one.index)
    if len(missing):
        raise ValueError(f"lpu/data/published.csv: verify_s rows without their one-row step (output_tokens 1): {list(missing)}")
    base = one.loc[pd.MultiIndex.from_frame(out[key])]
    out["measured_over_one_row"] = out.measured_s.values / base.measured_s.values
    out["predicted_over_one_row"] = out.predicted_s.values / base.predicted_s.values
    return out.drop(columns="date")


def _stats(v: pd.DataFrame) -> dict:
    if not len(v):
        return dict(rows=0, median_abs_error=float("nan"), inside=0, coverage=float("nan"), median_half_width=float("nan"))
    return dict(rows=len(v), median_abs_error=float(v.error.abs().median()), inside=int(v.inside.sum()), coverage=float(v.inside.mean()),
                median_half_width=float(v.half_width.median()))


def summary(df: pd.DataFrame | None = None) -> dict:
    """Over the validation rows the models describe: median |error|, the worst, coverage (rows inside their predicted
    range) and the median range half-width (share of the prediction); overall and for ``lpu`` and ``gpu`` rows apart, and for
    ``gpu_verify``, the GPU rows that are speculative verify steps."""
    df = table() if df is None else df
    v = df[(df.role == "validation") & df.modelled]
    worst = v.loc[v.error.abs().idxmax()]
    out = dict(_stats(v), worst_abs_error=float(abs(worst.error)), worst=f"{worst.system} {worst.model} {worst.metric}")
    out["lpu"] = _stats(v[v.system == "lpu-v1"])
    out["gpu"] = _stats(v[v.system != "lpu-v1"])
    out["gpu_verify"] = _stats(v[(v.system != "lpu-v1") & (v.metric == "verify_s")])  # among the GPU rows: speculative verify steps
    return out


def summary_line(s: dict) -> str:
    """`summary` in one line, as ``lpu bench`` ends (and the README quotes)."""
    def part(name, d):
        return (f"{name}: {d['rows']} rows, median |error| {d['median_abs_error']:.0%}, {d['inside']}/{d['rows']} inside the range, "
                f"median half-width {d['median_half_width']:.0%}")
    return "; ".join([part("LPU", s["lpu"]), part("GPU", s["gpu"]), part("of them speculative verify steps", s["gpu_verify"]), part("all", s)])


def fitted_table() -> pd.DataFrame:
    """Every fitted parameter (`lpu.fitted()`) with its range, calibration row and share of the headline prediction it shapes.

    Shares: the LPU system term's part of Groq's Llama 2 70B token on 576 chips (the calibration row); the hosted
    term's part of the hosted total time for 100 tokens; a GPU parameter's: how much of its calibration row's
    prediction it moves, from the parameter's neutral end (the low end of its `lpu.gpu.GPUParams` range, e.g. fp8
    no faster than bf16) to the fitted value.
    """
    import lpu

    chips = published.lpu_system_chips()
    rows = []
    for f in lpu.fitted():
        if f.family == "LPU system":
            r = simulate("llama2-70b", chips=chips, ranges=False)
            share, headline = r.system_itl_s / r.itl_s, f"Llama 2 70B on {chips} LPUs: inter-token latency"
        elif f.family == "hosted API":
            r = simulate("llama2-70b", chips=chips, output_tokens=100, ranges=False, hosted=True)
            share, headline = r.hosted_s / r.total_time_s, f"Llama 2 70B on {chips} LPUs via the API: total time for 100 tokens"
        elif f.family == "GPU server":
            share, headline = _gpu_share(f)
        else:
            share, headline = float("nan"), ""
        rows.append(dict(name=f.name, family=f.family, value=f.value, unit=f.unit, low=f.low, high=f.high, share=share, headline=headline,
                         calibration_row=f.calibration_row, source=f.source))
    return pd.DataFrame(rows)


def _gpu_share(f) -> tuple[float, str]:
    from dataclasses import replace

    from . import gpu

    row = published.table().query("system != 'lpu-v1' and role == 'calibration'").iloc[0]

    def ttft(params):
        return gpu.simulate_gpu(models.get(row.model), hardware.get(row.system), int(row.chips), row.precision, 1, int(row.prompt_tokens), 1,
                                params, ranges=False, serving=serving(row)).ttft_s

    fitted = ttft(gpu.CALIBRATED)
    neutral = ttft(replace(gpu.CALIBRATED, **{f.name: gpu.GPUParams.RANGES[f.name][0]}))
    return abs(neutral - fitted) / fitted, f"{row.model} on {int(row.chips)} x {row.system} ({row.precision}): time to first token"
