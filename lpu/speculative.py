"""Speculative decoding with real weights: a small draft model proposes, the target verifies.

``Engine.generate(prompt, ..., draft=other_engine, draft_tokens=k)``: the draft
(same tokenizer, e.g. ``Engine.default("draft")``) proposes k tokens one at a
time; the target checks them in one (k+1)-token forward pass (fp32 weights
read in panels, `lpu.panels`, 4 tokens for about the price of one) and keeps the longest prefix its own rule accepts,
plus one token of its own: greedy, its argmax, so the output is exactly its
greedy output; sampled, the accept/reject rule of Leviathan et al. (2023),
"Fast Inference from Transformers via Speculative Decoding": accept a draft
token d with probability min(1, p(d) / q(d)), else draw from the normalised
max(0, p - q), which leaves the target's distribution p unchanged.
`acceptance_rate` measures how often the target accepts, `wall_speedup` how much faster
it decodes on this machine. Introduced in ``notebooks/03_token_generation.ipynb``.

Greedy on one chip, whole steps (the draft's k forward passes and argmaxes, the
target's verification, the comparison) run in one compiled call, several steps
per call (`BURST_S`): with a draft ~13x smaller than the target, Python between
the passes would cost more than the draft's arithmetic. On several threads the
target's verify step is one parallel region (`_greedy_burst_team`). The cost model is
measured by ``benchmarks/speculative.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numba
import numpy as np

from . import kernels

# A burst of greedy steps runs in one compiled call; bursts double from one step until a call takes about this
# long: the first token comes after one step, later ones in bursts short enough that the stream looks continuous.
BURST_S = 2e-3
_LOGITS = 27  # index of the logits buffer in `_model_args`


def _model_args(engine) -> tuple:
    """The arguments of ``kernels._forward`` that belong to one single-chip Engine, in its order (after tokens,
    pos0, n_logits; before n_chunks): `Engine._model_args` (weights, KV caches, RoPE tables, eps, n_kv_heads, weights_from_dram),
    then its buffers and logits."""
    return (*engine._model_args, *engine._bufs, engine.logits)


@kernels._ijit
def _propose(seq, m, draft_len, kk, work, D, d_chunks):
    """A step's first part: the draft, its KV cache holding positions 0..draft_len-1, catches up with the text seq[:m]
    and proposes kk tokens, work[1..kk]; work[0] = seq[m - 1], the verify step's first row. Returns the new draft_len
    (the last proposal is not fed yet)."""
    work[0] = seq[m - 1]
    if kk == 0:
        return draft_len
    kernels._forward(seq[draft_len:m], draft_len, 1, *D, d_chunks)
    work[1] = np.argmax(D[_LOGITS][0])
    for j in range(1, kk):
        kernels._forward(work[j:j + 1], m + j - 1, 1, *D, d_chunks)
        work[j + 1] = np.argmax(D[_LOGITS][0])
    return m + kk - 1


@kernels._ijit
def _judge(seq, m, kk, work, logits, flags, stop_a, stop_b):
    """A step's last part, after the target's verify step over work[:kk + 1] (logits row j: its next token after
    proposal[:j]): its tokens go to seq[m:], their flags to flags[0:] (1 drafted and accepted, 2 the target's in
    place of a rejected proposal, 0 the target's after kk accepted). Returns (proposals accepted, tokens up to and
    including the first stop token, 0 if none)."""
    acc = 0
    while acc < kk:
        t = np.argmax(logits[acc])
        seq[m + acc] = t
        if t != work[acc + 1]:
            flags[acc] = 2
            break
        flags[acc] = 1
        acc += 1
    if acc == kk:  # every proposal accepted: one more token from the last row
        seq[m + kk] = np.argmax(logits[kk])
        flags[kk] = 0
    for j in range(acc + 1):
        if seq[m + j] == stop_a or seq[m + j] == stop_b:
            return acc, j + 1
    return acc, 0


@kernels._jit
def _greedy_burst(seq, n, draft_len, n_left, k, max_steps, stop_a, stop_b, work, flags, D, T, d_chunks, t_chunks):
    """Up to ``max_steps`` greedy speculative steps, compiled: ``seq`` (int64) holds the text, its first ``n``
    tokens so far; the target's KV cache holds positions 0..n-2, the draft's 0..draft_len-1. New tokens go to
    seq[n:], ``flags`` says for each 1 (drafted and accepted), 2 (the target's in place of a rejected draft
    token) or 0 (the target's after k accepted). D, T: `_model_args` of the draft and the target; ``work``
    (int64, >= k + 1). Stops after ``n_left`` tokens or at a stop token (included). Returns (tokens written,
    the draft's new draft_len)."""
    out = 0
    for _ in range(max_steps):
        if out >= n_left:
            break
        m, kk = n + out, min(k, n_left - out - 1)  # the target adds one token of its own
        draft_len = _propose(seq, m, draft_len, kk, work, D, d_chunks)
        kernels._forward(work[:kk + 1], m - 1, kk + 1, *T, t_chunks)  # the verify step
        acc, stop = _judge(seq, m, kk, work, T[_LOGITS], flags[out:], stop_a, stop_b)
        draft_len = min(draft_len, m + acc)  # the draft's cache is good up to the accepted text
        if stop:
            return out + stop, draft_len
        out += acc + 1
    return out, draft_len


@kernels._jit
def _greedy_burst_team(seq, n, draft_len, n_left, k, max_steps, stop_a, stop_b, work, flags, D, T, d_chunks, t_chunks):
    """`_greedy_burst` for a target that decodes in one parallel region per step (`kernels.use_team`): its verify step
    is one region too (`kernels._forward_team`). A compiled function of its own, as `kernels._decode_greedy_team`."""
    out = 0
    for _ in range(max_steps):
        if out >= n_left:
            break
        m, kk = n + out, min(k, n_left - out - 1)
        draft_len = _propose(seq, m, draft_len, kk, work, D, d_chunks)
        kernels._forward_team(work[:kk + 1], m - 1, kk + 1, *T, t_chunks)
        acc, stop = _judge(seq, m, kk, work, T[_LOGITS], flags[out:], stop_a, stop_b)
        draft_len = min(draft_len, m + acc)
        if stop:
            return out + stop, draft_len
        out += acc + 1
    return out, draft_len


def check_draft(target, draft, draft_tokens: int) -> None:
    """ValueError unless ``draft`` can propose ``draft_tokens`` tokens per step for ``target``."""
    if type(draft) is not type(target):
        raise ValueError(f"draft must be an lpu.Engine (e.g. Engine.default('draft')), got {type(draft).__name__}")
    if draft is target:
        raise ValueError("draft must be another Engine than the target (its KV cache is its own)")
    if draft.tokenizer.pieces != target.tokenizer.pieces:
        raise ValueError(f"draft {draft.config.name} has another tokenizer than {target.config.name}: speculative decoding needs the same token ids")
    if draft.config.seq_len < target.config.seq_len:
        raise ValueError(f"draft {draft.config.name}'s context ({draft.config.seq_len}) is shorter than {target.config.name}'s ({target.config.seq_len})")
    limit = target.chunk_rows - 1 if target.shards is None else 64
    if not isinstance(draft_tokens, (int, np.integer)) or isinstance(draft_tokens, (bool, np.bool_)) or not 1 <= draft_tokens <= limit:
        raise ValueError(f"draft_tokens must be an integer from 1 to {limit}, got {draft_tokens!r}")


def stream(target, draft, k: int, ids: list[int], n_new: int, temperature: float, top_p: float, seed: int, t_sim) -> Iterator[tuple]:
    """The fields of each `lpu.runtime.TokenEvent` of ``target.generate(..., draft=draft, draft_tokens=k)`` (arguments
    checked there): token id, text, position, t_sim_s, t_wall_s, drafted, rejected.

    The draft proposes k tokens, the target verifies k+1 positions in one pass. Invariants: ``seq`` is
    the text so far; the target's KV cache holds positions 0..len(seq)-2 (its last token is fed by the
    next verification), the draft's holds 0..draft_len-1.
    """
    if temperature == 0 and target.shards is None and draft.shards is None and target.trace is None and draft.trace is None:
        yield from _greedy_stream(target, draft, k, ids, n_new, t_sim)
        return
    rng = np.random.default_rng(seed)
    greedy = temperature == 0
    t0 = time.perf_counter()
    seq, draft_len, emitted = list(ids), 0, 0
    if len(ids) > 1:
        target._feed(ids[:-1], 0, 0)  # the prompt but its last token: no logits needed yet
    stop = (target.tokenizer.bos_id, target.tokenizer.eos_id)
    while emitted < n_new:
        n = len(seq)
        kk = min(k, n_new - emitted - 1)  # at most the tokens still wanted (the target adds one of its own)
        proposal, q = [], []
        if kk:
            ql = draft._feed(seq[draft_len:], draft_len, 1)[0]  # the draft catches up with the accepted text
            for j in range(kk):
                if greedy:
                    d = int(np.argmax(ql))
                else:
                    qj = kernels.probabilities(ql, temperature, top_p)
                    d = _draw(qj, rng.random())
                    q.append(qj)
                proposal.append(d)
                if j + 1 < kk:
                    ql = draft._feed([d], n + j, 1)[0]
            draft_len = n + kk - 1  # the last proposal is not fed (yet)
        logits = target._feed([seq[-1]] + proposal, n - 1, kk + 1)  # row j: this model's next-token logits after proposal[:j]
        if target.trace is not None:
            target.trace.append("sample")
        out: list[tuple[int, bool, bool]] = []  # (token, drafted, rejected)
        for j, d in enumerate(proposal):
            if greedy:
                t = int(np.argmax(logits[j]))
                if t == d:
                    out.append((d, True, False))
                    continue
                out.append((t, False, True))
                break
            p = kernels.probabilities(logits[j], temperature, top_p)
            if rng.random() * q[j][d] < p[d]:  # accept with probability min(1, p(d) / q(d))
                out.append((d, True, False))
                continue
            residual = np.maximum(p - q[j], 0.0)  # rejected: draw from the normalised excess of p over q
            out.append((_draw(residual / residual.sum(), rng.random()), False, True))
            break
        else:  # every proposal accepted: one more token from the last row
            out.append((kernels.sample(logits[kk], temperature, top_p, rng), False, False))
        draft_len = min(draft_len, n + sum(dr for _, dr, _ in out))  # the draft's cache is good up to the accepted text
        for token, drafted, rejected in out:
            if token in stop:
                return
            yield (token, target.tokenizer.decode(seq[-1], token), len(seq), float(t_sim[emitted]), time.perf_counter() - t0,
                             drafted, rejected)
            seq.append(token)
            emitted += 1


def _greedy_stream(target, draft, k: int, ids: list[int], n_new: int, t_sim) -> Iterator[tuple]:
    """`stream` for greedy decoding on one chip: bursts of whole steps in `_greedy_burst`, the same tokens and flags."""
    t0 = time.perf_counter()
    if n_new == 0:
        return
    n = len(ids)
    seq = np.zeros(n + n_new, np.int64)
    seq[:n] = ids
    work, flags = np.zeros(k + 1, np.int64), np.zeros(n_new, np.int8)
    if n > 1:  # the prompt but its last token, in chunks: the burst's catch-up is then at most 2 tokens (a chunk's rows)
        target._feed(ids[:-1], 0, 0)
        draft._feed(ids[:-1], 0, 0)
    D, T = _model_args(draft), _model_args(target)
    chunks = [1 if e.threads == 1 else 4 * e.threads for e in (draft, target)]  # as Engine._feed cuts its kernels
    threads = max(draft.threads, target.threads)
    bos, eos = target.tokenizer.bos_id, target.tokenizer.eos_id
    decode = target.tokenizer.decode
    draft_len, emitted, steps, prev = n - 1, 0, 1, ids[-1]
    burst = _greedy_burst_team if target._step is kernels._forward_team else _greedy_burst  # as the target decodes
    while emitted < n_new:
        saved = numba.get_num_threads() if threads > 1 else 1
        if saved != threads:
            numba.set_num_threads(threads)
        try:
            c0 = time.perf_counter()
            got, draft_len = burst(seq, n + emitted, draft_len, n_new - emitted, k, steps, bos, eos, work, flags, D, T, *chunks)
            if time.perf_counter() - c0 < BURST_S / 2 and steps < 64:
                steps *= 2
        finally:
            if saved != threads:
                numba.set_num_threads(saved)
        for token, flag in zip(seq[n + emitted:n + emitted + got].tolist(), flags[:got].tolist()):
            if token == bos or token == eos:
                return
            yield token, decode(prev, token), n + emitted, float(t_sim[emitted]), time.perf_counter() - t0, flag == 1, flag == 2
            prev = token
            emitted += 1


def _draw(probs: np.ndarray, coin: float) -> int:
    """The token whose cumulative probability first exceeds ``coin`` in [0, 1) (inverse CDF)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, coin * cdf[-1], side="right"), len(cdf) - 1))


def acceptance_rate(target, draft, draft_tokens: int = 4, prompts=("ROMEO:",), max_new_tokens: int = 128,
                    temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> float:
    """Share of the draft's proposals that ``target`` accepts in speculative decoding (deterministic).

    Counts the proposals the target judged: accepted ones and, per step, the one
    it rejected (those after a rejection are discarded unjudged). With a per-token
    acceptance a and k proposals per step, a step emits (1 - a**(k+1)) / (1 - a)
    tokens on average (Leviathan et al. 2023), the figure ``lpu.simulate`` uses.
    """
    accepted = rejected = 0
    for prompt in prompts:
        for ev in target.generate(prompt, max_new_tokens, temperature, top_p, seed, draft=draft, draft_tokens=draft_tokens):
            accepted += ev.drafted
            rejected += ev.rejected
    if accepted + rejected == 0:
        raise ValueError("no draft token was judged: give longer generations (max_new_tokens > 1)")
    return accepted / (accepted + rejected)


def wall_speedup(target, draft, draft_tokens=(1, 2, 3, 4), prompts=("ROMEO:",), max_new_tokens: int = 128,
                 repeats: int = 3) -> list[dict]:
    """Greedy speculative decoding against plain greedy decoding on this machine, measured: one dict per k in
    ``draft_tokens`` with the acceptance, the tokens per step, plain and speculative tokens per second (wall time
    over ``prompts`` x ``max_new_tokens``, the best of ``repeats`` rounds, interleaved) and their ratio, the speed-up,
    and whether the tokens were plain decoding's (they must be). Only the times vary from run to run.
    Introduced in ``notebooks/03_token_generation.ipynb``; ``benchmarks/speculative.py`` takes the cost apart."""
    ks = (draft_tokens,) if isinstance(draft_tokens, (int, np.integer)) else tuple(draft_tokens)
    if not ks:
        raise ValueError("draft_tokens must be an integer or a non-empty sequence of them, got an empty one")
    for k in ks:
        check_draft(target, draft, k)
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(prompts, str) or not prompts or not isinstance(max_new_tokens, int) or max_new_tokens < 2:
        raise ValueError(f"give a sequence of prompts and max_new_tokens >= 2 (a step to time), got {prompts!r} and {max_new_tokens!r}")

    def run(**kw):  # (seconds, events) over the prompts
        t0, events = time.perf_counter(), [ev for p in prompts for ev in target.generate(p, max_new_tokens, **kw)]
        return time.perf_counter() - t0, events

    run(), run(draft=draft, draft_tokens=ks[0])  # compile and warm up
    best = {}
    for _ in range(repeats):
        for k in (0, *ks):
            seconds, events = run(**(dict(draft=draft, draft_tokens=k) if k else {}))
            best[k] = min(best.get(k, (np.inf,)), (seconds, events), key=lambda r: r[0])
    plain_s, plain = best[0]
    rows = []
    for k in ks:
        seconds, events = best[k]
        accepted, rejected = sum(e.drafted for e in events), sum(e.rejected for e in events)
        rows.append(dict(draft_tokens=k, acceptance=accepted / max(accepted + rejected, 1),
                         tokens_per_step=len(events) / sum(not e.drafted for e in events), plain_tok_s=len(plain) / plain_s,
                         speculative_tok_s=len(events) / seconds, speedup=plain_s / seconds,
                         same_tokens=[e.token_id for e in events] == [e.token_id for e in plain]))
    return rows
