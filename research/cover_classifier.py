"""Would a learned "is the lower face covered?" classifier let replace keep more masks? (issue 22, stop 38)

replace's occluder rule keeps a mask where it finds smooth, non-skin pixels covering the mouth; it kept 37 % of the
masks on facemask's tune half. A small CNN (3 conv layers, ~24 k parameters; torch, the `train` extra) on faces
aligned to the bank's template at 32 px, trained on what may ship weights: facemask's tune half (its with_mask /
without_mask labels; mask_weared_incorrect left out) and deepface-unit's faces (all bare), with flips, brightness /
colour jitter and, unless `--no-lowres`, half the faces seen at 8-32 px. Printed: the 5-fold cross-validation on
the tune half (folds by photo): AUC, masked / bare faces passed at P >= 0.9; then, trained on all of it, the share
of WIDER's faces >= 32 px (the tune half of its val photos: evaluation only) it calls covered, where almost no one
wears a mask, and P(covered) for scikit-image's astronaut (a bare studio portrait). `--oof FILE` writes the tune
faces' out-of-fold P(covered) (photo, label, p), in the order research/occluder_labels.py meets them.

    PYTHONPATH=src nice python research/cover_classifier.py [--epochs 40] [--no-lowres] [--oof FILE]
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import DATA  # noqa: E402

import faceveil  # noqa: E402
from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.anonymize.bank import align, plausible  # noqa: E402
from faceveil.detect.presets import DEFAULT_PRESET, get_preset  # noqa: E402
from faceveil.detections import box_iou  # noqa: E402
from faceveil.eval.splits import split  # noqa: E402
from faceveil.io.images import read_rgb  # noqa: E402
from faceveil.train.detector import seed_everything  # noqa: E402

SIZE = 32
COMP = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))


def faces(img: np.ndarray):
    """(box, aligned face) of each face replace draws with landmarks (the default preset's regions)."""
    dets = faceveil.detect(img)
    for r in COMP.regions(dets, img.shape):
        box, lm = dets.xyxy[r.index].astype(np.float64), r.landmarks
        if lm is not None and np.isfinite(lm).all() and plausible(lm, box):
            yield box, align(img, np.asarray(lm, np.float64), SIZE)


def facemask_tune():
    root = DATA / "facemask"
    crops, labels, photos = [], [], []
    for name in split(sorted(p.name for p in (root / "images").glob("*.jpg")))[0]:
        objs = ET.parse(root / "annotations" / f"{Path(name).stem}.xml").getroot().iter("object")
        truth = [(o.find("name").text, [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
                 for o in objs]
        if not truth:
            continue
        for box, face in faces(read_rgb(root / "images" / name)):
            overlap = box_iou(box[None], np.array([b for _, b in truth]))[0]
            label = truth[int(overlap.argmax())][0]
            if overlap.max() >= 0.3 and label != "mask_weared_incorrect":
                crops.append(face)
                labels.append(int(label == "with_mask"))
                photos.append(name)
    return np.array(crops), np.array(labels), photos


def bare_sets():
    """deepface-unit's faces (training: bare) and WIDER's tune-half faces >= 32 px (evaluation only)."""
    shared = []
    for path in sorted((DATA / "deepface-unit").glob("*.jpg")):
        img = read_rgb(path)
        s = 800 / max(img.shape[:2])
        shared += [f for _, f in faces(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1
                                       else img)]
    root = DATA / "widerface-val" / "images"
    wider = [f for n in split(sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")))[0]
             for b, f in faces(read_rgb(root / n)) if b[3] - b[1] >= 32]
    return np.array(shared), np.array(wider)


class CoverNet(nn.Module):
    def __init__(self, w: int = 16):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(4 * w, 1))

    def forward(self, x):
        return self.f(x / 255.0)[:, 0]


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).permute(0, 3, 1, 2)


def fit(x, y, epochs: int, lowres: bool, seed: int = 0) -> CoverNet:
    seed_everything(seed)
    net = CoverNet()
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-3)
    xt, yt = _t(x), torch.as_tensor(y, dtype=torch.float32)
    w_pos = (yt == 0).sum() / max(int((yt == 1).sum()), 1)  # the classes weighted equally
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = order[i:i + 64]
            xb = xt[b]
            xb = torch.where((torch.rand(len(b), generator=g) < 0.5)[:, None, None, None], xb.flip(3), xb)
            if lowres:
                side = int(torch.randint(8, SIZE + 1, (1,), generator=g))
                low = nn.functional.interpolate(nn.functional.interpolate(xb, size=(side, side), mode="area"),
                                                size=(SIZE, SIZE), mode="bilinear", align_corners=False)
                xb = torch.where((torch.rand(len(b), generator=g) < 0.5)[:, None, None, None], low, xb)
            xb = xb * (0.7 + 0.6 * torch.rand(len(b), 1, 1, 1, generator=g)) \
                + 25.5 * (torch.rand(len(b), 3, 1, 1, generator=g) - 0.5)
            loss = nn.functional.binary_cross_entropy_with_logits(net(xb), yt[b],
                                                                  weight=torch.where(yt[b] == 1, w_pos, torch.ones(1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def predict(net, x) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(net(_t(x))).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--no-lowres", action="store_true")
    ap.add_argument("--oof", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    x, y, photos = facemask_tune()
    xd, xw = bare_sets()
    bare = np.zeros(len(xd), int)
    names = sorted(set(photos))
    order = np.random.default_rng(0).permutation(len(names))
    fold_of = {names[i]: k % 5 for k, i in enumerate(order)}
    fold = np.array([fold_of[p] for p in photos])
    oof = np.zeros(len(y))
    for k in range(5):
        net = fit(np.concatenate([x[fold != k], xd]), np.concatenate([y[fold != k], bare]), a.epochs, not a.no_lowres)
        oof[fold == k] = predict(net, x[fold == k])
    if a.oof:
        np.savez(a.oof, photo=np.array(photos), label=y, p=oof)
    pos, neg = oof[y == 1], oof[y == 0]
    net = fit(np.concatenate([x, xd]), np.concatenate([y, bare]), a.epochs, not a.no_lowres)
    from skimage import data

    astro = data.astronaut()
    astro_face = [f for _, f in faces(astro)][0][None]
    print(f"tune half, 5-fold: {len(pos)} masked, {len(neg)} bare faces; AUC {(pos[:, None] > neg[None]).mean():.4f}; "
          f"at P >= 0.9: masked {(pos >= 0.9).mean():.1%}, bare {(neg >= 0.9).sum()}")
    pw = predict(net, xw)
    print(f"trained on it all: WIDER tune-half faces >= 32 px ({len(xw)}) called covered at P >= 0.9: "
          f"{(pw >= 0.9).mean():.1%} (>= 0.5: {(pw >= 0.5).mean():.1%}); astronaut P {predict(net, astro_face)[0]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
