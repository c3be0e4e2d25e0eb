"""Which of the bank's averages show a doubled mouth (two lip lines), and does keeping the better-registered half
of the mouths in the build leave fewer of them? (issue 22, stop 47)

Rebuilds the default bank as tools/build_default_bank.py does (same photos, seed and checks: deterministic), with
`identity.dense_average` wrapped to record, for every candidate average, the two values it returns besides the
face: the registered donors' spread (grey std over the face ellipse plus the worse eye, the build's first cut) and
the mouth's (the std of their fine structure, each one's grey minus a blur of MOUTH_DETAIL template px, over the
MOUTH_AX x MOUTH_AY ellipse about the mouth corners). Grey std alone ranked the mouths by the people's tone, not
their lip lines; the fine structure ranks doubled mouths last (a sheet of 48 candidates' lower faces sorted by it).
Each bank given with `--compare` (the shipped one, built from the same candidates: same seed) is looked up by its
faces' bytes: median and 90th percentile of both values over its entries, and entries with a mouth over `--ghost`.

    PYTHONPATH=src nice python research/bank_ghosts.py --out /tmp/bank_new.npz --donors-cache /tmp/donors.npz \
        --compare src/faceveil/data/default_bank.npz [--mouth-half] [--robust] [--candidates 1024] \
        [--sheet /tmp/m.png]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_default_bank  # noqa: E402
from faceveil.anonymize import identity as I  # noqa: E402

VALUES: dict[str, tuple[float, float]] = {}  # sha1 of the crisp average -> (spread, mouth)
_dense = I.dense_average


def _recording(faces, iterations=3, smooth=2.0, spread=False, weights=None, robust=False):
    out = _dense(faces, iterations, smooth, spread, weights, robust)
    if spread:
        VALUES[hashlib.sha1(I.crisp(out[0]).tobytes()).hexdigest()] = out[1:]
    return out


def report(name: str, faces: np.ndarray, ghost: float) -> np.ndarray:
    got = [VALUES.get(hashlib.sha1(np.ascontiguousarray(f).tobytes()).hexdigest()) for f in faces]
    v = np.array([g for g in got if g is not None]).reshape(-1, 2)
    med, p90 = np.median(v, axis=0), np.percentile(v, 90, axis=0)
    print(f"{name}: {len(v)} of {len(faces)} entries found; spread median {med[0]:.1f} (p90 {p90[0]:.1f}), mouth "
          f"median {med[1]:.1f} (p90 {p90[1]:.1f}); mouth > {ghost:g}: {int((v[:, 1] > ghost).sum())}")
    return v


def sheet(path: str, faces: np.ndarray, mouths: np.ndarray) -> None:
    """The lower faces of a bank's entries sorted by their mouth value (written on each)."""
    tiles = []
    for i in np.argsort(mouths):
        t = cv2.resize(faces[i][150:240, 60:196], None, fx=1.2, fy=1.2)[:, :, ::-1].copy()
        cv2.putText(t, f"{mouths[i]:.0f}", (3, 14), 0, 0.5, (0, 255, 255), 1)
        tiles.append(t)
    while len(tiles) % 8:
        tiles.append(np.zeros_like(tiles[0]))
    cv2.imwrite(path, cv2.vconcat([cv2.hconcat(tiles[i:i + 8]) for i in range(0, len(tiles), 8)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--donors-cache", required=True)
    ap.add_argument("--compare", action="append", default=[])
    ap.add_argument("--mouth-half", action="store_true", help="build with --mouth-half")
    ap.add_argument("--robust", action=argparse.BooleanOptionalAction, default=False,
                    help="build with --robust (the tool's default since stop 49; this probe's: the plain mean)")
    ap.add_argument("--candidates", type=int, default=512)
    ap.add_argument("--ghost", type=float, default=18.0)
    ap.add_argument("--sheet", help="write the built bank's lower faces sorted by mouth here (PNG)")
    a = ap.parse_args()
    I.dense_average = _recording
    sys.argv = ["build_default_bank.py", "--out", a.out, "--donors-cache", a.donors_cache,
                "--candidates", str(a.candidates)] + (["--mouth-half"] if a.mouth_half else []) + \
        (["--robust"] if a.robust else ["--no-robust"])
    build_default_bank.main()
    print(f"{len(VALUES)} candidates recorded")
    for path in [a.out] + a.compare:
        faces = np.load(path)["faces"]
        v = report(path, faces, a.ghost)
        if a.sheet and len(v) == len(faces):
            sheet(a.sheet.replace(".png", f"_{Path(path).stem}.png"), faces, v[:, 1])
    allv = np.array(list(VALUES.values()))
    print("all candidates: mouth percentiles 25/50/75/90:", np.percentile(allv[:, 1], [25, 50, 75, 90]).round(1))


if __name__ == "__main__":
    main()
