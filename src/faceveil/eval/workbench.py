"""Per-image measurements shared by every evaluation, cached per (image, method, params).

One pass over an image computes whatever the requested evaluations need (the
attacker's descriptor at the original's face box, detectors run on the
anonymized image, crop quality), so ``faceveil bench`` anonymizes each image
once per method. Records are kept as JSON in a cache folder, one file per
(variant, detector settings); a re-run computes only images that are missing,
changed on disk (size or modification time), or lack a requested measurement.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..detect import get_detector
from ..detect.base import detection_view
from ..detect.presets import resolve
from ..detections import Detections, box_iou
from ..errors import FaceveilError, InputError, UsageError
from ..io.atomic import write_bytes_atomic
from ..io.images import read_rgb
from ..io.manifest import sha256_file
from ..pipeline import Anonymizer
from ..progress import tqdm
from .descriptors import DlibDescriber
from .leaks import detect_with_candidates
from .metrics import crop_quality
from .utility import eval_detect

# 2: random methods keyed on the file's content, 3: exact boxes (no longer 0.01 px), as `faceveil anonymize` uses,
# 4: the anonymized image's faces at the operating point ("found") beside the candidates ("low")
CACHE_VERSION = 4
LOW_THRESHOLD = 0.05  # score down to which candidates are kept for score-ranked (AP) runs on anonymized images
HOG_LOW = -0.5  # dlib HOG adjust_threshold for the same purpose (its operating point is 0)
FTA_IOU = 0.3  # a detection "acquires" the face when it overlaps the original's box this much (box styles differ)


@dataclass(frozen=True)
class Variant:
    """One anonymization to evaluate: a registered method with parameters, or a folder of outputs made elsewhere."""

    method: str
    params: tuple = ()  # sorted (name, value-as-string) pairs
    anon_dir: str | None = None
    seed: int = 0

    @classmethod
    def of(cls, method: str, params: dict | None = None, seed: int = 0) -> "Variant":
        return cls(method, tuple(sorted((k, str(v)) for k, v in (params or {}).items())), None, seed)

    @classmethod
    def external(cls, folder: str | Path, name: str = "external") -> "Variant":
        return cls(name, (), str(Path(folder).resolve()), 0)

    @property
    def label(self) -> str:
        if self.method == "original":
            return "original"
        p = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.method}({p})" if p else self.method

    def as_dict(self) -> dict:
        return {"method": self.method, "params": dict(self.params), "anon_dir": self.anon_dir, "seed": self.seed,
                "label": self.label}


ORIGINAL = Variant("original")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dets_json(d: Detections) -> dict:
    """A record's detections in the one JSON form, exact (float32 -> float -> float32 round-trips): eval anonymizes
    with these boxes, and boxes rounded to 0.01 px changed 845 pixels (up to 111 levels) of one facemask photo."""
    return d.to_dict()


def _signature(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _default_detection() -> tuple[str, dict, dict]:
    return resolve(None)


@dataclass
class Workbench:
    """Measure images under ``root`` (paths relative to it) for any number of variants."""

    root: Path
    cache_dir: Path | None = None
    # The default preset's detector, parameters and region, as `faceveil anonymize` and the API use.
    detector: str = field(default_factory=lambda: _default_detection()[0])
    detector_params: dict = field(default_factory=lambda: _default_detection()[1])
    region: dict = field(default_factory=lambda: _default_detection()[2])
    progress: bool = True

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a folder")
        self._det = None
        self._hog = None
        self._desc = None
        self._wider_det = None
        self._anonymizers: dict = {}

    # models, built on first use ---------------------------------------------
    @property
    def det(self):
        if self._det is None:
            self._det = get_detector(self.detector, self.detector_params)
        return self._det

    @property
    def hog(self):
        if self._hog is None:
            self._hog = get_detector("dlib-hog", {"threshold": HOG_LOW})
        return self._hog

    @property
    def describer(self):
        if self._desc is None:
            self._desc = DlibDescriber(points=5)
        return self._desc

    def anonymizer(self, v: Variant):
        if v not in self._anonymizers:
            self._anonymizers[v] = Anonymizer(v.method, dict(v.params), self.detector, self.detector_params,
                                              self.region, v.seed)
        return self._anonymizers[v]

    def check_variants(self, variants: list[Variant]) -> list[Variant]:
        """Check every variant (see check_variant) and return them, so a command fails before any image work."""
        for v in variants:
            self.check_variant(v)
        return variants

    def check_variant(self, v: Variant) -> None:
        """Fail early (bad method name or parameter, missing folder) before any image work."""
        if v.anon_dir is not None:
            if not Path(v.anon_dir).is_dir():
                raise InputError(f"{v.anon_dir}: not a folder")
        elif v.method != "original":
            self.anonymizer(v)

    # cache ------------------------------------------------------------------
    def _cache_file(self, v: Variant) -> Path | None:
        if self.cache_dir is None:
            return None
        key = {"v": CACHE_VERSION, "root": str(self.root.resolve()), "detector": self.detector,
               "detector_params": self.detector_params, "region": self.region,
               "variant": None if v.method == "original" else v.as_dict()}
        return Path(self.cache_dir) / f"{v.method}-{_digest(key)}.json"

    def _load(self, v: Variant) -> dict:
        f = self._cache_file(v)
        if f is None or not f.exists():
            return {}
        try:
            return json.loads(f.read_text())["records"]
        except (OSError, ValueError, KeyError):
            return {}  # a damaged cache is rebuilt, never trusted

    def _save(self, v: Variant, records: dict) -> None:
        f = self._cache_file(v)
        if f is not None:
            write_bytes_atomic(f, json.dumps({"variant": v.as_dict(), "records": records}).encode())

    # measurements -------------------------------------------------------------
    def originals(self, rels: list[str], need: set[str] = frozenset({"desc"})) -> dict:
        """rel -> record with 'dets' (the pipeline detector's faces), 'box' (the face attacked:
        the largest detection, else dlib HOG's largest), and per ``need``: 'desc', 'hog'."""
        return self._measure(ORIGINAL, rels, set(need), None)

    def anonymized(self, v: Variant, rels: list[str], originals: dict, need: set[str]) -> dict:
        """rel -> record with, per ``need``: 'desc' (at the original's box), 'detect' (on the anonymized image:
        the pipeline detector's faces as anonymize finds them, 'found', and its candidates down to LOW_THRESHOLD,
        'low'; dlib HOG's, 'hog'), 'quality' (per original face crop)."""
        return self._measure(v, rels, set(need), originals)

    def _measure(self, v: Variant, rels, need, originals) -> dict:
        records = self._load(v)
        out = {}
        todo = []
        for rel in rels:
            try:  # an output made elsewhere is measured again when it changes, or appears after failing
                sig = _signature(self.root / rel) + (_signature(Path(v.anon_dir) / rel) if v.anon_dir else [])
            except OSError:
                sig = None
            r = records.get(rel)
            if r is not None and r.get("sig") == sig and (("error" in r) or need <= set(r.get("has", []))):
                out[rel] = r
            else:
                todo.append((rel, sig, r if r is not None and r.get("sig") == sig else None))
        if not todo:
            return out
        self.check_variant(v)
        bar = tqdm(todo, desc=f"measuring {v.label}", unit="img", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True)
        for n, (rel, sig, old) in enumerate(bar):
            try:
                if v.method == "original":
                    rec = self._measure_original(rel, need, old)
                else:
                    rec = self._measure_anonymized(v, rel, need, old, originals[rel])
            except FaceveilError as exc:
                rec = {"error": str(exc)}
            except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # e.g. dlib on a degenerate image
                rec = {"error": f"{rel}: {exc.__class__.__name__}: {exc}"}
            rec["sig"] = sig
            records[rel] = out[rel] = rec
            if (n + 1) % 25 == 0:  # keep partial progress if interrupted
                self._save(v, records)
        self._save(v, records)
        return out

    def _measure_original(self, rel, need, old) -> dict:
        img = read_rgb(self.root / rel)
        rec = dict(old or {})
        has = set(rec.get("has", []))
        if "dets" not in rec:
            dets = self.det.detect(detection_view(img))  # as Anonymizer.detect sees it
            rec["dets"] = _dets_json(dets)
            rec["size"] = [img.shape[1], img.shape[0]]
        dets = Detections.from_dict(rec["dets"])
        if ("hog" in need or (len(dets) == 0 and "box" not in rec)) and "hog" not in has:
            rec["hog"] = _dets_json(self.hog.detect(img))
            has.add("hog")
        if "box" not in rec:
            src = dets if len(dets) else Detections.from_dict(rec.get("hog")).filter(min_score=0.0)
            rec["box"] = None if len(src) == 0 else src.xyxy[int(np.argmax(src.areas))].round(2).tolist()
        if "desc" in need and "desc" not in has:
            rec["desc"] = None if rec["box"] is None else self._describe(img, rec["box"])
            has.add("desc")
        self._wider(img, rec, has, need)
        rec["has"] = sorted(has)
        return rec

    def _wider(self, img, rec, has, need) -> None:
        """CenterFace as benchmarks run it (see ``eval_detect``), for WIDER FACE AP."""
        if "wider" in need and "wider" not in has:
            if self._wider_det is None:
                self._wider_det = get_detector("centerface", {})
            d = eval_detect(self._wider_det, img)
            rec["wider"] = _dets_json(Detections(d.xyxy, d.score, None))  # boxes and scores are all AP needs
            has.add("wider")

    def _describe(self, img, box):
        d = self.describer.describe(img, [box])[0]
        return None if not np.isfinite(d).all() else np.round(d.astype(np.float64), 6).tolist()

    def anonymize_image(self, v: Variant, rel: str, orig: dict) -> tuple[np.ndarray, np.ndarray]:
        """(original, anonymized) pixels of one image under variant ``v``."""
        img = read_rgb(self.root / rel)
        if v.anon_dir is not None:
            anon = read_rgb(Path(v.anon_dir) / rel)
            if anon.shape != img.shape:
                raise InputError(f"{Path(v.anon_dir) / rel}: size {anon.shape[1::-1]} differs from the original's")
            return img, anon
        a = self.anonymizer(v)
        # keyed on the file's content, as `faceveil anonymize` keys it: the same noise as the output it ships
        return img, a.anonymize(img, Detections.from_dict(orig["dets"]), a.rng_for(sha256_file(self.root / rel)))

    def _measure_anonymized(self, v, rel, need, old, orig) -> dict:
        if "error" in orig:
            return {"error": orig["error"]}
        img, anon = self.anonymize_image(v, rel, orig)
        rec = dict(old or {})
        has = set(rec.get("has", []))
        if "desc" in need and "desc" not in has:
            rec["desc"] = None if orig["box"] is None else self._describe(anon, orig["box"])
            has.add("desc")
        if "detect" in need and "detect" not in has:
            found, low = detect_with_candidates(self.det, anon, LOW_THRESHOLD)  # as anonymize would see it
            rec["found"], rec["low"] = _dets_json(found), _dets_json(low)
            rec["hog"] = _dets_json(self.hog.detect(anon))
            has.add("detect")
        if "quality" in need and "quality" not in has:
            q = []
            for box in Detections.from_dict(orig["dets"]).clipped(img.shape[1], img.shape[0]).xyxy:
                x1, y1, x2, y2 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                q.append({k: (None if not np.isfinite(val) else round(val, 5))
                          for k, val in crop_quality(img[y1:y2, x1:x2], anon[y1:y2, x1:x2]).items()})
            rec["quality"] = q
            has.add("quality")
        self._wider(anon, rec, has, need)
        rec["has"] = sorted(has)
        return rec


def acquired(found: dict | None, box, min_score: float = 0.0) -> bool:
    """Whether any detection (score >= min_score) overlaps ``box`` by IoU >= FTA_IOU."""
    d = Detections.from_dict(found).filter(min_score=min_score)
    return bool(len(d)) and bool((box_iou(np.asarray(box), d.xyxy) >= FTA_IOU).any())


def parse_sweep(method: str, items: list[str]) -> list[dict]:
    """``["blur.kernel=5,9,15"]`` -> one params dict per value (several sweeps: every combination)."""
    import itertools

    axes = []
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UsageError(f"bad --sweep {item!r}: expected METHOD.PARAM=V1,V2,...")
        lhs, rhs = item.split("=", 1)
        m, name = lhs.split(".", 1)
        if m != method:
            raise UsageError(f"--sweep {item!r} is for method {m!r}, but --method is {method!r}")
        values = [x.strip() for x in rhs.split(",") if x.strip()]
        if not values:
            raise UsageError(f"bad --sweep {item!r}: no values")
        axes.append([(name, x) for x in values])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]
