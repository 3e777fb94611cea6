#!/usr/bin/env python3
"""Microbenchmarks behind two constants of the GPU baseline (lpu/gpu.py), run on a lent GPU.

    python3 scripts/gpu_microbench.py          # needs a CUDA GPU and PyTorch

1. ``hbm_efficiency``: bf16 matrix-vector products (cuBLAS GEMV through
   torch.matmul, batch 1) over Llama-sized weight matrices, each call reading a
   different matrix from a pool far larger than the L2 cache; weight bytes per
   second as a share of the GPU's peak HBM bandwidth (lpu.hardware), next to a
   large device-to-device copy.
2. ``layer_overhead_s``: the time per kernel of a CUDA graph of many tiny
   kernels (the gaps a decode step pays between its small per-layer kernels).

These are microbenchmarks, not end-to-end decode: the end-to-end GPU rows of
lpu/data/published.csv stay validation data. Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics

import torch


def timed(fn, n=20, warmup=3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def copy_GBps(nbytes: int = 2 << 30) -> float:
    src = torch.empty(nbytes // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    return 2 * nbytes / timed(lambda: dst.copy_(src)) / 1e9  # bytes read + written


def gemv_GBps(rows: int, cols: int, pool_bytes: int = 4 << 30) -> float:
    """Weight bytes per second of bf16 (rows, cols) @ (cols, 1), a different matrix each call."""
    pool = [torch.randn(rows, cols, device="cuda", dtype=torch.bfloat16) for _ in range(max(2, pool_bytes // (rows * cols * 2)))]
    x = torch.randn(cols, 1, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: [w @ x for w in pool], n=10) / len(pool)
    return rows * cols * 2 / t / 1e9


def tiny_kernel_s(kernels: int = 1000) -> float:
    """Seconds per kernel of a CUDA graph of ``kernels`` tiny element-wise kernels."""
    small = torch.zeros(4096, device="cuda")
    g, stream = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            small.add_(1.0)
        g.capture_begin()
        for _ in range(kernels):
            small.add_(1.0)
        g.capture_end()
    torch.cuda.synchronize()
    return timed(g.replay, n=20) / kernels


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("scripts/gpu_microbench.py needs a CUDA GPU")
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "copy_GBps_read_plus_write": copy_GBps(),
           "gemv_bf16_GBps": {f"{r}x{c}": gemv_GBps(r, c) for r, c in [(4096, 4096), (11008, 4096), (8192, 8192), (28672, 8192)]},
           "graph_tiny_kernel_s": tiny_kernel_s()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
