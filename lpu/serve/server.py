"""Running ``lpu serve``: in the foreground (the command line) or in the background (tests, notebooks)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

SWITCH_INTERVAL_S = 0.001  # the interpreter hands its lock between threads this often (default 5 ms): tokens leave on time


def run(host: str = "127.0.0.1", port: int = 8000, checkpoint: str | None = None, tokenizer: str | None = None, warm: bool = True) -> int:
    """Serve until interrupted: the OpenAI-compatible API under ``/v1`` and the race page at ``/``."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:  # the command line says this in one line
        raise ValueError(f"lpu serve needs the serve extra (FastAPI, uvicorn): pip install -e '.[serve]' ({e})") from None
    from ..runtime import Engine

    if bool(checkpoint) != bool(tokenizer):
        raise ValueError("give both --checkpoint and --tokenizer, or neither for the bundled model")
    engine = Engine.from_llama2c(checkpoint, tokenizer) if checkpoint else Engine.default()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    print(f"lpu serve: {engine.config.name} writes the text; race page http://{host}:{port}/ ; OpenAI base_url http://{host}:{port}/v1",
          flush=True)
    uvicorn.run(create_app(engine, warm), host=host, port=port, log_level="warning")
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5) as r:
            return r.status == 200 and bool(json.load(r)["data"])
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def background(port: int | None = None, checkpoint: str | None = None, tokenizer: str | None = None, warm: bool = True,
               timeout_s: float = 120.0) -> Iterator[str]:
    """``with background() as url:`` runs ``lpu serve`` on 127.0.0.1 in a child process, yields its base URL once
    /v1/models answers, and stops it on exit.

    Examples
    --------
    >>> with background() as url:  # doctest: +SKIP
    ...     df = race(url, ["llama2-70b@lpu-v1x576", "llama2-70b@hosted-api"], "ROMEO:")
    """
    port = free_port() if port is None else port
    cmd = [sys.executable, "-m", "lpu", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if checkpoint or tokenizer:
        cmd += ["--checkpoint", str(checkpoint), "--tokenizer", str(tokenizer)]
    if not warm:
        cmd.append("--no-warm")
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(url):
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"lpu serve exited with status {proc.returncode}: {log.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"lpu serve on port {port} did not answer /v1/models within {timeout_s:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
