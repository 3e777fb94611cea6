"""Symmetric int8 group quantisation (llama2.c's Q8_0): low-precision storage, fp32 scales.

A weight matrix (d_out, d_in) is cut along d_in into groups of ``group_size``
values; each group stores int8 values q and one fp32 scale s = max|w| / 127,
so w ~= q * s. Kernels accumulate q * x in fp32 and multiply by s once per
group. Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_GROUP_SIZE = 64  # llama2.c export.py's default for version 2
PRECISIONS = ("fp32", "fp16", "int8")  # weight storage the CPU kernels run; activations are always fp32


@dataclass(frozen=True)
class QuantizedTensor:
    """int8 values ``q`` (..., d_in) and fp32 ``scales`` (..., d_in // group_size)."""

    q: np.ndarray
    scales: np.ndarray
    group_size: int

    def __post_init__(self):
        if self.q.dtype != np.int8 or self.scales.dtype != np.float32:
            raise ValueError(f"QuantizedTensor needs int8 q and float32 scales, got {self.q.dtype} and {self.scales.dtype}")
        if self.q.shape[-1] % self.group_size or self.scales.shape != self.q.shape[:-1] + (self.q.shape[-1] // self.group_size,):
            raise ValueError(f"scales shape {self.scales.shape} does not match q shape {self.q.shape} with group_size {self.group_size}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.q.shape

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scales.nbytes

    def dequantize(self) -> np.ndarray:
        """float32 array of ``shape``."""
        g = self.q.reshape(self.q.shape[:-1] + (-1, self.group_size)).astype(np.float32)
        return (g * self.scales[..., None]).reshape(self.q.shape)


def quantize_int8(w: np.ndarray, group_size: int = DEFAULT_GROUP_SIZE) -> QuantizedTensor:
    """Quantise ``w`` (..., d_in) to int8 groups of ``group_size`` along the last axis."""
    w = np.asarray(w, dtype=np.float32)
    if w.shape[-1] % group_size:
        raise ValueError(f"last dimension {w.shape[-1]} is not a multiple of group_size {group_size}")
    g = w.reshape(w.shape[:-1] + (-1, group_size))
    scales = (np.abs(g).max(axis=-1) / 127.0).astype(np.float32)
    safe = np.where(scales == 0, 1.0, scales)
    q = np.round(g / safe[..., None]).astype(np.int8)
    return QuantizedTensor(q.reshape(w.shape), scales, group_size)


def to_precision(w: np.ndarray | QuantizedTensor, precision: str) -> np.ndarray | QuantizedTensor:
    """Weights ``w`` (..., d_in) stored at ``precision``: C-contiguous fp32 or fp16 arrays of their own, or int8
    groups (a `QuantizedTensor` stays as it is; an fp32 one gets llama2.c's groups of 64, or gcd(d_in, 64) where
    d_in needs smaller ones)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} for the CPU kernels; known: {', '.join(PRECISIONS)}")
    if isinstance(w, QuantizedTensor):
        if precision == "int8":
            return w
        w = w.dequantize()
    if precision == "int8":
        return quantize_int8(w, math.gcd(w.shape[-1], DEFAULT_GROUP_SIZE))
    dtype = np.float32 if precision == "fp32" else np.float16
    a = np.ascontiguousarray(w, dtype=dtype)
    return a if a.flags.writeable and not np.may_share_memory(a, w) else a.copy()  # never a view of a (read-only) memory map
