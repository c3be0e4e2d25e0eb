"""A compact anchor-free face detector (CenterFace/CenterNet-style) trained from scratch with torch.

- ``CompactFaceNet``: a small CNN (about 0.7 M parameters) with a top-down neck to
  stride 4 and three heads: heatmap (logits), log size, offset. Input: float
  RGB in 0..255, NCHW; the normalisation is inside the model, so the exported
  ONNX file takes raw pixels.
- ``l_det(outputs, targets)``: focal loss on the heatmap + L1 on size and offset
  at face centres. Targets come from boxes (labels or another detector's
  ``Detections``: ``targets_from_detections``), so the same loss serves
  learned-blur training where a fixed detector's output is the target.
- ``train(...)``: seeded, time-budgeted loop with checkpoints at budget fractions.
- ``predict``/``export_onnx``; ONNX inference without torch lives in ``centermap``.

Determinism: ``seed_everything`` seeds torch and turns on deterministic
algorithms; augmentation draws from a generator seeded by (seed, step, item),
so the thread that prepares a sample does not change it. Same seed and the same
number of steps give the same weights (a time budget alone varies the steps).
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..detections import Detections
from ..detect.centermap import STRIDE, decode, encode

PAD = 32  # the backbone's total stride: inputs are padded to a multiple of it


# model -------------------------------------------------------------------

def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _dws(cin: int, cout: int) -> nn.Sequential:
    """Depthwise-separable 3x3: used at strides 4 and 8, where plain 3x3 convs cost most of the FLOPs."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         _cbr(cin, cout, k=1))


class CompactFaceNet(nn.Module):
    """Backbone strides 4..32, top-down fusion to stride 4, heads: heatmap logits, log size, offset."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        ch = (w, 2 * w, 4 * w, 8 * w, 10 * w)  # strides 2, 4, 8, 16, 32
        self.stem = _cbr(3, ch[0], 2)
        self.s4 = nn.Sequential(_cbr(ch[0], ch[1], 2), _dws(ch[1], ch[1]))
        self.s8 = nn.Sequential(_cbr(ch[1], ch[2], 2), _cbr(ch[2], ch[2]))
        self.s16 = nn.Sequential(_cbr(ch[2], ch[3], 2), _cbr(ch[3], ch[3]))
        self.s32 = nn.Sequential(_cbr(ch[3], ch[4], 2), _cbr(ch[4], ch[4]))
        n = 4 * w
        self.lat32, self.lat16, self.lat8 = (_cbr(c, n, k=1) for c in (ch[4], ch[3], ch[2]))
        self.lat4 = _cbr(ch[1], 2 * w, k=1)
        self.smooth8 = _dws(n, n)
        self.reduce8 = _cbr(n, 2 * w, k=1)
        self.smooth4 = _dws(2 * w, 2 * w)
        self.head = _dws(2 * w, 2 * w)
        self.heat = nn.Conv2d(2 * w, 1, 1)
        self.size = nn.Conv2d(2 * w, 2, 1)
        self.offset = nn.Conv2d(2 * w, 2, 1)
        nn.init.constant_(self.heat.bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01: stable focal loss start
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        c4 = self.s4(self.stem(x))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p = self.lat32(c32)
        p = self.lat16(c16) + F.interpolate(p, scale_factor=2.0, mode="nearest")
        p = self.smooth8(self.lat8(c8) + F.interpolate(p, scale_factor=2.0, mode="nearest"))
        p = self.smooth4(self.lat4(c4) + F.interpolate(self.reduce8(p), scale_factor=2.0, mode="nearest"))
        h = self.head(p)
        return self.heat(h), self.size(h), torch.sigmoid(self.offset(h))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_finite(model: nn.Module, path) -> None:
    """FaceveilError (nothing written) unless every weight of ``model`` is finite: a run that diverged (a learning
    rate too high) exported NaN weights, which turn every face they touch to black or to nothing."""
    from ..errors import FaceveilError

    bad = sum(int((~torch.isfinite(t)).sum()) for t in model.state_dict().values() if t.is_floating_point())
    if bad:
        raise FaceveilError(f"{path}: not written: training diverged, {bad:,} weights are NaN or infinite "
                            "(try a lower --lr)")


# targets and loss --------------------------------------------------------

def targets_from_boxes(boxes: list[np.ndarray], height: int, width: int, device="cpu") -> dict[str, torch.Tensor]:
    """Batched target maps for images of ``height x width`` (one Nx4 xyxy array per image)."""
    ts = [encode(b, height, width, STRIDE) for b in boxes]
    return {
        "heatmap": torch.from_numpy(np.stack([t.heatmap for t in ts])).to(device),
        "size": torch.from_numpy(np.stack([t.size for t in ts])).to(device),
        "offset": torch.from_numpy(np.stack([t.offset for t in ts])).to(device),
        "mask": torch.from_numpy(np.stack([t.mask for t in ts])).to(device),
    }


def targets_from_detections(dets: list[Detections], height: int, width: int, min_score: float = 0.0,
                            device="cpu") -> dict[str, torch.Tensor]:
    """Targets from detections (e.g. a fixed detector's output as pseudo ground truth)."""
    return targets_from_boxes([d.xyxy[d.score >= min_score] for d in dets], height, width, device)


def l_det_parts(outputs, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) + L1 on log size and offset at centres."""
    heat_logit, size, offset = outputs
    gt = targets["heatmap"]
    mask = targets["mask"].unsqueeze(1)
    n_pos = mask.sum().clamp(min=1.0)
    # log-sigmoid forms stay finite where a clamped sigmoid would saturate.
    logp, log1mp = F.logsigmoid(heat_logit), F.logsigmoid(-heat_logit)
    p = torch.sigmoid(heat_logit)
    pos = (gt >= 1.0).to(heat_logit.dtype)
    pos_loss = (logp * (1 - p) ** 2 * pos).sum()
    neg_loss = (log1mp * p**2 * (1 - gt) ** 4 * (1 - pos)).sum()
    focal = -(pos_loss + neg_loss) / n_pos
    l_size = (F.l1_loss(size, targets["size"], reduction="none") * mask).sum() / n_pos
    l_off = (F.l1_loss(offset, targets["offset"], reduction="none") * mask).sum() / n_pos
    return {"heatmap": focal, "size": l_size, "offset": l_off}


def l_det(outputs, targets: dict[str, torch.Tensor], size_weight: float = 1.0, offset_weight: float = 1.0) -> torch.Tensor:
    parts = l_det_parts(outputs, targets)
    return parts["heatmap"] + size_weight * parts["size"] + offset_weight * parts["offset"]


# augmentation ------------------------------------------------------------

def augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out_size: int = 320,
            scale: tuple[float, float] = (0.6, 1.6), flip: bool = True, min_side: float = 1.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Scale jitter (log-uniform), a random ``out_size`` square crop (zero padding where the image is
    smaller), horizontal flip. Faces whose centre leaves the crop are dropped, the rest clipped."""
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    h, w = image.shape[:2]
    nh, nw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    b = np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    x0 = int(rng.integers(min(0, nw - out_size), max(0, nw - out_size) + 1))
    y0 = int(rng.integers(min(0, nh - out_size), max(0, nh - out_size) + 1))
    out = np.zeros((out_size, out_size, 3), np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + out_size, nw), min(y0 + out_size, nh)
    out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    b = b - np.array([x0, y0, x0, y0], np.float32)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    inside = (cx >= 0) & (cx < out_size) & (cy >= 0) & (cy < out_size)
    b = np.clip(b[inside], 0, out_size)
    b = b[np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= min_side]
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
        b = np.stack([out_size - b[:, 2], b[:, 1], out_size - b[:, 0], b[:, 3]], axis=1).reshape(-1, 4)
    return np.ascontiguousarray(out), b.astype(np.float32)


# training ----------------------------------------------------------------

@dataclass
class TrainConfig:
    budget_s: float = 1200.0  # training wall time (checkpoint evaluation not counted)
    max_steps: int | None = None  # stop after this many steps too; set it for exactly reproducible runs
    seed: int = 0
    device: str = "cpu"
    width: int = 16
    batch: int = 16
    input_size: int = 320
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    scale: tuple[float, float] = (0.6, 1.6)
    checkpoints: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    threads: int = 4  # augmentation threads (cv2 releases the GIL)


@dataclass
class Checkpoint:
    fraction: float
    step: int
    seconds: float
    state: dict = field(repr=False)


@dataclass
class TrainResult:
    model: CompactFaceNet
    checkpoints: list[Checkpoint]
    steps: int
    seconds: float
    losses: list[float]


def seed_everything(seed: int, device: str = "cpu") -> None:
    if str(device).startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.manual_seed(seed)
    # warn_only: an op without a deterministic kernel on some device warns instead of stopping a run.
    torch.use_deterministic_algorithms(True, warn_only=True)


class _Order:
    """Sample k of the stream: a seeded permutation per epoch (computed lazily, reproducible)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def __getitem__(self, k: int) -> int:
        e = k // self.n
        if e not in self._perms:
            self._perms[e] = np.random.default_rng([self.seed, e]).permutation(self.n)
        return int(self._perms[e][k % self.n])


def _batch(images, boxes, order: _Order, step: int, cfg: TrainConfig, pool: ThreadPoolExecutor, augment_fn=None):
    idx = [order[step * cfg.batch + j] for j in range(cfg.batch)]

    def one(j: int):
        rng = np.random.default_rng([cfg.seed, step, j])
        if augment_fn is not None:
            return augment_fn(idx[j], rng, cfg.input_size)
        return augment(images[idx[j]], boxes[idx[j]], rng, cfg.input_size, cfg.scale)

    items = list(pool.map(one, range(cfg.batch)))
    x = torch.from_numpy(np.stack([im for im, _ in items])).permute(0, 3, 1, 2).float()
    return x, targets_from_boxes([b for _, b in items], cfg.input_size, cfg.input_size)


def _lr(step: int, progress: float, cfg: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return cfg.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(images: list[np.ndarray], boxes: list[np.ndarray], cfg: TrainConfig, progress_label: str = "",
          augment_fn=None) -> TrainResult:
    """Train from scratch until the budget (or ``max_steps``) is used; keep weights at each budget fraction.

    ``augment_fn(index, rng, input_size) -> (image, boxes)`` replaces ``augment`` (e.g. the masked-face
    detector's occlusions and low light); it must draw only from ``rng`` to stay deterministic.
    """
    if not images:
        raise ValueError("no training images")
    seed_everything(cfg.seed, cfg.device)
    device = torch.device(cfg.device)
    model = CompactFaceNet(cfg.width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    order = _Order(len(images), cfg.seed)
    fractions = sorted(cfg.checkpoints)
    checkpoints: list[Checkpoint] = []
    losses: list[float] = []
    model.train()
    step, elapsed = 0, 0.0
    t_start = time.perf_counter()
    last_print = 0.0
    # One thread prepares the next batch (its samples on `pool`) while this one trains.
    with ThreadPoolExecutor(max(cfg.threads, 1)) as pool, ThreadPoolExecutor(1) as prefetch:
        nxt = prefetch.submit(_batch, images, boxes, order, 0, cfg, pool, augment_fn)
        while True:
            elapsed = time.perf_counter() - t_start
            progress = elapsed / cfg.budget_s if cfg.budget_s > 0 else 0.0
            if cfg.max_steps:
                progress = max(progress, step / cfg.max_steps)
            while fractions and progress >= fractions[0] - 1e-9 and step > 0:
                f = fractions.pop(0)
                checkpoints.append(Checkpoint(f, step, elapsed, copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})))
            if progress >= 1.0 or not fractions:
                break
            x, tg = nxt.result()
            nxt = prefetch.submit(_batch, images, boxes, order, step + 1, cfg, pool, augment_fn)
            x = x.to(device, non_blocking=True)
            tg = {k: v.to(device, non_blocking=True) for k, v in tg.items()}
            for g in opt.param_groups:
                g["lr"] = _lr(step, progress, cfg)
            loss = l_det(model(x), tg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            step += 1
            if step % 10 == 0 or step == 1:
                losses.append(float(loss.detach()))
            if progress_label and time.perf_counter() - last_print > 30:
                last_print = time.perf_counter()
                print(f"  [{progress_label}] step {step}, {elapsed:.0f}s, loss {float(loss.detach()):.3f}",
                      file=sys.stderr, flush=True)
    model.eval()
    return TrainResult(model, checkpoints, step, elapsed, losses)


# inference and export ------------------------------------------------------

@torch.no_grad()
def raw_maps(model: CompactFaceNet, image: np.ndarray, device="cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap (probability), size and offset maps for one RGB uint8 image (padded bottom/right)."""
    h, w = image.shape[:2]
    ph, pw = -(-h // PAD) * PAD, -(-w // PAD) * PAD
    x = np.zeros((ph, pw, 3), np.uint8)
    x[:h, :w] = image
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float().to(device)
    heat, size, off = model(t)
    return torch.sigmoid(heat)[0].cpu().numpy(), size[0].cpu().numpy(), off[0].cpu().numpy()


def predict(model: CompactFaceNet, image: np.ndarray, threshold: float = 0.05, device="cpu",
            nms_iou: float = 0.4) -> Detections:
    was_training = model.training
    model.eval()
    heat, size, off = raw_maps(model, image, device)
    if was_training:
        model.train()
    h, w = image.shape[:2]
    return decode(heat, size, off, threshold, STRIDE, nms_iou=nms_iou).clipped(w, h)


def load_state(state: dict, width: int = 16, device="cpu") -> CompactFaceNet:
    model = CompactFaceNet(width)
    model.load_state_dict(state)
    return model.to(device).eval()


def export_onnx(model: CompactFaceNet, path, opset: int = 17) -> None:
    """ONNX with dynamic batch, height and width; outputs heatmap *logits*, log size, offset."""
    from ..io.atomic import atomic_path

    check_finite(model, path)
    model = copy.deepcopy(model).cpu().eval()
    dummy = torch.zeros(1, 3, 64, 64)
    # The legacy TorchScript exporter: the torch.export-based one needs onnxscript, which faceveil does not install.
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (dummy,), str(tmp), input_names=["image"], output_names=["heatmap", "size", "offset"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "heatmap": {0: "n", 2: "h4", 3: "w4"},
                          "size": {0: "n", 2: "h4", 3: "w4"}, "offset": {0: "n", 2: "h4", 3: "w4"}},
            opset_version=opset, dynamo=False,
        )
