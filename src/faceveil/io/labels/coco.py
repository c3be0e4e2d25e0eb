"""COCO labels: ``{"images": [...], "annotations": [...], "categories": [...]}``, bbox = x y w h."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...errors import UsageError
from ..atomic import write_bytes_atomic
from .core import ImageLabels, LabelError, LabelSet, check_box, read_text, safe_relpath


def read_coco(path: str | os.PathLike) -> LabelSet:
    path = Path(path)
    text = read_text(path)
    if not text.strip():  # was "not JSON, so not COCO labels (--format coco); for WIDER ... give --format wider"
        raise LabelError(f"{path}: empty file: no COCO labels in it")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text.lstrip()[:1] in ("{", "["):  # not JSON at all: another format's file (gt.txt, a folder's XML)
            raise UsageError(f"{path}: not JSON, so not COCO labels (--format coco); for WIDER, YOLO or VOC labels "
                             "give --format wider, yolo or voc") from None
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
        rel = safe_relpath(str(im["file_name"]), where, strip=False)
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
        check_box(vals, where)
        rec[3].append(vals)
        rec[4].append(cat_names.get(ann.get("category_id"), str(ann.get("category_id", "face"))))
        rec[5].append({"ann": ann})
    images = [ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0, {"image": im},
                          [bool(ex["ann"].get("iscrowd", 0)) or bool(ex["ann"].get("ignore", 0)) for ex in extra])
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
