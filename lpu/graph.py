"""The operations of one decode step or one prefill chunk, built from a `ModelConfig`.

A `Graph` is the list of `Op` s a Llama-architecture forward pass performs, in
execution order, each with its shapes, dtype, FLOPs and bytes (weights,
activations, KV cache) and the ops it depends on. The scheduler (``lpu.schedule``)
places these ops on functional units and chips; the runtime (``lpu.runtime``)
executes the *same* list with real weights, so the tokens you see and the time
the simulator reports come from one description of the work.

Decode: ``tokens`` = B users, one new token each, attending over ``context``
cached positions plus their own. Prefill: ``tokens`` = P prompt tokens of one
user, causal attention among them (after ``context`` earlier positions).
Introduced in ``notebooks/03_token_generation.ipynb`` (anatomy of a decode step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import models

# Rough VXM work per element of each elementwise/reduction op (multiply-adds, exp, divide...)
VECTOR_FLOPS_PER_ELEMENT = {"rmsnorm": 4, "rope": 6, "softmax": 5, "swiglu": 6, "residual": 1, "router": 5, "sample": 2, "embed": 0, "kv_write": 0}
COLLECTIVES = ("allreduce", "allgather", "send")  # chip-to-chip ops added by lpu.shard


@dataclass(frozen=True)
class Op:
    """One operation. Matmuls read ``weight`` of shape (n_out, n_in) for ``rows`` activation rows."""

    name: str  # unique, e.g. "L3.wq"
    kind: str  # matmul, attention_scores, attention_values, rmsnorm, rope, softmax, swiglu, residual, kv_write, router, embed, sample
    layer: int  # -1 outside the layers
    weight: str | None  # llama2.c tensor name for matmuls and norms (wq, w1, rms_att_weight, ...)
    rows: int  # activation rows: B users (decode) or P tokens (prefill)
    n_out: int
    n_in: int
    flops: int
    weight_bytes: int
    act_bytes: int  # activations read + written
    kv_read_bytes: int
    kv_write_bytes: int
    deps: tuple[int, ...] = ()
    experts: int = 1  # distinct experts whose weights this op streams (MoE)
    stage: int = 0  # pipeline stage whose chips run the op (lpu.shard)
    group: int = 1  # chips taking part in a collective
    hops: int = 0  # chip-to-chip hops a transfer crosses


@dataclass
class Graph:
    """Ops of one step, in execution order; array views (``flops``, ``weight_bytes``...) for vectorised cost models."""

    model: models.ModelConfig
    precision: models.Precision
    phase: str  # "decode" or "prefill"
    tokens: int
    context: int
    ops: list[Op] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops)

    def _array(self, attr: str) -> np.ndarray:
        return np.array([getattr(o, attr) for o in self.ops], dtype=np.int64)

    @cached_property
    def flops(self) -> np.ndarray:
        return self._array("flops")

    @cached_property
    def weight_bytes(self) -> np.ndarray:
        return self._array("weight_bytes")

    @cached_property
    def act_bytes(self) -> np.ndarray:
        return self._array("act_bytes")

    @cached_property
    def kv_bytes(self) -> np.ndarray:
        return self._array("kv_read_bytes") + self._array("kv_write_bytes")

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.ops]

    def totals(self) -> dict[str, int]:
        return dict(flops=int(self.flops.sum()), weight_bytes=int(self.weight_bytes.sum()), act_bytes=int(self.act_bytes.sum()),
                    kv_bytes=int(self.kv_bytes.sum()))

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([o.__dict__ for o in self.ops])


def expected_experts(n_experts: int, k: int, rows: int) -> float:
    """Expected distinct experts touched when ``rows`` tokens each route to ``k`` of ``n_experts`` uniformly."""
    return n_experts * (1 - (1 - k / n_experts) ** rows)


def build(model: models.ModelConfig | str, phase: str = "decode", tokens: int = 1, context: int = 0,
          precision: str | models.Precision = "fp16") -> Graph:
    """The ops of one decode step (``tokens`` users) or one prefill chunk (``tokens`` prompt tokens).

    Parameters
    ----------
    model : ModelConfig or str
    phase : {"decode", "prefill"}
    tokens : int
        Users in the batch (decode) or prompt tokens (prefill).
    context : int
        Positions already in the KV cache of each sequence.
    precision : str or Precision
        Sets weight, activation and KV-cache bytes.
    """
    m = models.get(model)
    p = models.get_precision(precision)
    if phase not in ("decode", "prefill"):
        raise ValueError(f"phase must be 'decode' or 'prefill', got {phase!r}")
    if not isinstance(tokens, (int, np.integer)) or tokens < 1:
        raise ValueError(f"tokens must be a positive integer, got {tokens!r}")
    if not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be a non-negative integer, got {context!r}")
    span = context + (tokens if phase == "prefill" else 1)
    if span > m.seq_len:
        raise ValueError(f"{m.name} has a context of {m.seq_len} tokens; this step would reach position {span}")
    g = Graph(m, p, phase, int(tokens), int(context))
    R = int(tokens)
    a = models.DTYPE_BYTES[p.activations]
    wb = {"attention": models.DTYPE_BYTES[p.attention], "ffn": models.DTYPE_BYTES[p.ffn], "embedding": models.DTYPE_BYTES[p.embedding]}
    # attention positions summed over rows: decode attends context+1 each; prefill is causal
    attended = R * (context + 1) if phase == "decode" else R * context + R * (R + 1) // 2
    # cached rows read: each decode user reads its own cache; a prefill chunk reads each key/value row once for all its queries
    kv_rows = attended if phase == "decode" else context + R

    def add(name, kind, deps, layer=-1, weight=None, n_out=0, n_in=0, wbytes_per=0.0, experts=1, flops=None, act=None, kv_r=0, kv_w=0):
        if flops is None:
            flops = 2 * R * n_out * n_in * experts if kind == "matmul" else VECTOR_FLOPS_PER_ELEMENT[kind] * R * max(n_out, 1)
        if act is None:
            act = int(R * (n_in + n_out) * a)
        g.ops.append(Op(name, kind, layer, weight, R, n_out, n_in, int(flops), int(round(n_out * n_in * wbytes_per * experts)), int(act),
                        int(kv_r), int(kv_w), tuple(deps), experts))
        return len(g.ops) - 1

    x = add("embed", "embed", (), weight="token_embedding_table", n_out=m.dim, wbytes_per=0, act=R * m.dim * a)
    hd, kv, qd = m.head_dim, m.kv_dim, m.q_dim  # qd: n_heads * head_dim, dim unless head_dim is given
    for layer in range(m.n_layers):
        L = f"L{layer}."
        n1 = add(L + "attn_norm", "rmsnorm", (x,), layer, "rms_att_weight", m.dim, m.dim, flops=4 * R * m.dim, act=2 * R * m.dim * a)
        q = add(L + "wq", "matmul", (n1,), layer, "wq", qd, m.dim, wb["attention"])
        k = add(L + "wk", "matmul", (n1,), layer, "wk", kv, m.dim, wb["attention"])
        v = add(L + "wv", "matmul", (n1,), layer, "wv", kv, m.dim, wb["attention"])
        r = add(L + "rope", "rope", (q, k), layer, n_out=qd + kv, act=2 * R * (qd + kv) * a)
        w = add(L + "kv_write", "kv_write", (r, v), layer, n_out=2 * kv, act=2 * R * kv * a, kv_w=2 * R * kv * a)
        s = add(L + "attn_scores", "attention_scores", (r, w), layer, n_out=m.n_heads, n_in=hd, flops=2 * m.n_heads * hd * attended,
                act=R * qd * a + m.n_heads * attended * a, kv_r=kv_rows * kv * a)
        sm = add(L + "softmax", "softmax", (s,), layer, n_out=m.n_heads, flops=5 * m.n_heads * attended, act=2 * m.n_heads * attended * a)
        av = add(L + "attn_values", "attention_values", (sm, w), layer, n_out=m.n_heads, n_in=hd, flops=2 * m.n_heads * hd * attended,
                 act=m.n_heads * attended * a + R * qd * a, kv_r=kv_rows * kv * a)
        o = add(L + "wo", "matmul", (av,), layer, "wo", m.dim, qd, wb["attention"])
        x = add(L + "attn_residual", "residual", (o, x), layer, n_out=m.dim, act=3 * R * m.dim * a)
        n2 = add(L + "ffn_norm", "rmsnorm", (x,), layer, "rms_ffn_weight", m.dim, m.dim, flops=4 * R * m.dim, act=2 * R * m.dim * a)
        experts, src = 1, n2
        if m.is_moe:
            src = add(L + "router", "router", (n2,), layer, "router", m.n_experts, m.dim, wbytes_per=a,
                      flops=2 * R * m.dim * m.n_experts + 5 * R * m.n_experts, act=R * (m.dim + m.n_experts) * a)
            experts = expected_experts(m.n_experts, m.experts_per_token, R)
        # matmul FLOPs use the experts each row actually runs (k per token); weight bytes the distinct experts streamed
        k_per_row = m.experts_per_token if m.is_moe else 1
        h1 = add(L + "w1", "matmul", (src,), layer, "w1", m.hidden_dim, m.dim, wb["ffn"], experts, flops=2 * R * m.hidden_dim * m.dim * k_per_row)
        h3 = add(L + "w3", "matmul", (src,), layer, "w3", m.hidden_dim, m.dim, wb["ffn"], experts, flops=2 * R * m.hidden_dim * m.dim * k_per_row)
        sg = add(L + "swiglu", "swiglu", (h1, h3), layer, n_out=m.hidden_dim * k_per_row, act=3 * R * m.hidden_dim * k_per_row * a)
        d = add(L + "w2", "matmul", (sg,), layer, "w2", m.dim, m.hidden_dim, wb["ffn"], experts, flops=2 * R * m.hidden_dim * m.dim * k_per_row)
        x = add(L + "ffn_residual", "residual", (d, x), layer, n_out=m.dim, act=3 * R * m.dim * a)
    fn = add("final_norm", "rmsnorm", (x,), -1, "rms_final_weight", m.dim, m.dim, flops=4 * R * m.dim, act=2 * R * m.dim * a)
    # prefill only needs the logits of the last position
    cls_rows = R if phase == "decode" else 1
    c = add("classifier", "matmul", (fn,), -1, "wcls", m.vocab_size, m.dim, wb["embedding"], flops=2 * cls_rows * m.vocab_size * m.dim,
            act=cls_rows * (m.dim + m.vocab_size) * a)
    add("sample", "sample", (c,), -1, n_out=m.vocab_size, flops=2 * cls_rows * m.vocab_size, act=cls_rows * m.vocab_size * a)
    return g


def decode(model, batch: int = 1, context: int = 0, precision="fp16") -> Graph:
    """One decode step of ``batch`` users, each with ``context`` tokens already cached."""
    return build(model, "decode", batch, context, precision)


def prefill(model, prompt_tokens: int, context: int = 0, precision="fp16") -> Graph:
    """One prefill chunk of ``prompt_tokens`` tokens after ``context`` cached ones."""
    return build(model, "prefill", prompt_tokens, context, precision)
