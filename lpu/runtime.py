"""The runtime: real tokens from real weights, each stamped with the simulated LPU time.

`Engine` executes the op list of `lpu.graph` with the numba kernels of
`lpu.kernels` on weights read by `lpu.checkpoint`, as one compiled call per
forward pass (`lpu.kernels._forward`): the prompt goes through in chunks
(batched matmuls and causal attention, the classifier only at the last
position: the ops of ``graph.prefill``), then each decode step (``graph.decode``)
samples the next token; greedy decoding runs several steps per compiled call
(`lpu.kernels._decode_greedy`, argmax inside; see `Engine.BURST_S`). Every emitted `TokenEvent` carries ``t_sim_s``, the
time at which an LPU system running this model would have emitted it (see
`simulated_times`, from the static schedule of `lpu.schedule`). Introduced in
``notebooks/03_token_generation.ipynb``.

Speculative decoding (``generate(..., draft=other_engine, draft_tokens=k)``)
is `lpu.speculative`; `acceptance_rate` and `wall_speedup` (re-exported here) measure how often
the target accepts a draft token and how much faster it then decodes on this machine.

With ``chips > 1`` the engine executes the sharded plan of
`lpu.shard.functional_plan` through `lpu.sharded`: each simulated chip holds
only its own shards of the weights and of the KV cache, and the chips exchange
vectors through explicit collectives, so the tokens come out of the same
arithmetic a multi-LPU system would do.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from . import DATA_DIR, checkpoint, graph, hardware, kernels, models, panels, schedule, shard, sharded, speculative
from .checkpoint import MATRICES
from .quant import PRECISIONS, to_precision

DATA_MODELS = DATA_DIR / "models"
DEFAULT_CHECKPOINT = DATA_MODELS / "tiny_shakespeare.bin"
DEFAULT_TOKENIZER = DATA_MODELS / "tok512_shakespeare.bin"
BUNDLED = {"shakespeare": DEFAULT_CHECKPOINT, "draft": DATA_MODELS / "tiny_shakespeare_draft.bin"}  # Engine.default(name); one tokenizer
# Threads for token generation when neither ``threads=`` nor LPU_THREADS says: 1. A second thread gains
# little and, when the cores are busy, loses much (benchmarks/kernels.py, 2-core Xeon): idle (load ~2),
# 2 threads gave 1.3x (bundled model) and 1.6x (stories15M shapes); shared with other jobs (load ~10),
# 2 threads gave 128 tok/s against 874 with 1 (bundled) and 899 against 2,092 (stories260K); issue 15
# saw 36 against 254. Every parallel kernel waits for its slowest thread, and a busy core is slow. With more
# threads, a kernel still runs on one where its work is below `lpu.jit.PARALLEL_MIN_BYTES` (small models: all).
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, its text, and when the simulated LPU system would emit it."""

    token_id: int
    text: str
    position: int  # index of the token in the sequence (prompt included)
    t_sim_s: float  # simulated time since the request arrived
    t_wall_s: float  # CPU wall time since generate() was called
    drafted: bool = False  # speculative decoding: proposed by the draft model and accepted by the target
    rejected: bool = False  # speculative decoding: the target's own token in place of a draft token it rejected


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def resolve_threads(threads: int | None = None) -> int:
    """Threads the kernels use for token generation: ``threads``, else the ``LPU_THREADS`` environment variable,
    else `DEFAULT_THREADS`; at most ``numba.config.NUMBA_NUM_THREADS`` (this machine's cores unless set)."""
    where = "threads"
    if threads is None and os.environ.get("LPU_THREADS", "").strip():
        where, threads = "LPU_THREADS", os.environ["LPU_THREADS"].strip()
        threads = int(threads) if threads.isdigit() else threads
    if threads is None:
        threads = DEFAULT_THREADS
    top = numba.config.NUMBA_NUM_THREADS
    if not _is_int(threads) or not 1 <= threads <= top:
        raise ValueError(f"{where} must be an integer from 1 to {top} (numba's threads on this machine), got {threads!r}")
    return int(threads)


# A static schedule is compiled for fixed shapes: decode programs are compiled for
# contexts in buckets of this many positions, each attending over its bucket's end.
CONTEXT_BUCKET = 64


@functools.lru_cache(maxsize=4096)
def _step_s(model: models.ModelConfig, chip: hardware.ChipSpec, phase: str, tokens: int, precision: str,
            params: schedule.CostParams) -> float:
    if phase == "prefill":
        return schedule.schedule_prefill(model, chip, tokens, precision, params).latency_s
    return schedule.schedule_decode(model, chip, 1, tokens, precision, params, check_capacity=False).latency_s


def simulated_times(model: models.ModelConfig, prompt_tokens: int, new_tokens: int, chip: hardware.ChipSpec | str = "lpu-v1",
                    precision: str = "int8", params: schedule.CostParams = schedule.CostParams()) -> np.ndarray:
    """Simulated emission time of each new token on one LPU, from the static schedule.

    The first token comes when the prefill of the prompt is done
    (`lpu.schedule.schedule_prefill`); each later one a decode step later
    (`lpu.schedule.schedule_decode`), using the program compiled for its context
    bucket (`CONTEXT_BUCKET` positions: the step at context T costs the step at
    the end of T's bucket, as a statically compiled program would). Schedules
    are cached, so a repeated call costs nothing. Raises
    `lpu.sram.SRAMCapacityError` if the model does not fit the chip.

    Returns
    -------
    np.ndarray of shape (new_tokens,): seconds from the request to each token.
    """
    c = hardware.get(chip)
    schedule.require_one_chip(model, c, precision, 1, min(prompt_tokens + new_tokens, model.seq_len))
    steps = np.empty(max(new_tokens, 1))  # (as ever: the prefill step even for new_tokens=0)
    steps[:1] = _step_s(model, c, "prefill", max(prompt_tokens, 1), precision, params)
    ctx = np.minimum(prompt_tokens + np.arange(1, new_tokens) - 1, model.seq_len - 1)  # the context of token i's step
    bucket_end = np.minimum((ctx // CONTEXT_BUCKET + 1) * CONTEXT_BUCKET - 1, model.seq_len - 1)
    for end in np.unique(bucket_end):  # one lookup per bucket, not per token (hashing the configs costs ~15 us a lookup)
        steps[1:][bucket_end == end] = _step_s(model, c, "decode", int(end), precision, params)
    return np.cumsum(steps)


class Engine:
    """A llama2.c-format model, ready to generate on the CPU.

    Parameters
    ----------
    ckpt : lpu.checkpoint.Checkpoint
    tokenizer : lpu.checkpoint.Tokenizer
    chips : int
        LPUs the simulated system splits the model over. 1 runs the fast
        single-chip path; N > 1 executes ``lpu.shard.functional_plan(config, N)``
        (``plan.pp`` stages x ``plan.tp`` tensor-parallel ranks), each chip a
        `ChipShard` holding only its shards, the chips joined by explicit
        collectives (see `sharded_op_names`), one token at a time. Greedy tokens
        are the same as with chips=1 (logits agree to rounding: partial sums are
        added in another order).
    precision : {None, "fp32", "fp16", "int8"}
        Weight storage for the kernels; None keeps the checkpoint's (fp32 for
        versions 0/1, int8 for version 2).
    chip : str
        The LPU whose time ``t_sim_s`` simulates (an LPU chip of `lpu.hardware`).
    threads : int or None
        Threads the kernels use; None: the ``LPU_THREADS`` environment variable, else
        `DEFAULT_THREADS` (see `resolve_threads`).

    Examples
    --------
    >>> eng = Engine.default()
    >>> text = "".join(ev.text for ev in eng.generate("ROMEO:", max_new_tokens=8))
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, tokenizer: checkpoint.Tokenizer, chips: int = 1, precision: str | None = None,
                 chip: str = "lpu-v1", threads: int | None = None):
        c = ckpt.config
        if tokenizer.vocab_size != c.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but {c.name} expects {c.vocab_size}")
        if not _is_int(chips) or chips < 1:
            raise ValueError(f"chips must be a positive integer, got {chips!r}")
        chips = int(chips)
        if precision is None:
            precision = "int8" if ckpt.version == 2 else "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} for the CPU kernels; known: {', '.join(PRECISIONS)}")
        spec = hardware.get(chip)
        if not isinstance(spec, hardware.ChipSpec):
            lpus = [n for n in hardware.names() if isinstance(hardware.get(n), hardware.ChipSpec)]
            raise ValueError(f"chip must be an LPU chip ({', '.join(lpus)}) whose schedule times the tokens; {chip!r} is a "
                             f"{type(spec).__name__}: compare GPUs with lpu.simulate(..., system={chip!r})")
        self.threads = resolve_threads(threads)
        plan = shard.functional_plan(c, chips)  # ValueError where the model cannot be cut over this many chips
        self.config, self.tokenizer, self.chips, self.precision, self.chip = c, tokenizer, chips, precision, spec
        self.checkpoint, self.plan = ckpt, plan
        self.trace: list[str] | None = None  # set to [] to record the ops each forward pass executes
        if chips > 1:
            self.shards = [sharded.ChipShard(ckpt, plan, s, r, precision) for s in range(plan.pp) for r in range(plan.tp)]  # by chip_id
            self.ops = sharded.sharded_op_names(plan)  # the op list each step executes, collectives included
            return
        self.shards: list[sharded.ChipShard] | None = None
        w = ckpt.weights
        stored = [kernels.stored(to_precision(w[name], precision)) for name in MATRICES]  # each (L, d_out, n_groups, G), scales
        self._W, self._S = tuple(d for d, _ in stored), tuple(s for _, s in stored)
        self._wcls, self._scls = kernels.stored(to_precision(ckpt.classifier, precision))
        self._weight_bytes = sum(d.nbytes + (s.nbytes if precision == "int8" else 0) for d, s in stored + [(self._wcls, self._scls)])
        self.rms_att = np.ascontiguousarray(w["rms_att_weight"], np.float32)  # (L, dim)
        self.rms_ffn = np.ascontiguousarray(w["rms_ffn_weight"], np.float32)
        self.rms_final = np.ascontiguousarray(w["rms_final_weight"], np.float32)
        self.embedding = np.ascontiguousarray(w["token_embedding_table"], np.float32)  # (vocab, dim), for the lookup
        self.rope_cos, self.rope_sin = kernels.rope_table(c.seq_len, c.head_dim, c.rope_theta)
        self.ops = graph.decode(c, 1, 0, precision).names  # the op list each step executes
        self._alloc_state()
        # Weights beyond the last-level cache stream from DRAM on every token: a few tokens (speculative verification, a
        # prefill's last rows) then read each weight row once for all of them (benchmarks/speculative.py measures both).
        self.weights_from_dram = self._weight_bytes > kernels.last_level_cache_bytes()
        # On several threads a decode step runs as one parallel region, where the weights are big enough to pay for it.
        self._step, self._decode = ((kernels._forward_team, kernels._decode_greedy_team) if kernels.use_team(self.threads, self._weight_bytes)
                                    else (kernels._forward, kernels._decode_greedy))
        # fp32 matrices are kept in panels too (`lpu.panels`), which 1-8 tokens at once (decode and verify steps) read.
        packed = precision == "fp32"
        self._P = tuple(panels.pack(d[:, :, 0]) if packed else np.zeros((c.n_layers, 0, 0, panels.LANES), np.float32) for d in self._W)
        self._pcls = panels.pack(self._wcls[:, 0]) if packed else panels.NO_PANELS
        self._model_args = (self.embedding, self.rms_att, self.rms_ffn, self.rms_final, self._W, self._S, self._P, self._wcls, self._scls, self._pcls,
                            self.k_cache, self.v_cache, self.rope_cos, self.rope_sin, c.norm_eps, c.n_kv_heads,
                            self.weights_from_dram)  # _forward's, in its order

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights one decode step streams (every matrix once, at the storage precision; with
        chips > 1, summed over the chips, so replicated KV-head rows count once per chip holding them)."""
        if self.shards is not None:
            return sum(ch.weight_bytes for ch in self.shards)
        return self._weight_bytes

    # Rows one forward pass takes at most (longer prompts go in several chunks): enough that the
    # batched kernels run at full speed, few enough that the attention scratch stays within ~32 MB.
    @property
    def chunk_rows(self) -> int:
        c = self.config
        return int(max(8, min(128, (32 << 20) // (4 * c.n_heads * c.seq_len))))

    def _alloc_state(self):
        c, T, f = self.config, self.chunk_rows, np.float32
        self._bufs = (np.zeros((T, c.dim), f), np.zeros((T, c.dim), f), np.zeros((T, c.dim), f), np.zeros((T, c.q_dim), f),
                      np.zeros((T, c.kv_dim), f), np.zeros((T, c.kv_dim), f), np.zeros((T, c.q_dim), f), np.zeros((T, c.hidden_dim), f),
                      np.zeros((T, c.hidden_dim), f), np.zeros((T * c.n_heads, c.seq_len), f))  # X XB XO Q K V AO H1 H3 att
        self.logits = np.zeros((T, c.vocab_size), f)
        self._token = np.zeros(1, np.int64)
        self._ahead = np.zeros(64, np.int64)  # tokens of a greedy burst (see BURST_S)
        self.k_cache = np.zeros((c.n_layers, c.kv_dim, c.seq_len), f)  # (L, kv_dim, seq_len): positions contiguous, see kernels._attend
        self.v_cache = np.zeros((c.n_layers, c.kv_dim, c.seq_len), f)

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_llama2c(cls, checkpoint_path: str | Path, tokenizer_path: str | Path, chips: int = 1, precision: str | None = None,
                     chip: str = "lpu-v1", threads: int | None = None) -> Engine:
        """Load a llama2.c checkpoint (versions 0, 1, 2) and its tokenizer."""
        ckpt = checkpoint.read_llama2c(checkpoint_path)
        tok = checkpoint.Tokenizer.from_file(tokenizer_path, vocab_size=ckpt.config.vocab_size)
        return cls(ckpt, tok, chips, precision, chip, threads)

    @classmethod
    def default(cls, model: str = "shakespeare", chips: int = 1, precision: str | None = None, threads: int | None = None) -> Engine:
        """A bundled model (``lpu/data/models/README.md``): "shakespeare", a small Llama trained on Shakespeare,
        or "draft", its much smaller draft model for speculative decoding (same tokenizer)."""
        if model not in BUNDLED:
            raise ValueError(f"unknown bundled model {model!r}; known: {', '.join(BUNDLED)}")
        for p in (BUNDLED[model], DEFAULT_TOKENIZER):
            if not p.exists():
                raise FileNotFoundError(f"the bundled model file {p} is missing; it ships in the repository (scripts/train_tiny.py remakes it)")
        return cls.from_llama2c(BUNDLED[model], DEFAULT_TOKENIZER, chips, precision, threads=threads)

    # ---- forward passes: the ops of graph.prefill(model, T) / graph.decode(model, 1) --------
    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits (vocab_size,) after feeding ``token`` at position ``pos``; updates the KV cache."""
        c = self.config
        if not _is_int(token) or not 0 <= token < c.vocab_size:
            raise ValueError(f"token must be a token id from 0 to {c.vocab_size - 1} ({c.name}'s vocabulary), got {token!r}")
        if not _is_int(pos) or not 0 <= pos < c.seq_len:
            raise ValueError(f"position {pos!r} is outside {c.name}'s context of {c.seq_len} tokens (0..{c.seq_len - 1})")
        return self._feed([int(token)], int(pos), 1)[0]

    def _threaded(self, fn, *args):
        """``fn(*args)`` with numba's threads set to this engine's (per calling thread; the caller's setting comes back).
        With one thread there is nothing to set, as no kernel opens a parallel region, nor to look up (~7 us a call)."""
        saved = numba.get_num_threads() if self.threads > 1 else 1
        if saved != self.threads:
            numba.set_num_threads(self.threads)
        try:
            return fn(*args)
        finally:
            if saved != self.threads:
                numba.set_num_threads(saved)

    def _feed(self, tokens: list[int], pos0: int, n_logits: int) -> np.ndarray:
        """Feed ``tokens`` (trusted ids) at positions pos0..; the logits (n_logits <= chunk_rows, vocab) of the last n_logits positions."""
        if self.shards is not None:
            rows = [self._threaded(sharded.forward, self.shards, self.plan, t, pos0 + i, np.empty(self.config.vocab_size, np.float32), self.trace)
                    for i, t in enumerate(tokens)]
            return np.stack(rows[len(rows) - n_logits:]) if n_logits else np.empty((0, self.config.vocab_size), np.float32)
        T = self.chunk_rows
        first = len(tokens) % T or T  # the last chunk is full, so it holds all the logits rows asked for (n_logits <= T)
        for start, stop in zip([0] + list(range(first, len(tokens), T)), range(first, len(tokens) + 1, T)):
            if len(tokens) == 1:  # a decode step: no list to convert
                self._token[0] = tokens[0]
                chunk = self._token
            else:
                chunk = np.asarray(tokens[start:stop], np.int64)
            n = n_logits if stop == len(tokens) else 0
            step = self._step if len(chunk) <= kernels.TEAM_MAX_ROWS else kernels._forward  # a decode or verify step, or a prompt chunk
            self._threaded(step, chunk, pos0 + start, n, *self._model_args, *self._bufs, self.logits, kernels.n_chunks(self.threads))
            if self.trace is not None:
                self.trace.extend(self.ops[:-1])  # the graph's ops bar sampling, for the chunk's rows at once
        return self.logits[:n_logits]

    def _decode_greedy(self, token: int, pos: int, n_steps: int) -> np.ndarray:
        """Greedy tokens after feeding ``token`` at ``pos`` (one chip): up to ``n_steps``, ending early at BOS or EOS
        (included), in one compiled call (`kernels._decode_greedy`)."""
        n = self._threaded(self._decode, token, pos, n_steps, self.tokenizer.bos_id, self.tokenizer.eos_id, self._ahead,
                           self._token, *self._model_args, *self._bufs, self.logits, kernels.n_chunks(self.threads))
        return self._ahead[:n]

    def simulated_times(self, prompt_tokens: int, new_tokens: int, precision_sim: str = "int8") -> np.ndarray:
        """``t_sim_s`` of each new token: `simulated_times` for one chip, ``lpu.system.token_times`` for several."""
        if self.chips == 1:
            return simulated_times(self.config, prompt_tokens, new_tokens, self.chip, precision_sim)
        from .system import token_times  # lpu.simulate imports the scheduler and planner: only when sharded

        return np.asarray(token_times(self.config, self.chips, prompt_tokens, new_tokens, precision_sim), dtype=np.float64)

    # ---- generation --------------------------------------------------------------
    def generate(self, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 precision_sim: str = "int8", draft: Engine | None = None, draft_tokens: int = 3) -> Iterator[TokenEvent]:
        """Stream the tokens that follow ``prompt``, as run.c generates them.

        The prompt (with BOS) is fed in chunks; then each step samples the
        next token (greedy at ``temperature=0``; else temperature and top-p with a
        generator seeded by ``seed``). Generation stops after ``max_new_tokens``,
        at BOS or EOS, or at the end of the model's context. Every argument is
        checked here, before the first token: a bad one raises ValueError at the call.

        With ``draft`` (an Engine with the same tokenizer, e.g. ``Engine.default("draft")``),
        speculative decoding: ``draft_tokens`` = k tokens proposed per step (default 3, the fastest k for the bundled
        pair in benchmarks/speculative.py), checked by
        one (k+1)-token pass of this model. Greedy output is exactly this model's
        greedy output; sampled output follows this model's distribution (another draw
        than without a draft for the same seed). Events say which tokens were drafted
        (``drafted``) and which replaced a rejected draft token (``rejected``).

        ``t_sim_s`` is the simulated time of each token on the LPU system
        storing the weights at ``precision_sim``, from its static schedule
        (see `simulated_times`; with chips > 1, ``lpu.system.token_times``),
        without speculative decoding.
        """
        c = self.config
        if not isinstance(prompt, (str, bytes)):
            raise ValueError(f"prompt must be a str (text to continue), got {type(prompt).__name__} {prompt!r:.40}")
        if not _is_int(max_new_tokens) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)) or not 0 <= temperature < math.inf:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating, np.integer)) or not 0 < top_p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1] (1 = no nucleus cut), got {top_p!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        models.get_precision(precision_sim)  # ValueError naming the known precisions
        if draft is not None:
            speculative.check_draft(self, draft, draft_tokens)
        ids = self.tokenizer.encode(prompt, bos=True)
        if len(ids) >= c.seq_len:
            raise ValueError(f"the prompt is {len(ids)} tokens (with BOS); {c.name}'s context is {c.seq_len} tokens")
        n_new = min(max_new_tokens, c.seq_len - len(ids))
        t_sim = self.simulated_times(len(ids), max(n_new, 1), precision_sim)
        if draft is None:
            return self._stream(ids, n_new, float(temperature), float(top_p), int(seed), t_sim)
        return (TokenEvent(*fields) for fields in speculative.stream(self, draft, int(draft_tokens), ids, n_new, float(temperature), float(top_p),
                                                                     int(seed), t_sim))

    # Greedy decoding runs several tokens per compiled call (`_decode_greedy`), as many as take about this long
    # (doubling from 1): short enough that the stream still looks continuous, long enough that a small
    # model's ~20 us of Python per call (dispatch, sampling, threads) is spread over many tokens.
    BURST_S = 2e-3

    def _stream(self, ids, n_new, temperature, top_p, seed, t_sim) -> Iterator[TokenEvent]:
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        if n_new == 0:
            return
        logits = self._feed(ids, 0, 1)[0]  # the prompt, in chunks; the classifier at its last position only
        token, pos = ids[-1], len(ids) - 1
        nxt = kernels.sample(logits, temperature, top_p, rng)
        stops, decode = (self.tokenizer.bos_id, self.tokenizer.eos_id), self.tokenizer.decode
        one_by_one = self.trace is not None or self.shards is not None or temperature != 0  # else greedy, in bursts
        burst, ahead, i = 1, [nxt], 0
        while True:
            for nxt in ahead:
                if self.trace is not None:
                    self.trace.append("sample")
                if nxt in stops:
                    return
                yield TokenEvent(nxt, decode(token, nxt), pos + 1, float(t_sim[i]), time.perf_counter() - t0)
                token, pos, i = nxt, pos + 1, i + 1
                if i == n_new:
                    return
            if one_by_one:
                ahead = [kernels.sample(self._feed([token], pos, 1)[0], temperature, top_p, rng)]
                continue
            t = time.perf_counter()
            ahead = self._decode_greedy(token, pos, min(burst, n_new - i)).tolist()
            if time.perf_counter() - t < self.BURST_S / 2 and burst < len(self._ahead):
                burst *= 2

    def complete(self, prompt: str, max_new_tokens: int = 128, **kwargs) -> str:
        """The generated text as one string (``generate`` joined)."""
        return "".join(ev.text for ev in self.generate(prompt, max_new_tokens, **kwargs))


acceptance_rate = speculative.acceptance_rate
wall_speedup = speculative.wall_speedup


def compare(reference: Engine, other: Engine, prompt: str, n_tokens: int = 200) -> dict:
    """How closely ``other`` (e.g. int8 weights) follows ``reference`` (e.g. fp32) on ``prompt``.

    Two measures: free-running greedy generation of ``n_tokens`` from both
    (``agreement``: share of positions with the same token; ``first_divergence``:
    index of the first difference, or None), and teacher forcing, where
    ``other`` reads the reference's tokens and its logits are compared at every
    position (``max_abs_logit_error``, ``rel_rms_logit_error``,
    ``top1_agreement``). Used in ``notebooks/03_token_generation.ipynb``.
    """
    if reference.config != other.config:
        raise ValueError(f"compare needs the same model twice, got {reference.config.name} and {other.config.name}")
    ref_ids = [ev.token_id for ev in reference.generate(prompt, n_tokens)]
    oth_ids = [ev.token_id for ev in other.generate(prompt, n_tokens)]
    n = min(len(ref_ids), len(oth_ids))
    same = [a == b for a, b in zip(ref_ids[:n], oth_ids[:n])]
    sequence = reference.tokenizer.encode(prompt) + ref_ids
    errs, sq, ref_sq, top1 = 0.0, 0.0, 0.0, 0
    for pos, tok in enumerate(sequence[:-1]):
        a = reference.forward(tok, pos).astype(np.float64)
        b = other.forward(tok, pos).astype(np.float64)
        errs = max(errs, float(np.abs(a - b).max()))
        sq += float(((a - b) ** 2).sum())
        ref_sq += float((a**2).sum())
        top1 += int(np.argmax(a) == np.argmax(b))
    return dict(tokens=n, agreement=float(np.mean(same)) if n else 1.0, first_divergence=next((i for i, s in enumerate(same) if not s), None),
                max_abs_logit_error=errs, rel_rms_logit_error=math.sqrt(sq / ref_sq) if ref_sq else 0.0,
                top1_agreement=top1 / max(len(sequence) - 1, 1), weight_bytes=other.weight_bytes)
