"""The design space (lpu.design, the what-if chips, the committed CSV, notebook 07's figures) against independent references."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from lpu import cli, design, hardware, metrics, models, plots
from lpu.system import SYSTEM_OP_S, simulate

V1 = hardware.get("lpu-v1")


@pytest.fixture(scope="module")
def csv():
    return design.load()


# ---- the what-if chips ---------------------------------------------------------------------------------------------


def test_what_ifs_are_labelled_and_change_only_what_they_say():
    assert {c.name for c in hardware.WHAT_IFS} == set(design.LPU_SYSTEMS) - {"lpu-v1"}
    for chip in hardware.WHAT_IFS:
        assert "whatif" in chip.name and chip.source.startswith("WHAT-IF")
        for f in dataclasses.fields(hardware.ChipSpec):
            if f.name in ("name", "source", "sources", "ranges"):
                continue
            src = chip.source_of(f.name)
            assert src.startswith(("WHAT-IF", "as lpu-v1")), (chip.name, f.name, src)
            if getattr(chip, f.name) != getattr(V1, f.name):  # every changed value says it is a what-if
                assert src.startswith("WHAT-IF"), (chip.name, f.name)


def test_what_if_numbers_follow_from_their_sources():
    w4, stacked, hops = (hardware.get(n) for n in ("lpu-whatif-4nm", "lpu-whatif-stacked-sram", "lpu-whatif-fast-hops"))
    assert 500e6 <= w4.sram_bytes < 500e6 + w4.mem_slices * w4.word_bytes  # the reported 500 MB, to one word per slice
    assert w4.peak_int8_ops_per_s * 256 == pytest.approx(315e15)  # 315 PFLOPS FP8 per 256-LPU rack
    assert 2 * w4.mxm_macs_per_cycle * w4.clock_hz == pytest.approx(w4.peak_int8_ops_per_s)  # the clock is the one that gives it
    assert w4.c2c_bandwidth_Bps * 2 * 256 == pytest.approx(640e12)  # 640 TB/s per rack, both directions
    assert w4.c2c_links * w4.c2c_link_bandwidth_Bps == pytest.approx(w4.c2c_bandwidth_Bps)
    assert stacked.sram_bytes == 2 * V1.sram_bytes and hops.c2c_hop_latency_s == pytest.approx(V1.c2c_hop_latency_s / 3)
    for chip in hardware.WHAT_IFS:
        for corner in ("low", "nominal", "high"):
            c = chip.corner(corner)
            assert c.stream_bandwidth_Bps <= c.sram_bandwidth_Bps


def test_v1_is_untouched():
    assert V1.sram_bytes == 220 * 2**20 and V1.clock_hz == 900e6 and V1.c2c_hop_latency_s == 300e-9
    assert hardware.names()[0] == "lpu-v1"


@pytest.mark.parametrize("name", [c.name for c in hardware.WHAT_IFS])
def test_what_ifs_in_lpu_specs(name, capsys):
    assert cli.main(["specs", name]) == 0
    out = capsys.readouterr().out
    assert f"{name}: every field" in out and "WHAT-IF" in out
    changed = [f.name for f in dataclasses.fields(hardware.ChipSpec)
               if f.name not in ("name", "source", "sources", "ranges") and getattr(hardware.get(name), f.name) != getattr(V1, f.name)]
    for field in changed:
        line = next(line for line in out.splitlines() if line.startswith(field + " "))
        assert "WHAT-IF" in line


def test_what_ifs_simulate_and_the_system_term_is_v1s():
    base = simulate("llama2-70b", chips=576, precision="int8", ranges=False)
    for chip in hardware.WHAT_IFS:
        r = simulate("llama2-70b", system=chip.name, chips=576, precision="int8", ranges=False)
        phys = simulate("llama2-70b", system=chip.name, chips=576, precision="int8", ranges=False, system_op_s=0.0)
        # the system term is carried in seconds: the same dependent-op count as v1 (same plan shapes) pays the same
        ops = (r.itl_s - phys.itl_s) / SYSTEM_OP_S.value
        assert ops == pytest.approx((base.itl_s - simulate("llama2-70b", chips=576, precision="int8", ranges=False,
                                                          system_op_s=0.0).itl_s) / SYSTEM_OP_S.value, rel=0.05)
        assert r.system == chip.name
    assert design.clock_scaled_op_s("lpu-v1") == SYSTEM_OP_S.value
    w4 = hardware.get("lpu-whatif-4nm")
    assert design.clock_scaled_op_s("lpu-whatif-4nm") == pytest.approx(SYSTEM_OP_S.value * 900e6 / w4.clock_hz)
    with pytest.raises(ValueError, match="system must be an LPU chip"):
        design.clock_scaled_op_s("h100")


# ---- Pareto front and the cheapest configuration at a speed target ---------------------------------------------------


def _brute_front(d, speed="output_tokens_per_s", cost="usd_per_m_tokens"):
    """Indices of rows no other row dominates (at least as fast and as cheap, better on one), pairwise."""
    s, c = d[speed].to_numpy(), d[cost].to_numpy()
    keep = []
    for i in range(len(d)):
        dominated = any(s[j] >= s[i] and c[j] <= c[i] and (s[j] > s[i] or c[j] < c[i]) for j in range(len(d)) if j != i)
        if not dominated:
            keep.append(d.index[i])
    return set(keep)


def _synthetic(seed, n=300):
    rng = np.random.default_rng(seed)
    d = pd.DataFrame(dict(output_tokens_per_s=rng.integers(1, 40, n).astype(float) * 10,  # coarse values: ties happen
                          usd_per_m_tokens=rng.integers(1, 60, n).astype(float) / 4,
                          model=rng.choice(["a", "b"], n), system=rng.choice(["x", "y", "z"], n)))
    d["error"] = pd.Series([None] * n, dtype=object)
    d.loc[d.index[::17], "error"] = "does not fit"
    return d


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_against_brute_force(seed):
    d = _synthetic(seed)
    ran = d[d.error.isna()]
    front = design.pareto_front(d)
    assert set(front.index) == _brute_front(ran)
    assert front.usd_per_m_tokens.is_monotonic_increasing and front.output_tokens_per_s.is_monotonic_increasing
    others = ran.drop(front.index)
    for _, r in others.iterrows():  # every point off the front is dominated by a point on it
        assert ((front.output_tokens_per_s >= r.output_tokens_per_s) & (front.usd_per_m_tokens <= r.usd_per_m_tokens)
                & ((front.output_tokens_per_s > r.output_tokens_per_s) | (front.usd_per_m_tokens < r.usd_per_m_tokens))).any()
    target = float(ran.output_tokens_per_s.median())
    assert set(design.pareto_front(d, min_speed=target).index) == _brute_front(ran[ran.output_tokens_per_s >= target])


@pytest.mark.parametrize("seed", range(3))
def test_cheapest_at_speed_against_brute_force(seed):
    d = _synthetic(seed)
    target = 150.0
    got = design.cheapest_at_speed(d, target)
    ran = d[d.error.isna() & (d.output_tokens_per_s >= target)]
    for (m, s), g in ran.groupby(["model", "system"]):
        row = got[(got.model == m) & (got.system == s)]
        assert len(row) == 1 and row.usd_per_m_tokens.iloc[0] == g.usd_per_m_tokens.min()
    assert len(got) == ran.groupby(["model", "system"]).ngroups
    with pytest.raises(ValueError, match="min_speed must be a positive"):
        design.cheapest_at_speed(d, 0)
    with pytest.raises(ValueError, match="no column 'tok_s'"):
        design.pareto_front(d, speed="tok_s")


# ---- which models fit on one rack ----------------------------------------------------------------------------------


def test_rack_is_64_compute_chips():
    assert design.RACK_CHIPS == 64 == 8 * hardware.get("groqnode").chips


def test_rack_fit_against_the_closed_form():
    fit = design.rack_fit(("llama2-7b", "mixtral-8x7b", "llama2-70b"), ("lpu-v1", "lpu-whatif-4nm"), ("fp16", "int8"))
    assert len(fit) == 3 * 2 * 2
    for r in fit.itertuples():
        m, chip = models.get(r.model), hardware.get(r.system)
        weights = m.weight_bytes(r.precision)
        rack = 64 * chip.sram_bytes
        assert r.rack_sram_gb == pytest.approx(rack / 1e9)
        if weights > rack:  # closed form: weights alone exceed the rack's SRAM -> nothing can place them
            assert not r.fits
        if r.fits:
            assert weights <= rack and r.capacity_chips <= 64 and r.tok_s > 0
        if weights < 0.5 * rack:  # half the rack's SRAM left for KV, activations, reserve and uneven shards: it places
            assert r.fits, r
    # Llama 2 70B at int8 is 69 GB: more than 64 v1 chips (14.8 GB) or 64 4 nm what-ifs (32 GB) hold
    assert not fit[(fit.model == "llama2-70b")].fits.any()
    with pytest.raises(ValueError, match="rack_chips must be a positive integer"):
        design.rack_fit(rack_chips=0)
    with pytest.raises(ValueError, match="systems must be LPU chips"):
        design.rack_fit(("llama2-7b",), ("h100",), ("fp16",))


# ---- the committed CSV ---------------------------------------------------------------------------------------------


def test_csv_is_the_grid_small_and_complete(csv):
    g = design.grid()
    assert len(csv) == len(g) and design.CSV_PATH.stat().st_size < 1.5e6
    assert (csv[list(g.columns)].astype(str).to_numpy() == g.astype(str).to_numpy()).all()  # the grid's rows, in order
    ran = csv.error.isna()
    assert ran.sum() > 0.3 * len(csv) and (~ran).sum() > 0
    assert csv.loc[ran, ["output_tokens_per_s", "usd_per_m_tokens", "usd_per_m_tokens_low", "usd_per_m_tokens_high"]].notna().all().all()
    r = csv[ran]
    assert (r.usd_per_m_tokens_low <= r.usd_per_m_tokens).all() and (r.usd_per_m_tokens <= r.usd_per_m_tokens_high).all()
    assert (r.output_tokens_per_s_low <= r.output_tokens_per_s * (1 + 1e-12)).all()
    assert np.allclose(r.system_tokens_per_s, r.users * r.output_tokens_per_s)


def test_csv_costs_are_metrics_costs(csv):
    r = csv[csv.error.isna()].iloc[::97]
    for row in r.itertuples():
        assert row.usd_per_m_tokens == pytest.approx(metrics.cost_per_million_tokens_usd(row.system, int(row.chips), row.system_tokens_per_s))


def test_csv_is_reproducible(csv):
    """A slice of the grid (LPU generations and GPUs, rows that run and rows that do not) re-run through lpu.sweep now."""
    picks = [i for s in design.LPU_SYSTEMS + design.GPU_SYSTEMS for i in csv.index[csv.system == s][::150][:3]]
    picks += list(csv.index[csv.error.notna()][:2])
    picks = sorted(set(picks))
    cols = list(design.grid().columns)
    again = design.run(csv.loc[picks, cols].reset_index(drop=True), workers=1, progress=False)
    committed = csv.loc[picks].reset_index(drop=True)
    shared = [c for c in committed.columns if c in again.columns]
    assert set(committed.columns) - set(shared) <= {c for c in committed.columns if committed[c].isna().all() or c.startswith("breakdown_")}
    pd.testing.assert_frame_equal(again[shared], committed[shared], check_exact=False, rtol=1e-9, check_dtype=False)


# ---- figures (notebook 07) -----------------------------------------------------------------------------------------


def test_07_design_space_points_are_the_csv_rows(csv):
    d = csv[(csv.model == "llama2-70b") & csv.error.isna()]
    front = design.pareto_front(d)
    ax = plots.design_space(csv, "llama2-70b", front=front, min_speed=200, point=(1.0, 250.0, "here"))
    pts = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) and c.get_sizes()[0] < 100])
    assert len(pts) == len(d)
    assert set(map(tuple, pts)) == set(zip(d.usd_per_m_tokens, d.output_tokens_per_s))
    step = ax.lines[0]
    assert list(step.get_xdata()) == list(front.sort_values("usd_per_m_tokens").usd_per_m_tokens)
    assert ax.get_xscale() == "log" and "USD" in ax.get_xlabel() and "tok/s" in ax.get_ylabel()
    with pytest.raises(ValueError, match="no configuration of 'nope'"):
        plots.design_space(csv, "nope")


def test_07_cheapest_bars_are_the_table(csv):
    cheap = design.cheapest_at_speed(csv, 200.0)
    ax = plots.cheapest_by_system(cheap, 200.0)
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(sorted(cheap.usd_per_m_tokens))
    assert ax.get_yscale() == "log" and ax.get_ylabel() and ax.get_xlabel()


def test_07_explorer_shows_a_static_image_of_its_default_state(monkeypatch):
    from IPython.display import Image

    from lpu import widgets

    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objs: shown.extend(objs))
    widgets.design_explorer()
    images = [o for o in shown if isinstance(o, Image)]
    assert len(images) == 1 and images[0].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_is_the_cartesian_product():
    g = design.grid(("llama2-7b",), ("lpu-v1",), (64,), ("int8",), (1, 8), ("h100",), (8,), ("fp8",))
    assert g.to_dict("records") == [dict(model="llama2-7b", system=s, chips=c, precision=p, users=u)
                                    for (s, c, p), u in itertools.product([("lpu-v1", 64, "int8"), ("h100", 8, "fp8")], (1, 8))]
