"""The data behind every figure and table of the notebooks, against independent references and invariants; each plot draws.

Figure ids are notebook_figure as in issue 14 (01_3 = notebook 01's third figure).
"""

import math

import numpy as np
import pandas as pd
import pytest

from lpu import DATA_DIR, claims, hardware, metrics, models, plots, serving, shard, sram, voice
from lpu.system import simulate

CHIP = hardware.get("lpu-v1")


def _labelled(ax):
    """Every axis in words with units (or switched off, for diagrams)."""
    if not ax.axison:
        return True
    return bool(ax.get_xlabel().strip()) and bool(ax.get_ylabel().strip())


# ---- 01_3 chips per model and precision; 01_4 chips against context and users -----------------------------------


def _hand_chips(m, bytes_per_param_ffn, context, users, reserve=sram.RESERVE_FRACTION.nominal):  # fp16 only (int8 adds scales)
    # independent closed form for Llama 2 70B at a uniform precision: params x bytes + KV (layers x 2 x kv_dim x bytes) x T x users
    kv = m.n_layers * 2 * m.n_kv_heads * (m.dim // m.n_heads) * bytes_per_param_ffn * context * users
    act = m.activation_bytes(models.get_precision("fp16" if bytes_per_param_ffn == 2 else "int8"), users, context)
    return math.ceil((m.n_params * bytes_per_param_ffn + kv + act) / (CHIP.sram_bytes * (1 - reserve)))


@pytest.mark.parametrize("users", [1, 8, 9, 32, 64])
def test_01_4_kv_cache_grows_with_every_user(users):
    m = models.get("llama2-70b")
    n = sram.chips_needed(m, CHIP, "fp16", 4096, users)
    assert n.kv_cache_bytes == 327_680 * 4096 * users  # 80 layers x 8 KV heads x 128 x (K, V) x 2 bytes per token
    assert n.chips == _hand_chips(m, 2, 4096, users)


def test_01_4_chips_rise_with_users_and_context():
    m = models.get("llama2-70b")
    for p in ("fp16", "int8"):
        by_users = [sram.chips_needed(m, CHIP, p, 4096, b).chips for b in (1, 8, 16, 32)]
        assert all(b > a for a, b in zip(by_users, by_users[1:]))
        by_ctx = [sram.chips_needed(m, CHIP, p, t, 32).chips for t in (256, 1024, 4096)]
        assert all(b > a for a, b in zip(by_ctx, by_ctx[1:]))


def test_01_3_chips_per_model_hand_computed():
    assert sram.chips_needed("llama2-70b", CHIP, "fp16", 4096).chips == 671
    rows = [dict(model=m, precision=p, chips=sram.chips_needed(m, CHIP, p, 4096).chips) for m in ("llama2-7b", "llama2-70b")
            for p in ("fp16", "fp16-int8ffn", "int8", "int4")]
    need = pd.DataFrame(rows)
    for _, d in need.groupby("model"):
        assert d.chips.is_monotonic_decreasing  # fewer bytes per weight, fewer chips
    ax = plots.chips_per_model(need)
    assert _labelled(ax) and ax.get_ylim()[0] == 0 and ax.get_yscale() == "linear"
    assert any("576" in t.get_text() for t in ax.texts)
    ctx = pd.DataFrame([dict(precision=p, batch=b, context_tokens=t, chips=sram.chips_needed("llama2-70b", CHIP, p, t, b).chips)
                        for p in ("fp16", "int8") for b in (1, 32) for t in (256, 4096)])
    ax = plots.chips_vs_context(ctx)
    assert _labelled(ax) and "tokens" in ax.get_xlabel() and any("576" in t.get_text() for t in ax.texts)


# ---- 02_4 measured step times ------------------------------------------------------------------------------------


def test_02_4_step_time_panels_keep_each_mode_readable():
    steps = pd.read_csv(DATA_DIR / "gpu_step_times.csv")
    axes = plots.step_time_histograms(steps)
    assert len(axes) == steps["mode"].nunique()
    for ax, (mode, d) in zip(axes, steps.groupby("mode", sort=False)):
        assert ax.get_title() == plots._MODE_LABELS.get(mode, mode)
        lo, hi = ax.get_xlim()
        ms = d.latency_s.to_numpy() * 1e3
        assert lo <= np.percentile(ms, 50) <= hi and hi - lo < 3 * (np.percentile(ms, 99.8) - ms.min()) + 1e-9
        assert _labelled(ax)
        assert sum(p.get_height() for p in ax.patches) >= 0.99 * len(ms)  # the histogram counts (nearly) every step


# ---- 04_1 layout, 04_2 bytes per chip, 04_3 scaling --------------------------------------------------------------


@pytest.fixture(scope="module")
def r576():
    return simulate("llama2-70b", chips=576, ranges=False)


def test_04_1_layout_every_layer_once(r576):
    plan = r576.plan
    layers = [layer for rng in plan.stage_layers for layer in rng]
    assert layers == list(range(plan.model.n_layers))  # stages partition the layers
    ax = plots.system_layout(plan)
    used = [p for p in ax.patches if p.get_fill()]
    spare = [p for p in ax.patches if not p.get_fill()]
    racks = math.ceil(plan.chips / 72)
    assert len(used) == plan.chips and len(used) + len(spare) == racks * 72
    assert ax.get_legend() is not None and len(ax.get_legend().texts) == plan.pp + 1


def test_04_2_bytes_per_chip_within_sram_and_complete(r576):
    shares = pd.DataFrame(shard.chip_bytes(r576.plan, 1, 700))
    m = models.get("llama2-70b")
    assert len(shares) == r576.chips
    held = shares.weights + shares.kv_cache + shares.activations
    assert (held <= CHIP.sram_bytes).all()
    assert shares.weights.sum() >= m.weight_bytes(r576.precision)  # nothing lost (some tensors replicated per rank)
    assert shares.kv_cache.sum() >= m.kv_bytes_per_token(r576.precision) * 700
    top, bottom = plots.chip_bytes_profile(shares, CHIP.sram_bytes)
    assert top.get_ylim()[1] > CHIP.sram_bytes / 1e6  # the SRAM line is on scale
    assert bottom.get_ylim()[1] >= shares.kv_cache.max() / 1e6 and _labelled(bottom)
    i, fullest = serving.fullest_chip(r576.plan, 1, 700)
    assert shares.weights.iloc[i] == shares.weights.max() and fullest.used_bytes >= shares.weights.iloc[i]


def test_04_3_scaling_data_is_consistent():
    df = serving.scaling_with_chips("llama2-7b", chips=(64, 128), precision="int8")
    for row in df.itertuples():
        r = simulate("llama2-7b", chips=row.chips, precision="int8", users=row.users_full, ranges=False)
        assert row.system_tok_s_full == pytest.approx(r.users / r.itl_s)
        assert row.users_full <= int(row.plan.split("x")[0])
    assert (df.system_tok_s_per_chip == df.system_tok_s_full / df.chips).all()
    a, b = plots.scaling_with_chips(df)
    assert _labelled(a) and _labelled(b)


def test_most_users_halves_until_it_fits():
    r = serving.most_users("llama2-70b", 576, 4096, precision="int4", prompt_tokens=128, output_tokens=128)
    assert r.users < 4096
    with pytest.raises(sram.SRAMCapacityError):
        simulate("llama2-70b", chips=576, precision="int4", users=2 * r.users, prompt_tokens=128, output_tokens=128, ranges=False)


# ---- 05: voice turn (waterfall, tornado, sweeps, CDF) --------------------------------------------------------------


def _closed_form(timing, stages, answer_tokens=60):
    """facts.md §7: hop + silence + ASR + hops x hop + TTFT + (first sentence - 1) x ITL + TTS + hop + playout."""
    x = stages.at("nominal")
    k = min(int(round(x["first_sentence_tokens"])), answer_tokens)
    return (x["network_hop_s"] * (2 + timing.hops) + x["silence_timer_s"] + x["asr_final_s"] + timing.ttft_s.nominal
            + (k - 1) * timing.itl_s.nominal + x["tts_first_audio_s"] + x["playout_buffer_s"])


@pytest.mark.parametrize("profile", ["lpu-llama2-70b", "8xh100-llama2-70b", "hosted-api"])
def test_05_turn_is_the_closed_form(profile):
    t = voice.llm_timing(profile)
    # 0.1 ms: the turn times its LLM for its own answer length, a few microseconds away from the default profile
    assert voice.turn(profile).voice_to_voice_s == pytest.approx(_closed_form(t, voice.Stages()), abs=1e-4)


def test_05_llm_stage_is_the_simulators_ttft_and_itl():
    r = simulate("llama2-70b", chips=576, prompt_tokens=550, output_tokens=150)
    t = voice.llm_timing("lpu-llama2-70b")
    assert t.ttft_s.nominal == pytest.approx(r.ttft_s) and t.itl_s.nominal == pytest.approx(r.itl_s)
    g = simulate("llama2-70b", system="h100", chips=8, precision="fp8", prompt_tokens=550, output_tokens=150)
    assert voice.llm_timing("8xh100-llama2-70b").ttft_s.nominal == pytest.approx(g.ttft_s)


def test_05_tornado_and_sweeps_move_one_for_one_with_ttft():
    t = voice.llm_timing("hosted-api")
    sens = voice.sensitivity("hosted-api").set_index("stage")
    assert sens.loc["ttft_s", "swing_s"] == pytest.approx(t.ttft_s.high - t.ttft_s.low)  # the delay is linear in TTFT, slope 1
    assert sens.loc["silence_timer_s", "swing_s"] == pytest.approx(voice.Stages().silence_timer_s.high - voice.Stages().silence_timer_s.low)
    sw = voice.sweep("lpu-llama2-70b", "ttft_s", [0.1, 0.3, 0.7])
    assert np.diff(sw.voice_to_voice_s.to_numpy()) == pytest.approx([0.2, 0.4])
    sp = voice.sweep("lpu-llama2-70b", "output_tokens_per_s", [10, 100, 1000])
    assert sp.voice_to_voice_s.is_monotonic_decreasing
    axes = plots.voice_sweeps(pd.concat([sw, sp]))
    assert all(_labelled(ax) for ax in axes) and "time to first token" in axes[0].get_xlabel()
    ax = plots.voice_sensitivity(voice.sensitivity("hosted-api"))
    assert _labelled(ax) or ax.get_xlabel()


def test_05_3_distribution_p50_and_annotations_inside():
    fixed = voice.Stages().fixed(**voice.Stages().at("nominal"))
    d = voice.monte_carlo("hosted-api", voice.Stages().fixed(**{n: getattr(fixed, n).nominal for n in voice.Stages.names()}), n=2000)
    timing = voice.llm_timing("hosted-api")
    assert d.p50_s >= _closed_form(timing.fixed(ttft_s=timing.ttft_s.low, output_tokens_per_s=1 / timing.itl_s.low), fixed) - 1e-9
    assert d.p50_s <= _closed_form(timing.fixed(ttft_s=timing.ttft_s.high, output_tokens_per_s=1 / timing.itl_s.high), fixed) + 1e-9
    ax = plots.voice_distribution([voice.monte_carlo(p, n=2000) for p in ("lpu-llama2-70b", "hosted-api")])
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    for txt in ax.texts:
        x, y = txt.xy if hasattr(txt, "xy") else txt.get_position()
        if getattr(txt, "xycoords", "data") == "data":
            assert x0 <= x <= x1 and y0 <= y <= y1, txt.get_text()
    assert _labelled(ax)


# ---- 06_1 latency against speed, 06_2 throughput against users, cost sensitivity, tables ----------------------------


def test_06_1_points_obey_the_memory_bound_and_their_ranges():
    pts = serving.latency_vs_speed(models=("llama2-7b",), users=(1,), gpus=("h100",), gpu_counts=(1, 2))
    assert set(pts.system) == {"lpu-v1", "h100"}
    assert ((pts.tok_s_low <= pts.tok_s + 1e-9) & (pts.tok_s <= pts.tok_s_high + 1e-9)).all()
    h100 = hardware.get("h100")
    for r in pts[pts.system == "h100"].itertuples():
        bound = r.chips * h100.hbm_bandwidth_Bps / models.get("llama2-7b").weight_bytes(r.precision)
        assert r.tok_s <= bound  # no GPU decodes faster than it can read its weights
    axes = plots.latency_vs_speed(pts, {"llama2-7b": {"published 750": 750.0}})
    assert all(_labelled(ax) for ax in axes) and any("x2" in t.get_text() for t in axes[0].texts)
    assert any("published" in t.get_text() for t in axes[0].texts)


def test_06_2_throughput_is_users_times_speed():
    thr = serving.throughput_vs_users(systems=(("h100", 8, "fp8"),), users=(1, 16, 64))
    assert np.allclose(thr.system_tok_s, thr.users * thr.per_user_tok_s)
    assert thr.system_tok_s.is_monotonic_increasing and thr.per_user_tok_s.is_monotonic_decreasing
    a, b = plots.throughput_vs_users(thr)
    assert _labelled(a) and _labelled(b) and "users" in a.get_xlabel()


def test_cost_sensitivity_crosses_the_price_at_the_breakeven():
    tok_s, chips, target = 200_000.0, 576, claims.MIXTRAL_PRICE_USD_PER_M
    be = claims.breakeven_card_price_usd(tok_s, chips, target)
    prices = np.geomspace(100, 20_000, 30)
    cost = claims.cost_at_card_price(tok_s, chips, prices)
    assert (cost[prices < be] < target).all() and (cost[prices > be] > target).all()
    assert cost[0] > metrics.cost_breakdown_usd_per_million("lpu-v1", chips, tok_s, price_usd=100.0)["energy_usd"]
    ax = plots.cost_vs_card_price(prices, cost, target, be, claims.LPU_CARD_PRICE_USD)
    assert _labelled(ax)


def test_html_table_wraps():
    html = plots.html_table(pd.DataFrame(dict(claim=["a long claim " * 10], verdict=["holds"]))).to_html()
    assert "white-space: normal" in html and "<table" in html


# ---- 02: the schedule's Gantt and the batch sweep; 04_4 users in flight; 05 waterfall ------------------------------


def test_02_1_gantt_bars_are_the_timeline():
    from lpu import schedule

    tl = schedule.schedule_decode("stories110M", CHIP, 1, 255, "int8")
    df = tl.to_dataframe()
    assert (df.end > df.start).all() and df.op_end.max() == tl.cycles  # every op inside the step, the last one (with its latency) ends it
    ax = plots.gantt(tl)
    drawn = sum(len(c.get_paths()) for c in ax.collections)
    assert drawn == len(df) and _labelled(ax) and "us" in ax.get_xlabel()


def test_02_3_batch_reuses_streamed_weights():
    from lpu import schedule

    big = schedule.what_if_chip(24e9)
    steps = [schedule.schedule_decode("llama2-7b", big, batch=b, context_tokens=255, precision="int8") for b in (1, 4, 16)]
    lat = [t.latency_s for t in steps]
    assert lat == sorted(lat)  # more users never make a step faster
    assert lat[-1] < 16 * lat[0] / 4  # ...but 16 users cost far less than 16 steps: the weights stream once
    assert all(t.graph.totals()["weight_bytes"] == steps[0].graph.totals()["weight_bytes"] for t in steps)


def test_04_4_users_in_flight_conserve_throughput():
    df = serving.users_in_flight("llama2-7b", chips=64, users=(1, 8, 4096), prompt_tokens=64, output_tokens=64)
    assert np.allclose(df.system_tok_s, df.users * df.per_user_tok_s)
    assert df.attrs["stopped"] is None or df.attrs["stopped"].startswith("4096 users")


def test_05_1_waterfall_stages_add_up_to_the_delay():
    t = voice.turn("lpu-llama2-70b")
    st = t.stages()
    path = st[~st.stage.str.contains("overlaps|playing")]
    assert path.start_s.iloc[0] == 0 and path.end_s.max() == pytest.approx(t.voice_to_voice_s)
    assert (path.end_s.to_numpy()[:-1] <= path.start_s.to_numpy()[1:] + 1e-12).all()  # one after another, no overlap on the path
    assert (path.end_s - path.start_s).sum() == pytest.approx(t.voice_to_voice_s)  # and no gaps: the durations add up
    ax = plots.voice_waterfall({"LPU": t})
    assert _labelled(ax)


@pytest.mark.parametrize("draw", [plots.stream_bandwidth_vs_slices,
                                  lambda: plots.voice_gantt(voice.turn("hosted-api").stages()),
                                  lambda: plots.voice_sensitivity(voice.sensitivity("hosted-api"))])
def test_other_figures_label_their_axes(draw):
    assert _labelled(draw())


def test_01_1_floorplan_does_not_state_the_plane_count_as_fact():
    ax = plots.chip_floorplan()
    assert any("unconfirmed" in t.get_text() for t in ax.texts)


def test_explorers_show_a_static_image_of_their_default_state(monkeypatch):
    from IPython.display import Image

    from lpu import widgets

    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objs: shown.extend(objs))
    widgets.schedule_explorer("stories110M")
    images = [o for o in shown if isinstance(o, Image)]
    assert len(images) == 1 and images[0].data[:8] == b"\x89PNG\r\n\x1a\n"  # a real PNG, shown once under the widget
