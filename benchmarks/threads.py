"""Greedy decoding on two threads: one parallel region per step against one per kernel, and one thread (a script, not a test).

    .venv/bin/python benchmarks/threads.py [--rounds 3] [--tokens 200]

For random weights of the stories15M shapes (60 MB: from DRAM) and the bundled model (6.9 MB: in
cache), greedy decoding of ``--tokens`` tokens from token 1, timed in ``--rounds`` interleaved rounds
in one process: ``kernels._decode_greedy`` on one thread, the same on two threads (a parallel region
per kernel, where a kernel's weights pass `lpu.jit.PARALLEL_MIN_BYTES`), and
``kernels._decode_greedy_team`` on two threads (one region per step, `lpu.forward._step_worker`),
which an Engine on two threads uses where `kernels.use_team` says. Prints each round's tok/s, the
ratios of the region per step to the other two, and whether all three gave the same tokens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/kernels.py
from kernels import random_checkpoint  # noqa: E402  (benchmarks/kernels.py)

from lpu import kernels, models  # noqa: E402
from lpu.runtime import Engine  # noqa: E402

BURST = 50  # tokens per compiled call, as an Engine's greedy bursts


def decode(engine: Engine, fn, threads: int, tokens: int) -> tuple[np.ndarray, float]:
    """Greedy tokens after token 1 at position 0 through ``fn`` on ``threads`` threads, and the seconds they took."""
    engine.k_cache[:] = 0
    engine.v_cache[:] = 0
    out = np.zeros(tokens, np.int64)
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        t = time.perf_counter()
        for start in range(0, tokens, BURST):  # stop ids -1: never stops early
            fn(1 if start == 0 else int(out[start - 1]), start, min(BURST, tokens - start), -1, -1, out[start:], engine._token,
               *engine._model_args, *engine._bufs, engine.logits, kernels.n_chunks(threads))
        return out, time.perf_counter() - t
    finally:
        numba.set_num_threads(saved)


def table(name: str, engine: Engine, rounds: int, tokens: int) -> None:
    ways = (("one thread", kernels._decode_greedy, 1), ("region per kernel", kernels._decode_greedy, 2),
            ("region per step", kernels._decode_greedy_team, 2))
    for _, fn, threads in ways:  # compile / warm up
        decode(engine, fn, threads, BURST)
    print(f"{name}: {engine._weight_bytes / 2**20:.1f} MiB of matrices; tok/s per round", flush=True)
    for r in range(rounds):
        ids, rates = [], []
        for _, fn, threads in ways:
            out, seconds = decode(engine, fn, threads, tokens)
            ids.append(out)
            rates.append(tokens / seconds)
        same = all(np.array_equal(ids[0], i) for i in ids[1:])
        print(f"  round {r + 1}: " + ", ".join(f"{w} {rate:,.0f}" for (w, _, _), rate in zip(ways, rates))
              + f"; per step / per kernel {rates[2] / rates[1]:.2f}, / one thread {rates[2] / rates[0]:.2f}; same tokens {same}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 1 <= args.tokens <= 255:
        parser.error(f"--rounds must be >= 1 and --tokens from 1 to 255 (the models' context), got {args.rounds} and {args.tokens}")
    if numba.config.NUMBA_NUM_THREADS < 2:
        parser.error("numba has one thread on this machine: nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = random_checkpoint(models.get("stories15M"), Path(tmp))
        table("stories15M shapes, random fp32", Engine.from_llama2c(model, tok, threads=2), args.rounds, args.tokens)
    table("bundled tiny_shakespeare fp32", Engine.default(threads=2), args.rounds, args.tokens)


if __name__ == "__main__":
    main()
