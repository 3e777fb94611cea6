"""Fit the simulator's one free parameter on the LPU calibration anchor, and print the result to record in lpu/system.py.

    .venv/bin/python scripts/calibrate.py
    .venv/bin/python scripts/calibrate.py --gpu    # the GPU server's fp8_speedup, to record in lpu/gpu.py

The anchor is the only ``role == calibration`` LPU row of lpu/data/published.csv:
Groq serving Llama 2 70B at 241 output tokens/s per user on 568-576 chips
(ArtificialAnalysis, Feb 2024). We fit ``op_latency_cycles`` (the latency
between dependent ops; see lpu.schedule.CostParams) so that
``lpu.simulate("llama2-70b", chips=576, users=1)`` predicts 241 tok/s, with
``stream_efficiency`` kept at its nominal 1.0: one anchor pins one parameter.
The output speed falls monotonically as the latency grows, so a bisection
over whole cycles finds the fit. Every other published figure is a prediction.
"""

from __future__ import annotations

from lpu import published, schedule, system

ANCHOR = dict(system="lpu-v1", model="llama2-70b", metric="output_tokens_per_s", role="calibration")
CONDITIONS = dict(chips=published.lpu_system_chips(), users=1, prompt_tokens=550, output_tokens=150)


def speed(latency_cycles: int) -> float:
    params = schedule.CostParams(op_latency_cycles=latency_cycles)
    return system.simulate(ANCHOR["model"], chips=CONDITIONS["chips"], users=CONDITIONS["users"], prompt_tokens=CONDITIONS["prompt_tokens"],
                             output_tokens=CONDITIONS["output_tokens"], params=params, ranges=False).output_tokens_per_s


def calibrate_gpu() -> int:
    """Fit ``fp8_speedup`` on the H100 calibration row (its own serving profile), then refit it with every un-fitted
    GPUParams at its fast and at its slow end: that spread (clipped to the physical 1-2x) is the fitted range."""
    from dataclasses import replace

    from lpu import gpu

    row = published.table().query("system == 'h100' and role == 'calibration'").iloc[0]
    args = (row.value, row.model, row.system, int(row.chips), row.precision, int(row.prompt_tokens), gpu.serving_for(row.conditions))
    nominal = replace(gpu.CALIBRATED, fp8_speedup=gpu.GPUParams().fp8_speedup)
    fit = gpu.fit_fp8_speedup(*args, base=nominal)
    lo, hi = gpu.GPUParams.RANGES["fp8_speedup"]
    ends = []
    for corner, clip in (("fast", lo), ("slow", hi)):
        try:
            ends.append(gpu.fit_fp8_speedup(*args, base=nominal.corner(corner)))
        except ValueError:  # no speed-up in range reproduces the row at this corner: the range stops at its bound
            ends.append(clip)
    print(f"anchor: {row.value} s to first token ({row.model}, {int(row.chips)} x {row.system}, {row.precision}, "
          f"prompt {int(row.prompt_tokens)}, serving {args[-1]})")
    print(f"fitted fp8_speedup = {fit} (refitted at the fast / slow corners: {ends[0]} / {ends[1]})")
    print(f"record in lpu/gpu.py: CALIBRATED = GPUParams(fp8_speedup={fit}); FITTED range {min(ends)}-{max(ends)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    if "--gpu" in (sys.argv[1:] if argv is None else argv):
        return calibrate_gpu()
    target = published.value(**ANCHOR)
    lo, hi = schedule.CostParams.RANGES["op_latency_cycles"]
    if not speed(hi) <= target <= speed(lo):
        raise SystemExit(f"the anchor {target} tok/s is outside what op_latency_cycles in [{lo}, {hi}] can give: {speed(hi):.0f}-{speed(lo):.0f}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if speed(mid) > target else (lo, mid)
    fit = lo if abs(speed(lo) - target) <= abs(speed(hi) - target) else hi
    prior = schedule.CostParams.PRIOR["op_latency_cycles"]
    print(f"anchor: {target:g} tok/s ({ANCHOR['model']} on {CONDITIONS['chips']} chips, users={CONDITIONS['users']}, "
          f"prompt {CONDITIONS['prompt_tokens']}, output {CONDITIONS['output_tokens']})")
    print(f"fitted op_latency_cycles = {fit} -> {speed(fit):.1f} tok/s (prior range from the architecture: {prior[0]}-{prior[1]} cycles; "
          f"nominal {schedule.CostParams().op_latency_cycles})")
    print(f"record in lpu/system.py: CALIBRATED = schedule.CostParams(op_latency_cycles={fit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
