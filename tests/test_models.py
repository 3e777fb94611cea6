import pytest

from lpu import models

PUBLISHED_PARAMS = {  # total (active) parameters as published
    "llama2-7b": (6.74e9, None),
    "llama2-13b": (13.0e9, None),
    "llama2-70b": (68.98e9, None),
    "llama3-8b": (8.03e9, None),
    "llama3-70b": (70.55e9, None),
    "mixtral-8x7b": (46.7e9, 12.9e9),
    "stories15M": (15e6, None),
    "stories42M": (42e6, None),
    "stories110M": (110e6, None),
    "stories260K": (260e3, None),
}


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_parameter_counts_match_published(name):
    total, active = PUBLISHED_PARAMS[name]
    m = models.get(name)
    tol = 0.01 if total > 1e9 else 0.02  # the stories names are rounded
    assert m.n_params == pytest.approx(total, rel=tol)
    assert m.n_active_params == pytest.approx(active or total, rel=tol)


def test_bytes_and_kv_cache():
    m = models.get("llama2-70b")
    assert m.weight_bytes("fp32") == 2 * m.weight_bytes("fp16")
    assert m.weight_bytes("fp16") == pytest.approx(2 * m.n_params, rel=1e-6)
    assert m.weight_bytes("int4") == pytest.approx(0.5 * m.n_params, rel=1e-3)
    # keys and values, 80 layers, 8 KV heads of 128, fp16
    assert m.kv_bytes_per_token("fp16") == 2 * 80 * 8 * 128 * 2
    assert m.kv_bytes_per_token("int8") == m.kv_bytes_per_token("fp16")  # weight-only quantisation keeps a fp16 cache
    mix = m.weight_bytes("fp16-int8ffn")
    assert m.weight_bytes("int8") < mix < m.weight_bytes("fp16")
    assert mix == pytest.approx(2 * m.n_params - m.param_groups()["ffn"], rel=1e-6)


def test_moe_active_bytes_and_flops():
    m = models.get("mixtral-8x7b")
    assert m.weight_bytes("fp16", active=True) < m.weight_bytes("fp16") / 3
    dense = models.get("llama2-7b")
    # decode FLOPs ~ 2 x active params (minus the embedding lookup)
    assert dense.flops_per_token() == pytest.approx(2 * dense.n_params, rel=0.02)
    assert dense.flops_per_token(4096) > dense.flops_per_token(0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dim=100, n_heads=3), "divisible by n_heads"),
    (dict(n_kv_heads=3), "multiple of n_kv_heads"),
    (dict(n_layers=0), "n_layers must be a positive integer"),
    (dict(experts_per_token=2), "exceeds n_experts"),
    (dict(dim=48, n_heads=16, n_kv_heads=16), "head_dim"),
])
def test_invalid_configs_are_rejected(kwargs, match):
    base = dict(name="x", dim=64, n_layers=2, n_heads=8, n_kv_heads=4, hidden_dim=172, vocab_size=512, seq_len=512)
    with pytest.raises(ValueError, match=match):
        models.ModelConfig(**{**base, **kwargs})


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError) as e:
        models.get("llama4-400b")
    assert "llama2-70b" in str(e.value) and "stories260K" in str(e.value)
    with pytest.raises(ValueError, match="known precisions: fp32"):
        models.get_precision("fp12")


def test_head_dim_is_a_field():
    base = dict(name="x", dim=96, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=172, vocab_size=512, seq_len=512)
    derived = models.ModelConfig(**base)
    assert (derived.head_dim, derived.q_dim, derived.kv_dim) == (24, 96, 48)
    assert derived == models.ModelConfig(**base, head_dim=24)  # given or derived: the same config
    wide = models.ModelConfig(**{**base, "n_heads": 5, "n_kv_heads": 5}, head_dim=32)  # 96 % 5 != 0 is fine with head_dim given
    assert (wide.q_dim, wide.kv_dim) == (160, 160)
    # wq (dim x q_dim) and wo (q_dim x dim), wk and wv (dim x kv_dim), per layer
    assert wide.param_groups()["attention"] == 2 * (2 * 96 * 160 + 2 * 96 * 160)
    assert wide.kv_bytes_per_token("fp16") == 2 * 2 * 160 * 2
    with pytest.raises(ValueError, match="head_dim must be a positive integer"):
        models.ModelConfig(**base, head_dim=0)
    with pytest.raises(ValueError, match="or give head_dim"):
        models.ModelConfig(**{**base, "n_heads": 5, "n_kv_heads": 5})
