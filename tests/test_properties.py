"""Property-based tests (hypothesis): the file readers on arbitrary and damaged input, the tokenizer's round trip, SRAM bookkeeping.

Deterministic (``derandomize=True``, no example database) and quick: a few hundred examples in a few seconds.
"""

import dataclasses
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import lpu
from lpu import hardware
from lpu.checkpoint import Checkpoint, CheckpointError, Tokenizer, read_llama2c, write_llama2c
from lpu.models import ModelConfig
from lpu.sram import SRAM, SRAMCapacityError

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=150)
SCRATCH = Path(tempfile.mkdtemp(prefix="lpu-properties-"))  # one file per example, overwritten; hypothesis dislikes tmp_path
BUNDLED_TOKENIZER = lpu.DATA_DIR / "models" / "tok512_shakespeare.bin"
TOK512 = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "tok512.bin"  # llama2.c's (stories260K), when beside the repo


def _scratch(data: bytes, name: str = "x.bin") -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def _valid_checkpoints() -> dict[tuple[int, bool], bytes]:
    """Small checkpoints of every version, tied and not, as bytes."""
    out = {}
    for tied in (True, False):
        c = ModelConfig("tiny", dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=48, vocab_size=40, seq_len=16, tied_embeddings=tied)
        rng = np.random.default_rng(1)
        shapes = {"token_embedding_table": (40, 32), "rms_att_weight": (2, 32), "rms_ffn_weight": (2, 32), "rms_final_weight": (32,),
                  "wq": (2, 32, 32), "wk": (2, 16, 32), "wv": (2, 16, 32), "wo": (2, 32, 32), "w1": (2, 48, 32), "w2": (2, 32, 48),
                  "w3": (2, 48, 32), "wcls": (40, 32)}
        w = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        for version in (0, 1, 2):
            out[version, tied] = write_llama2c(SCRATCH / "valid.bin", c, w, version=version, group_size=16).read_bytes()
    return out


VALID = _valid_checkpoints()


def _read_or_refuse(path: Path):
    """read_llama2c either reads a checkpoint whose arrays match its config, or raises CheckpointError; nothing else escapes."""
    try:
        ck = read_llama2c(path)
    except CheckpointError as e:
        event(f"refused: {str(e).split(': ', 1)[1][:30]}")
        return None
    event("read")
    assert isinstance(ck, Checkpoint) and ck.weights["token_embedding_table"].shape == (ck.config.vocab_size, ck.config.dim)
    return ck


# ---- the checkpoint reader -----------------------------------------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=400))
def test_checkpoint_reader_on_arbitrary_bytes(data):
    _read_or_refuse(_scratch(data))


@SETTINGS
@given(st.sampled_from(sorted(VALID)), st.data())
def test_checkpoint_reader_on_truncations_and_extensions(key, data):
    raw = VALID[key]
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(CheckpointError, match="truncated"):
        read_llama2c(_scratch(raw[:cut]))
    extra = data.draw(st.binary(min_size=1, max_size=64), label="extra")
    with pytest.raises(CheckpointError, match="unexpected trailing bytes"):
        read_llama2c(_scratch(raw + extra))


@SETTINGS
@given(st.sampled_from(sorted(VALID)), st.lists(st.tuples(st.integers(0, 299), st.integers(0, 255)), min_size=1, max_size=6))
def test_checkpoint_reader_on_damaged_headers_and_weights(key, edits):
    """Bytes overwritten in the header (and the first weights): read as some model, or refused with the project's error."""
    raw = bytearray(VALID[key])
    for offset, value in edits:
        raw[offset] = value
    ck = _read_or_refuse(_scratch(bytes(raw)))
    if ck is not None:  # whatever it read holds finite numbers only (a NaN weight is refused, naming the tensor)
        assert all(np.isfinite(w.scales if hasattr(w, "scales") else w).all() for w in ck.weights.values())


# ---- the tokenizer reader and encoder ------------------------------------------------------------------------------------
def _tokenizer_files():
    """tokenizer.bin layouts of random vocabularies (pieces, scores and header max_token_length drawn), then maybe cut or overwritten."""
    entry = st.tuples(st.floats(width=32), st.binary(max_size=6) | st.sampled_from([b" ", b"a", b"b", b" a", b"ab", b"<0x61>"]))
    vocab = st.lists(entry, max_size=30)
    layout = st.builds(lambda v, extra: struct.pack("<i", max((len(p) for _, p in v), default=0) + extra)
                       + b"".join(struct.pack("<fi", s, len(p)) + p for s, p in v), vocab, st.integers(-2, 2))
    damaged = st.tuples(layout, st.integers(0, 400), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3))
    return layout | damaged.map(lambda d: _damage(*d)) | st.binary(max_size=100)


def _damage(raw: bytes, cut: int, edits) -> bytes:
    raw = bytearray(raw[:cut])
    for offset, value in edits:
        if offset < len(raw):
            raw[offset] = value
    return bytes(raw)


@SETTINGS
@given(_tokenizer_files(), st.text(st.sampled_from("ab é\0"), max_size=12) | st.text(max_size=12))
def test_tokenizer_reader_and_encoder_on_arbitrary_bytes(data, text):
    try:
        tok = Tokenizer.from_file(_scratch(data, "tok.bin"))
    except CheckpointError:
        event("refused")
        return
    assert tok.max_token_length >= max(map(len, tok.pieces), default=0)
    try:  # a vocabulary read from noise can still be used, or refuses the text with the project's error
        ids = tok.encode(text)
    except CheckpointError:
        event("read; the text refused")
        return
    event("read; the text encoded")
    assert all(0 <= i < tok.vocab_size for i in ids)
    tok.decode_tokens(ids)


@SETTINGS
@given(st.data())
def test_tokenizer_reader_on_truncations(data):
    raw = BUNDLED_TOKENIZER.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(CheckpointError, match="truncated|tokenizer has .* tokens, model expects 512"):  # a cut between tokens: fewer tokens
        Tokenizer.from_file(_scratch(raw[:cut], "tok.bin"), vocab_size=512)


TOKENIZERS = [BUNDLED_TOKENIZER] + ([TOK512] if TOK512.exists() else [])


@pytest.mark.parametrize("path", TOKENIZERS, ids=lambda p: p.name)
@SETTINGS
@given(text=st.text(st.characters(blacklist_characters="\0"), max_size=40))
def test_tokenizer_text_round_trip(path, text):
    tok = _tokenizer(path)
    ids = tok.encode(text, eos=True)
    assert all(0 <= i < tok.vocab_size for i in ids) and ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode_tokens(ids) == text


@pytest.mark.parametrize("path", TOKENIZERS, ids=lambda p: p.name)
@SETTINGS
@given(data=st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")))
def test_tokenizer_byte_round_trip(path, data):
    """Any bytes, valid UTF-8 or not, come back byte for byte from run.c's decode (byte fallback keeps what no piece holds)."""
    tok = _tokenizer(path)
    ids = tok.encode(data)
    assert b"".join(tok.decode_bytes(p, t) for p, t in zip(ids, ids[1:])) == data


_TOKENIZERS: dict[Path, Tokenizer] = {}


def _tokenizer(path: Path) -> Tokenizer:
    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = Tokenizer.from_file(path, vocab_size=512)
    return _TOKENIZERS[path]


# ---- SRAM alloc/free -----------------------------------------------------------------------------------------------------
SMALL_CHIP = dataclasses.replace(hardware.get("lpu-v1"), mem_slices=6, mem_words_per_slice=64)  # 384 words: quick, often full


class SRAMBookkeeping(RuleBasedStateMachine):
    """Random alloc/free sequences against an independent model: a boolean map of used words per slice."""

    def __init__(self):
        super().__init__()
        self.sram = SRAM(SMALL_CHIP)
        self.used = np.zeros((SMALL_CHIP.mem_slices, SMALL_CHIP.mem_words_per_slice), dtype=bool)
        self.count = 0

    def _largest_free_run(self, s: int) -> int:
        best = run = 0
        for u in self.used[s]:
            run = 0 if u else run + 1
            best = max(best, run)
        return best

    @rule(nbytes=st.integers(1, 130 * SMALL_CHIP.word_bytes),
          slices=st.none() | st.sets(st.integers(0, SMALL_CHIP.mem_slices - 1), min_size=1))
    def alloc(self, nbytes, slices):
        name, self.count = f"t{self.count}", self.count + 1
        chosen = range(SMALL_CHIP.mem_slices) if slices is None else sorted(slices)
        need = math.ceil(nbytes / SMALL_CHIP.word_bytes)
        room = sum(self._largest_free_run(s) for s in chosen)  # one contiguous run per slice
        before = self.used.copy()
        event("alloc refused" if room < need else "alloc placed")
        if room < need:
            with pytest.raises(SRAMCapacityError) as e:
                self.sram.alloc(name, nbytes, slices)
            err = e.value  # exact: the bytes asked for in whole words, the room there was
            assert (err.tensor, err.requested_bytes, err.free_bytes) == (name, need * SMALL_CHIP.word_bytes, room * SMALL_CHIP.word_bytes)
            assert name not in self.sram.allocations and (self.used == before).all()
            return
        a = self.sram.alloc(name, nbytes, slices)
        assert a.nbytes == nbytes and a.n_words == need and set(a.slices) <= set(chosen)
        for s, b, w in zip(a.slices, a.start, a.words):
            assert w > 0 and 0 <= b and b + w <= SMALL_CHIP.mem_words_per_slice
            assert not self.used[s, b:b + w].any(), f"{name} overlaps another tensor in slice {s}"
            self.used[s, b:b + w] = True

    @rule(data=st.data())
    def free(self, data):
        if not self.sram.allocations:
            with pytest.raises(KeyError, match="no tensor named 'nothing'"):
                self.sram.free("nothing")
            return
        name = data.draw(st.sampled_from(sorted(self.sram.allocations)))
        a = self.sram.allocations[name]
        self.sram.free(name)
        for s, b, w in zip(a.slices, a.start, a.words):
            self.used[s, b:b + w] = False

    @invariant()
    def bytes_are_conserved(self):
        assert self.sram.used_bytes == self.used.sum() * SMALL_CHIP.word_bytes
        assert self.sram.used_bytes + self.sram.free_bytes == self.sram.capacity_bytes == SMALL_CHIP.sram_bytes

    @invariant()
    def free_runs_are_the_complement_merged(self):
        for s, runs in enumerate(self.sram._free):
            free = np.ones(SMALL_CHIP.mem_words_per_slice, dtype=bool)
            for b, e in runs:
                assert b < e
                free[b:e] = False
            assert (free == self.used[s]).all(), f"slice {s}: free runs {runs} are not the complement of the allocations"
            assert all(e1 < b2 for (_, e1), (b2, _) in zip(runs, runs[1:])), f"slice {s}: runs {runs} overlap or touch (not merged)"


SRAMBookkeeping.TestCase.settings = settings(derandomize=True, database=None, deadline=None, max_examples=60, stateful_step_count=30)
test_sram_bookkeeping = SRAMBookkeeping.TestCase
