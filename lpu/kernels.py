"""CPU kernels for Llama token generation: llama2.c's run.c / runq.c in numba.

Read top to bottom: the matrix-vector product that dominates decoding (fp32,
fp16 storage, int8 groups), its small-batch variant, the cheap vector kernels
of a layer (rmsnorm, rope, attention, swiglu, softmax), and the sampler.
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

from .quant import QuantizedTensor

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


@intrinsic
def _half_to_float(typingctx, bits):
    """fp16 bits (uint16) -> float32, exactly (``vcvtph2ps`` on x86). numba has no CPU
    float16 type, so fp16 weights reach the kernels as their uint16 bit patterns."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


# ---- matvec: out (d_out,) = W (d_out, d_in) @ x (d_in,) ---------------------------
# fp32 takes rows in pairs (an odd last row is done twice): x is loaded once for two rows,
# two memory streams are in flight per core: +20% on an AMD EPYC and an Intel Xeon. fp16
# and int8 go row by row: pairs cost them 30% on the EPYC (their conversions fill the core).


@_pjit
def _matvec_f32(W, x, out):
    d_out, d_in = W.shape
    for p in prange((d_out + 1) // 2):  # row pairs split over threads
        i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
        acc0 = acc1 = np.float32(0.0)
        for j in range(d_in):  # contiguous: vectorised, several partial sums per row
            acc0 += W[i0, j] * x[j]
            acc1 += W[i1, j] * x[j]
        out[i0], out[i1] = acc0, acc1


@_pjit
def _matvec_f16(Wbits, x, out):  # Wbits: the fp16 weights as uint16 (d_out, d_in)
    for i in prange(Wbits.shape[0]):
        acc = np.float32(0.0)
        for j in range(Wbits.shape[1]):
            acc += _half_to_float(Wbits[i, j]) * x[j]  # widen to fp32, accumulate in fp32
        out[i] = acc


@_pjit
def _matvec_int8(q, scales, x, out):
    # q (d_out, n_groups, G) int8 and x (n_groups, G): views in which every index counts up
    # from 0, so the group loop vectorises; scales (d_out, n_groups) fp32. Unlike runq.c, x
    # stays fp32 (runq.c rounds it to int8 per group too): the int8 weights are what is read
    # from memory, and the result is ~1e4 x more accurate (1e-7 relative, not 5e-3).
    x = x.reshape(q.shape[1], q.shape[2])
    for i in prange(q.shape[0]):
        acc = np.float32(0.0)
        for g in range(q.shape[1]):
            s = np.float32(0.0)
            for k in range(q.shape[2]):
                s += np.float32(q[i, g, k]) * x[g, k]
            acc += s * scales[i, g]  # one scale per group of G weights
        out[i] = acc


# ---- matmul: out (B, d_out) = X (B, d_in) @ W.T; each weight row is read once for all B ----
# Arithmetic, not memory, limits a batch: a micro-kernel does 2 rows x 4 batch members so
# each load of W or X feeds several multiply-adds. fp16 and int8 first widen the pair of
# rows to fp32 in a buffer per chunk of rows: one conversion per weight, not per member.


@_jit
def _matmul_tile(w0, w1, X, out, i0, i1):  # rows w0, w1 (d_in,) fp32 -> out[:, i0], out[:, i1]
    B, full = X.shape[0], X.shape[0] - X.shape[0] % 4
    for b in range(0, full, 4):  # 2 rows x 4 batch members: 8 sums in registers
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = np.float32(0.0)
        for j in range(w0.shape[0]):
            x0, x1, x2, x3 = X[b, j], X[b + 1, j], X[b + 2, j], X[b + 3, j]
            a00 += w0[j] * x0
            a01 += w0[j] * x1
            a02 += w0[j] * x2
            a03 += w0[j] * x3
            a10 += w1[j] * x0
            a11 += w1[j] * x1
            a12 += w1[j] * x2
            a13 += w1[j] * x3
        out[b, i0], out[b + 1, i0], out[b + 2, i0], out[b + 3, i0] = a00, a01, a02, a03
        out[b, i1], out[b + 1, i1], out[b + 2, i1], out[b + 3, i1] = a10, a11, a12, a13
    for b in range(full, B):  # the last B % 4 members: 2 rows x 1
        a0 = a1 = np.float32(0.0)
        for j in range(w0.shape[0]):
            a0 += w0[j] * X[b, j]
            a1 += w1[j] * X[b, j]
        out[b, i0], out[b, i1] = a0, a1


@_pjit
def _matmul_f32(W, X, out, n_chunks):
    d_out, d_in = W.shape
    n_pairs = (d_out + 1) // 2
    for c in prange(n_chunks):  # chunks of row pairs split over threads
        for p in range(c * n_pairs // n_chunks, (c + 1) * n_pairs // n_chunks):
            i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
            _matmul_tile(W[i0], W[i1], X, out, i0, i1)


@_pjit
def _matmul_f16(Wbits, X, out, n_chunks):
    d_out, d_in = Wbits.shape
    n_pairs = (d_out + 1) // 2
    for c in prange(n_chunks):
        w = np.empty((2, d_in), np.float32)  # the pair in fp32
        for p in range(c * n_pairs // n_chunks, (c + 1) * n_pairs // n_chunks):
            i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
            for j in range(d_in):
                w[0, j] = _half_to_float(Wbits[i0, j])
                w[1, j] = _half_to_float(Wbits[i1, j])
            _matmul_tile(w[0], w[1], X, out, i0, i1)


@_pjit
def _matmul_int8(q, scales, X, out, n_chunks):  # q (d_out, n_groups, G), X (B, d_in)
    d_out, n_groups, G = q.shape
    n_pairs = (d_out + 1) // 2
    for c in prange(n_chunks):
        w = np.empty((2, n_groups, G), np.float32)  # the pair dequantised
        flat = w.reshape(2, n_groups * G)
        for p in range(c * n_pairs // n_chunks, (c + 1) * n_pairs // n_chunks):
            i0, i1 = 2 * p, min(2 * p + 1, d_out - 1)
            for g in range(n_groups):
                for k in range(G):
                    w[0, g, k] = np.float32(q[i0, g, k]) * scales[i0, g]
                    w[1, g, k] = np.float32(q[i1, g, k]) * scales[i1, g]
            _matmul_tile(flat[0], flat[1], X, out, i0, i1)


_MATVEC = {"f32": _matvec_f32, "f16": _matvec_f16, "int8": _matvec_int8}
_MATMUL = {"f32": _matmul_f32, "f16": _matmul_f16, "int8": _matmul_int8}


def _weight_arrays(fn, W):
    """(kernel kind, arrays for the kernel, (d_out, d_in)) of a weight matrix, or ValueError."""
    if isinstance(W, QuantizedTensor):
        if W.q.ndim != 2:
            raise ValueError(f"{fn}: W must be 2-D (d_out, d_in), got a QuantizedTensor of shape {W.shape}")
        q, scales = np.ascontiguousarray(W.q), np.ascontiguousarray(W.scales)
        return "int8", (q.reshape(q.shape[0], -1, W.group_size), scales), W.shape
    if not isinstance(W, np.ndarray) or W.ndim != 2:
        raise ValueError(f"{fn}: W must be a 2-D (d_out, d_in) numpy array or a QuantizedTensor, got {getattr(W, 'shape', type(W))}")
    if not W.flags.c_contiguous:
        raise ValueError(f"{fn}: W must be C-contiguous (row-major); use np.ascontiguousarray(W)")
    if W.dtype == np.float32:
        return "f32", (W,), W.shape
    if W.dtype == np.float16:
        return "f16", (W.view(np.uint16),), W.shape
    raise ValueError(f"{fn}: W has dtype {W.dtype}; expected float32, float16 or a QuantizedTensor (int8)")


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
    kind, arrays, (d_out, d_in) = _weight_arrays("matvec", W)
    if not isinstance(x, np.ndarray) or x.shape != (d_in,):
        raise ValueError(f"matvec: W has shape {(d_out, d_in)} but x has shape {getattr(x, 'shape', None)}; expected x of shape {(d_in,)}")
    _check_f32("matvec", "x", x)
    out = _out("matvec", out, (d_out,), x)
    _MATVEC[kind](*arrays, x, out)
    return out


def matmul(W, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X @ W.T`` for a small batch X (B, d_in) float32 -> (B, d_out); W as in `matvec`, streamed once."""
    kind, arrays, (d_out, d_in) = _weight_arrays("matmul", W)
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] != d_in:
        raise ValueError(f"matmul: W has shape {(d_out, d_in)} but X has shape {getattr(X, 'shape', None)}; expected X of shape (B, {d_in})")
    _check_f32("matmul", "X", X)
    out = _out("matmul", out, (X.shape[0], d_out), X)
    _MATMUL[kind](*arrays, X, out, min((d_out + 1) // 2, 4 * numba.get_num_threads()))  # chunks of row pairs
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
def _rope(q, k, pos, head_dim, theta):
    for i in range(0, head_dim, 2):  # pair (i, i+1) of every head turns by pos * theta**(-i / head_dim)
        angle = pos * theta ** (-i / head_dim)  # float64, as accurate at pos 8192 as at pos 0
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        for j in range(i, q.shape[0], head_dim):
            v0, v1 = q[j], q[j + 1]
            q[j], q[j + 1] = v0 * c - v1 * s, v0 * s + v1 * c
        for j in range(i, k.shape[0], head_dim):
            v0, v1 = k[j], k[j + 1]
            k[j], k[j + 1] = v0 * c - v1 * s, v0 * s + v1 * c


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
    _rope(q, k, int(pos), int(head_dim), float(theta))


@_pjit
def _attention(q, k_cache, v_cache, pos, n_kv_heads, out):  # q, out (n_heads * head_dim,); caches (seq_len, kv_dim)
    seq_len, kv_dim = k_cache.shape
    head_dim = kv_dim // n_kv_heads
    n_heads = q.shape[0] // head_dim
    kv_mul = n_heads // n_kv_heads  # query heads per key/value head (GQA)
    # views in which every index counts up from 0, so the loops over d vectorise
    q, out = q.reshape(n_heads, head_dim), out.reshape(n_heads, head_dim)
    k_cache, v_cache = k_cache.reshape(seq_len, n_kv_heads, head_dim), v_cache.reshape(seq_len, n_kv_heads, head_dim)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    att = np.empty((n_heads, pos + 1), np.float32)
    for h in prange(n_heads):
        g = h // kv_mul
        m = -np.inf
        for t in range(pos + 1):  # scores against every cached key, 0..pos
            s = np.float32(0.0)
            for d in range(head_dim):
                s += q[h, d] * k_cache[t, g, d]
            att[h, t] = s * scale
            m = max(m, att[h, t])
        total = np.float32(0.0)
        for t in range(pos + 1):  # softmax
            att[h, t] = math.exp(att[h, t] - m)
            total += att[h, t]
        out[h, :] = 0.0
        for t in range(pos + 1):  # weighted sum of the values
            a = att[h, t] / total
            for d in range(head_dim):
                out[h, d] += a * v_cache[t, g, d]


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos: int, n_kv_heads: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Grouped-query attention of the token at ``pos`` over cached positions 0..pos (inclusive).

    Cache layout (run.c's, one layer): ``k_cache``, ``v_cache`` (seq_len, kv_dim) float32, row t
    holding token t's keys (values), kv head g at columns ``g*head_dim:(g+1)*head_dim``, with
    ``head_dim = kv_dim // n_kv_heads``; a model's (n_layers, seq_len, kv_dim) cache passes
    ``k_cache[layer]``. Query head h of q (n_heads * head_dim,) reads kv head
    ``h // (n_heads // n_kv_heads)``; scores are scaled by 1/sqrt(head_dim). Returns q's shape.
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
    _attention(q, k_cache, v_cache, int(pos), int(n_kv_heads), out)
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


# ---- sampling ---------------------------------------------------------------------


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
        cutoff = (1.0 - top_p) / (n - 1)  # a token below this cannot be in the nucleus
        idx = np.flatnonzero(probs >= cutoff)
        idx = idx[np.argsort(-probs[idx], kind="stable")]  # most likely first, ties by index
        cdf = np.cumsum(probs[idx], dtype=np.float64)
        last = min(int(np.searchsorted(cdf, top_p, side="right")), len(idx) - 1)  # first cumulative > top_p
        idx, cdf = idx[: last + 1], cdf[: last + 1]
        r = coin * cdf[-1]  # the coin, over the nucleus's (unnormalised) probability
    else:  # run.c's sample_mult
        idx, cdf = None, np.cumsum(probs, dtype=np.float64)
        r = coin
    i = min(int(np.searchsorted(cdf, r, side="right")), len(cdf) - 1)  # first cdf > r; rounding falls to the last
    return int(idx[i]) if idx is not None else i
