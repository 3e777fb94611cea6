"""Engine(chips=N): the sharded plan of lpu.shard executed with real weights, against chips=1."""

from pathlib import Path

import numpy as np
import pytest

from lpu import graph
from lpu.quant import QuantizedTensor
from lpu.runtime import MATRICES, Engine
from lpu.sharded import sharded_op_names

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
STORIES = SHARED / "stories260K.bin"
needs_stories = pytest.mark.skipif(not STORIES.exists(), reason=f"the llama2.c test model is not at {SHARED} (../shared/models beside the repo)")
PROMPTS = {"bundled": "ROMEO:", "stories": "Once upon a time"}
N_TOKENS = 200


def _load(model, chips=1, precision=None):
    if model == "bundled":
        return Engine.default(chips=chips, precision=precision)
    if not STORIES.exists():
        pytest.skip(f"the llama2.c test model is not at {SHARED} (../shared/models beside the repo)")
    return Engine.from_llama2c(STORIES, SHARED / "tok512.bin", chips=chips, precision=precision)


@pytest.fixture(scope="module")
def reference():
    """chips=1 per model: its greedy tokens and its logits at every position of prompt + tokens."""
    out = {}

    def get(model):
        if model not in out:
            eng = _load(model)
            ids = [e.token_id for e in eng.generate(PROMPTS[model], N_TOKENS)]
            seq = eng.tokenizer.encode(PROMPTS[model], bos=True) + ids
            logits = np.stack([eng.forward(t, p).copy() for p, t in enumerate(seq[:-1])])
            out[model] = ids, seq, logits
        return out[model]

    return get


@pytest.mark.parametrize("model", ["bundled", pytest.param("stories", marks=needs_stories)])
@pytest.mark.parametrize("chips", [1, 2, 4, 8])
def test_sharded_greedy_and_logits_match_one_chip(reference, model, chips):
    ids, seq, ref_logits = reference(model)
    eng = _load(model, chips)
    assert eng.plan.chips == chips
    got = [e.token_id for e in eng.generate(PROMPTS[model], N_TOKENS)]
    assert len(got) == N_TOKENS and got == ids
    for pos, tok in enumerate(seq[:-1]):  # teacher-forced over the same tokens: every position's logits
        a, b = eng.forward(tok, pos), ref_logits[pos]
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), (chips, pos)


def test_plans_cover_uneven_splits_and_kv_replication():
    bundled = Engine.default(chips=8)
    assert (bundled.plan.pp, bundled.plan.tp) == (2, 4)  # 4 heads / 2 KV heads: KV heads replicated on 2 ranks each
    assert [ch.layers for ch in bundled.shards] == [range(0, 2)] * 4 + [range(2, 4)] * 4
    if STORIES.exists():
        s = _load("stories", 8)
        assert (s.plan.pp, s.plan.tp) == (1, 8)
        assert sorted({len(ch.hidden) for ch in s.shards}) == [21, 22]  # hidden 172 over 8 ranks


def _elements(t):
    return int(np.prod(t.shape))


@pytest.mark.parametrize("model,chips", [("bundled", 2), ("bundled", 8), pytest.param("stories", 8, marks=needs_stories),
                                         pytest.param("stories", 4, marks=needs_stories)])
def test_each_chip_holds_only_its_shards_and_together_the_whole_model(model, chips):
    eng = _load(model, chips)
    c, plan, w = eng.config, eng.plan, eng.checkpoint.weights
    per_chip = [ch.tensors() for ch in eng.shards]
    kv_rows_held = sum(len(plan.kv_heads(r)) for r in range(plan.tp)) * c.head_dim
    assert kv_rows_held >= c.kv_dim
    want = dict(wq=c.dim * c.dim, wo=c.dim * c.dim, wk=kv_rows_held * c.dim, wv=kv_rows_held * c.dim, w1=c.hidden_dim * c.dim,
                w2=c.hidden_dim * c.dim, w3=c.hidden_dim * c.dim, rms_att_weight=c.dim * plan.tp, rms_ffn_weight=c.dim * plan.tp)
    for name, per_layer in want.items():  # per layer, over the chips of the layer's stage (norms: one copy per rank)
        assert sum(_elements(t) for ch in per_chip for t in ch[name]) == c.n_layers * per_layer, name
    assert sum(_elements(t) for ch in per_chip for t in ch.get("token_embedding_table", [])) == w["token_embedding_table"].size
    assert sum(_elements(t) for ch in per_chip for t in ch.get("classifier", [])) == c.vocab_size * c.dim
    assert sum(_elements(t) for ch in per_chip for t in ch.get("rms_final_weight", [])) == c.dim * plan.tp
    # the shards reassemble the full tensors, and none of them is a view of the checkpoint's arrays
    for s, layers in enumerate(plan.stage_layers):
        chips_s = [ch for ch in eng.shards if ch.stage == s]
        for i, layer in enumerate(layers):
            for name in MATRICES:
                parts = [ch.tensors()[name][i] for ch in chips_s]
                full = np.concatenate(parts, axis=1 if name in ("wo", "w2") else 0)
                if name in ("wk", "wv"):  # replicated KV heads: keep each head once
                    rows = np.concatenate([np.arange(ch.kv_heads.start * c.head_dim, ch.kv_heads.stop * c.head_dim) for ch in chips_s])
                    full = full[np.unique(rows, return_index=True)[1]]
                np.testing.assert_array_equal(full, w[name][layer])
                assert not any(np.shares_memory(p, w[name]) for p in parts)
    for ch in eng.shards:
        assert ch.k_cache.shape == (len(ch.layers), len(ch.kv_heads), c.head_dim, c.seq_len)
        for arrays in ch.tensors().values():
            for a in arrays:
                assert not any(np.shares_memory(a, full) for full in w.values() if isinstance(full, np.ndarray))


def test_trace_records_graph_ops_and_explicit_collectives():
    eng = Engine.default(chips=8)
    eng.trace = []
    list(eng.generate("ROMEO:", 2))
    trace, eng.trace = eng.trace, None
    collectives = {"embed_allreduce", "classifier_allgather", "stage0->1.send"} | {f"L{i}.{k}_allreduce" for i in range(4) for k in ("attn", "ffn")}
    assert collectives <= set(trace)
    step = eng.ops  # one step: graph.decode's ops with the collectives where they happen
    assert step == sharded_op_names(eng.plan)
    assert [n for n in step if n not in collectives] == graph.decode(eng.config, 1, 0).names
    assert step.index("L0.attn_allreduce") == step.index("L0.wo") + 1 and step.index("stage0->1.send") == step.index("L1.ffn_residual") + 1
    assert trace[:len(step) - 1] == step[:-1]  # the prompt's first token: one step without sampling


@pytest.mark.parametrize("model", ["bundled", pytest.param("stories", marks=needs_stories)])
def test_int8_shards_match_int8_one_chip(model):
    one, four = _load(model, 1, "int8"), _load(model, 4, "int8")
    # each shard is quantized in groups of gcd(its d_in, 64): wo's columns of one head, w2's FFN slice
    assert all(isinstance(lin.w, QuantizedTensor) and lin.shape[1] % lin.w.group_size == 0 for ch in four.shards
               for layer in ch.linears for lin in layer.values())
    greedy = [e.token_id for e in one.generate(PROMPTS[model], N_TOKENS)]
    assert [e.token_id for e in four.generate(PROMPTS[model], N_TOKENS)] == greedy


@needs_stories
def test_int8_checkpoint_shards_keep_their_groups(tmp_path):
    from lpu import checkpoint

    ck = checkpoint.read_llama2c(STORIES)
    with pytest.warns(UserWarning):
        checkpoint.write_llama2c(tmp_path / "v2.bin", ck.config, ck.weights, version=2, group_size=64)
    one = Engine.from_llama2c(tmp_path / "v2.bin", SHARED / "tok512.bin")
    two = Engine.from_llama2c(tmp_path / "v2.bin", SHARED / "tok512.bin", chips=2)
    assert two.precision == "int8"
    assert [e.token_id for e in two.generate("Once upon a time", 60)] == [e.token_id for e in one.generate("Once upon a time", 60)]


def test_sharded_t_sim_and_weight_bytes():
    one, eight = Engine.default(), Engine.default(chips=8)
    evs = list(eight.generate("ROMEO:", 10))
    assert all(np.diff([e.t_sim_s for e in evs]) > 0) and evs[0].t_sim_s > 0
    # every matrix once, plus the wk/wv rows replicated on the 2 ranks sharing each KV head
    c = one.config
    assert eight.weight_bytes == one.weight_bytes + 2 * c.n_layers * c.kv_dim * c.dim * 4


def test_bad_chip_counts_get_clear_errors():
    one = Engine.default()
    for bad in (0, -2, 1.5, "4", True, None):
        with pytest.raises(ValueError, match="chips must be a positive integer"):
            Engine(one.checkpoint, one.tokenizer, chips=bad)
    with pytest.raises(ValueError, match="5 chips cannot be cut"):
        Engine(one.checkpoint, one.tokenizer, chips=5)  # 4 layers, 4 heads
    with pytest.raises(ValueError, match="cannot be cut"):
        Engine.default(chips=32)
    assert Engine(one.checkpoint, one.tokenizer, chips=np.int64(2)).plan.tp == 2


@needs_stories
@pytest.mark.parametrize("chips", [3, 10])
def test_uneven_head_splits_match_one_chip(reference, chips):
    ids, _, _ = reference("stories")
    eng = _load("stories", chips)  # 3: heads 3/3/2 over 4 KV heads, rank 0 reads KV heads 0 and 1; 10: 2 stages x 5 ranks
    assert any(len(ch.attn_groups) > 1 for ch in eng.shards) or eng.plan.pp > 1
    assert [e.token_id for e in eng.generate(PROMPTS["stories"], N_TOKENS)] == ids
