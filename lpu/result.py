"""What a simulation returns (`Result`) and what the simulator was fitted with (`Fitted`).

Both the LPU path (`lpu.system`) and the GPU baseline (`lpu.gpu`) build a
`Result`, so it lives apart from either (no import cycle between them). Each
system family exposes its fitted parameter as a `Fitted` record; `lpu.fitted()`
lists them. Introduced in ``notebooks/04_sharding.ipynb`` (the LPU's) and
``notebooks/06_benchmarks.ipynb`` (all of them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing shard/schedule here would load the LPU model for GPU results
    from . import schedule, shard, speculation

FAMILIES = ("LPU system", "GPU server", "hosted API")


@dataclass(frozen=True)
class Fitted:
    """One fitted parameter of the simulator: its value, range and the one calibration row it was fitted on.

    ``low``/``high`` is the parameter's range (from the spread of independent measurements of the
    calibration system, or the fit's own uncertainty), propagated to every range a `Result` reports.
    """

    name: str
    family: str  # one of FAMILIES
    value: float
    unit: str
    low: float
    high: float
    calibration_row: str  # names the row of lpu/data/published.csv the value was fitted on
    source: str  # how it was fitted (script) and where its range comes from

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"Fitted.family must be one of {FAMILIES}, got {self.family!r}")
        if not self.low <= self.value <= self.high:
            raise ValueError(f"Fitted {self.name}: need low <= value <= high, got {self.low}, {self.value}, {self.high}")


# A hosted API's time before the first token beyond the chips' (client network, API gateway, queueing), fitted by
# scripts/calibrate.py --hosted on the ArtificialAnalysis total response time of Groq's API (0.8 s for 100 tokens, the
# measurement behind the LPU calibration row); range from LLMPerf's TTFT quartiles on the same API (Jan 2024).
HOSTED_API_S = Fitted(
    "hosted_api_s", "hosted API", 0.3636, "s per request", 0.1604, 0.3636,
    "lpu-v1 llama2-70b total_time_s = 0.8 s for 100 output tokens (calibration of the hosted term: ArtificialAnalysis, Feb 2024)",
    "scripts/calibrate.py --hosted: 0.8 s - the simulated total on the chips; range: LLMPerf TTFT p25-p75 (0.186-0.241 s) less the "
    "simulated TTFT on the chips, up to the fitted value")
FITTED = (HOSTED_API_S,)


@dataclass
class Result:
    """What a user of the system sees, with the plan and timelines behind it."""

    model: str
    system: str
    chips: int
    precision: str
    users: int
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    itl_s: float
    plan: shard.Plan | None  # None for GPU systems
    decode: schedule.Timeline | None = field(repr=False)
    prefill: schedule.Timeline | None = field(repr=False)
    candidates: list[dict] = field(default_factory=list, repr=False)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # GPU systems: shares of a decode step (lpu.gpu)
    system_itl_s: float = 0.0  # LPU: the system term's part of itl_s (the rest is physics)
    system_ttft_s: float = 0.0  # LPU: the system term's part of ttft_s
    precision_reason: str = ""  # why this precision ("requested", or what was tried and did not fit)
    notes: tuple[str, ...] = ()  # anything else chosen for the user (e.g. lengths scaled to a short context)
    hosted_s: float = 0.0  # added to the first token by `hosted` (a hosted API's network and queueing)
    speculation: speculation.Speculation | None = None  # speculative decoding (lpu.speculation): draft, k, acceptance, costs

    @property
    def output_tokens_per_s(self) -> float:
        """Per user, after the first token (ArtificialAnalysis' output speed)."""
        return 1 / self.itl_s

    @property
    def system_tokens_per_s(self) -> float:
        return self.users / self.itl_s

    @property
    def total_time_s(self) -> float:
        return self.ttft_s + (self.output_tokens - 1) * self.itl_s

    @property
    def precision_dropped(self) -> bool:
        """Whether a higher precision was tried and did not fit (then every table showing the precision flags it)."""
        return self.precision_reason.startswith("dropped")

    @property
    def precision_label(self) -> str:
        """The precision as tables show it: flagged where it was dropped from a higher one."""
        return f"{self.precision} (dropped)" if self.precision_dropped else self.precision

    def breakdown(self) -> dict[str, float]:
        """Shares of a decode step (sum 1). LPU: the physics' critical path (``streaming``, ``mxm``, ``vxm``, ``sxm``,
        ``c2c``, ``latency``) scaled to its part, and ``system``, the fitted system term; GPU: `lpu.gpu`'s terms.
        Speculative: ``draft`` and ``verify <part>`` (`lpu.speculation.Speculation.breakdown`)."""
        if self.speculation is not None:
            return self.speculation.breakdown()
        if self.decode is None:
            return dict(self.parts)
        physics = 1 - self.system_itl_s / self.itl_s
        return {**{k: v * physics for k, v in self.decode.breakdown().items()}, "system": self.system_itl_s / self.itl_s}

    def hosted(self, term: Fitted | None = None) -> Result:
        """This result as a hosted API's client sees it: the first token later by the API's network and queueing.

        ``term`` defaults to `HOSTED_API_S` (fitted on the ArtificialAnalysis measurement of Groq's API, range from
        LLMPerf's); the output speed is unchanged (tokens stream at the system's pace). Ranges carry the term's.
        """
        t = HOSTED_API_S if term is None else term
        if self.hosted_s:
            raise ValueError("this Result is already hosted (hosted_s > 0)")
        out = dataclasses.replace(self, ttft_s=self.ttft_s + t.value, hosted_s=t.value, ranges=dict(self.ranges))
        for key in ("ttft_s", "total_time_s"):
            if key in out.ranges:
                lo, hi = out.ranges[key]
                out.ranges[key] = (lo + t.low, hi + t.high)
        return out

    def as_dict(self) -> dict:
        plan = self.plan.describe() if self.plan is not None else f"{self.chips} x {self.system} tensor parallel, {self.precision}"
        return dict(model=self.model, system=self.system, chips=self.chips, precision=self.precision,
                    precision_reason=self.precision_reason, notes=list(self.notes), hosted_s=self.hosted_s, plan=plan,
                    users=self.users, prompt_tokens=self.prompt_tokens, output_tokens=self.output_tokens, ttft_s=self.ttft_s,
                    itl_s=self.itl_s, output_tokens_per_s=self.output_tokens_per_s, system_tokens_per_s=self.system_tokens_per_s,
                    total_time_s=self.total_time_s, breakdown=self.breakdown(),
                    ranges={k: list(v) for k, v in self.ranges.items()},
                    speculation=None if self.speculation is None else dict(dataclasses.asdict(self.speculation), speedup=self.speculation.speedup))
