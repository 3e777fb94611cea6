"""``lpu.simulate``: one model served by an LPU system, end to end, as a `Result`.

It picks (or checks) the chip count and precision, cuts the model into the
best `lpu.shard.Plan` among the candidates, schedules a decode step and the
prefill of the prompt across all stages and links with the static scheduler
(`lpu.schedule.schedule`), and turns them into the metrics users see: time to
first token, inter-token latency, output speed per user and for the system.

Multi-user pipelining: with ``pp`` stages, up to ``pp`` users' tokens are in
flight at once (one per stage); more users share stages in batches, which
reuse each streamed weight. Introduced in ``notebooks/04_sharding.ipynb``.

Time = physics + one named system term
--------------------------------------
The physics is `lpu.schedule` at the architecture's nominal, sourced values
(`NOMINAL`): weight and KV streaming at 64 x 320 B a cycle, MXM/VXM/SXM work
at each op's dtype, 64 cycles of op latency (20 of superlane ripple + 44 of
stream transit), 300 ns C2C hops and 240 GB/s links for sends and
collectives. For Groq's Llama 2 70B on 576 chips it gives ~2,000 tok/s per
user; ArtificialAnalysis measured 241. The rest, ~88% of a token, is carried
as ONE named term, ``system_op_s``: seconds added for each *dependent compute
op* on the step's longest chain (`chain_depth`: 14 per dense layer, 15 with
Mixtral's router; chip-to-chip ops are not counted). Fitted once, on the
calibration row only; its range is the same fit on the ``calibration-spread``
rows (LLMPerf's measurements of the same system).

Why this structure (the evidence is public; the alternatives were costed):

* per dependent op, kept: on a software-scheduled machine of 576 chips in
  lockstep, a cost the public architecture does not describe (instruction
  issue and synchronisation across the stage's chips, the compiler's
  padding between dependent ops) is paid where an op waits on another, and
  the architecture already charges op latency exactly there. It makes speed
  follow depth, as Groq's published figures do (7B faster than 70B by ~3x on
  the same system class), not bytes.
* per layer: the same for dense models (14 ops a layer), blind to extra
  dependent ops (a router); rejected as the coarser of two equal stories.
* per collective or hop: rejected by SHIP's measurement of a 64-chip
  all-reduce (50% of link bandwidth at 32 KiB: a fixed cost of a fraction of
  a microsecond, not the ~20 us per collective such a fit would need); the
  physics already costs hops and bytes.
* per pipeline stage: a stage crossing is one C2C send (~1 us of physics);
  no public evidence of a larger per-stage cost, and it would make the
  planner trade stages for tensor parallelism on an unsourced number.
* per byte (a lower streaming efficiency): streaming is ~1/5 of the
  physics, so the fit would need ~3% of the streams' bandwidth, against
  SHIP's production figure of all 64 streams (18.4 TB/s usable per chip).
* per token (host, sampling, API streaming): cannot tell a 7B from a 70B.
* non-hardware: load on Groq's shared public API. The calibration and
  spread rows were all measured through the API under whatever load it
  carried, so the term includes that load; it is a property of the *system
  as measured*, not of the chip, and does not transfer to other systems.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import graph, hardware, models, schedule, shard
from .kernels import _jit
from .result import Fitted, Result  # noqa: F401  (Result re-exported: lpu.system.Result)

PRECISION_ORDER = ("fp16", "fp16-int8ffn", "int8", "int4")  # precision=None: the first that fits
DEFAULT_PROMPT_TOKENS, DEFAULT_OUTPUT_TOKENS = 550, 150  # LLMPerf's and the calibration row's lengths
NOMINAL = schedule.CostParams()  # the physics: every cost at the architecture's nominal, sourced value (op latency 64 cycles)

# The LPU system term, fitted by scripts/calibrate.py on the calibration row of lpu/data/published.csv (Groq, Llama 2 70B,
# 241 output tokens/s per user, ArtificialAnalysis Feb 2024; 576 chips, 1 user, prompt 550, output 150); its range from
# the calibration-spread rows (the same system measured by others; see the module docstring).
SYSTEM_OP_S = Fitted(
    "system_op_s", "LPU system", 3.2472e-06, "s per dependent compute op", 3.0120e-06, 3.2472e-06,
    "lpu-v1 llama2-70b output_tokens_per_s = 241 tok/s (calibration: ArtificialAnalysis via Groq, Feb 2024; 576 chips)",
    "scripts/calibrate.py: (1/241 s - the physics' inter-token latency) / the decode step's 1,124 dependent compute ops; "
    "range: the same fit on the calibration-spread rows (LLMPerf, Jan 2024: 242-257 tok/s), physics at nominal values")
FITTED = (SYSTEM_OP_S,)


def _per_stage(g, values: np.ndarray, pp: int) -> np.ndarray:
    """What each pipeline stage adds to a step: the largest of ``values`` over its ops less the previous stages'."""
    top = np.zeros(pp, values.dtype)
    np.maximum.at(top, g.cols.stage, values)
    return np.diff(np.concatenate([[0], np.maximum.accumulate(top)]))


def chain_depth(g) -> np.ndarray:
    """Compute ops up to and including each op along its longest dependency chain: the dependent ops the system term counts.

    Chip-to-chip ops (all-reduces, all-gathers, stage sends) are not counted: the physics costs them (hops x the
    hop latency + bytes over the link bandwidth), and SHIP's all-reduce measurement leaves no microseconds there.
    """
    _, _, dep_ptr, dep_idx = schedule.dependency_arrays(g)
    return _chain_depth((~np.isin(g.cols.kind, graph.COLLECTIVES)).astype(np.int64), dep_ptr, dep_idx)


@_jit
def _chain_depth(counted, dep_ptr, dep_idx):
    depth = np.zeros(len(counted), np.int64)
    for i in range(len(counted)):  # graphs are in topological order
        deepest = 0
        for j in range(dep_ptr[i], dep_ptr[i + 1]):
            deepest = max(deepest, depth[dep_idx[j]])
        depth[i] = counted[i] + deepest
    return depth


def _chain_depth_reference(g) -> np.ndarray:
    """`chain_depth` op by op in Python (the reference path)."""
    depth = np.zeros(len(g), np.int64)
    for i, op in enumerate(g.ops):
        depth[i] = (op.kind not in graph.COLLECTIVES) + max((depth[d] for d in op.deps), default=0)
    return depth


@dataclass
class _Physics:
    """The physics of one plan at one hardware setting, and how the system term adds to it."""

    plan: shard.Plan
    in_flight: int  # users' tokens in flight at once (one per stage, at most pp)
    decode: schedule.Timeline
    prefill: schedule.Timeline
    stage_s: np.ndarray  # physics seconds each stage adds to a decode step
    stage_ops: np.ndarray  # dependent ops each stage adds to the decode step's longest chain
    decode_ops: int  # dependent ops of the decode step's longest chain
    prefill_ops: int  # and of the prefill's

    def itl_s(self, op_s: float) -> float:
        """A decode step: the slower of one token's path through every stage and ``in_flight`` passes of the slowest stage."""
        path = self.decode.latency_s + self.decode_ops * op_s
        return max(path, self.in_flight * float((self.stage_s + self.stage_ops * op_s).max()))

    def ttft_s(self, op_s: float) -> float:
        """The prefill (one pass through every layer) and one decode step."""
        return self.prefill.latency_s + self.prefill_ops * op_s + self.itl_s(op_s)


@dataclass(frozen=True)
class _Steps:
    """What of a plan's physics does not depend on the hardware: its two step graphs and their chain depths."""

    decode: graph.Graph
    prefill: graph.Graph
    stage_ops: np.ndarray
    decode_ops: int
    prefill_ops: int


def _steps(plan: shard.Plan, users: int, prompt_tokens: int, output_tokens: int, reference: bool = False) -> _Steps:
    context = min(prompt_tokens + output_tokens // 2, plan.model.seq_len - 1)  # the mean context while generating
    batch = math.ceil(users / min(users, plan.pp))
    if reference:
        return _build_steps(plan, batch, context, prompt_tokens, reference=True)
    return _cached_steps(plan, batch, context, prompt_tokens)


def _build_steps(plan: shard.Plan, batch: int, context: int, prompt_tokens: int, reference: bool = False) -> _Steps:
    step = shard.step_graph_reference if reference else shard.step_graph
    dec, pre = step(plan, "decode", batch, context), step(plan, "prefill", prompt_tokens, 0)
    depth_of = _chain_depth_reference if reference else chain_depth
    depth = depth_of(dec)
    return _Steps(dec, pre, _per_stage(dec, depth, plan.pp), int(depth.max()), int(depth_of(pre).max()))


# Step graphs are built once per (plan, batch, context, prompt) and reused across hardware corners and calls (the
# graphs are read, never changed, by the scheduler and the Timeline built on them).
_cached_steps = functools.lru_cache(maxsize=256)(_build_steps)


def _physics(plan: shard.Plan, users: int, prompt_tokens: int, output_tokens: int, chip, params, reference: bool = False) -> _Physics:
    st = _steps(plan, users, prompt_tokens, output_tokens, reference)
    run = schedule.schedule_reference if reference else schedule.schedule
    dec, pre = run(st.decode, chip, params), run(st.prefill, chip, params)
    return _Physics(plan, min(users, plan.pp), dec, pre, _per_stage(st.decode, dec.end, plan.pp) / dec.chip.clock_hz,
                    st.stage_ops, st.decode_ops, st.prefill_ops)


def default_lengths(m: models.ModelConfig, prompt_tokens: int | None, output_tokens: int | None) -> tuple[int, int, str]:
    """Prompt and output lengths: the defaults (550 + 150) where they fit the model's context, else scaled to fill it."""
    if prompt_tokens is not None and output_tokens is not None:
        return prompt_tokens, output_tokens, ""
    p = DEFAULT_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens
    o = DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens
    if p + o <= m.seq_len:
        return p, o, ""
    if prompt_tokens is None and output_tokens is None:
        p = m.seq_len * DEFAULT_PROMPT_TOKENS // (DEFAULT_PROMPT_TOKENS + DEFAULT_OUTPUT_TOKENS)
        o = m.seq_len - p
    elif prompt_tokens is None:
        p = m.seq_len - o
    else:
        o = m.seq_len - p
    if p < 1 or o < 1:
        raise ValueError(f"prompt_tokens={prompt_tokens} with output_tokens={output_tokens} leave no room in {m.name}'s context of {m.seq_len}")
    return p, o, (f"default lengths {DEFAULT_PROMPT_TOKENS} + {DEFAULT_OUTPUT_TOKENS} exceed {m.name}'s context of {m.seq_len}: "
                  f"simulated with prompt_tokens={p}, output_tokens={o}")


def simulate(model: str | models.ModelConfig, system: str = "lpu-v1", chips: int | None = None, precision: str | None = None,
             users: int = 1, prompt_tokens: int | None = None, output_tokens: int | None = None, params: schedule.CostParams = NOMINAL,
             ranges: bool = True, serving: str | None = None, hosted: bool = False, system_op_s: float | None = None,
             reference: bool = False, draft: str | models.ModelConfig | None = None, draft_tokens: int | None = None,
             acceptance=None) -> Result:
    """Simulate ``model`` served on ``chips`` LPUs (or GPUs) to ``users`` concurrent users.

    LPU time = physics + the system term (see the module docstring): the
    static schedule at the architecture's nominal values (``params``), plus
    ``system_op_s`` seconds for each dependent compute op of the step's
    longest chain (`SYSTEM_OP_S`, fitted by ``scripts/calibrate.py``).

    Parameters
    ----------
    model : str or ModelConfig
    system : str
        ``"lpu-v1"``, or a GPU (``"a100"``, ``"h100"``, ``"h200"``: `lpu.gpu`).
    chips : int, "auto" or None
        None or "auto": the smallest count whose best plan fits (trying the precisions in order, up to the
        largest plan that can exist, n_layers x n_heads chips).
    precision : str or None
        None: the highest of fp16, fp16-int8ffn, int8, int4 that fits; the choice and why is in
        ``Result.precision_reason`` (never dropped silently).
    users : int
    prompt_tokens, output_tokens : int or None
        None: 550 and 150, scaled to the model's context where they do not fit it (said in ``Result.notes``).
    params : CostParams
        The physics' parameters (nominal by default).
    ranges : bool
        Also report ``Result.ranges``: the chip's ranged figures (clock, SRAM and C2C bandwidth) combined with the
        system term's range (or the GPU model's parameter ranges).
    serving : str or None
        GPU systems only: the serving profile of `lpu.gpu.simulate_gpu`. LPU systems take None.
    hosted : bool
        Return ``Result.hosted()``: the time on the chips plus a hosted API's network and queueing.
    system_op_s : float or None
        The system term (None: the fitted `SYSTEM_OP_S`); ``scripts/calibrate.py`` and the notebooks vary it.
    reference : bool
        Compute everything the slow, plain way (graphs built op by op and rebuilt for every plan and corner, every
        chip's SRAM allocated, the scheduler and chain depths op by op in Python; GPU graphs op by op too): the
        reference the default fast path is tested equal to, field for field (tests/test_fast_path.py);
        ``benchmarks/sweep.py`` times both.
    draft, draft_tokens, acceptance : model, int, float or (low, high)
        Speculative decoding (`lpu.speculation`): ``draft`` proposes ``draft_tokens`` tokens a step (default 4),
        each accepted with probability ``acceptance``; ``Result.speculation`` says what a step costs.

    Examples
    --------
    >>> r = simulate("llama2-70b", chips=576, ranges=False)
    >>> r.chips, r.precision
    (576, 'fp16-int8ffn')
    """
    m = models.get(model)
    c = hardware.get(system)
    chips = None if isinstance(chips, str) and chips == "auto" else chips
    if chips is not None and (isinstance(chips, (bool, np.bool_)) or not isinstance(chips, (int, np.integer)) or chips < 1):
        raise ValueError(f"chips must be a positive integer, 'auto' or None, got {chips!r}")
    for name, v in (("users", users), ("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if v is None and name != "users":
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if prompt_tokens is not None and output_tokens is not None and prompt_tokens + output_tokens > m.seq_len:
        fit = m.seq_len * DEFAULT_PROMPT_TOKENS // (DEFAULT_PROMPT_TOKENS + DEFAULT_OUTPUT_TOKENS)
        raise ValueError(f"prompt_tokens + output_tokens = {prompt_tokens + output_tokens} exceeds {m.name}'s context of {m.seq_len}; "
                         f"lengths that fit: e.g. prompt_tokens={fit}, output_tokens={m.seq_len - fit} (or leave them None)")
    prompt_tokens, output_tokens, note = default_lengths(m, prompt_tokens, output_tokens)
    if draft is not None or draft_tokens is not None or acceptance is not None:
        from .speculation import simulate_speculative

        r = simulate_speculative(m, system, draft, 4 if draft_tokens is None else draft_tokens, acceptance, chips, precision, users,
                                 prompt_tokens, output_tokens, params, ranges, serving, system_op_s)
        return r.hosted() if hosted else r
    notes = (note,) if note else ()
    if isinstance(c, hardware.GPUSpec):
        from . import gpu

        r = gpu.simulate_gpu(m, c, chips, precision, users, prompt_tokens, output_tokens, ranges=ranges, serving=serving, reference=reference)
        if not r.precision_reason:
            r.precision_reason = "requested" if precision is not None else (
                f"the first of {', '.join(gpu.PRECISION_ORDER)} that fits {r.chips} x {c.name} with {users} user(s)")
        r.notes = r.notes + notes
        return r.hosted() if hosted else r
    if not isinstance(c, hardware.ChipSpec):
        raise ValueError(f"system {system!r} is not an LPU or a GPU; systems: lpu-v1, a100, h100, h200")
    if serving is not None:
        raise ValueError(f"serving={serving!r} applies to GPU systems only (their serving stack); {c.name} runs a compiled static "
                         "schedule: pass serving=None")
    op_s = SYSTEM_OP_S.value if system_op_s is None else float(system_op_s)
    if not op_s >= 0:
        raise ValueError(f"system_op_s must be >= 0 seconds, got {system_op_s!r}")
    context = prompt_tokens + output_tokens
    precisions = [precision] if precision is not None else list(PRECISION_ORDER)
    for p in precisions:
        models.get_precision(p)
    if chips is None:
        plan_chips, plans, chosen, reason = _smallest(m, precisions, users, context, c)
    else:
        plan_chips, plans, chosen, reason = chips, None, None, ""
        for p in precisions:
            fitting = [pl for pl in shard.candidate_plans(m, chips, p) if shard.fits(pl, users, context, c)]
            if fitting:
                plans, chosen = fitting, p
                break
        if plans is None:
            best = min(shard.candidate_plans(m, chips, precisions[-1]), key=lambda pl: shard.fullest_bytes(pl, users, context))
            (shard.allocate if reference else shard.check_allocation)(best, users, context, c)  # raises SRAMCapacityError naming the chip
        skipped = precisions[:precisions.index(chosen)]
        reason = ("requested" if precision is not None else
                  f"{chosen}: the highest precision that fits {chips} chips with {users} user(s) of {context} tokens" if not skipped else
                  f"dropped to {chosen}: {', '.join(skipped)} {'does' if len(skipped) == 1 else 'do'} not fit {chips} chips with {users} user(s) "
                  f"of {context} tokens")
    candidates = []
    for pl in plans:
        ph = _physics(pl, users, prompt_tokens, output_tokens, c, params, reference)
        candidates.append(dict(plan=pl, pp=pl.pp, tp=pl.tp, ttft_s=ph.ttft_s(op_s), itl_s=ph.itl_s(op_s), physics=ph))
    best = min(candidates, key=lambda d: (d["itl_s"], d["ttft_s"], -d["tp"]))
    ph = best["physics"]
    # every chip's share through the SRAM model (the fast path allocates one chip per distinct share: the same check)
    (shard.allocate if reference else shard.check_allocation)(best["plan"], users, context, c)
    r = Result(m.name, c.name, plan_chips, best["plan"].precision.name, users, prompt_tokens, output_tokens, best["ttft_s"], best["itl_s"],
               best["plan"], ph.decode, ph.prefill, [{k: v for k, v in d.items() if k != "physics"} for d in candidates],
               system_itl_s=best["itl_s"] - ph.itl_s(0.0), system_ttft_s=best["ttft_s"] - ph.ttft_s(0.0),
               precision_reason=reason, notes=notes)
    if ranges:
        corners = [ph] + [_physics(best["plan"], users, prompt_tokens, output_tokens, c.corner(k), params, reference) for k in ("low", "high")]
        terms = sorted({SYSTEM_OP_S.low, op_s, SYSTEM_OP_S.high}) if system_op_s is None else [op_s]
        itl = [x.itl_s(t) for x in corners for t in terms]
        ttft = [x.ttft_s(t) for x in corners for t in terms]
        total = [x.ttft_s(t) + (output_tokens - 1) * x.itl_s(t) for x in corners for t in terms]
        r.ranges.update(ttft_s=(min(ttft), max(ttft)), itl_s=(min(itl), max(itl)), total_time_s=(min(total), max(total)))
        r.ranges["output_tokens_per_s"] = (1 / r.ranges["itl_s"][1], 1 / r.ranges["itl_s"][0])
        r.ranges["system_tokens_per_s"] = (users / r.ranges["itl_s"][1], users / r.ranges["itl_s"][0])
    return r.hosted() if hosted else r


def max_chips(m: models.ModelConfig) -> int:
    """The largest plan that can exist: one layer per stage, one head per tensor-parallel chip."""
    return m.n_layers * m.n_heads


def _smallest(m: models.ModelConfig, precisions: list[str], users: int, context: int, c: hardware.ChipSpec):
    """(chips, fitting plans, precision, reason): the fewest chips with a plan that fits, trying ``precisions`` in order.

    Each precision is searched from its capacity bound up to `max_chips`; if none fits, the error names the
    closest configuration that does (fewer users or a shorter context on the largest plan).
    """
    from .sram import chips_needed

    top = max_chips(m)
    for p in precisions:
        start = chips_needed(m, c, p, min(context, m.seq_len), users).chips
        for n in range(start, top + 1):
            try:
                fitting = [pl for pl in shard.candidate_plans(m, n, p) if shard.fits(pl, users, context, c)]
            except ValueError:  # n cannot be cut into stages x tensor-parallel chips for this model
                continue
            if fitting:
                skipped = precisions[:precisions.index(p)]
                reason = (f"{p}: requested; the fewest chips that fit" if len(precisions) == 1 else
                          f"{p}: the highest precision, on the fewest chips that fit" if not skipped else
                          f"dropped to {p}: {', '.join(skipped)} fit no plan up to {top} chips (n_layers x n_heads)")
                return n, fitting, p, reason
    largest = shard.Plan(m, m.n_layers, m.n_heads, models.get_precision(precisions[-1]))
    fit_users = _largest(lambda u: shard.fits(largest, u, context, c), users)
    fit_context = _largest(lambda t: shard.fits(largest, users, t, c), context)
    closest = (f"{fit_users} user(s) of {context} tokens" if fit_users else f"no user of {context} tokens") + (
        f", or {users} user(s) of {fit_context} tokens" if fit_context else "")
    raise ValueError(f"no plan up to {top} chips (the largest that can exist for {m.name}: {m.n_layers} stages x {m.n_heads} heads) "
                     f"fits {users} user(s) of {context} tokens at {', '.join(precisions)}; closest that fits on {top} chips at "
                     f"{precisions[-1]}: {closest}")


def _largest(ok, upper: int) -> int:
    """The largest n in [0, upper) with ok(n) (ok monotone: true up to some n), by bisection; 0 if none."""
    lo, hi = 0, upper  # ok(lo) holds (or lo == 0), ok(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def token_times(model: str | models.ModelConfig, chips: int, prompt_tokens: int, new_tokens: int, precision: str | None = "int8",
                params: schedule.CostParams = NOMINAL) -> np.ndarray:
    """Emission time of each of ``new_tokens`` tokens of one user on ``chips`` LPUs: TTFT, then one ITL per token.

    Used by `lpu.runtime.Engine` to stamp real tokens generated with ``chips > 1``.
    """
    m = models.get(model)
    out = max(min(new_tokens, m.seq_len - prompt_tokens), 1)
    r = simulate(m, chips=chips, precision=precision, prompt_tokens=max(prompt_tokens, 1), output_tokens=out, params=params, ranges=False)
    return r.ttft_s + r.itl_s * np.arange(new_tokens)
