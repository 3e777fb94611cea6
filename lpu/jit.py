"""The numba machinery every CPU kernel shares: threading layer, jit flags, and a few compiled primitives.

One place for the jit flags (``_jit``, ``_pjit``, ``_ijit``), the threading layer, the float32
conversions the kernels read weights through, a vectorisable ``exp`` and the input checks of the
public wrappers. The kernels themselves are in `lpu.linear` (matrix products), `lpu.layer_ops`
(rmsnorm, rope, attention, swiglu), `lpu.sampling` and `lpu.forward` (a whole forward pass);
`lpu.kernels` gathers them. Introduced in ``notebooks/03_token_generation.ipynb``.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import importlib.metadata
import os

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Threading layer: TBB, the one both fork-safe (after GNU OpenMP, numba's default here, has run a parallel kernel, a
# forked child dies, so a multiprocessing pool hangs) and thread-safe (lpu serve runs kernels from several threads at
# once; workqueue aborts on that). PyPI's tbb puts libtbb in <prefix>/lib, which the loader does not search in a venv:
# load it by path first (numba/numba#6108). A layer the user chose (NUMBA_THREADING_LAYER) wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    try:
        for _lib in importlib.metadata.files("tbb") or ():
            if _lib.name.startswith("libtbb.so."):
                ctypes.CDLL(str(_lib.locate()), mode=ctypes.RTLD_GLOBAL)
                break
    except (importlib.metadata.PackageNotFoundError, OSError):
        pass  # conda's tbb sits where its Python finds it
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (raises where TBB cannot load)

        numba.config.THREADING_LAYER = "safe"
    except ImportError:
        pass  # no TBB on this platform: numba's default layer (thread-safe, not always fork-safe)
# Start the layer's threads now: a cached kernel that calls a parallel one (``_forward`` calls ``_linear_par``) does not
# start them when it is loaded from the disk cache, which can crash it (numba/numba#8578; the fix, numba/numba#9950, is
# not released). Twice here, after the kernel files changed and changed back, every process segfaulted in its first
# forward pass until lpu/__pycache__'s cache files were removed: the likely cause, not proven (it did not recur on
# demand). numba.get_num_threads() starts them.
numba.get_num_threads()

# numba keys a kernel's disk cache on its own source file only, but a kernel is compiled together with its callees:
# ``_forward`` (lpu/forward.py) holds the code of lpu/linear.py's and lpu/layer_ops.py's kernels, and would load stale
# after an edit of those alone (as would lpu/speculative.py's compiled steps, which hold ``_forward``). So these modules
# share one stamp: editing any one recompiles them all (as when they were one file). Done through numba's cache
# locators, before the first @_jit below. (lpu/schedule.py's and lpu/system.py's kernels call no other module's.)
KERNEL_MODULES = ("jit.py", "linear.py", "panels.py", "layer_ops.py", "sampling.py", "forward.py", "speculative.py")
_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def _kernels_stamp(stats: tuple) -> str:  # stats: (mtime, size) of each kernel module, so that an edit re-hashes
    h = hashlib.sha256()
    for name in KERNEL_MODULES:
        with open(os.path.join(_HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _shared_stamp(base: type) -> type:
    class Locator(base):
        def get_source_stamp(self):
            path = os.path.abspath(self._py_file)
            if os.path.dirname(path) == _HERE and os.path.basename(path) in KERNEL_MODULES:
                stats = tuple((st.st_mtime_ns, st.st_size) for st in (os.stat(os.path.join(_HERE, n)) for n in KERNEL_MODULES))
                return _kernels_stamp(stats)
            return super().get_source_stamp()

    Locator.__name__ = Locator.__qualname__ = f"LpuKernels{base.__name__.lstrip('_')}"
    return Locator


try:
    from numba.core import caching as _caching

    _impl = getattr(_caching, "CacheImpl", None) or _caching._CacheImpl  # numba >= 0.61 / before
    _impl._locator_classes = [_shared_stamp(c) if c.__name__.lstrip("_") in ("InTreeCacheLocator", "UserWideCacheLocator") else c
                              for c in _impl._locator_classes]
except (ImportError, AttributeError):  # another numba layout: each module keyed on its own file, as numba does
    pass

# All the jit flags, in one place. This fastmath subset lets LLVM reorder float sums
# (vectorised reductions with several partial sums) and fuse multiply-adds, but unlike
# fastmath=True keeps inf and NaN working: masked logits of -inf stay correct.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# error_model="numpy": a float division by zero gives inf or nan instead of raising ZeroDivisionError; the check that
# raising needs, one per division, keeps a loop that divides (the FFN gate) from vectorising (the kernels trust their
# inputs: no divisor is ever zero).
_JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
_jit = numba.njit(**_JIT)
_pjit = numba.njit(**_JIT, parallel=True)  # for loops over prange
_ijit = numba.njit(**_JIT, inline="always")  # micro-kernels called once per row pair: inlined where they are called


@intrinsic
def _to_f32(typingctx, v):
    """A stored weight as float32: fp32 as is, fp16 bits (uint16) widened exactly (``vcvtph2ps`` on
    x86), int8 converted. numba has no CPU float16 type, so fp16 weights reach the kernels as their
    uint16 bit patterns; one kernel body then serves the three storage precisions."""
    if v == types.float32:
        return types.float32(v), lambda context, builder, signature, args: args[0]
    if v == types.uint16:
        return types.float32(v), lambda context, builder, signature, args: builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    if v == types.int8:
        return types.float32(v), lambda context, builder, signature, args: builder.sitofp(args[0], ir.FloatType())
    return None


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    if bits != types.int32:
        return None
    return types.float32(bits), lambda context, builder, signature, args: builder.bitcast(args[0], ir.FloatType())


@intrinsic
def _prefetch(typingctx, a, i):
    """Ask the cache for the line holding ``a[i]`` (``a`` a 1-D array), as the read it will be (``llvm.prefetch``:
    ``prefetcht0`` on x86); no load waits on it. An index past the end fetches nothing useful but is harmless."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])  # address arithmetic only: no bounds check, no load
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(ir.IntType(8))] + [ir.IntType(32)] * 3),
                                            "llvm.prefetch.p0")
        i32 = ir.IntType(32)
        builder.call(fn, [builder.bitcast(ptr, ir.PointerType(ir.IntType(8))), i32(0), i32(3), i32(1)])  # read, keep, data
        return context.get_dummy_value()

    return types.none(a, i), codegen


def _int64_slot(a, i):  # the types an atomic on a[i] accepts: a 1-D C-contiguous int64 array, an integer index
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1 and a.layout == "C" and isinstance(i, types.Integer)


@intrinsic
def _atomic_add(typingctx, a, i, v):
    """``a[i] += v`` as one atomic operation (sequentially consistent: what a thread wrote before it is seen by the
    thread that reads the new value), returning the value before: numba has no atomics on the CPU."""
    if not (_int64_slot(a, i) and isinstance(v, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [context.cast(builder, args[1], signature.args[1], types.intp)])
        return builder.atomic_rmw("add", ptr, context.cast(builder, args[2], signature.args[2], types.int64), "seq_cst")

    return types.int64(a, i, v), codegen


@intrinsic
def _atomic_load(typingctx, a, i):
    """``a[i]`` read atomically (acquire: what the writer wrote before its atomic add is seen after it), and read
    again on every call, so that a loop can wait on it."""
    if not _int64_slot(a, i):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [context.cast(builder, args[1], signature.args[1], types.intp)])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(a, i), codegen


@_ijit
def _exp(x):
    """e**x in float32 for x <= 0 (softmax after subtracting the maximum), within 3e-7 of it relatively (2-4 float32
    ulp; tests/test_kernels.py): the range-reduced Taylor series, all in float32, so that loops of it vectorise (a libm
    call per element does not; numba has no vector exp without Intel's SVML). Below -87 (e**x < 2**-126) it returns 0."""
    t = x * np.float32(1.4426950408889634)  # x / ln2, clamped where the answer is 0 anyway (x = -inf included)
    t = t if t > np.float32(-126.0) else np.float32(-126.0)
    n = np.int32(t - np.float32(0.5))  # for t <= 0 truncation gives the nearest integer, and vectorises (math.floor: a libm call)
    nf = np.float32(n)
    r = x - nf * np.float32(0.693145751953125) - nf * np.float32(1.428606765330187e-06)  # x = n ln2 + r, |r| <= ln2 / 2; ln2 in two parts: r exact
    p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
        np.float32(1 / 24) + r * (np.float32(1 / 120) + r * (np.float32(1 / 720) + r * np.float32(1 / 5040)))))))  # error < r**8/8! < 6e-9
    scale = _f32_from_bits(np.int32((n + np.int32(127)) << np.int32(23)))  # 2**n
    return p * scale if x > np.float32(-87.0) else np.float32(0.0)


@_ijit
def _silu(v):
    """v * sigmoid(v) in float32 through `_exp` (of -|v|, so that it never overflows), so that a loop of it vectorises
    (np.exp is a libm call per element)."""
    e = _exp(-abs(v))
    return (v if v >= np.float32(0.0) else v * e) / (np.float32(1.0) + e)


# A kernel splits its rows over threads only where that can pay: a parallel region costs ~2 us of fork and
# join (TBB, 2-core AMD EPYC: a 64x64 fp32 matvec took 0.8 us on one thread and 2.7 us on two; 288x288, 4.9 us
# and 7.2 us; 2048x288, 41 and 43 us, with the second core busy). Below this many bytes of weights (times rows;
# for attention, of keys and values) a kernel runs on one thread even when the engine has more. So a small
# model (stories260K, ~1 MB of weights in matrices of <= 128 KiB) decodes on one thread whatever it is given.
PARALLEL_MIN_BYTES = 1 << 20

# A decode step with more than one thread runs as one parallel region, its workers claiming chunks of each phase as
# they come (`lpu.forward._step_worker`), where the model's matrices hold at least this many bytes. With a parallel
# region per matrix, the small ones (stories15M's 288x288, all of the bundled model's) stay on one thread, as a region
# costs more than half their time. One region per step gains on the stories15M shapes and the bundled model in fp32
# (6.9 MB) and fp16 (3.4 MB) (benchmarks/threads.py; the README's figures); against one thread on a 2-core Zen 4 EPYC,
# int8 (1.8 MB) went 0.9-1.3x and stories260K 0.5-0.8x (1 MB, ~50 us a token and ~40 phases to wait through), so these
# two keep a region per kernel.
TEAM_MIN_BYTES = 2 << 20
# The region takes passes over at most this many rows too (the range where fp32 matrices are read in panels,
# `lpu.panels`): the target's verify step in speculative decoding. The bundled model's pass over 4 rows took 109-113 us
# on 2 threads in one region, against 134 us on one thread and 155 us with a region per kernel (2-core AMD EPYC; at 8
# rows 162, 203-214 and 235-241 us). Longer passes (prompt chunks) keep a region per kernel.
TEAM_MAX_ROWS = 8

# A batch (T >= 2 tokens) reads 4 weight rows at a time in the 4x4 tile, which goes badly from DRAM: the stories15M
# classifier (32000x288 fp32) took 4.5-6.8 ms for 2-8 tokens in 4x4 tiles against 1.3-1.5 ms for one token row by row
# (and prefetching the tiles' rows ahead did not help); it spills its 16 sums, too (AVX2 Zen 1 and AVX-512 Rocket Lake
# alike), so that from L2 and L3 the small matrices of the bundled model (192x192, 96x192 fp32) took ~2x a pass of 2 rows
# x 4 tokens. So 2-8 tokens through rows of at most this many bytes go 2 rows at a time, 4 (or 2) tokens per pass over the
# pair (8 sums); from 16 tokens the tile is as fast or faster (stories15M's classifier: 8.9 ms both at 16, 20.5 ms against
# 36 ms at 64). Longer rows keep the tile: from DRAM, 2-8 tokens through 8192x512 fp32 (2 KiB rows) took 0.7-2.6 ms row by
# row against 1.6-2.2 ms in tiles, through 4096x1024 (4 KiB rows) 0.65-2.7 ms against 1.1-1.7 ms, through 2048x4096
# 3.2-6.1 ms against 2.3-2.9 ms.
STREAM_MAX_ROW_BYTES = 2048


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes() -> int:
    """This machine's largest CPU cache (the last level), from Linux's sysfs; 32 MiB where it cannot be read. Weights
    beyond it stream from DRAM on every token, which changes the kernel that reads a few tokens fastest (see
    `lpu.linear._few_rows_from_dram`)."""
    sizes = []
    for f in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(f).read().strip()
        except OSError:
            continue
        if text[:-1].isdigit() and text[-1] in "KMG":
            sizes.append(int(text[:-1]) << {"K": 10, "M": 20, "G": 30}[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes, default=32 << 20)


def _chunks() -> int:
    """Chunks a kernel's rows are cut into: one with one thread (no parallel region at all), else 4 per thread."""
    return n_chunks(numba.get_num_threads())


def n_chunks(threads: int) -> int:
    """`_chunks` for ``threads`` threads: 1 (the single-thread path opens no parallel region), else 4 per thread."""
    return 1 if threads <= 1 else 4 * threads


def _check_f32(fn, name, a, shape=None, expected=None):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{fn}: {name} must be a float32 numpy array, got {type(a).__name__}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{fn}: {name} has shape {a.shape}; expected {expected or shape}")
    if a.dtype != np.float32:
        raise ValueError(f"{fn}: {name} has dtype {a.dtype}; expected float32")
    if not a.flags.c_contiguous:
        raise ValueError(f"{fn}: {name} must be C-contiguous; use np.ascontiguousarray")


def _out(fn, out, shape, *inputs):
    if out is None:
        return np.empty(shape, np.float32)
    _check_f32(fn, "out", out, shape)
    if not out.flags.writeable:
        raise ValueError(f"{fn}: out is read-only")
    for a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError(f"{fn}: out must not overlap the inputs")
    return out

