"""Benchmark metrics and serving economics: what a simulated `Result` means to a user and to an operator.

Two halves:

- Latency metrics under the definitions public benchmarks use: ArtificialAnalysis'
  output speed and latency, LLMPerf's TTFT / ITL / end-to-end time, and the seed
  article's "total response time for 100 tokens" (TTFT + 100 / output speed).
- Economics: hardware cost, power, racks, energy per token and cost per million
  tokens, with every assumption in an `Economics` record (per-field sources and
  low/nominal/high ranges) and ranges that combine its corners with the
  hardware spec's price and power ranges.

The cost model is deliberately simple and says what it leaves out:
hardware is the accelerators alone (LPU cards or GPUs), amortised straight-line;
energy is the accelerators' power at full load all the time, times the
datacentre's PUE. Servers, hosts, networking, racks, the building, staff and
cost of capital are not counted, so both LPU and GPU costs are lower bounds.

Introduced in ``notebooks/06_benchmarks.ipynb``.

Sources (full citations beside each default below):

- ArtificialAnalysis methodology (output speed, latency); ray-project/llmperf
  README (TTFT, ITL, end-to-end latency).
- Amortisation: Amazon 10-K / Q4 2024 earnings, Feb 2025 (servers 6 -> 5 years,
  citing the pace of AI); Microsoft FY2023 and Alphabet 2023 (6 years).
- Electricity: U.S. EIA, Electric Power Annual 2023 (Oct 2024) and EIA average
  industrial retail price 2023 (Mar 2024).
- PUE: Uptime Institute Global Data Center Survey 2023 (average 1.58); Google
  (fleet PUE 1.10, via CNBC, Apr 2022).
- GPU racks: NVIDIA DGX SuperPOD reference architecture, DGX H100 (RA-11333-001,
  Sep 2023: four DGX H100 per rack); Meta's 24K-GPU H100 clusters (two 8-GPU
  nodes per rack).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import hardware, models
from .hardware import ChipSpec, GPUSpec, Range

SECONDS_PER_YEAR = 365.25 * 24 * 3600
J_PER_KWH = 3.6e6

# ---- latency metrics -------------------------------------------------------------------------------------------


def _positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value!r}")
    return v


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def e2e_latency_s(ttft_s: float, itl_s: float, n_tokens: int) -> float:
    """LLMPerf's end-to-end request latency: TTFT + (N - 1) x ITL.

    ITL is the mean time between consecutive output tokens, TTFT excluded
    (ray-project/llmperf README). Introduced in ``notebooks/06_benchmarks.ipynb``.

    Examples
    --------
    >>> e2e_latency_s(0.2, 0.01, 101)
    1.2
    """
    return _positive("ttft_s", ttft_s, allow_zero=True) + (_count("n_tokens", n_tokens) - 1) * _positive("itl_s", itl_s)


def total_response_time_s(ttft_s: float, output_speed_tok_s: float, n_tokens: int = 100) -> float:
    """Time until ``n_tokens`` output tokens have arrived: TTFT + N / output speed.

    The seed article's "0.8 s total response time for 100 tokens" is consistent
    with this definition (derived, not stated by ArtificialAnalysis). It counts
    one more inter-token gap than LLMPerf's `e2e_latency_s`.
    Introduced in ``notebooks/06_benchmarks.ipynb``.

    Examples
    --------
    >>> round(total_response_time_s(0.3, 250.0), 3)
    0.7
    """
    return _positive("ttft_s", ttft_s, allow_zero=True) + _count("n_tokens", n_tokens) / _positive("output_speed_tok_s", output_speed_tok_s)


def artificial_analysis(result) -> dict[str, float]:
    """ArtificialAnalysis' two headline numbers for a simulated `lpu.system.Result`.

    ``output_speed_tok_s``: tokens per second one user receives while the
    model generates, after the first chunk (1 / ITL). ``latency_s``: time to
    first token after the request is sent. ArtificialAnalysis reports medians
    over repeated requests; a deterministic simulation has one value.
    Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    return dict(output_speed_tok_s=1 / _positive("result.itl_s", result.itl_s), latency_s=_positive("result.ttft_s", result.ttft_s, allow_zero=True))


def llmperf(result) -> dict[str, float]:
    """LLMPerf's metrics for a `Result`: TTFT, ITL and end-to-end latency over its ``output_tokens``.

    Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    return dict(ttft_s=float(result.ttft_s), itl_s=float(result.itl_s), e2e_s=e2e_latency_s(result.ttft_s, result.itl_s, result.output_tokens))


# ---- economics assumptions -------------------------------------------------------------------------------------

AMORTISATION_YEARS = Range(
    3.0, 5.0, 6.0,
    "low 3: the common server schedule before 2020 (Amazon moved 3 -> 4 years in Jan 2020; theCUBE Research, 2025); "
    "nominal 5: Amazon 10-K / Q4 2024 earnings call, Feb 2025 (servers 6 -> 5 years, citing the pace of AI hardware), Meta 5 years (2023); "
    "high 6: Microsoft FY2023 and Alphabet 2023 server useful lives (TechRadar / The Register, Feb 2024)")
UTILISATION = Range(
    0.3, 0.6, 0.9,
    "assumption (no public figure for LLM serving fleets): interactive traffic is diurnal and capacity is sized for the peak; "
    "Barroso & Hoelzle, 'The Case for Energy-Proportional Computing', IEEE Computer, Dec 2007, found servers mostly at 10-50% "
    "utilisation; a dedicated, back-filled LLM endpoint can run higher, 0.9 being near the ceiling for a latency-bound service")
ELECTRICITY_USD_PER_KWH = Range(
    0.0575, 0.0806, 0.1252,
    "U.S. EIA: nominal 8.06 c/kWh, average industrial retail price 2023 (EIA via Statista, Mar 2024); "
    "low 5.75 c/kWh, New Mexico industrial 2023 (the lowest state; Louisiana 5.88), EIA Electric Power Annual 2023, Oct 2024; "
    "high 12.52 c/kWh, U.S. commercial average, EIA Electric Power Monthly, Mar 2023 (shrinkthatfootprint.com, 2023)")
PUE = Range(
    1.10, 1.58, 1.89,
    "nominal 1.58: Uptime Institute Global Data Center Survey 2023 industry average (Uptime Intelligence Update 221, Nov 2023); "
    "low 1.10: Google fleet PUE, Q2 2021 (CNBC, Apr 2022); high 1.89: Uptime survey average in 2011, typical of older, "
    "smaller sites (Data Center Knowledge, Jun 2014)")

# Which end of each assumption is cheap: more years and more utilisation spread the hardware thinner.
_CHEAP_END = dict(amortisation_years="high", utilisation="high", electricity_usd_per_kwh="low", pue="low")
_CORNERS = {"low": "low", "cheap": "low", "nominal": "nominal", "high": "high", "expensive": "high"}
_FLIP = {"low": "high", "nominal": "nominal", "high": "low"}


@dataclass(frozen=True)
class Economics:
    """The operator's side of cost per token: amortisation, utilisation, electricity price, PUE.

    Every field has a source and a low/nominal/high `Range` in ``ranges``; a
    value set by hand (different from its range's nominal) is held fixed at
    every corner. ``corner("low")`` is the cheapest end of every assumption
    (longest amortisation, highest utilisation, cheapest power, best PUE),
    ``corner("high")`` the most expensive. Introduced in ``notebooks/06_benchmarks.ipynb``.

    Parameters
    ----------
    amortisation_years : float
        Straight-line life of the accelerators.
    utilisation : float
        Share of the time the system serves at its modelled throughput, in (0, 1].
    electricity_usd_per_kwh : float
    pue : float
        Datacentre power usage effectiveness (total facility power / IT power), >= 1.

    Examples
    --------
    >>> Economics().corner("low").amortisation_years, Economics().corner("high").pue
    (6.0, 1.89)
    """

    amortisation_years: float = AMORTISATION_YEARS.nominal
    utilisation: float = UTILISATION.nominal
    electricity_usd_per_kwh: float = ELECTRICITY_USD_PER_KWH.nominal
    pue: float = PUE.nominal
    source: str = "lpu.metrics defaults: sources per field in `ranges`"
    ranges: tuple = dataclasses.field(default=(("amortisation_years", AMORTISATION_YEARS), ("utilisation", UTILISATION),
                                   ("electricity_usd_per_kwh", ELECTRICITY_USD_PER_KWH), ("pue", PUE)), repr=False)

    def __post_init__(self):
        _positive("amortisation_years", self.amortisation_years)
        if not 0 < _positive("utilisation", self.utilisation) <= 1:
            raise ValueError(f"utilisation must be in (0, 1], got {self.utilisation!r}")
        _positive("electricity_usd_per_kwh", self.electricity_usd_per_kwh, allow_zero=True)
        if not _positive("pue", self.pue) >= 1:
            raise ValueError(f"pue is total facility power / IT power and must be >= 1, got {self.pue!r}")

    def range(self, field: str) -> Range:
        """The `Range` of ``field``; degenerate at the set value where it was set by hand."""
        ranges = dict(self.ranges)
        if field not in ranges:
            raise ValueError(f"unknown economics field {field!r}; known: {', '.join(ranges)}")
        r, v = ranges[field], getattr(self, field)
        return r if v == r.nominal else Range(v, v, v, f"set by hand ({field}={v:g})")

    def source_of(self, field: str) -> str:
        return self.range(field).source

    def corner(self, which: str) -> Economics:
        """These economics at their ``which`` cost end: "low"/"cheap", "nominal", "high"/"expensive"."""
        if which not in _CORNERS:
            raise ValueError(f"corner must be one of {', '.join(_CORNERS)}, got {which!r}")
        c = _CORNERS[which]
        return dataclasses.replace(self, **{f: self.range(f).at(c if _CHEAP_END[f] == "low" else _FLIP[c]) for f, _ in self.ranges})


# ---- hardware: cost, power, racks ------------------------------------------------------------------------------

GPUS_PER_SERVER = 8  # NVIDIA HGX / DGX H100 and H200: 8 SXM GPUs per baseboard (NVIDIA DGX H100 datasheet)
GPU_SERVERS_PER_RACK = Range(
    2, 4, 4,
    "nominal 4: NVIDIA DGX SuperPOD reference architecture, DGX H100 (RA-11333-001, Sep 2023): four DGX H100 per rack, "
    "about 41 kW at 10.2 kW per system; low 2: Meta's 24,576-GPU H100 clusters, 3,072 Grand Teton nodes in 1,536 racks, "
    "power-limited air-cooled racks (Meta Engineering, Mar/Aug 2024; G. Lockwood's summary)")


def _spec(system_spec) -> ChipSpec | GPUSpec:
    s = hardware.get(system_spec)
    if not isinstance(s, (ChipSpec, GPUSpec)):
        chips = ", ".join(n for n, v in hardware.REGISTRY.items() if isinstance(v, (ChipSpec, GPUSpec)))
        raise ValueError(f"system {getattr(s, 'name', system_spec)!r} is not a chip or GPU; give one of: {chips}")
    return s


def _price_field(s: ChipSpec | GPUSpec) -> str:
    return "card_price_usd" if isinstance(s, ChipSpec) else "price_usd"


def hardware_cost_usd(system_spec, chips: int, price_usd: float | None = None) -> float:
    """Purchase price of the accelerators: LPU ``chips`` x card price, or GPUs x GPU price.

    Excludes servers and hosts (a GroqNode's 2 EPYC hosts, a DGX's CPUs and
    NICs), networking, racks and facility, so it is a lower bound on capital
    cost for either system. ``price_usd`` overrides the spec's price per
    chip (needed for GPUs with no price in `lpu.hardware`, e.g. the A100).
    Introduced in ``notebooks/06_benchmarks.ipynb``.

    Examples
    --------
    >>> hardware_cost_usd("lpu-v1", 576)
    11520000.0
    """
    s, n = _spec(system_spec), _count("chips", chips)
    price = getattr(s, _price_field(s)) if price_usd is None else _positive("price_usd", price_usd)
    if price is None:
        raise ValueError(f"{s.name} has no price in lpu.hardware; pass price_usd=")
    return n * float(price)


def power_w(system_spec, chips: int) -> float:
    """Accelerator power: ``chips`` x the spec's power (TDP for GPUs; for the LPU its nominal 300 W,
    range 215-388 W, the high end being SHIP's provisioned power per LPU at system level).

    Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    return _count("chips", chips) * float(_spec(system_spec).power_w)


def racks(system_spec, chips: int, servers_per_rack: int | None = None) -> int:
    """Racks to hold ``chips`` accelerators.

    LPU: ceil(chips / 72), a GroqRack being 9 GroqNodes of 8 cards (the spare
    node included; ALCF). GPU: ceil(GPUs / 8) HGX/DGX servers, then
    ceil(servers / ``servers_per_rack``), by default 4 per rack as in NVIDIA's
    DGX H100 SuperPOD (power-limited racks; 2 in Meta's air-cooled H100
    clusters, see `GPU_SERVERS_PER_RACK`). Introduced in ``notebooks/06_benchmarks.ipynb``.

    Examples
    --------
    >>> racks("lpu-v1", 576), racks("h100", 8), racks("h100", 40)
    (8, 1, 2)
    """
    s, n = _spec(system_spec), _count("chips", chips)
    if isinstance(s, ChipSpec):
        return math.ceil(n / hardware.GROQ_RACK.chips)
    per_rack = int(GPU_SERVERS_PER_RACK.nominal) if servers_per_rack is None else _count("servers_per_rack", servers_per_rack)
    return math.ceil(math.ceil(n / GPUS_PER_SERVER) / per_rack)


# ---- energy and cost per token ---------------------------------------------------------------------------------


def energy_per_token_j(system_spec, chips: int, system_tokens_per_s: float, pue: float | None = None) -> float:
    """Facility energy per output token: power x PUE / system throughput (J/token).

    ``pue`` defaults to the `Economics` nominal (Uptime Institute 2023, 1.58);
    pass 1.0 for the accelerators alone. Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    pue = PUE.nominal if pue is None else pue
    if not _positive("pue", pue) >= 1:
        raise ValueError(f"pue must be >= 1, got {pue!r}")
    return power_w(system_spec, chips) * pue / _positive("system_tokens_per_s", system_tokens_per_s)


def tokens_per_joule(system_spec, chips: int, system_tokens_per_s: float, pue: float | None = None) -> float:
    """Output tokens per joule of facility energy: 1 / `energy_per_token_j`."""
    return 1 / energy_per_token_j(system_spec, chips, system_tokens_per_s, pue)


def cost_breakdown_usd_per_million(system_spec, chips: int, system_tokens_per_s: float, econ: Economics = Economics(),
                                   price_usd: float | None = None) -> dict[str, float]:
    """Cost per million output tokens, split into amortised hardware and energy.

    hardware $/s = `hardware_cost_usd` / (amortisation_years x seconds per year);
    energy $/s = `power_w` x PUE x $/kWh / 3.6e6 J/kWh, charged at full power
    all the time (an upper bound: idle power is lower). Each is divided by the
    tokens served per second on average, ``system_tokens_per_s`` x utilisation.
    """
    if not isinstance(econ, Economics):
        raise ValueError(f"econ must be an lpu.metrics.Economics, got {type(econ).__name__}")
    served = _positive("system_tokens_per_s", system_tokens_per_s) * econ.utilisation
    hw = hardware_cost_usd(system_spec, chips, price_usd) / (econ.amortisation_years * SECONDS_PER_YEAR)
    energy = power_w(system_spec, chips) * econ.pue * econ.electricity_usd_per_kwh / J_PER_KWH
    out = dict(hardware_usd=hw / served * 1e6, energy_usd=energy / served * 1e6)
    out["total_usd"] = out["hardware_usd"] + out["energy_usd"]
    return out


def cost_per_million_tokens_usd(system_spec, chips: int, system_tokens_per_s: float, econ: Economics = Economics(),
                                price_usd: float | None = None) -> float:
    """Operator's cost per million output tokens (USD): (amortised hardware + energy) per second / tokens per second served.

    Accelerators only (see the module docstring for what is left out).
    Introduced in ``notebooks/06_benchmarks.ipynb``.

    Examples
    --------
    >>> round(cost_per_million_tokens_usd("lpu-v1", 576, 241.0), 1)
    547.2
    """
    return cost_breakdown_usd_per_million(system_spec, chips, system_tokens_per_s, econ, price_usd)["total_usd"]


def cost_per_million_tokens_from(result, econ: Economics = Economics()) -> float:
    """`cost_per_million_tokens_usd` for a simulated `Result` (its system, chips and system throughput)."""
    return cost_per_million_tokens_usd(result.system, result.chips, result.system_tokens_per_s, econ)


def cost_per_million_tokens_range_usd(system_spec, chips: int, system_tokens_per_s: float,
                                      econ: Economics = Economics()) -> tuple[float, float, float]:
    """(low, nominal, high) cost per million tokens over the `Economics` corners and the spec's price and power ranges.

    The low end takes the cheapest end of everything at once (longest
    amortisation, highest utilisation, cheapest electricity, best PUE, lowest
    price and power), the high end the dearest: a bound, not a likely value.
    Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    s = _spec(system_spec)
    price = _price_field(s)
    if getattr(s, price) is None:
        raise ValueError(f"{s.name} has no price in lpu.hardware; use cost_per_million_tokens_usd(..., price_usd=)")
    out = []
    for c in ("low", "nominal", "high"):
        spec_c = dataclasses.replace(s, **{price: s.range(price).at(c), "power_w": s.range("power_w").at(c)})
        out.append(cost_per_million_tokens_usd(spec_c, chips, system_tokens_per_s, econ.corner(c)))
    return tuple(out)


def cost_per_million_tokens_range_from(result, econ: Economics = Economics()) -> tuple[float, float, float]:
    """`cost_per_million_tokens_range_usd` for a simulated `Result`, its throughput range included (the fitted
    system term's and the hardware's: the low end at the highest throughput, the high end at the lowest)."""
    itl_lo, itl_hi = result.ranges.get("itl_s", (result.itl_s, result.itl_s))
    return cost_per_million_tokens_range_at(result.system, result.chips, result.users, result.system_tokens_per_s, itl_lo, itl_hi, econ)


def cost_per_million_tokens_range_at(system, chips: int, users: int, system_tokens_per_s: float, itl_s_low: float, itl_s_high: float,
                                     econ: Economics = Economics()) -> tuple[float, float, float]:
    """`cost_per_million_tokens_range_from` for a result's numbers (a row of `lpu.sweep`): the low end at ``users /
    itl_s_low`` tokens/s and the cheapest economics, the nominal at ``system_tokens_per_s``, the high end at ``users /
    itl_s_high`` and the dearest."""
    cheap = cost_per_million_tokens_range_usd(system, chips, users / itl_s_low, econ)[0]
    nominal = cost_per_million_tokens_range_usd(system, chips, system_tokens_per_s, econ)[1]
    dear = cost_per_million_tokens_range_usd(system, chips, users / itl_s_high, econ)[2]
    return cheap, nominal, dear


# ---- many models: switching and adapters ------------------------------------------------


def model_switch_s(result) -> float:
    """Seconds to load a served model's weights from host memory onto its devices, every host link in parallel.

    The fullest device's weights over its host link (``host_link_Bps``: PCIe
    Gen4 x16 for a GroqCard, Gen5 x16 for an H100/H200); compiling the program
    or engine for a new model is not included. Introduced in ``notebooks/06_benchmarks.ipynb``.
    """
    from . import shard

    spec = _spec(result.system)
    m = models.get(result.model)
    if result.plan is not None:
        per_device = max(s["weights"] for s in shard.chip_bytes(result.plan, 1, 0))
    else:
        per_device = m.weight_bytes(result.precision) / result.chips
    return per_device / spec.host_link_Bps


def lora_adapter_bytes(model, rank: int = 16, precision: str = "fp16") -> int:
    """Bytes of one LoRA adapter of ``rank`` on every attention and FFN matrix (A: rank x d_in, B: d_out x rank)."""
    m = models.get(model)
    r = _count("rank", rank)
    dims = [(m.dim, m.q_dim), (m.dim, m.kv_dim), (m.dim, m.kv_dim), (m.q_dim, m.dim)] + [(m.dim, m.hidden_dim), (m.hidden_dim, m.dim), (m.dim, m.hidden_dim)]
    per_layer = sum(r * (d_in + d_out) for d_in, d_out in dims)
    return int(m.n_layers * per_layer * models.DTYPE_BYTES[models.get_precision(precision).activations])
