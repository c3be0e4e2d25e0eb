"""Finding input files and where each one's output goes."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UsageError


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


def plan_jobs(
    inputs: list[str | os.PathLike],
    output: str | os.PathLike | None,
    accept: Callable[[Path], bool],
    in_place: bool = False,
) -> tuple[list[Job], list[Path]]:
    """Map inputs to outputs: a file goes to OUT/name, a folder's tree is mirrored under OUT.

    Returns the jobs and the files inside folders that were skipped (not a
    supported type). Raises UsageError for a missing input or an output that
    would overwrite or sit inside an input (unless ``in_place``).
    """
    if not inputs:
        raise UsageError("no input given")
    if output is None and not in_place:
        raise UsageError("no output folder given: use -o OUT (or --in-place to overwrite the inputs)")
    out_root = Path(output) if output is not None else None
    if out_root is not None and out_root.exists() and not out_root.is_dir():
        raise UsageError(f"{out_root}: output exists and is not a folder")
    jobs: list[Job] = []
    skipped: list[Path] = []
    for raw in inputs:
        src = Path(raw)
        if not src.exists():
            raise UsageError(f"{src}: no such file or folder")
        if out_root is not None and not in_place:
            if src.is_dir() and is_inside(out_root, src):
                raise UsageError(f"{out_root}: output folder is inside the input {src} (use another folder)")
            if src.is_file() and out_root.resolve() == src.parent.resolve():
                raise UsageError(f"{out_root}: output folder is the input's own folder; it would overwrite {src.name}")
        if src.is_dir():
            found = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
            if not found:
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
    if not jobs and skipped:
        raise UsageError(f"no supported files among the inputs ({len(skipped)} other files skipped)")
    return jobs, skipped
