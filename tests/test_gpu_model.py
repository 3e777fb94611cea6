"""The GPU baseline's terms against closed forms, its profiles and its physical bounds (lpu.gpu)."""

import numpy as np
import pytest

import lpu
from lpu import gpu, graph, hardware, models

H100, A100, H200 = (hardware.get(n) for n in ("h100", "a100", "h200"))


def test_nvlink_is_one_direction_and_all_reduces_use_it():
    assert (A100.nvlink_one_way_Bps, H100.nvlink_one_way_Bps, H200.nvlink_one_way_Bps) == (300e9, 450e9, 450e9)
    m, prec = models.get("llama2-13b"), models.get_precision("bf16")
    p = gpu.GPUParams(allreduce_latency_s=20e-6, nvlink_efficiency=0.8)
    rows, tp = 512, 4
    nbytes = rows * m.dim * 2
    expected = 2 * m.n_layers * (20e-6 + 2 * (tp - 1) / tp * nbytes / (450e9 * 0.8))
    assert gpu.step_parts(m, H100, tp, prec, "prefill", rows, 0, p)["nvlink"] == pytest.approx(expected, rel=1e-12)
    assert gpu.step_parts(m, H100, 1, prec, "prefill", rows, 0, p)["nvlink"] == 0


def test_allreduce_latency_goes_through_the_nccl_tests_measurements():
    (t2, _), (t8, _) = gpu.ALLREDUCE_MEASURED_S[2], gpu.ALLREDUCE_MEASURED_S[8]
    assert gpu.allreduce_latency_s(1) == 0 and gpu.allreduce_latency_s(2) == t2 and gpu.allreduce_latency_s(8) == pytest.approx(t8)
    assert gpu.allreduce_latency_s(4) == pytest.approx(t2 + (t8 - t2) * 2 / 6)  # linear in the ring's tp - 1 steps
    assert gpu.GPUParams.RANGES["allreduce_latency_s"] == (t2, t8)


def test_stream_efficiency_is_the_microbenchmark_at_its_points_and_clamped_outside():
    for nbytes, eff in gpu.STREAM_EFFICIENCY_MEASURED:
        assert gpu.stream_efficiency(nbytes) == pytest.approx(eff)
    sizes, effs = zip(*gpu.STREAM_EFFICIENCY_MEASURED)
    assert gpu.stream_efficiency(1) == effs[0] and gpu.stream_efficiency(1e12) == effs[-1]
    assert np.all(np.diff(gpu.stream_efficiency(np.geomspace(1e6, 1e10, 50))) >= 0)


def test_gemm_rates_against_each_dtypes_own_peak():
    p = gpu.CALIBRATED
    assert H100.bf16_matmul_efficiency == pytest.approx(792.1 / 989)  # MAMF, the measured best shape
    assert gpu.matmul_efficiency_of(H100, "bf16", p) == pytest.approx(792.1e12 * p.matmul_efficiency / 989e12)
    assert gpu.matmul_efficiency_of(H100, "fp8", p) == pytest.approx(792.1e12 * p.matmul_efficiency * p.fp8_speedup / 1979e12)
    assert gpu.matmul_efficiency_of(H100, "fp8", p) <= 1  # fp8_speedup <= 2, the ratio of the peaks
    assert gpu.GPUParams.RANGES["fp8_speedup"][1] == pytest.approx(H100.fp8_flops_per_s / H100.bf16_flops_per_s, rel=1e-3)
    with pytest.raises(ValueError, match="no FP8"):
        gpu.matmul_flops_per_s(A100, "fp8", p)


def test_step_terms_against_an_independent_per_op_sum():
    """Each op: max(bytes / bandwidth, FLOPs / rate) + (1 - overlap) x min(...), summed; one GPU, fixed efficiencies."""
    m, prec = models.get("llama2-7b"), models.get_precision("bf16")
    p = gpu.GPUParams(hbm_efficiency=0.8, overlap=0.25, matmul_efficiency=0.9, attention_efficiency=0.4)
    for phase, tokens, context in (("decode", 1, 300), ("decode", 16, 300), ("prefill", 700, 0)):
        total = 0.0
        for op in graph.build(m, phase, tokens, context, prec).ops:
            attention = op.kind in ("attention_scores", "attention_values", "softmax")
            stream = (op.weight_bytes + op.kv_read_bytes + op.kv_write_bytes + (0 if attention else op.act_bytes)) / (3.35e12 * 0.8)
            rate = 792.1e12 * 0.9 if op.kind == "matmul" else 989e12 * 0.4
            math = op.flops / rate if op.kind == "matmul" or attention else 0.0
            total += max(stream, math) + 0.75 * min(stream, math)
        parts = gpu.step_parts(m, H100, 1, prec, phase, tokens, context, p)
        assert parts["memory"] + parts["compute"] == pytest.approx(total, rel=1e-9)
        assert parts["overhead"] == m.n_layers * p.layer_overhead_s and parts["nvlink"] == 0


def test_served_adds_the_host_share_to_every_step_and_ideal_is_faster():
    kw = dict(system="h100", chips=4, precision="fp8", prompt_tokens=512, output_tokens=64)
    ideal = lpu.simulate("llama2-70b", serving="ideal", **kw)
    served = lpu.simulate("llama2-70b", serving="served", **kw)
    assert lpu.simulate("llama2-70b", **kw).itl_s == served.itl_s  # served is the default
    share = gpu.SERVING["served"].host_share
    # the host time: the share vLLM measured, of its own setup's step (Llama 3 8B, 1 x H100, bf16) at the same batch
    ref = lpu.simulate("llama3-8b", system="h100", chips=1, precision="bf16", prompt_tokens=512, output_tokens=64, serving="ideal")
    host = ref.itl_s * share / (1 - share)
    assert served.itl_s == pytest.approx(ideal.itl_s + host) and served.ttft_s == pytest.approx(ideal.ttft_s + host)
    for key in ("ttft_s", "itl_s"):
        assert getattr(ideal, key) < getattr(served, key) and ideal.ranges[key][0] <= served.ranges[key][0] and ideal.ranges[key][1] <= served.ranges[key][1]
    assert sum(served.breakdown().values()) == pytest.approx(1) and "serving stack (host)" in served.breakdown()
    assert "serving stack (host)" not in ideal.breakdown()


@pytest.mark.parametrize("serving", ["x", "Ideal", ""])
def test_unknown_serving_profile_is_a_clear_error(serving):
    with pytest.raises(ValueError, match="serving must be one of 'ideal', 'served'"):
        lpu.simulate("llama2-7b", system="h100", chips=1, serving=serving)


def test_serving_for_reads_the_rows_conditions():
    assert gpu.serving_for("PyTorch ..., 1 GPU, no serving stack or network") == "ideal"
    assert gpu.serving_for("ArtificialAnalysis median output speed of a provider's API") == "served"


@pytest.mark.parametrize("system, model, chips, precision, users, prompt", [
    ("a100", "llama2-70b", 4, "fp16", 1, 128), ("h100", "llama2-70b", 8, "fp8", 16, 2048), ("h200", "llama3-8b", 1, "bf16", 64, 550),
    ("h100", "mixtral-8x7b", 2, "fp8", 1, 550)])
def test_never_faster_than_hbm_or_flops_at_the_peaks_in_any_corner(system, model, chips, precision, users, prompt):
    spec = hardware.get(system)
    dtype = "fp8" if precision == "fp8" else "bf16"
    for serving in ("ideal", "served"):
        r = lpu.simulate(model, system=system, chips=chips, precision=precision, users=users, prompt_tokens=prompt, output_tokens=32, serving=serving)
        dec = graph.decode(model, users, prompt + 16, precision).totals()
        pre = graph.prefill(model, prompt, 0, precision).totals()
        fastest_itl, fastest_ttft = r.ranges["itl_s"][0], r.ranges["ttft_s"][0]
        assert fastest_itl >= max((dec["weight_bytes"] + dec["kv_bytes"]) / chips / spec.hbm_bandwidth_Bps, dec["flops"] / chips / spec.peak_ops_per_s(dtype))
        assert fastest_ttft >= max(pre["weight_bytes"] / chips / spec.hbm_bandwidth_Bps, pre["flops"] / chips / spec.peak_ops_per_s(dtype))
        assert r.ranges["itl_s"][0] <= r.itl_s <= r.ranges["itl_s"][1] and r.ranges["ttft_s"][0] <= r.ttft_s <= r.ranges["ttft_s"][1]
