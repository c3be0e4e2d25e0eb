"""YOLO labels: ``labels/<rel>.txt`` beside ``images/<rel>.jpg``, lines ``class cx cy w h`` normalised to [0, 1].

Boxes are in the upright frame (after EXIF orientation), as Ultralytics reads them.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import InputError, one_line
from ..atomic import write_bytes_atomic
from ..images import is_image_path, stored_size
from .core import ImageLabels, LabelError, LabelSet, check_box, inside_labels, read_text, visible_files


def _oriented_size(path: Path) -> tuple[int, int] | None:
    """Width and height after EXIF orientation, from the header only (no decode); None when the file
    cannot be read: that one image then fails when it is processed (one line), not the whole dataset."""
    from PIL import Image, UnidentifiedImageError

    from ..images import opened

    try:
        with opened(path) as img:
            w, h = stored_size(img)
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_yolo(labels_dir: str | os.PathLike, images_root: str | os.PathLike) -> LabelSet:
    """Every image under ``images_root`` (an image without a label file has no boxes), and every label file.

    A label file whose image is missing is kept with ``size=None`` so that
    ``split_missing`` can report it. Class names come from ``classes.txt`` in
    the labels folder when present.
    """
    labels_dir, images_root = Path(labels_dir), Path(images_root)
    if not labels_dir.is_dir():
        raise LabelError(f"{labels_dir}: YOLO labels must be a folder of .txt files")
    if not images_root.is_dir():
        raise LabelError(f"{images_root}: no such images folder")
    names: list[str] | None = None
    names_file = labels_dir / "classes.txt"
    if names_file.is_file():
        inside_labels(names_file, labels_dir)
        names = [ln.strip() for ln in read_text(names_file).splitlines() if ln.strip()]
    else:
        names = _yaml_names(labels_dir)
    by_stem: dict[str, Path] = {}
    others: dict[str, Path] = {}  # files of other types: what a label file without an image may be about
    for p in visible_files(images_root):
        stem = p.relative_to(images_root).with_suffix("").as_posix()
        if not is_image_path(p):
            others.setdefault(stem, p)
        elif stem in by_stem:
            raise LabelError(f"{p}: two images share the label name {stem}.txt ({by_stem[stem].name})")
        else:
            by_stem[stem] = p
    # classes.txt names classes in any folder (LabelImg writes one beside each folder's labels)
    label_files = {p.relative_to(labels_dir).with_suffix("").as_posix(): p
                   for p in visible_files(labels_dir, ".txt") if p.name != names_file.name}
    for p in label_files.values():
        inside_labels(p, labels_dir)
    images: list[ImageLabels] = []
    for stem in sorted(set(by_stem) | set(label_files)):
        img = by_stem.get(stem)
        lf = label_files.get(stem)
        rel = img.relative_to(images_root).as_posix() if img else None
        size = _oriented_size(img) if img else None
        boxes, classes, extra = [], [], []
        if lf is not None:
            for n, line in enumerate(read_text(lf).splitlines(), 1):
                t = line.split()
                if not t:
                    continue
                where = f"{lf}:{n}"
                if len(t) != 5:
                    # every count was told "(segmentation polygons are not supported)": 6 values are a box and the
                    # confidence of a detector's predictions (save_conf), 2-4 a short line, 7 or more a polygon
                    why = (" (a 6th value, a detector's confidence in YOLO predictions, is not a label: give the "
                           "5-value labels)" if len(t) == 6 else
                           " (segmentation polygons and keypoints are not supported)" if len(t) > 6 else "")
                    raise LabelError(f"{where}: expected 'class cx cy w h', got {len(t)} values{why}")
                try:
                    cid = float(t[0])  # "0.0" too: Ultralytics reads a label file as floats and casts the class
                    cx, cy, w, h = (float(v) for v in t[1:])
                except ValueError:
                    raise LabelError(f"{where}: not a number in {line.strip()!r}") from None
                if not cid.is_integer():
                    raise LabelError(f"{where}: class id {t[0]} is not a whole number")
                cls = int(cid)
                if cls < 0:
                    raise LabelError(f"{where}: negative class id {cls}")
                check_box([cx, cy, w, h], where)
                # Pixels need the image's size; without the image the box stays normalised (reported missing).
                W, H = size if size else (1, 1)
                boxes.append([(cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H])
                classes.append(names[cls] if names and cls < len(names) else str(cls))
                extra.append({"cls": cls})
        info = {"label_file": lf is not None}
        if img is not None and size is None:
            info["normalised"] = True  # unreadable image: boxes stay normalised; the image fails on its own
        if rel is None:
            # No image: the file of another type it is about (g.gif), else a missing one named after the label
            # file; its boxes stay normalised.
            rel = others[stem].relative_to(images_root).as_posix() if stem in others else stem + ".jpg"
            info["normalised"] = True
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0, info))
    return LabelSet("yolo", images, labels_dir, {"names": names})


# Ultralytics' layout names the classes in the dataset's YAML (`names: [face]` or `names: {0: face}`), beside the
# labels and images folders or in the labels folder, and writes no classes.txt: the ids were all a run saw ("0"),
# so `--face-classes face` was refused and a face dataset's default boxes asked instead of taking the labels.
YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")


def _yaml_names(labels_dir: Path) -> list[str] | None:
    """Class names from the first of YAML_NAMES in the labels folder, its parent (the dataset's root) or, for
    labels/train, the one above; None where none is."""
    up = [labels_dir.parent.parent] if labels_dir.parent.name.lower() == "labels" else []  # labels/train
    for folder in (labels_dir, labels_dir.parent, *up):
        for name in YAML_NAMES:
            path = folder / name
            if not path.is_file():
                continue
            import yaml  # PyYAML: read only for such a file

            try:
                doc = yaml.safe_load(read_text(path))
            except yaml.YAMLError as exc:
                raise LabelError(f"{path}: not YAML ({one_line(exc)})") from None
            raw = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(raw, dict) and raw and all(isinstance(k, int) and k >= 0 for k in raw):
                return [str(raw.get(i, i)) for i in range(max(raw) + 1)]
            if isinstance(raw, list) and raw:
                return [str(n) for n in raw]
            if raw is not None:
                raise LabelError(f"{path}: 'names' is neither a list nor a map of class ids to names")
    return None


def write_yolo(labels: LabelSet, labels_dir: str | os.PathLike) -> None:
    """One ``.txt`` per image (not for images that had none and have no boxes), 6 decimals as Ultralytics writes."""
    labels_dir = Path(labels_dir)
    names = labels.meta.get("names")
    if names is None:
        names = [c for c in labels.classes if not c.isdigit()] or None
    for im in labels.images:
        if not len(im) and im.info.get("label_file") is False:
            continue
        if len(im) and im.size is None and not im.info.get("normalised"):
            raise InputError(f"{im.path}: YOLO needs the image size to normalise boxes")
        W, H = im.size or (1, 1)
        rows = []
        for box, cls, ex in zip(im.xywh, im.classes, im.extra):
            cid = ex.get("cls")
            if cid is None:
                cid = int(cls) if cls.isdigit() else names.index(cls)
            x, y, w, h = (float(v) for v in box)
            rows.append(f"{cid} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
        target = labels_dir / PurePosixPath(im.path).with_suffix(".txt")
        write_bytes_atomic(target, "".join(r + "\n" for r in rows).encode())
    if names:
        write_bytes_atomic(labels_dir / "classes.txt", "".join(n + "\n" for n in names).encode())
