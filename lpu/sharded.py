"""Executing a sharded plan with real weights: each simulated LPU holds only its shards.

`ChipShard` is one chip of an `lpu.shard.Plan` (pipeline stage x tensor-parallel
rank) with its own copies of its weight slices and KV cache; `forward` runs one
decode step over all of them, with the collectives written out: `_all_reduce`
after each row-split projection, `_all_gather` of the logits, `_send` between
stages. `lpu.runtime.Engine(..., chips=N)` uses it; its greedy tokens equal
``chips=1``'s (``tests/test_sharded_runtime.py``). Introduced in
``notebooks/04_sharding.ipynb``.
"""

from __future__ import annotations

import numpy as np

from . import checkpoint, graph, kernels, shard
from .checkpoint import MATRICES
from .quant import QuantizedTensor


def _layer_matrix(w: np.ndarray | QuantizedTensor, layer: int) -> np.ndarray | QuantizedTensor:
    """Layer ``layer`` of a stacked (L, d_out, d_in) weight."""
    if isinstance(w, QuantizedTensor):
        return QuantizedTensor(w.q[layer], w.scales[layer], w.group_size)
    return w[layer]


def _take(w: np.ndarray | QuantizedTensor, rows: range | None = None, cols: range | None = None) -> np.ndarray | QuantizedTensor:
    """A new array (never a view) holding rows ``rows`` and columns ``cols`` of the (d_out, d_in) matrix ``w``.

    int8 weights stay as they are where the column cut falls on their group
    boundaries; otherwise the shard is dequantized (and `lpu.kernels.Linear`
    quantizes it again in groups of gcd(shard d_in, 64)).
    """
    r = slice(None) if rows is None else slice(rows.start, rows.stop)
    c = slice(None) if cols is None else slice(cols.start, cols.stop)
    if isinstance(w, QuantizedTensor):
        g = w.group_size
        if cols is None or (cols.start % g == 0 and len(cols) % g == 0):
            gc = slice(None) if cols is None else slice(cols.start // g, cols.stop // g)
            return QuantizedTensor(w.q[r, c].copy(), w.scales[r, gc].copy(), g)
        return w.dequantize()[r, c].copy()
    return np.array(w[r, c], dtype=np.float32, order="C", copy=True)


class ChipShard:
    """One simulated LPU of a sharded `Engine`: pipeline stage ``stage``, tensor-parallel rank ``rank``.

    It holds only its own shards, as arrays of its own made at load time: for
    each layer of its stage, the rows of ``wq`` of its query heads
    (``plan.heads(rank)``), the rows of ``wk``/``wv`` of the KV heads they read
    (``plan.kv_heads(rank)``; replicated on several ranks where tp exceeds the
    KV heads), the columns of ``wo`` of its heads, the rows of ``w1``/``w3`` and
    columns of ``w2`` of its FFN slice (``plan.hidden(rank)``) and its own copy
    of the norm weights; the first stage's chips hold the embedding rows of their
    vocabulary slice (``plan.vocab(rank)``), the last stage's the classifier rows
    of theirs and the final norm. Its KV cache covers only its KV heads and its
    stage's layers, laid out (layer, kv head, head_dim, position) as the attention kernel reads it.
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, plan: shard.Plan, stage: int, rank: int, precision: str):
        c, w = ckpt.config, ckpt.weights
        self.stage, self.rank, self.chip_id = stage, rank, plan.chip_id(stage, rank)
        self.layers = plan.stage_layers[stage]
        self.heads, self.kv_heads, self.hidden = plan.heads(rank), plan.kv_heads(rank), plan.hidden(rank)
        self.vocab = plan.vocab(rank)
        self.first, self.last = stage == 0, stage == plan.pp - 1
        hd = c.head_dim
        q_rows = range(self.heads.start * hd, self.heads.stop * hd)  # also wo's columns
        kv_rows = range(self.kv_heads.start * hd, self.kv_heads.stop * hd)
        cut = {"wq": (q_rows, None), "wk": (kv_rows, None), "wv": (kv_rows, None), "wo": (None, q_rows),
               "w1": (self.hidden, None), "w3": (self.hidden, None), "w2": (None, self.hidden)}
        self.linears = [{name: kernels.Linear(_take(_layer_matrix(w[name], layer), *cut[name]), precision) for name in MATRICES}
                        for layer in self.layers]
        self.rms_att = np.array(w["rms_att_weight"][self.layers.start:self.layers.stop], np.float32)  # (layers here, dim), a copy
        self.rms_ffn = np.array(w["rms_ffn_weight"][self.layers.start:self.layers.stop], np.float32)
        self.embedding = _take(w["token_embedding_table"], self.vocab) if self.first else None  # fp32 rows, for the lookup
        self.rms_final = np.array(w["rms_final_weight"], np.float32) if self.last else None
        self.classifier = kernels.Linear(_take(ckpt.classifier, self.vocab), precision) if self.last else None
        # attention: the local query heads that read each local KV head (GQA), as (q lo, q hi, kv head) slices
        group = c.n_heads // c.n_kv_heads
        self.attn_groups = []
        for h in self.heads:
            g = h // group - self.kv_heads.start
            if self.attn_groups and self.attn_groups[-1][2] == g:
                self.attn_groups[-1][1] += hd
            else:
                self.attn_groups.append([(h - self.heads.start) * hd, (h - self.heads.start + 1) * hd, g])
        f = np.float32
        n_kv = len(self.kv_heads)
        self.x = np.zeros((1, c.dim), f)  # this chip's copy of the residual stream
        self.xb = np.zeros((1, c.dim), f)
        self.q = np.zeros(len(q_rows), f)
        self.k = np.zeros(len(kv_rows), f)
        self.v = np.zeros(len(kv_rows), f)
        self.att_out = np.zeros(len(q_rows), f)
        self.partial = np.zeros(c.dim, f)  # this chip's share of a sum over the stage (wo, w2, embedding)
        self.h1 = np.zeros(len(self.hidden), f)
        self.h3 = np.zeros(len(self.hidden), f)
        self.logits = np.zeros(len(self.vocab), f) if self.last else None
        self.k_cache = np.zeros((len(self.layers), n_kv, hd, c.seq_len), f)
        self.v_cache = np.zeros((len(self.layers), n_kv, hd, c.seq_len), f)
        self.att = np.zeros((len(self.heads), c.seq_len), f)  # attention scores' scratch
        self.rope_cos, self.rope_sin = kernels.rope_table(c.seq_len, hd, c.rope_theta)

    def tensors(self) -> dict[str, list[np.ndarray | QuantizedTensor]]:
        """This chip's weight arrays by llama2.c tensor name (one per layer for the per-layer ones)."""
        out = {name: [lin[name].w for lin in self.linears] for name in self.linears[0]} if self.linears else {}
        out["rms_att_weight"], out["rms_ffn_weight"] = list(self.rms_att), list(self.rms_ffn)
        if self.first:
            out["token_embedding_table"] = [self.embedding]
        if self.last:
            out["rms_final_weight"], out["classifier"] = [self.rms_final], [self.classifier.w]
        return out

    @property
    def weight_bytes(self) -> int:
        """Bytes of this chip's matrices (classifier shard included), at the storage precision."""
        return sum(lin.nbytes for layer in self.linears for lin in layer.values()) + (self.classifier.nbytes if self.last else 0)


def _all_reduce(partials: list[np.ndarray]) -> list[np.ndarray]:
    """Sum of the ranks' partial vectors, in rank order (deterministic), one copy for each rank."""
    total = partials[0].copy()
    for p in partials[1:]:
        total += p
    return [total.copy() for _ in partials]


def _all_gather(shards: list[np.ndarray]) -> list[np.ndarray]:
    """The ranks' shards concatenated in rank order, one copy for each rank."""
    full = np.concatenate(shards)
    return [full.copy() for _ in shards]


def _send(x: np.ndarray) -> np.ndarray:
    """A vector sent to another chip: the receiver gets its own copy."""
    return x.copy()


def sharded_op_names(plan: shard.Plan) -> list[str]:
    """The ops one decode step of a ``plan.chips > 1`` engine executes: ``graph.decode``'s names with the collectives.

    After ``embed`` comes ``embed_allreduce`` (the embedding is split by vocabulary
    over the first stage's ranks); after ``L{i}.wo`` and ``L{i}.w2``,
    ``L{i}.attn_allreduce`` and ``L{i}.ffn_allreduce``; after the last layer of
    stage s, ``stage{s}->{s+1}.send``; after ``classifier``,
    ``classifier_allgather``; ``sample`` last. All-reduces and all-gathers appear
    only when ``plan.tp > 1``, sends only when ``plan.pp > 1``. ``Engine.trace``
    records these names, each op once per step (all ranks of a stage run it).
    """
    tp, names = plan.tp > 1, []
    last_of_stage = {r.stop - 1: s for s, r in enumerate(plan.stage_layers[:-1])}
    for name in graph.decode(plan.model, 1, 0).names:
        names.append(name)
        layer, _, op = name.partition(".")
        if tp and name == "embed":
            names.append("embed_allreduce")
        elif tp and op in ("wo", "w2"):
            names.append(f"{layer}.{'attn' if op == 'wo' else 'ffn'}_allreduce")
        elif op == "ffn_residual" and int(layer[1:]) in last_of_stage:
            s = last_of_stage[int(layer[1:])]
            names.append(f"stage{s}->{s + 1}.send")
        elif tp and name == "classifier":
            names.append("classifier_allgather")
    return names


def forward(shards: list[ChipShard], plan: shard.Plan, token: int, pos: int, logits: np.ndarray, trace: list[str] | None = None) -> np.ndarray:
    """One decode step on the chips of ``plan``, writing the logits into ``logits``.

    A readable loop over stages and ranks (a functional model, not the fast
    path); ``trace``, if given, receives the names of `sharded_op_names`.
    """
    c, hd = plan.model, plan.model.head_dim
    record = trace.append if trace is not None else (lambda name: None)
    stages = [shards[s * plan.tp:(s + 1) * plan.tp] for s in range(plan.pp)]

    def reduce_into_residual(chips):  # all-reduce of the ranks' partials; each rank adds the sum to its residual
        for ch, total in zip(chips, _all_reduce([ch.partial for ch in chips])):
            ch.x[0] += total

    # embedding: each first-stage rank holds its vocabulary slice; the rank owning the token contributes its row
    for ch in stages[0]:
        ch.partial[:] = ch.embedding[token - ch.vocab.start] if token in ch.vocab else 0.0
        ch.x[0] = 0.0
    record("embed")
    reduce_into_residual(stages[0])  # exact: every other rank adds zeros
    if plan.tp > 1:
        record("embed_allreduce")
    for s, chips in enumerate(stages):
        for i, layer in enumerate(plan.stage_layers[s]):
            L = f"L{layer}."
            for ch in chips:
                lin = ch.linears[i]
                kernels._rmsnorm(ch.x, ch.rms_att[i], c.norm_eps, ch.xb)
                lin["wq"](ch.xb[0], ch.q)
                lin["wk"](ch.xb[0], ch.k)
                lin["wv"](ch.xb[0], ch.v)
                kernels._rope(ch.q.reshape(1, -1), ch.k.reshape(1, -1), pos, ch.rope_cos, ch.rope_sin)
                ch.k_cache[i, :, :, pos] = ch.k.reshape(-1, hd)
                ch.v_cache[i, :, :, pos] = ch.v.reshape(-1, hd)
                for lo, hi, g in ch.attn_groups:  # the local query heads reading local KV head g
                    kernels._attention(ch.q[lo:hi].reshape(1, -1), ch.k_cache[i, g], ch.v_cache[i, g], pos, 1, ch.att_out[lo:hi].reshape(1, -1),
                                       ch.att, kernels._chunks())
                lin["wo"](ch.att_out, ch.partial)  # this rank's heads' share of the output projection
            for name in ("attn_norm", "wq", "wk", "wv", "rope", "kv_write", "attn_scores", "softmax", "attn_values", "wo"):
                record(L + name)
            reduce_into_residual(chips)
            if plan.tp > 1:
                record(L + "attn_allreduce")
            record(L + "attn_residual")
            for ch in chips:
                lin = ch.linears[i]
                kernels._rmsnorm(ch.x, ch.rms_ffn[i], c.norm_eps, ch.xb)
                lin["w1"](ch.xb[0], ch.h1)
                lin["w3"](ch.xb[0], ch.h3)
                kernels._swiglu(ch.h1, ch.h3)
                lin["w2"](ch.h1, ch.partial)  # this rank's FFN slice's share
            for name in ("ffn_norm", "w1", "w3", "swiglu", "w2"):
                record(L + name)
            reduce_into_residual(chips)
            if plan.tp > 1:
                record(L + "ffn_allreduce")
            record(L + "ffn_residual")
        if s + 1 < plan.pp:  # rank r of stage s sends the residual to rank r of stage s + 1
            for src, dst in zip(chips, stages[s + 1]):
                dst.x[0] = _send(src.x[0])
            record(f"stage{s}->{s + 1}.send")
    for ch in stages[-1]:
        kernels._rmsnorm(ch.x, ch.rms_final, c.norm_eps, ch.xb)
        ch.classifier(ch.xb[0], ch.logits)  # this rank's vocabulary slice
    record("final_norm")
    record("classifier")
    logits[:] = _all_gather([ch.logits for ch in stages[-1]])[0]
    if plan.tp > 1:
        record("classifier_allgather")
    return logits
