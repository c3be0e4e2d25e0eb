"""WIDER FACE labels: name, count, then per face ``x y w h [blur expression illumination invalid occlusion pose]``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..images import is_image_path
from .core import ImageLabels, LabelError, LabelSet, check_box, format_number, read_text, safe_relpath

WIDER_ATTRS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
_INVALID = WIDER_ATTRS.index("invalid")


def read_wider(path: str | os.PathLike) -> LabelSet:
    path = Path(path)
    lines = read_text(path).splitlines()
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
        if lines[i] != lines[i].strip():  # " lead.jpg" was taken as lead.jpg, another photo with its own labels
            raise LabelError(f"{where}: image name {lines[i]!r} begins or ends with white space, which a WIDER line "
                             "cannot tell from padding; remove it from the line, or rename the image")
        rel = safe_relpath(lines[i], where)
        if not is_image_path(rel):
            got = lines[i].strip()  # a JSON or CSV file's first line was quoted whole (a COCO file: kilobytes)
            got = got if len(got) <= 60 else got[:57] + "..."
            raise LabelError(f"{where}: expected an image file name, got {got!r}")
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
            check_box(vals, where_box)
            boxes.append(vals)
            extra.append({"attrs": attrs} if attrs else {})
            i += 1
        ignore = [bool(ex) and ex["attrs"][_INVALID] > 0 for ex in extra]
        images.append(ImageLabels(rel, np.array(boxes).reshape(-1, 4), [], extra, None, name_line,
                                  {"placeholder": placeholder} if placeholder else {}, ignore))
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
            cols = [format_number(v) for v in box] + [str(int(a)) for a in ex.get("attrs", [])]
            out.append(" ".join(cols) + trailing)
    write_bytes_atomic(path, ("\n".join(out) + "\n").encode())
