"""How fast lpu.simulate is (a script, not a test).

    .venv/bin/python benchmarks/simulate.py [--configs 100]

Times ``lpu.simulate("llama2-70b", chips=576)`` (the headline system: plan
search, schedules of a decode step and a prefill across every stage and link,
SRAM allocation of all 576 chips, and the two hardware corners), then a sweep
of ``--configs`` configurations (models x chip counts x users) with a progress
bar, and prints the time per configuration.
"""

from __future__ import annotations

import argparse
import itertools
import time

from tqdm import tqdm

from lpu.sram import SRAMCapacityError
from lpu.system import simulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=100)
    args = parser.parse_args(argv)
    t = time.perf_counter()
    r = simulate("llama2-70b", chips=576)
    headline = time.perf_counter() - t
    print(f"simulate('llama2-70b', chips=576): {headline:.2f} s ({len(r.candidates)} candidate plans, {r.plan.describe()}, "
          f"{r.output_tokens_per_s:.0f} tok/s per user)")
    grid = list(itertools.product(["llama2-70b", "mixtral-8x7b", "llama2-13b", "llama2-7b", "llama3-8b"],
                                  [256, 320, 384, 448, 512, 576, 640, 720, 800, 1024], [1, 8]))[: args.configs]
    rows, failed = [], 0
    t = time.perf_counter()
    for model, chips, users in tqdm(grid, desc="sweep", unit="config"):
        try:
            rows.append(simulate(model, chips=chips, precision="int8", users=users, ranges=False))
        except (SRAMCapacityError, ValueError):
            failed += 1  # does not fit, or the chip count cannot be cut for that model: part of the sweep's answer
    sweep = time.perf_counter() - t
    print(f"sweep of {len(grid)} configurations: {sweep:.1f} s ({sweep / len(grid) * 1e3:.0f} ms each; {failed} do not fit or cannot be cut)")


if __name__ == "__main__":
    main()
