"""``lpu serve``: an OpenAI-compatible endpoint whose real tokens leave at the times simulated systems would emit them.

- `catalog`: model ids ``MODEL@SYSTEM[xCHIPS][-PRECISION]`` and their pacing from `lpu.simulate`
- `schedules`: the pacing cache, computed in a process of its own
- `streams`: engines per stream and the generation thread (earliest deadline first)
- `text`: the chat template of the small models, stop sequences
- `app`: the FastAPI application (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, the race page ``/``)
- `server`: ``run`` (the command line), ``background`` (a server in a child process, for tests and notebooks)
- `race`: the client side of a race, token arrival times beside the simulated ones

Needs the ``serve`` extra (FastAPI, uvicorn) for the server; `race` and `background` need only the standard library.
"""

from .catalog import KNOWN_IDS, ModelId, Pacing, pacing
from .race import race
from .server import background, run

__all__ = ["KNOWN_IDS", "ModelId", "Pacing", "pacing", "race", "background", "run"]
