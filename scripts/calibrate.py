"""Fit the simulator's fitted parameters on their calibration rows, and print what to record in the code.

    .venv/bin/python scripts/calibrate.py            # the LPU system term (lpu/system.py) and the hosted-API term (lpu/result.py)
    .venv/bin/python scripts/calibrate.py --gpu      # the GPU server's fp8_speedup, to record in lpu/gpu.py

LPU system term. The anchor is the one ``role == calibration`` LPU output-speed row of
lpu/data/published.csv: Groq serving Llama 2 70B at 241 output tokens/s per user on 576 chips
(ArtificialAnalysis, Feb 2024). The physics (``lpu.system.NOMINAL``: every cost at the
architecture's nominal values) gives the inter-token latency P and the decode step's longest
chain of N dependent compute ops; the system term is ``system_op_s = (1/241 s - P) / N``, exact
because the step time is linear in it. Its range: the same fit on each ``calibration-spread``
row (the same system measured by LLMPerf in Jan 2024), with the physics at nominal values.

Hosted-API term. The ArtificialAnalysis measurement behind the anchor also reports 0.8 s total
for 100 output tokens through Groq's API; ``hosted_api_s`` = 0.8 s - the simulated total on the
chips. Range: LLMPerf's TTFT quartiles on the same API less the simulated TTFT on the chips,
up to the fitted value. Every other published figure is a prediction.
"""

from __future__ import annotations

from lpu import published, system

CONDITIONS = dict(model="llama2-70b", chips=published.lpu_system_chips(), users=1, prompt_tokens=550, output_tokens=150)


def physics():
    """The calibration system's physics: (Result with the system term at 0, its decode step's dependent compute ops)."""
    r = system.simulate(CONDITIONS["model"], chips=CONDITIONS["chips"], users=CONDITIONS["users"], prompt_tokens=CONDITIONS["prompt_tokens"],
                        output_tokens=CONDITIONS["output_tokens"], ranges=False, system_op_s=0.0)
    return r, int(system.chain_depth(r.decode.graph).max())


def system_op_s(output_tokens_per_s: float) -> float:
    r, ops = physics()
    return (1 / output_tokens_per_s - r.itl_s) / ops


def rows(role: str, metric: str):
    df = published.table()
    return df[(df.system == "lpu-v1") & (df.model == CONDITIONS["model"]) & (df.role == role) & (df.metric == metric)]


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
    anchor = float(rows("calibration", "output_tokens_per_s").value.iloc[0])
    spread = [anchor, *rows("calibration-spread", "output_tokens_per_s").value]
    r, ops = physics()
    fit = system_op_s(anchor)
    low, high = min(system_op_s(v) for v in spread), max(system_op_s(v) for v in spread)
    print(f"anchor: {anchor:g} tok/s ({CONDITIONS['model']} on {CONDITIONS['chips']} chips, users 1, prompt 550, output 150)")
    print(f"physics: {r.itl_s * 1e3:.4f} ms per token ({r.output_tokens_per_s:.0f} tok/s), {ops} dependent compute ops per decode step")
    print(f"fitted system_op_s = {fit * 1e6:.4f} us (range {low * 1e6:.4f}-{high * 1e6:.4f} us over {min(spread):g}-{max(spread):g} tok/s); "
          f"the system term is {fit * ops / (1 / anchor):.1%} of the anchor's token")
    print(f"record in lpu/system.py: SYSTEM_OP_S value {fit:.4e}, low {low:.4e}, high {high:.4e}")

    total = float(rows("calibration", "total_time_s").value.iloc[0])
    out = int(rows("calibration", "total_time_s").output_tokens.iloc[0])
    chips_only = system.simulate(CONDITIONS["model"], chips=CONDITIONS["chips"], prompt_tokens=CONDITIONS["prompt_tokens"], output_tokens=out,
                                 ranges=False, system_op_s=fit)
    hosted = total - chips_only.total_time_s
    ttfts = rows("calibration-spread", "ttft_s").value
    lo_h, hi_h = min(min(ttfts) - chips_only.ttft_s, hosted), max(max(ttfts) - chips_only.ttft_s, hosted)
    print(f"hosted anchor: {total:g} s for {out} tokens; on the chips {chips_only.total_time_s:.4f} s (TTFT {chips_only.ttft_s * 1e3:.1f} ms)")
    print(f"fitted hosted_api_s = {hosted:.4f} s (range {lo_h:.4f}-{hi_h:.4f} s from LLMPerf TTFT {min(ttfts):g}-{max(ttfts):g} s)")
    print(f"record in lpu/result.py: HOSTED_API_S value {hosted:.4f}, low {lo_h:.4f}, high {hi_h:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
