"""Progress bars on stderr: tqdm on a terminal; whole lines every few seconds anywhere else.

tqdm redraws its bar in place with '\\r', which a log file or CI output keeps as one
ever-growing line (or hundreds of fragments). When stderr is not a terminal the bar is
written as a plain line at most every LOG_INTERVAL seconds, plus the final state.
Use ``from faceveil.progress import tqdm`` wherever ``from tqdm import tqdm`` was used.
``still_working`` keeps a bar saying something while one item takes long.
"""
from __future__ import annotations

import contextlib
import re
import sys
import threading
from typing import Callable

from tqdm import tqdm as _tqdm

LOG_INTERVAL = 5.0  # seconds between lines when stderr is not a terminal
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Lines:
    """A file for tqdm that turns its in-place redraws into lines."""

    def __init__(self, f):
        self._f = f
        self._last = None

    def write(self, s: str) -> None:
        text = _ESCAPES.sub("", s).replace("\r", "").strip()
        if text and text != self._last:  # tqdm redraws the same state on close
            self._f.write(text + "\n")
            self._last = text

    def flush(self) -> None:
        self._f.flush()


def _isatty(f) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False


class tqdm(_tqdm):  # noqa: N801 - a drop-in for tqdm.tqdm
    def __init__(self, *args, **kwargs):
        f = kwargs.get("file") or sys.stderr
        if not kwargs.get("disable") and not _isatty(f):
            kwargs["file"] = _Lines(f)
            kwargs["mininterval"] = max(kwargs.get("mininterval") or 0, LOG_INTERVAL)
            kwargs.pop("dynamic_ncols", None)
            kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def still_working(bar: _tqdm, current: Callable[[], str]):
    """While the block runs, every LOG_INTERVAL seconds in which ``bar`` did not move, it says it is still
    working on ``current()`` (a line where stderr is no terminal): a slow file showed 0/301 for 55 s."""
    stop = threading.Event()

    def beat() -> None:
        last = bar.n
        while not stop.wait(LOG_INTERVAL):
            if bar.n == last:
                bar.set_postfix_str(f"still working on {current()}")
            last = bar.n

    thread = threading.Thread(target=beat, name="faceveil-progress", daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
