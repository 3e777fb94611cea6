"""``lpu.simulate``: one model served by an LPU system, end to end, as a `Result`.

It picks (or checks) the chip count and precision, cuts the model into the
best `lpu.shard.Plan` among the candidates, schedules a decode step and the
prefill of the prompt across all stages and links with the static scheduler
(`lpu.schedule.schedule`), and turns them into the metrics users see: time to
first token, inter-token latency, output speed per user and for the system.

Multi-user pipelining: with ``pp`` stages, up to ``pp`` users' tokens are in
flight at once (one per stage); more users share stages in batches, which
reuse each streamed weight. Introduced in ``notebooks/04_sharding.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np

from . import hardware, models, schedule, shard
from .result import Fitted, Result  # noqa: F401  (Result re-exported: lpu.system.Result)

# Fitted by scripts/calibrate.py on the calibration anchor of lpu/data/published.csv
# (Groq, Llama 2 70B, 241 output tokens/s per user; 576 chips, 1 user, prompt
# 550, output 150): op_latency_cycles = 2,644 cycles (2.9 us per dependent op at
# 900 MHz), far above the 32-200 cycles the architecture explains. Only this
# parameter is fitted; stream_efficiency stays at its nominal 1.0.
CALIBRATED = schedule.CostParams(op_latency_cycles=2644)
FITTED = (Fitted("op_latency_cycles", "LPU system", CALIBRATED.op_latency_cycles, "cycles", CALIBRATED.op_latency_cycles,
                 CALIBRATED.op_latency_cycles, "lpu-v1 llama2-70b output_tokens_per_s 241 (calibration, ArtificialAnalysis Feb 2024)",
                 "scripts/calibrate.py (bisection on the calibration row)"),)
PRECISION_ORDER = ("fp16", "fp16-int8ffn", "int8", "int4")  # precision=None: the first that fits


def _itl(plan: shard.Plan, users: int, context: int, chip, params) -> tuple[float, schedule.Timeline]:
    """Inter-token latency with ``users`` in flight: batches of ceil(users / stages) per stage, pipelined."""
    in_flight = min(users, plan.pp)
    batch = math.ceil(users / in_flight)
    tl = schedule.schedule(shard.step_graph(plan, "decode", batch, context), chip, params)
    stage_end = np.zeros(plan.pp, np.int64)
    for op, end in zip(tl.graph.ops, tl.end):
        stage_end[op.stage] = max(stage_end[op.stage], end)
    stage_cycles = np.diff(np.concatenate([[0], stage_end])).max()
    return max(tl.latency_s, in_flight * stage_cycles / tl.chip.clock_hz), tl


def _evaluate(plan, users, prompt_tokens, output_tokens, chip, params) -> tuple[float, float, schedule.Timeline, schedule.Timeline]:
    context = prompt_tokens + output_tokens // 2  # the mean context while generating
    itl, dec = _itl(plan, users, min(context, plan.model.seq_len - 1), chip, params)
    pre = schedule.schedule(shard.step_graph(plan, "prefill", prompt_tokens, 0), chip, params)
    return pre.latency_s + itl, itl, dec, pre  # the first token needs the prefill and one step


def simulate(model: str | models.ModelConfig, system: str = "lpu-v1", chips: int | None = None, precision: str | None = None,
             users: int = 1, prompt_tokens: int = 550, output_tokens: int = 150, params: schedule.CostParams = CALIBRATED,
             ranges: bool = True, serving: str | None = None) -> Result:
    """Simulate ``model`` served on ``chips`` LPUs to ``users`` concurrent users.

    Parameters
    ----------
    model : str or ModelConfig
    system : str
        ``"lpu-v1"`` (GPU systems answer through the GPU baseline).
    chips : int, "auto" or None
        None or "auto": the smallest count whose best plan fits, at ``precision``.
    precision : str or None
        None: the highest of fp16, fp16-int8ffn, int8, int4 that fits the given chips (fp16 when
        ``chips`` is None too); said in ``Result.precision``.
    users, prompt_tokens, output_tokens : int
    ranges : bool
        Also simulate at the low and high corners of the chip's ranged figures
        (clock, SRAM and C2C bandwidth) and report ``Result.ranges``.
    serving : str or None
        GPU systems only: the serving profile of `lpu.gpu.simulate_gpu`. LPU systems take None.

    Examples
    --------
    >>> r = simulate("llama2-70b", chips=576, ranges=False)
    >>> r.chips, r.precision
    (576, 'fp16-int8ffn')
    """
    m = models.get(model)
    c = hardware.get(system)
    chips = None if isinstance(chips, str) and chips == "auto" else chips
    if chips is not None and (isinstance(chips, (bool, np.bool_)) or not isinstance(chips, (int, np.integer)) or chips < 1):
        raise ValueError(f"chips must be a positive integer, 'auto' or None, got {chips!r}")
    for name, v in (("users", users), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if prompt_tokens + output_tokens > m.seq_len:
        raise ValueError(f"prompt_tokens + output_tokens = {prompt_tokens + output_tokens} exceeds {m.name}'s context of {m.seq_len}")
    if isinstance(c, hardware.GPUSpec):
        from . import gpu

        return gpu.simulate_gpu(m, c, chips, precision, users, prompt_tokens, output_tokens, ranges=ranges, serving=serving)
    if not isinstance(c, hardware.ChipSpec):
        raise ValueError(f"system {system!r} is not an LPU or a GPU; systems: lpu-v1, a100, h100, h200")
    if serving is not None:
        raise ValueError(f"serving={serving!r} applies to GPU systems only (their serving stack); {c.name} runs a compiled static "
                         "schedule: pass serving=None")
    context = prompt_tokens + output_tokens
    precisions = [precision] if precision is not None else list(PRECISION_ORDER)
    for p in precisions:
        models.get_precision(p)
    if chips is None:  # the smallest count at the given precision, or at the highest one (fp16)
        plan_chips, plans = _smallest(m, precisions[0], users, context, c)
    else:
        plans, plan_chips = None, chips
        for p in precisions:
            fitting = [pl for pl in shard.candidate_plans(m, chips, p) if shard.fits(pl, users, context, c)]
            if fitting:
                plans = fitting
                break
        if plans is None:
            def fullest(pl):
                return max(s["weights"] + s["kv_cache"] for s in shard.chip_bytes(pl, users, context))

            best = min(shard.candidate_plans(m, chips, precisions[-1]), key=fullest)
            shard.allocate(best, users, context, c)  # raises SRAMCapacityError naming the chip and the shortfall
    candidates = []
    for pl in plans:
        ttft, itl, dec, pre = _evaluate(pl, users, prompt_tokens, output_tokens, c, params)
        candidates.append(dict(plan=pl, pp=pl.pp, tp=pl.tp, ttft_s=ttft, itl_s=itl, decode=dec, prefill=pre))
    best = min(candidates, key=lambda d: (d["itl_s"], d["ttft_s"], -d["tp"]))
    shard.allocate(best["plan"], users, context, c)  # every chip's share through the SRAM model
    r = Result(m.name, c.name, plan_chips, best["plan"].precision.name, users, prompt_tokens, output_tokens, best["ttft_s"], best["itl_s"],
               best["plan"], best["decode"], best["prefill"], [{k: v for k, v in d.items() if k not in ("decode", "prefill")} for d in candidates])
    if ranges:
        corner = {k: _evaluate(best["plan"], users, prompt_tokens, output_tokens, c.corner(k), params) for k in ("low", "high")}
        for i, key in ((0, "ttft_s"), (1, "itl_s")):
            vals = sorted([corner["low"][i], corner["high"][i], getattr(r, key)])
            r.ranges[key] = (vals[0], vals[-1])
        r.ranges["output_tokens_per_s"] = (1 / r.ranges["itl_s"][1], 1 / r.ranges["itl_s"][0])
    return r


def _smallest(m: models.ModelConfig, precision: str, users: int, context: int, c: hardware.ChipSpec) -> tuple[int, list[shard.Plan]]:
    """The fewest chips, from the capacity bound up, with a plan that fits at ``precision``."""
    from .sram import chips_needed

    start = chips_needed(m, c, precision, min(context, m.seq_len), users).chips
    for n in range(start, 64 * start + 1):
        try:
            fitting = [pl for pl in shard.candidate_plans(m, n, precision) if shard.fits(pl, users, context, c)]
        except ValueError:  # n cannot be cut into stages x tensor-parallel chips for this model
            continue
        if fitting:
            return n, fitting
    raise ValueError(f"no plan up to {64 * start} chips fits {m.name}")


def token_times(model: str | models.ModelConfig, chips: int, prompt_tokens: int, new_tokens: int, precision: str | None = "int8",
                params: schedule.CostParams = CALIBRATED) -> np.ndarray:
    """Emission time of each of ``new_tokens`` tokens of one user on ``chips`` LPUs: TTFT, then one ITL per token.

    Used by `lpu.runtime.Engine` to stamp real tokens generated with ``chips > 1``.
    """
    m = models.get(model)
    out = max(min(new_tokens, m.seq_len - prompt_tokens), 1)
    r = simulate(m, chips=chips, precision=precision, prompt_tokens=max(prompt_tokens, 1), output_tokens=out, params=params, ranges=False)
    return r.ttft_s + r.itl_s * np.arange(new_tokens)
