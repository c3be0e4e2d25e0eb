"""Training the learned blur (DartBlur, Jiang et al. CVPR 2023) with its four objectives.

g(x, b) = G(x, b) + refiner residual inside each face region, where G is the
``blur`` method (computed in numpy, it needs no gradient) and the refiner is a
small U-Net on a fixed-size crop with context (``anonymize/learnedblur_geometry``).
The residual starts from a randomly chosen bank face's blurred-away detail (the
prior, identity-free) that the network sees and corrects.
Losses, equally weighted by default:
- L_rev  = mean over faces of max(mean |g - G| inside the box - epsilon, 0)  (review convenience),
  optionally plus the same hinge on the colour part of g - G (its difference from the grey mean of the
  three channels; budget ``colour_epsilon``, off by default): without it the network spends its budget on a
  purple-blue tint that CenterFace answers to; with it, on dark high-contrast blotches (docs/learned-models.md);
- L_oper = L_det(f(g), f(x)): f = CenterFace run in torch (``onnx_torch``), targets its detections on x;
- L_post = L_det(f_g(g), f(x)): f_g = the compact detector, trained on the fly on g's output;
- L_cycl = L_det(f_g'(x), f(x)), f_g' = f_g after one unrolled SGD step on g's output (second order,
  ``torch.func.functional_call``), as in the paper's Algorithm 1.
Phases (fractions of the budget): warm-up (L_rev + L_oper for g, f_g trained), full, then f_g only.
f_g itself learns from the labelled boxes of the blurred images (what a dataset user would do).
"""
from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..anonymize.compositor import Compositor, RegionParams
from ..anonymize.learnedblur_geometry import (CONTEXT, MASK_SCALE, MIN_FACE, SIZE, crop_rect, extract, face_priors,
                                              residual_mask)
from ..anonymize.methods.blur import Blur
from ..detections import Detections, nms
from . import detector as D

RES_SCALE = 32.0  # residual units: the zero-initialised last conv starts g at exactly G
# The structure-only constraint's low-pass: a Gaussian of this sigma in crop pixels (the face box is SIZE / CONTEXT
# = 32 px wide on the crop), subtracted from the residual so that nothing face-sized or larger (a blotch, a
# brightening of the whole face) is added, while eyes, brows, nose and mouth (a few pixels each) are.
HIGHPASS_SIGMA = 6.0


# the refiner -----------------------------------------------------------------

def _cr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))


class Refiner(nn.Module):
    """Small U-Net: (N, 3, SIZE, SIZE) blurred crop in 0..255 and the face's prior detail -> masked residual.

    The residual is ``prior_scale`` times the prior detail (one bank face's structure, ``face_priors``)
    plus the network's own correction; the network sees the prior too. No batch norm: a face's output
    must not depend on the other faces in the batch.

    ``structure_only`` (the default) constrains the residual inside the graph, so the exported ONNX carries
    the constraint whatever the weights: it is made grey (the mean of the three channels, added equally to
    R, G and B: no tint), high-passed (minus its Gaussian low-pass of ``HIGHPASS_SIGMA``: no blotches) and,
    under the residual mask, zero-mean (the face's mean colour stays the plain blur's). Unconstrained, the
    network spent its budget on a magenta/purple tint that CenterFace answers to (docs/learned-models.md)."""

    def __init__(self, width: int = 16, prior_scale: float = 0.5, structure_only: bool = True,
                 highpass_sigma: float = HIGHPASS_SIGMA):
        super().__init__()
        w = width
        self.e1 = _cr(6, w)  # one conv at full size: that level dominates the cost
        self.e2 = nn.Sequential(_cr(w, 2 * w, 2), _cr(2 * w, 2 * w))
        self.e3 = nn.Sequential(_cr(2 * w, 4 * w, 2), _cr(4 * w, 4 * w), _cr(4 * w, 4 * w))
        self.d2 = nn.Sequential(_cr(6 * w, 2 * w), _cr(2 * w, 2 * w))
        self.d1 = _cr(3 * w, w)
        self.out = nn.Conv2d(w, 3, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("mask", torch.from_numpy(residual_mask())[None, None])
        self.register_buffer("prior_scale", torch.tensor(float(prior_scale)))
        self.structure_only = bool(structure_only)
        r = int(math.ceil(3 * highpass_sigma))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / highpass_sigma) ** 2)
        self.register_buffer("lowpass", torch.from_numpy((k / k.sum()).astype(np.float32))[None, None, None])

    def structure(self, r: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) raw residual -> grey, high-passed, zero-mean under the mask, masked; (N, 3, S, S)."""
        r = r.mean(1, keepdim=True)
        k = self.lowpass  # (1, 1, 1, K): separable Gaussian, edges replicated (no dark rim from zero padding)
        p = k.shape[-1] // 2
        lo = F.conv2d(F.pad(r, (p, p, 0, 0), mode="replicate"), k)
        lo = F.conv2d(F.pad(lo, (0, 0, p, p), mode="replicate"), k.transpose(2, 3))
        m = self.mask
        h = (r - lo) * m
        h = h - m * (h.sum((2, 3), keepdim=True) / m.sum())  # sum of m * (hp - c) is 0
        return torch.cat([h, h, h], 1)

    def forward(self, crop: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        x = torch.cat([crop / 127.5 - 1.0, prior / 64.0], 1)
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        d2 = self.d2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], 1))
        d1 = self.d1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1))
        r = self.out(d1) * RES_SCALE + self.prior_scale * prior
        return self.structure(r) if self.structure_only else r * self.mask


def load_onnx_weights(refiner: Refiner, path) -> None:
    """Copy a refiner ONNX file's weights (``export_onnx`` keeps the parameter names) into ``refiner``.

    Every parameter must be found with its shape: a file of another architecture is an error, not a silent
    partial start."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    state = refiner.state_dict()
    for name, t in state.items():
        if name not in inits or tuple(inits[name].shape) != tuple(t.shape):
            raise ValueError(f"{path}: no weight {name!r} of shape {tuple(t.shape)} (another refiner architecture)")
        state[name] = torch.from_numpy(np.array(inits[name], np.float32))
    refiner.load_state_dict(state)


def refine(refiner: Refiner, blurred: torch.Tensor, boxes: list[np.ndarray], region: torch.Tensor,
           max_faces: int = 64, priors: torch.Tensor | None = None, rng: np.random.Generator | None = None
           ) -> torch.Tensor:
    """g's torch path: blurred images (N,3,H,W, 0..255) + each face's residual, under the region weights.

    Mirrors ``LearnedBlur.apply`` (crop with context, bilinear resize to SIZE, residual resized back);
    overlapping faces add their residuals here where inference lets the later face win. Each face gets
    one of ``priors`` (K, 3, SIZE, SIZE), drawn with ``rng`` (zeros when None)."""
    n, _, h, w = blurred.shape
    jobs = []
    for i, bs in enumerate(boxes):
        for b in bs:
            if min(b[2] - b[0], b[3] - b[1]) >= MIN_FACE:
                jobs.append((i, crop_rect(b, CONTEXT)))
    if len(jobs) > max_faces:  # the largest faces first: they carry most of the detection signal
        jobs = sorted(jobs, key=lambda j: -(j[1][2] - j[1][0]) * (j[1][3] - j[1][1]))[:max_faces]
    if not jobs:
        return blurred
    crops = []
    for i, (x1, y1, x2, y2) in jobs:
        crops.append(F.interpolate(_window(blurred[i : i + 1], (x1, y1, x2, y2)), (SIZE, SIZE), mode="bilinear",
                                   align_corners=False))
    if priors is None:
        prior = torch.zeros(len(crops), 3, SIZE, SIZE, device=blurred.device)
    else:
        rng = rng or np.random.default_rng(0)
        prior = priors[torch.from_numpy(rng.integers(len(priors), size=len(crops))).to(priors.device)]
    res = refiner(torch.cat(crops), prior)
    canvas = [torch.zeros_like(blurred[0]) for _ in range(n)]
    for (i, (x1, y1, x2, y2)), r in zip(jobs, res):
        up = F.interpolate(r[None], (y2 - y1, x2 - x1), mode="bilinear", align_corners=False)[0]
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        part = up[:, sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1]
        wt = region[i if len(region) > 1 else 0, :, sy1:sy2, sx1:sx2]  # as the method: zero-mean under the weights
        part = part - (wt * part).sum((1, 2), keepdim=True) / (wt.sum() + 1e-6)
        canvas[i] = canvas[i] + F.pad(part, (sx1, w - sx2, sy1, h - sy2))
    return (blurred + torch.stack(canvas) * region).clamp(0, 255)


def _window(img: torch.Tensor, rect: tuple[int, int, int, int]) -> torch.Tensor:
    """(1,C,H,W) -> the rectangle's pixels, zero outside the image (as ``learnedblur_geometry.extract``)."""
    x1, y1, x2, y2 = rect
    h, w = img.shape[-2:]
    p = F.pad(img, (max(-x1, 0), max(x2 - w, 0), max(-y1, 0), max(y2 - h, 0)))
    ox, oy = max(-x1, 0), max(-y1, 0)
    return p[:, :, y1 + oy : y2 + oy, x1 + ox : x2 + ox]


def l_rev(g: torch.Tensor, blurred: torch.Tensor, boxes: list[np.ndarray], epsilon: float) -> torch.Tensor:
    """Hinge on the mean absolute difference (0..255 units) to the Gaussian blur inside each face box."""
    diff = (g - blurred).abs().mean(1)
    h, w = diff.shape[-2:]
    terms = []
    for i, bs in enumerate(boxes):
        for x1, y1, x2, y2 in np.round(np.asarray(bs).reshape(-1, 4)).astype(int):
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if x2 > x1 and y2 > y1:
                terms.append(F.relu(diff[i, y1:y2, x1:x2].mean() - epsilon))
    return torch.stack(terms).mean() if terms else g.sum() * 0.0


def l_colour(g: torch.Tensor, blurred: torch.Tensor, boxes: list[np.ndarray], epsilon: float) -> torch.Tensor:
    """``l_rev``'s hinge on the colour of the change: |d - grey(d)| with d = g - G, grey = the channel mean."""
    d = g - blurred
    return l_rev(d - d.mean(1, keepdim=True), torch.zeros_like(d), boxes, epsilon)


def l_cycl(fg: nn.Module, y: torch.Tensor, x: torch.Tensor, t_gt: dict, t_cf: dict, inner_lr: float) -> torch.Tensor:
    """L_det(f_g'(x), f(x)) with f_g' = f_g after one SGD step on g's output ``y``: second order, so the
    gradient reaches g through the step (the paper's Algorithm 1)."""
    params = dict(fg.named_parameters())
    inner = D.l_det(functional_call(fg, params, (y,)), t_gt)
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    stepped = {k: p - inner_lr * gr for (k, p), gr in zip(params.items(), grads)}
    return D.l_det(functional_call(fg, stepped, (x,)), t_cf)


# data --------------------------------------------------------------------------

@dataclass
class LBConfig:
    budget_s: float = 1200.0
    max_steps: int | None = None
    seed: int = 0
    device: str = "cpu"
    batch: int = 8
    input_size: int = 128
    scale: tuple[float, float] = (0.6, 1.6)
    width: int = 16  # refiner
    det_width: int = 8  # f_g, the on-the-fly compact detector
    lr: float = 5e-3
    det_lr: float = 3e-3
    inner_lr: float = 0.01  # the unrolled SGD step of L_cycl
    epsilon: float = 20.0
    colour_epsilon: float = float("inf")  # L_rev's budget for the colour part of g - G (inf: no colour term)
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # rev, oper, post, cycl
    warmup: float = 0.2
    prior: float = 0.5  # scale of the bank face detail added to each blurred face (0: none, the network alone)
    det_only: float = 0.05
    kernel: int = 0
    relative: float = 1.5
    sigma: float = 0.0
    cf_threshold: float = 0.4  # CenterFace score above which its detections on x are targets
    max_faces: int = 32
    threads: int = 2  # data preparation threads
    # where CenterFace's boxes on each clean crop (the operation loss's targets) come from: "onnx", per crop in the
    # data threads (onnxruntime; 86 % of a batch's data preparation on a CPU), "torch", one batched forward of the
    # same weights on `device` in the training loop, or "auto": torch on a GPU, onnx on the CPU
    cf_targets: str = "auto"
    init: str = ""  # refiner ONNX to start from (its weights, e.g. the shipped ones); "" = from zero


@dataclass
class LBResult:
    refiner: Refiner
    detector: D.CompactFaceNet
    steps: int
    seconds: float
    log: list[dict] = field(default_factory=list)


def augment_around_face(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out_size: int,
                        scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``detector.augment``, but the crop holds a randomly chosen labelled face (somewhere in its middle half).

    Random crops of these photos are mostly background; centring on faces gives every step face signal,
    which is what a CPU budget of a few hundred steps needs."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return D.augment(image, boxes, rng, out_size, scale)
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    h, w = image.shape[:2]
    x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
    cx = (x1 + x2) / 2 * s + rng.uniform(-out_size / 4, out_size / 4)
    cy = (y1 + y2) / 2 * s + rng.uniform(-out_size / 4, out_size / 4)
    # Place the crop by translating the image, then let augment's crop start at that point (zero padding).
    x0, y0 = int(round(cx - out_size / 2)), int(round(cy - out_size / 2))
    nh, nw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    b = boxes * np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    out = extract(img, (x0, y0, x0 + out_size, y0 + out_size))
    b = b - np.array([x0, y0, x0, y0], np.float32)
    c = (b[:, :2] + b[:, 2:]) / 2
    inside = (c >= 0).all(1) & (c < out_size).all(1)
    b = np.clip(b[inside], 0, out_size)
    b = b[np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= 1.0]
    if rng.random() < 0.5:
        out = out[:, ::-1]
        b = np.stack([out_size - b[:, 2], b[:, 1], out_size - b[:, 0], b[:, 3]], axis=1).reshape(-1, 4)
    return np.ascontiguousarray(out), b.astype(np.float32)


def cf_on_device(cfg: LBConfig) -> bool:
    """Whether CenterFace's targets are computed by the torch copy on ``cfg.device`` (``cf_targets``)."""
    if cfg.cf_targets not in ("auto", "onnx", "torch"):
        raise ValueError("cf_targets must be auto, onnx or torch")
    return cfg.cf_targets == "torch" or (cfg.cf_targets == "auto" and torch.device(cfg.device).type != "cpu")


def cf_boxes(cf, x: torch.Tensor, threshold: float) -> list[np.ndarray]:
    """CenterFace's boxes (score above ``threshold``, NMS 0.3) on each image of the batch ``x`` (Bx3xHxW, RGB
    0..255), from one forward of the torch copy ``cf`` (TorchCenterFace), decoded as the onnxruntime detector
    decodes its own outputs; the batch padded bottom/right to a multiple of 32 as it pads an image."""
    from ..detect.centerface import decode, padded_size

    h, w = x.shape[-2:]
    ph, pw = padded_size(h, w)
    with torch.no_grad():
        out = cf.raw(torch.nn.functional.pad(x, (0, pw - w, 0, ph - h)) if (ph, pw) != (h, w) else x)
    heat, scale, offset, lms = (out[n].float().cpu().numpy() for n in cf.graph.output_names[:4])
    return [nms(decode(heat[i, 0], scale[i], offset[i], lms[i], threshold), 0.3).xyxy for i in range(len(heat))]


class _Data:
    def __init__(self, images, boxes, cfg: LBConfig):
        from ..detect.centerface import CenterFace

        self.images, self.boxes, self.cfg = images, boxes, cfg
        self.order = D._Order(len(images), cfg.seed)
        self.blur = Blur(Blur.Params(cfg.kernel, cfg.relative, cfg.sigma))
        self.comp = Compositor(RegionParams(shape="ellipse", mask_scale=MASK_SCALE))  # the trained models' region
        # None: the training loop computes the targets (cf_targets)
        self.cf = None if cf_on_device(cfg) else CenterFace(CenterFace.Params(threads=1))

    def one(self, step: int, j: int):
        cfg = self.cfg
        k = self.order[step * cfg.batch + j]
        rng = np.random.default_rng([cfg.seed, step, j])
        img, b = augment_around_face(self.images[k], self.boxes[k], rng, cfg.input_size, cfg.scale)
        dets = Detections.from_boxes(b, source="label")
        blurred = self.blur.apply(img, dets, self.comp, rng)
        region = self.comp.mask(dets, img.shape)
        cf = None if self.cf is None else nms(self.cf.detect_raw(img, cfg.cf_threshold), 0.3).xyxy
        return img, blurred, region, b, cf

    def batch(self, step: int, pool: ThreadPoolExecutor):
        items = list(pool.map(lambda j: self.one(step, j), range(self.cfg.batch)))
        t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float()  # noqa: E731
        x = t([it[0] for it in items])
        g0 = t([it[1] for it in items])
        region = torch.from_numpy(np.stack([it[2] for it in items]))[:, None]
        return x, g0, region, [it[3] for it in items], [it[4] for it in items]


def pseudo_labelled(folders, face_px: float = 48.0, threshold: float = 0.5) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Unlabelled photos for training: (path, image, boxes), faces found by CenterFace, each photo scaled so
    its largest face is ``face_px`` wide (the labelled sets' faces are small: a 1,000 px portrait face would
    fill every training crop). Photos where no face is found are left out; unreadable files are skipped,
    each named in a warning line."""
    from ..detect.centerface import CenterFace
    from ..errors import FaceveilError, one_line
    from ..io.images import read_rgb

    cf = CenterFace(CenterFace.Params(threads=1, threshold=threshold))
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    out = []
    for folder in folders:
        folder = Path(folder)
        files = sorted(folder.iterdir()) if folder.is_dir() else [folder]
        for f in files:
            if f.suffix.lower() not in exts:
                continue
            try:
                img = read_rgb(f)
            except FaceveilError as exc:  # skipped, and named
                print(f"faceveil: warning: skipped {one_line(exc)}", file=sys.stderr)
                continue
            s0 = min(1.0, 1024 / max(img.shape[:2]))  # detect on at most 1024 px
            small = cv2.resize(img, None, fx=s0, fy=s0, interpolation=cv2.INTER_AREA) if s0 < 1 else img
            dets = nms(cf.detect_raw(small, threshold), 0.3)
            if not len(dets):
                continue
            boxes = dets.xyxy / s0
            s = min(1.0, face_px / float((boxes[:, 2] - boxes[:, 0]).max()))
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img
            out.append((str(f), np.ascontiguousarray(img), (boxes * s).astype(np.float32)))
    return out


# training ----------------------------------------------------------------------

def train(images: list[np.ndarray], boxes: list[np.ndarray], cfg: LBConfig, progress: bool = True,
          cf_model: nn.Module | None = None) -> LBResult:
    from .onnx_torch import TorchCenterFace

    if not images:
        raise ValueError("no training images")
    D.seed_everything(cfg.seed, cfg.device)
    dev = torch.device(cfg.device)
    refiner = Refiner(cfg.width, cfg.prior)
    if cfg.init:
        load_onnx_weights(refiner, cfg.init)
    refiner = refiner.to(dev)
    priors = torch.from_numpy(face_priors(relative=cfg.relative, kernel=cfg.kernel)).permute(0, 3, 1, 2)
    priors = priors.contiguous().to(dev)
    fg = D.CompactFaceNet(cfg.det_width).to(dev)
    cf = (cf_model or TorchCenterFace()).to(dev)
    opt_g = torch.optim.Adam(refiner.parameters(), lr=cfg.lr)
    opt_f = torch.optim.AdamW(fg.parameters(), lr=cfg.det_lr, weight_decay=5e-4)
    data = _Data(images, boxes, cfg)
    w_rev, w_oper, w_post, w_cycl = cfg.weights
    use_fg = w_post > 0 or w_cycl > 0  # else f_g serves no loss: not trained, and steps cost far less
    log: list[dict] = []
    step, t0, last = 0, time.perf_counter(), 0.0
    fg.train()
    with ThreadPoolExecutor(max(cfg.threads, 1)) as pool, ThreadPoolExecutor(1) as prefetch:
        nxt = prefetch.submit(data.batch, 0, pool)
        while True:
            elapsed = time.perf_counter() - t0
            prog = elapsed / cfg.budget_s if cfg.budget_s > 0 else 0.0
            if cfg.max_steps:
                prog = max(prog, step / cfg.max_steps) if cfg.budget_s != float("inf") else step / cfg.max_steps
            if prog >= 1.0:
                break
            x, g0, region, gt, cfb = nxt.result()
            nxt = prefetch.submit(data.batch, step + 1, pool)
            x, g0, region = x.to(dev), g0.to(dev), region.to(dev)
            if data.cf is None:  # the targets from one batched forward on the device (cf_targets)
                cfb = cf_boxes(cf, x, cfg.cf_threshold)
            h, w = x.shape[-2:]
            t_gt = D.targets_from_boxes(gt, h, w, dev)
            t_cf = D.targets_from_boxes(cfb, h, w, dev)
            phase = "warmup" if prog < cfg.warmup else ("det" if use_fg and prog >= 1.0 - cfg.det_only else "full")
            scale = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0)))
            for grp in opt_g.param_groups:
                grp["lr"] = cfg.lr * scale
            for grp in opt_f.param_groups:
                grp["lr"] = cfg.det_lr * min(1.0, (step + 1) / 50) * scale
            rec = {"step": step, "phase": phase}
            if phase != "det":
                y = refine(refiner, g0, gt, region, cfg.max_faces, priors, np.random.default_rng([cfg.seed, step, 7]))
                losses = {"rev": l_rev(y, g0, gt, cfg.epsilon), "oper": D.l_det(cf(y), t_cf)}
                if math.isfinite(cfg.colour_epsilon):
                    losses["colour"] = l_colour(y, g0, gt, cfg.colour_epsilon)
                if phase == "full" and w_post > 0:
                    losses["post"] = D.l_det(fg(y), t_cf)
                if phase == "full" and w_cycl > 0:
                    losses["cycl"] = l_cycl(fg, y, x, t_gt, t_cf, cfg.inner_lr)
                wts = {"rev": w_rev, "colour": w_rev, "oper": w_oper, "post": w_post, "cycl": w_cycl}
                total = sum(wts[k] * v for k, v in losses.items())
                if total.requires_grad:  # else no face in this batch was large enough to refine
                    opt_g.zero_grad(set_to_none=True)
                    total.backward(inputs=list(refiner.parameters()))
                    torch.nn.utils.clip_grad_norm_(refiner.parameters(), 10.0)
                    opt_g.step()
                y_det = y.detach()
                rec.update({k: round(float(v.detach()), 4) for k, v in losses.items()})
            else:
                y_det = refine(refiner, g0, gt, region, cfg.max_faces, priors,
                               np.random.default_rng([cfg.seed, step, 7])).detach()
            if use_fg:
                loss_f = D.l_det(fg(y_det), t_gt)
                opt_f.zero_grad(set_to_none=True)
                loss_f.backward()
                torch.nn.utils.clip_grad_norm_(fg.parameters(), 10.0)
                opt_f.step()
                rec["fg"] = round(float(loss_f.detach()), 4)
            step += 1
            if step % 10 == 0 or step <= 10:
                log.append(rec)
            if progress and time.perf_counter() - last > 30:
                last = time.perf_counter()
                print(f"  [learnedblur] step {step}, {elapsed:.0f}s, {phase}: "
                      + ", ".join(f"{k} {v}" for k, v in rec.items() if k not in ("step", "phase")),
                      file=sys.stderr, flush=True)
    refiner.eval()
    fg.eval()
    return LBResult(refiner, fg, step, time.perf_counter() - t0, log)


def export_onnx(refiner: Refiner, path, opset: int = 17) -> None:
    """Inputs ``crop`` (N, 3, SIZE, SIZE) float 0..255 and ``prior`` (N, 3, SIZE, SIZE, a ``face_priors``
    entry per face), output ``residual`` (same shape, pixel units)."""
    import copy
    import warnings

    from ..io.atomic import atomic_path

    D.check_finite(refiner, path)
    model = copy.deepcopy(refiner).cpu().eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding mean nothing to a user
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE), torch.zeros(1, 3, SIZE, SIZE)), str(tmp),
                          input_names=["crop", "prior"], output_names=["residual"],
                          dynamic_axes={"crop": {0: "n"}, "prior": {0: "n"}, "residual": {0: "n"}},
                          opset_version=opset, dynamo=False)


def write_card(path, cfg: LBConfig, res: LBResult, extra: dict) -> None:
    """A JSON record next to the model: config, steps, time, the split, the loss log."""
    from ..io.atomic import write_bytes_atomic

    doc = {"faceveil_train": "learnedblur", "config": asdict(cfg), "steps": res.steps,
           "seconds": round(res.seconds, 1), "torch": torch.__version__, **extra, "log": res.log}
    # strict JSON: an infinite budget or a NaN loss is written as null (json wrote Infinity, NaN)
    doc = json.loads(json.dumps(doc, default=str), parse_constant=lambda _: None)
    write_bytes_atomic(Path(path), json.dumps(doc, indent=1, allow_nan=False).encode())
