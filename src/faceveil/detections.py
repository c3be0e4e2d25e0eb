"""The one value type that carries faces between stages, and its one JSON form.

Like supervision's ``Detections``: an immutable struct of arrays. Selection
with a boolean mask or index array returns a new ``Detections``; iterating
yields ``Face`` records for code that wants one face at a time.

Every box says where it came from (``sources``, one of ``SOURCES``): found by a
detector, held or back-filled by the tracker, drawn by a reviewer, or taken from
a dataset's labels. ``to_dict`` / ``from_dict`` are the one JSON form, written by
reports, the eval cache, the review and the video track record; ``from_dict``
also reads the shapes earlier versions wrote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import UsageError


# Where a box came from. "held": the tracker carried a track over frames its detector missed;
# "backfilled": the tracker extended a track backwards over the frames before it was first found.
SOURCES = ("detected", "held", "backfilled", "manual", "label")
_SOURCE_DTYPE = "<U10"
# A labelled box and a detection overlapping at least this much are one face (``with_landmarks_from``).
LANDMARK_IOU = 0.4


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    score: float
    landmarks: np.ndarray | None  # 5x2 (eyes, nose, mouth corners) or None
    track_id: int = -1

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Detections:
    xyxy: np.ndarray  # float32, Nx4
    score: np.ndarray  # float32, N
    landmarks: np.ndarray  # float32, Nx5x2, NaN where a detector has none
    track_id: np.ndarray = field(default=None)  # int64, N, -1 if none
    source: str = ""  # what made the set (a detector's name, "track", "manual", ...)
    sources: np.ndarray = field(default=None)  # per box, one of SOURCES; None: from ``source``

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        object.__setattr__(self, "xyxy", np.asarray(self.xyxy, np.float32).reshape(n, 4))
        object.__setattr__(self, "score", np.asarray(self.score, np.float32).reshape(n))
        lm = self.landmarks
        lm = np.full((n, 5, 2), np.nan, np.float32) if lm is None else np.asarray(lm, np.float32)
        object.__setattr__(self, "landmarks", lm.reshape(n, 5, 2))
        tid = self.track_id
        tid = np.full(n, -1, np.int64) if tid is None else np.asarray(tid, np.int64)
        object.__setattr__(self, "track_id", tid.reshape(n))
        src = self.sources
        if src is None:
            src = np.full(n, self.source if self.source in SOURCES else "detected", _SOURCE_DTYPE)
        else:
            src = np.asarray(src, _SOURCE_DTYPE).reshape(n)
            bad = set(src.tolist()) - set(SOURCES)
            if bad:
                raise ValueError(f"unknown box source(s) {sorted(bad)}: expected one of {SOURCES}")
        object.__setattr__(self, "sources", src)

    # construction ---------------------------------------------------------
    @classmethod
    def empty(cls, source: str = "") -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), None, None, source)

    @classmethod
    def from_boxes(cls, xyxy, score=None, landmarks=None, source: str = "") -> "Detections":
        try:
            xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        except (TypeError, ValueError) as exc:  # np.zeros(3): a raw ValueError from numpy
            raise UsageError(f"boxes: expected rows of x1, y1, x2, y2 ({exc})") from None
        score = np.ones(len(xyxy), np.float32) if score is None else score
        return cls(xyxy, score, landmarks, None, source)

    @classmethod
    def from_faces(cls, faces, source: str = "") -> "Detections":
        """Detections of ``Face`` objects, what iterating a Detections yields (boxes, scores, landmarks, track ids)."""
        faces = list(faces)
        nan = np.full((5, 2), np.nan, np.float32)
        return cls(np.array([f.box for f in faces], np.float32).reshape(-1, 4), [f.score for f in faces],
                   np.array([nan if f.landmarks is None else f.landmarks for f in faces], np.float32).reshape(-1, 5, 2),
                   [f.track_id for f in faces], source)

    @classmethod
    def from_xywh(cls, xywh, score=None, landmarks=None, source: str = "") -> "Detections":
        b = np.asarray(xywh, np.float32).reshape(-1, 4).copy()
        b[:, 2:] += b[:, :2]
        return cls.from_boxes(b, score, landmarks, source)

    @classmethod
    def merge(cls, items: list["Detections"], source: str = "") -> "Detections":
        items = [d for d in items if len(d)]
        if not items:
            return cls.empty(source)
        return cls(
            np.concatenate([d.xyxy for d in items]),
            np.concatenate([d.score for d in items]),
            np.concatenate([d.landmarks for d in items]),
            np.concatenate([d.track_id for d in items]),
            source or "+".join(dict.fromkeys(d.source for d in items)),
            np.concatenate([d.sources for d in items]),
        )

    # access ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = [index]
        return Detections(
            self.xyxy[index], self.score[index], self.landmarks[index], self.track_id[index], self.source,
            self.sources[index],
        )

    def __iter__(self) -> Iterator[Face]:
        for i in range(len(self)):
            yield Face(
                tuple(float(v) for v in self.xyxy[i]),
                float(self.score[i]),
                self.landmarks_at(i),
                int(self.track_id[i]),
            )

    def landmarks_at(self, i: int) -> np.ndarray | None:
        """Face ``i``'s 5x2 landmarks (a copy), or None when it has none (NaN)."""
        lm = self.landmarks[i]
        return None if np.isnan(lm).any() else lm.copy()

    def landmarks_each(self) -> list[np.ndarray | None]:
        """``landmarks_at`` of every face, the NaN check done once for all (a crowd frame has ~1,000 faces)."""
        return [lm.copy() if ok else None for lm, ok in zip(self.landmarks, self.has_landmarks.tolist())]

    @property
    def widths(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def areas(self) -> np.ndarray:
        return np.clip(self.widths, 0, None) * np.clip(self.heights, 0, None)

    @property
    def has_landmarks(self) -> np.ndarray:
        return ~np.isnan(self.landmarks).any(axis=(1, 2))

    # transforms -----------------------------------------------------------
    def scaled(self, factor: float) -> "Detections":
        """Coordinates multiplied by ``factor`` (maps boxes between image sizes)."""
        return Detections(self.xyxy * factor, self.score, self.landmarks * factor, self.track_id, self.source,
                          self.sources)

    def translated(self, dx: float, dy: float) -> "Detections":
        off = np.array([dx, dy], np.float32)
        return Detections(
            self.xyxy + np.tile(off, 2), self.score, self.landmarks + off, self.track_id, self.source,
            self.sources,
        )

    def clipped(self, width: int, height: int) -> "Detections":
        b = self.xyxy.copy()
        b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
        b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
        return Detections(b, self.score, self.landmarks, self.track_id, self.source, self.sources)

    def with_sources(self, source: str) -> "Detections":
        """The same boxes, every one marked as coming from ``source`` (one of SOURCES)."""
        return Detections(self.xyxy, self.score, self.landmarks, self.track_id, self.source,
                          np.full(len(self), source, _SOURCE_DTYPE))

    def with_landmarks_from(self, other: "Detections", min_iou: float = LANDMARK_IOU) -> "Detections":
        """The same boxes, each without landmarks given those of the ``other`` box that overlaps it most.

        For labelled boxes (no landmarks) anonymized by a method that places things by them
        (replace, eyebar): the detector's landmarks of the same face. Matching is one to one,
        highest IoU first, and only at IoU >= ``min_iou``; a box with no such match, or one
        that has landmarks already, keeps what it has. Boxes, scores and sources are unchanged,
        so the region stays the labelled box.
        """
        need = ~self.has_landmarks
        if not need.any() or not len(other):
            return self
        src = other.has_landmarks
        iou = box_iou(self.xyxy, other.xyxy)
        iou[~need, :] = -1.0
        iou[:, ~src] = -1.0
        lm = self.landmarks.copy()
        # Greedy one-to-one matching, best pair first (a handful of faces: no assignment solver needed).
        for flat in np.argsort(-iou, axis=None, kind="stable"):
            i, j = divmod(int(flat), iou.shape[1])
            if iou[i, j] < min_iou:
                break
            lm[i] = other.landmarks[j]
            iou[i, :] = -1.0
            iou[:, j] = -1.0
        return Detections(self.xyxy, self.score, lm, self.track_id, self.source, self.sources)

    def filter(self, min_score: float = 0.0, min_size: float = 0.0) -> "Detections":
        keep = (self.score >= min_score) & (np.minimum(self.widths, self.heights) >= min_size)
        return self[keep]

    # the one JSON form ---------------------------------------------------
    def to_dict(self, decimals: int | None = None, score_decimals: int | None = None) -> dict:
        """``{"detector": source, "faces": [{"box", "score", "landmarks", "track_id", "source"}, ...]}``.

        Coordinates and scores are exact (float32 -> float) unless rounded to ``decimals`` /
        ``score_decimals``. "landmarks" is null for a box without them; "track_id" only where
        there is one.
        """
        # Python floats once for the whole array (tolist: the same values as float() of each float32) and the
        # rounding inline: a crowd frame's record has ~1,000 faces, and numpy scalars and a helper call per value
        # cost more than the rounding itself
        boxes, scores = self.xyxy.tolist(), self.score.tolist()
        if decimals is not None:
            boxes = [[round(v, decimals) for v in b] for b in boxes]
        if score_decimals is not None:
            scores = [round(v, score_decimals) for v in scores]
        has_lm = self.has_landmarks.tolist()
        lms = self.landmarks.tolist() if any(has_lm) else None  # a track record's boxes have none
        ids, sources = self.track_id.tolist(), self.sources.tolist()
        faces = []
        for i in range(len(self)):
            lm = None
            if has_lm[i]:
                lm = lms[i] if decimals is None else [[round(v, decimals) for v in p] for p in lms[i]]
            item = {"box": boxes[i], "score": scores[i], "landmarks": lm}
            if ids[i] >= 0:
                item["track_id"] = ids[i]
            item["source"] = str(sources[i])
            faces.append(item)
        return {"detector": self.source, "faces": faces}

    @classmethod
    def from_dict(cls, data) -> "Detections":
        """Detections from ``to_dict``'s form, or from a shape an earlier faceveil wrote:

        - a list of faces ``[{"box", "score", "landmarks", "track_id"}]`` (reports' "detections");
        - columns ``{"xyxy": [...], "score": [...], "landmarks": ...}`` (the eval cache);
        - None or an empty list/dict: no faces.
        Faces without a "source" count as detected.
        """
        if not data:
            return cls.empty()
        if isinstance(data, dict) and "xyxy" in data:
            if not data["xyxy"]:
                return cls.empty()
            lm = data.get("landmarks")
            return cls(np.asarray(data["xyxy"]), np.asarray(data["score"]), None if lm is None else np.asarray(lm),
                       None)
        detector = ""
        faces = data
        if isinstance(data, dict):
            detector, faces = data.get("detector") or "", data.get("faces") or []
        if not faces:
            return cls.empty(detector)
        n = len(faces)
        lms = np.full((n, 5, 2), np.nan, np.float32)
        for i, f in enumerate(faces):
            if f.get("landmarks") is not None:
                lms[i] = np.asarray(f["landmarks"], np.float32).reshape(5, 2)
        return cls(np.asarray([f["box"] for f in faces], np.float32),
                   np.asarray([f.get("score", 1.0) for f in faces], np.float32), lms,
                   np.asarray([f.get("track_id", -1) for f in faces], np.int64), detector,
                   np.asarray([f.get("source", "detected") for f in faces], _SOURCE_DTYPE))


def _box_areas(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(areas of the Nx4 xyxy boxes ``a``, of the Mx4 ``b``, their NxM pairwise intersections)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return area_a, area_b, inter


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of Nx4 and Mx4 xyxy boxes."""
    area_a, area_b, inter = _box_areas(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_inside(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise share of each Nx4 xyxy box of ``a`` that lies inside each Mx4 box of ``b`` (0 for an empty box)."""
    area_a, _, inter = _box_areas(a, b)
    return np.where(area_a[:, None] > 0, inter / np.maximum(area_a[:, None], 1e-12), 0.0)


def box_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection of Nx4 and Mx4 xyxy boxes over the smaller box's area (0 where that area is 0)."""
    area_a, area_b, inter = _box_areas(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def nms(det: Detections, iou_threshold: float = 0.3) -> Detections:
    """Greedy non-maximum suppression, highest score first (OpenCV's C++ loop)."""
    if len(det) <= 1:
        return det
    import cv2

    xywh = det.xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), det.score.tolist(), 0.0, float(iou_threshold))
    keep = np.asarray(keep, np.int64).reshape(-1)
    return det[np.sort(keep)]


def given_boxes(detections) -> Detections:
    """A caller's faces as Detections; refused (UsageError) when a box cannot be a face's x1, y1, x2, y2: not finite,
    or x2 < x1 or y2 < y1 (x, y, w, h rows by mistake). Before, such a box hid nothing and raised nothing."""
    if isinstance(detections, (list, tuple)) and detections and all(isinstance(f, Face) for f in detections):
        detections = Detections.from_faces(detections)  # list(dets) was refused: "expected ... rows"
    if not isinstance(detections, Detections):
        try:
            detections = Detections.from_boxes(np.asarray(detections, np.float32).reshape(-1, 4))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"detections: expected a Detections or rows of x1, y1, x2, y2 ({exc})") from None
    b = detections.xyxy
    bad = ~np.isfinite(b).all(axis=1) | (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        raise UsageError(f"detections: box {b[bad][0].tolist()} is not x1, y1, x2, y2 (x2 >= x1, y2 >= y1, finite); "
                         "for x, y, w, h rows use Detections.from_xywh")
    return detections
