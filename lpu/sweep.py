"""``lpu.sweep``: a grid of `lpu.simulate` calls as one DataFrame, in a local process pool or on a Dask cluster.

A grid is a dict of lists of `lpu.simulate` keyword arguments, taken as a
cartesian product (the last key varies fastest), or a DataFrame with one
configuration per row. Every key and value is checked before any work starts;
a configuration that does not fit or cannot be cut gets its message in the
``error`` column and never stops the sweep. Rows come back in the grid's order
whichever way they ran, so a sweep is deterministic: locally or on a cluster,
the same grid gives the same DataFrame. See the README's "Your model, and sweeps
of thousands of configurations"; ``benchmarks/sweep.py`` measures its speed.
"""

from __future__ import annotations

import gc
import inspect
import itertools
import math
import os
import sys
import types
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import hardware, models, schedule
from .system import simulate

KEYS = tuple(inspect.signature(simulate).parameters)  # what a grid may vary: simulate's arguments
PROGRESS_DELAY_S = 1.0  # the progress bar shows only on sweeps that take longer than this
CHUNKS_PER_WORKER = 8  # tasks per worker: load balance and progress against per-task overhead


def _positive(v) -> None:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError("must be a positive integer")


def _system(v) -> None:
    if not isinstance(hardware.get(v), (hardware.ChipSpec, hardware.GPUSpec)):
        raise ValueError("is not an LPU or a GPU")


def _bool(v) -> None:
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError("must be True or False")


def _params(v) -> None:
    if not isinstance(v, schedule.CostParams):
        raise ValueError("must be an lpu.schedule.CostParams")


# one check per simulate argument, on each distinct value; a combination that cannot run (a context longer than the
# model's, a model that does not fit) is the configuration's error, not the grid's
_CHECKS = {"model": models.get, "system": _system, "precision": models.get_precision,
           "chips": lambda v: v == "auto" or _positive(v), "users": _positive, "prompt_tokens": _positive,
           "output_tokens": _positive, "ranges": _bool, "params": _params}


def _plain(v):
    """A grid value as simulate takes it: numpy scalars as Python ones, whole floats as ints (DataFrame columns), NaN as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    return v


def configurations(grid: dict | pd.DataFrame) -> list[dict]:
    """The configurations of ``grid``, in order, each a dict of `lpu.simulate` keyword arguments; checked.

    Raises
    ------
    ValueError
        Naming every unknown key and every value that is wrong whatever it is combined with.
    """
    if isinstance(grid, pd.DataFrame):
        keys = [str(k) for k in grid.columns]
        rows = [dict(zip(keys, map(_plain, row))) for row in grid.itertuples(index=False, name=None)]
    elif isinstance(grid, dict):
        keys = [str(k) for k in grid]
        values = []
        for k, v in grid.items():
            vs = list(v) if isinstance(v, Iterable) and not isinstance(v, (str, bytes, models.ModelConfig)) else [v]
            if not vs:
                raise ValueError(f"grid[{k!r}] is empty: give at least one value")
            values.append([_plain(x) for x in vs])
        rows = [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    else:
        raise ValueError(f"grid must be a dict of lists of lpu.simulate arguments or a DataFrame of rows, got {type(grid).__name__}")
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        raise ValueError(f"grid: unknown key(s) {', '.join(map(repr, unknown))}; lpu.simulate takes {', '.join(KEYS)}")
    if "model" not in keys:
        raise ValueError("grid: give 'model' (a preset name, a ModelConfig or a Hugging Face config path)")
    if not rows:
        raise ValueError("grid has no rows")
    bad, resolved = [], {}
    for k in keys:
        distinct = {}
        for r in rows:
            distinct.setdefault(_key(r[k]), r[k])
        for v in distinct.values():
            if v is None:  # simulate's default
                continue
            try:
                out = _CHECKS.get(k, lambda x: None)(v)
            except ValueError as e:
                bad.append(f"{k}={v!r} ({e})")
            else:
                if k == "model":  # read once here: workers need no file, a cluster's least of all
                    resolved[_key(v)] = out
    if bad:
        raise ValueError("grid: bad value(s): " + "; ".join(bad))
    for r in rows:
        if r["model"] is None:
            raise ValueError("grid: every configuration needs a model")
        r["model"] = resolved[_key(r["model"])]
        if r.get("chips") == "auto":
            r["chips"] = None
    return rows


def _key(v):
    """A hashable stand-in for a grid value (a ModelConfig is hashable; a path-like becomes its string)."""
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def _columns(config: dict) -> dict:
    """The configuration as the row's first columns (a model by its name)."""
    return {k: (v.name if isinstance(v, models.ModelConfig) else v) for k, v in config.items()}


def _flatten(d: dict) -> dict:
    """A Result's scalar fields; ranges as ``<field>_low`` / ``<field>_high``, other dicts of scalars as ``<field>_<key>``."""
    out = {}
    for k, v in d.items():
        if k == "ranges":
            for name, (lo, hi) in v.items():
                out[f"{name}_low"], out[f"{name}_high"] = lo, hi
        elif isinstance(v, dict):
            out.update({f"{k}_{str(sub).replace(' ', '_')}": x for sub, x in v.items() if _is_scalar(x)})
        elif _is_scalar(v):
            out[k] = v
    return out


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, bool, int, float, np.generic))


def run_one(config: dict) -> dict:
    """One row: the configuration, then the Result's scalar fields (resolved chips and precision replace None), then ``error``."""
    row = _columns(config)
    try:
        r = simulate(**{k: v for k, v in config.items() if v is not None})
    except ValueError as e:  # does not fit, cannot be cut, context too long: this configuration's answer
        return {**row, "error": str(e)}
    return {**row, **_flatten(r.as_dict()), "error": None}


def _run_chunk(chunk: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    return [(i, run_one(c)) for i, c in chunk]


def sweep(grid: dict | pd.DataFrame, client=None, progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Simulate every configuration of ``grid``: one row each, in the grid's order.

    Parameters
    ----------
    grid : dict of lists, or DataFrame
        `lpu.simulate` keyword arguments (``model``, ``system``, ``chips``, ``precision``, ``users``,
        ``prompt_tokens``, ``output_tokens``, ...): lists as a cartesian product (a single value is a
        list of one), or one configuration per DataFrame row. None (NaN in a DataFrame) is
        simulate's default for that argument.
    client : dask.distributed.Client or None
        None: a local process pool of ``workers`` processes (default: the CPU count; 1 runs in this
        process). A Client: its cluster's workers (they need lpu installed; models travel as configs).
    progress : bool
        A progress bar (tqdm) on sweeps that take longer than a second.

    Returns
    -------
    DataFrame
        The configuration's columns (models by name; ``chips`` and ``precision`` replaced by the
        values simulate chose where it ran), the Result's scalar fields (ranges as ``_low`` / ``_high``
        columns, the decode-step breakdown as ``breakdown_*``) and ``error`` (None where it ran).

    Examples
    --------
    >>> df = sweep(dict(model=["llama2-7b"], system=["h100"], chips=[1, 2], precision=["fp16"]), progress=False, workers=1)
    >>> df[["chips", "error"]].values.tolist()
    [[1, None], [2, None]]
    """
    if workers is not None and (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    jobs = list(enumerate(configurations(grid)))
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise ValueError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}")
        parallel = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()) or 1
    else:
        parallel = workers or os.cpu_count() or 1
    size = max(1, math.ceil(len(jobs) / (parallel * CHUNKS_PER_WORKER)))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    rows: list[dict | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), disable=not progress, delay=PROGRESS_DELAY_S, unit="config", desc="lpu.sweep") as bar:
        for done in _dispatch(chunks, client, parallel):
            for i, row in done:
                rows[i] = row
            bar.update(len(done))
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "error"} for r in rows])
    df["error"] = pd.Series([r["error"] for r in rows], index=df.index, dtype=object)  # None where it ran (not NaN)
    return df


def _dispatch(chunks, client, parallel: int):
    """Run the chunks; yield each one's rows as it completes."""
    if client is not None:
        from distributed import as_completed as dask_completed

        futures = client.map(_run_chunk, chunks, pure=False)
        try:
            for future in dask_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)
    elif parallel == 1 or len(chunks) == 1:
        for chunk in chunks:
            yield _run_chunk(chunk)
    else:  # the platform's start method; fork is safe after numba kernels ran (lpu.kernels' threading layer)
        with ProcessPoolExecutor(max_workers=min(parallel, len(chunks)), initializer=_worker_start) as pool:
            for future in as_completed([pool.submit(_run_chunk, chunk) for chunk in chunks]):
                yield future.result()


def _worker_start() -> None:
    """In each pool process: what it inherited (the imported modules, ~10^5 objects) moves out of the garbage collector's
    view, so its full collections, which simulate's allocations trigger every few configurations, stop walking them all."""
    gc.freeze()


class _CallableModule(types.ModuleType):
    """``lpu.sweep(grid)`` calls `sweep` although ``lpu.sweep`` is also this module (an import binds it there)."""

    def __call__(self, *args, **kwargs) -> pd.DataFrame:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
