"""The static scheduler: every op of a step on a functional unit at a fixed cycle, decided ahead of time.

Groq's compiler fixes, before the program runs, which functional unit does what
on which cycle; with no caches, arbiters or dynamic dispatch the hardware then
does exactly that. We model it: a cost model turns each `lpu.graph.Op` into the
cycles it occupies on each unit of one LPU (the MEM slices and their streams,
the MXM, the VXM, the SXM), and a list scheduler places the ops in dependency
order, each as early as its inputs and its units allow. Weight streaming for a
matmul does not wait for its input activations (weights are not computed), so
the next matmul's weights stream while the VXM finishes a norm.

The result, a `Timeline`, has integer start and end cycles per op: the same
inputs give the same timeline, cycle for cycle. Introduced in
``notebooks/02_scheduling.ipynb``.

Cost-model parameters (`CostParams`) each carry a source or a reason and a
range. Everything here is physics at the nominal values the architecture
explains, and ``lpu.simulate`` uses them as they are (``lpu.system.NOMINAL``);
what the physics does not explain of Groq's measured speed is carried apart,
as the one fitted system term of ``lpu.system`` (``SYSTEM_OP_S``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import graph, hardware, models
from .kernels import _jit

UNITS = ("mem", "mxm", "vxm", "sxm", "c2c")  # MEM slices + streams, matrix, vector, switch units, chip-to-chip links
MEM, MXM, VXM, SXM, C2C = range(5)

# Which units each op kind occupies (besides MEM for its operands). Attention runs on
# the MXM with the KV cache streamed like weights; RoPE permutes pairs on the SXM.
KIND_UNITS = {
    "matmul": (MEM, MXM), "attention_scores": (MEM, MXM), "attention_values": (MEM, MXM), "router": (MEM, MXM),
    "rmsnorm": (MEM, VXM), "softmax": (VXM,), "swiglu": (VXM,), "residual": (VXM,), "sample": (VXM,),
    "rope": (SXM, VXM), "kv_write": (MEM,), "embed": (MEM,),
    "allreduce": (C2C, VXM), "allgather": (C2C,), "send": (C2C,),
}
STREAMED = ("matmul", "attention_scores", "attention_values", "router")  # ops whose operand bytes stream from MEM ahead of their inputs


@dataclass(frozen=True)
class CostParams:
    """Parameters of the LPU cost model that are not in the `ChipSpec`, each with a reason and a range.

    stream_efficiency
        Share of the streams' 64 x 320 B/cycle a compiled program sustains for
        weight streaming (free; range 0.5-1.0: 1.0 is every stream busy every
        cycle; production schedules lose some to bank conflicts, alignment and
        activations sharing the streams).
    op_latency_cycles
        Cycles from an op's inputs being ready to its first result: the
        instruction ripple across the superlanes (20 on LPU v1, `ChipSpec`) plus
        the transit of vectors between MEM slices and the functional units (one
        slice per cycle, ~44 slices a hemisphere) and pipeline fill (nominal
        64 = 20 + 44; range from the architecture 32-200). Per-op costs the
        public architecture does not explain are not folded in here: they are
        the system term of ``lpu.system``.
    prefetch_matmuls
        How many matmuls ahead weights may stream before their inputs exist: 1,
        the MXM's double-buffered weight planes (reason: 4 planes, 2 in use and 2
        loading; range 0-2).
    """

    stream_efficiency: float = 1.0
    op_latency_cycles: int = 64
    prefetch_matmuls: int = 1
    source: str = "reasons above; nominal values (nothing here is fitted: lpu.system.SYSTEM_OP_S is)"

    RANGES = {"stream_efficiency": (0.5, 1.0), "op_latency_cycles": (32, 200), "prefetch_matmuls": (0, 2)}  # allowed values
    PRIOR = {"stream_efficiency": (0.5, 1.0), "op_latency_cycles": (32, 200), "prefetch_matmuls": (0, 2)}  # from the architecture

    def __post_init__(self):
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"CostParams.{name} = {v!r} is outside its range [{lo}, {hi}]")

    def corner(self, corner: str) -> CostParams:
        """Parameters at the ``"fast"`` or ``"slow"`` end of their prior ranges (prefetch kept)."""
        if corner == "fast":
            return replace(self, stream_efficiency=1.0, op_latency_cycles=self.PRIOR["op_latency_cycles"][0])
        if corner == "slow":
            return replace(self, stream_efficiency=self.PRIOR["stream_efficiency"][0], op_latency_cycles=self.PRIOR["op_latency_cycles"][1])
        raise ValueError(f"corner must be 'fast' or 'slow', got {corner!r}")


def op_cycles(g: graph.Graph, chip: hardware.ChipSpec, params: CostParams = CostParams()) -> np.ndarray:
    """Cycles each op occupies on each unit: array (n_ops, 5) over `UNITS`, vectorised over the graph.

    * MEM: bytes streamed (weights, KV cache, activations) over the sustained
      stream bandwidth, ``streams x word_bytes x stream_efficiency`` per cycle.
    * MXM: FLOPs over the MXM's peak FLOPs per cycle at the op's own dtype
      (`op_dtypes`: attention projections at the attention dtype, the FFN at
      the FFN's, the classifier at the embedding's, attention over the KV cache
      at the activations'; published peak / clock: B users reuse each streamed
      weight tile, so only FLOPs grow with the batch).
    * VXM: FLOPs over the VXM's ALUs (one op per ALU per cycle).
    * SXM: one 320-element vector permuted per cycle.
    * C2C: `collective_s` of each chip-to-chip op.

    What does not depend on the chip (units used, bytes, dtypes, elements) is derived once per graph
    (`_static`); `op_cycles_reference` is the same op by op.
    """
    st = _static(g)
    bytes_per_cycle = chip.streams * chip.word_bytes * params.stream_efficiency
    cycles = np.empty((len(g), len(UNITS)))
    cycles[:, MEM] = st.mem_bytes / bytes_per_cycle
    rates = np.array([chip.peak_ops_per_s(d) / chip.clock_hz for d in st.dtype_names])
    cycles[:, MXM] = st.flops / rates[st.dtype_code]
    cycles[:, VXM] = st.flops / chip.vxm_alus
    cycles[:, SXM] = st.elements / chip.lanes
    cycles[:, C2C] = _collectives_s(st, chip) * chip.clock_hz
    return np.where(st.uses, np.ceil(cycles), 0).astype(np.int64)


@dataclass(frozen=True)
class _Static:
    """What `op_cycles` and the list scheduler need of a graph that does not depend on the chip."""

    uses: np.ndarray  # (n_ops, 5) bool: the units each op occupies
    mem_bytes: np.ndarray
    flops: np.ndarray
    elements: np.ndarray  # rows x n_out: vectors through the SXM
    dtype_names: tuple[str, ...]
    dtype_code: np.ndarray  # index into dtype_names: the dtype of each op's MXM work
    kind_code: np.ndarray  # index into graph.COLLECTIVES, -1 for other ops
    act_bytes: np.ndarray  # float64: a collective's vector
    group: np.ndarray
    hops: np.ndarray
    stage: np.ndarray
    streamed: np.ndarray
    dep_ptr: np.ndarray
    dep_idx: np.ndarray


def _static(g: graph.Graph) -> _Static:
    c = g.cols
    key = ("schedule", g.precision)  # dtypes follow the graph's precision
    if key not in c.cache:
        kinds, kind_of = graph.codes(c, "kind")  # each op's kind as an index into the distinct kinds
        uses = np.zeros((len(kinds), len(UNITS)), dtype=bool)
        for j, kind in enumerate(kinds):
            uses[j, list(KIND_UNITS.get(kind, ()))] = True
        p = g.precision
        names = tuple(sorted({getattr(p, grp) for grp in WEIGHT_GROUP.values()} | {p.activations}))
        weights, weight_of = graph.codes(c, "weight")
        dtype_of = np.array([names.index(getattr(p, WEIGHT_GROUP[w]) if w in WEIGHT_GROUP else p.activations) for w in weights], np.int64)
        collective = np.array([graph.COLLECTIVES.index(k) if k in graph.COLLECTIVES else -1 for k in kinds], np.int64)
        streamed = np.array([k in STREAMED for k in kinds], bool)
        c.cache[key] = _Static(uses[kind_of], c.weight_bytes + (c.kv_read_bytes + c.kv_write_bytes) + g.act_bytes, c.flops, c.rows * c.n_out,
                               names, dtype_of[weight_of], collective[kind_of], c.act_bytes, c.group, c.hops, c.stage, streamed[kind_of],
                               c.dep_ptr, c.dep_idx)
    return c.cache[key]


def _collectives_s(st: _Static, chip: hardware.ChipSpec) -> np.ndarray:
    """`collective_s` of every op at once (the same arithmetic in the same order: the same floats)."""
    out = np.zeros(len(st.kind_code))
    hop, bw, node = chip.c2c_hop_latency_s, chip.c2c_bandwidth_Bps, hardware.GROQ_NODE.chips
    send = np.flatnonzero(st.kind_code == graph.COLLECTIVES.index("send"))
    out[send] = st.hops[send] * hop + st.act_bytes[send] / bw
    coll = np.flatnonzero(st.kind_code >= 0)
    coll = coll[st.kind_code[coll] != graph.COLLECTIVES.index("send")]
    if len(coll):
        phases = np.where(st.kind_code[coll] == graph.COLLECTIVES.index("allreduce"), 2, 1)
        group, nbytes, hops = st.group[coll], st.act_bytes[coll], st.hops[coll]
        inner, outer = np.minimum(group, node), -(-group // node)

        def phase(members, nbytes, hops):
            return np.where(members > 1, hops * hop + (members - 1) / members * nbytes / bw, 0.0)

        t = phases * phase(inner, nbytes, 1)
        out[coll] = np.where(outer > 1, t + phases * phase(outer, nbytes / inner, np.maximum(hops, 2)), t)
    return out


def op_cycles_reference(g: graph.Graph, chip: hardware.ChipSpec, params: CostParams = CostParams()) -> np.ndarray:
    """`op_cycles` op by op (each op's kind, dtype and collective time read from its `Op`): the reference path's."""
    kinds = np.array([o.kind for o in g.ops])
    uses = np.zeros((len(g), len(UNITS)), dtype=bool)
    for kind, units in KIND_UNITS.items():
        uses[np.ix_(kinds == kind, list(units))] = True
    bytes_per_cycle = chip.streams * chip.word_bytes * params.stream_efficiency
    mem_bytes = g.weight_bytes + g.kv_bytes + g.act_bytes
    dtypes = _op_dtypes_reference(g)
    rate = {d: chip.peak_ops_per_s(d) / chip.clock_hz for d in set(dtypes)}
    mxm_per_cycle = np.array([rate[d] for d in dtypes])
    cycles = np.zeros((len(g), len(UNITS)))
    cycles[:, MEM] = mem_bytes / bytes_per_cycle
    cycles[:, MXM] = g.flops / mxm_per_cycle
    cycles[:, VXM] = g.flops / chip.vxm_alus
    elements = np.array([o.rows * o.n_out for o in g.ops])
    cycles[:, SXM] = elements / chip.lanes
    cycles[:, C2C] = [collective_s(o, chip) * chip.clock_hz for o in g.ops]
    return np.where(uses, np.ceil(cycles), 0).astype(np.int64)


WEIGHT_GROUP = {"wq": "attention", "wk": "attention", "wv": "attention", "wo": "attention", "w1": "ffn", "w2": "ffn", "w3": "ffn",
                "wcls": "embedding"}


def op_dtypes(g: graph.Graph) -> list[str]:
    """The dtype each op's MXM work runs at: its weights' group dtype, else the activations' (KV cache, router, vector ops)."""
    st = _static(g)
    return [st.dtype_names[i] for i in st.dtype_code.tolist()]


def _op_dtypes_reference(g: graph.Graph) -> list[str]:
    p = g.precision
    return [getattr(p, WEIGHT_GROUP[o.weight]) if o.weight in WEIGHT_GROUP else p.activations for o in g.ops]


def collective_s(op: graph.Op, chip: hardware.ChipSpec) -> float:
    """Seconds a chip-to-chip op holds its chips' links (0 for other ops).

    Software-scheduled, so no contention: each transfer is its hops x the hop
    latency plus its bytes over the chip's C2C bandwidth (routes spread over
    the links). ``act_bytes`` of a collective is the vector being reduced or
    gathered. An all-reduce over ``group`` chips is a reduce-scatter then an
    all-gather, each moving (group-1)/group of the vector per chip; a group
    larger than a node is hierarchical: inside nodes, across node leaders
    (``hops`` each), inside nodes again.
    """
    if op.kind not in graph.COLLECTIVES:
        return 0.0
    hop, bw, node = chip.c2c_hop_latency_s, chip.c2c_bandwidth_Bps, hardware.GROQ_NODE.chips
    if op.kind == "send":
        return op.hops * hop + op.act_bytes / bw

    def phase(members: int, nbytes: float, hops: int) -> float:
        return hops * hop + (members - 1) / members * nbytes / bw if members > 1 else 0.0

    phases = 2 if op.kind == "allreduce" else 1
    inner = min(op.group, node)
    outer = math.ceil(op.group / node)
    t = phases * phase(inner, op.act_bytes, 1)
    if outer > 1:
        t += phases * phase(outer, op.act_bytes / inner, max(op.hops, 2))
    return t


@dataclass
class Timeline:
    """A static schedule: integer cycles per op and per unit. ``latency_s`` is the step's time."""

    graph: graph.Graph
    chip: hardware.ChipSpec
    params: CostParams
    start: np.ndarray  # (n_ops,) cycle the op starts (its first unit)
    end: np.ndarray  # (n_ops,) cycle its last result is written
    unit_start: np.ndarray  # (n_ops, 4) start cycle on each unit (-1 where unused)
    unit_cycles: np.ndarray  # (n_ops, 4) cycles occupied on each unit
    meta: dict = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return int(self.end.max()) if len(self.end) else 0

    @property
    def latency_s(self) -> float:
        return self.cycles / self.chip.clock_hz

    def utilisation(self) -> dict[str, float]:
        """Busy share of the step's cycles, per unit."""
        busy = self.unit_cycles.sum(axis=0)
        return {u: float(b) / max(self.cycles, 1) for u, b in zip(UNITS, busy)}

    def breakdown(self) -> dict[str, float]:
        """Where the step's cycles go, as shares summing to 1 along the step's critical path:
        ``streaming`` (MEM-bound), ``mxm``, ``vxm``/``sxm`` (compute-bound), ``c2c`` (chip-to-chip transfers and
        collectives), ``latency`` (waiting on op latency)."""
        order = np.argsort(self.end, kind="stable")
        names = ("streaming", "mxm", "vxm", "sxm", "c2c")
        spans = dict.fromkeys(names + ("latency",), 0.0)
        t = 0
        for i in order:  # walk the step's end times: each op extends the step by (end - t), attributed to its binding unit
            grow = int(self.end[i]) - t
            if grow <= 0:
                continue
            occ = self.unit_cycles[i]
            binding = int(np.argmax(occ))
            busy = min(int(occ[binding]), grow)
            spans[names[binding]] += busy
            spans["latency"] += grow - busy
            t = int(self.end[i])
        total = sum(spans.values()) or 1
        return {k: v / total for k, v in spans.items()}

    def per_layer(self):
        """Cycles each layer adds to the step (its last op's end minus the previous layer's), with busy cycles per unit."""
        import pandas as pd

        layer = np.array([o.layer for o in self.graph.ops])
        rows, prev = [], 0
        for name, mask in [("embed", layer == -1)] + [(f"L{i}", layer == i) for i in range(self.graph.model.n_layers)]:
            if name == "embed":
                mask = mask & (np.arange(len(layer)) == 0)
            last = int(self.end[mask].max())
            busy = self.unit_cycles[mask].sum(axis=0)
            rows.append(dict(layer=name, cycles=last - prev, **{f"{u}_busy": int(b) for u, b in zip(UNITS, busy)}))
            prev = last
        head = np.arange(len(layer)) > np.flatnonzero(layer == self.graph.model.n_layers - 1).max()
        busy = self.unit_cycles[head].sum(axis=0)
        rows.append(dict(layer="head", cycles=self.cycles - prev, **{f"{u}_busy": int(b) for u, b in zip(UNITS, busy)}))
        df = pd.DataFrame(rows)
        df["time_us"] = df.cycles / self.chip.clock_hz * 1e6
        return df

    def to_dataframe(self):
        """One row per (op, unit) occupied: op, kind, layer, unit, start, end (cycles), and the op's end."""
        import pandas as pd

        rows = []
        for i, op in enumerate(self.graph.ops):
            for u in range(len(UNITS)):
                if self.unit_cycles[i, u] > 0:
                    s = int(self.unit_start[i, u])
                    rows.append((i, op.name, op.kind, op.layer, UNITS[u], s, s + int(self.unit_cycles[i, u]), int(self.end[i])))
        return pd.DataFrame(rows, columns=["op", "name", "kind", "layer", "unit", "start", "end", "op_end"])


def schedule(g: graph.Graph, chip: hardware.ChipSpec | str = "lpu-v1", params: CostParams = CostParams()) -> Timeline:
    """Place every op of ``g`` on one chip's units, as early as dependencies and units allow.

    List scheduling in the graph's (topological) order. An op starts when its
    inputs are ready (the producing op's end) and each unit it needs is free;
    it holds each unit for its cycles there, and its result is ready
    ``op_latency_cycles`` after the longest of them. A streamed op (matmul,
    attention) may start streaming its weights or KV up to
    ``prefetch_matmuls`` streamed ops before its inputs exist; its compute
    waits for them. Compiled (`_list_schedule`); `schedule_reference` is the
    same algorithm op by op in Python, cycle for cycle.
    """
    c = hardware.get(chip)
    if not isinstance(c, hardware.ChipSpec):
        raise ValueError(f"schedule needs an LPU chip spec, got {c.name!r}")
    occ = op_cycles(g, c, params)
    stage, streamed, dep_ptr, dep_idx = dependency_arrays(g)
    stages = int(stage.max()) + 1 if len(stage) else 1
    start, end, unit_start = _list_schedule(occ, stage, streamed, dep_ptr, dep_idx, stages, params.op_latency_cycles, params.prefetch_matmuls)
    return Timeline(g, c, params, start, end, unit_start, occ)


def dependency_arrays(g: graph.Graph) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each op's stage, whether it is streamed, and its dependencies as CSR arrays (``dep_idx[dep_ptr[i]:dep_ptr[i + 1]]``)."""
    st = _static(g)
    return st.stage, st.streamed, st.dep_ptr, st.dep_idx


@_jit
def _list_schedule(occ, stage, streamed, dep_ptr, dep_idx, stages, lat, prefetch):
    n, nu = occ.shape
    start = np.zeros(n, np.int64)
    end = np.zeros(n, np.int64)
    unit_start = np.full((n, nu), -1, np.int64)
    free = np.zeros((stages, nu), np.int64)
    recent = np.zeros((stages, 3), np.int64)  # recent[s, k]: compute start of stage s's k-th latest streamed op (prefetch <= 2)
    count = np.zeros(stages, np.int64)
    for i in range(n):
        ready = 0
        for j in range(dep_ptr[i], dep_ptr[i + 1]):
            ready = max(ready, end[dep_idx[j]])
        st = stage[i]
        if streamed[i]:
            window = recent[st, prefetch] if count[st] > prefetch else 0
            if prefetch == 0:
                window = ready
            s_mem = max(free[st, MEM], window)
            s_mxm = max(ready, free[st, MXM], s_mem)
            unit_start[i, MEM], unit_start[i, MXM] = s_mem, s_mxm
            free[st, MEM], free[st, MXM] = s_mem + occ[i, MEM], s_mxm + occ[i, MXM]
            start[i], end[i] = s_mem, max(s_mem + occ[i, MEM], s_mxm + occ[i, MXM]) + lat
            recent[st, 2], recent[st, 1], recent[st, 0] = recent[st, 1], recent[st, 0], s_mxm
            count[st] += 1
            continue
        s = ready
        longest = 0
        for u in range(nu):
            if occ[i, u] != 0:
                s = max(s, free[st, u])
                longest = max(longest, occ[i, u])
        for u in range(nu):
            if occ[i, u] != 0:
                unit_start[i, u] = s
                free[st, u] = s + occ[i, u]
        start[i], end[i] = s, s + longest + lat
    return start, end, unit_start


def schedule_reference(g: graph.Graph, chip: hardware.ChipSpec | str = "lpu-v1", params: CostParams = CostParams()) -> Timeline:
    """`schedule` op by op in Python (the same algorithm, described there): the reference the compiled scheduler is
    tested equal to, cycle for cycle (tests/test_fast_path.py)."""
    c = hardware.get(chip)
    if not isinstance(c, hardware.ChipSpec):
        raise ValueError(f"schedule needs an LPU chip spec, got {c.name!r}")
    occ = op_cycles_reference(g, c, params)
    n, nu = len(g), len(UNITS)
    stages = max((o.stage for o in g.ops), default=0) + 1
    start = np.zeros(n, np.int64)
    end = np.zeros(n, np.int64)
    unit_start = np.full((n, nu), -1, np.int64)
    free = np.zeros((stages, nu), np.int64)  # each stage's chips run in lockstep: one set of units per stage
    lat = params.op_latency_cycles
    streamed_starts: list[list[int]] = [[] for _ in range(stages)]  # compute start of each streamed op (limits prefetch)
    for i, op in enumerate(g.ops):
        ready = max((end[d] for d in op.deps), default=0)
        o, f, starts = occ[i], free[op.stage], streamed_starts[op.stage]
        if op.kind in STREAMED:
            # weights/KV stream when MEM is free and the prefetch window allows, inputs or not
            window = starts[-1 - params.prefetch_matmuls] if len(starts) > params.prefetch_matmuls else 0
            if params.prefetch_matmuls == 0:
                window = ready
            s_mem = max(f[MEM], window)
            s_mxm = max(ready, f[MXM], s_mem)
            finish = max(s_mem + o[MEM], s_mxm + o[MXM]) + lat
            unit_start[i, MEM], unit_start[i, MXM] = s_mem, s_mxm
            f[MEM], f[MXM] = s_mem + o[MEM], s_mxm + o[MXM]
            start[i], end[i] = s_mem, finish
            starts.append(s_mxm)
            continue
        used = np.flatnonzero(o)
        s = max([ready] + [int(f[u]) for u in used])
        unit_start[i, used] = s
        f[used] = s + o[used]
        start[i] = s
        end[i] = s + (int(o.max()) if len(used) else 0) + lat
    return Timeline(g, c, params, start, end, unit_start, occ)


def require_one_chip(model: models.ModelConfig, chip: hardware.ChipSpec, precision, batch: int, context: int) -> None:
    """Raise `lpu.sram.SRAMCapacityError` unless the model, ``batch`` KV caches of ``context`` and activations fit one chip."""
    from .sram import chips_needed

    need = chips_needed(model, chip, precision, min(context, model.seq_len), batch)
    if need.chips > 1:
        from .sram import SRAMCapacityError

        raise SRAMCapacityError(f"{model.name} at {need.precision}", need.total_bytes, int(need.usable_bytes_per_chip), chip.name,
                                hint=f"it needs {need.chips} chips; use a what-if chip with more SRAM or lpu.simulate for many chips")


def schedule_decode(model, chip: hardware.ChipSpec | str = "lpu-v1", batch: int = 1, context_tokens: int = 0, precision="int8",
                    params: CostParams = CostParams(), check_capacity: bool = True) -> Timeline:
    """The static schedule of one decode step of ``batch`` users with ``context_tokens`` cached, on one chip.

    Raises `lpu.sram.SRAMCapacityError` when the model, its KV cache and
    activations do not fit the chip's SRAM (a what-if chip can have more:
    ``dataclasses.replace(chip, mem_words_per_slice=...)``).
    """
    m, c = models.get(model), hardware.get(chip)
    if check_capacity:
        require_one_chip(m, c, precision, batch, context_tokens + 1)
    return schedule(graph.decode(m, batch, context_tokens, precision), c, params)


def schedule_prefill(model, chip: hardware.ChipSpec | str = "lpu-v1", prompt_tokens: int = 128, precision="int8",
                     params: CostParams = CostParams(), check_capacity: bool = True) -> Timeline:
    """The static schedule of the prefill of a ``prompt_tokens`` prompt on one chip (time to first token)."""
    m, c = models.get(model), hardware.get(chip)
    if check_capacity:
        require_one_chip(m, c, precision, 1, prompt_tokens)
    return schedule(graph.prefill(m, prompt_tokens, 0, precision), c, params)


def what_if_chip(sram_bytes: float, chip: hardware.ChipSpec | str = "lpu-v1") -> hardware.ChipSpec:
    """``chip`` with at least ``sram_bytes`` of SRAM: more addresses per MEM slice, everything else unchanged."""
    c = hardware.get(chip)
    words = math.ceil(sram_bytes / (c.mem_slices * c.word_bytes))
    return replace(c, name=f"{c.name}-whatif-{sram_bytes / 1e9:.0f}GB", mem_words_per_slice=max(words, c.mem_words_per_slice))


def one_chip_for(model, precision="int8", context_tokens: int = 0, batch: int = 1, chip: hardware.ChipSpec | str = "lpu-v1") -> hardware.ChipSpec:
    """``chip`` itself if the model fits it, else a what-if `chip` with just enough SRAM (1% to spare)."""
    from .sram import chips_needed

    c = hardware.get(chip)
    need = chips_needed(model, c, precision, context_tokens, batch)
    return c if need.chips == 1 else what_if_chip(need.total_bytes / (1 - need.reserve_fraction) * 1.01, c)


@dataclass(frozen=True)
class DynamicParams:
    """A dynamic, GPU-like way to run the same ops, for contrast with the static schedule.

    A host issues the ops one by one at run time (``dispatch_s`` apart on
    average, gamma-distributed with coefficient of variation ``dispatch_cv``);
    the device runs each op when it is issued and the previous op is done, for
    its busiest unit's cycles varied by ``duration_cv`` (lognormal). Nothing
    overlaps across ops, as nothing is planned ahead. Illustrative values:
    dispatch of the order of PyTorch's eager per-op overhead (~10 us); compare
    with the measured H100 step times in ``lpu/data/gpu_step_times.csv``.
    """

    dispatch_s: float = 10e-6
    dispatch_cv: float = 0.25
    duration_cv: float = 0.02


def dynamic_latencies(timeline: Timeline, runs: int = 1000, params: DynamicParams = DynamicParams(), seed: int = 0) -> np.ndarray:
    """Step latencies (s) of ``runs`` runs of the timeline's ops under `DynamicParams` execution, seeded."""
    rng = np.random.default_rng(seed)
    n = len(timeline.graph)
    work_s = (timeline.unit_cycles.max(axis=1) + timeline.params.op_latency_cycles) / timeline.chip.clock_hz
    dur = work_s * rng.lognormal(0.0, params.duration_cv, (runs, n))
    shape = 1 / params.dispatch_cv**2
    issue = np.cumsum(rng.gamma(shape, params.dispatch_s / shape, (runs, n)), axis=1)
    end = np.zeros(runs)
    for i in range(n):  # the device runs op i once it is issued and op i-1 is done
        end = np.maximum(end, issue[:, i]) + dur[:, i]
    return end
