"""The one label type (``LabelSet`` of ``ImageLabels``) and the checks every format reader shares.

Every reader (``wider``, ``coco``, ``yolo``, ``voc``) returns a ``LabelSet``:
one ``ImageLabels`` per image, boxes as pixel ``x y w h`` (float64, exact, so
that a writer gives back what its reader read), the faces as ``Detections``
(source "label"), an ``ignore`` flag per box where the format has one (WIDER
``invalid``, VOC ``difficult``, COCO ``iscrowd``/``ignore``), plus what the
format needs to be written back unchanged (WIDER's six attribute columns and
trailing-space habit, COCO's whole documents, YOLO class ids).

Bad input fails loudly and early: a malformed line gives ``file:line: cause``;
an image path that is absolute or climbs out of the images root with ``..``
is refused (``LabelError``); duplicates are refused. Images a label file names
but that do not exist are not an error here: ``split_missing`` reports them.

Hand-written parsers: no maintained library reads and writes WIDER and YOLO
label files with line numbers and exact round trips (pycocotools reads COCO but
drops nothing we need to keep and adds a C dependency).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...detections import Detections
from ...errors import InputError, UsageError

FORMATS = ("wider", "coco", "yolo", "voc")


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
    ignore: np.ndarray | None = None  # bool, one per box: the format marks it invalid/difficult/crowd

    def __post_init__(self) -> None:
        self.xywh = np.asarray(self.xywh, np.float64).reshape(-1, 4)
        n = len(self.xywh)
        self.ignore = np.zeros(n, bool) if self.ignore is None else np.asarray(self.ignore, bool).reshape(n)
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

    @property
    def faces(self) -> Detections:
        """The boxes as ``Detections`` (source "label", score 1); corners added in float64, then stored as float32."""
        return Detections.from_boxes(self.xyxy, source="label")


@dataclass
class LabelSet:
    """The images of one label file or folder, in file order; also a read-only mapping image path -> ImageLabels."""

    format: str
    images: list[ImageLabels]
    source: Path | None = None  # the label file (wider, coco) or folder (yolo, voc)
    meta: dict = field(default_factory=dict)  # file-level format details

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[str]:
        return (im.path for im in self.images)

    def __contains__(self, path: object) -> bool:
        return path in self._index()

    def __getitem__(self, path: str) -> ImageLabels:
        return self._index()[path]

    def keys(self) -> list[str]:
        return [im.path for im in self.images]

    def _index(self) -> dict[str, ImageLabels]:
        # Rebuilt when ``images`` is replaced or grows: lookups stay O(1) in the eval loops.
        cached = self.__dict__.get("_by_path")
        if cached is None or cached[0] is not self.images or len(cached[1]) != len(self.images):
            cached = (self.images, {im.path: im for im in self.images})
            self.__dict__["_by_path"] = cached
        return cached[1]

    @property
    def classes(self) -> list[str]:
        return sorted({c for im in self.images for c in im.classes})

    def num_boxes(self) -> int:
        return sum(len(im) for im in self.images)


# ---------------------------------------------------------------------------
# paths

def safe_relpath(name: str, where: str, strip: bool = True) -> str:
    """A label's image path as a clean relative posix path, or LabelError.

    Refuses absolute paths (``/x``, ``C:\\x``, ``\\\\server``), ``..`` anywhere and empty names:
    a label file must not make us read or write outside the dataset. ``strip=False``: white space at either end is
    part of the name (COCO's JSON strings: " lead.jpg" is not lead.jpg).
    """
    raw = name.strip() if strip else name
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


def inside_labels(path: Path, root: Path) -> None:
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


def check_box(vals: list[float], where: str) -> None:
    if not all(math.isfinite(v) for v in vals):
        raise LabelError(f"{where}: box {vals} is not finite")
    if vals[2] < 0 or vals[3] < 0:
        raise LabelError(f"{where}: box width and height must be >= 0, got {vals[2]:g} x {vals[3]:g}")


def format_number(v: float) -> str:
    """Integers without a decimal point (as WIDER writes them), other values exactly."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LabelError(f"{path}: no such label file") from None
    except IsADirectoryError:
        raise LabelError(f"{path}: is a folder, expected a label file") from None
    except OSError as exc:  # bad usage, as a missing --labels is: found before any work, and nothing is written
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def read_text(path: Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LabelError(f"{path}:{line}: not UTF-8 text") from None


def visible_files(root: Path, suffix: str | None = None) -> list[Path]:
    """The files under ``root``, sorted, but for hidden ones and any in a hidden folder (.ipynb_checkpoints, .git:
    not part of a dataset); with ``suffix`` (".txt") only those that end so, in any case (X.XML). Links to folders
    are not followed. A folder or file that cannot be read stops the run before any work (bad usage, exit 2): its
    images were missed, or its labels taken as none."""
    from ..inputs import list_folder

    files, _, bad, _ = list_folder(root)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"{bad[0][0]}: {bad[0][1]}{more}; nothing written (make it readable, or move it out)")
    return [p for p in files if suffix is None or p.name.lower().endswith(suffix)]


def label_files(labels: LabelSet) -> list[Path]:
    """The files that make up the labels on disk (one file, or every file of a YOLO/VOC folder)."""
    src = labels.source
    if src is None:
        return []
    if src.is_dir():
        return visible_files(src, ".xml" if labels.format == "voc" else ".txt")
    return [src]
