"""Detection utility: do detectors still find the faces after anonymization?"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..detections import Detections
from .metrics import DetectionAP, DetectionRate
from .widerface import evaluate


def greedy_nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by deface's greedy NMS (suppress IoU >= threshold, areas without +1), vectorised per kept box.

    deface's own loop is pure Python and O(n^2) per pair; this gives the same result
    in O(n) numpy passes. Hand-written because the evaluation must match deface's rule exactly.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    order = np.argsort(np.asarray(scores))[::-1]
    b = b[order]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(b), bool)
    for i in range(len(b)):
        if suppressed[i]:
            continue
        rest = np.arange(i + 1, len(b))
        rest = rest[~suppressed[rest]]
        if not len(rest):
            break
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            ovr = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[ovr >= iou_threshold]] = True
    return np.sort(order[~suppressed])


def eval_detect(detector, image: np.ndarray, threshold: float = 0.02, nms_iou: float = 0.3,
                pad: int = 256) -> Detections:
    """CenterFace as the WIDER FACE reference was measured: one scale, the full image zero-padded
    (bottom/right) to a multiple of ``pad``, a low threshold, deface's box clipping and NMS.
    No downscaling, no coarse pass; boxes are not clipped to the unpadded image (as in deface)."""
    h, w = image.shape[:2]
    ph, pw = -(-h // pad) * pad, -(-w // pad) * pad
    padded = np.zeros((ph, pw, 3), np.uint8)
    padded[:h, :w] = image
    raw = detector.detect_raw(padded, threshold)
    b = raw.xyxy.copy()
    b[:, 0::2] = np.minimum(b[:, 0::2], pw)  # deface clips to the network input's size
    b[:, 1::2] = np.minimum(b[:, 1::2], ph)
    raw = Detections(b, raw.score, raw.landmarks, None, raw.source)
    return raw[greedy_nms(raw.xyxy, raw.score, nms_iou)]


def _boxes(rec: dict | None, min_score: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    d = Detections.from_dict(rec)
    if min_score is not None:
        d = d.filter(min_score=min_score)
    return d.xyxy, d.score


def evaluate_detection(files: list[str], originals: dict, anonymized: dict,
                       labels: dict[str, np.ndarray] | None = None) -> dict:
    """Detection rate (by face height) and operation fidelity for the pipeline detector and dlib HOG.

    Reference faces are each detector's own detections on the original at its operating point (the pipeline
    detector's as `faceveil anonymize` keeps them, with its size-aware cut; HOG from score 0), and the faces
    found on the anonymized image the same way; with ``labels`` (rel -> xyxy) the
    labelled faces are a further reference. Fidelity (DartBlur) is the AP of the detector's
    score-ranked detections on the anonymized image against its own original detections.
    """
    # (reference on the original, found on the anonymized, score-ranked on the anonymized, score cut)
    detectors = {"pipeline_detector": ("dets", "found", "low", None), "dlib-hog": ("hog", "hog", "hog", 0.0)}
    out: dict = {"n_images": 0, "n_errors": 0}
    acc = {name: (DetectionRate(), DetectionAP()) for name in detectors}
    lab = {name: DetectionRate() for name in detectors} if labels is not None else None
    for f in files:
        o, a = originals.get(f, {}), anonymized.get(f, {})
        if "error" in o or "error" in a or "found" not in a:
            out["n_errors"] += 1
            continue
        out["n_images"] += 1
        for name, (okey, fkey, akey, thr) in detectors.items():
            ref, _ = _boxes(o.get(okey), thr)
            found, _ = _boxes(a.get(fkey), thr)
            preds, scores = _boxes(a.get(akey))
            acc[name][0].update(ref, found)
            acc[name][1].update(preds, scores, ref)
            if lab is not None:
                lab[name].update(labels.get(f, np.zeros((0, 4))), found)
    for name in detectors:
        rate, ap = acc[name]
        out[name] = {"reference": "own detections on the originals", **rate.compute(),
                     "fidelity_ap": ap.compute()["ap"]}
        if lab is not None:
            out[name]["vs_labels"] = lab[name].compute()
    return out


def wider_ap(files: list[str], records: dict, gt) -> dict:
    """Official-protocol WIDER FACE AP of the stored 'wider' detections (see ``eval_detect``)."""
    preds = {}
    for f in files:
        r = records.get(f, {})
        if "wider" in r:
            xyxy, score = _boxes(r["wider"])
            preds[wider_key(f)] = (xyxy, score)
    return evaluate(preds, gt)


def wider_key(rel: str) -> str:
    """``0--Parade/0_Parade_x.jpg`` -> ``0--Parade/0_Parade_x`` (the .mat files' event/name)."""
    p = rel.rsplit(".", 1)[0]
    return "/".join(p.split("/")[-2:])


def read_face_labels(path, images, files: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Face labels in any format `eval leaks` reads (WIDER txt, COCO .json, VOC or YOLO folder, guessed from the
    path; a COCO file's face categories only) -> (rel -> xyxy for those of ``files``, the labelled images not under
    ``images``). A label's image is found as `eval leaks` finds it (``find_image``: its relative path, never another
    folder's). Only WIDER's txt was read: a COCO file was 'expected an image file name, got {"images": ...'."""
    from ..io.labels import find_images, read_eval_labels

    images, wanted = Path(images), set(files)
    labelled = {im.path: im for im in read_eval_labels(path, None, images).images}
    found, missing = find_images(images, list(labelled))
    out = {}
    for key, p in found:
        if p.relative_to(images).as_posix() in wanted:
            b = labelled[key].xywh.astype(np.float64)
            b[:, 2:] += b[:, :2]
            out[p.relative_to(images).as_posix()] = b
    return out, missing
