"""What earlier runs left to read back: an anonymize report's regions, stored parameters, a saved review.

Each reader accepts what faceveil 0.1.0 wrote as well as what the current version writes.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..detections import Detections
from ..errors import UsageError
from ..io.video import is_video_path
from .pairs import page_name


def plain_params(params: dict | None) -> dict:
    """Parameters as a report, manifest, track record or review.json stores them, ready for make_params.

    Tuples are JSON lists (current writers) or, from faceveil 0.1.0, Python text such as
    '(0.6, 0.9)'; both become tuples. Anything else is passed through unchanged.
    """
    out = {}
    for key, value in (params or {}).items():
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, str) and value[:1] == "(" and value[-1:] == ")":
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                parsed = None
            if isinstance(parsed, (tuple, int, float)):  # "(0.6)" is Python's text for a bare number
                value = parsed if isinstance(parsed, tuple) else (parsed,)
        out[key] = value
    return out


@dataclass
class RunRecord:
    """What an `anonymize --report` run did, by posix path under OUT and IN: the regions it hid in
    each written image, and every file it was given (the failed ones too)."""

    source: str
    regions: dict[str, list[list[float]]] = field(default_factory=dict)
    # the same regions as the run's detections (scores, landmarks, sources): a method that reads them (replace's
    # landmarks, its weak-detection blur) draws as the run did
    detections: dict[str, Detections] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)
    kept: dict[str, list[dict]] = field(default_factory=dict)  # faces the run left as they are (--keep-*)
    # each written output's original (the input the report names for it; two folders' files may go to one OUT)
    # and that input's SHA-256 when the report has it
    originals: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    # every input the run did not write (status other than "written"): its path under IN with the report's error,
    # or the input as the report names it when it is not under IN (the review cannot show it: it says so)
    failed: dict[str, str] = field(default_factory=dict)
    failed_elsewhere: dict[str, str] = field(default_factory=dict)
    # where each input's output is or was to be, by its path under OUT (None: outside OUT): a written one's
    # "output", a failed one's "target". An input missing here (a failed one in a report older than "target"):
    # unknown, and the review's Apply of it is refused; its path under IN may name another place than the run's
    # (`anonymize IN/a/x.jpg -o OUT` writes OUT/x.jpg)
    targets: dict[str, str | None] = field(default_factory=dict)
    # a target (None in targets) that is a path relative to the folder the run was started in, found neither from
    # the folder the review started in nor the report's, nor by how the written outputs name OUT: as the report has it
    unlocated: dict[str, str] = field(default_factory=dict)


def _rel_under(text: str, root: Path, bases: list[Path], name=page_name) -> str | None:
    """``text`` (a path as the report wrote it: absolute, or relative to where the run was started)
    as a posix path under ``root`` (its ``page_name``; ``name=str``: the path itself), or None. Unknown starting
    folder: the longest tail that exists."""
    p = Path(text)
    for cand in [p] if p.is_absolute() else [b / p for b in bases]:
        try:
            rel = (cand.parent.resolve() / cand.name).relative_to(root)
        except (ValueError, OSError):
            continue
        return name(rel.as_posix())
    parts = p.parts
    for k in range(len(parts)):
        tail = Path(*parts[k:])
        if ".." not in tail.parts and not tail.is_absolute() and (root / tail).exists():
            return name(tail.as_posix())
    return None


def _naming(text: str, rel: str) -> tuple[str, ...] | None:
    """How the report's path ``text`` of the file found at ``rel`` under OUT names OUT: its leading parts before
    ``rel``'s (the run's -o as it was given, "OUT" or "/old/OUT"), or None when its last parts are not ``rel``'s."""
    parts, tail = Path(text).parts, Path(rel).parts
    return parts[:len(parts) - len(tail)] if tail and parts[-len(tail):] == tail else None


def _locate_targets(rec: RunRecord, unread: dict[str, str], naming: set[tuple[str, ...]]) -> None:
    """The targets (never written, so not found by the tail that exists) that name OUT as every written output of
    the report does: the rest of the path, under OUT. A relative one that does not: unlocated (a report of a run in
    another folder, none of whose outputs shows how it named OUT)."""
    head = next(iter(naming)) if len(naming) == 1 else None
    for src, text in unread.items():
        parts = Path(text).parts
        rest = parts[len(head):] if head is not None and parts[:len(head)] == head else ()
        if rest and ".." not in rest and not Path(*rest).is_absolute():
            rec.targets[src] = Path(*rest).as_posix()
        elif not Path(text).is_absolute():
            rec.unlocated[src] = text


def load_run_record(doc: dict, report: str | os.PathLike, out_root: str | os.PathLike,
                    in_root: str | os.PathLike) -> RunRecord:
    """The per-file part of an `anonymize --report` document, keyed by paths under OUT and IN."""
    shown = out_root
    out_root, in_root = Path(out_root).resolve(), Path(in_root).resolve()
    bases = [Path.cwd(), Path(report).resolve().parent]
    rec = RunRecord(str(report))
    written = placed = 0  # outputs the report says were written; those of them found under OUT
    naming: set[tuple[str, ...]] = set()  # how the written outputs' paths name OUT (one -o: one way)
    unread: dict[str, str] = {}  # targets not found under OUT as they are, by input
    files = doc.get("files")
    if not isinstance(files, list):
        raise UsageError(f"{report}: not a `faceveil anonymize --report` file (no files)")
    for f in files:
        if not isinstance(f, dict):
            continue
        src = _rel_under(f["input"], in_root, bases) if isinstance(f.get("input"), str) else None
        if src is not None:
            rec.inputs.add(src)
        if f.get("status") != "written" and isinstance(f.get("input"), str):
            why = f.get("error") if isinstance(f.get("error"), str) else f"status {f.get('status')!r}"
            (rec.failed if src is not None else rec.failed_elsewhere)[src or f["input"]] = why
        dst = f.get("output") if f.get("status") == "written" else f.get("target")
        found = _rel_under(dst, out_root, bases, str) if isinstance(dst, str) else None  # to write: not a page name
        if f.get("status") == "written" and isinstance(dst, str):
            written += 1
            placed += found is not None
        if src is not None and isinstance(dst, str):
            rec.targets[src] = found
            if found is None and f.get("status") != "written":
                unread[src] = dst
        if f.get("status") == "written" and isinstance(f.get("output"), str):
            rel = _rel_under(f["output"], out_root, bases)
            head = _naming(f["output"], found) if found is not None else None
            if head is not None:
                naming.add(head)
            if rel is not None and src is not None:
                rec.originals[rel] = src
                if isinstance(f.get("input_sha256"), str):
                    rec.sha256[rel] = f["input_sha256"]
            if rel is not None and not is_video_path(rel):  # a video's record is its track file
                # float32 -> float is exact: Apply redoes the regions the run hid
                rec.detections[rel] = Detections.from_dict(f.get("detections"))
                rec.regions[rel] = [[float(v) for v in b] for b in rec.detections[rel].xyxy]
                kept = f.get("kept")
                if isinstance(kept, list):
                    rec.kept[rel] = [k for k in kept if isinstance(k, dict) and isinstance(k.get("box"), list)
                                     and len(k["box"]) == 4]
    if written and not placed and out_root.is_dir():  # another run's: Apply would redraw with its method and regions
        raise UsageError(f"{report}: none of the {written} files it says were written is in {shown} (the report of "
                         "another run?); give the report of the run that wrote them, or no --from-report")
    _locate_targets(rec, unread, naming)
    return rec


def same_settings(a: dict, b: dict) -> bool:
    """Same method, parameters, region and seed, whichever form a tuple was written in (list or text)."""
    def key(d: dict) -> tuple:
        return (d.get("method"), plain_params(d.get("method_params")), plain_params(d.get("region")), d.get("seed"))

    return key(a) == key(b)
