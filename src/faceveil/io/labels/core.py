"""Annotated datasets in and out: WIDER FACE txt, COCO JSON, YOLO txt, Pascal VOC XML (read only).

Every reader returns a ``LabelSet``: one ``ImageLabels`` per image, boxes as
pixel ``x y w h`` (float64), plus what the format needs to be written back
unchanged (WIDER's six attribute columns and trailing-space habit, COCO's
whole documents, YOLO class ids). A writer fed what its own reader returned
writes the same labels again; the tests hold them to that.

Bad input fails loudly and early: a malformed line gives ``file:line: cause``;
an image path that is absolute or climbs out of the images root with ``..``
is refused (``LabelError``); duplicates are refused. Images a label file names
but that do not exist are not an error here: ``split_missing`` reports them.

Hand-written parsers: no maintained library reads and writes WIDER and YOLO
label files with line numbers and exact round trips (pycocotools reads COCO but
drops nothing we need to keep and adds a C dependency).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InputError
from .atomic import write_bytes_atomic
from .images import is_image_path

FORMATS = ("wider", "coco", "yolo", "voc")
WRITABLE = ("wider", "coco", "yolo")
WIDER_ATTRS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


class LabelError(InputError):
    """A label file that cannot be used as it is (message names the file and line)."""


@dataclass
class ImageLabels:
    path: str  # posix, relative to the images root
    xywh: np.ndarray  # Nx4 float64, pixels
    classes: list[str] = field(default_factory=list)  # one per box
    extra: list[dict] = field(default_factory=list)  # one per box: format details kept for writing back
    size: tuple[int, int] | None = None  # (width, height) when the labels state it
    line: int = 0  # where the image is named in the label file (1-based; 0 when not line-based)
    info: dict = field(default_factory=dict)  # per-image format details

    def __post_init__(self) -> None:
        self.xywh = np.asarray(self.xywh, np.float64).reshape(-1, 4)
        n = len(self.xywh)
        if not self.classes:
            self.classes = ["face"] * n
        if not self.extra:
            self.extra = [{} for _ in range(n)]
        if len(self.classes) != n or len(self.extra) != n:
            raise ValueError("classes and extra need one entry per box")

    def __len__(self) -> int:
        return len(self.xywh)

    @property
    def xyxy(self) -> np.ndarray:
        b = self.xywh.copy()
        b[:, 2:] += b[:, :2]
        return b


@dataclass
class LabelSet:
    format: str
    images: list[ImageLabels]
    source: Path | None = None  # the label file (wider, coco) or folder (yolo, voc)
    meta: dict = field(default_factory=dict)  # file-level format details

    def __len__(self) -> int:
        return len(self.images)

    @property
    def classes(self) -> list[str]:
        return sorted({c for im in self.images for c in im.classes})

    def num_boxes(self) -> int:
        return sum(len(im) for im in self.images)


# ---------------------------------------------------------------------------
# paths

def safe_relpath(name: str, where: str) -> str:
    """A label's image path as a clean relative posix path, or LabelError.

    Refuses absolute paths (``/x``, ``C:\\x``, ``\\\\server``), ``..`` anywhere and empty names:
    a label file must not make us read or write outside the dataset.
    """
    raw = name.strip()
    if not raw:
        raise LabelError(f"{where}: empty image path")
    unified = raw.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        raise LabelError(f"{where}: image path {raw!r} is absolute; paths must be relative to the images folder")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LabelError(f"{where}: image path {raw!r} leaves the images folder ('..')")
    if not parts:
        raise LabelError(f"{where}: empty image path")
    if any("\x00" in p for p in parts):
        raise LabelError(f"{where}: image path {raw!r} contains a NUL byte")
    return "/".join(parts)


def resolve_image(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a symlink that leads outside ``root``."""
    path = root / rel
    real_root = root.resolve()
    try:
        path.resolve().relative_to(real_root)
    except ValueError:
        raise LabelError(f"{path}: resolves outside the images folder {root} (symlink?)") from None
    return path


def _inside_labels(path: Path, root: Path) -> None:
    """Refuse a label file that is a symlink (or under one) leading outside the labels folder ``root``."""
    real = path.resolve()
    try:
        real.relative_to(root.resolve())
    except ValueError:
        raise LabelError(f"{path}: a link to {real}, outside the labels folder {root}; refusing to read it") from None


def split_missing(labels: LabelSet, root: str | os.PathLike) -> tuple[list[ImageLabels], list[ImageLabels]]:
    """(present, missing): images whose file exists under ``root`` and those that do not."""
    root = Path(root)
    present, missing = [], []
    for im in labels.images:
        (present if resolve_image(root, im.path).is_file() else missing).append(im)
    return present, missing


def _check_box(vals: list[float], where: str) -> None:
    if not all(math.isfinite(v) for v in vals):
        raise LabelError(f"{where}: box {vals} is not finite")
    if vals[2] < 0 or vals[3] < 0:
        raise LabelError(f"{where}: box width and height must be >= 0, got {vals[2]:g} x {vals[3]:g}")


def _num(v: float) -> str:
    """Integers without a decimal point (as WIDER writes them), other values exactly."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelError(f"{path}: no such label file") from None
    except IsADirectoryError:
        raise LabelError(f"{path}: is a folder, expected a label file") from None
    except OSError as exc:
        raise LabelError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelError(f"{path}:{line}: not UTF-8 text") from None


# ---------------------------------------------------------------------------
# WIDER FACE: name / count / count lines of "x y w h [blur expression illumination invalid occlusion pose]"

def read_wider(path: str | os.PathLike) -> LabelSet:
    path = Path(path)
    lines = _read_text(path).splitlines()
    images: list[ImageLabels] = []
    seen: dict[str, int] = {}
    trailing = None
    i = 0

    def numbers(k: int) -> list[str]:
        nonlocal trailing
        text = lines[k]
        if trailing is None and text.strip():
            trailing = text.endswith(" ")
        return text.split()

    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        name_line = i + 1
        where = f"{path}:{name_line}"
        rel = safe_relpath(lines[i], where)
        if not is_image_path(rel):
            raise LabelError(f"{where}: expected an image file name, got {lines[i].strip()!r}")
        if rel in seen:
            raise LabelError(f"{where}: {rel} is listed twice (first on line {seen[rel]})")
        seen[rel] = name_line
        i += 1
        if i >= len(lines):
            raise LabelError(f"{path}:{i + 1}: file ends before the face count of {rel}")
        tok = lines[i].split()
        if len(tok) != 1 or not tok[0].isdigit():
            raise LabelError(f"{path}:{i + 1}: expected the number of faces of {rel}, got {lines[i].strip()!r}")
        count = int(tok[0])
        i += 1
        boxes, extra = [], []
        placeholder = False
        if count == 0 and i < len(lines):
            # The official files put one all-zero line after a count of 0.
            t = lines[i].split()
            if t and all(_is_number(v) and float(v) == 0 for v in t) and len(t) in (4, 10):
                placeholder = True
                numbers(i)
                i += 1
        for _ in range(count):
            if i >= len(lines):
                raise LabelError(f"{path}:{i + 1}: file ends inside the boxes of {rel} ({count} announced)")
            t = numbers(i)
            where_box = f"{path}:{i + 1}"
            if len(t) not in (4, 10):
                raise LabelError(f"{where_box}: expected 'x y w h' and optionally 6 attribute columns "
                                 f"({', '.join(WIDER_ATTRS)}), got {len(t)} values")
            try:
                vals = [float(v) for v in t[:4]]
                attrs = [int(v) for v in t[4:]]
            except ValueError:
                raise LabelError(f"{where_box}: not a number in {lines[i].strip()!r}") from None
            _check_box(vals, where_box)
            boxes.append(vals)
            extra.append({"attrs": attrs} if attrs else {})
            i += 1
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), [], extra, None, name_line,
                                  {"placeholder": placeholder} if placeholder else {}))
    return LabelSet("wider", images, path, {"trailing_space": bool(trailing)})


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_wider(labels: LabelSet, path: str | os.PathLike) -> None:
    trailing = " " if labels.meta.get("trailing_space") else ""
    out: list[str] = []
    for im in labels.images:
        out.append(im.path)
        out.append(str(len(im)))
        if not len(im) and im.info.get("placeholder"):
            out.append("0 0 0 0 0 0 0 0 0 0" + trailing)
        for box, ex in zip(im.xywh, im.extra):
            cols = [_num(v) for v in box] + [str(int(a)) for a in ex.get("attrs", [])]
            out.append(" ".join(cols) + trailing)
    write_bytes_atomic(path, ("\n".join(out) + "\n").encode())


# ---------------------------------------------------------------------------
# COCO: {"images": [...], "annotations": [...], "categories": [...]}, bbox = x y w h

def read_coco(path: str | os.PathLike) -> LabelSet:
    path = Path(path)
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise LabelError(f"{path}: not a COCO file (no 'images' list at the top)")
    anns = doc.get("annotations", [])
    cats = doc.get("categories", [])
    if not isinstance(anns, list) or not isinstance(cats, list):
        raise LabelError(f"{path}: 'annotations' and 'categories' must be lists")
    cat_names: dict = {}
    for k, c in enumerate(cats):
        if not isinstance(c, dict) or "id" not in c:
            raise LabelError(f"{path}: categories[{k}]: needs an 'id'")
        cat_names[c["id"]] = str(c.get("name", c["id"]))
    by_id: dict = {}  # id -> (rel, size, image dict, boxes, classes, extra), in file order
    seen: dict[str, int] = {}
    for k, im in enumerate(doc["images"]):
        where = f"{path}: images[{k}]"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise LabelError(f"{where}: needs 'id' and 'file_name'")
        rel = safe_relpath(str(im["file_name"]), where)
        if rel in seen:
            raise LabelError(f"{where}: {rel} is listed twice (first as images[{seen[rel]}])")
        if im["id"] in by_id:
            raise LabelError(f"{where}: image id {im['id']!r} is used twice")
        seen[rel] = k
        size = None
        if "width" in im and "height" in im:
            try:
                size = (int(im["width"]), int(im["height"]))
            except (TypeError, ValueError):
                raise LabelError(f"{where}: width/height are not numbers") from None
        by_id[im["id"]] = (rel, size, im, [], [], [])
    for k, ann in enumerate(anns):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict) or "image_id" not in ann or "bbox" not in ann:
            raise LabelError(f"{where}: needs 'image_id' and 'bbox'")
        rec = by_id.get(ann["image_id"])
        if rec is None:
            raise LabelError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise LabelError(f"{where}: bbox must be [x, y, w, h] numbers, got {bbox!r}")
        if "category_id" in ann and cat_names and ann["category_id"] not in cat_names:
            raise LabelError(f"{where}: category_id {ann['category_id']!r} is not in 'categories'")
        vals = [float(v) for v in bbox]
        _check_box(vals, where)
        rec[3].append(vals)
        rec[4].append(cat_names.get(ann.get("category_id"), str(ann.get("category_id", "face"))))
        rec[5].append({"ann": ann})
    images = [ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0, {"image": im})
              for rel, size, im, boxes, classes, extra in by_id.values()]
    rest = {k: v for k, v in doc.items() if k not in ("images", "annotations")}
    return LabelSet("coco", images, path, {"coco": rest, "keys": list(doc.keys())})


def write_coco(labels: LabelSet, path: str | os.PathLike) -> None:
    """COCO JSON. A set read from COCO keeps every field; others get ids in order and one category per class."""
    src = labels.meta.get("coco")
    if src is not None:
        cats = src.get("categories", [])
        ids = {str(c.get("name", c["id"])): c["id"] for c in cats}
    else:
        names = labels.classes
        cats = [{"id": i + 1, "name": n, "supercategory": "face"} for i, n in enumerate(names)]
        ids = {n: i + 1 for i, n in enumerate(names)}
    images, anns = [], []
    next_img, next_ann = 1, 1
    used_ann_ids = {ex["ann"]["id"] for im in labels.images for ex in im.extra if "id" in ex.get("ann", {})}
    for im in labels.images:
        entry = dict(im.info.get("image") or {})
        if not entry:
            entry = {"id": next_img, "file_name": im.path}
            if im.size is not None:
                entry["width"], entry["height"] = im.size
        entry["file_name"] = im.path
        next_img = max(next_img, _int_or(entry["id"], 0)) + 1
        images.append(entry)
        for box, cls, ex in zip(im.xywh, im.classes, im.extra):
            ann = dict(ex.get("ann") or {})
            old = ann.get("bbox")
            if old is None or [float(v) for v in old] != [float(v) for v in box]:
                ann["bbox"] = [_json_num(v) for v in box]
                ann["area"] = _json_num(float(box[2] * box[3]))
            if "id" not in ann:
                while next_ann in used_ann_ids:
                    next_ann += 1
                ann["id"] = next_ann
                used_ann_ids.add(next_ann)
            ann["image_id"] = entry["id"]
            if "ann" not in ex:  # a new annotation; one read from COCO keeps exactly its own fields
                ann["category_id"] = ids.get(cls, cls)
                ann["iscrowd"] = 0
            anns.append(ann)
    if src is not None:
        doc = {}
        for key in labels.meta.get("keys", ["images", "annotations", "categories"]):
            doc[key] = images if key == "images" else anns if key == "annotations" else src.get(key)
        doc.setdefault("images", images)
        doc.setdefault("annotations", anns)
    else:
        doc = {"images": images, "annotations": anns, "categories": cats}
    write_bytes_atomic(path, (json.dumps(doc, ensure_ascii=False) + "\n").encode())


def _int_or(v, default: int) -> int:
    return v if isinstance(v, int) else default


def _json_num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


# ---------------------------------------------------------------------------
# YOLO: labels/<rel>.txt beside images/<rel>.jpg, lines "class cx cy w h" normalised to [0, 1]

def _oriented_size(path: Path) -> tuple[int, int]:
    """Width and height after EXIF orientation, from the header only (no decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:
                orientation = 1
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read image size ({exc})") from None
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
        _inside_labels(names_file, labels_dir)
        names = [ln.strip() for ln in _read_text(names_file).splitlines() if ln.strip()]
    by_stem: dict[str, Path] = {}
    for p in sorted(images_root.rglob("*")):
        if p.is_file() and is_image_path(p) and not p.name.startswith("."):
            stem = p.relative_to(images_root).with_suffix("").as_posix()
            if stem in by_stem:
                raise LabelError(f"{p}: two images share the label name {stem}.txt ({by_stem[stem].name})")
            by_stem[stem] = p
    label_files = {p.relative_to(labels_dir).with_suffix("").as_posix(): p
                   for p in sorted(labels_dir.rglob("*.txt")) if p != names_file}
    for p in label_files.values():
        _inside_labels(p, labels_dir)
    images: list[ImageLabels] = []
    for stem in sorted(set(by_stem) | set(label_files)):
        img = by_stem.get(stem)
        lf = label_files.get(stem)
        rel = img.relative_to(images_root).as_posix() if img else None
        size = _oriented_size(img) if img else None
        boxes, classes, extra = [], [], []
        if lf is not None:
            for n, line in enumerate(_read_text(lf).splitlines(), 1):
                t = line.split()
                if not t:
                    continue
                where = f"{lf}:{n}"
                if len(t) != 5:
                    raise LabelError(f"{where}: expected 'class cx cy w h', got {len(t)} values "
                                     "(segmentation polygons are not supported)")
                try:
                    cls = int(t[0])
                    cx, cy, w, h = (float(v) for v in t[1:])
                except ValueError:
                    raise LabelError(f"{where}: not a number in {line.strip()!r}") from None
                if cls < 0:
                    raise LabelError(f"{where}: negative class id {cls}")
                _check_box([cx, cy, w, h], where)
                # Pixels need the image's size; without the image the box stays normalised (reported missing).
                W, H = size if size else (1, 1)
                boxes.append([(cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H])
                classes.append(names[cls] if names and cls < len(names) else str(cls))
                extra.append({"cls": cls})
        info = {"label_file": lf is not None}
        if rel is None:
            # No image: name the missing one after the label file; its boxes stay normalised.
            rel = stem + ".jpg"
            info["normalised"] = True
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0, info))
    return LabelSet("yolo", images, labels_dir, {"names": names})


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


# ---------------------------------------------------------------------------
# Pascal VOC: one XML per image, <filename>, <size>, <object><name><bndbox>xmin ymin xmax ymax

def read_voc(annotations_dir: str | os.PathLike) -> LabelSet:
    """Read only. Boxes become x = xmin, w = xmax - xmin (the convention of the shared WIDER-layout copies)."""
    import xml.etree.ElementTree as ET

    annotations_dir = Path(annotations_dir)
    if not annotations_dir.is_dir():
        raise LabelError(f"{annotations_dir}: VOC annotations must be a folder of .xml files")
    images: list[ImageLabels] = []
    seen: dict[str, Path] = {}
    for xf in sorted(annotations_dir.rglob("*.xml")):
        _inside_labels(xf, annotations_dir)
        try:
            root = ET.fromstring(_read_text(xf))
        except ET.ParseError as exc:
            line = exc.position[0] if exc.position else 0
            raise LabelError(f"{xf}:{line}: invalid XML ({exc})") from None
        fn = root.findtext("filename")
        if not fn:
            raise LabelError(f"{xf}: no <filename>")
        folder_rel = xf.parent.relative_to(annotations_dir).as_posix()
        rel = safe_relpath(fn if folder_rel == "." else f"{folder_rel}/{fn}", str(xf))
        if rel in seen:
            raise LabelError(f"{xf}: {rel} is also labelled by {seen[rel]}")
        seen[rel] = xf
        size = None
        if root.find("size") is not None:
            try:
                size = (int(root.findtext("size/width")), int(root.findtext("size/height")))
            except (TypeError, ValueError):
                size = None
        boxes, classes, extra = [], [], []
        for k, obj in enumerate(root.iter("object")):
            bb = obj.find("bndbox")
            if bb is None:
                raise LabelError(f"{xf}: object {k + 1} has no <bndbox>")
            try:
                x1, y1, x2, y2 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise LabelError(f"{xf}: object {k + 1}: bndbox needs numeric xmin ymin xmax ymax") from None
            vals = [x1, y1, x2 - x1, y2 - y1]
            _check_box(vals, f"{xf}: object {k + 1}")
            boxes.append(vals)
            classes.append(obj.findtext("name") or "face")
            extra.append({})
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0,
                                  {"xml": xf.relative_to(annotations_dir).as_posix()}))
    if not images:
        raise LabelError(f"{annotations_dir}: no .xml files")
    return LabelSet("voc", images, annotations_dir, {})


# ---------------------------------------------------------------------------

def read_labels(fmt: str, labels: str | os.PathLike, images_root: str | os.PathLike | None = None) -> LabelSet:
    if fmt == "wider":
        return read_wider(labels)
    if fmt == "coco":
        return read_coco(labels)
    if fmt == "yolo":
        if images_root is None:
            raise ValueError("YOLO labels need the images folder")
        return read_yolo(labels, images_root)
    if fmt == "voc":
        return read_voc(labels)
    raise InputError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_labels(fmt: str, labels: LabelSet, target: str | os.PathLike) -> None:
    if fmt == "wider":
        write_wider(labels, target)
    elif fmt == "coco":
        write_coco(labels, target)
    elif fmt == "yolo":
        write_yolo(labels, target)
    else:
        raise InputError(f"cannot write {fmt!r} labels; writable formats: {', '.join(WRITABLE)}")


def label_files(labels: LabelSet) -> list[Path]:
    """The files that make up the labels on disk (one file, or every file of a YOLO/VOC folder)."""
    src = labels.source
    if src is None:
        return []
    if src.is_dir():
        ext = "*.xml" if labels.format == "voc" else "*.txt"
        return sorted(p for p in src.rglob(ext) if p.is_file())
    return [src]
