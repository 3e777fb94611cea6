"""Model configurations: the shapes of the transformers we simulate and run.

A `ModelConfig` holds the hyper-parameters of a Llama-architecture decoder
(Llama 2, Llama 3, Mixtral, and the llama2.c "stories" models) and derives
from them everything the rest of the package needs: parameter counts, weight
bytes at each precision, and KV-cache bytes per token. Introduced in
``notebooks/01_architecture.ipynb``.

Presets carry the source of their shapes (the published ``config.json`` /
``params.json`` of each release); ``get`` also reads a Hugging Face
``config.json`` (`from_hf_config`). Parameter counts are tested against the
published model sizes in ``tests/test_models.py`` and ``tests/test_hf_config.py``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

# Bytes per element of each storage dtype. int4 packs two weights per byte.
DTYPE_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class Precision:
    """How a model is stored: a dtype per group of tensors.

    Weight-only quantisation (int8, fp8, int4) keeps activations and the KV
    cache in fp16: low-precision storage, high-precision arithmetic.
    """

    name: str
    attention: str  # wq, wk, wv, wo
    ffn: str  # w1, w2, w3 (every expert)
    embedding: str  # token embedding and classifier
    activations: str  # activations and the KV cache
    description: str

    def __post_init__(self):
        for group in ("attention", "ffn", "embedding", "activations"):
            dtype = getattr(self, group)
            if dtype not in DTYPE_BYTES:
                raise ValueError(f"Precision {self.name!r}: {group} dtype {dtype!r} is not one of {sorted(DTYPE_BYTES)}")


def _uniform(dtype: str, act: str) -> Precision:
    what = "weights and activations" if act == dtype else f"{dtype} weights, {act} activations and KV cache"
    return Precision(dtype, dtype, dtype, dtype, act, f"{what}")


PRECISIONS: dict[str, Precision] = {
    "fp32": _uniform("fp32", "fp32"),
    "fp16": _uniform("fp16", "fp16"),
    "bf16": _uniform("bf16", "bf16"),
    "fp8": _uniform("fp8", "fp16"),
    "int8": _uniform("int8", "fp16"),
    "int4": _uniform("int4", "fp16"),
    # The mix that makes Llama 2 70B fit 576 LPUs with fp16 where it matters
    # most for quality (attention, embeddings) and int8 in the FFN, which
    # holds ~80% of the weights (see notebook 01, "the 576-chip puzzle").
    "fp16-int8ffn": Precision("fp16-int8ffn", "fp16", "int8", "fp16", "fp16", "fp16 attention and embeddings, int8 FFN, fp16 activations"),
}


def get_precision(precision: str | Precision) -> Precision:
    """Return the `Precision` named ``precision`` (or ``precision`` itself)."""
    if isinstance(precision, Precision):
        return precision
    try:
        return PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(f"unknown precision {precision!r}; known precisions: {', '.join(PRECISIONS)}") from None


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of a Llama-architecture decoder-only transformer.

    Examples
    --------
    >>> m = get("llama2-70b")
    >>> round(m.n_params / 1e9, 2)
    68.98
    """

    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int  # FFN inner width (per expert)
    vocab_size: int
    seq_len: int  # maximum context the model was trained for
    n_experts: int = 1  # >1: a mixture of experts (Mixtral)
    experts_per_token: int = 1
    tied_embeddings: bool = False  # classifier shares the token embedding
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    source: str = ""
    head_dim: int | None = None  # width of one attention head; None: dim // n_heads (Gemma's differ)
    qkv_bias: bool = False  # biases on wq, wk, wv (Qwen2)

    def __post_init__(self):
        def bad(what: str):
            raise ValueError(f"ModelConfig {self.name!r}: {what}")

        def positive(field: str):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(f"{field} must be a positive integer, got {value!r}")

        for field in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "vocab_size", "seq_len", "n_experts", "experts_per_token"):
            positive(field)
        if self.head_dim is None:
            if self.dim % self.n_heads:
                bad(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads}), or give head_dim")
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)  # frozen: set once, here
        positive("head_dim")
        if self.n_heads % self.n_kv_heads:
            bad(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            bad(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if self.experts_per_token > self.n_experts:
            bad(f"experts_per_token ({self.experts_per_token}) exceeds n_experts ({self.n_experts})")

    # ---- shapes -----------------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of the queries (and of the attention output wo reads): ``n_heads * head_dim``, ``dim`` unless head_dim is given."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    # ---- parameter counts ---------------------------------------------------
    def param_groups(self, active: bool = False) -> dict[str, int]:
        """Parameters per tensor group; ``active=True`` counts only the experts a token uses."""
        experts = self.experts_per_token if active else self.n_experts
        per_layer_attention = 2 * self.dim * self.q_dim + 2 * self.dim * self.kv_dim  # wq, wo, wk, wv
        per_layer_attention += (self.q_dim + 2 * self.kv_dim) * self.qkv_bias
        per_layer_ffn = experts * 3 * self.dim * self.hidden_dim  # w1, w2, w3 per expert
        per_layer_router = self.dim * self.n_experts if self.is_moe else 0
        return {
            "embedding": self.vocab_size * self.dim,
            "attention": self.n_layers * per_layer_attention,
            "ffn": self.n_layers * per_layer_ffn,
            "router": self.n_layers * per_layer_router,
            "norms": (2 * self.n_layers + 1) * self.dim,
            "classifier": 0 if self.tied_embeddings else self.vocab_size * self.dim,
        }

    @property
    def n_params(self) -> int:
        """Total parameters."""
        return sum(self.param_groups().values())

    @property
    def n_active_params(self) -> int:
        """Parameters a token uses (equals `n_params` for a dense model)."""
        return sum(self.param_groups(active=True).values())

    # ---- bytes -------------------------------------------------------------
    def weight_bytes(self, precision: str | Precision = "fp16", active: bool = False) -> int:
        """Bytes of the weights stored at ``precision`` (norms and router stay at activation precision)."""
        p = get_precision(precision)
        groups = self.param_groups(active=active)
        dtype_of = {"embedding": p.embedding, "classifier": p.embedding, "attention": p.attention, "ffn": p.ffn,
                    "router": p.activations, "norms": p.activations}
        return math.ceil(sum(n * DTYPE_BYTES[dtype_of[g]] for g, n in groups.items()))

    def kv_bytes_per_token(self, precision: str | Precision = "fp16") -> int:
        """KV-cache bytes one token of context occupies (keys and values, every layer)."""
        act_bytes = DTYPE_BYTES[get_precision(precision).activations]
        return int(2 * self.n_layers * self.kv_dim * act_bytes)

    def activation_bytes(self, precision: str | Precision = "fp16", batch: int = 1, context_tokens: int | None = None) -> int:
        """Working activations of one decode step for ``batch`` users.

        The residual stream and its normed copy, q/k/v/attention output, the
        two FFN inner vectors, the attention scores over the context, and the
        logits: what must be live at once, per user, in the widest layer.
        """
        T = self.seq_len if context_tokens is None else context_tokens
        act_bytes = DTYPE_BYTES[get_precision(precision).activations]
        per_user = 2 * self.dim + self.q_dim + 2 * self.kv_dim + self.q_dim + 2 * self.hidden_dim + self.n_heads * T + self.vocab_size
        return int(batch * per_user * act_bytes)

    def flops_per_token(self, context_tokens: int = 0) -> int:
        """FLOPs of one decode step: 2 per active weight plus attention over ``context_tokens``."""
        matmul = 2 * (self.n_active_params - self.param_groups(active=True)["norms"] - self.param_groups()["embedding"] * (not self.tied_embeddings))
        attention = self.n_layers * 2 * 2 * self.q_dim * context_tokens  # scores + weighted sum
        return int(matmul + attention)


_META = "Meta params.json / config.json"
PRESETS: dict[str, ModelConfig] = {
    m.name: m
    for m in [
        ModelConfig("llama2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, source=f"Llama 2 7B, {_META} (Touvron et al. 2023)"),
        ModelConfig("llama2-13b", 5120, 40, 40, 40, 13824, 32000, 4096, source=f"Llama 2 13B, {_META} (Touvron et al. 2023)"),
        ModelConfig("llama2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, source=f"Llama 2 70B, {_META} (Touvron et al. 2023)"),
        ModelConfig("llama3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, rope_theta=500000.0, source=f"Meta-Llama-3-8B, {_META}"),
        ModelConfig("llama3-70b", 8192, 80, 64, 8, 28672, 128256, 8192, rope_theta=500000.0, source=f"Meta-Llama-3-70B, {_META}"),
        ModelConfig("mixtral-8x7b", 4096, 32, 32, 8, 14336, 32000, 32768, n_experts=8, experts_per_token=2, rope_theta=1e6,
                    source="Mixtral-8x7B-v0.1 config.json (Jiang et al. 2024, arXiv:2401.04088)"),
        ModelConfig("stories260K", 64, 5, 8, 4, 172, 512, 512, tied_embeddings=True, source="llama2.c tinyllamas stories260K (Karpathy, MIT)"),
        ModelConfig("stories15M", 288, 6, 6, 6, 768, 32000, 256, tied_embeddings=True, source="llama2.c tinyllamas stories15M (Karpathy, MIT)"),
        ModelConfig("stories42M", 512, 8, 8, 8, 1376, 32000, 1024, tied_embeddings=True, source="llama2.c tinyllamas stories42M (Karpathy, MIT)"),
        ModelConfig("stories110M", 768, 12, 12, 12, 2048, 32000, 1024, tied_embeddings=True, source="llama2.c tinyllamas stories110M (Karpathy, MIT)"),
    ]
}


def names() -> list[str]:
    """Names of the model presets."""
    return list(PRESETS)


# ---- Hugging Face config.json --------------------------------------------------------------
# The decoders a ModelConfig describes faithfully: RMSNorm, rotary positions, a gated FFN of three
# matrices (SwiGLU, GeGLU), grouped-query attention, top-k experts. model_type -> the default of
# tie_word_embeddings in its transformers config class (a config.json leaves out defaults).
HF_MODEL_TYPES = {"llama": False, "mistral": False, "mixtral": False, "qwen2": False, "qwen3": False, "gemma": True, "gemma2": True}
_HF_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size", "max_position_embeddings")


def from_hf_config(path: str | os.PathLike) -> ModelConfig:
    """A `ModelConfig` from a Hugging Face ``config.json`` (or the folder holding one); local files only.

    Reads hidden size, layers, heads, KV heads, ``head_dim`` when given, intermediate size, vocabulary,
    context (``max_position_embeddings``), experts and experts per token, tied embeddings and RoPE theta.
    Approximations are stated in the config's ``source``: sliding-window attention on every layer
    (Mistral 7B v0.1) limits the context to the window; on alternate layers (Gemma 2) it is simulated
    as full attention, which overstates their KV cache beyond the window. See the README's
    "Your model, and sweeps of thousands of configurations".

    Raises
    ------
    ValueError
        For a missing or unreadable file, missing fields, or an architecture it cannot represent
        (multi-head latent attention, shared experts, multimodal configs, other model types).
    """
    p = Path(path)
    file = p / "config.json" if p.is_dir() else p
    if not file.is_file():
        raise ValueError(f"model path {str(path)!r}: no Hugging Face config.json there (give the file or the folder holding it)")
    try:
        cfg = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"model path {str(file)!r} is not a readable JSON config: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"model path {str(file)!r}: a config.json holds a JSON object, got {type(cfg).__name__}")
    name = file.parent.name if file.name == "config.json" and file.parent.name else file.stem
    where = f"{name} ({file})"
    kind = cfg.get("model_type")

    def unsupported(what: str):
        raise ValueError(f"{where}: {what} cannot be represented by lpu's ModelConfig (a Llama-style decoder); "
                         f"supported model_type values: {', '.join(HF_MODEL_TYPES)}")

    if "kv_lora_rank" in cfg:
        unsupported(f"multi-head latent attention (MLA, kv_lora_rank {cfg['kv_lora_rank']}, model_type {kind!r}): its KV cache is a compressed latent")
    if "text_config" in cfg:
        unsupported(f"a multimodal config (model_type {kind!r}); its text model is under text_config")
    if cfg.get("shared_expert_intermediate_size") or cfg.get("n_shared_experts"):
        unsupported(f"shared experts (model_type {kind!r})")
    if kind not in HF_MODEL_TYPES:
        unsupported(f"model_type {kind!r}")
    missing = [k for k in _HF_REQUIRED if cfg.get(k) is None]
    if missing:
        raise ValueError(f"{where}: config.json lacks {', '.join(missing)} (needed for a {kind} model)")
    notes = []
    seq_len, window = cfg["max_position_embeddings"], cfg.get("sliding_window")
    if kind in ("qwen2", "qwen3") and cfg.get("use_sliding_window"):
        unsupported(f"sliding-window attention on layers {cfg.get('max_window_layers')} and above (model_type {kind!r})")
    elif kind in ("mistral", "mixtral") and window:
        if window < seq_len:
            notes.append(f"sliding-window attention ({window} tokens) on every layer: the context is limited to the window, exact within it")
            seq_len = window
    elif kind == "gemma2" and window:
        notes.append(f"sliding-window attention ({window} tokens) on alternate layers simulated as full attention "
                     "(their KV cache overstated beyond the window)")
    qkv_bias = kind == "qwen2" or bool(cfg.get("attention_bias"))
    if kind != "qwen2" and cfg.get("attention_bias"):
        notes.append("attention_bias: wo's bias (dim per layer) not counted")
    if cfg.get("mlp_bias"):
        notes.append("mlp_bias: FFN biases not counted")
    heads, experts = cfg["num_attention_heads"], cfg.get("num_local_experts") or 1
    per_token = (cfg.get("num_experts_per_tok") or 1) if experts > 1 else 1
    source = f"Hugging Face config.json {file} (model_type {kind})" + (f"; approximations: {'; '.join(notes)}" if notes else "")
    return ModelConfig(name, cfg["hidden_size"], cfg["num_hidden_layers"], heads, cfg.get("num_key_value_heads") or heads, cfg["intermediate_size"],
                       cfg["vocab_size"], seq_len, n_experts=experts, experts_per_token=per_token,
                       tied_embeddings=bool(cfg.get("tie_word_embeddings", HF_MODEL_TYPES[kind])), norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                       rope_theta=float(cfg.get("rope_theta", 10000.0)), source=source, head_dim=cfg.get("head_dim"), qkv_bias=qkv_bias)


def get(name: str | os.PathLike | ModelConfig) -> ModelConfig:
    """Return the preset called ``name``, or the model of a Hugging Face ``config.json`` (or its folder) at that path.

    A `ModelConfig` passes through. Paths are read by `from_hf_config` (local files only).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones, and for a config it cannot read or represent.
    """
    if isinstance(name, ModelConfig):
        return name
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name]
    if isinstance(name, os.PathLike) or (isinstance(name, str) and (os.path.exists(name) or name.endswith(".json") or os.sep in name)):
        return from_hf_config(name)
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(PRESETS)}, "
                     "or a path to a Hugging Face config.json or the folder holding one")
