"""The review set: output/original pairs checked against detections on the original, cached, served.

- Items are image files found under OUT, plus originals under IN with no output
  (a failed file; with the run's report, only those it names). An output pairs with the input the run's
  report names for it, else OUT/rel with IN/rel, the tree ``faceveil anonymize IN -o OUT`` writes
  (pairs.py); a pair nothing proves is refused (_pair_problem).
- The check: detections on the ORIGINAL (main detector run once at a lowered
  threshold, then split; an independent second detector) tested against the
  OUTPUT's pixels (checks.py): a face whose pixels the output left unchanged is a leak.
  What the page shows of it (flags, risk) is flags.py; videos are videos.py.
- Edits (manual boxes, removed boxes, approvals) and Apply are edits.py; they live in
  OUT/.faceveil/review.json: faceveil's own files under OUT keep to that one hidden folder,
  a name no input file is read from, so a user's or a dataset's own review.json is never
  overwritten. Stopping and restarting resumes.
- Detection results (boxes, never pixels) go to a cache folder outside OUT (default: the user cache dir),
  so nothing extra lands among the files a user publishes. Thumbnails of outputs are kept in memory only:
  on disk, the thumbnail of an output with a missed face outlived the Apply that hid it (an audit).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..dataset.config import old_state
from ..detect import DETECTORS, get_detector
from ..detect.base import detection_view
from ..detections import Detections, box_iou
from ..errors import FaceveilError, UsageError, check_folder, one_line
from ..io.atomic import write_bytes_atomic
from ..io.images import read_image
from ..io.inputs import read_folder, refuse_unreachable
from ..io.manifest import read_manifest, sample_sha256, sha256_file
from ..pipeline import Anonymizer, AnonymizerConfig
from ..progress import tqdm
from ..video.record import read_record, tracks_path
from . import videos
from .checks import KEEP_TOLERANCE, hidden, mse_inside, reencoded_like
from .compare import CompareMixin
from .edits import EditsMixin, Stale
from .flags import FlagsMixin
from .pairs import OLD_REVIEW_FILE, OWN_DIR, REVIEW_FILE, Item, inside, list_images, page_name, stat_key
from .runs import RunRecord, same_settings

FORMAT = 1
# How the page marks a video's boxes (review.js): detected, held (by the tracker), manual.
_PAGE_KINDS = {"detected": "d", "held": "h", "backfilled": "h", "manual": "m", "label": "d"}
def _not_read(orig: Path, sha: str | None) -> str | None:
    """Why ``orig`` is not the file the run read, by the SHA-256 its report recorded (None: it is, or none recorded)."""
    if sha is None or sha == sha256_file(orig):
        return None
    return f"its original {orig} is not the file the run read (not the report's SHA-256): changed since?"


# An output whose pixels away from all faces differ from its same-path original on more than this share is
# not made from it (another photo of the same size; a right pair differs there only by codec noise near faces).
PAIR_MISMATCH = 0.5
MAX_THUMBS = 4096  # thumbnails kept in memory (~15 kB each)
# part of the cache key: analyses cached by earlier versions are redone, never misread (4: on the detection view;
# 5: the pair check counts the reviewer's applied boxes as faces, so a check cached before no longer refuses Apply)
ANALYSIS_FORMAT = 5


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


def _faces(d: Detections, by: str) -> list[dict]:
    """Faces as the analysis keeps them: the one JSON form (exact coordinates: Apply reproduces the run),
    each with the name of what found it."""
    return [{**f, "by": by} for f in d.to_dict()["faces"]]


class ReviewSet(FlagsMixin, EditsMixin, CompareMixin):
    """The images under review and everything the page can do to them. Thread-safe."""

    def __init__(self, out_root: str | os.PathLike, originals: str | os.PathLike, config: AnonymizerConfig,
                 settings: ReviewSettings | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = False, background: bool = False, run: RunRecord | None = None):
        """Pair OUT with IN and check every image, now (default) or, with ``background``, in a
        thread started by ``start_checking`` while the page is already served. ``run``: the
        anonymize run's report (regions per output, files given), when there is one."""
        refuse_unreachable(out_root, originals, cache_dir)  # one line, not the system's traceback at the first look
        self.out_root = Path(out_root).resolve()
        self.in_root = Path(originals).resolve()
        check_folder(out_root, "the anonymized output to review")  # a file given for either: "not a folder"
        check_folder(originals, "--originals must be the input folder")
        if self.out_root == self.in_root:
            raise UsageError("OUT and --originals are the same folder: an in-place run has no originals to review")
        for root in (out_root, originals):  # one that cannot be read: named (was a traceback, or "no original there")
            read_folder(root)
        self.config = config
        self.run = run
        self.settings = settings or ReviewSettings()
        self.anonymizer = Anonymizer.from_config(config)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(self.out_root)
        if inside(self.cache_dir.resolve(), self.out_root) and not self.cache_dir.name.startswith("."):
            raise UsageError(f"{cache_dir}: the cache must not be a visible folder inside OUT")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file of that name, a read-only place: a traceback before
            raise UsageError(f"{one_line(self.cache_dir)}: cannot make the cache folder "
                             f"({'a file is there' if isinstance(exc, FileExistsError) else exc.strerror or exc})") \
                from None
        self.progress = progress
        self._lock = threading.RLock()  # state, cache and files
        self._detect_lock = threading.Lock()  # detectors (dlib, yuface) are not known to be thread-safe
        self._detectors: dict[str, Any] = {}
        self._second_names = self._pick_second()
        self.threshold: float | None = None
        self._detector("main")  # bad detector names or parameters fail here, before serving
        self.state = self._load_state()
        self.refused: dict[str, str] = {}  # items not listed, and why
        # a dataset output: its image entries by path under OUT, and the images its labels name
        self.manifest, self.named = self._load_manifest()
        self.items = self._discover()
        outs = [i for i in self.items.values() if i.out is not None]
        if (outs and self.manifest is not None and not any(i.orig is not None for i in outs)
                and any((self.in_root.parent / i.out.relative_to(self.out_root)).is_file() for i in outs)):
            # a dataset output mirrors the dataset folder (OUT/images/...): --originals ds/images means ds
            self.in_root = self.in_root.parent
            self.items = self._discover()
            outs = [i for i in self.items.values() if i.out is not None]
        if outs and not any(i.orig is not None for i in outs):  # each listed as "no original": say what is wrong
            hint = (" for a dataset output, the dataset folder that holds the images folder and the labels"
                    if self.manifest is not None else " the folder the run read (its input)")
            raise UsageError(f"{originals}: none of the {len(outs)} outputs in {out_root} has its original there "
                             f"(e.g. {outs[0].rel}); give{hint}")
        from ..io.atomic import remove_stale_temporaries

        # An Apply stopped by SIGKILL (or a second Ctrl-C) leaves its temporary file: removed when its writer is gone.
        self.stale = remove_stale_temporaries({p.parent for p in map(self.out_path, self.items.values()) if p}
                                              | {self.out_root / OWN_DIR})
        self._cache = self._load_cache()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._frames: dict = {}  # recent decoded video frames (JPEG bytes), memory only
        self._records: dict = {}  # the video record frame_boxes read last, by (rel, stat keys), memory only
        self._thumbs: dict = {}  # (rel, size) -> (the output's stat_key, JPEG bytes), memory only
        shutil.rmtree(self.cache_dir / "thumbs", ignore_errors=True)  # earlier versions kept them on disk
        self._restore_cached()
        if not background:
            self.analyse_all()

    @property
    def second_detectors(self) -> list[str]:
        """The independent detectors the check runs (none: only the main detector's own flags)."""
        return list(self._second_names)

    # set-up -------------------------------------------------------------
    def _pick_second(self) -> list[str]:
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
        outs, ins = list_images(self.out_root, self.refused), list_images(self.in_root, self.refused)
        # An output's original is the input the run's report names for it; else the file at the same path in IN
        # (the tree `faceveil anonymize IN -o OUT` writes), which the check then has to prove (pair_problem).
        pairs = {rel: src for rel, src in (self.run.originals if self.run is not None else {}).items() if rel in outs}
        items: dict[str, Item] = {}
        for rel in sorted(set(outs) | (set(ins) - set(pairs.values()))):
            out, orig = outs.get(rel), ins.get(pairs.get(rel, rel))
            if out is None and self.named is not None and rel not in self.named:
                continue  # an image of the dataset folder its labels do not name: the run never writes it
            if out is None and pairs and rel not in self.run.inputs:
                # the report of the run that wrote OUT's files names every file it was given (failed ones too)
                continue
            # A link leading out of its root would let the page serve (or Apply overwrite) a foreign file.
            if (out is not None and not inside(out.resolve(), self.out_root)) or (
                    orig is not None and not inside(orig.resolve(), self.in_root)):
                self.refused[rel] = "refused, a link leading out of OUT or IN"
                continue
            items[rel] = Item(rel, out, orig)
        self._list_failed(items, ins)
        return items

    def _list_failed(self, items: dict[str, Item], ins: dict[str, Path]) -> None:
        """List every input the run's report says failed, flagged (self.failed: item -> the report's error). One
        whose path under IN is an output the report pairs with another input (`anonymize IN/sub IN/a/x.jpg`: the
        folder's a/x.jpg goes to OUT/a/x.jpg, IN/a/x.jpg to OUT/x.jpg) was hidden behind that output's item:
        it gets an item of its own, "(failed input) a/x.jpg" (no listed file's page name), whose Apply is refused."""
        self.failed: dict[str, str] = {}
        self.failed_unlisted: dict[str, str] = {}  # failed inputs with no item: the page names them above the images
        if self.run is None:
            return
        root = one_line(self.in_root)  # the report's text and the names are printed and shown as one line each

        def unlisted(src: str, why: str) -> None:
            self.refused[src] = self.failed_unlisted[src] = why

        for src, why in self.run.failed_elsewhere.items():
            unlisted(src, f"failed in the run, not anonymized ({one_line(why)}); not under {root}: not listed")
        for src, why in self.run.failed.items():
            why = one_line(why)
            orig = ins.get(src)
            if orig is None:
                unlisted(src, f"failed in the run, not anonymized ({why}); not found in {root} now")
                continue
            key = next((k for k, i in items.items() if i.orig == orig), None)
            if key is None:
                if not inside(orig.resolve(), self.in_root):
                    unlisted(src, f"failed in the run, not anonymized ({why}); refused, a link leading out of IN")
                    continue
                key = f"(failed input) {src}" if src in items else src
                while key != src and (key in items or key in ins):
                    key = f"(failed input) {key}"
                items[key] = Item(key, None, orig)
            self.failed[key] = why

    def _load_state(self) -> dict:
        path = self.out_root / REVIEW_FILE
        state: dict = {}
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise FaceveilError(f"{path}: cannot read the saved review ({exc}); move it away to start afresh")
        else:
            state = old_state(self.out_root / OLD_REVIEW_FILE)
        saved = state.get("config")
        now = self.anonymizer.describe()
        if isinstance(saved, dict) and not same_settings(saved, now):
            print(f"faceveil: warning: {one_line(path)} was made with other settings ({saved.get('method')}, "
                  f"{saved.get('method_params')}); Apply uses the current ones ({now['method']}, "
                  f"{now['method_params']})", file=sys.stderr)
        state.setdefault("items", {})
        state.update({"faceveil": __version__, "format": FORMAT, "originals": str(self.in_root), "config": now})
        return state

    def _load_manifest(self) -> tuple[dict[str, dict] | None, set[str] | None]:
        """For a dataset output (OUT/manifest.jsonl): the latest image entry by its path under OUT, and the images
        its labels name (dataset.named_images); (None, None) for any other OUT."""
        from ..dataset import MANIFEST, named_images

        path = self.out_root / MANIFEST
        if not path.is_file():
            return None, None
        entries, _ = read_manifest(path)
        images = {page_name(e["output"]): e for e in entries if e.get("kind") == "image" and e.get("output")}
        named = named_images(entries)
        return images, None if named is None else {page_name(n) for n in named}

    def _cache_path(self) -> Path:
        return self.cache_dir / "analysis.json"

    def _load_cache(self) -> dict:
        try:
            return json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return {}

    def _config_key(self) -> str:
        c = self.config
        key = json.dumps([c.detector, c.detector_params, self._second_names, dataclasses.asdict(self.settings),
                          ANALYSIS_FORMAT],
                         sort_keys=True, default=str)
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    # analysis -----------------------------------------------------------
    def analyse_all(self) -> None:
        todo = [i for i in self.items.values() if not i.check_done]
        last_save = time.monotonic()
        for item in tqdm(todo, desc="review: checking", unit="file", disable=not self.progress, file=sys.stderr):
            if self._stopping.is_set():
                break
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
            orig_key = self._orig_key(item, config_key)
            out_key = (f"{stat_key(item.out)}:{stat_key(item.out and tracks_path(item.out))}:{orig_key}"
                       if item.video else f"{stat_key(item.out)}:{orig_key}")
            if entry and entry.get("orig_key") == orig_key and entry.get("out_key") == out_key:
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True
                item.analysed = orig_key

    def _orig_key(self, item: Item, config_key: str) -> str:
        """What an item's cached detections depend on: which original (its path, stat and the report's
        hash of it) and the settings."""
        sha = self.run.sha256.get(item.rel) if self.run is not None else None
        return f"{item.orig}:{stat_key(item.orig)}:{sha}:{config_key}"

    def start_checking(self) -> None:
        """Check the images in a background thread; the page shows what is checked so far."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.analyse_all, name="faceveil-review-check", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop before the process exits: an edit under way (a video's Apply) ends first, none starts after,
        and the background check stops after its current file; so no temporary file is left behind."""
        self._stopping.set()
        with self._lock:  # held by a running Apply
            pass
        self.wait()

    def _check_open(self) -> None:
        if self._stopping.is_set():
            raise FaceveilError("the review is stopping: nothing was changed")

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
        orig_key = self._orig_key(item, self._config_key())
        if item.video:  # tracks come from the run's record; the check depends on original and output together
            out_key = f"{stat_key(item.out)}:{stat_key(item.out and tracks_path(item.out))}:{orig_key}"
            if entry.get("out_key") != out_key:
                with self._detect_lock:
                    dets = [(n, self._detector(n)) for n in self._second_names]
                    try:  # resolved and checked now, as every read
                        orig = self.file("orig", item.rel) if item.orig is not None and self.in_run(item) else None
                        out = self.file("out", item.rel) if item.out is not None else None
                        loaded = videos.load_record(out, self.out_root)  # once, for both
                        analysis = videos.analyse(orig, out, dets, self.settings.match_iou, self.out_root, loaded)
                        check = self._video_pair(orig, loaded[0], self.run.sha256.get(item.rel) if self.run else None)
                    except PermissionError:
                        analysis = {**videos.analyse(None, None, [], 0),
                                    "error": f"{item.rel}: refused, now a link leading out of OUT or IN"}
                        check = {}
                    entry = {"orig_key": orig_key, "out_key": out_key, "check": check, "analysis": analysis}
            with self._lock:
                self._cache[item.rel] = entry
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True
                item.analysed = orig_key
            if save:
                self._save_cache()
            return
        if entry.get("orig_key") != orig_key:
            with self._detect_lock:
                entry = {"orig_key": orig_key, "analysis": self._detect(item)}
        out_key = f"{stat_key(item.out)}:{orig_key}"
        if entry.get("out_key") != out_key:
            entry["out_key"], entry["check"] = out_key, self._check(item, entry["analysis"])
        with self._lock:
            # An Apply may have rewritten the output meanwhile: then its own check is the newer one.
            if out_key == f"{stat_key(item.out)}:{orig_key}":
                self._cache[item.rel] = entry
                item.analysis, item.check, item.check_done = entry["analysis"], entry["check"], True
                item.analysed = orig_key
        if save:
            self._save_cache()

    def _detect(self, item: Item) -> dict:
        if item.orig is None or not self.in_run(item):
            return {"error": None, "size": None, "main": [], "near": [], "second": []}
        try:
            # the view the run's detector saw (Anonymizer.detect): a 1-bit photo smoothed
            rgb = detection_view(read_image(self.file("orig", item.rel)).rgb)
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
                second += _faces(d, name)
            return {"error": None, "size": [int(rgb.shape[1]), int(rgb.shape[0])],
                    "main": _faces(main, self.config.detector), "near": _faces(near, "near"),
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
            result[group] = [hidden(mse_inside(orig, out, f["box"]), mse_inside(orig, base, f["box"]))
                             for f in analysis[group]]
        problem = self._pair_problem(item, orig, out, base, analysis)
        return {**result, "pair": problem} if problem else result

    def _pair_problem(self, item: Item, orig: np.ndarray, out: np.ndarray, base: np.ndarray,
                      analysis: dict) -> str | None:
        """Why ``item.orig`` is not known to be the original of the output (None: it is). The report's
        pair is proven by the input's SHA-256 it recorded; any other, by the output being the original's
        pixels away from the faces."""
        reported = self.run is not None and item.rel in self.run.originals
        if reported:
            changed = _not_read(self.file("orig", item.rel), self.run.sha256.get(item.rel))
            if changed:
                return changed
            if self.anonymizer.method.name == "fullblur":  # every pixel changed: nothing left to compare
                return None
        boxes = [f["box"] for g in ("main", "near", "second") for f in analysis.get(g, [])]
        boxes += self.run.regions.get(item.rel, []) if self.run is not None else []
        # and the reviewer's boxes an Apply drew: over half the photo, they made it "another photo's output" and
        # every later Apply was refused
        boxes += self._manual(item.rel).get("manual", [])
        away = (self.anonymizer.compositor.mask(Detections.from_boxes(boxes), orig.shape) == 0 if boxes
                else np.ones(orig.shape[:2], bool))
        differ = np.abs(out.astype(np.int16) - base.astype(np.int16)).max(axis=2) > KEEP_TOLERANCE
        if (away.any() and differ[away].mean() <= PAIR_MISMATCH) or (reported and not away.any()):
            return None
        share = f"{differ[away].mean():.0%} of the pixels away from faces differ" if away.any() else "all face"
        if reported:  # the report proves the original, not that the output is still the one the run wrote
            return (f"the output is not of {item.orig} ({share}): replaced since the run (another run into OUT?); "
                    "review it with that run's report")
        return (f"no report pairs it with {item.orig} and the output is not of that file ({share}); "
                "start the review with --from-report")

    def _video_pair(self, orig: Path | None, record: dict | None, sha: str | None = None) -> dict:
        """A video's check: {"pair": why} when its track ``record`` (as ``videos.load_record`` read it; None: none,
        or unreadable, which the analysis says) was made from another file than ``orig``, or ``orig`` is not the
        file whose SHA-256 (``sha``) the run's report recorded (the record's content key samples the file: an edit
        of the same size between its first and last MB passed)."""
        changed = _not_read(orig, sha) if orig is not None else None
        if changed:
            return {"pair": changed}
        key = record.get("key") if orig is not None and record is not None else None
        if key is None or key == sample_sha256(orig):
            return {}
        return {"pair": f"its track record was made from another file than {orig} (content key differs)"}

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
        if not inside(real, root) or not real.is_file():
            raise PermissionError(rel)
        return real

    def in_run(self, item: Item) -> bool:
        """Whether the anonymize run took this original: it has an output, or the run's report or
        manifest names it. Other files in IN (never given to the run) are not shown or used."""
        if item.out is not None or item.rel in self.failed:
            return True
        if self.run is not None and item.rel in self.run.inputs:
            return True
        return self.manifest is not None and item.rel in self.manifest

    def version(self, item: Item) -> str | None:
        """What an edit is made on (the page sends it back): the output's stat and, for an original of the run, the
        original's, so that an original replaced since the page showed it makes the edit stale, as an output another
        tab rewrote does (a failed input has no output: its version was null whatever its file became)."""
        out = stat_key(item.out)
        if item.orig is None or not self.in_run(item):
            return out
        return f"{out or 'none'}:{stat_key(item.orig) or 'none'}"

    def check_original(self, item: Item) -> None:
        """Refuse (Stale) an edit of an item whose original changed since its analysis (the faces the page showed
        and Apply hides were found on another file), after checking it again: the reloaded page shows what is
        there now."""
        if item.orig is None or item.analysed == self._orig_key(item, self._config_key()):
            return
        self._analyse(item)
        raise Stale(f"{item.rel}: its original changed since it was checked (replaced or edited?): reload the page, "
                    "look at it again and redo the edit; nothing was changed")

    def out_path(self, item: Item) -> Path | None:
        """Where an item's output is, or for an item with none, where the run would have written it: for an input
        of the run's report, where the report says (a written one's output, a failed one's target; None where it
        does not say, as a report older than "target" does not, or names a place outside OUT: an Apply is then
        refused, for its path under IN may name another place, `anonymize IN/a/x.jpg -o OUT` writing OUT/x.jpg);
        otherwise (a dataset output mirrors its folder) the same path under OUT as under IN."""
        if item.out is not None:
            return item.out
        if self.run is not None:
            src = page_name(item.orig.relative_to(self.in_root).as_posix())
            if src in self.run.inputs:
                rel = self.run.targets.get(src)
                ok = rel is not None and Path(rel).parts and ".." not in Path(rel).parts
                return self.out_root / rel if ok else None
        return self.out_root / item.orig.relative_to(self.in_root)

    def _own(self, name: str) -> Path:
        """A faceveil file under OUT/.faceveil; refused when that folder is a link or a file."""
        d = self.out_root / OWN_DIR
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise FaceveilError(f"{d}: not faceveil's own folder (a link or a file); move it away")
        return self.out_root / name

    def thumbnail(self, rel: str, size: int = 320) -> bytes:
        """A JPEG thumbnail of the OUTPUT (anonymized pixels only), made on first request, kept in memory (the
        latest MAX_THUMBS) and made again when the output changes."""
        src = self.file("out", rel)
        key, stat = (rel, size), stat_key(src)
        with self._lock:
            hit = self._thumbs.get(key)
            if hit is not None and hit[0] == stat:
                return hit[1]
        if self.items[rel].video:  # the first frame with a face, else the first
            tr = self.items[rel].analysis.get("tracks") or [{"start": 0}]
            data = videos.frame_jpeg(src, tr[0]["start"], size)
        else:
            from PIL import Image

            img = Image.fromarray(read_image(src).rgb)
            img.thumbnail((size, size))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=85)
            data = buf.getvalue()
        with self._lock:
            self._thumbs.pop(key, None)  # an older output's thumbnail goes; this one is the newest entry
            self._thumbs[key] = (stat, data)
            while len(self._thumbs) > MAX_THUMBS:
                self._thumbs.pop(next(iter(self._thumbs)))
        return data

    def frame(self, which: str, rel: str, index: int, width: int | None = None) -> bytes:
        """Frame ``index`` of a video item as JPEG bytes, kept in memory only (a few recent ones)."""
        item = self.items.get(rel)
        if item is None or not item.video:
            raise KeyError(rel)
        src = self.file(which, rel)
        key = (which, rel, stat_key(src), index, width)
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
        out = self.file("out", rel)
        key = (rel, stat_key(out), stat_key(tracks_path(out)))
        with self._lock:
            hit = self._records.get(rel)
        if hit is not None and hit[0] == key:
            rec = hit[1]
        else:  # read once while it is unchanged: each frame of a scrub read a long video's whole record (25 MB)
            rec = read_record(out, self.out_root)
            with self._lock:
                self._records = {rel: (key, rec)}  # the one video being looked at
        if rec is None or not 0 <= index < len(rec["frames"]):
            raise KeyError(index)
        d = rec["frames"][index]
        boxes = [{"box": [round(v, 1) for v in b], "track": t, "kind": _PAGE_KINDS[k]}
                 for b, t, k in zip(d.xyxy.tolist(), d.track_id.tolist(), d.sources.tolist())]
        return {"frame": index, "boxes": boxes,
                "error": rec.get("errors", {}).get(str(index))}
