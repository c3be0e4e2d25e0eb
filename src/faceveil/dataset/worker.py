"""One image, in a worker: read, place the labelled boxes, detect, anonymize, write and check, describe it."""
from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..detections import Detections, box_iou
from ..errors import FaceveilError, InputError
from ..io.images import read_file, read_image
from ..pipeline import Anonymizer, settings_of
from .config import DatasetConfig, Item
from .orient import boxes_to_oriented, write_checked

# A detection overlapping a labelled face this much is the same face (for counting only).
SAME_FACE_IOU = 0.3

_STATE: dict = {}


def init_worker(cfg: DatasetConfig) -> None:
    from ..heap import keep_freed

    keep_freed()  # a dataset run's process or worker (heap: freed arrays kept for the next)
    _STATE["cfg"] = cfg
    _STATE["anon"] = anon = Anonymizer.from_config(cfg.anonymizer)
    _STATE["desc"] = settings_of(anon)


def init_pool_worker(parent_pid: int, cfg: DatasetConfig) -> None:
    from ..batch import die_with_parent

    die_with_parent(parent_pid)  # a killed run must not leave its workers behind
    init_worker(cfg)


def process_item(item: Item) -> dict:
    """Anonymize one image; returns {"entry": manifest entry} or {"error": message}. Never raises."""
    t0 = time.perf_counter()
    cfg: DatasetConfig = _STATE["cfg"]
    anon: Anonymizer = _STATE["anon"]
    try:
        data = read_file(item.src)  # read once: the hash, pixels and orientation are of one file (an audit)
        in_sha = hashlib.sha256(data).hexdigest()
        img = read_image(item.src, data=data)  # pixels with the EXIF orientation applied (upright, for the detector)
        orientation = img.orientation
        h, w = img.rgb.shape[:2]
        sw, sh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the stored size
        lw, lh = (sw, sh) if item.frame == "stored" else (w, h)  # the size in the labels' frame
        b = np.array(item.xyxy, np.float32).reshape(-1, 4)
        if (item.frame == "stored" and orientation in (5, 6, 7, 8) and item.size is not None and sw != sh
                and tuple(item.size) == (sh, sw)):
            # The labels state the upright size: their boxes were most likely drawn on the rotated view, while
            # these formats address stored pixels. Either frame is a guess; a wrong one leaves every face visible.
            raise InputError(f"{item.src}: the labels state {sh}x{sw}, the upright size of this {sw}x{sh} image "
                             f"(EXIF orientation {orientation}): they look drawn on the upright view, but their "
                             "boxes must address the stored pixels; fix the labels (or the photo); nothing was written")
        if item.size is not None and all(item.size) and tuple(item.size) != (lw, lh):  # 0x0: a size not stated
            # Boxes made for another picture (a resized or re-exported copy) miss its faces: never a mere warning.
            raise InputError(f"{item.src}: the labels state {item.size[0]}x{item.size[1]}, the image is {lw}x{lh} "
                             f"({item.frame} pixels): its boxes may miss the faces; fix the labels (or the image); "
                             "nothing was written")
        # A box with area that lies wholly outside the image is a wrong label (or a wrong frame): say so.
        away = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) & ((b[:, 0] >= lw) | (b[:, 1] >= lh) | (b[:, 2] <= 0)
                                                              | (b[:, 3] <= 0))
        if away.any():
            k = int(np.argmax(away))
            x1, y1, x2, y2 = (float(v) for v in b[k])
            rot = f", EXIF orientation {orientation}" if orientation != 1 else ""
            raise InputError(f"{item.src}: labelled box {k + 1} (x {x1:g}..{x2:g}, y {y1:g}..{y2:g}) lies outside "
                             f"the {lw}x{lh} image ({item.frame} pixels{rot}); nothing was written")
        if item.frame == "stored" and orientation != 1:
            b = boxes_to_oriented(b, orientation, sw, sh)
        labels = Detections.from_boxes(b, source="label")
        b = labels.xyxy
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
        labels = labels.clipped(w, h)
        has_area = (labels.widths > 0) & (labels.heights > 0)
        degenerate = int((~has_area).sum())
        labels = labels[has_area]
        small = np.minimum(labels.widths, labels.heights) < cfg.min_size
        kept_labels = labels[~small] if cfg.boxes in ("gt", "union") else Detections.empty("label")
        detected = extra = small_det = 0
        parts = [kept_labels]
        keep, kept = anon.keep, None
        # --keep-people tells faces apart by the detector's landmarks: it runs even under --boxes gt (then only
        # to tell whose the labelled faces are; its own boxes are not hidden).
        # A method that places its face by landmarks (replace, eyebar) gets the detector's landmarks for the
        # labelled boxes too (else replace pastes a frontal face over the whole box); the box stays the region.
        label_lm = bool(getattr(anon.method, "uses_landmarks", False)) and len(kept_labels) > 0
        found = anon.detect(img.rgb).clipped(w, h) if cfg.boxes in ("detect", "union") or label_lm or (
            keep and keep.people is not None) else Detections.empty()
        if label_lm:
            kept_labels = parts[0] = kept_labels.with_landmarks_from(found)
        used = np.zeros(len(found), bool)  # the detections this run hides unless kept
        if cfg.boxes in ("detect", "union"):
            det_small = np.minimum(found.widths, found.heights) < cfg.min_size
            small_det = int(det_small.sum())
            used = ~det_small
            dets = found[used]
            detected = len(dets)
            if len(labels) and len(dets):
                extra = int((box_iou(dets.xyxy, labels.xyxy).max(axis=1) < SAME_FACE_IOU).sum())
            else:
                extra = detected
            if label_lm and len(dets):
                # One face, one replacement: a detection of a labelled face would paint a second face over the
                # first. The labelled box grows to cover the detection's box (never less hidden) and the
                # detection is not drawn on its own.
                kept_labels, same = _absorb_same_faces(kept_labels, dets)
                parts[0] = kept_labels
                used[np.flatnonzero(used)[same]] = False
                dets = dets[~same]
            parts.append(dets)
        if keep:  # the keep step (people.py): consenting people's and keep regions' faces are left as they are
            hide_l, hide_d, kept = keep.decide_labelled(img.rgb, kept_labels, found, used)
            parts = [kept_labels[hide_l], found[used & hide_d]]
        if item.manual:  # a reviewer's boxes (`faceveil review`) on an image redone since its review
            parts.append(Detections.from_boxes(item.manual, source="manual").clipped(w, h))
        if cfg.boxes in ("detect", "union"):  # faces only the image's transparency draws: hidden, never kept
            parts.append(anon.drawn_by_alpha(img, Detections.merge([kept_labels, found])).clipped(w, h))
        faces = Detections.merge(parts, "label+detector")
        out = anon.anonymize(img.rgb, faces, anon.rng_for(in_sha))  # keyed as the CLI keys a photo
        out_sha = write_checked(item.dst, out, anon.hide_in_alpha(img, faces), orientation, anon.keep_metadata,
                                anon.jpeg_quality, anon.compositor.mask(faces, out.shape) > 0 if img.deep is not None
                                else None)
        desc = _STATE["desc"]
        entry = {
            "kind": "image",
            "path": item.rel,
            "output": item.out_rel,
            "input_sha256": in_sha,
            "output_sha256": out_sha,
            "labels_sha256": item.labels_sha256,  # what the labels said of it (a label edit: not done any more)
            "size": [w, h],  # as shown (EXIF orientation applied), the frame of "regions"
            "faces": {
                "labels": len(labels),
                "labels_anonymized": len(parts[0]),
                "detected": detected,
                "detected_extra": extra,
                "small_left": int(small.sum()) if cfg.boxes != "detect" else 0,
                "small_detected_left": small_det,
                "clipped": int(outside.sum()),
                "degenerate": degenerate,
                **({"kept": len(kept)} if kept is not None else {}),
            },
            "anonymized_regions": len(faces),
            # The exact boxes, so the review page can redo this image plus a reviewer's boxes.
            "regions": [[float(v) for v in b] for b in faces.xyxy],  # float32 -> float: exact
            # --keep-*: every face left as it is, whom it matched and at what distance (or which region)
            **({"kept": kept} if kept is not None else {}),
            **({"manual": [list(b) for b in item.manual]} if item.manual else {}),
            "boxes": cfg.boxes,
            "min_size": cfg.min_size,
            **desc,
            "faceveil": __version__,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 4),
        }
        if orientation != 1:
            entry["orientation"] = orientation  # the output keeps it: stored pixels stay in the labels' frame
        return {"entry": entry}
    except FaceveilError as exc:
        return {"error": str(exc), "path": item.rel}
    except (KeyboardInterrupt, SystemExit):
        raise
    except OSError as exc:  # fail closed (nothing under the final name) and say why in one line
        cause = exc.strerror or exc.__class__.__name__
        where = exc.filename or item.dst
        return {"error": f"{where}: {cause}", "path": item.rel}
    except Exception as exc:  # fail closed: nothing was written under the final name; say why
        return {"error": f"{item.src}: {exc.__class__.__name__}: {exc}", "path": item.rel}


def _absorb_same_faces(labels: Detections, dets: Detections) -> tuple[Detections, np.ndarray]:
    """(labels, same): each detection at IoU >= SAME_FACE_IOU with a labelled box (its best one) is marked in
    ``same``, and that labelled box is grown to the union of both boxes."""
    same = np.zeros(len(dets), bool)
    if not len(labels) or not len(dets):
        return labels, same
    iou = box_iou(dets.xyxy, labels.xyxy)
    best = iou.argmax(axis=1)
    same = iou[np.arange(len(dets)), best] >= SAME_FACE_IOU
    xyxy = labels.xyxy.copy()
    for j in np.flatnonzero(same):
        i = best[j]
        xyxy[i, :2] = np.minimum(xyxy[i, :2], dets.xyxy[j, :2])
        xyxy[i, 2:] = np.maximum(xyxy[i, 2:], dets.xyxy[j, 2:])
    return Detections(xyxy, labels.score, labels.landmarks, labels.track_id, labels.source, labels.sources), same
