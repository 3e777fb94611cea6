"""CPU kernels for Llama token generation: llama2.c's run.c / runq.c in numba.

Read top to bottom: the linear layer that dominates decoding (fp32, fp16
storage, int8 groups; one token or a batch of them), the cheap vector kernels
of a layer (rmsnorm, rope, attention, swiglu, softmax), the whole forward pass
of a model as one compiled call, and the sampler.
Introduced in ``notebooks/03_token_generation.ipynb``.

* Activations are float32 and C-contiguous; accumulation is fp32.
* Weights W are (d_out, d_in), row-major as in llama2.c: output i is row i
  dotted with x, so a kernel streams W once, its rows split over numba's
  threads (``prange``). One token reads every weight once: a matvec goes no
  faster than memory reads (``benchmarks/kernels.py`` measures how close).
* Public functions check shapes and dtypes and raise ``ValueError``; the
  ``_underscored`` numba kernels trust their inputs. ``out=`` lets the decode
  loop reuse its buffers. Compiled code is cached on disk (``cache=True``):
  a fresh checkout compiles each kernel once (~0.5 s each), later runs load it.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import math
import os

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from .quant import QuantizedTensor, to_precision

# Threading layer: TBB, the one both fork-safe (after GNU OpenMP, numba's default here, has run a parallel kernel, a
# forked child dies, so a multiprocessing pool hangs) and thread-safe (lpu serve runs kernels from several threads at
# once; workqueue aborts on that). PyPI's tbb puts libtbb in <prefix>/lib, which the loader does not search in a venv:
# load it by path first (numba/numba#6108). A layer the user chose (NUMBA_THREADING_LAYER) wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    try:
        for _lib in importlib.metadata.files("tbb") or ():
            if _lib.name.startswith("libtbb.so."):
                ctypes.CDLL(str(_lib.locate()), mode=ctypes.RTLD_GLOBAL)
                break
    except (importlib.metadata.PackageNotFoundError, OSError):
        pass  # conda's tbb sits where its Python finds it
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (raises where TBB cannot load)

        numba.config.THREADING_LAYER = "safe"
    except ImportError:
        pass  # no TBB on this platform: numba's default layer (thread-safe, not always fork-safe)

# All the jit flags, in one place. This fastmath subset lets LLVM reorder float sums
# (vectorised reductions with several partial sums) and fuse multiply-adds, but unlike
# fastmath=True keeps inf and NaN working: masked logits of -inf stay correct.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH)
_jit = numba.njit(**_JIT)
_pjit = numba.njit(**_JIT, parallel=True)  # for loops over prange
_ijit = numba.njit(**_JIT, inline="always")  # micro-kernels called once per row pair: inlined where they are called


@intrinsic
def _to_f32(typingctx, v):
    """A stored weight as float32: fp32 as is, fp16 bits (uint16) widened exactly (``vcvtph2ps`` on
    x86), int8 converted. numba has no CPU float16 type, so fp16 weights reach the kernels as their
    uint16 bit patterns; one kernel body then serves the three storage precisions."""
    if v == types.float32:
        return types.float32(v), lambda context, builder, signature, args: args[0]
    if v == types.uint16:
        return types.float32(v), lambda context, builder, signature, args: builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    if v == types.int8:
        return types.float32(v), lambda context, builder, signature, args: builder.sitofp(args[0], ir.FloatType())
    return None


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    if bits != types.int32:
        return None
    return types.float32(bits), lambda context, builder, signature, args: builder.bitcast(args[0], ir.FloatType())


@_jit
def _exp(x):
    """e**x in float32 for x <= 0 (softmax after subtracting the maximum), within ~2 ulp of ``math.exp``: the
    range-reduced Taylor series, so that loops of it vectorise (a libm call per element does not; numba
    has no vector exp without Intel's SVML). Below -87 (e**x < 2**-126) it returns 0."""
    n = math.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))  # x = n ln2 + r, |r| <= ln2 / 2
    r = x - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)  # ln2 in two parts: r exact
    p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
        np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))  # error ~r**7/5040 < 1.2e-7
    scale = _f32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))  # 2**n
    return p * scale if x > np.float32(-87.0) else np.float32(0.0)


# ---- linear layers: out (T, d_out) = X (T, d_in) @ W.T, W (d_out, d_in) read once for all T rows ----
# Every storage precision is one layout: ``data`` (d_out, n_groups, G) with ``scales`` (d_out, n_groups):
# int8 groups of G weights share an fp32 scale (llama2.c's Q8_0); fp32 and fp16 are one group of
# G = d_in with scale 1 (exact). Rows go in pairs (an odd last row is done twice): each load of x
# feeds two rows, two weight streams are in flight per core (+20% on an AMD EPYC and an Intel Xeon).
# With T >= 2 tokens (prefill, speculative verification) a micro-kernel does 2 rows x 4 tokens, so
# each weight load feeds 4 multiply-adds. With one thread no parallel region is opened at all.


@_ijit
def _tile(da, ra, sa, db, rb, sb, X, oa, ia, ob, ib):
    """oa[:, ia] = sa * X @ da[ra, 0], ob[:, ib] = sb * X @ db[rb, 0] for rows of da, db (rows, 1, d_in) stored (fp32 or fp16
    bits), X (T >= 2, d_in) fp32. Tokens go 4 at a time; a last group of 2 or 3 repeats its last token (same sums, written twice)."""
    T, d_in = X.shape
    for b0 in range(0, T, 4):
        b1, b2, b3 = min(b0 + 1, T - 1), min(b0 + 2, T - 1), min(b0 + 3, T - 1)
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
        for k in range(d_in):  # contiguous: vectorised; 8 sums in registers, each weight load feeds 4 multiply-adds
            u, w = _to_f32(da[ra, 0, k]), _to_f32(db[rb, 0, k])
            x0, x1, x2, x3 = X[b0, k], X[b1, k], X[b2, k], X[b3, k]
            a00 += u * x0
            a01 += u * x1
            a02 += u * x2
            a03 += u * x3
            a10 += w * x0
            a11 += w * x1
            a12 += w * x2
            a13 += w * x3
        oa[b0, ia], oa[b1, ia], oa[b2, ia], oa[b3, ia] = a00 * sa, a01 * sa, a02 * sa, a03 * sa
        ob[b0, ib], ob[b1, ib], ob[b2, ib], ob[b3, ib] = a10 * sb, a11 * sb, a12 * sb, a13 * sb


@_ijit
def _dot2(da, sa, ia, db, sb, ib, x):  # run.c's loop for one token: rows ia of da and ib of db (d_out, 1, d_in) fp32/fp16 . x (d_in,)
    acc0 = acc1 = np.float32(0.0)
    for k in range(x.shape[0]):  # contiguous: vectorised, several partial sums per row
        acc0 += _to_f32(da[ia, 0, k]) * x[k]
        acc1 += _to_f32(db[ib, 0, k]) * x[k]
    return acc0 * sa[ia, 0], acc1 * sb[ib, 0]


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
def _rows2(da, sa, ia, db, sb, ib, X, oa, ob, buf):
    """oa[:, ia] = X @ da[ia], ob[:, ib] = X @ db[ib] for X (T >= 2, d_in) fp32: rows of da, db (d_out, n_groups, G)
    with scales sa, sb (d_out, n_groups); buf (2, 1, d_in) fp32 scratch (one token goes through `_dot2` or `_q8_dot`)."""
    ng, G = da.shape[1], da.shape[2]
    if ng == 1:
        _tile(da, ia, sa[ia, 0], db, ib, sb[ib, 0], X, oa, ia, ob, ib)
    else:  # int8: dequantise the two rows once, then the fp32 tile
        for g in range(ng):
            for k in range(G):
                buf[0, 0, g * G + k] = _to_f32(da[ia, g, k]) * sa[ia, g]
                buf[1, 0, g * G + k] = _to_f32(db[ib, g, k]) * sb[ib, g]
        _tile(buf, 0, np.float32(1.0), buf, 1, np.float32(1.0), X, oa, ia, ob, ib)


@_jit
def _linear_rows(data, scales, X, out, lo, hi):  # row pairs lo..hi-1 of out (T, d_out) = X (T, d_in) @ W.T
    d_out, ng, G = data.shape
    buf, X3 = np.empty((2, 1, X.shape[1]), np.float32), X.reshape(X.shape[0], ng, G)
    if X.shape[0] == 1 and ng == 1:  # one token, fp32 or fp16
        for p in range(lo, hi):
            i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
            out[0, i0], out[0, i1] = _dot2(data, scales, i0, data, scales, i1, X[0])
        return
    if X.shape[0] == 1:  # one token, int8 groups: row by row (pairs cost int8 ~2x: the conversions fill the core)
        for i in range(2 * lo, min(2 * hi, d_out)):
            out[0, i] = _q8_dot(data, scales, i, X3[0])
        return
    for p in range(lo, hi):  # rows in pairs: each load of x feeds two rows; an odd last row is done twice
        i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
        _rows2(data, scales, i0, data, scales, i1, X, out, out, buf)


@_pjit
def _linear_par(data, scales, X, out, n_chunks):
    n_pairs = (data.shape[0] + 1) // 2
    for c in prange(n_chunks):  # chunks of row pairs split over threads
        _linear_rows(data, scales, X, out, c * n_pairs // n_chunks, (c + 1) * n_pairs // n_chunks)


@_jit
def _linear(data, scales, X, out, n_chunks):  # data (d_out, n_groups, G), X (T, d_in) -> out (T, d_out)
    n_pairs = (data.shape[0] + 1) // 2
    if n_chunks <= 1:  # one thread: no parallel region to open
        _linear_rows(data, scales, X, out, 0, n_pairs)
    else:
        _linear_par(data, scales, X, out, min(n_chunks, n_pairs))


@_jit
def _ffn_rows(d1, s1, d3, s3, X, H1, H3, lo, hi):  # H1 <- silu(X @ w1.T) * (X @ w3.T) for rows lo..hi-1 of w1, w3 (hidden, dim)
    buf, X3 = np.empty((2, 1, X.shape[1]), np.float32), X.reshape(X.shape[0], d1.shape[1], d1.shape[2])
    for i in range(lo, hi):  # row i of w1 and row i of w3 as the pair: the gate is ready as soon as both are
        if X.shape[0] == 1 and d1.shape[1] == 1:  # one token, fp32 or fp16
            H1[0, i], H3[0, i] = _dot2(d1, s1, i, d3, s3, i, X[0])
        elif X.shape[0] == 1:  # one token, int8 groups
            H1[0, i], H3[0, i] = _q8_dot(d1, s1, i, X3[0]), _q8_dot(d3, s3, i, X3[0])
        else:
            _rows2(d1, s1, i, d3, s3, i, X, H1, H3, buf)
        for b in range(X.shape[0]):
            v = H1[b, i]
            H1[b, i] = v / (np.float32(1.0) + np.exp(-v)) * H3[b, i]


@_pjit
def _ffn_par(d1, s1, d3, s3, X, H1, H3, n_chunks):
    hidden = d1.shape[0]
    for c in prange(n_chunks):
        _ffn_rows(d1, s1, d3, s3, X, H1, H3, c * hidden // n_chunks, (c + 1) * hidden // n_chunks)


@_jit
def _ffn_in(d1, s1, d3, s3, X, H1, H3, n_chunks):
    if n_chunks <= 1:
        _ffn_rows(d1, s1, d3, s3, X, H1, H3, 0, d1.shape[0])
    else:
        _ffn_par(d1, s1, d3, s3, X, H1, H3, min(n_chunks, d1.shape[0]))


def _chunks() -> int:
    """Chunks a linear layer's rows are cut into: one with one thread (no scheduling), else 4 per thread."""
    n = numba.get_num_threads()
    return 1 if n == 1 else 4 * n


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

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        _linear(self.data, self.scales, x.reshape(-1, self.shape[1]), out.reshape(-1, self.shape[0]), _chunks())
        return out


def _check_f32(fn, name, a, shape=None, expected=None):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a float32 numpy array, got {type(a).__name__}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {expected or shape}")
    if a.dtype != np.float32:
        raise ValueError(f"{fn}: {name} has dtype {a.dtype}; expected float32")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous; use np.ascontiguousarray")


def _out(fn, out, shape, *inputs):
    if out is None:
        return np.empty(shape, np.float32)
    _check_f32(fn, "out", out, shape)
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")
    for a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError(f"{fn}: out must not overlap the inputs")
    return out


def matvec(W, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``W @ x`` for W (d_out, d_in) float32, float16 or int8 `QuantizedTensor`; x (d_in,) float32 -> (d_out,)."""
    (data, scales), (d_out, d_in) = _weight_arrays("matvec", W)
    if not isinstance(x, np.ndarray) or x.shape != (d_in,):
        raise ValueError(f"matvec: W has shape {(d_out, d_in)} but x has shape {getattr(x, 'shape', None)}; expected x of shape {(d_in,)}")
    _check_f32("matvec", "x", x)
    out = _out("matvec", out, (d_out,), x)
    _linear(data, scales, x.reshape(1, d_in), out.reshape(1, d_out), _chunks())
    return out


def matmul(W, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X @ W.T`` for a batch X (B, d_in) float32 -> (B, d_out); W as in `matvec`, streamed once."""
    (data, scales), (d_out, d_in) = _weight_arrays("matmul", W)
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != d_in:
        raise ValueError(f"matmul: W has shape {(d_out, d_in)} but X has shape {getattr(X, 'shape', None)}; expected X of shape (B, {d_in})")
    _check_f32("matmul", "X", X)
    out = _out("matmul", out, (X.shape[0], d_out), X)
    _linear(data, scales, X, out, _chunks())
    return out


# ---- the vector kernels of one layer ------------------------------------------------


@_jit
def _rmsnorm(x, weight, eps, out):  # x, out (B, d); weight (d,)
    for b in range(x.shape[0]):
        ss = np.float32(0.0)
        for j in range(x.shape[1]):
            ss += x[b, j] * x[b, j]
        inv = np.float32(1.0 / math.sqrt(ss / x.shape[1] + eps))
        for j in range(x.shape[1]):  # out may be x itself
            out[b, j] = weight[j] * (inv * x[b, j])


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float = 1e-5, out: np.ndarray | None = None) -> np.ndarray:
    """``weight * x / sqrt(mean(x**2) + eps)`` over the last axis of x (d,) or (B, d); ``out=x`` is allowed."""
    _check_f32("rmsnorm", "x", x)
    if x.ndim not in (1, 2):
        raise ValueError(f"rmsnorm: x has shape {x.shape}; expected (d,) or (B, d)")
    _check_f32("rmsnorm", "weight", weight, (x.shape[-1],))
    if out is None:
        out = np.empty_like(x)
    elif out is not x:
        out = _out("rmsnorm", out, x.shape, weight)
    x2, out2 = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    _rmsnorm(x2, weight, float(eps), out2)
    return out


@_jit
def _rope_table(pos0, head_dim, theta, cos, sin):  # cos, sin (n, head_dim // 2): positions pos0 .. pos0 + n - 1
    for t in range(cos.shape[0]):
        for i in range(0, head_dim, 2):  # pair (i, i+1) of every head turns by pos * theta**(-i / head_dim)
            angle = (pos0 + t) * theta ** (-i / head_dim)  # float64, as accurate at pos 8192 as at pos 0
            cos[t, i // 2], sin[t, i // 2] = np.float32(math.cos(angle)), np.float32(math.sin(angle))


def rope_table(positions: int, head_dim: int, theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (positions, head_dim // 2) float32 of the angles `rope` turns each pair by, for positions 0..positions-1."""
    cos, sin = np.empty((positions, head_dim // 2), np.float32), np.empty((positions, head_dim // 2), np.float32)
    _rope_table(0, int(head_dim), float(theta), cos, sin)
    return cos, sin


@_jit
def _rope(Q, K, pos0, cos, sin):  # Q (T, n_heads * hd), K (T, n_kv_heads * hd): row t at position pos0 + t
    half = cos.shape[1]
    for t in range(Q.shape[0]):
        for i in range(half):
            c, s = cos[pos0 + t, i], sin[pos0 + t, i]
            for j in range(2 * i, Q.shape[1], 2 * half):
                v0, v1 = Q[t, j], Q[t, j + 1]
                Q[t, j], Q[t, j + 1] = v0 * c - v1 * s, v0 * s + v1 * c
            for j in range(2 * i, K.shape[1], 2 * half):
                v0, v1 = K[t, j], K[t, j + 1]
                K[t, j], K[t, j + 1] = v0 * c - v1 * s, v0 * s + v1 * c


def rope(q: np.ndarray, k: np.ndarray, pos: int, head_dim: int, theta: float = 10000.0) -> None:
    """Rotary embedding in place, llama2.c's convention: q (n_heads * head_dim,), k (n_kv_heads * head_dim,);
    the adjacent pair (2i, 2i+1) of each head turns by ``pos * theta ** (-2i / head_dim)`` radians."""
    if not isinstance(head_dim, (int, np.integer)) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"rope: head_dim must be a positive even integer, got {head_dim!r}")
    if not isinstance(pos, (int, np.integer)) or pos < 0:
        raise ValueError(f"rope: pos must be a non-negative integer, got {pos!r}")
    for name, v in (("q", q), ("k", k)):
        _check_f32("rope", name, v)
        if v.ndim != 1 or v.shape[0] % head_dim:
            raise ValueError(f"rope: {name} has shape {v.shape}; expected (n_heads * head_dim,) with head_dim={head_dim}")
    cos, sin = np.empty((1, head_dim // 2), np.float32), np.empty((1, head_dim // 2), np.float32)
    _rope_table(int(pos), int(head_dim), float(theta), cos, sin)
    _rope(q.reshape(1, -1), k.reshape(1, -1), 0, cos, sin)


@_jit
def _attend(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, lo, hi):
    # items lo..hi-1, item th = (row t, query head h), of Q, out (T, n_heads * head_dim): row t is the token at
    # pos0 + t, attending causally over cache positions 0..pos0 + t. The caches are transposed, (kv_dim, seq_len):
    # position runs along the rows, so each loop below runs over contiguous positions and vectorises even for a
    # head_dim of 8. att (T * n_heads, >= pos0 + T): scratch for the scores.
    T = Q.shape[0]
    kv_dim, seq_len = k_cache.shape
    head_dim = kv_dim // n_kv_heads
    n_heads = Q.shape[1] // head_dim
    q, o = Q.reshape(T, n_heads, head_dim), out.reshape(T, n_heads, head_dim)
    kc, vc = k_cache.reshape(n_kv_heads, head_dim, seq_len), v_cache.reshape(n_kv_heads, head_dim, seq_len)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for th in range(lo, hi):
        t, h = th // n_heads, th % n_heads
        g, n = h // (n_heads // n_kv_heads), pos0 + t + 1  # the KV head query head h reads (GQA); positions it sees
        s = att[th, :n]
        s[:] = 0.0
        for d in range(head_dim):  # scores against every cached key, 0..pos
            qd = q[t, h, d] * scale
            for p in range(n):
                s[p] += qd * kc[g, d, p]
        m = -np.inf
        for p in range(n):
            m = max(m, s[p])
        total = np.float32(0.0)
        for p in range(n):  # softmax
            s[p] = _exp(s[p] - m)
            total += s[p]
        inv = np.float32(1.0) / total
        for d in range(head_dim):  # weighted sum of the values
            acc = np.float32(0.0)
            for p in range(n):
                acc += s[p] * vc[g, d, p]
            o[t, h, d] = acc * inv


@_pjit
def _attention_par(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, items):
    for th in prange(items):
        _attend(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, th, th + 1)


@_jit
def _attention(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, n_chunks):
    items = Q.shape[0] * (Q.shape[1] // (k_cache.shape[0] // n_kv_heads))  # rows x query heads
    if n_chunks <= 1:
        _attend(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, 0, items)
    else:
        _attention_par(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, items)


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos: int, n_kv_heads: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Grouped-query attention of the token at ``pos`` over cached positions 0..pos (inclusive).

    Cache layout (run.c's, one layer): ``k_cache``, ``v_cache`` (seq_len, kv_dim) float32, row t
    holding token t's keys (values), kv head g at columns ``g*head_dim:(g+1)*head_dim``, with
    ``head_dim = kv_dim // n_kv_heads``; a model's (n_layers, seq_len, kv_dim) cache passes
    ``k_cache[layer]``. Query head h of q (n_heads * head_dim,) reads kv head
    ``h // (n_heads // n_kv_heads)``; scores are scaled by 1/sqrt(head_dim). Returns q's shape.
    (The Engine keeps its caches transposed, (kv_dim, seq_len), as the kernel reads them.)
    """
    _check_f32("attention", "k_cache", k_cache)
    if k_cache.ndim != 2:
        raise ValueError(f"attention: k_cache has shape {k_cache.shape}; expected (seq_len, kv_dim)")
    _check_f32("attention", "v_cache", v_cache, k_cache.shape, f"{k_cache.shape} like k_cache")
    seq_len, kv_dim = k_cache.shape
    if not isinstance(n_kv_heads, (int, np.integer)) or n_kv_heads < 1 or kv_dim % n_kv_heads:
        raise ValueError(f"attention: kv_dim {kv_dim} is not a multiple of n_kv_heads={n_kv_heads!r}")
    head_dim = kv_dim // n_kv_heads
    _check_f32("attention", "q", q)
    if q.ndim != 1 or q.shape[0] % kv_dim:
        raise ValueError(f"attention: q has shape {q.shape}; expected (n_heads * {head_dim},) with n_heads a multiple of n_kv_heads={n_kv_heads}")
    if not isinstance(pos, (int, np.integer)) or not 0 <= pos < seq_len:
        raise ValueError(f"attention: pos {pos!r} is outside the cache's 0..{seq_len - 1}")
    out = _out("attention", out, q.shape, q, k_cache, v_cache)
    att = np.empty((q.shape[0] // head_dim, pos + 1), np.float32)
    kt, vt = np.ascontiguousarray(k_cache[: pos + 1].T), np.ascontiguousarray(v_cache[: pos + 1].T)  # positions after pos: never read
    _attention(q.reshape(1, -1), kt, vt, int(pos), int(n_kv_heads), out.reshape(1, -1), att, _chunks())
    return out


@_jit
def _swiglu(h1, h3):  # h1, h3 (n,): h1 <- silu(h1) * h3
    for i in range(h1.shape[0]):
        v = h1[i]
        h1[i] = v / (np.float32(1.0) + np.exp(-v)) * h3[i]


def swiglu(h1: np.ndarray, h3: np.ndarray) -> np.ndarray:
    """``h1 = silu(h1) * h3`` in place (the FFN's gate), h1 and h3 of the same shape; returns h1."""
    _check_f32("swiglu", "h1", h1)
    _check_f32("swiglu", "h3", h3, h1.shape, f"{h1.shape} like h1")
    _swiglu(h1.reshape(-1), h3.reshape(-1))
    return h1


@_jit
def _softmax(x):  # x (n,), in place
    m = -np.inf
    for i in range(x.shape[0]):
        m = max(m, x[i])
    total = np.float32(0.0)
    for i in range(x.shape[0]):
        x[i] = math.exp(x[i] - m)  # max first: no overflow
        total += x[i]
    inv = np.float32(1.0) / total
    for i in range(x.shape[0]):
        x[i] *= inv


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-D float32 array, in place; returns x."""
    _check_f32("softmax", "x", x)
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"softmax: x has shape {x.shape}; expected a non-empty 1-D array")
    _softmax(x)
    return x


# ---- a whole forward pass in one call ----------------------------------------------
# Decoding a small model is dominated by the cost of calling kernels, not by the kernels: one
# compiled call per forward pass, with every buffer preallocated, replaces ~17 calls per layer.


@_jit
def _forward(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, wcls, scls, k_cache, v_cache, cos, sin, eps,
             n_kv_heads, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
    """Feed ``tokens`` (T,) at positions pos0 .. pos0 + T - 1 (causal, one chunk): the KV caches (L, kv_dim,
    seq_len) take their keys and values, ``logits[:n_logits]`` the logits of the last n_logits positions.
    W, S: the 7 stacked matrices (wq, wk, wv, wo, w1, w2, w3), each (L, d_out, n_groups, G), and their
    scales; buffers of >= T rows. The ops of ``lpu.graph.prefill(model, T)`` (T = 1: ``graph.decode``)."""
    T = tokens.shape[0]
    x, xb, xo, q, k, v, ao, h1, h3 = X[:T], XB[:T], XO[:T], Q[:T], K[:T], V[:T], AO[:T], H1[:T], H3[:T]
    wq, wk, wv, wo, w1, w2, w3 = W
    sq, sk, sv, so, s1, s2, s3 = S
    for t in range(T):
        x[t] = emb[tokens[t]]
    for layer in range(rms_att.shape[0]):
        _rmsnorm(x, rms_att[layer], eps, xb)
        _linear(wq[layer], sq[layer], xb, q, n_chunks)
        _linear(wk[layer], sk[layer], xb, k, n_chunks)
        _linear(wv[layer], sv[layer], xb, v, n_chunks)
        _rope(q, k, pos0, cos, sin)
        for t in range(T):  # the caches are (L, kv_dim, seq_len): see _attend
            k_cache[layer, :, pos0 + t] = k[t]
            v_cache[layer, :, pos0 + t] = v[t]
        _attention(q, k_cache[layer], v_cache[layer], pos0, n_kv_heads, ao, att, n_chunks)  # attn_scores, softmax, attn_values
        _linear(wo[layer], so[layer], ao, xo, n_chunks)
        x += xo
        _rmsnorm(x, rms_ffn[layer], eps, xb)
        _ffn_in(w1[layer], s1[layer], w3[layer], s3[layer], xb, h1, h3, n_chunks)  # w1, w3, swiglu
        _linear(w2[layer], s2[layer], h1, xo, n_chunks)
        x += xo
    _rmsnorm(x[T - n_logits:], rms_final, eps, xb[T - n_logits:])  # the classifier only where a token is sampled
    _linear(wcls, scls, xb[T - n_logits:], logits[:n_logits], n_chunks)


# ---- sampling ---------------------------------------------------------------------


def probabilities(logits: np.ndarray, temperature: float = 0.0, top_p: float = 1.0) -> np.ndarray:
    """The distribution (vocab_size,) float64 that `sample` draws from: one-hot at the argmax for
    ``temperature == 0``, else ``softmax(logits / temperature)`` cut to the nucleus of ``top_p`` and renormalised."""
    if not isinstance(logits, np.ndarray) or logits.ndim != 1 or logits.shape[0] == 0:
        raise ValueError(f"probabilities: logits has shape {getattr(logits, 'shape', None)}; expected a non-empty 1-D array")
    out = np.zeros(logits.shape[0], np.float64)
    if temperature == 0:
        out[int(np.argmax(logits))] = 1.0
        return out
    probs = softmax((logits / np.float32(temperature)).astype(np.float32))
    idx = _nucleus(probs, top_p)
    out[idx] = probs[idx]
    return out / out.sum()


def _nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """run.c's sample_topp cut: ids of the most likely tokens, most likely first (ties by index), up to the
    first whose cumulative probability exceeds top_p; every id when top_p == 1."""
    n = probs.shape[0]
    if top_p >= 1 or n == 1:
        return np.arange(n)
    cutoff = (1.0 - top_p) / (n - 1)  # a token below this cannot be in the nucleus
    idx = np.flatnonzero(probs >= cutoff)
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    cdf = np.cumsum(probs[idx], dtype=np.float64)
    return idx[: min(int(np.searchsorted(cdf, top_p, side="right")), len(idx) - 1) + 1]


def sample(logits: np.ndarray, temperature: float = 0.0, top_p: float = 1.0, rng: np.random.Generator | None = None) -> int:
    """Next token id from ``logits`` (vocab_size,), as run.c's sampler; ``logits`` is not modified.

    ``temperature == 0``: greedy argmax (ties: lowest index). Otherwise ``softmax(logits /
    temperature)``, cut to the nucleus if ``top_p < 1`` (the most likely tokens up to the first
    whose cumulative probability exceeds top_p), and one ``rng.random()`` coin picks among them:
    ``rng`` must be a ``numpy.random.Generator`` (``np.random.default_rng(seed)``), for reproducibility.
    """
    if not isinstance(logits, np.ndarray) or logits.ndim != 1 or logits.shape[0] == 0:
        raise ValueError(f"sample: logits has shape {getattr(logits, 'shape', None)}; expected a non-empty 1-D array")
    if not temperature >= 0:
        raise ValueError(f"sample: temperature must be >= 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"sample: top_p must be in (0, 1], got {top_p!r}")
    if temperature == 0:
        return int(np.argmax(logits))  # first maximum
    if not isinstance(rng, np.random.Generator):
        raise ValueError("sample: temperature > 0 needs rng=np.random.default_rng(seed)")
    probs = softmax((logits / np.float32(temperature)).astype(np.float32))
    coin = rng.random()
    n = probs.shape[0]
    if top_p < 1 and n > 1:  # run.c's sample_topp
        idx = _nucleus(probs, top_p)
        cdf = np.cumsum(probs[idx], dtype=np.float64)
        r = coin * cdf[-1]  # the coin, over the nucleus's (unnormalised) probability
    else:  # run.c's sample_mult
        idx, cdf = None, np.cumsum(probs, dtype=np.float64)
        r = coin
    i = min(int(np.searchsorted(cdf, r, side="right")), len(cdf) - 1)  # first cdf > r; rounding falls to the last
    return int(idx[i]) if idx is not None else i
