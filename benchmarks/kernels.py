"""How close the CPU kernels get to this machine's memory bandwidth (a script, not a test).

    .venv/bin/python benchmarks/kernels.py [--sizes 4096 8192] [--dtypes fp32 fp16 int8] [--repeats 9]

Decoding one token reads every weight once, so a matvec is bounded by how fast
the machine reads memory. This measures, in one run: the memcpy bandwidth
(``np.copyto`` of a 1 GiB buffer, counting the bytes read), a read-only
bandwidth (a parallel numba sum over the same buffer), and matvec GB/s (weight
bytes / time) for each weight dtype and size, with its ratio to both. Each
figure is the median of ``--repeats`` runs after a warm-up; every matvec run
reads a different copy of the matrix, from a pool larger than the last-level
cache, so the weights come from DRAM as they do in a real decode loop.

End to end: tokens/s of `lpu.runtime.Engine` generating greedily from
stories260K (from ../shared/models, skipped when absent), from a random-weight
checkpoint with stories15M's shapes, and from the bundled model; each with the
bytes one token reads, its ratio to the read-bound rate (read-only bandwidth /
bytes per token) and the share of time spent outside the numba kernels.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from numba import prange

from lpu import checkpoint, kernels, models
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
def _sum(a):  # a (n,) float32: read-only streaming, vectorised, split over threads
    s = np.float32(0.0)
    for i in prange(a.shape[0]):
        s += a[i]
    return s


def memory_rows(nbytes: int = GiB, repeats: int = 5) -> tuple[Row, Row]:
    """memcpy (bytes read by np.copyto) and read-only (parallel sum) bandwidth of an ``nbytes`` buffer."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    copy = Row(f"memcpy {nbytes / GiB:.0f} GiB (np.copyto, bytes read)", median_seconds(lambda: np.copyto(dst, src), repeats), nbytes)
    read = Row(f"read-only sum {nbytes / GiB:.0f} GiB (numba, {numba.get_num_threads()} threads)", median_seconds(lambda: _sum(src), repeats), nbytes)
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


def matvec_row(dtype: str, n: int, repeats: int, pool_bytes: int, batch: int | None = None) -> Row:
    """Median time of ``kernels.matvec`` (``matmul`` of ``batch`` rows if given) on an (n, n) ``dtype``
    matrix, each call on the next copy of a pool."""
    pool = weight_pool(dtype, n, pool_bytes)
    x = np.random.default_rng(1).standard_normal((batch or 1, n), dtype=np.float32)
    out = np.empty((batch or 1, n), np.float32)
    calls = iter(range(10**9))

    def one():
        W = pool[next(calls) % len(pool)]
        if batch:
            kernels.matmul(W, x, out)
        else:
            kernels.matvec(W, x[0], out[0])

    seconds = median_seconds(one, repeats, warmup=2)
    nbytes = pool[0].nbytes
    name = f"matmul B={batch}" if batch else "matvec"
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
        lines.append(f"{r.name:44s} {t:>10s} {r.gbps:7.1f} {r.gbps / copy.gbps:8.2f} {r.gbps / read.gbps:6.2f} {tok}  {r.note}")
    return "\n".join(lines)


# ---- end to end: tokens/s of lpu.runtime.Engine -------------------------------------

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def _kernel_share(engine, tokens: int) -> float:
    """Share of decode time spent inside the numba kernels (timer overhead counts as outside)."""
    spent = [0.0]

    def timed(fn):
        def wrapper(*a):
            t = time.perf_counter()
            fn(*a)
            spent[0] += time.perf_counter() - t
        return wrapper

    names = ["_rmsnorm", "_rope", "_attention", "_swiglu"]
    saved = {n: getattr(kernels, n) for n in names}
    linears = [lin for layer in engine.layers for lin in layer.values()] + [engine.classifier]
    saved_lin = [lin.kernel for lin in linears]
    try:
        for n in names:
            setattr(kernels, n, timed(saved[n]))
        for lin in linears:
            lin.kernel = timed(lin.kernel)
        t0 = time.perf_counter()
        for pos in range(tokens):
            engine.forward(pos % 7 + 3, pos)
        total = time.perf_counter() - t0
    finally:
        for n in names:
            setattr(kernels, n, saved[n])
        for lin, k in zip(linears, saved_lin):
            lin.kernel = k
    return spent[0] / total


def generation_row(name: str, engine, tokens: int, read: Row) -> Row:
    """Decode tokens/s of ``engine`` (greedy, after a warm-up), bytes read per token, and the share outside kernels."""
    list(engine.generate("Once upon a time", 8))  # compile / warm up
    t0 = time.perf_counter()
    n = sum(1 for _ in engine.generate("Once upon a time", tokens))
    seconds = (time.perf_counter() - t0) / max(n, 1)
    c = engine.config
    nbytes = engine.weight_bytes + 2 * c.n_layers * c.kv_dim * 4 * (tokens // 2)  # weights + the KV cache read at the mean position
    share = _kernel_share(engine, min(tokens, c.seq_len))
    bound = read.gbps * 1e9 / nbytes
    return Row(f"generate {name}", seconds, nbytes, tokens_per_s=1 / seconds,
               note=f"{nbytes / 1e6:.1f} MB/token; {1 / seconds / bound:.2f} of the read-bound {bound:,.0f} tok/s; {1 - share:.0%} outside kernels")


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
    read = memory_rows(GiB // 4, 3)[1]
    rows = []
    if (SHARED_MODELS / "stories260K.bin").exists():
        eng = Engine.from_llama2c(SHARED_MODELS / "stories260K.bin", SHARED_MODELS / "tok512.bin")
        rows.append(generation_row("stories260K fp32", eng, args.tokens, read))
    else:
        print(f"(stories260K not found in {SHARED_MODELS}: its row is skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = random_checkpoint(models.get("stories15M"), Path(tmp))
        rows.append(generation_row("stories15M shapes, random fp32", Engine.from_llama2c(model, tok), min(args.tokens, 255), read))
    rows.append(generation_row("bundled tiny_shakespeare fp32", Engine.default(), min(args.tokens, 255), read))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--batch", type=int, default=5, help="also time matmul with this batch at the first size (0: skip)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--pool-mib", type=int, default=1024, help="weights cycled through per matvec size (>> last-level cache)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens generated per end-to-end row")
    args = parser.parse_args(argv)

    print(f"{cpu_name()}, numba {numba.__version__} with {numba.get_num_threads()} threads "
          f"({numba.threading_layer() if _sum(np.ones(1, np.float32)) else ''} layer), numpy {np.__version__}")
    copy, read = memory_rows()
    rows = [copy, read]
    for n in args.sizes:
        for dtype in args.dtypes:
            rows.append(matvec_row(dtype, n, args.repeats, args.pool_mib << 20))
    for dtype in args.dtypes if args.batch else []:
        rows.append(matvec_row(dtype, args.sizes[0], args.repeats, args.pool_mib << 20, batch=args.batch))
    for hook in _ROW_HOOKS:
        rows.extend(hook(args))
    print(format_table(rows, copy, read))
    return rows


if __name__ == "__main__":
    main()
