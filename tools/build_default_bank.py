"""Rebuild the donor bank shipped with faceveil (src/faceveil/data/default_bank.npz).

    python tools/build_default_bank.py [--data ../shared/data/deepface-unit] [--count 64] [--k 5]

Source: the deepface unit-test photos (serengil/deepface, MIT licence). Identity
groups: connected components of master.csv's `Yes` pairs; every face in an
unlabelled photo starts as a person of its own, then faces that dlib cannot tell
apart (distance < 0.6) are joined, so "k different people" holds even where the
labels are missing. The file holds only averages of k different people, each
checked by dlib against every photo of its donors (never a single real face).
Donors are mirrored to one side (their yaw) and registered densely (DIS optical flow)
before a robust average (structure only one or two donors have, a jaw outline or
glasses, fades instead of showing as a ghost; `--no-robust`: the plain mean), sharpened
(unsharp gain `--crisp-gain`), the better-registered half of the candidates is kept,
and each entry stores its yaw. An entry must also stay >= 0.6
from every photo of its donors once replace has fitted it into photos (the
deepface-unit photos at LFW's face size, each its own person's photos left out):
research/donor_drift.py found the aligned check alone let 15 % of replaced LFW
faces land within 0.6 of a donor photo.
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

from faceveil.anonymize.bank import build_bank, load_bank  # noqa: E402
from faceveil.anonymize.identity import (BANK_CRISP_GAIN, CRISP_GAIN, MATCH, merge_lookalikes,  # noqa: E402
                                         synthesize_bank)
from faceveil.anonymize.placement import placement_check, photo_targets  # noqa: E402


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "deepface-unit"))
    ap.add_argument("--out", default=str(ROOT / "src" / "faceveil" / "data" / "default_bank.npz"))
    ap.add_argument("--count", type=int, default=64, help="identities to keep")
    ap.add_argument("--candidates", type=int, default=768, help="checked averages drawn before choosing")
    ap.add_argument("--placed-distance", type=float, default=MATCH,
                    help="fitted into photos, an entry stays this far from its donors' photos (0: no check)")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--size", type=int, default=256, help="crop side in pixels (a face ~0.53 of it wide)")
    ap.add_argument("--min-face", type=int, default=60, help="smallest donor face (box width, px)")
    ap.add_argument("--min-distance", type=float, default=0.0,
                    help="stop adding identities closer than this to a kept one (0: keep --count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--donors-cache", help="reuse (or write) the aligned donors here, to skip detection on reruns")
    ap.add_argument("--mouth-half", action="store_true",
                    help="also keep only the better-registered half of the mouths (fewer doubled mouths; not the "
                         "shipped bank's build: at 512 candidates it left 36 entries, research/bank_ghosts.py)")
    ap.add_argument("--mouth-keep", type=float, default=1.0,
                    help="keep this share of the candidates' mouths, the better-registered (1: no cut; --mouth-half "
                         "is 0.5)")
    ap.add_argument("--robust", action=argparse.BooleanOptionalAction, default=True,
                    help="average the donors' structure robustly (identity.robust_average: a line only one or two "
                         "donors have fades; the shipped bank's build since stop 49, bench/replace_results.md)")
    ap.add_argument("--crisp-gain", type=float, default=BANK_CRISP_GAIN,
                    help="unsharp gain on each average before its donor check (identity.crisp; replace's runtime "
                         f"averages of a donors bank use {CRISP_GAIN:g})")
    args = ap.parse_args()
    donors, stats, merged = donors_bank(Path(args.data), args.min_face, args.size, args.donors_cache)
    accept = None
    if args.placed_distance > 0:
        accept = placement_check(donors, photo_targets(sorted(Path(args.data).glob("*.jpg"))), args.placed_distance)
    bank, syn = synthesize_bank(donors, args.count, args.k, args.seed, args.candidates,
                                min_distance=args.min_distance, progress=True, accept=accept,
                                mouth_half=args.mouth_half, robust=args.robust, crisp_gain=args.crisp_gain,
                                mouth_keep=args.mouth_keep)
    bank.source = (f"deepface-unit (serengil/deepface, MIT), {syn['donor_people']} people; dense (DIS flow) "
                   f"{'robust ' if args.robust else ''}averages of k={args.k}, unsharp gain {args.crisp_gain:g}, "
                   f"donor-checked (aligned, and fitted into photos: >= {args.placed_distance:g}); ordered "
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
