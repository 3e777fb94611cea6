"""ipywidgets explorers for the notebooks."""

from __future__ import annotations

import io

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

from . import hardware, models, plots, sram


def _show(first: dict) -> None:
    """plt.show() inside an explorer's output; the first figure (the default state) is also kept as PNG bytes in ``first``."""
    if "png" not in first:
        buf = io.BytesIO()
        plt.gcf().savefig(buf, format="png", dpi=90, bbox_inches="tight")
        first["png"] = buf.getvalue()
    plt.show()


def show_with_snapshot(box: w.Widget, png: bytes | None, what: str = "explorer") -> w.Widget:
    """Display a live widget and, under it, a static PNG of its default figure: widgets are blank on GitHub and in an HTML export,
    the image is not (an ``image/png`` output, embedded as ``<img>`` by nbconvert)."""
    display(box)
    if png:
        display(Markdown(f"*Static image of the {what}'s default state, for readers without a live kernel:*"), Image(data=png, format="png"))
    return box


def _explorer(rows: list[list[w.Widget]], out: w.Output, update, first: dict | None = None) -> w.VBox:
    """Lay out rows of controls above ``out``, re-run ``update`` whenever a control changes, show it once with its snapshot."""
    for row in rows:
        for control in row:
            control.observe(update, names="value")
    update()
    box = w.VBox([w.HBox(row) for row in rows] + [out])
    return show_with_snapshot(box, (first or {}).get("png"))


def chips_explorer(model: str = "llama2-70b", precision: str = "int8", context_tokens: int = 4096, batch: int = 1):
    """Model, precision, context and batch -> chips, racks and card cost (``notebooks/01_architecture.ipynb``)."""
    chip = hardware.get("lpu-v1")
    rack = hardware.get("groqrack")
    model_w = w.Dropdown(options=models.names(), value=model, description="model")
    prec_w = w.Dropdown(options=list(models.PRECISIONS), value=precision, description="precision")
    ctx_w = w.IntSlider(value=context_tokens, min=0, max=32768, step=256, description="context", continuous_update=False)
    batch_w = w.IntSlider(value=batch, min=1, max=256, description="users", continuous_update=False)
    reserve_w = w.FloatSlider(value=sram.RESERVE_FRACTION.nominal, min=sram.RESERVE_FRACTION.low, max=sram.RESERVE_FRACTION.high, step=0.01,
                              description="reserve", continuous_update=False)
    out = w.Output()
    first: dict = {}

    def update(*_):
        m = models.get(model_w.value)
        ctx = min(ctx_w.value, m.seq_len)
        n = sram.chips_needed(m, chip, prec_w.value, ctx, batch_w.value, reserve_w.value, rack)
        with out:
            out.clear_output(wait=True)
            print(f"{m.name} at {n.precision}, {batch_w.value} user(s) x {ctx:,} tokens"
                  f"{' (capped at the model context)' if ctx < ctx_w.value else ''}:")
            print(f"  {n.chips:,} chips = {n.chips / rack.node.chips:.1f} nodes = {n.racks} rack(s); cards ${n.card_cost_usd / 1e6:.2f}M")
            plots.bytes_breakdown(n)
            _show(first)

    return _explorer([[model_w, prec_w], [ctx_w, batch_w, reserve_w]], out, update, first)


def schedule_explorer(model: str = "stories110M", batch: int = 1, context_tokens: int = 255, precision: str = "int8"):
    """Model, batch, context -> the static schedule of a decode step: latency, breakdown, Gantt (``notebooks/02_scheduling.ipynb``)."""
    from . import schedule

    model_w = w.Dropdown(options=models.names(), value=model, description="model")
    prec_w = w.Dropdown(options=["int8", "fp16", "fp16-int8ffn", "int4", "fp8"], value=precision, description="precision")
    batch_w = w.IntSlider(value=batch, min=1, max=128, description="users", continuous_update=False)
    ctx_w = w.IntSlider(value=context_tokens, min=0, max=4095, step=1, description="context", continuous_update=False)
    out = w.Output()
    first: dict = {}

    def update(*_):
        m = models.get(model_w.value)
        ctx = min(ctx_w.value, m.seq_len - 1)
        chip = schedule.one_chip_for(m, prec_w.value, ctx + 1, batch_w.value)
        tl = schedule.schedule_decode(m, chip, batch_w.value, ctx, prec_w.value)
        with out:
            out.clear_output(wait=True)
            print(f"{m.name} on {chip.name} ({chip.sram_bytes / 1e9:.2f} GB SRAM), {batch_w.value} user(s), context {ctx}: "
                  f"{tl.latency_s * 1e6:,.1f} us per step, {batch_w.value / tl.latency_s:,.0f} tokens/s in all")
            print("critical path: " + ", ".join(f"{k} {v:.0%}" for k, v in tl.breakdown().items()))
            plots.gantt(tl, layers=(0, min(1, m.n_layers - 1)))
            _show(first)

    return _explorer([[model_w, prec_w], [batch_w, ctx_w]], out, update, first)


def generate_box(engine, prompt: str = "ROMEO:", max_new_tokens: int = 120):
    """A prompt box that streams an `lpu.runtime.Engine`'s tokens with their simulated LPU time (``notebooks/03_token_generation.ipynb``)."""
    text_w = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="60%"))
    n_w = w.IntSlider(value=max_new_tokens, min=1, max=engine.config.seq_len - 1, description="tokens")
    temp_w = w.FloatSlider(value=0.0, min=0.0, max=1.5, step=0.05, description="temperature")
    go = w.Button(description="generate", button_style="primary")
    out = w.Output(layout=w.Layout(border="1px solid #ddd", min_height="6em"))

    def run(_=None):
        out.clear_output()
        with out:
            print(text_w.value, end="", flush=True)
            ev = None
            for ev in engine.generate(text_w.value, n_w.value, temperature=temp_w.value, top_p=0.95, seed=0):
                print(ev.text, end="", flush=True)
            if ev is not None:
                print(f"\n-- {ev.position} tokens; simulated LPU time of the last: {ev.t_sim_s * 1e6:.2f} us; CPU {ev.t_wall_s:.2f} s")

    go.on_click(run)
    box = w.VBox([text_w, w.HBox([n_w, temp_w, go]), out])
    display(box)
    return box


def simulate_explorer(model: str = "llama2-70b", chips: int = 576, users: int = 1, precision: str | None = None):
    """Model, precision, chips, users -> lpu.simulate's plan and speeds (``notebooks/04_sharding.ipynb``)."""
    from .system import simulate

    model_w = w.Dropdown(options=[n for n in models.names() if not n.startswith("stories")], value=model, description="model")
    prec_w = w.Dropdown(options=[("highest that fits", None)] + [(p, p) for p in ("fp16", "fp16-int8ffn", "int8", "int4")], value=precision,
                        description="precision")
    chips_w = w.IntText(value=chips, description="chips")
    users_w = w.IntSlider(value=users, min=1, max=512, description="users", continuous_update=False)
    out = w.Output()
    first: dict = {}

    def update(*_):
        with out:
            out.clear_output(wait=True)
            try:
                r = simulate(model_w.value, chips=chips_w.value, precision=prec_w.value, users=users_w.value, ranges=False)
            except ValueError as e:
                print(f"does not work: {e}")
                return
            print(f"{r.plan.describe()}: first token {r.ttft_s * 1e3:.1f} ms, {r.output_tokens_per_s:,.0f} tok/s per user, "
                  f"{r.system_tokens_per_s:,.0f} tok/s for {r.users} user(s)")
            print("decode step: " + ", ".join(f"{k} {v:.0%}" for k, v in r.breakdown().items() if v > 0.005))
            plots.system_layout(r.plan)
            _show(first)

    return _explorer([[model_w, prec_w], [chips_w, users_w]], out, update, first)


def voice_explorer(silence_timer_s: float = 0.5, search: bool = False):
    """Stage settings -> one voice turn per LLM profile and their p50/p90 delay (``notebooks/05_realtime_voice_latency.ipynb``)."""
    from . import voice

    s = voice.Stages()

    def slider(name, value, hi, step=0.01):
        r = getattr(s, name)
        return w.FloatSlider(value=value if value is not None else r.nominal, min=0.0, max=hi, step=step, description=name.removesuffix("_s"),
                             continuous_update=False, style={"description_width": "initial"})

    silence_w = slider("silence_timer_s", silence_timer_s, 1.2)
    asr_w = slider("asr_final_s", None, 1.0)
    tts_w = slider("tts_first_audio_s", None, 0.5)
    net_w = slider("network_hop_s", None, 0.2, 0.005)
    first_w = w.IntSlider(value=int(s.first_sentence_tokens.nominal), min=1, max=60, description="first sentence tokens", continuous_update=False,
                          style={"description_width": "initial"})
    search_w = w.Checkbox(value=search, description="web search first")
    out = w.Output()
    first: dict = {}

    def update(*_):
        stages = s.fixed(silence_timer_s=silence_w.value, asr_final_s=asr_w.value, tts_first_audio_s=tts_w.value, network_hop_s=net_w.value,
                         first_sentence_tokens=first_w.value)
        with out:
            out.clear_output(wait=True)
            turns = {voice.llm_timing(p).name: voice.turn(p, stages, search=search_w.value) for p in voice.KNOWN}
            spread = voice.compare(stages=voice.Stages().fixed(silence_timer_s=silence_w.value), n=4000, search=search_w.value)
            print(f"silence timer {silence_w.value:.2f} s, other stages over their ranges:")
            print("\n".join(f"  {r.llm}: p50 {r.p50_s:.2f} s, p90 {r.p90_s:.2f} s" for r in spread.itertuples()))
            plots.voice_waterfall(turns)
            _show(first)

    return _explorer([[silence_w, asr_w, tts_w], [net_w, first_w, search_w]], out, update, first)


def design_explorer(model: str = "llama2-70b", system: str = "lpu-whatif-4nm", chips: int = 576, users: int = 32, precision: str = "int8"):
    """Model, system (LPU generation or GPU), chips, users, precision, system term -> a live `lpu.simulate` with its cost,
    starred on the design-space CSV's cloud for that model (``notebooks/07_design_space.ipynb``)."""
    from . import design, metrics
    from .system import simulate

    df = design.load()
    model_w = w.Dropdown(options=list(design.MODELS), value=model, description="model")
    system_w = w.Dropdown(options=list(design.LPU_SYSTEMS + design.GPU_SYSTEMS), value=system, description="system")
    prec_w = w.Dropdown(options=list(dict.fromkeys(design.LPU_PRECISIONS + ("int4",) + design.GPU_PRECISIONS)), value=precision, description="precision")
    chips_w = w.IntText(value=chips, description="chips")
    users_w = w.IntSlider(value=users, min=1, max=256, description="users", continuous_update=False)
    term_w = w.Dropdown(options=[("v1 term, in seconds", False), ("v1 term scaled with the clock", True)], value=False, description="LPU term",
                        style={"description_width": "initial"})
    out = w.Output()
    first: dict = {}

    def update(*_):
        lpu_chip = isinstance(hardware.get(system_w.value), hardware.ChipSpec)
        op_s = design.clock_scaled_op_s(system_w.value) if lpu_chip and term_w.value else None
        with out:
            out.clear_output(wait=True)
            try:
                r = simulate(model_w.value, system=system_w.value, chips=chips_w.value, precision=prec_w.value, users=users_w.value,
                             ranges=False, system_op_s=op_s)
            except ValueError as e:
                print(f"does not work: {e}")
                return
            cost = metrics.cost_per_million_tokens_from(r)
            print(f"{r.system} x{r.chips} ({r.plan.describe() if lpu_chip else r.precision_label}), {r.users} user(s): "
                  f"{r.output_tokens_per_s:,.0f} tok/s per user, {r.system_tokens_per_s:,.0f} tok/s in all, ${cost:,.2f} per million tokens")
            plots.design_space(df, model_w.value, front=design.pareto_front(df[df.model == model_w.value]),
                               point=(cost, r.output_tokens_per_s, f"{r.system} x{r.chips}, {r.users} users"))
            _show(first)

    return _explorer([[model_w, system_w, prec_w], [chips_w, users_w, term_w]], out, update, first)
