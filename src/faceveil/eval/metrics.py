"""Metrics as small objects with ``update(...)`` and ``compute()`` (torchmetrics' habit).

Everything here works on plain numpy values and returns plain dicts, so the
plotting code in ``faceveil.report`` and the tests can use them directly.
Scores are *distances*: lower means "more likely the same person".
"""
from __future__ import annotations

import numpy as np

from ..detections import box_iou

DLIB_THRESHOLD = 0.6  # dlib's usual decision threshold on the 128-D descriptor distance


def _pool(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(values) if values else np.zeros(0)


def error_rates(genuine: np.ndarray, impostor: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FMR(t) = impostor distances <= t; FNMR(t) = genuine distances > t (accept when distance <= t)."""
    g = np.sort(np.asarray(genuine, np.float64))
    i = np.sort(np.asarray(impostor, np.float64))
    t = np.asarray(thresholds, np.float64)
    fmr = np.searchsorted(i, t, side="right") / max(len(i), 1)
    fnmr = 1.0 - np.searchsorted(g, t, side="right") / max(len(g), 1)
    return fmr, fnmr


class Verification:
    """Genuine/impostor distances -> FMR/FNMR over thresholds, DET points, EER, rates at 0.6, TAR@FAR."""

    def __init__(self, threshold: float = DLIB_THRESHOLD, far: float = 1e-3):
        self.threshold = threshold
        self.far = far
        self._gen: list[np.ndarray] = []
        self._imp: list[np.ndarray] = []

    def update(self, distances, same) -> None:
        d = np.asarray(distances, np.float64).reshape(-1)
        s = np.asarray(same, bool).reshape(-1)
        ok = np.isfinite(d)  # pairs whose descriptor could not be computed are left out (counted by the caller)
        self._gen.append(d[s & ok])
        self._imp.append(d[~s & ok])

    @property
    def genuine(self) -> np.ndarray:
        return _pool(self._gen)

    @property
    def impostor(self) -> np.ndarray:
        return _pool(self._imp)

    def compute(self) -> dict:
        g, i = self.genuine, self.impostor
        if len(g) == 0 or len(i) == 0:
            raise ValueError("verification needs at least one genuine and one impostor score")
        thr = np.concatenate([[-np.inf], np.unique(np.concatenate([g, i]))])
        fmr, fnmr = error_rates(g, i, thr)
        # EER where the two step curves are closest; their mean there (bob.measure's convention).
        k = int(np.argmin(np.abs(fmr - fnmr)))
        eer = float((fmr[k] + fnmr[k]) / 2)
        at_fmr, at_fnmr = error_rates(g, i, np.array([self.threshold]))
        out = {
            "n_genuine": int(len(g)), "n_impostor": int(len(i)),
            "eer": eer, "eer_threshold": float(thr[k]),
            "threshold": self.threshold, "fmr_at_threshold": float(at_fmr[0]), "fnmr_at_threshold": float(at_fnmr[0]),
            "genuine_mean": float(g.mean()), "impostor_mean": float(i.mean()),
            "det": {"fmr": fmr[1:].tolist(), "fnmr": fnmr[1:].tolist()},
        }
        # TAR at FAR is only meaningful when the impostor set can resolve that FAR.
        if len(i) * self.far >= 1:
            ok = fmr <= self.far
            out[f"tar_at_far_{self.far:g}"] = float(1 - fnmr[ok].min())
        else:
            out[f"tar_at_far_{self.far:g}"] = None
        return out


class Rank1:
    """Closed-set identification: each probe matched to the nearest gallery descriptor."""

    def __init__(self):
        self.correct = 0
        self.total = 0

    def update(self, gallery: np.ndarray, gallery_ids, probes: np.ndarray, probe_ids) -> None:
        if len(probe_ids) == 0:
            return
        if len(gallery_ids) == 0:  # checked before the reshape, which cannot size an empty array
            self.total += len(probe_ids)
            return
        g = np.asarray(gallery, np.float64).reshape(len(gallery_ids), -1)
        p = np.asarray(probes, np.float64).reshape(len(probe_ids), -1)
        d = np.linalg.norm(p[:, None, :] - g[None, :, :], axis=2)
        best = np.asarray(gallery_ids, object)[np.argmin(d, axis=1)]
        self.correct += int(np.sum(best == np.asarray(probe_ids, object)))
        self.total += len(p)

    def compute(self) -> dict:
        # None (null in the results) without a probe: nothing measured; NaN was no JSON (and read as a number)
        return {"rank1": self.correct / self.total if self.total else None, "n_probes": self.total}


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+): area under the monotone precision envelope."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


class DetectionAP:
    """AP at one IoU threshold: greedy matching by descending score, each ground-truth box used once."""

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self._scores: list[np.ndarray] = []
        self._tp: list[np.ndarray] = []
        self.n_gt = 0

    def update(self, pred_xyxy, pred_scores, gt_xyxy) -> None:
        pred = np.asarray(pred_xyxy, np.float64).reshape(-1, 4)
        scores = np.asarray(pred_scores, np.float64).reshape(-1)
        gt = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
        self.n_gt += len(gt)
        order = np.argsort(-scores, kind="stable")
        tp = np.zeros(len(pred), bool)
        if len(gt) and len(pred):
            iou = box_iou(pred[order], gt)
            used = np.zeros(len(gt), bool)
            for r in range(len(order)):
                cand = np.where(used, -1.0, iou[r])
                j = int(np.argmax(cand))
                if cand[j] >= self.iou_threshold:
                    used[j] = True
                    tp[r] = True
        self._scores.append(scores[order])
        self._tp.append(tp)

    def compute(self) -> dict:
        scores, tp = _pool(self._scores), _pool(self._tp).astype(bool)
        order = np.argsort(-scores, kind="stable")
        tp = tp[order]
        if self.n_gt == 0:
            return {"ap": float("nan"), "n_gt": 0, "n_pred": int(len(tp))}
        ctp = np.cumsum(tp)
        recall = ctp / self.n_gt
        precision = ctp / np.arange(1, len(tp) + 1)
        return {"ap": average_precision(recall, precision), "n_gt": self.n_gt, "n_pred": int(len(tp)),
                "recall": float(recall[-1]) if len(tp) else 0.0}


# Face-height buckets in pixels (lower edges) for detection rates by size.
SIZE_BUCKETS = (0, 16, 32, 64, 128)


def size_bucket_names(edges=SIZE_BUCKETS) -> list[str]:
    names = [f"{a}-{b}" for a, b in zip(edges[:-1], edges[1:])]
    return names + [f">={edges[-1]}"]


class DetectionRate:
    """Fraction of reference faces with a detection at IoU >= threshold, overall and per height bucket."""

    def __init__(self, iou_threshold: float = 0.5, edges=SIZE_BUCKETS):
        self.iou_threshold = iou_threshold
        self.edges = np.asarray(edges, np.float64)
        self.found = np.zeros(len(edges), np.int64)
        self.total = np.zeros(len(edges), np.int64)

    def update(self, ref_xyxy, found_xyxy) -> np.ndarray:
        ref = np.asarray(ref_xyxy, np.float64).reshape(-1, 4)
        got = np.asarray(found_xyxy, np.float64).reshape(-1, 4)
        hit = np.zeros(len(ref), bool)
        if len(ref) and len(got):
            hit = box_iou(ref, got).max(axis=1) >= self.iou_threshold
        b = np.searchsorted(self.edges, ref[:, 3] - ref[:, 1], side="right") - 1
        b = np.clip(b, 0, len(self.edges) - 1)
        np.add.at(self.total, b, 1)
        np.add.at(self.found, b, hit.astype(np.int64))
        return hit

    def compute(self) -> dict:
        names = size_bucket_names(tuple(int(e) for e in self.edges))
        by = {n: (float(f / t) if t else None) for n, f, t in zip(names, self.found, self.total)}
        tot = int(self.total.sum())
        return {"rate": float(self.found.sum() / tot) if tot else None, "n_faces": tot,
                "by_size": by, "n_by_size": dict(zip(names, self.total.tolist()))}


# quality ---------------------------------------------------------------

# Detector training scores (faceveil train), over per-image Detections and labelled boxes ----------

# The crop-quality metrics correlated with cycle fidelity in a train-on-anonymized run.
QUALITY_KEYS = ("l1", "mse", "ssim", "psnr")


def ap_overall(preds: list, gts: list[np.ndarray], iou: float = 0.5) -> float:
    """AP of per-image detections (Detections) against per-image labelled boxes (Nx4 xyxy)."""
    m = DetectionAP(iou)
    for p, g in zip(preds, gts):
        m.update(p.xyxy, p.score, g)
    return m.compute()["ap"]


def ap_by_size(preds: list, gts: list[np.ndarray], iou: float = 0.5) -> tuple[dict, dict]:
    """AP per face-height bucket, COCO-style: ground truth of other sizes is ignored (a detection of it is
    neither a true nor a false positive), and so are unmatched detections whose height is outside the bucket."""
    edges = np.asarray(SIZE_BUCKETS, np.float64)
    names = size_bucket_names()
    aps, counts = {}, {}
    for b, name in enumerate(names):
        lo, hi = edges[b], (edges[b + 1] if b + 1 < len(edges) else np.inf)
        m = DetectionAP(iou)
        for p, g in zip(preds, gts):
            gh = g[:, 3] - g[:, 1]
            inb = (gh >= lo) & (gh < hi)
            gin, gout = g[inb], g[~inb]
            keep = np.ones(len(p), bool)
            if len(p) and len(gout):
                keep &= box_iou(p.xyxy, gout).max(axis=1) < iou
            ph = p.heights
            in_range = (ph >= lo) & (ph < hi)
            if len(p) and len(gin):
                in_range |= box_iou(p.xyxy, gin).max(axis=1) >= iou
            keep &= in_range
            m.update(p.xyxy[keep], p.score[keep], gin)
        r = m.compute()
        aps[name] = None if r["n_gt"] == 0 else r["ap"]
        counts[name] = r["n_gt"]
    return aps, counts


def best_f1_threshold(preds: list, gts: list[np.ndarray], iou: float = 0.5) -> float:
    """The score threshold at which the detections best match the labels (F1): pseudo ground truth cut-off."""
    best, best_t = -1.0, 0.3
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        tp = n_pred = n_gt = 0
        for p, g in zip(preds, gts):
            q = p.xyxy[p.score >= t]
            n_pred += len(q)
            n_gt += len(g)
            if len(q) and len(g):
                iou_m = box_iou(q, g)
                # one-to-one greedy matching is close enough for choosing a threshold
                used = set()
                for r in np.argsort(-iou_m.max(axis=1)):
                    j = int(np.argmax(iou_m[r]))
                    if iou_m[r, j] >= iou and j not in used:
                        used.add(j)
                        tp += 1
        f1 = 2 * tp / max(n_pred + n_gt, 1)
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t


def pearson_table(rows: list[dict]) -> dict:
    """Pearson r (and p) of each quality metric with cycle fidelity, over all methods and per family.

    The reference 'none' is left out: its PSNR is infinite and its fidelity is 1 by definition."""
    from scipy.stats import pearsonr

    def corr(rs: list[dict]) -> dict:
        out = {}
        for k in QUALITY_KEYS:
            pairs = [(r["quality"].get(k), r["cycle_fidelity"]) for r in rs]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
            if len(pairs) < 3 or np.ptp([a for a, _ in pairs]) == 0 or np.ptp([b for _, b in pairs]) == 0:
                out[k] = {"r": None, "p": None, "n": len(pairs)}
                continue
            r, p = pearsonr([a for a, _ in pairs], [b for _, b in pairs])
            out[k] = {"r": float(r), "p": float(p), "n": len(pairs)}
        return out

    rs = [r for r in rows if r["method"] != "none"]
    fams = sorted({r["family"] for r in rs})
    return {"all": corr(rs), "by_family": {f: corr([r for r in rs if r["family"] == f]) for f in fams}}


def crop_quality(original: np.ndarray, anonymized: np.ndarray) -> dict:
    """L1, MSE, PSNR and SSIM between two same-sized uint8 crops (values on the 0..255 scale)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = np.asarray(original)
    b = np.asarray(anonymized)
    if a.shape != b.shape:
        raise ValueError(f"crop shapes differ: {a.shape} vs {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff**2))
    psnr = float("inf") if mse == 0 else float(peak_signal_noise_ratio(a, b, data_range=255))
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    ssim = float("nan")
    if win >= 3:
        ssim = float(structural_similarity(a, b, win_size=win, data_range=255,
                                           channel_axis=2 if a.ndim == 3 else None))
    return {"l1": float(np.mean(np.abs(diff))), "mse": mse, "psnr": psnr, "ssim": ssim}


class CropQuality:
    """Mean of the per-crop quality metrics (PSNR of identical crops, +inf, is capped at 100 dB)."""

    KEYS = ("l1", "mse", "psnr", "ssim")

    def __init__(self):
        self.values: dict[str, list[float]] = {k: [] for k in self.KEYS}

    def update(self, original: np.ndarray, anonymized: np.ndarray) -> dict:
        q = crop_quality(original, anonymized)
        for k in self.KEYS:
            v = min(q[k], 100.0) if k == "psnr" else q[k]
            self.values[k].append(v)
        return q

    def add(self, q: dict) -> None:
        for k in self.KEYS:
            v = q[k]
            self.values[k].append(min(v, 100.0) if k == "psnr" else v)

    def compute(self) -> dict:
        out = {}
        for k, vals in self.values.items():
            v = np.asarray(vals, np.float64)
            v = v[np.isfinite(v)]
            out[k] = float(v.mean()) if len(v) else None
        out["n_crops"] = len(self.values["l1"])
        return out


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two descriptor sets (FD-dlib; not FID)."""
    from scipy import linalg

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Fréchet distance needs at least two descriptors per set")
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    import warnings

    with warnings.catch_warnings():
        # fewer descriptors than dimensions give a singular product; handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise as the FID code does
        off = np.eye(len(s1)) * 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(d, 0.0)


class Diversity:
    """Mean pairwise descriptor distance among N outputs (seeds) of the same face, averaged over faces."""

    def __init__(self):
        self.per_face: list[float] = []

    def update(self, descriptors) -> None:
        d = np.asarray(descriptors, np.float64)
        d = d[np.isfinite(d).all(axis=1)]
        if len(d) < 2:
            return
        dist = np.linalg.norm(d[:, None] - d[None], axis=2)
        iu = np.triu_indices(len(d), 1)
        self.per_face.append(float(dist[iu].mean()))

    def compute(self) -> dict:
        return {"diversity": float(np.mean(self.per_face)) if self.per_face else None, "n_faces": len(self.per_face)}
