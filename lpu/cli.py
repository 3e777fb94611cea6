"""The ``lpu`` command line. With no arguments: the tour, the project's headline table.

Subcommands mirror the Python interface (``lpu --help`` lists them); each has
``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

from . import __version__, hardware, models, sram

TOUR_CONTEXT_TOKENS = 4096  # context the tour sizes KV caches for (Llama 2's training context)
TOUR_MODELS = ["llama2-70b", "mixtral-8x7b", "llama2-7b"]  # simulated on Groq's published system size, and Llama 2 70B at the fewest chips
MODEL_HELP = f"a preset ({', '.join(models.names())}) or a path to a Hugging Face config.json or the folder holding one"


def integer(low: int, high: int | None = None):
    """An argparse ``type``: an integer >= ``low`` (and <= ``high``); argparse's error names the flag ("argument --seed: ...")."""
    span = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {value}")
        return value

    parse.__name__ = f"integer {span}"
    return parse


def number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite number in the interval [low, high] (ends open as asked), named in the error."""
    span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)):
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text!r}")
        return value

    parse.__name__ = f"number in {span}"
    return parse


def _table(rows: list[list[str]], header: list[str], left: tuple[int, ...] = (0,)) -> str:
    """Plain text table, columns right-aligned except those in ``left`` (the first)."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def _chips_rows(precisions: list[str], context_tokens: int, batch: int) -> tuple[list[list[str]], list[str]]:
    header = ["model", "params"]
    for p in precisions:
        header += [f"{p} chips", "racks", "cards $M"]
    rows = []
    for name in models.names():
        m = models.get(name)
        row = [name, f"{m.n_params / 1e9:.2f}B" if m.n_params > 1e9 else f"{m.n_params / 1e6:.2f}M"]
        for p in precisions:
            n = sram.chips_needed(m, precision=p, context_tokens=min(context_tokens, m.seq_len), batch=batch)
            row += [f"{n.chips:,}", f"{n.racks}", f"{n.card_cost_usd / 1e6:.2f}"]
        rows.append(row)
    return rows, header


def tour(args) -> int:
    chip = hardware.get("lpu-v1")
    rack = hardware.get("groqrack")
    print(f"lpu {__version__}: Groq's LPU, explained and quantified\n")
    print(f"{chip.name} (GroqChip / TSP): key facts (nominal value used by default; ranges where sources disagree)")
    print(_table([[q, v] for q, v, _ in hardware.key_facts(chip)], ["quantity", "value"]))
    print(f"\nChips needed to hold each model in SRAM: weights + KV cache for 1 user at {TOUR_CONTEXT_TOKENS:,} tokens (or the model's context if shorter)")
    print(f"+ activations, with {sram.RESERVE_FRACTION.nominal:.0%} of each chip reserved; racks of {rack.chips} chips; cards at ${chip.card_price_usd:,.0f}")
    rows, header = _chips_rows(["fp16", "int8"], TOUR_CONTEXT_TOKENS, 1)
    print(_table(rows, header))
    from . import published

    groq = published.lpu_system_chips()
    n16 = sram.chips_needed("llama2-70b", precision="fp16", context_tokens=TOUR_CONTEXT_TOKENS)
    print(f"\nGroq served Llama 2 70B on {groq} chips ({groq // rack.chips} racks): at fp16 its weights alone are {n16.weight_bytes / 1e9:.0f} GB,")
    print(f"more than {groq} x {chip.sram_bytes / 1e6:.1f} MB = {groq * chip.sram_bytes / 1e9:.0f} GB. "
          "See notebooks/01_architecture.ipynb for the mix that fits.")
    from .system import SYSTEM_OP_S, simulate  # the scheduler and planner load only here

    print(f"\nSimulated on LPU systems (lpu.simulate; 1 user, prompt 550, output 150; physics at nominal values + the system term "
          f"fitted on Groq's Llama 2 70B, {SYSTEM_OP_S.value * 1e6:.2f} us per dependent op):")
    rows = []
    for name, chips in [(m, groq) for m in TOUR_MODELS] + [("llama2-70b", None)]:
        r = simulate(name, chips=chips, ranges=False)
        rows.append([name, f"{r.chips}", f"{r.plan.pp} stages x {r.plan.tp} TP", r.precision_label, f"{r.ttft_s * 1e3:.1f}",
                     f"{r.output_tokens_per_s:,.0f}", f"{r.total_time_s:.2f}"])
    print(_table(rows, ["model", "chips", "plan", "precision", "TTFT ms", "tok/s/user", "total s"]))
    from . import validation

    v = validation.summary()
    print(f"\nValidation (lpu bench): {v['rows']} published or measured figures the models were not fitted to; "
          f"{validation.summary_line(v)}.")
    print("\nMore: lpu bench, lpu simulate --help, lpu chips --help, lpu specs, lpu generate, and the notebooks (make lab).")
    return 0


def chips(args) -> int:
    precisions = args.precision or ["fp16", "fp16-int8ffn", "int8"]
    if args.model:
        out = [sram.chips_needed(args.model, args.chip, p, args.context, args.batch, args.reserve).as_dict() for p in precisions]
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print(_table([[d["precision"], f"{d['chips']:,}", f"{d['racks']}", f"{d['weight_bytes'] / 1e9:.2f}", f"{d['kv_cache_bytes'] / 1e9:.3f}",
                           f"{d['card_cost_usd'] / 1e6:.2f}"] for d in out],
                         ["precision", "chips", "racks", "weights GB", "KV GB", "cards $M"]))
        return 0
    rows, header = _chips_rows(precisions, args.context or TOUR_CONTEXT_TOKENS, args.batch)
    print(json.dumps([dict(zip(header, r)) for r in rows], indent=2) if args.json else _table(rows, header))
    return 0


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(getattr(v, "name", v))


def spec_rows(spec) -> list[list[str]]:
    """(field, value, low-high range or "", source) for every field of a hardware spec, as `lpu specs` prints them."""
    rows = []
    for f in dataclasses.fields(spec):
        if f.name in ("name", "source", "sources", "ranges"):
            continue
        r = spec.range(f.name) if isinstance(getattr(spec, f.name), (int, float)) else None
        span = f"{_value(r.low)}-{_value(r.high)}" if r is not None and r.low != r.high else ""
        rows.append([f.name, _value(getattr(spec, f.name)), span, spec.source_of(f.name)])
    return rows


def specs(args) -> int:
    spec = hardware.get(args.name)
    if args.json:
        print(json.dumps(dataclasses.asdict(spec), indent=2, default=str))
        return 0
    if isinstance(spec, hardware.ChipSpec):
        print(_table([[q, v, s] for q, v, s in hardware.key_facts(spec)], ["quantity", "value", "source"], left=(0, 2)) + "\n")
    print(f"{spec.name}: every field (range where sources disagree; source of each)")
    print(_table(spec_rows(spec), ["field", "value", "range", "source"], left=(0, 3)))
    return 0


def generate(args) -> int:
    from .runtime import Engine  # numba kernels: imported only when generating

    if bool(args.checkpoint) != bool(args.tokenizer):
        raise ValueError("give both --checkpoint and --tokenizer, or neither for the bundled model")
    eng = (Engine.from_llama2c(args.checkpoint, args.tokenizer, precision=args.precision, threads=args.threads) if args.checkpoint
           else Engine.default(precision=args.precision, threads=args.threads))
    draft = Engine.default("draft", threads=args.threads) if args.draft else None
    # generate() checks every argument at the call: a bad one is reported before the prompt is printed
    stream = eng.generate(args.prompt, args.max_new_tokens, args.temperature, args.top_p, args.seed, draft=draft, draft_tokens=args.draft_tokens)
    print(args.prompt, end="", flush=True)
    events = []
    for ev in stream:
        events.append(ev)
        print(ev.text, end="", flush=True)
    print()
    if events:
        wall = events[-1].t_wall_s
        spec = ""
        if draft is not None:
            accepted, rejected = sum(e.drafted for e in events), sum(e.rejected for e in events)
            spec = f"; {accepted} of {accepted + rejected} judged draft tokens accepted ({draft.config.name}, {args.draft_tokens} per step)"
        # numba compiles the kernels on a first run in a fresh install (tens of seconds) and caches them: the rate after
        # the first token says what this CPU does, the total what this run took
        after = f", {(len(events) - 1) / (wall - events[0].t_wall_s):,.0f} tok/s after the first" if len(events) > 1 and wall > events[0].t_wall_s else ""
        print(f"-- {len(events)} tokens of {eng.config.name} ({eng.precision} weights, {eng.threads} thread{'s' if eng.threads > 1 else ''}) in "
              f"{wall:.2f} s on this CPU (a first run also compiles the kernels){after}{spec}; simulated on {eng.chips} {eng.chip.name}: first token at "
              f"{events[0].t_sim_s * 1e6:.2f} us, last at {events[-1].t_sim_s * 1e6:.2f} us", file=sys.stderr)
    return 0


def simulate_cmd(args) -> int:
    from .system import simulate

    r = simulate(args.model, args.system, args.chips, args.precision, args.users, args.prompt_tokens, args.output_tokens, ranges=not args.no_ranges,
                 serving=args.serving, hosted=args.hosted)
    d = r.as_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    rng = d["ranges"].get("output_tokens_per_s")
    print(f"{r.model} on {d['plan']}, {r.users} user(s), prompt {r.prompt_tokens}, output {r.output_tokens}"
          f"{f', through a hosted API (+{r.hosted_s:.3f} s to the first token)' if r.hosted_s else ''}")
    print(f"  precision {r.precision}: {r.precision_reason}" + "".join(f"\n  note: {n}" for n in r.notes))
    print(f"  time to first token {r.ttft_s * 1e3:.1f} ms; {r.output_tokens_per_s:,.0f} tok/s per user"
          f"{f' (range {rng[0]:,.0f}-{rng[1]:,.0f})' if rng else ''}; system {r.system_tokens_per_s:,.0f} tok/s; total {r.total_time_s:.3f} s")
    print("  decode step: " + ", ".join(f"{k} {v:.0%}" for k, v in r.breakdown().items()))
    return 0


def sweep_cmd(args) -> int:
    import time
    from pathlib import Path

    import pandas as pd

    from .sweep import sweep

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out {args.out!r}: give a .csv or .parquet file")
    if args.scheduler and args.workers:
        raise ValueError("--workers sizes the local process pool; with --scheduler the cluster's workers run the sweep")
    try:
        spec = json.loads(Path(args.grid).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--grid {args.grid!r} is not JSON: {e}") from None
    if isinstance(spec, list):  # one object per configuration
        spec = pd.DataFrame(spec)
    client = None
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout=args.connect_timeout)
        except (OSError, TimeoutError) as e:
            raise ValueError(f"--scheduler {args.scheduler!r}: cannot reach a Dask scheduler there ({e})") from None
    start = time.perf_counter()
    try:
        df = sweep(spec, client=client, workers=args.workers)
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    if out.suffix == ".csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    failed = int(df["error"].notna().sum())
    print(f"{len(df):,} configurations in {seconds:.1f} s ({len(df) / seconds:,.1f} per s) on "
          f"{args.scheduler or f'{args.workers or os.cpu_count()} local process(es)'}; {failed:,} did not run (their error column says why) -> {out}")
    return 0


def bench(args) -> int:
    from . import validation

    df = validation.table()

    def count(v):  # an integer column of the table, blank where a row gives none (None or NaN)
        return "" if v is None or v != v else f"{int(v)}"

    rows = [[r.system, r.model, r.metric, count(r.batch), count(r.tokens), count(r.output_tokens), f"{r.published:.4g}", f"{r.predicted:.4g}",
             f"{r.low:.3g}-{r.high:.3g}", f"{r.error:+.0%}", "yes" if r.inside else "no",
             r.role + ("" if r.modelled else " (eager: not modelled)")] for r in df.itertuples()]
    s = validation.summary(df)
    fitted = validation.fitted_table()
    if args.json:
        print(json.dumps(dict(rows=df.to_dict(orient="records"), fitted=fitted.to_dict(orient="records"), summary=s), indent=2, default=str))
        return 0
    print(_table(rows, ["system", "model", "metric", "batch", "tokens", "out/rows", "published", "predicted", "range", "error", "in range", "role"]))
    print("\nFitted parameters (lpu.fitted()): each on its one calibration row; ranges from independent measurements of that system")
    print(_table([[f.name, f.family, f"{f.value:.4g}", f.unit, f"{f.low:.4g}-{f.high:.4g}", "" if f.share != f.share else f"{f.share:.0%}",
                   f.headline, f.calibration_row] for f in fitted.itertuples()],
                 ["name", "family", "value", "unit", "range", "share", "of", "calibration row"]))
    print(f"\nworst |error| {s['worst_abs_error']:.0%} ({s['worst']}). Sources: lpu/data/published.csv.")
    print(f"summary (validation rows the models describe): {validation.summary_line(s)}")
    return 0


def voice_cmd(args) -> int:
    from . import voice

    stages = voice.Stages() if args.silence_ms is None else voice.Stages().fixed(silence_timer_s=args.silence_ms / 1e3)
    df = voice.compare(args.profile or voice.KNOWN, stages, n=args.samples, search=args.search)
    if args.json:
        print(df.to_json(orient="records", indent=2))
        return 0
    print(f"Voice-to-voice delay (end of the user's speech -> first answer audio), {args.samples:,} Monte Carlo turns over the stage ranges"
          f"{' with a web search first' if args.search else ''}; human turn gap ~{voice.HUMAN_TURN_GAP_S.nominal * 1e3:.0f} ms")
    rows = [[r.llm, f"{r.ttft_s * 1e3:,.0f}", f"{r.output_tokens_per_s:,.0f}", f"{r.p10_s:.2f}", f"{r.p50_s:.2f}", f"{r.p90_s:.2f}",
             f"{r.llm_share:.0%}"] for r in df.itertuples()]
    print(_table(rows, ["LLM", "TTFT ms", "tok/s", "p10 s", "p50 s", "p90 s", "LLM share"]))
    print("Model: lpu.voice (stage sources: lpu.voice.Stages); measured pipeline with real audio: notebooks/05_realtime_voice_latency.ipynb")
    return 0


def serve_cmd(args) -> int:
    from .serve import run  # FastAPI and uvicorn: the serve extra

    return run(args.host, args.port, args.checkpoint, args.tokenizer, warm=not args.no_warm)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpu", description="Groq's LPU explained and quantified. With no subcommand: the tour.")
    p.add_argument("--version", action="version", version=f"lpu {__version__}")
    sub = p.add_subparsers(dest="command", title="subcommands", metavar="{tour,chips,specs,generate,simulate,sweep,bench,voice,serve}")
    sub.add_parser("tour", help="the headline table (default)").set_defaults(func=tour)
    c = sub.add_parser("chips", help="chips needed to hold a model in SRAM")
    c.add_argument("--model", help=f"{MODEL_HELP} (default: all presets)")
    c.add_argument("--precision", action="append", help=f"repeatable; one of: {', '.join(models.PRECISIONS)}")
    c.add_argument("--chip", default="lpu-v1")
    c.add_argument("--context", type=integer(0), default=None, help="context tokens per user (default: the model's seq_len, 4096 for the table)")
    c.add_argument("--batch", type=integer(1), default=1, help="users whose KV cache is held")
    c.add_argument("--reserve", type=number(0, 1, high_open=True), default=sram.RESERVE_FRACTION.nominal,
                   help="fraction of each chip's SRAM reserved, in [0, 1) (default %(default)s)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=chips)
    s = sub.add_parser("specs", help="a hardware spec with sources")
    s.add_argument("name", nargs="?", default="lpu-v1", help=f"one of: {', '.join(hardware.names())}")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=specs)
    g = sub.add_parser("generate", help="generate text on the CPU with the numba kernels (default: the bundled model)")
    g.add_argument("--prompt", default="ROMEO:", help="text to continue (default %(default)r)")
    g.add_argument("--checkpoint", help="a llama2.c model file (versions 0, 1, 2); default: the bundled Shakespeare model")
    g.add_argument("--tokenizer", help="its llama2.c tokenizer file")
    g.add_argument("--max-new-tokens", type=integer(0), default=128)
    g.add_argument("--temperature", type=number(0), default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=number(0, 1, low_open=True), default=1.0, help="nucleus sampling, in (0, 1] (default 1: off)")
    g.add_argument("--seed", type=integer(0), default=0, help="seeds the sampler (temperature > 0)")
    g.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None, help="weight storage (default: the checkpoint's)")
    g.add_argument("--threads", type=integer(1), default=None,
                   help="threads for the kernels (default: $LPU_THREADS, else 1: small models gain little from more, and lose much on busy cores)")
    g.add_argument("--draft", action="store_true", help="speculative decoding with the bundled draft model (same tokenizer as the bundled model)")
    g.add_argument("--draft-tokens", type=integer(1), default=3, help="draft tokens per step (default %(default)s: the fastest for the bundled pair)")
    g.set_defaults(func=generate)
    m = sub.add_parser("simulate", help="simulate a model served on an LPU system (lpu.simulate)")
    m.add_argument("--model", default="llama2-70b", help=f"{MODEL_HELP} (default %(default)s)")
    m.add_argument("--system", default="lpu-v1", help="lpu-v1, or a GPU: a100, h100, h200")
    m.add_argument("--chips", type=integer(1), default=None, help="default: the smallest count that fits")
    m.add_argument("--precision", default=None, help=f"default: the highest that fits; one of {', '.join(models.PRECISIONS)}")
    m.add_argument("--users", type=integer(1), default=1)
    m.add_argument("--prompt-tokens", type=integer(1), default=None, help="default 550 (scaled down where the model's context is shorter)")
    m.add_argument("--output-tokens", type=integer(1), default=None, help="default 150 (likewise)")
    m.add_argument("--serving", default=None, help="GPU systems: the serving profile (lpu.gpu)")
    m.add_argument("--hosted", action="store_true", help="add a hosted API's network and queueing to the first token (Result.hosted)")
    m.add_argument("--no-ranges", action="store_true", help="skip the ranges: hardware corners and the fitted terms' ranges (faster)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=simulate_cmd)
    w = sub.add_parser("sweep", help="a grid of simulate configurations into a CSV or parquet table (lpu.sweep), locally or on Dask")
    w.add_argument("--grid", required=True, help='JSON: lists of simulate arguments, a cartesian product ({"model": ["llama2-70b"], '
                   '"chips": [400, 576], "users": [1, 8]}), or a list of objects, one configuration each; models as presets or config paths')
    w.add_argument("--out", required=True, help="results.csv or results.parquet")
    w.add_argument("--scheduler", help="a Dask scheduler's address (tcp://HOST:8786); default: a local process pool")
    w.add_argument("--workers", type=integer(1), default=None, help="local processes (default: the CPU count)")
    w.add_argument("--connect-timeout", type=number(0, low_open=True), default=10.0, help="seconds to reach the scheduler (default %(default)s)")
    w.set_defaults(func=sweep_cmd)
    b = sub.add_parser("bench", help="every published measurement against the simulators' prediction (lpu.validation)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=bench)
    v = sub.add_parser("voice", help="voice-to-voice delay of a voice agent per LLM profile (lpu.voice)")
    v.add_argument("--profile", action="append", help="repeatable; default: all of lpu.voice.KNOWN")
    v.add_argument("--silence-ms", type=number(0), default=None, help="fix the VAD silence timer (default: over its 200-800 ms range)")
    v.add_argument("--search", action="store_true", help="a web search before the LLM (the seed's search-augmented answer)")
    v.add_argument("--samples", type=integer(1), default=10_000)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=voice_cmd)
    sv = sub.add_parser("serve", help="OpenAI-compatible endpoint with real tokens paced by simulated systems, and the race page (lpu.serve)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 for a workshop room)")
    sv.add_argument("--port", type=integer(1, 65535), default=8000)
    sv.add_argument("--checkpoint", help="a llama2.c model file to write the text; default: the bundled Shakespeare model")
    sv.add_argument("--tokenizer", help="its llama2.c tokenizer file")
    sv.add_argument("--no-warm", action="store_true", help="skip pre-computing the LPU ids' pacing for short requests")
    sv.set_defaults(func=serve_cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", tour)
    try:
        return func(args)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print(f"lpu: error: {e}", file=sys.stderr)
        return 2
