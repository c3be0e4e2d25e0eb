"""Video: speed and leaked face-frames per setting, against the deface CLI in the same run.

    PYTHONPATH=src python bench/bench_video.py --quick        # small: ~10-15 min on 2 shared cores
    PYTHONPATH=src python bench/bench_video.py                # the README table's sizes
    PYTHONPATH=src python bench/bench_video.py --side tune    # the photos N and the crop margin were chosen on
    FACEVEIL_BENCH_SHOTS=2,2,16 PYTHONPATH=src python bench/bench_video.py --quick --settings 0,6  # smaller (a)
    FACEVEIL_INT8=7bit PYTHONPATH=src python bench/bench_video.py --no-speed --no-b --dp threads=2  # side by side

(a) Labelled clips: camera moves (slow pans, zoom in, zoom out) over labelled photos from facemask (CC0) and
WIDER val, cut from one photo to the next, rendered at 1280x720 and 1920x1080 into a temporary folder at bench
time (deterministic: same photos, same moves; nothing is stored). Every labelled face's box is known on every
frame (the photo's label moved with the camera). Only photos of one side of eval.splits are used (default:
held_out; the schedule's N and margin were chosen on ``tune``). A labelled face-frame counts when its visible
box is >= 10 px; it is *leaked* when less than 80 % of its pixels changed (by more than 3 levels) on the
unencoded frames the run would encode.

(b) The four shared clips (../shared/data/videos, first ``--seconds``): the reference is the ``thorough``
preset run on every frame at full resolution; *leaked* = a face it finds on a frame that the run leaves less
than 80 % changed. (Cached in $FACEVEIL_BENCH_CACHE, default /tmp/faceveil-bench-cache: it is the slow part.)

Speed: every anonymizer runs as its own process on the encoded (a) clip (startup and model load included for
all), so wall time and peak memory (ru_maxrss) compare like with like; faceveil's rows also give the busy
seconds of its stages (decode / detect / anonymize / encode, from --report). The floor rows: decode + encode
(our writer, same settings), and decode + the schedule's detector work + encode in one thread (no overlap).

deface: its CLI (defaults: threshold 0.2, mask scale 1.3, ellipse blur, full resolution) for fps; its library
(same model and defaults) on the same unencoded frames for leaks. A shared 2-core machine is noisy.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common import DATA, ROOT, compile_bytecode, int8_line, run_timed, synthetic_video

DEFACE = Path(sys.executable).parent / "deface"
VIDEOS = DATA / "videos"
SHARED_CLIPS = ["talking_head_speech_844.mp4", "crowd_marathon_960x540_pd.mkv", "group_hikers_640x480_ccby.mp4",
                "multi_shot_stage_audience_360p.mp4"]
CACHE = Path(os.environ.get("FACEVEIL_BENCH_CACHE", "/tmp/faceveil-bench-cache"))
FPS = 25

# name -> the CLI's video options; the in-process leak runs take the same options (VideoOptions below).
# Rows other than the default spell out what they change from, since the default moved (issue 20, second pass):
# the video default before it was fp32 with the cuts 0.2 / 0.1 on every frame, hold 0.5 s and look-ahead 0.25 s
# (12 and 6 frames at the (a) clips' 25 fps).
OLD_TRACK = ["--hold", "12", "--lookahead", "6"]
OLD_CUTS = ["--dp", "threshold=0.2", "--dp", "small_threshold=0.1"]
FP32 = ["--dp", "precision=fp32"]
EVERY_FRAME = ["--detect", "fast", "--detect-every", "1", *OLD_TRACK]  # the default before issue 20: full size
LONG_TRACK = ["--hold", "25", "--lookahead", "12"]  # 1 s and 0.5 s at 25 fps
SETTINGS = {
    "default (video preset: int8, cut 0.15/0.07, max size 1280; every 2nd frame, hold 1 s, look-ahead 0.5 s)": [],
    "every frame, fp32, full size (the default before issue 20)": EVERY_FRAME,
    "default before, int8": OLD_CUTS + OLD_TRACK + ["--detect-every", "1"],
    "default before, detect-every 2": FP32 + OLD_CUTS + OLD_TRACK + ["--detect-every", "2"],
    "default before, detect-every 3": FP32 + OLD_CUTS + OLD_TRACK + ["--detect-every", "3"],
    "fp32, max size 960, detect-every 2": FP32 + OLD_CUTS + OLD_TRACK + ["--max-size", "960", "--detect-every", "2"],
    "detect-every 2 (full size, fp32)": ["--detect", "fast", "--detect-every", "2", *OLD_TRACK],
    "full every 6, crops margin 0.5": EVERY_FRAME + ["--full-every", "6", "--crop-margin", "0.5"],
    "full every 8, crops margin 0.25": EVERY_FRAME + ["--full-every", "8", "--crop-margin", "0.25"],
    "int8 (full size, every frame)": EVERY_FRAME + ["--dp", "precision=int8"],
    "max size 1280 (fp32, every frame)": EVERY_FRAME + ["--max-size", "1280"],
    # issue 20, towards 4x deface: fewer detector runs, with tracks held longer / back-filled further and a lower cut
    "int8, detect-every 2": OLD_CUTS + OLD_TRACK + ["--detect-every", "2"],
    "int8, detect-every 2, hold 1 s, look-ahead 0.5 s": OLD_CUTS + ["--detect-every", "2", *LONG_TRACK],
    "int8, cut 0.15/0.07, detect-every 2, hold 1 s, look-ahead 0.5 s (the default, spelled out)": [
        "--dp", "precision=int8", "--dp", "threshold=0.15", "--dp", "small_threshold=0.07", "--detect-every", "2",
        *LONG_TRACK],
    "detect-every 2, hold 1 s, look-ahead 0.5 s (fp32, cut 0.2/0.1)": FP32 + OLD_CUTS + ["--detect-every", "2",
                                                                                       *LONG_TRACK],
    "default before, hold 1 s, look-ahead 0.5 s": FP32 + OLD_CUTS + ["--detect-every", "1", *LONG_TRACK],
    "int8, cut 0.15/0.07, detect-every 3, hold 1 s, look-ahead 0.5 s": [
        "--dp", "precision=int8", "--dp", "threshold=0.15", "--dp", "small_threshold=0.07", "--detect-every", "3",
        *LONG_TRACK],
    "the default before (fp32, cut 0.2/0.1, every frame, hold 0.5 s, look-ahead 0.25 s)": FP32 + OLD_CUTS + OLD_TRACK
    + ["--detect-every", "1"],
    # issue 20, CPU per frame: the default's pass for big faces (a copy 640 px long) on a smaller copy
    "default, big-face pass at 480 px": ["--dp", "coarse_size=480"],
    "default, big-face pass at 384 px": ["--dp", "coarse_size=384"],
    # issue 20, CPUs without VNNI: int8 runs the 7-bit build there, whose heatmap is fp32's, and the default's cut was
    # chosen with the 8-bit build; lower cuts for it, chosen on --side tune (run with FACEVEIL_INT8=7bit)
    "default, cut 0.12/0.05": ["--dp", "threshold=0.12", "--dp", "small_threshold=0.05"],
    "default, cut 0.10/0.05": ["--dp", "threshold=0.1", "--dp", "small_threshold=0.05"],
    "default, cut 0.08/0.04": ["--dp", "threshold=0.08", "--dp", "small_threshold=0.04"],
}
DETECT_FLAGS = ("--dp", "--max-size", "--detect")  # detector options: the in-process runs build their own Anonymizer


def detector_params(args: list[str]) -> dict:
    """The detector parameters a setting's CLI flags give (--dp NAME=VALUE, --max-size N)."""
    from faceveil.registry import parse_assignments

    assign = [v for f, v in zip(args[::2], args[1::2]) if f == "--dp"]
    assign += [f"max_size={v}" for f, v in zip(args[::2], args[1::2]) if f == "--max-size"]
    return parse_assignments(assign)


def preset_of(args: list[str]) -> str | None:
    """The setting's --detect preset (None: the video default)."""
    return next((v for f, v in zip(args[::2], args[1::2]) if f == "--detect"), None)


def video_options(args: list[str]):
    from faceveil.video import VideoOptions

    kw = {}
    for flag, value in zip(args[::2], args[1::2]):
        if flag in DETECT_FLAGS:
            continue
        key = flag[2:].replace("-", "_")
        kw[key] = float(value) if key == "crop_margin" else int(value)
    return VideoOptions(**kw)


# (a) labelled clips --------------------------------------------------------------------------------------------

@dataclass
class Photo:
    path: Path
    boxes: np.ndarray  # Kx4 xyxy, the labels


def labelled_photos(side: str) -> tuple[list[Photo], list[Photo]]:
    """(facemask, WIDER) photos of ``side`` with 3..12 labelled faces, most of them >= 12 px, by name."""
    from faceveil.eval.splits import side as side_of

    fm: dict[str, list] = {}
    for line in (DATA / "facemask" / "labels.csv").read_text().splitlines()[1:]:
        name, x, y, w, h, _ = line.split(",")
        fm.setdefault(name, []).append([float(x), float(y), float(x) + float(w), float(y) + float(h)])
    wider: dict[str, list] = {}
    lines = (DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    i = 0
    while i < len(lines) and lines[i].strip():
        name, n = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, r.split()[:4])) for r in lines[i + 2:i + 2 + max(n, 1)]] if n else []
        wider[name] = [[x, y, x + w, y + h] for x, y, w, h in rows if w > 0 and h > 0]
        i += 2 + max(n, 1)

    def pick(root: Path, labels: dict[str, list], min_px: float) -> list[Photo]:
        out = []
        for name in sorted(labels):
            b = np.asarray(labels[name], np.float64).reshape(-1, 4)
            big = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= min_px
            if side_of(name) == side and 3 <= len(b) <= 12 and big.mean() >= 0.6 and (root / name).is_file():
                out.append(Photo(root / name, b))
        return out

    return pick(DATA / "facemask" / "images", fm, 12), pick(DATA / "widerface-val" / "images", wider, 16)


@dataclass
class LabelledClip:
    name: str
    frames: list[np.ndarray]
    boxes: list[np.ndarray]  # per frame, visible labelled boxes (>= 1 px)
    cuts: list[int]  # frames that start a new shot
    fps: int = FPS


def _views(W: int, H: int, aspect: float, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """n camera windows (x, y, w) on a W x H photo: a slow pan, a zoom in or a zoom out."""
    wmax = min(W, H * aspect)
    if kind == "pan":
        w0 = w1 = 0.8 * wmax
    elif kind == "zoom in":
        w0, w1 = wmax, 0.6 * wmax
    else:
        w0, w1 = 0.6 * wmax, wmax
    t = np.linspace(0, 1, n)
    w = w0 + (w1 - w0) * t
    h = w / aspect
    # start and end points inside the photo; a pan crosses a good part of the free room
    a, b = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
    if kind == "pan":
        b = 1 - a
    fx = a[0] + (b[0] - a[0]) * t
    fy = a[1] + (b[1] - a[1]) * t
    return np.stack([fx * (W - w), fy * (H - h), w], axis=1)


def make_labelled_clip(photos: list[Photo], size: tuple[int, int], frames_per_shot: int, seed: int,
                       name: str) -> LabelledClip:
    from faceveil.io.images import read_rgb

    ow, oh = size
    rng = np.random.default_rng(seed)
    kinds = ["pan", "zoom in", "zoom out"]
    frames, boxes, cuts = [], [], []
    for k, ph in enumerate(photos):
        img = read_rgb(ph.path)
        H, W = img.shape[:2]
        cuts.append(len(frames))
        for x, y, w in _views(W, H, ow / oh, frames_per_shot, kinds[(k + seed) % 3], rng):
            s = ow / w
            m = np.float32([[s, 0, -x * s], [0, s, -y * s]])
            frames.append(cv2.warpAffine(img, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
            b = (ph.boxes - np.array([x, y, x, y])) * s
            b[:, 0::2] = np.clip(b[:, 0::2], 0, ow)
            b[:, 1::2] = np.clip(b[:, 1::2], 0, oh)
            boxes.append(b[((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)])
    return LabelledClip(name, frames, boxes, cuts)


def labelled_clips(side: str, quick: bool) -> list[LabelledClip]:
    fm, wi = labelled_photos(side)
    # alternate the two sets, one shot per photo; sizes: (quick) 3 + 2 shots of 24 frames, (full) 7 + 6 of 36
    shots, n = ((3, 2), 24) if quick else ((7, 6), 36)
    if os.environ.get("FACEVEIL_BENCH_SHOTS"):  # smaller probes on a loaded machine: "720p,1080p,frames"
        a, b, n = (int(v) for v in os.environ["FACEVEIL_BENCH_SHOTS"].split(","))
        shots = (a, b)
    mixed = [p for pair in zip(fm, wi) for p in pair]
    clips = [make_labelled_clip(mixed[:shots[0]], (1280, 720), n, 0, "720p"),
             make_labelled_clip(mixed[shots[0]:shots[0] + shots[1]], (1920, 1080), n, 1, "1080p")]
    return clips


# running a setting in-process on decoded frames -----------------------------------------------------------------

class CachedDetector:
    """Full-frame detections cached per frame (every setting shares them); crops run for real."""

    def __init__(self, detect):
        self.detect, self.cache, self.current = detect, {}, None
        self.full_runs = self.crop_runs = 0
        self.crop_seconds = 0.0

    def __call__(self, img: np.ndarray):
        i, frame = self.current
        if img.shape == frame.shape:
            self.full_runs += 1
            if i not in self.cache:
                self.cache[i] = self.detect(img)
            return self.cache[i]
        self.crop_runs += 1
        t = time.perf_counter()
        try:
            return self.detect(img)
        finally:
            self.crop_seconds += time.perf_counter() - t


def run_frames(frames: list[np.ndarray], fps: float, anon, det: CachedDetector, options):
    """The video path's tracking loop over ``frames``; yields (index, input, anonymized output)."""
    from faceveil.io.video import VideoFrame
    from faceveil.video import tracked_frames

    def gen():
        for i, f in enumerate(frames):
            det.current = (i, f)
            yield VideoFrame(f, i, i, i / fps)

    for item in tracked_frames(gen(), det, options, fps):
        i = item.frame.index
        yield i, item.frame.rgb, anon.anonymize(item.frame.rgb, item.detections, anon.rng_for(f"{i}"))


def leaks_a(clip: LabelledClip, anon, det: CachedDetector, options) -> int:
    changed, leaked = synthetic_video("changed", "leaked")
    return sum(leaked(clip.boxes[i], changed(src, out)) for i, src, out in run_frames(clip.frames, clip.fps, anon,
                                                                                       det, options))


def face_frames(clip: LabelledClip) -> int:
    return sum(int((np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= 10).sum()) for b in clip.boxes)


def deface_frame(cf, f: np.ndarray) -> np.ndarray:
    from deface.deface import anonymize_frame

    dets, _ = cf(f, threshold=0.2)
    out = f.copy()
    anonymize_frame(dets, out, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                    replaceimg=None, mosaicsize=20)
    return out


# (b) shared clips against thorough --------------------------------------------------------------------------

def shared_frames(name: str, seconds: float) -> tuple[list[np.ndarray], float]:
    from faceveil.io.video import probe, read_frames

    fps = float(probe(VIDEOS / name).fps)
    out = []
    for f in read_frames(VIDEOS / name, allow_truncated=True):  # by count: some clips start at t > 0
        if len(out) >= round(seconds * fps):
            break
        out.append(f.rgb)
    return out, fps


def thorough_reference(name: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Per frame: the boxes the ``thorough`` preset finds at full resolution (cached on disk)."""
    import faceveil
    from faceveil.api import resolved_detector

    from faceveil.detect.presets import get_preset

    # the preset's values are in the key: a reference cached before they changed is not reused
    preset = json.dumps(get_preset("thorough"), sort_keys=True, default=str).encode()
    key = hashlib.sha256(b"".join(f.tobytes()[:: 997] for f in frames) + faceveil.__version__.encode()
                         + preset).hexdigest()[:16]
    path = CACHE / f"thorough-{Path(name).stem}-{len(frames)}-{key}.json"
    if path.is_file():
        return [np.asarray(b, np.float64).reshape(-1, 4) for b in json.loads(path.read_text())]
    det = resolved_detector(None, "thorough", {})
    out = [det.detect(f).xyxy.astype(np.float64) for f in frames]
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([b.tolist() for b in out]))
    return out


# speed ----------------------------------------------------------------------------------------------------

def codec_floor(clip: Path, frames: int, work: Path) -> float:
    from faceveil.io.video import EncodeOptions, VideoWriter, probe, read_frames
    from faceveil.video.threads import background

    info = probe(clip)
    t = time.perf_counter()
    with VideoWriter(work / "floor.mp4", info, EncodeOptions()) as wr:
        for f in background(read_frames(clip)):
            wr.write(f.rgb, f.pts, f.duration)  # as the video job writes them (its frame durations too)
    return frames / (time.perf_counter() - t)


def cli_run(clip: Path, extra: list[str], work: Path, tag: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    report = work / f"{tag}.json"
    wall, mem, cpu = run_timed([sys.executable, "-m", "faceveil", "anonymize", str(clip), "-q", "--overwrite",
                           "-o", str(work / tag), "--report", str(report)] + extra, env)
    files = json.loads(report.read_text())["files"]
    return {"wall": wall, "mem": mem, "cpu": cpu, "stages": files[0].get("stages") or {}, "frames": files[0]["frames"]}


# main -----------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes for 2 shared cores (sizes are printed)")
    ap.add_argument("--side", default="held_out", choices=["tune", "held_out"], help="photos for the (a) clips")
    ap.add_argument("--seconds", type=float, help="(b): first seconds of each shared clip (default 1, full 3)")
    ap.add_argument("--settings", help="comma list of setting numbers to run (default all)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--no-b", action="store_true", help="skip (b), the shared clips")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--dp", action="append", default=[], metavar="NAME=VALUE",
                    help="a detector parameter added to every setting's in-process runs (e.g. threads=4, to run "
                         "several benches side by side)")
    args = ap.parse_args()
    compile_bytecode(ROOT / "src")  # the CLI runs below import faceveil from the checkout's src/
    print(int8_line())
    seconds = args.seconds or (1.0 if args.quick else 3.0)

    import faceveil
    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.pipeline import Anonymizer
    from faceveil.registry import parse_assignments
    from faceveil.video.options import video_preset

    names = list(SETTINGS)
    if args.settings:
        names = [names[int(k)] for k in args.settings.split(",")]
    anons: dict[str, object] = {}
    extra_dp = parse_assignments(args.dp)

    def anon_for(n: str):
        """The setting's Anonymizer (its preset, else the video one, plus its detector parameters), one per
        distinct set."""
        preset = video_preset(None, preset_of(SETTINGS[n]))
        dp = {**detector_params(SETTINGS[n]), **extra_dp}
        key = json.dumps([preset, dp], sort_keys=True)
        if key not in anons:
            anons[key] = Anonymizer(preset=preset, detector_params=dp)
        return key, anons[key]
    clips = labelled_clips(args.side, args.quick)
    total_a = {c.name: face_frames(c) for c in clips}
    print(f"faceveil {faceveil.__version__}, video preset {VIDEO_PRESET!r}, {os.cpu_count()} CPUs; (a) {args.side} "
          f"photos: " + ", ".join(f"{c.name} {len(c.frames)} frames, {len(c.cuts)} shots, {total_a[c.name]} "
                                  f"labelled face-frames" for c in clips), flush=True)
    # "changed_b": the share of all pixels of the (b) frames the run changed (faces and background: the cost of
    # a lower cut or a longer hold, beside its leaks)
    rows: dict[str, dict] = {n: {"a": {}, "b": 0, "speed": {}, "changed_b": 0.0} for n in names + ["deface"]}
    pixels_b = 0
    dets = {}
    for n in names:
        key, an = anon_for(n)
        for c in clips:
            det = dets.setdefault((c.name, key), CachedDetector(an.detector.detect))
            rows[n]["a"][c.name] = leaks_a(c, an, det, video_options(SETTINGS[n]))
        print(f"(a) {n}: {rows[n]['a']}", flush=True)
    try:
        from deface.centerface import CenterFace

        changed, leaked = synthetic_video("changed", "leaked")
        for c in clips:
            cf = CenterFace()
            rows["deface"]["a"][c.name] = sum(leaked(c.boxes[i], changed(f, deface_frame(cf, f)))
                                              for i, f in enumerate(c.frames))
        print(f"(a) deface: {rows['deface']['a']}", flush=True)
    except ImportError as exc:
        print(f"deface not importable ({exc}); skipped", file=sys.stderr)

    total_b = 0
    if not args.no_b:
        changed, leaked = synthetic_video("changed", "leaked")
        from deface.centerface import CenterFace

        for name in SHARED_CLIPS:
            frames, fps = shared_frames(name, seconds)
            ref = thorough_reference(name, frames)
            total_b += sum(int((np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= 10).sum()) for b in ref)
            dets = {}
            for n in names:
                key, an = anon_for(n)
                det = dets.setdefault(key, CachedDetector(an.detector.detect))
                for i, src, out in run_frames(frames, fps, an, det, video_options(SETTINGS[n])):
                    ch = changed(src, out)
                    rows[n]["b"] += leaked(ref[i], ch)
                    rows[n]["changed_b"] += float(ch.sum())
            cf = CenterFace()
            for i, f in enumerate(frames):
                ch = changed(f, deface_frame(cf, f))
                rows["deface"]["b"] += leaked(ref[i], ch)
                rows["deface"]["changed_b"] += float(ch.sum())
            pixels_b += sum(f.shape[0] * f.shape[1] for f in frames)
            print(f"(b) {name}: {len(frames)} frames, {total_b} reference face-frames so far; running totals: "
                  + ", ".join(f"{n}: {rows[n]['b']}" for n in rows), flush=True)

    floors = {}
    if not args.no_speed:
        with tempfile.TemporaryDirectory(prefix="faceveil-bench-") as tmp:
            work = Path(tmp)
            write_clip, = synthetic_video("write_clip")
            for c in clips:
                path = work / f"{c.name}.mp4"
                write_clip(path, c.frames, c.fps, audio=False, crf=16)
                floors[c.name] = codec_floor(path, len(c.frames), work)
                for k, n in enumerate(names):
                    r = cli_run(path, SETTINGS[n], work, f"s{k}-{c.name}")
                    rows[n]["speed"][c.name] = {"fps": r["frames"] / r["wall"], "mem": r["mem"], "stages": r["stages"],
                                                "cpu_ms": 1000 * r["cpu"] / r["frames"],
                                                "frames": r["frames"]}
                    print(f"speed {c.name} {n}: {rows[n]['speed'][c.name]}", flush=True)
                if DEFACE.exists():
                    wall, mem, cpu = run_timed([str(DEFACE), str(path), "-o", str(work / f"deface-{c.name}.mp4")])
                    rows["deface"]["speed"][c.name] = {"fps": len(c.frames) / wall, "mem": mem, "stages": {},
                                                       "cpu_ms": 1000 * cpu / len(c.frames)}

    # the table
    print(f"\n### Video: {args.side} labelled clips (a) " + ", ".join(
        f"{c.name}: {len(c.frames)} frames, {total_a[c.name]} face-frames" for c in clips)
          + (f"; (b) shared clips, first {seconds:g} s each, {total_b} thorough face-frames" if not args.no_b else ""))
    res = [c.name for c in clips]
    head = "| setting | " + " | ".join(f"fps {r} | x deface {r} | CPU ms/frame {r} | x deface CPU {r}" for r in res) + \
           " | leaked (a) 720p+1080p | leaked (b) | changed % (b) | peak MiB 1080p | busy s 1080p: decode / detect / anonymize / " \
           "encode | overlap floor fps 1080p | serial floor fps 1080p |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for n, row in rows.items():
        cells = []
        for r in res:
            sp = row["speed"].get(r)
            dsp = rows["deface"]["speed"].get(r)
            cells += [f"{sp['fps']:.2f}" if sp else "", f"{sp['fps'] / dsp['fps']:.2f}" if sp and dsp else "",
                      f"{sp['cpu_ms']:.0f}" if sp else "", f"{dsp['cpu_ms'] / sp['cpu_ms']:.2f}" if sp and dsp else ""]
        a = sum(row["a"].values()) if row["a"] else ""
        sp = row["speed"].get(res[-1])
        st = sp["stages"] if sp else {}
        busy = " / ".join(f"{st.get(k, 0):.1f}" for k in ("decode", "detect", "anonymize", "encode")) if st else ""
        # the fps if the stages overlapped perfectly: frames / the busiest stage (decode and encode run in
        # their own threads; detect and anonymize share the job's thread)
        floor = serial = ""
        if st:
            floor = f"{sp['frames'] / max(st['decode'], st['detect'] + st['anonymize'], st['encode'], 1e-9):.2f}"
            # decode + the schedule's detector work + anonymize + encode one after another (no overlap)
            serial = f"{sp['frames'] / max(sum(st.get(k, 0) for k in ('decode', 'detect', 'anonymize', 'encode')), 1e-9):.2f}"
        chg = f"{100 * row['changed_b'] / pixels_b:.1f}" if pixels_b else ""
        print(f"| {n} | " + " | ".join(cells) + f" | {a} | {'' if args.no_b else row['b']} | {chg} | "
              f"{sp['mem']:.0f} | {busy} | {floor} | {serial} |" if sp else f"| {n} | " + " | ".join(cells) +
              f" | {a} | {'' if args.no_b else row['b']} | {chg} | | | | |")
    if floors:
        print("| codec floor: decode + encode (x264 veryfast crf 20), threaded | "
              + " | ".join(f"{floors[r]:.2f} | | | " for r in res) + " | | | | | | |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "floors": floors, "face_frames_a": total_a,
                                               "face_frames_b": total_b, "side": args.side, "quick": args.quick,
                                               "seconds_b": seconds}, indent=1, default=float))


if __name__ == "__main__":
    main()
