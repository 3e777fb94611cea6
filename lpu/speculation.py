"""Speculative decoding in the simulator: ``lpu.simulate(..., draft=MODEL, draft_tokens=k, acceptance=a)``.

A step of speculative decoding (Leviathan et al. 2023, "Fast Inference from
Transformers via Speculative Decoding") is k sequential decode steps of the
draft model, then one verify step of the target over k+1 rows (the last
accepted token and the k proposals, all at the same context). With each draft
token accepted independently with probability a, a step emits on average

    E[tokens] = (1 - a**(k+1)) / (1 - a)        (k + 1 at a = 1)

(Leviathan et al. 2023, eq. 1), so the inter-token latency is (draft time +
verify time) / E[tokens]. Where the draft runs:

* LPU: on chips of its own beside the target's (the smallest plan that holds
  it, `lpu.simulate` of the draft alone, system term included), so it costs
  chips, not the target's time; its k steps and the verify step still run one
  after the other (the verify needs the proposals).
* GPU: on the same GPUs, tensor parallel like the target, sharing their HBM
  bandwidth and time: its k decode steps (`lpu.gpu.step_parts`) add to the
  verify step. A serving stack's host time is paid once per speculative step.

The verify step goes through the same model as an ordinary decode step:
`lpu.shard.step_graph` and `lpu.schedule.schedule` with k+1 rows per user on
the LPU, `lpu.gpu.step_parts` with k+1 rows per user on GPUs; each user's KV
cache is read once for its rows, which attend causally among themselves
(``rows_per_user`` of `lpu.graph.build`). `gpu_verify_s` gives a GPU verify step
alone, for the H200 measurements of ``lpu/data/published.csv`` (``verify_s``
rows). Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import hardware, models


def tokens_per_step(acceptance: float, draft_tokens: int) -> float:
    """Expected tokens a speculative step emits: (1 - a^(k+1)) / (1 - a), k + 1 at a = 1 (Leviathan et al. 2023)."""
    a, k = float(acceptance), int(draft_tokens)
    return k + 1.0 if a == 1.0 else (1 - a ** (k + 1)) / (1 - a)


@dataclass(frozen=True)
class Speculation:
    """What a speculative `Result` adds: the draft, k, the acceptance and what a step costs."""

    draft: str  # the draft model's name
    draft_tokens: int  # k
    acceptance: float  # per-token acceptance (nominal)
    acceptance_range: tuple[float, float]
    tokens_per_step: float  # expected tokens per step at the nominal acceptance
    draft_s: float  # the draft's k decode steps
    verify_s: float  # the target's (k+1)-row verify step
    plain_itl_s: float  # the target's inter-token latency without speculation (same system, plan and users)
    draft_placement: str  # where the draft runs (its own chips, or the target's GPUs)
    verify_breakdown: dict  # shares of the verify step (as `Result.breakdown` gives them for a decode step)

    @property
    def step_s(self) -> float:
        return self.draft_s + self.verify_s

    @property
    def speedup(self) -> float:
        """Output speed with speculation over the speed without it (the same target, system and users)."""
        return self.plain_itl_s * self.tokens_per_step / self.step_s

    def breakdown(self) -> dict[str, float]:
        """Shares of a speculative step (sum 1): ``draft`` and the verify step's parts (``verify <part>``)."""
        v = self.verify_s / self.step_s
        return {"draft": self.draft_s / self.step_s, **{f"verify {k}": s * v for k, s in self.verify_breakdown.items()}}


def check(target: models.ModelConfig, draft, draft_tokens, acceptance) -> tuple[models.ModelConfig, int, float, tuple[float, float]]:
    """(draft model, k, nominal acceptance, its range), or a ValueError naming the argument."""
    if draft is None:
        raise ValueError("draft_tokens and acceptance apply to speculative decoding only: pass draft=MODEL (e.g. draft='llama2-7b')")
    d = models.get(draft)
    if d.vocab_size != target.vocab_size:
        raise ValueError(f"draft {d.name} has a vocabulary of {d.vocab_size} tokens, {target.name} of {target.vocab_size}: "
                         "speculative decoding needs the same tokenizer (e.g. a smaller model of the same family)")
    if d.n_params >= target.n_params:
        raise ValueError(f"draft {d.name} ({d.n_params / 1e9:.2f} B parameters) is not smaller than the target {target.name} "
                         f"({target.n_params / 1e9:.2f} B): a draft must be cheaper than the model it drafts for")
    if isinstance(draft_tokens, (bool, np.bool_)) or not isinstance(draft_tokens, (int, np.integer)) or draft_tokens < 1:
        raise ValueError(f"draft_tokens must be an integer >= 1 (tokens the draft proposes per step), got {draft_tokens!r}")
    if acceptance is None:
        raise ValueError("acceptance must be given with draft=: a per-token acceptance in [0, 1], or its range (low, high), "
                         "e.g. measured with lpu.speculative.acceptance_rate")
    lo_hi = tuple(acceptance) if isinstance(acceptance, (tuple, list)) else (acceptance, acceptance)
    if len(lo_hi) != 2 or not all(isinstance(a, (int, float, np.floating)) and not isinstance(a, bool) and 0 <= a <= 1 for a in lo_hi) \
            or lo_hi[0] > lo_hi[1]:
        raise ValueError(f"acceptance must be a number in [0, 1] or a range (low, high) with 0 <= low <= high <= 1, got {acceptance!r}")
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return d, int(draft_tokens), (lo + hi) / 2, (lo, hi)


def simulate_speculative(m: models.ModelConfig, system: str, draft, draft_tokens, acceptance, chips, precision, users: int,
                         prompt_tokens: int, output_tokens: int, params, ranges: bool, serving, system_op_s):
    """`lpu.simulate` with speculative decoding (arguments checked as there; see the module docstring).

    The target's `Result` (its plan, precision, TTFT path) with ``itl_s`` = (draft + verify) / E[tokens] and
    ``speculation`` set; ``ranges`` combine the acceptance's range with the chip's (or GPU model's) and the system
    term's ranges, the fast ends together and the slow ends together.
    """
    from .system import simulate

    d, k, a, (a_lo, a_hi) = check(m, draft, draft_tokens, acceptance)
    if prompt_tokens + output_tokens > d.seq_len:
        raise ValueError(f"draft {d.name}'s context of {d.seq_len} tokens is shorter than prompt_tokens + output_tokens = "
                         f"{prompt_tokens + output_tokens}: pass shorter lengths or a draft with a longer context")
    base = simulate(m, system, chips, precision, users, prompt_tokens, output_tokens, params, ranges, serving, False, system_op_s)
    c = hardware.get(system)
    if isinstance(c, hardware.GPUSpec):
        cost = _gpu(m, d, c, base, k, ranges, serving)
    else:
        cost = _lpu(m, d, c, base, k, users, params, ranges, system_op_s)
    (draft_s, verify_s, prefill_s, placement, verify_parts), slow, fast = cost
    spec = Speculation(d.name, k, a, (a_lo, a_hi), tokens_per_step(a, k), draft_s, verify_s, base.itl_s, placement, verify_parts)
    itl = spec.step_s / spec.tokens_per_step
    later = max(prefill_s - (base.ttft_s - base.itl_s), 0.0)  # the draft's prefill beyond the target's (both prompts are prefilled)
    ttft = base.ttft_s - base.itl_s + later + spec.step_s  # then one speculative step
    r = dataclasses.replace(base, itl_s=itl, ttft_s=ttft, ranges=dict(base.ranges), speculation=spec,
                            notes=base.notes + (f"speculative: {d.name} drafts {k} token(s) a step ({placement}); "
                                                f"acceptance {a_lo:.3g}-{a_hi:.3g}",))
    if ranges:
        itl_lo, itl_hi = fast / tokens_per_step(a_hi, k), slow / tokens_per_step(a_lo, k)
        t_lo, t_hi = base.ranges["ttft_s"]
        r.ranges.update(itl_s=(itl_lo, itl_hi), output_tokens_per_s=(1 / itl_hi, 1 / itl_lo),
                        ttft_s=(t_lo - base.itl_s + later + fast, t_hi - base.itl_s + later + slow))
        r.ranges["total_time_s"] = (r.ranges["ttft_s"][0] + (output_tokens - 1) * itl_lo, r.ranges["ttft_s"][1] + (output_tokens - 1) * itl_hi)
        if "system_tokens_per_s" in base.ranges:
            r.ranges["system_tokens_per_s"] = (users / itl_hi, users / itl_lo)
    return r


def _lpu(m, d, c, base, k, users, params, ranges, system_op_s):
    """LPU: (nominal costs, slow and fast speculative step seconds). The draft on its own chips (its smallest plan)."""
    from . import schedule, shard, system

    op_s = system.SYSTEM_OP_S.value if system_op_s is None else float(system_op_s)
    dr = system.simulate(d, c.name, None, None, users, base.prompt_tokens, base.output_tokens, params, ranges, None, False, system_op_s)
    plan = base.plan
    context = min(base.prompt_tokens + base.output_tokens // 2, m.seq_len - k - 1)  # the k+1 rows fit the context
    in_flight = min(users, plan.pp)
    rows = math.ceil(users / in_flight) * (k + 1)

    def verify(chip):
        tl = schedule.schedule(shard.step_graph(plan, "decode", rows, context, rows_per_user=k + 1), chip, params)
        depth = system.chain_depth(tl.graph)
        ph = system._Physics(plan, in_flight, tl, tl, system._per_stage(tl.graph, tl.end, plan.pp) / tl.chip.clock_hz,
                             system._per_stage(tl.graph, depth, plan.pp), int(depth.max()), 0)
        return ph, tl

    ph, tl = verify(c)
    verify_s = ph.itl_s(op_s)
    physics = ph.itl_s(0.0) / verify_s
    parts = {**{key: v * physics for key, v in tl.breakdown().items()}, "system": 1 - physics}
    placement = f"on {dr.chips} chips of its own ({dr.plan.describe()}) beside the target's {base.chips}"
    nominal = (k * dr.itl_s, verify_s, dr.ttft_s - dr.itl_s, placement, parts)
    if not ranges:
        return nominal, None, None
    terms = sorted({system.SYSTEM_OP_S.low, op_s, system.SYSTEM_OP_S.high}) if system_op_s is None else [op_s]
    verifies = [x.itl_s(t) for x in [ph] + [verify(c.corner(w))[0] for w in ("low", "high")] for t in terms]
    return nominal, k * dr.ranges["itl_s"][1] + max(verifies), k * dr.ranges["itl_s"][0] + min(verifies)


def _gpu_verify(m, c, tp, prec, users: int, rows: int, context: int, p, profile, host_share: float):
    """A verify step of ``rows`` rows for each of ``users`` on GPUs: (its `lpu.gpu.step_parts`, the host's seconds).

    Costed as a decode step of users x rows tokens, each user's cache read once for its rows, plus a serving
    stack's host time as `lpu.gpu` charges a plain decode step of the users.
    """
    from . import gpu

    return (gpu.step_parts(m, c, tp, prec, "decode", users * rows, context, p, rows_per_user=rows),
            gpu.host_s(profile, users, context, p, host_share))


def gpu_verify_s(model, system: str, chips: int, precision: str, users: int, rows: int, context: int,
                 serving: str | None = None) -> tuple[float, float, float]:
    """Seconds of one verify step on ``chips`` GPUs, ``rows`` rows (k+1) for each of ``users`` after ``context``
    cached tokens: (nominal, low, high), as ``lpu.simulate(..., draft=...)`` charges it. The ``verify_s`` rows of
    ``lpu/data/published.csv`` (measured on a lent H200) are its validation (notebook 03)."""
    from . import gpu

    m, c = models.get(model), hardware.get(system)
    if not isinstance(c, hardware.GPUSpec):
        raise ValueError(f"system must be a GPU ({', '.join(n for n in hardware.names() if isinstance(hardware.get(n), hardware.GPUSpec))}), "
                         f"got {system!r}: an LPU's verify step is scheduled by lpu.simulate(..., draft=...)")
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"rows must be an integer >= 1 (the last accepted token and the draft's k tokens), got {rows!r}")
    tp, prec = gpu._fit(m, c, chips, precision, users, context + rows)
    profile = gpu.serving_profile(serving)
    return tuple(gpu.step_s(v) + host for v, host in (_gpu_verify(m, c, tp, prec, users, int(rows), context, p, profile, share)
                                                       for p, share in gpu.range_corners(gpu.CALIBRATED, profile)))


def _gpu(m, d, c, base, k, ranges, serving):
    """GPU: (nominal costs, slow and fast speculative step seconds). The draft on the target's GPUs, in turn with it."""
    from . import gpu

    tp, prec = base.chips, models.get_precision(base.precision)
    gpu._fit(d, c, tp, base.precision, base.users, base.prompt_tokens + base.output_tokens)  # raises if the draft does not fit too
    context = min(base.prompt_tokens + base.output_tokens // 2, m.seq_len - k - 1)  # the k+1 rows fit the context
    profile = gpu.serving_profile(serving)
    users = base.users

    def step(p: gpu.GPUParams, host_share: float):
        ver, host = _gpu_verify(m, c, tp, prec, users, k + 1, context, p, profile, host_share)
        drf = gpu.step_s(gpu.step_parts(d, c, tp, prec, "decode", users, context, p))
        pre = gpu.step_s(gpu.step_parts(d, c, tp, prec, "prefill", base.prompt_tokens, 0, p))
        return k * drf, gpu.step_s(ver) + host, pre, ver, host

    nominal_end, fast_end, slow_end = gpu.range_corners(gpu.CALIBRATED, profile)
    drf, ver_s, pre, ver, host = step(*nominal_end)
    parts = {"memory": ver["memory"] / ver_s, "compute": ver["compute"] / ver_s, "kernel overhead": ver["overhead"] / ver_s,
             "nvlink": ver["nvlink"] / ver_s, "serving stack (host)": host / ver_s}
    # The target's prefill is already in base.ttft_s; the draft's adds on the same GPUs.
    nominal = (drf, ver_s, base.ttft_s - base.itl_s + pre, f"on the target's {tp} x {c.name}, sharing their HBM and time", parts)
    if not ranges:
        return nominal, None, None
    slow, fast = step(*slow_end), step(*fast_end)
    return nominal, slow[0] + slow[1], fast[0] + fast[1]


def speedup_curve(target, draft, draft_tokens=(2, 4, 8), systems=(("lpu-v1", 1), ("h100", 1), ("h100", 64)),
                  acceptances=np.linspace(0, 1, 11), serving: str | None = "ideal") -> list[dict]:
    """Rows (system, users, k, acceptance, tokens_per_step, verify_over_decode, draft_over_decode, speedup) of
    `lpu.simulate` with and without ``draft``, for `lpu.plots.speculative_speedup` (notebook 03)."""
    from .system import simulate

    rows = []
    for sysname, users in systems:
        gpu_only = dict(serving=serving) if isinstance(hardware.get(sysname), hardware.GPUSpec) else {}
        for k in draft_tokens:  # a step's cost does not depend on the acceptance: one simulation per (system, k)
            s = simulate(target, sysname, users=users, ranges=False, draft=draft, draft_tokens=k, acceptance=0.5, **gpu_only).speculation
            for a in acceptances:
                e = tokens_per_step(float(a), k)
                rows.append(dict(system=sysname, users=users, k=k, acceptance=float(a), tokens_per_step=e,
                                 verify_over_decode=s.verify_s / s.plain_itl_s, draft_over_decode=s.draft_s / s.plain_itl_s,
                                 speedup=s.plain_itl_s * e / s.step_s))
    return rows
