"""Weights in panels (`lpu.panels`) and the few-token passes that read them, against float64 and the row-major kernels."""

import zlib

import numba
import numpy as np
import pytest

from lpu import kernels, panels
from lpu.runtime import Engine
from lpu.speculative import _model_args


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def test_pack_puts_16_rows_side_by_side_and_pads_with_zeros():
    W = _rng("pack").standard_normal((2, 37, 5)).astype(np.float32)  # stacked (L, d_out, d_in), d_out not a multiple of 16
    Wp = panels.pack(W)
    assert Wp.shape == (2, 3, 5, 16) and Wp.dtype == np.float32 and Wp.flags.c_contiguous
    for layer in range(2):
        for row in range(48):
            want = W[layer, row] if row < 37 else np.zeros(5, np.float32)
            assert np.array_equal(Wp[layer, row // 16, :, row % 16], want)


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 9, 13])
@pytest.mark.parametrize("d_out, d_in", [(37, 72), (192, 192), (1, 3), (100, 64)])
def test_panel_rows_match_float64_and_write_only_their_rows(T, d_out, d_in):
    """Every panel grouping (4 x 4 tokens, 2 x 8, a last panel alone) and row range, from the middle of a panel to
    the middle of another: the sums within fp32 rounding of float64's, and not one output outside the range touched."""
    rng = _rng("panel rows", T, d_out, d_in)
    W = rng.standard_normal((d_out, d_in)).astype(np.float32)
    big = rng.standard_normal((T + 2, d_in)).astype(np.float32)
    X = big[1:T + 1]  # a row slice, as the Engine passes its buffers
    want = X.astype(np.float64) @ W.T.astype(np.float64)
    tol = 1e-5 * (np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64)) + 1e-30
    for r_lo, r_hi in ((0, d_out), (min(5, d_out - 1), d_out), (0, (d_out + 1) // 2), (d_out // 3, d_out - d_out // 3)):
        out = np.full((T, d_out), np.nan, np.float32)
        panels._panel_rows(panels.pack(W), X, out, r_lo, r_hi)
        assert np.isnan(out[:, :r_lo]).all() and np.isnan(out[:, r_hi:]).all()
        assert np.all(np.abs(out[:, r_lo:r_hi] - want[:, r_lo:r_hi]) <= tol[:, r_lo:r_hi]), (r_lo, r_hi)


def test_no_tokens_through_panels_write_nothing():
    """A prompt chunk that wants no logits sends 0 rows through the classifier: nothing may be written, not even next to
    the empty output (the kernels clamp a token past the last row to the last row, which 0 rows do not have)."""
    W = _rng("no tokens").standard_normal((40, 8)).astype(np.float32)
    guard = np.full((3, 40), np.nan, np.float32)
    panels._panel_rows(panels.pack(W), np.zeros((0, 8), np.float32), guard[1:1], 0, 40)
    assert np.isnan(guard).all()


def test_the_engine_keeps_panels_only_for_fp32_weights(monkeypatch):
    fp32 = Engine.default()
    assert fp32._pcls.shape == (512 // 16, 192, 16)
    assert [p.shape for p in fp32._P] == [(4, -(-d.shape[1] // 16), d.shape[3], 16) for d in fp32._W]
    for layer in range(4):
        assert np.array_equal(fp32._P[4][layer, 0, :, 3], fp32._W[4][layer, 3, 0])  # w1's row 3
    for other in (Engine.default(precision="fp16"), Engine.default(precision="int8")):
        assert other._pcls.shape[0] == 0 and all(p.shape[1] == 0 for p in other._P)
    monkeypatch.setattr(kernels, "last_level_cache_bytes", lambda: 0)
    streamed = Engine.default()  # from DRAM too: panels read as one stream
    assert streamed.weights_from_dram and [p.shape for p in streamed._P] == [p.shape for p in fp32._P]


@pytest.mark.parametrize("T", [1, 2, 4, 5, 8, 9])
def test_a_few_tokens_through_panels_give_the_row_major_pass(T):
    """A decode step or a verify-sized pass (1-8 tokens) reads the panels, longer ones the row-major weights (9: a prompt
    chunk): the logits and KV caches of either layout within fp32 rounding of the other's, the same argmax in every row."""
    packed, plain = Engine.default(), Engine.default()
    plain._P = tuple(np.zeros((4, 0, 0, 16), np.float32) for _ in plain._P)
    plain._pcls = panels.NO_PANELS
    plain._model_args = (*plain._model_args[:6], plain._P, *plain._model_args[7:9], plain._pcls, *plain._model_args[10:])
    assert len(_model_args(plain)) == len(_model_args(packed))
    prompt = [int(t) for t in _rng("panels engine", T).integers(3, 512, 12 + T)]
    for e in (packed, plain):
        e._feed(prompt[:12], 0, 0)
    a, b = packed._feed(prompt[12:12 + T], 12, T).copy(), plain._feed(prompt[12:12 + T], 12, T).copy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert np.array_equal(a.argmax(1), b.argmax(1))
    np.testing.assert_allclose(packed.k_cache[:, :, :12 + T], plain.k_cache[:, :, :12 + T], rtol=1e-4, atol=1e-4)
    packed._pcls[:] = 0  # the classifier's panels wiped: only a pass that reads them sees it
    assert (not packed._feed(prompt[12:12 + T], 12, T).any()) == (T <= kernels.TEAM_MAX_ROWS)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread on this machine")
@pytest.mark.parametrize("T", [1, 3, 4, 6, 8])
def test_a_verify_step_on_two_threads_is_one_region_with_one_threads_logits(T):
    """On 2 threads the bundled model's passes over up to `TEAM_MAX_ROWS` rows (decode and verify steps) run as one
    parallel region (`kernels._forward_team`), the same kernels on the same rows: one thread's logits and KV caches."""
    one, two = Engine.default(threads=1), Engine.default(threads=2)
    assert two._step is kernels._forward_team and T <= kernels.TEAM_MAX_ROWS
    tokens = [int(t) for t in _rng("team verify", T).integers(3, 512, 30 + T)]
    for e in (one, two):
        e._feed(tokens[:30], 0, 0)
    rows, step = [], two._step
    two._step = lambda tokens, *rest: rows.append(len(tokens)) or step(tokens, *rest)
    np.testing.assert_allclose(two._feed(tokens[30:], 30, T), one._feed(tokens[30:], 30, T), rtol=1e-5, atol=1e-5)
    assert rows == [T]  # through the region
    np.testing.assert_allclose(two.k_cache, one.k_cache, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two.v_cache, one.v_cache, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread on this machine")
def test_speculative_decoding_on_two_threads_verifies_in_one_region_and_keeps_the_tokens(monkeypatch):
    """A target on 2 threads verifies through `_greedy_burst_team` (its verify step one region): exactly one thread's
    greedy tokens, drafted or not."""
    from lpu import speculative

    one, two, draft = Engine.default(threads=1), Engine.default(threads=2), Engine.default("draft", threads=2)
    calls = []
    real = speculative._greedy_burst_team
    monkeypatch.setattr(speculative, "_greedy_burst_team", lambda *a: calls.append(1) or real(*a))
    for prompt in ("ROMEO:", "To be, or not to be"):
        plain = [e.token_id for e in one.generate(prompt, 120)]
        for k in (1, 3, 7):
            assert [e.token_id for e in two.generate(prompt, 120, draft=draft, draft_tokens=k)] == plain
    assert calls
