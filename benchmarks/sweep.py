"""How fast lpu.simulate and lpu.sweep run (a script, not a test).

    .venv/bin/python benchmarks/sweep.py [--configs 10000] [--workers N] [--reference 40] [--first-calls 3]

Three measurements, each beside the reference path (``lpu.simulate(..., reference=True)``: every chip's SRAM
allocated, graphs built op by op, the scheduler and chain depths op by op in Python) timed in the same run:

1. The headline configuration, ``lpu.simulate("llama2-70b", chips=576)`` with ranges: its first call in a
   process (after imports and a warm-up on *other* configurations, llama2-7b on 64 LPUs and on one H100, which
   loads numba's cached kernels; each of ``--first-calls`` fresh processes times one first call), the same call
   again (warm: its step graphs cached), and the GPU path (``system="h100", chips=8``), first and warm.
2. ``--reference K`` configurations drawn from the grid, one by one in this process: the fast path's first call
   of each against the reference path, per system family.
3. ``--configs N`` of the grid's 10,000 configurations (a seeded random sample; all of them by default) through
   ``lpu.sweep`` in a local pool of ``--workers`` processes: configurations per second, and what 10,000 take.

The grid: 4,000 configurations on LPU systems (5 models x 16 chip counts x 10 user counts x 5 prompt lengths,
precision chosen by simulate) and 6,000 on GPU servers (5 models x A100/H100/H200 x 1-8 GPUs x 10 user counts x
fp16/fp8 x 5 prompt lengths); many do not fit, and saying so is part of the sweep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import pandas as pd

import lpu

MODELS = ["llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "mixtral-8x7b"]
USERS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
PROMPTS = [128, 550, 1024, 2048, 3000]
LPU_CHIPS = list(range(64, 1025, 64))
HEADLINE = dict(model="llama2-70b", chips=576)  # Groq's published system, with ranges (simulate's default)
GPU_HEADLINE = dict(model="llama2-70b", system="h100", chips=8)


def grid() -> pd.DataFrame:
    """The 10,000 configurations, LPU rows first."""
    lpu_rows = [dict(model=m, system="lpu-v1", chips=c, precision=None, users=u, prompt_tokens=p)
                for m, c, u, p in itertools.product(MODELS, LPU_CHIPS, USERS, PROMPTS)]
    gpu_rows = [dict(model=m, system=g, chips=c, precision=q, users=u, prompt_tokens=p)
                for m, g, c, u, q, p in itertools.product(MODELS, ["a100", "h100", "h200"], [1, 2, 4, 8], USERS, ["fp16", "fp8"], PROMPTS)]
    return pd.DataFrame(lpu_rows + gpu_rows)


def sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows drawn without replacement, in grid order (all of them for n >= len(df)); seeded: the same rows every run."""
    return df if n >= len(df) else df.sample(n, random_state=seed).sort_index().reset_index(drop=True)


def family(df: pd.DataFrame) -> pd.Series:
    return df["system"].map(lambda s: "LPU" if s == "lpu-v1" else "GPU")


def _seconds(call) -> float:
    t = time.perf_counter()
    try:
        call()
    except ValueError:
        pass  # does not fit / cannot be cut: still the time it takes to say so
    return time.perf_counter() - t


def first_calls() -> dict[str, float]:
    """Run in a fresh process: warm up on other configurations, then time the headline and GPU calls, first and warm."""
    lpu.simulate("llama2-7b", chips=64)
    lpu.simulate("llama2-7b", system="h100", chips=1)
    out = {"lpu_first": _seconds(lambda: lpu.simulate(**HEADLINE)), "gpu_first": _seconds(lambda: lpu.simulate(**GPU_HEADLINE))}
    out["lpu_warm"] = statistics.median(_seconds(lambda: lpu.simulate(**HEADLINE)) for _ in range(10))
    out["gpu_warm"] = statistics.median(_seconds(lambda: lpu.simulate(**GPU_HEADLINE)) for _ in range(20))
    out["lpu_reference"] = statistics.median(_seconds(lambda: lpu.simulate(**HEADLINE, reference=True)) for _ in range(3))
    out["gpu_reference"] = statistics.median(_seconds(lambda: lpu.simulate(**GPU_HEADLINE, reference=True)) for _ in range(5))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=10_000, help="how many of the 10,000 to sweep (a seeded random sample)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="local processes (default: the CPU count)")
    parser.add_argument("--reference", type=int, default=40, help="configurations timed one by one, fast and reference path")
    parser.add_argument("--first-calls", type=int, default=3, help="fresh processes timing the headline's first call")
    parser.add_argument("--first-calls-json", action="store_true", help=argparse.SUPPRESS)  # the child of --first-calls
    args = parser.parse_args(argv)
    if args.first_calls_json:
        print(json.dumps(first_calls()))
        return
    full = grid()
    todo = sample(full, args.configs, seed=0)
    print(f"grid: {len(full):,} configurations ({(family(full) == 'LPU').sum():,} LPU, {(family(full) == 'GPU').sum():,} GPU); "
          f"sweeping {len(todo):,} on {args.workers} process(es); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # 1. the headline configuration, each first call in a fresh process
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--first-calls-json"], capture_output=True, text=True, check=True).stdout)
            for _ in range(args.first_calls)]
    ms = {k: statistics.median(r[k] for r in runs) * 1e3 for k in runs[0]}
    print(f"\nlpu.simulate, median of {args.first_calls} fresh processes (load average {os.getloadavg()[0]:.1f}):")
    rows = [["llama2-70b, 576 LPUs, ranges", "first call", ms["lpu_first"], ms["lpu_reference"] / ms["lpu_first"]],
            ["", "warm (the same again)", ms["lpu_warm"], ms["lpu_reference"] / ms["lpu_warm"]],
            ["", "reference path", ms["lpu_reference"], 1.0],
            ["llama2-70b, 8 x H100, ranges", "first call", ms["gpu_first"], ms["gpu_reference"] / ms["gpu_first"]],
            ["", "warm (the same again)", ms["gpu_warm"], ms["gpu_reference"] / ms["gpu_warm"]],
            ["", "reference path", ms["gpu_reference"], 1.0]]
    print(pd.DataFrame(rows, columns=["configuration", "call", "ms", "x faster than reference"]).to_string(
        index=False, formatters={"ms": "{:,.2f}".format, "x faster than reference": "{:,.1f}".format}))

    # 2. a sample of the grid one by one: the fast path's first call of each, then the reference path
    ref = sample(todo, args.reference, seed=1)
    fast_s, ref_s = [], []
    for kwargs in lpu.sweep.configurations(ref):  # the arguments lpu.sweep passes (NaN as None, models read)
        kw = {k: v for k, v in kwargs.items() if v is not None}
        fast_s.append(_seconds(lambda kw=kw: lpu.simulate(**kw)))
        ref_s.append(_seconds(lambda kw=kw: lpu.simulate(**kw, reference=True)))
    ref = ref.assign(fast=fast_s, reference=ref_s, family=family(ref))
    rows = [[fam, len(r), r.fast.mean() * 1e3, r.reference.mean() * 1e3, r.reference.sum() / r.fast.sum()]
            for fam, r in ((f, ref[ref.family == f]) for f in ("LPU", "GPU")) if len(r)]
    print(f"\n{len(ref)} of the configurations one by one in this process (load average {os.getloadavg()[0]:.1f}):")
    print(pd.DataFrame(rows, columns=["family", "configs", "fast ms per config", "reference ms per config", "x faster"]).to_string(
        index=False, float_format="{:,.1f}".format))

    # 3. the sweep
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    df = lpu.sweep(todo, workers=args.workers)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's processes, once they have ended
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    df["family"] = family(df)
    per_ref = ref.reference.mean()
    print(f"\nlpu.sweep of {len(df):,} configurations ({(df.family == 'LPU').sum():,} LPU, {(df.family == 'GPU').sum():,} GPU; "
          f"{df.error.notna().sum():,} do not fit or cannot be cut) on {args.workers} process(es): {wall:,.1f} s = "
          f"{len(df) / wall:,.1f} configs/s ({wall / len(df) * 1e3:,.2f} ms each; the reference path one by one: {per_ref * 1e3:,.1f} ms "
          f"each on the sample above); load average {os.getloadavg()[0]:.1f} at the end")
    if args.workers > 1:  # CPU time is what other processes on the machine do not change (wall time under load does)
        print(f"the pool's processes used {cpu:,.1f} s of CPU: {cpu / len(df) * 1e3:,.2f} ms per configuration")
    print(f"10,000 configurations at this rate: {10_000 * wall / len(df) / 60:,.2f} min (target: 5 min on 2 cores)")


if __name__ == "__main__":
    main()
