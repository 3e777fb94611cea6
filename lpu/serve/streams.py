"""Real tokens for many streams at once, generated off the event loop, most urgent first.

Each stream has an `lpu.Engine` of its own (an engine holds one sequence's KV
cache and scratch vectors, so two streams never share one); engines built
from one checkpoint share its weights and are reused when their stream ends.
One generation thread advances the streams one token at a time, always the
stream whose next token is due soonest (earliest deadline first: on one
processor it meets every deadline whenever any order can), never further than
``lookahead_s`` ahead of a stream's schedule, so it idles instead of racing
far ahead of streams that may be abandoned. Tokens reach the event loop
through each stream's `asyncio.Queue`; the numba kernels release the
interpreter lock, and the thread runs them on one core (the bundled model's
small matrices: 2,300 tok/s on one thread against 1,400 on two, measured
here; and two OpenMP threads crawl when the other core is busy).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time

import numba

from ..runtime import Engine

END = object()  # queued after a stream's last token


class EnginePool:
    """Engines for ``template``'s checkpoint, one per stream in flight, reused afterwards (used by the generation thread only)."""

    def __init__(self, template: Engine):
        self.template, self._idle = template, [template]

    def acquire(self) -> Engine:
        if self._idle:
            return self._idle.pop()
        t = self.template  # the same checkpoint object: its weight arrays are shared, not copied
        return Engine(t.checkpoint, t.tokenizer, precision=t.precision)

    def release(self, engine: Engine):
        self._idle.append(engine)


class Stream:
    """One request's generation: ``generate`` arguments, the schedule it is due on, and its token queue.

    ``due_s(i)`` is the monotonic time token ``i`` is due (the generation order);
    the event loop reads `TokenEvent` objects, then `END` (or an exception), from ``queue``.
    """

    def __init__(self, prompt: str, max_tokens: int, temperature: float, top_p: float, seed: int, start_s: float, ttft_s: float,
                 itl_s: float, loop: asyncio.AbstractEventLoop):
        self.prompt, self.sampling = prompt, dict(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        self.start_s, self.ttft_s, self.itl_s = start_s, ttft_s, itl_s
        self.loop, self.queue = loop, asyncio.Queue()
        self.cancelled, self.closed, self.tokens = False, False, 0
        self.engine, self.events = None, None

    def due_s(self, i: int) -> float:
        return self.start_s + self.ttft_s + i * self.itl_s

    def put(self, item):
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed (the server is stopping): nobody waits for this stream
            self.cancelled = True


class Generator:
    """The generation thread (see the module docstring). ``submit(stream)``; ``cancel(stream)`` frees its engine soon."""

    def __init__(self, pool: EnginePool, lookahead_s: float = 1.0):
        self.pool, self.lookahead_s = pool, lookahead_s
        self._heap: list[tuple[float, int, Stream]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._work, name="lpu-serve-generate", daemon=True)
        self._thread.start()

    def _push(self, due_s: float, stream: Stream):
        with self._cv:
            heapq.heappush(self._heap, (due_s, next(self._seq), stream))
            self._cv.notify()

    def submit(self, stream: Stream):
        self._push(stream.due_s(0), stream)

    def cancel(self, stream: Stream):
        stream.cancelled = True
        self._push(0.0, stream)  # popped at once; the stale entry is skipped later

    def _next(self) -> Stream | None:
        with self._cv:
            while self._running:
                if self._heap:
                    wait = self._heap[0][0] - self.lookahead_s - time.monotonic()
                    if wait <= 0 or self._heap[0][2].cancelled:
                        return heapq.heappop(self._heap)[2]
                    self._cv.wait(wait)
                else:
                    self._cv.wait()
            return None

    def _close(self, stream: Stream, last):
        stream.closed = True
        if stream.events is not None:
            stream.events.close()
            self.pool.release(stream.engine)
        stream.put(last)

    def _work(self):
        numba.set_num_threads(1)  # per thread in numba: this thread's parallel kernels run serially
        for _ in self.pool.template.generate("ROMEO:", 2):  # load the compiled kernels before the first request needs them
            pass
        while (stream := self._next()) is not None:
            if stream.closed:
                continue
            if stream.cancelled:
                self._close(stream, END)
                continue
            try:
                if stream.events is None:
                    stream.engine = self.pool.acquire()
                    stream.events = stream.engine.generate(stream.prompt, **stream.sampling)
                ev = next(stream.events, END)
            except Exception as e:  # noqa: BLE001 - a failed generation ends its stream, not the server
                self._close(stream, e)
                continue
            if ev is END:
                self._close(stream, END)
                continue
            stream.put(ev)
            stream.tokens += 1
            self._push(stream.due_s(stream.tokens), stream)

    def close(self):
        with self._cv:
            self._running = False
            self._cv.notify_all()
        self._thread.join(timeout=5)
