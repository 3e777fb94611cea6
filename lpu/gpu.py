"""The GPU baseline: the same questions, answered for A100 / H100 / H200 servers, in the same `Result`.

A decode step on N GPUs (tensor parallel over NVLink) streams each GPU's
share of the weights and KV cache from HBM, or, at large batches, is bound by
tensor-core FLOPs; every layer pays kernel-launch and synchronisation time,
and two all-reduces over NVLink. Prefill is FLOPs over achievable tensor-core
throughput plus the same communication. Every constant is a `GPUParams` field
with a reason and a range; only ``prefill_mfu`` is fitted, on the H100
calibration anchor (TensorRT-LLM, Llama 70B FP8 on 4 GPUs, 109 ms to the first
token of a 2,048-token prompt) by ``scripts/calibrate.py --gpu``. Introduced in
``notebooks/06_benchmarks.ipynb`` (with the measured GPU rows of
``lpu/data/published.csv`` as validation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import graph, hardware, models

PRECISION_ORDER = ("bf16", "fp8", "int8", "int4")  # precision=None: the first that fits
TP_DEGREES = (1, 2, 4, 8)  # tensor parallelism inside one NVLink server


@dataclass(frozen=True)
class GPUParams:
    """GPU cost-model constants, each with a reason and a range (``RANGES``).

    hbm_efficiency
        Share of peak HBM bandwidth that decode's matrix-vector products sustain.
        Measured by ``scripts/gpu_microbench.py`` on a lent H100 80GB HBM3 (PyTorch
        2.11, cuBLAS bf16 GEMV, a different matrix each call, 2026-11-24): 55% of
        3.35 TB/s at 4096x4096, 71% at 11008x4096, 81% at 8192x8192, 86% at
        28672x8192 (a 2 GiB copy: 88%). Nominal 0.75, range 0.55-0.86.
    layer_overhead_s
        Per layer per step: the small kernels between the matrix products
        (norms, RoPE, attention, residuals, activations), ~8 of them in a fused
        serving stack, ~20 in plain PyTorch, at 1.0 us each as measured for tiny
        kernels replayed from a CUDA graph (``scripts/gpu_microbench.py``, same
        run). Nominal 8 us, range 4-20 us.
    allreduce_latency_s
        Fixed latency of one small all-reduce over NVLink (NCCL, within a server).
        Assumption from NCCL's small-message regime; range 5-20 us.
    nvlink_efficiency
        Share of NVLink bandwidth a large all-reduce achieves. Assumption, 0.6-0.9.
    prefill_mfu
        Share of peak tensor-core FLOPs that prefill achieves: the one fitted
        parameter (``CALIBRATED``); range 0.05-1.
    """

    hbm_efficiency: float = 0.75
    layer_overhead_s: float = 8e-6
    allreduce_latency_s: float = 10e-6
    nvlink_efficiency: float = 0.8
    prefill_mfu: float = 0.5
    source: str = "measured microbenchmarks and reasons in the docstring; prefill_mfu fitted by scripts/calibrate.py --gpu"

    RANGES = {"hbm_efficiency": (0.55, 0.86), "layer_overhead_s": (4e-6, 20e-6), "allreduce_latency_s": (5e-6, 20e-6),
              "nvlink_efficiency": (0.6, 0.9), "prefill_mfu": (0.05, 1.0)}

    def __post_init__(self):
        for name, (lo, hi) in self.RANGES.items():
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"GPUParams.{name} = {getattr(self, name)!r} is outside its range [{lo}, {hi}]")

    def corner(self, which: str) -> GPUParams:
        """All un-fitted parameters at their ``"fast"`` or ``"slow"`` ends."""
        if which not in ("fast", "slow"):
            raise ValueError(f"corner must be 'fast' or 'slow', got {which!r}")
        fast = which == "fast"
        pick = lambda name, good_high: self.RANGES[name][1 if good_high == fast else 0]  # noqa: E731
        return replace(self, hbm_efficiency=pick("hbm_efficiency", True), layer_overhead_s=pick("layer_overhead_s", False),
                       allreduce_latency_s=pick("allreduce_latency_s", False), nvlink_efficiency=pick("nvlink_efficiency", True))


# Fitted by scripts/calibrate.py --gpu on the H100 anchor of lpu/data/published.csv
# (TensorRT-LLM v0.5, Llama 70B, FP8, TP4, batch 1, 2,048-token prompt: 109 ms): 0.378.
CALIBRATED = GPUParams(prefill_mfu=0.378)


def _compute_dtype(gpu: hardware.GPUSpec, precision: models.Precision) -> str:
    if precision.ffn == "fp8":
        gpu.peak_ops_per_s("fp8")  # raises for GPUs without FP8 tensor cores
        return "fp8"
    return "bf16"  # fp16/bf16 weights, and int8/int4 weight-only (dequantized to bf16 for the math)


def _allreduces_s(m: models.ModelConfig, gpu: hardware.GPUSpec, tp: int, rows: int, precision: models.Precision, p: GPUParams) -> float:
    if tp == 1:
        return 0.0
    nbytes = rows * m.dim * models.DTYPE_BYTES[precision.activations]
    one = p.allreduce_latency_s + 2 * (tp - 1) / tp * nbytes / (gpu.nvlink_bandwidth_Bps * p.nvlink_efficiency)
    return 2 * m.n_layers * one


def step_parts(m: models.ModelConfig, gpu: hardware.GPUSpec, tp: int, precision: models.Precision, phase: str, tokens: int, context: int,
               p: GPUParams) -> dict[str, float]:
    """Seconds of a decode step (``tokens`` users) or a prefill (``tokens`` prompt tokens), by term."""
    t = graph.build(m, phase, tokens, context, precision).totals()
    memory = (t["weight_bytes"] + t["kv_bytes"]) / tp / (gpu.hbm_bandwidth_Bps * p.hbm_efficiency)
    compute = t["flops"] / tp / (gpu.peak_ops_per_s(_compute_dtype(gpu, precision)) * p.prefill_mfu)
    return dict(memory=memory, compute=compute, overhead=m.n_layers * p.layer_overhead_s, nvlink=_allreduces_s(m, gpu, tp, tokens, precision, p))


def step_s(parts: dict[str, float]) -> float:
    return max(parts["memory"], parts["compute"]) + parts["overhead"] + parts["nvlink"]


# GPU memory beyond weights, KV caches and activations: the CUDA context (~0.5-1 GB) and the framework's
# workspace. Assumption: 3% (range 2-10%).
WORKSPACE_FRACTION = 0.03


def memory_needed_bytes(m: models.ModelConfig, precision: models.Precision, users: int, context: int) -> int:
    """Weights + KV caches + activations, plus `WORKSPACE_FRACTION`."""
    core = m.weight_bytes(precision) + users * context * m.kv_bytes_per_token(precision) + m.activation_bytes(precision, users, context)
    return int((1 + WORKSPACE_FRACTION) * core)


def simulate_gpu(m: models.ModelConfig, gpu: hardware.GPUSpec, chips: int | None, precision: str | None, users: int, prompt_tokens: int,
                 output_tokens: int, params: GPUParams = CALIBRATED, ranges: bool = True, serving: str | None = None):
    """`lpu.simulate` for a GPU server: ``chips`` GPUs tensor-parallel (None: the fewest of 1, 2, 4, 8 that hold the model)."""
    from .result import Result

    context = prompt_tokens + output_tokens
    degrees = [chips] if chips is not None else list(TP_DEGREES)
    if chips is not None and chips not in TP_DEGREES:
        raise ValueError(f"{gpu.name}: chips must be one of {TP_DEGREES} (tensor parallelism within an NVLink server), got {chips}")
    precisions = [precision] if precision is not None else [q for q in PRECISION_ORDER if q != "fp8" or gpu.fp8_flops_per_s]
    for tp in degrees:
        for name in precisions:
            prec = models.get_precision(name)
            need = memory_needed_bytes(m, prec, users, context)
            if need <= tp * gpu.memory_bytes:
                break
        else:
            continue
        break
    else:
        raise ValueError(f"{m.name} with {users} user(s) of {context} tokens does not fit {degrees[-1]} x {gpu.name} "
                         f"({degrees[-1] * gpu.memory_bytes / 1e9:.0f} GB) at {precisions[-1]}: needs {need / 1e9:.1f} GB, "
                         f"short by {(need - degrees[-1] * gpu.memory_bytes) / 1e9:.1f} GB")

    def run(p: GPUParams):
        dec = step_parts(m, gpu, tp, prec, "decode", users, min(prompt_tokens + output_tokens // 2, m.seq_len - 1), p)
        pre = step_parts(m, gpu, tp, prec, "prefill", prompt_tokens, 0, p)
        return step_s(pre), step_s(dec), dec

    ttft, itl, dec = run(params)
    total = step_s(dec)
    parts = {"hbm streaming" if dec["memory"] >= dec["compute"] else "compute": max(dec["memory"], dec["compute"]) / total,
             "kernel overhead": dec["overhead"] / total, "nvlink": dec["nvlink"] / total}
    r = Result(m.name, gpu.name, tp, prec.name, users, prompt_tokens, output_tokens, ttft, itl, None, None, None, parts=parts)
    if ranges:
        corners = [run(params.corner(c)) for c in ("fast", "slow")]
        r.ranges["ttft_s"] = (min(c[0] for c in corners), max(c[0] for c in corners))
        r.ranges["itl_s"] = (min(c[1] for c in corners), max(c[1] for c in corners))
        r.ranges["output_tokens_per_s"] = (1 / r.ranges["itl_s"][1], 1 / r.ranges["itl_s"][0])
    return r


def fit_prefill_mfu(target_ttft_s: float, model: str, gpu: str, chips: int, precision: str, prompt_tokens: int) -> float:
    """The ``prefill_mfu`` at which the model gives ``target_ttft_s`` (bisection; TTFT falls as MFU grows)."""
    m, g = models.get(model), hardware.get(gpu)
    lo, hi = GPUParams.RANGES["prefill_mfu"]

    def ttft(mfu):
        return simulate_gpu(m, g, chips, precision, 1, prompt_tokens, 1, replace(CALIBRATED, prefill_mfu=mfu), ranges=False).ttft_s

    if not ttft(hi) <= target_ttft_s <= ttft(lo):
        raise ValueError(f"{target_ttft_s} s is outside what prefill_mfu in [{lo}, {hi}] gives: {ttft(hi):.4f}-{ttft(lo):.4f} s")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ttft(mid) > target_ttft_s else (lo, mid)
    return round((lo + hi) / 2, 4)
