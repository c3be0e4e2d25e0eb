"""Donor banks: face crops aligned to one canonical 5-point template.

A bank is a compressed ``.npz`` file (format ``faceveil-bank/1``) with:

- ``faces``: uint8 (N, S, S, 3) RGB crops, aligned so the 5 landmarks (left eye,
  right eye, nose, left and right mouth corner, as CenterFace gives them) sit on
  ``template`` (float32 5x2, pixels in an S x S crop; S = 128 by default);
- ``identity``: str (N): who each entry is (a person for a donor bank; a made-up
  name for a synthesized identity);
- ``k``: int (N): how many different people were averaged into the entry
  (1: a real, single face);
- ``donors``: str (N): the donor identities of each entry, joined with ``|``;
- ``kind``: ``"donors"`` (real aligned faces, e.g. from ``faceveil bank build``)
  or ``"averages"`` (each entry the pixel average of >= k different people);
- ``source``: a free-text note on where the faces came from and how;
- ``yaw`` (optional, float32 (N)): each entry's head turn as ``yaw_ratio`` of its
  landmarks (0 frontal; banks without it read as 0).

The bank that ships with faceveil holds only averages (k >= 5 by default);
``tools/build_default_bank.py`` rebuilds it. Only the 5 landmarks and the box of
a target face are ever used to place a bank face: never its pixels.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import InputError, ModelError, UsageError, one_line

FORMAT = "faceveil-bank/1"
SIZE = 128
# Eye distance 36 px; nose and mouth placed in the ratios of the usual 112 px
# ArcFace template, shifted so the whole face (forehead to chin) fits.
TEMPLATE = np.array([[46.0, 50.0], [82.0, 50.0], [64.0, 70.5], [49.5, 91.5], [78.5, 91.5]], np.float32)
# Where a CenterFace box falls in the template (median over the deepface-unit faces).
CANON_BOX = (30.5, 5.0, 98.0, 115.5)


@dataclass
class Bank:
    faces: np.ndarray
    identity: np.ndarray
    k: np.ndarray
    donors: np.ndarray
    kind: str = "donors"
    source: str = ""
    template: np.ndarray = field(default_factory=lambda: TEMPLATE.copy())
    yaw: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.faces)
        self.yaw = np.zeros(n, np.float32) if self.yaw is None else np.asarray(self.yaw, np.float32)
        if len(self.yaw) != n:
            raise ValueError("yaw must have one value per face")
        if self.faces.ndim != 4 or self.faces.shape[3] != 3 or self.faces.dtype != np.uint8:
            raise ValueError("faces must be uint8 (N, S, S, 3)")
        if not (len(self.identity) == len(self.k) == len(self.donors) == n):
            raise ValueError("faces, identity, k and donors must have the same length")
        if self.kind not in ("donors", "averages"):
            raise ValueError(f"unknown bank kind {self.kind!r}")

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def size(self) -> int:
        return self.faces.shape[1]

    def people(self) -> list[str]:
        return sorted(set(self.identity.tolist()))

    def save(self, path: str | Path) -> None:
        from ..io.atomic import atomic_path

        with atomic_path(path, sweep=True) as tmp:  # one file: a killed save's temporary beside it is removed first
            with open(tmp, "wb") as fh:
                np.savez_compressed(
                    fh, format=np.array(FORMAT), faces=self.faces, identity=self.identity.astype(str),
                    k=self.k.astype(np.int32), donors=self.donors.astype(str), kind=np.array(self.kind),
                    source=np.array(self.source), template=self.template.astype(np.float32),
                    yaw=self.yaw.astype(np.float32),
                )


def load_bank(path: str | Path | None = None) -> Bank:
    """Load a bank file; ``None`` loads the one shipped with faceveil. A file the user named that cannot be read is
    bad usage (UsageError, before any work); the shipped one, a broken install (ModelError)."""
    if path in (None, ""):
        ref = resources.files("faceveil") / "data" / "default_bank.npz"
        with resources.as_file(ref) as p:
            return _read_bank(Path(p), ModelError)
    return _read_bank(Path(path), UsageError)


def _read_bank(path: Path, bad: type[Exception]) -> Bank:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z.get("format", "")) != FORMAT:
                raise bad(f"{path}: not a faceveil bank (expected format {FORMAT})")
            fields = (z["faces"], z["identity"], z["k"], z["donors"], str(z["kind"]), str(z["source"]),
                      z["template"].astype(np.float32), z["yaw"] if "yaw" in z.files else None)
    except FileNotFoundError:
        raise bad(f"{path}: bank file not found") from None
    except (ValueError, zipfile.BadZipFile):  # numpy's text for a foreign file suggests loading it unsafely
        raise bad(f"{path}: not a faceveil bank (not a NumPy .npz file)") from None
    except IsADirectoryError:  # OSError's own text repeated the path: "ppl: cannot read bank ([Errno 21] ...: 'ppl')"
        raise bad(f"{path}: a folder, not a bank file (.npz: `faceveil bank build` writes one)") from None
    except OSError as exc:
        raise bad(f"{path}: cannot read bank ({exc.strerror or exc})") from None
    except KeyError as exc:  # numpy's KeyError text, quoted: "('faces is not a file in the archive')"
        raise bad(f"{path}: not a complete faceveil bank ({exc.args[0] if exc.args else exc})") from None
    try:
        bank = Bank(*fields)
    except ValueError as exc:  # e.g. an unknown kind: an .npz, but not a bank faceveil can use
        raise bad(f"{path}: not a valid faceveil bank ({exc})") from None
    if not len(bank):
        raise bad(f"{path}: the bank holds no faces")
    return bank


# alignment -----------------------------------------------------------------

def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """2x3 similarity (rotation, uniform scale, shift) taking src points to dst (least squares)."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(src, np.float32), np.asarray(dst, np.float32), method=cv2.LMEDS)
    return m


def plausible(landmarks: np.ndarray, box=None, max_residual: float = 0.4) -> bool:
    """False for landmarks that a similarity cannot map onto the template well
    (profiles, mis-ordered points): the residual, in eye distances, is too large.
    Measured on 120 LFW photos (CenterFace landmarks): 50 % under 0.11, 95 % under 0.28,
    none above 0.4; 0.25 sent 12 % of those near-frontal faces to the blur fallback."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        return False
    eye = lm[1] - lm[0]
    eye_dist = float(np.hypot(*eye))
    if eye_dist < 1e-3 or eye[0] <= 0:  # eyes swapped or on top of each other: a profile or a mirror
        return False
    if box is not None and eye_dist < 0.2 * (box[2] - box[0]):  # eyes collapsed together: a strong profile
        return False
    m = similarity(TEMPLATE, lm)
    if m is None:
        return False
    fit = TEMPLATE @ m[:, :2].T + m[:, 2]
    scale = float(np.hypot(*m[:, 0]))
    residual = np.linalg.norm(fit - lm, axis=1).max() / max(scale * (TEMPLATE[1, 0] - TEMPLATE[0, 0]), 1e-6)
    return residual <= max_residual


def yaw_ratio(landmarks: np.ndarray) -> float:
    """How far the head is turned, from the 5 landmarks: the nose's sideways offset from
    the eyes' midpoint, in eye distances, measured along the eye line (roll removed).
    0 for a frontal face; positive when the nose points to the image's right; about
    +-0.3 at 45 degrees. NaN for landmarks without two distinct eyes."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        return float("nan")
    eye = lm[1] - lm[0]
    d = float(np.hypot(*eye))
    if d < 1e-6:
        return float("nan")
    mid = (lm[0] + lm[1]) / 2
    # nose and mouth centre together: one noisy point moves the estimate less
    off = ((lm[2] - mid) + ((lm[3] + lm[4]) / 2 - mid)) / 2
    return float(off @ eye / d / d)


def align(image: np.ndarray, landmarks: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The face with these landmarks warped onto the template, as a size x size crop."""
    t = TEMPLATE * (size / SIZE)
    m = similarity(landmarks, t)
    if m is None:
        raise ValueError("cannot align these landmarks")
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if _scale(m) < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _scale(m: np.ndarray) -> float:
    return float(np.hypot(m[0, 0], m[1, 0]))


# building ------------------------------------------------------------------

def list_labelled(folder: str | Path, labels_csv: str | Path | None = None) -> list[tuple[Path, str | None]]:
    """(image path, identity) pairs: from a CSV (``file,identity``; paths relative to
    the folder) or else from sub-folders (``folder/<person>/*.jpg``). Images directly
    in ``folder`` without a CSV get identity None: every face in them is a person of its own.
    A folder, sub-folder, file or CSV that cannot be read is bad usage (UsageError, one line, before any work: a
    person's folder once skipped silently). Hidden files and folders are not photos (io.inputs.list_folder)."""
    from ..io.images import is_image_path
    from ..io.inputs import list_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    if labels_csv:
        items = [(folder / f, ident) for f, ident in _read_labels(labels_csv)]
        _refuse_blocked([p for p, _ in items])
        return items
    files, _, bad, _ = list_folder(folder)
    if bad:
        raise UsageError(f"{one_line(bad[0][0])}: {bad[0][1]}")
    out = []
    for p in files:
        if is_image_path(p):
            rel = p.relative_to(folder)
            out.append((p, rel.parts[0] if len(rel.parts) > 1 else None))
    return out


def _refuse_blocked(paths: list[Path]) -> None:
    """Bad usage (one line, before any work) naming the folder that cannot be entered (chmod 000) where labelled
    photos lie, as such a folder is in folder mode: with --labels each of its photos failed in the build (exit 1) and
    the bank was built without those people. A missing or broken photo still fails on its own in the build."""
    blocked: dict[Path, int] = {}
    why = ""
    for p in paths:
        try:
            os.stat(p)
        except PermissionError as exc:
            # the nearest folder above it that can be looked at is the one that may not be entered
            where = next((a for a in p.parents if _can_stat(a)), p.parent)
            blocked[where] = blocked.get(where, 0) + 1
            why = why or exc.strerror
        except OSError:
            pass
    if blocked:
        (where, n), more = next(iter(blocked.items())), len(blocked) - 1
        photos = f"{n} labelled photo{'' if n == 1 else 's'}"
        raise UsageError(f"{one_line(where)}: cannot read the folder ({why}); {photos} in it"
                         + (f" (and {more} more such folders)" if more else ""))


def _can_stat(path: Path) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read_labels(labels_csv: str | Path) -> list[tuple[str, str]]:
    """(file, identity) rows of a labels CSV (UTF-8, a BOM allowed; an optional file,identity header; blank lines
    skipped); a bad line is named by its line in the file."""
    try:
        data = Path(labels_csv).read_bytes()
    except OSError as exc:
        raise UsageError(f"{labels_csv}: cannot read the labels ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UsageError(f"{labels_csv}: line {line}: not UTF-8 text; save the labels as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    out, seen_first = [], False
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            header = not seen_first and [c.strip().lower() for c in row[:2]] == ["file", "identity"]
            seen_first = True
            if header:
                continue
            if len(row) < 2:
                raise UsageError(f"{labels_csv}: line {reader.line_num}: expected file,identity")
            out.append((row[0].strip(), row[1].strip()))
    except csv.Error as exc:
        raise UsageError(f"{labels_csv}: line {reader.line_num}: {exc}") from None
    return out


def build_bank(items: Iterable[tuple[Path, str | None]], detector=None, min_face: int = 40,
               size: int = SIZE, source: str = "", progress: bool = False,
               max_residual: float = 0.25, errors: list[str] | None = None) -> tuple[Bank, dict]:
    """Detect, align and store faces. A labelled image contributes its largest face
    (the labelled person); an unlabelled one every face, each a person of its own.
    Donors must be closer to frontal (``max_residual``) than the faces replaced:
    averages of turned heads ghost. Returns the bank and counts (images, faces kept,
    skipped and why). ``errors``: gets one line per image that could not be read (a missing, broken file)."""
    from ..detect import get_detector
    from ..io.images import read_rgb

    detector = detector or get_detector("centerface", {"threshold": 0.5})
    items = list(items)
    faces, ids, yaws = [], [], []
    stats = {"images": len(items), "unreadable": 0, "no_face": 0, "small": 0, "implausible": 0, "kept": 0}
    it = items
    if progress:
        from ..progress import tqdm

        it = tqdm(items, desc="bank", unit="img")
    for path, ident in it:
        try:
            img = read_rgb(path)
        except Exception as exc:  # an InputError names the file and why
            stats["unreadable"] += 1
            if errors is not None:
                errors.append(str(exc) if isinstance(exc, InputError) else f"{path}: cannot read image ({exc})")
            continue
        dets = detector.detect(img)
        dets = dets[dets.has_landmarks]
        if not len(dets):
            stats["no_face"] += 1
            continue
        order = np.argsort(-dets.areas)
        if ident is not None:
            order = order[:1]
        for j in order:
            box, lm = dets.xyxy[j], dets.landmarks[j]
            if box[2] - box[0] < min_face:
                stats["small"] += 1
                continue
            if not plausible(lm, box, max_residual):
                stats["implausible"] += 1
                continue
            faces.append(align(img, lm, size))
            yaws.append(yaw_ratio(lm))
            ids.append(ident if ident is not None else f"{Path(path).name}#{j}")
            stats["kept"] += 1
    if not faces:  # why, counted: it said only "no usable face found"
        n = stats["images"]
        raise UsageError(f"no usable face in {'its one photo' if n == 1 else f'its {n} photos'} "
                         f"({stats['no_face']} with no face found, {stats['unreadable']} unreadable; faces: "
                         f"{stats['small']} narrower than {min_face} px, {stats['implausible']} turned too far): "
                         "the bank would be empty")
    ids_arr = np.array(ids)
    bank = Bank(np.stack(faces), ids_arr, np.ones(len(faces), np.int32), ids_arr.copy(), "donors", source,
                TEMPLATE * (size / SIZE), np.array(yaws, np.float32))
    return bank, stats


# canonical masks -----------------------------------------------------------

def face_mask(size: int = SIZE, feather: float = 0.06, head: bool = False) -> np.ndarray:
    """float32 weight of the face itself (forehead to chin, cheek to cheek) in the
    template; ``head``: nearly the whole crop (hair and neck of the averaged donors too)."""
    s = size / SIZE
    m = np.zeros((size, size), np.float32)
    centre, axes = ((64, 66), (58, 60)) if head else ((64, 72), (39, 50))
    cv2.ellipse(m, (round(centre[0] * s), round(centre[1] * s)), (round(axes[0] * s), round(axes[1] * s)),
                0, 0, 360, 1.0, -1)
    k = max(3, int(feather * size) | 1)
    return cv2.GaussianBlur(m, (0, 0), k / 2.5) * (m.max() > 0)
