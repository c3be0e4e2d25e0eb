"""Synthetic clips with known per-frame face boxes, and the leaked-face-frames metric.

Real face photos are cut out (face box from a detector on the still photo) and
moved over a textured background: across the frame while growing, in through
one edge and out through another, behind an occluder for a few frames, and
smeared by motion blur (``make_clip``); or along any scripted path
(``path_clip``). A test fixture (not part of the package): used by tests and, through
bench/common.py, by bench/bench_video.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Sprite:
    pixels: np.ndarray  # RGB crop around the face
    face: np.ndarray  # face box xyxy inside the crop


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]
    boxes: list[np.ndarray]  # per frame: Kx4 xyxy of the visible faces (ground truth)
    fps: int


def sprite_from_photo(rgb: np.ndarray, box, margin: float = 0.5) -> Sprite:
    """Cut ``box`` (xyxy) out of ``rgb`` with ``margin`` face sizes of context on each side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    fw, fh = x2 - x1, y2 - y1
    h, w = rgb.shape[:2]
    cx1, cy1 = int(max(0, x1 - margin * fw)), int(max(0, y1 - margin * fh))
    cx2, cy2 = int(min(w, x2 + margin * fw)), int(min(h, y2 + margin * fh))
    return Sprite(np.ascontiguousarray(rgb[cy1:cy2, cx1:cx2]), np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1]))


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    bg = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(bg, (0, 0), 3)


def _paste(frame: np.ndarray, sprite: Sprite, cx: float, cy: float, face_w: float,
           motion_blur: int = 0) -> np.ndarray | None:
    """Paste so the face centre is at (cx, cy) and the face is ``face_w`` wide; return the visible face box."""
    s = face_w / (sprite.face[2] - sprite.face[0])
    ph, pw = sprite.pixels.shape[:2]
    nw, nh = max(1, round(pw * s)), max(1, round(ph * s))
    pix = cv2.resize(sprite.pixels, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if motion_blur > 1:
        k = np.zeros((motion_blur, motion_blur), np.float32)
        k[motion_blur // 2, :] = 1.0 / motion_blur
        pix = cv2.filter2D(pix, -1, k)
    face = sprite.face * s
    ox = round(cx - (face[0] + face[2]) / 2)
    oy = round(cy - (face[1] + face[3]) / 2)
    H, W = frame.shape[:2]
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + nw, W), min(oy + nh, H)
    if x2 <= x1 or y2 <= y1:
        return None
    frame[y1:y2, x1:x2] = pix[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
    fb = face + np.array([ox, oy, ox, oy])
    vis = np.array([max(fb[0], 0), max(fb[1], 0), min(fb[2], W), min(fb[3], H)])
    if vis[2] - vis[0] < 1 or vis[3] - vis[1] < 1:
        return None
    return vis


def make_clip(sprites: list[Sprite], size: tuple[int, int] = (320, 240), n_frames: int = 48, fps: int = 24,
              seed: int = 0) -> SyntheticClip:
    """Three faces over ``n_frames``: (A) crosses left to right growing from 0.15 to 0.3 of the
    frame height; (B) enters through the right edge and leaves through the bottom; (C) stays
    near the middle-left, hidden behind an occluder for 1/8 of the clip and motion-blurred later."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = _background(w, h, rng)
    sa, sb, sc = (sprites[i % len(sprites)] for i in range(3))
    frames, boxes = [], []
    occ_from, occ_to = int(n_frames * 0.45), int(n_frames * 0.575)
    blur_from, blur_to = int(n_frames * 0.7), int(n_frames * 0.8)
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        f = bg.copy()
        vis = []
        # C first (behind the others): a slow drift with a fast sideways jump while blurred
        jump = 0.0 if i < blur_from else min(1.0, (i - blur_from) / max(blur_to - blur_from, 1))
        c_box = _paste(f, sc, w * (0.25 + 0.15 * jump), h * 0.7, h * 0.2,
                       motion_blur=9 if blur_from <= i < blur_to else 0)
        occluded = occ_from <= i < occ_to
        if occluded and c_box is not None:
            x1, y1, x2, y2 = (int(v) for v in c_box)
            f[max(y1 - 4, 0):y2 + 4, max(x1 - 4, 0):x2 + 4] = (90, 90, 90)
        elif c_box is not None:
            vis.append(c_box)
        a_box = _paste(f, sa, w * (0.1 + 0.8 * t), h * 0.3, h * (0.15 + 0.15 * t))
        if a_box is not None:
            vis.append(a_box)
        if t >= 0.15:
            u = (t - 0.15) / 0.85
            bx = w * (1.1 - 0.5 * u)
            by = h * (0.35 + 0.9 * u * u)
            b_box = _paste(f, sb, bx, by, h * 0.22)
            if b_box is not None:
                vis.append(b_box)
        frames.append(f)
        boxes.append(np.asarray(vis, np.float64).reshape(-1, 4))
    return SyntheticClip(frames, boxes, fps)


def path_clip(paths: list[list], size: tuple[int, int] = (320, 240), fps: int = 24, seed: int = 0) -> SyntheticClip:
    """Faces moved by script over a textured background: ``paths`` holds, per face, per frame, (sprite, face centre
    x, y, face width) or None (not in the picture); later faces are pasted over earlier ones."""
    w, h = size
    bg = _background(w, h, np.random.default_rng(seed))
    frames, boxes = [], []
    for i in range(len(paths[0])):
        f = bg.copy()
        vis = [_paste(f, *p[i]) for p in paths if p[i] is not None]
        frames.append(f)
        boxes.append(np.asarray([b for b in vis if b is not None], np.float64).reshape(-1, 4))
    return SyntheticClip(frames, boxes, fps)


def leaked(gt_boxes: np.ndarray, anonymized: np.ndarray, min_size: float = 10, cover: float = 0.8) -> int:
    """Ground-truth faces (shorter side >= ``min_size``) with less than ``cover`` of their area anonymized.

    ``anonymized`` is a boolean HxW mask (region weights > 0, or changed pixels).
    """
    n = 0
    for x1, y1, x2, y2 in np.asarray(gt_boxes).reshape(-1, 4):
        if min(x2 - x1, y2 - y1) < min_size:
            continue
        xa, ya, xb, yb = int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))
        region = anonymized[max(ya, 0):yb, max(xa, 0):xb]
        if region.size == 0 or region.mean() < cover:
            n += 1
    return n


def changed(original: np.ndarray, output: np.ndarray, tol: int = 3) -> np.ndarray:
    """Pixels that differ by more than ``tol`` in any channel."""
    return (np.abs(original.astype(np.int16) - output.astype(np.int16)) > tol).any(axis=2)


def write_clip(path, frames: list[np.ndarray], fps: int = 24, audio: bool | int = True, crf: int = 12) -> None:
    """Encode ``frames`` as H.264 (near-lossless) with, optionally, a 440 Hz AAC tone as long as the video
    (``audio`` = N > 1: N tones, 440 Hz, 880 Hz, ..., each its own stream)."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height = frames[0].shape[1], frames[0].shape[0]
        v.pix_fmt = "yuv420p"
        v.options = {"crf": str(crf), "preset": "ultrafast"}
        streams = []
        for _ in range(int(audio)):
            a = out.add_stream("aac", rate=44100)
            a.layout = "mono"
            streams.append(a)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        for k, a in enumerate(streams):
            total = round(len(frames) / fps * 44100)
            t = np.arange(total) / 44100
            samples = (0.2 * np.sin(2 * np.pi * 440 * (k + 1) * t)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = samples[start:start + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = 44100
                af.pts = start
                af.time_base = Fraction(1, 44100)
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)


def write_timed_clip(path, pts_ms: list[int], durations_ms: list[int], time_base=None) -> None:
    """A 64x48 H.264 clip (no B-frames) whose frames lie at ``pts_ms`` (repeats allowed) and last ``durations_ms``,
    as the container stores them (packet durations), in ticks of ``time_base`` (default 1 ms; an MP4 stores another
    as it is, its decoding times rising a tick a frame from before the first frame)."""
    import av
    from fractions import Fraction

    time_base = time_base or Fraction(1, 1000)
    mp4 = path.suffix == ".mp4"
    with av.open(str(path), "w", options={"video_track_timescale": str(1 / time_base)} if mp4 else None) as out:
        v = out.add_stream("libx264", rate=25, options={"bf": "0"})
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        v.time_base = v.codec_context.time_base = time_base
        packets = []
        for i in range(len(pts_ms)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = 40 * i, Fraction(1, 1000)
            packets += v.encode(frame)
        packets += v.encode(None)
        for i, (packet, pts, duration) in enumerate(zip(sorted(packets, key=lambda p: p.pts), pts_ms, durations_ms)):
            packet.pts = pts
            packet.dts = i - len(pts_ms) if mp4 else pts
            packet.duration = duration
            out.mux(packet)
