"""Run the design-space grid through lpu.sweep and write lpu/data/design_space.csv (notebook 07 plots it).

    .venv/bin/python scripts/design_space.py                 # the whole grid, every CPU; rewrites the CSV
    .venv/bin/python scripts/design_space.py --workers 2 --check   # run it, compare with the committed CSV, write nothing

The grid (`lpu.design.grid`): five models x the LPU generations (v1 and the what-ifs of `lpu.hardware.WHAT_IFS`) x
chip counts x three precisions x four user counts, plus H100 and H200 servers of 1-8 GPUs at bf16 and fp8 as the
baseline. Every configuration is one `lpu.simulate` call at the calibration row's lengths (550-token prompt, 150-token
answer) with ranges; configurations that do not fit keep their error. `lpu.design.add_costs` adds cost per million
tokens (nominal, low, high). The script prints the time it took beside the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from lpu import design


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="local processes (default: the CPU count)")
    parser.add_argument("--out", type=Path, default=design.CSV_PATH, help="where to write the CSV (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the CSV at --out instead of writing it")
    args = parser.parse_args(argv)
    grid = design.grid()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    df = design.run(grid, workers=args.workers)
    took = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    ok = df.error.isna()
    print(f"{len(df):,} configurations ({ok.sum():,} ran, {(~ok).sum():,} do not fit or cannot be cut) in {took:.0f} s "
          f"on {args.workers} worker(s), {len(df) / took:.1f} configurations/s; load average {load0:.1f} -> {load1:.1f}")
    if args.check:
        committed = design.load(args.out)
        pd.testing.assert_frame_equal(df, committed, check_exact=False, rtol=1e-9)
        print(f"same as {args.out}")
        return 0
    design.save(df, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(df.columns)} columns)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
