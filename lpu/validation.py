"""Predicted against published: every row of ``lpu/data/published.csv`` beside the simulator's answer.

For each row, `lpu.simulate` is run under the row's conditions (system, model,
chips, precision, batch as users, prompt and output tokens; Groq's early-2024
576-chip system where a row names no chip count) and the row's metric is read
off the `Result`, with its range. Calibration rows are marked: the model was
fitted to them, so their error says nothing. GPU rows measured here in eager
mode (a Python loop launching every kernel) are marked ``modelled=False``:
the GPU model describes a compiled or graph-captured serving stack.
Introduced in ``notebooks/06_benchmarks.ipynb``; ``lpu bench`` prints it.
"""

from __future__ import annotations

import math

import pandas as pd

from . import models, published
from .system import simulate


def _num(v, default=None):
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


def serving(row) -> str | None:
    """The GPU serving profile a row was measured under (`lpu.gpu.serving_for`: "ideal" where it says "no serving stack"); None for LPU rows."""
    if row.system == "lpu-v1":
        return None
    from . import gpu

    return gpu.serving_for(row.conditions)


def predict(row) -> tuple[float, float, float]:
    """(predicted, low, high) for one published row."""
    metric = row.metric
    lpu = row.system == "lpu-v1"
    chips = int(_num(row.chips, published.lpu_system_chips() if lpu else 1))  # Groq's published system where a row names none
    users = int(_num(row.batch, 1))
    prompt = int(_num(row.prompt_tokens, 550))
    out = int(_num(row.output_tokens, 150 if metric != "total_time_s" else 100))
    if metric == "itl_s" and not lpu:  # prompt_tokens of an ITL row is the context already cached
        out = 2
    precision = _num(row.precision)
    precision = {"bf16": "bf16", "fp16": "fp16"}.get(precision, precision)
    if precision is not None:
        models.get_precision(precision)
    r = simulate(row.model, system=row.system, chips=chips, precision=precision, users=users, prompt_tokens=prompt, output_tokens=out,
                 serving=serving(row))
    value = getattr(r, metric)
    if metric == "output_tokens_per_s":
        lo, hi = r.ranges["output_tokens_per_s"]
    elif metric in ("ttft_s", "itl_s"):
        lo, hi = r.ranges[metric]
    elif metric == "total_time_s":
        lo = r.ranges["ttft_s"][0] + (out - 1) * r.ranges["itl_s"][0]
        hi = r.ranges["ttft_s"][1] + (out - 1) * r.ranges["itl_s"][1]
    else:
        raise ValueError(f"no prediction for metric {metric!r}; known: output_tokens_per_s, ttft_s, itl_s, total_time_s")
    return value, min(lo, value), max(hi, value)


def table() -> pd.DataFrame:
    """Published against predicted, one row per published measurement, with error and whether it lies in the range."""
    rows = []
    for row in published.table().itertuples():
        pred, lo, hi = predict(row)
        rows.append(dict(system=row.system, model=row.model, metric=row.metric, batch=_num(row.batch), tokens=_num(row.prompt_tokens),
                         published=row.value, predicted=pred, low=lo, high=hi, error=pred / row.value - 1,
                         inside=bool(lo <= row.value <= hi), role=row.role, modelled="eager" not in str(row.conditions),
                         source=row.source))
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame | None = None) -> dict:
    """Median and worst absolute error and the count inside the range, over validation rows the model describes."""
    df = table() if df is None else df
    v = df[(df.role == "validation") & df.modelled]
    worst = v.loc[v.error.abs().idxmax()]
    return dict(rows=len(v), median_abs_error=float(v.error.abs().median()), worst_abs_error=float(abs(worst.error)),
                worst=f"{worst.system} {worst.model} {worst.metric}", inside=int(v.inside.sum()))
