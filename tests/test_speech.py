"""lpu.speech: the pure helpers always; the measured pipeline where the voice extra is installed."""

import gc
from dataclasses import dataclass

import numpy as np
import pytest

from lpu import speech
from lpu.hardware import Range
from lpu.runtime import Engine


def needs(*components):
    """Skip unless the named voice components load, saying which packages are missing."""
    gone = {c: r for c, r in speech.missing().items() if c in components}
    return pytest.mark.skipif(bool(gone), reason="voice extra missing: " + "; ".join(f"{c}: {r}" for c, r in gone.items()))


@dataclass(frozen=True)
class Timing:  # stands in for lpu.voice.LLMTiming: only these fields are read
    name: str
    ttft_s: Range
    itl_s: Range


def timing(ttft_s, itl_s, name="test-llm"):
    return Timing(name, Range(ttft_s, ttft_s, ttft_s, "test"), Range(itl_s, itl_s, itl_s, "test"))


QUESTION = "What is the tallest mountain in the world?"


# ---- pure helpers: no voice extra needed ---------------------------------------------------
def test_word_error_rate_hand_examples():
    wer = speech.word_error_rate
    assert wer("the cat sat down", "the cat sat down") == 0
    assert wer("the cat sat down", "the dog sat down") == 0.25  # one substitution in four words
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)  # one insertion
    assert wer("the cat sat down", "the cat down") == 0.25  # one deletion
    assert wer("a b", "b a") == 1.0  # two edits either way
    assert wer("one two three", "") == 1.0
    assert wer("one", "one two three four") == 3.0  # insertions can take it above 1
    assert wer("Hello, World! It's me.", "hello world it\u2019s me") == 0  # case, punctuation, curly apostrophe
    for empty in ("", "  ", "?!"):
        with pytest.raises(ValueError, match="no words"):
            wer(empty, "anything")


def test_resample_keeps_a_sines_frequency_and_the_length_ratio():
    t = np.arange(24_000) / 24_000  # one second at 24 kHz
    sine = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    down = speech.resample(sine, 24_000, 16_000)
    assert down.dtype == np.float32 and len(down) == 16_000
    spectrum = np.abs(np.fft.rfft(down))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second
    assert np.abs(down).max() == pytest.approx(1.0, abs=0.01)
    assert len(speech.resample(sine[:1001], 24_000, 16_000)) == round(1001 * 2 / 3)
    assert len(speech.resample(down, 16_000, 24_000)) == 24_000
    # linear interpolation is exact on a ramp: sample n of the output is at time n / to_hz
    ramp = np.arange(300, dtype=np.float32) / 24_000
    up = speech.resample(ramp, 24_000, 48_000)
    np.testing.assert_allclose(up[:-2], np.arange(len(up) - 2) / 48_000, atol=1e-7)
    same = speech.resample(sine, 24_000, 24_000)
    assert np.array_equal(same, sine) and same is not sine
    assert len(speech.resample(np.zeros(0), 24_000, 16_000)) == 0
    with pytest.raises(ValueError, match="positive"):
        speech.resample(sine, 0, 16_000)
    with pytest.raises(ValueError, match="1-D"):
        speech.resample(np.zeros((2, 10)), 24_000, 16_000)


def test_sentences_cut_at_breaks_after_three_tokens_and_at_the_cap():
    toks = ["Good", " night", ",", " good", " night", "!", " Part", "ing", " is", ";", " so", " sweet"]
    chunks = list(speech.sentences(toks))
    assert chunks == [("Good night, good night!", 6), (" Parting is;", 4), (" so sweet", 2)]
    assert list(speech.sentences(["Hi", ".", " Yes", "."])) == [("Hi. Yes.", 4)]  # no cut before three tokens
    assert list(speech.sentences(["Ay", " me", "\n", "O"])) == [("Ay me\n", 3), ("O", 1)]  # a newline is a break
    assert list(speech.sentences(["\n", "\n", ".", "Ay", "!"])) == [("\n\n.Ay!", 5)]  # nothing to speak yet: no cut
    capped = list(speech.sentences(["la"] * 30))
    assert capped == [("la" * 24, 24), ("la" * 6, 6)]
    assert list(speech.sentences(["a", "b"], max_chunk_tokens=1, min_chunk_tokens=1)) == [("a", 1), ("b", 1)]
    assert list(speech.sentences([])) == []
    with pytest.raises(ValueError, match="min_chunk_tokens"):
        list(speech.sentences(toks, max_chunk_tokens=2))


def test_run_turn_rejects_bad_inputs_before_loading_anything():
    llm = timing(0.05, 0.01)
    with pytest.raises(ValueError, match="non-empty"):
        speech.run_turn("   ", llm)
    with pytest.raises(ValueError, match="silence_s must be positive"):
        speech.run_turn(QUESTION, llm, silence_s=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        speech.run_turn(QUESTION, llm, max_new_tokens=0)
    with pytest.raises(ValueError, match="trailing_silence_s"):
        speech.run_turn(QUESTION, llm, silence_s=0.5, trailing_silence_s=0.5)
    with pytest.raises(TypeError, match="itl_s.nominal"):
        speech.run_turn(QUESTION, object())
    with pytest.raises(ValueError, match="ttft_s.nominal must be a finite time"):
        speech.run_turn(QUESTION, timing(-0.01, 0.01))
    with pytest.raises(ValueError, match="10, 20 or 30 ms"):
        speech.end_of_speech(np.zeros(16_000), frame_ms=25)
    with pytest.raises(ValueError, match="nothing to synthesize"):
        speech.synthesize(" ")


def test_missing_components_are_named_and_stop_the_pipeline(monkeypatch):
    gone = speech.missing()
    assert set(gone) <= set(speech.VOICE_PACKAGES)
    for component, reason in gone.items():
        assert "pip install" in reason or "reinstall" in reason, (component, reason)
    monkeypatch.setattr(speech, "missing", lambda: {"tts": "hibari-tts is not installed: pip install -e '.[voice]'"})
    with pytest.raises(RuntimeError, match="hibari-tts is not installed"):
        speech.run_turn(QUESTION, timing(0.05, 0.01))
    with pytest.raises(RuntimeError, match="tts"):
        speech.synthesize("Hello.")


# ---- the components ----------------------------------------------------------------------
@needs("tts")
def test_synthesize_is_deterministic_and_audible():
    a, b = speech.synthesize("Good morning.", seed=0), speech.synthesize("Good morning.", seed=0)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert 0.3 < len(a) / speech.TTS_RATE_HZ < 3.0
    assert np.sqrt(np.mean(a**2)) > 0.01 and np.abs(a).max() <= 1.0


@needs("tts", "vad")
@pytest.mark.parametrize("silence_s", [0.5, 0.3])
def test_end_of_speech_finds_the_end_and_runs_the_timer(silence_s):
    audio = speech.resample(np.concatenate([speech.synthesize(QUESTION), np.zeros(24_000, np.float32)]), 24_000, 16_000)
    last_audible_s = np.nonzero(np.abs(audio) > 0.01)[0][-1] / 16_000  # independent: the last sample above 1% of full scale
    speech_end, detected = speech.end_of_speech(audio, silence_s)
    assert abs(speech_end - last_audible_s) <= 0.06
    assert silence_s <= detected - speech_end < silence_s + 0.03 + 1e-9  # within one 30 ms frame
    with pytest.raises(ValueError, match="no speech"):
        speech.end_of_speech(np.zeros(16_000, np.float32))
    with pytest.raises(ValueError, match="trailing silence"):
        speech.end_of_speech(audio[:round((last_audible_s + 0.2) * 16_000)], 0.5)


@needs("tts", "asr")
def test_transcribe_recovers_a_synthesized_question():
    audio = speech.resample(speech.synthesize(QUESTION), 24_000, 16_000)
    assert speech.word_error_rate(QUESTION, speech.transcribe(audio)) <= 0.2


# ---- the measured turn ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def turn():
    speech.load()
    return speech.run_turn(QUESTION, timing(0.05, 0.01))


@needs("tts", "vad", "asr")
def test_run_turn_stages_are_ordered_and_consistent(turn):
    st = turn.stages
    assert tuple(st["stage"]) == speech.STAGES
    assert st["start_s"].iloc[0] == 0 and (st["duration_s"] >= 0).all()
    assert (np.diff(st["start_s"]) >= 0).all()
    np.testing.assert_allclose(st["duration_s"], st["end_s"] - st["start_s"])
    np.testing.assert_allclose(st["start_s"].iloc[1:], st["end_s"].iloc[:-1])  # each stage starts where the last ended
    assert list(st["how"]) == ["audio time", "measured", "paced at test-llm", "paced at test-llm", "measured", "audio time"]
    d = st.set_index("stage")["duration_s"]
    assert 0.5 <= d["VAD silence timer"] < 0.5 + 0.03 + 0.005  # the timer, whole frames, plus microseconds of compute
    assert turn.voice_to_voice_s >= d["VAD silence timer"] + d["ASR final transcript"] + 0.05
    assert turn.voice_to_voice_s == pytest.approx(st["start_s"].iloc[-1])
    assert turn.wer <= 0.2 and turn.wer == speech.word_error_rate(QUESTION, turn.transcript)
    s = turn.summary()
    assert s["voice_to_voice_s"] == turn.voice_to_voice_s and s["tokens"] == len(turn.tokens) == 40


@needs("tts", "vad", "asr")
def test_run_turn_releases_tokens_no_earlier_than_the_pace(turn):
    tk = turn.tokens
    llm_start = turn.stages["end_s"].iloc[1]  # the ASR's end
    pace = llm_start + 0.05 + 0.01 * np.arange(len(tk))  # recomputed here from the stand-in's numbers
    np.testing.assert_allclose(tk["due_s"], pace, atol=1e-9)
    assert (tk["release_s"] >= pace - 1e-9).all()
    assert (tk["release_s"] >= tk["ready_s"]).all() and (np.diff(tk["release_s"]) > 0).all()
    assert (tk["release_s"] - pace).mean() < 0.01  # the CPU keeps up: a 1.7M-parameter model makes thousands of tokens/s
    # the text is the engine's own, for the transcript-based prompt
    want = Engine.default().complete(speech.PROMPT.format(transcript=turn.transcript), 40, temperature=speech.TEMPERATURE, seed=0)
    assert turn.answer_text == want
    assert gc.isenabled()  # run_turn pauses garbage collection only while it paces tokens


@needs("tts", "vad", "asr")
def test_run_turn_chunks_cover_the_answer_and_play_in_order(turn):
    ch = turn.chunks
    assert "".join(ch["text"]) == turn.answer_text and ch["n_tokens"].sum() == len(turn.tokens)
    assert (ch["audio_ready_s"] >= ch["text_done_s"]).all() and (ch["synth_s"] > 0).all()
    assert (ch["play_start_s"] >= ch["audio_ready_s"]).all()
    assert (ch["play_start_s"].iloc[1:].to_numpy() >= ch["play_end_s"].iloc[:-1].to_numpy() - 1e-12).all()
    np.testing.assert_allclose(ch["play_end_s"] - ch["play_start_s"], ch["audio_s"])
    span_s = ch["play_end_s"].iloc[-1] - ch["play_start_s"].iloc[0]
    assert len(turn.answer_audio) == pytest.approx(span_s * 16_000, abs=len(ch))  # chunks and stalls, to a sample each
    assert turn.answer_audio.dtype == np.float32 and np.sqrt(np.mean(turn.answer_audio**2)) > 0.01
    # hibari's ~0.3 s of leading near-silence is trimmed: the voice is heard when the first chunk starts playing
    assert (ch["trimmed_s"] > 0.3).all()
    assert np.nonzero(np.abs(turn.answer_audio) > 0.01)[0][0] / 16_000 < 0.05
    assert len(turn.question_audio) / 16_000 > 1.0 and turn.question_audio.dtype == np.float32


@needs("tts", "vad", "asr")
def test_beside_model_lines_up_measured_and_modelled_stages(turn):
    from lpu import voice

    llm = voice.LLMTiming("test-llm", Range(0.05, 0.05, 0.05, "test"), Range(0.01, 0.01, 0.01, "test"))
    df = speech.beside_model(turn, llm, silence_s=0.5).set_index("stage")
    measured = turn.stages.set_index("stage").duration_s
    for stage in speech.STAGES[:-1]:
        assert df.loc[stage, "measured_s"] == measured[stage]
    assert df.loc["VAD silence timer", "model_s"] == 0.5 and np.isnan(df.loc["network up", "measured_s"])
    # the model's first sentence has the measured first chunk's tokens: the same paced gaps as the measurement
    assert df.loc["LLM first sentence", "model_s"] == pytest.approx((turn.chunks.n_tokens.iloc[0] - 1) * 0.01)
    assert df.loc["LLM first sentence", "measured_s"] == pytest.approx(df.loc["LLM first sentence", "model_s"], abs=0.005)
    total = df.loc["voice-to-voice"]
    assert total.measured_s == turn.voice_to_voice_s and total.model_low_s <= total.model_s <= total.model_high_s
    assert total.model_s == pytest.approx(df.drop(index="voice-to-voice").model_s.sum())
