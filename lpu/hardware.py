"""Hardware specifications: the LPU v1 chip, its node and rack, and the GPUs we compare with.

Every figure lives here once, with its source. Where sources disagree (clock,
SRAM bandwidth, power, C2C bandwidth) the spec stores the nominal value in its
field and the low/nominal/high `Range` in ``ranges``; ``spec.corner("low")``
returns the spec with every ranged field at its low end. Introduced in
``notebooks/01_architecture.ipynb``.

Sources (abbreviated in the records below):

- ISCA 2020: Abts et al., "Think Fast: A Tensor Streaming Processor (TSP) for
  Accelerating Deep Learning Workloads", ISCA 2020.
- ISCA 2022: Abts et al., "A Software-defined Tensor Streaming Multiprocessor
  for Large-scale Machine Learning", ISCA 2022.
- ALCF: Argonne ALCF GroqRack user guide (argonne-lcf/user-guides,
  ai-testbed/groq/system-overview).
- Hot Chips 34: Abts, "The Groq Software-defined Scale-out Tensor Streaming
  Multiprocessor", Hot Chips 34, 2022.
- SHIP: Bitar et al., MLSys 2026 (production LLM serving on LPUs), via summary.
- Linley: Linley Microprocessor Report, Jan 2020; Linley Newsletter, Nov 2020.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

MiB = 2**20
GiB = 2**30
GB = 1e9
TB = 1e12


@dataclass(frozen=True)
class Range:
    """Where sources disagree: the low, nominal (default) and high values, with their sources."""

    low: float
    nominal: float
    high: float
    source: str

    def __post_init__(self):
        if not self.low <= self.nominal <= self.high:
            raise ValueError(f"Range must satisfy low <= nominal <= high, got {self.low}, {self.nominal}, {self.high}")

    def at(self, corner: str) -> float:
        if corner not in ("low", "nominal", "high"):
            raise ValueError(f"corner must be 'low', 'nominal' or 'high', got {corner!r}")
        return getattr(self, corner)


class _Sourced:
    """Mixin: per-field sources and ranges, and corners of the ranges."""

    def source_of(self, field: str) -> str:
        """The source of ``field`` (falls back to the record's own ``source``)."""
        if field in dict(self.ranges):
            return dict(self.ranges)[field].source
        return dict(self.sources).get(field, self.source)

    def range(self, field: str) -> Range:
        """The low/nominal/high `Range` of ``field`` (a single-source field gives a degenerate range)."""
        ranges = dict(self.ranges)
        if field in ranges:
            return ranges[field]
        value = getattr(self, field)
        return Range(value, value, value, self.source_of(field))

    def corner(self, corner: str):
        """This spec with every ranged field at its ``corner`` ("low", "nominal", "high")."""
        return dataclasses.replace(self, **{f: r.at(corner) for f, r in self.ranges})


def _pairs(**kw) -> tuple:
    return tuple(kw.items())


@dataclass(frozen=True)
class ChipSpec(_Sourced):
    """One LPU (TSP) chip: functional-slice layout, SRAM, compute, chip-to-chip links, card."""

    name: str
    # ---- silicon
    process: str
    die_mm: tuple[float, float]  # (width, height)
    clock_hz: float
    # ---- lanes and the functional-slice floorplan (per hemisphere, mirrored east/west)
    superlanes: int
    lanes_per_superlane: int
    mem_slices: int  # MEM slices on the whole chip
    mem_words_per_slice: int  # addresses per MEM slice
    word_bytes: int  # one address holds one 320-byte vector
    streams: int  # east + west streams carrying vectors between slices
    mxm_planes: int  # 320 x 320 matrix planes on the chip
    mxm_dim: int
    vxm_alus_per_lane: int
    queues_per_hemisphere: tuple[tuple[str, int], ...]  # instruction queues: (unit, count)
    # ---- performance
    peak_int8_ops_per_s: float  # published, at `peak_clock_hz`
    peak_fp16_flops_per_s: float
    peak_clock_hz: float
    sram_bandwidth_Bps: float  # published aggregate SRAM bandwidth (upper bound on streaming)
    # ---- chip-to-chip
    c2c_links: int
    c2c_lanes_per_link: int
    c2c_lane_bps: float  # bits/s per lane
    c2c_bandwidth_Bps: float  # per chip per direction
    c2c_hop_latency_s: float
    # ---- card
    power_w: float
    card_price_usd: float
    card: str
    source: str
    sources: tuple = ()
    ranges: tuple = ()
    host_link_Bps: float = 0.0  # the card's link to its host, one direction

    # ---- derived (never retyped) ----------------------------------------------
    @property
    def lanes(self) -> int:
        """Vector length: 320 on LPU v1."""
        return self.superlanes * self.lanes_per_superlane

    @property
    def sram_bytes(self) -> int:
        """On-chip SRAM: slices x addresses x word bytes."""
        return self.mem_slices * self.mem_words_per_slice * self.word_bytes

    @property
    def slice_bytes(self) -> int:
        return self.mem_words_per_slice * self.word_bytes

    @property
    def vxm_alus(self) -> int:
        return self.lanes * self.vxm_alus_per_lane

    @property
    def mxm_macs_per_cycle(self) -> int:
        return self.mxm_planes * self.mxm_dim * self.mxm_dim

    @property
    def n_queues(self) -> int:
        return 2 * sum(n for _, n in self.queues_per_hemisphere)

    @property
    def stream_bandwidth_Bps(self) -> float:
        """Bytes/s all streams move: one word per stream per cycle, capped by the published SRAM bandwidth."""
        return min(self.streams * self.word_bytes * self.clock_hz, self.sram_bandwidth_Bps)

    def peak_ops_per_s(self, dtype: str = "int8") -> float:
        """MXM peak at this spec's clock: int8/fp8 ops/s, or fp16/bf16 FLOP/s."""
        scale = self.clock_hz / self.peak_clock_hz
        if dtype in ("int8", "fp8", "int4"):
            return self.peak_int8_ops_per_s * scale
        if dtype in ("fp16", "bf16", "fp32"):
            return self.peak_fp16_flops_per_s * scale
        raise ValueError(f"unknown dtype {dtype!r}; known: int8, fp8, int4, fp16, bf16, fp32")

    @property
    def c2c_link_bandwidth_Bps(self) -> float:
        """Raw bandwidth of one C2C link, one direction: lanes x lane rate."""
        return self.c2c_lanes_per_link * self.c2c_lane_bps / 8


@dataclass(frozen=True)
class NodeSpec(_Sourced):
    """A server of chips wired directly to each other."""

    name: str
    chips: int
    topology: str
    host: str
    host_dram_bytes: float
    source: str
    sources: tuple = ()
    ranges: tuple = ()


@dataclass(frozen=True)
class RackSpec(_Sourced):
    """A rack of nodes, and the scale-out network between racks."""

    name: str
    node: NodeSpec
    nodes: int
    spare_nodes: int  # held back in normal operation; used for the 576-chip Llama 2 70B system
    network: str
    max_chips: int
    end_to_end_latency_s: float  # across the largest system
    source: str
    sources: tuple = ()
    ranges: tuple = ()

    @property
    def chips(self) -> int:
        return self.nodes * self.node.chips

    @property
    def compute_chips(self) -> int:
        return (self.nodes - self.spare_nodes) * self.node.chips


@dataclass(frozen=True)
class GPUSpec(_Sourced):
    """One data-centre GPU (SXM form factor)."""

    name: str
    memory: str
    memory_bytes: float
    hbm_bandwidth_Bps: float
    bf16_flops_per_s: float  # dense
    fp8_flops_per_s: float | None  # dense; None where the GPU has no FP8 tensor cores
    int8_ops_per_s: float
    nvlink_bandwidth_Bps: float  # per GPU, both directions added (NVIDIA's headline figure)
    power_w: float
    price_usd: float | None
    source: str
    sources: tuple = ()
    ranges: tuple = ()
    host_link_Bps: float = 0.0  # the GPU's link to its host, one direction
    bf16_matmul_flops_per_s: float = 0.0  # measured best-shape bf16 GEMM throughput (MAMF); lpu.gpu's GEMM rate

    @property
    def nvlink_one_way_Bps(self) -> float:
        """NVLink bandwidth in one direction: what an all-reduce's sends (or receives) can use.

        NVIDIA's totals count both directions: A100 12 NVLink-3 links x 25 GB/s each way = 300 GB/s
        (600 GB/s "total"); H100/H200 18 NVLink-4 links x 25 GB/s each way = 450 GB/s (900 GB/s).
        """
        return self.nvlink_bandwidth_Bps / 2

    @property
    def bf16_matmul_efficiency(self) -> float:
        """Measured best-shape bf16 GEMM throughput as a share of the bf16 peak."""
        return self.bf16_matmul_flops_per_s / self.bf16_flops_per_s

    def peak_ops_per_s(self, dtype: str = "bf16") -> float:
        if dtype in ("fp16", "bf16"):
            return self.bf16_flops_per_s
        if dtype == "fp8":
            if self.fp8_flops_per_s is None:
                raise ValueError(f"{self.name} has no FP8 tensor cores; use bf16 or int8")
            return self.fp8_flops_per_s
        if dtype in ("int8", "int4"):
            return self.int8_ops_per_s
        raise ValueError(f"unknown dtype {dtype!r}; known: bf16, fp16, fp8, int8, int4")


# PCI Express x16 links, one direction: transfer rate x 16 lanes x 128b/130b encoding (PCI-SIG base specifications 4.0 and 5.0).
PCIE4_X16_Bps = 16e9 * 16 * 128 / 130 / 8  # 31.5 GB/s
PCIE5_X16_Bps = 32e9 * 16 * 128 / 130 / 8  # 63.0 GB/s

_ISCA20 = "ISCA 2020 (Abts et al., TSP)"
LPU_V1 = ChipSpec(
    name="lpu-v1",
    process="GlobalFoundries 14 nm",
    die_mm=(25.0, 29.0),
    clock_hz=900e6,
    superlanes=20,
    lanes_per_superlane=16,
    mem_slices=88,
    mem_words_per_slice=8192,
    word_bytes=320,
    streams=64,
    mxm_planes=4,
    mxm_dim=320,
    vxm_alus_per_lane=16,
    queues_per_hemisphere=(("MXM", 6), ("SXM", 14), ("MEM", 44), ("VXM", 8)),
    peak_int8_ops_per_s=750e12,
    peak_fp16_flops_per_s=188e12,
    peak_clock_hz=900e6,
    sram_bandwidth_Bps=55 * TB,
    c2c_links=16,
    c2c_lanes_per_link=4,
    c2c_lane_bps=30e9,
    c2c_bandwidth_Bps=240 * GB,
    c2c_hop_latency_s=300e-9,
    power_w=300.0,
    card_price_usd=20_000.0,
    card="GroqCard: PCIe Gen4 x16, one chip per card",
    host_link_Bps=PCIE4_X16_Bps,
    source=_ISCA20,
    sources=_pairs(
        process=f"{_ISCA20}, abstract; SemiAnalysis 'Groq Inference Tokenomics', Feb 2024",
        die_mm=f"{_ISCA20}, abstract (25 x 29 mm)",
        superlanes="Linley MPR Jan 2020 (20 superlanes x 16 lanes; instructions ripple one superlane per cycle)",
        lanes_per_superlane="Linley MPR Jan 2020",
        mem_slices="ISCA 2022 abstract / ALCF: 220 MiB per chip; 88 MEM slices of 2.5 MiB (derived)",
        mem_words_per_slice="derived: 2.5 MiB per slice / 320-byte words = 8,192 addresses",
        word_bytes="ISCA 2020: 320-byte vectors (one byte per lane)",
        streams="SHIP Table 2: 64 streams x 320 B x 0.9 GHz usable in production (32 east + 32 west)",
        mxm_planes="TechPowerUp Feb 2024; Linley MPR Jan 2020 ('>400,000 integer MACs per cycle'); 4 planes not confirmed",
        mxm_dim="TechPowerUp Feb 2024: 320 x 320 fused dot-product arrays",
        vxm_alus_per_lane="TechPowerUp Feb 2024; TechSpot Jan 2020: 5,120 ALUs = 16 per lane x 320 lanes",
        queues_per_hemisphere="TechSpot Jan 2020 (6 MXM, 14 SXM, 44 MEM per hemisphere, 16 VXM); 144 queues: ISCA 2020",
        peak_int8_ops_per_s="ALCF GroqRack user guide: 750 TOPS INT8 at 900 MHz",
        peak_fp16_flops_per_s="ALCF GroqRack user guide: 188 TFLOPS FP16 at 900 MHz",
        peak_clock_hz="ALCF GroqRack user guide (peak figures quoted at 900 MHz)",
        c2c_links="Linley Newsletter Nov 2020: 16 links x 4 lanes x 30 Gb/s",
        c2c_lanes_per_link="Linley Newsletter Nov 2020",
        c2c_lane_bps="Linley Newsletter Nov 2020",
        c2c_hop_latency_s="SHIP §4.1: ~300 ns per synchronous, software-scheduled hop",
        card_price_usd="isopack blog, Feb 2024 (~$20,000, quantity 1)",
        card="ALCF GroqRack user guide",
        host_link_Bps="PCIe Gen4 x16 (ALCF GroqRack user guide): 16 GT/s x 16 lanes, 128b/130b encoding (PCI-SIG PCIe 4.0)",
    ),
    ranges=_pairs(
        clock_hz=Range(900e6, 900e6, 1250e6, f"{_ISCA20} abstract: 900 MHz nominal; TechSpot Jan 2020: 1.25 GHz maximum in early marketing"),
        sram_bandwidth_Bps=Range(18.4 * TB, 55 * TB, 80 * TB,
                                 "SHIP Table 2: 18.4 TB/s usable streaming (derived: 64 x 320 B x 0.9 GHz); "
                                 "Hot Chips 34 slide 22: 55 TB/s; TechPowerUp / Hot Chips 34 marketing: 80 TB/s"),
        power_w=Range(215.0, 300.0, 388.0, "01.me Feb 2024: 215 W spec; TechSpot: 300 W; SHIP §7.1: 388 W provisioned per LPU at system level"),
        c2c_bandwidth_Bps=Range(235 * GB, 240 * GB, 240 * GB,
                                "SHIP §7.1: 235 GB/s per chip over 11 logical ports in LLM production; "
                                "Linley Nov 2020 / Hot Chips 34: 240 GB/s per direction (480 GB/s both ways)"),
    ),
)

# ---- what-if LPU generations ---------------------------------------------------------------------------------------
# Not products: chips one could build, for notebooks/07_design_space.ipynb. Each is v1 with some fields changed; every
# field's source says which: "WHAT-IF: ..." (the new value's source, or the assumption behind it) or "as lpu-v1: ...".
# Press figures for NVIDIA's Groq 3 LPU (GTC keynote, 16 Mar 2026) are secondary reports of a keynote, not a datasheet.
_WHATIF = "WHAT-IF, not a product"


def _what_if(name: str, summary: str, ranges: dict | None = None, **changes: tuple) -> ChipSpec:
    """v1 with ``changes`` (field=(value, source)); the other fields and their sources (and ranges) are v1's, labelled so."""
    ranges = ranges or {}
    kept = [f.name for f in dataclasses.fields(ChipSpec) if f.name not in ("name", "source", "sources", "ranges", *changes)]
    sources = {f: f"as lpu-v1: {LPU_V1.source_of(f)}" for f in kept}
    sources.update({f: f"WHAT-IF: {src}" for f, (_, src) in changes.items()})
    v1_ranges = {f: r for f, r in LPU_V1.ranges if f not in changes}
    v1_ranges = {f: Range(r.low, r.nominal, r.high, f"as lpu-v1: {r.source}") for f, r in v1_ranges.items()}
    return dataclasses.replace(LPU_V1, name=name, source=f"{_WHATIF}: {summary}", sources=tuple(sources.items()),
                               ranges=tuple({**v1_ranges, **ranges}.items()), **{f: v for f, (v, _) in changes.items()})


_GTC26 = ("GTC 2026 keynote (16 Mar 2026) as reported by the press (e.g. voice.lapaas.com 'NVIDIA debut Groq 3 LPU chip', "
          "17 Mar 2026; Gate News, 17 Mar 2026)")
_LPX_CHIPS = 256  # Groq 3 LPX rack: 256 LPUs in 32 trays of 8 (GTC 2026 reports)
_LPX_FP8_OPS_PER_S = 315e15  # per LPX rack, FP8 (GTC 2026 reports)
_LPX_SCALE_UP_Bps = 640 * TB  # per LPX rack, chip-to-chip "scale-up bandwidth" (GTC 2026 reports; direction not stated)
_SF4_SRAM_BYTES = 500e6  # per Groq 3 LPU (GTC 2026 reports: "500 MB of on-chip SRAM")
_SF4_WORDS = -(-int(_SF4_SRAM_BYTES) // (LPU_V1.mem_slices * LPU_V1.word_bytes))  # v1's 88 slices, deeper: 17,756 words
_SF4_PEAK = _LPX_FP8_OPS_PER_S / _LPX_CHIPS  # 1.23 POPS a chip
_SF4_CLOCK_HZ = _SF4_PEAK / (2 * LPU_V1.mxm_macs_per_cycle)  # the clock at which v1's MXM gives that peak: 1.50 GHz
_SF4_C2C_Bps = _LPX_SCALE_UP_Bps / _LPX_CHIPS / 2  # per chip per direction, if 640 TB/s counts both directions as NVLink's totals do

LPU_WHATIF_4NM = _what_if(
    "lpu-whatif-4nm",
    "a v1 successor on Samsung's 4 nm with the SRAM, peak, clock and chip-to-chip bandwidth that press reports of NVIDIA's "
    "Groq 3 LPU imply; floorplan, 64 streams, 300 ns hops, power and card price kept from v1 (assumptions)",
    ranges=dict(c2c_bandwidth_Bps=Range(_SF4_C2C_Bps, _SF4_C2C_Bps, 2 * _SF4_C2C_Bps,
                                        f"WHAT-IF: {_GTC26}: 640 TB/s per 256-LPU rack; 1.25 TB/s per direction if that counts both "
                                        "directions (nominal), 2.5 TB/s if it counts one")),
    process=("Samsung SF4X 4 nm", "Groq / Samsung Foundry announcement, 15 Aug 2023 (next-generation LPU on Samsung 4 nm, Taylor, Texas); "
             f"{_GTC26}: Groq 3 LPU on SF4X"),
    mem_words_per_slice=(_SF4_WORDS, f"{_GTC26}: 500 MB of SRAM per LPU; assumption: v1's 88 MEM slices of 320-byte words, each "
                                     f"deeper (500 MB / (88 x 320 B) = {_SF4_WORDS:,} words)"),
    peak_int8_ops_per_s=(_SF4_PEAK, f"derived: {_GTC26}: 315 PFLOPS FP8 per 256-LPU LPX rack = 1.23 POPS per chip"),
    peak_fp16_flops_per_s=(_SF4_PEAK * LPU_V1.peak_fp16_flops_per_s / LPU_V1.peak_int8_ops_per_s,
                           "assumption: v1's fp16/int8 peak ratio (188/750) kept"),
    clock_hz=(_SF4_CLOCK_HZ, "derived assumption: the clock at which v1's 409,600-MAC MXM gives the reported 1.23 POPS (1.50 GHz); "
                             "no clock published"),
    peak_clock_hz=(_SF4_CLOCK_HZ, "as clock_hz"),
    sram_bandwidth_Bps=(150 * TB, f"{_GTC26}: 150 TB/s per LPU (a marketing aggregate like v1's 80 TB/s; the physics streams "
                                  "64 x 320 B a cycle)"),
    c2c_bandwidth_Bps=(_SF4_C2C_Bps, f"derived: {_GTC26}: 640 TB/s scale-up bandwidth per 256-LPU rack = 2.5 TB/s per chip, halved on "
                                     "the assumption that it counts both directions as NVIDIA's NVLink totals do"),
    c2c_lane_bps=(_SF4_C2C_Bps * 8 / (LPU_V1.c2c_links * LPU_V1.c2c_lanes_per_link),
                  "derived: c2c_bandwidth_Bps over v1's 16 links x 4 lanes (assumption: v1's link count)"),
    host_link_Bps=(PCIE5_X16_Bps, "assumption: PCIe Gen5 x16 (PCI-SIG PCIe 5.0), the host link of 2024-26 accelerators"),
    mem_slices=(LPU_V1.mem_slices, "assumption: v1's 88 MEM slices kept, each deeper to hold the reported 500 MB (mem_words_per_slice)"),
    c2c_hop_latency_s=(LPU_V1.c2c_hop_latency_s, "assumption: v1's ~300 ns (SHIP §4.1) kept; faster SerDes need FEC, which adds "
                                                 "latency rather than removing it"),
    card=("one chip per card (assumption)", "assumption: packaged one chip per card as v1; LPX is sold as racks"),
    card_price_usd=(LPU_V1.card_price_usd, "assumption: v1's ~$20,000 card price (isopack blog, Feb 2024) carried over; no Groq 3 "
                                           "price published"),
)

LPU_WHATIF_STACKED = _what_if(
    "lpu-whatif-stacked-sram",
    "v1 with twice its SRAM (a second SRAM layer stacked on the die); every other field is v1's",
    mem_words_per_slice=(2 * LPU_V1.mem_words_per_slice,
                         "assumption: a stacked SRAM die doubling each MEM slice's addresses, as AMD's 3D V-Cache stacks a 64 MB "
                         "SRAM die on a 7 nm CCD (AMD, Ryzen 7 5800X3D, 2022); no such LPU exists"),
    mem_slices=(LPU_V1.mem_slices, "assumption: v1's 88 MEM slices, each twice as deep (mem_words_per_slice)"),
    card_price_usd=(LPU_V1.card_price_usd, "assumption: v1's ~$20,000 card price (isopack blog, Feb 2024), though a stacked die "
                                           "costs more"),
)

LPU_WHATIF_FAST_HOPS = _what_if(
    "lpu-whatif-fast-hops",
    "v1 with chip-to-chip hops a third as long (100 ns); every other field is v1's",
    c2c_hop_latency_s=(LPU_V1.c2c_hop_latency_s / 3,
                       "assumption: a third of v1's ~300 ns (SHIP §4.1), a sensitivity case for the physics' largest part at scale "
                       "(the all-reduces); no source gives an LPU hop this short"),
)
WHAT_IFS = (LPU_WHATIF_4NM, LPU_WHATIF_STACKED, LPU_WHATIF_FAST_HOPS)

GROQ_NODE = NodeSpec(
    name="groqnode",
    chips=8,
    topology="all-to-all (K8) over copper",
    host="2 AMD EPYC",
    host_dram_bytes=1e12,
    source="Linley Newsletter Nov 2020; ALCF GroqRack user guide",
)

GROQ_RACK = RackSpec(
    name="groqrack",
    node=GROQ_NODE,
    nodes=9,
    spare_nodes=1,
    network="software-defined Dragonfly; each chip is its own switch",
    max_chips=10_440,
    end_to_end_latency_s=3e-6,
    source="ALCF GroqRack user guide (9 nodes = 72 chips, 8 compute + 1 spare); ISCA 2022 abstract (Dragonfly, 10,440 chips, < 3 us)",
)

# NVIDIA's "80 GB" and "141 GB" are binary gigabytes (GiB): nvidia-smi reports 81,559 MiB on an H100 80GB and
# 143,771 MiB on an H200 (read on the lent devices during the scripts/measure_gpu.py runs, 2026-11-24).
_A100 = "NVIDIA A100 Tensor Core GPU datasheet"
# Maximum achievable matmul FLOPS (bf16 inputs, best shape of a search): stas00/ml-engineering,
# compute/accelerator/README.md, "Maximum Achievable Matmul FLOPS comparison table" (mamf-finder.py):
# A100 SXM 267.9 TFLOPS (85.9%, CUDA 12.1), H100 SXM 792.1 (80.1%, CUDA 12.1), GH200 821.0 (83.0%, CUDA 12.5).
_MAMF = "stas00/ml-engineering compute/accelerator/README.md, MAMF table (mamf-finder.py, bf16, best shape)"
_NVLINK = ("NVLink totals count both directions: {links} links x 25 GB/s each way = {one} GB/s per direction "
           "({total} GB/s 'total'; {src})")
_HOPPER = "NVIDIA H100 Tensor Core GPU Architecture whitepaper (Hopper)"
A100 = GPUSpec("a100", "80 GB HBM2e", 80 * GiB, 2.039 * TB, 312e12, None, 624e12, 600 * GB, 400.0, None, source=f"{_A100} (SXM 80 GB)",
               host_link_Bps=PCIE4_X16_Bps, bf16_matmul_flops_per_s=267.9e12,
               sources=_pairs(host_link_Bps=f"{_A100}: PCIe Gen4", bf16_matmul_flops_per_s=f"{_MAMF}: A100 SXM 267.9 TFLOPS",
                              nvlink_bandwidth_Bps=_NVLINK.format(links=12, one=300, total=600, src=_A100)))
H100 = GPUSpec("h100", "80 GB HBM3", 80 * GiB, 3.35 * TB, 989e12, 1979e12, 1979e12, 900 * GB, 700.0, 27_500.0, source=f"{_HOPPER} (SXM5)",
               host_link_Bps=PCIE5_X16_Bps, bf16_matmul_flops_per_s=792.1e12,
               sources=_pairs(price_usd="press and reseller prices, 2023-2024: $25-30k", host_link_Bps=f"{_HOPPER}: PCIe Gen5",
                              bf16_matmul_flops_per_s=f"{_MAMF}: H100 SXM 792.1 TFLOPS",
                              nvlink_bandwidth_Bps=_NVLINK.format(links=18, one=450, total=900, src=_HOPPER)),
               ranges=_pairs(price_usd=Range(25_000.0, 27_500.0, 30_000.0, "press and reseller prices, 2023-2024: $25-30k")))
H200 = GPUSpec("h200", "141 GB HBM3e", 141 * GiB, 4.8 * TB, 989e12, 1979e12, 1979e12, 900 * GB, 700.0, 32_000.0,
               source="MLCommons inference v4.1 system description JSON (H200 SXM); NVIDIA H200 product page",
               host_link_Bps=PCIE5_X16_Bps, bf16_matmul_flops_per_s=792.1e12,
               sources=_pairs(price_usd="press estimates, 2024: ~$32k", host_link_Bps="NVIDIA H200 product page: PCIe Gen5",
                              bf16_matmul_flops_per_s=f"{_MAMF}: H100 SXM's 792.1 TFLOPS (the H200 has the same GH100 compute die "
                                                      "and 700 W limit; GH200, the same die at a higher power limit, measured 821.0)",
                              nvlink_bandwidth_Bps=_NVLINK.format(links=18, one=450, total=900, src="NVIDIA H200 product page")))

Spec = Union[ChipSpec, NodeSpec, RackSpec, GPUSpec]
REGISTRY: dict[str, Spec] = {s.name: s for s in (LPU_V1, *WHAT_IFS, GROQ_NODE, GROQ_RACK, A100, H100, H200)}
ALIASES = {"lpu": "lpu-v1", "groqchip": "lpu-v1", "tsp": "lpu-v1", "a100-80gb": "a100", "h100-sxm": "h100", "h200-sxm": "h200"}


def names() -> list[str]:
    """Names of the registered specs."""
    return list(REGISTRY)


def get(name: str | Spec) -> Spec:
    """Return the spec called ``name`` (case-insensitive; a spec passes through).

    Examples
    --------
    >>> get("lpu-v1").sram_bytes
    230686720

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, (ChipSpec, NodeSpec, RackSpec, GPUSpec)):
        return name
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ValueError(f"unknown hardware {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def _fmt_range(spec, field: str, scale: float, unit: str, digits: int = 4) -> str:
    r = spec.range(field)
    v = getattr(spec, field)

    def f(x):
        return f"{x / scale:.{digits}g}"

    return f"{f(v)} {unit}" if r.low == r.high else f"{f(v)} {unit} (range {f(r.low)}-{f(r.high)})"


def key_facts(chip: ChipSpec | str = "lpu-v1") -> list[tuple[str, str, str]]:
    """The chip's headline figures as (quantity, value, source) rows, for the tour and notebook 01."""
    c = get(chip)
    return [
        ("process, die", f"{c.process}, {c.die_mm[0]:g} x {c.die_mm[1]:g} mm", c.source_of("process")),
        ("clock", _fmt_range(c, "clock_hz", 1e6, "MHz"), c.source_of("clock_hz")),
        ("SRAM", f"{c.sram_bytes / 1e6:.1f} MB = {c.mem_slices} slices x {c.mem_words_per_slice:,} words x {c.word_bytes} B", c.source_of("mem_slices")),
        ("SRAM bandwidth", _fmt_range(c, "sram_bandwidth_Bps", TB, "TB/s"), c.source_of("sram_bandwidth_Bps")),
        ("stream bandwidth", f"{c.stream_bandwidth_Bps / TB:.1f} TB/s = {c.streams} streams x {c.word_bytes} B x clock", c.source_of("streams")),
        ("vector lanes", f"{c.lanes} = {c.superlanes} superlanes x {c.lanes_per_superlane}; {c.vxm_alus:,} VXM ALUs", c.source_of("superlanes")),
        ("matrix unit", f"{c.mxm_planes} x {c.mxm_dim}x{c.mxm_dim} = {c.mxm_macs_per_cycle:,} MACs/cycle", c.source_of("mxm_planes")),
        ("peak compute", f"{c.peak_int8_ops_per_s / 1e12:.0f} TOPS int8, {c.peak_fp16_flops_per_s / 1e12:.0f} TFLOPS fp16", c.source_of("peak_int8_ops_per_s")),
        ("chip-to-chip", f"{c.c2c_links} links, " + _fmt_range(c, "c2c_bandwidth_Bps", GB, "GB/s per direction") + f", ~{c.c2c_hop_latency_s * 1e9:.0f} ns/hop",
         c.source_of("c2c_bandwidth_Bps")),
        ("power", _fmt_range(c, "power_w", 1, "W"), c.source_of("power_w")),
        ("card", f"{c.card}, ~${c.card_price_usd:,.0f}", c.source_of("card_price_usd")),
    ]


def memory_comparison(names: tuple[str, ...] = ("lpu-v1", "a100", "h100", "h200")) -> list[dict]:
    """On-chip SRAM against HBM: capacity, bandwidth (low/nominal/high) and bandwidth per byte stored.

    ``reads_per_s`` is bandwidth / capacity: how many times a second the whole
    memory can be read, the quantity that bounds a memory-bound decoder when the
    model fills the memory. Used in ``notebooks/01_architecture.ipynb``.
    """
    rows = []
    for name in names:
        s = get(name)
        if isinstance(s, ChipSpec):
            memory, capacity, field = "on-chip SRAM", s.sram_bytes, "sram_bandwidth_Bps"
        elif isinstance(s, GPUSpec):
            memory, capacity, field = s.memory, s.memory_bytes, "hbm_bandwidth_Bps"
        else:
            raise ValueError(f"{name!r} is not a chip or GPU; known: {', '.join(n for n, v in REGISTRY.items() if isinstance(v, (ChipSpec, GPUSpec)))}")
        r = s.range(field)
        rows.append(dict(device=s.name, memory=memory, capacity_bytes=capacity, bandwidth_low_Bps=r.low, bandwidth_Bps=r.nominal,
                         bandwidth_high_Bps=r.high, reads_per_s=r.nominal / capacity, source=r.source))
    return rows
