"""The two helper threads of a video job: decoding ahead of detection, encoding behind it."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from ..io.video import VideoWriter

_END = object()

STAGES = ("decode", "detect", "anonymize", "encode")


class StageClock:
    """Busy seconds per stage of one video job (each stage runs in one thread, so no lock is needed).

    Decode and encode run in their own threads, so a stage's busy time is its share of work, not of
    wall time: the slowest stage bounds the fps; the others overlap it.
    """

    def __init__(self):
        self.busy = dict.fromkeys(STAGES, 0.0)

    def timed(self, stage: str, fn: Callable) -> Callable:
        def run(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.busy[stage] += time.perf_counter() - t
        return run

    def iterate(self, stage: str, iterable: Iterable) -> Iterator:
        it = iter(iterable)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.busy[stage] += time.perf_counter() - t
                return
            self.busy[stage] += time.perf_counter() - t
            yield item

    def as_json(self) -> dict:
        return {k: round(v, 3) for k, v in self.busy.items()}


def background(iterable: Iterable, size: int = 8) -> Iterator:
    """Run ``iterable`` in a thread, ``size`` items ahead; its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(size)
    stop = threading.Event()

    def run():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    t = threading.Thread(target=run, daemon=True, name="faceveil-decode")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


class EncoderThread:
    """Feeds a VideoWriter from a queue, so encoding overlaps detection."""

    def __init__(self, writer: VideoWriter, size: int = 8, write: Callable | None = None):
        self.writer = writer
        self._write = write or writer.write
        self.q: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="faceveil-encode")
        self.thread.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as exc:
                    self.error = exc

    def write(self, rgb: np.ndarray, pts: int | None, duration: int | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((rgb, pts, duration))

    def close(self) -> None:
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error
