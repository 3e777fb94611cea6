"""The cost model of speculative decoding on this CPU, measured, beside the wall speed-up (a script, not a test).

    .venv/bin/python benchmarks/speculative.py [--repeats 9] [--tokens 200] [--ks 1 2 3 4 6 7]

Greedy decoding of the bundled model (``Engine.default()``) with its bundled draft
(``Engine.default("draft")``) over the bundled prompts. A step of speculative decoding
costs k draft passes, one target pass over k + 1 positions and some overhead, and emits
E tokens; plain decoding costs one target pass per token. So

    speed-up = E * t_plain / (k * t_draft + t_verify(k + 1) + overhead),
    E = (1 - a**(k + 1)) / (1 - a)  (a: the share of proposals the target accepts),

with t_plain the plain time per token. Measured in ``--repeats`` interleaved rounds, each in
CPU time (this thread's: other jobs on a shared machine stretch wall time much more) and in units
of that round's t_target, a `kernels._forward` pass over one position at the generation's mean
position: t_verify (a pass over k + 1 positions), t_draft (the draft, one position), then plain and
speculative generation; the overhead is what a measured speculative step costs beyond its k + 1
passes; each figure is the median over the rounds. The table prints each term and the speed-up the
model predicts with and without the overhead beside the measured one (CPU and wall), then what the
model gives were t_verify r t_target, and the r that 1.5x needs. ``uptime``'s load is printed with it. Then the bundled
model's matrices alone for
1-8 tokens, row-major against panels (`lpu.panels`, what a verify step reads); t_verify / t_target of random weights
of the stories15M shapes (beyond the last-level cache: from DRAM) beside the bundled model's (in cache); and, where
numba has two threads, the wall speed-up with target and draft on two (the target's decode and verify steps each one
parallel region, `kernels._forward_team`) against plain decoding on two.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/kernels.py
from kernels import random_checkpoint  # noqa: E402  (benchmarks/kernels.py)

from lpu import kernels, models, panels  # noqa: E402
from lpu.runtime import Engine  # noqa: E402
from lpu.speculative import _model_args  # noqa: E402

PROMPTS = ("ROMEO:", "Friends, Romans, countrymen", "To be, or not to be")  # as benchmarks/kernels.py's speculative row


def pass_seconds(engine: Engine, rows: int, pos: int, calls: int = 20) -> float:
    """CPU seconds (this thread's) of one ``kernels._forward`` call over ``rows`` positions from ``pos`` (logits for every
    row), mean of ``calls``. CPU time, not wall: other jobs on the machine stretch wall time, much less CPU time."""
    args, tokens = _model_args(engine), np.full(rows, 5, np.int64)
    chunks = 1 if engine.threads == 1 else 4 * engine.threads
    t = time.thread_time()
    for _ in range(calls):
        kernels._forward(tokens, pos, rows, *args, chunks)
    return (time.thread_time() - t) / calls


@numba.njit(nogil=True)
def _matrices(W, S, P, X, out, reps):  # every matrix through reps row-major passes (P empty) or panel passes
    for _ in range(reps):
        for i in range(len(W)):
            kernels._linear(W[i], S[i], P[i], X[i], out[i], 1, False)


def matrices_table(engine: Engine, repeats: int) -> None:
    """CPU time of the bundled model's matrices alone (one compiled call over all of them, weights from the last-level
    cache) for 1-8 tokens, row-major (`lpu.linear`) and in panels (`lpu.panels`, what the Engine's decode and verify steps read),
    in units of one token row-major: median of interleaved rounds."""
    from numba.typed import List

    def each(stacked, last):  # the engine's arrays of every matrix, layer by layer, then the classifier's
        return List([a[layer] for a in stacked for layer in range(engine.config.n_layers)] + [last])

    mats = each(engine._W, engine._wcls)
    W, S, P, none = mats, each(engine._S, engine._scls), each(engine._P, engine._pcls), List([panels.NO_PANELS for _ in mats])
    rng = np.random.default_rng(1)
    ts = (1, 2, 3, 4, 5, 8)
    times = {(T, layout): [] for T in ts for layout in ("rows", "panels")}
    for _ in range(repeats):
        for T in ts:
            X = List([rng.standard_normal((T, m.shape[2]), dtype=np.float32) for m in mats])
            out = List([np.empty((T, m.shape[0]), np.float32) for m in mats])
            for layout, p in (("rows", none), ("panels", P)):
                _matrices(W, S, p, X, out, 1)
                t = time.thread_time()
                _matrices(W, S, p, X, out, 20)
                times[T, layout].append((time.thread_time() - t) / 20)
    t1 = np.median(times[1, "rows"])
    print(f"\nthe bundled model's {len(mats)} matrices alone ({sum(m.nbytes for m in mats) / 2**20:.1f} MiB, from the last-level cache), "
          f"CPU time in units of one token row-major ({t1 * 1e6:.0f} us), median of {repeats} rounds:")
    print(f"{'tokens':>6s} {'row-major':>9s} {'panels':>7s}")
    for T in ts:
        print(f"{T:6d} {np.median(times[T, 'rows']) / t1:9.2f} {np.median(times[T, 'panels']) / t1:7.2f}")


def generation(target: Engine, tokens: int, **kw) -> tuple[float, float, int, int, int, int, list]:
    """Wall and CPU seconds, tokens, steps, accepted and rejected proposals of greedy generation over `PROMPTS`, and the ids."""
    wall = cpu = 0.0
    n, steps, acc, rej, ids = 0, 0, 0, 0, []
    for p in PROMPTS:
        w, c = time.perf_counter(), time.thread_time()
        events = list(target.generate(p, tokens, **kw))
        wall, cpu = wall + time.perf_counter() - w, cpu + time.thread_time() - c
        n += len(events)
        steps += sum(not e.drafted for e in events)  # each step ends with one token of the target's own
        acc += sum(e.drafted for e in events)
        rej += sum(e.rejected for e in events)
        ids.append([e.token_id for e in events])
    return wall, cpu, n, steps, acc, rej, ids


def dram_verify_table(ks, repeats: int, pos: int) -> None:
    """t_verify / t_target, CPU time, for random weights of the stories15M shapes (61 MB of fp32 weights, beyond the
    last-level cache: they stream from DRAM on every pass) beside the bundled model's (in cache), median of interleaved
    rounds. Where the weights come from DRAM, the k + 1 positions share one read of them."""
    with tempfile.TemporaryDirectory() as tmp:
        big = Engine.from_llama2c(*random_checkpoint(models.get("stories15M"), Path(tmp)), threads=1)
        small = Engine.default()
        ratios = {name: {k: [] for k in ks} for name in ("big", "small")}
        for _ in range(repeats):
            for name, eng in (("big", big), ("small", small)):
                pass_seconds(eng, 1, pos, calls=2)  # the other model's pass evicted this one's weights from the cache
                t1 = pass_seconds(eng, 1, pos, calls=5)
                for k in ks:
                    ratios[name][k].append(pass_seconds(eng, k + 1, pos, calls=5) / t1)
        print(f"\nt_verify / t_target, a pass over k + 1 positions against one, CPU time, median of {repeats} rounds at position {pos}:")
        print(f"{'k':>3s} {'stories15M shapes':>18s} {'bundled':>8s}   (weights: {big.weight_bytes / 2**20:.0f} MiB from DRAM, "
              f"{small.weight_bytes / 2**20:.1f} MiB in cache; last-level cache {kernels.last_level_cache_bytes() / 2**20:.0f} MiB)")
        for k in ks:
            print(f"{k:3d} {np.median(ratios['big'][k]):18.2f} {np.median(ratios['small'][k]):8.2f}")


def two_thread_table(ks, repeats: int, tokens: int) -> None:
    """Wall speed-up of speculative decoding on two threads against plain decoding on two, median of interleaved rounds
    (wall time: CPU time of one thread does not count the other's)."""
    target, draft = Engine.default(threads=2), Engine.default("draft", threads=2)
    generation(target, 8), generation(target, 8, draft=draft, draft_tokens=2)  # compile / warm up
    plain, speedup = [], {k: [] for k in ks}
    for _ in range(repeats):
        wall, _, n, *_ = generation(target, tokens)
        plain.append(wall / n)
        for k in ks:
            wall2, _, n2, *_ = generation(target, tokens, draft=draft, draft_tokens=k)
            speedup[k].append(plain[-1] * n2 / wall2)
    print(f"\ntwo threads (target and draft), wall time, median of {repeats} rounds: plain {np.median(plain) * 1e6:.0f} us a token")
    print(f"{'k':>3s} {'speed-up':>8s}")
    for k in ks:
        print(f"{k:3d} {np.median(speedup[k]):8.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 6, 7])
    args = ap.parse_args(argv)
    target, draft = Engine.default(), Engine.default("draft")
    pos = len(target.tokenizer.encode(PROMPTS[0])) + args.tokens // 2  # the mean position of a generation
    generation(target, 8), generation(target, 8, draft=draft, draft_tokens=2)  # compile / warm up
    rounds = []  # per round, every figure in units of that round's t_target: a change of load hits a round's figures alike
    for _ in range(args.repeats):
        tt = pass_seconds(target, 1, pos)
        r = {"tt": tt, "td": pass_seconds(draft, 1, pos) / tt}
        for k in args.ks:
            r["tv", k] = pass_seconds(target, k + 1, pos) / tt
        wall, cpu, n, *_, plain_ids = generation(target, args.tokens)
        r["tp"], tp_wall = cpu / n / tt, wall / n
        for k in args.ks:
            wall2, cpu2, n2, steps, acc, rej, ids = generation(target, args.tokens, draft=draft, draft_tokens=k)
            r["step", k] = cpu2 / steps / tt
            r["cpu", k], r["wall", k] = r["tp"] * tt * n2 / cpu2, tp_wall * n2 / wall2  # measured speed-ups
            r["stats", k] = (n2, steps, acc, rej, ids == plain_ids)
        rounds.append(r)
    load = os.getloadavg()

    def med(key):
        return float(np.median([r[key] for r in rounds]))

    tt_us = min(r["tt"] for r in rounds) * 1e6  # the best round's t_target
    print(f"bundled model ({target.config.n_params:,} params) + bundled draft ({draft.config.n_params:,}), greedy, {len(PROMPTS)} prompts x "
          f"{args.tokens} tokens, one thread, {args.repeats} interleaved rounds; load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"CPU time, median over rounds in units of the round's t_target (a pass over 1 position; best {tt_us:.0f} us): "
          f"t_draft {med('td'):.3f}, t_plain (a plain token, events included) {med('tp'):.2f}")
    print("t_verify: a target pass over k + 1 positions; overhead: a measured step's CPU time beyond its k + 1 passes;\n"
          "model: E t_plain / (k t_draft + t_verify [+ overhead]); measured: plain time / speculative time, CPU and wall")
    print(f"{'k':>3s} {'a':>6s} {'E':>5s} {'E meas':>6s} {'t_verify':>8s} {'k t_draft':>9s} {'overhead':>8s} "
          f"{'model no ovh':>12s} {'model':>6s} {'meas CPU':>8s} {'meas wall':>9s}  same tokens")
    fit = {}
    for k in args.ks:
        n, steps, acc, rej, same = rounds[-1]["stats", k]
        a = acc / (acc + rej)
        e = (1 - a ** (k + 1)) / (1 - a)
        td, tv, tp = med("td"), med(("tv", k)), med("tp")
        overhead = med(("step", k)) - k * td - tv
        fit[k] = (e, td, tp, overhead)
        print(f"{k:3d} {a:6.3f} {e:5.2f} {n / steps:6.2f} {tv:8.2f} {k * td:9.2f} {overhead:8.2f} {e * tp / (k * td + tv):12.2f} "
              f"{e * tp / (k * td + tv + overhead):6.2f} {med(('cpu', k)):8.2f} {med(('wall', k)):9.2f}  {same}")
    matrices_table(target, args.repeats)
    dram_verify_table(args.ks, args.repeats, pos)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        two_thread_table(args.ks, args.repeats, args.tokens)
    ratios = (1.0, 1.25, 1.5, 2.0)
    print("\nthe model's speed-up were t_verify r t_target (the measured a, t_draft, t_plain, overhead); the r that gives 1.5x")
    print(f"{'k':>3s} " + " ".join(f"{'r=' + format(r, 'g'):>7s}" for r in ratios) + f" {'r for 1.5x':>10s}")
    for k, (e, td, tp, overhead) in fit.items():
        print(f"{k:3d} " + " ".join(f"{e * tp / (k * td + r + overhead):7.2f}" for r in ratios) + f" {e * tp / 1.5 - k * td - overhead:10.2f}")


if __name__ == "__main__":
    main()
