"""Append-only JSON-lines manifests that survive kill -9.

Each entry is one line written with a single ``write`` and ``fsync``ed before
the next, so a crash can leave at most the last line torn; readers ignore such
a tail and the appender cuts it off before writing again (otherwise the next
entry would be glued onto it). A damaged line anywhere else is an error.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from ..errors import InputError, UsageError
from .atomic import atomic_path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sample_sha256(path: str | os.PathLike, part: int = 1 << 20) -> str:
    """SHA-256 of a file's size and its first and last ``part`` bytes: a video's content key, cheap at any size."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(f"{size}:".encode() + f.read(part))
        f.seek(max(size - part, 0))
        h.update(f.read(part))
    return h.hexdigest()


def read_manifest(path: str | os.PathLike) -> tuple[list[dict], int]:
    """(entries, size in bytes of the intact part). A torn last line is left out."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[dict] = []
    good = 0
    lines = data.split(b"\n")
    # After the last b"\n" comes either b"" (clean end) or a torn line.
    for n, raw in enumerate(lines[:-1], 1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            if n == len(lines) - 1 and lines[-1] == b"":
                break  # a last line that is complete but damaged: torn as well
            raise InputError(f"{path}:{n}: damaged manifest line (not a JSON object)") from None
        entries.append(entry)
        good += len(raw) + 1
    return entries, good


_OPEN_FDS: set[int] = set()


def _close_in_child() -> None:
    # A forked worker must not keep the manifest (and its lock) open: after a kill -9 of the run, a worker
    # still exiting would otherwise hold the lock and refuse the resume.
    for fd in list(_OPEN_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _OPEN_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class ManifestWriter:
    """Appends entries durably; cuts off a torn tail first."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd = -1
        self.appended = 0  # entries this writer has appended
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        _OPEN_FDS.add(self._fd)
        try:
            _lock(self._fd, self.path)  # one writer at a time: two would write over each other's lines
            _, good = read_manifest(self.path)
        except BaseException:
            self.close()
            raise
        os.ftruncate(self._fd, good)
        os.lseek(self._fd, good, os.SEEK_SET)
        os.fsync(self._fd)
        if created:  # make the new directory entry itself durable
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def append(self, entry: dict) -> None:
        data = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.appended += 1

    def close(self) -> None:
        if self._fd >= 0:
            _OPEN_FDS.discard(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(fd: int, path: Path) -> None:
    """An exclusive lock on the open manifest, dropped by the kernel when the process ends (kill -9 included)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one run per output folder is then up to the user
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ManifestBusy(f"{path}: another faceveil run is writing into this output folder; "
                           "wait for it to end, or use another folder") from None


class ManifestBusy(InputError):
    """Another process holds the manifest."""


def rewrite_manifest(path: str | os.PathLike, entries: Iterable[dict]) -> None:
    """Replace the manifest atomically (a crash leaves the old one whole)."""
    text = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())


# The settings a run records beside its outputs, and the check that a resume uses the same ones: the dataset
# mode's manifest lines (dataset/job.py) and a video's track record (video/record.py).

def settings_key(settings: dict) -> str:
    """A short digest of ``settings`` (JSON with sorted keys): equal settings, equal key."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def check_settings(entries: list[dict], settings: dict, key: str, where: str | os.PathLike,
                   recorded_in: str | os.PathLike | None = None,
                   advice: str = "use a new output folder or the same settings") -> None:
    """Raise UsageError (one line: ``where``, each setting that differs, here and as recorded in
    ``recorded_in``) when an entry was made under another ``key`` than this run's ``settings``."""
    other = [e for e in entries if e.get("job") != key]
    if not other:
        return
    recorded_in = where if recorded_in is None else recorded_in
    diff: dict = {}
    for e in other:
        theirs = e.get("settings", e)  # label lines carry the job's settings; image lines hold them at the top
        for k in settings:
            if k in theirs and theirs[k] != settings[k] and k not in diff:
                diff[k] = theirs[k]
        if "keep" in settings and "keep" not in theirs and "method" in theirs and "keep" not in diff:
            diff["keep"] = None  # (--keep-* is recorded only when given)
        elif "keep" in theirs and "keep" not in settings and "keep" not in diff:
            diff["keep"] = theirs["keep"]
    what = "; ".join(f"{k}: {_show(settings.get(k))} here, {_show(v)} in {recorded_in}"
                     for k, v in sorted(diff.items()))
    raise UsageError(f"{where}: made with other settings ({what or 'format, face classes or output options'}); "
                     f"{advice}")


def _show(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)
