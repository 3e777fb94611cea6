import copy
from pathlib import Path

import numpy as np
import pytest
from reference_model import ReferenceModel

from lpu import checkpoint, graph
from lpu.runtime import DEFAULT_CHECKPOINT, Engine, simulated_times

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
STORIES = SHARED / "stories260K.bin"
needs_stories = pytest.mark.skipif(not STORIES.exists(), reason=f"the llama2.c test model is not at {SHARED} (../shared/models beside the repo)")


@pytest.fixture(scope="module")
def stories():
    return Engine.from_llama2c(STORIES, SHARED / "tok512.bin")


@pytest.fixture(scope="module")
def bundled():
    return Engine.default()


def test_forward_executes_the_graph_op_list(bundled):
    bundled.trace = []
    bundled.forward(5, 0)
    ops, bundled.trace = bundled.trace, None
    assert ops == graph.decode(bundled.config, 1, 0).names[:-1]  # all but sampling, which generate() adds


def test_forward_matches_float64_reference_on_the_bundled_model(bundled):
    ref = ReferenceModel(bundled.checkpoint)
    ids = bundled.tokenizer.encode("To be, or not to be")
    for pos, tok in enumerate(ids):
        got, want = bundled.forward(tok, pos).copy(), ref.forward(tok, pos)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max() + 1e-5


@needs_stories
def test_stories260k_greedy_matches_reference_for_200_tokens(stories):
    ids = stories.tokenizer.encode("Once upon a time")
    events = list(stories.generate("Once upon a time", max_new_tokens=200))
    assert len(events) == 200
    ref = ReferenceModel(stories.checkpoint).greedy(ids, 200)
    assert [e.token_id for e in events] == ref
    text = "Once upon a time" + "".join(e.text for e in events)
    assert text.startswith("Once upon a time, there was a little girl named Lily. She loved to play outside in the park.")


@needs_stories
def test_versions_and_precisions_agree(stories, tmp_path):
    ck = stories.checkpoint
    with pytest.warns(UserWarning, match="using 4"):  # hidden_dim 172 = 4 x 43: the writer shrinks the group
        checkpoint.write_llama2c(tmp_path / "v2.bin", ck.config, ck.weights, version=2, group_size=64)
    v2 = Engine.from_llama2c(tmp_path / "v2.bin", SHARED / "tok512.bin")
    assert v2.precision == "int8"
    greedy = [e.token_id for e in stories.generate("Once upon a time", 40)]
    fp16 = [e.token_id for e in Engine(ck, stories.tokenizer, precision="fp16").generate("Once upon a time", 40)]
    assert fp16 == greedy
    int8 = [e.token_id for e in v2.generate("Once upon a time", 40)]
    assert int8[:10] == greedy[:10]


def test_sampling_is_seeded_and_stops_at_limits(bundled):
    a = [e.token_id for e in bundled.generate("ROMEO:", 30, temperature=1.0, top_p=0.9, seed=7)]
    b = [e.token_id for e in bundled.generate("ROMEO:", 30, temperature=1.0, top_p=0.9, seed=7)]
    c = [e.token_id for e in bundled.generate("ROMEO:", 30, temperature=1.0, top_p=0.9, seed=8)]
    assert a == b and a != c
    assert list(bundled.generate("ROMEO:", 0)) == []
    evs = list(bundled.generate("ROMEO:", 10))
    assert [e.position for e in evs] == list(range(evs[0].position, evs[0].position + len(evs)))
    assert all(np.diff([e.t_sim_s for e in evs]) > 0) and evs[0].t_sim_s > 0


def test_simulated_times_come_from_the_static_schedule(bundled):
    from lpu import schedule

    m = bundled.config
    t = simulated_times(m, 10, 5)
    assert len(t) == 5 and (np.diff(t) > 0).all()
    assert t[0] == schedule.schedule_prefill(m, "lpu-v1", 10, "int8").latency_s
    assert t[2] - t[1] == pytest.approx(schedule.schedule_decode(m, "lpu-v1", 1, 63, "int8").latency_s)  # bucket 0..63


def test_bad_input_gets_clear_errors(bundled, tmp_path):
    with pytest.raises(ValueError, match="context is 256 tokens"):
        list(bundled.generate("word " * 400, 5))
    with pytest.raises(ValueError, match="chips must be a positive integer"):
        Engine(bundled.checkpoint, bundled.tokenizer, chips=0)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Engine(bundled.checkpoint, bundled.tokenizer, precision="fp8")
    with pytest.raises(ValueError, match="max_new_tokens"):
        list(bundled.generate("x", -1))
    small = checkpoint.Tokenizer(bundled.tokenizer.pieces[:300], bundled.tokenizer.scores[:300])
    with pytest.raises(ValueError, match="tokenizer has 300 tokens"):
        Engine(bundled.checkpoint, small)
    assert DEFAULT_CHECKPOINT.exists()


def test_precision_comparison_on_the_bundled_model(bundled):
    from lpu.runtime import compare

    fp16 = compare(bundled, Engine.default(precision="fp16"), "ROMEO:", 60)
    int8 = compare(bundled, Engine.default(precision="int8"), "ROMEO:", 60)
    assert fp16["rel_rms_logit_error"] < 1e-3 and fp16["top1_agreement"] > 0.98
    assert fp16["rel_rms_logit_error"] < int8["rel_rms_logit_error"] < 0.05
    assert int8["top1_agreement"] > 0.9
    assert int8["weight_bytes"] < fp16["weight_bytes"] < bundled.weight_bytes
    assert fp16["tokens"] == 60 and 0 <= int8["agreement"] <= 1


def test_cli_generate(capsys):
    from lpu import cli

    assert cli.main(["generate", "--prompt", "ROMEO:", "--max-new-tokens", "12"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:") + 5
    assert "tok/s" in err and "simulated" in err
    assert cli.main(["generate", "--checkpoint", "nowhere.bin"]) == 2
    assert "give both" in capsys.readouterr().err


def test_prefill_in_chunks_gives_the_token_by_token_logits(bundled):
    """A 200-token prompt goes through in 2 chunks of batched matmuls; its logits at every position equal
    those of feeding it one token at a time (the float64 reference agrees with both)."""
    ids = bundled.tokenizer.encode("To be, or not to be, that is the question: " * 20)[:200]
    assert len(ids) == 200 > bundled.chunk_rows
    one_by_one = np.stack([bundled.forward(t, p).copy() for p, t in enumerate(ids)])
    for n in (1, 5, bundled.chunk_rows):  # the logits of the last n positions (the chunks end with a full one)
        chunked = bundled._feed(ids, 0, n).copy()
        assert np.abs(chunked - one_by_one[-n:]).max() <= 1e-5 * np.abs(one_by_one).max()
    short = bundled._feed(ids[:40], 0, 40).copy()  # one chunk: every position's logits
    ref = ReferenceModel(bundled.checkpoint)
    want = np.stack([ref.forward(t, p) for p, t in enumerate(ids[:40])])
    assert np.abs(short - want).max() <= 1e-4 * np.abs(want).max() + 1e-5


def test_inputs_are_checked_before_any_token(bundled):
    for bad in (123, None, ["ROMEO:"]):
        with pytest.raises(ValueError, match="prompt must be a str"):
            bundled.generate(bad)  # raises at the call, not at the first next()
    for kwargs, match in [(dict(temperature=-1.0), "temperature must be a finite number >= 0"), (dict(temperature=float("nan")), "temperature"),
                          (dict(temperature="hot"), "temperature"), (dict(top_p=0.0), r"top_p must be a number in \(0, 1\]"),
                          (dict(top_p=1.5), "top_p"), (dict(seed=-1), "seed must be a non-negative integer"), (dict(seed=1.5), "seed"),
                          (dict(max_new_tokens=True), "max_new_tokens"), (dict(precision_sim="fp7"), "unknown precision 'fp7'")]:
        with pytest.raises(ValueError, match=match):
            bundled.generate("ROMEO:", **kwargs)
    for token in (-1, 512, 10**12, 2.0, True):
        with pytest.raises(ValueError, match=r"token must be a token id from 0 to 511"):
            bundled.forward(token, 0)
    with pytest.raises(ValueError, match=r"position 256 is outside"):
        bundled.forward(1, 256)
    with pytest.raises(ValueError, match=r"chip must be an LPU chip \(lpu-v1.*'h100' is a GPUSpec"):
        Engine(bundled.checkpoint, bundled.tokenizer, chip="h100")


def test_threads_setting_and_its_errors(bundled, monkeypatch):
    import numba

    from lpu.runtime import DEFAULT_THREADS, resolve_threads

    monkeypatch.delenv("LPU_THREADS", raising=False)
    assert resolve_threads() == DEFAULT_THREADS == bundled.threads == 1
    monkeypatch.setenv("LPU_THREADS", "1")
    assert resolve_threads() == 1 and resolve_threads(1) == 1
    for bad in ("0", "two", "-3", str(numba.config.NUMBA_NUM_THREADS + 1)):
        monkeypatch.setenv("LPU_THREADS", bad)
        with pytest.raises(ValueError, match="LPU_THREADS must be an integer from 1 to"):
            resolve_threads()
    monkeypatch.delenv("LPU_THREADS")
    for bad in (0, 1.5, True, numba.config.NUMBA_NUM_THREADS + 1):
        with pytest.raises(ValueError, match="threads must be an integer from 1 to"):
            Engine(bundled.checkpoint, bundled.tokenizer, threads=bad)
    before = numba.get_num_threads()
    n = numba.config.NUMBA_NUM_THREADS
    many = Engine(bundled.checkpoint, bundled.tokenizer, threads=n)
    assert [e.token_id for e in many.generate("ROMEO:", 60)] == [e.token_id for e in bundled.generate("ROMEO:", 60)]
    assert numba.get_num_threads() == before  # the caller's setting is left as it was


TEAM_ON_ONE_THREAD = """
import numba, numpy as np
from lpu import kernels
from lpu.runtime import Engine
one, two = Engine.default(threads=1), Engine.default(threads=2)
numba.set_num_threads(1)  # two workers, one thread: the first does every chunk, the second finds them done
for pos, token in enumerate([1, 40, 300, 7, 99]):
    want = one.forward(token, pos).copy()
    two._token[0] = token
    kernels._forward_team(two._token, pos, 1, *two._model_args, *two._bufs, two.logits, kernels.n_chunks(2))
    np.testing.assert_allclose(two.logits[0], want, rtol=1e-5, atol=1e-5)
print("ended")
"""


def test_a_decode_step_on_two_threads_is_one_region_with_one_threads_tokens(bundled):
    """On 2 threads the bundled model (6.9 MB of weights, >= TEAM_MIN_BYTES) decodes through `_forward_team`, one
    parallel region per token whose workers claim chunks of each phase: logits and KV caches are one thread's within
    float32 rounding at every position (not bit for bit: in CI, a fresh compile after the other tests differed in the
    last bit from 32 positions on), and the greedy tokens are one thread's."""
    import numba

    from lpu import kernels
    from lpu.jit import TEAM_MIN_BYTES

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread on this machine")
    one, two = Engine(bundled.checkpoint, bundled.tokenizer, threads=1), Engine(bundled.checkpoint, bundled.tokenizer, threads=2)
    assert two._step is kernels._forward_team and two._decode is kernels._decode_greedy_team
    assert one._step is kernels._forward and one._decode is kernels._decode_greedy
    assert not kernels.use_team(2, TEAM_MIN_BYTES - 1) and kernels.use_team(2, TEAM_MIN_BYTES) and not kernels.use_team(1, 1 << 30)
    rng = np.random.default_rng(3)
    for pos, token in enumerate(rng.integers(0, 512, 40)):
        np.testing.assert_allclose(two.forward(int(token), pos), one.forward(int(token), pos), rtol=1e-5, atol=1e-5, err_msg=f"pos {pos}")
    np.testing.assert_allclose(two.k_cache, one.k_cache, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two.v_cache, one.v_cache, rtol=1e-5, atol=1e-5)
    assert [e.token_id for e in two.generate("ROMEO:", 80)] == [e.token_id for e in one.generate("ROMEO:", 80)]
    q1, q2 = (Engine(bundled.checkpoint, bundled.tokenizer, precision="int8", threads=t) for t in (1, 2))  # int8 groups (1.8 MB:
    for pos, token in enumerate(rng.integers(0, 512, 10)):  # below the threshold) through the region called directly
        q2._token[0] = token
        kernels._forward_team(q2._token, pos, 1, *q2._model_args, *q2._bufs, q2.logits, kernels.n_chunks(2))
        np.testing.assert_allclose(q2.logits[0], q1.forward(int(token), pos), rtol=1e-5, atol=1e-5, err_msg=f"pos {pos}")


@needs_stories
def test_a_small_model_on_two_threads_keeps_one_region_per_kernel(stories):
    """stories260K (1 MB) gains nothing from one region per step (~40 phases to wait through in ~50 us): it keeps `_forward`."""
    from lpu import kernels
    from lpu.jit import TEAM_MIN_BYTES

    assert stories.weight_bytes < TEAM_MIN_BYTES
    assert Engine(stories.checkpoint, stories.tokenizer, threads=2)._step is kernels._forward


def test_a_decode_step_given_one_thread_by_numba_still_ends():
    """A worker never waits for another to arrive, only for claimed chunks to end, so a region that numba runs on fewer
    threads than it has workers ends, with one thread's logits (a subprocess, so that a hang fails the test instead of
    the run)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", TEAM_ON_ONE_THREAD], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "ended" in out.stdout, out.stderr[-3000:]


def test_cli_generate_checks_arguments_before_printing_and_runs_speculative(capsys, monkeypatch):
    from lpu import cli

    def code(argv):  # a flag's type check exits through argparse (status 2); the rest return 2
        try:
            return cli.main(argv)
        except SystemExit as e:
            return e.code

    for argv, match in [(["--temperature", "-1"], "--temperature"), (["--top-p", "0"], "--top-p"), (["--seed", "-1"], "--seed"),
                        (["--threads", "0"], "--threads"), (["--draft", "--draft-tokens", "0"], "--draft-tokens")]:
        assert code(["generate", "--prompt", "ROMEO:", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and match in err  # nothing printed before the error
    monkeypatch.setenv("LPU_THREADS", "many")
    assert cli.main(["generate"]) == 2 and "LPU_THREADS must be" in capsys.readouterr().err
    monkeypatch.delenv("LPU_THREADS")
    assert cli.main(["generate", "--prompt", "ROMEO:", "--max-new-tokens", "30", "--draft", "--draft-tokens", "3", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    plain = "ROMEO:" + Engine.default().complete("ROMEO:", 30)
    assert out.strip() == plain.strip() and "judged draft tokens accepted" in err and "1 thread)" in err
    assert "-- 30 tokens of" in err and "tok/s after the first" in err  # the rate without the first run's compilation
    import inspect

    assert cli.build_parser().parse_args(["generate"]).draft_tokens == inspect.signature(Engine.generate).parameters["draft_tokens"].default == 3


def test_greedy_bursts_give_the_token_by_token_stream(bundled):
    """Greedy decoding runs several steps per compiled call (argmax inside); its events equal those of the
    one-step-per-call path (taken when a trace is recorded), ids, texts, positions and simulated times alike,
    and the stream stops at the same place when max_new_tokens or the context runs out."""
    fields = lambda evs: [(e.token_id, e.text, e.position, e.t_sim_s) for e in evs]  # noqa: E731
    for prompt, n in (("ROMEO:", 150), ("To be", 1), ("To be", 2), ("", 70)):
        fast = fields(bundled.generate(prompt, n))
        bundled.trace = []
        try:
            slow = fields(bundled.generate(prompt, n))
        finally:
            bundled.trace = None
        assert fast == slow and len(fast) == n
    ids = bundled.tokenizer.encode("ROMEO:")
    tail = list(bundled.generate("ROMEO:", 10**6))  # to the end of the context
    assert len(tail) == bundled.config.seq_len - len(ids) and tail[-1].position == bundled.config.seq_len - 1


def test_greedy_burst_stops_at_bos_or_eos(bundled):
    """A BOS/EOS that greedy decoding produces ends the stream, unemitted, in a burst as token by token."""
    first = [e.token_id for e in bundled.generate("ROMEO:", 40)]
    tok = copy.copy(bundled.tokenizer)
    fresh = [i for i in range(3, 40) if first[i] not in first[:i]]  # tokens first produced at position i
    for n, (eos, bos) in ((fresh[0], (first[fresh[0]], 1)), (fresh[-1], (2, first[fresh[-1]]))):  # pretend one is EOS, then BOS
        tok.eos_id, tok.bos_id = eos, bos
        eng = Engine(bundled.checkpoint, tok)
        want = first[:n]
        assert [e.token_id for e in eng.generate("ROMEO:", 40)] == want
        eng.trace = []
        assert [e.token_id for e in eng.generate("ROMEO:", 40)] == want
