"""Model configurations: the shapes of the transformers we simulate and run.

A `ModelConfig` holds the hyper-parameters of a Llama-architecture decoder
(Llama 2, Llama 3, Mixtral, and the llama2.c "stories" models) and derives
from them everything the rest of the package needs: parameter counts, weight
bytes at each precision, and KV-cache bytes per token. Introduced in
``notebooks/01_architecture.ipynb``.

Presets carry the source of their shapes (the published ``config.json`` /
``params.json`` of each release). Parameter counts are tested against the
published model sizes in ``tests/test_models.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    def __post_init__(self):
        def bad(what: str):
            raise ValueError(f"ModelConfig {self.name!r}: {what}")

        for field in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "vocab_size", "seq_len", "n_experts", "experts_per_token"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(f"{field} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            bad(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            bad(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            bad(f"head_dim ({self.head_dim}) must be even for rotary embeddings")
        if self.experts_per_token > self.n_experts:
            bad(f"experts_per_token ({self.experts_per_token}) exceeds n_experts ({self.n_experts})")

    # ---- shapes -----------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

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
        per_layer_attention = 2 * self.dim * self.dim + 2 * self.dim * self.kv_dim  # wq, wo, wk, wv
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
        per_user = 2 * self.dim + self.dim + 2 * self.kv_dim + self.dim + 2 * self.hidden_dim + self.n_heads * T + self.vocab_size
        return int(batch * per_user * act_bytes)

    def flops_per_token(self, context_tokens: int = 0) -> int:
        """FLOPs of one decode step: 2 per active weight plus attention over ``context_tokens``."""
        matmul = 2 * (self.n_active_params - self.param_groups(active=True)["norms"] - self.param_groups()["embedding"] * (not self.tied_embeddings))
        attention = self.n_layers * 2 * 2 * self.n_heads * self.head_dim * context_tokens  # scores + weighted sum
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


def get(name: str | ModelConfig) -> ModelConfig:
    """Return the preset called ``name`` (a `ModelConfig` passes through).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, ModelConfig):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(PRESETS)}") from None
