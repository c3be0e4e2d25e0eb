"""``faceveil eval train``: train on anonymized data, test on clean data (Safe Fakes protocol).

For each anonymization method: anonymize the labelled faces of the train split
(the dataset mode with ``--boxes gt``), train the compact detector from scratch
with the same seed and budget, and evaluate on the clean test split. Reported:
AP@0.5 overall and per face-height bucket, and DartBlur's fidelities:
- cycle fidelity: AP of the method-trained detector on clean test images / AP of the clean-trained one;
- post-hoc fidelity: AP of the method-trained detector on *anonymized* test images, scored against the
  clean-trained detector's detections on the clean images (pseudo ground truth);
- operation fidelity: AP of the clean-trained detector on anonymized test images against its own
  detections on the clean images (the compact detector here, not CenterFace as in the eval bench).
Plus the Pearson correlation of face-crop image-quality metrics with cycle fidelity across methods.

torch is imported only when a run starts, so the CLI and the core stay torch-free.
"""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..anonymize import METHODS
from ..detections import Detections
from ..errors import FaceveilError, InputError, UsageError, one_line
from ..eval.metrics import CropQuality, ap_by_size, ap_overall, best_f1_threshold, pearson_table
from ..io.atomic import write_bytes_atomic
from ..io.images import read_rgb
from ..pipeline import Anonymizer
from ..registry import parse_assignments, split_method_param
from .report import plot_ap_by_size, plot_ap_vs_time, report_markdown

DEFAULT_METHODS = "none,blur,pixelate,blackout,block,noise,fullblur,replace,learnedblur"
# Safe Fakes' fixed settings (blur 25x25, pixelate 10x10, full-image blur 18x18).
METHOD_DEFAULTS = {"blur": {"kernel": 25}, "pixelate": {"cells": 10}, "fullblur": {"kernel": 18}}
FAMILIES = {"none": "reference", "blur": "obfuscation", "pixelate": "obfuscation", "fullblur": "obfuscation",
            "blackout": "erasure", "block": "erasure", "noise": "erasure", "eyebar": "erasure",
            "replace": "replacement", "overlay": "replacement", "learnedblur": "obfuscation"}
INSTALL_HINT = "pip install 'faceveil[train]' (torch)"


# inputs ------------------------------------------------------------------

@dataclass
class Sample:
    name: str
    image: np.ndarray  # RGB uint8
    boxes: np.ndarray  # float32 Nx4 xyxy


@dataclass(frozen=True)
class MethodSpec:
    label: str
    method: str
    params: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return FAMILIES.get(self.method, "other")


def parse_methods(text: str, overrides: list[str] | None = None) -> list[MethodSpec]:
    """``"none,blur,pixelate:cells=16"`` plus ``-p blur.kernel=9`` (or ``blur:kernel=9``) overrides -> specs
    ('none' first)."""
    extra: dict[str, dict] = {}
    for item in overrides or []:
        m, name, value = split_method_param(item)
        if extra.get(m, {}).get(name, value) != value:  # the last won without a word
            raise UsageError(f"-p {m}.{name}: given twice ({extra[m][name]} and {value}); give each parameter once")
        extra.setdefault(m, {})[name] = value
    specs: list[MethodSpec] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, *kvs = part.split(":")
        if name != "none":
            METHODS.get(name)  # unknown name -> UsageError listing the choices
        params = {**METHOD_DEFAULTS.get(name, {}), **extra.get(name, {}), **parse_assignments(kvs)}
        if name != "none":  # typed values (and a bad name or value fails here, before any training)
            typed = METHODS.create(name, params).params
            params = {k: getattr(typed, k) for k in params}
        specs.append(MethodSpec(part if kvs else name, name, params if name != "none" else {}))
    unused = sorted(set(extra) - {s.method for s in specs})
    if unused:
        raise UsageError(f"-p {unused[0]}.*: method {unused[0]!r} is not in --methods ({text})")
    if len({s.label for s in specs}) != len(specs):
        raise UsageError(f"--methods {text!r} names a method twice")
    if not any(s.method == "none" for s in specs):
        specs.insert(0, MethodSpec("none", "none"))  # the reference every fidelity is relative to
    specs.sort(key=lambda s: s.method != "none")
    return specs


def parse_duration(text: str) -> float:
    """``"20m"``, ``"90s"``, ``"1.5h"`` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise UsageError(f"--budget {text!r}: expected a duration such as 20m, 90s or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def read_wider_gt(path: str | Path) -> dict[str, np.ndarray]:
    """WIDER-layout ``gt.txt`` -> image name -> Nx4 xyxy boxes (degenerate boxes dropped)."""
    from ..io.labels import read_wider

    out = {}
    for im in read_wider(path).images:
        b = Detections.from_xywh(im.xywh).xyxy
        out[im.path] = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
    return out


def load_samples(images: str | Path, labels: str | Path, max_images: int | None = None) -> list[Sample]:
    """The labelled images (the first ``max_images`` by name), read before any training. One that cannot be read
    (missing, broken, unreadable, in a folder that may not be entered) stops the run here (InputError, exit 1: a file
    failed), naming it: it was skipped with a warning (exit 0), and the numbers, or the model, were on fewer images
    than given; in a folder that may not be entered, a traceback."""
    images, labels = Path(images), Path(labels)
    if not images.is_dir():
        raise UsageError(f"--images {images}: not a folder")
    if labels.is_dir():
        raise UsageError(f"--labels {labels}: a folder of annotations is not supported yet; give a WIDER-layout gt.txt")
    if not labels.exists():  # bad usage, as a missing --images (train learnedblur said it with exit 1)
        raise UsageError(f"{labels}: no such --labels file")
    other = {".json": "COCO .json labels are", ".csv": "CSV labels are", ".xml": "Pascal VOC .xml labels are"}
    if labels.suffix.lower() in other:  # read as WIDER: "expected an image file name, got '{"images": ...'", exit 1
        raise UsageError(f"--labels {labels}: {other[labels.suffix.lower()]} not supported here; give a WIDER-layout "
                         "gt.txt")
    gt = read_wider_gt(labels)
    names = sorted(gt)
    if max_images:
        names = names[:max_images]
    samples, problems = [], []
    for name in names:
        try:
            samples.append(Sample(name, read_rgb(images / name), gt[name]))
        except FaceveilError as exc:  # a folder on the way that cannot be entered too (io.images.check_file)
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{one_line(problems[0])}{more}; nothing trained (make it readable, or take it out of the "
                         "labels)")
    if len(samples) < 2:
        raise InputError(f"{labels}: fewer than 2 labelled images could be read from {images}")
    return samples


def split(samples: list[Sample], test_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    order = np.random.default_rng(seed).permutation(len(samples))
    n_test = min(max(1, int(round(len(samples) * test_fraction))), len(samples) - 1)
    test = sorted(order[:n_test].tolist())
    train = sorted(order[n_test:].tolist())
    return [samples[i] for i in train], [samples[i] for i in test]


# anonymization and quality ------------------------------------------------

def anonymize_samples(samples: list[Sample], spec: MethodSpec, seed: int) -> list[np.ndarray]:
    """The labelled faces of each image anonymized (dataset mode, ``--boxes gt``); 'none' returns originals."""
    if spec.method == "none":
        return [s.image for s in samples]
    anon = Anonymizer(spec.method, spec.params, seed=seed, load_detector=False)  # labelled boxes: no detector ...
    # ... except for a method that places its face by landmarks (replace, eyebar): the default detector's
    # landmarks of the same face, as dataset mode gives them; the labelled box stays the region.
    label_lm = bool(getattr(anon.method, "uses_landmarks", False))
    out = []
    for s in samples:
        labels = Detections.from_boxes(s.boxes, source="label")
        if label_lm and len(labels):
            labels = labels.with_landmarks_from(anon.detect(s.image))
        out.append(anon.anonymize(s.image, labels, anon.rng_for(s.name)))
    return out


def face_quality(samples: list[Sample], anonymized: list[np.ndarray]) -> dict:
    """Mean L1, MSE (L2), SSIM, PSNR between original and anonymized face crops (labelled boxes)."""
    q = CropQuality()
    for s, a in zip(samples, anonymized):
        h, w = s.image.shape[:2]
        for x1, y1, x2, y2 in np.round(s.boxes).astype(int):
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                q.update(s.image[y1:y2, x1:x2], a[y1:y2, x1:x2])
    return q.compute()


# the run --------------------------------------------------------------------

@dataclass
class RunConfig:
    methods: list[MethodSpec]
    budget_s: float
    max_steps: int | None = None
    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    device: str = "cpu"
    batch: int = 16
    input_size: int = 320
    width: int = 16
    threads: int = 4
    eval_threshold: float = 0.02
    save_models: bool = False
    quiet: bool = False


def _say(cfg: RunConfig, msg: str) -> None:
    if not cfg.quiet:
        print(f"faceveil: {msg}", file=sys.stderr, flush=True)


def run(samples: list[Sample], cfg: RunConfig, out_dir: str | Path, data_info: dict | None = None) -> dict:
    """Every method in turn; writes results.json, report.md and the plots into ``out_dir``; returns the results."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise FaceveilError(f"`faceveil eval train` needs torch: {INSTALL_HINT}") from None
    from . import detector as D

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to torch here")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_s, test_s = split(samples, cfg.test_fraction, cfg.split_seed)
    gts = [s.boxes for s in test_s]
    tcfg = D.TrainConfig(budget_s=cfg.budget_s, max_steps=cfg.max_steps, seed=cfg.seed, device=cfg.device,
                         width=cfg.width, batch=cfg.batch, input_size=cfg.input_size, threads=cfg.threads)
    _say(cfg, f"{len(train_s)} train / {len(test_s)} test images; {len(cfg.methods)} methods x "
              f"{cfg.budget_s:.0f} s budget{f' or {cfg.max_steps} steps' if cfg.max_steps else ''} on {cfg.device}")

    def predict_all(model, images):
        return [D.predict(model, im, cfg.eval_threshold, cfg.device) for im in images]

    rows: list[dict] = []
    clean_model = pseudo = None
    pseudo_t = [None]  # filled by the 'none' run; read by summary()
    summary = _summary_factory(cfg, train_s, test_s, data_info, pseudo_t, D.n_params(D.CompactFaceNet(cfg.width)))
    for spec in cfg.methods:
        t0 = time.perf_counter()
        train_imgs = anonymize_samples(train_s, spec, cfg.seed)
        test_anon = anonymize_samples(test_s, spec, cfg.seed)
        t_anon = time.perf_counter() - t0
        quality = face_quality(train_s, train_imgs) if spec.method != "none" else {}
        _say(cfg, f"[{spec.label}] anonymized in {t_anon:.1f} s; training")
        res = D.train(train_imgs, [s.boxes for s in train_s], tcfg, progress_label="" if cfg.quiet else spec.label)
        t1 = time.perf_counter()
        curve, preds = [], None
        for ck in res.checkpoints:
            preds = predict_all(D.load_state(ck.state, cfg.width, cfg.device), [s.image for s in test_s])
            curve.append({"fraction": ck.fraction, "step": ck.step, "seconds": round(ck.seconds, 2),
                          "ap": ap_overall(preds, gts)})
        model = res.model
        if not res.checkpoints or res.checkpoints[-1].step != res.steps:  # else the last checkpoint is the model
            preds = predict_all(model, [s.image for s in test_s])
        ap = ap_overall(preds, gts)
        by_size, n_by_size = ap_by_size(preds, gts)
        preds_anon = predict_all(model, test_anon)
        row = {"label": spec.label, "method": spec.method, "params": spec.params, "family": spec.family,
               "ap": ap, "ap_by_size": by_size, "n_gt_by_size": n_by_size,
               "ap_anonymized_test": ap_overall(preds_anon, gts), "quality": quality, "curve": curve,
               "train": {"steps": res.steps, "seconds": round(res.seconds, 2), "anonymize_seconds": round(t_anon, 2),
                         "final_loss": res.losses[-1] if res.losses else None}}
        if spec.method == "none":
            clean_model = model
            pseudo_t[0] = best_f1_threshold(preds, gts)
            pseudo = [p.xyxy[p.score >= pseudo_t[0]] for p in preds]
        row["cycle_fidelity"] = ap / rows[0]["ap"] if rows and rows[0]["ap"] else (1.0 if spec.method == "none" else None)
        row["posthoc_fidelity"] = ap_overall(preds_anon, pseudo)
        row["operation_fidelity"] = ap_overall(predict_all(clean_model, test_anon), pseudo)
        row["train"]["eval_seconds"] = round(time.perf_counter() - t1, 2)
        if cfg.save_models:
            D.export_onnx(model, out_dir / "models" / f"{_safe(spec.label)}.onnx")
        rows.append(row)
        # Partial results after each method, so a run stopped early still leaves its numbers.
        _write_json(_finite({**summary(rows), "partial": True}), out_dir / "results.json")
        _say(cfg, f"[{spec.label}] AP {ap:.3f}, cycle fidelity {row['cycle_fidelity'] or 0:.3f} "
                  f"({res.steps} steps, {res.seconds:.0f} s)")
    results = summary(rows)
    write_outputs(results, out_dir)
    return results


def _summary_factory(cfg: RunConfig, train_s, test_s, data_info, pseudo_t_ref, n_params: int):
    import torch

    from .. import __version__

    def summary(rows: list[dict]) -> dict:
        return {
            "faceveil": __version__, "faceveil_eval": "train", "seed": cfg.seed, "split_seed": cfg.split_seed,
            "device": cfg.device,
            "torch": torch.__version__, "budget_s": cfg.budget_s if np.isfinite(cfg.budget_s) else None,
            "max_steps": cfg.max_steps,
            "detector": {"name": "CompactFaceNet", "width": cfg.width, "params": n_params,
                         "input_size": cfg.input_size, "batch": cfg.batch, "stride": 4},
            "data": {**(data_info or {}), "n_train": len(train_s), "n_test": len(test_s),
                     "n_train_faces": int(sum(len(s.boxes) for s in train_s)),
                     "n_test_faces": int(sum(len(s.boxes) for s in test_s)),
                     "test_fraction": cfg.test_fraction,
                     "split": {"train": [s.name for s in train_s], "test": [s.name for s in test_s]}},
            "pseudo_gt_threshold": pseudo_t_ref[0], "eval_threshold": cfg.eval_threshold,
            "methods": rows, "correlation": pearson_table(rows),
            "left_out": ["FD-dlib in the correlation table (needs dlib descriptors of tiny faces)",
                         "operation fidelity with CenterFace: it uses the clean-trained compact detector here"],
        }

    return summary


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def _finite(v):
    """NaN/inf -> None, so results.json stays strict JSON."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _write_json(doc: dict, path: Path) -> None:
    write_bytes_atomic(path, json.dumps(doc, indent=1, allow_nan=False).encode())


def write_outputs(results: dict, out_dir: Path) -> None:
    results = _finite(results)
    _write_json(results, out_dir / "results.json")
    plot_ap_by_size(results, out_dir / "ap_by_size.png")
    plot_ap_vs_time(results, out_dir / "ap_vs_time.png")
    write_bytes_atomic(out_dir / "report.md", report_markdown(results).encode())
