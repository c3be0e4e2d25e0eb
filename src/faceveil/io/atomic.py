"""Atomic file writes: a temporary file in the target folder, then rename."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import FaceveilError, UsageError, one_line

try:
    import fcntl
except ImportError:  # Windows: no flock; the pid in a temporary's name is all a sweep can go by there
    fcntl = None


def _fsync_path(path: Path, directory: bool = False) -> None:
    """Push ``path``'s data (or a folder's new entries) to the disk, so a crash cannot undo a rename."""
    try:
        fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY)
    except OSError:
        if directory:  # some platforms and file systems cannot open a folder: the rename is still atomic
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


# The process's umask, read once at import (reading it means setting it): new files get what open() would give them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _mode_for(target: Path) -> int:
    """The replaced file's own permissions (an --in-place or --overwrite rewrite keeps a 0600 photo private), else a
    new file's under the umask (mkstemp's 0600 would hide outputs from the group a umask of 002 shares them with)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows)
PATH_MAX = 4096  # bytes in a whole path (Linux)


def too_long(path: str | os.PathLike) -> str | None:
    """Why ``path`` can never be made (a name over NAME_MAX bytes, or the whole over PATH_MAX), or None. Said
    before any work even where its folders do not exist yet (the system then says "no such file" first)."""
    whole = os.fsencode(os.path.abspath(path))
    if len(whole) >= PATH_MAX:
        return f"File name too long (the path has over {PATH_MAX} bytes)"
    if any(len(part) > NAME_MAX for part in whole.split(b"/")):
        return f"File name too long (a name over {NAME_MAX} bytes)"
    return None


def refuse_too_long(*paths: str | os.PathLike | None) -> None:
    """Bad usage naming the first of ``paths`` (None: an option not given) that ``too_long`` says can never be
    looked up or made: one line before any work, where the system's error at the first look was a traceback."""
    for path in paths:
        why = too_long(path) if path is not None else None
        if why:
            raise UsageError(f"{one_line(path)}: {why}")


def cut_name(name: str, budget: int) -> str:
    """``name`` cut to at most ``budget`` bytes on disk, whole characters only."""
    while len(os.fsencode(name)) > budget:
        name = name[:-1]
    return name


def fit_name(name: str, tail: str) -> str:
    """``name`` and ``tail``, or where that is over NAME_MAX bytes, ``name`` cut and told apart from others cut alike
    by a hash of it: ``<cut name>.<16 hex digits of its SHA-256><tail>``."""
    if len(os.fsencode(name + tail)) <= NAME_MAX:
        return name + tail
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f"{cut_name(name, NAME_MAX - 18 - len(os.fsencode(tail)))}.{digest}{tail}"


# Every temporary faceveil makes carries this word after its target's name: the sweep removes nothing without it,
# so a user's ".notes.99999.abcdefgh.tmp" (atomic's naming before the marker) is never taken for one of faceveil's.
_MARK = "faceveil"


def temp_affixes(name: str, suffix: str = "", folder: bool = False) -> tuple[str, str]:
    """mkstemp's (suffix, prefix) for a temporary file beside ``name``: ".<name>.faceveil.<pid>." and
    ".tmp<suffix>"; ``folder``: mkdtemp's for a temporary folder, ".tmpdir" (the sweep tells the two kinds apart by
    it, and removes a folder only where faceveil makes one). ``name`` is cut so that the whole (with mkstemp's 8
    characters) fits NAME_MAX: a legal name of 231 bytes or more could never be written."""
    prefix_end, tail = f".{_MARK}.{os.getpid()}.", ".tmpdir" if folder else ".tmp" + suffix
    budget = NAME_MAX - len(os.fsencode(f".{prefix_end}{tail}")) - 8
    return tail, f".{cut_name(name, budget)}{prefix_end}"


# This process's temporary files not yet renamed nor removed. A forced exit (batch's os._exit once a worker's
# unwinding has outlived its grace: its main thread stuck in an fsync or an encoder) removes them first
# (remove_live_temporaries): os._exit runs no except clause, and under load a kill -9 test found one left.
_LIVE: set[Path] = set()


def remove_live_temporaries() -> None:
    """Remove this process's temporary files still open for writing (make_temporary's, before their rename): for a
    forced exit, from another thread, while the main thread may still be writing one (its data goes with the name;
    a rename that wins the race leaves a whole, fsynced output). Never raises."""
    for path in list(_LIVE):
        with contextlib.suppress(OSError):
            path.unlink()


def make_temporary(folder: Path, name: str, suffix: str = "", directory: bool = False) -> tuple[Path, int | None]:
    """A new temporary file (``directory``: folder) in ``folder`` for ``name`` (temp_affixes' naming), and an open
    descriptor that holds an exclusive flock on it: close it (``release``) only once the temporary has its final
    name or is removed. A sweep removes a temporary only when it can take that lock: the pid in the name alone
    took a live writer in another pid namespace (a container writing to a shared folder) for a dead one, and its
    temporary was removed under it. None: no flock at all (Windows), where the pid alone tells.

    Between the making and the lock a sweep may find the name unlocked, its pid not one of its namespace's, and
    remove it: the name is checked to be still this file once the lock is held, else another is made."""
    for _ in range(5):
        if directory:
            path = Path(tempfile.mkdtemp(*temp_affixes(name, folder=True), dir=folder))
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if fcntl is not None else None
            except BaseException:
                os.rmdir(path)
                raise
        else:
            fd, tmp = tempfile.mkstemp(*temp_affixes(name, suffix), dir=folder)
            path = Path(tmp)
            _LIVE.add(path)  # dropped by atomic_path once renamed or removed
            if fcntl is None:  # and Windows cannot rename a file that is open
                os.close(fd)
                fd = None
        if fd is None:
            return path, None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # a sweep holds it only for a look (and a removal)
            except OSError:  # a file system without flock: a sweep cannot lock it either, and so leaves it
                return path, fd
            held, named = os.fstat(fd), os.lstat(path)
            if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                return path, fd
        except FileNotFoundError:  # a sweep removed it before the lock: make another
            pass
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                (os.rmdir if directory else os.unlink)(path)
            _LIVE.discard(path)
            raise
        os.close(fd)
        _LIVE.discard(path)  # removed by a sweep: another is made
    raise OSError(errno.EAGAIN, "its temporary was removed as soon as it was made, five times over (another run's "
                                "sweep?)", str(path))


def release(lock: int | None) -> None:
    """Close ``make_temporary``'s descriptor: its flock goes with it."""
    if lock is not None:
        os.close(lock)


# Moves made ahead of a commit, undone where the commit never happens (a video's --preview stills moved into place
# and its earlier track record set aside, just before the video gets its name). Each move is noted in its temporary
# folder's journal before it is made, so that whatever kills the writer, the sweep that removes the folder can tell
# what was moved: the writer's own failure undoes them at once (undo_moves), a SIGKILL's by the next run's sweep
# while the commit's temporary (``pending``) is still there. Written here: no library journals renames.
_JOURNAL = "moves.journal"  # one JSON list a line: ["pending", rel], then ["move", from, to, identity] / ["mkdir", rel]


def _rel(base: Path, path: Path) -> str:
    return os.path.relpath(path, base)


def _under(base: Path, rel) -> Path:
    """``base / rel`` for a journal's path, which must stay under ``base`` (ValueError otherwise: a journal made by
    hand moves nothing outside the folder it was found in)."""
    if not isinstance(rel, str) or os.path.isabs(rel) or ".." in Path(rel).parts or rel in ("", "."):
        raise ValueError(f"not a path under the journal's folder: {rel!r}")
    return base / rel


def _note(folder: Path, *entry, start: bool = False) -> None:
    """One line of ``folder``'s journal (``start``: its first, a new journal)."""
    with open(folder / _JOURNAL, "w" if start else "a") as f:
        f.write(json.dumps(list(entry)) + "\n")


def journal_start(folder: Path, pending: Path) -> None:
    """Start ``folder``'s journal (a temporary folder of make_temporary's): its moves stand once ``pending`` (a
    temporary beside ``folder``) has its final name, and are undone while it is still there."""
    _note(folder, "pending", _rel(folder.parent, pending), start=True)


def journal_move(folder: Path, src: Path, dst: Path) -> None:
    """``os.replace(src, dst)`` (both under ``folder``'s parent), noted in ``folder``'s journal first, with the file's
    identity (file_identity: a rename keeps it): the undo moves back only that file, not one another run put there
    since."""
    _note(folder, "move", _rel(folder.parent, src), _rel(folder.parent, dst), file_identity(src))
    os.replace(src, dst)


def file_identity(path: Path) -> list[int]:
    """Device, inode, size and modification time: an inode number alone is soon reused for another file."""
    st = os.lstat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def journal_mkdir(folder: Path, path: Path) -> None:
    """``path.mkdir()``, noted in ``folder``'s journal first (the undo removes it again where it is empty)."""
    _note(folder, "mkdir", _rel(folder.parent, path))
    path.mkdir()


def undo_moves(folder: Path, only_uncommitted: bool = False) -> None:
    """The moves of ``folder``'s journal undone, newest first: each only where it was made (the moved file itself at
    its target, its source free), a folder it made removed where empty. ``only_uncommitted``: only while the
    journal's pending temporary is still there (a sweep: the writer died before or after its commit). Never raises:
    what cannot be put back stays where it is."""
    base = folder.parent
    try:
        entries = []
        for line in (folder / _JOURNAL).read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # a line cut by the kill: its move was not made, nor any after it
                break
        if not entries or entries[0][0] != "pending":
            return
        if only_uncommitted and not os.path.lexists(_under(base, entries[0][1])):
            return  # committed: what was moved stays moved
        steps = [(op[0], [_under(base, r) for r in op[1:3]], op[3:]) for op in entries[1:]]
    except (OSError, ValueError, TypeError, IndexError):
        return
    for op, paths, identity in reversed(steps):
        with contextlib.suppress(OSError, TypeError, ValueError):
            if op == "move" and not os.path.lexists(paths[0]):
                if [file_identity(paths[1])] == identity:  # not there: never moved, or moved on by someone else
                    os.replace(paths[1], paths[0])
            elif op == "mkdir":
                os.rmdir(paths[0])


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, replace: bool = True, sweep: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success.

    ``replace=False``: a ``target`` that exists by then (another run wrote it since this one checked) is not
    replaced: FileExistsError, the temporary file removed. Two runs into one folder replaced each other's outputs.

    ``sweep``: first remove the temporaries killed writers left in ``target``'s folder (remove_stale_temporaries),
    for a file a command writes once (--report, detect --json, a bank, a people file): a SIGKILL while it was written
    left one that no later run removed. A batch leaves it off: it sweeps its output folders once, up front, not at
    every image.

    On any exception (Ctrl-C included) the temporary file is removed, so a
    half-written output never appears under the final name. The file is fsynced
    before the rename and the folder after it: an output that is in place (or in
    a manifest) survives a power cut, and a full disk shows up here, not later.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        # Housekeeping only: whatever a sweep meets (an odd name, a folder it may not read) must never cost the
        # result it runs before; remove_stale_temporaries skips what it cannot handle, this is the last guard.
        with contextlib.suppress(Exception):
            remove_stale_temporaries([target.parent])
    tmp_path = lock = None
    try:
        # The writer's pid in the name, and its flock held until the rename, tell a later run's sweep a dead
        # writer's leftover from a live one's file. Made inside the try: a signal turned into an exception (Ctrl-C,
        # a worker's parent dying) right after the file exists still removes it.
        tmp_path, lock = make_temporary(target.parent, target.name, target.suffix)
        yield tmp_path
        _fsync_path(tmp_path)
        os.chmod(tmp_path, _mode_for(target))
        if replace:
            os.replace(tmp_path, target)
        else:
            _move_no_clobber(tmp_path, target)
    except BaseException:
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()
        raise
    finally:
        _LIVE.discard(tmp_path)
        release(lock)  # after the rename or the removal: never a moment where the name is there unlocked
    _fsync_path(target.parent, directory=True)


def exists_now(target: Path) -> FileExistsError:
    """The error for an output that another writer made after this run checked (``replace=False``)."""
    return FileExistsError(errno.EEXIST, "exists now (another run wrote it since this one started?); not replaced "
                                         "(--overwrite replaces it)", str(target))


def _move_no_clobber(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless that exists, atomically: a hard link fails on an existing name (a
    rename would replace it). Where links are not supported (FAT, some network shares), a check then a rename."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise exists_now(target) from None
    except OSError:
        if os.path.lexists(target):
            raise exists_now(target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def write_bytes_atomic(target: str | os.PathLike, data: bytes, replace: bool = True, sweep: bool = False) -> None:
    """Write ``data`` to ``target`` atomically; raise unless every byte reached the file. ``sweep``: atomic_path's."""
    write_atomic(target, lambda f: f.write(data), replace, sweep)


def write_atomic(target: str | os.PathLike, write: Callable[[BinaryIO], int], replace: bool = True,
                 sweep: bool = False) -> None:
    """Write ``target`` atomically through ``write(f)``, which returns the bytes it wrote (in pieces: a video's track
    record is streamed); raise unless every byte reached the file. ``sweep``: atomic_path's.

    The size is checked after the flush because a writer that stops short without
    raising (Pillow's JPEG encoder on a full disk did) must never pass for a success.
    """
    target = Path(target)
    try:
        with atomic_path(target, replace, sweep) as tmp:
            with open(tmp, "wb") as f:
                wrote = write(f)
                f.flush()
                size = os.fstat(f.fileno()).st_size
            if size != wrote:
                raise FaceveilError(f"{target}: cannot write: only {size} of {wrote} bytes reached the disk "
                                    "(disk full?)")
    except OSError as exc:
        raise FaceveilError(f"{target}: cannot write: {exc.strerror or exc}") from None


# temp_affixes' names, nothing looser: "." + a name + ".faceveil." + the writer's pid + "." + mkstemp's 8 characters
# (lower case, digits, "_") + ".tmp" + the target's suffix (a file), or + ".tmpdir" (a folder). The pid has no leading
# zero (os.getpid's digits); a name of another form is not faceveil's, whatever it looks like.
_TMP_NAME = re.compile(r"\..+\." + _MARK + r"\.(?P<pid>[1-9][0-9]{0,9})\.[a-z0-9_]{8}"
                       r"(?:(?P<folder>\.tmpdir)|\.tmp(?:\.[^.]*)?)", re.DOTALL)


# The largest pid a writer can have: pid_t is a 32-bit int (Linux's pid_max is at most 2**22). A bigger number in a
# name is no writer's, and os.kill would raise OverflowError on it (a traceback after all of a run's work).
_PID_MAX = 2**31 - 1


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may be alive; True wherever that cannot be told (the file is then left alone)."""
    if not 0 < pid <= _PID_MAX:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # someone else's live process; a pid os.kill cannot take
        return True
    return True


def _remove_if_unlocked(path: str, is_folder: bool, pid: int) -> bool:
    """Remove the temporary ``path`` if its writer is gone: no process ``pid`` here and, where flock exists, its
    lock free (taken here, without waiting, and held through the removal). Anything else leaves it."""
    if _alive(pid):  # this process's own, or a live one of this pid namespace: no need to open it
        return False
    if fcntl is None:
        fd = None
    else:
        flags = os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)  # a pipe or a link put there meanwhile: no wait, no follow
        if is_folder:
            fd = os.open(path, flags | os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        else:
            try:  # an exclusive flock over NFS needs a descriptor open for writing
                fd = os.open(path, flags | os.O_RDWR)
            except PermissionError:
                fd = os.open(path, flags | os.O_RDONLY)
    try:
        if fd is not None:
            held = os.fstat(fd)
            if not (stat.S_ISDIR if is_folder else stat.S_ISREG)(held.st_mode):
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live writer holds it (whatever its pid says here), or no flock: nothing proves it dead
                return False
            named = os.lstat(path)
            if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):  # renamed into place meanwhile
                return False
        if is_folder:  # a video's --preview stills not yet moved into place, and the moves made for its commit
            undo_moves(Path(path), only_uncommitted=True)
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
        return True
    finally:
        if fd is not None:
            os.close(fd)


def remove_stale_temporaries(folders) -> int:
    """Remove atomic_path's temporary files (and a video's temporary stills folders) in ``folders`` (not below)
    whose writer process is gone.

    Only temp_affixes' naming counts (_TMP_NAME, with faceveil's marker), and only of the kind faceveil makes under
    it: a regular file for a file's name, a folder for a ".tmpdir" name (never a link, a pipe, or a folder under a
    file's name). A temporary stays while its writer is alive: its pid a live process here, or its flock held
    (make_temporary: a writer in another pid namespace, whose pid means nothing here).
    Returns how many were removed. Never raises: an entry it cannot look at or remove is left as it is (the sweep
    runs before a command's result is written).
    """
    n = 0
    for folder in {Path(f) for f in folders}:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # missing or unreadable: nothing of ours there
            continue
        # folders first: a stills folder's journal asks whether its video's temporary is still there
        for e in sorted(entries, key=lambda e: not e.name.endswith(".tmpdir")):
            try:
                m = _TMP_NAME.fullmatch(e.name)
                if m is None:
                    continue
                is_folder = m["folder"] is not None
                if not (e.is_dir(follow_symlinks=False) if is_folder else e.is_file(follow_symlinks=False)):
                    continue
                n += _remove_if_unlocked(e.path, is_folder, int(m["pid"]))
            except (OSError, ValueError):  # gone meanwhile, not ours to remove (permissions): left alone
                continue
    return n
