"""The GPU baseline: the same questions, answered for A100 / H100 / H200 servers, in the same `Result`.

A step (one decode step of ``users`` users, or the prefill of a prompt) on N
GPUs, tensor parallel over NVLink, is costed op by op from the same
`lpu.graph` the LPU runs, each op at its own roofline:

* matmuls: the larger of streaming their weights (and activations) from HBM
  and their FLOPs at the GEMM rate of their dtype. bf16 runs at the GPU's
  measured best-shape GEMM throughput (``GPUSpec.bf16_matmul_flops_per_s``, the
  MAMF measurements) times ``matmul_efficiency``; fp8 at that rate times
  ``fp8_speedup``, the one fitted GPU parameter (each dtype against its own peak:
  `matmul_efficiency_of`);
* attention (fused, flash-style): KV-cache reads against FLOPs at
  ``attention_efficiency`` of the bf16 peak;
* element-wise ops (norms, RoPE, SwiGLU, residuals): their activation bytes;
* ``layer_overhead_s`` per layer (the gaps between small kernels) and two
  all-reduces per layer: a small-message latency from public nccl-tests runs
  (`allreduce_latency_s`) plus the bytes over ONE direction of NVLink.

Two serving profiles (`SERVING`): ``ideal`` (nothing on the host between
steps: CUDA graphs, as ``scripts/measure_gpu.py`` measures, or a C++ runtime
loop) and ``served`` (a production serving stack of 2023-24, whose HTTP server
and scheduler hold each step for a host time; the default, used when comparing
with providers). ``fp8_speedup`` is fitted by ``scripts/calibrate.py --gpu`` on the
H100 calibration row (TensorRT-LLM v0.5, Llama 70B FP8 on 4 GPUs, 109 ms to the
first token of a 2,048-token prompt). Introduced in
``notebooks/06_benchmarks.ipynb`` (with the GPU rows of
``lpu/data/published.csv`` as validation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import graph, hardware, models
from .result import Fitted

PRECISION_ORDER = ("bf16", "fp8", "int8", "int4")  # precision=None: the first that fits
TP_DEGREES = (1, 2, 4, 8)  # tensor parallelism inside one NVLink server

# Small-message (16 KiB, the size of a batch-1 70B activation) all-reduce latency, nccl-tests all_reduce_perf,
# out-of-place, within one server:
ALLREDUCE_MEASURED_S = {
    2: (12.17e-6, "2 x H100 80GB HBM3 over NVLink: 12.17 us at 16 KiB (12-16 us from 1 to 32 KiB); "
                  "'NCCL Guide for DigitalOcean Bare Metal Machines', public GitHub guide, step 6.2"),
    8: (57.38e-6, "8 x A100-SXM4-40GB (Modal), nccl-tests 2.17.9, NCCL 2.29.3, one process driving 8 GPUs: 57.38 us at 16 KiB; "
                  "yumibyte/CS244C-Research phase1-baseline/a100-8gpu-new/results/results_8gpu_allreduce.txt"),
}

# Measured by scripts/gpu_microbench.py on a lent H100 80GB HBM3 (PyTorch 2.11, cuBLAS bf16 GEMV, a different matrix each
# call, 2026-11-24): share of the 3.35 TB/s peak against the bytes of the matrix (a 2 GiB copy: 88%).
STREAM_EFFICIENCY_MEASURED = ((4096 * 4096 * 2, 0.55), (11008 * 4096 * 2, 0.71), (8192 * 8192 * 2, 0.81), (28672 * 8192 * 2, 0.86))


def stream_efficiency(nbytes):
    """Share of peak HBM bandwidth a kernel streaming ``nbytes`` sustains (`STREAM_EFFICIENCY_MEASURED`, clamped at its ends)."""
    sizes, eff = zip(*STREAM_EFFICIENCY_MEASURED)
    return np.interp(np.log(np.maximum(nbytes, 1)), np.log(sizes), eff)


# Where each op's time comes from on a GPU
_ATTENTION = ("attention_scores", "attention_values", "softmax")
_REPLICATED = ("rmsnorm", "residual", "embed", "sample")  # full-width activations on every tensor-parallel rank


def allreduce_latency_s(tp: int) -> float:
    """Fixed latency of one small all-reduce over ``tp`` GPUs: linear in the ring's ``tp - 1`` steps through the
    2- and 8-GPU nccl-tests measurements (`ALLREDUCE_MEASURED_S`); 0 for one GPU."""
    if tp == 1:
        return 0.0
    (n2, (t2, _)), (n8, (t8, _)) = sorted(ALLREDUCE_MEASURED_S.items())
    per_step = (t8 - t2) / (n8 - n2)
    return t2 + per_step * (tp - n2)


@dataclass(frozen=True)
class GPUParams:
    """GPU cost-model constants, each with a reason and a range (``RANGES``).

    hbm_efficiency
        Share of peak HBM bandwidth a kernel streaming its bytes sustains. None (nominal): by the
        bytes one kernel streams, interpolated in log size through the GEMV microbenchmark
        (`STREAM_EFFICIENCY_MEASURED`); a number applies to every stream. Range 0.55-0.86, the span
        of those measurements.
    matmul_efficiency
        Share of the GPU's measured best-shape bf16 GEMM rate (``GPUSpec.bf16_matmul_flops_per_s``)
        that a model's GEMMs reach. The best shape of a search is an upper bound (1.0); other
        shapes lose to tile and wave quantisation. Assumption: range 0.8-1.0, nominal its midpoint.
    attention_efficiency
        Share of the bf16 peak that fused causal attention (head dim 128) reaches. FlashAttention-3
        paper (Shah et al., 2024, forward, H100 SXM5, head dim 128, sequence 2k): FlashAttention-2
        298 TFLOPS causal (0.30), FlashAttention-3 625 TFLOPS non-causal (0.63). Nominal 0.30.
    overlap
        How far an op's HBM streaming and its tensor-core work overlap: the op takes
        max(stream, math) + (1 - overlap) x min(stream, math). The physical bounds are the range
        (1: perfect overlap, the roofline; 0: none, their sum); it matters where an op sits near the
        ridge point (prompts of ~100-500 tokens). Nominal the midpoint, 0.5 (no measurement of it here).
    layer_overhead_s
        Per layer per step: the small kernels between the matrix products
        (norms, RoPE, attention, residuals, activations), ~8 of them in a fused
        serving stack, ~20 in plain PyTorch, at 1.0 us each as measured for tiny
        kernels replayed from a CUDA graph (``scripts/gpu_microbench.py``, same
        run). Nominal 8 us, range 4-20 us.
    allreduce_latency_s
        Fixed latency of one small all-reduce within a server. None: `allreduce_latency_s` of the
        tensor-parallel degree (nccl-tests, `ALLREDUCE_MEASURED_S`); the range spans the two
        measurements (12.2 us on 2 GPUs to 57.4 us on 8).
    nvlink_efficiency
        Share of one-direction NVLink bandwidth a large all-reduce achieves. Assumption, 0.6-0.9.
    fp8_speedup
        fp8 GEMM rate over the bf16 GEMM rate (at most 2, the ratio of the peaks): the one fitted
        parameter (`CALIBRATED`, `FITTED`).
    """

    hbm_efficiency: float | None = None
    matmul_efficiency: float = 0.9
    attention_efficiency: float = 0.30
    overlap: float = 0.5
    layer_overhead_s: float = 8e-6
    allreduce_latency_s: float | None = None
    nvlink_efficiency: float = 0.8
    fp8_speedup: float = 1.5
    source: str = "measured microbenchmarks and sourced measurements in the docstring; fp8_speedup fitted by scripts/calibrate.py --gpu"

    RANGES = {"hbm_efficiency": (0.55, 0.86), "matmul_efficiency": (0.8, 1.0), "attention_efficiency": (0.30, 0.63), "overlap": (0.0, 1.0),
              "layer_overhead_s": (4e-6, 20e-6), "allreduce_latency_s": (ALLREDUCE_MEASURED_S[2][0], ALLREDUCE_MEASURED_S[8][0]),
              "nvlink_efficiency": (0.6, 0.9), "fp8_speedup": (1.0, 2.0)}
    FAST_HIGH = {"hbm_efficiency": True, "matmul_efficiency": True, "attention_efficiency": True, "overlap": True, "layer_overhead_s": False,
                 "allreduce_latency_s": False, "nvlink_efficiency": True}  # un-fitted: which end is the fast one

    def __post_init__(self):
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(self, name)
            if v is not None and not lo <= v <= hi:
                raise ValueError(f"GPUParams.{name} = {v!r} is outside its range [{lo}, {hi}]")

    def corner(self, which: str) -> GPUParams:
        """All un-fitted parameters at their ``"fast"`` or ``"slow"`` ends (``fp8_speedup`` kept)."""
        if which not in ("fast", "slow"):
            raise ValueError(f"corner must be 'fast' or 'slow', got {which!r}")
        return replace(self, **{n: self.RANGES[n][1 if high == (which == "fast") else 0] for n, high in self.FAST_HIGH.items()})


@dataclass(frozen=True)
class ServingProfile:
    """What a serving stack adds to every step: host time (HTTP server, scheduler, sampling) the GPU waits on.

    The source measured the host's share of the execution time (``host_share``, nominal and range) for
    one setup, ``reference`` (model, GPU): the host holds each step for host_share / (1 - host_share) x the
    GPU time of that setup's step at the same batch (the host's work grows with the batch, not with the model).
    """

    name: str
    host_share: float
    low: float
    high: float
    reference: tuple[str, str] | None  # (model, GPU) the share was measured on
    source: str


SERVING = {
    "ideal": ServingProfile("ideal", 0.0, 0.0, 0.0, None, "nothing on the host between steps: the step's kernels replayed from a CUDA graph "
                            "(scripts/measure_gpu.py) or issued by a C++ runtime loop (TensorRT-LLM gptSessionBenchmark)"),
    "served": ServingProfile("served", 0.62, 0.29, 0.62, ("llama3-8b", "h100"),
                             "vLLM blog, 'vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction' (2024-09-05), profile of "
                             "v0.5.3 serving Llama 3 8B on 1 x H100: HTTP API server 33% and scheduling 29% of the execution time, "
                             "the GPU 38%. Range: 0.29 (scheduling alone: a stack whose API server is off the critical path) to 0.62"),
}
DEFAULT_SERVING = "served"  # comparisons with providers; rows measured on an idle GPU use "ideal" (validation)


def serving_profile(serving: str | None) -> ServingProfile:
    """The `ServingProfile` called ``serving`` (None: `DEFAULT_SERVING`)."""
    name = DEFAULT_SERVING if serving is None else serving
    if name not in SERVING:
        raise ValueError(f"serving must be one of {', '.join(repr(k) for k in SERVING)} or None (= {DEFAULT_SERVING!r}), got {serving!r}")
    return SERVING[name]


def serving_for(conditions: str) -> str:
    """The profile a published row was measured under: ``ideal`` where its conditions say "no serving stack", else ``served``."""
    return "ideal" if "no serving stack" in str(conditions) else "served"


# Fitted by scripts/calibrate.py --gpu on the H100 calibration row of lpu/data/published.csv (TensorRT-LLM v0.5, Llama 70B,
# FP8, TP4, batch 1, 2,048-token prompt: 109 ms; profile ideal). The range: the fit repeated with every un-fitted parameter
# at its fast and its slow end (what the anchor allows once they are uncertain).
CALIBRATED = GPUParams(fp8_speedup=1.7949)
FITTED = (Fitted("fp8_speedup", "GPU server", CALIBRATED.fp8_speedup, "x bf16 GEMM rate", 1.2263, 2.0,
                 "h100 llama2-70b ttft_s 0.109 (calibration, TensorRT-LLM v0.5 performance.md: FP8, TP4, 2,048-token prompt)",
                 "scripts/calibrate.py --gpu (bisection); range: refitted at the fast and slow corners of the un-fitted GPUParams"),)


def matmul_flops_per_s(gpu: hardware.GPUSpec, dtype: str, p: GPUParams) -> float:
    """The GEMM rate of ``dtype`` ("bf16" or "fp8"): the measured best-shape bf16 rate x ``matmul_efficiency`` (x ``fp8_speedup``)."""
    bf16 = gpu.bf16_matmul_flops_per_s * p.matmul_efficiency
    if dtype == "fp8":
        gpu.peak_ops_per_s("fp8")  # raises for GPUs without FP8 tensor cores
        return bf16 * p.fp8_speedup
    return bf16


def matmul_efficiency_of(gpu: hardware.GPUSpec, dtype: str, p: GPUParams = CALIBRATED) -> float:
    """The GEMM rate of ``dtype`` as a share of that dtype's own peak."""
    return matmul_flops_per_s(gpu, dtype, p) / gpu.peak_ops_per_s(dtype)


def _compute_dtype(precision: models.Precision) -> str:
    return "fp8" if precision.ffn == "fp8" else "bf16"  # int8/int4 are weight-only: dequantized to bf16 for the math


def _allreduces_s(m: models.ModelConfig, gpu: hardware.GPUSpec, tp: int, rows: int, precision: models.Precision, p: GPUParams) -> float:
    if tp == 1:
        return 0.0
    nbytes = rows * m.dim * models.DTYPE_BYTES[precision.activations]
    latency = allreduce_latency_s(tp) if p.allreduce_latency_s is None else p.allreduce_latency_s
    one = latency + 2 * (tp - 1) / tp * nbytes / (gpu.nvlink_one_way_Bps * p.nvlink_efficiency)
    return 2 * m.n_layers * one


def _sharded(kinds: np.ndarray, g: graph.Graph, tp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What `step_parts` needs of a graph on ``tp`` GPUs, whatever the GPU: each op's bytes on one GPU (weights, KV cache,
    activations; fused attention keeps its scores on chip), their nominal stream efficiency, its FLOPs on one GPU, and
    which ops are matmuls and which run on tensor cores (matmuls and attention)."""
    att = np.isin(kinds, _ATTENTION)
    shard = np.where(np.isin(kinds, _REPLICATED), 1.0, 1.0 / tp)  # tensor parallelism splits heads, hidden units and weights
    nbytes = (g.weight_bytes + g.kv_bytes + np.where(att, 0, g.act_bytes)) * shard
    mm = kinds == "matmul"
    return nbytes, stream_efficiency(nbytes), g.flops * shard, mm, mm | att


def step_parts(m: models.ModelConfig, gpu: hardware.GPUSpec, tp: int, precision: models.Precision, phase: str, tokens: int, context: int,
               p: GPUParams, reference: bool = False, rows_per_user: int = 1) -> dict[str, float]:
    """GPU seconds of a decode step (``tokens`` users; ``tokens`` / ``rows_per_user`` users of ``rows_per_user`` rows
    each for a verify step, `lpu.graph.build`) or a prefill (``tokens`` prompt tokens), by term.

    ``memory`` (ops bound by HBM: weight, KV-cache and activation streaming) and ``compute`` (ops bound by
    tensor-core FLOPs) sum each op's time (``overlap``) into the term that bounds it; ``overhead`` and ``nvlink``
    are the per-layer kernel gaps and the all-reduces. What does not depend on the GPU or ``p`` is derived once
    per graph and ``tp`` (`_sharded`); ``reference``: the graph built op by op (`graph.build_reference`), its op
    kinds read op by op and nothing kept, as ``lpu.simulate(reference=True)`` does.
    """
    if reference:
        g = graph.build_reference(m, phase, tokens, context, precision, rows_per_user)
        nbytes, nominal_eff, flops, mm, tensor_cores = _sharded(np.array([o.kind for o in g.ops]), g, tp)
    else:
        g = graph.build(m, phase, tokens, context, precision, rows_per_user)
        key = ("gpu", tp)
        if key not in g.cols.cache:
            g.cols.cache[key] = _sharded(g.cols.kind, g, tp)
        nbytes, nominal_eff, flops, mm, tensor_cores = g.cols.cache[key]
    eff = nominal_eff if p.hbm_efficiency is None else p.hbm_efficiency
    mem_s = nbytes / (gpu.hbm_bandwidth_Bps * eff)
    rate = np.where(mm, matmul_flops_per_s(gpu, _compute_dtype(precision), p), gpu.bf16_flops_per_s * p.attention_efficiency)
    flop_s = np.where(tensor_cores, flops / rate, 0.0)
    op_s = np.maximum(mem_s, flop_s) + (1 - p.overlap) * np.minimum(mem_s, flop_s)
    bound = flop_s > mem_s
    return dict(memory=float(op_s[~bound].sum()), compute=float(op_s[bound].sum()), overhead=m.n_layers * p.layer_overhead_s,
                nvlink=_allreduces_s(m, gpu, tp, tokens, precision, p))


def step_s(parts: dict[str, float]) -> float:
    return parts["memory"] + parts["compute"] + parts["overhead"] + parts["nvlink"]


# GPU memory beyond weights, KV caches and activations: the CUDA context (~0.5-1 GB) and the framework's
# workspace. Assumption: 3% (range 2-10%).
WORKSPACE_FRACTION = 0.03


def memory_needed_bytes(m: models.ModelConfig, precision: models.Precision, users: int, context: int) -> int:
    """Weights + KV caches + activations, plus `WORKSPACE_FRACTION`."""
    core = m.weight_bytes(precision) + users * context * m.kv_bytes_per_token(precision) + m.activation_bytes(precision, users, context)
    return int((1 + WORKSPACE_FRACTION) * core)


def _fit(m: models.ModelConfig, gpu: hardware.GPUSpec, chips: int | None, precision: str | None, users: int, context: int):
    """Tensor-parallel degree and precision: the fewest GPUs, then the highest precision, that hold the model."""
    degrees = [chips] if chips is not None else list(TP_DEGREES)
    if chips is not None and chips not in TP_DEGREES:
        raise ValueError(f"{gpu.name}: chips must be one of {TP_DEGREES} (tensor parallelism within an NVLink server), got {chips}")
    precisions = [precision] if precision is not None else [q for q in PRECISION_ORDER if q != "fp8" or gpu.fp8_flops_per_s]
    need = 0
    for tp in degrees:
        for name in precisions:
            prec = models.get_precision(name)
            need = memory_needed_bytes(m, prec, users, context)
            if need <= tp * gpu.memory_bytes:
                return tp, prec
    raise ValueError(f"{m.name} with {users} user(s) of {context} tokens does not fit {degrees[-1]} x {gpu.name} "
                     f"({degrees[-1] * gpu.memory_bytes / 1e9:.0f} GB) at {precisions[-1]}: needs {need / 1e9:.1f} GB, "
                     f"short by {(need - degrees[-1] * gpu.memory_bytes) / 1e9:.1f} GB")


def range_corners(params: GPUParams, profile: ServingProfile) -> tuple[tuple[GPUParams, float], ...]:
    """(parameters, host share) at the nominal, fast and slow ends of a prediction's range: every un-fitted parameter at
    its end, ``fp8_speedup`` at the end of its fitted range (`FITTED`), the host share at the end of the profile's."""
    fit = FITTED[0]
    return ((params, profile.host_share), (replace(params.corner("fast"), fp8_speedup=fit.high), profile.low),
            (replace(params.corner("slow"), fp8_speedup=fit.low), profile.high))


def host_s(profile: ServingProfile, users: int, context: int, p: GPUParams, host_share: float, reference: bool = False) -> float:
    """Seconds a serving stack's host holds each step of ``users`` (`ServingProfile`: its share of the step of the setup
    it was measured on, at this batch, on one GPU in bf16); 0 for a profile without host time."""
    if profile.reference is None:
        return 0.0
    ref_m, ref_gpu = models.get(profile.reference[0]), hardware.get(profile.reference[1])
    ref_step = step_s(step_parts(ref_m, ref_gpu, 1, models.get_precision("bf16"), "decode", users, min(context, ref_m.seq_len - 1), p, reference))
    return ref_step * host_share / (1 - host_share)


def simulate_gpu(m: models.ModelConfig, gpu: hardware.GPUSpec, chips: int | None, precision: str | None, users: int, prompt_tokens: int,
                 output_tokens: int, params: GPUParams = CALIBRATED, ranges: bool = True, serving: str | None = None, reference: bool = False):
    """`lpu.simulate` for a GPU server: ``chips`` GPUs tensor-parallel (None: the fewest of 1, 2, 4, 8 that hold the model).

    ``serving``: ``"ideal"`` or ``"served"`` (`SERVING`; None: `DEFAULT_SERVING`). A served step adds the
    profile's host time (`ServingProfile`) to every step: each decode step and the prefill.
    ``ranges``: every un-fitted parameter at its fast and slow ends, with ``fp8_speedup`` at the ends of its
    fitted range (`FITTED`) and ``host_share`` at the ends of the profile's range.
    """
    from .result import Result

    profile = serving_profile(serving)
    tp, prec = _fit(m, gpu, chips, precision, users, prompt_tokens + output_tokens)

    context = min(prompt_tokens + output_tokens // 2, m.seq_len - 1)

    def run(p: GPUParams, host_share: float):
        dec = step_parts(m, gpu, tp, prec, "decode", users, context, p, reference)
        pre = step_parts(m, gpu, tp, prec, "prefill", prompt_tokens, 0, p, reference)
        host = host_s(profile, users, context, p, host_share, reference)
        return step_s(pre) + host, step_s(dec) + host, dec, host

    nominal, fast_end, slow_end = range_corners(params, profile)
    ttft, itl, dec, host = run(*nominal)
    dominant = "compute" if dec["compute"] > dec["memory"] else "hbm streaming"
    parts = {dominant: (dec["memory"] + dec["compute"]) / itl, "kernel overhead": dec["overhead"] / itl, "nvlink": dec["nvlink"] / itl}
    if profile.host_share:
        parts["serving stack (host)"] = host / itl
    r = Result(m.name, gpu.name, tp, prec.name, users, prompt_tokens, output_tokens, ttft, itl, None, None, None, parts=parts)
    if ranges:
        fast, slow = run(*fast_end), run(*slow_end)
        r.ranges["ttft_s"] = (fast[0], slow[0])
        r.ranges["itl_s"] = (fast[1], slow[1])
        r.ranges["output_tokens_per_s"] = (1 / slow[1], 1 / fast[1])
    return r


def fit_fp8_speedup(target_ttft_s: float, model: str, gpu: str, chips: int, precision: str, prompt_tokens: int, serving: str = "ideal",
                    base: GPUParams = CALIBRATED) -> float:
    """The ``fp8_speedup`` at which the model gives ``target_ttft_s`` (bisection; TTFT falls as the speed-up grows)."""
    m, g = models.get(model), hardware.get(gpu)
    lo, hi = GPUParams.RANGES["fp8_speedup"]

    def ttft(x):
        return simulate_gpu(m, g, chips, precision, 1, prompt_tokens, 1, replace(base, fp8_speedup=x), ranges=False, serving=serving).ttft_s

    if not ttft(hi) <= target_ttft_s <= ttft(lo):
        raise ValueError(f"{target_ttft_s} s is outside what fp8_speedup in [{lo}, {hi}] gives: {ttft(hi):.4f}-{ttft(lo):.4f} s")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ttft(mid) > target_ttft_s else (lo, mid)
    return round((lo + hi) / 2, 4)
