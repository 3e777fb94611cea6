"""The design space: LPU generations x chips x precision x users against speed per user and cost per token.

`grid` is the design-space grid (five models on LPU v1 and the what-if generations of `lpu.hardware.WHAT_IFS`,
with H100/H200 servers as the baseline); ``scripts/design_space.py`` runs it through `lpu.sweep` (`run`) and
writes ``lpu/data/design_space.csv``, which `load` reads back. On that frame: `pareto_front` (the configurations
no other beats on both speed per user and cost per million tokens), `cheapest_at_speed` (the cheapest
configuration that meets a per-user speed target) and, live through `lpu.simulate`, `rack_fit` (which models
one GroqRack's compute chips hold). Introduced in ``notebooks/07_design_space.ipynb``.

Every what-if carries the v1 system term (`lpu.system.SYSTEM_OP_S`, seconds per dependent op) unchanged: it was
fitted on v1 only, so nothing says how a newer compiler, runtime or clock would move it; the notebook shows the
alternative (the term scaled with the clock, as if it were cycles) beside it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from . import DATA_DIR, hardware, metrics, models, sram

CSV_PATH = DATA_DIR / "design_space.csv"
MODELS = ("llama2-7b", "llama3-8b", "mixtral-8x7b", "llama2-70b", "llama3-70b")
LPU_SYSTEMS = ("lpu-v1",) + tuple(c.name for c in hardware.WHAT_IFS)
LPU_CHIPS = (16, 32, 64, 128, 256, 576, 1024)
LPU_PRECISIONS = ("fp16", "fp16-int8ffn", "int8")
USERS = (1, 8, 32, 128)
GPU_SYSTEMS = ("h100", "h200")
GPU_CHIPS = (1, 2, 4, 8)
GPU_PRECISIONS = ("bf16", "fp8")
SPEED, COST = "output_tokens_per_s", "usd_per_m_tokens"  # the two axes of the design space
# what the CSV leaves out of a sweep's row, to keep the file small: the precision's reason (a sentence; the grid names
# the precision) and the hosted and speculative fields (empty: the grid simulates neither)
DROP = ("precision_reason", "hosted_s", "speculation")
RACK_CHIPS = hardware.GROQ_RACK.compute_chips  # one GroqRack: 8 compute nodes x 8 chips (the ninth node is a spare)


def clock_scaled_op_s(system: str) -> float:
    """The v1 system term scaled to ``system``'s clock: the alternative to carrying it in seconds, if it were cycles.

    `lpu.system.SYSTEM_OP_S` is seconds per dependent op fitted on v1 at 900 MHz; were it a count of cycles (instruction
    issue, synchronisation), a chip clocked f would pay ``SYSTEM_OP_S x 900 MHz / f``. Nothing measured says which it is.

    Examples
    --------
    >>> clock_scaled_op_s("lpu-v1") == clock_scaled_op_s("lpu-whatif-stacked-sram")
    True
    """
    from .system import SYSTEM_OP_S

    chip = hardware.get(system)
    if not isinstance(chip, hardware.ChipSpec):
        raise ValueError(f"system must be an LPU chip ({', '.join(LPU_SYSTEMS)}), got {system!r}")
    return SYSTEM_OP_S.value * hardware.LPU_V1.clock_hz / chip.clock_hz


def grid(models_: tuple[str, ...] = MODELS, lpu_systems: tuple[str, ...] = LPU_SYSTEMS, lpu_chips: tuple[int, ...] = LPU_CHIPS,
         lpu_precisions: tuple[str, ...] = LPU_PRECISIONS, users: tuple[int, ...] = USERS, gpu_systems: tuple[str, ...] = GPU_SYSTEMS,
         gpu_chips: tuple[int, ...] = GPU_CHIPS, gpu_precisions: tuple[str, ...] = GPU_PRECISIONS) -> pd.DataFrame:
    """The design-space configurations as `lpu.sweep` rows (model, system, chips, precision, users), LPU rows first.

    Examples
    --------
    >>> g = grid()
    >>> len(g), g.system.nunique()
    (2000, 6)
    """
    keys = ("model", "system", "chips", "precision", "users")
    rows = [dict(zip(keys, c)) for c in itertools.product(models_, lpu_systems, lpu_chips, lpu_precisions, users)]
    rows += [dict(zip(keys, c)) for c in itertools.product(models_, gpu_systems, gpu_chips, gpu_precisions, users)]
    return pd.DataFrame(rows, columns=list(keys))


def add_costs(df: pd.DataFrame, econ: metrics.Economics = metrics.Economics()) -> pd.DataFrame:
    """``df`` with cost per million output tokens: ``usd_per_m_tokens`` and its ``_low`` / ``_high`` ends.

    The same cost as notebook 06 (`lpu.metrics.cost_per_million_tokens_range_from`): accelerators amortised plus energy at
    nameplate power, over the system's throughput at the assumed utilisation; the low end at the cheapest economics, price
    and power and the highest simulated throughput, the high end at the dearest. NaN where the configuration did not run.
    """
    need = {"system", "chips", "users", "system_tokens_per_s", "itl_s_low", "itl_s_high", "error"}
    if missing := need - set(df.columns):
        raise ValueError(f"df needs the sweep's columns {sorted(missing)} (run it through lpu.sweep with ranges=True)")
    out = df.copy()
    cost = np.full((len(df), 3), np.nan)
    for i, r in enumerate(df.itertuples(index=False)):
        if isinstance(r.error, str):
            continue
        cost[i] = metrics.cost_per_million_tokens_range_at(r.system, int(r.chips), r.users, r.system_tokens_per_s, r.itl_s_low, r.itl_s_high, econ)
    out[f"{COST}_low"], out[COST], out[f"{COST}_high"] = cost.T
    return out


def run(configs: pd.DataFrame | None = None, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Sweep ``configs`` (default: `grid`) with `lpu.sweep` (ranges on) and `add_costs`: the frame ``scripts/design_space.py`` writes."""
    from .sweep import sweep

    df = sweep(grid() if configs is None else configs, workers=workers, progress=progress)
    return _tidy(add_costs(df.drop(columns=[c for c in DROP if c in df.columns])))


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in a fixed order (configuration, results, costs, breakdowns, error) and ``error`` as None where it ran."""
    first = ["model", "system", "chips", "precision", "users", "plan", "prompt_tokens", "output_tokens", "ttft_s", "itl_s", SPEED,
             "system_tokens_per_s", "total_time_s", COST, f"{COST}_low", f"{COST}_high"]
    ranged = sorted(c for c in df.columns if c.endswith(("_low", "_high")) and c not in first)
    rest = sorted(c for c in df.columns if c not in first and c not in ranged and c != "error")
    out = df[[c for c in first if c in df.columns] + ranged + rest + ["error"]].copy()
    out["error"] = out["error"].astype(object).where(out["error"].notna(), None)
    return out.reset_index(drop=True)


def save(df: pd.DataFrame, path: str | Path = CSV_PATH) -> None:
    """Write the design-space frame as CSV (floats at full precision: `load` reads back the same numbers)."""
    df.to_csv(path, index=False, float_format="%.17g")


def load(path: str | Path = CSV_PATH) -> pd.DataFrame:
    """The design-space frame written by ``scripts/design_space.py`` (default: the bundled ``lpu/data/design_space.csv``).

    Examples
    --------
    >>> df = load()
    >>> set(df.system) >= {"lpu-v1", "lpu-whatif-4nm", "h100"}
    True
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no design-space CSV at {path}; run scripts/design_space.py to write it")
    df = pd.read_csv(path)
    return _tidy(df)


def _ran(df: pd.DataFrame, speed: str, cost: str) -> pd.DataFrame:
    for c in (speed, cost):
        if c not in df.columns:
            raise ValueError(f"df has no column {c!r}; columns: {', '.join(map(str, df.columns))}")
    ok = df[speed].notna() & df[cost].notna()
    if "error" in df.columns:
        ok &= df["error"].isna()
    return df[ok]


def pareto_front(df: pd.DataFrame, min_speed: float | None = None, speed: str = SPEED, cost: str = COST) -> pd.DataFrame:
    """The rows no other row beats on both axes: none is at least as fast per user *and* at least as cheap, and better on one.

    Parameters
    ----------
    df : DataFrame
        Rows of `load` (or any frame with the two columns; an ``error`` column, where present, drops the rows that hold one).
    min_speed : float or None
        A per-user speed target (tokens/s): slower rows are left out before the front is taken.
    speed, cost : str
        The columns to maximise and to minimise.

    Returns
    -------
    DataFrame
        The front's rows, cheapest first (so fastest last); equal rows are all kept.

    Examples
    --------
    >>> d = pd.DataFrame(dict(output_tokens_per_s=[100, 200, 150, 300], usd_per_m_tokens=[1.0, 2.0, 3.0, 4.0]))
    >>> pareto_front(d).index.tolist()
    [0, 1, 3]
    """
    d = _ran(df, speed, cost)
    if min_speed is not None:
        d = d[d[speed] >= min_speed]
    d = d.sort_values([cost, speed], ascending=[True, False], kind="mergesort")
    keep, best_speed, best_cost = [], -np.inf, None
    for idx, s, c in zip(d.index, d[speed].to_numpy(), d[cost].to_numpy()):
        if s > best_speed or (s == best_speed and c == best_cost):  # faster than everything cheaper, or a tie with the last kept
            keep.append(idx)
            best_speed, best_cost = s, c
    return d.loc[keep]


def cheapest_at_speed(df: pd.DataFrame, min_speed: float, by: tuple[str, ...] = ("model", "system"), speed: str = SPEED,
                      cost: str = COST) -> pd.DataFrame:
    """Per group of ``by``, the cheapest row at least ``min_speed`` tokens/s per user (groups that cannot meet it are left out).

    Parameters
    ----------
    df : DataFrame
        Rows of `load`.
    min_speed : float
        The per-user speed target, tokens/s (> 0).
    by : tuple of str
        The columns that make a group (default: one row per model and system).

    Returns
    -------
    DataFrame
        One row per group that meets the target, groups in the order they first appear in ``df`` (the grid's).
    """
    if not min_speed > 0:
        raise ValueError(f"min_speed must be a positive speed in tokens/s per user, got {min_speed!r}")
    d = _ran(df, speed, cost)
    order = {k: i for i, k in enumerate(dict.fromkeys(zip(*(df[b] for b in by))))}  # groups in the frame's order (the grid's)
    d = d[d[speed] >= min_speed].sort_values([cost, speed], ascending=[True, False], kind="mergesort")
    best = d.groupby(list(by), sort=False).head(1)
    return best.iloc[np.argsort([order[k] for k in zip(*(best[b] for b in by))], kind="stable")].reset_index(drop=True)


def rack_fit(models_: tuple[str, ...] = MODELS, systems: tuple[str, ...] = LPU_SYSTEMS, precisions: tuple[str, ...] = LPU_PRECISIONS,
             rack_chips: int = RACK_CHIPS, users: int = 1, prompt_tokens: int = 550, output_tokens: int = 150) -> pd.DataFrame:
    """Which models one rack of ``rack_chips`` chips holds, per LPU generation and precision: `lpu.simulate` on exactly that many.

    Parameters
    ----------
    models_, systems, precisions : tuple of str
        Model presets (or config paths), LPU chips (`LPU_SYSTEMS` by default) and precisions, all combined.
    rack_chips : int
        Chips in one rack: `RACK_CHIPS`, a GroqRack's compute chips (the spare node held back).
    users, prompt_tokens, output_tokens : int
        The load each plan must hold (one user at the calibration row's lengths by default).

    Returns
    -------
    DataFrame
        model, system, precision, weight_gb, rack_sram_gb (``rack_chips`` x the chip's SRAM), capacity_chips
        (`lpu.sram.chips_needed`: the capacity bound, reserve included), fits (a plan on ``rack_chips`` chips places every
        chip's share), plan, tok_s (per user; NaN where it does not fit).
    """
    if not isinstance(rack_chips, (int, np.integer)) or isinstance(rack_chips, bool) or rack_chips < 1:
        raise ValueError(f"rack_chips must be a positive integer, got {rack_chips!r}")
    from .system import simulate

    context = prompt_tokens + output_tokens
    rows = []
    for name, system, p in itertools.product(models_, systems, precisions):
        m, chip = models.get(name), hardware.get(system)
        if not isinstance(chip, hardware.ChipSpec):
            raise ValueError(f"systems must be LPU chips ({', '.join(LPU_SYSTEMS)}), got {system!r}")
        need = sram.chips_needed(m, chip, p, min(context, m.seq_len), users)
        try:
            r = simulate(m, system=system, chips=int(rack_chips), precision=p, users=users, prompt_tokens=prompt_tokens,
                         output_tokens=output_tokens, ranges=False)
            fits, plan, tok_s = True, r.plan.describe(), r.output_tokens_per_s
        except ValueError:  # SRAMCapacityError (a ValueError): some chip's share does not fit
            fits, plan, tok_s = False, "", np.nan
        rows.append(dict(model=name, system=system, precision=p, weight_gb=m.weight_bytes(p) / 1e9,
                         rack_sram_gb=rack_chips * chip.sram_bytes / 1e9, capacity_chips=need.chips, fits=fits, plan=plan, tok_s=tok_s))
    return pd.DataFrame(rows)
