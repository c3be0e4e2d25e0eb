"""Which bank entries land near one of their own donors once replace fits them into a photo? (issue 22)

The build's donor check compares each average with its donors' aligned photos; fitted into a photo (tone, grain,
blend, the photo's own dlib box) 13-15 % of replaced LFW faces came within 0.6 of a photo of one of their donors
(research/fd_weights.py). This probe places every entry of a bank (``--bank``, default the shipped one) on

- licence-clean targets (the build may use these): deepface-unit photos (MIT), each resized so its largest face is
  about LFW's size (~100 px), skipping a target for an entry when the target itself is within 0.6 of a photo of
  one of that entry's donor people (the target is that person);
- LFW probes of one half of faceveil.eval.splits (evaluation only, never used to choose entries),

and prints, per entry, the closest own-donor distance on each, how well the clean targets predict the LFW matches,
and the LFW own-donor match rate left when entries whose clean placements come within D of a donor are dropped.

    PYTHONPATH=src nice python research/donor_drift.py OUT --split tune [--people 100] [--bank PATH]
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import DATA, lfw_gallery_and_probes, tool_module  # noqa: E402

from faceveil.anonymize.bank import load_bank  # noqa: E402
from faceveil.anonymize.identity import MATCH, aligned_descriptor  # noqa: E402
from faceveil.anonymize.placement import photo_targets, placed_distances  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402

BUILD = tool_module("build_default_bank")


def entry_distances(bank, donors, donor_desc, targets, skip_own: bool) -> np.ndarray:
    """(entries, targets): the bank build's placed_distances for every entry of ``bank``."""
    return np.stack([placed_distances(bank.faces[i], float(bank.yaw[i]), str(bank.donors[i]).split("|"),
                                      donors, donor_desc, targets, skip_own=skip_own) for i in range(len(bank))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--split", choices=["tune", "held_out"], default="tune")
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--bank", default="")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bank = load_bank(args.bank or None)
    donors, _, _ = BUILD.donors_bank(DATA / "deepface-unit", cache=str(args.out / "donors.npz"))
    donor_desc = np.stack([aligned_descriptor(f) for f in donors.faces])
    cf, hog = get_detector("centerface", {"threads": 1}), get_detector("dlib-hog", {})
    tag = Path(args.bank).stem if args.bank else "shipped"
    cache = args.out / f"clean_{tag}.npy"
    if cache.exists():
        clean = np.load(cache)
    else:
        targets = photo_targets(sorted((DATA / "deepface-unit").glob("*.jpg")))
        clean = entry_distances(bank, donors, donor_desc, targets, True)
        np.save(cache, clean)
    lcache = args.out / f"lfw_{args.split}.pkl"
    if lcache.exists():
        probes = pickle.loads(lcache.read_bytes())
    else:
        # common.Face has what placed_distances reads of a target (img, det, dbox, desc)
        _, probes, _ = lfw_gallery_and_probes(args.people, np.random.default_rng(0), cf, hog, probe_side=args.split)
        lcache.write_bytes(pickle.dumps(probes))
    probes = probes[: args.people]  # the cache may hold more: the same draw's first ones
    dcache = args.out / f"lfwdist_{tag}_{args.split}{'' if args.people == 100 else args.people}.npy"
    if dcache.exists():
        lfw = np.load(dcache)
    else:
        lfw = entry_distances(bank, donors, donor_desc, probes, False)
        np.save(dcache, lfw)
    orig = np.stack([p.desc for p in probes])
    people = [str(s).split("|") for s in bank.donors]
    base = np.array([[np.linalg.norm(orig[j] - donor_desc[np.isin(donors.identity, people[i])], axis=1).min()
                      for j in range(len(probes))] for i in range(len(bank))])
    print(f"\n{len(bank)} entries; clean targets {clean.shape[1]} (pairs checked {np.isfinite(clean).sum()}); "
          f"LFW {args.split} probes {lfw.shape[1]}")
    print(f"LFW own-donor match rate, every entry on every probe: replaced {(lfw < MATCH).mean():.3f}, "
          f"originals at the same donors {(base < MATCH).mean():.3f}")
    cmin = np.where(np.isfinite(clean), clean, 9).min(1)
    rate = (lfw < MATCH).mean(1)
    print(f"per entry: corr(clean min, LFW match rate) {np.corrcoef(cmin, rate)[0, 1]:.3f}")
    order = np.argsort(cmin)
    print("entry clean-min clean-matches LFW-min LFW-rate")
    for i in order:
        print(f"{i:3d} {cmin[i]:.3f} {(clean[i] < MATCH).sum():3d} {lfw[i].min():.3f} {rate[i]:.3f}")
    print("\nD (drop entries with a clean placement under D) | kept | LFW own-donor match rate of the kept")
    for d in (0.0, 0.55, 0.6, 0.62, 0.64, 0.66, 0.68, 0.7):
        keep = cmin >= d
        r = (lfw[keep] < MATCH).mean() if keep.any() else float("nan")
        print(f"{d:.2f} | {keep.sum()} | {r:.3f}")


if __name__ == "__main__":
    main()
