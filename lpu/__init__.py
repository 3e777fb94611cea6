"""lpu: Groq's LPU (Tensor Streaming Processor) explained and quantified.

See ``notebooks/01_architecture.ipynb`` for the tour and ``README.md`` for the layout.
"""

from . import hardware, models, sram

__version__ = "0.1.0"
__all__ = ["hardware", "models", "sram", "__version__"]
