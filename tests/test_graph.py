import pytest

from lpu import graph, models


@pytest.mark.parametrize("name", ["llama2-7b", "llama2-70b", "llama3-8b", "stories260K", "stories15M"])
@pytest.mark.parametrize("batch, context", [(1, 0), (4, 100), (16, 2000)])
def test_decode_flops_and_bytes_match_closed_form(name, batch, context):
    m = models.get(name)
    if context + 1 > m.seq_len:
        pytest.skip("context beyond the model's")
    g = graph.decode(m, batch, context, "fp16")
    df = g.to_dataframe()
    dense = df[df.kind.isin(["matmul", "attention_scores", "attention_values"])].flops.sum()
    # 2 FLOPs per weight per token (embedding lookup excluded), plus attention over context + 1 positions
    assert dense == batch * m.flops_per_token(context + 1)
    groups = m.param_groups()
    streamed = 2 * (m.n_params - groups["norms"] - (0 if m.tied_embeddings else groups["embedding"]))
    assert g.totals()["weight_bytes"] == streamed  # every weight but the lookup table and norms, once per step, whatever the batch
    kv_read = df.kv_read_bytes.sum()
    assert kv_read == batch * (context + 1) * m.kv_bytes_per_token("fp16")  # keys and values of every attended position
    assert df.kv_write_bytes.sum() == batch * m.kv_bytes_per_token("fp16")


def test_prefill_is_causal_and_only_classifies_the_last_token():
    m = models.get("llama2-7b")
    P = 128
    g = graph.prefill(m, P)
    df = g.to_dataframe().set_index("name")
    attended = P * (P + 1) // 2
    assert df.loc["L0.attn_scores", "flops"] == 2 * m.n_heads * m.head_dim * attended
    assert df.loc["classifier", "flops"] == 2 * m.vocab_size * m.dim
    assert df.loc["L0.wq", "flops"] == 2 * P * m.dim * m.dim
    assert df.loc["L0.attn_scores", "kv_read_bytes"] == P * m.kv_dim * 2  # each cached key read once for all queries


def test_moe_streams_only_the_experts_routed_to():
    m = models.get("mixtral-8x7b")
    g1, g64 = graph.decode(m, 1), graph.decode(m, 64)
    w1 = g1.to_dataframe().set_index("name").loc["L0.w1"]
    assert w1.experts == 2 and w1.weight_bytes == 2 * m.hidden_dim * m.dim * 2
    lookup_and_norms = 2 * (m.param_groups()["embedding"] + m.param_groups()["norms"])
    assert g1.totals()["weight_bytes"] == pytest.approx(m.weight_bytes("fp16", active=True) - lookup_and_norms, rel=1e-6)
    # a batch of 64 touches almost every expert
    assert graph.expected_experts(8, 2, 64) == pytest.approx(8, rel=1e-6)
    assert g64.totals()["weight_bytes"] == pytest.approx(m.weight_bytes("fp16") - lookup_and_norms, rel=1e-6)


def test_ops_are_topologically_ordered_with_the_llama_layer_structure():
    g = graph.decode("stories260K", 2, 10)
    for i, op in enumerate(g.ops):
        assert all(d < i for d in op.deps)
    layer0 = [o.name for o in g.ops if o.layer == 0]
    assert layer0 == ["L0." + n for n in ("attn_norm", "wq", "wk", "wv", "rope", "kv_write", "attn_scores", "softmax", "attn_values", "wo",
                                          "attn_residual", "ffn_norm", "w1", "w3", "swiglu", "w2", "ffn_residual")]
    assert g.names[0] == "embed" and g.names[-3:] == ["final_norm", "classifier", "sample"]
    assert len(set(g.names)) == len(g)


@pytest.mark.parametrize("name", ["llama2-7b", "llama3-8b"])
def test_a_verify_step_reads_each_users_cache_once_and_classifies_every_row(name):
    m, users, r, context = models.get(name), 3, 5, 200
    v = graph.build(m, "decode", users * r, context, "fp16", rows_per_user=r).to_dataframe().set_index("name")
    one = graph.build(m, "decode", r, context, "fp16", rows_per_user=r).to_dataframe().set_index("name")
    chunk = graph.prefill(m, r, context).to_dataframe().set_index("name")  # one user's r rows: a prefill chunk's attention
    att = ["L0.attn_scores", "L0.softmax", "L0.attn_values"]
    assert (one.loc[att, ["flops", "kv_read_bytes"]] == chunk.loc[att, ["flops", "kv_read_bytes"]]).all().all()
    assert (v.loc[att, ["flops", "kv_read_bytes"]] == users * chunk.loc[att, ["flops", "kv_read_bytes"]]).all().all()
    assert v.loc["L0.attn_scores", "kv_read_bytes"] == users * (context + r) * m.kv_dim * 2  # each cached key once per user
    assert v.loc["classifier", "flops"] == 2 * users * r * m.vocab_size * m.dim  # every row's logits are checked
    plain = graph.decode(m, users * r, context).to_dataframe().set_index("name")  # as many users of one row: more KV read
    rest = ~v.kind.isin(["attention_scores", "softmax", "attention_values"])  # every layer's
    assert v[rest].equals(plain[rest])
    assert v.loc["L0.attn_scores", "kv_read_bytes"] < plain.loc["L0.attn_scores", "kv_read_bytes"]
    assert graph.build(m, "decode", 4, context, "fp16", rows_per_user=1).to_dataframe().equals(graph.decode(m, 4, context).to_dataframe())


@pytest.mark.parametrize("kwargs, match", [
    (dict(phase="train"), "phase"), (dict(tokens=0), "tokens"), (dict(context=-1), "context"), (dict(context=600), "position"),
    (dict(tokens=6, rows_per_user=4), "rows_per_user"), (dict(tokens=4, rows_per_user=0), "rows_per_user"),
    (dict(phase="prefill", tokens=4, rows_per_user=2), "rows_per_user"), (dict(tokens=8, rows_per_user=8, context=505), "position"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        graph.build("stories260K", **kwargs)
