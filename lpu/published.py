"""Published measurements, read from ``lpu/data/published.csv`` (the one place they are written down).

Each row has the system, model, metric, value, conditions, date, source and
role: ``calibration`` rows are the only ones any parameter is fitted on (one per
fitted parameter); ``calibration-spread`` rows are other, independent
measurements of a calibration system, used only for the fitted parameter's
range; ``validation`` rows are predictions' targets, shown beside the
simulator's output with the error. Rows measured by this project on lent GPUs say so in
their ``conditions`` and ``source``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import DATA_DIR

PUBLISHED_CSV = DATA_DIR / "published.csv"
COLUMNS = ["system", "model", "metric", "value", "unit", "precision", "chips", "batch", "prompt_tokens", "output_tokens",
           "conditions", "date", "source", "role"]
ROLES = ("calibration", "calibration-spread", "validation")


def table(path: Path | str = PUBLISHED_CSV) -> pd.DataFrame:
    """All published rows as a DataFrame (checked: columns, roles, positive values)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"published measurements not found at {path}; they ship inside the package (lpu/data/); reinstall lpu")
    df = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {COLUMNS}")
    bad = df[~df.role.isin(ROLES) | ~(df.value > 0)]
    if len(bad):
        raise ValueError(f"{path}: rows {list(bad.index)} need a role in {ROLES} and a positive value")
    return df


def value(system: str, model: str, metric: str, role: str | None = None, **conditions) -> float:
    """The single published value matching ``system``, ``model``, ``metric`` (and any column=value given)."""
    df = table()
    mask = (df.system == system) & (df.model == model) & (df.metric == metric)
    if role:
        mask &= df.role == role
    for column, v in conditions.items():
        mask &= df[column] == v
    rows = df[mask]
    if len(rows) != 1:
        raise ValueError(f"expected one published row for {system}/{model}/{metric} {conditions or ''}, found {len(rows)}")
    return float(rows.value.iloc[0])


def lpu_system_chips() -> int:
    """Chips of the LPU system of the calibration row (Groq's early-2024 Llama 2 70B system: 576)."""
    rows = table().query("system == 'lpu-v1' and role == 'calibration' and metric == 'output_tokens_per_s'")
    if len(rows) != 1 or rows.chips.isna().any():
        raise ValueError("lpu/data/published.csv needs exactly one lpu-v1 calibration row with its chip count")
    return int(rows.chips.iloc[0])
