"""SIGTERM handled like Ctrl-C: the run unwinds (temporary files removed) and exits 143.

Python turns SIGINT into KeyboardInterrupt, whose unwinding every writer already
handles (atomic writes remove their temporary file); SIGTERM's default is to die on
the spot, leaving the temporary behind. ``Terminated`` subclasses KeyboardInterrupt so
that every ``except KeyboardInterrupt: raise`` path lets it through unchanged.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP: the terminal closed) arrived: unwind like Ctrl-C; the CLI exits 128 + the signal."""

    @property
    def signum(self) -> int:
        return self.args[0] if self.args else signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``Terminated`` in the main thread; the old handler returns after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGHUP too: a closed terminal killed the run on the spot and left a video's temporary file behind.
    signums = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {s: signal.signal(s, _raise_terminated) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside the block SIGINT, SIGTERM and SIGHUP wait: a step that must not stop half-way (a video getting its name
    and then its track record) runs to its end, then the first of them acts as it would have (main thread only:
    elsewhere the block runs as it is). A SIGTERM between a video's rename and its record's write left the video
    without its record, which a resume refuses (the fault matrix's "SIGTERM during a video run, then again", once in a
    CI run under load); SIGKILL still can, and the resume says so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])  # to the handler it would have met (Terminated, KeyboardInterrupt, ...)


def ignore_in_worker() -> None:
    """For worker processes of a pool: the parent alone reacts to SIGINT/SIGTERM.

    A signal to the whole process group (Ctrl-C in a terminal, `timeout`) would otherwise
    kill a worker mid-write (SIGTERM: its temporary file stays) or print its traceback
    (SIGINT). The parent cancels what has not started, lets the running items finish
    (each an atomic write) and shuts the pool down, so no worker outlives it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def restore_sigint() -> None:
    """Undo the package's start-up handler (a quiet exit while the command line loads): Ctrl-C raises
    KeyboardInterrupt again, which every writer unwinds from."""
    import faceveil

    startup = getattr(faceveil, "_startup_sigint", None)
    if startup is not None and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGINT) is startup:
        signal.signal(signal.SIGINT, signal.default_int_handler)
