"""Privacy: can a face-recognition attacker (dlib's descriptor) still match anonymized people?

Three attacks (Newton, Sweeney and Malin 2005): *naive* (gallery = originals,
probes = anonymized), *reverse* (gallery = anonymized, probes = originals) and
*parrot* (both anonymized: the attacker anonymizes its gallery the same way).
Verification uses the pairs of a CSV; closed-set rank-1 identification uses the
identities (the folder of each photo, or groups joined by same-person pairs).
"""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .metrics import Rank1, Verification
from .workbench import acquired

ATTACKS = ("naive", "reverse", "parrot")
_TRUE = {"1", "yes", "true", "same", "y"}
_FALSE = {"0", "no", "false", "different", "n"}


@dataclass
class PairSet:
    pairs: list[tuple[str, str, bool]]
    identity: dict[str, str]  # photo (relative path) -> identity

    @property
    def files(self) -> list[str]:
        return sorted(self.identity)

    def gallery_split(self) -> tuple[list[str], list[str]]:
        """The first photo (sorted) of each identity is its gallery photo; the others are probes."""
        by_id: dict[str, list[str]] = {}
        for f in self.files:
            by_id.setdefault(self.identity[f], []).append(f)
        gallery = [fs[0] for fs in by_id.values()]
        probes = [f for fs in by_id.values() for f in fs[1:]]
        return gallery, probes


def load_pairs(csv_path: str | Path, people: int = 0, seed: int = 0, all_pairs: bool = False) -> PairSet:
    """Read ``file_x,file_y,same`` (1/0) or ``file_x,file_y,Decision`` (Yes/No); paths relative to the images folder.

    ``people``: keep that many identities (seeded choice among those with two or more photos).
    ``all_pairs``: verify every pair of the kept photos instead of the CSV's pairs.
    """
    path = Path(csv_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:  # UTF-8 with or without a BOM (Excel's "CSV UTF-8" writes one: its first column was "\ufefffile_x")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text; save the pairs as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, r) for r in reader]  # the line each row ends on (blank lines are skipped)
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: {exc}") from None
    if not rows:
        raise InputError(f"{path}: no pairs")
    cols = {c.strip().lower(): c for c in reader.fieldnames or [] if c is not None}
    label_col = cols.get("same") or cols.get("decision") or cols.get("label")
    if "file_x" not in cols or "file_y" not in cols or label_col is None:
        raise InputError(f"{path}: expected columns file_x, file_y and same (1/0) or Decision (Yes/No)")
    pairs = []
    for n, r in rows:
        values = [r.get(c) for c in (cols["file_x"], cols["file_y"], label_col)]
        if any(v is None for v in values):
            raise InputError(f"{path}: line {n}: expected file_x, file_y and {label_col}, got fewer values")
        v = values[2].strip().lower()
        if v not in _TRUE | _FALSE:
            raise InputError(f"{path}: line {n}: cannot read {label_col}={values[2]!r} as same/different")
        pairs.append((values[0].strip(), values[1].strip(), v in _TRUE))
    files = sorted({f for p in pairs for f in p[:2]})
    if all("/" in f for f in files):
        identity = {f: f.rsplit("/", 1)[0] for f in files}  # LFW layout: person/photo.jpg
    else:
        identity = _components(files, [(a, b) for a, b, s in pairs if s])
    for a, b, s in pairs:
        if s and identity[a] != identity[b]:
            raise InputError(f"{path}: {a} and {b} are marked the same person but lie in different folders")
    if people:
        counts: dict[str, int] = {}
        for f, i in identity.items():
            counts[i] = counts.get(i, 0) + 1
        ids = sorted(i for i, c in counts.items() if c >= 2)
        keep = set(random.Random(seed).sample(ids, min(people, len(ids))))
        identity = {f: i for f, i in identity.items() if i in keep}
        pairs = [p for p in pairs if p[0] in identity and p[1] in identity]
    if all_pairs:
        fs = sorted(identity)
        pairs = [(a, b, identity[a] == identity[b]) for k, a in enumerate(fs) for b in fs[k + 1:]]
    return PairSet(pairs, identity)


def _components(files: list[str], links: list[tuple[str, str]]) -> dict[str, str]:
    parent = {f: f for f in files}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        parent[find(a)] = find(b)
    return {f: find(f) for f in files}


def _matrix(records: dict, files: list[str]) -> np.ndarray:
    out = np.full((len(files), 128), np.nan)
    for k, f in enumerate(files):
        d = records.get(f, {}).get("desc")
        if d is not None:
            out[k] = d
    return out


def _thin(det: dict, n: int = 400) -> dict:
    """Keep about ``n`` DET points (evenly spaced in index) so reports stay small."""
    m = len(det["fmr"])
    if m <= n:
        return det
    idx = np.unique(np.linspace(0, m - 1, n).round().astype(int))
    return {k: [v[i] for i in idx] for k, v in det.items()}


def evaluate_privacy(pairset: PairSet, originals: dict, anonymized: dict | None, attacks=ATTACKS) -> dict:
    """Verification and rank-1 per attack; ``anonymized=None`` measures the originals (the baseline)."""
    files = pairset.files
    index = {f: k for k, f in enumerate(files)}
    O = _matrix(originals, files)
    A = O if anonymized is None else _matrix(anonymized, files)
    views = {"naive": (O, A), "reverse": (A, O), "parrot": (A, A)}
    if anonymized is None:
        views = {"original": (O, O)}
        attacks = ("original",)
    ix = np.array([index[a] for a, _, _ in pairset.pairs], int)
    iy = np.array([index[b] for _, b, _ in pairset.pairs], int)
    same = np.array([s for _, _, s in pairset.pairs], bool)
    gallery, probes = pairset.gallery_split()
    gi = np.array([index[f] for f in gallery], int)
    pi = np.array([index[f] for f in probes], int)
    out: dict = {"n_images": len(files), "n_pairs": len(pairset.pairs), "n_gallery": len(gallery),
                 "n_probes": len(probes), "chance_rank1": 1.0 / max(len(gallery), 1),
                 "n_no_face": int(sum(1 for f in files if originals.get(f, {}).get("box") is None
                                      and "error" not in originals.get(f, {}))),  # a failed photo is no answer
                 "n_errors": int(sum(1 for f in files if "error" in originals.get(f, {}) or
                                     (anonymized is not None and "error" in anonymized.get(f, {})))),
                 "attacks": {}}
    for attack in attacks:
        G, P = views[attack]
        dist = np.linalg.norm(G[ix] - P[iy], axis=1)
        v = Verification()
        v.update(dist, same)
        res = {"n_pairs_used": int(np.isfinite(dist).sum())}
        try:
            vr = v.compute()
            vr["det"] = _thin(vr["det"])
            res.update(vr)
        except ValueError as exc:
            res["error"] = str(exc)
        r1 = Rank1()
        gok = np.isfinite(G[gi]).all(axis=1)
        gids = [pairset.identity[gallery[k]] for k in np.nonzero(gok)[0]]
        # A probe whose person has no gallery face cannot be identified: left out (as a failure to enrol), not a miss.
        enrolled = set(gids)
        pok = np.isfinite(P[pi]).all(axis=1) & np.array([pairset.identity[f] in enrolled for f in probes], bool)
        pids = [pairset.identity[probes[k]] for k in np.nonzero(pok)[0]]
        r1.update(G[gi][gok], gids, P[pi][pok], pids)
        res.update(r1.compute())
        out["attacks"][attack] = res
    # Failure to acquire: the anonymized face is no longer found (by the pipeline's detector and by dlib HOG).
    if anonymized is not None and any("found" in anonymized.get(f, {}) for f in files):
        usable = [f for f in files if originals.get(f, {}).get("box") is not None and "found" in anonymized.get(f, {})]
        cf = [not acquired(anonymized[f]["found"], originals[f]["box"]) for f in usable]  # as anonymize finds them
        hog = [not acquired(anonymized[f]["hog"], originals[f]["box"], 0.0) for f in usable]
        out["fta"] = {"pipeline_detector": float(np.mean(cf)) if usable else None,
                      "dlib-hog": float(np.mean(hog)) if usable else None, "n": len(usable)}
    return out
