"""What a simulation returns (`Result`) and what the simulator was fitted with (`Fitted`).

Both the LPU path (`lpu.system`) and the GPU baseline (`lpu.gpu`) build a
`Result`, so it lives apart from either (no import cycle between them). Each
system family exposes its fitted parameter as a `Fitted` record; `lpu.fitted()`
lists them. Introduced in ``notebooks/04_sharding.ipynb`` (the LPU's) and
``notebooks/06_benchmarks.ipynb`` (all of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing shard/schedule here would load the LPU model for GPU results
    from . import schedule, shard

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

    def breakdown(self) -> dict[str, float]:
        """Where a decode step's time goes (LPU: its critical path; GPU: the terms of `lpu.gpu`'s model)."""
        return self.decode.breakdown() if self.decode is not None else dict(self.parts)

    def as_dict(self) -> dict:
        plan = self.plan.describe() if self.plan is not None else f"{self.chips} x {self.system} tensor parallel, {self.precision}"
        return dict(model=self.model, system=self.system, chips=self.chips, precision=self.precision, plan=plan,
                    users=self.users, prompt_tokens=self.prompt_tokens, output_tokens=self.output_tokens, ttft_s=self.ttft_s,
                    itl_s=self.itl_s, output_tokens_per_s=self.output_tokens_per_s, system_tokens_per_s=self.system_tokens_per_s,
                    total_time_s=self.total_time_s, breakdown=self.breakdown(),
                    ranges={k: list(v) for k, v in self.ranges.items()})
