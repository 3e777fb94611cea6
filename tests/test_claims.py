"""lpu.claims: each verdict's logic with injected inputs, moved across its threshold; the table from the model once."""

import pandas as pd
import pytest

from lpu import claims, metrics
from lpu.claims import CANNOT_CHECK, DOES_NOT_HOLD, HOLDS, PARTLY


def test_judge_prediction_thresholds():
    assert claims.judge_prediction(300, 241, 241, 325) == HOLDS
    assert claims.judge_prediction(480, 535, 535, 722) == PARTLY  # outside the range, -10%
    lo = 535 * (1 - claims.PREDICTION_TOLERANCE)
    assert claims.judge_prediction(lo * 1.001, 535, 535, 722) == PARTLY
    assert claims.judge_prediction(lo * 0.999, 535, 535, 722) == DOES_NOT_HOLD


def test_judge_ratio_all_some_none():
    assert claims.judge_ratio(10, [8.1, 12]) == HOLDS
    assert claims.judge_ratio(10, [7.9, 12]) == PARTLY
    assert claims.judge_ratio(10, [2, 7.9]) == DOES_NOT_HOLD


def test_combine_ignores_uncheckable_parts():
    def v(x):
        return claims.Verdict(0, "part", x, "n", "r")

    assert claims.combine(1, "c", [v(CANNOT_CHECK), v(HOLDS)]).verdict == HOLDS
    assert claims.combine(1, "c", [v(HOLDS), v(DOES_NOT_HOLD)]).verdict == PARTLY
    assert claims.combine(1, "c", [v(DOES_NOT_HOLD), v(CANNOT_CHECK)]).verdict == DOES_NOT_HOLD
    assert claims.combine(1, "c", [v(CANNOT_CHECK)]).verdict == CANNOT_CHECK
    with pytest.raises(ValueError, match="verdict must be one of"):
        v("maybe")


def test_speed_flips_across_the_range_and_tolerance():
    def at(published):
        return claims.speed("mixtral-8x7b", published_tok_s=published, predicted=(500.0, 450.0, 560.0)).verdict

    assert at(450.0) == HOLDS and at(560.0) == HOLDS
    assert at(449.0) == PARTLY and at(600.0) == PARTLY
    assert at(399.0) == DOES_NOT_HOLD and at(601.0) == DOES_NOT_HOLD


def test_price_flips_with_cost_and_breakeven_is_exact():
    p = claims.MIXTRAL_PRICE_USD_PER_M
    assert claims.price(cost_nominal_usd=p, cost_cheapest_usd=0.1, breakeven_usd=1.0).verdict == HOLDS
    assert claims.price(cost_nominal_usd=p * 1.01, cost_cheapest_usd=p, breakeven_usd=1.0).verdict == PARTLY
    assert claims.price(cost_nominal_usd=4.0, cost_cheapest_usd=p * 1.01, breakeven_usd=-1.0).verdict == DOES_NOT_HOLD
    # at the break-even card price the modelled cost equals the target price (the hardware term is linear in the price)
    econ = metrics.Economics()
    price = claims.breakeven_card_price_usd(200_000.0, 576, p, econ)
    assert price > 0
    assert claims.cost_at_card_price(200_000.0, 576, price, econ)[0] == pytest.approx(p, rel=1e-9)
    # cost rises with the card price
    costs = claims.cost_at_card_price(20_000.0, 576, [500, 5_000, 20_000])
    assert (costs[1:] > costs[:-1]).all()


def test_card_price_is_a_sourced_range():
    r = claims.LPU_CARD_PRICE_USD
    assert r.low < r.nominal <= r.high and "isopack" in r.source and "500" in r.source


def test_cloud_speedup_like_for_like():
    assert claims.cloud_speedup(241, (30, 120), simulated=(241, 176)).verdict == DOES_NOT_HOLD  # 2-8x
    assert claims.cloud_speedup(241, (12, 20), simulated=(241, 176)).verdict == PARTLY  # 12-20x: the slow end reaches 18x
    assert claims.cloud_speedup(241, (10, 13), simulated=(241, 176)).verdict == HOLDS


def test_claim_3_response_time():
    kw = dict(published_s=0.8, role="validation", network_s=(0.04, 0.16))
    assert claims.claim_3(on_chip_s=0.70, **kw).verdict == HOLDS  # 0.10 s left: one network round trip
    assert claims.claim_3(on_chip_s=0.44, **kw).verdict == PARTLY  # 0.36 s left: more than the network explains
    assert claims.claim_3(on_chip_s=0.99, **kw).verdict == DOES_NOT_HOLD  # the chips alone are slower than 0.8 s (+20%)
    assert claims.claim_3(on_chip_s=0.44, published_s=0.8, role="calibration", network_s=(0.04, 0.16)).verdict == CANNOT_CHECK


def test_gpu_and_sram_speedups():
    assert claims.gpu_speedup(241, 24, 215, ideal_server_tok_s=215).verdict == PARTLY  # 10x one GPU, 1.1x a server
    assert claims.gpu_speedup(241, 31, 215, ideal_server_tok_s=215).verdict == DOES_NOT_HOLD  # 7.8x one GPU: just under 8x
    assert claims.gpu_speedup(241, 24, 30, ideal_server_tok_s=215).verdict == HOLDS  # 8.0x a server
    hbm = 3.35e12
    assert claims.sram_speedup((18.4e12, 55e12, 80e12), hbm).verdict == PARTLY
    assert claims.sram_speedup((60e12, 70e12, 80e12), hbm).verdict == HOLDS
    assert claims.sram_speedup((18.4e12, 20e12, 30e12), hbm).verdict == DOES_NOT_HOLD


def test_claim_5_576_chips_and_capacity():
    assert claims.chips_576({"fp16": 576, "int8": 339}, 576).verdict == HOLDS
    assert claims.chips_576({"fp16": 577, "int8": 339}, 576).verdict == PARTLY
    assert claims.chips_576({"fp16": 900, "int8": 700}, 576).verdict == DOES_NOT_HOLD
    lpus = claims.claim_5(needed={"fp16": 671, "int8": 339}, lpus_bytes=59e9, h200_bytes=151e9, model_bytes=47e9).parts[-1]
    assert lpus.verdict == HOLDS
    assert claims.claim_5(needed={"fp16": 671}, lpus_bytes=59e9, h200_bytes=151e9, model_bytes=60e9).parts[-1].verdict == DOES_NOT_HOLD
    assert claims.claim_5(sram_bytes=300e6, needed={"fp16": 671}).parts[0].verdict == DOES_NOT_HOLD


def test_claim_6_linear_scaling():
    def df(tput):
        return pd.DataFrame(dict(chips=[400, 800, 1600], system_tok_s_full=tput, per_user_tok_s=[240, 240, 240]))

    assert claims.claim_6(df([1000, 2000, 4000])).verdict == HOLDS
    assert claims.claim_6(df([1000, 2000, 2500])).verdict == PARTLY  # the second doubling keeps 62%
    assert claims.claim_6(df([1000, 1500, 2000])).verdict == DOES_NOT_HOLD  # 75%, 67%
    edge = 2 * claims.LINEAR_EFFICIENCY * 1000
    assert claims.claim_6(df([1000, edge, 2 * claims.LINEAR_EFFICIENCY * edge])).verdict == HOLDS


def test_claim_7_energy():
    assert claims.claim_7(lpu_j=0.8, gpu_j=0.87, breakeven_w=300.0).verdict == HOLDS
    v = claims.claim_7(lpu_j=13.4, gpu_j=0.87, breakeven_w=14.0)
    assert v.verdict == DOES_NOT_HOLD and "Upper bound" in v.reason and "14 W" in v.reason


def test_claim_8_many_users_and_lora():
    assert claims.claim_8(users_gain=61, lora_lpu=66, lora_gpu=1487).verdict == HOLDS
    assert claims.claim_8(users_gain=9.9, lora_lpu=66, lora_gpu=1487).verdict == PARTLY
    assert claims.claim_8(users_gain=9.9, lora_lpu=2000, lora_gpu=1487).verdict == DOES_NOT_HOLD


def test_claim_9_voice():
    searched = dict(holds=False, text_last_s=1.94, words_within_claim=30.0)
    assert claims.claim_9(llm_share=0.06, search=searched).verdict == PARTLY
    assert claims.claim_9(llm_share=0.06, search=dict(searched, holds=True)).verdict == HOLDS
    assert claims.claim_9(llm_share=0.11, search=searched).verdict == DOES_NOT_HOLD


def test_claim_10_and_11():
    assert claims.claim_10(distinct_latencies=1).verdict == HOLDS
    assert claims.claim_10(distinct_latencies=2).verdict == DOES_NOT_HOLD
    assert claims.claim_11().verdict == CANNOT_CHECK


@pytest.fixture(scope="module")
def table():
    return claims.table()


def test_table_from_the_model(table):
    assert len(table) == 11 and list(table.columns) == ["claim", "verdict", "numbers", "why", "sources"]
    assert table.verdict.isin(claims.VERDICTS).all()
    assert [int(c.split(".")[0]) for c in table.claim] == list(range(1, 12))
    assert (table.numbers.str.len() > 0).all() and (table.sources.str.len() > 0).all()


def test_mixtral_verdict_is_the_one_function_notebooks_share(table):
    # notebook 04 states claims.speed("mixtral-8x7b"); notebook 06 shows claim 1, which contains the same part
    part = claims.claim_1().parts[0]
    assert part == claims.speed("mixtral-8x7b")
    assert part.numbers in table.numbers.iloc[0]


def test_groq_api_timing_is_the_published_rows():
    t = claims.groq_api_timing()
    assert t.ttft_s.nominal == pytest.approx(0.8 - 100 / 241)  # claim 3's total minus 100 tokens at the calibration speed
    assert 1 / t.itl_s.nominal == pytest.approx(241) and 1 / t.itl_s.low == pytest.approx(300)
