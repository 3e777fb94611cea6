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

Hooks for later rows: a function registered with `register_rows` returns more
`Row` objects (e.g. end-to-end tokens/s of the runtime, with the bytes one
token reads) that `main` measures and prints in the same table.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from numba import prange

from lpu import kernels
from lpu.quant import QuantizedTensor

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


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--batch", type=int, default=5, help="also time matmul with this batch at the first size (0: skip)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--pool-mib", type=int, default=1024, help="weights cycled through per matvec size (>> last-level cache)")
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
