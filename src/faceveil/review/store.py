"""What the review page works on: pairs of (anonymized output, original), their flags, the reviewer's edits.

- Items are image files found under OUT, plus originals under IN with no output
  (a failed file). OUT/rel pairs with IN/rel, the tree ``faceveil anonymize IN -o OUT`` writes.
- Flags come from detections on the ORIGINAL (main detector run once at a lowered
  threshold, then split; an independent second detector) checked against the
  OUTPUT's pixels: a face whose pixels the output left unchanged is a leak.
- Edits (manual boxes, removed boxes, approvals) live in OUT/.faceveil/review.json:
  faceveil's own files under OUT keep to that one hidden folder, a name no input file
  is read from, so a user's or a dataset's own review.json is never overwritten.
  Stopping and restarting resumes.
- Apply redoes the regions the run recorded (its --report, a dataset's manifest)
  plus the reviewer's boxes, and keeps every pixel the run changed as the run left it
  (unless the reviewer removed that box): it never shows more of a face than the run's
  output did, even with no record of the run or with other settings than the run's.
- Detection results and thumbnails (of outputs only, never originals) go to a
  cache folder outside OUT (default: the user cache dir), so nothing extra lands
  among the files a user publishes.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..detections import Detections, box_iou
from ..errors import FaceveilError, UsageError
from ..io.atomic import write_bytes_atomic
from ..io.images import is_image_path, read_image, write_image
from ..io.video import is_video_path
from . import videos
from ..pipeline import Anonymizer, AnonymizerConfig

OWN_DIR = ".faceveil"  # faceveil's own files under OUT (a video's track record too: video.tracks_path)
REVIEW_FILE = f"{OWN_DIR}/review.json"
OLD_REVIEW_FILE = "review.json"  # where faceveil 0.1.0 kept it: still read (when it is ours), never written
FORMAT = 1
# Apply keeps the output's pixel where it differs from the original (re-encoded as the output was)
# by more than this, per channel: what the run changed stays changed. 0 for lossless outputs.
KEEP_TOLERANCE = 6

# A face counts as hidden when the output's pixels in the inner 60 % of its box differ
# from the original's clearly more than re-encoding the original the way the output was
# encoded (its own JPEG tables) does. Measured on 30 WIDER-val photos (JPEG q95 outputs):
# an untouched face has a ratio of 0.97-1.0, every one of 881 blurred faces >= 64.
HIDDEN_RATIO = 4.0
HIDDEN_FLOOR = 2.0  # mean squared error; lossless outputs have a re-encoding error of 0

# Risk of each kind of flag; an image's risk is the sum over the kinds it has (sort key).
RISK = {"failed": 100, "error": 100, "failed-frames": 95, "second": 80, "held-gap": 60, "no-record": 30, "unhidden": 90, "size": 50, "near": 40, "small": 15,
        "no-original": 5}


@dataclass(frozen=True)
class ReviewSettings:
    """How the review flags images; part of the detection cache key."""

    second: tuple[str, ...] = ("auto",)  # independent detectors; "auto": yunet, else dlib-hog
    near: float = 0.5  # "just under the threshold": score >= near * threshold
    small_face: int = 20  # px: a detected face smaller than this (min side) is flagged
    match_iou: float = 0.3  # a second-detector face matching a main one at this IoU is not new


def default_cache_dir(out_root: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(out_root.resolve()).encode()).hexdigest()[:16]
    return base / "faceveil" / "review" / digest


def plain_params(params: dict | None) -> dict:
    """Parameters as a report, manifest, track record or review.json stores them, ready for make_params.

    Tuples are JSON lists (current writers) or, from faceveil 0.1.0, Python text such as
    '(0.6, 0.9)'; both become tuples. Anything else is passed through unchanged.
    """
    out = {}
    for key, value in (params or {}).items():
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, str) and value[:1] == "(" and value[-1:] == ")":
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                parsed = None
            if isinstance(parsed, (tuple, int, float)):  # "(0.6)" is Python's text for a bare number
                value = parsed if isinstance(parsed, tuple) else (parsed,)
        out[key] = value
    return out


@dataclass
class RunRecord:
    """What an `anonymize --report` run did, by posix path under OUT and IN: the regions it hid in
    each written image, and every file it was given (the failed ones too)."""

    source: str
    regions: dict[str, list[list[float]]] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)


def _rel_under(text: str, root: Path, bases: list[Path]) -> str | None:
    """``text`` (a path as the report wrote it: absolute, or relative to where the run was started)
    as a posix path under ``root``, or None. Unknown starting folder: the longest tail that exists."""
    p = Path(text)
    for cand in [p] if p.is_absolute() else [b / p for b in bases]:
        try:
            return (cand.parent.resolve() / cand.name).relative_to(root).as_posix()
        except (ValueError, OSError):
            continue
    parts = p.parts
    for k in range(len(parts)):
        tail = Path(*parts[k:])
        if ".." not in tail.parts and not tail.is_absolute() and (root / tail).exists():
            return tail.as_posix()
    return None


def load_run_record(doc: dict, report: str | os.PathLike, out_root: str | os.PathLike,
                    in_root: str | os.PathLike) -> RunRecord:
    """The per-file part of an `anonymize --report` document, keyed by paths under OUT and IN."""
    out_root, in_root = Path(out_root).resolve(), Path(in_root).resolve()
    bases = [Path.cwd(), Path(report).resolve().parent]
    rec = RunRecord(str(report))
    files = doc.get("files")
    if not isinstance(files, list):
        raise UsageError(f"{report}: not a `faceveil anonymize --report` file (no files)")
    for f in files:
        if not isinstance(f, dict):
            continue
        if isinstance(f.get("input"), str):
            rel = _rel_under(f["input"], in_root, bases)
            if rel is not None:
                rec.inputs.add(rel)
        if f.get("status") == "written" and isinstance(f.get("output"), str):
            rel = _rel_under(f["output"], out_root, bases)
            if rel is not None and not is_video_path(rel):  # a video's record is its track file
                rec.regions[rel] = [[float(v) for v in d["box"]] for d in f.get("detections") or []]
    return rec


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _list_images(root: Path) -> dict[str, Path]:
    """Image files under root by posix relative path; hidden files/folders (ours, temp files) skipped."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not (is_image_path(p) or is_video_path(p)):
            continue
        if p.is_file() or p.is_symlink():
            found[rel.as_posix()] = p
    return found


def _boxes(d: Detections) -> list[list[float]]:
    return [[float(v) for v in b] for b in d.xyxy]  # float32 -> float is exact: Apply reproduces the run


def _stat_key(p: Path | None) -> str | None:
    if p is None or not p.is_file():
        return None
    st = p.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def mse_inside(a: np.ndarray, b: np.ndarray, box) -> float:
    """Mean squared error of two same-size images over the inner 60 % of ``box`` (the face, not the hair)."""
    h, w = a.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    xa, xb = int(np.clip(np.floor(x1 + 0.2 * bw), 0, w)), int(np.clip(np.ceil(x2 - 0.2 * bw), 0, w))
    ya, yb = int(np.clip(np.floor(y1 + 0.2 * bh), 0, h)), int(np.clip(np.ceil(y2 - 0.2 * bh), 0, h))
    if xb <= xa or yb <= ya:
        return 0.0
    d = a[ya:yb, xa:xb].astype(np.float32) - b[ya:yb, xa:xb].astype(np.float32)
    return float((d * d).mean())


def reencoded_like(rgb: np.ndarray, encoded: Path, quality: int) -> np.ndarray:
    """``rgb`` passed through the lossy encoding ``encoded`` has (same JPEG tables and subsampling).

    What the output would look like had nothing been anonymized: the baseline that tells
    "unchanged but re-encoded" from "anonymized". Kept in memory only.
    """
    import io

    from PIL import Image, JpegImagePlugin

    with Image.open(encoded) as im:
        fmt, mode = im.format, im.mode
        kwargs: dict = {}
        if fmt == "JPEG":
            sampling = JpegImagePlugin.get_sampling(im)
            kwargs = {"qtables": im.quantization, "subsampling": sampling if sampling != -1 else 0}
        elif fmt == "WEBP" and not im.info.get("lossless"):
            kwargs = {"quality": quality}  # WebP keeps no tables: assume our own setting
        else:
            fmt = None
    src = Image.fromarray(rgb)
    if mode in ("L", "LA", "I", "I;16", "F", "1"):
        src = src.convert("L")
    if fmt is None:
        return np.asarray(src.convert("RGB"))
    buf = io.BytesIO()
    src.save(buf, fmt, **kwargs)
    buf.seek(0)
    with Image.open(buf) as back:
        return np.asarray(back.convert("RGB"))


@dataclass
class Item:
    rel: str
    out: Path | None
    orig: Path | None
    analysis: dict = field(default_factory=dict)  # detections on the original (cached)
    check: dict = field(default_factory=dict)  # per face: hidden in the output? (cached by output stat)
    check_done: bool = False

    @property
    def video(self) -> bool:
        return is_video_path(self.rel)


class ReviewSet:
    """The images under review and everything the page can do to them. Thread-safe."""

    def __init__(self, out_root: str | os.PathLike, originals: str | os.PathLike, config: AnonymizerConfig,
                 settings: ReviewSettings | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False, background: bool = False, run: RunRecord | None = None):
        """Pair OUT with IN and check every image, now (default) or, with ``background``, in a
        thread started by ``start_checking`` while the page is already served. ``run``: the
        anonymize run's report (regions per output, files given), when there is one."""
        self.out_root = Path(out_root).resolve()
        self.in_root = Path(originals).resolve()
        if not self.out_root.is_dir():
            raise UsageError(f"{out_root}: no such folder (the anonymized output to review)")
        if not self.in_root.is_dir():
            raise UsageError(f"{originals}: no such folder (--originals must be the input folder)")
        if self.out_root == self.in_root:
            raise UsageError("OUT and --originals are the same folder: an in-place run has no originals to review")
        self.config = config
        self.run = run
        self.settings = settings or ReviewSettings()
        self.anonymizer = Anonymizer.from_config(config)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(self.out_root)
        if _inside(self.cache_dir.resolve(), self.out_root) and not self.cache_dir.name.startswith("."):
            raise UsageError(f"{cache_dir}: the cache must not be a visible folder inside OUT")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self._lock = threading.RLock()  # state, cache and files
        self._detect_lock = threading.Lock()  # detectors (dlib, yuface) are not known to be thread-safe
        # Called after each recorded change with (rel, record): the dataset manifest can hook in here.
        self.listeners: list[Callable[[str, dict], None]] = []
        self._detectors: dict[str, Any] = {}
        self._second_names = self._pick_second()
        self.threshold: float | None = None
        self._detector("main")  # bad detector names or parameters fail here, before serving
        self.state = self._load_state()
        self.refused: list[str] = []
        self.items = self._discover()
        self._cache = self._load_cache()
        self._thread: threading.Thread | None = None
        self._frames: dict = {}  # recent decoded video frames (JPEG bytes), memory only
        self.manifest = self._load_manifest()
        self._restore_cached()
        if not background:
            self.analyse_all()

    # set-up -------------------------------------------------------------
    def _pick_second(self) -> list[str]:
        from ..detect import DETECTORS

        names: list[str] = []
        for name in self.settings.second:
            if name in ("none", ""):
                continue
            if name == "auto":
                for cand in ("yunet", "dlib-hog"):
                    try:
                        DETECTORS.create(cand, {})
                    except FaceveilError:
                        continue
                    if cand != self.config.detector:
                        names.append(cand)
                        break
                continue
            DETECTORS.get(name)  # unknown names fail here, as a usage error
            names.append(name)
        return [n for n in dict.fromkeys(names) if n != self.config.detector]

    def _detector(self, key: str):
        """The main detector at a lowered threshold ('main') or a second detector by name."""
        if key not in self._detectors:
            from ..detect import get_detector

            if key == "main":
                params = dict(self.config.detector_params)
                probe = get_detector(self.config.detector, params)
                self.threshold = getattr(probe.params, "threshold", None)
                if hasattr(probe, "detect_candidates"):  # kept faces and weaker candidates from one run
                    self._detectors[key] = probe
                    return probe
                if self.threshold is not None and self.threshold > 0:
                    params["threshold"] = self.threshold * self.settings.near
                self._detectors[key] = get_detector(self.config.detector, params)
            else:
                self._detectors[key] = get_detector(key, {})
        return self._detectors[key]

    def _discover(self) -> dict[str, Item]:
        outs, ins = _list_images(self.out_root), _list_images(self.in_root)
        items: dict[str, Item] = {}
        for rel in sorted(set(outs) | set(ins)):
            out, orig = outs.get(rel), ins.get(rel)
            # A link leading out of its root would let the page serve (or Apply overwrite) a foreign file.
            if (out is not None and not _inside(out.resolve(), self.out_root)) or (
                    orig is not None and not _inside(orig.resolve(), self.in_root)):
                self.refused.append(rel)
                continue
            items[rel] = Item(rel, out, orig)
        return items

    def _load_state(self) -> dict:
        path = self.out_root / REVIEW_FILE
        state: dict = {}
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise FaceveilError(f"{path}: cannot read the saved review ({exc}); move it away to start afresh")
        else:
            state = _old_state(self.out_root / OLD_REVIEW_FILE)
        saved = state.get("config")
        now = self.anonymizer.describe()
        if isinstance(saved, dict) and not _same_settings(saved, now):
            print(f"faceveil: warning: {path} was made with other settings ({saved.get('method')}, "
                  f"{saved.get('method_params')}); Apply uses the current ones ({now['method']}, "
                  f"{now['method_params']})", file=sys.stderr)
        state.setdefault("items", {})
        state.update({"faceveil": __version__, "format": FORMAT, "originals": str(self.in_root), "config": now})
        return state

    def _load_manifest(self) -> dict[str, dict] | None:
        """For a dataset output (OUT/manifest.jsonl): the latest image entry by its path under OUT."""
        from ..dataset import MANIFEST
        from ..io.manifest import read_manifest

        path = self.out_root / MANIFEST
        if not path.is_file():
            return None
        entries, _ = read_manifest(path)
        return {e["output"]: e for e in entries if e.get("kind") == "image" and e.get("output")}

    def _manifest_apply(self, rel: str, entry: dict, dst: Path, regions, manual, removed) -> None:
        """Append the reviewed image to the manifest (append-only, fsynced), so that `dataset verify`
        passes and a resumed `dataset anonymize` skips it (same job key, new output hash)."""
        from ..dataset import MANIFEST
        from ..io.manifest import ManifestWriter, sha256_file

        new = {**entry, "output_sha256": sha256_file(dst), "regions": regions, "anonymized_regions": len(regions),
               "reviewed": True, "manual": manual, "removed": removed, "faceveil": __version__,
               "time": _now()}
        with ManifestWriter(self.out_root / MANIFEST) as w:
            w.append(new)
        self.manifest[rel] = new

    def _check_manifest_config(self, rel: str, entry: dict) -> None:
        if not _same_settings(entry, self.anonymizer.describe()):
            raise FaceveilError(f"{rel}: the dataset was anonymized with other settings ({entry.get('method')} "
                                f"{entry.get('method_params')}); start the review without method options "
                                "(it then takes them from OUT/manifest.jsonl)")

    def _cache_path(self) -> Path:
        return self.cache_dir / "analysis.json"

    def _load_cache(self) -> dict:
        try:
            return json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return {}

    def _config_key(self) -> str:
        c = self.config
        key = json.dumps([c.detector, c.detector_params, self._second_names, dataclasses.asdict(self.settings)],
                         sort_keys=True, default=str)
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    # analysis -----------------------------------------------------------
    def analyse_all(self) -> None:
        from ..progress import tqdm

        todo = [i for i in self.items.values() if not i.check_done]
        last_save = time.monotonic()
        for item in tqdm(todo, desc="review: checking", unit="file", disable=not self.progress, file=sys.stderr):
            self._analyse(item, save=False)
            if time.monotonic() - last_save > 10:  # a long first run keeps its progress if stopped
                self._save_cache()
                last_save = time.monotonic()
        self._save_cache()

    def _restore_cached(self) -> None:
        """Items whose original, output and settings are unchanged since the last run are ready at once."""
        config_key = self._config_key()
        for item in self.items.values():
            entry = self._cache.get(item.rel)
            orig_key = f"{_stat_key(item.orig)}:{config_key}"
            out_key = (f"{_stat_key(item.out)}:{_stat_key(item.out and videos.record_path(item.out))}:{orig_key}"
                       if item.video else f"{_stat_key(item.out)}:{orig_key}")
            if entry and entry.get("orig_key") == orig_key and entry.get("out_key") == out_key:
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True

    def start_checking(self) -> None:
        """Check the images in a background thread; the page shows what is checked so far."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.analyse_all, name="faceveil-review-check", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def checking(self) -> int:
        return sum(not i.check_done for i in self.items.values())

    def _save_cache(self) -> None:
        with self._lock:
            text = json.dumps(self._cache)
        write_bytes_atomic(self._cache_path(), text.encode())

    def _analyse(self, item: Item, save: bool = True) -> None:
        """Detections on the original (cached by its stat and the settings), then the output check
        (cached by the output's stat). The slow part runs outside the lock."""
        with self._lock:
            entry = dict(self._cache.get(item.rel, {}))
        orig_key = f"{_stat_key(item.orig)}:{self._config_key()}"
        if item.video:  # tracks come from the run's record; the check depends on original and output together
            out_key = f"{_stat_key(item.out)}:{_stat_key(item.out and videos.record_path(item.out))}:{orig_key}"
            if entry.get("out_key") != out_key:
                with self._detect_lock:
                    dets = [(n, self._detector(n)) for n in self._second_names]
                    try:  # resolved and checked now, as every read
                        orig = self.file("orig", item.rel) if item.orig is not None and self.in_run(item) else None
                        out = self.file("out", item.rel) if item.out is not None else None
                        analysis = videos.analyse(orig, out, dets, self.settings.match_iou, self.out_root)
                    except PermissionError:
                        analysis = {**videos.analyse(None, None, [], 0),
                                    "error": f"{item.rel}: refused, now a link leading out of OUT or IN"}
                    entry = {"orig_key": orig_key, "out_key": out_key, "check": {}, "analysis": analysis}
            with self._lock:
                self._cache[item.rel] = entry
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True
            if save:
                self._save_cache()
            return
        if entry.get("orig_key") != orig_key:
            with self._detect_lock:
                entry = {"orig_key": orig_key, "analysis": self._detect(item)}
        out_key = f"{_stat_key(item.out)}:{orig_key}"
        if entry.get("out_key") != out_key:
            entry["out_key"], entry["check"] = out_key, self._check(item, entry["analysis"])
        with self._lock:
            # An Apply may have rewritten the output meanwhile: then its own check is the newer one.
            if out_key == f"{_stat_key(item.out)}:{orig_key}":
                self._cache[item.rel] = entry
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True
        if save:
            self._save_cache()

    def _detect(self, item: Item) -> dict:
        if item.orig is None or not self.in_run(item):
            return {"error": None, "size": None, "main": [], "near": [], "second": []}
        try:
            rgb = read_image(self.file("orig", item.rel)).rgb
            det = self._detector("main")
            if hasattr(det, "detect_candidates"):  # e.g. multiscale: its score cut depends on the box size
                main, near = det.detect_candidates(rgb, det.floor * self.settings.near)
                near = near[near.score >= det.cut(near) * self.settings.near]
            else:
                found = det.detect(rgb)
                thr = self.threshold if self.threshold is not None else -np.inf
                main, near = found[found.score >= thr], found[found.score < thr]
            if len(near) and len(main):  # under-threshold duplicates of a kept face are not news
                near = near[box_iou(near.xyxy, main.xyxy).max(axis=1) < self.settings.match_iou]
            second = []
            for name in self._second_names:
                d = self._detector(name).detect(rgb)
                if len(d) and len(main):
                    d = d[box_iou(d.xyxy, main.xyxy).max(axis=1) < self.settings.match_iou]
                second += [{"box": b, "score": float(s), "source": name} for b, s in zip(_boxes(d), d.score)]
            return {"error": None, "size": [int(rgb.shape[1]), int(rgb.shape[0])],
                    "main": [{"box": b, "score": float(s)} for b, s in zip(_boxes(main), main.score)],
                    "near": [{"box": b, "score": float(s), "source": "near"} for b, s in zip(_boxes(near), near.score)],
                    "second": second}
        except FaceveilError as exc:
            return {"error": str(exc), "size": None, "main": [], "near": [], "second": []}
        except PermissionError:
            return {"error": f"{item.rel}: refused, the original is now a link leading out of IN",
                    "size": None, "main": [], "near": [], "second": []}

    def _check(self, item: Item, analysis: dict) -> dict:
        """For every face found on the original: is it hidden in the output?"""
        if item.out is None or item.orig is None or analysis.get("error"):
            return {}
        try:
            out_path = self.file("out", item.rel)
            out = read_image(out_path).rgb
            orig = read_image(self.file("orig", item.rel)).rgb
            if out.shape != orig.shape:
                return {"size_mismatch": [list(orig.shape[1::-1]), list(out.shape[1::-1])]}
            base = reencoded_like(orig, out_path, self.config.jpeg_quality)
        except FaceveilError as exc:
            return {"error": str(exc)}
        except PermissionError:
            return {"error": f"{item.rel}: refused, now a link leading out of OUT or IN"}
        except (OSError, ValueError) as exc:
            return {"error": f"{item.out}: cannot check ({exc})"}
        result = {}
        for group in ("main", "near", "second"):
            result[group] = [bool(mse_inside(orig, out, f["box"]) > HIDDEN_RATIO * mse_inside(orig, base, f["box"])
                                  + HIDDEN_FLOOR) for f in analysis[group]]
        return result

    # views --------------------------------------------------------------
    def _manual(self, rel: str) -> dict:
        return self.state["items"].get(rel, {})

    def flags(self, item: Item) -> list[dict]:
        a, c, rec = item.analysis, item.check, self._manual(item.rel)
        flags: list[dict] = []
        if item.out is None:
            flags.append({"kind": "failed", "text": "no output: the file failed or was skipped" + (
                "" if self.in_run(item) else " (its original is not shown: no report of the run names it)")})
        if item.orig is None:
            flags.append({"kind": "no-original", "text": "no original found: cannot compare or re-anonymize"})
        if a.get("error"):
            flags.append({"kind": "error", "text": a["error"]})
        if c.get("error"):
            flags.append({"kind": "error", "text": c["error"]})
        if item.video:
            return flags + videos.flags(a)
        if c.get("size_mismatch"):
            flags.append({"kind": "size", "text": "output size differs from the original: cannot check"})
        removed = rec.get("removed", [])
        # One flag per kind, with its boxes: a crowd gives one line "23 faces ...", not 23 lines.
        found: dict[str, list] = {"unhidden": [], "second": [], "near": [], "small": []}
        for group, kind in (("main", "unhidden"), ("second", "second"), ("near", "near")):
            for face, hidden in zip(a.get(group, []), c.get(group, [])):
                if not hidden and not (group == "main" and _matches(face["box"], removed)):
                    found[kind].append(face)
        for face in a.get("main", []):
            b = face["box"]
            if min(b[2] - b[0], b[3] - b[1]) < self.settings.small_face and not _matches(b, removed):
                found["small"].append(face)
        for kind, faces in found.items():
            if not faces:
                continue
            n = len(faces)
            many = f"{n} faces" if n > 1 else "a face"
            best = max(f["score"] for f in faces)
            sources = ", ".join(sorted({f.get("source", self.config.detector) for f in faces}))
            text = {"unhidden": f"{many} found by {self.config.detector} (best {best:.2f}) but unchanged in the output",
                    "second": f"{many} found by {sources} (best {best:.2f}), not hidden in the output",
                    "near": f"{many} just under the threshold (best {best:.2f}), not hidden",
                    "small": f"{many} smaller than {self.settings.small_face} px"}[kind]
            flags.append({"kind": kind, "text": text, "count": n, "boxes": [f["box"] for f in faces]})
        return flags

    def item_json(self, item: Item) -> dict:
        a, rec = item.analysis, self._manual(item.rel)
        flags = self.flags(item)
        if item.video:
            return {
                "path": item.rel, "kind": "video", "size": a.get("size"), "frames": a.get("frames", 0),
                "fps": a.get("fps"), "hold": a.get("hold"), "tracks": a.get("tracks", []),
                "failed_frames": a.get("failed", []), "second": a.get("second", []), "samples": a.get("samples", []),
                "has_record": bool(a.get("record")), "has_output": item.out is not None,
                "has_original": item.orig is not None and self.in_run(item), "version": _stat_key(item.out),
                "faces": [],
                "suggestions": [], "manual": rec.get("manual", []), "removed": [],
                "applied_at": rec.get("applied_at"), "approved": bool(rec.get("approved")), "flags": flags,
                "checked": item.check_done, "risk": sum(RISK.get(f["kind"], 10) for f in flags),
            }
        removed = rec.get("removed", [])
        faces = [{**f, "source": self.config.detector, "removed": _matches(f["box"], removed)} for f in a.get("main", [])]
        hidden = {g: item.check.get(g, []) for g in ("near", "second")}
        suggestions = [{**f, "hidden": h} for g in ("near", "second") for f, h in zip(a.get(g, []), hidden[g])]
        return {
            "path": item.rel, "kind": "image",  # video items (tracks, frame strips) will add their own fields
            "size": a.get("size"), "has_output": item.out is not None,
            "has_original": item.orig is not None and self.in_run(item),
            "version": _stat_key(item.out), "faces": faces, "suggestions": suggestions,
            "manual": rec.get("manual", []), "removed": removed, "applied_at": rec.get("applied_at"),
            "approved": bool(rec.get("approved")), "flags": flags, "checked": item.check_done,
            "risk": sum(RISK.get(f["kind"], 10) for f in flags),
        }

    def listing(self) -> dict:
        with self._lock:
            items = [self.item_json(i) for i in self.items.values()]
        items.sort(key=lambda d: (-d["risk"], -sum(f.get("count", 1) for f in d["flags"]), d["path"]))
        flagged = [d for d in items if d["flags"]]
        return {
            "items": items,
            "summary": {"total": len(items), "flagged": len(flagged),
                        "flagged_remaining": sum(not d["approved"] for d in flagged),
                        "approved": sum(d["approved"] for d in items), "refused": len(self.refused),
                        "checking": self.checking},
            "config": self.state["config"], "last": self.state.get("last"),
            "second_detectors": self._second_names, "threshold": self.threshold,
        }

    # files --------------------------------------------------------------
    def file(self, which: str, rel: str) -> Path:
        """The output or original file of a known item, resolved and checked now; unknown: KeyError,
        outside its root or not part of the run: PermissionError. Every read goes through here."""
        item = self.items.get(rel)
        if item is None or which not in ("out", "orig"):
            raise KeyError(rel)
        path, root = (item.out, self.out_root) if which == "out" else (item.orig, self.in_root)
        if path is None:
            raise KeyError(rel)
        if which == "orig" and not self.in_run(item):
            raise PermissionError(rel)
        return self._checked(path, root, rel)

    @staticmethod
    def _checked(path: Path, root: Path, rel: str) -> Path:
        real = path.resolve()
        # Checked at the time of use: a link may have been swapped in since start-up.
        if not _inside(real, root) or not real.is_file():
            raise PermissionError(rel)
        return real

    def in_run(self, item: Item) -> bool:
        """Whether the anonymize run took this original: it has an output, or the run's report or
        manifest names it. Other files in IN (never given to the run) are not shown or used."""
        if item.out is not None:
            return True
        if self.run is not None and item.rel in self.run.inputs:
            return True
        return self.manifest is not None and item.rel in self.manifest

    def _own(self, name: str) -> Path:
        """A faceveil file under OUT/.faceveil; refused when that folder is a link or a file."""
        d = self.out_root / OWN_DIR
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise FaceveilError(f"{d}: not faceveil's own folder (a link or a file); move it away")
        return self.out_root / name

    def thumbnail(self, rel: str, size: int = 320) -> Path:
        """A JPEG thumbnail of the OUTPUT (anonymized pixels only), made on first request and cached."""
        src = self.file("out", rel)
        key = hashlib.sha1(f"{rel}:{_stat_key(src)}:{size}".encode()).hexdigest()
        path = self.cache_dir / "thumbs" / f"{key}.jpg"
        if not path.is_file() and self.items[rel].video:  # the first frame with a face, else the first
            tr = self.items[rel].analysis.get("tracks") or [{"start": 0}]
            write_bytes_atomic(path, videos.frame_jpeg(src, tr[0]["start"], size))
        if not path.is_file():
            from PIL import Image

            img = Image.fromarray(read_image(src).rgb)
            img.thumbnail((size, size))
            write_image(path, np.asarray(img), None, False, 85)
        return path

    def frame(self, which: str, rel: str, index: int, width: int | None = None) -> bytes:
        """Frame ``index`` of a video item as JPEG bytes, kept in memory only (a few recent ones)."""
        item = self.items.get(rel)
        if item is None or not item.video:
            raise KeyError(rel)
        src = self.file(which, rel)
        key = (which, rel, _stat_key(src), index, width)
        with self._lock:
            if key in self._frames:
                return self._frames[key]
        data = videos.frame_jpeg(src, index, width)
        with self._lock:
            self._frames[key] = data
            while len(self._frames) > 256:
                self._frames.pop(next(iter(self._frames)))
        return data

    def frame_boxes(self, rel: str, index: int) -> dict:
        """The boxes the run (and Apply) anonymized on one frame of a video, from its track record."""
        item = self.items.get(rel)
        if item is None or not item.video or item.out is None:
            raise KeyError(rel)
        rec = videos.load_record(self.file("out", rel), self.out_root)
        if rec is None or not 0 <= index < len(rec["frames"]):
            raise KeyError(index)
        return {"frame": index, "boxes": [{"box": b[:4], "track": b[4], "kind": b[5]} for b in rec["frames"][index]],
                "error": rec.get("errors", {}).get(str(index))}

    def _apply_video(self, item: Item, manual) -> dict:
        out = self.file("out", item.rel) if item.out is not None else None
        rec = videos.load_record(out, self.out_root) if out is not None else None
        if rec is None or not rec.get("config"):
            raise FaceveilError(f"{item.rel}: no usable track record beside the output (anonymize it again with this "
                                "faceveil): Apply needs the run's settings")
        w, h = rec["size"]
        ranges = videos.clean_ranges(manual, w, h, len(rec["frames"]))
        result = videos.apply(self.file("orig", item.rel), out, rec, ranges)
        self._record(item.rel, manual=ranges, applied_at=_now(), approved=False, approved_at=None, **result)
        self._analyse(item)
        return self.item_json(item)

    # edits --------------------------------------------------------------
    def _record(self, rel: str, **changes) -> dict:
        rec = self.state["items"].setdefault(rel, {})
        rec.update(changes)
        self.state["last"] = rel
        self.state["updated"] = _now()
        write_bytes_atomic(self._own(REVIEW_FILE), json.dumps(self.state, indent=1).encode())
        for listener in self.listeners:
            listener(rel, rec)
        return rec

    def _keep_run_changes(self, orig: np.ndarray, new: np.ndarray, old_path: Path, removed: list) -> np.ndarray:
        """``new`` with the current output's pixels wherever the run changed the original: a region the
        review does not know of (no record of the run, another shape, scale or strength, a box our
        detector misses) stays exactly as hidden as the run left it; ``new`` only adds what the run left
        untouched. Removed boxes are the reviewer's decision: not kept. Fails closed: an output that
        cannot be compared refuses the Apply."""
        try:
            old = read_image(old_path).rgb
            if old.shape != orig.shape:
                raise FaceveilError(f"{old_path}: its size differs from the original's; Apply cannot keep what "
                                    "the run hid (anonymize it again instead)")
            base = reencoded_like(orig, old_path, self.config.jpeg_quality)
        except (OSError, ValueError) as exc:
            raise FaceveilError(f"{old_path}: cannot compare with the original ({exc})") from None
        lossless = np.array_equal(base, orig)
        changed = np.abs(old.astype(np.int16) - base.astype(np.int16)).max(axis=2) > (0 if lossless else
                                                                                        KEEP_TOLERANCE)
        keep = changed
        if removed:
            keep &= ~(self.anonymizer.compositor.mask(Detections.from_boxes(removed), orig.shape) > 0)
        if not keep.any():
            return new
        out = new.copy()
        out[keep] = old[keep]
        return out

    def approve(self, rel: str, approved: bool = True) -> dict:
        with self._lock:
            if rel not in self.items:
                raise KeyError(rel)
            self._record(rel, approved=bool(approved), approved_at=_now() if approved else None)
            return self.item_json(self.items[rel])

    def apply(self, rel: str, manual: list, removed: list) -> dict:
        """Re-anonymize the ORIGINAL with the main detections (minus removed) plus manual boxes.

        Same method, parameters, region and seed key as ``faceveil anonymize IN -o OUT``,
        so pixels outside the changed regions come out as before. Written atomically over the output.
        """
        with self._lock:
            item = self.items.get(rel)
            if item is None:
                raise KeyError(rel)
            if item.orig is None:
                raise FaceveilError(f"{rel}: no original to re-anonymize")
            if not self.in_run(item):
                raise FaceveilError(f"{rel}: not part of the anonymize run (no output, and no report naming it); "
                                    "start the review with --from-report to redo the run's failed files")
            if not item.check_done:  # not reached by the background check yet
                self._analyse(item, save=False)
            if item.video:
                return self._apply_video(item, manual)
            # Resolved and checked now: IN/x may have become a link to a file elsewhere since start-up.
            img = read_image(self.file("orig", rel))
            old_path = self.file("out", rel) if item.out is not None else None
            dst = old_path if old_path is not None else self.out_root / rel
            if not _inside(dst.parent.resolve(), self.out_root):
                raise PermissionError(rel)
            h, w = img.rgb.shape[:2]
            manual_boxes = _clean_boxes(manual, w, h)
            removed_boxes = _clean_boxes(removed, w, h, min_size=0)
            entry = self.manifest.get(rel) if self.manifest is not None else None
            if entry is not None:
                # A dataset output: redo exactly the run's regions (labels and detections), not our detections.
                if "regions" not in entry:
                    raise FaceveilError(f"{rel}: its manifest entry has no regions (an older faceveil): "
                                        "run `faceveil dataset anonymize` again with this version first")
                self._check_manifest_config(rel, entry)
                base = entry["regions"]
                key = entry["path"]  # the dataset seeds each image by its path in the labels
            else:
                base = [f["box"] for f in item.analysis.get("main", [])]
                if self.run is not None and rel in self.run.regions:
                    # The regions the run hid first, then any face our detector finds that none of them covers.
                    recorded = self.run.regions[rel]
                    base = recorded + [b for b in base if not _matches(b, recorded, iou=0.5)]
                # The batch seeds each file by "<input folder name>/<rel>"; the same key gives the same noise.
                key = f"{self.in_root.name}/{rel}"
            kept = [b for b in base if not _matches(b, removed_boxes)]
            dets = Detections.merge([
                Detections.from_boxes(kept, None, None, self.config.detector),
                Detections.from_boxes(manual_boxes, None, None, "manual")])
            out = self.anonymizer.anonymize(img.rgb, dets, self.anonymizer.rng_for(key))
            if old_path is not None:
                out = self._keep_run_changes(img.rgb, out, old_path, removed_boxes)
            deep_region = self.anonymizer.compositor.mask(dets, out.shape) > 0 if img.deep is not None else None
            if entry is not None:
                # A dataset output keeps the original's stored pixel frame and orientation tag (its labels
                # address stored pixels), and is read back before the manifest records it, as dataset mode does.
                from ..dataset import write_checked

                write_checked(str(dst), out, img, int(entry.get("orientation", 1)), self.config.keep_metadata,
                              self.config.jpeg_quality, deep_region)
            else:
                write_image(dst, out, img, self.config.keep_metadata, self.config.jpeg_quality, deep_region)
            item.out = dst
            if entry is not None:  # before review.json: the manifest is what `dataset verify` trusts
                self._manifest_apply(rel, entry, dst, [list(map(float, b)) for b in dets.xyxy], manual_boxes,
                                     removed_boxes)
            self._record(rel, manual=manual_boxes, removed=removed_boxes, applied_at=_now(),
                         faces=len(dets), approved=False, approved_at=None)
            self._analyse(item)
            return self.item_json(item)


def _old_state(path: Path) -> dict:
    """A review saved by faceveil 0.1.0 at OUT/review.json, if that file is one (else a user's file: {})."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 << 20:
            return {}
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    if isinstance(state, dict) and "faceveil" in state and "format" in state and isinstance(state.get("items"), dict):
        return state
    return {}


def _same_settings(a: dict, b: dict) -> bool:
    """Same method, parameters, region and seed, whichever form a tuple was written in (list or text)."""
    def key(d: dict) -> tuple:
        return (d.get("method"), plain_params(d.get("method_params")), plain_params(d.get("region")), d.get("seed"))

    return key(a) == key(b)


def _matches(box, boxes, iou: float = 0.9) -> bool:
    return bool(len(boxes)) and float(box_iou(np.asarray(box), np.asarray(boxes)).max()) >= iou


def _clean_boxes(boxes, w: int, h: int, min_size: float = 2.0) -> list[list[float]]:
    """Boxes from the page as [x1, y1, x2, y2] floats inside the image; anything else is a bad request."""
    out = []
    if not isinstance(boxes, list):
        raise ValueError("boxes must be a list")
    for b in boxes:
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
            raise ValueError(f"bad box {_short(b)}: expected [x1, y1, x2, y2]")
        x1, x2 = sorted((min(max(float(b[0]), 0), w), min(max(float(b[2]), 0), w)))
        y1, y2 = sorted((min(max(float(b[1]), 0), h), min(max(float(b[3]), 0), h)))
        if not all(np.isfinite([x1, y1, x2, y2])):
            raise ValueError(f"bad box {_short(b)}")
        if x2 - x1 >= min_size and y2 - y1 >= min_size:
            out.append([x1, y1, x2, y2])
    return out


def _short(value, limit: int = 60) -> str:
    """A value from a request, for a one-line message: its repr, cut short."""
    try:
        text = repr(value)
    except RecursionError:
        text = "<nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "..."


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
