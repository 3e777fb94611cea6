"""Tests of lpu.checkpoint: llama2.c model files (versions 0, 1, 2) and the llama2.c tokenizer."""

import dataclasses
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from lpu.checkpoint import (
    MAGIC,
    Checkpoint,
    CheckpointError,
    Tokenizer,
    from_state_dict,
    read_llama2c,
    rope_tables,
    write_llama2c,
    write_tokenizer,
)
from lpu.models import ModelConfig
from lpu.quant import QuantizedTensor, quantize_int8

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
STORIES, TOK512 = SHARED / "stories260K.bin", SHARED / "tok512.bin"
needs_stories = pytest.mark.skipif(not STORIES.exists(), reason=f"llama2.c test model not found at {STORIES}")
needs_tok512 = pytest.mark.skipif(not TOK512.exists(), reason=f"llama2.c test tokenizer not found at {TOK512}")

FLOAT_KEYS = ("token_embedding_table", "rms_att_weight", "rms_ffn_weight", "rms_final_weight")
MATRICES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")


def tiny(tied: bool, hidden: int = 48) -> ModelConfig:
    return ModelConfig("tiny", dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=hidden, vocab_size=40, seq_len=16,
                       tied_embeddings=tied)


def random_weights(c: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    L, D, H, V, kv = c.n_layers, c.dim, c.hidden_dim, c.vocab_size, c.kv_dim
    shapes = {"token_embedding_table": (V, D), "rms_att_weight": (L, D), "rms_ffn_weight": (L, D), "rms_final_weight": (D,),
              "wq": (L, D, D), "wk": (L, kv, D), "wv": (L, kv, D), "wo": (L, D, D), "w1": (L, H, D), "w2": (L, D, H),
              "w3": (L, H, D), "wcls": (V, D)}
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    w["wq"][0, 0, :16] = 0.0  # an all-zero group: scale 0
    return w


def same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    return dataclasses.replace(a, name="", source="") == dataclasses.replace(b, name="", source="")


# ---- model files: round trips ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("tied", [True, False])
def test_float_round_trip(tmp_path, version, tied):
    c, w = tiny(tied), random_weights(tiny(tied))
    path = write_llama2c(tmp_path / "m.bin", c, w, version=version)
    ck = read_llama2c(path)
    assert isinstance(ck, Checkpoint) and ck.version == version and ck.path == path and ck.group_size is None
    assert ck.config.name == "m" and same_shape(ck.config, c) and ck.config.tied_embeddings == tied
    assert set(ck.weights) == set(FLOAT_KEYS + MATRICES) | ({"wcls"} if not tied else set())
    for k, v in ck.weights.items():
        np.testing.assert_array_equal(v, w[k])
        assert v.dtype == np.float32 and not v.flags.writeable  # read-only memory map
    assert ck.classifier is ck.weights["token_embedding_table" if tied else "wcls"]
    assert read_llama2c(path, name="other").config.name == "other"


def test_version0_layout(tmp_path):
    c, w = tiny(False), random_weights(tiny(False))
    raw = write_llama2c(tmp_path / "m.bin", c, w, version=0).read_bytes()
    assert struct.unpack_from("<7i", raw) == (32, 48, 2, 4, 2, -40, 16)  # negative vocab: unshared classifier
    floats = np.frombuffer(raw[28:], "<f4")
    rope = c.seq_len * c.head_dim // 2
    np.testing.assert_array_equal(floats[: c.vocab_size * c.dim], w["token_embedding_table"].ravel())
    np.testing.assert_array_equal(floats[-c.vocab_size * c.dim:], w["wcls"].ravel())
    cos, sin = rope_tables(c)
    np.testing.assert_array_equal(floats[-c.vocab_size * c.dim - 2 * rope: -c.vocab_size * c.dim], np.r_[cos.ravel(), sin.ravel()])


@pytest.mark.parametrize("tied", [True, False])
def test_version2_round_trip(tmp_path, tied):
    c, w = tiny(tied), random_weights(tiny(tied))
    path = write_llama2c(tmp_path / "q.bin", c, w, version=2, group_size=16)
    raw = path.read_bytes()
    assert struct.unpack_from("<Ii7iBi", raw) == (MAGIC, 2, 32, 48, 2, 4, 2, 40, 16, int(tied), 16)
    ck = read_llama2c(path)
    assert ck.version == 2 and ck.group_size == 16 and same_shape(ck.config, c)
    for k in ("rms_att_weight", "rms_ffn_weight", "rms_final_weight"):
        np.testing.assert_array_equal(ck.weights[k], w[k])  # norms stay fp32
    quantized = dict(zip(MATRICES, MATRICES), q_tokens="token_embedding_table", **({} if tied else {"wcls": "wcls"}))
    assert set(ck.weights) == set(quantized) | set(FLOAT_KEYS)
    for key, src in quantized.items():
        qt, ref = ck.weights[key], quantize_int8(w[src], 16)
        assert isinstance(qt, QuantizedTensor) and qt.shape == w[src].shape and qt.group_size == 16
        np.testing.assert_array_equal(qt.scales, ref.scales)  # scales exact
        np.testing.assert_array_equal(qt.q, ref.q)
        err = np.abs(qt.dequantize() - w[src]).reshape(*w[src].shape[:-1], -1, 16)
        assert np.all(err <= qt.scales[..., None] / 2 * (1 + 1e-5) + 1e-12)  # within half a step
    np.testing.assert_array_equal(ck.weights["token_embedding_table"], ck.weights["q_tokens"].dequantize())
    assert ck.weights["token_embedding_table"].dtype == np.float32
    assert ck.classifier is ck.weights["q_tokens" if tied else "wcls"]
    # re-writing the quantized checkpoint is lossless; converting it to fp32 writes the dequantized values
    assert write_llama2c(tmp_path / "again.bin", ck.config, ck.weights, version=2, group_size=16).read_bytes() == raw
    back = read_llama2c(write_llama2c(tmp_path / "f.bin", ck.config, ck.weights, version=1))
    np.testing.assert_array_equal(back.weights["w2"], ck.weights["w2"].dequantize())


def test_version2_group_size_backs_off(tmp_path):
    c = tiny(True, hidden=40)  # 64 divides neither dim 32 nor hidden 40: backs off to 8
    with pytest.warns(UserWarning, match="using 8"):
        path = write_llama2c(tmp_path / "q.bin", c, random_weights(c), version=2)
    assert read_llama2c(path).group_size == 8 and read_llama2c(path).weights["w2"].scales.shape == (2, 32, 5)


# ---- model files: errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1, 2])
def test_truncated_and_trailing(tmp_path, version):
    path = write_llama2c(tmp_path / "m.bin", tiny(False), random_weights(tiny(False)), version=version, group_size=16)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match=rf"m\.bin: truncated .*expected {len(raw)} bytes, found {len(raw) - 10}"):
        read_llama2c(path)
    path.write_bytes(raw + b"junk")
    with pytest.raises(CheckpointError, match=rf"4 unexpected trailing bytes.*expected {len(raw)} bytes, found {len(raw) + 4}"):
        read_llama2c(path)
    path.write_bytes(raw[:20])
    with pytest.raises(CheckpointError, match="truncated"):
        read_llama2c(path)


def patch(path: Path, offset: int, fmt: str, *values) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(bytes(raw))
    return path


def test_bad_magic_version_and_header(tmp_path):
    c, w = tiny(True), random_weights(tiny(True))
    v1 = lambda: write_llama2c(tmp_path / "v1.bin", c, w, version=1)  # noqa: E731
    with pytest.raises(CheckpointError, match=r"v1\.bin: .*'ak42'.*0x58585858"):
        read_llama2c(patch(v1(), 0, "4s", b"XXXX"))
    with pytest.raises(CheckpointError, match=r"v1\.bin: unknown llama2.c checkpoint version 3"):
        read_llama2c(patch(v1(), 4, "<i", 3))
    with pytest.raises(CheckpointError, match="n_heads .4. must be a multiple of n_kv_heads .3."):
        read_llama2c(patch(v1(), 24, "<i", 3))
    with pytest.raises(CheckpointError, match="shared_classifier flag is 7"):
        read_llama2c(patch(v1(), 36, "B", 7))
    v0 = lambda: write_llama2c(tmp_path / "v0.bin", c, w, version=0)  # noqa: E731
    for offset, value, message in [(0, -32, "dim = -32"), (0, 0, "dim = 0"), (12, 5, "dim .32. must be divisible by n_heads .5."),
                                   (8, 10**6, "n_layers = 1000000 .absurd"), (20, 0, "vocab_size = 0")]:
        with pytest.raises(CheckpointError, match=rf"v0\.bin: impossible header: .*{message}"):
            read_llama2c(patch(v0(), offset, "<i", value))
    with pytest.raises(CheckpointError, match="group_size 5 must divide"):
        read_llama2c(patch(write_llama2c(tmp_path / "v2.bin", c, w, version=2, group_size=16), 37, "<i", 5))


def test_missing_file_and_bad_writes(tmp_path):
    with pytest.raises(CheckpointError, match=r"nowhere\.bin: no such checkpoint file"):
        read_llama2c(tmp_path / "nowhere.bin")
    c, w = tiny(False), random_weights(tiny(False))
    with pytest.raises(CheckpointError, match="version 3"):
        write_llama2c(tmp_path / "m.bin", c, w, version=3)
    with pytest.raises(CheckpointError, match="'wcls' is missing"):
        write_llama2c(tmp_path / "m.bin", c, {k: v for k, v in w.items() if k != "wcls"})
    with pytest.raises(CheckpointError, match=r"'w2' is \(2, 48, 32\), config 'tiny' needs shape \(2, 32, 48\)"):
        write_llama2c(tmp_path / "m.bin", c, {**w, "w2": w["w1"]})


# ---- tokenizer: synthetic ----------------------------------------------------------------------------------------------
def small_vocab():
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    pieces += [b" ", b"a", b"b", b"c", b"ab", b"bc", b" a", b"\xc3\xa9"]  # ids 259..266
    scores = [0.0] * 259 + [-1.0, -2.0, -2.0, -2.0, -5.0, -5.0, -3.0, -4.0]
    return pieces, scores


def test_tokenizer_file_round_trip_and_errors(tmp_path):
    pieces, scores = small_vocab()
    path = write_tokenizer(tmp_path / "tok.bin", pieces, scores)
    tok = Tokenizer.from_file(path, vocab_size=len(pieces))
    assert tok.pieces == pieces and tok.scores.tolist() == scores and tok.max_token_length == 6
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.path) == (267, 1, 2, path)
    with pytest.raises(CheckpointError, match=r"tok\.bin: tokenizer has 267 tokens, model expects 32000"):
        Tokenizer.from_file(path, vocab_size=32000)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match=r"tok\.bin: truncated"):
        Tokenizer.from_file(path)
    with pytest.raises(CheckpointError, match=r"missing\.bin: no such tokenizer file"):
        Tokenizer.from_file(tmp_path / "missing.bin")


def test_tokenizer_encode_decode_rules():
    tok = Tokenizer(*small_vocab())
    assert tok.encode("") == [1] and tok.encode("", bos=False, eos=True) == [2]
    assert tok.encode("abc") == [1, 265, 264]  # " a" (-3) first, then "bc" (-5); "ab" lost its "a"
    assert tok.encode("bbc", bos=False) == [259, 261, 264]  # "bc" merges; " b" and "bb" are no pieces
    assert tok.encode("cabc", bos=False) == [259, 262, 263, 262]  # "ab" and "bc" tie at -5: the first wins
    assert tok.encode("é", bos=False) == [259, 266]  # a codepoint in the vocab
    assert tok.encode("ü", bos=False, eos=True) == [259, 0xC3 + 3, 0xBC + 3, 2]  # byte fallback
    assert tok.decode(1, 265) == "a" and tok.decode(261, 265) == " a"  # leading space stripped after BOS only
    assert tok.decode_bytes(259, 0xC3 + 3) == b"\xc3" and tok.decode(259, 0x41 + 3) == "A"
    assert tok.decode_tokens(tok.encode("ü")) == "ü" and tok.decode_tokens([265], prev_token=261) == " a"


# ---- the real llama2.c files (skipped when absent) ---------------------------------------------------------------------
@needs_stories
def test_stories260k():
    ck = read_llama2c(STORIES)
    c = ck.config
    assert (c.name, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len, c.tied_embeddings) == (
        "stories260K", 64, 172, 5, 8, 4, 512, 512, True)
    assert ck.version == 0 and "wcls" not in ck.weights and ck.weights["w2"].shape == (5, 64, 172)
    cos, sin = rope_tables(c)  # the file's RoPE tables, to float32 rounding of torch's cos/sin
    np.testing.assert_allclose(np.fromfile(STORIES, "<f4")[-2 * cos.size:], np.r_[cos.ravel(), sin.ravel()], rtol=0, atol=1e-7)


@needs_stories
def test_stories260k_conversions(tmp_path):
    ck = read_llama2c(STORIES)
    raw = STORIES.read_bytes()
    again = write_llama2c(tmp_path / "v0.bin", ck.config, ck.weights, version=0).read_bytes()
    assert again[: -2 * 512 * 4 * 4] == raw[: -2 * 512 * 4 * 4]  # identical up to the RoPE tables
    v1 = read_llama2c(write_llama2c(tmp_path / "v1.bin", ck.config, ck.weights, version=1))
    assert v1.version == 1 and same_shape(v1.config, ck.config)
    for k, v in ck.weights.items():
        np.testing.assert_array_equal(v1.weights[k], v)
    with pytest.warns(UserWarning, match="using 4"):  # hidden_dim 172 = 4 x 43
        path = write_llama2c(tmp_path / "v2.bin", ck.config, ck.weights, version=2)
    v2 = read_llama2c(path)
    assert v2.version == 2 and v2.group_size == 4 and same_shape(v2.config, ck.config)
    for k, v in ck.weights.items():
        got = v2.weights[k].dequantize() if isinstance(v2.weights[k], QuantizedTensor) else v2.weights[k]
        np.testing.assert_allclose(got, v, rtol=0, atol=np.abs(v).max() / 254 * 1.0001)


# Reference ids from llama2.c's encode() (runq.c/run.c tokenizer code compiled with gcc, run on tok512.bin, bos=1, eos=0).
GOLDEN = {
    "Once upon a time": [1, 403, 407, 261, 378],
    "": [1],
    " ": [1, 410, 410],
    "Hello, world!": [1, 346, 306, 414, 432, 263, 304, 341, 443],
    "café, naïve — 日本": [1, 280, 412, 431, 485, 432, 297, 412, 198, 178, 360, 410, 481, 410, 233, 154, 168, 233, 159, 175],
    "  two  spaces": [1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419],
    "line1\nline2\ttab": [1, 278, 271, 411, 475, 13, 421, 271, 411, 479, 12, 413, 412, 430],
    "The quick brown fox jumps over the lazy dog.": [1, 291, 410, 456, 425, 417, 340, 268, 420, 327, 416, 272, 414, 444, 410, 449,
                                                     425, 423, 427, 419, 334, 330, 265, 278, 412, 451, 422, 400, 428, 426],
    'Lily\'s mom said: "No!"': [1, 317, 439, 419, 357, 336, 467, 313, 458, 414, 443, 436],
    "emoji 🙂 ok": [1, 344, 423, 414, 449, 417, 410, 243, 162, 156, 133, 334, 433],
    "ÿ€™~[]<>|": [1, 410, 198, 194, 503, 507, 510, 508, 509, 504, 505, 506],
    "aaaaaaaaaaaaaaaa": [1, 261] + [412] * 15,
    "Tom and Sue were best friends. They liked to play.": [1, 274, 287, 269, 301, 425, 411, 382, 276, 329, 356, 374, 419, 426, 342,
                                                           397, 355, 267, 337, 426],
}
GOLDEN_BYTES = {  # invalid UTF-8: stray continuation bytes, a cut codepoint, too many continuation bytes
    b"\x80\x80abc": [1, 410, 131, 131, 412, 430, 429],
    b"\xe6\x97 end": [1, 410, 233, 154, 344, 264],
    b"\xf0\x9f\x99\x82\x82\x82!": [1, 410, 243, 162, 156, 133, 133, 133, 443],
}


@needs_tok512
def test_tok512_matches_llama2c():
    tok = Tokenizer.from_file(TOK512, vocab_size=512)
    for text, ids in {**GOLDEN, **GOLDEN_BYTES}.items():
        assert tok.encode(text) == ids, text
    assert tok.encode("Once upon a time", bos=False, eos=True) == [403, 407, 261, 378, 2]
    ids = tok.encode("Once upon a time")
    assert "".join(tok.decode(p, t) for p, t in zip(ids, ids[1:])) == "Once upon a time"
    assert tok.decode_tokens(ids) == "Once upon a time"


@needs_tok512
@pytest.mark.parametrize("text", [t for t in GOLDEN if t] + ["café, naïve — 日本 🙂", " leading space", "trailing  ", "\n\n"])
def test_tok512_round_trips(text):
    tok = Tokenizer.from_file(TOK512)
    assert tok.decode_tokens(tok.encode(text, eos=True)) == text


@needs_tok512
@needs_stories
def test_tokenizer_must_match_the_model(tmp_path):
    vocab = read_llama2c(STORIES).config.vocab_size
    assert Tokenizer.from_file(TOK512, vocab_size=vocab).vocab_size == 512
    with pytest.raises(CheckpointError, match="tokenizer has 512 tokens, model expects 32000"):
        Tokenizer.from_file(TOK512, vocab_size=32000)


# ---- inputs that would run and print garbage -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, version, bad):
    c = tiny(False)
    w = random_weights(c)
    if version == 2:  # int8 values cannot be NaN: a scale can (a row of the dequantized matrix then is)
        q = quantize_int8(w["w1"], 16)
        q.scales[1, 7, 0] = bad
        w["w1"] = q
    else:
        w["w1"][1, 7, 3] = bad
    path = write_llama2c(tmp_path / "m.bin", c, w, version=version, group_size=16)
    where = "(1, 7, 0)" if version == 2 else "(1, 7, 3)"
    with pytest.raises(CheckpointError, match=rf"m\.bin: weight 'w1' holds 1 non-finite .*value\(s\), the first {bad} at index "
                                              rf"{re.escape(where)} \(layer 1\)"):
        read_llama2c(path)
    w = random_weights(c)
    w["rms_final_weight"][5] = bad  # a 1-d tensor: no layer
    with pytest.raises(CheckpointError, match=rf"'rms_final_weight' holds 1 non-finite value\(s\), the first {bad} at index \(5,\):"):
        read_llama2c(write_llama2c(tmp_path / "m.bin", c, w, version=version, group_size=16))


def test_tokenizer_header_and_byte_fallback_are_checked(tmp_path):
    pieces, scores = small_vocab()
    path = write_tokenizer(tmp_path / "tok.bin", pieces, scores)
    path.write_bytes(struct.pack("<i", 5) + path.read_bytes()[4:])  # "\n</s>\n" and "<0x00>"... are 6 bytes long
    with pytest.raises(CheckpointError, match=r"tok\.bin: corrupt tokenizer: header says max_token_length 5, but a piece is 6 bytes long"):
        Tokenizer.from_file(path)
    shuffled = pieces[:3] + pieces[4:259] + pieces[3:4] + pieces[259:]  # a vocabulary whose byte pieces are not where run.c looks
    tok = Tokenizer(shuffled, scores)
    assert tok.encode("abc") == [1, 265, 264]  # no byte fallback needed: fine
    with pytest.raises(CheckpointError, match=r"cannot encode 'ü': run.c's byte fallback needs the piece <0xC3> at id 198, found b'<0xC4>'"):
        tok.encode("ü")
    with pytest.raises(CheckpointError, match=r"needs the piece <0x7A> at id 125, found nothing \(vocab_size 8\)"):
        Tokenizer([b"<unk>", b"<s>", b"</s>", b" ", b"a", b"b", b" a", b"ab"], [0] * 8).encode("z")


def test_from_state_dict_converts_a_llama2c_pytorch_state_dict(tmp_path):
    """The state dict of llama2.c's model.py (arrays here; torch tensors behave alike) -> write_llama2c -> the same weights back."""
    for tied in (True, False):
        c, w = tiny(tied), random_weights(tiny(tied))
        theirs = {"tok_embeddings.weight": w["token_embedding_table"], "norm.weight": w["rms_final_weight"]}
        theirs["output.weight"] = theirs["tok_embeddings.weight"] if tied else w["wcls"]
        names = {"rms_att_weight": "attention_norm", "wq": "attention.wq", "wk": "attention.wk", "wv": "attention.wv", "wo": "attention.wo",
                 "rms_ffn_weight": "ffn_norm", "w1": "feed_forward.w1", "w2": "feed_forward.w2", "w3": "feed_forward.w3"}
        for ours, name in names.items():
            for i in range(c.n_layers):
                theirs[f"_orig_mod.layers.{i}.{name}.weight"] = w[ours][i].astype(np.float64)  # torch.compile's prefix, another dtype
        config, weights = from_state_dict(theirs, n_heads=c.n_heads, seq_len=c.seq_len, n_kv_heads=c.n_kv_heads, name="tiny")
        assert same_shape(config, c)
        back = read_llama2c(write_llama2c(tmp_path / "m.bin", config, weights, version=1))
        for k, v in back.weights.items():
            np.testing.assert_array_equal(v, w[k])
    with pytest.raises(CheckpointError, match="wk has 16 rows, dim 32 with n_heads 4 and n_kv_heads 4 needs 32"):
        from_state_dict(theirs, n_heads=4, seq_len=16)
    with pytest.raises(CheckpointError, match="no 'layers.1.feed_forward.w3.weight'"):
        from_state_dict({k: v for k, v in theirs.items() if k != "_orig_mod.layers.1.feed_forward.w3.weight"}, n_heads=4, seq_len=16)
    with pytest.raises(CheckpointError, match=r"no 'layers.0.\*' weights"):
        from_state_dict({"tok_embeddings.weight": np.zeros((4, 4)), "norm.weight": np.ones(4)}, n_heads=1, seq_len=4)
    with pytest.raises(CheckpointError, match="a Hugging Face one"):
        from_state_dict({"model.layers.0.self_attn.q_proj.weight": np.zeros((4, 4))}, n_heads=1, seq_len=4)
