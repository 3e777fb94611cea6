"""Model ids of ``lpu serve``: which simulated system serves a model, and how fast it releases tokens.

An id reads ``MODEL@SYSTEM[xCHIPS][-PRECISION][-api]``: a model of `lpu.models`
served by ``lpu-v1`` (an LPU system; without ``xCHIPS``, the chip count of
Groq's published early-2024 system, `lpu.published.lpu_system_chips`), by a
GPU server (``a100``, ``h100``, ``h200``; without ``xCHIPS``, the fewest GPUs
that fit) or by ``hosted-api``, the hosted GPU API of early 2024 (published
ranges, `lpu.voice.HOSTED_API`, not simulated). ``-api``: that system as its
API's clients see it (`lpu.result.Result.hosted`: the first token later by the
hosted-API term fitted on Groq's API), like for like with ``hosted-api``. `pacing` asks `lpu.simulate`
when each token would leave that system: the time to first token for the
prompt, then one inter-token latency per token, with the streams in flight
on that id as ``users``. Introduced with the race page (README, "Serve").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import hardware, models

HOSTED = "hosted-api"
# The ids /v1/models lists (any other id that parses and fits is served too).
KNOWN_IDS = ("llama2-70b@lpu-v1x576", "llama2-70b@lpu-v1x576-api", "mixtral-8x7b@lpu-v1", "llama2-7b@lpu-v1", "llama2-70b@h100x8-fp8", "llama2-70b@a100x4-fp16",
             "llama3-8b@h100x1", f"llama2-70b@{HOSTED}")
# The request shape /v1/models describes each id with: the prompt and answer of the LPU calibration row.
CATALOGUE_PROMPT_TOKENS, CATALOGUE_OUTPUT_TOKENS = 550, 150
MIN_BUCKET = 16  # token counts are rounded up to powers of two (from 16) so that schedules can be cached


def _systems() -> list[str]:
    """Systems an id may name, longest first (so that ``lpu-v1`` is not read as ``lpu`` plus a precision)."""
    names = [n for n in hardware.names() if isinstance(hardware.get(n), (hardware.ChipSpec, hardware.GPUSpec))] + [HOSTED]
    return sorted(names, key=len, reverse=True)


@dataclass(frozen=True)
class ModelId:
    """A parsed model id: `lpu.models` name, system, chips (None: the default) and precision (None: the highest that fits)."""

    id: str
    model: str
    system: str
    chips: int | None = None
    precision: str | None = None
    hosted: bool = False  # "-api": as the system's API clients see it

    @property
    def lpu(self) -> bool:
        return isinstance(hardware.get(self.system), hardware.ChipSpec) if self.system != HOSTED else False

    @classmethod
    def parse(cls, text: str) -> ModelId:
        """Read ``MODEL@SYSTEM[xCHIPS][-PRECISION]``; ValueError saying what is wrong and what would be right.

        Examples
        --------
        >>> ModelId.parse("llama2-70b@h100x8-fp8")
        ModelId(id='llama2-70b@h100x8-fp8', model='llama2-70b', system='h100', chips=8, precision='fp8', hosted=False)
        """
        form = "MODEL@SYSTEM[xCHIPS][-PRECISION][-api], e.g. llama2-70b@lpu-v1x576 or llama2-70b@h100x8-fp8"
        if not isinstance(text, str) or text.count("@") != 1:
            raise ValueError(f"model id {text!r} is not of the form {form}")
        model, rest = text.split("@")
        if model not in models.names():
            raise ValueError(f"model id {text!r}: unknown model {model!r}; models: {', '.join(models.names())}")
        system = next((s for s in _systems() if rest.startswith(s)), None)
        if system is None:
            raise ValueError(f"model id {text!r}: unknown system in {rest!r}; systems: {', '.join(_systems())} ({form})")
        rest, chips, precision = rest[len(system):], None, None
        hosted = system != HOSTED and rest.endswith("-api")
        rest = rest[:-len("-api")] if hosted else rest
        if rest.startswith("x"):
            digits = rest[1:].split("-", 1)[0]
            if not digits.isdigit() or int(digits) < 1:
                raise ValueError(f"model id {text!r}: chips after 'x' must be a positive integer ({form})")
            chips, rest = int(digits), rest[1 + len(digits):]
        if rest:
            precision = rest[1:] if rest.startswith("-") else rest
            if not rest.startswith("-") or precision not in models.PRECISIONS:
                raise ValueError(f"model id {text!r}: unknown precision {precision!r}; precisions: {', '.join(models.PRECISIONS)}")
        if system == HOSTED and (chips is not None or precision is not None):
            raise ValueError(f"model id {text!r}: {HOSTED} is a published profile; it takes no chips or precision")
        return cls(text, model, system, chips, precision, hosted)


@dataclass(frozen=True)
class Pacing:
    """When a simulated system releases the tokens of one request: token i at ``ttft_s + i * itl_s`` after the start."""

    ttft_s: float
    itl_s: float
    chips: int | None
    precision: str | None
    users: int
    prompt_tokens: int  # the request shape simulated (buckets)
    output_tokens: int
    source: str

    @property
    def output_tokens_per_s(self) -> float:
        return 1 / self.itl_s


def bucket(tokens: int) -> int:
    """``tokens`` rounded up to a power of two, at least `MIN_BUCKET` (the cached request shapes).

    >>> bucket(1), bucket(17), bucket(128)
    (16, 32, 128)
    """
    return max(MIN_BUCKET, 1 << max(int(tokens) - 1, 0).bit_length())


def users_bucket(model_id: ModelId, streams: int) -> int:
    """The users an id's pacing is simulated with for ``streams`` in flight: exact for GPU servers (milliseconds to
    simulate), rounded up to a power of two for LPU systems (a second per user count: a room of 30 people racing
    costs 6 schedules, not 30; the step time of 576 chips grows by ~4% from 1 to 32 users).

    >>> [users_bucket(ModelId.parse("llama2-70b@lpu-v1"), n) for n in (1, 3, 30)], users_bucket(ModelId.parse("llama2-70b@h100x8"), 3)
    ([1, 4, 32], 3)
    """
    return 1 << (streams - 1).bit_length() if model_id.lpu else streams


def pacing(model_id: str, users: int = 1, prompt_tokens: int = CATALOGUE_PROMPT_TOKENS, output_tokens: int = CATALOGUE_OUTPUT_TOKENS) -> Pacing:
    """The simulated pacing of one request to ``model_id`` with ``users`` streams in flight on it (this one included).

    LPU and GPU ids: `lpu.simulate` at these token counts (no hardware-corner
    ranges: only the nominal times pace tokens). ``hosted-api``: the nominal
    TTFT and output speed of `lpu.voice.HOSTED_API`, the same for any load (a
    hosted API's own traffic dwarfs ours). Slow for LPU systems (the static
    schedule of hundreds of chips): `lpu.serve.schedules.Schedules` caches it,
    in a process of its own.
    """
    mid = ModelId.parse(model_id)
    if mid.system == HOSTED:
        from ..voice import HOSTED_API

        return Pacing(HOSTED_API.ttft_s.nominal, HOSTED_API.itl_s.nominal, None, None, users, prompt_tokens, output_tokens,
                      f"lpu.voice.HOSTED_API: {HOSTED_API.ttft_s.source}; {HOSTED_API.itl_s.source}")
    from ..system import simulate

    chips = mid.chips
    if chips is None and mid.lpu:
        from ..published import lpu_system_chips

        chips = lpu_system_chips()
    r = simulate(mid.model, system=mid.system, chips=chips, precision=mid.precision, users=users, prompt_tokens=prompt_tokens,
                 output_tokens=output_tokens, ranges=False, hosted=mid.hosted)
    src = (f"lpu.simulate({mid.model!r}, system={mid.system!r}, chips={chips}, precision={mid.precision!r}, users={users}, "
           f"prompt_tokens={prompt_tokens}, output_tokens={output_tokens}{', hosted=True' if mid.hosted else ''})")
    if not (math.isfinite(r.ttft_s) and math.isfinite(r.itl_s) and r.itl_s > 0):
        raise ValueError(f"{src} gave TTFT {r.ttft_s} s and ITL {r.itl_s} s; expected finite positive times")
    return Pacing(r.ttft_s, r.itl_s, r.chips, r.precision, users, prompt_tokens, output_tokens, src)
