"""How fast lpu.simulate is (a script, not a test).

    .venv/bin/python benchmarks/simulate.py [--configs 100]

Times ``lpu.simulate("llama2-70b", chips=576)`` on the fast path and on the
reference path (``reference=True``) in the same run, cold (step graphs not yet
cached) and warm, and the GPU path (``system="h100", chips=8``); then the
headline system (plan
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
    from lpu import system

    simulate("llama2-7b", chips=64)  # load numba's cached kernels
    print(f"{'path':<34}{'ms':>9}{'x reference':>13}")
    ref_ms = _ms(lambda: simulate("llama2-70b", chips=576, reference=True), 3)
    system._cached_steps.cache_clear()
    cold_ms = _ms(lambda: simulate("llama2-70b", chips=576), 1)
    warm_ms = _ms(lambda: simulate("llama2-70b", chips=576), 10)
    gpu_ms = _ms(lambda: simulate("llama2-70b", system="h100", chips=8), 10)
    for name, ms in (("LPU 576 chips, reference", ref_ms), ("LPU 576 chips, fast (cold cache)", cold_ms),
                     ("LPU 576 chips, fast (warm)", warm_ms)):
        print(f"{name:<34}{ms:>9.1f}{ref_ms / ms:>13.1f}")
    print(f"{'GPU h100 x 8':<34}{gpu_ms:>9.1f}")
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


def _ms(call, repeats: int) -> float:
    t = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - t) / repeats * 1e3


if __name__ == "__main__":
    main()
