"""bench/bench_replace.py's LFW privacy table for replace, plus replace on the same faces with their landmarks
dropped (every face then takes the estimated mean shape, anonymize/box_landmarks.py, as an unmatched labelled
box does in `faceveil eval train` and dataset mode `--boxes gt`). Evaluation only (LFW).

    PYTHONPATH=src python bench/bench_replace_estimated.py --people 50 --gallery 200 \
        --variants estimated,estimated-keep
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_replace as B  # noqa: E402
from faceveil.anonymize import get_method  # noqa: E402
from faceveil.detections import Detections  # noqa: E402


class NoLandmarks:
    """replace applied to boxes whose landmarks are dropped."""

    def __init__(self, params: dict):
        self.inner = get_method("replace", params)
        self.counts = self.inner.counts

    def apply(self, frame, detections, compositor, rng):
        bare = Detections(detections.xyxy, detections.score, None, detections.track_id)
        return self.inner.apply(frame, bare, compositor, rng)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=50)
    ap.add_argument("--gallery", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="estimated", help="no_landmarks values to run without landmarks")
    a = ap.parse_args()
    methods = {"replace": ("replace", {})}
    for v in a.variants.split(","):
        methods[f"replace-nolandmarks-{v}"] = (f"nolm:{v}", {"no_landmarks": v})
    real = B.get_method
    B.get_method = lambda name, params=None: (NoLandmarks(params) if name.startswith("nolm:")
                                               else real(name, params))
    B.bench(a.people, a.seed, a.gallery, methods)


if __name__ == "__main__":
    main()
