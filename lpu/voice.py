"""Real-time voice: the delay from the end of a spoken question to the first spoken answer.

A cascaded voice agent hears the user (VAD, then ASR), asks an LLM, and speaks
the answer (TTS). With t = 0 when the user stops speaking, the first answer
audio starts playing at::

    voice-to-voice = network hop up + VAD silence timer + ASR final transcript
                     [+ web search] [+ hops to a remote LLM] + LLM time to first token
                     + (first-sentence tokens - 1) x inter-token latency
                     + TTS time to first audio + network hop down + playout buffer

Streaming overlap: each sentence goes to TTS as soon as its last token arrives
and plays after the previous one, while the LLM keeps generating. Speech uses
about 3.3 tokens/s, so after the first sentence any LLM faster than that never
stalls the audio; the LLM's speed matters for the first sentence only.

Stage ranges are sourced below; the LLM stage comes from `lpu.simulate` for
any system (LPU or GPU) or from published API figures. `monte_carlo` samples
every stage from a triangular distribution (low, nominal, high) for p50/p90.
Introduced in ``notebooks/05_realtime_voice_latency.ipynb``; the measured
pipeline with real audio is `lpu.speech`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from .hardware import Range

_VOICE_DOCS = "facts.md §7 (Pipecat, LiveKit, Vapi, Retell and Deepgram docs)"
SPEECH_TOKENS_PER_S = 3.3  # facts.md §7: speech is ~3.3 tokens/s (~150 words per minute)
TOKENS_PER_WORD = 4 / 3  # OpenAI Help Center, "What are tokens and how to count them?": 1 token ~ 3/4 of an English word
HUMAN_TURN_GAP_S = Range(0.007, 0.2, 0.469, "Stivers et al., PNAS 2009: ~200 ms typical gap between turns; language means 7 ms (Japanese) to 469 ms (Danish)")
# Voice-to-voice medians that cascaded agents report: predictions' targets, never fitted on.
PUBLISHED_MEDIANS_S = {
    "open LiveKit cascaded agent": Range(1.4, 1.4, 1.4, "Hugging Face blog, 'The Voice Agent Latency Playbook' (Mar 2026): perceived latency "
                                        "P50 1.4 s, P95 3.4 s"),
    "production voice-AI calls, 2025-2026": Range(1.4, 1.55, 1.7, "callsphere.ai, 'WebRTC + AI subsecond latency' (2026): industry median "
                                                  "1.4-1.7 s end to end, p99 3-5 s"),
    "Pipecat, typical round trip": Range(0.5, 0.65, 0.8, "docs.pipecat.ai overview: 'the entire round-trip interaction happens between 500-800ms'"),
}


@dataclass(frozen=True)
class Stages:
    """The non-LLM stages of a turn, each a sourced `Range` (seconds, except the first sentence's tokens).

    Where a source gives only a range, the nominal is its middle.
    """

    silence_timer_s: Range = Range(0.2, 0.5, 0.8, f"{_VOICE_DOCS}: end-of-speech silence 200-800 ms; OpenAI and LiveKit default 0.5 s, Pipecat 0.8 s")
    asr_final_s: Range = Range(0.25, 0.45, 0.65, f"{_VOICE_DOCS}: streaming STT final transcript 250-650 ms (median)")
    tts_first_audio_s: Range = Range(0.075, 0.1375, 0.2, f"{_VOICE_DOCS}: TTS time to first audio 75-200 ms")
    network_hop_s: Range = Range(0.02, 0.05, 0.08, f"{_VOICE_DOCS}: 20-80 ms a hop")
    playout_buffer_s: Range = Range(0.02, 0.06, 0.2, "WebRTC NetEq default target 60 ms, floor 20-40 ms (omr.it.com, 'Jitter buffers and WebRTC playout "
                                    "delay'); SIP stacks 60-200 ms (callsphere.ai, 'Jitter buffer tuning for AI agent latency', 2026)")
    first_sentence_tokens: Range = Range(6, 15, 30, "assumption: voice agents prompt for short spoken sentences (~5-20 words); "
                                         "later sentences have the nominal length")
    search_s: Range = Range(0.166, 0.6, 1.2, "search API p50 latency: Brave 250 ms to SerpAPI 1,200 ms (scavio.dev glossary, 'search API latency budget', "
                            "2026); median of 10 search APIs ~1.2 s, fastest 166 ms (Seltz, Hacker News item 47837377)")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            r = getattr(self, f.name)
            if not isinstance(r, Range) or r.low < 0 or (f.name == "first_sentence_tokens" and r.low < 1):
                raise ValueError(f"stage {f.name} needs a Range with low >= {1 if f.name == 'first_sentence_tokens' else 0}, got {r!r}")

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in dataclasses.fields(Stages)]

    def fixed(self, **values: float) -> Stages:
        """These stages with some set by hand to one value, e.g. ``Stages().fixed(silence_timer_s=0.2)``."""
        unknown = set(values) - set(self.names())
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(self.names())}")
        return dataclasses.replace(self, **{k: Range(v, v, v, f"set by hand ({k}={v:g})") for k, v in values.items()})

    def at(self, corner: str) -> dict[str, float]:
        return {n: getattr(self, n).at(corner) for n in self.names()}


# ---- the LLM stage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMTiming:
    """What a voice agent sees of an LLM: time to first token and inter-token latency (ranges), and network hops to reach it."""

    name: str
    ttft_s: Range
    itl_s: Range
    hops: int = 0  # one-way network hops between the voice server and the LLM, counted both ways (2 = a remote API)
    source: str = ""

    @property
    def output_tokens_per_s(self) -> float:
        return 1 / self.itl_s.nominal

    def fixed(self, ttft_s: float | None = None, output_tokens_per_s: float | None = None) -> LLMTiming:
        """This LLM with its TTFT and/or output speed set by hand (sensitivity sweeps)."""
        ttft = self.ttft_s if ttft_s is None else Range(ttft_s, ttft_s, ttft_s, "set by hand")
        itl = self.itl_s if output_tokens_per_s is None else Range(*(3 * [1 / output_tokens_per_s]), "set by hand")
        return dataclasses.replace(self, ttft_s=ttft, itl_s=itl)


@dataclass(frozen=True)
class LLMProfile:
    """A model served on a system, timed by `lpu.simulate` (chips=None: the published LPU system); ``{chips}`` in the label is filled in."""

    label: str
    model: str
    system: str
    chips: int | None = None
    precision: str | None = None
    users: int = 1
    hops: int = 0


PROFILES = {
    "lpu-llama2-70b": LLMProfile("Groq LPU x{chips}, Llama 2 70B", "llama2-70b", "lpu-v1"),
    "8xh100-llama2-70b": LLMProfile("8xH100, Llama 2 70B fp8", "llama2-70b", "h100", 8, "fp8"),
    "8xh100-llama2-70b-64users": LLMProfile("8xH100, Llama 2 70B fp8, 64 users", "llama2-70b", "h100", 8, "fp8", users=64),
    "h100-llama3-8b": LLMProfile("1xH100, Llama 3 8B", "llama3-8b", "h100", 1),
}
HOSTED_API = LLMTiming(
    "hosted GPU API (published)",
    ttft_s=Range(0.1, 0.55, 1.0, f"{_VOICE_DOCS}: LLM TTFT 100-1000 ms"),
    itl_s=Range(1 / 120, 1 / 40, 1 / 30, "30-120 tok/s from GPU clouds for Llama 2 70B in early 2024 (project brief); nominal 40 tok/s: "
                "ChatGPT-3.5 (seed article, claim 2)"),
    source="published ranges, not simulated; TTFT as voice frameworks measure it at the voice server, so the network to the API is inside it")
KNOWN = (*PROFILES, "hosted-api")


@lru_cache(maxsize=64)
def _simulated(p: LLMProfile, prompt_tokens: int, output_tokens: int) -> LLMTiming:
    from . import published, system

    chips = p.chips if p.chips is not None else published.lpu_system_chips()
    r = system.simulate(p.model, system=p.system, chips=chips, precision=p.precision, users=p.users,
                        prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    src = f"lpu.simulate({p.model!r}, system={p.system!r}, chips={chips}, precision={r.precision!r}, users={p.users}, prompt_tokens={prompt_tokens})"

    def rng(key, nominal):  # simulator ranges: hardware corners and the fitted term's range; keep the nominal inside them
        lo, hi = r.ranges.get(key, (nominal, nominal))
        over = "hardware corners and the fitted system term's range" if p.system.startswith("lpu") else "the GPU model's parameter ranges"
        return Range(min(lo, nominal), nominal, max(hi, nominal), f"{src}; range over {over}")

    return LLMTiming(p.label.format(chips=chips), rng("ttft_s", r.ttft_s), rng("itl_s", r.itl_s), p.hops, src)


def llm_timing(profile: str | LLMProfile | LLMTiming = "lpu-llama2-70b", prompt_tokens: int = 550, output_tokens: int = 150) -> LLMTiming:
    """The LLM stage of a voice turn.

    Parameters
    ----------
    profile : a name in `KNOWN`, an `LLMProfile` (any model on any system, through `lpu.simulate`) or an `LLMTiming` (returned as is).
    prompt_tokens : system prompt and conversation so far (550: the prompt of the calibration anchor).
    output_tokens : answer length used for the mean context while decoding.
    """
    if isinstance(profile, LLMTiming):
        return profile
    if isinstance(profile, str):
        if profile == "hosted-api":
            return HOSTED_API
        if profile not in PROFILES:
            raise ValueError(f"unknown LLM profile {profile!r}; known: {', '.join(KNOWN)} (or pass an lpu.voice.LLMProfile)")
        profile = PROFILES[profile]
    if not isinstance(profile, LLMProfile):
        raise TypeError(f"profile must be a name, an LLMProfile or an LLMTiming, got {type(profile).__name__}")
    return _simulated(profile, int(prompt_tokens), int(output_tokens))


# ---- one turn, vectorised over samples ------------------------------------------------------------------------


def _timeline(x: dict[str, np.ndarray], hops: int, answer_tokens: int, search: bool, sentence_tokens: int) -> dict[str, np.ndarray]:
    """Event times (n,) of a turn from stage values (n,) each; t = 0 when the user stops speaking.

    The first sentence has ``x["first_sentence_tokens"]`` tokens, later ones ``sentence_tokens``; each plays
    after TTS, the hop down and the playout buffer, and not before the previous one has finished.
    """
    net, itl = x["network_hop_s"], x["itl_s"]
    t = {"heard_s": net}  # the last of the user's audio reaches the voice server
    t["vad_s"] = t["heard_s"] + x["silence_timer_s"]
    t["asr_s"] = t["vad_s"] + x["asr_final_s"]
    t["search_s"] = t["asr_s"] + (x["search_s"] if search else 0.0)
    t["llm_request_s"] = t["search_s"] + hops * net  # hops both ways: request out, token stream back
    t["first_token_s"] = t["llm_request_s"] + x["ttft_s"]
    t["last_token_s"] = t["first_token_s"] + (answer_tokens - 1) * itl
    delay = x["tts_first_audio_s"] + net + x["playout_buffer_s"]  # last token of a sentence -> its audio at the listener

    end = np.clip(np.rint(x["first_sentence_tokens"]).astype(np.int64), 1, answer_tokens)
    t["text_1_s"] = t["first_token_s"] + (end - 1) * itl
    t["tts_1_s"] = t["text_1_s"] + x["tts_first_audio_s"]
    t["first_audio_s"] = t["text_1_s"] + delay
    play_end = t["first_audio_s"] + end / SPEECH_TOKENS_PER_S
    stall = np.zeros_like(net)
    while (end < answer_tokens).any():
        active = end < answer_tokens
        nxt = np.minimum(end + sentence_tokens, answer_tokens)
        ready = t["first_token_s"] + (nxt - 1) * itl + delay
        start = np.maximum(ready, play_end)
        stall = stall + np.where(active, start - play_end, 0.0)
        play_end = np.where(active, start + (nxt - end) / SPEECH_TOKENS_PER_S, play_end)
        end = np.where(active, nxt, end)
    t["answer_end_s"] = play_end
    t["stall_s"] = stall
    return t


def _sentence_tokens(stages: Stages) -> int:
    return max(1, int(round(stages.first_sentence_tokens.nominal)))


def _check(answer_tokens: int, n: int = 1):
    if not isinstance(answer_tokens, (int, np.integer)) or answer_tokens < 1:
        raise ValueError(f"answer_tokens must be a positive integer, got {answer_tokens!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (samples) must be a positive integer, got {n!r}")


@dataclass(frozen=True)
class Turn:
    """One turn at fixed stage values: events, the stage table for a waterfall, and the headline numbers."""

    llm: LLMTiming
    events: dict[str, float]
    search: bool

    @property
    def voice_to_voice_s(self) -> float:
        return self.events["first_audio_s"]

    @property
    def stall_s(self) -> float:
        return self.events["stall_s"]

    def stages(self) -> pd.DataFrame:
        """(stage, start_s, end_s, duration_s, kind) in order; the LLM's rest of answer and the playback overlap the critical path."""
        e = self.events
        rows = [("network up", 0.0, e["heard_s"], "network"), ("VAD silence timer", e["heard_s"], e["vad_s"], "VAD"),
                ("ASR final transcript", e["vad_s"], e["asr_s"], "ASR")]
        if self.search:
            rows.append(("web search", e["asr_s"], e["search_s"], "search"))
        if self.llm.hops:
            rows.append(("network to/from LLM", e["search_s"], e["llm_request_s"], "network"))
        rows += [("LLM time to first token", e["llm_request_s"], e["first_token_s"], "LLM"),
                 ("LLM first sentence", e["first_token_s"], e["text_1_s"], "LLM"), ("TTS first audio", e["text_1_s"], e["tts_1_s"], "TTS"),
                 ("network down + playout buffer", e["tts_1_s"], e["first_audio_s"], "network"),
                 ("LLM rest of answer (overlaps)", e["text_1_s"], e["last_token_s"], "LLM"),
                 ("answer playing", e["first_audio_s"], e["answer_end_s"], "playback")]
        df = pd.DataFrame(rows, columns=["stage", "start_s", "end_s", "kind"])
        df.insert(3, "duration_s", df.end_s - df.start_s)
        return df

    def llm_share(self) -> float:
        """Share of the voice-to-voice delay spent in the LLM (TTFT and first sentence)."""
        e = self.events
        return (e["text_1_s"] - e["llm_request_s"]) / self.voice_to_voice_s


def turn(llm: str | LLMProfile | LLMTiming = "lpu-llama2-70b", stages: Stages = Stages(), corner: str = "nominal", answer_tokens: int = 60,
         search: bool = False, prompt_tokens: int = 550) -> Turn:
    """One voice turn with every stage at ``corner`` ("low", "nominal", "high") of its range.

    >>> t = turn("lpu-llama2-70b")
    >>> round(t.voice_to_voice_s, 3), t.stall_s
    (1.331, 0.0)
    """
    _check(answer_tokens)
    timing = llm_timing(llm, prompt_tokens, answer_tokens)
    x = {k: np.array([v], dtype=np.float64) for k, v in stages.at(corner).items()}
    x["ttft_s"], x["itl_s"] = np.array([timing.ttft_s.at(corner)]), np.array([timing.itl_s.at(corner)])
    events = {k: float(v[0]) for k, v in _timeline(x, timing.hops, answer_tokens, search, _sentence_tokens(stages)).items()}
    return Turn(timing, events, search)


# ---- Monte Carlo over the stage ranges ------------------------------------------------------------------------


def _triangular(rng: np.random.Generator, r: Range, n: int) -> np.ndarray:
    if r.low == r.high:
        return np.full(n, float(r.nominal))
    return rng.triangular(r.low, r.nominal, r.high, n)


@dataclass(frozen=True)
class Distribution:
    """Monte Carlo samples of a turn: voice-to-voice delay, stalls in the answer's audio, end of the answer."""

    llm: LLMTiming
    voice_to_voice_s: np.ndarray = field(repr=False)
    stall_s: np.ndarray = field(repr=False)
    answer_end_s: np.ndarray = field(repr=False)

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.voice_to_voice_s, q))

    @property
    def p50_s(self) -> float:
        return self.quantile(0.5)

    @property
    def p90_s(self) -> float:
        return self.quantile(0.9)

    def summary(self) -> dict:
        return dict(llm=self.llm.name, p10_s=self.quantile(0.1), p50_s=self.p50_s, p90_s=self.p90_s,
                    below_human_gap=float(np.mean(self.voice_to_voice_s <= HUMAN_TURN_GAP_S.nominal)),
                    stall_p90_s=float(np.quantile(self.stall_s, 0.9)), answer_end_p50_s=float(np.median(self.answer_end_s)))


def monte_carlo(llm: str | LLMProfile | LLMTiming = "lpu-llama2-70b", stages: Stages = Stages(), n: int = 10_000, seed: int = 0,
                answer_tokens: int = 60, search: bool = False, prompt_tokens: int = 550) -> Distribution:
    """Sample every stage independently (triangular: low, nominal, high) ``n`` times; seeded, so deterministic.

    >>> d = monte_carlo("lpu-llama2-70b", n=2000)
    >>> d.p50_s < d.p90_s
    True
    """
    _check(answer_tokens, n)
    timing = llm_timing(llm, prompt_tokens, answer_tokens)
    rng = np.random.default_rng(seed)
    x = {name: _triangular(rng, getattr(stages, name), n) for name in Stages.names()}
    x["ttft_s"], x["itl_s"] = _triangular(rng, timing.ttft_s, n), _triangular(rng, timing.itl_s, n)
    t = _timeline(x, timing.hops, answer_tokens, search, _sentence_tokens(stages))
    return Distribution(timing, t["first_audio_s"], t["stall_s"], t["answer_end_s"])


def compare(profiles=KNOWN, stages: Stages = Stages(), n: int = 10_000, seed: int = 0, **kwargs) -> pd.DataFrame:
    """p10/p50/p90 voice-to-voice per LLM profile, with the nominal turn's LLM share and the LLM's own figures."""
    rows = []
    for p in profiles:
        d = monte_carlo(p, stages, n, seed, **kwargs)
        t = turn(p, stages, **kwargs)
        rows.append(dict(profile=p if isinstance(p, str) else d.llm.name, **d.summary(), nominal_s=t.voice_to_voice_s, llm_share=t.llm_share(),
                         ttft_s=d.llm.ttft_s.nominal, output_tokens_per_s=d.llm.output_tokens_per_s))
    return pd.DataFrame(rows)


# ---- what dominates -----------------------------------------------------------------------------------------


def _varied(timing: LLMTiming, stages: Stages, parameter: str, value: float) -> tuple[LLMTiming, Stages]:
    """``timing`` and ``stages`` with one parameter set by hand: a stage name, ``ttft_s``, ``itl_s`` or ``output_tokens_per_s``."""
    if parameter == "ttft_s":
        return timing.fixed(ttft_s=value), stages
    if parameter in ("itl_s", "output_tokens_per_s"):
        return timing.fixed(output_tokens_per_s=1 / value if parameter == "itl_s" else value), stages
    if parameter in Stages.names():
        return timing, stages.fixed(**{parameter: value})
    raise ValueError(f"unknown parameter {parameter!r}; known: {', '.join(Stages.names())}, ttft_s, itl_s, output_tokens_per_s")


def sensitivity(llm: str | LLMProfile | LLMTiming = "lpu-llama2-70b", stages: Stages = Stages(), answer_tokens: int = 60,
                search: bool = False, prompt_tokens: int = 550) -> pd.DataFrame:
    """Voice-to-voice delay with one stage at its low and high end, the others nominal (a tornado), largest swing first."""
    timing = llm_timing(llm, prompt_tokens, answer_tokens)
    nominal = turn(timing, stages, answer_tokens=answer_tokens, search=search).voice_to_voice_s
    rows = []
    for name in [n for n in Stages.names() if search or n != "search_s"] + ["ttft_s", "itl_s"]:
        r = getattr(timing if name in ("ttft_s", "itl_s") else stages, name)
        low, high = (turn(*_varied(timing, stages, name, r.at(c)), answer_tokens=answer_tokens, search=search).voice_to_voice_s for c in ("low", "high"))
        rows.append(dict(stage=name, low_s=low, high_s=high, swing_s=abs(high - low), nominal_s=nominal))
    return pd.DataFrame(rows).sort_values("swing_s", ascending=False, ignore_index=True)


def sweep(llm: str | LLMProfile | LLMTiming, parameter: str, values, stages: Stages = Stages(), answer_tokens: int = 60,
          prompt_tokens: int = 550) -> pd.DataFrame:
    """Nominal voice-to-voice delay as one parameter varies: a stage name, ``"ttft_s"``, ``"itl_s"`` or ``"output_tokens_per_s"``."""
    timing = llm_timing(llm, prompt_tokens, answer_tokens)
    rows = []
    for v in values:
        t = turn(*_varied(timing, stages, parameter, v), answer_tokens=answer_tokens)
        rows.append(dict(llm=timing.name, parameter=parameter, value=float(v), voice_to_voice_s=t.voice_to_voice_s, stall_s=t.stall_s))
    return pd.DataFrame(rows)


# ---- the seed's search-augmented answer ---------------------------------------------------------------------

# Seed article (Feb 2024), claim 9: a search-augmented answer of hundreds of words in under a second, search over three quarters of it.
SEED_SEARCH_TOTAL_S = 1.0
SEED_SEARCH_SHARE = 0.75


def search_answer(llm: str | LLMProfile | LLMTiming = "lpu-llama2-70b", words: int = 200, search_s: float | None = None,
                  context_tokens: int = 2048, prompt_tokens: int = 550, stages: Stages = Stages()) -> dict:
    """The seed's search-augmented answer: search, then the LLM reads the results and writes ``words`` words.

    ``search_s`` defaults to the claim's own share (0.75 s of 1 s). Returns when the first and the last
    word of the text arrive (from the end of the search request), the output speed needed to finish within
    the claim's second, how many words the LLM writes in that second, and the voice turn's first audio.
    """
    if not isinstance(words, (int, np.integer)) or words < 1:
        raise ValueError(f"words must be a positive integer, got {words!r}")
    if context_tokens < 0:
        raise ValueError(f"context_tokens (search results read by the LLM) must be >= 0, got {context_tokens!r}")
    search_s = SEED_SEARCH_SHARE * SEED_SEARCH_TOTAL_S if search_s is None else float(search_s)
    tokens = int(np.ceil(words * TOKENS_PER_WORD))
    timing = llm_timing(llm, prompt_tokens + context_tokens, tokens)
    first_s = search_s + timing.ttft_s.nominal
    last_s = first_s + (tokens - 1) * timing.itl_s.nominal
    left_s = SEED_SEARCH_TOTAL_S - first_s
    words_in_budget = (np.floor(left_s / timing.itl_s.nominal) + 1) / TOKENS_PER_WORD if left_s >= 0 else 0.0
    needed = (tokens - 1) / left_s if left_s > 0 else float("inf")
    voice = turn(timing, stages.fixed(search_s=search_s), answer_tokens=tokens, search=True)
    return dict(llm=timing.name, words=words, tokens=tokens, search_s=search_s, text_first_s=first_s, text_last_s=last_s,
                search_share_of_text=search_s / last_s, holds=last_s < SEED_SEARCH_TOTAL_S and search_s / last_s > SEED_SEARCH_SHARE,
                words_within_claim=float(words_in_budget), output_tokens_per_s=timing.output_tokens_per_s, needed_tokens_per_s=needed,
                voice_to_voice_s=voice.voice_to_voice_s)
