"""Figures for the notebooks (matplotlib + seaborn). Each takes data from the package and an optional ``ax``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, Rectangle

from . import hardware, sram

UNIT_COLOURS = {"MXM": "#d95f02", "SXM": "#7570b3", "MEM": "#1b9e77", "VXM": "#e7298a"}


def _ax(ax, size):
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def chip_floorplan(chip: hardware.ChipSpec | str = "lpu-v1", ax=None):
    """The TSP's functional slices west to east, superlanes bottom to top (``notebooks/01_architecture.ipynb``).

    Each hemisphere holds, from the edge to the centre, the MXM, the SXM and its
    half of the MEM slices; the VXM sits in the centre. Vectors flow east and
    west on streams; instructions enter superlane 0 and ripple up one superlane
    per cycle.
    """
    c = hardware.get(chip)
    ax = _ax(ax, (11, 4.8))
    mem_half = c.mem_slices // 2
    # (unit, width in drawing units, label); MEM drawn slice by slice
    west = [("MXM", 6, f"MXM\n{c.mxm_planes // 2} planes\n{c.mxm_dim}x{c.mxm_dim}"), ("SXM", 3, "SXM")]
    layout = west + [("MEM", 1, None)] * mem_half + [("VXM", 6, f"VXM\n{c.vxm_alus_per_lane} ALUs/lane")] + \
        [("MEM", 1, None)] * mem_half + list(reversed(west))
    x = 0.0
    gap = 0.15
    for unit, width, label in layout:
        w = width * 0.6 if unit == "MEM" else width
        for s in range(c.superlanes):
            ax.add_patch(Rectangle((x, s), w - gap, 0.85, color=UNIT_COLOURS[unit], alpha=0.85 if unit != "MEM" else 0.6, lw=0))
        if label:
            ax.text(x + (w - gap) / 2, c.superlanes + 0.6, label, ha="center", va="bottom", fontsize=8)
        x += w
    total = x
    mem_w = mem_half * 0.6
    for centre, name in ((6 + 3 + mem_w / 2, "west MEM"), (total - 9 - mem_w / 2, "east MEM")):
        ax.text(centre, c.superlanes + 0.6, f"{name}\n{mem_half} slices x {c.mem_words_per_slice:,} x {c.word_bytes} B", ha="center", va="bottom", fontsize=8)
    y = -1.2
    ax.add_patch(FancyArrowPatch((total / 2, y), (total - 1, y), arrowstyle="-|>", mutation_scale=12, color="k"))
    ax.add_patch(FancyArrowPatch((total / 2, y), (1, y), arrowstyle="-|>", mutation_scale=12, color="k"))
    ax.text(total / 2, y - 0.9, f"{c.streams} streams (east + west), {c.word_bytes} B each per cycle = "
            f"{c.stream_bandwidth_Bps / 1e12:.1f} TB/s at {c.clock_hz / 1e6:.0f} MHz", ha="center", va="top", fontsize=9)
    ax.add_patch(FancyArrowPatch((-1.5, 0), (-1.5, c.superlanes), arrowstyle="-|>", mutation_scale=12, color="grey"))
    ax.text(-2.2, c.superlanes / 2, f"{c.superlanes} superlanes x {c.lanes_per_superlane} lanes = {c.lanes}-element vectors;\n"
            "an instruction ripples up one superlane per cycle", rotation=90, ha="right", va="center", fontsize=8, color="dimgrey")
    ax.set_xlim(-5, total + 1)
    ax.set_ylim(-3.5, c.superlanes + 4)
    ax.set_axis_off()
    ax.set_title(f"{c.name}: {c.sram_bytes / 1e6:.1f} MB SRAM in {c.mem_slices} MEM slices, {c.n_queues} instruction queues, "
                 f"{c.die_mm[0]:g} x {c.die_mm[1]:g} mm", fontsize=10)
    return ax


def sram_occupancy(memory: sram.SRAM, address_bins: int = 64, ax=None, legend: bool = True):
    """Heatmap of one chip's SRAM: which tensor owns each (slice, address bin)."""
    ax = _ax(ax, (11, 4))
    owner = memory.owner_map(address_bins).T  # (address_bins, slices)
    names = list(memory.allocations)
    palette = sns.color_palette("tab20", max(len(names), 1))
    cmap = plt.matplotlib.colors.ListedColormap(["#f0f0f0"] + [palette[i % len(palette)] for i in range(len(names))])
    ax.grid(False)
    ax.imshow(owner + 1, aspect="auto", origin="lower", cmap=cmap, vmin=0, vmax=len(names), interpolation="nearest")
    ax.set_xlabel("MEM slice (west 0 ... east)")
    ax.set_ylabel(f"address bin ({memory.chip.mem_words_per_slice // address_bins} words each)")
    ax.set_title(f"{memory.name}: {memory.used_bytes / 1e6:.1f} of {memory.capacity_bytes / 1e6:.1f} MB used "
                 f"({memory.used_bytes / memory.capacity_bytes:.0%})", fontsize=10)
    if legend and names:
        handles = [Rectangle((0, 0), 1, 1, color=cmap(i + 1)) for i in range(len(names))] + [Rectangle((0, 0), 1, 1, color=cmap(0))]
        ax.legend(handles, names + ["free"], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return ax


def stream_bandwidth_vs_slices(chip: hardware.ChipSpec | str = "lpu-v1", ax=None):
    """Bandwidth a tensor streams at against the MEM slices it spans, with the published SRAM bandwidth range."""
    c = hardware.get(chip)
    ax = _ax(ax, (6, 3.5))
    n = np.arange(1, c.mem_slices + 1)
    ax.plot(n, [sram.stream_bandwidth_Bps(c, int(k)) / 1e12 for k in n], color=UNIT_COLOURS["MEM"], lw=2, label="streaming model")
    r = c.range("sram_bandwidth_Bps")
    ax.axhspan(r.low / 1e12, r.high / 1e12, color="grey", alpha=0.15, label=f"published SRAM bandwidth {r.low / 1e12:.1f}-{r.high / 1e12:.0f} TB/s")
    ax.axvline(c.streams, color="k", ls=":", lw=1)
    ax.text(c.streams + 1, 2, f"{c.streams} streams", fontsize=8)
    ax.set(xlabel="MEM slices the tensor spans", ylabel="TB/s", title="Spread a tensor over slices to stream it fast")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def chips_vs_context(df: pd.DataFrame, ax=None):
    """Line plot of chips needed against context tokens; ``df`` has columns context_tokens, chips, precision, batch."""
    ax = _ax(ax, (7, 4))
    sns.lineplot(data=df, x="context_tokens", y="chips", hue="precision", style="batch", markers=True, ax=ax)
    ax.set(xlabel="context tokens per user", ylabel="chips needed", xscale="log")
    ax.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    return ax


def bytes_breakdown(needed, ax=None):
    """Horizontal bar: weights, KV cache, activations and reserve of a `ChipsNeeded`, in GB."""
    ax = _ax(ax, (6, 1.8))
    parts = {"weights": needed.weight_bytes, "KV cache": needed.kv_cache_bytes, "activations": needed.activation_bytes, "reserve": needed.reserve_bytes}
    left = 0.0
    for (name, b), colour in zip(parts.items(), sns.color_palette("Set2", 4)):
        ax.barh(0, b / 1e9, left=left, color=colour, label=f"{name} {b / 1e9:.2f} GB")
        left += b / 1e9
    ax.axvline(needed.chips * needed.sram_bytes_per_chip / 1e9, color="k", ls="--", lw=1)
    ax.set(yticks=[], xlabel=f"GB ({needed.chips:,} chips x {needed.sram_bytes_per_chip / 1e6:.1f} MB = dashed line)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6), ncol=4, fontsize=8, frameon=False)
    return ax


KIND_COLOURS = {
    "matmul": "#d95f02", "attention_scores": "#e6ab02", "attention_values": "#a6761d", "router": "#666666",
    "rmsnorm": "#1b9e77", "softmax": "#e7298a", "swiglu": "#66a61e", "residual": "#7570b3", "rope": "#1f78b4",
    "kv_write": "#b2df8a", "embed": "#999999", "sample": "#fb9a99",
}


def gantt(timeline, layers: tuple[int, int] | None = None, ax=None, time_unit: str = "us"):
    """Gantt chart of a `lpu.schedule.Timeline`: one row per functional unit, one bar per op, coloured by kind
    (``notebooks/02_scheduling.ipynb``). ``layers=(first, last)`` zooms on a range of layers."""
    from .schedule import UNITS

    df = timeline.to_dataframe()
    if layers is not None:
        df = df[(df.layer >= layers[0]) & (df.layer <= layers[1])]
    scale = {"us": 1e6, "ms": 1e3, "cycles": None}[time_unit]
    to_t = (lambda c: c) if scale is None else (lambda c: c / timeline.chip.clock_hz * scale)
    ax = _ax(ax, (12, 3.2))
    for row, unit in enumerate(UNITS):
        d = df[df.unit == unit]
        ax.broken_barh(list(zip(to_t(d.start.to_numpy()), to_t((d.end - d.start).to_numpy()))), (row - 0.4, 0.8),
                       facecolors=[KIND_COLOURS[k] for k in d.kind], edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(UNITS)), [u.upper() for u in UNITS])
    ax.invert_yaxis()
    ax.set_xlabel("cycles" if scale is None else time_unit)
    kinds = [k for k in KIND_COLOURS if k in set(df.kind)]
    ax.legend([Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k]) for k in kinds], kinds, loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False)
    ax.grid(axis="y", visible=False)
    return ax


def system_layout(plan, ax=None):
    """Racks of nodes of chips, each chip coloured by its pipeline stage (``notebooks/04_sharding.ipynb``)."""
    rack = hardware.get("groqrack")
    per_rack, per_node = rack.chips, rack.node.chips
    racks = -(-plan.chips // per_rack)
    ax = _ax(ax, (12, 3.2))
    palette = sns.color_palette("husl", plan.pp)
    for chip in range(plan.chips):
        r, within = divmod(chip, per_rack)
        node, slot = divmod(within, per_node)
        x = r * (per_node + 2) + slot
        ax.add_patch(Rectangle((x, node), 0.9, 0.9, color=palette[chip // plan.tp]))
    for r in range(racks):
        ax.text(r * (per_node + 2) + per_node / 2, rack.nodes + 0.3, f"rack {r}", ha="center", fontsize=8)
    ax.set_xlim(-0.5, racks * (per_node + 2))
    ax.set_ylim(-0.5, rack.nodes + 1.2)
    ax.set_axis_off()
    ax.set_title(f"{plan.model.name}: {plan.describe()} (colour = pipeline stage; rows = nodes of {per_node} chips)", fontsize=10)
    return ax


# ---- real-time voice (notebooks/05_realtime_voice_latency.ipynb) ----------------------------------------------------

STAGE_COLOURS = {"network": "#bdbdbd", "VAD": "#7570b3", "ASR": "#1b9e77", "search": "#e6ab02", "LLM": "#d95f02", "TTS": "#e7298a",
                 "playback": "#66a61e"}


def _human_gap(ax, vertical: bool = True):
    from .voice import HUMAN_TURN_GAP_S

    gap = HUMAN_TURN_GAP_S.nominal
    (ax.axvline if vertical else ax.axhline)(gap, color="k", ls="--", lw=1, label=f"human turn gap ~{gap * 1e3:.0f} ms")


_SHORT = {"VAD silence timer": "VAD", "ASR final transcript": "ASR", "web search": "search", "network to/from LLM": "net",
          "LLM time to first token": "TTFT", "LLM first sentence": "1st sentence", "TTS first audio": "TTS", "network down + playout buffer": "net+buf"}


def voice_waterfall(turns: dict, ax=None):
    """One lane per LLM profile: the stages of a turn end to end up to the first answer audio (``turns``: label -> `lpu.voice.Turn`)."""
    ax = _ax(ax, (11, 0.7 * len(turns) + 1.6))
    xmax = max(t.voice_to_voice_s for t in turns.values()) * 1.22
    seen = set()
    for row, t in enumerate(turns.values()):
        df = t.stages()
        df = df[~df.stage.str.contains("overlaps|playing")]
        for s in df.itertuples():
            ax.barh(row, s.duration_s, left=s.start_s, color=STAGE_COLOURS[s.kind], edgecolor="white", lw=0.5,
                    label=None if s.kind in seen else s.kind)
            seen.add(s.kind)
            if s.duration_s > 0.045 * xmax:
                ax.text(s.start_s + s.duration_s / 2, row, _SHORT.get(s.stage, s.stage), ha="center", va="center", fontsize=7)
        ax.text(t.voice_to_voice_s + 0.02, row, f"{t.voice_to_voice_s * 1e3:,.0f} ms (LLM {t.llm_share():.0%})", va="center", fontsize=8)
    _human_gap(ax)
    ax.set_yticks(range(len(turns)), list(turns))
    ax.invert_yaxis()
    ax.set_xlim(0, xmax)
    ax.set(xlabel="seconds since the user stopped speaking", title="One voice turn per LLM: what the user waits for")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.grid(axis="y", visible=False)
    return ax


def voice_gantt(stages: pd.DataFrame, ax=None, title: str = "", xmax: float | None = None):
    """Gantt of one turn's stages, one row each (``stages``: columns stage, start_s, end_s, kind, as `lpu.voice.Turn.stages` and
    `lpu.speech.MeasuredTurn.stages` give them); overlapping work shows. The window ends at ``xmax`` (default: a little
    after the last stage before the answer plays)."""
    ax = _ax(ax, (10, 0.35 * len(stages) + 1.2))
    if xmax is None:
        xmax = 1.3 * stages[stages.kind != "playback"].end_s.max()
    for row, s in enumerate(stages.itertuples()):
        ax.barh(row, s.end_s - s.start_s, left=s.start_s, color=STAGE_COLOURS[s.kind])
        ax.text(min(s.end_s, xmax * 0.9) + 0.01, row, f"{(s.end_s - s.start_s) * 1e3:,.0f} ms", va="center", fontsize=7)
    ax.set_yticks(range(len(stages)), list(stages.stage))
    ax.invert_yaxis()
    _human_gap(ax)
    ax.set(xlabel="seconds since the user stopped speaking", title=title, xlim=(0, xmax))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", visible=False)
    return ax


def voice_distribution(dists: list, ax=None):
    """Cumulative distribution of the voice-to-voice delay per LLM profile (`lpu.voice.Distribution`s), p50 and p90 marked."""
    from .voice import PUBLISHED_MEDIANS_S

    ax = _ax(ax, (9, 4))
    df = pd.concat([pd.DataFrame({"voice-to-voice s": d.voice_to_voice_s, "LLM": d.llm.name}) for d in dists])
    sns.ecdfplot(data=df, x="voice-to-voice s", hue="LLM", ax=ax)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.axhline(0.9, color="grey", lw=0.5)
    for i, (name, r) in enumerate(PUBLISHED_MEDIANS_S.items()):
        y = 0.5 + 0.06 * (i + 1)
        ax.plot([r.low, r.high], [y, y], color="k", lw=3, marker="|")
        ax.text(r.low - 0.03, y, f"published median: {name}", ha="right", va="center", fontsize=7)
    _human_gap(ax)
    ax.legend(ax.get_legend().legend_handles, [t.get_text() for t in ax.get_legend().texts], fontsize=8, loc="lower right", title="LLM")
    ax.set(ylabel="share of turns", xlim=(0, None), title="Voice-to-voice delay over the stage ranges")
    return ax


def voice_sensitivity(df: pd.DataFrame, ax=None, title: str = ""):
    """Tornado: the delay with each stage at its low and high end, others nominal (`lpu.voice.sensitivity`)."""
    ax = _ax(ax, (7, 0.35 * len(df) + 1.2))
    nominal = float(df.nominal_s.iloc[0])
    for row, s in enumerate(df.itertuples()):
        ax.barh(row, s.low_s - nominal, left=nominal, color="#1b9e77")
        ax.barh(row, s.high_s - nominal, left=nominal, color="#d95f02")
    ax.axvline(nominal, color="k", lw=1)
    ax.set_yticks(range(len(df)), list(df.stage))
    ax.invert_yaxis()
    ax.set(xlabel="voice-to-voice s (green: stage at its low end, orange: high end)", title=title or f"What dominates (nominal {nominal:.2f} s)")
    return ax


def voice_sweeps(df: pd.DataFrame, axes=None):
    """Voice-to-voice delay against each swept parameter, one panel per parameter, one line per LLM (`lpu.voice.sweep` rows)."""
    params = list(dict.fromkeys(df.parameter))
    if axes is None:
        _, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.4), sharey=True)
    for ax, p in zip(np.atleast_1d(axes), params):
        sns.lineplot(data=df[df.parameter == p], x="value", y="voice_to_voice_s", hue="llm", ax=ax, legend=p == params[-1])
        if p == "output_tokens_per_s":
            ax.set_xscale("log")
        _human_gap(ax, vertical=False)
        ax.set(xlabel=p, ylabel="voice-to-voice s")
    if params:
        np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper right")
    return axes


def race_times(df: pd.DataFrame, ax=None, title: str = ""):
    """A race through ``lpu serve`` (`lpu.serve.race` rows): each token's arrival at the client (dots) on the time the
    simulated system emits it (line, TTFT + i x ITL), one colour per model id (README, "Serve")."""
    ax = _ax(ax, (7, 4))
    for (model, g), colour in zip(df.groupby("model", sort=False), sns.color_palette("Dark2", df.model.nunique())):
        ax.plot(g.token, g.t_sim_s, color=colour, lw=1.5, label=f"{model}: simulated")
        ax.scatter(g.token, g.t_client_s, color=colour, s=10, label=f"{model}: measured at the client")
    ax.set(xlabel="token", ylabel="seconds after the request", title=title or "Token arrival: measured beside simulated")
    ax.legend(fontsize=7)
    return ax
