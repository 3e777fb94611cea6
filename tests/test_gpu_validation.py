import pytest

import lpu
from lpu import cli, gpu, graph, hardware, models, plots, published, speculation, validation

H100 = hardware.get("h100")


@pytest.mark.parametrize("model, chips, precision, users", [("llama2-7b", 1, "bf16", 1), ("llama2-70b", 4, "fp8", 1),
                                                             ("llama2-13b", 2, "bf16", 32), ("mixtral-8x7b", 8, "fp8", 4)])
def test_gpu_never_beats_physical_bounds(model, chips, precision, users):
    r = lpu.simulate(model, system="h100", chips=chips, precision=precision, users=users, prompt_tokens=512, output_tokens=64)
    t = graph.decode(model, users, 512 + 32, precision).totals()
    assert r.itl_s >= (t["weight_bytes"] + t["kv_bytes"]) / chips / H100.hbm_bandwidth_Bps
    assert r.itl_s >= t["flops"] / chips / H100.peak_ops_per_s("fp8" if precision == "fp8" else "bf16")
    pre = graph.prefill(model, 512, 0, precision).totals()
    assert r.ttft_s >= pre["flops"] / chips / H100.peak_ops_per_s("fp8" if precision == "fp8" else "bf16")
    lo, hi = r.ranges["itl_s"]
    assert lo <= r.itl_s <= hi and r.plan is None and abs(sum(r.breakdown().values()) - 1) < 1e-9


def test_calibration_anchor_is_reproduced_and_within_range():
    row = published.table().query("system == 'h100' and role == 'calibration'").iloc[0]
    assert gpu.serving_for(row.conditions) == "ideal"  # TensorRT-LLM's C++ benchmark: no serving stack
    r = lpu.simulate(row.model, system="h100", chips=int(row.chips), precision=row.precision, prompt_tokens=int(row.prompt_tokens), output_tokens=1,
                     serving="ideal")
    assert r.ttft_s == pytest.approx(row.value, rel=0.001)
    lo, hi = r.ranges["ttft_s"]
    assert lo < row.value < hi  # the fitted parameter's own range reaches the ranges
    fit, = gpu.FITTED
    assert fit in lpu.fitted() and fit.family == "GPU server" and fit.value == gpu.CALIBRATED.fp8_speedup
    assert gpu.GPUParams.RANGES["fp8_speedup"][0] <= fit.low < fit.value < fit.high <= gpu.GPUParams.RANGES["fp8_speedup"][1]


def test_the_recorded_fit_is_what_refitting_gives():
    """scripts/calibrate.py --gpu: the value at the nominal un-fitted parameters, the range from refits at their corners."""
    row = published.table().query("system == 'h100' and role == 'calibration'").iloc[0]
    args = (row.value, row.model, row.system, int(row.chips), row.precision, int(row.prompt_tokens), "ideal")
    fit, = gpu.FITTED
    assert gpu.fit_fp8_speedup(*args) == pytest.approx(fit.value, abs=2e-4)
    assert gpu.fit_fp8_speedup(*args, base=gpu.CALIBRATED.corner("fast")) == pytest.approx(fit.low, abs=2e-4)
    with pytest.raises(ValueError, match="outside what fp8_speedup"):  # the slow corner cannot reach 109 ms even at 2x: the range ends there
        gpu.fit_fp8_speedup(*args, base=gpu.CALIBRATED.corner("slow"))
    assert fit.high == gpu.GPUParams.RANGES["fp8_speedup"][1]


def test_tensor_parallel_trades_streaming_for_nvlink():
    one = lpu.simulate("llama2-13b", system="h100", chips=1, precision="bf16", ranges=False)
    four = lpu.simulate("llama2-13b", system="h100", chips=4, precision="bf16", ranges=False)
    assert four.itl_s < one.itl_s and four.breakdown()["nvlink"] > 0 == one.breakdown()["nvlink"]


def test_capacity_choices_and_errors():
    r = lpu.simulate("llama2-70b", system="h100", ranges=False)  # precision and chips chosen: the fewest GPUs at the highest fitting precision
    assert (r.chips, r.precision) == (1, "fp8")
    assert lpu.simulate("llama2-70b", system="h200", chips=1, precision="bf16", ranges=False).chips == 1  # measured to fit (lpu/data/published.csv)
    with pytest.raises(ValueError, match="short by"):
        lpu.simulate("llama2-70b", system="h100", chips=1, precision="bf16")
    with pytest.raises(ValueError, match="no FP8"):
        lpu.simulate("llama2-7b", system="a100", chips=1, precision="fp8")
    with pytest.raises(ValueError, match="one of"):
        lpu.simulate("llama2-7b", system="h100", chips=3)
    with pytest.raises(ValueError, match="outside its range"):
        gpu.GPUParams(hbm_efficiency=1.5)


def test_validation_table_covers_every_published_row():
    df = validation.table()
    assert len(df) == len(published.table())
    assert (df.predicted > 0).all() and (df.low <= df.predicted).all() and (df.predicted <= df.high).all()
    cal = df[df.role == "calibration"]
    assert (cal.error.abs() < 0.01).all()  # fitted rows reproduce
    s = validation.summary(df)
    assert s["rows"] == len(df[(df.role == "validation") & df.modelled]) and 0 <= s["inside"] <= s["rows"]
    assert s["median_abs_error"] <= s["worst_abs_error"]
    verify = df[(df.metric == "verify_s") & (df.role == "validation")]
    assert s["gpu_verify"]["rows"] == len(verify) <= s["gpu"]["rows"] and s["gpu_verify"]["inside"] == int(verify.inside.sum())
    assert set(df.system) == {"lpu-v1", "a100", "h100", "h200"} and models.get("llama2-70b")
    gpu_rows = published.table().query("system != 'lpu-v1'")
    assert {validation.serving(r) for r in gpu_rows.itertuples()} == {"ideal"}  # every GPU row so far was measured without a serving stack


def test_lpu_bench_prints_the_table(capsys):
    assert cli.main(["bench"]) == 0
    out = capsys.readouterr().out
    assert "median |error|" in out and "calibration" in out and "h200" in out
    assert "out/rows" in out and "speculative verify steps: 40 rows" in out


def test_verify_rows_are_the_simulators_verify_step_beside_their_measurement():
    """The data behind notebook 03's verify-cost figure (lpu.plots.verify_cost)."""
    steps = validation.verify_steps()
    assert len(steps) == len(published.table().query("metric == 'verify_s'")) >= 40 and set(steps.system) == {"h200"}
    for r in steps.itertuples():
        assert (r.predicted_s, r.low_s, r.high_s) == pytest.approx(speculation.gpu_verify_s(r.model, r.system, 1, "bf16", r.users, r.rows, 551,
                                                                                            "ideal"))
        assert r.error == pytest.approx(r.predicted_s / r.measured_s - 1) and r.inside == (r.low_s <= r.measured_s <= r.high_s)
    one = steps[steps.rows == 1]
    assert (one.measured_over_one_row == 1).all() and (one.predicted_over_one_row == 1).all()
    itl = validation.predict(published.table().query("metric == 'itl_s' and system == 'h200' and batch == 1").iloc[0])
    assert itl == pytest.approx(tuple(one.query("model == 'llama2-70b' and users == 1")[["predicted_s", "low_s", "high_s"]].iloc[0]))
    # more rows never cost less than one, nor more than running them one step each (a physical bound on the measurements)
    assert (steps.measured_over_one_row >= 1).all() and (steps.measured_over_one_row <= steps.rows).all()
    axes = plots.verify_cost(steps)
    assert len(axes) == steps.users.nunique() and all(ax.get_xlabel() for ax in axes) and axes[0].get_ylabel()


def test_a_verify_row_of_the_lpu_has_no_prediction():
    row = published.table().query("metric == 'verify_s'").iloc[0].copy()
    row["system"] = "lpu-v1"
    with pytest.raises(ValueError, match="verify_s rows of the LPU"):
        validation.predict(row)
