"""The official WIDER FACE evaluation protocol, on whichever val images are present.

A faithful port of the official MATLAB evaluation (and of its widely used
Python port in Pytorch_Retinaface's ``widerface_evaluate``): predictions' scores
are min-max normalised over the whole set, each prediction is matched to the
ground-truth box it overlaps most (IoU with the "+1" pixel convention), boxes
outside the difficulty's keep list are "ignore" boxes (a prediction on them is
neither a true nor a false positive), 1000 score thresholds, all-point AP.
Written here rather than imported because that code is not packaged on PyPI.
The ``*_bbx_gt.txt`` files are read by ``faceveil.io.labels``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .metrics import average_precision

SETTINGS = ("easy", "medium", "hard")
THRESH_NUM = 1000


def ground_truth_files(split: str = "val") -> list[str]:
    """The official evaluation files ``load_ground_truth`` reads from its folder."""
    return [f"wider_face_{split}.mat"] + [f"wider_{s}_{split}.mat" for s in SETTINGS]


@dataclass(frozen=True)
class WiderImage:
    boxes: np.ndarray  # Nx4 x, y, w, h (as in the .mat files)
    keep: dict  # setting -> 0-based indices of the boxes that count in that setting


def load_ground_truth(gt_dir: str | Path, split: str = "val") -> dict[str, WiderImage]:
    """Read ``wider_face_<split>.mat`` and the easy/medium/hard files -> ``"event/name"`` -> WiderImage."""
    from scipy.io import loadmat

    gt_dir = Path(gt_dir)
    try:
        face = loadmat(gt_dir / ground_truth_files(split)[0])
        lists = {s: loadmat(gt_dir / name)["gt_list"] for s, name in zip(SETTINGS, ground_truth_files(split)[1:])}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{gt_dir}: cannot read the official WIDER FACE .mat files ({exc})") from None
    out: dict[str, WiderImage] = {}
    for e, event in enumerate(face["event_list"][:, 0]):
        event = str(event[0])
        files = face["file_list"][e, 0]
        boxes = face["face_bbx_list"][e, 0]
        for j in range(len(files)):
            name = str(files[j, 0][0])
            keep = {s: np.asarray(lists[s][e, 0][j, 0], np.int64).reshape(-1) - 1 for s in SETTINGS}
            out[f"{event}/{name}"] = WiderImage(np.asarray(boxes[j, 0], np.float64).reshape(-1, 4), keep)
    return out


def _overlaps(pred_xyxy: np.ndarray, gt_xyxy: np.ndarray, one: float = 1.0) -> np.ndarray:
    """IoU with the "+1" pixel convention of the official code (boxes are inclusive pixel ranges);
    ``one=0`` gives the continuous convention most other code uses."""
    lt = np.maximum(pred_xyxy[:, None, :2], gt_xyxy[None, :, :2])
    rb = np.minimum(pred_xyxy[:, None, 2:], gt_xyxy[None, :, 2:])
    wh = np.clip(rb - lt + one, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    ap = (pred_xyxy[:, 2] - pred_xyxy[:, 0] + one) * (pred_xyxy[:, 3] - pred_xyxy[:, 1] + one)
    ag = (gt_xyxy[:, 2] - gt_xyxy[:, 0] + one) * (gt_xyxy[:, 3] - gt_xyxy[:, 1] + one)
    union = ap[:, None] + ag[None, :] - inter
    # The official code only counts positive-width intersections.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((rb - lt + one > 0).all(axis=2) & (union > 0), inter / np.where(union > 0, union, 1), 0.0)


def _image_eval(pred_xywh: np.ndarray, gt_xywh: np.ndarray, ignore: np.ndarray, iou: float, one: float = 1.0):
    """Per prediction (descending score): cumulative recalled faces, and whether it counts as a proposal.

    Vectorised form of the official loop: a prediction is matched to its best-overlap
    box; on an ignore box it stops being a proposal, on a kept box the first such
    prediction recalls that face.
    """
    p = pred_xywh.copy()
    p[:, 2:] += p[:, :2]
    g = gt_xywh.copy()
    g[:, 2:] += g[:, :2]
    ov = _overlaps(p, g, one)
    j = np.argmax(ov, axis=1)
    matched = ov[np.arange(len(p)), j] >= iou
    on_kept = matched & (ignore[j] == 1)
    proposal = np.where(matched & (ignore[j] == 0), -1.0, 1.0)
    first = np.zeros(len(p))
    if on_kept.any():
        hs = np.nonzero(on_kept)[0]
        _, first_idx = np.unique(j[hs], return_index=True)
        first[hs[first_idx]] = 1
    return np.cumsum(first), proposal


def _img_pr_info(scores: np.ndarray, proposal: np.ndarray, pred_recall: np.ndarray) -> np.ndarray:
    """At each of the 1000 thresholds: proposals and recalled faces among predictions scoring >= it."""
    thresh = 1 - np.arange(1, THRESH_NUM + 1) / THRESH_NUM
    n = np.searchsorted(-scores, -thresh, side="right")  # scores sorted descending
    pr = np.zeros((THRESH_NUM, 2))
    has = n > 0
    cum_prop = np.cumsum(proposal == 1)
    pr[has, 0] = cum_prop[n[has] - 1]
    pr[has, 1] = pred_recall[n[has] - 1]
    return pr


def evaluate(predictions: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, WiderImage],
             iou: float = 0.5, plus_one: bool = True) -> dict:
    """AP easy/medium/hard of ``predictions`` (key ``"event/name"`` -> (xyxy Nx4, scores N)).

    Only the images in ``predictions`` are evaluated (and only their faces counted);
    keys missing from the ground truth raise an error. ``plus_one=False`` swaps the official
    inclusive-pixel IoU for the continuous one (a comparison aid; it lowers AP on tiny faces).
    """
    missing = [k for k in predictions if k not in gt]
    if missing:
        raise InputError(f"{len(missing)} images not in the WIDER FACE ground truth, e.g. {missing[0]}")
    allscores = np.concatenate([np.asarray(s, np.float64).reshape(-1) for _, s in predictions.values()] or [np.zeros(0)])
    lo, hi = (allscores.min(), allscores.max()) if len(allscores) else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    prepared = {}
    for key, (xyxy, scores) in predictions.items():
        b = np.asarray(xyxy, np.float64).reshape(-1, 4)
        s = (np.asarray(scores, np.float64).reshape(-1) - lo) / span  # norm_score of the official code
        order = np.argsort(-s, kind="stable")  # the evaluation assumes descending scores
        xywh = b[order].copy()
        xywh[:, 2:] -= xywh[:, :2]
        prepared[key] = (xywh, s[order])
    out = {}
    for setting in SETTINGS:
        pr = np.zeros((THRESH_NUM, 2))
        count = 0
        for key, (xywh, s) in prepared.items():
            img = gt[key]
            keep = img.keep[setting]
            count += len(keep)
            if len(img.boxes) == 0 or len(xywh) == 0:
                continue
            ignore = np.zeros(len(img.boxes))
            ignore[keep] = 1
            pred_recall, proposal = _image_eval(xywh, img.boxes, ignore, iou, 1.0 if plus_one else 0.0)
            pr += _img_pr_info(s, proposal, pred_recall)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(pr[:, 0] > 0, pr[:, 1] / np.maximum(pr[:, 0], 1), 0.0)
        recall = pr[:, 1] / max(count, 1)
        out[setting] = {"ap": average_precision(recall, precision), "n_faces": count}
    out["n_images"] = len(prepared)
    out["iou_convention"] = "official +1" if plus_one else "continuous"
    return out
