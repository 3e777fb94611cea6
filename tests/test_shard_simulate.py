import json

import numpy as np
import pytest

from lpu import cli, hardware, models, published, schedule, shard
from lpu.sram import SRAMCapacityError, chips_needed
from lpu.system import SYSTEM_OP_S, simulate

CHIP = hardware.get("lpu-v1")


def test_plans_cover_the_model_exactly():
    m = models.get("llama2-70b")
    for plan in shard.candidate_plans(m, 576, "int8"):
        assert plan.pp * plan.tp == 576 and plan.pp <= 80 and plan.tp <= 64
        assert sum(len(r) for r in plan.stage_layers) == 80
        assert sum(len(plan.heads(r)) for r in range(plan.tp)) == m.n_heads
        assert sum(len(plan.hidden(r)) for r in range(plan.tp)) == m.hidden_dim
        assert sum(len(plan.vocab(r)) for r in range(plan.tp)) == m.vocab_size
    with pytest.raises(ValueError, match="cannot be cut"):
        shard.candidate_plans("stories260K", 7 * 11)


def test_chip_shares_add_up_to_the_model():
    m = models.get("llama2-7b")
    plan = shard.Plan(m, 4, 8, models.get_precision("int8"))
    shares = shard.chip_bytes(plan, users=2, context_tokens=1000)
    assert len(shares) == 32
    norms = m.param_groups()["norms"] * 2  # fp16, copied on each of the 8 ranks
    assert sum(s["weights"] for s in shares) == m.weight_bytes("int8") + (plan.tp - 1) * norms
    assert sum(s["kv_cache"] for s in shares) == 2 * 1000 * m.kv_bytes_per_token("int8")


def test_step_graph_makes_collectives_and_sends_explicit():
    m = models.get("llama2-70b")
    plan = shard.Plan(m, 16, 36, models.get_precision("int8"))
    g = shard.step_graph(plan, "decode", 1, 500)
    kinds = [o.kind for o in g.ops]
    assert kinds.count("allreduce") == 2 * 80 and kinds.count("allgather") == 1 and kinds.count("send") == 15
    # every weight byte is streamed by some chip: per-rank shards x ranks cover the model (largest shard costed)
    streamed = sum(o.weight_bytes for o in g.ops) * plan.tp
    full = shard.step_graph(shard.Plan(m, 1, 1, models.get_precision("int8")), "decode", 1, 500)
    assert streamed >= full.totals()["weight_bytes"] and streamed < 1.05 * full.totals()["weight_bytes"]
    assert {o.stage for o in g.ops} == set(range(16))


def test_hops_follow_the_topology():
    assert shard.hops(0, 0) == 0 and shard.hops(0, 7) == 1 and shard.hops(0, 8) == 2 and shard.hops(0, 71) == 2 and shard.hops(0, 72) == 3


def test_collective_costs_respect_hop_latency_and_link_bandwidth():
    m = models.get("llama2-70b")
    plan = shard.Plan(m, 72, 8, models.get_precision("int8"))
    g = shard.step_graph(plan, "decode", 1, 0)
    for op in g.ops:
        if op.kind in ("allreduce", "send"):
            t = schedule.collective_s(op, CHIP)
            assert t >= op.hops * CHIP.c2c_hop_latency_s
            assert t >= op.act_bytes * (op.group - 1) / op.group / CHIP.c2c_bandwidth_Bps


def test_simulate_llama2_70b_on_576_chips():
    r = simulate("llama2-70b", chips=576)
    assert r.chips == 576 and r.precision == "fp16-int8ffn"  # fp16 does not fit (notebook 01's puzzle)
    # the calibration: the recorded parameter reproduces the anchor
    assert r.output_tokens_per_s == pytest.approx(published.value("lpu-v1", "llama2-70b", "output_tokens_per_s", role="calibration"), rel=0.01)
    lo, hi = r.ranges["output_tokens_per_s"]
    assert lo <= r.output_tokens_per_s <= hi
    assert r.total_time_s == pytest.approx(r.ttft_s + 149 * r.itl_s)
    # physical bounds: no step beats streaming the fullest chip's weights, or the hops of the pipeline
    worst = max(s["weights"] for s in shard.chip_bytes(r.plan, 1, 700))
    assert r.itl_s >= worst / CHIP.stream_bandwidth_Bps
    assert r.itl_s >= (r.plan.pp - 1) * CHIP.c2c_hop_latency_s
    assert simulate("llama2-70b", chips=576, ranges=False).itl_s == r.itl_s  # deterministic
    assert len(r.candidates) >= 3 and min(c["itl_s"] for c in r.candidates) == r.itl_s


def test_users_in_flight_raise_system_throughput():
    one = simulate("llama2-7b", chips=64, precision="int8", users=1, ranges=False)
    many = simulate("llama2-7b", chips=64, precision="int8", users=16, ranges=False)
    assert many.system_tokens_per_s > 4 * one.system_tokens_per_s
    assert many.output_tokens_per_s <= one.output_tokens_per_s * 1.0001


def test_auto_chips_and_precision_and_errors():
    r = simulate("llama2-7b", precision="int8", ranges=False)
    assert r.precision == "int8" and shard.fits(r.plan, 1, 700)
    assert r.chips >= chips_needed("llama2-7b", CHIP, "int8", 700).chips  # never below the capacity bound
    with pytest.raises(SRAMCapacityError, match=r"chip \d+ \(stage"):
        simulate("llama2-70b", chips=64, precision="fp16", ranges=False)
    with pytest.raises(ValueError, match="not an LPU or a GPU"):
        simulate("llama2-7b", system="groqrack")
    with pytest.raises(ValueError, match="exceeds"):
        simulate("llama2-7b", prompt_tokens=4000, output_tokens=200)
    with pytest.raises(ValueError, match="chips must be a positive integer"):  # a bool is not a chip count (issue 15)
        simulate("llama2-7b", chips=True)
    with pytest.raises(ValueError, match="serving=.*GPU systems only"):
        simulate("llama2-7b", serving="served")
    assert SYSTEM_OP_S.low <= SYSTEM_OP_S.value <= SYSTEM_OP_S.high and SYSTEM_OP_S.family == "LPU system"


def test_cli_simulate_json(capsys):
    assert cli.main(["simulate", "--model", "llama2-7b", "--chips", "64", "--precision", "int8", "--json", "--no-ranges"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["chips"] == 64 and d["output_tokens_per_s"] > 0 and "ttft_s" in d and np.isfinite(d["itl_s"])


def test_public_interface_of_design_md():
    import lpu

    r = lpu.simulate("llama2-7b", system="lpu-v1", chips=64, precision="int8", users=1, prompt_tokens=550, output_tokens=150, ranges=False)
    assert callable(lpu.simulate) and r.chips == 64
    for attr in ("ttft_s", "itl_s", "output_tokens_per_s", "system_tokens_per_s", "total_time_s", "chips"):
        assert getattr(r, attr) > 0


def test_result_lives_in_its_own_module():
    import lpu
    from lpu import result, system

    assert system.Result is result.Result  # re-exported for compatibility
    fitted = lpu.fitted()
    assert any(f.family == "LPU system" for f in fitted) and all(isinstance(f, result.Fitted) for f in fitted)
    with pytest.raises(ValueError, match="family"):
        result.Fitted("x", "TPU pod", 1.0, "s", 1.0, 1.0, "row", "how")
    r = simulate("llama2-7b", system="h100", serving=None, ranges=False)
    assert isinstance(r, result.Result) and r.plan is None
