import dataclasses
import math

import pytest

from lpu import hardware, metrics
from lpu.metrics import Economics

YEAR_S = 365.25 * 86400


# ---- latency metrics -------------------------------------------------------------------------------------------

def test_e2e_and_total_response_time_formulas():
    assert metrics.e2e_latency_s(0.25, 0.004, 100) == pytest.approx(0.25 + 99 * 0.004)
    assert metrics.e2e_latency_s(0.25, 0.004, 1) == pytest.approx(0.25)  # one token: TTFT only
    # seed article: 0.8 s for 100 tokens; 241 tok/s and 0.385 s TTFT give 0.385 + 100 / 241
    assert metrics.total_response_time_s(0.385, 241.0) == pytest.approx(0.385 + 100 / 241)
    assert metrics.total_response_time_s(0.1, 50.0, n_tokens=10) == pytest.approx(0.3)
    # total response time counts one more inter-token gap than LLMPerf's e2e
    ttft, itl = 0.2, 0.01
    assert metrics.total_response_time_s(ttft, 1 / itl, 50) - metrics.e2e_latency_s(ttft, itl, 50) == pytest.approx(itl)


@pytest.fixture(scope="module")
def result():
    from lpu.system import simulate

    return simulate("llama2-7b", chips=64, precision="int8", ranges=False)


def test_benchmark_views_of_a_real_result(result):
    aa = metrics.artificial_analysis(result)
    assert aa == pytest.approx(dict(output_speed_tok_s=result.output_tokens_per_s, latency_s=result.ttft_s))
    lp = metrics.llmperf(result)
    assert lp["e2e_s"] == pytest.approx(result.ttft_s + (result.output_tokens - 1) * result.itl_s)
    assert lp["e2e_s"] == pytest.approx(result.total_time_s)
    assert (lp["ttft_s"], lp["itl_s"]) == (result.ttft_s, result.itl_s)


def test_economics_of_a_real_result(result):
    econ = Economics()
    cost = metrics.cost_per_million_tokens_from(result, econ)
    assert cost == pytest.approx(metrics.cost_per_million_tokens_usd("lpu-v1", 64, result.system_tokens_per_s, econ))
    low, nominal, high = metrics.cost_per_million_tokens_range_from(result, econ)
    assert low < nominal < high and nominal == pytest.approx(cost)
    assert metrics.racks(result.system, result.chips) == 1
    assert metrics.energy_per_token_j(result.system, result.chips, result.system_tokens_per_s) > 0


# ---- hardware cost, power, racks -------------------------------------------------------------------------------

def test_hardware_cost_power_and_racks():
    assert metrics.hardware_cost_usd("lpu-v1", 576) == 576 * 20_000
    assert metrics.hardware_cost_usd("h100", 8) == 8 * 27_500
    assert metrics.hardware_cost_usd("a100", 8, price_usd=15_000) == 120_000
    assert metrics.power_w("lpu", 72) == 72 * 300
    assert metrics.power_w("h200", 16) == 16 * 700
    assert metrics.racks("lpu-v1", 72) == 1 and metrics.racks("lpu-v1", 73) == 2 and metrics.racks("lpu-v1", 576) == 8
    assert metrics.racks("h100", 32) == 1 and metrics.racks("h100", 33) == 2  # 4 servers of 8 GPUs per rack
    assert metrics.racks("h100", 32, servers_per_rack=2) == 2


def test_cost_formula_against_hand_computation():
    econ = Economics(amortisation_years=4.0, utilisation=0.5, electricity_usd_per_kwh=0.10, pue=1.5)
    tps = 1000.0
    hw_per_s = 64 * 20_000 / (4 * YEAR_S)
    energy_per_s = 64 * 300 * 1.5 / 1000 * 0.10 / 3600
    expected = (hw_per_s + energy_per_s) / (tps * 0.5) * 1e6
    assert metrics.cost_per_million_tokens_usd("lpu-v1", 64, tps, econ) == pytest.approx(expected)
    parts = metrics.cost_breakdown_usd_per_million("lpu-v1", 64, tps, econ)
    assert parts["hardware_usd"] == pytest.approx(hw_per_s / 500 * 1e6)
    assert parts["energy_usd"] == pytest.approx(energy_per_s / 500 * 1e6)


def test_cost_scales_as_inverse_throughput_and_linearly_in_chips():
    c = metrics.cost_per_million_tokens_usd("h100", 8, 1000.0)
    assert metrics.cost_per_million_tokens_usd("h100", 8, 2000.0) == pytest.approx(c / 2)
    assert metrics.cost_per_million_tokens_usd("h100", 24, 1000.0) == pytest.approx(3 * c)
    assert metrics.cost_per_million_tokens_usd("lpu-v1", 576, 241.0) == pytest.approx(
        8 * metrics.cost_per_million_tokens_usd("lpu-v1", 72, 241.0))


def test_energy_per_token_is_power_times_pue_over_throughput():
    assert metrics.energy_per_token_j("lpu-v1", 576, 300.0, pue=1.2) == pytest.approx(576 * 300 * 1.2 / 300)
    assert metrics.energy_per_token_j("h100", 8, 1000.0) == pytest.approx(8 * 700 * 1.58 / 1000)  # Uptime 2023 PUE by default
    assert metrics.tokens_per_joule("h100", 8, 1000.0, pue=1.0) == pytest.approx(1000 / 5600)


# ---- ranges and corners ----------------------------------------------------------------------------------------

def test_economics_corners_order_cost():
    e = Economics()
    cheap, dear = e.corner("low"), e.corner("high")
    assert e.corner("nominal") == e and e.corner("cheap") == cheap and e.corner("expensive") == dear
    assert cheap.amortisation_years >= e.amortisation_years >= dear.amortisation_years
    assert cheap.utilisation >= e.utilisation >= dear.utilisation
    assert cheap.electricity_usd_per_kwh <= e.electricity_usd_per_kwh <= dear.electricity_usd_per_kwh
    assert cheap.pue <= e.pue <= dear.pue
    for f in ("amortisation_years", "utilisation", "electricity_usd_per_kwh", "pue"):
        assert e.source_of(f)
    # a value set by hand is held at every corner
    fixed = Economics(utilisation=0.75)
    assert fixed.corner("low").utilisation == fixed.corner("high").utilisation == 0.75


@pytest.mark.parametrize("system,chips,tps", [("lpu-v1", 576, 241.0), ("h100", 8, 3000.0), ("h200", 8, 3000.0)])
def test_cost_range_is_ordered(system, chips, tps):
    low, nominal, high = metrics.cost_per_million_tokens_range_usd(system, chips, tps)
    assert low <= nominal <= high
    assert nominal == pytest.approx(metrics.cost_per_million_tokens_usd(system, chips, tps))


def test_cost_range_uses_spec_ranges():
    # with the economics held fixed, only the spec's power (LPU) or price (H100) ranges move the cost
    econ = Economics(amortisation_years=4.0, utilisation=0.5, electricity_usd_per_kwh=0.1, pue=1.5)
    low, _, high = metrics.cost_per_million_tokens_range_usd("lpu-v1", 72, 500.0, econ)
    lpu_low = dataclasses.replace(hardware.LPU_V1, power_w=215.0)
    assert low == pytest.approx(metrics.cost_per_million_tokens_usd(lpu_low, 72, 500.0, econ))
    low, _, high = metrics.cost_per_million_tokens_range_usd("h100", 8, 500.0, econ)
    assert high == pytest.approx(metrics.cost_per_million_tokens_usd("h100", 8, 500.0, econ, price_usd=30_000))


# ---- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tps", [0, -1.0, math.inf, float("nan"), "fast"])
def test_bad_throughput_raises(tps):
    with pytest.raises(ValueError, match="system_tokens_per_s"):
        metrics.cost_per_million_tokens_usd("lpu-v1", 8, tps)
    with pytest.raises(ValueError, match="system_tokens_per_s"):
        metrics.energy_per_token_j("h100", 8, tps)


@pytest.mark.parametrize("chips", [0, -8, 2.5, True])
def test_bad_chips_raise(chips):
    for fn in (metrics.hardware_cost_usd, metrics.power_w, metrics.racks):
        with pytest.raises(ValueError, match="chips must be a positive integer"):
            fn("lpu-v1", chips)
    with pytest.raises(ValueError, match="chips"):
        metrics.cost_per_million_tokens_usd("h100", chips, 100.0)


def test_unknown_or_non_chip_system_raises():
    with pytest.raises(ValueError, match="unknown hardware 'tpu-v5'"):
        metrics.power_w("tpu-v5", 8)
    with pytest.raises(ValueError, match="not a chip or GPU"):
        metrics.hardware_cost_usd("groqrack", 1)
    with pytest.raises(ValueError, match="a100 has no price"):
        metrics.hardware_cost_usd("a100", 8)
    with pytest.raises(ValueError, match="a100 has no price"):
        metrics.cost_per_million_tokens_range_usd("a100", 8, 100.0)


def test_bad_economics_and_latency_inputs_raise():
    with pytest.raises(ValueError, match="utilisation"):
        Economics(utilisation=1.5)
    with pytest.raises(ValueError, match="utilisation"):
        Economics(utilisation=0)
    with pytest.raises(ValueError, match="pue"):
        Economics(pue=0.9)
    with pytest.raises(ValueError, match="amortisation_years"):
        Economics(amortisation_years=-3)
    with pytest.raises(ValueError, match="corner"):
        Economics().corner("median")
    with pytest.raises(ValueError, match="econ"):
        metrics.cost_per_million_tokens_usd("h100", 8, 100.0, econ=0.5)
    with pytest.raises(ValueError, match="n_tokens"):
        metrics.e2e_latency_s(0.1, 0.01, 0)
    with pytest.raises(ValueError, match="output_speed_tok_s"):
        metrics.total_response_time_s(0.1, 0.0)
    with pytest.raises(ValueError, match="ttft_s"):
        metrics.total_response_time_s(-0.1, 100.0)
    with pytest.raises(ValueError, match="servers_per_rack"):
        metrics.racks("h100", 8, servers_per_rack=0)


def test_model_switch_and_lora_adapter_bytes():
    import lpu
    from lpu import hardware, metrics, models, shard

    r = lpu.simulate("llama2-7b", chips=64, precision="int8", ranges=False)
    fullest = max(s["weights"] for s in shard.chip_bytes(r.plan, 1, 0))
    assert metrics.model_switch_s(r) == pytest.approx(fullest / hardware.get("lpu-v1").host_link_Bps)
    g = lpu.simulate("llama2-7b", system="h100", chips=2, precision="bf16", ranges=False)
    assert metrics.model_switch_s(g) == pytest.approx(models.get("llama2-7b").weight_bytes("bf16") / 2 / hardware.get("h100").host_link_Bps)
    m = models.get("llama2-7b")
    per_layer_params = 16 * (4 * 2 * m.dim + 3 * (m.dim + m.hidden_dim))  # MHA: q, k, v, o are dim x dim
    assert metrics.lora_adapter_bytes("llama2-7b", 16) == m.n_layers * per_layer_params * 2
    assert metrics.lora_adapter_bytes("llama2-7b", 32) == 2 * metrics.lora_adapter_bytes("llama2-7b", 16)
    with pytest.raises(ValueError):
        metrics.lora_adapter_bytes("llama2-7b", 0)
