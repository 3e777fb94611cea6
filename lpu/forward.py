"""A whole Llama forward pass as one compiled call (`_forward`), and greedy decoding several steps per call
(`_decode_greedy`): the fast path of `lpu.runtime.Engine`.

Decoding a small model is dominated by the cost of calling kernels, not by the kernels: one
compiled call per forward pass, with every buffer preallocated, replaces ~17 calls per layer.
Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

from .jit import _jit
from .layer_ops import _attention, _prefetch_positions, _rmsnorm, _rope
from .linear import _ffn_in, _linear
from .sampling import _argmax


@_jit
def _forward(tokens, pos0, n_logits, emb, rms_att, rms_ffn, rms_final, W, S, wcls, scls, k_cache, v_cache, cos, sin, eps,
             n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
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
        _prefetch_positions(k_cache[layer], pos0)  # the positions attention reads: in cache by the time it does
        _prefetch_positions(v_cache[layer], pos0)
        _rmsnorm(x, rms_att[layer], eps, xb)
        _linear(wq[layer], sq[layer], xb, q, n_chunks, from_dram)
        _linear(wk[layer], sk[layer], xb, k, n_chunks, from_dram)
        _linear(wv[layer], sv[layer], xb, v, n_chunks, from_dram)
        _rope(q, k, pos0, cos, sin)
        for t in range(T):  # the caches are (L, kv_dim, seq_len): see _attend
            k_cache[layer, :, pos0 + t] = k[t]
            v_cache[layer, :, pos0 + t] = v[t]
        _attention(q, k_cache[layer], v_cache[layer], pos0, n_kv_heads, ao, att, n_chunks)  # attn_scores, softmax, attn_values
        _linear(wo[layer], so[layer], ao, xo, n_chunks, from_dram)
        x += xo
        _rmsnorm(x, rms_ffn[layer], eps, xb)
        _ffn_in(w1[layer], s1[layer], w3[layer], s3[layer], xb, h1, h3, n_chunks, from_dram)  # w1, w3, swiglu
        _linear(w2[layer], s2[layer], h1, xo, n_chunks, from_dram)
        x += xo
    _rmsnorm(x[T - n_logits:], rms_final, eps, xb[T - n_logits:])  # the classifier only where a token is sampled
    _linear(wcls, scls, xb[T - n_logits:], logits[:n_logits], n_chunks, from_dram)


@_jit
def _decode_greedy(token, pos, n_steps, stop_a, stop_b, out, tok, emb, rms_att, rms_ffn, rms_final, W, S, wcls, scls, k_cache, v_cache,
                   cos, sin, eps, n_kv_heads, from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks):
    """Greedy decoding, ``n_steps`` (>= 1) tokens in one call: feed ``token`` at ``pos``, take the argmax of its
    logits as the next token, feed that at pos + 1, and so on. The tokens go to ``out[:n]``; it stops early
    after a token equal to ``stop_a`` or ``stop_b`` (BOS, EOS: written, not fed). Returns n. ``tok`` (1,) int64
    scratch; the rest as `_forward`. One call per several tokens: the cost of calling compiled code from
    Python (~5 us for these ~30 arguments) and of sampling in Python is paid once, not per token."""
    for i in range(n_steps):
        tok[0] = token
        _forward(tok, pos + i, 1, emb, rms_att, rms_ffn, rms_final, W, S, wcls, scls, k_cache, v_cache, cos, sin, eps, n_kv_heads,
                 from_dram, X, XB, XO, Q, K, V, AO, H1, H3, att, logits, n_chunks)
        token = _argmax(logits[0])
        out[i] = token
        if token == stop_a or token == stop_b:
            return i + 1
    return n_steps
