"""The job's vocabulary: its settings (DatasetConfig), one image's work order (Item), the Summary, OUT's own names."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..pipeline import AnonymizerConfig

BOX_MODES = ("gt", "detect", "union")
MANIFEST = "manifest.jsonl"
REVIEW_FILE = "review.json"  # where `faceveil review` 0.1.0 kept its progress; now under OWN_DIR
OWN_DIR = ".faceveil"  # faceveil's own files under OUT (review progress, track records): never outputs


def own_file(rel: str) -> bool:
    """A file faceveil itself writes under OUT/.faceveil (the review's progress, a video's track record); any other
    file there is no output of faceveil's and `dataset verify` reports it."""
    parts = rel.split("/")
    return len(parts) == 2 and parts[0] == OWN_DIR and (parts[1] == REVIEW_FILE or parts[1].endswith(".tracks.json"))


def old_state(path: Path) -> dict:
    """A review saved by faceveil 0.1.0 at OUT/review.json, if that file is one (else a user's file: {})."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 << 20:
            return {}
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if isinstance(state, dict) and "faceveil" in state and "format" in state and isinstance(state.get("items"), dict):
        return state
    return {}


def reviewed_boxes(out: Path) -> dict[str, list[list[float]]]:
    """The boxes a reviewer added by hand (`faceveil review`'s Apply), by image path under OUT, as the saved review
    (OUT/.faceveil/review.json, or faceveil 0.1.0's OUT/review.json) holds them: they must stay hidden through any
    redo, even one that failed and so dropped the image's manifest line. An unreadable review stops the run."""
    from ..errors import InputError

    path = out / OWN_DIR / REVIEW_FILE
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise InputError(f"{path}: cannot read the saved review ({exc}); its manual boxes would be lost: "
                             "fix it or move it away") from None
    else:
        state = old_state(out / REVIEW_FILE)
    items = state.get("items") if isinstance(state, dict) else None
    boxes = {}
    for rel, rec in (items if isinstance(items, dict) else {}).items():
        manual = rec.get("manual") if isinstance(rec, dict) else None
        good = [[float(v) for v in b] for b in manual or [] if isinstance(b, list) and len(b) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)]
        if good:
            boxes[rel] = good
    return boxes


def labels_digest(xyxy, size) -> str:
    """A short digest of what the labels say of one image (its face boxes and stated size), as the plan reads them:
    recorded on its manifest line, so that a label edit makes the image not done (and `dataset verify` notices)."""
    boxes = [[float(v) for v in b] for b in xyxy]
    return hashlib.sha256(json.dumps([boxes, list(size) if size else None]).encode()).hexdigest()[:16]


def named_images(entries) -> set[str] | None:
    """The images OUT's labels name, as paths under OUT (dataset/job.py lists them on the first label file's
    manifest line); None for an output made before that list existed."""
    listed = [rel for e in entries if e.get("kind") == "labels" for rel in e.get("images", [])]
    return set(listed) if listed else None


@dataclass(frozen=True)
class DatasetConfig:
    """Everything a worker needs (picklable)."""

    anonymizer: AnonymizerConfig
    boxes: str = "union"  # "auto": union when the labels are faces (see default_boxes)
    min_size: float = 0.0


@dataclass(frozen=True)
class Item:
    rel: str  # image path relative to the images root (also the seed key)
    src: str
    dst: str
    out_rel: str  # output path relative to OUT (what the manifest records)
    xyxy: tuple  # labelled face boxes in pixels, ((x1, y1, x2, y2), ...)
    size: tuple | None  # (w, h) stated by the labels
    # The pixel frame of the boxes: "stored" (the file's pixels as stored, EXIF orientation not applied:
    # WIDER, COCO, VOC) or "oriented" (after the EXIF orientation: YOLO, as Ultralytics reads images).
    frame: str = "stored"
    labels_sha256: str = ""  # labels_digest(xyxy, size)
    # boxes a reviewer added by hand (`faceveil review`, upright frame) to an image redone since: still hidden
    manual: tuple = ()


@dataclass
class Summary:
    images: int = 0  # in the labels
    done: int = 0  # written in this run
    skipped: int = 0  # already done by an earlier run (manifest and hash agree)
    failed: list[str] = field(default_factory=list)  # "path: reason"
    missing: list[str] = field(default_factory=list)  # named in the labels, no file
    unlabelled: list[str] = field(default_factory=list)  # image files not in the labels: not written
    no_label_file: list[str] = field(default_factory=list)  # YOLO images without a .txt: no labelled face, written
    other_media: list[str] = field(default_factory=list)  # pictures of types faceveil does not read: not written
    faces_labels: int = 0
    faces_detected: int = 0
    faces_detected_extra: int = 0  # detections matching no labelled face
    small_left: int = 0
    clipped: int = 0
    degenerate: int = 0  # labelled boxes with no area inside the image
    # images written with EXIF orientation 2-8 whose labels cannot show in which frame their boxes are: "path (why)"
    frame_unchecked: list[str] = field(default_factory=list)
    stale_tmp_removed: int = 0
    seconds: float = 0.0
    out: str = ""
    boxes: str = ""  # the box mode used
    kept: int = 0  # faces left as they are (--keep-*), in the images written and skipped
    keep: dict | None = None  # the keep settings (people, gallery hash, threshold, regions), as the manifest has them

    def to_json(self) -> dict:
        return dict(self.__dict__)
