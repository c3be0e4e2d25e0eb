"""Dataset mode: anonymize an annotated dataset so that its labels stay valid.

The job reads the labels (``io.labels``), anonymizes every image in place in
a mirrored tree under OUT (same names, same format), copies the label files
byte for byte, and records every finished file in ``OUT/manifest.jsonl``:
input and output SHA-256, faces from labels and from detection, method,
parameters, seed, faceveil version and time.

Resumable and crash-safe: images are written atomically before their
manifest line is appended and fsynced, so after a kill -9 an image either has
a line whose hash matches the file on disk (skipped next time) or it is done
again with the same result (the random stream of an image depends only on
the seed and its path, never on worker order). The manifest is compacted, one
line per file, when a run finishes.

Backends: local worker processes, or Ray actors (a local Ray instance unless
an address is given). Both call the same ``_process`` so their outputs are
byte-identical.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np

from . import __version__
from .detections import Detections, box_iou
from .errors import FaceveilError, InputError, UsageError
from .io.atomic import atomic_path
from .io.labels import LabelSet, label_files, read_labels, resolve_image
from .io.images import ImageFile, is_image_path, read_image, write_image
from .io.inputs import is_inside
from .io.manifest import ManifestWriter, read_manifest, rewrite_manifest, sha256_file
from .pipeline import Anonymizer, AnonymizerConfig

BOX_MODES = ("gt", "detect", "union")
MANIFEST = "manifest.jsonl"
REVIEW_FILE = "review.json"  # where `faceveil review` 0.1.0 kept its progress; now under OWN_DIR
OWN_DIR = ".faceveil"  # faceveil's own files under OUT (review progress, track records): never outputs
# A detection overlapping a labelled face this much is the same face (for counting only).
SAME_FACE_IOU = 0.3
# What io.atomic.atomic_path leaves behind when killed: ".<name>.<8 random chars>.tmp<suffix>"
_STALE_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


@dataclass(frozen=True)
class DatasetConfig:
    """Everything a worker needs (picklable)."""

    anonymizer: AnonymizerConfig
    boxes: str = "union"  # "auto": union when the labels are faces (see default_boxes)
    min_size: float = 0.0


@dataclass(frozen=True)
class Item:
    rel: str  # image path relative to the images root (also the seed key)
    src: str
    dst: str
    out_rel: str  # output path relative to OUT (what the manifest records)
    xyxy: tuple  # labelled face boxes in pixels, ((x1, y1, x2, y2), ...)
    size: tuple | None  # (w, h) stated by the labels
    # The pixel frame of the boxes: "stored" (the file's pixels as stored, EXIF orientation not applied:
    # WIDER, COCO, VOC) or "oriented" (after the EXIF orientation: YOLO, as Ultralytics reads images).
    frame: str = "stored"


@dataclass
class Summary:
    images: int = 0  # in the labels
    done: int = 0  # written in this run
    skipped: int = 0  # already done by an earlier run (manifest and hash agree)
    failed: list[str] = field(default_factory=list)  # "path: reason"
    missing: list[str] = field(default_factory=list)  # named in the labels, no file
    unlabelled: list[str] = field(default_factory=list)  # image files not in the labels: not written
    faces_labels: int = 0
    faces_detected: int = 0
    faces_detected_extra: int = 0  # detections matching no labelled face
    small_left: int = 0
    clipped: int = 0
    degenerate: int = 0  # labelled boxes with no area inside the image
    size_mismatch: int = 0
    stale_tmp_removed: int = 0
    seconds: float = 0.0
    out: str = ""
    boxes: str = ""  # the box mode used

    def to_json(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------
# one image (runs in a worker)

_STATE: dict = {}


def _init_worker(cfg: DatasetConfig) -> None:
    _STATE["cfg"] = cfg
    _STATE["anon"] = anon = Anonymizer.from_config(cfg.anonymizer)
    _STATE["desc"] = _describe(anon)


def _init_pool_worker(parent_pid: int, cfg: DatasetConfig) -> None:
    from .batch import die_with_parent

    die_with_parent(parent_pid)  # a killed run must not leave its workers behind
    _init_worker(cfg)


def _process(item: Item) -> dict:
    """Anonymize one image; returns {"entry": manifest entry} or {"error": message}. Never raises."""
    t0 = time.perf_counter()
    cfg: DatasetConfig = _STATE["cfg"]
    anon: Anonymizer = _STATE["anon"]
    try:
        in_sha = sha256_file(item.src)
        img = read_image(item.src)  # pixels with the EXIF orientation applied (upright: what the detector wants)
        orientation = exif_orientation(item.src)
        h, w = img.rgb.shape[:2]
        sw, sh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the stored size
        lw, lh = (sw, sh) if item.frame == "stored" else (w, h)  # the size in the labels' frame
        b = np.array(item.xyxy, np.float32).reshape(-1, 4)
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
        if cfg.boxes in ("detect", "union"):
            dets = anon.detect(img.rgb).clipped(w, h)
            det_small = np.minimum(dets.widths, dets.heights) < cfg.min_size
            small_det = int(det_small.sum())
            dets = dets[~det_small]
            detected = len(dets)
            if len(labels) and len(dets):
                extra = int((box_iou(dets.xyxy, labels.xyxy).max(axis=1) < SAME_FACE_IOU).sum())
            else:
                extra = detected
            parts.append(dets)
        faces = Detections.merge(parts, "label+detector")
        out = anon.anonymize(img.rgb, faces, anon.rng_for(item.rel))
        out_sha = write_checked(item.dst, out, img, orientation, anon.keep_metadata, anon.jpeg_quality,
                                 anon.compositor.mask(faces, out.shape) > 0 if img.deep is not None else None)
        desc = _STATE["desc"]
        entry = {
            "kind": "image",
            "path": item.rel,
            "output": item.out_rel,
            "input_sha256": in_sha,
            "output_sha256": out_sha,
            "size": [w, h],  # as shown (EXIF orientation applied), the frame of "regions"
            "faces": {
                "labels": len(labels),
                "labels_anonymized": len(kept_labels),
                "detected": detected,
                "detected_extra": extra,
                "small_left": int(small.sum()) if cfg.boxes != "detect" else 0,
                "small_detected_left": small_det,
                "clipped": int(outside.sum()),
                "degenerate": degenerate,
            },
            "anonymized_regions": len(faces),
            # The exact boxes, so the review page can redo this image plus a reviewer's boxes.
            "regions": [[float(v) for v in b] for b in faces.xyxy],  # float32 -> float: exact
            "boxes": cfg.boxes,
            "min_size": cfg.min_size,
            **desc,
            "faceveil": __version__,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 4),
        }
        if orientation != 1:
            entry["orientation"] = orientation  # the output keeps it: stored pixels stay in the labels' frame
        if item.size is not None and tuple(item.size) != (lw, lh):
            entry["size_mismatch"] = list(item.size)
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


# ---------------------------------------------------------------------------
# EXIF orientation. Dataset labels (WIDER, COCO, VOC) address the stored pixels, so dataset mode keeps them:
# it anonymizes the upright view (the detector needs upright faces), turns the result back into the stored
# frame and writes it with the same orientation tag (and no other metadata unless --keep-metadata). The
# output then reads like its input in every loader, and the label files, copied byte for byte, still fit.
# Hand-written: Pillow's exif_transpose only goes one way and knows nothing of boxes. Each orientation is a
# sequence of three involutions (mirror x, mirror y, transpose), applied in the same order to pixels and
# boxes; tests/test_faults_dataset.py checks them against Pillow for all eight.

_STEPS = {1: "", 2: "x", 3: "xy", 4: "y", 5: "t", 6: "yt", 7: "xyt", 8: "xt"}


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation (1..8) that ``read_image`` applied; 1 when there is none or it is invalid."""
    from PIL import Image

    with Image.open(path) as im:
        try:
            o = int(im.getexif().get(0x0112, 1))
        except Exception:  # a broken EXIF block: Pillow's exif_transpose ignores it too
            return 1
    return o if o in _STEPS else 1


def _step(a: np.ndarray, s: str) -> np.ndarray:
    return a[:, ::-1] if s == "x" else a[::-1] if s == "y" else a.swapaxes(0, 1)


def to_oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    for s in _STEPS[orientation]:
        a = _step(a, s)
    return np.ascontiguousarray(a)


def to_stored(a: np.ndarray, orientation: int) -> np.ndarray:
    for s in reversed(_STEPS[orientation]):
        a = _step(a, s)
    return np.ascontiguousarray(a)


def boxes_to_oriented(xyxy: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Boxes in stored pixels (image ``width`` x ``height`` as stored) -> boxes in the upright view."""
    b = np.array(xyxy, np.float32).reshape(-1, 4)
    w, h = width, height
    for s in _STEPS[orientation]:
        if s == "x":
            b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
        elif s == "y":
            b = np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], axis=1)
        else:
            b = b[:, [1, 0, 3, 2]]
            w, h = h, w
    return b.astype(np.float32)


def write_checked(dst: str, rgb: np.ndarray, src: ImageFile, orientation: int, keep_metadata: bool,
                   quality: int, region: np.ndarray | None = None) -> str:
    """Write ``rgb`` (upright) in the source's stored frame, read it back, return the SHA-256 of what decoded.

    The manifest only ever records a hash that this check produced: a short or corrupt write is an error
    here (and the file is removed), never a finished image.
    """
    from PIL import Image

    exif = None
    if keep_metadata and src.exif:
        ex = Image.Exif()
        ex.load(src.exif)
        ex[0x0112] = orientation
        exif = ex.tobytes()
    elif orientation != 1:
        ex = Image.Exif()
        ex[0x0112] = orientation  # only the orientation: no camera, time or place
        exif = ex.tobytes()
    alpha = to_stored(src.alpha, orientation) if src.alpha is not None else None
    # A 16-bit grey source keeps its depth: its samples and the anonymized region go to the stored frame too.
    deep = to_stored(src.deep, orientation) if src.deep is not None else None
    target = replace(src, rgb=src.rgb[:0], alpha=alpha, deep=deep, exif=exif, info=src.info if keep_metadata else {})
    stored = to_stored(rgb, orientation)
    if deep is not None and region is None:
        region = (rgb[:, :, 0] != src.rgb[:, :, 0])
    write_image(dst, stored, target, True, quality, to_stored(region, orientation) if region is not None else None)
    data = Path(dst).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            ok = im.size == (stored.shape[1], stored.shape[0])
    except Exception:
        ok = False
    if not ok:
        Path(dst).unlink(missing_ok=True)
        raise InputError(f"{dst}: the written image does not read back whole (disk full or failing?); "
                         "not recorded as done")
    return hashlib.sha256(data).hexdigest()


def _describe(anon: Anonymizer) -> dict:
    d = anon.describe()
    d["detector_params"].pop("threads", None)  # a resource setting, not a result-changing one
    return d


# ---------------------------------------------------------------------------
# backends: each yields results as they finish (any order)

def _threads(cfg: DatasetConfig, workers: int) -> DatasetConfig:
    from .batch import _threads_per_worker, _with_threads

    return replace(cfg, anonymizer=_with_threads(cfg.anonymizer, _threads_per_worker(workers)))


def run_local(cfg: DatasetConfig, items: list[Item], jobs: int = 1) -> Iterator[dict]:
    if jobs <= 1 or len(items) <= 1:
        _init_worker(_threads(cfg, jobs))  # same threads as the pool would use: same numbers
        for it in items:
            yield _process(it)
        return
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_pool_worker,
                             initargs=(os.getpid(), _threads(cfg, jobs))) as pool:
        try:
            yield from _windowed(lambda it: pool.submit(_process, it), items, 2 * jobs,
                                 lambda fs: wait(fs, return_when=FIRST_COMPLETED)[0], lambda f: f.result())
        except BrokenProcessPool:
            raise FaceveilError("a worker process died (out of memory?); the images finished so far are in the "
                                "manifest: run the same command again to resume") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_ray(cfg: DatasetConfig, items: list[Item], jobs: int = 1, address: str | None = None) -> Iterator[dict]:
    """Ray actors, each holding one Anonymizer (models load once per actor).

    With an address the images and OUT must be on storage every node sees, and
    faceveil installed on every node.
    """
    ray = _import_ray()
    started = start_ray(jobs, address)
    try:
        actor_cls = ray.remote(num_cpus=1)(_RayWorker)
        cfg_t = _threads(cfg, jobs) if not address else cfg
        driver = os.getpid() if not address else None  # a local instance: actors end when this process dies
        actors = [actor_cls.remote(cfg_t, driver) for _ in range(max(1, jobs))]
        load = [0] * len(actors)  # items in flight per actor: the next goes to the least busy
        pending: dict = {}

        def submit(it: Item):
            k = load.index(min(load))
            load[k] += 1
            ref = actors[k].run.remote(it)
            pending[ref] = (it, k)
            return ref

        def collect(refs):
            done, _ = ray.wait(list(refs), num_returns=1)
            return done

        def result(ref):
            it, k = pending.pop(ref)
            load[k] -= 1
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as exc:  # a worker died: the image is not done, report it
                return {"error": f"{it.src}: Ray worker failed: {str(exc).splitlines()[0]}", "path": it.rel}

        yield from _windowed(submit, items, 2 * max(1, jobs), collect, result)
    finally:
        if started:
            ray.shutdown()
            _stop_reaper()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'faceveil[ray]'") from None
    return ray


def start_ray(jobs: int, address: str | None = None) -> bool:
    """Connect to ``address`` or start a local instance with ``jobs`` CPUs; False if Ray was already up."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # Workers of a local instance must import this same faceveil, even from a source tree.
        pkg_parent = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join([pkg_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        before = _children()
        ray.init(num_cpus=jobs, runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)
        _start_reaper(before)
    return True


# A local Ray instance must not outlive this process either. Ray fate-shares its head processes (gcs_server,
# raylet) with the driver and its workers with the raylet, but its agents (DashboardAgent, RuntimeEnvAgent)
# outlive a kill -9 of the driver by a minute (they try to report the raylet's death to the dead GCS, with a
# fixed 60 s timeout). So a small reaper process, started after ray.init, holds the list of the processes Ray
# started; when this process ends without saying "done" (killed), the reaper kills what is left of them.
# psutil comes with Ray (ray/thirdparty_files); the create time guards against a reused pid.
_REAPER_CODE = r"""
import json, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.path.insert(0, sys.argv[1])
import psutil
procs = json.loads(sys.argv[2])
if sys.stdin.read().strip() != "done":
    time.sleep(2.0)  # Ray's own fate-sharing goes first
    for pid, created in procs:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 0.01:
                p.kill()
        except psutil.Error:
            pass
"""
_REAPER: dict = {}


def _children() -> set:
    try:
        import psutil  # Ray's copy (ray/thirdparty_files) when it is not installed on its own
    except ImportError:
        return set()
    return {(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)}


def _start_reaper(before: set) -> None:
    """Only the processes that ray.init started: a library caller's own child processes are none of its business."""
    import subprocess

    try:
        import psutil
    except ImportError:
        return
    procs = sorted(_children() - before)
    path = str(Path(psutil.__file__).resolve().parents[1])
    _REAPER["proc"] = subprocess.Popen([sys.executable, "-c", _REAPER_CODE, path, json.dumps(procs)],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)


def _stop_reaper() -> None:
    proc = _REAPER.pop("proc", None)
    if proc is not None:
        try:
            proc.communicate(b"done\n", timeout=10)
        except Exception:  # it only ever kills Ray's own processes, which ray.shutdown has ended already
            proc.kill()


class _RayWorker:
    def __init__(self, cfg: DatasetConfig, driver_pid: int | None = None):
        if driver_pid is not None:
            from .batch import die_with_parent

            die_with_parent(driver_pid)
        _init_worker(cfg)

    def run(self, item: Item) -> dict:
        return _process(item)


def _windowed(submit: Callable, items: Iterable, window: int, wait_some: Callable, get: Callable) -> Iterator:
    """Keep at most ``window`` items in flight (a million-image job must not queue everything at once)."""
    it = iter(items)
    inflight = set()
    for x in it:
        inflight.add(submit(x))
        if len(inflight) >= window:
            break
    while inflight:
        for f in wait_some(inflight):
            inflight.discard(f)
            yield get(f)
            nxt = next(it, None)
            if nxt is not None:
                inflight.add(submit(nxt))


# ---------------------------------------------------------------------------
# the job

@dataclass
class Plan:
    labels: LabelSet
    images_root: Path
    out: Path
    image_prefix: PurePosixPath  # where images go under OUT
    label_targets: list[tuple[Path, PurePosixPath]]  # (source file, path under OUT)
    items: list[Item]
    missing: list[str]
    unlabelled: list[str]


def plan(fmt: str, images: str | os.PathLike, labels: str | os.PathLike, out: str | os.PathLike,
         face_classes: set[str] | None = None) -> Plan:
    images_root, labels_path, out = Path(images), Path(labels), Path(out)
    if not images_root.is_dir():
        raise UsageError(f"{images_root}: no such images folder")
    if not labels_path.exists():
        raise UsageError(f"{labels_path}: no such label file or folder")
    _check_labels_kind(fmt, labels_path)
    # Mirror the tree that holds both images and labels (e.g. images/ and ground_truth/x.txt)
    # unless they only share / or the home folder: then OUT gets the images folder and the labels by name.
    images_abs, labels_abs = images_root.resolve(), labels_path.resolve()
    base: Path | None = Path(os.path.commonpath([images_abs, labels_abs]))
    if base == Path(base.anchor) or base == Path.home().resolve():
        base = None
    inputs = [images_root, labels_path] + ([base] if base else [])
    for src in inputs:
        if is_inside(out, src):
            raise UsageError(f"{out}: output folder is inside the input {src}; use a folder outside the dataset")
        if is_inside(src, out):
            raise UsageError(f"{out}: output folder contains the input {src}; use another folder")
    ls = read_labels(labels_path, fmt, images_root)
    if base is not None:
        image_prefix = PurePosixPath(images_abs.relative_to(base).as_posix())
    else:
        image_prefix = PurePosixPath(images_abs.name)
    targets = []
    for f in label_files(ls):
        fa = f.resolve()
        try:
            if base is not None:
                rel = PurePosixPath(fa.relative_to(base).as_posix())
            elif labels_path.is_dir():
                rel = PurePosixPath(labels_abs.name) / fa.relative_to(labels_abs).as_posix()
            else:
                rel = PurePosixPath(fa.name)
        except ValueError:  # the readers refuse such links already; never write outside OUT's mirror
            raise InputError(f"{f}: a link to {fa}, outside the labels folder {labels_path}; "
                             "refusing to read it") from None
        if str(rel) == MANIFEST:
            raise UsageError(f"{f}: a label file named {MANIFEST} would collide with faceveil's manifest")
        if OWN_DIR in rel.parts:
            raise UsageError(f"{f}: a label file under {OWN_DIR}/ would collide with faceveil's own folder")
        targets.append((f, rel))
    items, missing = [], []
    named = set()
    for im in ls.images:
        src = resolve_image(images_root, im.path)
        named.add(im.path)
        if not src.is_file():
            missing.append(im.path)
            continue
        keep = [c in face_classes for c in im.classes] if face_classes is not None else [True] * len(im)
        xyxy = tuple(tuple(float(v) for v in b) for b, k in zip(im.xyxy, keep) if k)
        out_rel = image_prefix / im.path
        if OWN_DIR in out_rel.parts:
            raise UsageError(f"{src}: an image under {OWN_DIR}/ would collide with faceveil's own folder")
        items.append(Item(im.path, str(src), str(out / out_rel), str(out_rel), xyxy, im.size,
                          "oriented" if fmt == "yolo" else "stored"))
    unlabelled = []
    if fmt != "yolo":  # YOLO lists every image of the folder already
        for p in sorted(images_root.rglob("*")):
            if p.is_file() and is_image_path(p) and not p.name.startswith("."):
                rel = p.relative_to(images_root).as_posix()
                if rel not in named:
                    unlabelled.append(rel)
    return Plan(ls, images_root, out, image_prefix, targets, items, missing, unlabelled)


_LABEL_KIND = {"wider": "a label file (WIDER FACE *_bbx_gt.txt)", "coco": "a label file (COCO .json)",
               "yolo": "a folder of YOLO .txt label files", "voc": "a folder of Pascal VOC .xml files"}


def _check_labels_kind(fmt: str, labels: Path) -> None:
    """--format and --labels must agree on file versus folder: a usage error, named, before anything is read."""
    wants_dir = fmt in ("yolo", "voc")
    if labels.is_dir() == wants_dir or fmt not in _LABEL_KIND:
        return
    if labels.is_dir():
        guess = "voc" if next(labels.rglob("*.xml"), None) else "yolo" if next(labels.rglob("*.txt"), None) else None
    else:
        guess = {".json": "coco", ".txt": "wider"}.get(labels.suffix.lower())
    hint = f"; it looks like {_LABEL_KIND[guess]}: use --format {guess}" if guess and guess != fmt else ""
    got = "a folder" if labels.is_dir() else "a file"
    raise UsageError(f"{labels}: --format {fmt} expects {_LABEL_KIND[fmt]}, got {got}{hint}")


def default_boxes(labels: LabelSet, face_classes: set[str] | None) -> str:
    """``union`` when the labels are faces; refuse to guess when they may be something else (persons, cars)."""
    if labels.format == "wider" or face_classes is not None:
        return "union"
    classes = labels.classes
    if all(re.search(r"face|mask", c, re.I) for c in classes):
        return "union"
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    raise UsageError(f"which label classes are faces? The labels have {shown}: give --face-classes NAMES, "
                     "or --boxes detect to use the detector only, or --boxes union to treat every box as a face")


def _job_key(cfg: DatasetConfig, anon: Anonymizer, fmt: str, face_classes) -> dict:
    described = _describe(anon)
    if cfg.boxes == "gt":  # the detector never runs: its settings must not block a resume
        described = {k: v for k, v in described.items() if k not in ("detector", "detector_params")}
    return {"format": fmt, "boxes": cfg.boxes, "min_size": cfg.min_size,
            "face_classes": sorted(face_classes) if face_classes is not None else None,
            **described, "keep_metadata": anon.keep_metadata, "jpeg_quality": anon.jpeg_quality,
            "faceveil": __version__}


def _remove_stale_tmp(out: Path) -> int:
    n = 0
    for p in out.rglob(".*"):
        if p.is_file() and _STALE_TMP.match(p.name):
            p.unlink()
            n += 1
    return n


def anonymize_dataset(
    fmt: str,
    images: str | os.PathLike,
    labels: str | os.PathLike,
    out: str | os.PathLike,
    cfg: DatasetConfig,
    jobs: int = 1,
    backend: str = "local",
    address: str | None = None,
    face_classes: set[str] | None = None,
    progress: bool = True,
    on_entry: Callable[[dict], None] | None = None,
) -> Summary:
    t0 = time.perf_counter()
    if cfg.boxes not in BOX_MODES + ("auto",):
        raise UsageError(f"--boxes must be one of {', '.join(BOX_MODES)}")
    if cfg.min_size < 0:
        raise UsageError("--min-size must be >= 0")
    if backend not in ("local", "ray"):
        raise UsageError("--backend must be local or ray")
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output exists and is not a folder")
    manifest_path = out / MANIFEST
    if out.is_dir() and any(out.iterdir()) and not manifest_path.exists():
        raise UsageError(f"{out}: folder is not empty and has no {MANIFEST}; refusing to write into it")
    p = plan(fmt, images, labels, out, face_classes)
    if cfg.boxes == "auto":
        cfg = replace(cfg, boxes=default_boxes(p.labels, face_classes))
    anon = Anonymizer.from_config(cfg.anonymizer)  # bad names or parameters fail here, before any work
    settings = _job_key(cfg, anon, fmt, face_classes)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    summary = Summary(images=len(p.labels), missing=p.missing, unlabelled=p.unlabelled, out=str(out),
                      boxes=cfg.boxes)

    try:
        return _run_job(p, cfg, settings, key, summary, out, jobs, backend, address, on_entry, progress, t0)
    except OSError as exc:  # a read-only, full or vanished OUT: one line naming the file, never a traceback
        raise InputError(f"{exc.filename or out}: {exc.strerror or exc}") from exc


def _check_settings(entries: list[dict], settings: dict, key: str, manifest_path: Path) -> None:
    other = [e for e in entries if e.get("job") != key]
    if not other:
        return
    diff: dict = {}
    for e in other:
        theirs = e.get("settings", e)  # label lines carry the job's settings; image lines hold them at the top
        for k in settings:
            if k in theirs and theirs[k] != settings[k] and k not in diff:
                diff[k] = theirs[k]
    what = "; ".join(f"{k}: {_show(settings[k])} here, {_show(v)} in {manifest_path}" for k, v in sorted(diff.items()))
    raise UsageError(f"{manifest_path}: made with other settings ({what or 'format, face classes or output options'}); "
                     "use a new output folder or the same settings")


def _show(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def _run_job(p: Plan, cfg: DatasetConfig, settings: dict, key: str, summary: Summary, out: Path, jobs: int,
             backend: str, address: str | None, on_entry, progress: bool, t0: float) -> Summary:
    manifest_path = out / MANIFEST
    entries, _ = read_manifest(manifest_path)
    _check_settings(entries, settings, key, manifest_path)
    out.mkdir(parents=True, exist_ok=True)
    writer = ManifestWriter(manifest_path)  # locked: a second run into OUT stops here
    try:
        entries, _ = read_manifest(manifest_path)  # again, under the lock (a run may have ended meanwhile)
        _check_settings(entries, settings, key, manifest_path)
    except BaseException:
        writer.close()
        raise
    latest = {(e.get("kind"), e.get("path")): e for e in entries}
    summary.stale_tmp_removed = _remove_stale_tmp(out)  # under the lock: no other run's file in progress

    try:
        # Label files first, byte for byte: the boxes keep matching the images, which keep their size and names.
        for src, rel in p.label_targets:
            data = src.read_bytes()
            in_sha = hashlib.sha256(data).hexdigest()
            prev = latest.get(("labels", str(rel)))
            dst = out / rel
            if prev and prev["input_sha256"] == in_sha and dst.is_file() and sha256_file(dst) == prev["output_sha256"]:
                continue
            with atomic_path(dst) as tmp:
                tmp.write_bytes(data)
                if sha256_file(tmp) != in_sha:  # checked before the rename: a short copy never gets the name
                    raise InputError(f"{dst}: the copy of {src} did not write whole (disk full or failing?); "
                                     "nothing was recorded")
            e = {"kind": "labels", "path": str(rel), "output": str(rel), "input_sha256": in_sha,
                 "output_sha256": in_sha, "job": key, "settings": settings, "faceveil": __version__,
                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            _record(writer, e, dst)
            latest[("labels", str(rel))] = e

        todo = []
        for it in p.items:
            prev = latest.get(("image", it.rel))
            if prev and _still_done(prev, it):
                summary.skipped += 1
                _count(summary, prev)
                continue
            todo.append(it)

        from .progress import tqdm

        bar = tqdm(total=len(todo), unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   desc="anonymizing dataset")
        faces = 0
        t_run = time.perf_counter()
        if not todo:
            results: Iterable[dict] = ()
        elif backend == "ray":
            results = run_ray(cfg, todo, jobs, address)
        else:
            results = run_local(cfg, todo, jobs)
        try:
            for r in results:
                if "error" in r:
                    summary.failed.append(r["error"])
                else:
                    e = {**r["entry"], "job": key}
                    _record(writer, e, out / e["output"])  # only after the image is on disk and checked
                    latest[("image", e["path"])] = e
                    summary.done += 1
                    _count(summary, e)
                    faces += e["anonymized_regions"]
                    if on_entry:
                        on_entry(e)
                dt = max(time.perf_counter() - t_run, 1e-9)
                bar.set_postfix_str(f"{faces / dt:.1f} faces/s, failed {len(summary.failed)}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
        # One line per file, labels first then images in dataset order; atomic, so a crash here loses nothing.
        # Still under the lock, so no other run's line can go missing.
        order = [("labels", str(rel)) for _, rel in p.label_targets] + [("image", it.rel) for it in p.items]
        seen = set(order)
        compact = [latest[k] for k in order if k in latest] + [e for k, e in latest.items() if k not in seen]
        if compact != entries:
            try:
                rewrite_manifest(manifest_path, compact)
            except OSError:  # a full disk at the very end: the appended manifest already holds every line
                pass
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _record(writer: ManifestWriter, entry: dict, output: Path) -> None:
    """Append the entry; when that fails (disk full), the output is not done: remove it and stop the run."""
    try:
        writer.append(entry)
    except OSError as exc:
        output.unlink(missing_ok=True)
        raise InputError(f"{writer.path}: cannot record {entry['output']} ({exc.strerror or exc}), so it is not "
                         "done and was removed; free some space and run the same command again to resume") from exc


def _still_done(prev: dict, it: Item) -> bool:
    dst = Path(it.dst)
    return (dst.is_file() and prev.get("output") == it.out_rel and sha256_file(dst) == prev.get("output_sha256")
            and sha256_file(it.src) == prev.get("input_sha256"))


def _count(s: Summary, e: dict) -> None:
    f = e["faces"]
    s.faces_labels += f["labels"]
    s.faces_detected += f["detected"]
    s.faces_detected_extra += f["detected_extra"]
    s.small_left += f["small_left"] + f["small_detected_left"]
    s.clipped += f["clipped"]
    s.degenerate += f["degenerate"]
    s.size_mismatch += "size_mismatch" in e


# ---------------------------------------------------------------------------
# verify

@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # files under OUT that no manifest line accounts for
    damaged: list[str] = field(default_factory=list)  # images whose bytes match the manifest but do not decode

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected or self.damaged)


def verify(out: str | os.PathLike) -> VerifyReport:
    out = Path(out)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no manifest (not a faceveil dataset output?)")
    entries, _ = read_manifest(manifest_path)
    latest = {(e.get("kind"), e.get("path")): e for e in entries}
    rep = VerifyReport()
    known = {MANIFEST, REVIEW_FILE}  # faceveil's own records, not outputs
    for e in latest.values():
        rel = e.get("output")
        if not rel:
            continue
        known.add(rel)
        rep.checked += 1
        path = out / rel
        if not is_inside(path, out):
            rep.altered.append(f"{rel} (path outside the output folder)")
        elif not path.is_file():
            rep.missing.append(rel)
        elif sha256_file(path) != e.get("output_sha256"):
            rep.altered.append(rel)
        elif e.get("kind") == "image" and not _decodes(path):
            rep.damaged.append(rel)  # a write that was recorded without being checked (older versions)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            rel = p.relative_to(out).as_posix()
            if rel not in known and rel.split("/", 1)[0] != OWN_DIR:
                rep.unexpected.append(rel)
    return rep


def _decodes(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # any decoder complaint means the file is not a whole image
        return False
