"""llama2.c checkpoints and tokenizer: read and write the ``.bin`` files of Karpathy's llama2.c.

- version 0 (``run.c``, "legacy_export"): 7 x int32 header (a negative vocab_size means an
  unshared classifier), fp32 weights in run.c order, RoPE tables included.
- version 1 ("version1_export"): 256-byte header (magic ``ak42``, version, 7 params, shared
  flag), fp32 norms first, then the matrices.
- version 2 ("version2_export", ``runq.c``): version 1 plus a group size; norms in fp32, the
  matrices in Q8_0 (per layer: int8 values, then one fp32 scale per group).

`Tokenizer` reads ``tokenizer.bin`` and reproduces run.c's ``encode()`` and ``decode()`` exactly.
Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpu.models import ModelConfig
from lpu.quant import DEFAULT_GROUP_SIZE, QuantizedTensor, quantize_int8

MAGIC = 0x616B3432  # "ak42" read as a little-endian uint32
HEADER_BYTES = 256  # versions 1 and 2
BOS_ID, EOS_ID = 1, 2  # run.c hard-codes these
_LIMITS = {"dim": 1 << 20, "hidden_dim": 1 << 22, "n_layers": 4096, "n_heads": 1 << 16, "n_kv_heads": 1 << 16,
           "vocab_size": 1 << 24, "seq_len": 1 << 24}  # anything larger is garbage, not a model
_PARAMS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")  # header order
MATRICES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")  # the matrices of each layer
_QUANTIZED = ("token_embedding_table", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "wcls")  # v2 order


class CheckpointError(ValueError):
    """A llama2.c model or tokenizer file that cannot be read or written as asked."""


@dataclass(frozen=True)
class Checkpoint:
    """A llama2.c model: its config, its weights, and the file they came from.

    ``weights`` maps llama2.c's names to layer-stacked arrays: token_embedding_table (vocab, dim),
    rms_att_weight and rms_ffn_weight (L, dim), wq and wo (L, dim, dim), wk and wv (L, kv_dim, dim),
    w1 and w3 (L, hidden, dim), w2 (L, dim, hidden), rms_final_weight (dim,) and, untied only,
    wcls (vocab, dim). Arrays read from a file are read-only memory maps. Version 2 holds the
    matrices as `QuantizedTensor` and, like runq.c, the int8 embedding as ``q_tokens`` (the
    classifier when tied) with ``token_embedding_table`` its dequantized fp32 copy.
    """

    config: ModelConfig
    weights: dict[str, np.ndarray | QuantizedTensor] = field(repr=False)
    version: int
    path: Path | None = None
    group_size: int | None = None  # version 2 only

    @property
    def classifier(self) -> np.ndarray | QuantizedTensor:
        """The (vocab, dim) output matrix: ``wcls``, or the (quantized) embedding when tied."""
        w = self.weights
        return w.get("wcls", w.get("q_tokens", w["token_embedding_table"]))


def _layout(c: ModelConfig, version: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of each tensor in file order (version 2: fp32 norms, then Q8_0 matrices)."""
    V, D, L, H, kv = c.vocab_size, c.dim, c.n_layers, c.hidden_dim, c.kv_dim
    rope = (c.seq_len, c.head_dim // 2)
    m = {"token_embedding_table": (V, D), "rms_att_weight": (L, D), "rms_ffn_weight": (L, D), "rms_final_weight": (D,),
         "wq": (L, D, D), "wk": (L, kv, D), "wv": (L, kv, D), "wo": (L, D, D), "w1": (L, H, D), "w2": (L, D, H),
         "w3": (L, H, D), "freq_cis_real": rope, "freq_cis_imag": rope, "wcls": (V, D)}
    if version == 0:
        order = ["token_embedding_table", "rms_att_weight", "wq", "wk", "wv", "wo", "rms_ffn_weight", "w1", "w2", "w3",
                 "rms_final_weight", "freq_cis_real", "freq_cis_imag", "wcls"]
    else:
        order = ["rms_att_weight", "rms_ffn_weight", "rms_final_weight", *_QUANTIZED]
    return [(k, m[k]) for k in order if k != "wcls" or not c.tied_embeddings]


def _nbytes(shape: tuple[int, ...], name: str, version: int, group_size: int | None) -> int:
    n = int(np.prod(shape))
    return n + 4 * n // group_size if version == 2 and name in _QUANTIZED else 4 * n


def _expected_size(c: ModelConfig, version: int, group_size: int | None = None) -> int:
    return (28 if version == 0 else HEADER_BYTES) + sum(_nbytes(s, k, version, group_size) for k, s in _layout(c, version))


def _config(where: str, params: dict[str, int], shared: bool, name: str, version: int) -> ModelConfig:
    for k in _PARAMS:
        if not 1 <= params[k] <= _LIMITS[k]:
            why = "must be positive" if params[k] < 1 else f"absurd, limit {_LIMITS[k]}"
            raise CheckpointError(f"{where}: impossible header: {k} = {params[k]} ({why})")
    try:
        return ModelConfig(name, params["dim"], params["n_layers"], params["n_heads"], params["n_kv_heads"],
                           params["hidden_dim"], params["vocab_size"], params["seq_len"], tied_embeddings=shared,
                           source=f"llama2.c checkpoint {where} (version {version})")
    except ValueError as e:
        raise CheckpointError(f"{where}: impossible header: {e}") from None


def read_llama2c(path: str | os.PathLike, name: str | None = None) -> Checkpoint:
    """Read a llama2.c model checkpoint of version 0, 1 or 2 (memory-mapped, no copy).

    Parameters
    ----------
    path : str or path-like
        The ``.bin`` file; without the ``ak42`` magic of versions 1 and 2 it is read as version 0.
    name : str, optional
        Name of the returned `ModelConfig` (default: the file's stem).

    Returns
    -------
    Checkpoint
        See `Checkpoint`. Version 0's freq_cis tables are skipped (see `rope_tables`).

    Raises
    ------
    CheckpointError
        Naming the file: missing, truncated, trailing bytes, unknown version, impossible header.
    """
    path = Path(path)
    where, name = str(path), name or path.stem
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        missing = isinstance(e, FileNotFoundError)
        raise CheckpointError(f"{where}: " + ("no such checkpoint file" if missing else f"cannot read checkpoint: {e}")) from None
    if len(head) < 28:
        raise CheckpointError(f"{where}: truncated llama2.c checkpoint: expected at least 28 header bytes, found {size}")
    (magic,) = struct.unpack_from("<I", head)
    group_size = None
    if magic == MAGIC:
        version = struct.unpack_from("<i", head, 4)[0]
        if version not in (1, 2):
            raise CheckpointError(f"{where}: unknown llama2.c checkpoint version {version} (known: 1, 2; 0 has no magic)")
        if size < HEADER_BYTES:
            raise CheckpointError(f"{where}: truncated llama2.c checkpoint: expected a {HEADER_BYTES}-byte header, found {size} bytes")
        if head[36] not in (0, 1):
            raise CheckpointError(f"{where}: impossible header: shared_classifier flag is {head[36]} (must be 0 or 1)")
        config = _config(where, dict(zip(_PARAMS, struct.unpack_from("<7i", head, 8))), bool(head[36]), name, version)
        if version == 2:
            group_size = struct.unpack_from("<i", head, 37)[0]
            if group_size < 1 or config.dim % group_size or config.hidden_dim % group_size:
                raise CheckpointError(f"{where}: impossible header: group_size {group_size} must divide dim {config.dim} and hidden_dim "
                                      f"{config.hidden_dim} (Q8_0 groups straddling matrix rows are unsupported, as in runq.c)")
    else:
        version, vals = 0, dict(zip(_PARAMS, struct.unpack_from("<7i", head)))
        shared, vals["vocab_size"] = vals["vocab_size"] > 0, abs(vals["vocab_size"])
        try:
            config = _config(where, vals, shared, name, 0)
        except CheckpointError as e:
            raise CheckpointError(f"{e} [read as version 0: the file does not start with the version 1/2 magic "
                                  f"0x{MAGIC:08x} ('ak42'), it starts with 0x{magic:08x}]") from None
    if size != (expected := _expected_size(config, version, group_size)):
        what = "truncated llama2.c checkpoint" if size < expected else f"{size - expected} unexpected trailing bytes in llama2.c checkpoint"
        raise CheckpointError(f"{where}: {what} (version {version}, dim {config.dim}, {config.n_layers} layers, "
                              f"vocab {config.vocab_size}): expected {expected} bytes, found {size}")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    weights, offset = {}, 28 if version == 0 else HEADER_BYTES
    for key, shape in _layout(config, version):
        if version == 2 and key in _QUANTIZED:
            per = int(np.prod(shape[-2:]))  # runq.c: per layer, int8 values then scales; map both as strided views
            stride, d_in, ng = per + 4 * per // group_size, shape[-1], shape[-1] // group_size
            q = np.ndarray(shape, np.int8, mm, offset, (stride, d_in, 1)[-len(shape):])
            s = np.ndarray(shape[:-1] + (ng,), "<f4", mm, offset + per, (stride, 4 * ng, 4)[-len(shape):])
            weights["q_tokens" if key == "token_embedding_table" else key] = QuantizedTensor(q, s, group_size)
        elif not key.startswith("freq_cis"):
            weights[key] = np.ndarray(shape, "<f4", mm, offset)
        offset += _nbytes(shape, key, version, group_size)
    _check_finite(where, weights)
    if version == 2:
        weights["token_embedding_table"] = weights["q_tokens"].dequantize()  # runq.c dequantizes it too
    return Checkpoint(config, weights, version, path, group_size)


def _check_finite(where: str, weights: dict) -> None:
    """Raise `CheckpointError` naming the first tensor that holds a NaN or an infinity (a diverged or corrupt export).

    One NaN weight turns every logit NaN within a layer: the model would run and print ``<unk><unk>...`` with no other
    sign, so it is refused at load. min and max propagate NaN and reach +-inf without a temporary array: two reads of the
    memory map, ~5 ms for stories15M's 61 MB (in the page cache).
    """
    for name, w in weights.items():
        a = w.scales if isinstance(w, QuantizedTensor) else w  # int8 values are finite; a scale is not, or a row is NaN
        if np.isfinite(a.min()) and np.isfinite(a.max()):
            continue
        bad = ~np.isfinite(a)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "scales of the int8 " if isinstance(w, QuantizedTensor) else ""
        layer = f" (layer {first[0]})" if a.ndim == 3 or name in ("rms_att_weight", "rms_ffn_weight") else ""
        raise CheckpointError(f"{where}: weight {name!r} holds {int(bad.sum()):,} non-finite {what}value(s), the first "
                              f"{float(a[first])} at index {first}{layer}: the checkpoint is corrupt or was exported from a diverged run")


def rope_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Version 0's freq_cis_real and freq_cis_imag, each (seq_len, head_dim // 2) fp32, as llama2.c's model.py computes them."""
    hs = np.float32(config.head_dim)
    freqs = np.float32(1.0) / (np.float32(config.rope_theta) ** (np.arange(0, hs, 2, dtype=np.float32) / hs))
    angles = np.outer(np.arange(config.seq_len, dtype=np.float32), freqs).astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)  # within 1 ulp of torch's


def _as_float(w) -> np.ndarray:
    return w.dequantize() if isinstance(w, QuantizedTensor) else np.asarray(w, dtype=np.float32)


def write_llama2c(path: str | os.PathLike, config: ModelConfig, weights: dict, version: int = 0,
                  group_size: int = DEFAULT_GROUP_SIZE) -> Path:
    """Write a llama2.c model checkpoint of version 0, 1 or 2; returns ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to (over)write.
    config : ModelConfig
        Shapes; ``config.tied_embeddings`` decides whether ``wcls`` is written (ignored when tied).
    weights : dict
        fp32 arrays or `QuantizedTensor` (dequantized where fp32 is stored) named as in
        `Checkpoint`; for version 2 a ``q_tokens`` entry is written as the embedding.
    version : {0, 1, 2}
        Version 2 quantizes the matrices with `quantize_int8` (norms stay fp32; a
        `QuantizedTensor` of the file's group size is written as is).
    group_size : int
        Version 2: halved, with a warning, until it divides dim and hidden_dim (export.py's
        "BACKOFF", extended to hidden_dim so that groups never straddle matrix rows).
    """
    path, where = Path(path), str(path)
    if version not in (0, 1, 2):
        raise CheckpointError(f"{where}: cannot write llama2.c checkpoint version {version!r} (known: 0, 1, 2)")
    if config.is_moe:
        raise CheckpointError(f"{where}: llama2.c has no mixture-of-experts format ({config.name!r} has {config.n_experts} experts)")
    gs = group_size if version == 2 else None
    if version == 2:
        if not isinstance(group_size, int) or group_size < 1:
            raise CheckpointError(f"{where}: group_size must be a positive integer, got {group_size!r}")
        while config.dim % gs or config.hidden_dim % gs:
            gs //= 2
        if gs != group_size:
            warnings.warn(f"{where}: group_size {group_size} does not divide dim {config.dim} and hidden_dim "
                          f"{config.hidden_dim}; using {gs}", stacklevel=2)
    weights = dict(weights)
    if version == 2 and "q_tokens" in weights:
        weights["token_embedding_table"] = weights["q_tokens"]
    if version == 0:
        weights["freq_cis_real"], weights["freq_cis_imag"] = rope_tables(config)
    layout = _layout(config, version)
    for key, shape in layout:
        got = (weights[key].shape if isinstance(weights[key], QuantizedTensor) else np.shape(weights[key])) if key in weights else "missing"
        if got != shape:
            raise CheckpointError(f"{where}: weight {key!r} is {got}, config {config.name!r} needs shape {shape}")
    params = [getattr(config, k) * (-1 if k == "vocab_size" and version == 0 and not config.tied_embeddings else 1) for k in _PARAMS]
    header = struct.pack("<7i", *params) if version == 0 else (struct.pack("<Ii7iB", MAGIC, version, *params, config.tied_embeddings)
                                                                + (struct.pack("<i", gs) if gs else b"")).ljust(HEADER_BYTES, b"\0")
    with open(path, "wb") as f:
        f.write(header)
        for key, shape in layout:
            w = weights[key]
            if version == 2 and key in _QUANTIZED:
                if not (isinstance(w, QuantizedTensor) and w.group_size == gs):
                    w = quantize_int8(_as_float(w), gs)
                q = w.q.reshape(-1, int(np.prod(shape[-2:])))
                s = w.scales.reshape(q.shape[0], -1)
                for ql, sl in zip(q, s):  # runq.c layout: per layer, int8 values then fp32 scales
                    f.write(ql.astype(np.int8).tobytes())
                    f.write(sl.astype("<f4").tobytes())
            else:
                f.write(_as_float(w).astype("<f4").tobytes())
    return path


_STATE_DICT_NAMES = {"rms_att_weight": "attention_norm", "wq": "attention.wq", "wk": "attention.wk", "wv": "attention.wv",
                     "wo": "attention.wo", "rms_ffn_weight": "ffn_norm", "w1": "feed_forward.w1", "w2": "feed_forward.w2",
                     "w3": "feed_forward.w3"}  # llama2.c's model.py (and Meta's Llama) per-layer names, without ".weight"


def from_state_dict(state_dict: dict, n_heads: int, seq_len: int, n_kv_heads: int | None = None, name: str = "model") -> tuple[ModelConfig, dict]:
    """The `ModelConfig` and weights of a PyTorch Llama state dict named as llama2.c's ``model.py`` names it, for `write_llama2c`.

    For a checkpoint you have (llama2.c's ``train.py`` saves ``torch.load("out/ckpt.pt")["model"]``, its
    ``model_args`` give n_heads, n_kv_heads and max_seq_len); shapes give the other sizes. Keys may carry
    torch.compile's ``_orig_mod.`` prefix; values are tensors (any float dtype) or arrays. Hugging Face's
    ``q_proj``/``k_proj`` layout (rotary dimensions permuted) is a different format and is refused.

    Raises
    ------
    CheckpointError
        Naming the missing key, or sizes that do not fit ``n_heads``.
    """
    def arr(v) -> np.ndarray:
        v = v.detach().float().cpu().numpy() if hasattr(v, "detach") else v  # torch tensors, without importing torch
        return np.ascontiguousarray(v, dtype=np.float32)

    sd = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
    for key in ("tok_embeddings.weight", "norm.weight"):
        if key not in sd:
            hint = " (a Hugging Face one? llama2.c's export.py --hf writes it as a .bin that read_llama2c reads)" if any("q_proj" in k for k in sd) else ""
            raise CheckpointError(f"state dict has no {key!r}: not a llama2.c / Meta Llama state dict{hint}")
    n_layers = 1 + max((int(k.split(".")[1]) for k in sd if k.startswith("layers.")), default=-1)
    if n_layers == 0:
        raise CheckpointError("state dict has no 'layers.0.*' weights")
    weights = {"token_embedding_table": arr(sd["tok_embeddings.weight"]), "rms_final_weight": arr(sd["norm.weight"])}
    for ours, theirs in _STATE_DICT_NAMES.items():
        keys = [f"layers.{i}.{theirs}.weight" for i in range(n_layers)]
        if missing := [k for k in keys if k not in sd]:
            raise CheckpointError(f"state dict has no {missing[0]!r}")
        weights[ours] = np.stack([arr(sd[k]) for k in keys])
    vocab, dim = weights["token_embedding_table"].shape
    out = sd.get("output.weight")
    tied = out is None or out is sd["tok_embeddings.weight"] or np.array_equal(arr(out), weights["token_embedding_table"])
    if not tied:
        weights["wcls"] = arr(out)
    kv_heads = n_kv_heads or n_heads
    if weights["wk"].shape[1] * n_heads != dim * kv_heads:
        raise CheckpointError(f"state dict: wk has {weights['wk'].shape[1]} rows, dim {dim} with n_heads {n_heads} and n_kv_heads {kv_heads} "
                              f"needs {dim * kv_heads // n_heads}: check n_heads / n_kv_heads")
    try:
        config = ModelConfig(name, dim, n_layers, n_heads, kv_heads, weights["w1"].shape[1], vocab, seq_len, tied_embeddings=tied,
                             source=f"PyTorch state dict ({n_layers} layers), converted by lpu.checkpoint.from_state_dict")
    except ValueError as e:
        raise CheckpointError(f"state dict: {e}") from None
    return config, weights


_BYTE_TOKEN = re.compile(rb"<0x([0-9A-Fa-f]{1,2})")  # run.c: sscanf(piece, "<0x%02hhX>", &byte_val) == 1


class Tokenizer:
    """llama2.c's BPE tokenizer (run.c's ``Tokenizer``): ``pieces`` (bytes), ``scores`` (float32),
    ``max_token_length``, ``vocab_size``, ``bos_id`` (1), ``eos_id`` (2) and ``path``.

    Examples
    --------
    >>> tok = Tokenizer([b"<unk>", b"<s>", b"</s>", b" ", b"a", b"b", b" a", b"ab"], [0, 0, 0, -1, -2, -3, -4, -5])
    >>> tok.encode("ab")
    [1, 6, 5]
    >>> tok.decode_tokens([1, 6, 5])
    'ab'
    """

    bos_id, eos_id = BOS_ID, EOS_ID

    def __init__(self, pieces: list[bytes], scores, max_token_length: int | None = None, path: Path | None = None):
        self.pieces = [bytes(p) for p in pieces]
        self.scores = np.asarray(scores, dtype=np.float32)
        if len(self.scores) != len(self.pieces):
            raise CheckpointError(f"{len(self.pieces)} pieces but {len(self.scores)} scores")
        if len(self.pieces) <= EOS_ID:
            raise CheckpointError(f"{path or 'tokenizer'}: {len(self.pieces)} tokens; run.c's tokenizer needs at least 3 (0 <unk>, 1 BOS, 2 EOS)")
        self.max_token_length = max(map(len, self.pieces), default=0) if max_token_length is None else max_token_length
        self.path, self.vocab_size = path, len(self.pieces)
        self._c = [p.split(b"\0")[0] for p in self.pieces]  # run.c sees C strings
        self._score = self.scores.tolist()
        self._id = {p: i for i, p in reversed(list(enumerate(self._c)))}  # the first of duplicates wins

    @classmethod
    def from_file(cls, path: str | os.PathLike, vocab_size: int | None = None) -> Tokenizer:
        """Read a llama2.c ``tokenizer.bin``.

        Parameters
        ----------
        path : str or path-like
            The tokenizer file.
        vocab_size : int, optional
            The model's ``config.vocab_size``: the file must hold exactly that many tokens
            (run.c reads vocab_size entries and silently ignores any more).

        Raises
        ------
        CheckpointError
            For a missing or truncated file, or a token count other than ``vocab_size``.
        """
        path, where = Path(path), str(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            missing = isinstance(e, FileNotFoundError)
            raise CheckpointError(f"{where}: " + ("no such tokenizer file" if missing else f"cannot read tokenizer: {e}")) from None
        if len(data) < 4:
            raise CheckpointError(f"{where}: truncated tokenizer: expected at least 4 bytes, found {len(data)}")
        (max_len,), off, pieces, scores = struct.unpack_from("<i", data), 4, [], []
        while off < len(data):
            score, n = struct.unpack_from("<fi", data, off) if off + 8 <= len(data) else (0.0, 0)
            if n < 0 or off + 8 + n > len(data):
                raise CheckpointError(f"{where}: truncated or corrupt tokenizer at token {len(pieces)} (length {n}): "
                                      f"expected {off + 8 + max(n, 0)} bytes, found {len(data)}")
            pieces.append(data[off + 8:off + 8 + n])
            scores.append(score)
            off += 8 + n
        if vocab_size is not None and len(pieces) != vocab_size:
            raise CheckpointError(f"{where}: tokenizer has {len(pieces)} tokens, model expects {vocab_size} (a tokenizer from another model?)")
        longest = max(map(len, pieces), default=0)
        if max_len < longest:  # run.c sizes its merge buffer by it: a longer piece would overflow it
            raise CheckpointError(f"{where}: corrupt tokenizer: header says max_token_length {max_len}, but a piece is {longest} bytes long")
        return cls(pieces, scores, max_len, path)

    def encode(self, text: str | bytes, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of ``text`` exactly as run.c's ``encode()``: a dummy-prefix " " if the text is non-empty,
        UTF-8 codepoints looked up as pieces (else byte fallback, id byte + 3), then merges of the adjacent pair
        whose concatenation is the best-scoring piece (first on ties). ``bytes`` are taken as is; NUL ends the text.
        """
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        data = data.split(b"\0")[0]
        tokens = [BOS_ID] if bos else []
        if data:
            if b" " not in self._id:
                raise CheckpointError("tokenizer has no ' ' piece for the dummy prefix")
            tokens.append(self._id[b" "])
        buf = b""
        for i, c in enumerate(data):
            buf = bytes([c]) if c & 0xC0 != 0x80 else buf + bytes([c])
            if i + 1 < len(data) and data[i + 1] & 0xC0 == 0x80 and len(buf) < 4:
                continue
            tid = self._id.get(buf)
            tokens.extend([tid] if tid is not None else [self._byte_id(b, buf) for b in buf])
            buf = b""
        c, score = self._c, self._score

        def pair(i):  # (score, id) of merging tokens[i] and tokens[i+1]
            tid = self._id.get(c[tokens[i]] + c[tokens[i + 1]])
            return (score[tid], tid) if tid is not None else (None, -1)

        pairs = [pair(i) for i in range(len(tokens) - 1)]
        while True:
            best, best_idx = -1e10, -1
            for i, (s, _) in enumerate(pairs):
                if s is not None and s > best:
                    best, best_idx = s, i
            if best_idx == -1:
                break
            tokens[best_idx:best_idx + 2] = [pairs[best_idx][1]]
            del pairs[best_idx]
            for i in (best_idx - 1, best_idx):
                if 0 <= i < len(pairs):
                    pairs[i] = pair(i)
        return tokens + [EOS_ID] if eos else tokens

    def _byte_id(self, b: int, char: bytes) -> int:
        """run.c's byte fallback: byte ``b`` is token ``b + 3``, which must be the piece ``<0xNN>`` (else the ids are another vocabulary's)."""
        tid = b + 3
        if tid >= self.vocab_size or self._c[tid] != b"<0x%02X>" % b:
            got = f"{self._c[tid]!r}" if tid < self.vocab_size else f"nothing (vocab_size {self.vocab_size})"
            text = char.decode("utf-8", "backslashreplace")
            raise CheckpointError(f"tokenizer{' ' + str(self.path) if self.path else ''} cannot encode {text!r}: run.c's byte fallback needs "
                                  f"the piece <0x{b:02X}> at id {tid}, found {got} (llama2.c tokenizers hold the 256 byte pieces at ids 3-258)")
        return tid

    def decode_bytes(self, prev_token: int, token: int) -> bytes:
        """The bytes run.c's ``decode(prev_token, token)`` returns (a raw byte token ``<0xNN>`` gives that byte)."""
        piece = self._c[token]
        if prev_token == BOS_ID and piece[:1] == b" ":
            piece = piece[1:]  # sentencepiece strips the leading space after BOS
        m = _BYTE_TOKEN.match(piece)
        return bytes([int(m.group(1), 16)]) if m else piece

    def decode(self, prev_token: int, token: int) -> str:
        """run.c's ``decode()`` as text; a lone byte of a multi-byte character gives U+FFFD (use `decode_tokens`)."""
        return self.decode_bytes(prev_token, token).decode("utf-8", errors="replace")

    def decode_tokens(self, ids, prev_token: int = BOS_ID) -> str:
        """Text of ``ids``: pieces joined as bytes (BOS and EOS skipped), then UTF-8 decoded (errors replaced).

        ``prev_token`` precedes ``ids[0]``; the default (BOS) strips the dummy-prefix space: ``decode_tokens(encode(s)) == s``.
        """
        out = bytearray()
        for t in ids:
            if t not in (BOS_ID, EOS_ID):
                out += self.decode_bytes(prev_token, t)
            prev_token = t
        return out.decode("utf-8", errors="replace")


def write_tokenizer(path: str | os.PathLike, pieces: list[bytes], scores: list[float]) -> Path:
    """Write a llama2.c ``tokenizer.bin`` (int32 max_token_length; per token fp32 score, int32 length, bytes).

    Parameters
    ----------
    path : str or path-like
        The file to (over)write; returned.
    pieces : list of bytes
        Token pieces in id order (llama2.c: 0 ``<unk>``, 1 BOS, 2 EOS, 3..258 the raw bytes).
    scores : list of float
        One merge score per piece.
    """
    path = Path(path)
    if len(pieces) != len(scores):
        raise CheckpointError(f"{path}: {len(pieces)} pieces but {len(scores)} scores")
    parts = [struct.pack("<i", max(map(len, pieces), default=0))]
    for p, s in zip(pieces, scores):
        parts += [struct.pack("<fi", s, len(p)), bytes(p)]
    path.write_bytes(b"".join(parts))
    return path
