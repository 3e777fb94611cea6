"""A race from the client's side: the same prompt to several model ids at once, each token's arrival time measured.

`race` streams one chat completion per id concurrently (a thread each, the
standard library's HTTP client reading the server-sent events) and returns
every token's arrival time as the client saw it, beside the time the
simulated system emits it (the server's pacing, reported with the stream).
`lpu.plots.race_times` draws it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse

import pandas as pd

COLUMNS = ["model", "token", "text", "t_client_s", "t_sim_s", "ttft_sim_s", "itl_sim_s", "queue_s"]


def stream_chat(base_url: str, model: str, prompt: str, max_tokens: int = 64, t0: float | None = None, timeout_s: float = 60.0, **params) -> dict:
    """One streamed chat completion: each event's text and arrival time (seconds after ``t0``, default: the request),
    and the final event's ``x_lpu`` (the simulated system's times). HTTP errors raise RuntimeError with the server's message."""
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout_s)
    body = dict(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, stream=True, **params)
    t0 = time.monotonic() if t0 is None else t0
    try:
        conn.request("POST", url.path.rstrip("/") + "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{model}: HTTP {resp.status}: {json.loads(resp.read() or b'{}').get('error', {}).get('message')}")
        texts, times, x_lpu = [], [], {}
        for line in resp:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise RuntimeError(f"{model}: {event['error']['message']}")
            x_lpu = event.get("x_lpu", x_lpu)
            for choice in event.get("choices", []):
                if choice["delta"].get("content"):
                    times.append(time.monotonic() - t0)
                    texts.append(choice["delta"]["content"])
        return dict(model=model, texts=texts, times=times, x_lpu=x_lpu)
    finally:
        conn.close()


def race(base_url: str, model_ids: list[str], prompt: str, max_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Race ``model_ids`` on ``prompt`` through a running ``lpu serve`` at ``base_url``.

    Returns
    -------
    DataFrame with one row per token event (`COLUMNS`): ``t_client_s``, seconds from the common start to
    its arrival at this client; ``t_sim_s``, when the simulated system emits it (TTFT + i x ITL);
    ``queue_s``, how long the server waited for that id's schedule before starting (0 once cached).
    """
    if not isinstance(model_ids, (list, tuple)) or not model_ids:
        raise ValueError(f"model_ids must be a non-empty list of model ids, got {model_ids!r}")
    results: dict[str, dict | Exception] = {}
    t0 = time.monotonic()

    def one(mid):
        try:
            results[mid] = stream_chat(base_url, mid, prompt, max_tokens, t0, temperature=temperature, seed=seed)
        except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
            results[mid] = e

    threads = [threading.Thread(target=one, args=(m,)) for m in model_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = []
    for mid in model_ids:
        r = results[mid]
        if isinstance(r, Exception):
            raise r
        x = r["x_lpu"]
        rows += [(mid, i, text, t, x["ttft_s"] + i * x["itl_s"], x["ttft_s"], x["itl_s"], x["queue_s"])
                 for i, (text, t) in enumerate(zip(r["texts"], r["times"]))]
    return pd.DataFrame(rows, columns=COLUMNS)
