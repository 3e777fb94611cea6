"""The voice latency model (lpu.voice) against the formula of facts.md §7, a scalar reference of the streaming overlap, and bounds."""

import numpy as np
import pytest

from lpu import voice
from lpu.hardware import Range
from lpu.voice import LLMTiming, Stages

FAST = LLMTiming("test LLM", Range(0.05, 0.1, 0.2, "test"), Range(0.004, 0.005, 0.01, "test"))


def test_nominal_turn_is_the_sum_of_its_stages():
    s = Stages()
    t = voice.turn(FAST, s, answer_tokens=60)
    n = s.first_sentence_tokens.nominal
    expected = (s.network_hop_s.nominal + s.silence_timer_s.nominal + s.asr_final_s.nominal + FAST.ttft_s.nominal
                + (n - 1) * FAST.itl_s.nominal + s.tts_first_audio_s.nominal + s.network_hop_s.nominal + s.playout_buffer_s.nominal)
    assert t.voice_to_voice_s == pytest.approx(expected)
    df = t.stages()
    critical = df[~df.stage.str.contains("overlaps|playing")]
    assert critical.duration_s.sum() == pytest.approx(expected)  # the waterfall tiles the delay, no gaps
    assert (df.duration_s >= 0).all() and np.allclose(critical.start_s.values[1:], critical.end_s.values[:-1])
    assert t.llm_share() == pytest.approx((FAST.ttft_s.nominal + (n - 1) * FAST.itl_s.nominal) / expected)


def test_remote_llm_and_search_add_their_stages():
    base = voice.turn(FAST).voice_to_voice_s
    remote = LLMTiming("remote", FAST.ttft_s, FAST.itl_s, hops=2)
    assert voice.turn(remote).voice_to_voice_s == pytest.approx(base + 2 * Stages().network_hop_s.nominal)
    searched = voice.turn(FAST, Stages().fixed(search_s=0.3), search=True)
    assert searched.voice_to_voice_s == pytest.approx(base + 0.3)
    assert "web search" in set(searched.stages().stage)


def _reference_stream(first_audio, text_1, itl, first, later, answer_tokens, delay):
    """Scalar reference: sentence by sentence, each plays when ready and not before the previous one ends."""
    end, play_end, stall = first, first_audio + first / voice.SPEECH_TOKENS_PER_S, 0.0
    while end < answer_tokens:
        nxt = min(end + later, answer_tokens)
        ready = text_1 + (nxt - first) * itl + delay
        start = max(ready, play_end)
        stall += start - play_end
        play_end = start + (nxt - end) / voice.SPEECH_TOKENS_PER_S
        end = nxt
    return play_end, stall


@pytest.mark.parametrize("tok_s", [1.0, 2.0, 3.0, 5.0, 50.0, 500.0])
def test_streaming_overlap_matches_a_scalar_reference(tok_s):
    llm = FAST.fixed(output_tokens_per_s=tok_s)
    s = Stages().fixed(first_sentence_tokens=7)
    t = voice.turn(llm, s, answer_tokens=53)
    e = t.events
    delay = s.tts_first_audio_s.nominal + s.network_hop_s.nominal + s.playout_buffer_s.nominal
    end, stall = _reference_stream(e["first_audio_s"], e["text_1_s"], 1 / tok_s, 7, 7, 53, delay)  # later sentences: the nominal length
    assert e["answer_end_s"] == pytest.approx(end) and t.stall_s == pytest.approx(stall)
    # physical bound: the answer cannot play faster than speech
    assert e["answer_end_s"] >= e["first_audio_s"] + 53 / voice.SPEECH_TOKENS_PER_S - 1e-12
    # an LLM faster than speech never stalls the audio after the first sentence; a slower one does
    assert (t.stall_s == 0) == (tok_s > voice.SPEECH_TOKENS_PER_S)


def test_monte_carlo_is_deterministic_and_bounded_by_the_corners():
    a = voice.monte_carlo(FAST, n=5000, seed=3)
    b = voice.monte_carlo(FAST, n=5000, seed=3)
    assert np.array_equal(a.voice_to_voice_s, b.voice_to_voice_s)
    assert not np.array_equal(a.voice_to_voice_s, voice.monte_carlo(FAST, n=5000, seed=4).voice_to_voice_s)
    low, high = voice.turn(FAST, corner="low").voice_to_voice_s, voice.turn(FAST, corner="high").voice_to_voice_s
    assert low <= a.voice_to_voice_s.min() and a.voice_to_voice_s.max() <= high
    assert a.quantile(0.1) < a.p50_s < a.p90_s
    # independent check: the median of a sum of near-symmetric triangulars sits near the sum of their means
    s = Stages()
    means = sum((r.low + r.nominal + r.high) / 3 for r in (s.silence_timer_s, s.asr_final_s, s.tts_first_audio_s, s.playout_buffer_s, FAST.ttft_s))
    means += 2 * (s.network_hop_s.low + s.network_hop_s.nominal + s.network_hop_s.high) / 3
    means += (s.first_sentence_tokens.low + s.first_sentence_tokens.nominal + s.first_sentence_tokens.high) / 3 * FAST.itl_s.nominal
    assert a.p50_s == pytest.approx(means, abs=0.05)


def test_llm_stage_comes_from_lpu_simulate():
    from lpu import published
    from lpu.system import simulate

    t = voice.llm_timing("lpu-llama2-70b")
    r = simulate("llama2-70b", chips=published.lpu_system_chips(), prompt_tokens=550, output_tokens=150)
    assert t.ttft_s.nominal == pytest.approx(r.ttft_s) and t.itl_s.nominal == pytest.approx(r.itl_s)
    assert t.ttft_s.low <= t.ttft_s.nominal <= t.ttft_s.high and "lpu.simulate" in t.ttft_s.source
    gpu = voice.llm_timing(voice.LLMProfile("7B on one H100", "llama2-7b", "h100", 1))
    assert gpu.itl_s.nominal == pytest.approx(simulate("llama2-7b", system="h100", chips=1, prompt_tokens=550, output_tokens=150).itl_s)


def test_compare_profiles_and_what_dominates():
    df = voice.compare(n=2000)
    assert tuple(df.profile) == voice.KNOWN
    assert (df.p10_s <= df.p50_s).all() and (df.p50_s <= df.p90_s).all()
    by = df.set_index("profile")
    assert by.loc["lpu-llama2-70b", "p50_s"] < by.loc["hosted-api", "p50_s"]
    sens = voice.sensitivity("lpu-llama2-70b")
    assert sens.stage.iloc[0] == "silence_timer_s"  # the silence timer, not the LLM, dominates on an LPU
    s = Stages()
    row = sens.set_index("stage").loc["silence_timer_s"]
    assert row.high_s - row.low_s == pytest.approx(s.silence_timer_s.high - s.silence_timer_s.low)


def test_faster_llm_never_delays_the_voice():
    ttft = voice.sweep(FAST, "ttft_s", [0.01, 0.1, 0.5, 1.0])
    speed = voice.sweep(FAST, "output_tokens_per_s", [10, 40, 240, 1000])
    assert np.all(np.diff(ttft.voice_to_voice_s) > 0) and np.all(np.diff(speed.voice_to_voice_s) < 0)
    silence = voice.sweep(FAST, "silence_timer_s", [0.2, 0.5, 0.8])
    assert np.diff(silence.voice_to_voice_s) == pytest.approx([0.3, 0.3])


def test_search_answer_claim_both_ways():
    r = voice.search_answer("lpu-llama2-70b", words=200)
    t = voice.llm_timing("lpu-llama2-70b", 550 + 2048, r["tokens"])
    assert r["tokens"] == 267 and r["search_s"] == pytest.approx(0.75)
    assert r["text_last_s"] == pytest.approx(0.75 + t.ttft_s.nominal + 266 * t.itl_s.nominal)
    assert not r["holds"] and r["needed_tokens_per_s"] > r["output_tokens_per_s"]
    fast = LLMTiming("very fast", Range(0.01, 0.01, 0.01, "t"), Range(1e-4, 1e-4, 1e-4, "t"))
    f = voice.search_answer(fast, words=200)
    assert f["holds"] and f["text_last_s"] < voice.SEED_SEARCH_TOTAL_S and f["words_within_claim"] >= 200


def test_clear_errors():
    with pytest.raises(ValueError, match="known: lpu-llama2-70b"):
        voice.llm_timing("gpt-5")
    with pytest.raises(ValueError, match="answer_tokens"):
        voice.turn(FAST, answer_tokens=0)
    with pytest.raises(ValueError, match="unknown stage"):
        Stages().fixed(silence_ms=200)
    with pytest.raises(ValueError, match="silence_timer_s"):
        Stages(silence_timer_s=Range(-0.1, 0.1, 0.2, "bad"))
    with pytest.raises(ValueError, match="unknown parameter"):
        voice.sweep(FAST, "speed", [1])
    with pytest.raises(TypeError, match="profile"):
        voice.llm_timing(3)


def test_every_stage_is_sourced():
    for name in Stages.names():
        assert len(getattr(Stages(), name).source) > 20, name
    for r in (voice.HUMAN_TURN_GAP_S, *voice.PUBLISHED_MEDIANS_S.values(), voice.HOSTED_API.ttft_s, voice.HOSTED_API.itl_s):
        assert r.low <= r.nominal <= r.high and r.source
