"""Linear layers for the CPU: out (T, d_out) = X (T, d_in) @ W.T in numba, llama2.c's matmul and more.

* Weights W are (d_out, d_in), row-major as in llama2.c: output i is row i
  dotted with x, so a kernel streams W once, its rows split over numba's
  threads (``prange``). One token reads every weight once: a matvec goes no
  faster than memory reads (``benchmarks/kernels.py`` measures how close).
* Activations are float32 and C-contiguous; accumulation is fp32.
* Public functions check shapes and dtypes and raise ``ValueError``; the
  ``_underscored`` numba kernels trust their inputs. ``out=`` lets the decode
  loop reuse its buffers.

Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import PARALLEL_MIN_BYTES, STREAM_MAX_ROW_BYTES, TEAM_MAX_ROWS, _check_f32, _chunks, _ijit, _jit, _out, _pjit, _silu, _to_f32, last_level_cache_bytes
from .panels import NO_PANELS, _panel_rows
from .quant import QuantizedTensor, to_precision

# ---- linear layers: out (T, d_out) = X (T, d_in) @ W.T, W (d_out, d_in) read once for all T rows ----
# Every storage precision is one layout: ``data`` (d_out, n_groups, G) with ``scales`` (d_out, n_groups):
# int8 groups of G weights share an fp32 scale (llama2.c's Q8_0); fp32 and fp16 are one group of
# G = d_in with scale 1 (exact). One token (decode): row by row, as run.c (pairs of rows, each load of x
# feeding two, were never faster on the 2-core AMD EPYC and up to 3x slower from DRAM: 32000x288 fp32, the
# stories15M classifier, 1.3 ms a row at a time against 4.0 ms in pairs; 4096x4096, 3.75 and 3.82 ms). T >= 2 tokens
# (prefill, speculative verification): a micro-kernel does 4 rows x 4 tokens, 16 sums in registers, so
# each weight load feeds 4 multiply-adds and each load of x 4 (+25% over 2 rows x 4 tokens on the EPYC,
# benchmarks/kernels.py's matmul rows). Rows go in blocks of 4 (a last block of 1-3 repeats its last row:
# same sums, written twice). 2-8 tokens through rows of at most `lpu.jit.STREAM_MAX_ROW_BYTES` go 2 rows at a time
# instead, 4 tokens per pass over the pair: 8 sums, half the tile's. Where the weights come from DRAM (the model exceeds
# the last-level cache: ``from_dram``, set by the Engine), 2-4 tokens go a row at a time instead, 4 (or 2) sums: pairs of
# rows from DRAM cost 2.4-4.1x one token on Zen 4, a row at a time 1.2-1.9x; from cache, pairs are 10-30% faster.
# With one thread no parallel region is opened at all. The Engine's fp32 matrices come with a copy in panels
# (`lpu.panels`), which 1-8 tokens read instead (``panels``; `lpu.panels.NO_PANELS`: none, as for the public functions).


@_ijit
def _tile4(d0, r0, s0, d1, r1, s1, d2, r2, s2, d3, r3, s3, X, b0, b1, b2, b3, o0, i0, o1, i1, o2, i2, o3, i3):
    """o_j[b, i_j] = s_j * X[b] . d_j[r_j, 0] for j = 0..3 and tokens b = b0, b1, b2, b3 (b3 == b2: three tokens): rows of
    d_j (rows, 1, d_in) stored (fp32 or fp16 bits), X (T, d_in) fp32. 16 sums in registers: each weight load feeds 4
    multiply-adds, each load of x 4."""
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = np.float32(0.0)
    for k in range(X.shape[1]):  # contiguous: vectorised
        u0, u1, u2, u3 = _to_f32(d0[r0, 0, k]), _to_f32(d1[r1, 0, k]), _to_f32(d2[r2, 0, k]), _to_f32(d3[r3, 0, k])
        x0, x1, x2, x3 = X[b0, k], X[b1, k], X[b2, k], X[b3, k]
        a00 += u0 * x0
        a01 += u0 * x1
        a02 += u0 * x2
        a03 += u0 * x3
        a10 += u1 * x0
        a11 += u1 * x1
        a12 += u1 * x2
        a13 += u1 * x3
        a20 += u2 * x0
        a21 += u2 * x1
        a22 += u2 * x2
        a23 += u2 * x3
        a30 += u3 * x0
        a31 += u3 * x1
        a32 += u3 * x2
        a33 += u3 * x3
    o0[b0, i0], o0[b1, i0], o0[b2, i0], o0[b3, i0] = a00 * s0, a01 * s0, a02 * s0, a03 * s0
    o1[b0, i1], o1[b1, i1], o1[b2, i1], o1[b3, i1] = a10 * s1, a11 * s1, a12 * s1, a13 * s1
    o2[b0, i2], o2[b1, i2], o2[b2, i2], o2[b3, i2] = a20 * s2, a21 * s2, a22 * s2, a23 * s2
    o3[b0, i3], o3[b1, i3], o3[b2, i3], o3[b3, i3] = a30 * s3, a31 * s3, a32 * s3, a33 * s3


@_ijit
def _tile2(d0, r0, s0, d1, r1, s1, d2, r2, s2, d3, r3, s3, X, b0, b1, o0, i0, o1, i1, o2, i2, o3, i3):
    """`_tile4` for the two tokens b0, b1 (b1 == b0: one token, written twice)."""
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = np.float32(0.0)
    for k in range(X.shape[1]):
        u0, u1, u2, u3 = _to_f32(d0[r0, 0, k]), _to_f32(d1[r1, 0, k]), _to_f32(d2[r2, 0, k]), _to_f32(d3[r3, 0, k])
        x0, x1 = X[b0, k], X[b1, k]
        a00 += u0 * x0
        a01 += u0 * x1
        a10 += u1 * x0
        a11 += u1 * x1
        a20 += u2 * x0
        a21 += u2 * x1
        a30 += u3 * x0
        a31 += u3 * x1
    o0[b0, i0], o0[b1, i0] = a00 * s0, a01 * s0
    o1[b0, i1], o1[b1, i1] = a10 * s1, a11 * s1
    o2[b0, i2], o2[b1, i2] = a20 * s2, a21 * s2
    o3[b0, i3], o3[b1, i3] = a30 * s3, a31 * s3


@_ijit
def _tile(d0, r0, s0, d1, r1, s1, d2, r2, s2, d3, r3, s3, X, o0, i0, o1, i1, o2, i2, o3, i3):
    """o_j[:, i_j] = s_j * X @ d_j[r_j, 0] for j = 0..3, X (T >= 2, d_in): tokens 4 at a time (`_tile4`; a last 3 with
    the third repeated), a last 1 or 2 in `_tile2` (a 4-token tile costs ~1.3 2-token ones: 512x192 fp32 from L2)."""
    T = X.shape[0]
    for b0 in range(0, T, 4):
        if T - b0 >= 3:
            b3 = min(b0 + 3, T - 1)
            _tile4(d0, r0, s0, d1, r1, s1, d2, r2, s2, d3, r3, s3, X, b0, b0 + 1, b0 + 2, b3, o0, i0, o1, i1, o2, i2, o3, i3)
        else:
            b1 = min(b0 + 1, T - 1)
            _tile2(d0, r0, s0, d1, r1, s1, d2, r2, s2, d3, r3, s3, X, b0, b1, o0, i0, o1, i1, o2, i2, o3, i3)


@_ijit
def _dot(data, scales, i, x):  # run.c's loop for one token: row i of data (d_out, 1, d_in) fp32/fp16 . x (d_in,)
    acc = np.float32(0.0)
    for k in range(x.shape[0]):  # contiguous: vectorised, several partial sums
        acc += _to_f32(data[i, 0, k]) * x[k]
    return acc * scales[i, 0]


@_ijit
def _pair4(data, i, j, X, b0, b1, b2, b3):
    """Rows i, j of data (d_out, 1, d_in) fp32/fp16 . X[b] for b = b0..b3 (unscaled): 8 sums, each weight load feeding 4
    multiply-adds and each load of x 2. Half the sums of a 4x4 tile, which LLVM's vectorised, interleaved loop spills:
    from L2 and L3 this pass took about half the tile's time on 192-wide rows (Rocket Lake Xeon, Zen 1 EPYC)."""
    a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = np.float32(0.0)
    for k in range(X.shape[1]):  # contiguous: vectorised
        u, v = _to_f32(data[i, 0, k]), _to_f32(data[j, 0, k])
        x0, x1, x2, x3 = X[b0, k], X[b1, k], X[b2, k], X[b3, k]
        a0 += u * x0
        a1 += u * x1
        a2 += u * x2
        a3 += u * x3
        c0 += v * x0
        c1 += v * x1
        c2 += v * x2
        c3 += v * x3
    return a0, a1, a2, a3, c0, c1, c2, c3


@_ijit
def _pair3(data, i, j, X, b0, b1, b2):  # `_pair4` for three tokens: 6 sums (a fourth, repeated, cost 20-25% more on Zen 4)
    a0 = a1 = a2 = c0 = c1 = c2 = np.float32(0.0)
    for k in range(X.shape[1]):
        u, v = _to_f32(data[i, 0, k]), _to_f32(data[j, 0, k])
        x0, x1, x2 = X[b0, k], X[b1, k], X[b2, k]
        a0 += u * x0
        a1 += u * x1
        a2 += u * x2
        c0 += v * x0
        c1 += v * x1
        c2 += v * x2
    return a0, a1, a2, c0, c1, c2


@_ijit
def _pair2(data, i, j, X, b0, b1):  # `_pair4` for two tokens
    a0 = a1 = c0 = c1 = np.float32(0.0)
    for k in range(X.shape[1]):
        u, v = _to_f32(data[i, 0, k]), _to_f32(data[j, 0, k])
        x0, x1 = X[b0, k], X[b1, k]
        a0 += u * x0
        a1 += u * x1
        c0 += v * x0
        c1 += v * x1
    return a0, a1, c0, c1


@_ijit
def _row4(data, i, X, b0, b1, b2, b3):  # row i of data (d_out, 1, d_in) fp32/fp16 . X[b] for b = b0..b3 (unscaled): 4 sums, one stream
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for k in range(X.shape[1]):
        u = _to_f32(data[i, 0, k])
        a0 += u * X[b0, k]
        a1 += u * X[b1, k]
        a2 += u * X[b2, k]
        a3 += u * X[b3, k]
    return a0, a1, a2, a3


@_ijit
def _row2(data, i, X, b0, b1):  # `_row4` for two tokens
    a0 = a1 = np.float32(0.0)
    for k in range(X.shape[1]):
        u = _to_f32(data[i, 0, k])
        a0 += u * X[b0, k]
        a1 += u * X[b1, k]
    return a0, a1


@_ijit
def _q8_dot(data, scales, i, x):  # row i of data (d_out, n_groups, G) int8 with scales (d_out, n_groups), x (n_groups, G) fp32
    acc = np.float32(0.0)
    for g in range(data.shape[1]):
        a = np.float32(0.0)
        for k in range(data.shape[2]):  # every index counts up from 0: vectorised
            a += _to_f32(data[i, g, k]) * x[g, k]
        acc += a * scales[i, g]  # llama2.c's Q8_0, with x kept in fp32 (runq.c rounds it to int8 too)
    return acc


@_ijit
def _rows4(da, sa, ia0, ia1, db, sb, ib0, ib1, X, oa, ob, buf):
    """oa[:, i] = X @ da[i] for i in (ia0, ia1), ob[:, i] = X @ db[i] for i in (ib0, ib1), X (T >= 2, d_in) fp32: rows of
    da, db (d_out, n_groups, G) with scales sa, sb (d_out, n_groups); buf (4, 1, d_in) fp32 scratch for int8 rows."""
    ng, G = da.shape[1], da.shape[2]
    if ng == 1:
        _tile(da, ia0, sa[ia0, 0], da, ia1, sa[ia1, 0], db, ib0, sb[ib0, 0], db, ib1, sb[ib1, 0], X, oa, ia0, oa, ia1, ob, ib0, ob, ib1)
    else:  # int8: dequantise the four rows once, then the fp32 tile
        for g in range(ng):
            for k in range(G):
                buf[0, 0, g * G + k] = _to_f32(da[ia0, g, k]) * sa[ia0, g]
                buf[1, 0, g * G + k] = _to_f32(da[ia1, g, k]) * sa[ia1, g]
                buf[2, 0, g * G + k] = _to_f32(db[ib0, g, k]) * sb[ib0, g]
                buf[3, 0, g * G + k] = _to_f32(db[ib1, g, k]) * sb[ib1, g]
        one = np.float32(1.0)
        _tile(buf, 0, one, buf, 1, one, buf, 2, one, buf, 3, one, X, oa, ia0, oa, ia1, ob, ib0, ob, ib1)


@_jit
def _few_rows(data, scales, X, out, lo, hi):  # `_linear_rows` for fp32/fp16 weights in short rows and 2 <= T <= 8 tokens
    T, last = X.shape[0], data.shape[0] - 1
    for i in range(4 * lo, min(4 * hi, last + 1), 2):  # rows in pairs (a last one alone paired with itself, written twice)
        j = min(i + 1, last)
        si, sj = scales[i, 0], scales[j, 0]
        for b0 in range(0, T, 4):  # 4 tokens per pass over the pair, a last 1-3 in a pass of their own
            n = min(T - b0, 4)
            if n == 4:
                a0, a1, a2, a3, c0, c1, c2, c3 = _pair4(data, i, j, X, b0, b0 + 1, b0 + 2, b0 + 3)
                out[b0, i], out[b0 + 1, i], out[b0 + 2, i], out[b0 + 3, i] = a0 * si, a1 * si, a2 * si, a3 * si
                out[b0, j], out[b0 + 1, j], out[b0 + 2, j], out[b0 + 3, j] = c0 * sj, c1 * sj, c2 * sj, c3 * sj
            elif n == 3:
                a0, a1, a2, c0, c1, c2 = _pair3(data, i, j, X, b0, b0 + 1, b0 + 2)
                out[b0, i], out[b0 + 1, i], out[b0 + 2, i] = a0 * si, a1 * si, a2 * si
                out[b0, j], out[b0 + 1, j], out[b0 + 2, j] = c0 * sj, c1 * sj, c2 * sj
            else:  # 1 or 2 tokens: a pass of 2 (one token twice)
                b1 = min(b0 + 1, T - 1)
                a0, a1, c0, c1 = _pair2(data, i, j, X, b0, b1)
                out[b0, i], out[b1, i], out[b0, j], out[b1, j] = a0 * si, a1 * si, c0 * sj, c1 * sj


@_jit
def _few_rows_from_dram(data, scales, X, out, lo, hi):  # `_few_rows` for 2-4 tokens where the weights come from DRAM
    T = X.shape[0]
    for i in range(4 * lo, min(4 * hi, data.shape[0])):  # a row at a time: one stream
        s = scales[i, 0]
        if T == 4:
            a0, a1, a2, a3 = _row4(data, i, X, 0, 1, 2, 3)
            out[0, i], out[1, i], out[2, i], out[3, i] = a0 * s, a1 * s, a2 * s, a3 * s
        else:  # 2 tokens, or 3: 2 then 1
            a0, a1 = _row2(data, i, X, 0, 1)
            out[0, i], out[1, i] = a0 * s, a1 * s
            if T == 3:
                out[2, i] = _dot(data, scales, i, X[2])


@_jit
def _linear_rows(data, scales, panels, X, out, lo, hi, from_dram):  # row blocks lo..hi-1 (rows 4 lo .. 4 hi - 1) of out (T, d_out) = X (T, d_in) @ W.T
    d_out, ng, G = data.shape
    last = d_out - 1
    if X.shape[0] <= TEAM_MAX_ROWS and panels.shape[0] > 0:  # 1-8 tokens through a matrix in panels (`lpu.panels`)
        _panel_rows(panels, X, out, 4 * lo, min(4 * hi, d_out))
        return
    if X.shape[0] == 1 and ng == 1:  # one token, fp32 or fp16: row by row, as run.c
        x = X[0]
        for i in range(4 * lo, min(4 * hi, d_out)):
            out[0, i] = _dot(data, scales, i, x)
        return
    if X.shape[0] == 1:  # one token, int8 groups: row by row (pairs cost int8 ~2x: the conversions fill the core)
        X3 = X.reshape(1, ng, G)
        for i in range(4 * lo, min(4 * hi, d_out)):
            out[0, i] = _q8_dot(data, scales, i, X3[0])
        return
    if X.shape[0] <= 8 and ng == 1 and G * data.itemsize <= STREAM_MAX_ROW_BYTES:  # a few tokens through short rows
        if from_dram and X.shape[0] <= 4:
            _few_rows_from_dram(data, scales, X, out, lo, hi)
        else:
            _few_rows(data, scales, X, out, lo, hi)
        return
    buf = np.empty((4, 1, X.shape[1]), np.float32)  # only here: an allocation per call costs a small model's decode ~5%
    for blk in range(lo, hi):
        i = 4 * blk
        _rows4(data, scales, i, min(i + 1, last), data, scales, min(i + 2, last), min(i + 3, last), X, out, out, buf)


@_pjit
def _linear_par(data, scales, panels, X, out, n_chunks, from_dram):
    n_blocks = (data.shape[0] + 3) // 4
    for c in prange(n_chunks):  # chunks of row blocks split over threads
        _linear_rows(data, scales, panels, X, out, c * n_blocks // n_chunks, (c + 1) * n_blocks // n_chunks, from_dram)


@_jit
def _linear(data, scales, panels, X, out, n_chunks, from_dram):  # data (d_out, n_groups, G), X (T, d_in) -> out (T, d_out)
    # panels: the same weights in `lpu.panels` layout, or `lpu.panels.NO_PANELS`
    n_blocks = (data.shape[0] + 3) // 4
    if n_chunks <= 1 or data.nbytes * X.shape[0] < PARALLEL_MIN_BYTES:  # one thread, or too little work: no parallel region
        _linear_rows(data, scales, panels, X, out, 0, n_blocks, from_dram)
    else:
        _linear_par(data, scales, panels, X, out, min(n_chunks, n_blocks), from_dram)


@_jit
def _ffn_rows(d1, s1, p1, d3, s3, p3, X, H1, H3, lo, hi, from_dram):  # H1 <- silu(X @ w1.T) * (X @ w3.T) for row blocks lo..hi-1 of w1, w3 (hidden, dim)
    _linear_rows(d1, s1, p1, X, H1, lo, hi, from_dram)
    _linear_rows(d3, s3, p3, X, H3, lo, hi, from_dram)
    for b in range(X.shape[0]):  # the gate, along each token's rows: vectorised (a column at a time strides through the cache)
        for j in range(4 * lo, min(4 * hi, d1.shape[0])):
            H1[b, j] = _silu(H1[b, j]) * H3[b, j]


@_pjit
def _ffn_par(d1, s1, p1, d3, s3, p3, X, H1, H3, n_chunks, from_dram):
    n_blocks = (d1.shape[0] + 3) // 4
    for c in prange(n_chunks):
        _ffn_rows(d1, s1, p1, d3, s3, p3, X, H1, H3, c * n_blocks // n_chunks, (c + 1) * n_blocks // n_chunks, from_dram)


@_jit
def _ffn_in(d1, s1, p1, d3, s3, p3, X, H1, H3, n_chunks, from_dram):
    n_blocks = (d1.shape[0] + 3) // 4
    if n_chunks <= 1 or 2 * d1.nbytes * X.shape[0] < PARALLEL_MIN_BYTES:
        _ffn_rows(d1, s1, p1, d3, s3, p3, X, H1, H3, 0, n_blocks, from_dram)
    else:
        _ffn_par(d1, s1, p1, d3, s3, p3, X, H1, H3, min(n_chunks, n_blocks), from_dram)


def stored(W: np.ndarray | QuantizedTensor) -> tuple[np.ndarray, np.ndarray]:
    """The arrays the kernels read for weights W (..., d_out, d_in) (fp32, fp16 or a `QuantizedTensor`):
    ``data`` (..., d_out, n_groups, G) in the storage precision (fp16 as its uint16 bits, a view where it
    can be) and fp32 ``scales`` (..., d_out, n_groups), ones for fp32 and fp16."""
    if isinstance(W, QuantizedTensor):
        return np.ascontiguousarray(W.q).reshape(W.q.shape[:-1] + (-1, W.group_size)), np.ascontiguousarray(W.scales)
    data = W if W.dtype == np.float32 else W.view(np.uint16)
    return data.reshape(W.shape[:-1] + (1, W.shape[-1])), np.ones(W.shape[:-1] + (1,), np.float32)


def _weight_arrays(fn, W):
    """((data, scales) for the kernels, (d_out, d_in)) of a weight matrix, or ValueError naming ``fn``."""
    if isinstance(W, QuantizedTensor):
        if W.q.ndim != 2:
            raise ValueError(f"{fn}: W must be 2-D (d_out, d_in), got a QuantizedTensor of shape {W.shape}")
        return stored(W), W.shape
    if not isinstance(W, np.ndarray) or W.ndim != 2:
        raise ValueError(f"{fn}: W must be a 2-D (d_out, d_in) numpy array or a QuantizedTensor, got {getattr(W, 'shape', type(W))}")
    if not W.flags.c_contiguous:
        raise ValueError(f"{fn}: W must be C-contiguous (row-major); use np.ascontiguousarray(W)")
    if W.dtype not in (np.float32, np.float16):
        raise ValueError(f"{fn}: W has dtype {W.dtype}; expected float32, float16 or a QuantizedTensor (int8)")
    return stored(W), W.shape


class Linear:
    """A weight matrix (d_out, d_in) stored at ``precision`` ("fp32", "fp16", "int8"; see
    `lpu.quant.to_precision`), its kernel arrays checked once; ``lin(x, out)`` computes ``out = W @ x``
    for x (d_in,) or, row by row, (T, d_in)."""

    def __init__(self, w: np.ndarray | QuantizedTensor, precision: str):
        self.w = to_precision(w, precision)
        (self.data, self.scales), self.shape = _weight_arrays("Linear", self.w)
        self.nbytes = self.w.nbytes
        self.from_dram = self.nbytes > last_level_cache_bytes()  # beyond the cache on its own, at least

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        _linear(self.data, self.scales, NO_PANELS, x.reshape(-1, self.shape[1]), out.reshape(-1, self.shape[0]), _chunks(), self.from_dram)
        return out



def matvec(W, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``W @ x`` for W (d_out, d_in) float32, float16 or int8 `QuantizedTensor`; x (d_in,) float32 -> (d_out,)."""
    (data, scales), (d_out, d_in) = _weight_arrays("matvec", W)
    if not isinstance(x, np.ndarray) or x.shape != (d_in,):
        raise ValueError(f"matvec: W has shape {(d_out, d_in)} but x has shape {getattr(x, 'shape', None)}; expected x of shape {(d_in,)}")
    _check_f32("matvec", "x", x)
    out = _out("matvec", out, (d_out,), x)
    _linear(data, scales, NO_PANELS, x.reshape(1, d_in), out.reshape(1, d_out), _chunks(), False)  # one token: read row by row either way
    return out


def matmul(W, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X @ W.T`` for a batch X (B, d_in) float32 -> (B, d_out); W as in `matvec`, streamed once."""
    (data, scales), (d_out, d_in) = _weight_arrays("matmul", W)
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != d_in:
        raise ValueError(f"matmul: W has shape {(d_out, d_in)} but X has shape {getattr(X, 'shape', None)}; expected X of shape (B, {d_in})")
    _check_f32("matmul", "X", X)
    out = _out("matmul", out, (X.shape[0], d_out), X)
    _linear(data, scales, NO_PANELS, X, out, _chunks(), data.nbytes > last_level_cache_bytes())
    return out

