"""What does a detector trained on replaced faces key on? Short ablations of `faceveil eval train` (issue 22).

Same protocol as `faceveil eval train` (train/train_on_anon.py: split, seed, budget, AP by size), with
replace variants that its --methods syntax cannot say (landmark sources, a region, a size cut-off). The
default preset's detections (for the labelled boxes' landmarks) are computed once per photo and shared by all
variants of a run. 'none' is always trained first (the reference every fidelity is relative to).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 15 python bench/train_on_anon_ablation.py \
        --variants estimated,fitted,occ_replace -o /tmp/abl1 \
        [--images /work/shared/data/facemask/images --labels /work/shared/data/facemask/gt.txt]

Variants (VARIANTS below): each is replace with the default parameters except for what it names.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from faceveil.detections import Detections
from faceveil.pipeline import Anonymizer
from faceveil.train import train_on_anon as T

_E = {"no_landmarks": "estimated"}  # item 1 as first measured: unmatched boxes fully rebuilt (masks too)
# label -> (replace params, options): lm = detection landmarks for labelled boxes (True) or none at all (False);
# region = compositor region dict; min_px = faces lower than this are blurred instead (faceveil's default blur)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "estimated": (_E, {}),  # detection landmarks where they match, estimated elsewhere (whole region rebuilt)
    "fitted": ({"no_landmarks": "fitted"}, {}),  # before: unmatched boxes get the frontal box-fitted paste
    "all_estimated": (_E, {"lm": False}),  # no detection landmarks at all: every face from the mean shape
    "occ_replace": ({"occluders": "replace"}, {}),  # masks rebuilt with the face instead of kept
    "region_1.0": (_E, {"region": {"shape": "box", "mask_scale": 1.0}}),  # region = the labelled box itself
    "region_ellipse": (_E, {"region": {"shape": "ellipse", "mask_scale": 1.25}}),
    "blur_under16": (_E, {"min_px": 16.0}),  # replace faces >= 16 px high, blur the smaller ones
    "estimated_keep": ({"no_landmarks": "estimated-keep"}, {}),  # the default: unmatched masked faces keep a mask
    "ellipse_keep": ({"no_landmarks": "estimated-keep"}, {"region": {"shape": "ellipse", "mask_scale": 1.25}}),
    "poisson": ({**_E, "harmonizer": "poisson"}, {}),
    "nograin": ({**_E, "grain": False}, {}),
}

_DETS: dict[str, Detections] = {}


def _detections(anon: Anonymizer, s: T.Sample) -> Detections:
    if s.name not in _DETS:
        _DETS[s.name] = anon.detect(s.image)
    return _DETS[s.name]


def anonymize_samples(samples, spec, seed):
    if spec.method == "none":
        return [s.image for s in samples]
    params, opt = VARIANTS[spec.label]
    anon = Anonymizer("replace", params, seed=seed, load_detector=False, region=opt.get("region"))
    blur = Anonymizer("blur", seed=seed, load_detector=False) if opt.get("min_px") else None
    out = []
    for s in samples:
        boxes = s.boxes
        img = s.image
        if blur is not None:
            small = (boxes[:, 3] - boxes[:, 1]) < opt["min_px"]
            if small.any():
                img = blur.anonymize(img, Detections.from_boxes(boxes[small], source="label"), blur.rng_for(s.name))
            boxes = boxes[~small]
        labels = Detections.from_boxes(boxes, source="label")
        if opt.get("lm", True) and len(labels):
            labels = labels.with_landmarks_from(_detections(anon, s))
        out.append(anon.anonymize(img, labels, anon.rng_for(s.name)) if len(labels) else img)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="/work/shared/data/facemask/images")
    ap.add_argument("--labels", default="/work/shared/data/facemask/gt.txt")
    ap.add_argument("--variants", required=True)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="training seed (the split stays split seed 0)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    specs = [T.MethodSpec("none", "none")] + [T.MethodSpec(v, "replace") for v in a.variants.split(",")]
    for v in a.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choices: {', '.join(VARIANTS)}")
    T.anonymize_samples = anonymize_samples  # the run's own loop, with these variants
    samples, problems = T.load_samples(a.images, a.labels, a.max_images)
    cfg = T.RunConfig(methods=specs, budget_s=float("inf"), max_steps=a.steps, seed=a.seed, batch=8, input_size=256,
                      threads=1)
    res = T.run(samples, cfg, a.output)
    for row in res["methods"]:
        print(json.dumps({"label": row["label"], "ap": round(row["ap"], 3),
                          "by_size": [round(x, 3) if x == x else None for x in np.asarray(row["ap_by_size"], float)]
                          if isinstance(row["ap_by_size"], list) else row["ap_by_size"],
                          "ap_anon_test": round(row["ap_anonymized_test"], 3)}))


if __name__ == "__main__":
    main()
