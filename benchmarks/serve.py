"""How many concurrent streams `lpu serve` holds on this machine with every stream paced within 10% of its simulated ITL.

For each model id, N streams start together (client threads reading the server-sent events, the server in a
child process); each stream's client-measured mean inter-token latency, (t_last - t_first) / (tokens - 1), is
compared with the simulated ITL the server reports for it (x_lpu.itl_s). N doubles, then steps, until a stream
misses by more than 10%, then bisects between the last N held and the first missed. Every N runs twice: the
first run computes the pacing for 1..N users (an LPU system of 576 chips takes ~0.5 s of simulation per user
count), the second is measured. Tokens/s served: all
streams' tokens over the wall time from the common start to the last token; the Engine's work also counts each
stream's prompt (fed token by token), to set beside what the Engine alone does on one thread in the same run (the
server's ceiling: one generation thread writes every stream).

    .venv/bin/python benchmarks/serve.py [--max-tokens 64] [--ids llama2-70b@lpu-v1x576 llama2-70b@a100x4-fp16]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numba
import numpy as np

from lpu import Engine
from lpu.serve import background
from lpu.serve.race import stream_chat
from lpu.serve.text import chat_prompt

TOLERANCE = 0.10
PROMPT = "Who is there?"


def run_streams(url: str, model: str, n: int, max_tokens: int) -> dict:
    out: list = [None] * n
    t0 = time.monotonic()

    def one(i):
        try:
            out[i] = stream_chat(url, model, PROMPT, max_tokens, t0, temperature=0.8, seed=i)
        except Exception as e:  # noqa: BLE001 - counted as a failed stream
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors, late, tokens, last = [], [], 0, 0.0
    for r in out:
        if isinstance(r, Exception) or len(r["times"]) < 2:
            errors.append(np.inf)
            continue
        t = np.array(r["times"])
        itl = (t[-1] - t[0]) / (len(t) - 1)
        errors.append(itl / r["x_lpu"]["itl_s"] - 1)
        late.append(r["x_lpu"]["first_token_late_s"])
        tokens += len(t)
        last = max(last, t[-1])
    errors = np.array(errors)
    return dict(n=n, worst=float(np.max(np.abs(errors))), median=float(np.median(np.abs(errors))), tokens_per_s=tokens / last if last else 0.0,
                first_late_ms=1e3 * float(np.max(late)) if late else np.inf, itl_ms=1e3 * float(np.median([r["x_lpu"]["itl_s"] for r in out
                                                                                                        if not isinstance(r, Exception)])))


def measure(url: str, model: str, n: int, max_tokens: int) -> dict:
    run_streams(url, model, n, max_tokens)  # computes the pacing for up to n users
    row = run_streams(url, model, n, max_tokens)
    row["held"] = row["worst"] <= TOLERANCE
    print(f"  {model:26s} {n:4d} streams: worst |ITL error| {row['worst']:6.1%}, median {row['median']:5.1%}, simulated ITL "
          f"{row['itl_ms']:6.2f} ms, first token late by up to {row['first_late_ms']:6.1f} ms, served {row['tokens_per_s']:7,.0f} tok/s "
          f"{'held' if row['held'] else 'MISSED'}", flush=True)
    return row


def ramp(url: str, model: str, max_tokens: int, limit: int) -> list[dict]:
    rows, n = [], 1
    while n <= limit:
        rows.append(measure(url, model, n, max_tokens))
        if not rows[-1]["held"]:
            break
        n = n * 2 if n < 8 else n + 8
    held = [r["n"] for r in rows if r["held"]]
    lo, hi = (held[-1] if held else 0), rows[-1]["n"]
    while hi - lo > 1 and not all(r["held"] for r in rows):  # bisect between the last N held and the first missed
        rows.append(measure(url, model, (lo + hi) // 2, max_tokens))
        lo, hi = (rows[-1]["n"], hi) if rows[-1]["held"] else (lo, rows[-1]["n"])
    return rows


def engine_tokens_per_s(tokens: int = 200, repeats: int = 3) -> float:
    """The bundled model's generation speed on one thread, no server (median of ``repeats``)."""
    numba.set_num_threads(1)
    eng = Engine.default()
    for _ in eng.generate("ROMEO:", 8):
        pass
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = sum(1 for _ in eng.generate("ROMEO:", tokens))
        rates.append(n / (time.perf_counter() - t))
    return float(np.median(rates))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", nargs="+", default=["llama2-70b@lpu-v1x576", "llama2-70b@a100x4-fp16"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--limit", type=int, default=128, help="most streams tried")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.max_tokens} tokens a stream; prompt {PROMPT!r}")
    prompt_tokens = len(Engine.default().tokenizer.encode(chat_prompt([{"role": "user", "content": PROMPT}]), bos=True))
    before = engine_tokens_per_s()
    print(f"Engine alone (bundled model, one thread): {before:,.0f} tok/s")
    summary = []
    with background(warm=False) as url:
        for model in args.ids:
            rows = ramp(url, model, args.max_tokens, args.limit)
            held = sorted((r for r in rows if r["held"]), key=lambda r: r["n"])
            missed = sorted(r["n"] for r in rows if not r["held"])
            best = held[-1] if held else None
            summary.append([model, f"{rows[0]['itl_ms']:.2f}", str(best["n"]) if best else "0", f"{best['tokens_per_s']:,.0f}" if best else "-",
                            f"{best['worst']:.1%}" if best else "-", str(missed[0]) if missed else f">{held[-1]['n']}",
                            f"{best['tokens_per_s'] * (1 + prompt_tokens / args.max_tokens):,.0f}" if best else "-"])
    after = engine_tokens_per_s()
    ceiling = (before + after) / 2
    print(f"\nload average after: {os.getloadavg()[0]:.2f}; Engine alone after: {after:,.0f} tok/s (mean of before and after: {ceiling:,.0f})")
    for r in summary:
        r.append(f"{float(r[6].replace(',', '')) / ceiling:.0%}" if r[6] != "-" else "-")
    header = ["model id", "sim ITL ms (1 user)", "streams held", "tok/s served", "worst |ITL err|", "first N missed",
              f"Engine tok/s (+{prompt_tokens} prompt each)", "of Engine alone"]
    widths = [max(len(h), *(len(r[i]) for r in summary)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in summary:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
