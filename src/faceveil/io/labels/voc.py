"""Pascal VOC labels: one XML per image, ``<filename>``, ``<size>``, ``<object><name><difficult><bndbox>``."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import numpy as np

from ..atomic import write_bytes_atomic
from .core import (ImageLabels, LabelError, LabelSet, check_box, format_number, inside_labels, read_bytes, safe_relpath,
                   visible_files)


def read_voc(annotations_dir: str | os.PathLike) -> LabelSet:
    """Boxes become x = xmin, w = xmax - xmin (the convention of the shared WIDER-layout copies)."""
    annotations_dir = Path(annotations_dir)
    if not annotations_dir.is_dir():
        raise LabelError(f"{annotations_dir}: VOC annotations must be a folder of .xml files")
    images: list[ImageLabels] = []
    seen: dict[str, Path] = {}
    for xf in visible_files(annotations_dir, ".xml"):
        inside_labels(xf, annotations_dir)
        try:
            root = ET.fromstring(read_bytes(xf))  # bytes: the XML declaration's encoding (ISO-8859-1 too) is read
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
        boxes, classes, extra, ignore = [], [], [], []
        for k, obj in enumerate(root.iter("object")):
            bb = obj.find("bndbox")
            if bb is None:
                raise LabelError(f"{xf}: object {k + 1} has no <bndbox>")
            try:
                x1, y1, x2, y2 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise LabelError(f"{xf}: object {k + 1}: bndbox needs numeric xmin ymin xmax ymax") from None
            vals = [x1, y1, x2 - x1, y2 - y1]
            check_box(vals, f"{xf}: object {k + 1}")
            boxes.append(vals)
            classes.append(obj.findtext("name") or "face")
            extra.append({"bndbox": (x1, y1, x2, y2)})  # the corners as written, for an exact write back
            ignore.append((obj.findtext("difficult") or "0").strip() == "1")
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), classes, extra, size, 0,
                                  {"xml": xf.relative_to(annotations_dir).as_posix()}, ignore))
    if not images:
        raise LabelError(f"{annotations_dir}: no .xml files")
    return LabelSet("voc", images, annotations_dir, {})


def write_voc(labels: LabelSet, annotations_dir: str | os.PathLike) -> None:
    """One ``<image path>.xml`` per image under ``annotations_dir``: filename, size when known, objects with
    their class, ``difficult`` from ``ignore`` and the corners (those read from VOC exactly as they were)."""
    annotations_dir = Path(annotations_dir)
    for im in labels.images:
        rel = PurePosixPath(im.path)
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = rel.name
        if im.size is not None:
            size = ET.SubElement(root, "size")
            ET.SubElement(size, "width").text = str(im.size[0])
            ET.SubElement(size, "height").text = str(im.size[1])
            ET.SubElement(size, "depth").text = "3"
        for box, cls, ex, ign in zip(im.xywh, im.classes, im.extra, im.ignore):
            x, y, w, h = (float(v) for v in box)
            corners = ex.get("bndbox")
            if corners is None or [*corners[:2], corners[2] - corners[0], corners[3] - corners[1]] != [x, y, w, h]:
                corners = (x, y, x + w, y + h)
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = cls
            ET.SubElement(obj, "difficult").text = "1" if ign else "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), corners):
                ET.SubElement(bb, tag).text = format_number(val)
        ET.indent(root)
        write_bytes_atomic(annotations_dir / rel.with_suffix(".xml"), ET.tostring(root, encoding="utf-8") + b"\n")
