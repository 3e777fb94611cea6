"""Slow, obviously correct float64 numpy versions of the kernels in ``lpu/kernels.py``.

Every function takes and returns float64 arrays (or Python numbers) and copies
instead of working in place. ``tests/test_kernels.py`` compares the numba
kernels against these.
"""

from __future__ import annotations

import numpy as np

from lpu.quant import QuantizedTensor


def weights(W) -> np.ndarray:
    """The float64 matrix a kernel multiplies by: fp32 as is, fp16 rounded, int8 dequantised."""
    if isinstance(W, QuantizedTensor):
        q = W.q.astype(np.float64).reshape(W.shape[0], -1, W.group_size)
        return (q * W.scales.astype(np.float64)[:, :, None]).reshape(W.shape)
    return np.asarray(W, dtype=np.float64)


def matvec(W, x) -> np.ndarray:
    """out[i] = sum_j W[i, j] * x[j]."""
    W, x = weights(W), np.asarray(x, np.float64)
    return np.array([sum(W[i, j] * x[j] for j in range(W.shape[1])) for i in range(W.shape[0])])


def matmul(W, X) -> np.ndarray:
    """out[b] = matvec(W, X[b])."""
    return np.stack([matvec(W, xb) for xb in np.asarray(X, np.float64)])


def rmsnorm(x, weight, eps=1e-5) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.asarray(weight, np.float64) * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def rope(q, k, pos, head_dim, theta=10000.0) -> tuple[np.ndarray, np.ndarray]:
    """Rotated copies of q and k: pair (2i, 2i+1) of each head is the complex number
    q[2i] + 1j q[2i+1], multiplied by exp(1j * pos * theta ** (-2i / head_dim))."""

    def rotate(v):
        v = np.asarray(v, np.float64).reshape(-1, head_dim // 2, 2)
        z = (v[..., 0] + 1j * v[..., 1]) * np.exp(1j * pos * theta ** (-np.arange(0, head_dim, 2) / head_dim))
        return np.stack([z.real, z.imag], axis=-1).reshape(-1)

    return rotate(q), rotate(k)


def softmax(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def attention(q, k_cache, v_cache, pos, n_kv_heads) -> np.ndarray:
    """Each query head h attends to key/value head h // (n_heads // n_kv_heads) over tokens 0..pos."""
    k_cache, v_cache = np.asarray(k_cache, np.float64), np.asarray(v_cache, np.float64)
    head_dim = k_cache.shape[1] // n_kv_heads
    q = np.asarray(q, np.float64).reshape(-1, head_dim)
    n_heads = q.shape[0]
    out = np.zeros_like(q)
    for h in range(n_heads):
        g = h // (n_heads // n_kv_heads)
        keys = k_cache[: pos + 1, g * head_dim : (g + 1) * head_dim]
        values = v_cache[: pos + 1, g * head_dim : (g + 1) * head_dim]
        weights_ = softmax(keys @ q[h] / np.sqrt(head_dim))
        out[h] = weights_ @ values
    return out.reshape(-1)


def swiglu(h1, h3) -> np.ndarray:
    h1 = np.asarray(h1, np.float64)
    return h1 / (1.0 + np.exp(-h1)) * np.asarray(h3, np.float64)


def greedy(logits) -> int:
    """Index of the first maximum."""
    logits = list(np.asarray(logits, np.float64))
    return logits.index(max(logits))


def sample_distribution(logits, temperature, top_p=1.0) -> np.ndarray:
    """The probabilities `lpu.kernels.sample` draws from: softmax(logits / temperature),
    restricted to the nucleus (the most likely tokens, in order of probability, up to and
    including the first whose cumulative probability exceeds top_p) and renormalised."""
    p = softmax(np.asarray(logits, np.float64) / temperature)
    if top_p >= 1:
        return p
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    nucleus, total = [], 0.0
    for i in order:
        nucleus.append(i)
        total += p[i]
        if total > top_p:
            break
    out = np.zeros_like(p)
    out[nucleus] = p[nucleus] / total
    return out
