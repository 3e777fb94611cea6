"""How fast lpu.sweep runs a design-space grid (a script, not a test).

    .venv/bin/python benchmarks/sweep.py [--configs 10000] [--workers N] [--reference 40]

The grid has 10,000 configurations: 4,000 on LPU systems (5 models x 16 chip
counts x 10 user counts x 5 prompt lengths, precision chosen by simulate) and
6,000 on GPU servers (5 models x A100/H100/H200 x 1-8 GPUs x 10 user counts x
fp16/fp8 x 5 prompt lengths). ``--configs N`` runs a seeded random N of them
through ``lpu.sweep`` in a local process pool and prints
configurations per second, per system family and overall, with the time
10,000 would take at that rate. ``--reference K`` times K of those, one after the
other in this process, through ``lpu.simulate(..., reference=True)`` (the per-chip, full-timeline
reference path), so the pool's speed-up is measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import pandas as pd

import lpu

MODELS = ["llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "mixtral-8x7b"]
USERS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
PROMPTS = [128, 550, 1024, 2048, 3000]
LPU_CHIPS = list(range(64, 1025, 64))


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=10_000, help="how many of the 10,000 to run (a seeded random sample)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="local processes (default: the CPU count)")
    parser.add_argument("--reference", type=int, default=40, help="configurations timed one by one through lpu.simulate")
    args = parser.parse_args(argv)
    full = grid()
    todo = sample(full, args.configs, seed=0)
    load = os.getloadavg()[0]
    print(f"grid: {len(full):,} configurations ({(family(full) == 'LPU').sum():,} LPU, {(family(full) == 'GPU').sum():,} GPU); "
          f"running {len(todo):,} on {args.workers} process(es); load average {load:.1f} on {os.cpu_count()} CPUs")

    # the reference path, one configuration after another in this process, then the same ones through the pool
    ref = sample(todo, args.reference, seed=1)  # from the rows swept: the same mix
    ref_s = []
    for kwargs in lpu.sweep.configurations(ref):  # the arguments lpu.sweep passes (NaN as None, models read)
        t = time.perf_counter()
        try:
            lpu.simulate(**{k: v for k, v in kwargs.items() if v is not None}, reference=True)
        except ValueError:
            pass  # does not fit / cannot be cut: still the time it takes to say so
        ref_s.append(time.perf_counter() - t)
    ref = ref.assign(seconds=ref_s, family=family(ref))
    t = time.perf_counter()
    lpu.sweep(ref[todo.columns], workers=args.workers, progress=False)
    ref_pool_s = time.perf_counter() - t

    t = time.perf_counter()
    df = lpu.sweep(todo, workers=args.workers)
    wall = time.perf_counter() - t
    df["family"] = family(df)

    rows = []
    for fam in ("LPU", "GPU"):
        part, r = df[df.family == fam], ref[ref.family == fam]
        per_ref = r.seconds.mean() if len(r) else float("nan")
        rows.append([fam, f"{len(part):,}", f"{part.error.notna().sum():,}", f"{len(r)}", f"{per_ref * 1e3:,.1f}", f"{1 / per_ref:,.1f}"])
    print(f"\nthe reference path (simulate(reference=True)), {len(ref)} of the configurations one by one in this process:")
    print(pd.DataFrame(rows, columns=["family", "configs swept", "did not run", "timed one by one", "ms per config", "configs/s"]).to_string(index=False))
    print(f"the same {len(ref)} through lpu.sweep on {args.workers} process(es): {ref_pool_s:,.1f} s against {ref.seconds.sum():,.1f} s one by one "
          f"(pool speed-up {ref.seconds.sum() / ref_pool_s:.2f}x)")
    per_config = wall / len(df)
    print(f"\nlpu.sweep of {len(df):,} configurations on {args.workers} process(es): {wall:,.1f} s = {len(df) / wall:,.2f} configs/s "
          f"({per_config * 1e3:,.1f} ms each); load average {os.getloadavg()[0]:.1f} at the end")
    print(f"10,000 configurations at this rate: {10_000 * per_config / 60:,.1f} min (target: 5 min on 2 cores)")

if __name__ == "__main__":
    main()
