"""How fast the static scheduler itself is (a script, not a test).

    .venv/bin/python benchmarks/scheduler.py [--repeats 5]

Prints, for decode steps and prefill chunks of several models on one LPU (a
what-if chip with enough SRAM where the model needs more): ops in the step,
the time to build the op graph, the time to schedule it, and ops scheduled
per second. The headline row is one decode step of an 80-layer model
(Llama 2 70B) on one what-if chip: the sharding work needs a 576-chip step of
the same model in well under 2 s.
"""

from __future__ import annotations

import argparse
import time

from lpu import graph, models, schedule


def best_of(repeats: int, fn, *args) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cases = [("stories110M", "decode", 1, 255), ("llama2-7b", "decode", 1, 1023), ("llama2-7b", "decode", 32, 1023),
             ("mixtral-8x7b", "decode", 1, 1023), ("llama2-70b", "decode", 1, 1023), ("llama2-70b", "prefill", 2048, 0)]
    print(f"{'model':13s} {'phase':8s} {'tokens':>6s} {'ops':>6s} {'graph ms':>9s} {'schedule ms':>12s} {'ops/s':>10s} {'step (sim)':>12s}")
    for name, phase, tokens, context in cases:
        m = models.get(name)
        chip = schedule.one_chip_for(m, "int8", min(context + tokens, m.seq_len), 1 if phase == "prefill" else tokens)
        t_graph, g = best_of(args.repeats, graph.build, m, phase, tokens, context, "int8")
        t_sched, tl = best_of(args.repeats, schedule.schedule, g, chip)
        step = f"{tl.latency_s * 1e3:.3f} ms" if tl.latency_s > 1e-3 else f"{tl.latency_s * 1e6:.1f} us"
        print(f"{name:13s} {phase:8s} {tokens:6d} {len(g):6d} {t_graph * 1e3:9.2f} {t_sched * 1e3:12.2f} {len(g) / t_sched:10,.0f} {step:>12s}")


if __name__ == "__main__":
    main()
