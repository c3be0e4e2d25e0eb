"""Labelled face boxes in and out: one module per format, one type (``LabelSet``) for eval, train and dataset mode.

``read_labels(path, fmt, images)`` reads WIDER FACE txt, COCO JSON, YOLO txt or
Pascal VOC XML (the format guessed from the path when not given); ``write_wider``,
``write_coco``, ``write_yolo`` and ``write_voc`` write a set back.
``read_eval_labels`` reads the same files narrowed to what eval measures against.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputError, UsageError
from .coco import read_coco, write_coco
from .core import (
    FORMATS, ImageLabels, LabelError, LabelSet, label_files, resolve_image, safe_relpath, split_missing, visible_files,
)
from .voc import read_voc, write_voc
from .wider import WIDER_ATTRS, read_wider, write_wider
from .yolo import read_yolo, write_yolo

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".avif", ".heic", ".heif")

__all__ = [
    "FORMATS", "WIDER_ATTRS", "ImageLabels", "LabelError", "LabelSet", "find_image", "find_images",
    "guess_format", "label_files", "read_coco", "read_eval_labels", "read_labels", "read_voc", "read_wider",
    "read_yolo",
    "resolve_image", "safe_relpath", "split_missing", "write_coco", "write_voc", "write_wider", "write_yolo",
]


def guess_format(path: str | os.PathLike) -> str:
    p = Path(path)
    if p.is_dir():
        # The files the readers take: in sub-folders too (Ultralytics' labels/train, labels/val), any case (.XML),
        # hidden ones left out; only the top level, in lower case, was looked at.
        files = visible_files(p)
        if any(f.name.lower().endswith(".xml") for f in files):
            return "voc"
        if any(f.name.lower().endswith(".txt") for f in files):
            return "yolo"
        raise UsageError(f"{p}: no .xml (VOC) or .txt (YOLO) label files in this folder")
    if p.suffix.lower() == ".json":
        return "coco"
    if p.suffix.lower() == ".txt":
        return "wider"
    # A file is WIDER txt or COCO json: suggesting --format for a CSV (or --format yolo|voc for any file) sent the
    # user to options that cannot read it.
    read = "WIDER FACE .txt, COCO .json, or a folder of YOLO .txt or Pascal VOC .xml files"
    if p.suffix.lower() in (".csv", ".tsv", ".xls", ".xlsx", ".ods"):
        raise UsageError(f"{p}: {p.suffix[1:].upper()} labels are not read; give {read}")
    raise UsageError(f"{p}: cannot tell the label format from its name; give --format wider or coco (faceveil reads "
                     f"{read})")


def read_labels(path: str | os.PathLike, fmt: str | None = None,
                images: str | os.PathLike | None = None) -> LabelSet:
    """Labels from a file or folder; ``images`` is needed for YOLO (its boxes are relative to the image size)."""
    path = Path(path)
    if fmt is None:
        if not path.exists():
            raise InputError(f"{path}: labels not found")
        fmt = guess_format(path)
    if fmt == "wider":
        return read_wider(path)
    if fmt == "coco":
        return read_coco(path)
    if fmt == "yolo":
        if images is None:
            raise UsageError("YOLO labels are relative to the image size: give the images folder too")
        return read_yolo(path, images)
    if fmt == "voc":
        return read_voc(path)
    raise UsageError(f"unknown label format {fmt!r} (choose from: {', '.join(FORMATS)})")


def read_eval_labels(path: str | os.PathLike, fmt: str | None = None,
                     images: str | os.PathLike | None = None) -> LabelSet:
    """``read_labels`` narrowed to what eval measures against: the images a label file names (YOLO lists every
    image of the folder), and of a COCO file with a face category only the annotations of its face categories
    (a name containing "face"); in the other formats every box is a face."""
    labels = read_labels(path, fmt, images)
    images = [im for im in labels.images if im.info.get("label_file", True)]
    cats = (labels.meta.get("coco") or {}).get("categories") or []
    face_ids = {c["id"] for c in cats if "face" in str(c.get("name", "")).lower()}
    if labels.format == "coco" and face_ids:
        narrowed = []
        for im in images:
            keep = [ex["ann"].get("category_id") in face_ids for ex in im.extra]
            narrowed.append(ImageLabels(im.path, im.xywh[keep], [c for c, k in zip(im.classes, keep) if k],
                                        [e for e, k in zip(im.extra, keep) if k], im.size, im.line, im.info,
                                        im.ignore[keep]))
        images = narrowed
    return LabelSet(labels.format, images, labels.source, labels.meta)


def find_image(images: str | os.PathLike, key: str) -> Path | None:
    """The image file for a label key: its relative path under ``images``, else that name (or stem) with another
    image extension in the same folder. Never a file of that name in another folder: a/x.jpg's labels are not
    b/x.jpg's faces."""
    p = Path(images) / key
    if p.is_file():
        return p
    stem = p.stem if p.suffix.lower() in IMAGE_EXTS else p.name
    for ext in IMAGE_EXTS:
        for cand in (p.with_name(stem + ext), p.with_name(stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def find_images(images: str | os.PathLike, keys: list[str], unreadable: list[str] | None = None,
                ) -> tuple[list[tuple[str, Path]], list[str]]:
    """``find_image`` for each key: (key, file) pairs in the keys' order, and the keys with no file of their own.
    A file is one key's: the key that names it exactly, else the first whose stem finds it (x.jpg and x.png both
    labelled beside one x.jpg scored that photo twice, with two sets of faces); the others count as missing.
    ``unreadable``: gets "path: why" for each key the system would not look up (a folder on its way that may not be
    entered), which is then neither found nor missing; without it, such a key raises OSError."""
    paths = {}
    for k in keys:
        try:
            paths[k] = find_image(images, k)
        except OSError as exc:
            if unreadable is None:
                raise
            unreadable.append(f"{exc.filename or Path(images) / k}: cannot be read ({exc.strerror or exc})")
    keys = [k for k in keys if k in paths]
    exact = {p: k for k, p in paths.items() if p is not None and p == Path(images) / k}
    owner: dict[Path, str] = {}
    for k, p in paths.items():
        if p is not None:
            owner.setdefault(p, exact.get(p, k))
    found = [(k, p) for k, p in paths.items() if p is not None and owner[p] == k]
    return found, [k for k in keys if (k, paths[k]) not in found]


_LABEL_KIND = {"wider": "a label file (WIDER FACE *_bbx_gt.txt)", "coco": "a label file (COCO .json)",
               "yolo": "a folder of YOLO .txt label files", "voc": "a folder of Pascal VOC .xml files"}


def check_labels_path(fmt: str, labels: Path) -> None:
    """--labels must exist, and --format and --labels agree on file versus folder: usage errors, named, before
    anything is read (dataset anonymize and eval leaks)."""
    try:
        there = labels.exists()
    except OSError as exc:  # in a folder that may not be entered: a traceback before
        raise UsageError(f"{labels}: cannot read ({exc.strerror or exc})") from None
    if not there:
        raise UsageError(f"{labels}: no such label file or folder")
    wants_dir = fmt in ("yolo", "voc")
    if labels.is_dir() == wants_dir or fmt not in _LABEL_KIND:
        return
    if labels.is_dir():
        guess = "voc" if next(labels.rglob("*.xml"), None) else "yolo" if next(labels.rglob("*.txt"), None) else None
    else:
        guess = {".json": "coco", ".txt": "wider"}.get(labels.suffix.lower())
    hint = f"; it looks like {_LABEL_KIND[guess]}: use --format {guess}" if guess and guess != fmt else ""
    got = "a folder" if labels.is_dir() else "a file"
    raise UsageError(f"{labels}: --format {fmt} expects {_LABEL_KIND[fmt]}, got {got}{hint}")
