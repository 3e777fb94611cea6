"""The numba kernels against the float64 references in ``tests/reference.py``."""

import zlib

import numpy as np
import pytest
import reference as ref  # tests/reference.py

from lpu import kernels as K
from lpu.panels import NO_PANELS, pack
from lpu.quant import quantize_int8

SHAPES = [(37, 72), (64, 128), (1, 64), (130, 320)]  # (d_out, d_in): odd sizes, a single row, an even number


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))  # a seed per test case, stable across runs


def _weights(dtype, d_out, d_in, rng):
    W = rng.standard_normal((d_out, d_in)).astype(np.float32)
    if dtype == "fp16":
        return W, W.astype(np.float16)
    if dtype == "int8":
        return W, quantize_int8(W, group_size=8 if d_in % 64 else 64)
    return W, W


def _fp32_tolerance(W, X):
    """|error| of an fp32 dot product: a few units of fp32 rounding of sum |w| |x| (elementwise)."""
    return 1e-5 * (np.abs(np.atleast_2d(X)) @ np.abs(ref.weights(W)).T).reshape(-1) + 1e-30


def _int8_bound(Q, X):
    """|W x - dequant(Q) x| <= sum over groups of scale / 2 * sum |x| (rounding to nearest)."""
    absx = np.abs(np.atleast_2d(X)).reshape(len(np.atleast_2d(X)), -1, Q.group_size).sum(-1)  # (B, n_groups)
    return (absx @ (Q.scales.astype(np.float64) / 2).T).reshape(-1)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("d_out, d_in", SHAPES)
def test_matvec_matches_reference(dtype, d_out, d_in):
    rng = _rng("matvec", dtype, d_out, d_in)
    W, Wk = _weights(dtype, d_out, d_in, rng)
    x = rng.standard_normal(d_in).astype(np.float32)
    y = K.matvec(Wk, x)
    assert y.shape == (d_out,) and y.dtype == np.float32
    err = np.abs(y - ref.matvec(Wk, x))  # against the weights the kernel holds (fp16-rounded, dequantised)
    assert np.all(err <= _fp32_tolerance(Wk, x)), err.max()
    if dtype == "int8":  # and against the original fp32 weights
        assert np.all(np.abs(y - W.astype(np.float64) @ x) <= _int8_bound(Wk, x) + _fp32_tolerance(Wk, x))
    out = np.full(d_out, np.nan, np.float32)
    assert K.matvec(Wk, x, out=out) is out and np.array_equal(out, y)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("B", [1, 2, 3, 5, 6, 7, 8])  # every remainder of the 4-token tile
@pytest.mark.parametrize("d_out, d_in", [(37, 72), (130, 320)])
def test_matmul_matches_reference_and_matvec(dtype, B, d_out, d_in):
    rng = _rng("matmul", dtype, B, d_out, d_in)
    W, Wk = _weights(dtype, d_out, d_in, rng)
    X = rng.standard_normal((B, d_in)).astype(np.float32)
    Y = K.matmul(Wk, X)
    assert Y.shape == (B, d_out) and Y.dtype == np.float32
    err = np.abs(Y - ref.matmul(Wk, X)).reshape(-1)
    assert np.all(err <= _fp32_tolerance(Wk, X)), err.max()
    np.testing.assert_allclose(Y, np.stack([K.matvec(Wk, xb) for xb in X]), rtol=1e-5, atol=1e-5)
    out = np.empty((B, d_out), np.float32)
    assert K.matmul(Wk, X, out=out) is out and np.array_equal(out, Y)


def test_matvec_int8_error_is_small_at_realistic_scale():
    """With llama-like weights (std 0.02, d_in 1024) int8 groups of 64 stay within 2% of the output scale."""
    rng = _rng("int8-scale")
    W = (rng.standard_normal((64, 1024)) * 0.02).astype(np.float32)
    x = rng.standard_normal(1024).astype(np.float32)
    exact = W.astype(np.float64) @ x
    rel = np.abs(K.matvec(quantize_int8(W), x) - exact).max() / np.abs(exact).max()
    assert rel < 0.02


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("B", [2, 3, 4, 5, 6, 7, 8, 9])
@pytest.mark.parametrize("shape", [(1031, 136), (96, 192), (7, 500)])
@pytest.mark.parametrize("from_dram", [False, True])
def test_matmul_of_a_few_tokens_matches_reference(dtype, B, shape, from_dram):
    """A few tokens through short rows go in row pairs (2-8 tokens; an odd last row alone), a row at a time where the
    weights come from DRAM (from_dram), or in tiles (9): the same sums."""
    from lpu import jit

    rng = _rng("few-token matmul", dtype, B, *shape)
    W, Wk = _weights(dtype, *shape, rng)
    assert shape[1] * Wk.dtype.itemsize <= jit.STREAM_MAX_ROW_BYTES
    X = rng.standard_normal((B, shape[1])).astype(np.float32)
    if from_dram:  # the Engine's choice for a model beyond the last-level cache; these small matrices never are
        Y = np.full((B, shape[0]), np.nan, np.float32)
        K._linear(*K.stored(Wk), NO_PANELS, X, Y, 1, True)
    else:
        Y = K.matmul(Wk, X)
    assert np.all(np.abs(Y - ref.matmul(Wk, X)).reshape(-1) <= _fp32_tolerance(Wk, X))
    np.testing.assert_allclose(Y, np.stack([K.matvec(Wk, xb) for xb in X]), rtol=1e-5, atol=1e-5)


def test_matvec_and_matmul_reject_bad_inputs():
    W = np.zeros((64, 128), np.float32)
    with pytest.raises(ValueError, match=r"matvec: W has shape \(64, 128\) but x has shape \(100,\); expected x of shape \(128,\)"):
        K.matvec(W, np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="x has dtype float64; expected float32"):
        K.matvec(W, np.zeros(128))
    with pytest.raises(ValueError, match="W has dtype int32; expected float32, float16 or a QuantizedTensor"):
        K.matvec(W.astype(np.int32), np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="W must be a 2-D"):
        K.matvec(np.zeros(128, np.float32), np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="W must be C-contiguous"):
        K.matvec(np.zeros((128, 64), np.float32).T, np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        K.matvec(W, np.zeros(256, np.float32)[::2])
    with pytest.raises(ValueError, match=r"out has shape \(63,\); expected \(64,\)"):
        K.matvec(W, np.zeros(128, np.float32), out=np.zeros(63, np.float32))
    with pytest.raises(ValueError, match="out must not overlap"):
        x = np.zeros(128, np.float32)
        K.matvec(np.zeros((128, 128), np.float32), x, out=x)
    with pytest.raises(ValueError, match=r"matmul: W has shape \(64, 128\) but X has shape \(128,\); expected X of shape \(B, 128\)"):
        K.matmul(W, np.zeros(128, np.float32))
    with pytest.raises(ValueError, match=r"matmul: out has shape \(5, 64\); expected \(4, 64\)"):
        K.matmul(quantize_int8(W), np.zeros((4, 128), np.float32), out=np.zeros((5, 64), np.float32))


@pytest.mark.parametrize("shape", [(72,), (1, 288), (5, 37)])
def test_rmsnorm(shape):
    rng = _rng("rmsnorm", shape)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    w = rng.standard_normal(shape[-1]).astype(np.float32)
    y = K.rmsnorm(x, w)
    np.testing.assert_allclose(y, ref.rmsnorm(x, w), rtol=1e-5, atol=1e-6)
    assert K.rmsnorm(x, w, out=x) is x and np.array_equal(x, y)  # in place is allowed
    with pytest.raises(ValueError, match=r"rmsnorm: weight has shape \(3,\); expected"):
        K.rmsnorm(x, w[:3])


@pytest.mark.parametrize("pos", [0, 1, 17, 4000])
@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim, theta", [(4, 2, 16, 10000.0), (6, 6, 48, 10000.0), (4, 1, 8, 500000.0)])
def test_rope(pos, n_heads, n_kv_heads, head_dim, theta):
    rng = _rng("rope", pos, n_heads, head_dim)
    q = rng.standard_normal(n_heads * head_dim).astype(np.float32)
    k = rng.standard_normal(n_kv_heads * head_dim).astype(np.float32)
    q_ref, k_ref = ref.rope(q, k, pos, head_dim, theta)
    assert K.rope(q, k, pos, head_dim, theta) is None
    np.testing.assert_allclose(q, q_ref, atol=2e-6)
    np.testing.assert_allclose(k, k_ref, atol=2e-6)


def test_rope_table_holds_the_angles_of_every_position():
    cos, sin = K.rope_table(300, 16, 10000.0)
    angles = np.arange(300)[:, None] * 10000.0 ** (-np.arange(0, 16, 2) / 16)
    np.testing.assert_allclose(cos, np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(angles), atol=1e-6)


def test_rope_matches_llama2c_convention_and_rejects_bad_input():
    q = np.array([1, 0, 1, 0], np.float32)  # head_dim 4: pairs (0, 1) and (2, 3)
    k = q.copy()
    K.rope(q, k, 1, 4)
    np.testing.assert_allclose(q, [np.cos(1), np.sin(1), np.cos(0.01), np.sin(0.01)], rtol=1e-6)  # freq 1 and 10000**-0.5
    with pytest.raises(ValueError, match="head_dim must be a positive even integer"):
        K.rope(q, k, 1, 3)
    with pytest.raises(ValueError, match=r"rope: k has shape \(6,\)"):
        K.rope(q, np.zeros(6, np.float32), 1, 4)


@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim", [(4, 2, 16), (6, 6, 48), (8, 1, 8)])
@pytest.mark.parametrize("pos", [0, 5, 31])
def test_attention(n_heads, n_kv_heads, head_dim, pos):
    rng = _rng("attention", n_heads, n_kv_heads, pos)
    seq_len, kv_dim = 32, n_kv_heads * head_dim
    q = rng.standard_normal(n_heads * head_dim).astype(np.float32)
    k_cache = rng.standard_normal((seq_len, kv_dim)).astype(np.float32)
    v_cache = rng.standard_normal((seq_len, kv_dim)).astype(np.float32)
    expected = ref.attention(q, k_cache, v_cache, pos, n_kv_heads)
    k_cache[pos + 1 :] = np.nan  # positions after pos must not be read
    v_cache[pos + 1 :] = np.nan
    y = K.attention(q, k_cache, v_cache, pos, n_kv_heads)
    assert y.shape == q.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    out = np.empty_like(q)
    assert K.attention(q, k_cache, v_cache, pos, n_kv_heads, out=out) is out


@pytest.mark.parametrize("T", [1, 3, 4, 6, 9])  # blocks of 4 rows at once and the rest one by one
@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim", [(4, 2, 8), (2, 1, 6), (3, 3, 5)])
@pytest.mark.parametrize("pos0", [0, 5])
def test_batched_causal_attention(T, n_heads, n_kv_heads, head_dim, pos0):
    """Row t of a prefill chunk (the token at pos0 + t) attends over positions 0..pos0 + t, as one query would."""
    rng = _rng("batched attention", T, n_heads, head_dim, pos0)
    seq_len, kv_dim = 32, n_kv_heads * head_dim
    Q = rng.standard_normal((T, n_heads * head_dim)).astype(np.float32)
    k_cache = rng.standard_normal((seq_len, kv_dim)).astype(np.float32)
    v_cache = rng.standard_normal((seq_len, kv_dim)).astype(np.float32)
    expected = np.stack([ref.attention(Q[t], k_cache, v_cache, pos0 + t, n_kv_heads) for t in range(T)])
    kt, vt = np.ascontiguousarray(k_cache.T), np.ascontiguousarray(v_cache.T)  # the Engine's layout, (kv_dim, seq_len)
    kt[:, pos0 + T:] = vt[:, pos0 + T:] = np.nan  # positions after the last row must not be read
    out, att = np.empty_like(Q), np.empty((T * n_heads, seq_len), np.float32)
    K._attention(Q, kt, vt, pos0, n_kv_heads, out, att, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_attention_rejects_bad_input():
    q, cache = np.zeros(64, np.float32), np.zeros((8, 32), np.float32)
    K.attention(q, cache, cache, 7, 2)  # n_heads 4, head_dim 16
    with pytest.raises(ValueError, match=r"pos 8 is outside the cache's 0..7"):
        K.attention(q, cache, cache, 8, 2)
    with pytest.raises(ValueError, match="kv_dim 32 is not a multiple of n_kv_heads=3"):
        K.attention(q, cache, cache, 0, 3)
    with pytest.raises(ValueError, match=r"q has shape \(48,\)"):
        K.attention(np.zeros(48, np.float32), cache, cache, 0, 2)
    with pytest.raises(ValueError, match=r"v_cache has shape \(8, 16\); expected \(8, 32\) like k_cache"):
        K.attention(q, cache, np.zeros((8, 16), np.float32), 0, 2)


@pytest.mark.parametrize("shape", [(1,), (768,), (5, 37)])
def test_swiglu(shape):
    rng = _rng("swiglu", shape)
    h1 = (rng.standard_normal(shape) * 4).astype(np.float32)
    h3 = rng.standard_normal(shape).astype(np.float32)
    expected = ref.swiglu(h1, h3)
    assert K.swiglu(h1, h3) is h1
    np.testing.assert_allclose(h1, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="swiglu: h3 has shape"):
        K.swiglu(h1, h3[..., :-1])


def test_swiglu_far_from_zero():
    # the gate's exp is the vectorised one (of -|v|, for either sign): finite and within 2e-6 of float64 out to +-100
    h1 = np.linspace(-100, 100, 20001).astype(np.float32)
    expected = ref.swiglu(h1, np.ones_like(h1))
    K.swiglu(h1, np.ones_like(h1))
    assert np.all(np.isfinite(h1))
    np.testing.assert_allclose(h1, expected, rtol=2e-6, atol=1e-30)


def test_softmax_is_stable_and_in_place():
    rng = _rng("softmax")
    for x in [rng.standard_normal(37), rng.standard_normal(1000) * 30 + 1000, np.array([0.0, -np.inf, 3.0, -np.inf]), np.zeros(1)]:
        x = x.astype(np.float32)
        expected = ref.softmax(x)
        assert K.softmax(x) is x
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="softmax: x has dtype float64"):
        K.softmax(np.zeros(3))


def test_sample_greedy_is_argmax_with_lowest_index_on_ties():
    rng = _rng("greedy")
    for _ in range(20):
        logits = rng.standard_normal(100).astype(np.float32)
        assert K.sample(logits) == ref.greedy(logits) == int(np.argmax(logits))
    logits = np.array([0, 3, 1, 3, 3], np.float32)
    assert K.sample(logits, temperature=0.0) == 1
    assert K.sample(logits, 0.0, top_p=0.5, rng=np.random.default_rng(0)) == 1


def test_sample_is_deterministic_for_a_seed_and_leaves_logits_alone():
    logits = _rng("det").standard_normal(50).astype(np.float32)
    before = logits.copy()
    draws = [[K.sample(logits, 0.9, 0.9, np.random.default_rng(7)) for _ in range(3)] for _ in range(2)]
    assert draws[0] == draws[1] and len(set(draws[0])) == 1
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [K.sample(logits, 1.0, rng=g1) for _ in range(50)] == [K.sample(logits, 1.0, rng=g2) for _ in range(50)]
    assert np.array_equal(logits, before)


def _chi_square(draws, probs):
    counts = np.bincount(draws, minlength=len(probs))
    assert np.all(counts[probs == 0] == 0), "drew a token of probability 0"
    expected = len(draws) * probs[probs > 0]
    return float(((counts[probs > 0] - expected) ** 2 / expected).sum()), int((probs > 0).sum()) - 1


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.0, 0.8), (1.3, 0.5)])
def test_sample_empirical_distribution_matches_softmax_and_nucleus(temperature, top_p):
    logits = np.array([2.0, 1.5, 1.0, 0.3, 0.0, -0.5, -1.0, -3.0], np.float32)
    probs = ref.sample_distribution(logits, temperature, top_p)
    rng = np.random.default_rng(1234)
    draws = np.array([K.sample(logits, temperature, top_p, rng) for _ in range(20_000)])
    chi2, df = _chi_square(draws, probs)  # the helper also checks that no token outside the nucleus is drawn
    assert chi2 < df + 6 * np.sqrt(2 * df), (chi2, df)  # ~6 sigma: loose, and deterministic for the seed
    if top_p < 1:
        assert 0 < (probs > 0).sum() < len(logits)


@pytest.mark.parametrize("temperature, top_p", [(0.0, 1.0), (1.0, 1.0), (0.7, 1.0), (1.0, 0.8), (1.3, 0.5)])
def test_probabilities_are_the_distribution_sample_draws_from(temperature, top_p):
    logits = _rng("probabilities").standard_normal(40).astype(np.float32) * 2
    p = K.probabilities(logits, temperature, top_p)
    if temperature == 0:
        assert p[np.argmax(logits)] == 1.0 and p.sum() == 1.0
        return
    np.testing.assert_allclose(p, ref.sample_distribution(logits, temperature, top_p), rtol=1e-5, atol=1e-9)
    rng = np.random.default_rng(5)
    draws = np.array([K.sample(logits, temperature, top_p, rng) for _ in range(10_000)])
    chi2, df = _chi_square(draws, p)
    assert chi2 < df + 6 * np.sqrt(2 * df), (chi2, df)


def test_softmax_exp_is_within_float32_rounding():
    x = -np.linspace(0, 80, 20001).astype(np.float32)
    got = np.array([K._exp(v) for v in x[::7]])
    want = np.exp(x[::7].astype(np.float64))
    assert np.all(np.abs(got - want) <= 3e-7 * want)  # ~2 float32 ulp; math.exp gives ~1
    assert K._exp(np.float32(-100.0)) == 0.0 and K._exp(np.float32(0.0)) == 1.0


def test_sample_rejects_bad_arguments():
    logits = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="needs rng=np.random.default_rng"):
        K.sample(logits, temperature=1.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        K.sample(logits, temperature=-1.0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        K.sample(logits, 1.0, top_p=0.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected a non-empty 1-D array"):
        K.sample(np.zeros((2, 2), np.float32))


def test_argmax_is_numpys():
    """The compiled argmax of the greedy decode loop: np.argmax's first maximum on ties, the first NaN if any."""
    rng = _rng("argmax")
    cases = [rng.standard_normal(n).astype(np.float32) for n in (1, 2, 7, 512, 32000)]
    cases += [np.array([3, 1, 3, 3], np.float32), np.array([-np.inf, -np.inf], np.float32), np.array([1, np.nan, 5, np.nan], np.float32),
              np.array([np.nan, 1], np.float32), np.array([0, np.inf, np.inf], np.float32)]
    for x in cases:
        assert K._argmax(x) == np.argmax(x), x


def test_kernel_modules_share_one_cache_stamp():
    """A kernel is cached with its callees from the other kernel modules, so all share one source stamp (an edit of
    any one recompiles all), and that stamp follows the modules' contents."""
    import hashlib
    from pathlib import Path

    from lpu import jit, speculative

    funcs = (K._forward, K._decode_greedy, K._linear, K._attention, K._argmax, K._exp, speculative._greedy_burst)
    stamps = {f._cache._impl.locator.get_source_stamp() for f in funcs}
    here = Path(jit.__file__).parent
    assert stamps == {hashlib.sha256(b"".join((here / name).read_bytes() for name in jit.KERNEL_MODULES)).hexdigest()}


@pytest.mark.parametrize("T", [1, 3, 8])
@pytest.mark.parametrize("from_dram", [False, True])
def test_parallel_kernels_give_the_single_thread_bits(T, from_dram):
    """The kernels' parallel regions (rows, or blocks of 4 rows x query heads, split over 2 threads) give bit for bit what
    one thread does: each output is summed in the same order, whichever thread computes it."""
    import numba

    from lpu.layer_ops import _attend, _attention_par
    from lpu.linear import _ffn_par, _ffn_rows, _linear, _linear_par, stored

    rng = _rng("parallel", T)
    d, s = stored(rng.standard_normal((256, 96)).astype(np.float32))
    d3, s3 = stored(rng.standard_normal((256, 96)).astype(np.float32))
    P, P3 = (pack(w[:, 0]) if not from_dram else NO_PANELS for w in (d, d3))  # in the cache, the Engine's panels too
    X = rng.standard_normal((T, 96)).astype(np.float32)
    n_heads, head_dim, n_kv_heads, seq = 4, 24, 2, 32
    Q = rng.standard_normal((T, n_heads * head_dim)).astype(np.float32)
    kc, vc = (rng.standard_normal((n_kv_heads * head_dim, seq)).astype(np.float32) for _ in range(2))
    items, pos0 = (T + 3) // 4 * n_heads, 5
    saved = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        one, par = np.empty((T, 256), np.float32), np.empty((T, 256), np.float32)
        _linear(d, s, P, X, one, 1, from_dram)
        for n_chunks in (8, 3):  # chunks of 32 rows; of 84: a panel of 16 rows (lpu.panels) straddles two chunks
            par[:] = np.nan
            _linear_par(d, s, P, X, par, n_chunks, from_dram)
            assert np.array_equal(one, par)
        h1, h3, p1, p3 = (np.empty((T, 256), np.float32) for _ in range(4))
        _ffn_rows(d, s, P, d3, s3, P3, X, h1, h3, 0, 64, from_dram)
        _ffn_par(d, s, P, d3, s3, P3, X, p1, p3, 8, from_dram)
        assert np.array_equal(h1, p1)
        o1, o2 = np.empty_like(Q), np.empty_like(Q)
        att1, att2 = np.empty((T * n_heads, seq), np.float32), np.empty((T * n_heads, seq), np.float32)
        _attend(Q, kc, vc, pos0, n_kv_heads, o1, att1, 0, items)
        _attention_par(Q, kc, vc, pos0, n_kv_heads, o2, att2, items)
        assert np.array_equal(o1, o2)
    finally:
        numba.set_num_threads(saved)


def test_kv_prefetch_reads_nothing_it_changes_and_compiles_to_prefetches():
    """`_prefetch_positions` (attention's cache lines asked for at a layer's start) only hints: the cache is unchanged,
    any n from 0 to seq_len is safe, and on x86-64 it is a prefetch instruction, not a load (it would stall)."""
    import platform

    from lpu.layer_ops import _prefetch_positions

    cache = _rng("prefetch").standard_normal((12, 40)).astype(np.float32)
    before = cache.copy()
    for n in (0, 1, 17, 40):
        _prefetch_positions(cache, n)
    assert np.array_equal(cache, before)
    if platform.machine() in ("x86_64", "AMD64"):
        import numba

        fresh = numba.njit(_prefetch_positions.py_func)  # numba shows no assembly of a kernel loaded from its disk cache
        fresh(cache, 17)
        assert "prefetcht0" in "".join(fresh.inspect_asm().values())


def test_last_level_cache_bytes_is_a_plausible_cache():
    from lpu.jit import last_level_cache_bytes

    assert 256 << 10 <= last_level_cache_bytes() <= 4 << 30
