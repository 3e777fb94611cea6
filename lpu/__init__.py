"""lpu: Groq's LPU (Tensor Streaming Processor) explained and quantified.

``lpu.hardware``, ``lpu.models`` and ``lpu.sram`` load at once; the rest
(``lpu.graph``, ``lpu.schedule``, ``lpu.shard``, ``lpu.system``, ...) and
``lpu.Engine`` and ``lpu.simulate`` load on first use, so the command line starts fast. See
``README.md`` for the layout and ``notebooks/`` for the tour.
"""

import importlib
from importlib.resources import files
from pathlib import Path

# the package's data (bundled model, published figures, measured GPU step times) ships inside it, in the wheel too
DATA_DIR = Path(str(files(__name__) / "data"))

from . import hardware, models, sram  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Engine", "simulate", "sweep", "fitted", "hardware", "models", "sram", "__version__"]
_LAZY = ("result", "graph", "schedule", "shard", "sharded", "system", "checkpoint", "kernels", "quant", "runtime", "metrics", "plots", "widgets",
         "published", "voice", "speech", "sweep", "speculative", "serve")  # lpu.sweep(grid) calls lpu.sweep.sweep


FITTED_MODULES = ("system", "gpu", "result")  # each exposes FITTED: a tuple of lpu.result.Fitted, its family's fitted parameters


def fitted() -> list:
    """Every fitted parameter of the simulator (`lpu.result.Fitted`): LPU system, GPU server, hosted API."""
    out = []
    for name in FITTED_MODULES:
        out.extend(getattr(importlib.import_module(f".{name}", __name__), "FITTED", ()))
    return out


def __getattr__(name):
    if name == "Engine":
        from .runtime import Engine

        return Engine
    if name == "simulate":  # lpu.simulate(...): the function of lpu.system
        from .system import simulate

        return simulate
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lpu' has no attribute {name!r}")
