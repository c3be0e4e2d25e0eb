"""Cycle-fidelity probes for the learned blur: what, added to a blurred face, lets a detector trained on it find clean faces?

Each probe is a probe-only method (registered here, not in faceveil) run through `faceveil eval train`'s
own protocol (facemask, split seed 0, 600 steps, batch 8, 256 px; ~3 min per method on 2 cores):

  python research/cycle_probes.py OUT                         # all probes below, plus 'none' as reference
  python research/cycle_probes.py OUT "none,grain:sigma=8"    # a chosen few

- grain: Gaussian blur 1.5x (or learnedblur, model=PATH) + seeded grey grain inside the region;
- softedge: the region feathered outward by `feather` of the face size (blur, or learnedblur with model=PATH);
- prior: blur + `scale` x a bank face's blurred-away detail and no network (a zero-correction refiner).
docs/learned-models.md ("What was tried") has the numbers.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceveil.anonymize import METHODS, Compositor, RegionParams
from faceveil.anonymize.base import Method
from faceveil.anonymize.methods.blur import Blur
from faceveil.anonymize.methods.learnedblur import shipped_model_path
from faceveil.registry import param
from faceveil.train import train_on_anon as T

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "facemask"


def _inner(model: str) -> Method:
    return METHODS.create("learnedblur", {"model": model}) if model else Blur(Blur.Params(0, 1.5, 0.0))


@METHODS.register("grain")
class Grain(Method):
    @dataclass(frozen=True)
    class Params:
        sigma: float = param(8.0, "grain standard deviation, 0..255")
        model: str = param("", "learnedblur model ('': plain Gaussian blur 1.5x)")

    def apply(self, frame, detections, compositor, rng):
        g = _inner(self.params.model).apply(frame, detections, compositor, rng)
        out = frame.copy()
        noise = rng.normal(0, self.params.sigma, frame.shape[:2] + (1,))
        for region in compositor.regions(detections, frame.shape):
            sl = region.slices
            compositor.blend(out, region, np.clip(np.rint(g[sl] + noise[sl]), 0, 255).astype(np.uint8))
        return out


@METHODS.register("softedge")
class SoftEdge(Method):
    @dataclass(frozen=True)
    class Params:
        feather: float = param(0.3, "outward feather, fraction of the face size")
        model: str = param("", "learnedblur model ('': plain Gaussian blur 1.5x)")

    def apply(self, frame, detections, compositor, rng):
        comp = Compositor(RegionParams("ellipse", 1.3, self.params.feather))
        return _inner(self.params.model).apply(frame, detections, comp, rng)


def prior_only_model(scale: float, folder: Path) -> str:
    from faceveil.train.learnedblur import Refiner, export_onnx

    path = folder / f"prior{scale}.onnx"
    export_onnx(Refiner(16, scale).eval(), path)  # the last conv starts at zero: residual = scale x prior
    return str(path)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    if len(sys.argv) > 2:
        methods = sys.argv[2]
    else:
        tmp = Path(tempfile.mkdtemp())
        ship = shipped_model_path()
        methods = ",".join(["none", "grain:sigma=8", f"grain:sigma=8:model={ship}", "softedge:feather=0.3",
                            f"softedge:feather=0.3:model={ship}"]
                           + [f"learnedblur:model={prior_only_model(s, tmp)}" for s in (0.5, 1.0)])
    samples, _ = T.load_samples(DATA / "images", DATA / "gt.txt")
    cfg = T.RunConfig(T.parse_methods(methods), float("inf"), 600, batch=8, input_size=256, threads=2)
    res = T.run(samples, cfg, out)
    for r in res["methods"]:
        print(f"{r['label']}: cycle {r['cycle_fidelity']:.3f}, post-hoc {r['posthoc_fidelity']:.3f}, "
              f"operation {r['operation_fidelity']:.3f}")


if __name__ == "__main__":
    main()
