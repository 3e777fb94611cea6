"""The runtime: real tokens from real weights, each stamped with the simulated LPU time.

`Engine` executes the op list of `lpu.graph` (one decode step of one user)
with the numba kernels of `lpu.kernels` on weights read by `lpu.checkpoint`,
as llama2.c's run.c does: the prompt is fed token by token, then each step
samples the next token. Every emitted `TokenEvent` carries ``t_sim_s``, the
time at which an LPU system running this model would have emitted it (see
`simulated_times`, from the static schedule of `lpu.schedule`). Introduced in
``notebooks/03_token_generation.ipynb``.

With ``chips > 1`` the engine executes the sharded plan of
`lpu.shard.functional_plan` through `lpu.sharded`: each simulated chip holds
only its own shards of the weights and of the KV cache, and the chips exchange
vectors through explicit collectives, so the tokens come out of the same
arithmetic a multi-LPU system would do.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import DATA_DIR, checkpoint, graph, hardware, kernels, models, schedule, shard, sharded
from .quant import QuantizedTensor, quantize_int8

DATA_MODELS = DATA_DIR / "models"
DEFAULT_CHECKPOINT = DATA_MODELS / "tiny_shakespeare.bin"
DEFAULT_TOKENIZER = DATA_MODELS / "tok512_shakespeare.bin"
PRECISIONS = ("fp32", "fp16", "int8")  # weight storage the kernels run; activations are always fp32
MATRICES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its id, its text, and when the simulated LPU system would emit it."""

    token_id: int
    text: str
    position: int  # index of the token in the sequence (prompt included)
    t_sim_s: float  # simulated time since the request arrived
    t_wall_s: float  # CPU wall time since generate() was called


class _Linear:
    """A weight matrix (d_out, d_in) in one storage precision, bound to its numba kernel (checked once, at load)."""

    def __init__(self, w: np.ndarray | QuantizedTensor, precision: str):
        if isinstance(w, QuantizedTensor):
            w = w.dequantize() if precision != "int8" else w
        if precision == "int8" and not isinstance(w, QuantizedTensor):
            n_in = w.shape[-1]
            w = quantize_int8(w, math.gcd(n_in, 64))  # llama2.c's group of 64, smaller where d_in needs it
        elif precision in ("fp32", "fp16"):
            w = np.ascontiguousarray(w, dtype=np.float32 if precision == "fp32" else np.float16)
        self.w = w
        self.shape = w.shape
        self.nbytes = w.nbytes
        kind, self.arrays, _ = kernels._weight_arrays("Engine", w)
        self.kernel = kernels._MATVEC[kind]

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:  # x (d_in,) -> out (d_out,)
        self.kernel(*self.arrays, x, out)
        return out


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
    steps = [_step_s(model, c, "prefill", max(prompt_tokens, 1), precision, params)]
    for i in range(1, new_tokens):
        ctx = min(prompt_tokens + i - 1, model.seq_len - 1)
        bucket_end = min((ctx // CONTEXT_BUCKET + 1) * CONTEXT_BUCKET - 1, model.seq_len - 1)
        steps.append(_step_s(model, c, "decode", bucket_end, precision, params))
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
        collectives (see `sharded_op_names`). Greedy tokens are the same as with
        chips=1 (logits agree to rounding: partial sums are added in another order).
    precision : {None, "fp32", "fp16", "int8"}
        Weight storage for the kernels; None keeps the checkpoint's (fp32 for
        versions 0/1, int8 for version 2).
    chip : str
        The LPU whose time ``t_sim_s`` simulates.

    Examples
    --------
    >>> eng = Engine.default()
    >>> text = "".join(ev.text for ev in eng.generate("ROMEO:", max_new_tokens=8))
    """

    def __init__(self, ckpt: checkpoint.Checkpoint, tokenizer: checkpoint.Tokenizer, chips: int = 1, precision: str | None = None,
                 chip: str = "lpu-v1"):
        c = ckpt.config
        if tokenizer.vocab_size != c.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but {c.name} expects {c.vocab_size}")
        if not isinstance(chips, (int, np.integer)) or isinstance(chips, bool) or chips < 1:
            raise ValueError(f"chips must be a positive integer, got {chips!r}")
        chips = int(chips)
        plan = shard.functional_plan(c, chips)  # ValueError where the model cannot be cut over this many chips
        if precision is None:
            precision = "int8" if ckpt.version == 2 else "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r} for the CPU kernels; known: {', '.join(PRECISIONS)}")
        self.config, self.tokenizer, self.chips, self.precision, self.chip = c, tokenizer, chips, precision, hardware.get(chip)
        self.checkpoint, self.plan = ckpt, plan
        self.trace: list[str] | None = None  # set to [] to record the ops a step executes
        if chips > 1:
            self.shards = [sharded.ChipShard(ckpt, plan, s, r, precision) for s in range(plan.pp) for r in range(plan.tp)]  # by chip_id
            self.ops = sharded.sharded_op_names(plan)  # the op list each step executes, collectives included
            self.logits = np.zeros(c.vocab_size, np.float32)
            return
        self.shards: list[sharded.ChipShard] | None = None
        w = ckpt.weights
        self.layers = [{name: _Linear(w[name][layer] if not isinstance(w[name], QuantizedTensor) else
                                      QuantizedTensor(w[name].q[layer], w[name].scales[layer], w[name].group_size), precision)
                        for name in MATRICES} for layer in range(c.n_layers)]
        self.rms_att = np.ascontiguousarray(w["rms_att_weight"], np.float32)  # (L, dim)
        self.rms_ffn = np.ascontiguousarray(w["rms_ffn_weight"], np.float32)
        self.rms_final = np.ascontiguousarray(w["rms_final_weight"], np.float32)
        self.embedding = np.ascontiguousarray(w["token_embedding_table"], np.float32)  # (vocab, dim), for the lookup
        self.classifier = _Linear(ckpt.classifier, precision)
        self.ops = graph.decode(c, 1, 0, precision).names  # the op list each step executes
        self._alloc_state()

    @property
    def weight_bytes(self) -> int:
        """Bytes of weights one decode step streams (every matrix once, at the storage precision; with
        chips > 1, summed over the chips, so replicated KV-head rows count once per chip holding them)."""
        if self.shards is not None:
            return sum(ch.weight_bytes for ch in self.shards)
        return sum(lin.nbytes for layer in self.layers for lin in layer.values()) + self.classifier.nbytes

    def _alloc_state(self):
        c = self.config
        f = np.float32
        self.x = np.zeros((1, c.dim), f)  # residual stream
        self.xb = np.zeros((1, c.dim), f)  # normed / attention output
        self.q = np.zeros(c.q_dim, f)
        self.k = np.zeros(c.kv_dim, f)
        self.v = np.zeros(c.kv_dim, f)
        self.att_out = np.zeros(c.q_dim, f)
        self.xo = np.zeros(c.dim, f)
        self.h1 = np.zeros(c.hidden_dim, f)
        self.h3 = np.zeros(c.hidden_dim, f)
        self.logits = np.zeros(c.vocab_size, f)
        self.k_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), f)  # (L, seq_len, kv_dim)
        self.v_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim), f)

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_llama2c(cls, checkpoint_path: str | Path, tokenizer_path: str | Path, chips: int = 1, precision: str | None = None,
                     chip: str = "lpu-v1") -> Engine:
        """Load a llama2.c checkpoint (versions 0, 1, 2) and its tokenizer."""
        ckpt = checkpoint.read_llama2c(checkpoint_path)
        tok = checkpoint.Tokenizer.from_file(tokenizer_path, vocab_size=ckpt.config.vocab_size)
        return cls(ckpt, tok, chips, precision, chip)

    @classmethod
    def default(cls, chips: int = 1, precision: str | None = None) -> Engine:
        """The bundled model: a small Llama trained on Shakespeare (``lpu/data/models/README.md``)."""
        for p in (DEFAULT_CHECKPOINT, DEFAULT_TOKENIZER):
            if not p.exists():
                raise FileNotFoundError(f"the bundled model file {p} is missing; it ships in the repository (scripts/train_tiny.py remakes it)")
        return cls.from_llama2c(DEFAULT_CHECKPOINT, DEFAULT_TOKENIZER, chips, precision)

    # ---- one decode step: the ops of graph.decode(model, 1, pos) ---------------------------
    def forward(self, token: int, pos: int) -> np.ndarray:
        """Logits (vocab_size,) after feeding ``token`` at position ``pos``; updates the KV cache."""
        c = self.config
        if not 0 <= pos < c.seq_len:
            raise ValueError(f"position {pos} is outside {c.name}'s context of {c.seq_len} tokens")
        if self.shards is not None:
            return self._forward_sharded(token, pos)
        tr = self.trace
        x, xb = self.x, self.xb
        x[0] = self.embedding[token]
        if tr is not None:
            tr.append("embed")
        for layer, lin in enumerate(self.layers):
            L = f"L{layer}."
            kernels._rmsnorm(x, self.rms_att[layer], c.norm_eps, xb)
            lin["wq"](xb[0], self.q)
            lin["wk"](xb[0], self.k)
            lin["wv"](xb[0], self.v)
            kernels._rope(self.q, self.k, pos, c.head_dim, c.rope_theta)
            self.k_cache[layer, pos] = self.k
            self.v_cache[layer, pos] = self.v
            # one fused kernel executes the graph's attn_scores, softmax and attn_values
            kernels._attention(self.q, self.k_cache[layer], self.v_cache[layer], pos, c.n_kv_heads, self.att_out)
            lin["wo"](self.att_out, self.xo)
            x[0] += self.xo
            kernels._rmsnorm(x, self.rms_ffn[layer], c.norm_eps, xb)
            lin["w1"](xb[0], self.h1)
            lin["w3"](xb[0], self.h3)
            kernels._swiglu(self.h1, self.h3)
            lin["w2"](self.h1, self.xo)
            x[0] += self.xo
            if tr is not None:
                tr.extend(L + n for n in ("attn_norm", "wq", "wk", "wv", "rope", "kv_write", "attn_scores", "softmax", "attn_values",
                                          "wo", "attn_residual", "ffn_norm", "w1", "w3", "swiglu", "w2", "ffn_residual"))
        kernels._rmsnorm(x, self.rms_final, c.norm_eps, xb)
        self.classifier(xb[0], self.logits)
        if tr is not None:
            tr.extend(["final_norm", "classifier"])
        return self.logits

    def _forward_sharded(self, token: int, pos: int) -> np.ndarray:
        return sharded.forward(self.shards, self.plan, token, pos, self.logits, self.trace)

    def simulated_times(self, prompt_tokens: int, new_tokens: int, precision_sim: str = "int8") -> np.ndarray:
        """``t_sim_s`` of each new token: `simulated_times` for one chip, ``lpu.system.token_times`` for several."""
        if self.chips == 1:
            return simulated_times(self.config, prompt_tokens, new_tokens, self.chip, precision_sim)
        from .system import token_times  # lpu.simulate imports the scheduler and planner: only when sharded

        return np.asarray(token_times(self.config, self.chips, prompt_tokens, new_tokens, precision_sim), dtype=np.float64)

    # ---- generation --------------------------------------------------------------
    def generate(self, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 precision_sim: str = "int8") -> Iterator[TokenEvent]:
        """Stream the tokens that follow ``prompt``, as run.c generates them.

        The prompt (with BOS) is fed token by token; then each step samples the
        next token (greedy at ``temperature=0``; else temperature and top-p with a
        generator seeded by ``seed``). Generation stops after ``max_new_tokens``,
        at BOS or EOS, or at the end of the model's context.

        ``t_sim_s`` is the simulated time of each token on the LPU system
        storing the weights at ``precision_sim``, from its static schedule
        (see `simulated_times`; with chips > 1, ``lpu.system.token_times``).
        """
        c = self.config
        if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        ids = self.tokenizer.encode(prompt, bos=True)
        if len(ids) >= c.seq_len:
            raise ValueError(f"the prompt is {len(ids)} tokens (with BOS); {c.name}'s context is {c.seq_len} tokens")
        rng = np.random.default_rng(seed)
        n_new = min(max_new_tokens, c.seq_len - len(ids))
        t_sim = self.simulated_times(len(ids), max(n_new, 1), precision_sim)
        t0 = time.perf_counter()
        token = ids[0]
        for pos in range(len(ids) + n_new - 1):
            logits = self.forward(token, pos)
            if pos < len(ids) - 1:
                token = ids[pos + 1]  # still reading the prompt
                continue
            nxt = kernels.sample(logits, temperature, top_p, rng)
            if self.trace is not None:
                self.trace.append("sample")
            if nxt in (self.tokenizer.bos_id, self.tokenizer.eos_id):
                return
            i = pos - (len(ids) - 1)
            yield TokenEvent(nxt, self.tokenizer.decode(token, nxt), pos + 1, float(t_sim[i]), time.perf_counter() - t0)
            token = nxt

    def complete(self, prompt: str, max_new_tokens: int = 128, **kwargs) -> str:
        """The generated text as one string (``generate`` joined)."""
        return "".join(ev.text for ev in self.generate(prompt, max_new_tokens, **kwargs))


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
