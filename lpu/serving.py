"""Serving sweeps: how many users fit, scaling with chips, systems under load, as DataFrames for the figures.

The notebooks' heavier loops live here so that each figure's data is one
tested function call: the most users whose KV caches fit (`most_users`),
per-user speed and system throughput against chips (`scaling_with_chips`,
notebook 04), users in flight (`users_in_flight`, notebook 04), latency
against output speed for LPU and GPU servers (`latency_vs_speed`, notebook
06) and throughput against users (`throughput_vs_users`, notebook 06).
Every number comes from `lpu.simulate`; nothing here is fitted.
"""

from __future__ import annotations

import pandas as pd

from . import shard
from .sram import SRAMCapacityError

GPU_PRECISION = {"a100": "int8", "h100": "fp8", "h200": "fp8"}  # each GPU's fastest supported 8-bit format (A100: no fp8)


def _simulate(*args, **kwargs):
    from .system import simulate

    return simulate(*args, **kwargs)


def most_users(model: str, chips: int, users: int, precision: str | None = None, **kwargs):
    """`lpu.simulate` with the most users, up to ``users``, whose KV caches fit ``chips`` LPUs (halving until a plan fits).

    Raises `SRAMCapacityError` when not even one user fits. Introduced in ``notebooks/04_sharding.ipynb``.
    """
    if not isinstance(users, int) or users < 1:
        raise ValueError(f"users must be a positive integer, got {users!r}")
    while True:
        try:
            return _simulate(model, chips=chips, precision=precision, users=users, ranges=False, **kwargs)
        except SRAMCapacityError:
            if users == 1:
                raise
            users //= 2


def scaling_with_chips(model: str = "llama2-70b", chips=(400, 480, 576, 720, 960, 1280), precision: str = "int8") -> pd.DataFrame:
    """Per-user speed (one user) and system throughput with the pipeline full (one user per stage, or as many as fit), per chip count.

    Columns: chips, plan, per_user_tok_s, system_tok_s_full, users_full, system_tok_s_per_chip.
    Linear scaling would keep ``system_tok_s_per_chip`` flat. Introduced in ``notebooks/04_sharding.ipynb``.
    """
    rows = []
    for n in chips:
        one = _simulate(model, chips=n, precision=precision, ranges=False)
        full = most_users(model, n, one.plan.pp, precision)
        rows.append(dict(chips=n, plan=f"{one.plan.pp}x{one.plan.tp}", per_user_tok_s=one.output_tokens_per_s,
                         system_tok_s_full=full.system_tokens_per_s, users_full=full.users))
    df = pd.DataFrame(rows)
    df["system_tok_s_per_chip"] = df.system_tok_s_full / df.chips
    return df


def users_in_flight(model: str = "llama2-70b", chips: int = 576, users=(1, 4, 16, 64, 128, 256, 512), prompt_tokens: int = 128,
                    output_tokens: int = 128) -> pd.DataFrame:
    """Per-user speed and system throughput as users grow, up to the first count no plan holds (its error in ``df.attrs["stopped"]``).

    The precision is the highest that fits, so it may drop as users grow: the ``precision`` column says which.
    Introduced in ``notebooks/04_sharding.ipynb``.
    """
    rows, stopped = [], None
    for u in users:
        try:
            r = _simulate(model, chips=chips, users=u, prompt_tokens=prompt_tokens, output_tokens=output_tokens, ranges=False)
        except SRAMCapacityError as e:
            stopped = f"{u} users: {e}"
            break
        rows.append(dict(users=u, plan=f"{r.plan.pp}x{r.plan.tp}", precision=r.precision, per_user_tok_s=r.output_tokens_per_s,
                         system_tok_s=r.system_tokens_per_s))
    df = pd.DataFrame(rows)
    df.attrs["stopped"] = stopped
    return df


def latency_vs_speed(models=("llama2-70b", "mixtral-8x7b", "llama2-7b"), users=(1, 32), lpu_chips: int = 576,
                     gpus=("a100", "h100", "h200"), gpu_counts=(1, 2, 4, 8), prompt_tokens: int = 512, output_tokens: int = 256) -> pd.DataFrame:
    """Time to first token against output speed per user, with ranges, for the LPU system and every GPU server that holds the model.

    Columns: model, system (``"lpu-v1"``/``"a100"``...), chips, users, precision, ttft_s, tok_s, tok_s_low, tok_s_high, label.
    Configurations that do not fit are left out. Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    rows = []
    for model in models:
        for u in users:
            configs = [("lpu-v1", lpu_chips, None)] + [(g, n, GPU_PRECISION[g]) for g in gpus for n in gpu_counts]
            for system, n, prec in configs:
                try:
                    r = _simulate(model, system=system, chips=n, precision=prec, users=u, prompt_tokens=prompt_tokens, output_tokens=output_tokens)
                except ValueError:  # SRAMCapacityError is a ValueError too: the model does not fit
                    continue
                lo, hi = r.ranges.get("output_tokens_per_s", (r.output_tokens_per_s, r.output_tokens_per_s))
                rows.append(dict(model=model, system=system, chips=n, users=u, precision=r.precision, ttft_s=r.ttft_s, tok_s=r.output_tokens_per_s,
                                 tok_s_low=lo, tok_s_high=hi, label=f"{system.upper()} x{n}"))
    return pd.DataFrame(rows)


SYSTEMS_70B = (("lpu-v1", 576, None), ("h100", 8, "fp8"), ("h200", 8, "fp8"))


def throughput_vs_users(model: str = "llama2-70b", systems=SYSTEMS_70B, users=(1, 4, 16, 64, 128), prompt_tokens: int = 128,
                        output_tokens: int = 128) -> pd.DataFrame:
    """System throughput and per-user speed against concurrent users, per system, up to the first count that does not fit.

    Columns: system, chips, label, users, precision, system_tok_s, per_user_tok_s, result (the `Result`).
    Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    rows = []
    for system, n, prec in systems:
        for u in users:
            try:
                r = _simulate(model, system=system, chips=n, precision=prec, users=u, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                              ranges=False)
            except ValueError:
                break
            rows.append(dict(system=system, chips=n, label=f"{system} x{n}", users=u, precision=r.precision, system_tok_s=r.system_tokens_per_s,
                             per_user_tok_s=r.output_tokens_per_s, result=r))
    return pd.DataFrame(rows)


def fullest_chip(plan: shard.Plan, users: int = 1, context_tokens: int = 0):
    """(index, `lpu.sram.SRAM`) of the chip of ``plan`` holding the most weights: what one chip of the plan really holds.

    Replaces hand-computed shard layouts: the bytes come from `lpu.shard.chip_bytes` and the placement from
    `lpu.shard.allocate`. Introduced in ``notebooks/01_architecture.ipynb`` and ``notebooks/04_sharding.ipynb``.
    """
    shares = shard.chip_bytes(plan, users, context_tokens)
    i = max(range(len(shares)), key=lambda k: (shares[k]["weights"], -k))
    return i, shard.allocate(plan, users, context_tokens)[i]
