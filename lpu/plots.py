"""Figures for the notebooks (matplotlib + seaborn). Each takes data from the package and an optional ``ax``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, Rectangle

from . import hardware, speculation, sram

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
    west = [("MXM", 6, f"MXM\n{c.mxm_dim}x{c.mxm_dim} arrays\n({c.mxm_planes // 2} planes?\nunconfirmed)"), ("SXM", 3, "SXM")]
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
    ax.set(xlabel="MEM slices the tensor spans (count)", ylabel="stream bandwidth (TB/s)", title="Spread a tensor over slices to stream it fast")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def chips_per_model(need: pd.DataFrame, reference_chips: int | None = 576, ax=None):
    """Grouped bars of chips needed per model and precision (``need``: columns model, precision, chips), each bar labelled with
    its count, on a linear axis so that 671 against 576 shows (``notebooks/01_architecture.ipynb``, figure 3)."""
    ax = _ax(ax, (11, 4.2))
    order = [p for p in ("fp16", "fp16-int8ffn", "int8", "int4") if p in set(need.precision)] or list(dict.fromkeys(need.precision))
    sns.barplot(data=need, x="model", y="chips", hue="precision", hue_order=order, ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%d", fontsize=7, padding=1)
    if reference_chips:
        ax.axhline(reference_chips, color="k", ls="--", lw=1)
        ax.annotate(f"{reference_chips} chips: Groq's Llama 2 70B system", xy=(0.995, reference_chips), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", ha="right", va="bottom", fontsize=8)
    ax.set(ylabel="LPU chips needed (count)", xlabel="model", ylim=(0, need.chips.max() * 1.12))
    ax.legend(title="weight precision", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    ax.tick_params(axis="x", rotation=20)
    return ax


def chips_vs_context(df: pd.DataFrame, reference_chips: int | None = 576, ax=None):
    """Chips needed against context tokens per user, one colour per precision, one line style per user count
    (``df``: columns context_tokens, chips, precision, batch). Linear chips axis, context on a base-2 axis with the
    values themselves as ticks, the reference line labelled, the legend outside (``notebooks/01_architecture.ipynb``, figure 4)."""
    ax = _ax(ax, (9, 4.2))
    sns.lineplot(data=df, x="context_tokens", y="chips", hue="precision", style="batch", markers=True, ax=ax)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(df.context_tokens))
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.xaxis.set_minor_locator(plt.matplotlib.ticker.NullLocator())
    if reference_chips:
        ax.axhline(reference_chips, color="k", ls="--", lw=1)
        ax.annotate(f"{reference_chips} chips", xy=(0.01, reference_chips), xycoords=("axes fraction", "data"), xytext=(0, 3),
                    textcoords="offset points", fontsize=8)
    ax.set(xlabel="context per user (tokens)", ylabel="LPU chips needed (count)", ylim=(0, None))
    handles, labels = ax.get_legend_handles_labels()
    labels = [{"precision": "weight precision", "batch": "concurrent users"}.get(x, x) for x in labels]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
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
    ax.set_xlabel("time (cycles)" if scale is None else f"time ({time_unit})")
    ax.set_ylabel("functional unit")
    kinds = [k for k in KIND_COLOURS if k in set(df.kind)]
    ax.legend([Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k]) for k in kinds], kinds, loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=8, frameon=False)
    ax.grid(axis="y", visible=False)
    return ax


def system_layout(plan, ax=None):
    """Racks of nodes of chips (``notebooks/04_sharding.ipynb``, figure 1): each used chip shows its pipeline stage's number on
    alternating colours, unused slots (the spare node of each rack and any rest) are drawn hollow, and a key says what colour
    and number mean and which layers each stage holds."""
    rack = hardware.get("groqrack")
    per_rack, per_node = rack.chips, rack.node.chips
    racks = -(-plan.chips // per_rack)
    ax = _ax(ax, (13, 3.6))
    palette = sns.color_palette("Paired", 12)
    for slot in range(racks * per_rack):
        r, within = divmod(slot, per_rack)
        node, k = divmod(within, per_node)
        x = r * (per_node + 2) + k
        if slot < plan.chips:
            stage = slot // plan.tp
            ax.add_patch(Rectangle((x, node), 0.9, 0.9, color=palette[stage % len(palette)]))
            if plan.pp <= 99:
                ax.text(x + 0.45, node + 0.45, str(stage), ha="center", va="center", fontsize=5.5)
        else:
            ax.add_patch(Rectangle((x, node), 0.9, 0.9, fill=False, ec="grey", lw=0.6, ls=":"))
    for r in range(racks):
        ax.text(r * (per_node + 2) + per_node / 2, rack.nodes + 0.3, f"rack {r}", ha="center", fontsize=8)
    layers = plan.stage_layers
    key = [f"stage {i}: layers {lr.start}-{lr.stop - 1}" for i, lr in enumerate(layers)]
    handles = [Rectangle((0, 0), 1, 1, color=palette[i % len(palette)]) for i in range(len(layers))]
    handles.append(Rectangle((0, 0), 1, 1, fill=False, ec="grey", ls=":"))
    key.append("unused slot (spare node)")
    ax.legend(handles, key, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6.5, frameon=False, ncol=1 + len(key) // 22)
    ax.set_xlim(-0.5, racks * (per_node + 2))
    ax.set_ylim(-0.5, rack.nodes + 1.2)
    ax.set_axis_off()
    ax.set_title(f"{plan.model.name}: {plan.describe()}\n(number and colour = pipeline stage; each row = a node of {per_node} chips; "
                 f"{rack.nodes} nodes a rack)", fontsize=9)
    return ax


def chip_bytes_profile(shares: pd.DataFrame, sram_bytes: float, axes=None):
    """What each chip of a plan holds (``shares``: `lpu.shard.chip_bytes` rows), two panels (``notebooks/04_sharding.ipynb``,
    figure 2): weights + KV cache + activations stacked against the SRAM capacity line (on scale), and the KV cache alone
    on its own MB axis, since it is a hundred times smaller."""
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top, bottom = axes
    x = shares.chip.to_numpy()
    parts = [("weights", "#1b9e77"), ("kv_cache", "#d95f02"), ("activations", "#7570b3")]
    top.stackplot(x, *[shares[k].to_numpy() / 1e6 for k, _ in parts], colors=[c for _, c in parts],
                  labels=["weights", "KV cache", "activations"], lw=0)
    top.axhline(sram_bytes / 1e6, color="k", ls="--", lw=1)
    top.annotate(f"SRAM {sram_bytes / 1e6:.1f} MB", xy=(1.0, sram_bytes / 1e6), xycoords=("axes fraction", "data"), xytext=(4, 0),
                 textcoords="offset points", va="center", fontsize=8)
    top.set(ylabel="MB per chip", ylim=(0, sram_bytes / 1e6 * 1.1), title="What each chip holds")
    top.legend(loc="lower right", fontsize=8, ncol=3, frameon=True)
    bottom.plot(x, shares.kv_cache.to_numpy() / 1e6, color="#d95f02", lw=1)
    bottom.set(xlabel="chip (stage-major: chip = stage x tensor-parallel width + rank)", ylabel="KV cache\n(MB per chip)", ylim=(0, None))
    return axes


def scaling_with_chips(df: pd.DataFrame, axes=None):
    """Scaling with chips (``df``: `lpu.serving.scaling_with_chips`), two panels (``notebooks/04_sharding.ipynb``, figure 3):
    per-user speed, and system throughput per chip with the pipeline full; linear scaling is a flat line in the second,
    drawn at the median, so no single (possibly degenerate) point sets the reference. Lines are labelled where they end."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    a, b = axes
    a.plot(df.chips, df.per_user_tok_s, "o-", color="C0")
    a.set(xlabel="LPU chips (count)", ylabel="output speed per user (tok/s)", ylim=(0, df.per_user_tok_s.max() * 1.2),
          title="One user: a token still walks every layer")
    per_chip = df.system_tok_s_full / df.chips
    b.plot(df.chips, per_chip, "s-", color="C1")
    for x, y, u in zip(df.chips, per_chip, df.users_full):
        b.annotate(f"{u} users", (x, y), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7)
    b.axhline(per_chip.median(), color="k", ls=":", lw=1)
    b.annotate("linear scaling = flat (at the median)", xy=(0.02, per_chip.median()), xycoords=("axes fraction", "data"), xytext=(0, -11),
               textcoords="offset points", fontsize=7)
    b.set(xlabel="LPU chips (count)", ylabel="system tok/s per chip\n(pipeline full)", ylim=(0, per_chip.max() * 1.25),
          title="Throughput per chip with every stage busy")
    return axes


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
    ax.set(xlabel="time since the user stopped speaking (s)", ylabel="LLM behind the agent", title="One voice turn per LLM: what the user waits for")
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
    ax.set(xlabel="time since the user stopped speaking (s)", ylabel="stage", title=title, xlim=(0, xmax))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", visible=False)
    return ax


def voice_distribution(dists: list, ax=None):
    """Cumulative distribution of the voice-to-voice delay per LLM profile (`lpu.voice.Distribution`s), with the published
    medians as labelled bars in their own band below the curves, inside the axes (``notebooks/05_realtime_voice_latency.ipynb``, figure 3)."""
    from .voice import PUBLISHED_MEDIANS_S

    ax = _ax(ax, (10, 4.6))
    df = pd.concat([pd.DataFrame({"voice-to-voice s": d.voice_to_voice_s, "LLM": d.llm.name}) for d in dists])
    sns.ecdfplot(data=df, x="voice-to-voice s", hue="LLM", ax=ax)
    xmax = float(np.quantile(df["voice-to-voice s"], 0.995)) * 1.05
    for q in (0.5, 0.9):
        ax.axhline(q, color="grey", lw=0.5)
        ax.annotate(f"p{q * 100:.0f}", xy=(1.0, q), xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7, color="grey")
    n = len(PUBLISHED_MEDIANS_S)
    for i, (name, r) in enumerate(PUBLISHED_MEDIANS_S.items()):
        y = -0.08 - 0.09 * i
        ax.plot([r.low, r.high], [y, y], color="k", lw=3, marker="|", ms=8, solid_capstyle="butt")
        ax.annotate(f"published median: {name} ({r.low:.2f}-{r.high:.2f} s)" if r.low < r.high else f"published median: {name} ({r.nominal:.2f} s)",
                    xy=(r.high, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    _human_gap(ax)
    ax.set_ylim(-0.1 - 0.09 * n, 1.02)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlim(0, xmax)
    leg = ax.get_legend()
    ax.legend(leg.legend_handles + [ax.lines[-1]], [t.get_text() for t in leg.texts] + [ax.lines[-1].get_label()], fontsize=8,
              loc="center right", title="LLM")
    ax.set(xlabel="voice-to-voice delay (s, end of speech to first answer audio)", ylabel="share of turns at or below",
           title="Voice-to-voice delay over the stage ranges (published medians below)")
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
    ax.set_ylabel("stage moved to its low / high end")
    ax.set(xlabel="voice-to-voice delay (s); green: stage at its low end, orange: at its high end",
           title=title or f"What dominates (nominal {nominal:.2f} s)")
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
        ax.set(xlabel=_SWEEP_LABELS.get(p, p), ylabel="voice-to-voice delay (s)")
    if params:
        np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper right")
    return axes


_SWEEP_LABELS = {"silence_timer_s": "VAD silence timer (s)", "ttft_s": "LLM time to first token (s)",
                 "output_tokens_per_s": "LLM output speed (tok/s, log scale)"}


# ---- measured GPU step times (notebooks/02_scheduling.ipynb) -------------------------------------------------------

_MODE_LABELS = {"eager": "eager (host issues each kernel)", "eager_nosync_blk10": "eager, no sync, 10-step blocks",
                "graph": "CUDA graph (pre-recorded)"}


def step_time_histograms(steps: pd.DataFrame, axes=None):
    """Measured GPU decode-step times, one panel per mode with its own time axis (``steps``: columns mode, latency_s, as
    ``lpu/data/gpu_step_times.csv``), p50 and p99 marked, so that the narrow CUDA-graph spike does not flatten the eager
    histograms (``notebooks/02_scheduling.ipynb``, figure 4)."""
    modes = list(dict.fromkeys(steps["mode"]))
    if axes is None:
        _, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.2))
    for ax, mode in zip(np.atleast_1d(axes), modes):
        ms = steps.loc[steps["mode"] == mode, "latency_s"].to_numpy() * 1e3
        p50, p99 = np.percentile(ms, [50, 99])
        hi = np.percentile(ms, 99.8)
        ax.hist(ms[ms <= hi], bins=60, color="#7570b3")
        for q, v, ls in (("p50", p50, "-"), ("p99", p99, "--")):
            ax.axvline(v, color="k", ls=ls, lw=1, label=f"{q} {v:.2f} ms")
        ax.set(title=_MODE_LABELS.get(mode, mode), xlabel="decode step (ms)", ylabel="steps (count)")
        ax.legend(fontsize=7, loc="upper right")
    return axes


# ---- benchmarks (notebooks/06_benchmarks.ipynb) ---------------------------------------------------------------------

SYSTEM_COLOURS = {"lpu-v1": "C3", "a100": "C0", "h100": "C1", "h200": "C2"}
_SYSTEM_NAMES = {"lpu-v1": "LPU system", "a100": "A100 server", "h100": "H100 server", "h200": "H200 server"}


def latency_vs_speed(points: pd.DataFrame, published_tok_s: dict | None = None, axes=None):
    """Time to first token against output speed per user, one panel per model (``points``: `lpu.serving.latency_vs_speed`),
    every point labelled with its chip count, ranges as error bars, published speeds as labelled lines, the legend below the
    figure for all panels (``notebooks/06_benchmarks.ipynb``, figure 1). ``published_tok_s``: model -> {label: tok/s}."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    model_names = list(dict.fromkeys(points.model))
    if axes is None:
        fig, axes = plt.subplots(1, len(model_names), figsize=(5.2 * len(model_names), 4.4))
    axes = np.atleast_1d(axes)
    for ax, model in zip(axes, model_names):
        d = points[points.model == model]
        for r in d.itertuples():
            ax.errorbar(r.tok_s, r.ttft_s, xerr=[[r.tok_s - r.tok_s_low], [r.tok_s_high - r.tok_s]], fmt="o" if r.users == 1 else "s",
                        color=SYSTEM_COLOURS[r.system], alpha=0.85, ms=5, capsize=2)
            ax.annotate(f"x{r.chips}", (r.tok_s, r.ttft_s), xytext=(3, 3), textcoords="offset points", fontsize=6.5)
        for label, v in (published_tok_s or {}).get(model, {}).items():
            ax.axvline(v, color="C3", ls=":", lw=1)
            ax.annotate(label, xy=(v, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -4), textcoords="offset points", rotation=90,
                        va="top", fontsize=7, color="C3")
        ax.set(title=model, xlabel="output speed per user (tok/s, log)", ylabel="time to first token (s, log)", xscale="log", yscale="log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(plt.NullFormatter())
    handles = [Line2D([], [], color=c, marker="o", ls="") for c in SYSTEM_COLOURS.values()]
    handles += [Line2D([], [], color="k", marker="o", ls=""), Line2D([], [], color="k", marker="s", ls=""), Line2D([], [], color="C3", ls=":")]
    labels = list(_SYSTEM_NAMES.values()) + ["1 user", "32 users", "published LPU speed"]
    axes[0].figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.04))
    axes[0].figure.tight_layout(rect=(0, 0.06, 1, 1))
    return axes


def throughput_vs_users(thr: pd.DataFrame, axes=None):
    """System throughput and per-user speed against concurrent users, one line per system (``thr``:
    `lpu.serving.throughput_vs_users`), each point's precision written beside it, so that a switch (fp16-int8ffn -> int8)
    shows (``notebooks/06_benchmarks.ipynb``, figure 2)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    a, b = axes
    for label, d in thr.groupby("label", sort=False):
        colour = SYSTEM_COLOURS.get(d.system.iloc[0], "k")
        for ax, col in ((a, "system_tok_s"), (b, "per_user_tok_s")):
            ax.plot(d.users, d[col], "o-", color=colour, label=label)
            switched = d.precision.ne(d.precision.shift())
            for x, y, p in zip(d.users[switched], d[col][switched], d.precision[switched]):
                ax.annotate(p, (x, y), xytext=(4, -10), textcoords="offset points", fontsize=7, color=colour)
    a.set(xscale="log", yscale="log", xlabel="concurrent users (count, log)", ylabel="system throughput (tok/s, log)", title="Throughput")
    b.set(xscale="log", xlabel="concurrent users (count, log)", ylabel="output speed per user (tok/s)", ylim=(0, None), title="Per user")
    a.legend(fontsize=8, loc="upper left", title="system (precision where it changes)", title_fontsize=7)
    return axes


def cost_vs_card_price(prices_usd, cost_usd_per_m, price_line_usd_per_m: float, breakeven_usd: float | None = None,
                       card_range=None, ax=None, label: str = "LPU system"):
    """Cost per million tokens against the LPU card price (`lpu.claims.cost_at_card_price`), with the price to beat and the
    break-even card price marked, and the sourced card-price range shaded (``notebooks/06_benchmarks.ipynb``)."""
    ax = _ax(ax, (7, 3.8))
    ax.plot(prices_usd, cost_usd_per_m, color="C3", lw=2, label=f"{label}: modelled cost")
    ax.axhline(price_line_usd_per_m, color="k", ls="--", lw=1, label=f"price to beat ${price_line_usd_per_m:.2f}/M")
    if card_range is not None:
        ax.axvspan(card_range.low, card_range.high, color="grey", alpha=0.12, label=f"card price range ${card_range.low:,.0f}-{card_range.high:,.0f}")
    if breakeven_usd is not None and breakeven_usd > 0:
        ax.axvline(breakeven_usd, color="C2", lw=1, label=f"break-even card ${breakeven_usd:,.0f}")
    ax.set(xscale="log", yscale="log", xlabel="LPU card price (USD, log)", ylabel="cost per million tokens (USD, log)",
           title="Which card price flips the cost verdict")
    ax.legend(fontsize=7, loc="upper left")
    return ax


def html_table(df: pd.DataFrame, caption: str = "", precision: int = 3):
    """A DataFrame as an HTML table that wraps long text (a pandas ``Styler``), for verdicts and validation tables."""
    styler = df.style.format(precision=precision, thousands=",").hide(axis="index").set_uuid("lpu")  # fixed ids: same HTML every run
    styler = styler.set_table_styles([
        {"selector": "td, th", "props": "white-space: normal; word-wrap: break-word; max-width: 28em; text-align: left; "
                                        "vertical-align: top; padding: 2px 6px; font-size: 0.85em"},
        {"selector": "caption", "props": "caption-side: top; font-weight: bold; text-align: left"}])
    return styler.set_caption(caption) if caption else styler


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


def speculative_speedup(curve: pd.DataFrame, measured: tuple[float, float] | None = None, k: int = 4, ax=None):
    """Speed-up of speculative decoding against the acceptance, one line per system (rows of
    `lpu.speculation.speedup_curve` at ``k``), the ideal k+1-fold bound and the measured acceptance band (notebook 03)."""
    ax = _ax(ax, (7, 4))
    sub = curve[curve.k == k]
    for (system, users), g in sub.groupby(["system", "users"], sort=False):
        ax.plot(g.acceptance, g.speedup, marker="o", ms=3, label=f"{system}, {users} user(s)")
    a = np.linspace(0, 1, 101)
    ax.plot(a, [speculation.tokens_per_step(x, k) for x in a], "k--", lw=1, label="tokens per step (free draft and verify)")
    if measured is not None:
        ax.axvspan(*measured, color="tab:green", alpha=0.15, label="acceptance measured on the bundled pair")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set(xlabel="per-token acceptance a", ylabel="speed-up over plain decoding", title=f"speculative decoding, k = {k}")
    ax.legend(fontsize=8)
    return ax


def verify_cost(steps: pd.DataFrame, axes=None):
    """What a verify step's rows cost on a GPU, measured (markers) and simulated (lines; the band: the same ratio at
    the model's fast and slow corners): its time over the one-row step's against the rows per user, one panel per
    number of users (rows of `lpu.validation.verify_steps`; notebook 03)."""
    from matplotlib.lines import Line2D

    users = sorted(steps.users.unique())
    if axes is None:
        _, axes = plt.subplots(1, len(users), figsize=(3.6 * len(users), 3.4), sharey=True, squeeze=False)
        axes = axes[0]
    colour = {key: f"C{i}" for i, key in enumerate(dict.fromkeys(zip(steps.system, steps.model)))}
    for ax, u in zip(axes, users):
        for key, g in steps[steps.users == u].groupby(["system", "model"], sort=False):
            g = g.sort_values("rows")
            ends = np.stack([g.low_s / g.low_s.iloc[0], g.high_s / g.high_s.iloc[0]])
            ax.plot(g.rows, g.predicted_over_one_row, color=colour[key], lw=1.2)
            ax.fill_between(g.rows, ends.min(0), ends.max(0), color=colour[key], alpha=0.15, lw=0)
            ax.plot(g.rows, g.measured_over_one_row, "o", color=colour[key], ms=5)
        ax.axhline(1, color="grey", lw=0.8)
        ax.set(xlabel="rows per user (k + 1)", title=f"{u} user(s)")
    axes[0].set_ylabel("verify step / one-row step")
    handles = [Line2D([], [], color=c, lw=6, alpha=0.5) for c in colour.values()]
    labels = [f"{model} on {system}" for system, model in colour]
    handles += [Line2D([], [], color="k", lw=1.2), Line2D([], [], color="k", marker="o", ls="")]
    labels += ["simulated", "measured"]
    axes[-1].legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return axes


# ---- the design space (notebooks/07_design_space.ipynb) -------------------------------------------------------------

DESIGN_COLOURS = {"lpu-v1": SYSTEM_COLOURS["lpu-v1"], "lpu-whatif-4nm": "C4", "lpu-whatif-stacked-sram": "C5", "lpu-whatif-fast-hops": "C6",
                  **{k: v for k, v in SYSTEM_COLOURS.items() if k != "lpu-v1"}}
_USER_MARKERS = {1: "o", 8: "s", 32: "^", 128: "D"}


def design_space(df: pd.DataFrame, model: str, front: pd.DataFrame | None = None, min_speed: float | None = None, point=None, ax=None):
    """Output speed per user against cost per million tokens for every configuration of ``model`` that runs (rows of
    `lpu.design.load`), colour by system, marker by users; the Pareto front (`lpu.design.pareto_front`) as a line, a per-user
    speed target as a dashed line, and ``point`` = (cost, speed, label) as a star (``notebooks/07_design_space.ipynb``)."""
    from matplotlib.lines import Line2D

    ax = _ax(ax, (8, 4.6))
    d = df[(df.model == model) & df.error.isna()]
    if d.empty:
        raise ValueError(f"no configuration of {model!r} ran in df; models there: {', '.join(sorted(df.model.unique()))}")
    for (system, users), g in d.groupby(["system", "users"]):
        v1 = system == "lpu-v1"  # drawn hollow and on top: the stacked-SRAM what-if gives the same point wherever v1 fits
        ax.scatter(g.usd_per_m_tokens, g.output_tokens_per_s, marker=_USER_MARKERS.get(users, "x"), s=40 if v1 else 22, zorder=3 if v1 else 2,
                   facecolors="none" if v1 else DESIGN_COLOURS.get(system, "k"), edgecolors=DESIGN_COLOURS.get(system, "k"),
                   alpha=0.9 if v1 else 0.7, lw=1.2 if v1 else 0)
    if front is not None and len(front):
        f = front.sort_values("usd_per_m_tokens")
        ax.step(f.usd_per_m_tokens, f.output_tokens_per_s, where="post", color="k", lw=1.2, alpha=0.8)
    if min_speed is not None:
        ax.axhline(min_speed, color="k", ls="--", lw=0.9)
    if point is not None:
        ax.scatter([point[0]], [point[1]], marker="*", s=260, color="gold", edgecolor="k", zorder=5)
        ax.annotate(point[2], (point[0], point[1]), xytext=(8, 6), textcoords="offset points", fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="cost per million output tokens (USD, log)", ylabel="output speed per user (tok/s, log)",
           title=f"{model}: every configuration that runs")
    _plain_log_ticks(ax)
    systems = [s for s in DESIGN_COLOURS if s in set(d.system)]
    handles = [Line2D([], [], color=DESIGN_COLOURS[s], marker="o", ls="", mfc="none" if s == "lpu-v1" else DESIGN_COLOURS[s]) for s in systems]
    handles += [Line2D([], [], color="grey", marker=m, ls="") for u, m in _USER_MARKERS.items() if u in set(d.users)]
    labels = systems + [f"{u} user(s)" for u in _USER_MARKERS if u in set(d.users)]
    if front is not None and len(front):
        handles.append(Line2D([], [], color="k", lw=1.2))
        labels.append("Pareto front")
    if min_speed is not None:
        handles.append(Line2D([], [], color="k", ls="--", lw=0.9))
        labels.append(f"target {min_speed:g} tok/s per user")
    ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax


def _plain_log_ticks(ax):
    """Log axes ticked at 1, 2, 5 x 10^k and labelled as plain numbers."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(plt.NullFormatter())


def cheapest_by_system(cheap: pd.DataFrame, min_speed: float, ax=None):
    """The cheapest configuration per model and system at a per-user speed target (`lpu.design.cheapest_at_speed`): cost per
    million tokens with its low-high range, bars grouped by model, the chip count written on each (``notebooks/07_design_space.ipynb``)."""
    ax = _ax(ax, (10, 4))
    model_names = list(dict.fromkeys(cheap.model))
    systems = [s for s in DESIGN_COLOURS if s in set(cheap.system)]
    width = 0.8 / max(len(systems), 1)
    labelled = set()
    for j, system in enumerate(systems):
        for i, model in enumerate(model_names):
            r = cheap[(cheap.model == model) & (cheap.system == system)]
            if r.empty:
                continue
            r = r.iloc[0]
            x = i + (j - (len(systems) - 1) / 2) * width
            err = [[r.usd_per_m_tokens - r.usd_per_m_tokens_low], [r.usd_per_m_tokens_high - r.usd_per_m_tokens]]
            ax.bar(x, r.usd_per_m_tokens, width, color=DESIGN_COLOURS[system], label=None if system in labelled else system)
            labelled.add(system)
            ax.errorbar(x, r.usd_per_m_tokens, yerr=err, color="k", lw=0.8, capsize=2)
            ax.annotate(f"x{int(r.chips)}", (x, r.usd_per_m_tokens_high), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=6, rotation=90)
    ax.set_xticks(range(len(model_names)), model_names)
    ax.set(yscale="log", xlabel="model", ylabel="cost per million output tokens (USD, log)",
           title=f"Cheapest configuration at >= {min_speed:g} tok/s per user (bars: nominal; whiskers: low-high; chips above)")
    ax.set_ylim(top=ax.get_ylim()[1] * 3)  # room for the chip counts above the whiskers
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ax
