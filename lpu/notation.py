"""Notation and constants: the symbols the notebooks use, each with its value from `lpu.hardware` and its source.

`table()` is printed at the start of ``notebooks/02_scheduling.ipynb`` (and notebook 01), so that a
worked problem's "B / BW" or "t_hop" is read off one table, never retyped.
"""

from __future__ import annotations

import pandas as pd

from . import hardware

# (symbol, meaning, ChipSpec attribute, scale, unit); values are read from the spec, never typed here
_LPU = (
    ("f", "clock", "clock_hz", 1e-6, "MHz"),
    ("S", "SRAM per chip", "sram_bytes", 1e-6, "MB"),
    ("n_slice", "MEM slices", "mem_slices", 1, ""),
    ("w", "word (one stream, one cycle)", "word_bytes", 1, "B"),
    ("n_str", "streams", "streams", 1, ""),
    ("BW_str", "stream bandwidth = n_str x w x f", "stream_bandwidth_Bps", 1e-12, "TB/s"),
    ("BW_SRAM", "published SRAM bandwidth", "sram_bandwidth_Bps", 1e-12, "TB/s"),
    ("L", "superlanes (instruction ripple, cycles)", "superlanes", 1, ""),
    ("P_int8", "MXM peak, int8", "peak_int8_ops_per_s", 1e-12, "TOPS"),
    ("P_fp16", "MXM peak, fp16", "peak_fp16_flops_per_s", 1e-12, "TFLOPS"),
    ("BW_c2c", "chip-to-chip bandwidth per direction", "c2c_bandwidth_Bps", 1e-9, "GB/s"),
    ("t_hop", "chip-to-chip hop latency", "c2c_hop_latency_s", 1e9, "ns"),
    ("W", "power per chip", "power_w", 1, "W"),
)
_GPU = (
    ("BW_HBM", "HBM bandwidth", "hbm_bandwidth_Bps", 1e-12, "TB/s"),
    ("M", "memory", "memory_bytes", 1e-9, "GB"),
)


def table(chip: str = "lpu-v1", gpu: str = "h100") -> pd.DataFrame:
    """Symbol, meaning, value (nominal, with its low-high range where sources disagree), unit and source, for ``chip`` and ``gpu``.

    Examples
    --------
    >>> t = table()
    >>> t.set_index("symbol").loc["w", "value"]
    '320'
    """
    rows = []
    for spec_name, entries in ((chip, _LPU), (gpu, _GPU)):
        s = hardware.get(spec_name)
        for symbol, meaning, attr, scale, unit in entries:
            v = getattr(s, attr)
            r = s.range(attr) if attr in dict(s.ranges) else None
            value = f"{v * scale:,.4g}" + (f" ({r.low * scale:,.4g}-{r.high * scale:,.4g})" if r is not None and r.low < r.high else "")
            rows.append(dict(symbol=symbol if spec_name == chip else f"{symbol} ({s.name})", meaning=meaning, value=value, unit=unit,
                             source=s.source_of(attr)))
    return pd.DataFrame(rows)
