"""Sharding a model over many LPUs: pipeline stages, tensor parallelism, expert placement, topology.

A `Plan` cuts a model over ``chips`` LPUs: ``pp`` pipeline stages, each a
contiguous group of layers, and inside each stage ``tp`` chips splitting every
layer tensor-parallel (attention head-wise, ``wq/wk/wv/w1/w3`` by output
columns, ``wo/w2`` by input rows followed by an all-reduce, the classifier by
vocabulary followed by an all-gather).

Mixtral's experts are split like a dense FFN: every rank holds its share of
the FFN columns of *every* expert, so a step streams, on each rank, 1/tp of
each expert the tokens route to. The alternative, expert parallelism (whole
experts on ``tp / n_experts`` chips each), was costed and is not used: with
E experts of which a step touches E(B) (``graph.expected_experts``), the
busiest expert-parallel chip streams 1/(tp/E) = E/tp of an expert while a
tensor-parallel chip streams E(B)/tp of one, and E(B) <= E for every batch
(at batch 1, 2/tp against 8/tp: 4x less on Mixtral); both need the same
all-reduce after ``w2``, and with fewer than E ranks expert parallelism does
not fit at all (a whole expert of every layer per chip). Chips are numbered node by node (8 chips all-to-all) and rack by rack
(9 nodes), so a stage of up to 8 chips sits in one node. Introduced in
``notebooks/04_sharding.ipynb``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from . import graph, hardware, models, sram


def split_sizes(n: int, parts: int) -> list[int]:
    """``n`` items cut into ``parts`` contiguous pieces whose sizes differ by at most one (larger first)."""
    if parts < 1 or n < parts:
        raise ValueError(f"cannot cut {n} into {parts} non-empty parts")
    q, r = divmod(n, parts)
    return [q + 1] * r + [q] * (parts - r)


def piece(n: int, parts: int, i: int) -> range:
    """The ``i``-th of `split_sizes` (n, parts)'s pieces, in closed form (no list of every piece)."""
    q, r = divmod(n, parts)
    start = i * q + min(i, r)
    return range(start, start + q + (i < r))


def offsets(sizes: list[int]) -> list[int]:
    out, t = [], 0
    for s in sizes:
        out.append(t)
        t += s
    return out


@dataclass(frozen=True)
class Plan:
    """``pp`` pipeline stages x ``tp`` tensor-parallel chips (chips = pp x tp)."""

    model: models.ModelConfig
    pp: int
    tp: int
    precision: models.Precision

    def __post_init__(self):
        m = self.model
        if self.pp < 1 or self.tp < 1:
            raise ValueError(f"pp and tp must be positive, got pp={self.pp}, tp={self.tp}")
        if self.pp > m.n_layers:
            raise ValueError(f"{m.name} has {m.n_layers} layers: at most {m.n_layers} pipeline stages, asked for {self.pp}")
        if self.tp > m.n_heads:
            raise ValueError(f"{m.name} has {m.n_heads} attention heads: at most {m.n_heads} tensor-parallel chips, asked for {self.tp}")

    @property
    def chips(self) -> int:
        return self.pp * self.tp

    @property
    def stage_layers(self) -> list[range]:
        """Layers of each stage (earlier stages take the extra layer when they do not divide)."""
        sizes = split_sizes(self.model.n_layers, self.pp)
        return [range(o, o + s) for o, s in zip(offsets(sizes), sizes)]

    def heads(self, rank: int) -> range:
        """Query heads of tensor-parallel rank ``rank``."""
        return piece(self.model.n_heads, self.tp, rank)

    def kv_heads(self, rank: int) -> range:
        """KV heads rank ``rank`` needs for its query heads (replicated where tp exceeds the KV heads)."""
        group = self.model.n_heads // self.model.n_kv_heads
        h = self.heads(rank)
        return range(h.start // group, (h.stop - 1) // group + 1)

    def hidden(self, rank: int) -> range:
        """FFN inner columns of rank ``rank``."""
        return piece(self.model.hidden_dim, self.tp, rank)

    def vocab(self, rank: int) -> range:
        """Classifier rows (vocabulary entries) of rank ``rank``."""
        return piece(self.model.vocab_size, self.tp, rank)

    def chip_id(self, stage: int, rank: int) -> int:
        return stage * self.tp + rank

    def describe(self) -> str:
        return f"{self.chips} chips = {self.pp} pipeline stage(s) x {self.tp}-way tensor parallel, {self.precision.name}"


def candidate_plans(model: models.ModelConfig | str, chips: int, precision: str | models.Precision = "int8") -> list[Plan]:
    """Every pp x tp factorisation of ``chips`` the model allows (stages <= layers, tp <= heads)."""
    m, p = models.get(model), models.get_precision(precision)
    if not isinstance(chips, int) or chips < 1:
        raise ValueError(f"chips must be a positive integer, got {chips!r}")
    plans = [Plan(m, chips // tp, tp, p) for tp in range(1, chips + 1)
             if chips % tp == 0 and chips // tp <= m.n_layers and tp <= m.n_heads]
    if not plans:
        raise ValueError(f"{chips} chips cannot be cut as stages (<= {m.n_layers} layers) x tensor-parallel chips (<= {m.n_heads} heads) for {m.name}")
    return plans


def functional_plan(model: models.ModelConfig | str, chips: int) -> Plan:
    """The plan the runtime executes for ``chips``: the widest tensor parallelism within a node (<= 8), the rest as stages."""
    plans = candidate_plans(model, chips, "fp32")
    within_node = [p for p in plans if p.tp <= hardware.GROQ_NODE.chips] or plans
    return max(within_node, key=lambda p: p.tp)


# ---- topology ---------------------------------------------------------------------------


def hops(a: int, b: int, rack: hardware.RackSpec | str = "groqrack") -> int:
    """Chip-to-chip hops between chips ``a`` and ``b`` on minimal routes of the software-scheduled Dragonfly.

    Same node (8 chips, all-to-all): 1 hop. Same rack: 2 (to the right node, then
    the right chip). Different racks: 3 (local, global, local). The chip is its
    own switch, so a hop is a chip-to-chip link, ~300 ns (`ChipSpec`).
    """
    r = hardware.get(rack)
    if a == b:
        return 0
    if a // r.node.chips == b // r.node.chips:
        return 1
    if a // r.chips == b // r.chips:
        return 2
    return 3


def hops_array(a: np.ndarray, b: np.ndarray, rack: hardware.RackSpec | str = "groqrack") -> np.ndarray:
    """`hops` of each pair (``a[i]``, ``b[i]``) at once."""
    r = hardware.get(rack)
    same_node, same_rack = a // r.node.chips == b // r.node.chips, a // r.chips == b // r.chips
    return np.where(a == b, 0, np.where(same_node, 1, np.where(same_rack, 2, 3))).astype(np.int64)


def group_hops(chips: list[int]) -> int:
    """The most hops between any two chips of a collective group (its members are contiguous)."""
    return hops(min(chips), max(chips))


# ---- the sharded step --------------------------------------------------------------------

COLUMN_SPLIT = ("wq", "wk", "wv", "w1", "w3", "wcls")  # outputs split across tensor-parallel ranks
ROW_SPLIT = ("wo", "w2")  # inputs split: partial sums, then an all-reduce
SPLIT_KINDS = ("rope", "kv_write", "attention_scores", "softmax", "attention_values", "swiglu")  # per head / per FFN column


def step_graph(plan: Plan, phase: str = "decode", tokens: int = 1, context: int = 0, rows_per_user: int = 1) -> graph.Graph:
    """The ops one chip of each stage runs for a step, with the collectives and stage-to-stage sends made explicit.

    Tensor-parallel ranks of a stage run the same ops on their shards in
    lockstep, so each op is costed for one rank (the largest shard) and tagged
    with its stage; ``allreduce`` after ``wo`` and ``w2``, ``allgather`` of the
    logits and ``send`` between stages are ops on the chips' links.

    Built on `graph.build`'s columns, every op at once (`step_graph_reference` is the same, op by op: tested
    equal in tests/test_fast_path.py). ``rows_per_user``: as `lpu.graph.build` (a verify step).
    """
    m, T = plan.model, plan.tp
    base = graph.build(m, phase, tokens, context, plan.precision, rows_per_user)
    b = base.cols
    a = models.DTYPE_BYTES[plan.precision.activations]
    R, n = base.tokens, len(b)
    stage_of = np.full(m.n_layers, plan.pp - 1, np.int64)
    for s, layers in enumerate(plan.stage_layers):
        stage_of[layers.start:layers.stop] = s
    stage = np.where(b.layer >= 0, stage_of[np.maximum(b.layer, 0)], plan.pp - 1)
    stage[b.kind == "embed"] = 0  # the embedding (the one op of its kind) runs on the first stage
    # dependencies crossing into a later stage read their producer's send (one per producer, made before its first reader)
    consumer = np.repeat(np.arange(n), np.diff(b.dep_ptr))
    crossing = stage[b.dep_idx] < stage[consumer]
    producers, first = np.unique(b.dep_idx[crossing], return_index=True)
    order = np.argsort(first, kind="stable")
    producers, first_edge = producers[order], np.flatnonzero(crossing)[first[order]]
    reader = consumer[first_edge]
    sends_before = np.bincount(reader, minlength=n)
    weight = b.weight
    row_split, cls, mm, out, vec = _split_masks(b)
    is_row, is_cls = row_split & (T > 1), cls & (T > 1)
    after = (is_row | is_cls).astype(np.int64)
    extra = sends_before + after
    pos = np.arange(n) + np.concatenate([[0], np.cumsum(extra)[:-1]]) + sends_before  # each op's index in the step graph
    new_index = pos + after  # what its readers read: the op, or the collective after it
    rank_in_reader = np.arange(len(reader)) - np.searchsorted(reader, reader)  # readers are in op order
    send_pos = pos[reader] - sends_before[reader] + rank_in_reader
    send_of = np.full(n, -1, np.int64)
    send_of[producers] = send_pos
    N = n + int(extra.sum())

    # the ops themselves, split over the stage's tensor-parallel ranks (the largest shard)
    big = lambda x: -(-x // T)  # noqa: E731
    kv_share = 1 / min(T, m.n_kv_heads)  # each rank's KV heads (replicated beyond the KV heads)
    flops, act, n_out, n_in = b.flops.copy(), b.act_bytes.copy(), b.n_out.copy(), b.n_in.copy()
    wbytes, kv_r, kv_w = b.weight_bytes.copy(), b.kv_read_bytes.copy(), b.kv_write_bytes.copy()
    split_dim = np.where(out, b.n_out, b.n_in)
    wbytes[mm] = b.weight_bytes[mm] * big(split_dim[mm]) // np.maximum(split_dim[mm], 1)
    both = mm | vec
    flops[both] //= T
    act[both] = (b.act_bytes[both].astype(np.int64) // T).astype(np.float64)
    n_out[out | vec] = big(b.n_out[out | vec])
    n_in[mm & ~out] = big(b.n_in[mm & ~out])
    kv_r[vec] = (b.kv_read_bytes[vec] * kv_share).astype(np.int64)
    kv_w[vec] = (b.kv_write_bytes[vec] * kv_share).astype(np.int64)

    # one array per Op field over the N ops: the base ops at pos, their sends before, their collectives after
    coll = np.flatnonzero(after)
    coll_pos, sender = pos[coll] + 1, stage[producers]
    first_chip = np.arange(plan.pp, dtype=np.int64) * T
    stage_hops = hops_array(first_chip, first_chip + T - 1)
    send_hops = hops_array(first_chip, first_chip + T)  # chip 0 of a stage to chip 0 of the next

    def column(base_values, send_values, coll_values, dtype):
        col = np.empty(N, dtype)
        col[pos], col[send_pos], col[coll_pos] = base_values, send_values, coll_values
        return col

    i64, f64 = np.int64, np.float64
    rows_c = np.where(is_cls[coll] & (phase != "decode"), 1, R)
    cls_c = is_cls[coll]
    layer_c = b.layer[coll]

    def names() -> np.ndarray:  # made when something reads them
        return column(b.name, graph._object_array([f"stage{s}->{s + 1}.send" for s in sender.tolist()]),
                      graph._object_array(["classifier_allgather" if c else f"L{layer}.{'attn' if w == 'wo' else 'ffn'}_allreduce"
                                           for c, layer, w in zip(cls_c.tolist(), layer_c.tolist(), weight[coll].tolist())]), object)

    kind = column(b.kind, "send", np.where(cls_c, "allgather", "allreduce"), np.result_type(b.kind.dtype, "<U9"))
    # dependencies: a base op reads new_index (or the send) of each producer; a send reads its producer; a collective its op
    dep_ptr = np.zeros(N + 1, i64)
    dep_ptr[1:] = np.cumsum(column(np.diff(b.dep_ptr), 1, 1, i64))
    dep_idx = np.empty(dep_ptr[-1], i64)
    dep_idx[dep_ptr[pos[consumer]] + (np.arange(len(consumer)) - b.dep_ptr[consumer])] = np.where(crossing, send_of[b.dep_idx],
                                                                                                  new_index[b.dep_idx])
    dep_idx[dep_ptr[send_pos]] = new_index[producers]
    dep_idx[dep_ptr[coll_pos]] = pos[coll]
    cols = graph.Columns(
        names_from=names, kind=kind, layer=column(b.layer, b.layer[reader], np.where(cls_c, -1, layer_c), i64),
        weight=column(weight, None, None, object), rows=column(b.rows, R, rows_c, i64),
        n_out=column(n_out, m.dim, np.where(cls_c, m.vocab_size, m.dim), i64), n_in=column(n_in, 0, 0, i64),
        flops=column(flops, 0, np.where(cls_c, 0, R * m.dim), i64), weight_bytes=column(wbytes, 0, 0, i64),
        act_bytes=column(act, R * m.dim * a, np.where(cls_c, rows_c * m.vocab_size * a, R * m.dim * a), f64),
        kv_read_bytes=column(kv_r, 0, 0, i64), kv_write_bytes=column(kv_w, 0, 0, i64),
        dep_ptr=dep_ptr, dep_idx=dep_idx, experts=column(b.experts, 1, 1, object), stage=column(stage, sender, stage[coll], i64),
        group=column(b.group, 2, T, i64), hops=column(b.hops, send_hops[sender], stage_hops[stage[coll]], i64),
        act_float=column(b.act_float, True, True, bool))
    # the distinct kinds and weights, and each op's index into them, follow from the base graph's (no pass over the ops)
    kinds, kind_of = graph.codes(b, "kind")
    kinds = kinds + [k for k in ("send", "allreduce", "allgather") if k not in kinds]
    cols.cache[("codes", "kind")] = kinds, column(kind_of, kinds.index("send"), np.where(cls_c, kinds.index("allgather"),
                                                                                         kinds.index("allreduce")), i64)
    weights, weight_of = graph.codes(b, "weight")
    weights = weights + ([None] if None not in weights else [])
    cols.cache[("codes", "weight")] = weights, column(weight_of, weights.index(None), weights.index(None), i64)
    return graph.Graph(m, plan.precision, phase, base.tokens, base.context, columns=graph.freeze(cols), rows_per_user=base.rows_per_user)


def _split_masks(b: graph.Columns) -> tuple[np.ndarray, ...]:
    """Which base ops are row-split matmuls (all-reduce after), the classifier (all-gather after), split matmuls, split
    by output column, and split vector ops: they depend on the base graph only, so are derived once per base graph."""
    if "shard" not in b.cache:
        wname = graph.weight_names(b)
        mm = (b.kind == "matmul") & np.isin(wname, COLUMN_SPLIT + ROW_SPLIT)  # MoE: every expert split like a dense FFN
        b.cache["shard"] = (np.isin(wname, ROW_SPLIT), wname == "wcls", mm, mm & np.isin(wname, COLUMN_SPLIT), np.isin(b.kind, SPLIT_KINDS))
    return b.cache["shard"]


def step_graph_reference(plan: Plan, phase: str = "decode", tokens: int = 1, context: int = 0, rows_per_user: int = 1) -> graph.Graph:
    """`step_graph` op by op on `graph.build_reference`'s ops (the reference path of ``lpu.simulate(reference=True)``)."""
    m, T = plan.model, plan.tp
    base = graph.build_reference(m, phase, tokens, context, plan.precision, rows_per_user)
    a = models.DTYPE_BYTES[plan.precision.activations]
    stage_of = {layer: s for s, layers in enumerate(plan.stage_layers) for layer in layers}
    big = lambda n: -(-n // T)  # the largest of T near-equal shards  # noqa: E731
    kv_share = 1 / min(T, m.n_kv_heads)  # each rank's KV heads (replicated beyond the KV heads)
    g = graph.Graph(m, plan.precision, phase, base.tokens, base.context, rows_per_user=base.rows_per_user)
    new_index: dict[int, int] = {}
    sent: dict[int, int] = {}  # producer op -> its send to the next stage
    R = base.tokens

    def push(op: graph.Op) -> int:
        g.ops.append(op)
        return len(g.ops) - 1

    for i, op in enumerate(base.ops):
        stage = 0 if op.name == "embed" else stage_of.get(op.layer, plan.pp - 1)
        deps = []
        for d in op.deps:
            nd = new_index[d]
            if g.ops[nd].stage < stage:  # crossing into this stage: the residual stream is sent
                if nd not in sent:
                    src = g.ops[nd].stage
                    sent[nd] = push(graph.Op(f"stage{src}->{src + 1}.send", "send", op.layer, None, R, m.dim, 0, 0, 0, R * m.dim * a, 0, 0,
                                             (nd,), stage=src, group=2, hops=hops(plan.chip_id(src, 0), plan.chip_id(src + 1, 0))))
                nd = sent[nd]
            deps.append(nd)
        change = dict(deps=tuple(deps), stage=stage)
        if op.kind == "matmul" and op.weight in COLUMN_SPLIT + ROW_SPLIT:  # MoE: every expert split like a dense FFN
            split_out = op.weight in COLUMN_SPLIT
            change.update(weight_bytes=op.weight_bytes * big(op.n_out if split_out else op.n_in) // max(op.n_out if split_out else op.n_in, 1),
                          flops=op.flops // T, act_bytes=op.act_bytes // T,
                          **({"n_out": big(op.n_out)} if split_out else {"n_in": big(op.n_in)}))
        elif op.kind in SPLIT_KINDS:
            change.update(flops=op.flops // T, act_bytes=op.act_bytes // T, n_out=big(op.n_out),
                          kv_read_bytes=int(op.kv_read_bytes * kv_share), kv_write_bytes=int(op.kv_write_bytes * kv_share))
        new_index[i] = push(dataclasses.replace(op, **change))
        members = (plan.chip_id(stage, 0), plan.chip_id(stage, T - 1))  # a stage's chips are contiguous
        if T > 1 and op.weight in ROW_SPLIT:  # partial sums -> one all-reduce per projection
            kind = "attn" if op.weight == "wo" else "ffn"
            new_index[i] = push(graph.Op(f"L{op.layer}.{kind}_allreduce", "allreduce", op.layer, None, R, m.dim, 0, R * m.dim, 0, R * m.dim * a, 0, 0,
                                         (new_index[i],), stage=stage, group=T, hops=group_hops(members)))
        if T > 1 and op.weight == "wcls":
            rows = R if phase == "decode" else 1
            new_index[i] = push(graph.Op("classifier_allgather", "allgather", -1, None, rows, m.vocab_size, 0, 0, 0, rows * m.vocab_size * a, 0, 0,
                                         (new_index[i],), stage=stage, group=T, hops=group_hops(members)))
    return g


# ---- capacity ----------------------------------------------------------------------------


def chip_bytes(plan: Plan, users: int = 1, context_tokens: int = 0) -> list[dict[str, int]]:
    """Bytes each chip holds, by category: its weight shards, its KV heads for its layers, activations.

    A tied embedding is held twice (lookup on the first stage, classifier on the last).
    """
    return [share for s in range(plan.pp) for share in _stage_bytes(plan, s, users, context_tokens)]


def _stage_bytes(plan: Plan, s: int, users: int, context_tokens: int) -> list[dict[str, int]]:
    """`chip_bytes` of stage ``s``'s chips."""
    return [dict(chip=plan.chip_id(s, r), stage=s, rank=r, weights=w, kv_cache=kv, activations=act)
            for r, (w, kv, act) in enumerate(_stage_shares(plan, s, users, context_tokens))]


def _stage_shares(plan: Plan, s: int, users: int, context_tokens: int) -> list[tuple[int, int, int]]:
    """(weights, KV cache, activations) bytes of each chip of stage ``s``, rank by rank; ranks with the same heads,
    KV heads, FFN columns and vocabulary rows hold the same bytes, so each distinct rank is computed once."""
    m, p, T = plan.model, plan.precision, plan.tp
    B = models.DTYPE_BYTES
    a = B[p.activations]
    n_layers = len(piece(m.n_layers, plan.pp, s))  # = len(plan.stage_layers[s])
    act = int(m.activation_bytes(p, users, context_tokens) // T)
    hd = m.head_dim
    memo: dict[tuple[int, int, int, int], tuple[int, int, int]] = {}
    out = []
    for key in _rank_sizes(plan):
        if key not in memo:
            heads, kvh, hid, vocab = key
            attn = (2 * m.dim * heads * hd + 2 * m.dim * kvh * hd) * B[p.attention]
            ffn = m.n_experts * 3 * m.dim * hid * B[p.ffn] + (m.dim * m.n_experts * a if m.is_moe else 0)  # every expert's hid columns
            weights = n_layers * (attn + ffn + 2 * m.dim * a)
            if s == 0:
                weights += vocab * m.dim * B[p.embedding]
            if s == plan.pp - 1:
                weights += vocab * m.dim * B[p.embedding] + m.dim * a
            kv = users * context_tokens * n_layers * 2 * kvh * hd * a
            memo[key] = (int(weights), int(kv), act)
        out.append(memo[key])
    return out


def _rank_sizes(plan: Plan) -> tuple[tuple[int, int, int, int], ...]:
    """(query heads, KV heads, FFN columns, vocabulary rows) of each tensor-parallel rank: the model and ``tp`` fix them."""
    return _rank_sizes_of(plan.model, plan.tp)


@functools.lru_cache(maxsize=1024)
def _rank_sizes_of(m: models.ModelConfig, tp: int) -> tuple[tuple[int, int, int, int], ...]:
    plan = Plan(m, 1, tp, models.get_precision("fp16"))  # stages and precision change no rank's share of heads or columns
    return tuple((len(plan.heads(r)), len(plan.kv_heads(r)), len(plan.hidden(r)), len(plan.vocab(r))) for r in range(tp))


def allocate(plan: Plan, users: int = 1, context_tokens: int = 0, chip: hardware.ChipSpec | str = "lpu-v1",
             reserve_fraction: float = sram.RESERVE_FRACTION.nominal) -> list[sram.SRAM]:
    """Place every chip's share in its SRAM (`lpu.sram.SRAM`): weights, KV cache, activations and the reserve.

    Raises
    ------
    lpu.sram.SRAMCapacityError
        Naming the chip (``chip 17 (stage 2, rank 1)``) and the shortfall.
    """
    c = hardware.get(chip)
    return [_place(c, share, reserve_fraction) for share in chip_bytes(plan, users, context_tokens)]


def check_allocation(plan: Plan, users: int = 1, context_tokens: int = 0, chip: hardware.ChipSpec | str = "lpu-v1",
                     reserve_fraction: float = sram.RESERVE_FRACTION.nominal) -> None:
    """`allocate` for its check only: one `lpu.sram.SRAM` per distinct share, in chip order, so the same error is raised.

    Chips holding the same bytes allocate the same way (a stage's ranks, most stages), and stages with as many
    layers (first and last apart) hold the same shares. A fresh SRAM places each tensor over every slice's one free
    run, so a share no larger in any of its tensors than one that was placed is placed too: only the chips holding
    something more than every chip placed before them are allocated (their outcome remembered: `_places`), in chip
    order, and a failure names the same first chip `allocate` would (tests/test_fast_path.py).
    """
    c = hardware.get(chip)
    kinds, placed = set(), []
    for s in range(plan.pp):
        kind = (len(piece(plan.model.n_layers, plan.pp, s)), s == 0, s == plan.pp - 1)
        if kind in kinds:  # a stage with as many layers, first or last alike, holds the same shares as an earlier one
            continue
        kinds.add(kind)
        for r, share in enumerate(_stage_shares(plan, s, users, context_tokens)):
            if not any(all(x <= y for x, y in zip(share, done)) for done in placed):
                if _places(c, share, reserve_fraction):
                    placed.append(share)
                else:
                    _place(c, dict(zip(("weights", "kv_cache", "activations"), share), chip=plan.chip_id(s, r), stage=s, rank=r),
                           reserve_fraction)  # raises, naming this chip


@functools.lru_cache(maxsize=4096)
def _places(c: hardware.ChipSpec, share: tuple[int, int, int], reserve_fraction: float) -> bool:
    """Whether a chip's share (weights, KV cache, activations) allocates in a fresh SRAM (the outcome depends on nothing else)."""
    try:
        _place(c, dict(zip(("weights", "kv_cache", "activations"), share), chip=0, stage=0, rank=0), reserve_fraction)
    except sram.SRAMCapacityError:
        return False
    return True


def _place(c: hardware.ChipSpec, share: dict[str, int], reserve_fraction: float) -> sram.SRAM:
    mem = sram.SRAM(c, name=f"chip {share['chip']} (stage {share['stage']}, rank {share['rank']})")
    mem.alloc("reserve", int(c.sram_bytes * reserve_fraction))
    for name in ("weights", "kv_cache", "activations"):
        if share[name]:
            mem.alloc(name, share[name])
    return mem


def fits(plan: Plan, users: int = 1, context_tokens: int = 0, chip: hardware.ChipSpec | str = "lpu-v1",
         reserve_fraction: float = sram.RESERVE_FRACTION.nominal) -> bool:
    """Whether the fullest chip's share fits its SRAM less the reserve (whole words ignored: see `allocate`)."""
    c = hardware.get(chip)
    usable = c.sram_bytes * (1 - reserve_fraction) - c.mem_slices * c.word_bytes * 3  # word padding of 3 tensors
    return fullest_bytes(plan, users, context_tokens) <= usable


def fullest_bytes(plan: Plan, users: int = 1, context_tokens: int = 0) -> int:
    """The largest share any chip holds (the max of `chip_bytes`): the first stage (the most layers, the embedding)
    or the last (the classifier); a middle stage has no more layers than the first and no embedding."""
    return max(sum(share) for s in {0, plan.pp - 1} for share in _stage_shares(plan, s, users, context_tokens))
