"""The job: check the settings against OUT's manifest, copy the label files, run the images, record every file."""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from .. import __version__
from ..errors import InputError, UsageError
from ..io.atomic import atomic_path, remove_stale_temporaries
from ..io.inputs import refuse_unreachable
from ..io.manifest import ManifestWriter, read_manifest, rewrite_manifest, sha256_file, settings_key
from ..io.manifest import check_settings as _check_settings
from ..pipeline import Anonymizer, settings_of
from .backends import run_local, run_ray
from .config import BOX_MODES, MANIFEST, DatasetConfig, Item, Summary, named_images, reviewed_boxes
from .plan import Plan, default_boxes, plan


def _job_key(cfg: DatasetConfig, anon: Anonymizer, fmt: str, face_classes) -> dict:
    described = settings_of(anon)
    if cfg.boxes == "gt" and not (anon.keep and anon.keep.people is not None):
        # the detector never runs (--keep-people runs it to describe faces): its settings must not block a resume
        described = {k: v for k, v in described.items() if k not in ("detector", "detector_params")}
    return {"format": fmt, "boxes": cfg.boxes, "min_size": cfg.min_size,
            "face_classes": sorted(face_classes) if face_classes is not None else None,
            **described, "keep_metadata": anon.keep_metadata, "jpeg_quality": anon.jpeg_quality,
            "faceveil": __version__}


def _remove_stale_tmp(out: Path) -> int:
    """The temporaries of dead writers anywhere under ``out``, by io.atomic's rule (its marked names only, and only
    when the writer is gone): a pattern of this module's own removed any hidden file named like ".x.abcdefgh.tmp"
    under OUT, whoever made it and whether or not its writer was still at work."""
    return remove_stale_temporaries(root for root, _, _ in os.walk(out))  # os.walk follows no link to a folder


# What a file manager leaves in a folder it has only shown (macOS Finder, Windows Explorer): an OUT made in one and
# holding only these is empty to its user, and was refused as "not empty". faceveil never touches them; `dataset
# verify` still names each as a file no manifest line accounts for (Thumbs.db may hold thumbnails).
OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


def anonymize_dataset(
    fmt: str,
    images: str | os.PathLike,
    labels: str | os.PathLike,
    out: str | os.PathLike,
    cfg: DatasetConfig,
    jobs: int | None = 1,
    backend: str = "local",
    address: str | None = None,
    face_classes: set[str] | None = None,
    progress: bool = True,
    on_entry: Callable[[dict], None] | None = None,
    overwrite: bool = False,
) -> Summary:
    t0 = time.perf_counter()
    if cfg.boxes not in BOX_MODES + ("auto",):
        raise UsageError(f"--boxes must be one of {', '.join(BOX_MODES)}")
    if cfg.min_size < 0:
        raise UsageError("--min-size must be >= 0")
    if backend not in ("local", "ray"):
        raise UsageError("--backend must be local or ray")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    refuse_unreachable(images, labels, out)  # the first look at them was a traceback
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output exists and is not a folder")
    manifest_path = out / MANIFEST
    if out.is_dir() and any(p.name not in OS_LITTER for p in out.iterdir()) and not _faceveils(manifest_path):
        raise UsageError(f"{out}: folder is not empty and has no {MANIFEST} of faceveil's; refusing to write into it")
    p = plan(fmt, images, labels, out, face_classes)
    if cfg.boxes == "auto":
        cfg = replace(cfg, boxes=default_boxes(p.labels, face_classes))
    anon = Anonymizer.from_config(cfg.anonymizer)  # bad names or parameters fail here, before any work
    settings = _job_key(cfg, anon, fmt, face_classes)
    key = settings_key(settings)
    summary = Summary(images=len(p.labels), missing=p.missing, unlabelled=p.unlabelled, out=str(out),
                      no_label_file=p.no_label_file, other_media=p.other_media, failed=list(p.unread),
                      boxes=cfg.boxes, keep=settings.get("keep"))

    try:
        return _run_job(p, cfg, settings, key, summary, out, jobs, backend, address, on_entry, progress, t0,
                        overwrite)
    except OSError as exc:  # a read-only, full or vanished OUT: one line naming the file, never a traceback
        raise InputError(f"{exc.filename or out}: {exc.strerror or exc}") from exc


def _faceveils(manifest_path: Path) -> bool:
    """Whether ``manifest_path`` may be a manifest faceveil wrote: it exists and starts as its JSON lines do (a run
    killed while writing the first line leaves it torn or empty, still ours). A manifest.jsonl of another line
    ("hello") was read as a torn line, and the run wrote over the folder's images and annotations (an audit)."""
    try:
        with open(manifest_path, "rb") as f:
            head = f.read(2)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return b'{"'.startswith(head)


def _run_job(p: Plan, cfg: DatasetConfig, settings: dict, key: str, summary: Summary, out: Path, jobs: int | None,
             backend: str, address: str | None, on_entry, progress: bool, t0: float, overwrite: bool) -> Summary:
    manifest_path = out / MANIFEST
    entries, _ = read_manifest(manifest_path)
    _check_settings(entries, settings, key, manifest_path)
    _check_dataset(entries, p, manifest_path, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    writer = ManifestWriter(manifest_path)  # locked: a second run into OUT stops here
    try:
        entries, _ = read_manifest(manifest_path)  # again, under the lock (a run may have ended meanwhile)
        _check_settings(entries, settings, key, manifest_path)
        _check_dataset(entries, p, manifest_path, overwrite)
    except BaseException:
        writer.close()
        raise
    latest = {(e.get("kind"), e.get("path")): e for e in entries}
    summary.stale_tmp_removed = _remove_stale_tmp(out)  # under the lock: no other run's file in progress

    try:
        # Label files first, byte for byte: the boxes keep matching the images, which keep their size and names.
        # The first label file's line also lists every image OUT's labels name (as paths under OUT): `dataset verify`
        # calls one that no run wrote (it failed, or the input had no such file) missing; with what the labels say
        # of each (image_labels: a label edit makes an image not done) and the input dataset it was made from.
        named = _named_images(p)
        for i, (src, rel) in enumerate(p.label_targets):
            data = src.read_bytes()
            in_sha = hashlib.sha256(data).hexdigest()
            prev = latest.get(("labels", str(rel)))
            dst = out / rel
            if (prev and prev["input_sha256"] == in_sha and dst.is_file() and sha256_file(dst) == prev["output_sha256"]
                    and (i > 0 or (prev.get("images") == named and prev.get("image_labels") == p.digests
                                   and prev.get("dataset") == p.dataset))):
                continue
            with atomic_path(dst) as tmp:
                tmp.write_bytes(data)
                if sha256_file(tmp) != in_sha:  # checked before the rename: a short copy never gets the name
                    raise InputError(f"{dst}: the copy of {src} did not write whole (disk full or failing?); "
                                     "nothing was recorded")
            e = {"kind": "labels", "path": str(rel), "output": str(rel), "input_sha256": in_sha,
                 "output_sha256": in_sha, "job": key, "settings": settings, "faceveil": __version__,
                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            if i == 0:
                e.update(images=named, image_labels=p.digests, dataset=p.dataset)
            _record(writer, e, dst)
            latest[("labels", str(rel))] = e

        todo = []
        reviewed = reviewed_boxes(out)
        for it in p.items:
            prev = latest.get(("image", it.rel))
            # A reviewer's boxes stay hidden when the image is redone: those of its line and of the saved review
            # (which keeps them when a failed redo dropped the line)
            had = _union((prev or {}).get("manual") or [])
            manual = _union(had, reviewed.get(it.out_rel, []))
            if prev and _still_done(prev, it) and manual == had:
                summary.skipped += 1
                _count(summary, prev)
                continue
            todo.append(replace(it, manual=tuple(tuple(b) for b in manual)) if manual else it)
        by_rel = {it.rel: it for it in todo}
        if jobs is None:  # not given: local runs take a worker per core for big batches, Ray one actor
            from ..batch import auto_jobs

            jobs = auto_jobs(len(todo)) if backend == "local" else 1

        from ..progress import tqdm

        bar = tqdm(total=len(todo), unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   desc="anonymizing dataset")
        faces = 0
        t_run = time.perf_counter()
        if not todo:
            results: Iterable[dict] = ()
        elif backend == "ray":
            results = run_ray(cfg, todo, jobs, address)
        else:
            results = run_local(cfg, todo, jobs)
        try:
            for r in results:
                if "error" in r:
                    summary.failed.append(r["error"])
                    stale = latest.pop(("image", r.get("path")), None)
                    if stale:  # an output of other input pixels or labels must not stay as if done
                        (out / stale["output"]).unlink(missing_ok=True)
                else:
                    e = {**r["entry"], "job": key}
                    if _frame_unchecked(e.get("orientation", 1), by_rel[e["path"]]):
                        summary.frame_unchecked.append(f"{e['path']} (EXIF orientation {e['orientation']})")
                    _record(writer, e, out / e["output"])  # only after the image is on disk and checked
                    latest[("image", e["path"])] = e
                    summary.done += 1
                    _count(summary, e)
                    faces += e["anonymized_regions"]
                    if on_entry:
                        on_entry(e)
                dt = max(time.perf_counter() - t_run, 1e-9)
                bar.set_postfix_str(f"{faces / dt:.1f} faces/s, failed {len(summary.failed)}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
        # One line per file, labels first then images in dataset order; atomic, so a crash here loses nothing.
        # Still under the lock, so no other run's line can go missing.
        order = [("labels", str(rel)) for _, rel in p.label_targets] + [("image", it.rel) for it in p.items]
        seen = set(order)
        compact = [latest[k] for k in order if k in latest] + [e for k, e in latest.items() if k not in seen]
        # a line this run appended makes the file longer than ``entries``, even one equal to an old line
        if writer.appended or compact != entries:
            try:
                rewrite_manifest(manifest_path, compact)
            except OSError:  # a full disk at the very end: the appended manifest already holds every line
                pass
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _record(writer: ManifestWriter, entry: dict, output: Path) -> None:
    """Append the entry; when that fails (disk full), the output is not done: remove it and stop the run."""
    try:
        writer.append(entry)
    except OSError as exc:
        output.unlink(missing_ok=True)
        raise InputError(f"{writer.path}: cannot record {entry['output']} ({exc.strerror or exc}), so it is not "
                         "done and was removed; free some space and run the same command again to resume") from exc


def _still_done(prev: dict, it: Item) -> bool:
    dst = Path(it.dst)
    # "size_mismatch": written by an older faceveil with only a warning; redone now, it fails unless the labels fit
    return (dst.is_file() and prev.get("output") == it.out_rel and prev.get("labels_sha256") == it.labels_sha256
            and "size_mismatch" not in prev
            and sha256_file(dst) == prev.get("output_sha256") and sha256_file(it.src) == prev.get("input_sha256"))


def _frame_unchecked(orientation: int, it: Item) -> bool:
    """Whether nothing tells that the boxes of an EXIF-rotated or -mirrored photo are in the frame taken (stored
    pixels, or the upright view for YOLO): only a stated size that is not square tells, and only for a quarter turn."""
    if orientation == 1:
        return False
    stated = it.frame == "stored" and it.size is not None and all(it.size) and it.size[0] != it.size[1]
    return orientation < 5 or not stated


def _union(*lists) -> list[tuple[float, ...]]:
    """Boxes of all ``lists``, each once, in order."""
    return list(dict.fromkeys(tuple(float(v) for v in b) for boxes in lists for b in boxes))


def _named_images(p: Plan) -> list[str]:
    """Every image the labels name, as sorted paths under OUT: what the first label file's manifest line lists."""
    return sorted(str(p.image_prefix / im.path) for im in p.labels.images)


def _check_dataset(entries: list[dict], p: Plan, where: Path, overwrite: bool) -> None:
    """Another input dataset (images folder or labels) into an OUT made from one is refused unless ``overwrite``:
    it would replace the label files and leave the first dataset's images with no labels describing them."""
    first = next((e for e in entries if e.get("kind") == "labels" and e.get("dataset")), None)
    recorded = first["dataset"] if first else None
    if overwrite or recorded == p.dataset:
        return
    if first and first.get("images") == _named_images(p) and first.get("image_labels") == p.digests:
        return  # the same dataset moved (a folder renamed, mounted elsewhere): the same images with the same boxes
    if recorded is None:  # an output made before the dataset was recorded: the images its labels named tell
        before = named_images(entries)
        if not before or before & p.digests.keys():
            return
        what = f"none of the {len(before)} images its labels name is in these"
    else:
        what = "; ".join(f"{k}: {p.dataset[k]} here, {recorded.get(k)} in {where}" for k in p.dataset
                         if p.dataset[k] != recorded.get(k))
    raise UsageError(f"{where}: made from another dataset ({what}); use a new output folder, or --overwrite to "
                     "replace its label files and the images of the same name")


def _count(s: Summary, e: dict) -> None:
    f = e["faces"]
    s.faces_labels += f["labels"]
    s.faces_detected += f["detected"]
    s.faces_detected_extra += f["detected_extra"]
    s.small_left += f["small_left"] + f["small_detected_left"]
    s.clipped += f["clipped"]
    s.degenerate += f["degenerate"]
    s.kept += f.get("kept", 0)
