"""Speculative decoding with real weights: the bundled model verifying its bundled draft."""

import numba
import numpy as np
import pytest

from lpu import checkpoint, speculative
from lpu.runtime import Engine, acceptance_rate

PROMPTS = ("ROMEO:", "Friends, Romans, countrymen")


@pytest.fixture(scope="module")
def pair():
    return Engine.default(), Engine.default("draft")


def test_the_bundled_draft_is_small_and_shares_the_tokenizer(pair):
    target, draft = pair
    assert draft.checkpoint.path.stat().st_size < 1 << 20  # < 1 MB
    assert draft.tokenizer.pieces == target.tokenizer.pieces
    assert draft.config.n_params * 10 < target.config.n_params
    with pytest.raises(ValueError, match="unknown bundled model 'tiny'; known: shakespeare, draft"):
        Engine.default("tiny")


@pytest.mark.parametrize("k", [1, 3, 4])
def test_greedy_output_is_exactly_the_targets(pair, k):
    target, draft = pair
    for prompt in PROMPTS:
        plain = [e.token_id for e in target.generate(prompt, 120)]
        events = list(target.generate(prompt, 120, draft=draft, draft_tokens=k))
        assert [e.token_id for e in events] == plain
        assert [e.position for e in events] == [events[0].position + i for i in range(len(events))]
        assert not any(e.drafted and e.rejected for e in events)
        n_drafted, n_rejected = sum(e.drafted for e in events), sum(e.rejected for e in events)
        assert n_drafted > 0 and n_rejected > 0
        # each verification step emits its accepted drafts and one token of the target's own: at most k drafted in a row
        run = longest = 0
        for e in events:
            run = run + 1 if e.drafted else 0
            longest = max(longest, run)
        assert longest <= k


def test_sampled_speculative_decoding_keeps_the_targets_distribution(pair):
    """The first token after the prompt, drawn 3,000 times with speculative sampling (accept with probability
    min(1, p/q), else draw from max(0, p - q)), against the target's own softmax (chi-square)."""
    target, draft = pair
    prompt, temperature = "ROMEO:", 1.0
    ids = target.tokenizer.encode(prompt)
    for pos, tok in enumerate(ids):
        logits = target.forward(tok, pos)
    p = (np.exp(logits.astype(np.float64) - logits.max()) / np.exp(logits.astype(np.float64) - logits.max()).sum())
    n = 3000
    first, rejected = [], 0
    for seed in range(n):
        ev = next(target.generate(prompt, 2, temperature=temperature, seed=seed, draft=draft, draft_tokens=2))
        first.append(ev.token_id)
        rejected += ev.rejected
    assert 0.1 * n < rejected < 0.9 * n  # both branches of the rule are exercised
    counts = np.bincount(first, minlength=len(p)).astype(float)
    expected = n * p
    big = expected >= 5  # bins with too few expected draws go together
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    chi2, df = float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1
    assert chi2 < df + 6 * np.sqrt(2 * df), (chi2, df)
    # the draft's own distribution is far from the target's: drawing from it alone would fail the same test
    for pos, tok in enumerate(ids):
        dl = draft.forward(tok, pos)
    q = np.exp(dl.astype(np.float64) - dl.max())
    q /= q.sum()
    assert ((n * q[big] - expected[big]) ** 2 / expected[big]).sum() > 10 * (df + 6 * np.sqrt(2 * df))


def test_sampled_speculative_decoding_is_seeded(pair):
    target, draft = pair
    a = [e.token_id for e in target.generate("ROMEO:", 40, temperature=0.8, top_p=0.9, seed=3, draft=draft)]
    b = [e.token_id for e in target.generate("ROMEO:", 40, temperature=0.8, top_p=0.9, seed=3, draft=draft)]
    assert a == b and len(a) == 40


def test_acceptance_rate_is_deterministic_and_counts_the_judged_proposals(pair):
    target, draft = pair
    a = acceptance_rate(target, draft, 4, PROMPTS, 80)
    assert a == acceptance_rate(target, draft, 4, PROMPTS, 80)
    events = [e for p in PROMPTS for e in target.generate(p, 80, draft=draft, draft_tokens=4)]
    accepted, rejected = sum(e.drafted for e in events), sum(e.rejected for e in events)
    assert a == accepted / (accepted + rejected)
    assert 0.3 < a < 0.95  # the distilled draft agrees with the target on about half of its tokens or more


def test_bad_speculative_arguments_get_clear_errors(pair, tmp_path):
    target, draft = pair
    with pytest.raises(ValueError, match="draft must be an lpu.Engine"):
        target.generate("x", 5, draft="draft")
    with pytest.raises(ValueError, match="draft must be another Engine"):
        target.generate("x", 5, draft=target)
    for bad in (0, -1, 2.5, True, 10_000):
        with pytest.raises(ValueError, match="draft_tokens must be an integer from 1 to"):
            target.generate("x", 5, draft=draft, draft_tokens=bad)
    pieces = list(target.tokenizer.pieces)
    pieces[300], pieces[301] = pieces[301], pieces[300]
    other = Engine(draft.checkpoint, checkpoint.Tokenizer(pieces, target.tokenizer.scores))
    with pytest.raises(ValueError, match="another tokenizer"):
        target.generate("x", 5, draft=other)


def _events(target, draft, prompt, n, k, **kw):
    return [(e.token_id, e.text, e.position, e.drafted, e.rejected) for e in target.generate(prompt, n, draft=draft, draft_tokens=k, **kw)]


@pytest.mark.parametrize("k", [1, 3, 7])
def test_compiled_greedy_steps_match_the_python_steps(pair, k, monkeypatch):
    """Greedy on one chip runs whole steps in `speculative._greedy_burst`; with a trace the Python loop runs instead:
    the same tokens, texts, positions and drafted/rejected flags, for short and long runs and a BOS-only prompt."""
    target, draft = pair
    calls, burst = [], speculative._greedy_burst
    monkeypatch.setattr(speculative, "_greedy_burst", lambda *a: calls.append(a[5]) or burst(*a))
    for prompt, n in (("ROMEO:", 150), ("", 60), ("To be, or not to be", 1), ("KING HENRY.\n", 2), ("KING HENRY.\n", k + 1)):
        calls.clear()
        fast = _events(target, draft, prompt, n, k)
        assert calls and sum(calls) >= len([e for e in fast if not e[3]])  # a step per token of the target's own, in bursts
        target.trace = []
        try:
            slow = _events(target, draft, prompt, n, k)
        finally:
            target.trace = None
        assert fast == slow, (prompt, n)
        assert len(fast) == n


def test_compiled_greedy_steps_stop_at_eos_like_plain_decoding(pair):
    target, draft = pair
    plain = [e.token_id for e in target.generate("ROMEO:", 60)]
    tok = checkpoint.Tokenizer(target.tokenizer.pieces, target.tokenizer.scores)
    tok.eos_id = plain[37]  # a token the greedy text reaches: decoding must end just before it
    stopped = Engine(target.checkpoint, tok)
    want = [e.token_id for e in stopped.generate("ROMEO:", 60)]
    assert want == plain[:plain.index(plain[37])]
    for k in (1, 4):
        assert [t for t, *_ in _events(stopped, draft, "ROMEO:", 60, k)] == want


def test_compiled_greedy_steps_with_int8_weights_and_two_threads(pair):
    """Another storage precision and a threaded draft: still exactly the target's greedy tokens."""
    target, draft = pair
    t8 = Engine(target.checkpoint, target.tokenizer, precision="int8")
    d2 = Engine(draft.checkpoint, draft.tokenizer, threads=2) if numba.config.NUMBA_NUM_THREADS >= 2 else draft
    plain = [e.token_id for e in t8.generate("Friends, Romans, countrymen", 100)]
    assert [t for t, *_ in _events(t8, d2, "Friends, Romans, countrymen", 100, 4)] == plain


def test_weights_from_dram_keep_the_tokens(pair, monkeypatch):
    """A model beyond the last-level cache (here: a cache of 0 bytes) streams its weights from DRAM: fp32 weights in
    panels (`lpu.panels`), fp16 a weight row at a time for 2-4 tokens (`lpu.linear._few_rows_from_dram`). The same
    greedy tokens, plain and speculative, as the target in cache (fp16: as fp16 in cache)."""
    from lpu import kernels

    target, draft = pair
    assert not target.weights_from_dram  # 6.9 MB: in this machine's cache
    half = Engine(target.checkpoint, target.tokenizer, precision="fp16")
    want = {p: {prec: [e.token_id for e in eng.generate(p, 80)] for prec, eng in (("fp32", target), ("fp16", half))} for p in PROMPTS}
    monkeypatch.setattr(kernels, "last_level_cache_bytes", lambda: 0)
    for precision in ("fp32", "fp16"):
        streamed = Engine(target.checkpoint, target.tokenizer, precision=precision)
        assert streamed.weights_from_dram
        for prompt in PROMPTS:
            plain = want[prompt][precision]
            assert [e.token_id for e in streamed.generate(prompt, 80)] == plain
            assert [e.token_id for e in streamed.generate(prompt, 80, draft=draft, draft_tokens=3)] == plain


def test_draft_md_acceptance_table_is_what_the_bundled_pair_measures(pair):
    """The data behind DRAFT.md's acceptance table (written by scripts/train_tiny.py --draft): re-measured here, within
    0.02 (another CPU rounds the sums differently, which can flip a near-tie argmax)."""
    import re
    import sys

    from lpu.runtime import DATA_MODELS

    sys.path.insert(0, str(DATA_MODELS.parents[2] / "scripts"))
    try:
        from train_tiny import DRAFT_PROMPTS
    except ImportError:
        pytest.skip("scripts/train_tiny.py is not beside the package (an installed wheel)")
    table = dict(re.findall(r"^\| (\d+) \| (0\.\d{3}) \|$", (DATA_MODELS / "DRAFT.md").read_text(), re.M))
    assert set(table) == {"1", "2", "4", "8"}
    target, draft = pair
    for k, a in table.items():
        assert acceptance_rate(target, draft, int(k), DRAFT_PROMPTS, 128) == pytest.approx(float(a), abs=0.02)


def test_wall_speedup_reports_the_bundled_pairs_acceptance_tokens_per_step_and_speed(pair):
    """The measurement notebook 03 shows: what does not depend on the clock is exact (the acceptance is
    `acceptance_rate`'s, the tokens plain decoding's, tokens per step within 1..k+1), the rates are positive and their
    ratio is the speed-up. (How fast is for benchmarks/speculative.py, not a test.)"""
    from lpu.runtime import wall_speedup

    target, draft = pair
    rows = wall_speedup(target, draft, (1, 3), prompts=("ROMEO:", "To be, or not to be"), max_new_tokens=40, repeats=1)
    assert [r["draft_tokens"] for r in rows] == [1, 3]
    for r in rows:
        k = r["draft_tokens"]
        assert r["same_tokens"]
        assert r["acceptance"] == pytest.approx(acceptance_rate(target, draft, k, ("ROMEO:", "To be, or not to be"), 40))
        assert 1 <= r["tokens_per_step"] <= k + 1
        assert r["plain_tok_s"] > 0 and r["speculative_tok_s"] > 0
        assert r["speedup"] == pytest.approx(r["speculative_tok_s"] / r["plain_tok_s"])  # the same tokens, in less time
    assert wall_speedup(target, draft, 2, prompts=("ROMEO:",), max_new_tokens=8, repeats=1)[0]["draft_tokens"] == 2
    for kw, match in ((dict(draft_tokens=()), "non-empty"), (dict(draft_tokens=(0,)), "draft_tokens must be an integer from 1"),
                      (dict(repeats=0), "repeats must be a positive integer"), (dict(prompts="ROMEO:"), "sequence of prompts"),
                      (dict(max_new_tokens=1), "max_new_tokens >= 2")):
        with pytest.raises(ValueError, match=match):
            wall_speedup(target, draft, **kw)
