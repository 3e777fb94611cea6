"""How close the CPU kernels get to this machine's memory bandwidth, and to llama2.c (a script, not a test).

    .venv/bin/python benchmarks/kernels.py [--sizes 4096 8192] [--dtypes fp32 fp16 int8] [--repeats 9] [--llama2c DIR]

Decoding one token reads every weight once, so a matvec is bounded by how fast
the machine reads memory. This measures, in one run: the memcpy bandwidth
(``np.copyto``, counting the bytes read), a read-only bandwidth (a parallel
numba sum reading two streams per thread, as the matvec does), and matvec GB/s
(weight bytes / time) for each weight dtype and size, with its ratio to both.
Each figure is the median of ``--repeats`` runs after a warm-up (the bandwidths, measured before and after
the matvec rows, the better of the two: other jobs on a shared machine move them); the buffers and
the pool of matrices each matvec run takes the next one from are 4 times this
machine's last-level cache (at least 1 GiB), so the bytes come from DRAM as they
do in a real decode loop, and no matvec row can report more than the read bound.

End to end: tokens/s of `lpu.runtime.Engine` generating greedily from
stories260K (from ../shared/models, skipped when absent), from a random-weight
checkpoint with stories15M's shapes, and from the bundled model; each with the
bytes one token reads, its ratio to the read-bound rate (read-only bandwidth /
bytes per token) and the share of time spent outside the compiled forward pass;
and speculative decoding of the bundled model with its bundled draft.

``--llama2c DIR`` (a checkout of karpathy/llama2.c; its code is not copied into
this project): builds DIR's run.c and runq.c in a temporary directory with its
Makefile's ``runomp`` target and compares, in the same run, greedy decoding on the
same files (1 and 2 threads, best of ``--repeats``), a ~200-token prefill, and int8
against runq.c; with the ratio lpu / llama2.c of wall tok/s and of CPU time per decoded token (what a
busy machine does not disturb as much), and whether the greedy text is identical.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from numba import prange

from lpu import checkpoint, kernels, models, panels
from lpu.quant import QuantizedTensor
from lpu.runtime import Engine

GiB = 1 << 30


@dataclass
class Row:
    """One line of the table: ``seconds`` per call reading ``nbytes`` of memory."""

    name: str
    seconds: float
    nbytes: int
    tokens_per_s: float | None = None  # for end-to-end rows
    note: str = ""

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9


_ROW_HOOKS: list[Callable[[argparse.Namespace], list[Row]]] = []


def register_rows(hook: Callable[[argparse.Namespace], list[Row]]) -> Callable:
    """Add a function (args -> list of `Row`) whose rows `main` appends to the table; usable as a decorator."""
    _ROW_HOOKS.append(hook)
    return hook


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


@numba.njit(parallel=True, fastmath={"reassoc"}, cache=True)
def _sum(a, n_chunks):  # a (n,) float32: read-only streaming, vectorised, each thread's chunk read as two streams at once
    half = a.shape[0] // (2 * n_chunks)
    total = np.float32(0.0)
    for c in prange(n_chunks):
        # slices indexed from 0: a[lo + i] would be checked for a negative (wrap-around) index, which keeps the
        # loop from vectorising: the sum then ran at ~2 GB/s against ~15 (and every matvec row read "above the bound")
        x0, x1 = a[2 * c * half:(2 * c + 1) * half], a[(2 * c + 1) * half:(2 * c + 2) * half]
        s0 = s1 = np.float32(0.0)
        for i in range(half):
            s0 += x0[i]
            s1 += x1[i]
        total += s0 + s1
    return total


def buffer_bytes() -> int:
    """Bytes of the bandwidth buffers and matvec pools: 4 x the last-level cache, at least 1 GiB."""
    return max(GiB, 4 * kernels.last_level_cache_bytes())


def memory_rows(nbytes: int | None = None, repeats: int = 5) -> tuple[Row, Row]:
    """memcpy (bytes read by np.copyto) and read-only (parallel two-stream sum) bandwidth of an ``nbytes`` buffer."""
    nbytes = nbytes or buffer_bytes()
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    n = numba.get_num_threads()
    copy = Row(f"memcpy {nbytes / GiB:.1f} GiB (np.copyto, bytes read)", median_seconds(lambda: np.copyto(dst, src), repeats), nbytes)
    read = Row(f"read-only sum {nbytes / GiB:.1f} GiB (numba, {n} threads)", median_seconds(lambda: _sum(src, 4 * n), repeats), nbytes)
    return copy, read


def weight_pool(dtype: str, n: int, pool_bytes: int, seed: int = 0) -> list:
    """Distinct copies of one random (n, n) weight matrix in ``dtype``, together at least ``pool_bytes``."""
    rng = np.random.default_rng(seed)
    if dtype == "int8":
        w = QuantizedTensor(rng.integers(-127, 128, (n, n), dtype=np.int8), (rng.random((n, n // 64), dtype=np.float32) * 0.01), 64)
        copies = -(-pool_bytes // w.nbytes)
        return [w] + [QuantizedTensor(w.q.copy(), w.scales.copy(), 64) for _ in range(copies - 1)]
    w = rng.standard_normal((n, n), dtype=np.float32).astype({"fp32": np.float32, "fp16": np.float16}[dtype])
    return [w] + [w.copy() for _ in range(-(-pool_bytes // w.nbytes) - 1)]


def matvec_row(dtype: str, n: int, repeats: int, pool_bytes: int, batch: int | None = None, in_panels: bool = False) -> Row:
    """Median time of ``kernels.matvec`` (``matmul`` of ``batch`` rows if given) on an (n, n) ``dtype``
    matrix, each call on the next copy of a pool; ``in_panels`` (fp32): the same product through the Engine's copy of
    the weights in panels (`lpu.panels`), as its decode steps read them."""
    pool = weight_pool(dtype, n, pool_bytes)
    packed = [panels.pack(W) for W in pool] if in_panels else None
    x = np.random.default_rng(1).standard_normal((batch or 1, n), dtype=np.float32)
    out = np.empty((batch or 1, n), np.float32)
    calls = iter(range(10**9))

    def one():
        i = next(calls) % len(pool)
        if in_panels:
            kernels._linear(*kernels.stored(pool[i]), packed[i], x, out, kernels._chunks(), True)
        elif batch:
            kernels.matmul(pool[i], x, out)
        else:
            kernels.matvec(pool[i], x[0], out[0])

    seconds = median_seconds(one, repeats, warmup=2)
    nbytes = pool[0].nbytes
    name = (f"matmul B={batch}" if batch else "matvec") + (" in panels" if in_panels else "")
    return Row(f"{name} {dtype} {n}x{n}", seconds, nbytes, note=f"{nbytes / 2**20:.0f} MiB, pool of {len(pool)}")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def format_table(rows: list[Row], copy: Row, read: Row) -> str:
    lines = [f"{'':44s} {'time':>10s} {'GB/s':>7s} {'/memcpy':>8s} {'/read':>6s} {'tok/s':>7s}  note", "-" * 100]
    for r in rows:
        t = f"{r.seconds * 1e3:.2f} ms" if r.seconds >= 1e-3 else f"{r.seconds * 1e6:.0f} us"
        tok = f"{r.tokens_per_s:7.1f}" if r.tokens_per_s else f"{'':7s}"
        cached = "; ABOVE the read bound: from cache" if r.name.startswith(("matvec", "matmul")) and r.gbps > 1.05 * read.gbps else ""
        lines.append(f"{r.name:44s} {t:>10s} {r.gbps:7.1f} {r.gbps / copy.gbps:8.2f} {r.gbps / read.gbps:6.2f} {tok}  {r.note}{cached}")
    return "\n".join(lines)


# ---- end to end: tokens/s of lpu.runtime.Engine -------------------------------------

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def _kernel_share(engine, tokens: int) -> float:
    """Share of a greedy generation's time spent inside compiled forward passes (``kernels._forward`` for the prompt's
    long chunks, the engine's step for short ones, its decode function for the decode steps, several per call: the
    Engine holds the last two, picked when it was built; timer overhead counts as outside)."""
    spent = [0.0]

    def timed(fn):
        def call(*a):
            t = time.perf_counter()
            out = fn(*a)
            spent[0] += time.perf_counter() - t
            return out
        return call

    saved = (kernels._forward, engine._step, engine._decode)
    kernels._forward, engine._step, engine._decode = (timed(fn) for fn in saved)
    try:
        t0 = time.perf_counter()
        for _ in engine.generate("Once upon a time", tokens):
            pass
        total = time.perf_counter() - t0
    finally:
        kernels._forward, engine._step, engine._decode = saved
    return spent[0] / total


def generation_row(name: str, engine, tokens: int, read: Row) -> Row:
    """Decode tokens/s of ``engine`` (greedy, after a warm-up), bytes read per token, and the share outside the forward pass."""
    list(engine.generate("Once upon a time", 8))  # compile / warm up
    evs = list(engine.generate("Once upon a time", tokens))
    seconds = (evs[-1].t_wall_s - evs[0].t_wall_s) / max(len(evs) - 1, 1)  # decode steps only (the prompt is prefilled)
    c = engine.config
    nbytes = engine.weight_bytes + 2 * c.n_layers * c.kv_dim * 4 * (tokens // 2)  # weights + the KV cache read at the mean position
    share = _kernel_share(engine, min(tokens, c.seq_len - 8))
    bound = read.gbps * 1e9 / nbytes
    return Row(f"generate {name}", seconds, nbytes, tokens_per_s=1 / seconds,
               note=f"{nbytes / 1e6:.1f} MB/token; {1 / seconds / bound:.2f} of the read-bound {bound:,.0f} tok/s; {1 - share:.0%} outside the forward pass")


def random_checkpoint(config, path: Path, seed: int = 0) -> tuple[Path, Path]:
    """A llama2.c checkpoint of ``config``'s shapes with random weights, and a placeholder tokenizer of its vocabulary."""
    rng = np.random.default_rng(seed)
    c = config
    shapes = {"token_embedding_table": (c.vocab_size, c.dim), "rms_att_weight": (c.n_layers, c.dim), "wq": (c.n_layers, c.dim, c.dim),
              "wk": (c.n_layers, c.kv_dim, c.dim), "wv": (c.n_layers, c.kv_dim, c.dim), "wo": (c.n_layers, c.dim, c.dim),
              "rms_ffn_weight": (c.n_layers, c.dim), "w1": (c.n_layers, c.hidden_dim, c.dim), "w2": (c.n_layers, c.dim, c.hidden_dim),
              "w3": (c.n_layers, c.hidden_dim, c.dim), "rms_final_weight": (c.dim,)}
    weights = {k: (np.ones(s) if k.startswith("rms") else rng.normal(0, 0.02, s)).astype(np.float32) for k, s in shapes.items()}
    model = checkpoint.write_llama2c(path / f"{c.name}-random.bin", c, weights, version=1)
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    pieces += [b" "] + [f"t{i}".encode() for i in range(c.vocab_size - len(pieces) - 1)]
    tok = checkpoint.write_tokenizer(path / f"{c.name}-random-tok.bin", pieces, [0.0] * len(pieces))
    return model, tok


@register_rows
def end_to_end_rows(args) -> list[Row]:
    read = memory_rows(None, 3)[1]
    rows = []
    if (SHARED_MODELS / "stories260K.bin").exists():
        eng = Engine.from_llama2c(SHARED_MODELS / "stories260K.bin", SHARED_MODELS / "tok512.bin")
        rows.append(generation_row("stories260K fp32", eng, args.tokens, read))
    else:
        print(f"(stories260K not found in {SHARED_MODELS}: its row is skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = random_checkpoint(models.get("stories15M"), Path(tmp))
        rows.append(generation_row("stories15M shapes, random fp32", Engine.from_llama2c(model, tok), min(args.tokens, 255), read))
    rows.append(generation_row("bundled tiny_shakespeare fp32", Engine.default(), min(args.tokens, 200), read))
    return rows


SPECULATIVE_PROMPTS = ("ROMEO:", "Friends, Romans, countrymen", "To be, or not to be")


def speculative_table(repeats: int, tokens: int = 200) -> None:
    """Prints the wall time of greedy generation by the bundled model with and without its bundled draft (k tokens per step)."""
    target, draft = Engine.default(), Engine.default("draft")

    def run(**kw):
        ids, seconds = [], 0.0
        for p in SPECULATIVE_PROMPTS:
            t = time.perf_counter()
            ids.append([e.token_id for e in target.generate(p, tokens, **kw)])
            seconds += time.perf_counter() - t
        return ids, seconds

    run(), run(draft=draft, draft_tokens=2)  # compile / warm up
    best_plain = min(run()[1] for _ in range(repeats))
    plain_ids = run()[0]
    t = time.perf_counter()
    n_draft = sum(1 for p in SPECULATIVE_PROMPTS for _ in draft.generate(p, tokens))
    draft_rate = n_draft / (time.perf_counter() - t)
    print(f"speculative decoding, bundled model + bundled draft, greedy, {len(SPECULATIVE_PROMPTS)} prompts x {tokens} tokens "
          f"(best of {repeats}); plain: {len(SPECULATIVE_PROMPTS) * tokens / best_plain:,.0f} tok/s; the draft alone: {draft_rate:,.0f} tok/s")
    print(f"{'k':>3s} {'acceptance':>11s} {'tokens/step':>12s} {'wall speed-up':>14s}  same tokens", flush=True)
    for k in (1, 2, 3, 4, 6):
        ids, seconds = None, []
        for _ in range(repeats):
            ids, sec = run(draft=draft, draft_tokens=k)
            seconds.append(sec)
        a = lpu_acceptance(target, draft, k, tokens)
        print(f"{k:3d} {a:11.3f} {(1 - a ** (k + 1)) / (1 - a):12.2f} {best_plain / min(seconds):14.2f}  {ids == plain_ids}", flush=True)


def lpu_acceptance(target, draft, k, tokens):
    from lpu.runtime import acceptance_rate

    return acceptance_rate(target, draft, k, SPECULATIVE_PROMPTS, tokens)


# ---- llama2.c's run.c and runq.c, built from a checkout, on the same files ---------------------------------


def build_llama2c(src: Path, work: Path) -> tuple[Path, Path]:
    """run and runq built in ``work`` from ``src``'s run.c, runq.c and Makefile (its ``runomp`` target)."""
    for name in ("run.c", "runq.c", "Makefile"):
        if not (src / name).exists():
            raise SystemExit(f"--llama2c {src}: no {name} there (a checkout of github.com/karpathy/llama2.c is expected)")
        shutil.copy(src / name, work / name)
    subprocess.run(["make", "-s", "runomp"], cwd=work, check=True)
    return work / "run", work / "runq"


def _llama2c(binary: Path, model: Path, tok: Path, prompt: str, steps: int, threads: int) -> tuple[float, str, float]:
    """(achieved tok/s as llama2.c prints it, stdout, CPU seconds) of a greedy run of ``steps`` positions."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(binary), str(model), "-z", str(tok), "-t", "0", "-n", str(steps), "-i", prompt],
                         env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return float(out.stderr.split("achieved tok/s:")[1].split()[0]), out.stdout, cpu


def _printable(text: str) -> str:
    """Text as run.c's safe_printf prints it: single-byte pieces that are neither printable nor space are dropped."""
    return "".join(ch for ch in text if ch.isprintable() or ch.isspace()).strip()


def llama2c_table(src: Path, repeats: int, tokens: int = 200) -> None:
    """Prints lpu / run.c (and runq.c) in the same run: decode tok/s (best of ``repeats``, 1 and 2 threads), prefill, int8."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run, runq = build_llama2c(src, tmp)
        model15, tok15 = random_checkpoint(models.get("stories15M"), tmp)
        ck = checkpoint.read_llama2c(model15)
        v0 = checkpoint.write_llama2c(tmp / "15M-v0.bin", ck.config, ck.weights, version=0)  # run.c reads version 0
        v2 = checkpoint.write_llama2c(tmp / "15M-v2.bin", ck.config, ck.weights, version=2, group_size=32)  # runq.c reads version 2
        b = Engine.default().checkpoint
        b0 = checkpoint.write_llama2c(tmp / "bundled-v0.bin", b.config, b.weights, version=0)
        cases = [("stories15M shapes, random fp32", run, v0, tok15, " ".join(f"t{i}" for i in range(3)))]
        if (SHARED_MODELS / "stories260K.bin").exists():
            cases.append(("stories260K fp32", run, SHARED_MODELS / "stories260K.bin", SHARED_MODELS / "tok512.bin", "Once upon a time"))
        cases += [("bundled tiny_shakespeare fp32", run, b0, models_dir() / "tok512_shakespeare.bin", "ROMEO:"),
                  ("stories15M shapes, random int8 (runq.c)", runq, v2, tok15, " ".join(f"t{i}" for i in range(3)))]
        print(f"{'decode (greedy), best of %d' % repeats:44s} {'threads':>7s} {'lpu tok/s':>10s} {'llama2.c':>9s} {'ratio':>6s} "
              f"{'CPU ratio':>9s}  same text", flush=True)
        for name, binary, model, tok, prompt in cases:
            for threads in (1, 2):
                eng = Engine.from_llama2c(model, tok, threads=threads)
                n_prompt = len(eng.tokenizer.encode(prompt))
                n = min(tokens, eng.config.seq_len - n_prompt)  # as many as run.c makes (it stops at seq_len positions)
                list(eng.generate(prompt, 8))  # compile / warm up
                ours, theirs, same = 0.0, 0.0, True
                cpu = {"ours": [], "ours_start": [], "theirs": [], "theirs_start": []}
                for _ in range(repeats):  # interleaved, best of each: the least disturbed run of a shared machine
                    t = time.process_time()
                    next(eng.generate(prompt, 1))
                    cpu["ours_start"].append(time.process_time() - t)  # the prompt and the first token: not decoding
                    t = time.process_time()
                    evs = list(eng.generate(prompt, n))
                    cpu["ours"].append(time.process_time() - t)
                    ours = max(ours, (len(evs) - 1) / (evs[-1].t_wall_s - evs[0].t_wall_s))
                    rate, text, their = _llama2c(binary, model, tok, prompt, n_prompt - 1 + n, threads)
                    cpu["theirs"].append(their)
                    cpu["theirs_start"].append(_llama2c(binary, model, tok, prompt, n_prompt, threads)[2])  # loading, the prompt, the first token
                    theirs = max(theirs, rate)
                    same &= _printable(text) == _printable(prompt + "".join(e.text for e in evs))
                our_cpu, their_cpu = ((min(cpu[k]) - min(cpu[k + "_start"])) / (len(evs) - 1) for k in ("ours", "theirs"))  # CPU s per decoded token
                print(f"{name:44s} {threads:7d} {ours:10,.0f} {theirs:9,.0f} {ours / theirs:6.2f} {their_cpu / our_cpu:9.2f}  {same}", flush=True)
        # prefill: a ~200-token prompt, 1 thread; run.c feeds it one position at a time (classifier included)
        eng = Engine.from_llama2c(v0, tok15, threads=1)
        prompt = " ".join(f"t{i}" for i in range(100, 140))  # 5 tokens a word: the placeholder pieces are bytes
        n_prompt = len(eng.tokenizer.encode(prompt))
        next(eng.generate(prompt, 1))
        ours = min(next(eng.generate(prompt, 1)).t_wall_s for _ in range(repeats))  # prefill + the first token's sampling
        theirs = min(n_prompt / _llama2c(run, v0, tok15, prompt, n_prompt, 1)[0] for _ in range(repeats))  # llama2.c's rate over the prompt
        print(f"{'prefill of %d tokens, 15M shapes, fp32' % n_prompt:44s} {1:7d} {n_prompt / ours:10,.0f} {n_prompt / theirs:9,.0f} "
              f"{theirs / ours:6.2f}  (prompt tokens/s)", flush=True)


def models_dir() -> Path:
    from lpu.runtime import DATA_MODELS

    return DATA_MODELS


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--batch", type=int, default=5, help="also time matmul with this batch at the first size (0: skip)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--pool-mib", type=int, default=None, help="weights cycled through per matvec size (default: 4 x the last-level cache, >= 1 GiB)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens generated per end-to-end row")
    parser.add_argument("--llama2c", type=Path, default=None, help="a llama2.c checkout: compare with its run.c / runq.c, built here")
    parser.add_argument("--no-matvec", action="store_true", help="skip the matvec rows")
    parser.add_argument("--only-llama2c", action="store_true", help="with --llama2c: only the comparison with llama2.c")
    args = parser.parse_args(argv)

    print(f"{cpu_name()}, numba {numba.__version__} with {numba.get_num_threads()} threads "
          f"({numba.threading_layer() if _sum(np.ones(8, np.float32), 1) else ''} layer), numpy {np.__version__}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    if args.llama2c and args.only_llama2c:
        llama2c_table(args.llama2c, max(1, args.repeats // 3), args.tokens)
        return []
    pool = (args.pool_mib << 20) if args.pool_mib else buffer_bytes()
    print(f"last-level cache {kernels.last_level_cache_bytes() / 2**20:.0f} MiB; buffers and matvec pools of {pool / GiB:.1f} GiB")
    copy, read = memory_rows(pool)
    rows = []
    for n in args.sizes if not args.no_matvec else []:
        for dtype in args.dtypes:
            rows.append(matvec_row(dtype, n, args.repeats, pool))
            if dtype == "fp32":
                rows.append(matvec_row(dtype, n, args.repeats, pool, in_panels=True))
    for dtype in args.dtypes if args.batch and not args.no_matvec else []:
        rows.append(matvec_row(dtype, args.sizes[0], args.repeats, pool, batch=args.batch))
    if rows:  # measured again after the matvec rows: a shared machine's bandwidth drifts, the bound is the best seen
        again = memory_rows(pool)
        copy, read = (max(a, b, key=lambda r: r.gbps) for a, b in zip((copy, read), again))
    rows = [copy, read] + rows
    for hook in _ROW_HOOKS:
        rows.extend(hook(args))
    print(format_table(rows, copy, read))
    print()
    speculative_table(max(1, args.repeats // 3))
    if args.llama2c:
        print()
        llama2c_table(args.llama2c, max(1, args.repeats // 3), args.tokens)
    return rows


if __name__ == "__main__":
    main()
