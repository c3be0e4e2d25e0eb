"""Readers for labelled face boxes: WIDER FACE txt, Pascal VOC XML, COCO JSON, YOLO txt.

Every reader returns ``{image key: LabelledImage}``: the boxes as ``Detections``
(source "label") and an ``ignore`` flag per box where the format has one
(WIDER ``invalid``, VOC ``difficult``, COCO ``iscrowd``/``ignore``). The key is
the image path relative to the images folder as the format names it (WIDER:
``event/name.jpg``; VOC/COCO: the file name; YOLO: the label file's stem, the
image found by ``resolve_image``).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detections import Detections
from ..errors import InputError, UsageError

FORMATS = ("wider", "voc", "coco", "yolo")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class LabelledImage:
    key: str
    faces: Detections  # source "label", score 1
    ignore: np.ndarray  # bool, N: the format marks the box invalid/difficult/crowd

    def __post_init__(self):
        object.__setattr__(self, "ignore", np.asarray(self.ignore, bool).reshape(len(self.faces)))


def _labelled(key: str, xyxy, ignore) -> LabelledImage:
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    return LabelledImage(key, Detections.from_boxes(xyxy, source="label"), np.asarray(ignore, bool))


def guess_format(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        if any(p.glob("*.xml")):
            return "voc"
        if any(p.glob("*.txt")):
            return "yolo"
        raise UsageError(f"{p}: no .xml (VOC) or .txt (YOLO) label files in this folder")
    if p.suffix.lower() == ".json":
        return "coco"
    if p.suffix.lower() == ".txt":
        return "wider"
    raise UsageError(f"{p}: cannot tell the label format; give --format ({'|'.join(FORMATS)})")


def read_labels(path: str | Path, fmt: str | None = None, images: str | Path | None = None) -> dict[str, LabelledImage]:
    """Labels from a file or folder; ``images`` is needed for YOLO (its boxes are relative to the image size)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: labels not found")
    fmt = fmt or guess_format(path)
    if fmt == "wider":
        return read_wider(path)
    if fmt == "voc":
        return read_voc(path)
    if fmt == "coco":
        return read_coco(path)
    if fmt == "yolo":
        if images is None:
            raise UsageError("YOLO labels are relative to the image size: give the images folder too")
        return read_yolo(path, images)
    raise UsageError(f"unknown label format {fmt!r} (choose from: {', '.join(FORMATS)})")


def read_wider(path: str | Path) -> dict[str, LabelledImage]:
    """WIDER FACE ``*_bbx_gt.txt``: name, count, then ``x y w h blur expr illum invalid occl pose`` lines."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    out: dict[str, LabelledImage] = {}
    i = 0
    try:
        while i < len(lines):
            key = lines[i]
            n = int(lines[i + 1])
            i += 2
            rows = []
            for _ in range(n):
                rows.append([float(v) for v in lines[i].split()])
                i += 1
            # The official files write one all-zero row for an image without faces.
            if n == 0 and i < len(lines) and _is_zero_row(lines[i]):
                i += 1
            a = np.asarray(rows, np.float64).reshape(-1, len(rows[0]) if rows else 4)
            xyxy = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1) if n else np.zeros((0, 4))
            invalid = a[:, 7] > 0 if a.shape[1] >= 8 else np.zeros(n, bool)
            out[key] = _labelled(key, xyxy, invalid)
    except (ValueError, IndexError):
        raise InputError(f"{path}: not a WIDER FACE box file (bad entry near line {i + 1})") from None
    return out


def _is_zero_row(line: str) -> bool:
    parts = line.split()
    try:
        return len(parts) >= 4 and all(float(v) == 0 for v in parts)
    except ValueError:
        return False


def read_voc(folder: str | Path) -> dict[str, LabelledImage]:
    """A folder of Pascal VOC XML files; every ``<object>`` is a face unless its name says otherwise.

    Coordinates are taken as given (x2 = xmax), the convention the facemask set's gt.txt uses.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.xml")) if folder.is_dir() else [folder]
    out: dict[str, LabelledImage] = {}
    for f in files:
        try:
            root = ET.parse(f).getroot()
        except ET.ParseError as exc:
            raise InputError(f"{f}: not a valid XML file ({exc})") from None
        key = (root.findtext("filename") or "").strip() or f.stem
        boxes, ignore = [], []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            if bb is None:
                continue
            try:
                boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
            except (TypeError, ValueError):
                raise InputError(f"{f}: an object has a bad <bndbox>") from None
            ignore.append((obj.findtext("difficult") or "0").strip() == "1")
        out[key] = _labelled(key, boxes, ignore)
    return out


def read_coco(path: str | Path) -> dict[str, LabelledImage]:
    """COCO instances JSON; only the "face" category when there is one, else every annotation."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        images = {im["id"]: im["file_name"] for im in doc["images"]}
        cats = {c["id"]: str(c.get("name", "")).lower() for c in doc.get("categories", [])}
        face_ids = {i for i, n in cats.items() if "face" in n}
        per: dict[int, tuple[list, list]] = {i: ([], []) for i in images}
        for ann in doc.get("annotations", []):
            if face_ids and ann.get("category_id") not in face_ids:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            boxes, ignore = per[ann["image_id"]]
            boxes.append([x, y, x + w, y + h])
            ignore.append(bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0)))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a COCO annotation file ({exc.__class__.__name__}: {exc})") from None
    return {images[i]: _labelled(images[i], b, g) for i, (b, g) in per.items()}


def read_yolo(folder: str | Path, images: str | Path) -> dict[str, LabelledImage]:
    """A folder of YOLO ``class cx cy w h`` files (relative coordinates); every line is a face."""
    from PIL import Image

    folder, images = Path(folder), Path(images)
    out: dict[str, LabelledImage] = {}
    for f in sorted(folder.glob("*.txt")):
        if f.name == "classes.txt":
            continue
        img = resolve_image(images, f.stem)
        if img is None:
            raise InputError(f"{f}: no image named {f.stem}.* in {images}")
        with Image.open(img) as im:  # reads the header only
            w, h = im.size
        try:
            rows = [[float(v) for v in ln.split()[1:5]] for ln in f.read_text().splitlines() if ln.strip()]
        except ValueError:
            raise InputError(f"{f}: not a YOLO label file") from None
        a = np.asarray(rows, np.float64).reshape(-1, 4) * [w, h, w, h]
        xyxy = np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], axis=1)
        key = str(img.relative_to(images))
        out[key] = _labelled(key, xyxy, np.zeros(len(a), bool))
    return out


def resolve_image(images: str | Path, key: str) -> Path | None:
    """The image file for a label key: the exact relative path, else a file with that name or stem."""
    images = Path(images)
    p = images / key
    if p.is_file():
        return p
    name = Path(key).name
    stem = Path(key).stem if Path(key).suffix.lower() in IMAGE_EXTS else name
    for ext in IMAGE_EXTS:
        for cand in (images / (stem + ext), images / (stem + ext.upper())):
            if cand.is_file():
                return cand
    hits = [q for q in images.rglob(stem + ".*") if q.suffix.lower() in IMAGE_EXTS]
    return hits[0] if hits else None
