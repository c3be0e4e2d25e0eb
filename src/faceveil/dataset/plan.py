"""Planning a job: read the labels, map every image and label file to its place under OUT, before any work."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError, UsageError
from ..io.images import is_image_path
from ..io.inputs import OTHER_MEDIA, is_inside
from ..io.labels import LabelSet, check_labels_path, label_files, read_labels, resolve_image
from ..io.labels.core import visible_files
from .config import MANIFEST, OWN_DIR, Item, labels_digest

@dataclass
class Plan:
    labels: LabelSet
    images_root: Path
    out: Path
    image_prefix: PurePosixPath  # where images go under OUT
    label_targets: list[tuple[Path, PurePosixPath]]  # (source file, path under OUT)
    items: list[Item]
    missing: list[str]
    unlabelled: list[str]
    # YOLO images without a label file: taken as no object (Ultralytics' background images) and written
    no_label_file: list[str] = field(default_factory=list)
    # what the labels say of each image they name (labels_digest), by its path under OUT
    digests: dict[str, str] = field(default_factory=dict)
    # the input dataset (absolute images folder and labels): another one into the same OUT needs --overwrite
    dataset: dict = field(default_factory=dict)
    # labelled files of a type faceveil does not read (YOLO's g.txt about g.gif): "file: why"
    unread: list[str] = field(default_factory=list)
    # pictures and videos of such types that no label names: skipped, named in a warning
    other_media: list[str] = field(default_factory=list)


def plan(fmt: str, images: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike,
         face_classes: set[str] | None = None) -> Plan:
    images_root, labels_path, out = Path(images), Path(labels), Path(out)
    if not images_root.is_dir():
        raise UsageError(f"{images_root}: no such images folder")
    check_labels_path(fmt, labels_path)
    # Mirror the tree that holds both images and labels (e.g. images/ and ground_truth/x.txt)
    # unless they only share / or the home folder: then OUT gets the images folder and the labels by name.
    images_abs, labels_abs = images_root.resolve(), labels_path.resolve()
    base: Path | None = Path(os.path.commonpath([images_abs, labels_abs]))
    if base == Path(base.anchor) or base == Path.home().resolve():
        base = None
    # Only the images and the labels are input: the folder holding both may be a plain parent (/tmp, a project).
    for src in (images_root, labels_path):
        if is_inside(out, src):
            raise UsageError(f"{out}: output folder is inside the input {src}; use a folder outside the dataset")
        if is_inside(src, out):
            raise UsageError(f"{out}: output folder contains the input {src}; use another folder")
    ls = read_labels(labels_path, fmt, images_root)
    if face_classes is not None:
        face_classes = _known_classes(face_classes, ls, fmt, labels_path)
    if base is not None:
        image_prefix = PurePosixPath(images_abs.relative_to(base).as_posix())
    else:
        image_prefix = PurePosixPath(images_abs.name)
    targets = []
    for f in label_files(ls):
        fa = f.resolve()
        try:
            if base is not None:
                rel = PurePosixPath(fa.relative_to(base).as_posix())
            elif labels_path.is_dir():
                rel = PurePosixPath(labels_abs.name) / fa.relative_to(labels_abs).as_posix()
            else:
                rel = PurePosixPath(fa.name)
        except ValueError:  # the readers refuse such links already; never write outside OUT's mirror
            raise InputError(f"{f}: a link to {fa}, outside the labels folder {labels_path}; "
                             "refusing to read it") from None
        if str(rel) == MANIFEST:
            raise UsageError(f"{f}: a label file named {MANIFEST} would collide with faceveil's manifest")
        if OWN_DIR in rel.parts:
            raise UsageError(f"{f}: a label file under {OWN_DIR}/ would collide with faceveil's own folder")
        targets.append((f, rel))
    items, missing, unread = [], [], []
    named, digests = set(), {}
    for im in ls.images:
        src = resolve_image(images_root, im.path)
        named.add(im.path)
        keep = [c in face_classes for c in im.classes] if face_classes is not None else [True] * len(im)
        xyxy = tuple(tuple(float(v) for v in b) for b, k in zip(im.xyxy, keep) if k)
        out_rel = image_prefix / im.path
        digests[str(out_rel)] = digest = labels_digest(xyxy, im.size)
        try:
            found = src.is_file()
        except OSError as exc:  # in a folder faceveil may not enter
            unread.append(f"{src}: cannot be read ({exc.strerror}); not written")
            continue
        if not found:
            missing.append(im.path)
            continue
        if not is_image_path(src):  # YOLO's g.txt about g.gif: never written, so an error, not a missing file
            unread.append(f"{src}: labelled, but faceveil does not read {src.suffix} pictures; not written")
            continue
        if OWN_DIR in out_rel.parts:
            raise UsageError(f"{src}: an image under {OWN_DIR}/ would collide with faceveil's own folder")
        items.append(Item(im.path, str(src), str(out / out_rel), str(out_rel), xyxy, im.size,
                          "oriented" if fmt == "yolo" else "stored", digest))
    unlabelled, other_media = [], []
    for p in visible_files(images_root):
        rel = p.relative_to(images_root).as_posix()
        if p.suffix.lower() in OTHER_MEDIA and rel not in named:
            other_media.append(rel)
        elif fmt != "yolo" and is_image_path(p) and rel not in named:  # YOLO lists every image of the folder
            unlabelled.append(rel)
    no_file = [im.path for im in ls.images if fmt == "yolo" and not im.info.get("label_file", True)]
    return Plan(ls, images_root, out, image_prefix, targets, items, missing, unlabelled, no_file, digests,
                {"images": str(images_abs), "labels": str(labels_abs)}, unread, other_media)


def _known_classes(face_classes: set[str], ls: LabelSet, fmt: str, labels_path: Path) -> set[str]:
    """``--face-classes`` as the labels name their classes; refused (bad usage) when a name has no box in them: a
    typo, or YOLO's id 0 where classes.txt names it, left every labelled face as it was ('0 labelled', exit 0)."""
    have = set(ls.classes)
    names = ls.meta.get("names") if fmt == "yolo" else None  # classes.txt, as the YOLO reader read it
    if names:  # YOLO's ids as well as the names classes.txt gives them
        face_classes = {names[int(c)] if c.isdigit() and int(c) < len(names) else c for c in face_classes}
    unknown = sorted(face_classes - have)
    if unknown:
        shown = ", ".join(sorted(have)[:12]) + (", ..." if len(have) > 12 else "") or "none"
        raise UsageError(f"--face-classes {','.join(unknown)}: no box of that class in {labels_path} (its classes: "
                         f"{shown}); a face class no box has would leave faces as they are")
    return face_classes


def default_boxes(labels: LabelSet, face_classes: set[str] | None) -> str:
    """``union`` when the labels are faces; refuse to guess when they may be something else (persons, cars)."""
    if labels.format == "wider" or face_classes is not None:
        return "union"
    classes = labels.classes
    if all(re.search(r"face|mask", c, re.I) for c in classes):
        return "union"
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    raise UsageError(f"which label classes are faces? The labels have {shown}: give --face-classes NAMES, "
                     "or --boxes detect to use the detector only, or --boxes union to treat every box as a face")
