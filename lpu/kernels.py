"""CPU kernels for Llama token generation: llama2.c's run.c / runq.c in numba, gathered in one namespace.

Read in this order (each module one concept):

* `lpu.jit`: the threading layer, the jit flags (one place), weight conversions, a vectorised exp;
* `lpu.linear`: the linear layer that dominates decoding (fp32, fp16 storage, int8 groups; one
  token or a batch of them): `matvec`, `matmul`, `Linear`, `stored`;
* `lpu.panels`: fp32 weights also packed in panels of 16 rows, which 1-8 tokens at once (decode and verify steps) read
  with 16 vector accumulators in registers: `panels.pack`, ``_panel_rows``;
* `lpu.layer_ops`: the cheap vector kernels of a layer: `rmsnorm`, `rope`, `attention`, `swiglu`;
* `lpu.forward`: the whole forward pass of a model as one compiled call (``_forward``), the
  greedy decode loop (``_decode_greedy``), and both for a decode or verify step on several threads as one
  parallel region (``_forward_team``, ``_decode_greedy_team``);
* `lpu.sampling`: `softmax`, `sample`, `probabilities`, as run.c samples.

Compiled code is cached on disk (``cache=True``): a fresh checkout compiles each kernel once
(~0.5 s each), later runs load it. No module above imports this one (no import cycle): it only
re-exports their names, so ``lpu.kernels.X`` keeps working for every X they define.
Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

from .forward import _decode_greedy, _decode_greedy_team, _forward, _forward_team, use_team  # noqa: F401
from .jit import _FASTMATH, _JIT, TEAM_MAX_ROWS, _check_f32, _chunks, _exp, _ijit, _jit, _out, _pjit, last_level_cache_bytes, n_chunks  # noqa: F401
from .layer_ops import _attention, _rmsnorm, _rope, _swiglu, attention, rmsnorm, rope, rope_table, swiglu  # noqa: F401
from .linear import Linear, _ffn_in, _linear, matmul, matvec, stored  # noqa: F401
from .sampling import _argmax, _nucleus, _softmax, probabilities, sample, softmax  # noqa: F401

__all__ = ["Linear", "attention", "matmul", "matvec", "probabilities", "rmsnorm", "rope", "rope_table", "sample", "softmax",
           "stored", "swiglu"]
