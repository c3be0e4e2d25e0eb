"""Rebuild the donor bank shipped with faceveil (src/faceveil/data/default_bank.npz).

    python tools/build_default_bank.py [--data ../shared/data/deepface-unit] [--count 64] [--k 5]

Source: the deepface unit-test photos (serengil/deepface, MIT licence). Identity
groups: connected components of master.csv's `Yes` pairs; every face in an
unlabelled photo starts as a person of its own, then faces that dlib cannot tell
apart (distance < 0.6) are joined, so "k different people" holds even where the
labels are missing. The file holds only averages of k different people, each
checked by dlib against every photo of its donors (never a single real face).
Donors are mirrored to one side (their yaw) and registered densely (DIS optical flow)
before averaging, the better-registered half of the candidates is kept, and each
entry stores its yaw. An entry must also stay >= 0.6 from every photo of its donors
once replace has fitted it into photos (the deepface-unit photos at LFW's face size,
each its own person's photos left out): research/donor_drift.py found the aligned
check alone let 15 % of replaced LFW faces land within 0.6 of a donor photo.
Deterministic: same photos, same seed, same file.
Never point this at LFW or WIDER FACE: their licences forbid shipping results.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceveil.anonymize import Compositor, RegionParams, get_method  # noqa: E402
from faceveil.anonymize.bank import Bank, build_bank, load_bank  # noqa: E402
from faceveil.anonymize.identity import (MATCH, Synthesized, Synthesizer, aligned_descriptor,  # noqa: E402
                                         descriptor, merge_lookalikes, synthesize_bank)
from faceveil.io.images import read_rgb  # noqa: E402


def identity_groups(master_csv: Path) -> dict[str, str]:
    rows = [r for r in csv.DictReader(open(master_csv)) if r["Decision"].strip() == "Yes"]
    names = sorted({r["file_x"] for r in rows} | {r["file_y"] for r in rows})
    idx = {n: i for i, n in enumerate(names)}
    m = coo_matrix((np.ones(len(rows)), ([idx[r["file_x"]] for r in rows], [idx[r["file_y"]] for r in rows])),
                   shape=(len(names), len(names)))
    _, lab = connected_components(m, directed=False)
    return {n: f"person{l:02d}" for n, l in zip(names, lab)}


def donors_bank(data: Path, min_face: int = 60, size: int = 256, cache: str | None = None):
    """(donors, detection stats, look-alike merges): the deepface-unit faces, aligned, grouped into people."""
    groups = identity_groups(data / "master.csv")
    items = [(p, groups.get(p.name)) for p in sorted(data.glob("*.jpg"))]
    if cache and Path(cache).exists():
        donors, stats = load_bank(cache), {"cached": cache}
    else:
        donors, stats = build_bank(items, min_face=min_face, size=size, progress=True,
                                   source="deepface-unit (serengil/deepface, MIT); tools/build_default_bank.py")
        if cache:
            donors.save(cache)
    donors, merged = merge_lookalikes(donors)
    return donors, stats, merged


class PhotoFace:
    """A target face for the placement check: the photo, CenterFace's detection, dlib's box and descriptor."""

    def __init__(self, img, det, dbox, desc):
        self.img, self.det, self.dbox, self.desc = img, det, dbox, desc


def photo_targets(data: Path, face_px: float = 100.0) -> list[PhotoFace]:
    """The largest face of each photo in ``data``, the photo resized so that face is about ``face_px`` wide
    (LFW's faces are ~100 px in 250 px photos)."""
    import cv2

    from faceveil.detect import get_detector

    cf, hog = get_detector("centerface", {"threads": 1}), get_detector("dlib-hog", {})
    out = []
    for path in sorted(data.glob("*.jpg")):
        img = read_rgb(path)
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


def placement_check(donors: Bank, targets: list[PhotoFace], distance: float = MATCH):
    """``synthesize_bank``'s ``accept``: the average fitted into every target stays >= ``distance`` from its
    donors' photos."""
    donor_desc = np.stack([aligned_descriptor(f) for f in donors.faces])

    def accept(s: Synthesized) -> bool:
        return placed_distances(s.face, s.yaw, list(s.donors), donors, donor_desc, targets, distance).min() >= distance

    return accept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "deepface-unit"))
    ap.add_argument("--out", default=str(ROOT / "src" / "faceveil" / "data" / "default_bank.npz"))
    ap.add_argument("--count", type=int, default=64, help="identities to keep")
    ap.add_argument("--candidates", type=int, default=512, help="checked averages drawn before choosing")
    ap.add_argument("--placed-distance", type=float, default=MATCH,
                    help="fitted into photos, an entry stays this far from its donors' photos (0: no check)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--size", type=int, default=256, help="crop side in pixels (a face ~0.53 of it wide)")
    ap.add_argument("--min-face", type=int, default=60, help="smallest donor face (box width, px)")
    ap.add_argument("--min-distance", type=float, default=0.0,
                    help="stop adding identities closer than this to a kept one (0: keep --count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--donors-cache", help="reuse (or write) the aligned donors here, to skip detection on reruns")
    args = ap.parse_args()
    donors, stats, merged = donors_bank(Path(args.data), args.min_face, args.size, args.donors_cache)
    accept = None
    if args.placed_distance > 0:
        accept = placement_check(donors, photo_targets(Path(args.data)), args.placed_distance)
    bank, syn = synthesize_bank(donors, args.count, args.k, args.seed, args.candidates,
                                min_distance=args.min_distance, progress=True, accept=accept)
    bank.source = (f"deepface-unit (serengil/deepface, MIT), {syn['donor_people']} people; dense (DIS flow) averages of "
                   f"k={args.k}, donor-checked (aligned, and fitted into photos: >= {args.placed_distance:g}); ordered "
                   f"farthest-first: entries 0..{syn['distinct_prefix'] - 1} are pairwise >= 0.6 apart (dlib); "
                   "tools/build_default_bank.py")
    assert bank.kind == "averages" and (bank.k >= 3).all()
    bank.save(args.out)
    report = {"faces": stats, "lookalike_merges": merged, "people": len(donors.people()), **syn,
              "bytes": Path(args.out).stat().st_size}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
