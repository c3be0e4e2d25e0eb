"""Atomic file writes: a temporary file in the target folder, then rename."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    On any exception (Ctrl-C included) the temporary file is removed, so a
    half-written output never appears under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run tell a dead writer's leftover from a live one's file.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp" + target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


# atomic_path's names: "." + target name + "." + writer pid + "." + mkstemp's 8 characters + ".tmp" + suffix.
_TMP_NAME = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folders) -> int:
    """Remove atomic_path's temporary files in ``folders`` (not below) whose writer process is gone.

    Only this module's naming with a pid counts, and a file whose pid is a live process stays
    (a run writing into the same folder right now). Returns how many were removed.
    """
    n = 0
    for folder in {Path(f) for f in folders}:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # missing or unreadable: nothing of ours there
            continue
        for e in entries:
            m = _TMP_NAME.match(e.name)
            if m is None or not e.is_file(follow_symlinks=False) or _alive(int(m["pid"])):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(e.path)
                n += 1
    return n
