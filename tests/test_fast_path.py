"""The fast simulate path equals the reference path (every chip allocated, graphs rebuilt, Python scheduler), field for field."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from test_hf_config import QWEN25_7B

from lpu import graph, hardware, models, schedule, shard
from lpu.sram import SRAMCapacityError
from lpu.system import simulate

# (model, system, chips, precision, users): presets, chip counts, users, precisions, LPU and GPU, Mixtral
CONFIGS = (
    [("llama2-70b", "lpu-v1", 576, None, u) for u in (1, 4)]
    + [("llama2-7b", "lpu-v1", c, p, u) for c in (64, 80, 128) for p in ("int8", "int4") for u in (1, 8)]
    + [("llama2-13b", "lpu-v1", c, None, u) for c in (128, 160) for u in (1, 3)]
    + [("llama3-8b", "lpu-v1", c, "int8", u) for c in (64, 96) for u in (1, 2)]
    + [("mixtral-8x7b", "lpu-v1", c, "int8", u) for c in (256, 320) for u in (1, 5)]
    + [("llama2-7b", "lpu-v1", None, None, u) for u in (1, 16)]
    + [(m, g, c, p, u) for m in ("llama2-70b", "mixtral-8x7b") for g in ("h100", "a100") for c in (4, 8) for p in ("fp16", "int8")
       for u in (1, 8)]
)


def _same(a, b, where=""):
    if isinstance(a, graph.Graph):  # columnar (fast) against op by op (reference): every op's every field, value and type
        assert isinstance(b, graph.Graph), where
        assert (a.model, a.precision, a.phase, a.tokens, a.context) == (b.model, b.precision, b.phase, b.tokens, b.context), where
        _same_ops(a.ops, b.ops, where)
        for name in ("flops", "weight_bytes", "act_bytes", "kv_bytes"):
            _same(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same_ops(a: list, b: list, where=""):
    assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} ops"
    for i, (x, y) in enumerate(zip(a, b)):
        for f in dataclasses.fields(x):
            u, v = getattr(x, f.name), getattr(y, f.name)
            assert u == v and type(u) is type(v), f"{where}.ops[{i}] ({y.name}).{f.name}: {u!r} != {v!r}"


def test_at_least_fifty_configurations():
    assert len(CONFIGS) >= 50


@pytest.mark.parametrize("model,system,chips,precision,users", CONFIGS)
def test_fast_equals_reference(model, system, chips, precision, users):
    kw = dict(model=model, system=system, chips=chips, precision=precision, users=users)
    ref = simulate(**kw, reference=True)
    fast = simulate(**kw)
    _same(fast, ref, "Result")
    for name in ("output_tokens_per_s", "system_tokens_per_s", "total_time_s"):
        assert getattr(fast, name) == getattr(ref, name)
    assert fast.as_dict() == ref.as_dict()
    again = simulate(**kw)  # the second call reuses cached step graphs: still the same
    _same(again, ref, "Result (cached)")


@pytest.mark.parametrize("system,chips", [("lpu-v1", 112), ("lpu-v1", None), ("h100", 2)])
def test_hf_config_model_fast_equals_reference(tmp_path, system, chips):
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    m = models.get(tmp_path)
    _same(simulate(m, system, chips=chips), simulate(m, system, chips=chips, reference=True), "Result")


@pytest.mark.parametrize("prefetch", [0, 1, 2])
def test_compiled_scheduler_equals_reference(prefetch):
    plan = shard.candidate_plans("mixtral-8x7b", 16, "int8")[1]
    for g in (shard.step_graph(plan, "decode", 3, 40), graph.build("llama2-7b", "prefill", 17, 5, "int8")):
        params = schedule.CostParams(prefetch_matmuls=prefetch, op_latency_cycles=33, stream_efficiency=0.7)
        a, b = schedule.schedule(g, "lpu-v1", params), schedule.schedule_reference(g, "lpu-v1", params)
        _same(a, b, "Timeline")


def test_check_allocation_raises_what_allocate_raises():
    plan = shard.candidate_plans("llama2-70b", 64, "fp16")[0]
    with pytest.raises(SRAMCapacityError) as full:
        shard.allocate(plan, 1, 100)
    with pytest.raises(SRAMCapacityError) as fast:
        shard.check_allocation(plan, 1, 100)
    assert str(fast.value) == str(full.value)


def test_piece_matches_split_sizes():
    for n, parts in [(10, 3), (64, 8), (32000, 7), (5, 5)]:
        sizes = shard.split_sizes(n, parts)
        starts = shard.offsets(sizes)
        assert [shard.piece(n, parts, i) for i in range(parts)] == [range(s, s + z) for s, z in zip(starts, sizes)]


@pytest.mark.parametrize("name", list(models.PRESETS))
def test_columnar_build_equals_op_by_op(name):
    m = models.get(name)
    for phase, tokens, context, r in (("decode", 1, 0, 1), ("decode", 5, min(300, m.seq_len - 1), 1), ("decode", 6, 40, 3),
                                      ("prefill", 33, 0, 1), ("prefill", 7, 20, 1)):
        for p in ("fp16", "int8", "fp16-int8ffn", "int4"):
            _same(graph.build(m, phase, tokens, context, p, r), graph.build_reference(m, phase, tokens, context, p, r), f"{name} {phase} {p} {r}")


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "mixtral-8x7b", "llama3-8b", "stories110M"])
def test_vectorised_step_graph_equals_op_by_op(name):
    m, n = models.get(name), 0
    for chips in (1, 2, 3, 8, 12, 24, 40, 80, 576):  # uneven stages and ranks, single chips, stages of one layer
        try:
            plans = shard.candidate_plans(m, chips, "int8")
        except ValueError:
            continue
        for plan in plans:
            for phase, tokens, context, r in (("decode", 3, min(100, m.seq_len - 1), 1), ("decode", 6, 100, 3), ("prefill", 17, 0, 1)):
                a, b = shard.step_graph(plan, phase, tokens, context, r), shard.step_graph_reference(plan, phase, tokens, context, r)
                _same(a, b, f"{name} {plan.describe()} {phase}")
                for attr in ("kind", "weight"):  # the step graph's codes, carried over from the base graph's, decode to its columns
                    distinct, index = graph.codes(a.cols, attr)
                    assert [distinct[i] for i in index.tolist()] == getattr(b.cols, attr).tolist()
                n += 1
    assert n >= 10


def test_vectorised_op_cycles_equal_op_by_op():
    chip = hardware.get("lpu-v1")
    chips = [chip, chip.corner("low"), chip.corner("high")]
    for plan in shard.candidate_plans("llama2-70b", 576, "fp16-int8ffn")[:3] + shard.candidate_plans("mixtral-8x7b", 40, "int4"):
        g = shard.step_graph(plan, "decode", 2, 500)
        for c in chips:
            for params in (schedule.CostParams(), schedule.CostParams(stream_efficiency=0.61, op_latency_cycles=97)):
                _same(schedule.op_cycles(g, c, params), schedule.op_cycles_reference(g, c, params), plan.describe())
        assert schedule.op_dtypes(g) == schedule._op_dtypes_reference(g)


def test_configurations_in_sequence_share_no_stale_cache():
    """The caches (base graphs, step graphs, derived arrays, SRAM outcomes) are keyed by everything a number depends on:
    configurations differing in one argument each, run back to back and interleaved, each equal the reference."""
    kws = [dict(model="llama2-7b", chips=64, precision="int8", users=1), dict(model="llama2-7b", chips=64, precision="int8", users=16),
           dict(model="llama2-7b", chips=64, precision="int4", users=1), dict(model="llama2-7b", chips=80, precision="int8", users=1),
           dict(model="llama2-7b", chips=64, precision="int8", users=1, prompt_tokens=100),
           dict(model="llama2-7b", chips=64, precision="int8", users=1, output_tokens=40),
           dict(model="llama2-7b", chips=64, precision="int8", users=1, system_op_s=1e-6),
           dict(model="llama2-7b", chips=64, precision="int8", users=1, params=schedule.CostParams(op_latency_cycles=120)),
           dict(model="llama2-13b", chips=128, precision="int8", users=1),
           dict(model="llama2-7b", system="h100", chips=2, precision="fp16", users=1),
           dict(model="llama2-7b", system="h100", chips=2, precision="fp16", users=3),
           dict(model="llama2-7b", system="a100", chips=2, precision="fp16", users=1),
           dict(model="llama2-7b", system="h100", chips=2, precision="fp16", users=1, prompt_tokens=64)]
    refs = [simulate(**kw, reference=True) for kw in kws]
    for order in (range(len(kws)), reversed(range(len(kws))), [0, 9, 1, 10, 2, 11, 3, 12, 4, 5, 6, 7, 8]):
        for i in order:
            _same(simulate(**kws[i]), refs[i], f"{kws[i]}")
    assert len({(r.ttft_s, r.itl_s) for r in refs}) == len(refs)  # every argument changed the answer: a stale entry would show


def test_what_if_chip_is_its_own_cache_entry():
    plan = shard.candidate_plans("llama2-7b", 8, "int8")[0]
    base = hardware.get("lpu-v1")
    bigger = schedule.what_if_chip(base.sram_bytes * 6, base)
    assert shard.fits(plan, 1, 100, bigger)
    shard.check_allocation(plan, 1, 100, bigger)  # fits the what-if chip
    with pytest.raises(SRAMCapacityError):
        shard.check_allocation(plan, 1, 100, base)  # and still not the real one, after the what-if outcome was remembered
    g = shard.step_graph(plan, "decode", 1, 100)
    _same(schedule.schedule(g, bigger), schedule.schedule_reference(shard.step_graph_reference(plan, "decode", 1, 100), bigger), "what-if")


def test_check_allocation_decides_as_allocate_does():
    """At the SRAM's edge (contexts around the largest the fullest chip holds), the shortcut check (stages alike
    skipped, dominated shares skipped) passes or raises, naming the same chip, exactly where allocating every chip does."""
    from lpu.system import _largest

    outcomes = []
    for name, chips, precision in [("llama2-7b", 40, "int8"), ("llama3-8b", 32, "int8"), ("llama3-8b", 64, "fp16"), ("mixtral-8x7b", 64, "int4"),
                                   ("llama2-13b", 80, "int8"), ("llama2-7b", 12, "int4")]:
        for plan in shard.candidate_plans(name, chips, precision):
            for users in (1, 2):
                edge = _largest(lambda t, plan=plan, users=users: shard.fits(plan, users, t), plan.model.seq_len + 1)
                for context in sorted({max(edge - 64, 0), edge, edge + 1, edge + 64} & set(range(plan.model.seq_len + 1))):
                    try:
                        shard.allocate(plan, users, context)
                        want = None
                    except SRAMCapacityError as e:
                        want = str(e)
                    try:
                        shard.check_allocation(plan, users, context)
                        got = None
                    except SRAMCapacityError as e:
                        got = str(e)
                    assert got == want, (plan.describe(), users, context)
                    outcomes.append(want is None)
    assert any(outcomes) and not all(outcomes)
    # a chip other than chip 0 first to fail: one layer a stage, so the last stage (classifier and final norm) holds the
    # most; the reserve at the edge where it stops fitting (bisection) leaves every earlier chip fitting
    plan = next(p for p in shard.candidate_plans("llama3-8b", 128, "int8") if p.pp == 32)

    def check(rf, how=shard.check_allocation):
        try:
            how(plan, 8, 2518, "lpu-v1", rf)
        except SRAMCapacityError as e:
            return str(e)

    lo, hi = 0.0, 0.5
    for _ in range(60):
        lo, hi = ((lo + hi) / 2, hi) if check((lo + hi) / 2) is None else (lo, (lo + hi) / 2)
    assert check(lo) is None and check(lo, shard.allocate) is None
    assert check(hi) == check(hi, shard.allocate) and "chip 124 (stage 31, rank 0)" in check(hi)


def test_timelines_stay_available_lazily():
    """The fast path keeps no op objects until a Gantt chart or a table asks for them; then they equal the reference's."""
    from lpu import system

    system._cached_steps.cache_clear()  # earlier tests compared (so made the ops of) this configuration's cached graphs
    r = simulate("llama2-70b", chips=576, users=2, ranges=False)
    assert r.decode.graph._ops is None and r.prefill.graph._ops is None
    ref = simulate("llama2-70b", chips=576, users=2, ranges=False, reference=True)
    pd.testing.assert_frame_equal(r.decode.to_dataframe(), ref.decode.to_dataframe())
    pd.testing.assert_frame_equal(r.prefill.per_layer(), ref.prefill.per_layer())
    assert r.decode.graph._ops is not None


def test_built_graphs_are_fresh_objects_on_read_only_columns():
    a = graph.build("llama2-7b", "decode", 1, 10, "int8")
    a.ops += [graph.Op("extra", "residual", -1, None, 1, 1, 0, 0, 0, 0, 0, 0, (0,))]  # the caller's own graph changes
    b = graph.build("llama2-7b", "decode", 1, 10, "int8")
    assert len(a) == len(b) + 1 and b == graph.build_reference("llama2-7b", "decode", 1, 10, "int8")
    with pytest.raises(ValueError, match="read-only"):
        b.cols.flops[0] = 0


def test_hops_array_equals_hops():
    a, b = np.meshgrid(np.arange(0, 1200, 7), np.arange(0, 1200, 5))
    a, b = a.ravel(), b.ravel()
    assert shard.hops_array(a, b).tolist() == [shard.hops(int(x), int(y)) for x, y in zip(a, b)]
