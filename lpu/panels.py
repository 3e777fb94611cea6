"""Weights packed in panels of 16 rows, and the kernel that reads them for 1-8 tokens: decode and verify steps.

A matrix W (d_out, d_in) in panels is ``Wp`` (n_panels, d_in, 16), ``Wp[q, k, j] = W[16 q + j, k]`` (zeros past
d_out): for each input k, the 16 weights of 16 consecutive output rows lie side by side, one 64-byte line. The kernel
keeps 4 panels x 4 tokens of outputs in 16 registers of 16 float32 lanes and, for each k, multiplies a line of
weights by each token's x[k]: every weight load feeds 4 multiply-adds and there is no sum across lanes at the end.
The row-major kernels (`lpu.linear`) sum along a row instead, one vector of partial sums per (row, token) that
ends in a sum across its lanes; with 192-wide rows those sums cost about as much as the multiply-adds. One token
goes 8 panels at a time, a single stream of weights, which from DRAM reads faster than row by row. What each costs
on this machine: ``benchmarks/speculative.py``'s matrices table and ``benchmarks/kernels.py``'s matvec rows (the
README's speculative-decoding section quotes them). numba has no vector type, so the kernel is LLVM vector code
written with llvmlite (`_panels_kernel`), as `lpu.jit` writes its atomics.

The Engine keeps its fp32 matrices in panels as well as row-major (twice the memory for fp32 weights): 1 to
`lpu.jit.TEAM_MAX_ROWS` tokens (a decode step, a verify step, a short prompt) read the panels, longer prompt chunks
the row-major 4x4 tiles. Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import _ijit, _jit

LANES = 16  # rows of W per panel: one 64-byte line of float32 weights per input
NO_PANELS = np.zeros((0, 0, LANES), np.float32)  # "this matrix has no panels": the row-major kernels read it


def pack(W: np.ndarray) -> np.ndarray:
    """Panels (..., n_panels, d_in, 16) float32 of fp32 weights W (..., d_out, d_in), n_panels = ceil(d_out / 16)."""
    *lead, d_out, d_in = W.shape
    n_panels = -(-d_out // LANES)
    padded = np.zeros((*lead, n_panels * LANES, d_in), np.float32)
    padded[..., :d_out, :] = W
    return np.ascontiguousarray(padded.reshape(*lead, n_panels, LANES, d_in).swapaxes(-1, -2))


def _splat(builder, value, vec_type):  # a vector with ``value`` in every lane
    lane0 = builder.insert_element(ir.Constant(vec_type, ir.Undefined), value, ir.IntType(32)(0))
    return builder.shuffle_vector(lane0, ir.Constant(vec_type, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), vec_type.count), [0] * vec_type.count))


def _panels_kernel(n_panels: int, n_tokens: int):
    """The intrinsic ``f(Wp, X, out, q, b0, r_lo, r_hi)``: out[b0 + i, 16 p + j] = X[b0 + i] . W[16 p + j] for the
    n_panels panels p = q, q + 1, ... and tokens b0 + i, i < n_tokens (a token past X's last row is its last row again:
    the same sums, written twice), written where r_lo <= 16 p + j < r_hi. Wp (n, d_in, 16), X (T, d_in), out
    (T, d_out): float32 with rows of unit stride, trusted as every ``_underscored`` kernel trusts its inputs."""

    @intrinsic
    def kernel(typingctx, Wp, X, out, q, b0, r_lo, r_hi):
        arrays = (Wp, X, out)
        if not (all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays) and Wp.ndim == 3 and X.ndim == 2
                and out.ndim == 2 and all(isinstance(i, types.Integer) for i in (q, b0, r_lo, r_hi))):
            return None

        def codegen(context, builder, sig, args):
            f32, i64 = ir.FloatType(), ir.IntType(64)
            vec, ivec = ir.VectorType(f32, LANES), ir.VectorType(i64, LANES)
            wp, x, o = (context.make_array(t)(context, builder, a) for t, a in zip(sig.args[:3], args[:3]))
            q, b0, r_lo, r_hi = (context.cast(builder, a, t, types.int64) for a, t in zip(args[3:], sig.args[3:]))
            d_in = builder.extract_value(wp.shape, 1)
            x_row, o_row = (builder.sdiv(builder.extract_value(a.strides, 0), i64(4)) for a in (x, o))  # in floats
            last = builder.sub(builder.extract_value(x.shape, 0), i64(1))
            rows = []
            for i in range(n_tokens):
                b = builder.add(b0, i64(i))
                rows.append(builder.select(builder.icmp_signed("<", b, last), b, last))
            xs = [builder.gep(x.data, [builder.mul(b, x_row)]) for b in rows]
            panel = [builder.gep(wp.data, [builder.mul(builder.mul(builder.add(q, i64(p)), d_in), i64(LANES))]) for p in range(n_panels)]
            acc = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * LANES)) for _ in range(n_tokens)] for _ in range(n_panels)]
            flags = ("contract", "reassoc", "nsz")  # as `lpu.jit._FASTMATH`: a fused multiply-add where the CPU has one
            with cgutils.for_range(builder, d_in) as loop:  # the accumulators are allocas: LLVM keeps them in registers
                k = loop.index
                w = [builder.load(builder.bitcast(builder.gep(panel[p], [builder.mul(k, i64(LANES))]), vec.as_pointer()), align=4)
                     for p in range(n_panels)]
                for i in range(n_tokens):
                    xk = _splat(builder, builder.load(builder.gep(xs[i], [k])), vec)
                    for p in range(n_panels):
                        builder.store(builder.fadd(builder.load(acc[p][i]), builder.fmul(w[p], xk, flags=flags), flags=flags), acc[p][i])
            store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), ir.IntType(32),
                                                   ir.VectorType(ir.IntType(1), LANES)]), "llvm.masked.store.v16f32.p0")
            lanes = ir.Constant(ivec, list(range(LANES)))
            for p in range(n_panels):
                row0 = builder.mul(builder.add(q, i64(p)), i64(LANES))
                row = builder.add(_splat(builder, row0, ivec), lanes)
                inside = builder.and_(builder.icmp_signed(">=", row, _splat(builder, r_lo, ivec)), builder.icmp_signed("<", row, _splat(builder, r_hi, ivec)))
                for i in range(n_tokens):
                    ptr = builder.bitcast(builder.gep(o.data, [builder.add(builder.mul(rows[i], o_row), row0)]), vec.as_pointer())
                    builder.call(store, [builder.load(acc[p][i]), ptr, ir.IntType(32)(4), inside])
            return context.get_dummy_value()

        return types.none(Wp, X, out, q, b0, r_lo, r_hi), codegen

    return kernel


# 16 sums of 16 lanes in registers: 4 panels x 4 tokens, or 2 panels x 8 tokens; one token 8 panels at a time (8 sums:
# a load per multiply-add, bound by the cache or DRAM, not by the sums' latency); a last panel or so alone.
_panels4x4, _panels1x4, _panels2x8, _panels1x8, _panels8x1, _panels1x1 = (
    _panels_kernel(p, t) for p, t in ((4, 4), (1, 4), (2, 8), (1, 8), (8, 1), (1, 1)))


@_ijit
def _pass(Wp, X, out, q, b0, r_lo, r_hi, whole):
    """One call of the kernel that fits T = X.shape[0] tokens: a ``whole`` group of panels (8 for one token, 4 for 2-4,
    2 for more) or a single panel, tokens b0.. of a pass."""
    T = X.shape[0]
    if T == 1:
        if whole:
            _panels8x1(Wp, X, out, q, b0, r_lo, r_hi)
        else:
            _panels1x1(Wp, X, out, q, b0, r_lo, r_hi)
    elif T <= 4:
        if whole:
            _panels4x4(Wp, X, out, q, b0, r_lo, r_hi)
        else:
            _panels1x4(Wp, X, out, q, b0, r_lo, r_hi)
    elif whole:
        _panels2x8(Wp, X, out, q, b0, r_lo, r_hi)
    else:
        _panels1x8(Wp, X, out, q, b0, r_lo, r_hi)


@_jit
def _panel_rows(Wp, X, out, r_lo, r_hi):
    """Rows r_lo..r_hi-1 of out (T, d_out) = X (T, d_in) @ W.T, W in panels Wp: one token 8 panels at a time, 2-4 tokens
    in passes of 4 panels x 4 tokens, more in passes of 2 panels x 8 tokens; a last panel or few one by one (a panel that
    straddles r_lo or r_hi is computed whole, written in part). No token (a chunk that wants no logits): nothing."""
    T = X.shape[0]
    if T == 0:  # the kernels would write row -1
        return
    group, tokens = (8, 1) if T == 1 else ((4, 4) if T <= 4 else (2, 8))
    q_lo, q_hi = r_lo // LANES, (r_hi + LANES - 1) // LANES
    for b0 in range(0, T, tokens):
        q = q_lo
        while q < q_hi:
            whole = q + group <= q_hi
            _pass(Wp, X, out, q, b0, r_lo, r_hi, whole)
            q += group if whole else 1
