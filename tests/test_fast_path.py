"""The fast simulate path equals the reference path (every chip allocated, graphs rebuilt, Python scheduler), field for field."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_hf_config import QWEN25_7B

from lpu import graph, models, schedule, shard
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
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
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
    from lpu.sram import SRAMCapacityError

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
