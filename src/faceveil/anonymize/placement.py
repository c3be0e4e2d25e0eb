"""The bank's second donor check: an average must stay away from its donors once replace has fitted it into photos.

An average that dlib keeps >= 0.6 from every photo of its donors as an aligned crop can still come within 0.6 of
one of them once ``replace`` has warped, recoloured and blended it into a photo (research/donor_drift.py: 15 % of
replaced LFW faces did with the bank shipped before this check). So a bank build places each candidate average,
with ``replace`` itself, into target photos (the donors' own photos, each resized so its face is about as large as
LFW's), takes dlib's descriptor at the target's own box as an attacker would, and passes over the candidates that
come within the distance of a photo of one of their donor people (``synthesize_bank(accept=...)``). A target that
is itself one of the candidate's donor people is left out: its descriptor would be near its own photos anyway.

Used by tools/build_default_bank.py (the shipped bank) and ``faceveil bank build --average`` (users' banks).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .bank import Bank
from .identity import MATCH, Synthesized, Synthesizer, aligned_descriptor, descriptor

# LFW's faces are ~100 px wide in 250 px photos: the size at which its attacks (bench_replace.py) run
TARGET_FACE_PX = 100.0


@dataclass
class PhotoFace:
    """A target face: the photo, CenterFace's detection, dlib's box and descriptor of the face."""

    img: np.ndarray
    det: object  # Detections of the one face
    dbox: np.ndarray
    desc: np.ndarray


def photo_targets(paths: Iterable[str | Path], face_px: float = TARGET_FACE_PX) -> list[PhotoFace]:
    """The largest face of each photo, the photo resized so that face is about ``face_px`` wide (never enlarged);
    photos without a face CenterFace and dlib can describe are skipped."""
    import cv2

    from ..detect import get_detector
    from ..errors import InputError
    from ..io.images import read_rgb

    cf, hog = get_detector("centerface", {"threads": 1}), get_detector("dlib-hog", {})
    out = []
    for path in paths:
        try:
            img = read_rgb(path)
        except InputError:  # an unreadable photo is no target (build_bank counts it already)
            continue
        d = cf.detect(img)
        if not len(d):
            continue
        b = d.xyxy[int(np.argmax(d.areas))]
        f = min(1.0, face_px / max(b[2] - b[0], 1.0))
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        d = cf.detect(img)
        if not len(d):
            continue
        i = int(np.argmax(d.areas))
        h = hog.detect(img)
        dbox = h.xyxy[int(np.argmax(h.areas))] if len(h) else d.xyxy[i]
        desc = descriptor(img, dbox)
        if np.isfinite(desc).all():
            out.append(PhotoFace(img, d[[i]], dbox, desc))
    return out


def placed_distances(face: np.ndarray, yaw: float, people: list[str], donors: Bank, donor_desc: np.ndarray,
                     targets: list[PhotoFace], stop_below: float = -1.0, skip_own: bool = True) -> np.ndarray:
    """How close a replaced face comes to a photo of one of its donor ``people`` once replace fits ``face`` (an
    aligned average) into each target: dlib's descriptor at the target's own box, as an attacker takes it, one
    distance per target (inf: not placed). ``skip_own``: targets within MATCH of a photo of one of those people
    (the target is that person) are left out. Stops at the first placement under ``stop_below``."""
    from . import Compositor, RegionParams, get_method

    one = Bank(face[None], np.array(["candidate"]), np.array([len(people)]), np.array(["|".join(people)]),
               "averages", template=donors.template, yaw=np.array([yaw], np.float32))
    method = get_method("replace", {"identity": 0})
    method.synth = Synthesizer(one)
    comp = Compositor(RegionParams())
    cols = np.isin(donors.identity, people)
    out = np.full(len(targets), np.inf)
    for j, t in enumerate(targets):
        if skip_own and np.linalg.norm(t.desc - donor_desc[cols], axis=1).min() < MATCH:
            continue
        placed = method.apply(t.img, t.det, comp, np.random.default_rng(j))
        out[j] = np.linalg.norm(descriptor(placed, t.dbox) - donor_desc[cols], axis=1).min()
        if out[j] < stop_below:
            break
    return out


# fewer placements than this (targets left after the candidate's own donor people) leave a candidate unchecked:
# it is passed over, never kept unchecked
MIN_PLACED = 5


def placement_check(donors: Bank, targets: list[PhotoFace], distance: float = MATCH, min_placed: int = MIN_PLACED,
                    progress: bool = False) -> Callable[[Synthesized], bool]:
    """``synthesize_bank``'s ``accept``: the average fitted into every target stays >= ``distance`` from its
    donors' photos, on at least ``min_placed`` targets that are not its donor people (fewer: passed over).
    ``progress``: a bar of the candidates checked (the caller closes it: ``accept.close()``)."""
    donor_desc = np.stack([aligned_descriptor(f) for f in donors.faces])
    bars = []  # the bar starts at the first candidate checked, after the averages are drawn

    def accept(s: Synthesized) -> bool:
        if progress and not bars:
            from ..progress import tqdm

            bars.append(tqdm(desc="placement check", unit="id"))
        d = placed_distances(s.face, s.yaw, list(s.donors), donors, donor_desc, targets, distance)
        ok = bool(np.isfinite(d).sum() >= min_placed and d.min(initial=np.inf) >= distance)
        accept.passed_over += not ok
        for bar in bars:
            bar.set_postfix(passed_over=accept.passed_over, refresh=False)
            bar.update(1)
        return ok

    def close() -> None:
        for bar in bars:
            bar.close()

    accept.passed_over, accept.close = 0, close
    return accept
