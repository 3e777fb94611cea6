"""A cache of `lpu.serve.catalog.pacing` results, computed in a process of its own.

Simulating an LPU system of hundreds of chips takes about a second of Python
work. Done in the server's process it would hold the interpreter lock that the
event loop (releasing tokens on time) and the generation thread need, so one
worker process computes the LPU pacings, one at a time: the server's requests
first, then a warm-up list (the ids of /v1/models and the likely request
shapes) while nothing else waits. GPU servers (milliseconds) and the hosted
profile (a table) are computed at once on a thread of their own, never queued
behind an LPU system. Identical keys share one computation.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .catalog import ModelId, pacing

Key = tuple  # (model_id, users, prompt_tokens, output_tokens): the arguments of catalog.pacing


def _exit_with_parent(parent_pid: int):
    """In the worker: end it once the server's process has gone, however that ended (a killed server leaves no orphan)."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _slow(model_id: str) -> bool:
    """Whether pacing ``model_id`` needs the static schedule of an LPU system (the worker process's job)."""
    try:
        return ModelId.parse(model_id).lpu
    except ValueError:
        return False  # pacing() raises the error at once, on the quick thread


class Schedules:
    """``get(key)`` returns a Future of the `Pacing` (or of the ValueError `pacing` raised) for ``key``.

    Parameters
    ----------
    warm : keys to compute while no request waits, in this order.
    """

    def __init__(self, warm: list[Key] = ()):
        self._done: dict[Key, Future] = {}
        self._urgent: collections.deque[Key] = collections.deque()
        self._warm = collections.deque(warm)
        self._cv = threading.Condition()
        self._closed = False
        self._pool = self._new_pool()
        self._quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpu-serve-quick-schedules")
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
                if not _slow(key[0]):
                    fut = self._done[key] = self._quick.submit(pacing, *key)
                    return fut
                fut = self._done[key] = Future()
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
                    if key not in self._done and not _slow(key[0]):
                        self.get(key)
                    elif key not in self._done:
                        fut = self._done[key] = Future()
                        return key, fut
                self._cv.wait()
            return None

    def _run(self):
        while (job := self._next()) is not None:
            key, fut = job
            try:
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
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._quick.shutdown(wait=False, cancel_futures=True)
