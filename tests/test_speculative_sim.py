"""Speculative decoding in the simulator (lpu.speculation): closed forms, the verify step's cost, bounds, errors."""

import math

import numpy as np
import pytest

import lpu
from lpu import gpu, hardware, models, schedule, shard, speculation, system

T, D = "llama2-70b", "llama2-7b"


def spec(sysname="lpu-v1", k=4, a=0.5, **kw):
    return lpu.simulate(T, sysname, draft=D, draft_tokens=k, acceptance=a, ranges=kw.pop("ranges", False), **kw)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_tokens_per_step_closed_form(k):
    assert speculation.tokens_per_step(0.0, k) == 1.0
    assert speculation.tokens_per_step(1.0, k) == k + 1
    a = 0.6  # the geometric series 1 + a + ... + a^k (Leviathan et al. 2023)
    assert math.isclose(speculation.tokens_per_step(a, k), sum(a ** i for i in range(k + 1)))


@pytest.mark.parametrize("sysname", ["lpu-v1", "h100"])
def test_acceptance_zero_and_one(sysname):
    r0, r1 = spec(sysname, 4, 0.0), spec(sysname, 4, 1.0)
    s0, s1 = r0.speculation, r1.speculation
    assert math.isclose(r0.itl_s, s0.draft_s + s0.verify_s)  # one token a step: the draft's cost wasted
    assert r0.itl_s > s0.plain_itl_s
    assert math.isclose(r1.itl_s, (s1.draft_s + s1.verify_s) / 5)  # k + 1 tokens a step
    assert math.isclose(sum(r1.breakdown().values()), 1.0)
    assert r1.breakdown()["draft"] == pytest.approx(s1.draft_s / s1.step_s)


def test_lpu_verify_is_a_step_of_k_plus_1_rows_sharing_one_cache():
    r = spec("lpu-v1", 4, 0.5)
    plain = lpu.simulate(T, users=1, ranges=False)
    context = min(r.prompt_tokens + r.output_tokens // 2, models.get(T).seq_len - 5)
    tl = schedule.schedule(shard.step_graph(plain.plan, "decode", 5, context, rows_per_user=5), hardware.get("lpu-v1"), system.NOMINAL)
    ops = int(system.chain_depth(tl.graph).max())
    assert r.speculation.verify_s == pytest.approx(tl.latency_s + ops * system.SYSTEM_OP_S.value)
    assert r.speculation.plain_itl_s == pytest.approx(plain.itl_s)
    d = lpu.simulate(D, users=1, prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens, ranges=False)
    assert r.speculation.draft_s == pytest.approx(4 * d.itl_s)  # k decode steps of the draft on its own chips


def test_gpu_verify_is_the_k_plus_1_row_step():
    r = spec("h100", 2, 0.5, serving="ideal")
    m, c = models.get(T), hardware.get("h100")
    prec = models.get_precision(r.precision)
    context = min(r.prompt_tokens + r.output_tokens // 2, m.seq_len - 3)
    assert r.speculation.verify_s == pytest.approx(gpu.step_s(gpu.step_parts(m, c, r.chips, prec, "decode", 3, context, gpu.CALIBRATED,
                                                                             rows_per_user=3)))
    assert r.speculation.verify_s == pytest.approx(speculation.gpu_verify_s(T, "h100", r.chips, r.precision, 1, 3, context, "ideal")[0])
    drf = gpu.step_s(gpu.step_parts(models.get(D), c, r.chips, prec, "decode", 1, context, gpu.CALIBRATED))
    assert r.speculation.draft_s == pytest.approx(2 * drf)  # the draft on the same GPUs, in turn


@pytest.mark.parametrize("sysname", ["lpu-v1", "h100"])
def test_monotonic_in_acceptance_and_ranges(sysname):
    itl = [spec(sysname, 4, a).itl_s for a in np.linspace(0, 1, 6)]
    assert all(x > y for x, y in zip(itl, itl[1:]))
    r = spec(sysname, 4, (0.4, 0.7), ranges=True)
    lo, hi = r.ranges["itl_s"]
    assert lo < r.itl_s < hi
    assert r.speculation.acceptance == pytest.approx(0.55) and r.speculation.acceptance_range == (0.4, 0.7)
    assert lo < spec(sysname, 4, 0.7).itl_s and spec(sysname, 4, 0.4).itl_s < hi


@pytest.mark.parametrize("sysname", ["lpu-v1", "h100"])
def test_never_beats_streaming_the_weights_once_per_step(sysname):
    r = spec(sysname, 8, 1.0)
    m = models.get(T)
    if sysname == "lpu-v1":
        c = hardware.get("lpu-v1")
        bound = m.weight_bytes(r.precision) / (r.chips * c.sram_bandwidth_Bps)
    else:
        c = hardware.get("h100")
        bound = m.weight_bytes(r.precision) / (r.chips * c.hbm_bandwidth_Bps)
    assert r.speculation.verify_s > bound and r.itl_s * 9 > bound
    assert r.speculation.verify_s >= r.speculation.plain_itl_s * 0.999  # more rows never make a step cheaper


def test_as_dict_and_hosted():
    r = lpu.simulate(T, draft=D, draft_tokens=2, acceptance=0.5, hosted=True, ranges=False)
    d = r.as_dict()["speculation"]
    assert d["draft"] == D and d["draft_tokens"] == 2 and d["speedup"] == pytest.approx(r.speculation.speedup)
    assert r.hosted_s > 0


@pytest.mark.parametrize("kw, match", [
    (dict(draft="llama3-8b", acceptance=0.5), "vocabulary"),
    (dict(draft="llama2-70b", acceptance=0.5), "not smaller"),
    (dict(draft=D, draft_tokens=0, acceptance=0.5), "draft_tokens"),
    (dict(draft=D, draft_tokens=2.0, acceptance=0.5), "draft_tokens"),
    (dict(draft=D, acceptance=1.5), "acceptance"),
    (dict(draft=D, acceptance=(0.7, 0.4)), "acceptance"),
    (dict(draft=D), "acceptance"),
    (dict(acceptance=0.5), "draft="),
    (dict(draft="stories15M", acceptance=0.5, prompt_tokens=1000, output_tokens=100), "context"),
])
def test_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        lpu.simulate(T, ranges=False, **kw)


def test_speedup_curve_is_the_simulation():
    """The data behind notebook 03's figure (lpu.plots.speculative_speedup): each row is lpu.simulate's speed-up."""
    rows = speculation.speedup_curve(T, D, draft_tokens=(2, 4), systems=(("lpu-v1", 1), ("h100", 1)), acceptances=[0.0, 0.55, 1.0])
    assert len(rows) == 2 * 2 * 3
    for row in rows:
        kw = dict(serving="ideal") if row["system"] == "h100" else {}
        r = spec(row["system"], row["k"], row["acceptance"], **kw)
        assert row["speedup"] == pytest.approx(r.speculation.speedup)
        assert row["speedup"] == pytest.approx(r.speculation.plain_itl_s / r.itl_s)
        assert row["tokens_per_step"] == pytest.approx(speculation.tokens_per_step(row["acceptance"], row["k"]))
    lpu_rows = [x for x in rows if x["system"] == "lpu-v1"]
    assert all(x["speedup"] < 1 for x in lpu_rows if x["acceptance"] == 0)  # nothing accepted: the draft's cost wasted
    for x in rows:  # the verify step nearly free at batch 1: within 10% of the tokens per step over (1 + the draft's cost)
        assert x["speedup"] == pytest.approx(x["tokens_per_step"] / (1 + x["draft_over_decode"]), rel=0.1)


@pytest.mark.parametrize("system_name, model, users", [("h200", "llama2-7b", 1), ("h200", "llama2-70b", 16), ("h100", "llama3-8b", 64)])
def test_gpu_verify_of_one_row_is_a_decode_step_and_grows_with_rows(system_name, model, users):
    one = speculation.gpu_verify_s(model, system_name, 1, "bf16", users, 1, 551, "ideal")
    plain = lpu.simulate(model, system_name, chips=1, precision="bf16", users=users, prompt_tokens=550, output_tokens=2, serving="ideal")
    assert one == pytest.approx((plain.itl_s, *plain.ranges["itl_s"]))
    steps = [speculation.gpu_verify_s(model, system_name, 1, "bf16", users, rows, 551, "ideal") for rows in (1, 2, 5, 9)]
    for nominal, low, high in steps:
        assert low <= nominal <= high
    nominal = [s[0] for s in steps]
    assert nominal == sorted(nominal) and nominal[-1] < 9 * nominal[0]  # more rows cost more, never more than 9 plain steps


@pytest.mark.parametrize("kwargs, match", [(dict(system="lpu-v1"), "must be a GPU"), (dict(rows=0), "rows"), (dict(rows=2.0), "rows"),
                                           (dict(chips=3), "chips"), (dict(context=4095), "position")])
def test_gpu_verify_bad_input(kwargs, match):
    args = dict(model="llama2-7b", system="h200", chips=1, precision="bf16", users=1, rows=2, context=500) | kwargs
    with pytest.raises(ValueError, match=match):
        speculation.gpu_verify_s(**args)


@pytest.mark.parametrize("reference", [False, True])
def test_verify_rows_share_their_users_cache_on_gpu_and_lpu(reference):
    """A verify step of 16 users x 9 rows reads each user's cache once: less than a decode step of 144 users, the same weights."""
    m, c, prec = models.get("llama2-7b"), hardware.get("h100"), models.get_precision("bf16")
    shared = gpu.step_parts(m, c, 1, prec, "decode", 144, 550, gpu.CALIBRATED, reference, rows_per_user=9)
    apart = gpu.step_parts(m, c, 1, prec, "decode", 144, 550, gpu.CALIBRATED, reference)
    assert shared["memory"] + shared["compute"] < apart["memory"] + apart["compute"]
    plan = lpu.simulate(T, ranges=False).plan
    step = shard.step_graph_reference if reference else shard.step_graph
    assert step(plan, "decode", 18, 550, 9).cols.kv_read_bytes.sum() < step(plan, "decode", 18, 550).cols.kv_read_bytes.sum()
