"""Models from Hugging Face config.json files: shapes, published sizes, stated approximations, errors.

The configs are written here, field for field as their releases publish them (the fields lpu reads
and a few it must not trip over); published sizes are cited beside each.
"""

import json
import subprocess
import sys

import pytest

import lpu
from lpu import graph, models, shard

LLAMA31_8B = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                  num_hidden_layers=32, num_key_value_heads=8, head_dim=128, vocab_size=128256, max_position_embeddings=131072,
                  rope_theta=500000.0, rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                         original_max_position_embeddings=8192, rope_type="llama3"),
                  rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False, mlp_bias=False, torch_dtype="bfloat16")
QWEN25_7B = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                 num_hidden_layers=28, num_key_value_heads=4, vocab_size=152064, max_position_embeddings=131072, max_window_layers=28,
                 rope_theta=1000000.0, sliding_window=131072, use_sliding_window=False, tie_word_embeddings=False, rms_norm_eps=1e-6)
MISTRAL_7B_V01 = dict(architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                      num_hidden_layers=32, num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768, rope_theta=10000.0,
                      sliding_window=4096, tie_word_embeddings=False, rms_norm_eps=1e-5)
MIXTRAL_8X7B = dict(architectures=["MixtralForCausalLM"], model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                    num_hidden_layers=32, num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768, num_local_experts=8,
                    num_experts_per_tok=2, rope_theta=1e6, sliding_window=None, tie_word_embeddings=False, rms_norm_eps=1e-5)
GEMMA2_9B = dict(architectures=["Gemma2ForCausalLM"], model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_attention_heads=16,
                 num_hidden_layers=42, num_key_value_heads=8, head_dim=256, vocab_size=256000, max_position_embeddings=8192, sliding_window=4096,
                 rope_theta=10000.0, rms_norm_eps=1e-6, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=256,
                 hidden_activation="gelu_pytorch_tanh")

# total (active) parameters as published
PUBLISHED = {
    # Hugging Face model page of meta-llama/Llama-3.1-8B: 8.03B params (the model card's "8B")
    "Llama-3.1-8B": (LLAMA31_8B, 8.03e9, None),
    # Qwen2.5-7B model card: "Number of Parameters: 7.61B" (non-embedding 6.53B, tested below)
    "Qwen2.5-7B": (QWEN25_7B, 7.61e9, None),
    # Mistral AI, "Mistral 7B" announcement (Sep 2023): "a 7.3B parameter model"
    "Mistral-7B-v0.1": (MISTRAL_7B_V01, 7.3e9, None),
    # Mistral AI, "Mixtral of experts" (Dec 2023): "46.7B total parameters but only uses 12.9B parameters per token"
    "Mixtral-8x7B-v0.1": (MIXTRAL_8X7B, 46.7e9, 12.9e9),
    # Gemma Team, Gemma 2 report (arXiv:2408.00118), parameter counts of the 9B: 917,504,000 embedding + 8,324,201,984 non-embedding
    "gemma-2-9b": (GEMMA2_9B, 917_504_000 + 8_324_201_984, None),
}


def _write(tmp_path, name, cfg):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_counts_within_2_percent_of_published(tmp_path, name):
    cfg, total, active = PUBLISHED[name]
    m = models.get(str(_write(tmp_path, name, cfg)))
    assert m.name == name
    assert m.n_params == pytest.approx(total, rel=0.02)
    assert m.n_active_params == pytest.approx(active or total, rel=0.02)


def test_fields_are_read(tmp_path):
    q = models.get(_write(tmp_path, "q", QWEN25_7B) / "config.json")  # the file itself, as a Path
    assert (q.dim, q.n_layers, q.n_heads, q.n_kv_heads, q.hidden_dim, q.vocab_size, q.seq_len) == (3584, 28, 28, 4, 18944, 152064, 131072)
    assert (q.head_dim, q.q_dim, q.kv_dim, q.rope_theta, q.norm_eps, q.tied_embeddings, q.qkv_bias) == (128, 3584, 512, 1e6, 1e-6, False, True)
    # Qwen2's q/k/v biases: the model card's non-embedding count is matched only with them
    assert q.n_params - 2 * q.vocab_size * q.dim == pytest.approx(6.53e9, rel=0.002)
    no_bias = models.ModelConfig("no-bias", 3584, 28, 28, 4, 18944, 152064, 4096)
    assert q.param_groups()["attention"] - no_bias.param_groups()["attention"] == 28 * (3584 + 2 * 512)
    x = models.get(str(_write(tmp_path, "x", MIXTRAL_8X7B)))
    assert (x.n_experts, x.experts_per_token, x.is_moe) == (8, 2, True)
    g = models.get(str(_write(tmp_path, "g", GEMMA2_9B)))
    assert g.tied_embeddings  # Gemma's default: the config leaves it out
    assert (g.head_dim, g.q_dim, g.kv_dim) == (256, 4096, 2048) and g.q_dim != g.dim


def test_head_dim_reaches_graph_and_plan(tmp_path):
    g = models.get(str(_write(tmp_path, "g", GEMMA2_9B)))
    ops = {op.name: op for op in graph.decode(g, 1, 100, "fp16").ops}
    assert (ops["L0.wq"].n_out, ops["L0.wq"].n_in, ops["L0.wo"].n_out, ops["L0.wo"].n_in) == (4096, 3584, 3584, 4096)
    assert ops["L0.attn_scores"].flops == 2 * 16 * 256 * 101
    # a decode step streams every weight once but the norms (tied: the classifier is the embedding)
    streamed = sum(op.weight_bytes for op in ops.values())
    assert streamed == 2 * (g.n_params - g.param_groups()["norms"])
    # one chip holds the model; a tied embedding twice (lookup and classifier)
    one = shard.chip_bytes(shard.Plan(g, 1, 1, models.get_precision("fp16")), 1, 0)[0]
    assert one["weights"] == g.weight_bytes("fp16") + 2 * g.vocab_size * g.dim
    assert g.kv_bytes_per_token("fp16") == 2 * 42 * 8 * 256 * 2


def test_simulate_a_config_on_lpu_and_gpu(tmp_path):
    path = str(_write(tmp_path, "Qwen2.5-7B", QWEN25_7B))
    r = lpu.simulate(path, chips=128, ranges=False)
    assert r.model == "Qwen2.5-7B" and r.chips == 128 and r.output_tokens_per_s > 0
    gpu = lpu.simulate(path, system="h100", chips=1, precision="fp16")
    # decode on one H100 is bound by reading the weights from HBM: no faster than that
    assert gpu.itl_s >= models.get(path).weight_bytes("fp16") / lpu.hardware.get("h100").hbm_bandwidth_Bps


def test_stated_approximations(tmp_path):
    v01 = models.get(str(_write(tmp_path, "v01", MISTRAL_7B_V01)))
    assert v01.seq_len == 4096 and "sliding-window attention (4096 tokens) on every layer" in v01.source
    v03 = models.get(str(_write(tmp_path, "v03", {**MISTRAL_7B_V01, "sliding_window": None, "vocab_size": 32768, "rope_theta": 1e6})))
    assert v03.seq_len == 32768 and "; approximations:" not in v03.source
    g = models.get(str(_write(tmp_path, "g", GEMMA2_9B)))
    assert g.seq_len == 8192 and "alternate layers simulated as full attention" in g.source
    q = models.get(str(_write(tmp_path, "q", QWEN25_7B)))
    assert "; approximations:" not in q.source  # use_sliding_window false: the window does not apply


DEEPSEEK_V3 = dict(model_type="deepseek_v3", hidden_size=7168, num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128,
                   intermediate_size=18432, moe_intermediate_size=2048, vocab_size=129280, max_position_embeddings=163840, kv_lora_rank=512,
                   q_lora_rank=1536, n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8)


@pytest.mark.parametrize("cfg, match", [
    (DEEPSEEK_V3, r"multi-head latent attention \(MLA, kv_lora_rank 512"),
    ({**QWEN25_7B, "model_type": "qwen2_moe", "shared_expert_intermediate_size": 20480}, "shared experts"),
    ({**QWEN25_7B, "use_sliding_window": True, "max_window_layers": 21}, "sliding-window attention on layers 21 and above"),
    (dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12), r"model_type 'gpt2' cannot be represented.*supported model_type values: llama"),
    (dict(model_type="llava", text_config=dict(model_type="llama")), "multimodal"),
    ({k: v for k, v in LLAMA31_8B.items() if k not in ("hidden_size", "vocab_size")}, "lacks hidden_size, vocab_size"),
    ({**LLAMA31_8B, "head_dim": 127}, "head_dim .127. must be even"),
    ([1, 2], "holds a JSON object"),
])
def test_configs_it_cannot_represent_are_refused(tmp_path, cfg, match):
    with pytest.raises(ValueError, match=match):
        models.get(str(_write(tmp_path, "m", cfg)))


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="no Hugging Face config.json there"):
        models.get(str(tmp_path))  # a folder without one
    with pytest.raises(ValueError, match="no Hugging Face config.json there"):
        models.get(str(tmp_path / "missing" / "config.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON config"):
        models.get(str(tmp_path / "broken.json"))
    with pytest.raises(ValueError, match="or a path to a Hugging Face config.json"):
        models.get("llama9-1t")


def test_cli_takes_a_config_path(tmp_path):
    path = str(_write(tmp_path, "gemma-2-9b", GEMMA2_9B))
    run = lambda *a: subprocess.run([sys.executable, "-m", "lpu", *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    out = run("simulate", "--model", path, "--system", "h100", "--chips", "1", "--precision", "fp16", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "gemma-2-9b"
    out = run("chips", "--model", path, "--precision", "fp16", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["weight_bytes"] == models.get(path).weight_bytes("fp16")
    out = run("simulate", "--model", str(tmp_path / "nowhere"), "--system", "h100")
    assert out.returncode == 2 and "no Hugging Face config.json" in out.stderr
