"""Finding input files and where each one's output goes."""
from __future__ import annotations

import errno
import re
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UsageError, one_line
from .atomic import refuse_too_long
from .video import is_video_path


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    rel: str  # the name shown in progress and reports


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or below it, after resolving symlinks and ``..``."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


# Media suffixes an output name may carry that faceveil reads or knows but does not write: such a -o is no folder.
UNWRITTEN_MEDIA = {".gif", ".jxl", ".svg", ".pdf", ".ico", ".apng"}
# Other pictures and videos faceveil neither reads nor writes: in a folder they are skipped like any other file, but
# named in a warning (a user publishing OUT/ would otherwise miss them: "6 non-image files skipped").
# .hif: the HEIF Canon and Fujifilm cameras write; .heics/.avifs: HEIF/AVIF sequences.
OTHER_MEDIA = UNWRITTEN_MEDIA | {".jp2", ".j2k", ".jpx", ".jxr", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".psd", ".pcx",
                                 ".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw",
                                 ".exr", ".hdr", ".hif", ".heics", ".avifs", ".3gp", ".3g2", ".mpg", ".mpeg", ".ts",
                                 ".mts", ".m2ts", ".mxf", ".dv", ".wmv", ".flv", ".ogv", ".vob"}


# What reads as a file name's extension on -o (`o.txt`, `out.jpeg2`): not `run.2026-12-07` or `v1.0-final` folders.
_FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}")


def output_folders(jobs) -> set[Path]:
    """The jobs' output folders and their .faceveil/ (video track records, see video.tracks_path)."""
    return {d for j in jobs for d in (j.dst.parent, j.dst.parent / ".faceveil")}


def is_hidden(rel: Path) -> bool:
    """A hidden file, or one in a hidden folder (.git, faceveil's own .faceveil/, temp files): never an input."""
    return any(part.startswith(".") for part in rel.parts)


def plan_jobs(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike | None,
    accept: Callable[[Path], bool],
    in_place: bool = False,
    unfollowed: list[Path] | None = None,
    special: list[tuple[Path, str]] | None = None,
) -> tuple[list[Job], list[Path]]:
    """Map inputs to outputs: a file goes to OUT/name, a folder's tree is mirrored under OUT.

    One input file and an OUT that names a supported file (``-o blurred.jpg``) and is no
    folder: that file is the output. Returns the jobs and the files inside folders that
    were skipped (not a supported type). Raises UsageError for a missing input, an output
    that would overwrite or sit inside an input (unless ``in_place``), or two inputs that
    would write one output (the same file given twice is one input). Links to folders inside an input folder are
    not followed (as find and rsync do): they go to ``unfollowed`` for the caller to name, and a folder that holds
    nothing else is refused with their names. Folders and files that cannot be read are refused: bad usage naming
    the first, before any work; entries of a folder that are no regular file (a FIFO, a socket, a dangling or
    looping link) are skipped, and go to ``special`` with what they are.
    """
    if not inputs:
        raise UsageError("no input given")
    if output is None and not in_place:
        raise UsageError("no output folder given: use -o OUT (or --in-place to overwrite the inputs)")
    out_root = Path(output) if output is not None else None
    out_kind = _kind(out_root) if out_root is not None else None
    if out_kind == "unreadable":
        raise UsageError(f"{out_root}: cannot look at the output (permission denied)")
    if out_root is not None and not in_place and len(inputs) == 1 and _kind(Path(inputs[0])) == "file" \
            and out_kind != "dir" and accept(out_root):
        src = Path(inputs[0])
        if out_root.resolve() == src.resolve():
            raise UsageError(f"{out_root}: output is the input itself (use --in-place to overwrite it)")
        if is_video_path(src) != is_video_path(out_root):  # `-o name.png` for a video: the muxer's error, later
            kind = "a video" if is_video_path(src) else "an image"
            raise UsageError(f"{out_root}: {src} is {kind}; give an output name of its kind "
                             f"({'.mp4, .mkv, .mov, .webm' if is_video_path(src) else '.jpg, .png, .webp, .heic'})")
        return [Job(src, out_root, src.name)], []
    if out_kind == "file":
        raise UsageError(f"{out_root}: output exists and is not a folder")
    if out_root is not None and out_kind is None and out_root.suffix.lower() in UNWRITTEN_MEDIA:
        # `-o face.gif` made a folder named face.gif with the output inside
        raise UsageError(f"{out_root}: faceveil does not write {out_root.suffix} files; give a folder, or a file "
                         "name ending in .jpg, .png, .webp, .heic (a photo) or .mp4, .mkv, .webm (a video)")
    if out_root is not None and out_kind is None and not in_place and len(inputs) == 1 \
            and _kind(Path(inputs[0])) == "file" and _FILE_SUFFIX.fullmatch(out_root.suffix) \
            and not str(output).endswith(("/", os.sep)):
        # `-o o.txt` for one photo made a folder named o.txt with the photo inside (a typo of the extension, or a
        # name that looks like a file): a name with an extension faceveil does not write is refused, and a trailing
        # slash says "a folder of that name" (as rsync's and cp's do)
        raise UsageError(f"{out_root}: faceveil does not write {out_root.suffix} files; give a file name ending in "
                         f".jpg, .png, .webp, .heic (a photo) or .mp4, .mkv, .webm (a video), or {out_root}/ for a "
                         "folder")
    if out_root is not None and out_kind is None and not in_place and accept(out_root) \
            and not str(output).endswith(("/", os.sep)):
        # `a.jpg b.jpg -o two.jpg` or `footage/ -o out.mp4` made a folder named two.jpg (out.mp4) with the outputs
        # inside: a name of the kind of file faceveil writes, for several files, is refused as `-o o.txt` is
        what = f"{len(inputs)} inputs" if len(inputs) > 1 else f"the files of {inputs[0]}"
        raise UsageError(f"{out_root}: a file name, but {what} go there: give a folder, or {out_root}/ for a folder "
                         "of that name")
    jobs: list[Job] = []
    skipped: list[Path] = []
    problems: list[tuple[Path, str]] = []
    folders: set[Path] = set()
    for raw in inputs:
        src = Path(raw)
        kind = _kind(src)
        if kind is None and str(raw) == "-":
            raise UsageError("-: standard input is read by `faceveil anonymize - -o OUT` alone (one photo); save it "
                             "to a file and name that")
        if kind is None:
            raise UsageError(f"{src}: no such file or folder")
        if kind == "unreadable":
            problems.append((src, "cannot be read (permission denied)"))
            continue
        if out_root is not None and not in_place:
            if kind == "dir" and is_inside(out_root, src):
                raise UsageError(f"{out_root}: output folder is inside the input {src} (use another folder)")
            if kind == "file" and out_root.resolve() == src.parent.resolve():
                raise UsageError(f"{out_root}: output folder is the input's own folder; it would overwrite {src.name}")
        if kind == "dir":
            if src.resolve() in folders:  # `in in/ ./in` or a link to it: one input (its skips were counted thrice)
                continue
            folders.add(src.resolve())
            found, links, bad, odd = list_folder(src)
            problems += bad
            skipped += [p for p, _ in odd]
            if special is not None:
                special += odd
            if unfollowed is not None:
                unfollowed += links
            if not found and not bad and not odd:
                if links:
                    raise UsageError(f"{src}: holds only links to folders, which are not followed ({links[0]}); "
                                     "give the folders they link to as inputs")
                raise UsageError(f"{src}: folder is empty")
            for p in found:
                if not accept(p):
                    skipped.append(p)
                    continue
                rel = p.relative_to(src)
                dst = p if in_place else out_root / rel
                jobs.append(Job(p, dst, str(Path(src.name) / rel)))
        else:
            dst = src if in_place else out_root / src.name
            jobs.append(Job(src, dst, src.name))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{one_line(problems[0][0])}: {problems[0][1]}{more}; nothing written (make it readable, or "
                         "move it out)")
    if not jobs and skipped:
        raise UsageError(f"no supported files among the inputs ({len(skipped)} other files skipped)")
    return _one_output_each(jobs), skipped


def _kind(path: Path) -> str | None:
    """"dir", "file" (anything else a path can be read as: a photo, a FIFO, /dev/stdin), "unreadable" (inside a
    folder faceveil may not enter), or None when nothing is there. A path the system cannot look up (too long, a
    link loop) is bad usage, one line."""
    refuse_too_long(path)
    try:
        return "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "file"
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        return "unreadable"
    except OSError as exc:
        raise UsageError(f"{one_line(path)}: {exc.strerror or exc}") from None


def refuse_unreachable(*paths: str | os.PathLike | None) -> None:
    """Bad usage naming the first of ``paths`` (None or "": an option not given) that cannot be looked at: in a
    folder faceveil may not enter (`locked/sub` with `locked` chmod 000), or too long (refuse_too_long). One line
    before any work, for the paths a command is given: Path.is_dir and .exists raise PermissionError there (a
    traceback), and some checks said "no such file or folder". Nothing there yet (an output to make) passes."""
    for path in paths:
        if path is not None and str(path) != "" and _kind(Path(path)) == "unreadable":
            raise UsageError(f"{one_line(path)}: a folder on the way to it cannot be entered (permission denied)")


# What os.stat's file type says a folder entry is, when it is no regular file.
_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
            (stat.S_ISBLK, "a device"))


def folder_problem(exc: OSError) -> tuple[Path, str]:
    """The folder a failed listing names and why, in the words every command uses for it."""
    return Path(exc.filename), f"cannot read the folder ({exc.strerror or exc})"


def read_folder(folder: str | os.PathLike) -> list[os.DirEntry]:
    """One folder's entries (hidden ones too), sorted by name. A folder that cannot be listed is bad usage named in
    one line (``folder_problem``), not a traceback: for commands that cannot go on without it."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except OSError as exc:
        path, why = folder_problem(exc)
        raise UsageError(f"{one_line(path)}: {why}") from None


def list_folder(src: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The tree under ``src``: (regular files, links to folders (not followed), folders and files that cannot be
    read with why, entries that are no regular file with what they are), each sorted. Hidden files and everything in
    hidden folders (.git, faceveil's own .faceveil/) are not inputs."""
    files: list[Path] = []
    links: list[Path] = []
    bad: list[tuple[Path, str]] = []
    odd: list[tuple[Path, str]] = []

    for folder, dirs, names in os.walk(src, onerror=lambda exc: bad.append(folder_problem(exc))):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        links += [Path(folder, d) for d in dirs if os.path.islink(os.path.join(folder, d))]
        for name in names:
            if name.startswith("."):
                continue
            p = Path(folder, name)
            try:
                mode = os.stat(p).st_mode
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP):
                    odd.append((p, "a dangling link" if exc.errno == errno.ENOENT else "a link loop"))
                else:
                    bad.append((p, f"cannot be read ({exc.strerror})"))
                continue
            if stat.S_ISREG(mode):
                files.append(p)
            else:
                odd.append((p, next((what for test, what in _SPECIAL if test(mode)), "no regular file")))
    return sorted(files), sorted(links), sorted(bad), sorted(odd)


def _one_output_each(jobs: list[Job]) -> list[Job]:
    """Drop repeats of one input; refuse two different inputs that map to one output, or one whose output would be
    a folder on another's path (A/x.jpg/y.jpg, a folder named x.jpg, and B/x.jpg)."""
    by_dst: dict[Path, Job] = {}
    kept: list[Job] = []
    for job in jobs:
        key = job.dst.resolve()
        first = by_dst.get(key)
        if first is None:
            by_dst[key] = job
            kept.append(job)
        elif first.src.resolve() != job.src.resolve():
            raise UsageError(f"{job.dst}: two inputs would write this output: {first.src} and {job.src} "
                             "(give them separate -o folders, or their common parent folder)")
    for key, job in by_dst.items():
        above = next((by_dst[d] for d in key.parents if d in by_dst), None)
        if above is not None:
            raise UsageError(f"{above.dst}: would be the output of {above.src} and a folder holding that of {job.src} "
                             "(give them separate -o folders)")
    return kept


EXISTING_POLICIES = ("refuse", "overwrite", "skip")


def check_existing(jobs: list[Job], policy: str = "refuse") -> tuple[list[Job], list[Job]]:
    """Apply the policy for outputs that already exist (as ffmpeg's -y / -n do).

    ``refuse`` raises UsageError naming the first existing output, before anything is
    written; ``overwrite`` keeps every job; ``skip`` leaves existing outputs alone.
    Returns (jobs to run, jobs skipped because their output exists). In place (dst is src)
    is its own explicit policy and never counts as existing.
    """
    if policy not in EXISTING_POLICIES:
        raise UsageError(f"existing outputs: unknown policy {policy!r} (choose from {', '.join(EXISTING_POLICIES)})")
    if policy == "overwrite":
        return jobs, []
    clash = [j for j in jobs if j.dst != j.src and os.path.lexists(j.dst)]  # a name too long to exist: no
    if not clash:
        return jobs, []
    if policy == "refuse":
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise UsageError(f"{clash[0].dst}: output exists{more}; use --overwrite to replace or --skip-existing "
                         "to keep existing outputs")
    ids = {id(j) for j in clash}
    return [j for j in jobs if id(j) not in ids], clash
