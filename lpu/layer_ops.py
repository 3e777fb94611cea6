"""The vector kernels of a Llama layer in numba: rmsnorm, rotary embedding, causal attention, swiglu.

The ``_underscored`` kernels work on batches of rows (T tokens of a prefill chunk, or one) and trust
their inputs; the public functions check them and raise ``ValueError``.
Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .jit import PARALLEL_MIN_BYTES, _check_f32, _chunks, _exp, _ijit, _jit, _out, _pjit, _prefetch, _silu


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


@_ijit
def _rope_cols(v, lo, hi, pos, cos, sin):  # `_rope` of columns lo..hi-1 (lo even) of one row v at position pos
    half = cos.shape[1]
    i = (lo % (2 * half)) // 2  # the pair's index within its head
    for j in range(lo, hi, 2):
        c, s = cos[pos, i], sin[pos, i]
        v0, v1 = v[j], v[j + 1]
        v[j], v[j + 1] = v0 * c - v1 * s, v0 * s + v1 * c
        i = i + 1 if i + 1 < half else 0


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


@_ijit
def _softmax_n(s, n):  # s[:n] <- exp(s[:n] - max); returns 1 / their sum
    m = -np.inf
    for p in range(n):
        m = max(m, s[p])
    total = np.float32(0.0)
    for p in range(n):
        s[p] = _exp(s[p] - m)
        total += s[p]
    return np.float32(1.0) / total


@_ijit
def _attend_row(q, o, kc, vc, s, t, h, g, n, scale):
    """Query head h of row t (q, o (T, n_heads, head_dim)) over positions 0..n-1 of KV head g (kc, vc (n_kv_heads,
    head_dim, seq_len)); s (>= n,) scratch for its scores."""
    head_dim = q.shape[2]
    d4 = head_dim - head_dim % 4
    s[:n] = 0.0
    for d in range(0, d4, 4):  # scores against every cached key: 4 dims per pass over the scores
        q0, q1, q2, q3 = q[t, h, d] * scale, q[t, h, d + 1] * scale, q[t, h, d + 2] * scale, q[t, h, d + 3] * scale
        for p in range(n):
            s[p] += q0 * kc[g, d, p] + q1 * kc[g, d + 1, p] + q2 * kc[g, d + 2, p] + q3 * kc[g, d + 3, p]
    for d in range(d4, head_dim):
        qd = q[t, h, d] * scale
        for p in range(n):
            s[p] += qd * kc[g, d, p]
    inv = _softmax_n(s, n)
    for d in range(0, d4, 4):  # weighted sums of the values, 4 dims per pass over the weights
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for p in range(n):
            w = s[p]
            a0 += w * vc[g, d, p]
            a1 += w * vc[g, d + 1, p]
            a2 += w * vc[g, d + 2, p]
            a3 += w * vc[g, d + 3, p]
        o[t, h, d], o[t, h, d + 1], o[t, h, d + 2], o[t, h, d + 3] = a0 * inv, a1 * inv, a2 * inv, a3 * inv
    for d in range(d4, head_dim):
        acc = np.float32(0.0)
        for p in range(n):
            acc += s[p] * vc[g, d, p]
        o[t, h, d] = acc * inv


@_ijit
def _scores4(s0, s1, s2, s3, q, kc, t, h, g, d, n, scale):  # s_j[:n] += q[t + j, h, d:d + 4] . kc[g, d:d + 4, :n] for j = 0..3
    a0, a1, a2, a3 = q[t, h, d] * scale, q[t, h, d + 1] * scale, q[t, h, d + 2] * scale, q[t, h, d + 3] * scale
    b0, b1, b2, b3 = q[t + 1, h, d] * scale, q[t + 1, h, d + 1] * scale, q[t + 1, h, d + 2] * scale, q[t + 1, h, d + 3] * scale
    c0, c1, c2, c3 = q[t + 2, h, d] * scale, q[t + 2, h, d + 1] * scale, q[t + 2, h, d + 2] * scale, q[t + 2, h, d + 3] * scale
    e0, e1, e2, e3 = q[t + 3, h, d] * scale, q[t + 3, h, d + 1] * scale, q[t + 3, h, d + 2] * scale, q[t + 3, h, d + 3] * scale
    for p in range(n):
        k0, k1, k2, k3 = kc[g, d, p], kc[g, d + 1, p], kc[g, d + 2, p], kc[g, d + 3, p]
        s0[p] += a0 * k0 + a1 * k1 + a2 * k2 + a3 * k3
        s1[p] += b0 * k0 + b1 * k1 + b2 * k2 + b3 * k3
        s2[p] += c0 * k0 + c1 * k1 + c2 * k2 + c3 * k3
        s3[p] += e0 * k0 + e1 * k1 + e2 * k2 + e3 * k3


@_ijit
def _values4(s0, s1, s2, s3, vc, g, d, n):  # the weighted sums s_j[:n] . vc[g, d + i, :n], i = 0..3, for j = 0..3: 16 sums
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = e0 = e1 = e2 = e3 = np.float32(0.0)
    for p in range(n):
        v0, v1, v2, v3 = vc[g, d, p], vc[g, d + 1, p], vc[g, d + 2, p], vc[g, d + 3, p]
        w, x, y, z = s0[p], s1[p], s2[p], s3[p]
        a0 += w * v0
        a1 += w * v1
        a2 += w * v2
        a3 += w * v3
        b0 += x * v0
        b1 += x * v1
        b2 += x * v2
        b3 += x * v3
        c0 += y * v0
        c1 += y * v1
        c2 += y * v2
        c3 += y * v3
        e0 += z * v0
        e1 += z * v1
        e2 += z * v2
        e3 += z * v3
    return a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, e0, e1, e2, e3


@_ijit
def _attend_rows4(q, o, kc, vc, s0, s1, s2, s3, t, h, g, n, scale):
    """`_attend_row` for rows t..t+3 of query head h at once, row t + j over positions 0..n + j - 1: over the n
    positions all four see, each load of a key or a value feeds the 4 rows (their few extra positions go one by one)."""
    head_dim = q.shape[2]
    d4 = head_dim - head_dim % 4
    s0[:n] = 0.0
    s1[:n + 1] = 0.0
    s2[:n + 2] = 0.0
    s3[:n + 3] = 0.0
    for d in range(0, d4, 4):  # scores, 4 dims per pass over them
        _scores4(s0, s1, s2, s3, q, kc, t, h, g, d, n, scale)
    for d in range(d4, head_dim):
        a, b, c, e = q[t, h, d] * scale, q[t + 1, h, d] * scale, q[t + 2, h, d] * scale, q[t + 3, h, d] * scale
        for p in range(n):
            k = kc[g, d, p]
            s0[p] += a * k
            s1[p] += b * k
            s2[p] += c * k
            s3[p] += e * k
    for d in range(head_dim):  # the positions only the later rows see
        k0, k1, k2 = kc[g, d, n], kc[g, d, n + 1], kc[g, d, n + 2]
        s1[n] += q[t + 1, h, d] * scale * k0
        s2[n] += q[t + 2, h, d] * scale * k0
        s2[n + 1] += q[t + 2, h, d] * scale * k1
        s3[n] += q[t + 3, h, d] * scale * k0
        s3[n + 1] += q[t + 3, h, d] * scale * k1
        s3[n + 2] += q[t + 3, h, d] * scale * k2
    inv0, inv1, inv2, inv3 = _softmax_n(s0, n), _softmax_n(s1, n + 1), _softmax_n(s2, n + 2), _softmax_n(s3, n + 3)
    for d in range(0, d4, 4):  # weighted sums of the values, 4 dims per pass over the weights
        a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, e0, e1, e2, e3 = _values4(s0, s1, s2, s3, vc, g, d, n)
        _finish4(o, s1, s2, s3, vc, t, h, g, d, n, a0, b0, c0, e0, inv0, inv1, inv2, inv3)
        _finish4(o, s1, s2, s3, vc, t, h, g, d + 1, n, a1, b1, c1, e1, inv0, inv1, inv2, inv3)
        _finish4(o, s1, s2, s3, vc, t, h, g, d + 2, n, a2, b2, c2, e2, inv0, inv1, inv2, inv3)
        _finish4(o, s1, s2, s3, vc, t, h, g, d + 3, n, a3, b3, c3, e3, inv0, inv1, inv2, inv3)
    for d in range(d4, head_dim):
        a = b = c = e = np.float32(0.0)
        for p in range(n):
            v = vc[g, d, p]
            a += s0[p] * v
            b += s1[p] * v
            c += s2[p] * v
            e += s3[p] * v
        _finish4(o, s1, s2, s3, vc, t, h, g, d, n, a, b, c, e, inv0, inv1, inv2, inv3)


@_ijit
def _finish4(o, s1, s2, s3, vc, t, h, g, d, n, a, b, c, e, inv0, inv1, inv2, inv3):  # dim d of rows t..t+3: the extra positions
    v0, v1, v2 = vc[g, d, n], vc[g, d, n + 1], vc[g, d, n + 2]
    o[t, h, d] = a * inv0
    o[t + 1, h, d] = (b + s1[n] * v0) * inv1
    o[t + 2, h, d] = (c + s2[n] * v0 + s2[n + 1] * v1) * inv2
    o[t + 3, h, d] = (e + s3[n] * v0 + s3[n + 1] * v1 + s3[n + 2] * v2) * inv3


@_jit
def _prefetch_positions(cache, n):  # cache (kv_dim, seq_len): ask for the lines of positions 0..n-1 of every row
    # Decoding a model bigger than the last-level cache, the weights stream through it and evict the KV caches: attention
    # then reads kv_dim short rows from DRAM, each a few lines, which the hardware prefetcher does not follow (stories15M
    # shapes, 2-core Zen 4 EPYC: 6 layers at position 128, 60 us from cache, 300 us from DRAM). Asked for at the start of
    # the layer, they arrive while its q, k, v matmuls run.
    for r in range(cache.shape[0]):
        row = cache[r]
        for p in range(0, n, 16):  # 16 float32 a 64-byte line
            _prefetch(row, p)
        if n > 0:
            _prefetch(row, n - 1)  # a row that does not start on a line boundary ends one line further


@_jit
def _attend(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, lo, hi):
    # items lo..hi-1 of Q, out (T, n_heads * head_dim), item i = (block b of 4 rows, query head h), i = b * n_heads + h:
    # row t is the token at pos0 + t, attending causally over cache positions 0..pos0 + t. The caches are transposed,
    # (kv_dim, seq_len): position runs along the rows, so each loop below runs over contiguous positions and vectorises
    # even for a head_dim of 8. att (T * n_heads, >= pos0 + T): scratch for the scores, row t * n_heads + h.
    T = Q.shape[0]
    kv_dim, seq_len = k_cache.shape
    head_dim = kv_dim // n_kv_heads
    n_heads = Q.shape[1] // head_dim
    q, o = Q.reshape(T, n_heads, head_dim), out.reshape(T, n_heads, head_dim)
    kc, vc = k_cache.reshape(n_kv_heads, head_dim, seq_len), v_cache.reshape(n_kv_heads, head_dim, seq_len)
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for item in range(lo, hi):
        b, h = item // n_heads, item % n_heads
        g, t0 = h // (n_heads // n_kv_heads), 4 * b  # the KV head query head h reads (GQA); the block's first row
        if t0 + 4 <= T:
            _attend_rows4(q, o, kc, vc, att[t0 * n_heads + h], att[(t0 + 1) * n_heads + h], att[(t0 + 2) * n_heads + h],
                          att[(t0 + 3) * n_heads + h], t0, h, g, pos0 + t0 + 1, scale)
        else:
            for t in range(t0, T):
                _attend_row(q, o, kc, vc, att[t * n_heads + h], t, h, g, pos0 + t + 1, scale)


@_pjit
def _attention_par(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, items):
    for th in prange(items):
        _attend(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, th, th + 1)


@_jit
def _attention(Q, k_cache, v_cache, pos0, n_kv_heads, out, att, n_chunks):
    items = (Q.shape[0] + 3) // 4 * (Q.shape[1] // (k_cache.shape[0] // n_kv_heads))  # blocks of 4 rows x query heads
    if n_chunks <= 1 or 8 * Q.size * (pos0 + Q.shape[0]) < PARALLEL_MIN_BYTES:  # ~bytes of keys and values read
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
        h1[i] = _silu(v) * h3[i]


def swiglu(h1: np.ndarray, h3: np.ndarray) -> np.ndarray:
    """``h1 = silu(h1) * h3`` in place (the FFN's gate), h1 and h3 of the same shape; returns h1."""
    _check_f32("swiglu", "h1", h1)
    _check_f32("swiglu", "h3", h3, h1.shape, f"{h1.shape} like h1")
    _swiglu(h1.reshape(-1), h3.reshape(-1))
    return h1

