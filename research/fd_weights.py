"""Do unequal donor weights spread replace's averages apart enough for FD-dlib below 0.221? (issue 22)

Banks are rebuilt in memory as tools/build_default_bank.py builds the shipped one (deepface-unit donors, 64
averages of k=5, 192 candidates, seed 0), each with another donor weighting (``identity.donor_weights``: equal,
a fixed profile such as 0.4,0.25,0.15,0.1,0.1, or seeded Dirichlet weights "dirichlet:C"), optionally pushed
from the bank's mean face by alpha (fd_caricature.py). Each is scored on one half of LFW (evaluation only; the
people with two photos, split by person with faceveil.eval.splits; 100 probes of that half drawn with seed 0,
the gallery every person's first photo, as bench_replace.py's protocol with --gallery 0): FD-dlib split into
its mean and covariance terms with each set's covariance trace, naive and parrot rank-1, the share within 0.6
of the own original, donor matches (replaced probes within 0.6 of any donor photo; the build's rejection rate
and its closest kept entry), the weights' largest share and smallest effective k (1 / sum w^2), and with
``--looks N`` bench_replace's looks table (seam, sharpness) on deepface-unit and N facemask photos. Banks go to
OUT/bank_<variant>.npz (not shipped: /tmp), a before/after grid of 8 deepface-unit faces to OUT/grid.png.

    PYTHONPATH=src nice python research/fd_weights.py OUT --split tune \\
        [--variants "equal;0.3,0.25,0.2,0.15,0.1;dirichlet:2;equal@0.65"] [--alphas 1.0] [--looks 100]
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_replace  # noqa: E402
from common import COMP, DATA, deepface_face, lfw_gallery_and_probes, rank1, table, tool_module  # noqa: E402
from fd_caricature import caricature, fd_parts  # noqa: E402

from faceveil.anonymize import get_method  # noqa: E402
from faceveil.anonymize.bank import load_bank  # noqa: E402
from faceveil.anonymize.identity import CRISP_GAIN, MATCH, aligned_descriptor, descriptor, synthesize_bank  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402
from faceveil.errors import ModelError  # noqa: E402

GRID_PHOTOS = ["img3.jpg", "img20.jpg", "img41.jpg", "img17.jpg", "couple.jpg", "img22.jpg", "img1.jpg", "img5.jpg"]


def lfw_half(split: str, n_people: int, cache: Path):
    """(gallery descriptors, probes, truth, the probes' gallery faces): probes = the second photo of n_people
    people of this half (seed 0), gallery = every person's first photo."""
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    cf, hog = get_detector("centerface", {"threads": 1}), get_detector("dlib-hog", {})
    gallery, probes, truth = lfw_gallery_and_probes(n_people, np.random.default_rng(0), cf, hog, probe_side=split)
    out = (np.stack([g.desc for g in gallery]), probes, truth, [gallery[t] for t in truth])
    cache.write_bytes(pickle.dumps(out))
    return out


def slug(spec: str, alpha: float) -> str:
    s = (spec or "equal").replace("dirichlet:", "dir").replace(",", "-").replace("@", "_r")
    return s if alpha == 1.0 else f"{s}_a{alpha:g}"


def score(method, g_desc, probes, truth, par_faces, donors, donor_desc) -> dict:
    used, identity = [], method.synth.identity  # the donors of each face's identity, as replace draws it

    def record(*a, **kw):
        s = identity(*a, **kw)
        used.append(set(s.donors))
        return s

    method.synth.identity = record
    outs, per = [], []
    for i, f in enumerate(probes):
        n = len(used)
        outs.append(method.apply(f.img, f.det, COMP, np.random.default_rng(1000 + i)))
        per.append(set().union(*used[n:]))  # empty: the face was blurred (no identity)
    method.synth.identity = identity
    a = np.stack([descriptor(o, f.dbox) for o, f in zip(outs, probes)])
    p = np.stack([f.desc for f in probes])
    par = np.stack([descriptor(method.apply(g.img, g.det, COMP, np.random.default_rng(5000 + j)), g.dbox)
                    for j, g in enumerate(par_faces)])
    m, c, ta, tp = fd_parts(a, p)
    d = np.linalg.norm(a[:, None] - donor_desc[None], axis=2)
    to_donor = d.min(1)
    own = np.array([d[i, np.isin(donors.identity, list(u))].min() if u else np.inf for i, u in enumerate(per)])
    # the same donor photos against the ORIGINAL probes: how often dlib matches a stranger to them anyway
    d0 = np.linalg.norm(p[:, None] - donor_desc[None], axis=2)
    own0 = np.array([d0[i, np.isin(donors.identity, list(u))].min() if u else np.inf for i, u in enumerate(per)])
    return {"FD-dlib": m + c, "mean term": m, "cov term": c, "trace replaced": ta, "trace originals": tp,
            "naive rank-1": rank1(a, g_desc, truth), "parrot rank-1": rank1(a, par, np.arange(len(probes))),
            "within 0.6 of own": float((np.linalg.norm(a - p, axis=1) < MATCH).mean()),
            "own-donor matches": float((own < MATCH).mean()), "closest own donor": float(own.min()),
            "originals at those donors": float((own0 < MATCH).mean()),
            "any-donor matches": float((to_donor < MATCH).mean()), "closest any donor": float(to_donor.min())}


def grid(banks: dict[str, Path], out: Path) -> None:
    """Rows: 8 deepface-unit faces (MIT); columns: the original, then each bank's replacement (identity = row)."""
    cf = get_detector("centerface", {"threads": 1})
    rows = []
    for n, name in enumerate(GRID_PHOTOS):
        img, dets, (x1, y1, x2, y2) = deepface_face(name, cf, 0.8)
        tiles = [img] + [get_method("replace", {"bank": str(p), "identity": n}).apply(
            img, dets, COMP, np.random.default_rng(0)) for p in banks.values()]
        rows.append(np.concatenate([cv2.resize(t[y1:y2, x1:x2], (160, 160), interpolation=cv2.INTER_AREA)
                                    for t in tiles], 1))
    g = np.concatenate(rows, 0)
    head = np.full((22, g.shape[1], 3), 255, np.uint8)
    for i, t in enumerate(["original", *banks]):
        cv2.putText(head, t[:22], (i * 160 + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate([head, g], 0), cv2.COLOR_RGB2BGR))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--split", choices=["tune", "held_out"], default="tune")
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--variants", default="equal;0.3,0.25,0.2,0.15,0.1;dirichlet:2",
                    help="donor weightings, ';'-separated (identity.donor_weights), each optionally @D: the "
                         "build's donor check at distance D (default 0.6)")
    ap.add_argument("--alphas", default="1.0", help="caricature factors applied to each variant's bank")
    ap.add_argument("--looks", type=int, default=-1, metavar="N", help="also bench_replace's looks table")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build = tool_module("build_default_bank")
    donors, _, _ = build.donors_bank(DATA / "deepface-unit", cache=str(args.out / "donors.npz"))
    donor_desc = np.stack([aligned_descriptor(f) for f in donors.faces])
    g_desc, probes, truth, par_faces = lfw_half(args.split, args.people, args.out / f"lfw_{args.split}.pkl")
    real = np.linalg.norm(np.stack([f.desc for f in probes])[:, None] - donor_desc[None], axis=2).min(1)
    print(f"LFW {args.split}: {len(probes)} probes, gallery {len(g_desc)} people; donors: {len(donors)} photos of "
          f"{len(donors.people())} people; the ORIGINAL probes within {MATCH} of any donor photo: "
          f"{(real < MATCH).mean():.2f} (closest {real.min():.3f}): dlib's false matches against them", flush=True)
    banks, rows = {}, []
    for spec in args.variants.split(";"):
        path = args.out / f"bank_{slug(spec, 1.0)}.npz"
        if path.exists():
            bank, syn = load_bank(path), pickle.loads(path.with_suffix(".stats").read_bytes())
        else:
            weights, _, reject = spec.partition("@")  # "@0.7": the build's donor check at 0.7 instead of 0.6
            try:
                bank, syn = synthesize_bank(donors, 64, 5, 0, 192, reject_distance=float(reject or MATCH),
                                            min_distance=0.0, weights=weights, progress=True,
                                            robust=False, crisp_gain=CRISP_GAIN)  # the recipe it measured
            except ModelError as exc:  # one candidate found no average that passed the donor check in 50 draws
                print(f"variant {spec}: no bank ({exc})", flush=True)
                rows.append({"variant": slug(spec, 1.0), "rejected before": float("nan")})
                continue
            bank.save(path)
            path.with_suffix(".stats").write_bytes(pickle.dumps(syn))
        base = bank.faces.copy()
        for alpha in (float(a) for a in args.alphas.split(",")):
            name = slug(spec, alpha)
            if alpha != 1.0:
                bank.faces = caricature(base, alpha)
                bank.save(args.out / f"bank_{name}.npz")
            banks[name] = args.out / f"bank_{name}.npz"
            row = {"variant": name, "rejected before": syn["donor_match_rate_before"],
                   "closest entry-donor": syn["min_donor_distance"], "max weight": syn.get("max_weight", 0.2),
                   "eff. k min": syn.get("effective_k_min", 5.0), "pairwise median": syn["pairwise_median"],
                   **score(get_method("replace", {"bank": str(banks[name])}), g_desc, probes, truth, par_faces,
                           donors, donor_desc)}
            rows.append(row)
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    print(f"\n## LFW {args.split} half: {len(probes)} probes, gallery {len(g_desc)} (chance rank-1 "
          f"{1 / len(g_desc):.3f}; parrot {1 / len(probes):.3f})\n")
    cols = max((list(r) for r in rows), key=len)
    print(table([{c: r.get(c, float("nan")) for c in cols} for r in rows], cols))
    grid(banks, args.out / "grid.png")
    if args.looks >= 0:
        bench_replace.looks(args.looks, {n: ("replace", {"bank": str(p)}) for n, p in banks.items()})


if __name__ == "__main__":
    main()
