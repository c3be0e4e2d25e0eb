"""`faceveil train harmonizer`: the U-Net that matches a pasted face's colour and light to its scene.

The proxy task of the decoupled-anonymization paper: take a real face with its
surroundings, re-colour / re-light the face at random (Lab shift and gain, gamma,
per-channel gain, a shading gradient; on top of a random exposure and colour cast
of the whole scene), and train the network to restore the
original from the re-coloured crop, the face mask and the context. It never sees
identity pairs, so any face photos serve. The crops are cut exactly as the
`replace` method cuts them at inference (a window of twice the box around the
face, squashed to 128x128; the head mask warped from the template by the 5
landmarks; the region the method replaces filled from the context), so the
network sees at training time what it will see when it runs.

Only numpy/cv2 at import time: torch is imported by the command (the `train` extra).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

NET = 128  # network input size (= harmonizer_net.NET_SIZE; duplicated so this module needs no torch)
STORE = 192  # stored crops cover 3 box sizes; augmentation cuts the 2-box window out of them
BOX_PX = 64  # a box's side in the network input (the window is twice the box)


@dataclass
class Crops:
    """Training faces, STORE x STORE each: the photo, the same with the replaced region
    filled from the context (what `replace` pastes onto), and the head mask."""

    image: np.ndarray  # uint8 (N, S, S, 3)
    base: np.ndarray  # uint8 (N, S, S, 3)
    alpha: np.ndarray  # uint8 (N, S, S), 255 = face
    sources: list[str]

    def __len__(self) -> int:
        return len(self.image)


def _store_transform(box: np.ndarray) -> np.ndarray:
    """3x3: frame -> stored crop (a 3-box window, box side -> BOX_PX, each axis on its own)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    sx, sy = BOX_PX / bw, BOX_PX / bh
    return np.array([[sx, 0, STORE / 2 - sx * cx], [0, sy, STORE / 2 - sy * cy], [0, 0, 1]])


def crop_face(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray):
    """(image, base, alpha) stored crops of one face, or None when its landmarks are unusable."""
    from ..anonymize.bank import SIZE, TEMPLATE, face_mask, plausible
    from ..anonymize.replace_looks import fill_unknown

    if not plausible(landmarks, box):
        return None
    m, _ = cv2.estimateAffinePartial2D(TEMPLATE.astype(np.float32), np.asarray(landmarks, np.float32))
    if m is None:
        return None
    a = _store_transform(box)
    crop = cv2.warpAffine(image, a[:2], (STORE, STORE), flags=cv2.INTER_AREA if a[0, 0] < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
    alpha = cv2.warpAffine(face_mask(SIZE, 0.1, True), (a @ np.vstack([m, [0, 0, 1]]))[:2], (STORE, STORE),
                           flags=cv2.INTER_LINEAR, borderValue=0)
    # What `replace` treats as unknown: the box and the region ellipse (mask_scale 1.3).
    c, h = STORE / 2, BOX_PX / 2
    yy, xx = np.mgrid[0:STORE, 0:STORE] + 0.5
    hole = ((np.abs(xx - c) <= h) & (np.abs(yy - c) <= h)) | (((xx - c) ** 2 + (yy - c) ** 2) <= (1.3 * h) ** 2)
    base = fill_unknown(crop, ~hole, BOX_PX)
    return crop, base, np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)


def collect(dirs: list[str], min_face: int = 24, max_side: int = 1024, progress: bool = True) -> tuple[Crops, dict]:
    """Detect faces (CenterFace) in every image under ``dirs`` and cut training crops. The folders are listed as
    anonymize lists one (io.inputs.list_folder: hidden files and folders are not photos); a folder or file in them
    that cannot be read is bad usage before any work (a rglob passed over such a folder without a word: the model
    was trained on fewer photos than given)."""
    from ..detect import get_detector
    from ..errors import FaceveilError, UsageError, one_line
    from ..io.images import is_image_path, read_rgb
    from ..io.inputs import list_folder

    paths = []
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise UsageError(f"{d}: no such folder")
        if p.is_file():
            paths.append(p)
            continue
        files, _, bad, _ = list_folder(p)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise UsageError(f"{one_line(bad[0][0])}: {bad[0][1]}{more}; nothing trained (make it readable, or move "
                             "it out)")
        paths += [q for q in files if is_image_path(q)]
    if not paths:
        raise UsageError(f"no images under {' '.join(dirs)}")
    det = get_detector("centerface", {"threshold": 0.5})
    out: list[tuple] = []
    srcs: list[str] = []
    stats = {"images": len(paths), "unreadable": 0, "faces": 0, "small": 0, "implausible": 0}
    it = paths
    if progress:
        from ..progress import tqdm

        it = tqdm(paths, desc="faces", unit="img", file=sys.stderr)
    for path in it:
        try:
            img = read_rgb(path)
        except Exception as exc:  # a bad photo is skipped (training data need not be complete), and named
            stats["unreadable"] += 1
            cause = exc if isinstance(exc, FaceveilError) else f"{path}: cannot read ({exc})"
            print(f"faceveil: warning: skipped {one_line(cause)}", file=sys.stderr)
            continue
        f = min(1.0, max_side / max(img.shape[:2]))
        if f < 1:
            img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        dets = det.detect(img)
        for box, lm in zip(dets.xyxy.astype(np.float64), dets.landmarks.astype(np.float64)):
            stats["faces"] += 1
            if min(box[2] - box[0], box[3] - box[1]) < min_face:
                stats["small"] += 1
                continue
            c = crop_face(img, box, lm)
            if c is None:
                stats["implausible"] += 1
                continue
            out.append(c)
            srcs.append(str(path))
    if not out:
        raise UsageError(f"no usable faces (>= {min_face} px, frontal enough) under {' '.join(dirs)}")
    stats["kept"] = len(out)
    return Crops(np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), np.stack([o[2] for o in out]),
                 srcs), stats


def perturb(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random re-colouring / re-lighting of a float32 RGB crop in [0, 1]."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    mean = lab.reshape(-1, 3).mean(axis=0)
    lab[..., 0] = (lab[..., 0] - mean[0]) * rng.uniform(0.7, 1.35) + mean[0] + rng.uniform(-30, 30)
    lab[..., 1:] = (lab[..., 1:] - mean[1:]) * rng.uniform(0.7, 1.3) + mean[1:] + rng.normal(0, 8, 2)
    theta, g = rng.uniform(0, 2 * np.pi), rng.uniform(-20, 20)  # a shading gradient across the face
    n = rgb.shape[0]
    yy, xx = np.mgrid[0:n, 0:n] / (n / 2) - 1
    lab[..., 0] += g * (xx * np.cos(theta) + yy * np.sin(theta)) / 2
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    out = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)
    out = out ** rng.uniform(0.75, 1.35) * rng.uniform(0.9, 1.1, 3)
    return np.clip(out, 0, 1).astype(np.float32)


def scene_cast(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One random exposure, gamma and colour cast applied to the whole scene (face and context
    alike), so that the network learns to follow the context, not a prior of what skin looks like."""
    gain = rng.uniform(0.45, 1.2) * rng.uniform(0.75, 1.25, 3)
    gamma = rng.uniform(0.8, 1.25)
    return [np.clip(im ** gamma * gain, 0, 1).astype(np.float32) for im in images]


def sample(crops: Crops, i: int, rng: np.random.Generator, augment: bool = True, recolour: float = 0.9):
    """(input, mask, target) float32 at NET x NET: the face re-coloured over the filled context."""
    s = rng.uniform(0.9, 1.1) if augment else 1.0
    dx, dy = rng.uniform(-6, 6, 2) if augment else (0.0, 0.0)
    c = STORE / 2
    m = np.array([[s, 0, NET / 2 - s * c + dx], [0, s, NET / 2 - s * c + dy]], np.float32)
    if augment and rng.random() < 0.5:  # horizontal flip: x -> NET - 1 - x after the transform
        m[0] = [-m[0, 0], 0, NET - 1 - m[0, 2]]
    warp = lambda a: cv2.warpAffine(a, m, (NET, NET), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)  # noqa: E731
    img = warp(crops.image[i]).astype(np.float32) / 255
    base = warp(crops.base[i]).astype(np.float32) / 255
    a = (warp(crops.alpha[i]).astype(np.float32) / 255)[:, :, None]
    if augment and rng.random() < 0.7:
        img, base = scene_cast([img, base], rng)
    face = perturb(img, rng) if rng.random() < recolour else img
    x = face * a + base * (1 - a)
    y = img * a + base * (1 - a)
    return x, a, y


def batch(crops: Crops, idx, rng: np.random.Generator, augment: bool = True):
    xs, ms, ys = zip(*(sample(crops, int(i), rng, augment) for i in idx))
    t = lambda v: np.ascontiguousarray(np.stack(v).transpose(0, 3, 1, 2))  # noqa: E731
    return t(xs), t(ms), t(ys)


def parse_duration(text: str) -> float:
    from .train_on_anon import parse_duration as p

    return p(text)


def train(crops: Crops, out: str | Path, *, seconds: float = 1200, steps: int = 0, seed: int = 0,
          device: str = "cpu", threads: int = 1, batch_size: int = 16, width: int = 16, lr: float = 2e-3,
          val_fraction: float = 0.05, progress: bool = True) -> dict:
    """Train, export ONNX to ``out``, return a summary (steps, time, validation L1)."""
    import torch

    from .detector import seed_everything
    from .harmonizer_net import HarmonizerUNet, export_onnx, n_params

    if device == "cpu":
        torch.set_num_threads(max(1, threads))
    seed_everything(seed, device)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(crops))
    n_val = int(round(len(crops) * val_fraction)) if len(crops) >= 20 else 0
    val_idx, tr_idx = order[:n_val], order[n_val:]
    model = HarmonizerUNet(width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    vx = vm = vy = None
    if n_val:
        vrng = np.random.default_rng([seed, 1])
        vx, vm, vy = (torch.from_numpy(v).to(device) for v in batch(crops, np.resize(val_idx, 64), vrng, False))

    def loss_fn(pred, m, y):
        w = 0.1 + m  # inside the face counts ten times more than the (unchanged) context
        return ((pred - y).abs() * w).sum() / (w.sum() * 3)

    def val_l1() -> tuple[float, float]:
        if vx is None:
            return float("nan"), float("nan")
        model.eval()
        with torch.no_grad():
            pred = model(vx, vm)
        model.train()
        inside = vm.expand_as(vx)
        return (float(((vx - vy).abs() * inside).sum() / inside.sum()),
                float(((pred - vy).abs() * inside).sum() / inside.sum()))

    t0 = time.perf_counter()
    step, losses = 0, []
    bar = None
    if progress:
        from ..progress import tqdm

        bar = tqdm(total=steps or None, desc="train", unit="step", file=sys.stderr)
    while True:
        elapsed = time.perf_counter() - t0
        if (steps and step >= steps) or (not steps and elapsed >= seconds):
            break
        frac = step / steps if steps else elapsed / max(seconds, 1e-9)
        for g in opt.param_groups:  # warm-up, then cosine to zero over the run
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
        idx = rng.choice(tr_idx, batch_size)
        x, m, y = (torch.from_numpy(v).to(device) for v in batch(crops, idx, rng))
        loss = loss_fn(model(x, m), m, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t0
    before, after = val_l1()
    export_onnx(model, out)
    return {"output": str(out), "steps": step, "seconds": round(train_s, 1), "batch": batch_size, "width": width,
            "params": n_params(model), "faces_train": int(len(tr_idx)), "faces_val": int(n_val), "seed": seed,
            "device": device, "threads": threads, "loss_last100": float(np.mean(losses[-100:])) if losses else None,
            "val_l1_face_input": before, "val_l1_face_output": after, "onnx_bytes": Path(out).stat().st_size}
