"""The operations of one decode step or one prefill chunk, built from a `ModelConfig`.

A `Graph` is the list of `Op` s a Llama-architecture forward pass performs, in
execution order, each with its shapes, dtype, FLOPs and bytes (weights,
activations, KV cache) and the ops it depends on. The scheduler (``lpu.schedule``)
places these ops on functional units and chips; the runtime (``lpu.runtime``)
executes the *same* list with real weights, so the tokens you see and the time
the simulator reports come from one description of the work.

Decode: ``tokens`` = B users, one new token each, attending over ``context``
cached positions plus their own; with ``rows_per_user`` = r > 1, B = tokens / r
users of r new rows each, causal among them (speculative decoding's verify
step: each user's cache is read once for its rows, as fused attention reads it).
Prefill: ``tokens`` = P prompt tokens of one user, causal attention among them
(after ``context`` earlier positions).
Introduced in ``notebooks/03_token_generation.ipynb`` (anatomy of a decode step).

`build` holds a graph as `Columns` (one array per `Op` field: every layer's ops
are layer 0's, so they are tiled), which the simulator's fast path computes on;
the `Op` objects are made only when something reads ``Graph.ops`` (a Gantt
chart, a table, the runtime). `build_reference` makes them one by one, as the
reference path (``lpu.simulate(..., reference=True)``) does.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

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


@dataclass(frozen=True, eq=False)
class Columns:
    """A graph's ops as one array per `Op` field (dependencies as CSR arrays): what the fast paths compute on.

    ``act_bytes`` is float64 because the chip-to-chip ops `lpu.shard` adds carry a float byte count (rows x width x
    dtype bytes) and the reference keeps it so; ``act_float`` marks those ops, so `ops` gives back each field with
    its type. ``cache`` holds arrays other modules derive from the columns (unit masks, dtypes): the columns are
    never changed once built, so whatever is derived from them stays valid.
    """

    names_from: object  # the ops' names: an object array of str, or a function making it (on first use of `name`)
    kind: np.ndarray  # str
    layer: np.ndarray
    weight: np.ndarray  # object: str or None
    rows: np.ndarray
    n_out: np.ndarray
    n_in: np.ndarray
    flops: np.ndarray
    weight_bytes: np.ndarray
    act_bytes: np.ndarray  # float64
    kv_read_bytes: np.ndarray
    kv_write_bytes: np.ndarray
    dep_ptr: np.ndarray  # deps of op i: dep_idx[dep_ptr[i]:dep_ptr[i + 1]]
    dep_idx: np.ndarray
    experts: np.ndarray  # object: int 1 or the float of `expected_experts`
    stage: np.ndarray
    group: np.ndarray
    hops: np.ndarray
    act_float: np.ndarray  # bool: act_bytes was a float
    cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def name(self) -> np.ndarray:
        """The ops' names (object array of str): only tables, Gantt charts and the runtime read them, so made then."""
        if "name" not in self.cache:
            names = self.names_from() if callable(self.names_from) else self.names_from
            names.flags.writeable = False
            self.cache["name"] = names
        return self.cache["name"]

    @classmethod
    def from_ops(cls, ops: list[Op]) -> Columns:
        """The columns of a list of ops (the reference path's graphs and hand-built ones)."""
        i64 = lambda attr: np.array([getattr(o, attr) for o in ops], np.int64)  # noqa: E731
        obj = lambda values: _object_array(list(values))  # noqa: E731
        dep_ptr = np.zeros(len(ops) + 1, np.int64)
        dep_ptr[1:] = np.cumsum([len(o.deps) for o in ops])
        return cls(obj(o.name for o in ops), np.array([o.kind for o in ops], dtype=str), i64("layer"), obj(o.weight for o in ops),
                   i64("rows"), i64("n_out"), i64("n_in"), i64("flops"), i64("weight_bytes"), np.array([o.act_bytes for o in ops], np.float64),
                   i64("kv_read_bytes"), i64("kv_write_bytes"), dep_ptr, np.array([d for o in ops for d in o.deps], np.int64),
                   obj(o.experts for o in ops), i64("stage"), i64("group"), i64("hops"),
                   np.array([isinstance(o.act_bytes, float) for o in ops], bool))

    def ops(self) -> list[Op]:
        """The `Op` s, each field as the op-by-op builders make it (for Gantt charts, tables, the runtime)."""
        ptr, idx = self.dep_ptr.tolist(), self.dep_idx.tolist()
        deps = [tuple(idx[ptr[i]:ptr[i + 1]]) for i in range(len(self))]
        act = [float(x) if f else int(x) for x, f in zip(self.act_bytes.tolist(), self.act_float.tolist())]
        cols = (self.name.tolist(), self.kind.tolist(), self.layer.tolist(), self.weight.tolist(), self.rows.tolist(), self.n_out.tolist(),
                self.n_in.tolist(), self.flops.tolist(), self.weight_bytes.tolist(), act, self.kv_read_bytes.tolist(),
                self.kv_write_bytes.tolist(), deps, self.experts.tolist(), self.stage.tolist(), self.group.tolist(), self.hops.tolist())
        return [Op(*row) for row in zip(*cols)]


def codes(cols: Columns, attr: str) -> tuple[list, np.ndarray]:
    """The distinct values of column ``attr`` ("kind" or "weight") and each op's index into them (cached per columns)."""
    key = ("codes", attr)
    if key not in cols.cache:
        values = getattr(cols, attr)
        if values.dtype == object:  # weights: None for ops without one
            distinct = list(dict.fromkeys(values.tolist()))
            index = {v: i for i, v in enumerate(distinct)}
            cols.cache[key] = distinct, np.array([index[v] for v in values.tolist()], np.int64)
        else:
            distinct, inverse = np.unique(values, return_inverse=True)
            cols.cache[key] = distinct.tolist(), inverse.astype(np.int64)
    return cols.cache[key]


def weight_names(cols: Columns) -> np.ndarray:
    """Each op's weight name as a str array ("" where it has none), for vectorised tests of which tensor an op reads."""
    if "weight_names" not in cols.cache:
        distinct, index = codes(cols, "weight")
        cols.cache["weight_names"] = np.array([w or "" for w in distinct], str)[index]
    return cols.cache["weight_names"]


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


class Graph:
    """Ops of one step, in execution order; array views (``flops``, ``weight_bytes``...) for vectorised cost models.

    A graph is held either as a list of `Op` s (``ops``) or as `Columns` (``columns``: what `build` and
    `lpu.shard.step_graph` make); ``ops`` of a columnar graph are made on first use, and ``cols`` of a list of ops
    likewise. Assigning ``ops`` (``g.ops += [...]``) makes the list the graph; appending to it in place after
    ``cols`` was read is not seen by ``cols``.
    """

    def __init__(self, model: models.ModelConfig, precision: models.Precision, phase: str, tokens: int, context: int,
                 ops: list[Op] | None = None, columns: Columns | None = None, rows_per_user: int = 1):
        self.model, self.precision, self.phase, self.tokens, self.context = model, precision, phase, tokens, context
        self.rows_per_user = rows_per_user
        self._ops = None if ops is None and columns is not None else list(ops or [])
        self._columns = columns

    def __eq__(self, other) -> bool:
        return isinstance(other, Graph) and (self.model, self.precision, self.phase, self.tokens, self.context, self.ops) == (
            other.model, other.precision, other.phase, other.tokens, other.context, other.ops)

    __hash__ = None  # mutable, as before

    def __repr__(self) -> str:
        rows = f", rows_per_user={self.rows_per_user}" if self.rows_per_user > 1 else ""
        return (f"Graph({self.model.name}, {self.precision.name}, {self.phase}, tokens={self.tokens}, context={self.context}{rows}, "
                f"{len(self)} ops)")

    @property
    def ops(self) -> list[Op]:
        if self._ops is None:
            self._ops = self._columns.ops()
        return self._ops

    @ops.setter
    def ops(self, ops: list[Op]) -> None:
        self._ops, self._columns = list(ops), None

    @property
    def cols(self) -> Columns:
        """The graph as `Columns` (made from ``ops`` on first use where it was built op by op)."""
        if self._columns is None:
            self._columns = Columns.from_ops(self._ops)
        return self._columns

    def __len__(self) -> int:
        return len(self._ops) if self._columns is None else len(self._columns)

    @property
    def flops(self) -> np.ndarray:
        return self.cols.flops

    @property
    def weight_bytes(self) -> np.ndarray:
        return self.cols.weight_bytes

    @property
    def act_bytes(self) -> np.ndarray:
        c = self.cols
        if "act_bytes" not in c.cache:
            c.cache["act_bytes"] = c.act_bytes.astype(np.int64)
        return c.cache["act_bytes"]

    @property
    def kv_bytes(self) -> np.ndarray:
        c = self.cols
        if "kv_bytes" not in c.cache:
            c.cache["kv_bytes"] = c.kv_read_bytes + c.kv_write_bytes
        return c.cache["kv_bytes"]

    @property
    def names(self) -> list[str]:
        return self.cols.name.tolist()

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
          precision: str | models.Precision = "fp16", rows_per_user: int = 1) -> Graph:
    """The ops of one decode step (``tokens`` users) or one prefill chunk (``tokens`` prompt tokens).

    Every layer runs the same ops, so the columns are one layer's ops (`_ops` for layer 0) repeated
    ``n_layers`` times, cached per (model, precision, phase, tokens, context); `build_reference` makes every
    op one by one, and tests/test_fast_path.py checks the two equal.

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
    rows_per_user : int
        Decode only: new rows of each user (``tokens`` / ``rows_per_user`` users), causal among themselves, each
        user's cache read once for them: speculative decoding's verify step (`lpu.speculation`).
    """
    m, p, tokens, context, r = _checked(model, phase, tokens, context, precision, rows_per_user)
    return Graph(m, p, phase, tokens, context, columns=_columns(m, p, phase, tokens, context, r), rows_per_user=r)


def build_reference(model: models.ModelConfig | str, phase: str = "decode", tokens: int = 1, context: int = 0,
                    precision: str | models.Precision = "fp16", rows_per_user: int = 1) -> Graph:
    """`build` op by op, every layer's ops made in turn: the reference the columnar `build` is tested equal to."""
    m, p, tokens, context, r = _checked(model, phase, tokens, context, precision, rows_per_user)
    return Graph(m, p, phase, tokens, context, ops=_ops(m, p, phase, tokens, context, range(m.n_layers), r), rows_per_user=r)


def _checked(model, phase, tokens, context, precision, rows_per_user=1):
    m = models.get(model)
    p = models.get_precision(precision)
    if phase not in ("decode", "prefill"):
        raise ValueError(f"phase must be 'decode' or 'prefill', got {phase!r}")
    if isinstance(tokens, (bool, np.bool_)) or not isinstance(tokens, (int, np.integer)) or tokens < 1:
        raise ValueError(f"tokens must be a positive integer, got {tokens!r}")
    if isinstance(context, (bool, np.bool_)) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context must be a non-negative integer, got {context!r}")
    r = rows_per_user
    if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)) or r < 1 or tokens % r:
        raise ValueError(f"rows_per_user must be a positive integer dividing tokens={tokens} (users x rows), got {r!r}")
    if r > 1 and phase != "decode":
        raise ValueError(f"rows_per_user applies to decode steps (a verify step's rows); a {phase} chunk's rows are its tokens")
    span = context + (tokens if phase == "prefill" else r)
    if span > m.seq_len:
        raise ValueError(f"{m.name} has a context of {m.seq_len} tokens; this step would reach position {span}")
    return m, p, int(tokens), int(context), int(r)


@functools.lru_cache(maxsize=128)
def _columns(m: models.ModelConfig, p: models.Precision, phase: str, tokens: int, context: int, rows_per_user: int = 1) -> Columns:
    """`build`'s columns: the embedding, layer 0's ops tiled over every layer (names, layer and deps shifted), the head."""
    one = Columns.from_ops(_ops(m, p, phase, tokens, context, (0,), rows_per_user))
    n, L = m.n_layers, int(np.count_nonzero(one.layer == 0))  # ops: [embed] + L of layer 0 + the head's
    ptr, idx = one.dep_ptr, one.dep_idx
    block, head = idx[ptr[1]:ptr[1 + L]], idx[ptr[1 + L]:]
    # a layer reads its own ops and the residual stream x, the op just before it (the embedding for layer 0): shifting
    # every dependency by L per layer maps both; the head reads the last layer's x and its own ops
    assert ptr[1] == 0 and block.max() < 1 + L and head.min() >= L
    shift = np.repeat(np.arange(n, dtype=np.int64) * L, len(block))
    dep_idx = np.concatenate([np.tile(block, n) + shift, head + (n - 1) * L])

    def tiled(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[:1], np.tile(a[1:1 + L], n), a[1 + L:]])

    counts = tiled(np.diff(ptr))
    dep_ptr = np.zeros(len(counts) + 1, np.int64)
    dep_ptr[1:] = np.cumsum(counts)

    first, suffixes, last = one.name[:1].tolist(), [s[len("L0."):] for s in one.name[1:1 + L].tolist()], one.name[1 + L:].tolist()
    names = functools.partial(_layer_names, first, suffixes, last, n)
    ints = ("layer", "rows", "n_out", "n_in", "flops", "weight_bytes", "kv_read_bytes", "kv_write_bytes", "stage", "group", "hops")
    stacked = np.stack([getattr(one, f) for f in ints])  # one tiling for every integer column
    stacked = np.concatenate([stacked[:, :1], np.tile(stacked[:, 1:1 + L], n), stacked[:, 1 + L:]], axis=1)
    stacked[0, 1:1 + n * L] = np.repeat(np.arange(n, dtype=np.int64), L)  # each layer's ops carry its index
    fields = {f: tiled(getattr(one, f)) for f in ("kind", "weight", "act_bytes", "experts", "act_float")}
    cols = Columns(names_from=names, dep_ptr=dep_ptr, dep_idx=dep_idx, **dict(zip(ints, stacked)), **fields)
    return freeze(cols)


def _layer_names(first: list[str], suffixes: list[str], last: list[str], n_layers: int) -> np.ndarray:
    return _object_array(first + [f"L{layer}.{s}" for layer in range(n_layers) for s in suffixes] + last)


def freeze(cols: Columns) -> Columns:
    """``cols`` with its arrays read-only: cached columns are shared by every graph built on them."""
    for f in dataclasses.fields(cols):
        v = getattr(cols, f.name)
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    return cols


def _ops(m: models.ModelConfig, p: models.Precision, phase: str, tokens: int, context: int, layers, rows_per_user: int = 1) -> list[Op]:
    """The ops of the embedding, of each layer in ``layers`` (all of them, or layer 0 for `build`'s template) and the head."""
    ops: list[Op] = []
    R = tokens
    a = models.DTYPE_BYTES[p.activations]
    wb = {"attention": models.DTYPE_BYTES[p.attention], "ffn": models.DTYPE_BYTES[p.ffn], "embedding": models.DTYPE_BYTES[p.embedding]}
    # attention positions summed over rows, causal within a sequence's new rows (r per decode user, after context)
    r, users = (rows_per_user, R // rows_per_user) if phase == "decode" else (R, 1)
    attended = users * (r * context + r * (r + 1) // 2)
    # cached rows read: once per sequence for all its new rows (its own cache for each decode user)
    kv_rows = users * (context + r)

    def add(name, kind, deps, layer=-1, weight=None, n_out=0, n_in=0, wbytes_per=0.0, experts=1, flops=None, act=None, kv_r=0, kv_w=0):
        if flops is None:
            flops = 2 * R * n_out * n_in * experts if kind == "matmul" else VECTOR_FLOPS_PER_ELEMENT[kind] * R * max(n_out, 1)
        if act is None:
            act = int(R * (n_in + n_out) * a)
        ops.append(Op(name, kind, layer, weight, R, n_out, n_in, int(flops), int(round(n_out * n_in * wbytes_per * experts)), int(act),
                        int(kv_r), int(kv_w), tuple(deps), experts))
        return len(ops) - 1

    x = add("embed", "embed", (), weight="token_embedding_table", n_out=m.dim, wbytes_per=0, act=R * m.dim * a)
    hd, kv, qd = m.head_dim, m.kv_dim, m.q_dim  # qd: n_heads * head_dim, dim unless head_dim is given
    for layer in layers:
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
    return ops

def decode(model, batch: int = 1, context: int = 0, precision="fp16") -> Graph:
    """One decode step of ``batch`` users, each with ``context`` tokens already cached."""
    return build(model, "decode", batch, context, precision)


def prefill(model, prompt_tokens: int, context: int = 0, precision="fp16") -> Graph:
    """One prefill chunk of ``prompt_tokens`` tokens after ``context`` cached ones."""
    return build(model, "prefill", prompt_tokens, context, precision)
