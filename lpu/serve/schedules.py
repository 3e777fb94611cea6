"""A cache of `lpu.serve.catalog.pacing` results, computed in a process of its own.

Simulating an LPU system of hundreds of chips takes about a second of Python
work. Done in the server's process it would hold the interpreter lock that the
event loop (releasing tokens on time) and the generation thread need, so one
worker process computes every pacing, one at a time: the server's requests
first, then a warm-up list (the ids of /v1/models and the likely request
shapes) while nothing else waits. Identical keys share one computation.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .catalog import HOSTED, pacing

Key = tuple  # (model_id, users, prompt_tokens, output_tokens): the arguments of catalog.pacing


def _exit_with_parent(parent_pid: int):
    """In the worker: end it once the server's process has gone, however that ended (a killed server leaves no orphan)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class Schedules:
    """``get(key)`` returns a Future of the `Pacing` (or of the ValueError `pacing` raised) for ``key``.

    Parameters
    ----------
    warm : keys to compute while no request waits, in this order.
    in_process : compute in a thread of this process instead (for debugging; the server holds its lock meanwhile).
    """

    def __init__(self, warm: list[Key] = (), in_process: bool = False):
        self._done: dict[Key, Future] = {}
        self._urgent: collections.deque[Key] = collections.deque()
        self._warm = collections.deque(warm)
        self._cv = threading.Condition()
        self._closed = False
        self._in_process = in_process
        self._pool = None if in_process else self._new_pool()
        self._thread = threading.Thread(target=self._run, name="lpu-serve-schedules", daemon=True)
        self._thread.start()

    @staticmethod
    def _new_pool() -> ProcessPoolExecutor:
        # spawn: a fresh interpreter (forking a process that runs numba's OpenMP threads is unsafe)
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_exit_with_parent,
                                   initargs=(os.getpid(),))

    def get(self, key: Key) -> Future:
        with self._cv:
            fut = self._done.get(key)
            if fut is None:
                fut = self._done[key] = Future()
                if key[0].endswith(f"@{HOSTED}"):  # a published profile: nothing to simulate, no need to wait in line
                    fut.set_result(pacing(*key))
                    return fut
                self._urgent.append(key)
                self._cv.notify()
            return fut

    def _next(self) -> tuple[Key, Future] | None:
        with self._cv:
            while not self._closed:
                if self._urgent:
                    key = self._urgent.popleft()
                    return key, self._done[key]
                while self._warm:
                    key = self._warm.popleft()
                    if key not in self._done:
                        fut = self._done[key] = Future()
                        return key, fut
                self._cv.wait()
            return None

    def _run(self):
        while (job := self._next()) is not None:
            key, fut = job
            try:
                if self._in_process:
                    fut.set_result(pacing(*key))
                    continue
                try:
                    fut.set_result(self._pool.submit(pacing, *key).result())
                except BrokenProcessPool:  # the worker died (killed, out of memory): once more in a fresh one
                    self._pool = self._new_pool()
                    fut.set_result(self._pool.submit(pacing, *key).result())
            except Exception as e:  # noqa: BLE001 - bad ids and misfits reach the request that asked, as its error
                fut.set_exception(e)

    def close(self):
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
