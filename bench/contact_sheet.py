"""Contact sheets: one image per anonymization method over the same 8 shared photos, with 100 % crops.

    python bench/contact_sheet.py docs/contact [--methods blur,pixelate,...] [--quality 80]

Each sheet (OUT/<method>.jpg) holds 8 tiles: the whole photo (scaled to fit) above a 100 % crop
around its largest face, the method's own defaults, the same faces and seed for every method. The
photos are licence-clean, so the sheets can be committed: CC0 facemask photos, MIT deepface unit-test
photos and a frame of a CC BY 2.0 clip (its credit goes into OUT/README.md with the list of photos).
Faces: faceveil's default detector (the `balanced` preset) on each photo; on facemask photos, every
labelled face that no detection covers is added, so no face is shown unanonymized. Photos are first
scaled to at most 800 px (a web-sized photo). The sheets only call the methods: whatever a method
looks like on this checkout is what the sheet shows. Metadata-free JPEGs, written atomically.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from common import DATA, ELLIPSE_13

from faceveil import detect
from faceveil.anonymize import Compositor, get_method
from faceveil.anonymize.base import METHODS
from faceveil.detections import Detections, box_iou
from faceveil.io.atomic import write_bytes_atomic
from faceveil.io.images import read_rgb

MAX_SIDE = 800  # working size of every photo
TILE = 256  # tile width; the crop is TILE x TILE at 100 %
LABEL = 18
MAX_BYTES = 300_000  # a sheet is committed: keep it small
VIDEO = "videos/group_hikers_640x480_ccby.mp4"
# (what it shows, path under shared/data); the video entry is a frame chosen below
PHOTOS = [("portrait", "deepface-unit/img32.jpg"), ("couple", "deepface-unit/couple.jpg"),
          ("crowd", "deepface-unit/selfie-many-people.jpg"), ("masked", "facemask/images/maksssksksss230.jpg"),
          ("profile", "deepface-unit/img59.jpg"), ("dark", "deepface-unit/img17.jpg"),
          ("small faces", "facemask/images/maksssksksss1.jpg"), ("video frame", VIDEO)]
CREDITS = {VIDEO: "frame of `video_02.mp4` from openmpf/openmpf, CC BY 2.0, (c) 2009 Peter Stevens "
                  "(flickr.com/photos/nordique/4094034478)",
           "facemask": "Face Mask Detection set, CC0", "deepface-unit": "deepface unit-test photos, MIT"}


def video_frame(path: Path) -> np.ndarray:
    """The sampled frame (every 2 s) whose largest detected face is largest: a face close enough to see."""
    cap = cv2.VideoCapture(str(path))
    best, best_w, i = None, -1.0, 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % 60 == 0:
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                d = detect(rgb)
                w = float((d.xyxy[:, 2] - d.xyxy[:, 0]).max()) if len(d) else 0.0
                if w > best_w:
                    best, best_w = rgb, w
            i += 1
    finally:
        cap.release()
    if best is None:
        raise SystemExit(f"contact_sheet: error: {path}: no frame could be decoded")
    return best


def load(rel: str) -> tuple[np.ndarray, Detections]:
    path = DATA / rel
    img = video_frame(path) if rel == VIDEO else read_rgb(path)
    s = min(1.0, MAX_SIDE / max(img.shape[:2]))
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    dets = detect(img)
    if rel.startswith("facemask/"):
        from faceveil.train.train_on_anon import read_wider_gt

        labels = read_wider_gt(DATA / "facemask" / "gt.txt")[Path(rel).name] * s
        if len(dets):
            labels = labels[box_iou(labels, dets.xyxy).max(axis=1) < 0.3]
        dets = Detections.merge([dets, Detections.from_boxes(labels, source="label")])
    return img, dets


def tile(img: np.ndarray, face: np.ndarray | None, caption: str) -> np.ndarray:
    """TILE wide: caption, the photo fitted into TILE x TILE, the 100 % crop around ``face``."""
    h, w = img.shape[:2]
    s = TILE / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    top = np.full((TILE, TILE, 3), 24, np.uint8)
    oy, ox = (TILE - small.shape[0]) // 2, (TILE - small.shape[1]) // 2
    top[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    crop = np.full((TILE, TILE, 3), 24, np.uint8)
    cx, cy = (w / 2, h / 2) if face is None else ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
    x0 = int(np.clip(round(cx - TILE / 2), 0, max(w - TILE, 0)))
    y0 = int(np.clip(round(cy - TILE / 2), 0, max(h - TILE, 0)))
    part = img[y0:y0 + TILE, x0:x0 + TILE]
    crop[:part.shape[0], :part.shape[1]] = part
    cap = np.full((LABEL, TILE, 3), 24, np.uint8)
    cv2.putText(cap, caption, (4, LABEL - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([cap, top, crop], axis=0)


def sheet(method: str, photos, title: str) -> np.ndarray:
    comp = Compositor(ELLIPSE_13)
    m = get_method(method, {})
    tiles = []
    for k, (what, img, dets) in enumerate(photos):
        out = m.apply(img, dets, comp, np.random.default_rng(k))
        face = dets.xyxy[int(np.argmax(dets.areas))] if len(dets) else None
        tiles.append(tile(out, face, f"{what} ({len(dets)} faces)"))
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles), 4)]
    head = np.full((26, rows[0].shape[1], 3), 24, np.uint8)
    cv2.putText(head, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([head, *rows], axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write <method>.jpg and README.md into (e.g. docs/contact)")
    ap.add_argument("--methods", default="", help="comma-separated (default: every method that builds with defaults)")
    ap.add_argument("--quality", type=int, default=80,
                    help="JPEG quality (default 80; lowered in steps of 10 for a sheet over 300 KB)")
    args = ap.parse_args()
    names = [n for n in args.methods.split(",") if n] or METHODS.names()
    photos = []
    for what, rel in PHOTOS:
        img, dets = load(rel)
        photos.append((what, img, dets))
        print(f"{what}: {rel}, {img.shape[1]}x{img.shape[0]}, {len(dets)} faces", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name in names:
        try:
            img = sheet(name, photos, f"-m {name} (defaults)  |  top: whole photo, bottom: 100 % crop")
        except Exception as exc:  # a method that needs an extra, a model or parameters: listed, not fatal
            skipped.append(f"{name} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})")
            continue
        for q in range(args.quality, 29, -10):  # noise-like methods compress badly: lower the quality to fit
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if not ok:
                raise SystemExit(f"contact_sheet: error: {name}: JPEG encoding failed")
            if len(buf) <= MAX_BYTES:
                break
        write_bytes_atomic(out / f"{name}.jpg", buf.tobytes())
        written.append(name)
        print(f"{name}: {out / (name + '.jpg')} ({len(buf) // 1024} KB)", file=sys.stderr)
    if args.methods and (out / "README.md").exists():  # a partial run: the index lists every sheet of a full run
        print(f"{out / 'README.md'} left as it is (a run without --methods rewrites it)", file=sys.stderr)
        return 0
    lines = ["# Contact sheets: each method on the same 8 photos", "",
             "Made by `python bench/contact_sheet.py docs/contact` (each method's defaults, the same faces and seed "
             "for all; top: the whole photo, bottom: a 100 % crop around its largest face).", "",
             "Sheets: " + ", ".join(f"[{n}]({n}.jpg)" for n in written) + ".", ""]
    lines += ["Photos (faces hidden):"] + [f"- {w}: `{rel}` ({len(d)})" for (w, rel), (_, _, d) in zip(PHOTOS, photos)]
    lines += ["", "Credits and licences:"]
    lines += [f"- {v}" for v in CREDITS.values()]
    if skipped:
        lines += ["", "Not shown (they need parameters, an extra or a model): " + "; ".join(skipped)]
    write_bytes_atomic(out / "README.md", ("\n".join(lines) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
