"""A whole Llama forward pass as one compiled call (`_forward`), and greedy decoding several steps per call
(`_decode_greedy`): the fast path of `lpu.runtime.Engine`.

Decoding a small model is dominated by the cost of calling kernels, not by the kernels: one
compiled call per forward pass, with every buffer preallocated, replaces ~17 calls per layer.
Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import TEAM_MIN_BYTES, _atomic_add, _atomic_load, _ijit, _jit, _pjit
from .layer_ops import _attend, _attention, _prefetch_positions, _rmsnorm, _rope, _rope_cols
from .linear import _ffn_in, _ffn_rows, _linear, _linear_rows
from .sampling import _argmax

# ---- a decode step as one parallel region: workers claim chunks of each phase through atomic counters ----
# Phase p of a step has two counters, each on a cache line of its own: sync[_LINE * 2p] (chunks claimed) and
# sync[_LINE * (2p + 1)] (chunks done). A worker claims chunk after chunk until none is left, then waits until all are
# done. It never waits for another worker to arrive, only for claimed work to end, so the step finishes on however
# many threads the region gets (TBB promises no more than one): a late worker finds the phases done and passes.
_LINE = 8  # int64s per 64-byte cache line
PHASES_PER_LAYER = 7  # norm, q/k/v (with rope and the cache writes), attention, wo, norm, w1/w3 with the gate, w2


@_ijit
def _claim(sync, p):  # the next chunk of phase p (>= its count: none left)
    return _atomic_add(sync, _LINE * 2 * p, 1)


@_ijit
def _finish(sync, p):
    _atomic_add(sync, _LINE * (2 * p + 1), 1)


@_ijit
def _wait(sync, p, n):  # until phase p's n chunks are done
    while _atomic_load(sync, _LINE * (2 * p + 1)) < n:
        pass


@_ijit
def _linear_phase(w, s, pw, x, y, n_blocks, n, from_dram, sync, p):  # y = x w^T as phase p: n chunks of w's n_blocks row blocks
    c = _claim(sync, p)
    while c < n:
        _linear_rows(w, s, pw, x, y, c * n_blocks // n, (c + 1) * n_blocks // n, from_dram)
        _finish(sync, p)
        c = _claim(sync, p)
    _wait(sync, p, n)


@_jit
def _step_worker(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin,
                 eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, nc, sync):
    """One worker's part of `_forward` for a few tokens (T rows: a decode step, T = 1, or a speculative verify step):
    the same kernels on the same rows whatever the split; each matrix in ``nc`` chunks of rows (the classifier 4 nc),
    attention a block of 4 rows x a query head per chunk."""
    T = tokens.shape[0]
    x, xb, xo, q, k, v, ao, h1, h3 = X[:T], XB[:T], XO[:T], Q[:T], K[:T], V[:T], AO[:T], H1[:T], H3[:T]
    wq, wk, wv, wo, w1, w2, w3 = W
    sq, sk, sv, so, s1, s2, s3 = S
    pq, pk, pv, po, p1, p2, p3 = P
    n_layers = rms_att.shape[0]
    bq, bkv, bh, bd = (wq.shape[1] + 3) // 4, (wk.shape[1] + 3) // 4, (w1.shape[1] + 3) // 4, (wo.shape[1] + 3) // 4  # row blocks
    n_items = (T + 3) // 4 * (q.shape[1] // (k_cache.shape[1] // n_kv_heads))  # attention's, as `_attend` numbers them
    p = 0
    for layer in range(n_layers + 1):
        if _claim(sync, p) == 0:  # one chunk: the residual, then the norm (after the last layer, the final one)
            if layer == 0:
                for t in range(T):
                    x[t] = emb[tokens[t]]
            else:
                x += xo
            if layer < n_layers:
                _prefetch_positions(k_cache[layer], pos0)  # see _forward
                _prefetch_positions(v_cache[layer], pos0)
                _rmsnorm(x, rms_att[layer], eps, xb)
            elif n_logits > 0:
                _rmsnorm(x[T - n_logits:], rms_final, eps, xb[T - n_logits:])
            _finish(sync, p)
        _wait(sync, p, 1)
        p += 1
        if layer == n_layers:
            break
        c = _claim(sync, p)  # q, k, v, nc chunks each; each chunk's columns rotated (blocks of 4 rows: pairs stay whole)
        while c < 3 * nc:
            m, part = c // nc, c % nc
            nb = bq if m == 0 else bkv
            lo, hi = part * nb // nc, (part + 1) * nb // nc
            if m == 0:
                _linear_rows(wq[layer], sq[layer], pq[layer], xb, q, lo, hi, from_dram)
                for t in range(T):
                    _rope_cols(q[t], 4 * lo, min(4 * hi, q.shape[1]), pos0 + t, cos, sin)
            elif m == 1:
                _linear_rows(wk[layer], sk[layer], pk[layer], xb, k, lo, hi, from_dram)
                for t in range(T):
                    _rope_cols(k[t], 4 * lo, min(4 * hi, k.shape[1]), pos0 + t, cos, sin)
                    for j in range(4 * lo, min(4 * hi, k.shape[1])):
                        k_cache[layer, j, pos0 + t] = k[t, j]
            else:
                _linear_rows(wv[layer], sv[layer], pv[layer], xb, v, lo, hi, from_dram)
                for t in range(T):
                    for j in range(4 * lo, min(4 * hi, v.shape[1])):
                        v_cache[layer, j, pos0 + t] = v[t, j]
            _finish(sync, p)
            c = _claim(sync, p)
        _wait(sync, p, 3 * nc)
        p += 1
        c = _claim(sync, p)  # attention, an item (4 rows x a query head) per chunk
        while c < n_items:
            _attend(q, k_cache[layer], v_cache[layer], pos0, n_kv_heads, ao, att, c, c + 1)
            _finish(sync, p)
            c = _claim(sync, p)
        _wait(sync, p, n_items)
        p += 1
        _linear_phase(wo[layer], so[layer], po[layer], ao, xo, bd, nc, from_dram, sync, p)
        p += 1
        if _claim(sync, p) == 0:
            x += xo
            _rmsnorm(x, rms_ffn[layer], eps, xb)
            _finish(sync, p)
        _wait(sync, p, 1)
        p += 1
        c = _claim(sync, p)
        while c < nc:
            _ffn_rows(w1[layer], s1[layer], p1[layer], w3[layer], s3[layer], p3[layer], xb, h1, h3, c * bh // nc, (c + 1) * bh // nc, from_dram)
            _finish(sync, p)
            c = _claim(sync, p)
        _wait(sync, p, nc)
        p += 1
        _linear_phase(w2[layer], s2[layer], p2[layer], h1, xo, bd, nc, from_dram, sync, p)
        p += 1
    if n_logits > 0:
        _linear_phase(wcls, scls, pcls, xb[T - n_logits:], logits[:n_logits], (wcls.shape[0] + 3) // 4, 4 * nc, from_dram, sync, p)


@_pjit
def _step_team(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin,
               eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, nc, sync, n_workers):
    for _ in prange(n_workers):
        _step_worker(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos,
                     sin, eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, nc, sync)


@_jit
def _forward_team(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin, eps,
                  n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
    """`_forward` for a few tokens (tokens (T,), T <= `lpu.jit.TEAM_MAX_ROWS`) as one parallel region of n_chunks // 4 (>= 2)
    workers (`lpu.jit.n_chunks`: 4 chunks per thread), each matrix in 2 chunks per worker: where `use_team` says, the
    decode step of an Engine on several threads (T = 1) and the target's verify step of speculative decoding (T = k + 1).
    `_forward`'s logits within float32 rounding (not its bits: the kernels' float sums may be reordered,
    `lpu.jit._FASTMATH`, and this compiled function orders some differently from `_forward`)."""
    n_workers = max(n_chunks // 4, 2)
    sync = np.zeros(_LINE * 2 * (PHASES_PER_LAYER * rms_att.shape[0] + 2), np.int64)
    _step_team(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin,
               eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, 2 * n_workers, sync, n_workers)


def use_team(threads: int, weight_bytes: int) -> bool:
    """Whether an Engine on ``threads`` threads whose matrices hold ``weight_bytes`` decodes through `_forward_team`
    (see `lpu.jit.TEAM_MIN_BYTES`)."""
    return threads > 1 and weight_bytes >= TEAM_MIN_BYTES


@_jit
def _forward(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin, eps,
             n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
    """Feed ``tokens`` (T,) at positions pos0 .. pos0 + T - 1 (causal, one chunk): the KV caches (L, kv_dim,
    seq_len) take their keys and values, ``logits[:n_logits]`` the logits of the last n_logits positions.
    W, S: the 7 stacked matrices (wq, wk, wv, wo, w1, w2, w3), each (L, d_out, n_groups, G), and their
    scales; P: the same in panels (`lpu.panels`, each (L, n_panels, d_in, 16); (L, 0, 0, 16): none), read by
    2-8 tokens; wcls, scls, pcls: the classifier's; buffers of >= T rows. The ops of ``lpu.graph.prefill(model, T)`` (T = 1: ``graph.decode``)."""
    T = tokens.shape[0]
    x, xb, xo, q, k, v, ao, h1, h3 = X[:T], XB[:T], XO[:T], Q[:T], K[:T], V[:T], AO[:T], H1[:T], H3[:T]
    wq, wk, wv, wo, w1, w2, w3 = W
    sq, sk, sv, so, s1, s2, s3 = S
    pq, pk, pv, po, p1, p2, p3 = P
    for t in range(T):
        x[t] = emb[tokens[t]]
    for layer in range(rms_att.shape[0]):
        _prefetch_positions(k_cache[layer], pos0)  # the positions attention reads: in cache by the time it does
        _prefetch_positions(v_cache[layer], pos0)
        _rmsnorm(x, rms_att[layer], eps, xb)
        _linear(wq[layer], sq[layer], pq[layer], xb, q, n_chunks, from_dram)
        _linear(wk[layer], sk[layer], pk[layer], xb, k, n_chunks, from_dram)
        _linear(wv[layer], sv[layer], pv[layer], xb, v, n_chunks, from_dram)
        _rope(q, k, pos0, cos, sin)
        for t in range(T):  # the caches are (L, kv_dim, seq_len): see _attend
            k_cache[layer, :, pos0 + t] = k[t]
            v_cache[layer, :, pos0 + t] = v[t]
        _attention(q, k_cache[layer], v_cache[layer], pos0, n_kv_heads, ao, att, n_chunks)  # attn_scores, softmax, attn_values
        _linear(wo[layer], so[layer], po[layer], ao, xo, n_chunks, from_dram)
        x += xo
        _rmsnorm(x, rms_ffn[layer], eps, xb)
        _ffn_in(w1[layer], s1[layer], p1[layer], w3[layer], s3[layer], p3[layer], xb, h1, h3, n_chunks, from_dram)  # w1, w3, swiglu
        _linear(w2[layer], s2[layer], p2[layer], h1, xo, n_chunks, from_dram)
        x += xo
    _rmsnorm(x[T - n_logits:], rms_final, eps, xb[T - n_logits:])  # the classifier only where a token is sampled
    _linear(wcls, scls, pcls, xb[T - n_logits:], logits[:n_logits], n_chunks, from_dram)


@_jit
def _decode_greedy(token, pos, n_steps, stop_a, stop_b, out, tok, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache,
                   cos, sin, eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
    """Greedy decoding, ``n_steps`` (>= 1) tokens in one call: feed ``token`` at ``pos``, take the argmax of its
    logits as the next token, feed that at pos + 1, and so on. The tokens go to ``out[:n]``; it stops early
    after a token equal to ``stop_a`` or ``stop_b`` (BOS, EOS: written, not fed). Returns n. ``tok`` (1,) int64
    scratch; the rest as `_forward`. One call per several tokens: the cost of calling compiled code from
    Python (~5 us for these ~30 arguments) and of sampling in Python is paid once, not per token."""
    for i in range(n_steps):
        tok[0] = token
        _forward(tok, pos + i, 1, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin, eps, n_kv_heads,
                 from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks)
        token = _argmax(logits[0])
        out[i] = token
        if token == stop_a or token == stop_b:
            return i + 1
    return n_steps


@_jit
def _decode_greedy_team(token, pos, n_steps, stop_a, stop_b, out, tok, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls,
                        k_cache, v_cache, cos, sin, eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits,
                        n_chunks):
    """`_decode_greedy` through `_forward_team` (a compiled function of its own, so that an Engine on one thread never
    compiles the parallel step: ~30 s)."""
    for i in range(n_steps):
        tok[0] = token
        _forward_team(tok, pos + i, 1, emb, rms_att, rms_ffn, rms_final, W, S, P, wcls, scls, pcls, k_cache, v_cache, cos, sin, eps,
                      n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks)
        token = _argmax(logits[0])
        out[i] = token
        if token == stop_a or token == stop_b:
            return i + 1
    return n_steps
