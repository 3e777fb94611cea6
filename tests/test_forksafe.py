"""Fork and thread safety of the numba kernels (lpu.kernels' threading layer).

With GNU OpenMP as numba's layer, a process that had run a parallel kernel could not fork: the
child died ("fork() called from a process already using GNU OpenMP") and a multiprocessing pool
hung. Each check runs in a fresh interpreter, so that the layer is chosen there as a user's
program would choose it, and is bounded by a timeout instead of hanging.
"""

import os
import subprocess
import sys
import textwrap

import pytest

FORK = textwrap.dedent("""
    import multiprocessing as mp
    import numpy as np
    import numba
    import lpu
    from lpu import kernels

    def work(seed):  # in a forked child: a parallel kernel against float64, and a simulation
        rng = np.random.default_rng(seed)
        W, x = rng.standard_normal((96, 40)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
        assert np.allclose(kernels.matvec(W, x), W.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
        return lpu.simulate("llama2-7b", system="h100", chips=1, precision="fp16").itl_s

    if __name__ == "__main__":
        text = "".join(ev.text for ev in lpu.Engine.default().generate("ROMEO:", max_new_tokens=8))  # kernels ran here
        assert text.strip(), text
        with mp.get_context("fork").Pool(2) as pool:
            itls = pool.map_async(work, range(4)).get(timeout=120)
        assert itls == [lpu.simulate("llama2-7b", system="h100", chips=1, precision="fp16").itl_s] * 4
        print("layer", numba.threading_layer())
""")

THREADS = textwrap.dedent("""
    import threading
    import numpy as np
    import numba
    import lpu
    from lpu import kernels

    rng = np.random.default_rng(0)
    W, x = rng.standard_normal((512, 256)).astype(np.float32), rng.standard_normal(256).astype(np.float32)
    want = W.astype(np.float64) @ x
    ref = [ev.token_id for ev in lpu.Engine.default().generate("ROMEO:", max_new_tokens=16)]
    bad = []

    def kernel_calls():
        for _ in range(100):
            if not np.allclose(kernels.matvec(W, x), want, rtol=1e-4, atol=1e-3):
                bad.append("matvec")

    def generation():  # what lpu serve does: engines generating on several threads at once
        if [ev.token_id for ev in lpu.Engine.default().generate("ROMEO:", max_new_tokens=16)] != ref:
            bad.append("tokens")

    threads = [threading.Thread(target=f) for f in (kernel_calls, kernel_calls, generation, generation)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad
    print("layer", numba.threading_layer())
""")


def _run(script: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def _layer_expected() -> str:
    """TBB where lpu's dependencies install it (x86-64 Linux); elsewhere numba's default layer."""
    return "tbb" if sys.platform == "linux" and os.uname().machine == "x86_64" else ""


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method is POSIX-only (and Linux's default)")
def test_a_process_that_generated_text_can_fork_a_pool():
    out = _run(FORK)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fork() called from a process already using GNU OpenMP" not in out.stderr
    assert f"layer {_layer_expected()}" in out.stdout


def test_threads_call_kernels_concurrently():
    out = _run(THREADS)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"layer {_layer_expected()}" in out.stdout


def test_a_layer_the_user_chose_wins():
    out = _run("import numpy as np, numba\nfrom lpu import kernels\nkernels.matvec(np.ones((4, 4), np.float32), np.ones(4, np.float32))\n"
               "print('layer', numba.threading_layer())", NUMBA_THREADING_LAYER="workqueue")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "layer workqueue" in out.stdout


def test_importing_the_kernels_starts_the_threading_layer():
    """lpu.jit starts numba's threads when the kernels are imported: a cached `_forward` (which calls parallel kernels)
    loaded from disk does not start them itself (numba/numba#8578), and a one-thread Engine never asks numba for its
    thread count."""
    out = _run("from lpu import kernels\nfrom numba.np.ufunc import parallel\nprint('started', parallel._is_initialized)")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "started True" in out.stdout
