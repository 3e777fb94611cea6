import dataclasses

import numpy as np
import pytest

from lpu import graph, hardware, models
from lpu import schedule as S
from lpu.sram import SRAMCapacityError

CHIP = hardware.get("lpu-v1")
BIG = S.what_if_chip(160e9)


def _chain_bound(tl):
    """Longest dependency path, each op counted with its unavoidable cycles (compute after inputs) plus latency."""
    occ, lat = tl.unit_cycles, tl.params.op_latency_cycles
    best = np.zeros(len(tl.graph), np.int64)
    for i, op in enumerate(tl.graph.ops):
        own = occ[i, S.MXM] if op.kind in S.STREAMED else occ[i].max()
        best[i] = max((best[d] for d in op.deps), default=0) + own + lat
    return best.max()


@pytest.mark.parametrize("model, chip, batch, context", [
    ("stories260K", CHIP, 1, 0), ("stories110M", CHIP, 1, 200), ("stories110M", CHIP, 4, 200),
    ("llama2-7b", BIG, 1, 1000), ("llama2-7b", BIG, 64, 1000), ("mixtral-8x7b", BIG, 4, 100),
])
@pytest.mark.parametrize("params", [S.CostParams(), S.CostParams().corner("fast"), S.CostParams().corner("slow")])
def test_decode_never_beats_physical_bounds(model, chip, batch, context, params):
    tl = S.schedule_decode(model, chip, batch, context, "int8", params)
    t = tl.graph.totals()
    peak_sram = chip.range("sram_bandwidth_Bps").high
    assert tl.latency_s >= t["weight_bytes"] / peak_sram
    assert tl.latency_s >= t["weight_bytes"] / chip.stream_bandwidth_Bps * (1 - 1e-9)  # streaming cannot beat the streams
    assert tl.latency_s >= t["flops"] / chip.peak_ops_per_s("int8")
    assert tl.cycles >= _chain_bound(tl)
    # units never run two ops at once
    for u in range(len(S.UNITS)):
        used = tl.unit_cycles[:, u] > 0
        s = tl.unit_start[used, u]
        e = s + tl.unit_cycles[used, u]
        order = np.argsort(s, kind="stable")
        assert (s[order][1:] >= e[order][:-1]).all()
    # dependencies respected: an op's compute never starts before its inputs end
    for i, op in enumerate(tl.graph.ops):
        first = tl.unit_start[i, S.MXM] if op.kind in S.STREAMED else tl.start[i]
        assert all(first >= tl.end[d] for d in op.deps)


def test_prefill_is_compute_bound_and_bounded():
    tl = S.schedule_prefill("stories110M", CHIP, 256, "int8")
    t = tl.graph.totals()
    assert tl.latency_s >= t["flops"] / CHIP.peak_ops_per_s("int8")
    assert tl.utilisation()["mxm"] > tl.utilisation()["vxm"]


def test_deterministic_cycle_for_cycle():
    a = S.schedule_decode("stories110M", CHIP, 4, 100)
    b = S.schedule_decode("stories110M", CHIP, 4, 100)
    assert np.array_equal(a.start, b.start) and np.array_equal(a.end, b.end) and a.cycles == b.cycles
    assert a.to_dataframe().equals(b.to_dataframe())


def test_batch_reuses_streamed_weights():
    t1 = S.schedule_decode("llama2-7b", BIG, 1, 100)
    t8 = S.schedule_decode("llama2-7b", BIG, 8, 100)
    assert t8.graph.totals()["weight_bytes"] == t1.graph.totals()["weight_bytes"]
    assert t8.latency_s < 1.5 * t1.latency_s  # 8 users' tokens for little more than one user's time
    assert t1.breakdown()["streaming"] > 0.9  # decode of a 7B model is streaming-bound


def test_streaming_overlaps_vector_work():
    g = graph.decode("llama2-7b", 1, 100, "int8")
    tl = S.schedule(g, BIG)
    serial = tl.unit_cycles.max(axis=1).sum() + len(g) * tl.params.op_latency_cycles
    assert tl.cycles < serial
    no_prefetch = S.schedule(g, BIG, dataclasses.replace(S.CostParams(), prefetch_matmuls=0))
    assert no_prefetch.cycles > tl.cycles


def test_timeline_outputs():
    tl = S.schedule_decode("stories260K", CHIP, 1, 10)
    df = tl.to_dataframe()
    assert set(df.unit) <= set(S.UNITS) and (df.end >= df.start).all()
    assert abs(sum(tl.breakdown().values()) - 1) < 1e-9
    assert all(0 <= u <= 1 for u in tl.utilisation().values())
    assert tl.latency_s == tl.cycles / CHIP.clock_hz


def test_capacity_and_parameter_errors():
    with pytest.raises(SRAMCapacityError, match="llama2-7b"):
        S.schedule_decode("llama2-7b", CHIP)
    with pytest.raises(ValueError, match="stream_efficiency"):
        S.CostParams(stream_efficiency=1.5)
    with pytest.raises(ValueError, match="LPU chip"):
        S.schedule(graph.decode("stories260K"), "h100")
    assert S.what_if_chip(1e9).sram_bytes >= 1e9 and models.get("llama2-7b")


def test_per_layer_breakdown_sums_to_the_step():
    tl = S.schedule_decode("stories110M", CHIP, 1, 50)
    df = tl.per_layer()
    assert df.cycles.sum() == tl.cycles
    assert list(df.layer) == ["embed"] + [f"L{i}" for i in range(12)] + ["head"]
    assert df.cycles.iloc[1:-1].nunique() == 1  # identical layers, identical schedules


def test_dynamic_execution_is_slower_and_jitters_while_the_static_plan_does_not():
    tl = S.schedule_decode("stories110M", CHIP, 1, 50)
    d = S.dynamic_latencies(tl, runs=300, seed=1)
    assert (d > tl.latency_s).all() and d.std() > 0
    assert np.array_equal(d, S.dynamic_latencies(tl, runs=300, seed=1))  # seeded
    # with no dispatch cost and no jitter, running op after op can only lose the static overlap
    calm = S.dynamic_latencies(tl, runs=5, params=S.DynamicParams(dispatch_s=1e-12, dispatch_cv=0.25, duration_cv=1e-9))
    assert calm.min() >= tl.latency_s * 0.999
