"""Sampling the next token as llama2.c's run.c does: greedy argmax, temperature, top-p (nucleus).

Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import _check_f32, _jit


@_jit
def _argmax(x):  # x (n,) float32, n >= 1: np.argmax's answer (the first maximum; the first NaN if there is one)
    best, m = 0, x[0]
    if m != m:
        return 0
    for i in range(1, x.shape[0]):
        v = x[i]
        if v > m:
            best, m = i, v
        elif v != v:
            return i
    return best


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
