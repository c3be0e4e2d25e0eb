"""Keep who agreed, hide everyone else (issue 23).

``People`` is a gallery of consenting people: dlib face descriptors (128-D) and names, built
from ``consent/<name>/*.jpg`` (or ``consent/<name>.jpg``) and saved as a small ``.npz``; the
photos themselves are never copied. ``KeepPolicy`` is the step between detection and
anonymization: it splits a frame's detections into the faces to hide and the faces to keep,
and says for every kept face whom it matched and at what distance (or which region kept it).

Safety first: a false keep publishes a bystander, a false hide only blurs a consenting face.
So the threshold is chosen for a false-keep rate (``bench/bench_keep.py``, ``docs/keep.md``):
at ``THRESHOLD`` strangers were kept in <= 0.1 % of LFW probes against galleries of 1, 10 and
100 people. A face too small, too blurred or without usable landmarks is never kept, nor one
whose best match is not clearly better than the second-best person's.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detections import Detections
from .errors import UsageError
from .io.images import IMAGE_EXTENSIONS

# Euclidean distance between dlib descriptors (dlib's own "same person" cut is 0.6, tuned for
# accuracy; this one is tuned for <= 0.1 % strangers kept: see docs/keep.md).
THRESHOLD = 0.40
SAME_PERSON = 0.6  # dlib's own cut: a person's consent photos must each lie this close to another of them
MARGIN = 0.05  # the best person must be at least this much closer than the second-best
MIN_SIZE = 40  # px, the box's shorter side: smaller faces are never described
MIN_SHARPNESS = 15.0  # variance of the Laplacian on the face resized to 96 px: below, too blurred
IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # consent photos: what faceveil reads (a phone's .heic too)
# Video: a track is kept when at least this many of its frames could be described, the median
# distance of its best frames to one person is under THRESHOLD, and no frame matches anybody
# else under THRESHOLD.
TRACK_MIN_FRAMES = 3
TRACK_SAMPLES = 12  # frames described per track (the largest, spread over the track)
DESC_NORM = (0.5, 3.0)  # a dlib descriptor's length (139 LFW faces: 1.24-1.62): a people file's rows lie in it
SAME_FACE_IOU = 0.5  # dataset mode: a labelled box and a detection this close are one face
# One face found twice by the detector (face_groups): the default preset's duplicates of one face on deepface-unit
# photos lie at most 0.65 of the smaller box's side apart (centres) with sides at most 2.15x each other; a 56 px
# head pasted over a consenting face's shoulder was 1.6-2.2 sides away at 3.0-3.5x: a face of its own.
SAME_FACE_SHIFT = 0.75
SAME_FACE_SCALE = 2.5
PART_INSIDE = 0.9  # a box with this share of its area inside another box of its face group is a part of that face


def _describer():
    # Imported here on use so that a run without --keep-people never needs dlib.
    from .anonymize.descriptors import DlibDescriber

    return DlibDescriber(points=5)


def sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian of the face (grey, resized to 96x96): low means blurred."""
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (96, 96), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_groups(dets: Detections) -> list[list[int]]:
    """Boxes that are one face (a recall-first preset may find a face at several scales, or a part of it): centres
    at most ``SAME_FACE_SHIFT`` of the smaller box's side apart and sides within ``SAME_FACE_SCALE`` of each other.
    A smaller face beside a larger one (a head over a shoulder) is a face of its own, whatever the boxes overlap."""
    n = len(dets)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    xy = dets.xyxy
    c = (xy[:, :2] + xy[:, 2:]) / 2
    side = np.sqrt(np.maximum(dets.areas, 0))
    for i in range(n):
        for j in range(i + 1, n):
            small, large = sorted((float(side[i]), float(side[j])))
            if small > 0 and large <= SAME_FACE_SCALE * small \
                    and np.linalg.norm(c[i] - c[j]) <= SAME_FACE_SHIFT * small:
                parent[root(j)] = root(i)
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def unreliable(image: np.ndarray, dets: Detections, i: int) -> str | None:
    """Why face ``i`` cannot be described reliably (None when it can)."""
    x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
    if min(x2 - x1, y2 - y1) < MIN_SIZE:
        return "too small"
    lm = dets.landmarks[i]
    if not np.isfinite(lm).all():
        return "no landmarks"
    (lx, _), (rx, _), (nx, _) = lm[0], lm[1], lm[2]
    eye = abs(rx - lx)
    # a profile: the eyes nearly on top of each other, or the nose outside them
    if eye < 0.2 * (x2 - x1) or not min(lx, rx) < nx < max(lx, rx):
        return "profile"
    if sharpness(image, dets.xyxy[i]) < MIN_SHARPNESS:
        return "too blurred"
    return None


@dataclass
class People:
    """Descriptors (Nx128) of consenting people and, per row, the index of the person's name."""

    names: list[str]
    descriptors: np.ndarray
    person: np.ndarray  # int, N: index into names
    skipped: list[str] = field(default_factory=list)  # photos not used, "path: why"
    failed: list[str] = field(default_factory=list)  # those of them that could not be read (missing, broken)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, folder: str | Path, detector=None) -> "People":
        """Describe every photo under ``folder`` (``<name>/*.jpg`` or ``<name>.jpg``).

        A photo is used only when it holds exactly one face that can be described reliably (else it
        is skipped and listed in ``skipped``; one that cannot be read also in ``failed``); a person none
        of whose photos is usable is an error, as is an empty gallery."""
        from .detections import box_iou
        from .io.images import read_rgb
        from .io.inputs import read_folder

        folder = Path(folder)
        if not folder.is_dir():  # a file said "no such folder" as if it were not there (a people.npz given twice)
            raise UsageError(f"{folder}: " + (_a_file_given(folder) if folder.exists() else
                                              "no such folder of consenting people (consent/<name>/*.jpg)"))
        photos: dict[str, list[Path]] = {}
        subfolders = []  # said as skipped: <name>/*.jpg only
        # a folder that cannot be listed is named, one line: a person in it would be hidden like a stranger
        for e in read_folder(folder):
            p = Path(e.path)
            if p.name.startswith("."):
                continue
            if e.is_dir():
                # <name>/*.jpg only: a sub-folder is not read (one of another person was enrolled under <name>)
                inside = [f for f in read_folder(p) if not f.name.startswith(".")]
                files = [Path(f.path) for f in inside if Path(f.name).suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
                subfolders += [f"{f.path}: a folder in {p.name}/, not read (photos of {p.name} go in {p}/ itself)"
                               for f in inside if f.is_dir()]
                if not files:  # docs/keep.md: an empty folder is an error (it was dropped when others had photos)
                    raise UsageError(f"{p}: no photos of {p.name} (expected {p}/*.jpg); add some or remove the folder")
                photos[p.name] = files
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                photos.setdefault(p.stem, []).append(p)
        if not photos:
            raise UsageError(f"{folder}: no photos of consenting people (expected {folder}/<name>/*.jpg)")
        if detector is None:
            from .detect import get_detector
            from .detect.presets import resolve

            name, params, _ = resolve(None)
            detector = get_detector(name, params)
        describer = _describer()
        names, rows, person, skipped, failed = [], [], [], list(subfolders), []
        for name, files in photos.items():
            got, used = 0, []
            for f in files:
                try:
                    rgb = read_rgb(f)
                except Exception as exc:  # a bad photo is skipped and said, never fatal on its own (failed: exit 1)
                    skipped.append(str(exc) if str(exc).startswith(f"{f}: ") else f"{f}: {exc}")  # path said once
                    failed.append(skipped[-1])
                    continue
                dets = detector.detect(rgb)
                if not len(dets):
                    skipped.append(f"{f}: no face found")
                    continue
                # the photo's subject: the largest box and the near-identical boxes of it (IoU >= SAME_FACE_IOU),
                # at least twice as large (per side) as any other box, overlapping or not (face_groups merges a
                # face over the subject's shoulder with it); without one, whose photo it is cannot be told: skipped
                side = np.sqrt(dets.areas)
                big = int(np.argmax(side))
                same = box_iou(dets.xyxy[[big]], dets.xyxy)[0] >= SAME_FACE_IOU
                subject = np.flatnonzero(same)
                d, why = None, "not describable"
                for i in sorted(subject, key=lambda i: -float(dets.score[i])):
                    why = unreliable(rgb, dets, i)
                    if why is None:
                        d = describer.describe(rgb, dets.xyxy[[i]])[0]
                        why = None if np.isfinite(d).all() else "not describable"
                        break
                others = np.flatnonzero(~same & (side * 2 > side[big]))
                if len(others) and d is not None:
                    # A close-up (the face filling the photo) is found at two scales, a box inside a larger one
                    # (IoU 0.3 on a tight crop, deepface's img1.jpg): one face, not a second person, when the
                    # boxes are one face by position and size (face_groups) and dlib describes them as the
                    # same person as the subject, closer than a keep (THRESHOLD); a photobomb's head is not.
                    # A box of the group inside the subject's (its eyes and nose boxed again) is a part of it, as
                    # at anonymize time (_inside_matched).
                    group = next(g for g in face_groups(dets) if big in g)
                    near = [i for i in others if i in group]
                    if near:
                        dist = np.linalg.norm(describer.describe(rgb, dets.xyxy[near]) - d, axis=1)
                        part = _parts_of(dets, near, big)
                        others = np.setdiff1d(others, np.asarray(near)[(dist <= THRESHOLD) | part])
                if len(others):
                    skipped.append(f"{f}: another face at least half the size of the largest: whose photo is it?")
                    continue
                if why:
                    skipped.append(f"{f}: face {why}")
                    continue
                rows.append(d)
                person.append(len(names))
                used.append(f)
                got += 1
            if got == 0:  # DIR/<name>.jpg: named as it is (DIR/<name> is no file, and no folder)
                where = files[0] if len(files) == 1 and files[0].parent == folder else folder / name
                raise UsageError(f"{where}: no usable photo of {name} "
                                 f"({'; '.join(s.split(': ', 1)[1] for s in skipped[-len(files):])})")
            _one_person(folder / name, used, np.asarray(rows[-got:], np.float32))
            names.append(name)
        return cls(names, np.asarray(rows, np.float32).reshape(-1, 128), np.asarray(person, np.int64), skipped,
                   failed)

    def save(self, path: str | Path) -> None:
        from io import BytesIO

        from .io.atomic import write_bytes_atomic

        buf = BytesIO()
        np.savez(buf, descriptors=self.descriptors.astype(np.float32), person=self.person.astype(np.int64),
                 names=np.asarray(self.names, dtype=str), version=np.asarray(1))
        write_bytes_atomic(path, buf.getvalue(), sweep=True)  # a killed save's temporary beside it removed first

    @classmethod
    def load(cls, path: str | Path) -> "People":
        """A file ``save`` wrote; anything else (another version, a name without descriptors, a descriptor that
        no dlib face gives) is refused in one line before any work."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                version = z["version"][()] if "version" in z else None
                names, desc, person = z["names"], z["descriptors"], z["person"]
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except Exception as exc:
            if path.suffix.lower() in IMAGE_SUFFIXES:  # a consent photo given alone: say what to give instead
                raise UsageError(f"{path}: a photo, not a people file: give the folder of consenting people, one "
                                 "folder per person (consent/<name>/*.jpg), or a people.npz `faceveil people build` "
                                 "made") from None
            raise UsageError(f"{path}: not a people file from `faceveil people build` ({exc.__class__.__name__})") from None
        why = _damage(version, names, desc, person)
        if why:
            raise UsageError(f"{path}: damaged people file: {why}; build it again with `faceveil people build`")
        return cls([str(n) for n in names], desc.astype(np.float32), person.astype(np.int64))

    @classmethod
    def open(cls, source: "str | Path | People", detector=None) -> "People":
        """A People from itself, a ``.npz`` or a folder of photos."""
        if isinstance(source, People):
            return source
        p = Path(source)
        if p.is_dir():
            return cls.build(p, detector)
        if not p.exists():
            raise UsageError(f"{p}: no such folder or people file")
        return cls.load(p)

    def fingerprint(self) -> str:
        """SHA-256 of the gallery (names, and descriptors to 1e-4, so the same photos described again give the
        same value): a resumed dataset job with another gallery, even under the same names, is told apart."""
        import hashlib

        h = hashlib.sha256()
        h.update("\n".join(self.names).encode())
        h.update(np.asarray(self.person, "<i8").tobytes())
        h.update(np.round(np.asarray(self.descriptors, np.float64), 4).astype("<f8").tobytes())
        return h.hexdigest()

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """MxP: each descriptor's distance to each person (the nearest of that person's photos)."""
        d = np.asarray(descriptors, np.float32).reshape(-1, 128)
        rows = np.linalg.norm(d[:, None, :] - self.descriptors[None, :, :], axis=2)
        out = np.full((len(d), len(self.names)), np.inf, np.float32)
        for k in range(len(self.names)):
            out[:, k] = rows[:, self.person == k].min(axis=1)
        return out


def _a_file_given(path: Path) -> str:
    """What to give instead of a file where the folder of consenting people is read."""
    suffix = path.suffix.lower()
    what = "a people file" if suffix == ".npz" else "a photo" if suffix in IMAGE_SUFFIXES else "a file"
    tail = "; a people file is read by `anonymize --keep-people`" if suffix == ".npz" else ""
    return f"{what}, not a folder: give the folder of consenting people, one folder per person (consent/<name>/*.jpg)" \
        + tail


def _one_person(folder: Path, files: list[Path], desc: np.ndarray) -> None:
    """Refuse a person's photos that are not all one person: photos that fall into groups no photo of one lies
    within dlib's "same person" cut (``SAME_PERSON``) of a photo of another. Each photo only needing a close twin
    let two people with two photos each through (an audit kept George W. Bush as "Al_Gore", distance 0.37)."""
    if len(desc) < 2:
        return
    d = np.linalg.norm(desc[:, None] - desc[None], axis=2)
    group, todo = {0}, [0]
    while todo:  # the photos linked to the first by a chain of close pairs
        i = todo.pop()
        for j in np.flatnonzero(d[i] <= SAME_PERSON).tolist():
            if j not in group:
                group.add(j)
                todo.append(j)
    if len(group) == len(desc):
        return
    inside, outside = sorted(group), [k for k in range(len(desc)) if k not in group]
    i, j = min(((a, b) for a in inside for b in outside), key=lambda ab: d[ab])
    raise UsageError(f"{folder}: {files[i].name} and {files[j].name} are not one person (distance "
                     f"{d[i, j]:.2f} > {SAME_PERSON}, and no photo between them); keep only photos of "
                     f"{folder.name} there")


def _damage(version, names: np.ndarray, desc: np.ndarray, person: np.ndarray) -> str | None:
    """What makes a people file's arrays other than ``People.save`` writes them (None: nothing)."""
    if not (isinstance(version, np.integer) and version == 1):
        return "not version 1 of the people file"
    if names.ndim != 1 or names.dtype.kind != "U" or not len(names) or not all(names) or len(set(names)) != len(names):
        return "names are not distinct, non-empty text"
    if desc.dtype.kind != "f" or desc.ndim != 2 or desc.shape[1] != 128:
        return f"descriptors are not N x 128 numbers ({desc.dtype}, {desc.shape})"
    norms = np.linalg.norm(desc, axis=1)
    if not (np.isfinite(desc).all() and ((norms >= DESC_NORM[0]) & (norms <= DESC_NORM[1])).all()):
        return "descriptors no face gives (NaN, infinite, zero or far from dlib's length)"
    if person.dtype.kind not in "iu" or person.shape != (len(desc),):
        return "person is not one whole-number index per descriptor"
    if len(person) and (person.min() < 0 or person.max() >= len(names)):
        return "a person index out of range"
    bare = [str(n) for k, n in enumerate(names) if not (person == k).any()]
    return f"no descriptor of {', '.join(bare)}" if bare else None


def match(dist_row: np.ndarray, threshold: float = THRESHOLD, margin: float = MARGIN) -> tuple[int, float] | None:
    """(person, distance) when the nearest person is under ``threshold`` and clearly nearer than the
    second; None otherwise (NaN rows never match)."""
    if not np.isfinite(dist_row).any():
        return None
    order = np.argsort(dist_row)
    best = float(dist_row[order[0]])
    if not best <= threshold:
        return None
    if len(order) > 1 and float(dist_row[order[1]]) < best + margin:
        return None
    return int(order[0]), best


# --- regions ---------------------------------------------------------------------------------

_REGION = re.compile(r"^\s*([^,@]+),([^,@]+),([^,@]+),([^,@]+?)\s*(?:@\s*([0-9.]*)\s*-\s*([0-9.]*))?\s*$")


@dataclass(frozen=True)
class Region:
    """``x,y,w,h`` in pixels, or all four as fractions of the frame (every value <= 1 and one has
    a dot); optionally ``@t0-t1`` seconds (video; either end may be left out)."""

    x: float
    y: float
    w: float
    h: float
    fractions: bool = False
    t0: float | None = None
    t1: float | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> "Region":
        m = _REGION.match(text)
        bad = UsageError(f"bad region {text!r}: expected x,y,w,h (pixels, or fractions 0-1) "
                         "optionally followed by @t0-t1 (seconds)")
        if not m:
            raise bad
        try:
            x, y, w, h = (float(v) for v in m.groups()[:4])
            t0 = float(m.group(5)) if m.group(5) else None
            t1 = float(m.group(6)) if m.group(6) else None
        except ValueError:
            raise bad from None
        vals = (x, y, w, h)
        if not all(np.isfinite(vals)):
            raise bad
        # why, where the form is right ("0.5,0,0.6,1" said only "expected x,y,w,h ...", as if misspelt)
        why = ("x and y must be 0 or more" if min(vals) < 0 else "width and height must be above 0"
               if w <= 0 or h <= 0 else f"it ends at {t1:g} s, before it starts at {t0:g} s"
               if t0 is not None and t1 is not None and t1 < t0 else None)
        fractions = max(vals) <= 1 and any("." in v for v in m.groups()[:4])
        if why is None and fractions and (x + w > 1.0001 or y + h > 1.0001):
            why = (f"as fractions of the frame it reaches past its edge (x + w = {x + w:g}, y + h = {y + h:g}; at "
                   "most 1)")
        if why:
            raise UsageError(f"bad region {text!r}: {why}")
        return cls(x, y, w, h, fractions, t0, t1, text.strip())

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        if self.fractions:
            return self.x * width, self.y * height, (self.x + self.w) * width, (self.y + self.h) * height
        return self.x, self.y, self.x + self.w, self.y + self.h

    def active(self, t: float | None) -> bool:
        if t is None:  # an image has no time: only an untimed region applies (a timed one keeps nobody there)
            return self.t0 is None and self.t1 is None
        return (self.t0 is None or t >= self.t0) and (self.t1 is None or t <= self.t1)


def _inside(xyxy: np.ndarray, region, rule: str) -> np.ndarray:
    """Per box: ``centre`` inside the region, or ``whole`` box inside it."""
    rx1, ry1, rx2, ry2 = region
    x1, y1, x2, y2 = xyxy.T
    if rule == "centre":
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return (cx >= rx1) & (cx <= rx2) & (cy >= ry1) & (cy <= ry2)
    return (x1 < rx2) & (x2 > rx1) & (y1 < ry2) & (y2 > ry1)  # "touches": any overlap at all


# --- the decision step -----------------------------------------------------------------------


def _parts_of(dets: Detections, boxes: list[int], j: int) -> np.ndarray:
    """Per box of ``boxes``: whether it lies at least ``PART_INSIDE`` (of its area) inside box ``j``."""
    xy = dets.xyxy[boxes]
    w = np.minimum(xy[:, 2], dets.xyxy[j, 2]) - np.maximum(xy[:, 0], dets.xyxy[j, 0])
    h = np.minimum(xy[:, 3], dets.xyxy[j, 3]) - np.maximum(xy[:, 1], dets.xyxy[j, 1])
    return np.maximum(w, 0) * np.maximum(h, 0) >= PART_INSIDE * np.maximum(dets.areas[boxes], 1e-9)


def _inside_matched(dets: Detections, group: list[int], reasons: list) -> set[int]:
    """The boxes of ``group`` (``reasons`` in the same order) that matched nobody and lie at least ``PART_INSIDE``
    inside one of its boxes that matched a person."""
    matched = [i for i, r in zip(group, reasons) if r is not None and r["by"] == "person"]
    nobody = [i for i, r in zip(group, reasons) if r is None]
    out: set[int] = set()
    for j in matched if nobody else []:
        out.update(np.asarray(nobody)[_parts_of(dets, nobody, j)].tolist())
    return out


@dataclass
class KeepPolicy:
    """Which detected faces are left as they are.

    - ``people``: a face is kept when it matches one person (``match``) and can be described reliably.
    - ``keep_regions``: a face whose box centre is inside one is kept (kept "by region").
    - ``only_regions``: only faces that touch one of them are anonymized; a face outside all of them
      is kept. A box straddling a border touches the region, so it is hidden (safe side). At a time
      outside every only-region's range (``@t0-t1``) nothing is restricted: every face is hidden.
    A face inside a keep region is kept by region whatever the gallery says.
    """

    people: People | None = None
    keep_regions: tuple[Region, ...] = ()
    only_regions: tuple[Region, ...] = ()
    threshold: float = THRESHOLD
    margin: float = MARGIN
    _describer: object = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        # From the Python API these went unchecked: threshold NaN kept nobody and inf any face (bystanders published),
        # margin NaN dropped the second-best check, and a dataset's manifest and summary recorded the bare token NaN
        # (not JSON). Refused at construction, as registry._check_number refuses a method's non-finite parameter.
        for name in ("threshold", "margin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise UsageError(f"bad value {name}={v!r} for the keep policy: expected a finite number")
        # A margin under 0 is the second-best check switched off (no second person is ever nearer than the best): a
        # face about as near two enrolled people was kept as one of them. A threshold under 0 keeps nobody (safe).
        if self.margin < 0:
            raise UsageError(f"bad value margin={self.margin!r} for the keep policy: expected 0 or more")

    def __bool__(self) -> bool:
        return bool(self.people is not None or self.keep_regions or self.only_regions)

    def __getstate__(self):  # workers build their own dlib models
        s = dict(self.__dict__)
        s["_describer"] = None
        return s

    def describe(self) -> dict:
        """The policy as a report says it (names of the consenting people, never their photos)."""
        out: dict = {}
        if self.people is not None:
            out.update(people=list(self.people.names), people_sha256=self.people.fingerprint(),
                       threshold=self.threshold, margin=self.margin)
        if self.keep_regions:
            out["keep_regions"] = [r.text for r in self.keep_regions]
        if self.only_regions:
            out["only_regions"] = [r.text for r in self.only_regions]
        return out

    def describe_faces(self, image: np.ndarray, dets: Detections) -> tuple[np.ndarray, list[str | None]]:
        """Descriptors (NaN rows for faces that cannot be described reliably) and why not."""
        why = [unreliable(image, dets, i) for i in range(len(dets))]
        out = np.full((len(dets), 128), np.nan, np.float32)
        ok = [i for i, w in enumerate(why) if w is None]
        if ok:
            if self._describer is None:
                self._describer = _describer()
            out[ok] = self._describer.describe(image, dets.xyxy[ok])
        return out, why

    def by_region(self, dets: Detections, width: int, height: int, t: float | None = None) -> list[dict | None]:
        """Per face: the region that keeps it ({"by": "region", ...}) or None."""
        out: list[dict | None] = [None] * len(dets)
        if not len(dets):
            return out
        for r in self.keep_regions:
            if r.active(t):
                for i in np.flatnonzero(_inside(dets.xyxy, r.box(width, height), "centre")):
                    out[i] = out[i] or {"by": "keep-region", "region": r.text}
        only = [r for r in self.only_regions if r.active(t)]
        if only:  # outside every only-region's time range, nothing is restricted: all faces are hidden
            touched = np.zeros(len(dets), bool)
            for r in only:
                touched |= _inside(dets.xyxy, r.box(width, height), "touches")
            for i in np.flatnonzero(~touched):
                out[i] = out[i] or {"by": "outside-only-region"}
        return out

    def decide(self, image: np.ndarray, dets: Detections, t: float | None = None) -> tuple[Detections, list[dict]]:
        """(faces to hide, kept faces as records {box, by, name, distance})."""
        reasons = self.reasons(image, dets, t)
        kept_idx = [i for i, r in enumerate(reasons) if r is not None]
        kept = [{"box": [round(float(v), 1) for v in dets.xyxy[i]], **reasons[i]} for i in kept_idx]
        hide = np.ones(len(dets), bool)
        hide[kept_idx] = False
        return dets[hide], kept

    def decide_labelled(self, image: np.ndarray, labels: Detections, dets: Detections, used: np.ndarray | None = None,
                        ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """A dataset image: labelled face boxes (no landmarks) and the detector's boxes of the same image.

        Returns (labels to hide, detections to hide) as boolean masks, and the kept faces as records
        {box, source, by, name, distance}: every kept label, and the kept detections among ``used`` (those
        the run would hide: default all) that are no kept label. Regions apply to every box as they are.
        A labelled box is kept as a person only when the detections that are that face (IoU >=
        ``SAME_FACE_IOU``) exist and are all kept as that one person: a labelled face the detector does
        not find cannot be described, so it is hidden. A kept detection inside a hidden labelled box is
        hidden by it anyway.
        """
        from .detections import box_iou

        h, w = image.shape[:2]
        rd = self.reasons(image, dets)
        rl = self.by_region(labels, w, h)
        if self.people is not None and len(labels) and len(dets):
            iou = box_iou(labels.xyxy, dets.xyxy)
            for i in range(len(labels)):
                same = [rd[j] for j in np.flatnonzero(iou[i] >= SAME_FACE_IOU)]
                if rl[i] is None and same and all(r is not None and r["by"] == "person" for r in same) \
                        and len({r["name"] for r in same}) == 1:
                    rl[i] = min(same, key=lambda r: r["distance"])
        kept_l = np.asarray([r is not None for r in rl], bool)
        kept_d = np.asarray([r is not None for r in rd], bool)
        records = [{"box": [round(float(v), 1) for v in labels.xyxy[i]], "source": "label", **rl[i]}
                   for i in np.flatnonzero(kept_l)]
        if len(dets):
            # a kept detection that is a kept labelled face is one face: recorded once, as the label
            dup = box_iou(dets.xyxy, labels.xyxy[kept_l]).max(axis=1) >= SAME_FACE_IOU if kept_l.any() \
                else np.zeros(len(dets), bool)
            used = np.ones(len(dets), bool) if used is None else np.asarray(used, bool)
            records += [{"box": [round(float(v), 1) for v in dets.xyxy[j]], "source": "detector", **rd[j]}
                        for j in np.flatnonzero(kept_d & ~dup & used)]
        return ~kept_l, ~kept_d, records

    def reasons(self, image: np.ndarray, dets: Detections, t: float | None = None) -> list[dict | None]:
        """Per face: why it is kept ({"by": "person", "name", "distance"} or a region's record) or None."""
        h, w = image.shape[:2]
        reasons = self.by_region(dets, w, h, t)
        described = np.zeros(len(dets), bool)  # a face of its own that was described (and matched or not)
        if self.people is not None and len(dets):
            todo = [i for i, r in enumerate(reasons) if r is None]
            if todo:
                desc, _ = self.describe_faces(image, dets[np.asarray(todo)])
                dist = self.people.distances(desc)
                for j, i in enumerate(todo):
                    described[i] = np.isfinite(desc[j]).all()
                    m = match(dist[j], self.threshold, self.margin)
                    if m is not None:
                        reasons[i] = {"by": "person", "name": self.people.names[m[0]], "distance": round(m[1], 4)}
        # One face found at several scales is one decision: kept only when every box of it is kept by a region,
        # or one box matched a person and every other box of it that could be described matched that person too.
        for g in face_groups(dets):
            if len(g) < 2:
                continue
            rs = [reasons[i] for i in g]
            names = {r.get("name") for r in rs if r is not None and r["by"] == "person"}
            if all(r is not None and r["by"] != "person" for r in rs):
                continue
            # A close-up's part boxed again (its eyes and nose found as a face of their own inside the face's box,
            # deepface's img1.jpg, a selfie) is described as nobody: a box that matched no one and lies inside a box
            # of the group that matched the person is that face, not another one (a face of its own there would
            # hide the person's face, which then could not match).
            parts = _inside_matched(dets, g, rs) if len(names) == 1 else set()
            if len(names) == 1 and all(r is not None and r["by"] == "person" or r is None and (not described[i]
                                       or i in parts) for i, r in zip(g, rs)):
                best = min((r for r in rs if r is not None), key=lambda r: r["distance"])
                for i in g:
                    reasons[i] = best
            else:
                for i in g:
                    reasons[i] = None
        return reasons
