#!/usr/bin/env python
"""The fault matrix of issue 17 ("never leak, never lose"), run against the real CLI.

Each case builds its inputs in a temporary folder from real shared photos and clips
(../shared/data), injects one fault (a corrupt or unusual input, an interrupt, a
collision, a full or read-only disk, a hostile request to the review server), runs
``python -m faceveil ...`` as a subprocess and checks the promise by code:

  hidden    every output file decodes completely and every reference face in it is
            hidden (the harness runs ``-m blackout -p color=128``: >= 80 % of the
            inner face box is grey); reference faces are the labelled boxes (datasets,
            the panorama) or what the run's own preset finds on the clean input
  no temp   no partial or temporary file (``*.tmp*``) left after the run that follows
  message   the exit code is the allowed one, an error is one line
            ``faceveil: error: <file>: <cause>`` naming the file, no traceback
  no procs  no process of the run is left (same session id, or the case folder in
            its command line), a few seconds after it ended
  resume    an interrupted run, run again, ends with the same bytes as an
            uninterrupted one
  inputs    the inputs are unchanged (hash before and after)

Where the issue allows two outcomes (refuse with a one-line reason, or anonymize
everything) either is accepted, and the row says which one was seen.

  python bench/fault_matrix.py                 # the full matrix (~10-15 min on 2 cores)
  python bench/fault_matrix.py --quick         # the subset tests/test_faults.py runs
  python bench/fault_matrix.py --only pano     # cases whose name contains "pano"
  python bench/fault_matrix.py --write-docs    # also rewrite the table in docs/faults.md

Full-disk and read-only cases mount small tmpfs folders (root only); they are
skipped with the reason where mounting is not allowed. Nothing under src/ imports
this file; tests/test_faults.py does.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SRC = Path(os.environ.get("FACEVEIL_SRC", ROOT / "src"))  # the faceveil under test (--src)
PY = sys.executable
BLACKOUT = ["-m", "blackout", "-p", "color=128"]
GREY_TOL = 24  # a pixel is "hidden" when every channel is within this of 128 (JPEG / video coding noise)
HIDDEN_MIN = 0.8  # share of a face's inner box that must be hidden
PHOTO = "maksssksksss116.jpg"  # facemask: 400x225, five clear faces (scores >= 0.83)
PHOTO2 = "maksssksksss123.jpg"  # facemask: 400x301, two large faces
CLIP = "talking_head_speech_844.mp4"


# Which numbered defect of issue 17 a case shows while it does not hold ("new": found by this matrix,
# not in the issue); shown in the table's detail column.
DEFECTS = {
    "jpeg/panorama 10000x200, ten 36x48 faces": "17.1",
    "storage/full disk: jpeg, 25 % of the output's size free": "17.2",
    "storage/full disk: jpeg, 60 % of the output's size free": "17.2",
    "storage/full disk: jpeg, 95 % of the output's size free": "17.2",
    "storage/full disk: wider, 30 % of the output's size free": "17.2 + new: ENOSPC traceback",
    "storage/full disk: wider, 80 % of the output's size free": "17.2 + new: ENOSPC traceback",
    "wider/EXIF orientation 6, labels in stored pixels": "17.3",
    "wider/label outside the image": "17.3",
    "yolo/label outside the image": "17.3",
    "review/symlinks swapped in after start-up": "17.4",
    "collision/two folders holding x.jpg into one OUT": "17.6",
    "collision/two file arguments named x.jpg": "17.6",
    "collision/existing file in OUT (no policy)": "17.6",
    "collision/existing file in OUT, --overwrite": "17.6",
    "collision/existing file in OUT, --skip-existing": "17.6",
    "collision/single input, -o name.jpg": "17.6",
    "mp4/moov at the start, tail cut": "17.7",
    "mkv/truncated 90%": "17.7",
    "mkv/truncated 50%": "17.7",
    "mp4/truncated 90%": "17.7",
    "png/16-bit grayscale": "17.8",
    "webp/animated (3 frames)": "17.8",
    "tiff/multi-page (3 pages)": "17.8",
    "review/dataset label file named review.json": "17.9",
    "jpeg/SIGTERM during a batch run (--jobs 2), then again": "17.10 + 17.11",
    "mp4/SIGTERM during a video run, then again": "17.10",
    "wider/SIGTERM during a dataset run (--jobs 2), then again": "17.10 + 17.11",
    "mp4/SIGKILL during a video run, then again": "17.10",
    "jpeg/SIGKILL during a batch run (--jobs 2), then again": "17.11",
    "wider/SIGKILL during a dataset run (--jobs 2), then again": "17.11",
    "wider/SIGKILL during a dataset run (--backend ray --jobs 2), then again": "17.11",
    "jpeg/SIGINT during start-up (0.3 s)": "new: Ctrl-C during imports",
    "wider/missing image": "new: warning, not error",
    "yolo/missing image": "new: warning, not error",
    "yolo/zero-byte image": "new: one bad image stops a YOLO run",
    "review/start on a dataset output made with the default preset": "new: tuple params in reports",
    "review/--from-report of an anonymize run with the default preset": "new: tuple params in reports",
}


class Skip(Exception):
    """The case cannot run here (no shared data, no mount, ...): reported, not counted as held."""


# ---------------------------------------------------------------------------
# cases and rows

@dataclass
class Row:
    name: str
    kind: str
    fault: str
    expected: str
    held: bool | None  # None: skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Case:
    name: str
    kind: str
    fault: str
    expected: str
    fn: Callable
    quick: bool


CASES: dict[str, Case] = {}


def case(kind: str, fault: str, expected: str, quick: bool = False):
    def deco(fn):
        name = f"{kind}/{fault}"
        assert name not in CASES, name
        CASES[name] = Case(name, kind, fault, expected, fn, quick)
        return fn
    return deco


@dataclass
class Ctx:
    """One case's folder, seeded random source and the problems found so far."""

    tmp: Path
    rng: random.Random
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    watch: list[tuple[int, float]] = field(default_factory=list)  # (pid, create time) of a run's descendants

    def fail(self, msg: str) -> None:
        self.problems.append(msg)

    def check(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.fail(msg)
        return bool(cond)

    def note(self, msg: str) -> None:
        self.notes.append(msg)


def run_case(name: str, tmp: Path, seed: int = 0) -> Row:
    c = CASES[name]
    ctx = Ctx(Path(tmp), random.Random(f"{seed}:{name}"))
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        c.fn(ctx)
    except Skip as exc:
        return Row(name, c.kind, c.fault, c.expected, None, f"skipped: {exc}", time.monotonic() - t0)
    except Exception as exc:  # a harness error is a failed row, with the reason
        ctx.fail(f"harness error: {type(exc).__name__}: {exc}")
    finally:
        _cleanup_mounts(ctx.tmp)
    check_no_procs(ctx)
    detail = "; ".join(ctx.problems) if ctx.problems else "; ".join(ctx.notes)
    detail = detail.replace(str(ctx.tmp) + "/", "")  # case-relative paths: the table stays readable
    if ctx.problems and name in DEFECTS:
        detail = f"[{DEFECTS[name]}] {detail}"
    return Row(name, c.kind, c.fault, c.expected, not ctx.problems, detail[:400], time.monotonic() - t0)


# ---------------------------------------------------------------------------
# running the CLI

@dataclass
class Res:
    rc: int
    out: str
    err: str
    seconds: float
    pid: int = 0

    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("faceveil: error:")]


def _env() -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    env.pop("FACEVEIL_DEBUG", None)
    return env


def cli(ctx: Ctx, *args, timeout: float = 300, interrupt: tuple[int, Callable[[], bool], float] | None = None,
        after_start: Callable[[subprocess.Popen], None] | None = None) -> Res:
    """Run ``faceveil ARGS``; with ``interrupt=(signal, ready, extra_s)`` send the signal once ``ready()``
    holds (polled) plus ``extra_s`` seconds. A run still alive 30 s after a SIGINT/SIGTERM is killed and
    counted as a problem."""
    cmd = [PY, "-m", "faceveil", *map(str, args)]
    t0 = time.monotonic()
    # stdout/stderr go to files, not pipes: a worker left behind by a killed run would hold a pipe open
    # and make the harness wait forever (the left-over process itself is reported by check_no_procs).
    fd, log = tempfile.mkstemp(prefix="faceveil-run-", suffix=".log")
    os.close(fd)
    with open(log + ".out", "wb") as fo, open(log + ".err", "wb") as fe:
        proc = subprocess.Popen(cmd, cwd=ctx.tmp, env=_env(), stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    ctx.sessions.append(proc.pid)
    if after_start:
        after_start(proc)
    if interrupt:
        sig, ready, extra = interrupt
        deadline = t0 + timeout
        while proc.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(extra)
        if proc.poll() is None:
            watch_descendants(ctx, proc.pid)  # whatever it started must go with it (Ray's too)
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                ctx.fail(f"still running 30 s after {signal.Signals(sig).name}")
        else:
            ctx.note("the run ended before the signal")
    else:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            ctx.fail(f"timed out after {timeout} s")
    out, err = Path(log + ".out").read_bytes(), Path(log + ".err").read_bytes()
    for p in (log, log + ".out", log + ".err"):
        with contextlib.suppress(OSError):
            os.unlink(p)
    return Res(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               time.monotonic() - t0, proc.pid)


_HELP: dict[str, str] = {}


def has_option(command: str, option: str) -> bool:
    if command not in _HELP:
        r = subprocess.run([PY, "-m", "faceveil", *command.split(), "--help"], env=_env(), capture_output=True,
                           text=True)
        _HELP[command] = r.stdout
    return option in _HELP[command]


# ---------------------------------------------------------------------------
# invariants

def check_message(ctx: Ctx, res: Res, rcs: set[int], names: tuple[str, ...] = (), what: str = "run") -> bool:
    """Allowed exit code; no traceback; on an error, one line naming the file (any of ``names``) and a cause."""
    ok = True
    if "Traceback" in res.err or "Traceback" in res.out:
        ctx.fail(f"{what}: traceback on stderr")
        ok = False
    if res.rc not in rcs:
        last = (res.err.strip().splitlines() or [""])[-1][:160]
        ctx.fail(f"{what}: exit {res.rc}, expected {sorted(rcs)} ({last!r})")
        ok = False
    if res.rc not in (0, 130, 143) and res.rc > 0:
        lines = res.error_lines()
        if not lines:
            ctx.fail(f"{what}: exit {res.rc} without a 'faceveil: error:' line")
            ok = False
        elif names and not any(n in ln for ln in lines for n in names):
            ctx.fail(f"{what}: error does not name {names[0]!r}: {lines[0][:160]!r}")
            ok = False
        elif any(len(ln.split(":", 3)) < 4 or not ln.split(":", 3)[3].strip() for ln in lines):
            ctx.fail(f"{what}: error line without a cause: {lines[0][:160]!r}")
            ok = False
    return ok


def temp_files(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]


def check_no_temp(ctx: Ctx, root: Path, what: str = "") -> None:
    left = temp_files(root)
    ctx.check(not left, f"temporary files left{what}: {[p.name for p in left][:3]}")


def watch_descendants(ctx: Ctx, pid: int) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        for c in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                ctx.watch.append((c.pid, c.create_time()))


def _procs_of(ctx: Ctx) -> list:
    import psutil

    found = {}
    for pid, created in ctx.watch:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                found[pid] = p

    tag = str(ctx.tmp)
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.pid == me or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            sid = os.getsid(p.pid)
        except (ProcessLookupError, PermissionError):
            continue
        if sid in ctx.sessions or any(tag in a for a in (p.info["cmdline"] or [])):
            found[p.pid] = p
    return list(found.values())


def check_no_procs(ctx: Ctx, grace: float = 5.0, what: str = "") -> None:
    """No process of the case's runs is left; stragglers are reported, then killed (they are ours)."""
    deadline = time.monotonic() + grace
    left = _procs_of(ctx)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _procs_of(ctx)
    if left:
        names = set()
        for p in left:
            with contextlib.suppress(Exception):
                names.add(p.name())
        names = sorted(names)
        ctx.fail(f"{len(left)} process(es) of the run left running{what} ({', '.join(names)[:80]})")
        for p in left:
            with contextlib.suppress(Exception):
                os.kill(p.pid, signal.SIGKILL)


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def check_inputs(ctx: Ctx, root: Path, before: dict[str, str]) -> None:
    ctx.check(digest(root) == before, f"inputs under {root.name}/ were modified")


def hidden_share(rgb: np.ndarray, box) -> float:
    """Share of the inner 80 % of ``box`` (x1, y1, x2, y2) that is blackout grey."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
    h, w = rgb.shape[:2]
    xa, ya = max(0, int(round(x1 + dx))), max(0, int(round(y1 + dy)))
    xb, yb = min(w, int(round(x2 - dx))), min(h, int(round(y2 - dy)))
    if xb <= xa or yb <= ya:
        return 1.0
    patch = rgb[ya:yb, xa:xb].astype(int)
    if patch.ndim == 2:
        patch = patch[..., None]
    return float((np.abs(patch - 128) <= GREY_TOL).all(axis=-1).mean())


def check_hidden(ctx: Ctx, rgb: np.ndarray, boxes, what: str) -> bool:
    bad = [(hidden_share(rgb, b), b) for b in boxes]
    bad = [(s, b) for s, b in bad if s < HIDDEN_MIN]
    if bad:
        s, b = bad[0]
        ctx.fail(f"{what}: {len(bad)} of {len(boxes)} faces visible (one at {[int(v) for v in b]} "
                 f"{100 * s:.0f} % hidden)")
        return False
    return True


def decode_image(path: Path) -> tuple[list[np.ndarray], Image.Image]:
    """Every frame/page, fully decoded (a truncated file raises), upright as displayed, RGB."""
    im = Image.open(path)
    frames = []
    for i in range(getattr(im, "n_frames", 1)):
        im.seek(i)
        im.load()
        page = ImageOps.exif_transpose(im.copy())
        if page.mode.startswith("I;16") or page.mode == "I":
            # Pillow's I;16 -> RGB conversion clips at 255: keep the top 8 bits instead
            g = (np.asarray(page).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            frames.append(np.dstack([g, g, g]))
        else:
            frames.append(np.asarray(page.convert("RGB")))
    return frames, im


def image_output_ok(ctx: Ctx, out: Path, ref_frames: list[tuple[np.ndarray, np.ndarray]], what: str) -> bool:
    """``out`` decodes completely, has a frame for each reference frame, same size, faces hidden."""
    try:
        frames, _ = decode_image(out)
    except Exception as exc:
        ctx.fail(f"{what}: output does not decode ({type(exc).__name__}: {str(exc)[:80]})")
        return False
    if len(frames) != len(ref_frames):
        ctx.fail(f"{what}: {len(frames)} frame(s) written of {len(ref_frames)}")
        return False
    for i, (frame, (ref_rgb, boxes)) in enumerate(zip(frames, ref_frames)):
        if frame.shape != ref_rgb.shape:
            ctx.fail(f"{what}: output is {frame.shape[1]}x{frame.shape[0]}, input {ref_rgb.shape[1]}x{ref_rgb.shape[0]}")
            return False
        if not check_hidden(ctx, frame, boxes, what + (f" frame {i}" if len(frames) > 1 else "")):
            return False
    return True


def _use_src() -> None:
    from common import use_checkout

    use_checkout(SRC)


def labels_api():
    """The label readers and writers: faceveil.io.labels (after issue 19), else the older faceveil.io.datasets."""
    _use_src()
    try:
        import faceveil.io.labels as api
    except ImportError:
        import faceveil.io.datasets as api
    return api


# ---------------------------------------------------------------------------
# reference faces: what the run's own preset finds on the clean input (clear faces only)

_DETECTORS: dict[str, object] = {}


def ref_boxes(rgb: np.ndarray, preset: str = "balanced", min_score: float = 0.5, min_side: float = 14) -> np.ndarray:
    _use_src()
    from faceveil.detect.presets import resolve
    from faceveil.pipeline import Anonymizer, AnonymizerConfig

    if preset not in _DETECTORS:
        name, params, region = resolve(preset)
        _DETECTORS[preset] = Anonymizer.from_config(AnonymizerConfig(detector=name, detector_params=params,
                                                                     region=region))
    d = _DETECTORS[preset].detect(np.ascontiguousarray(rgb))
    xyxy = np.asarray(d.xyxy, dtype=float).reshape(-1, 4)
    side = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    keep = (np.asarray(d.score) >= min_score) & (side >= min_side)
    return xyxy[keep]


def ref_of_file(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    frames, _ = decode_image(path)
    return [(f, ref_boxes(f)) for f in frames]


# ---------------------------------------------------------------------------
# inputs built from shared data

def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        raise Skip(f"{p} not found (needs ../shared/data)")
    return p


def photo(name: str = PHOTO) -> np.ndarray:
    return np.asarray(Image.open(shared("facemask", "images", name)).convert("RGB"))


def save(rgb_or_img, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgb_or_img if isinstance(rgb_or_img, Image.Image) else Image.fromarray(rgb_or_img)
    fmt = fmt or {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF"}[path.suffix]
    if fmt == "JPEG":
        kw.setdefault("quality", 92)
    if fmt == "WEBP":
        kw.setdefault("quality", 90)
    img.save(path, format=fmt, **kw)
    return path


_CLIP_FRAMES: dict[tuple, list[np.ndarray]] = {}


def clip_frames(n: int = 25, size: int = 256) -> list[np.ndarray]:
    """The first n frames of the talking-head clip, resized to size x size (one large real face)."""
    import av

    key = (n, size)
    if key not in _CLIP_FRAMES:
        frames = []
        with av.open(str(shared("videos", CLIP))) as c:
            for f in c.decode(video=0):
                frames.append(np.asarray(f.to_image().resize((size, size), Image.BILINEAR)))
                if len(frames) >= n:
                    break
        _CLIP_FRAMES[key] = frames
    return _CLIP_FRAMES[key]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "libx264",
                pix_fmt: str = "yuv420p", rotation: int = 0, pts_ms: list[int] | None = None,
                container_options: dict | None = None) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as c:
        v = c.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if rotation:
            v.set_display_rotation(rotation)
        if pts_ms is not None:
            v.codec_context.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            else:
                f.pts, f.time_base = i, Fraction(1, fps)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return path


def write_mjpeg_sizes(path: Path, frames: list[np.ndarray]) -> Path:
    """An MKV of JPEG frames whose size changes mid-stream (each MJPEG frame is a self-contained JPEG)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        v = c.add_stream("mjpeg", rate=25)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuvj420p"
        for i, rgb in enumerate(frames):
            b = io.BytesIO()
            Image.fromarray(rgb).save(b, "JPEG", quality=90)
            pk = av.Packet(b.getvalue())
            pk.pts = pk.dts = i * 40
            pk.time_base = Fraction(1, 1000)
            pk.stream = v
            pk.is_keyframe = True
            c.mux(pk)
    return path


def write_audio_only(path: Path) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=44100)
        for i in range(30):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 44100, i * 1024
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    return path


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame, upright as displayed; raises on any decode error."""
    import av

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            rgb = f.to_ndarray(format="rgb24")
            k = round((f.rotation or 0) / 90) % 4
            frames.append(np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
    return frames


def video_ref(path: Path, every: int = 4) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(index, frame, clear faces by the video preset) for every ``every``-th decodable frame."""
    frames = []
    try:
        frames = decode_video(path)
    except Exception:  # a broken file or no video stream at all: nothing to compare
        pass
    return [(i, f, ref_boxes(f, "fast", 0.6, 20)) for i, f in enumerate(frames) if i % every == 0]


def video_output_ok(ctx: Ctx, out: Path, ref: list[tuple[int, np.ndarray, np.ndarray]], n_in: int, what: str) -> bool:
    import av

    try:
        frames = decode_video(out)
    except (av.FFmpegError, OSError) as exc:
        ctx.fail(f"{what}: output does not decode ({str(exc)[:80]})")
        return False
    if len(frames) != n_in:
        ctx.fail(f"{what}: output has {len(frames)} frames, the input {n_in}")
        return False
    for i, rgb, boxes in ref:
        f = frames[i]
        if f.shape[:2] != rgb.shape[:2]:
            sy, sx = f.shape[0] / rgb.shape[0], f.shape[1] / rgb.shape[1]
            boxes = boxes * np.array([sx, sy, sx, sy])
        if not check_hidden(ctx, f, boxes, f"{what} frame {i}"):
            return False
    return True


# ---------------------------------------------------------------------------
# mounts (full disk, read-only OUT)

_MOUNTS: dict[str, list[Path]] = {}


def mount_tmpfs(ctx: Ctx, where: Path, size: str = "1m", ro: bool = False) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        raise Skip(f"cannot mount a tmpfs ({(r.stderr or r.stdout).strip()[:80]})")
    _MOUNTS.setdefault(str(ctx.tmp), []).append(where)
    return where


def _cleanup_mounts(tmp: Path) -> None:
    for where in reversed(_MOUNTS.pop(str(tmp), [])):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path, leave: int) -> int:
    """Fill the file system of ``where`` until about ``leave`` bytes are free; returns the free bytes."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free > leave:
        with open(where / "filler.bin", "wb") as f:
            f.write(b"\0" * (free - leave))
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


# ===========================================================================
# the cases
# ===========================================================================

IMG_KINDS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


def _clean_image(ctx: Ctx, kind: str, name: str = "face") -> Path:
    return save(photo(), ctx.tmp / "in" / f"{name}{IMG_KINDS[kind]}")


def _anon_one(ctx: Ctx, src: Path, *extra, **kw) -> tuple[Res, Path]:
    out = ctx.tmp / "out"
    res = cli(ctx, "anonymize", src, "-o", out, "-q", *BLACKOUT, *extra, **kw)
    return res, out / src.name


def _expect_refused_or_hidden(ctx: Ctx, src: Path, ref, refuse_only: bool = False) -> None:
    """Either a one-line refusal (exit 1) and no output, or exit 0 and a fully anonymized output."""
    before = digest(src.parent)
    res, dst = _anon_one(ctx, src)
    check_inputs(ctx, src.parent, before)
    check_no_temp(ctx, ctx.tmp / "out")
    if res.rc == 0 and not refuse_only:
        if ctx.check(dst.exists(), "exit 0 but no output"):
            if ref is None:
                ctx.fail("exit 0 for an input that does not decode")
            elif image_output_ok(ctx, dst, ref, dst.name):
                ctx.note("anonymized")
    else:
        check_message(ctx, res, {1}, (src.name,))
        ctx.check(not dst.exists(), "refused but an output was written")
        if res.error_lines():
            ctx.note("refused: " + res.error_lines()[0][:120])


def _decodable_ref(path: Path):
    try:
        return ref_of_file(path)
    except Exception:
        return None


def corrupt_file(src: Path, fault: str) -> None:
    """Damage ``src`` in place: "zero bytes", "truncated N%" (keep the first N %) or "flipped byte" (mid-file)."""
    data = src.read_bytes()
    if fault == "zero bytes":
        src.write_bytes(b"")
    elif fault.startswith("truncated"):
        pct = int(fault.split()[-1].rstrip("%"))
        src.write_bytes(data[: len(data) * pct // 100])
    elif fault == "flipped byte":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        src.write_bytes(bytes(b))


def _make_corrupt(kind: str, fault: str):
    def fn(ctx: Ctx) -> None:
        src = _clean_image(ctx, kind)
        corrupt_file(src, fault)
        # a truncated file is never a success; a flipped byte may still decode (then it must be anonymized)
        refuse_only = fault != "flipped byte"
        _expect_refused_or_hidden(ctx, src, _decodable_ref(src), refuse_only=refuse_only)
    return fn


for _k in IMG_KINDS:
    for _f in ["zero bytes", "truncated 10%", "truncated 50%", "truncated 90%", "flipped byte"]:
        case(_k, _f, "exit 1, one line naming the file, no output" if _f != "flipped byte" else
             "exit 1 and no output, or every decoded face hidden",
             quick=(_k == "jpeg" and _f in ("zero bytes", "truncated 90%")) or (_k == "png" and _f == "truncated 50%"),
             )(_make_corrupt(_k, _f))


def _make_wrong_ext(kind: str):
    def fn(ctx: Ctx) -> None:
        other = {"jpeg": ".png", "png": ".webp", "webp": ".jpg"}[kind]
        real = _clean_image(ctx, kind)
        src = real.with_name("face" + other)
        real.rename(src)
        _expect_refused_or_hidden(ctx, src, _decodable_ref(src))
    return fn


for _k in IMG_KINDS:
    case(_k, "wrong extension", "every face hidden (content sniffed), or a one-line refusal")(_make_wrong_ext(_k))


def _patch_png_size(data: bytes, w: int, h: int) -> bytes:
    import struct
    import zlib

    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    new = b"IHDR" + struct.pack(">II", w, h) + ihdr[12:]
    return data[:8] + struct.pack(">I", 13) + new + struct.pack(">I", zlib.crc32(new)) + data[33:]


def _patch_jpeg_size(data: bytes, w: int, h: int) -> bytes:
    import struct

    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[:i + 5] + struct.pack(">HH", h, w) + data[i + 9:]
        i += 2 + length
    raise ValueError("no SOF marker")


def _make_bomb(kind: str):
    def fn(ctx: Ctx) -> None:
        src = _clean_image(ctx, kind)
        patch = _patch_png_size if kind == "png" else _patch_jpeg_size
        src.write_bytes(patch(src.read_bytes(), 60000, 60000))
        _expect_refused_or_hidden(ctx, src, None, refuse_only=True)
    return fn


for _k in ("jpeg", "png"):
    case(_k, "decompression bomb (60000x60000 declared)", "exit 1, one line naming the file, no output",
         quick=_k == "png")(_make_bomb(_k))


def _mode_case(kind: str, what: str):
    def fn(ctx: Ctx) -> None:
        rgb = photo()
        d = ctx.tmp / "in"
        ext = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif"}[kind]
        src = d / f"face{ext}"
        extra_check = None
        if what == "RGBA":
            a = np.full(rgb.shape[:2], 255, np.uint8)
            a[:20] = 0
            save(Image.fromarray(np.dstack([rgb, a]), "RGBA"), src)
        elif what == "palette":
            save(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=256), src)
        elif what == "CMYK":
            save(Image.fromarray(rgb).convert("CMYK"), src)
        elif what == "grayscale":
            save(Image.fromarray(rgb).convert("L"), src)
        elif what == "16-bit grayscale":
            g16 = (np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257)
            save(Image.fromarray(g16), src)

            def extra_check(out: Path) -> None:
                im = Image.open(out)
                ctx.check(im.mode in ("I;16", "I;16B", "I", "I;16L"), f"16-bit input written as {im.mode}")
        elif what in ("animated", "multi-page"):
            frames = [Image.fromarray(photo(n)) for n in (PHOTO, PHOTO, PHOTO)]
            frames[1] = Image.fromarray(np.ascontiguousarray(np.fliplr(rgb)))
            frames[2] = Image.fromarray(photo(PHOTO)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).transpose(
                Image.Transpose.FLIP_LEFT_RIGHT)
            src.parent.mkdir(parents=True, exist_ok=True)
            kw = {"duration": 100, "loop": 0} if kind == "webp" else {}
            frames[0].save(src, save_all=True, append_images=frames[1:], **kw)
        ref = ref_of_file(src) if what != "16-bit grayscale" else \
            [(np.asarray(Image.fromarray((g16 // 257).astype(np.uint8)).convert("RGB")),
              ref_boxes(np.asarray(Image.fromarray((g16 // 257).astype(np.uint8)).convert("RGB"))))]
        before = digest(d)
        res, dst = _anon_one(ctx, src)
        check_inputs(ctx, d, before)
        check_no_temp(ctx, ctx.tmp / "out")
        if res.rc == 0:
            if ctx.check(dst.exists(), "exit 0 but no output") and image_output_ok(ctx, dst, ref, dst.name):
                if extra_check:
                    extra_check(dst)
                ctx.note(f"anonymized ({sum(len(b) for _, b in ref)} faces)")
        else:
            check_message(ctx, res, {1}, (src.name,))
            ctx.check(not dst.exists(), "refused but an output was written")
            ctx.note("refused: " + (res.error_lines() or [""])[0][:120])
    return fn


case("png", "RGBA", "every face hidden, alpha kept")(_mode_case("png", "RGBA"))
case("png", "palette", "every face hidden")(_mode_case("png", "palette"))
case("png", "16-bit grayscale", "every face hidden at 16 bits, or a one-line refusal",
     quick=True)(_mode_case("png", "16-bit grayscale"))
case("jpeg", "CMYK", "every face hidden")(_mode_case("jpeg", "CMYK"))
case("jpeg", "grayscale", "every face hidden")(_mode_case("jpeg", "grayscale"))
case("webp", "RGBA", "every face hidden")(_mode_case("webp", "RGBA"))
case("webp", "animated (3 frames)", "every frame anonymized, or a one-line refusal",
     quick=True)(_mode_case("webp", "animated"))
case("tiff", "multi-page (3 pages)", "every page anonymized, or a one-line refusal")(_mode_case("tiff", "multi-page"))

# EXIF orientation o: the stored pixels are the upright photo under the inverse of o's transform
_INVERSE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def _exif_case(o: int):
    def fn(ctx: Ctx) -> None:
        up = Image.fromarray(photo(PHOTO2))
        stored = up.transpose(_INVERSE[o]) if _INVERSE[o] is not None else up
        ex = Image.Exif()
        ex[0x0112] = o
        src = save(stored, ctx.tmp / "in" / f"exif{o}.jpg", exif=ex.tobytes())
        ref = ref_of_file(src)
        ctx.check(ref[0][0].shape[:2] == np.asarray(up).shape[:2], "harness: orientation not applied on decode")
        before = digest(src.parent)
        res, dst = _anon_one(ctx, src)
        check_inputs(ctx, src.parent, before)
        if check_message(ctx, res, {0}, (src.name,)) and image_output_ok(ctx, dst, ref, dst.name):
            ctx.note(f"{len(ref[0][1])} faces hidden as displayed")
    return fn


for _o in range(1, 9):
    case("jpeg", f"EXIF orientation {_o}", "every face hidden as displayed", quick=_o == 6)(_exif_case(_o))


@case("jpeg", "panorama 10000x200, ten 36x48 faces", "all ten faces hidden", quick=True)
def _pano(ctx: Ctx) -> None:
    lfw = shared("lfw")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:10]
    canvas = np.full((200, 10000, 3), 90, np.uint8)
    canvas[:, :, 1] = 110
    boxes = []
    for i, person in enumerate(people):
        face = Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB")
        tile = np.asarray(face.resize((100, 100), Image.BILINEAR))  # LFW's face ~ 100x130 of 250: ~36x48 here
        x0, y0 = 1000 * i + 450, 50
        canvas[y0:y0 + 100, x0:x0 + 100] = tile
        crop = canvas[:, 1000 * i:1000 * (i + 1)]
        b = ref_boxes(crop, min_score=0.3, min_side=10)
        if len(b):
            boxes.append(b[0] + np.array([1000 * i, 0, 1000 * i, 0]))
    if len(boxes) < 8:
        raise Skip(f"only {len(boxes)} of 10 pasted faces found on their 1000x200 crops")
    src = save(canvas, ctx.tmp / "in" / "pano.jpg", quality=95)
    res, dst = _anon_one(ctx, src)
    if check_message(ctx, res, {0}, ("pano.jpg",)):
        frames, _ = decode_image(dst)
        if check_hidden(ctx, frames[0], boxes, "pano.jpg"):
            ctx.note(f"{len(boxes)} faces hidden")


def _tiny(size: int):
    def fn(ctx: Ctx) -> None:
        rgb = np.asarray(Image.fromarray(photo()).resize((size, size)))
        src = save(rgb, ctx.tmp / "in" / f"tiny{size}.png")
        res, dst = _anon_one(ctx, src)
        check_no_temp(ctx, ctx.tmp / "out")
        if res.rc == 0:
            if ctx.check(dst.exists(), "exit 0 but no output"):
                ctx.check(decode_image(dst)[0][0].shape == rgb.shape, "tiny output has another size")
                ctx.note("written unchanged in size")
        else:
            check_message(ctx, res, {1}, (src.name,))
            ctx.note("refused")
    return fn


case("png", "tiny 1x1", "written (no face) or a one-line refusal")(_tiny(1))
case("png", "tiny 16x16", "written (no face) or a one-line refusal")(_tiny(16))


# --------------------------------------------------------------------------- videos

VID_KINDS = {"mp4": ".mp4", "mkv": ".mkv"}


def _clip(ctx: Ctx, kind: str, name: str = "clip", n: int = 25, **kw) -> Path:
    return write_video(ctx.tmp / "in" / f"{name}{VID_KINDS[kind]}", clip_frames(n), **kw)


def _video_expect(ctx: Ctx, src: Path, refuse_only: bool, n_in: int | None = None, allow_refusal: bool = True,
                  *extra) -> None:
    ref = video_ref(src)
    before = digest(src.parent)
    out = ctx.tmp / "out"
    res = cli(ctx, "anonymize", src, "-o", out, "-q", *BLACKOUT, *extra)
    dst = out / src.name
    check_inputs(ctx, src.parent, before)
    check_no_temp(ctx, out)
    if res.rc == 0 and not refuse_only:
        if ctx.check(dst.exists(), "exit 0 but no output"):
            n = n_in if n_in is not None else len(decode_video_safe(src))
            if video_output_ok(ctx, dst, ref, n, dst.name):
                ctx.note(f"anonymized ({n} frames)")
    elif res.rc == 0:
        got = len(decode_video_safe(dst)) if dst.exists() else 0
        ctx.fail(f"exit 0 with {got} frames written for a damaged video")
    else:
        if not allow_refusal:
            ctx.fail(f"refused a valid video: {(res.error_lines() or [res.err[-120:]])[0][:140]}")
        check_message(ctx, res, {1}, (src.name,))
        ctx.check(not dst.exists(), "refused but an output was written")
        ctx.note("refused: " + (res.error_lines() or [""])[0][:120])


def decode_video_safe(path: Path) -> list[np.ndarray]:
    try:
        return decode_video(path)
    except Exception:
        return []


def _make_vcorrupt(kind: str, fault: str):
    def fn(ctx: Ctx) -> None:
        src = _clip(ctx, kind)
        corrupt_file(src, fault)
        _video_expect(ctx, src, refuse_only=fault != "flipped byte")
    return fn


for _k in VID_KINDS:
    for _f in ["zero bytes", "truncated 10%", "truncated 50%", "truncated 90%", "flipped byte"]:
        case(_k, _f, "exit 1, one line naming the file, no output" if _f != "flipped byte" else
             "exit 1 and no output, or every frame written with faces hidden",
             quick=False)(_make_vcorrupt(_k, _f))


def _no_video_stream(kind: str):
    def fn(ctx: Ctx) -> None:
        src = write_audio_only(ctx.tmp / "in" / f"audio{VID_KINDS[kind]}")
        _video_expect(ctx, src, refuse_only=True)
    return fn


for _k in VID_KINDS:
    case(_k, "no video stream", "exit 1, one line naming the file, no output")(_no_video_stream(_k))


@case("mp4", "moov at the start, tail cut", "exit 1, one line naming the file, no output", quick=True)
def _faststart_cut(ctx: Ctx) -> None:
    src = _clip(ctx, "mp4", container_options={"movflags": "faststart"})
    data = src.read_bytes()
    ctx.check(data.find(b"moov") < data.find(b"mdat"), "harness: moov not at the start")
    src.write_bytes(data[: len(data) * 7 // 10])
    _video_expect(ctx, src, refuse_only=True)


@case("mp4", "wrong extension (.mkv holding MP4)", "every face hidden (content sniffed), or a one-line refusal")
def _vwrong_ext(ctx: Ctx) -> None:
    src = _clip(ctx, "mp4")
    dst = src.with_suffix(".mkv")
    src.rename(dst)
    _video_expect(ctx, dst, refuse_only=False)


def _vunusual(kind: str, what: str):
    def fn(ctx: Ctx) -> None:
        frames = clip_frames(25)
        src = ctx.tmp / "in" / f"clip{VID_KINDS[kind]}"
        if what == "rotated 90":
            write_video(src, frames, rotation=90)
        elif what == "VFR":
            pts = list(np.cumsum([0] + [ctx.rng.choice([20, 40, 80]) for _ in frames[1:]]))
            write_video(src, frames, pts_ms=[int(p) for p in pts])
        elif what == "10-bit":
            try:
                write_video(src, frames, pix_fmt="yuv420p10le")
            except Exception as exc:
                raise Skip(f"libx264 without 10-bit here ({exc})")
        elif what == "4:4:4":
            write_video(src, frames, pix_fmt="yuv444p")
        elif what == "resolution change mid-stream":
            small = [np.asarray(Image.fromarray(f).resize((192, 192))) for f in frames[12:]]
            write_mjpeg_sizes(src, frames[:12] + small)
        _video_expect(ctx, src, refuse_only=False, allow_refusal=what == "resolution change mid-stream")
    return fn


case("mp4", "rotated 90", "every frame written upright-correct, faces hidden", quick=True)(_vunusual("mp4", "rotated 90"))
case("mp4", "VFR", "every frame written, faces hidden")(_vunusual("mp4", "VFR"))
case("mkv", "10-bit", "every frame written, faces hidden")(_vunusual("mkv", "10-bit"))
case("mkv", "4:4:4", "every frame written, faces hidden")(_vunusual("mkv", "4:4:4"))
case("mkv", "resolution change mid-stream", "every frame written with faces hidden, or a one-line refusal")(
    _vunusual("mkv", "resolution change mid-stream"))


# --------------------------------------------------------------------------- datasets

def _voc_subset(names: list[str]):
    read_voc = labels_api().read_voc

    voc = read_voc(shared("facemask", "annotations"))
    voc.images = [im for im in voc.images if im.path in names]
    assert len(voc.images) == len(names), names
    return voc


DS_PHOTOS = ["maksssksksss116.jpg", "maksssksksss114.jpg", "maksssksksss123.jpg", "maksssksksss118.jpg"]


def make_dataset(ctx: Ctx, fmt: str, names: list[str] | None = None, copies: int = 1) -> tuple[list[str], Path, Path, object]:
    """(dataset args, images root, label path, label set) of a small facemask dataset in WIDER or YOLO form."""
    write_wider, write_yolo = labels_api().write_wider, labels_api().write_yolo

    names = names or DS_PHOTOS
    voc = _voc_subset(names)
    root = ctx.tmp / "ds" / "images"
    root.mkdir(parents=True, exist_ok=True)
    src_dir = shared("facemask", "images")
    if copies > 1:
        import copy as _copy

        ims = []
        for k in range(copies):
            for im in voc.images:
                im2 = _copy.copy(im)
                im2.path = f"c{k}_{im.path}"
                ims.append(im2)
        voc.images = ims
    for im in voc.images:
        (root / im.path).write_bytes((src_dir / im.path.split("_", 1)[-1] if copies > 1 else src_dir / im.path)
                                     .read_bytes())
    if fmt == "wider":
        labels = ctx.tmp / "ds" / "gt.txt"
        write_wider(voc, labels)
    else:
        labels = ctx.tmp / "ds" / "labels"
        write_yolo(voc, labels)
    args = ["dataset", "anonymize", "--format", fmt, "--images", root, "--labels", labels, "--boxes", "gt",
            *BLACKOUT, "-q"]
    return args, root, labels, voc


def dataset_outputs_ok(ctx: Ctx, out: Path, voc, root: Path, expect_all: bool, skip: set[str] = frozenset()) -> int:
    """Every image written under OUT/images decodes and has its labelled faces hidden; returns how many."""
    n = 0
    for im in voc.images:
        dst = out / "images" / im.path
        if im.path in skip:
            ctx.check(not dst.exists(), f"{im.path}: written although its input is broken")
            continue
        if not dst.exists():
            if expect_all:
                ctx.fail(f"{im.path}: not written")
            continue
        try:
            frames, _ = decode_image(dst)
        except Exception as exc:
            ctx.fail(f"{im.path}: output does not decode ({str(exc)[:60]})")
            continue
        xyxy = [(x, y, x + w, y + h) for x, y, w, h in np.asarray(im.xywh, float) if min(w, h) >= 10]
        check_hidden(ctx, frames[0], xyxy, im.path)
        n += 1
    return n


def manifest_outputs_decode(ctx: Ctx, out: Path) -> None:
    """Every image the manifest records decodes completely (a truncated output is never recorded)."""
    m = out / "manifest.jsonl"
    if not m.exists():
        return
    for line in m.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("kind") != "image":
            continue
        p = out / "images" / e["path"]
        try:
            decode_image(p)
        except Exception as exc:
            ctx.fail(f"manifest records {e['path']} but it does not decode ({str(exc)[:60]})")


def _ds_fault(fmt: str, fault: str):
    def fn(ctx: Ctx) -> None:
        args, root, labels, voc = make_dataset(ctx, fmt)
        out = ctx.tmp / "out"
        victim = voc.images[1].path
        broken: set[str] = set()
        if fault == "zero-byte image":
            (root / victim).write_bytes(b"")
            broken = {victim}
        elif fault == "truncated image":
            d = (root / victim).read_bytes()
            (root / victim).write_bytes(d[: len(d) // 2])
            broken = {victim}
        elif fault == "missing image":
            (root / victim).unlink()
            broken = {victim}
        elif fault == "label outside the image":
            if fmt == "wider":
                text = labels.read_text().splitlines()
                i = text.index(victim)
                text[i + 2] = "5000 5000 40 40 " + " ".join(text[i + 2].split()[4:])
                labels.write_text("\n".join(text) + "\n")
            else:
                lf = labels / (Path(victim).stem + ".txt")
                lf.write_text(lf.read_text() + "0 1.500000 1.500000 0.100000 0.100000\n")
            broken = {victim}
        elif fault == "corrupt label line":
            if fmt == "wider":
                labels.write_text(labels.read_text() + "x.jpg\n1\n1 2\n")  # a box of two numbers
            else:
                (labels / (Path(victim).stem + ".txt")).write_text("0 0.5 zz 0.1\n")
        before = digest(ctx.tmp / "ds")
        res = cli(ctx, *args, "-o", out)
        check_inputs(ctx, ctx.tmp / "ds", before)
        check_no_temp(ctx, out)
        if fault == "corrupt label line":  # the whole run is refused before any work
            check_message(ctx, res, {1, 2}, (labels.name if fmt == "wider" else Path(victim).stem,))
            ctx.check(not (out / "images").exists() or not any((out / "images").rglob("*.jpg")),
                      "images written although the labels are broken")
            ctx.note("refused: " + (res.error_lines() or [""])[0][:120])
            return
        check_message(ctx, res, {1}, (Path(victim).name,))
        n = dataset_outputs_ok(ctx, out, voc, root, expect_all=True, skip=broken)
        manifest_outputs_decode(ctx, out)
        v = cli(ctx, "dataset", "verify", out)
        if broken:  # the run failed the victim (exit 1, checked above)
            # OUT's labels still name the image no run wrote: verify calls it missing until a resume writes it
            ctx.check(v.rc == 1 and victim in v.err and "Traceback" not in v.err,
                      f"dataset verify: exit {v.rc}, the unwritten {victim} " + ("named" if victim in v.err else "not"))
        else:
            ctx.check(v.rc == 0 and "Traceback" not in v.err, f"dataset verify: exit {v.rc}")
        ctx.note(f"{n} written, {victim} reported")
    return fn


for _fmt in ("wider", "yolo"):
    for _f in ["zero-byte image", "truncated image", "missing image", "label outside the image", "corrupt label line"]:
        case(_fmt, _f, "exit 1, the file named, the others written and hidden" if _f != "corrupt label line"
             else "exit 1 or 2, one line naming the label file, nothing written",
             quick=(_fmt == "wider" and _f == "truncated image") or (_fmt == "yolo" and _f == "corrupt label line"),
             )(_ds_fault(_fmt, _f))


@case("wider", "EXIF orientation 6, labels in stored pixels", "the labelled face hidden", quick=True)
def _ds_exif(ctx: Ctx) -> None:
    write_wider = labels_api().write_wider

    voc = _voc_subset([PHOTO2])
    im = voc.images[0]
    root = ctx.tmp / "ds" / "images"
    stored = Image.open(shared("facemask", "images", PHOTO2)).convert("RGB")
    ex = Image.Exif()
    ex[0x0112] = 6
    save(stored, root / im.path, exif=ex.tobytes())
    write_wider(voc, ctx.tmp / "ds" / "gt.txt")
    out = ctx.tmp / "out"
    res = cli(ctx, "dataset", "anonymize", "--format", "wider", "--images", root, "--labels", ctx.tmp / "ds" / "gt.txt",
              "--boxes", "gt", *BLACKOUT, "-q", "-o", out)
    if not check_message(ctx, res, {0, 1}, (im.path,)):
        return
    dst = out / "images" / im.path
    if res.rc == 1:
        ctx.check(not dst.exists(), "refused but written")
        ctx.note("refused")
        return
    raw = Image.open(dst)
    raw.load()
    W, H = stored.size
    xyxy = [(x, y, x + w, y + h) for x, y, w, h in np.asarray(im.xywh, float)]
    if raw.size == (W, H) and raw.getexif().get(0x0112, 1) in (1, 6):
        check_hidden(ctx, np.asarray(raw.convert("RGB")), xyxy, f"{im.path} (stored frame)")
    else:  # written rotated: the boxes rotate with the pixels (orientation 6 = ROTATE_270)
        disp = np.asarray(ImageOps.exif_transpose(raw).convert("RGB"))
        rot = [(H - y2, x1, H - y1, x2) for x1, y1, x2, y2 in xyxy]
        check_hidden(ctx, disp, rot, f"{im.path} (rotated)")
    ctx.note(f"{len(xyxy)} labelled faces hidden")


# --------------------------------------------------------------------------- interrupts

def _newest(out: Path, pattern: str) -> Callable[[], bool]:
    return lambda: out.exists() and any(p for p in out.rglob(pattern) if ".tmp" not in p.name)


def _resume_cmd(ctx: Ctx, cmd: list, out: Path) -> Res:
    res = cli(ctx, *cmd)
    if res.rc == 2 and cmd[0] == "anonymize" and has_option("anonymize", "--skip-existing"):
        ctx.note("re-run refused the existing outputs; resumed with --skip-existing")
        res = cli(ctx, *cmd, "--skip-existing")
    return res


def _outputs(out: Path) -> dict[str, str]:
    d = digest(out) if out.exists() else {}
    return {k: v for k, v in d.items() if not k.endswith(".jsonl") and not k.endswith(".json")
            and ".tmp" not in Path(k).name}  # left-over temporaries are reported by check_no_temp


def _interrupt(kind: str, sig: int):
    def fn(ctx: Ctx) -> None:
        if kind == "batch":
            inp = ctx.tmp / "in"
            names = sorted(p.name for p in shared("facemask", "images").glob("*.jpg"))[:12]
            for n in names:
                (inp / n).parent.mkdir(parents=True, exist_ok=True)
                (inp / n).write_bytes(shared("facemask", "images", n).read_bytes())
            base = ["anonymize", inp, "-q", *BLACKOUT, "--jobs", "2"]
            ready_pat = "*.jpg"
        elif kind == "video":
            inp = ctx.tmp / "in"
            write_video(inp / "clip.mp4", clip_frames(75))
            base = ["anonymize", inp / "clip.mp4", "-q", *BLACKOUT]
            ready_pat = "*.tmp*"
        else:
            args, root, labels, voc = make_dataset(ctx, "wider", copies=8)
            inp = ctx.tmp / "ds"
            base = [*args, "--jobs", "2"]
            ready_pat = "manifest.jsonl"
        before = digest(inp)
        clean, out = ctx.tmp / "clean", ctx.tmp / "out"
        r0 = cli(ctx, *base, "-o", clean)
        if not check_message(ctx, r0, {0}, what="uninterrupted run"):
            return
        ready = (lambda: out.exists() and any(out.rglob(".*tmp*"))) if kind == "video" else _newest(out, ready_pat)
        extra = ctx.rng.uniform(0.0, 0.3 * r0.seconds) if kind != "video" else ctx.rng.uniform(0.0, 0.5)
        r1 = cli(ctx, *base, "-o", out, interrupt=(sig, ready, extra))
        name = signal.Signals(sig).name
        if sig == signal.SIGKILL:
            ctx.check(r1.rc in (-9, 0), f"exit {r1.rc} after SIGKILL")
        else:
            # 130 / 143 by exit(), or death by the signal after cleaning up (the shell shows 130 / 143 too):
            # what matters is checked next, no temporary file and no process left
            want = {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
            check_message(ctx, r1, {want, -sig, 0}, what=f"run under {name}")
            check_no_temp(ctx, out, f" after {name}")
        check_no_procs(ctx, what=f" after {name}")
        r2 = _resume_cmd(ctx, [*base, "-o", out], out)
        check_message(ctx, r2, {0}, what="re-run")
        check_no_temp(ctx, out, " after the re-run")
        check_inputs(ctx, inp, before)
        a, b = _outputs(clean), _outputs(out)
        if ctx.check(a == b, f"resumed outputs differ from an uninterrupted run ({len(b)} vs {len(a)} files, "
                     f"{sum(a.get(k) != v for k, v in b.items())} differ)"):
            ctx.note(f"{name} after {extra:.1f} s past the first output: resumed to the same {len(a)} files")
        if kind == "dataset":
            v = cli(ctx, "dataset", "verify", out)
            ctx.check(v.rc == 0, f"dataset verify after resume: exit {v.rc}")
    return fn


for _kind in ("batch", "video", "dataset"):
    for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        label = {"batch": "jpeg", "video": "mp4", "dataset": "wider"}[_kind]
        case(label, f"{_sig.name} during a {_kind} run{' (--jobs 2)' if _kind != 'video' else ''}, then again",
             f"exit {128 + _sig if _sig != signal.SIGKILL else 'killed'}, no temp file or process left, "
             "re-run gives the same bytes",
             quick=(_kind, _sig) in {("batch", signal.SIGTERM), ("video", signal.SIGTERM),
                                     ("dataset", signal.SIGKILL)})(_interrupt(_kind, _sig))


@case("wider", "SIGKILL during a dataset run (--backend ray --jobs 2), then again",
      "no Ray process left, re-run gives the same bytes")
def _ray_kill(ctx: Ctx) -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise Skip("Ray is not installed (pip install 'faceveil[ray]')")
    args, root, labels, voc = make_dataset(ctx, "wider", copies=8)
    base = [*args, "--jobs", "2", "--backend", "ray"]
    clean, out = ctx.tmp / "clean", ctx.tmp / "out"
    r0 = cli(ctx, *base, "-o", clean)
    if not check_message(ctx, r0, {0}, what="uninterrupted run"):
        return
    check_no_procs(ctx, grace=15, what=" after the uninterrupted run")

    def ready() -> bool:
        m = out / "manifest.jsonl"
        return m.exists() and m.read_bytes().count(b"\n") >= 3

    cli(ctx, *base, "-o", out, interrupt=(signal.SIGKILL, ready, 0.0))
    check_no_procs(ctx, grace=15, what=" after SIGKILL")
    r2 = cli(ctx, *base, "-o", out)
    check_message(ctx, r2, {0}, what="re-run")
    check_no_temp(ctx, out)
    if ctx.check(_outputs(clean) == _outputs(out), "resumed outputs differ from an uninterrupted run"):
        ctx.note(f"resumed to the same {len(_outputs(out))} files, no Ray process left")


@case("jpeg", "SIGINT during start-up (0.3 s)", "exit 130, one line, no traceback")
def _int_startup(ctx: Ctx) -> None:
    src = _clean_image(ctx, "jpeg")
    res = cli(ctx, "anonymize", src, "-o", ctx.tmp / "out", "-q", interrupt=(signal.SIGINT, lambda: True, 0.3))
    check_message(ctx, res, {130, -signal.SIGINT, 0}, what="run under SIGINT")
    check_no_temp(ctx, ctx.tmp / "out")
    ctx.note(f"exit {res.rc}: {(res.err.strip().splitlines() or [''])[-1][:100]}")


# --------------------------------------------------------------------------- collisions, permissions, storage

def _two_folders(ctx: Ctx) -> tuple[Path, Path]:
    a = save(photo(PHOTO), ctx.tmp / "coll" / "d1" / "x.jpg")
    b = save(photo(PHOTO2), ctx.tmp / "coll" / "d2" / "x.jpg")
    return a, b


def _collision(as_files: bool):
    def fn(ctx: Ctx) -> None:
        a, b = _two_folders(ctx)
        out = ctx.tmp / "out"
        inputs = [a, b] if as_files else [a.parent, b.parent]
        res = cli(ctx, "anonymize", *inputs, "-o", out, "-q", *BLACKOUT)
        written = sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []
        if res.rc == 2:
            check_message(ctx, res, {2}, ("x.jpg",))
            ctx.check(not written, f"refused but {len(written)} file(s) written")
            ctx.note("refused before writing: " + (res.error_lines() or [""])[0][:100])
        else:
            check_message(ctx, res, {0}, ("x.jpg",))
            if ctx.check(len(written) == 2, f"2 inputs, {len(written)} output(s): one lost"):
                refs = {a: ref_of_file(a), b: ref_of_file(b)}
                for w in written:
                    ok = [s for s, r in refs.items() if decode_image(w)[0][0].shape == r[0][0].shape]
                    ctx.check(bool(ok), f"{w.name}: matches no input")
                ctx.note("both kept: " + ", ".join(str(w.relative_to(out)) for w in written))
    return fn


case("collision", "two folders holding x.jpg into one OUT", "exit 2 before writing, or both kept under distinct names",
     quick=True)(_collision(False))
case("collision", "two file arguments named x.jpg", "exit 2 before writing, or both kept under distinct names")(
    _collision(True))


def _existing(policy: str):
    def fn(ctx: Ctx) -> None:
        src = _clean_image(ctx, "jpeg", "x")
        out = ctx.tmp / "out"
        out.mkdir()
        mine = out / "x.jpg"
        mine.write_bytes(b"my own file, not faceveil's")
        extra = []
        if policy:
            if not has_option("anonymize", policy):
                ctx.fail(f"no {policy} option")
                return
            extra = [policy]
        res = cli(ctx, "anonymize", src, "-o", out, "-q", *BLACKOUT, *extra)
        if policy == "--overwrite":
            if check_message(ctx, res, {0}):
                image_output_ok(ctx, mine, ref_of_file(src), "x.jpg")
                ctx.note("replaced under --overwrite")
        elif policy == "--skip-existing":
            check_message(ctx, res, {0})
            ctx.check(mine.read_bytes() == b"my own file, not faceveil's", "existing file replaced under --skip-existing")
        else:
            check_message(ctx, res, {2}, ("x.jpg",))
            ctx.check(mine.read_bytes() == b"my own file, not faceveil's", "existing file in OUT overwritten")
            ctx.note("refused: " + (res.error_lines() or [""])[0][:100])
    return fn


case("collision", "existing file in OUT (no policy)", "exit 2 naming it, the file untouched", quick=True)(_existing(""))
case("collision", "existing file in OUT, --overwrite", "replaced by the anonymized output")(_existing("--overwrite"))
case("collision", "existing file in OUT, --skip-existing", "the file untouched, exit 0")(_existing("--skip-existing"))


@case("collision", "single input, -o name.jpg", "writes the file name.jpg (not a folder)")
def _o_file(ctx: Ctx) -> None:
    src = _clean_image(ctx, "jpeg")
    dst = ctx.tmp / "result.jpg"
    res = cli(ctx, "anonymize", src, "-o", dst, "-q", *BLACKOUT)
    if check_message(ctx, res, {0}) and ctx.check(dst.is_file(), "-o result.jpg made a folder, not a file"):
        image_output_ok(ctx, dst, ref_of_file(src), dst.name)


@case("storage", "read-only OUT (ro tmpfs)", "exit 1 or 2, one line naming the output, no traceback", quick=True)
def _ro(ctx: Ctx) -> None:
    src = _clean_image(ctx, "jpeg")
    out = mount_tmpfs(ctx, ctx.tmp / "ro", "1m", ro=True)
    res = cli(ctx, "anonymize", src, "-o", out, "-q", *BLACKOUT)
    check_message(ctx, res, {1, 2}, (src.name, str(out), "ro"))
    ctx.note((res.error_lines() or [""])[0][:120])


def _full(kind: str, share: float):
    def fn(ctx: Ctx) -> None:
        disk = mount_tmpfs(ctx, ctx.tmp / "disk", "2m")
        out = disk / "out"
        if kind in ("jpeg", "png", "webp"):
            src = _clean_image(ctx, kind)
            probe = cli(ctx, "anonymize", src, "-o", ctx.tmp / "probe", "-q", *BLACKOUT)
            size = (ctx.tmp / "probe" / src.name).stat().st_size if probe.rc == 0 else 30000
        elif kind == "mp4":
            src = _clip(ctx, "mp4", n=50)
            size = src.stat().st_size
        else:
            args, root, labels, voc = make_dataset(ctx, "wider")
            size = sum((root / im.path).stat().st_size for im in voc.images)
        out.mkdir()
        free = fill(disk, int(size * share))
        if kind == "wider":
            res = cli(ctx, *args, "-o", out)
        else:
            res = cli(ctx, "anonymize", src, "-o", out, "-q", *BLACKOUT)
        # whatever the outcome: nothing reported as written that does not decode completely
        check_no_temp(ctx, out)
        if kind == "wider":
            check_message(ctx, res, {0, 1})
            n = dataset_outputs_ok(ctx, out, voc, root, expect_all=res.rc == 0)
            manifest_outputs_decode(ctx, out)
            v = cli(ctx, "dataset", "verify", out)
            if v.rc == 0:
                manifest_outputs_decode(ctx, out)
            ctx.note(f"{free // 1024} kB free: exit {res.rc}, {n} of {len(voc.images)} written")
            return
        dst = out / src.name
        if res.rc == 0:
            if ctx.check(dst.exists(), "exit 0 but no output"):
                if kind == "mp4":
                    video_output_ok(ctx, dst, video_ref(src), 50, dst.name)
                else:
                    image_output_ok(ctx, dst, ref_of_file(src), dst.name)
        else:
            check_message(ctx, res, {1}, (src.name, str(out)))
            if dst.exists():
                try:
                    decode_video(dst) if kind == "mp4" else decode_image(dst)
                    ctx.fail("refused but an output was left")
                except Exception:
                    ctx.fail("a truncated output was left")
        ctx.note(f"{free // 1024} kB free for a ~{size // 1024} kB output: exit {res.rc}")
    return fn


for _k, _shares in (("jpeg", (0.25, 0.6, 0.95)), ("png", (0.5,)), ("webp", (0.5,)), ("mp4", (0.3, 0.8)),
                    ("wider", (0.3, 0.8))):
    for _s in _shares:
        case("storage", f"full disk: {_k}, {int(_s * 100)} % of the output's size free",
             "exit 1 naming the file and no output, or a complete output; the manifest records only complete files",
             quick=(_k == "jpeg" and _s == 0.6) or (_k == "wider" and _s == 0.3))(_full(_k, _s))


@case("storage", "input deleted mid-run", "exit 1 naming the deleted file, every other output written")
def _deleted(ctx: Ctx) -> None:
    inp = ctx.tmp / "in"
    names = sorted(p.name for p in shared("facemask", "images").glob("*.jpg"))[:10]
    for n in names:
        (inp / n).parent.mkdir(parents=True, exist_ok=True)
        (inp / n).write_bytes(shared("facemask", "images", n).read_bytes())
    out = ctx.tmp / "out"
    victim = inp / names[-1]

    def delete_when_started(proc):
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and any(out.glob("*.jpg")):
                break
            time.sleep(0.01)
        victim.unlink()

    res = cli(ctx, "anonymize", inp, "-o", out, "-q", *BLACKOUT, after_start=delete_when_started)
    written = {p.name for p in out.glob("*.jpg")}
    check_no_temp(ctx, out)
    if res.rc == 0:
        ctx.check(written == set(names), "exit 0 but not every file written")
        ctx.note("the deleted file had been read already")
    else:
        check_message(ctx, res, {1}, (victim.name,))
        ctx.check(written == set(names[:-1]), f"{len(written)} of {len(names) - 1} other files written")
        ctx.note("the deleted file reported: " + (res.error_lines() or [""])[0][:100])


@case("storage", "two concurrent runs on one OUT", "each exits 0, 1 or 2 with a message; every output complete and "
      "equal to a single run's")
def _concurrent(ctx: Ctx) -> None:
    inp = ctx.tmp / "in"
    for n in sorted(p.name for p in shared("facemask", "images").glob("*.jpg"))[:8]:
        (inp / n).parent.mkdir(parents=True, exist_ok=True)
        (inp / n).write_bytes(shared("facemask", "images", n).read_bytes())
    out, clean = ctx.tmp / "out", ctx.tmp / "clean"
    cli(ctx, "anonymize", inp, "-o", clean, "-q", *BLACKOUT)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: cli(ctx, "anonymize", inp, "-o", out, "-q", *BLACKOUT), range(2)))
    for i, r in enumerate(runs):
        check_message(ctx, r, {0, 1, 2}, what=f"run {i + 1}")
    check_no_temp(ctx, out)
    a, b = _outputs(clean), _outputs(out)
    for k, v in b.items():
        ctx.check(a.get(k) == v, f"{k}: differs from a single run's output")
    ctx.note(f"exits {[r.rc for r in runs]}, {len(b)} of {len(a)} outputs, all equal to a single run's")


# --------------------------------------------------------------------------- the review server

class Review:
    """`faceveil review OUT --originals IN` as a subprocess, with its URL and token."""

    def __init__(self, ctx: Ctx, out: Path, orig: Path, extra: list = ()):
        cmd = [PY, "-m", "faceveil", "review", str(out), "--originals", str(orig), "-q", "--second", "none",
               "--cache-dir", str(ctx.tmp / "cache"), *map(str, extra)]
        self.err_path = ctx.tmp / "review.err"
        with open(self.err_path, "wb") as fe:
            self.proc = subprocess.Popen(cmd, cwd=ctx.tmp, env=_env(), stdout=subprocess.PIPE, stderr=fe,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        ctx.sessions.append(self.proc.pid)
        line = self.proc.stdout.readline().decode().strip()  # the URL, printed once serving
        m = re.match(r"(http://[^/]+)/\?token=(\S+)", line)
        if not m:
            err = self.err_path.read_text(errors="replace")
            raise RuntimeError(f"review did not print a URL: {line!r} {err[-200:]!r}")
        self.base, self.token = m.group(1), m.group(2)

    def req(self, method: str, path: str, body: bytes | None = None, token: str | None = "header",
            ctype: str = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Type": ctype} if body is not None else {}
        if token == "header":
            headers["X-Faceveil-Token"] = self.token
        elif token is not None:
            headers["X-Faceveil-Token"] = token
        r = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, obj, **kw) -> tuple[int, bytes]:
        return self.req("POST", path, json.dumps(obj).encode() if not isinstance(obj, bytes) else obj, **kw)

    def stop(self, ctx: Ctx) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            ctx.fail("review server still running 20 s after SIGTERM")
        self.proc.stdout.close()
        err = self.err_path.read_bytes()
        ctx.check(b"Traceback" not in err, "review server printed a traceback: "
                  + err.decode(errors="replace").strip().splitlines()[-1][:120] if b"Traceback" in err else "")


def _review_setup(ctx: Ctx) -> tuple[Path, Path, Path]:
    orig, out = ctx.tmp / "in", ctx.tmp / "out"
    for i, n in enumerate([PHOTO, PHOTO2, "maksssksksss114.jpg"], 1):
        save(photo(n), orig / f"m{i}.jpg")
    secret = save(photo("maksssksksss118.jpg"), ctx.tmp / "secret" / "s.jpg")
    res = cli(ctx, "anonymize", orig, "-o", out, "-q", *BLACKOUT)
    if res.rc != 0:
        raise RuntimeError(f"anonymize before review: exit {res.rc}")
    return orig, out, secret


def _review_case(what: str):
    def fn(ctx: Ctx) -> None:
        import importlib.util

        if importlib.util.find_spec("flask") is None:
            raise Skip("the review page needs Flask")
        orig, out, secret = _review_setup(ctx)
        secret_bytes = secret.read_bytes()
        outside_before = digest(ctx.tmp / "secret")
        out_before = digest(out)
        rv = Review(ctx, out, orig)
        try:
            gets = ["/", "/api/items", "/img/out/m1.jpg", "/img/orig/m1.jpg", "/thumb/m1.jpg"]
            posts = [("/api/apply", {"path": "m1.jpg", "manual": [[1, 1, 20, 20]]}),
                     ("/api/approve", {"path": "m1.jpg", "approved": True})]
            if what in ("missing token", "wrong token"):
                tok = None if what == "missing token" else "wrong-" + rv.token[:8]
                for g in gets:
                    s, _ = rv.req("GET", g, token=tok)
                    ctx.check(s == 403, f"GET {g}: {s}, expected 403")
                for p, b in posts:
                    s, _ = rv.post(p, b, token=tok)
                    ctx.check(s == 403, f"POST {p}: {s}, expected 403")
                ctx.check(digest(out) == out_before, "OUT changed by unauthorized requests")
                ctx.note(f"{len(gets) + len(posts)} endpoints refused (403)")
            elif what == "traversal":
                evil = ["../secret/s.jpg", "%2e%2e/secret/s.jpg", "sub/../../secret/s.jpg", "..%2fsecret%2fs.jpg",
                        "/" + str(secret).lstrip("/"), "%2F" + str(secret).lstrip("/").replace("/", "%2F")]
                prefixes = ["/img/out/", "/img/orig/", "/thumb/", "/frame/out/", "/frame/orig/", "/api/frame/",
                            "/static/"]
                n = 0
                for pre in prefixes:
                    for e in evil:
                        s, body = rv.req("GET", pre + e)
                        n += 1
                        ctx.check(s in (400, 403, 404), f"GET {pre}{e}: {s}")
                        ctx.check(secret_bytes[:2000] not in body, f"GET {pre}{e} served the outside file")
                for p in ("/api/apply", "/api/approve"):
                    for e in ["../secret/s.jpg", str(secret), "m1.jpg/../../secret/s.jpg"]:
                        s, _ = rv.post(p, {"path": e, "manual": [[1, 1, 20, 20]], "approved": True})
                        n += 1
                        ctx.check(s in (400, 403, 404), f"POST {p} {e}: {s}")
                ctx.check(digest(ctx.tmp / "secret") == outside_before, "a file outside OUT was changed")
                ctx.check(digest(out) == out_before, "OUT changed by traversal requests")
                ctx.note(f"{n} traversal requests refused")
            elif what == "symlinks swapped in after start-up":
                s0, _ = rv.req("GET", "/api/items")
                (orig / "m2.jpg").unlink()
                (orig / "m2.jpg").symlink_to(secret)
                (out / "m3.jpg").unlink()
                (out / "m3.jpg").symlink_to(secret)
                out_m2 = (out / "m2.jpg").read_bytes()
                s, body = rv.req("GET", "/img/orig/m2.jpg")
                ctx.check(s in (403, 404), f"GET the swapped original: {s}")
                s, body = rv.req("GET", "/img/out/m3.jpg")
                ctx.check(s in (403, 404), f"GET the swapped output: {s}")
                s, body = rv.post("/api/apply", {"path": "m2.jpg", "manual": [[1, 1, 20, 20]]})
                ctx.check(s in (400, 403, 404, 409), f"POST /api/apply over a swapped original: {s}")
                ctx.check((out / "m2.jpg").read_bytes() == out_m2, "Apply read the outside file into OUT/m2.jpg")
                s, body = rv.post("/api/apply", {"path": "m3.jpg", "manual": [[1, 1, 20, 20]]})
                # Apply over a swapped output may refuse, or replace the link by a file made from IN/m3.jpg
                ctx.check(s in (400, 403, 404, 409) or (s == 200 and not (out / "m3.jpg").is_symlink()),
                          f"POST /api/apply over a swapped output: {s}")
                ctx.check(secret.read_bytes() == secret_bytes, "Apply wrote through a link out of OUT")
                ctx.note("reads and writes through swapped links refused")
            elif what == "malformed bodies":
                bad = [(b"not json", "text/plain"), (b"{", "application/json"), (b"[1,2]", "application/json"),
                       (b'{"path": 5}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": "x"}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [[1, 2]]}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [["a", "b", "c", "d"]]}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [[NaN, 0, 10, 10]]}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [[0, 0, 1e308, 1e308]]}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [[50, 50, 10, 10]]}', "application/json"),
                       (b'{"path": "m1.jpg", "removed": {"a": 1}}', "application/json"),
                       (b'{"path": "m1.jpg", "manual": [{"box": [1, 2, 3, 4], "from": "x"}]}', "application/json"),
                       (b'{"path": "", "manual": []}', "application/json")]
                for body, ctype in bad:
                    for p in ("/api/apply", "/api/approve"):
                        s, resp = rv.req("POST", p, body, ctype=ctype)
                        ok = s in (400, 404, 409, 422) or (p == "/api/approve" and s == 200 and b'"path": "m1.jpg"' in body)
                        # an inverted box may be normalised, a huge one clipped to the image (more hidden, not less)
                        ok = ok or (s == 200 and (b"[[50, 50, 10, 10]]" in body or b"1e308" in body))
                        ctx.check(ok, f"POST {p} {body[:40]!r}: {s}")
                s, _ = rv.req("GET", "/api/items")
                ctx.check(s == 200, "server not answering after malformed bodies")
                try:
                    decode_image(out / "m1.jpg")
                except Exception:
                    ctx.fail("OUT/m1.jpg no longer decodes")
                ctx.note(f"{len(bad) * 2} malformed bodies answered 4xx, server alive")
            elif what == "huge body":
                blob = b'{"path": "m1.jpg", "manual": [' + b"[1,1,2,2]," * 400000 + b"[1,1,2,2]]}"
                code, _ = rv.req("POST", "/api/apply", blob)
                ctx.check(code in (400, 413), f"a {len(blob) >> 20} MB body: {code}, expected 413 (or 400)")
                s, _ = rv.req("GET", "/api/items")
                ctx.check(s == 200, "server not answering after a huge body")
                ctx.note(f"{len(blob) >> 20} MB body refused ({code})")
        finally:
            rv.stop(ctx)
        check_no_temp(ctx, out)
    return fn


for _w in ("missing token", "wrong token", "traversal", "symlinks swapped in after start-up", "malformed bodies",
           "huge body"):
    case("review", _w, {"missing token": "403 on every endpoint", "wrong token": "403 on every endpoint",
                        "traversal": "400/403/404 on every path-taking endpoint, nothing outside read or written",
                        "symlinks swapped in after start-up": "GET and Apply refused, nothing outside read",
                        "malformed bodies": "4xx, server alive, no traceback",
                        "huge body": "413 (or 400), server alive"}[_w],
         quick=_w in ("traversal", "symlinks swapped in after start-up"))(_review_case(_w))


@case("review", "dataset label file named review.json", "the label file never overwritten (or the input refused)")
def _review_json(ctx: Ctx) -> None:
    import importlib.util

    write_coco = labels_api().write_coco

    if importlib.util.find_spec("flask") is None:
        raise Skip("the review page needs Flask")
    voc = _voc_subset(DS_PHOTOS[:2])
    root = ctx.tmp / "ds" / "images"
    root.mkdir(parents=True)
    for im in voc.images:
        (root / im.path).write_bytes(shared("facemask", "images", im.path).read_bytes())
    labels = ctx.tmp / "ds" / "review.json"
    write_coco(voc, labels)
    out = ctx.tmp / "out"
    # --detector centerface: the default preset's tuple parameters break `review` of a dataset output
    # (the case "review/start on a dataset output made with the default preset"); this case is about review.json
    res = cli(ctx, "dataset", "anonymize", "--format", "coco", "--images", root, "--labels", labels, "--boxes", "gt",
              *BLACKOUT, "-q", "-o", out, "--detector", "centerface")
    if res.rc == 2:
        check_message(ctx, res, {2}, ("review.json",))
        ctx.note("input refused")
        return
    if not check_message(ctx, res, {0}):
        return
    copies = [p for p in out.rglob("review.json")]
    rv = Review(ctx, out, root)
    try:
        # an output's path under OUT, which mirrors the dataset folder (before, the original's path under ds/images
        # named an item with no output, which the review listed then)
        s, _ = rv.post("/api/approve", {"path": f"images/{voc.images[0].path}", "approved": True})
        ctx.check(s == 200, f"approve: {s}")
    finally:
        rv.stop(ctx)
    for c in copies:
        ctx.check(c.read_bytes() == labels.read_bytes(), f"{c.relative_to(out)}: the label copy was overwritten")
    v = cli(ctx, "dataset", "verify", out)
    ctx.check(v.rc == 0, f"dataset verify after review: exit {v.rc} ({(v.err.strip().splitlines() or [''])[-1][:80]})")


def _review_default_preset(dataset: bool):
    def fn(ctx: Ctx) -> None:
        import importlib.util

        if importlib.util.find_spec("flask") is None:
            raise Skip("the review page needs Flask")
        out = ctx.tmp / "out"
        extra: list = []
        if dataset:
            args, root, labels, voc = make_dataset(ctx, "wider", DS_PHOTOS[:1])
            res = cli(ctx, *args, "-o", out)
        else:
            root = save(photo(), ctx.tmp / "in" / "m1.jpg").parent
            res = cli(ctx, "anonymize", root, "-o", out, "-q", "--report", ctx.tmp / "report.json")
            extra = ["--from-report", ctx.tmp / "report.json"]
        if check_message(ctx, res, {0}, what="anonymize"):
            _review_starts(ctx, out, root, extra)
    return fn


case("review", "start on a dataset output made with the default preset",
     "the page starts with the run's settings (read from OUT/manifest.jsonl)")(_review_default_preset(True))
case("review", "--from-report of an anonymize run with the default preset",
     "the page starts with the run's settings (the README's own example)")(_review_default_preset(False))


def _review_starts(ctx: Ctx, out: Path, root: Path, extra: list) -> None:
    try:
        rv = Review(ctx, out, root, extra)
    except RuntimeError as exc:
        ctx.fail(str(exc)[:200])
        return
    try:
        s, _ = rv.req("GET", "/api/items")
        ctx.check(s == 200, f"GET /api/items: {s}")
    finally:
        rv.stop(ctx)
    ctx.note("started")


# ===========================================================================
# the table

def run_all(names: list[str], seed: int = 0, keep: bool = False, echo: bool = True) -> list[Row]:
    rows = []
    base = Path(tempfile.mkdtemp(prefix="faceveil-faults-"))
    try:
        for i, name in enumerate(names):
            row = run_case(name, base / f"c{i:03d}", seed)
            rows.append(row)
            if echo:
                mark = {True: "held", False: "NOT HELD", None: "skipped"}[row.held]
                print(f"[{i + 1}/{len(names)}] {mark:8} {row.seconds:5.1f}s  {name}: {row.detail[:160]}",
                      file=sys.stderr, flush=True)
            if not keep:
                shutil.rmtree(base / f"c{i:03d}", ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def markdown(rows: list[Row]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| kind | fault | expected | held | detail |", "|---|---|---|---|---|"]
    for r in rows:
        mark = {True: "yes", False: "**no**", None: "skipped"}[r.held]
        lines.append(f"| {r.kind} | {esc(r.fault)} | {esc(r.expected)} | {mark} | {esc(r.detail[:220])} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    tried = [r for r in rows if r.held is not None]
    held = [r for r in tried if r.held]
    kinds = sorted({r.kind for r in rows})
    per = ", ".join(f"{k} {sum(1 for r in tried if r.kind == k and r.held)}/{sum(1 for r in tried if r.kind == k)}"
                    for k in kinds)
    skipped = len(rows) - len(tried)
    return (f"{len(tried)} cases tried, {len(held)} held, {len(tried) - len(held)} not held"
            + (f", {skipped} skipped" if skipped else "") + f" ({per})")


DOC_BEGIN, DOC_END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"


def write_docs(rows: list[Row], path: Path = ROOT / "docs" / "faults.md") -> None:
    r = subprocess.run(["git", "-C", str(SRC), "log", "-1", "--format=%h %cs"], capture_output=True, text=True)
    where = f" Run against `{SRC.parent.name}/src` at commit {r.stdout.strip()}." if r.returncode == 0 else ""
    block = f"{DOC_BEGIN}\n{summary(rows)}.{where}\n\n{markdown(rows)}\n{DOC_END}"
    text = path.read_text() if path.exists() else f"# Fault matrix\n\n{DOC_BEGIN}\n{DOC_END}\n"
    if DOC_BEGIN in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1] if DOC_END in rest else ""
        text = head + block + tail
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run cases whose name contains this (repeatable)")
    ap.add_argument("--quick", action="store_true", help="only the fast subset tests/test_faults.py runs")
    ap.add_argument("--seed", type=int, default=0, help="seed for interrupt times and random choices")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", action="store_true", help="keep each case's folder (printed) for inspection")
    ap.add_argument("--write-docs", action="store_true", help="rewrite the table in docs/faults.md")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--src", metavar="DIR", help="the faceveil source folder to test (default: this checkout's src/)")
    args = ap.parse_args(argv)
    if args.src:
        global SRC
        SRC = Path(args.src).resolve()
    names = [n for n, c in CASES.items() if (not args.quick or c.quick)
             and (not args.only or any(o in n for o in args.only))]
    if args.list:
        print("\n".join(f"{'*' if CASES[n].quick else ' '} {n}" for n in names))
        return 0
    rows = run_all(names, args.seed, args.keep)
    print(markdown(rows))
    print()
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    if args.write_docs:
        write_docs(rows)
    return 0 if all(r.held is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
