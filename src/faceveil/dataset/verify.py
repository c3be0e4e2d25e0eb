"""Verify an output folder against its manifest: every file there, unaltered, decoding, and nothing unaccounted for."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UsageError
from ..io.atomic import refuse_too_long
from ..io.inputs import folder_problem, is_inside
from ..io.manifest import read_manifest, sha256_file
from .config import MANIFEST, OWN_DIR, REVIEW_FILE, named_images, own_file, reviewed_boxes

@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # files under OUT that no manifest line accounts for
    damaged: list[str] = field(default_factory=list)  # images whose bytes match the manifest but do not decode
    # files recorded by a job with other settings than the rest (e.g. another --keep-people gallery or threshold):
    # "path (key: value here, value in the rest)"
    mixed: list[str] = field(default_factory=list)
    # images whose labels changed since they were anonymized, or that OUT's labels do not name at all
    # (e.g. another dataset's): "path (why)"
    unlabelled: list[str] = field(default_factory=list)
    # folders and files under OUT that cannot be read, so neither checked nor accounted for: "path: why"
    unreadable: list[str] = field(default_factory=list)
    unreadable_folders: int = 0  # how many of those are folders (the rest are files)
    # the outputs the manifest records that could not be checked: unreadable, or in a folder that cannot be read
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected or self.damaged or self.mixed or self.unlabelled
                    or self.unreadable)


def verify(out: str | os.PathLike) -> VerifyReport:
    refuse_too_long(out)  # bad usage (exit 2), not a traceback at the first look
    out = Path(out)
    manifest_path = out / MANIFEST
    try:
        with os.scandir(out):  # an OUT that cannot be listed: nothing under it can be accounted for
            pass
        there = manifest_path.is_file()
    except FileNotFoundError:  # a mistyped OUT: bad usage (it said "OUT/manifest.jsonl: no manifest", exit 1)
        raise UsageError(f"{out}: no such folder (give the -o folder of `faceveil dataset anonymize`)") from None
    except NotADirectoryError:
        raise UsageError(f"{out}: not a folder (give the -o folder of `faceveil dataset anonymize`)") from None
    except OSError as exc:  # a traceback before (chmod 000 OUT)
        raise InputError("{}: {}".format(*folder_problem(exc)) if exc.filename == str(out) else
                         f"{manifest_path}: cannot be read ({exc.strerror or exc})") from None
    if not there:  # any folder but a dataset output: bad usage (it said "no manifest (not ... output?)", exit 1)
        raise UsageError(f"{out}: no {MANIFEST} in it, so not the output of `faceveil dataset anonymize` (give the "
                         "-o folder of that run)")
    entries, _ = read_manifest(manifest_path)
    if entries and not any("faceveil" in e for e in entries):  # every line faceveil writes says "faceveil"
        # another tool's manifest.jsonl: it said "verify FAILED: 0 files checked, ..., N not in the manifest"
        raise UsageError(f"{manifest_path}: no line of it is faceveil's, so {out} is not the output of `faceveil "
                         "dataset anonymize` (give the -o folder of that run)")
    latest = {(e.get("kind"), e.get("path")): e for e in entries}
    rep = VerifyReport()
    known = {MANIFEST, REVIEW_FILE} | {e["output"] for e in latest.values() if e.get("output")}  # not outputs: ours
    rep.unexpected, blocked = _unexpected(out, known, rep.unreadable)
    rep.unreadable_folders = len(blocked)
    for e in latest.values():
        rel = e.get("output")
        if not rel:
            continue
        if any(rel.startswith(b) for b in blocked):  # in a folder that cannot be read: the folder is named once
            rep.unchecked.append(rel)
            continue
        try:
            _check(e, rel, out / rel, out, rep)
        except OSError as exc:  # a file (or a folder on its way) that may not be read: a traceback before
            rep.unreadable.append(f"{rel}: cannot be read ({exc.strerror or exc})")
            rep.unchecked.append(rel)  # counted among the files checked before
            continue
        rep.checked += 1
    named = named_images(latest.values()) or set()  # older outputs have no list
    written = {e.get("output") for (kind, _), e in latest.items() if kind == "image"}
    rep.missing += [f"{rel} (the labels name it; no run wrote it)" for rel in sorted(named - written)]
    if named:
        rep.unlabelled += [f"{rel} (OUT's label files do not name it)" for rel in sorted(written - named)]
    said = {k: v for e in latest.values() if e.get("kind") == "labels" for k, v in e.get("image_labels", {}).items()}
    for e in latest.values():
        rel = e.get("output")
        if e.get("kind") == "image" and rel in said and e.get("labels_sha256", said[rel]) != said[rel]:
            rep.unlabelled.append(f"{rel} (its labels changed since it was anonymized; run the same command again "
                                  "to redo it)")
    by_output = {e.get("output"): e for e in latest.values() if e.get("kind") == "image"}
    try:
        reviewed = reviewed_boxes(out)
    except OSError as exc:  # OUT/.faceveil that may not be entered: the walk names it
        reviewed = {}
        if not any(OWN_DIR in b for b in blocked):
            rep.unreadable.append(f"{OWN_DIR}/{REVIEW_FILE}: cannot be read ({exc.strerror or exc})")
    for rel, boxes in reviewed.items():  # a redo that lost them shows a face the reviewer hid
        e = by_output.get(rel)
        if e and not {tuple(b) for b in boxes} <= {tuple(float(v) for v in b) for b in e.get("manual") or []}:
            rep.altered.append(f"{rel} (a reviewer's manual box in {OWN_DIR}/{REVIEW_FILE} is not on it; run the "
                               "same command again to redo it)")
    rep.mixed = _mixed(list(latest.values()))
    return rep


def _check(e: dict, rel: str, path: Path, out: Path, rep: VerifyReport) -> None:
    """One output the manifest records: there, the file faceveil wrote, unaltered, and (an image) decoding."""
    if path.is_symlink():
        rep.altered.append(f"{rel} (a link to {os.readlink(path)}, not the file faceveil wrote)")
    elif not is_inside(path, out):
        rep.altered.append(f"{rel} (path outside the output folder)")
    elif not path.is_file():
        rep.missing.append(rel)
    elif sha256_file(path) != e.get("output_sha256"):
        rep.altered.append(rel)
    elif e.get("kind") == "image" and not _decodes(path):
        rep.damaged.append(rel)  # a write that was recorded without being checked (older versions)


def _unexpected(out: Path, known: set[str], unreadable: list[str]) -> tuple[list[str], list[str]]:
    """Everything under OUT that no manifest line accounts for: files, and any link (a linked folder is not
    walked into: it may hold the originals) or other non-file, each once; and the folders under OUT that cannot be
    listed, as "rel/" (each also named in ``unreadable``: they were passed over silently, verify said ok)."""
    found, blocked = [], []

    def cannot_list(exc: OSError) -> None:
        folder, why = folder_problem(exc)
        rel = folder.relative_to(out).as_posix()
        blocked.append(f"{rel}/")
        unreadable.append(f"{rel}: {why}")

    for root, dirs, files in os.walk(out, onerror=cannot_list):  # links to folders are listed in dirs, never followed
        for name in sorted(dirs + files):
            p = Path(root, name)
            rel = p.relative_to(out).as_posix()
            try:
                if p.is_symlink():
                    if rel not in known:  # a known output that is a link is reported as altered
                        found.append(f"{rel} (a link to {os.readlink(p)})")
                elif name in files and not p.is_file():
                    found.append(f"{rel} (not a regular file)")
                elif name in files and rel not in known and not own_file(rel):
                    found.append(rel)
            except OSError as exc:  # listed, but its folder may not be entered (a known output: named when checked)
                if rel not in known:
                    unreadable.append(f"{rel}: cannot be read ({exc.strerror or exc})")
    return sorted(found), blocked


def _decodes(path: Path) -> bool:
    from ..io.images import opened

    try:
        with opened(path) as im:
            im.load()
        return True
    except Exception:  # any decoder complaint means the file is not a whole image
        return False


# What a job's settings are (dataset/job.py _job_key): keys of an image line that are not about the image itself.
_SETTING_KEYS = ("format", "boxes", "min_size", "face_classes", "method", "method_params", "detector",
                 "detector_params", "region", "seed", "keep", "keep_metadata", "jpeg_quality")


def _mixed(entries: list[dict]) -> list[str]:
    """Files whose line was written by another job (another job key) than the label files' (or, without label
    lines, than most files'): one output made with two settings, e.g. a gallery changed between runs."""
    jobs = [e.get("job") for e in entries if e.get("job")]
    if len(set(jobs)) < 2:
        return []
    ref_job = next((e["job"] for e in entries if e.get("kind") == "labels" and e.get("job")), None)
    if ref_job is None:
        ref_job = max(set(jobs), key=jobs.count)
    ref = next((e.get("settings", e) for e in entries if e.get("job") == ref_job), {})
    out = []
    for e in entries:
        if not e.get("job") or e["job"] == ref_job:
            continue
        theirs = e.get("settings", e)
        # image lines hold the settings about the image (not format or output options): compare what both hold,
        # and --keep-*, recorded only when given
        diff = [k for k in _SETTING_KEYS if theirs.get(k) != ref.get(k) and (
            (k in theirs and k in ref) or (k == "keep" and "method" in theirs and "method" in ref))]
        out.append(f"{e.get('output') or e.get('path')} (other settings: {', '.join(diff) or 'job'})")
    return out
