"""Train the masked-face detector faceveil ships (src/faceveil/data/masked.onnx) and write its record.

Data (both may ship weights): the tune half of the shared facemask photos (CC0; the split of
faceveil.eval.splits, never its held-out half) and deepface-unit (MIT), boxed by the `fast` preset at
score 0.5. Augmentation: faceveil.train.masked_aug.hard_augment. CompactFaceNet from scratch, CPU,
deterministic: the same --seed and --steps give the same weights (torch threads 1).

  nice -n 15 python tools/train_masked_detector.py --steps 3000 -o src/faceveil/data/masked.onnx
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder (facemask/, deepface-unit/)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="ONNX file (plus OUTPUT.json)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--budget", type=float, default=0, help="also stop after this many seconds (0: steps only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--no-deepface", action="store_true")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.torch_threads)
    from faceveil.train import detector as D
    from faceveil.train.masked_aug import HardAugment, hard_augment, load_facemask_tune, load_pseudo_labelled

    t0 = time.perf_counter()
    names, images, boxes = load_facemask_tune(a.data / "facemask" / "images", a.data / "facemask" / "gt.txt")
    sources = {"facemask_tune": len(names)}
    if not a.no_deepface:
        n2, i2, b2 = load_pseudo_labelled(a.data / "deepface-unit")
        names, images, boxes = names + n2, images + i2, boxes + b2
        sources["deepface_unit"] = len(n2)
    print(f"data: {sources}, {sum(len(b) for b in boxes)} faces ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    aug = HardAugment()

    def augment_fn(i, rng, size):
        return hard_augment(images[i], boxes[i], rng, size, aug)

    cfg = D.TrainConfig(budget_s=a.budget or 1e9, max_steps=a.steps, seed=a.seed, width=a.width, batch=a.batch,
                        input_size=a.input_size, lr=a.lr, checkpoints=(1.0,), threads=1)
    res = D.train(images, boxes, cfg, progress_label="masked", augment_fn=augment_fn)
    D.export_onnx(res.model, a.output)
    from faceveil.io.atomic import write_bytes_atomic

    record = {"model": a.output.name, "architecture": "faceveil.train.detector.CompactFaceNet",
              "parameters": D.n_params(res.model), "config": {**vars(a), "data": str(a.data), "output": str(a.output)},
              "train_config": asdict(cfg), "augment": asdict(aug), "data": sources,
              "split": "faceveil.eval.splits (seed 20261202): facemask tune half only",
              "images": names, "steps": res.steps, "seconds": round(res.seconds, 1),
              "loss_every_10_steps": [round(v, 4) for v in res.losses]}
    write_bytes_atomic(a.output.with_suffix(".json"), json.dumps(record, indent=1, default=str).encode())
    print(f"{res.steps} steps in {res.seconds:.0f}s -> {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
