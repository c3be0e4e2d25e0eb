"""The learned harmonizer at inference: an ONNX U-Net run by onnxruntime (no torch).

`faceveil train harmonizer` trains it (see ``train/harmonizer.py``); the package
ships one trained on CC0/MIT photos only (``data/harmonizer.onnx``). It takes the
work window of the `replace` method (the pasted face over the context-filled
region, squashed to 128x128) and the face's blend mask, and returns a colour and
light correction of the face, which is upsampled and added at the window's size:
the face's detail is kept, only its colour moves.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..errors import ModelError, UsageError
from .base import check_finite_output

NET_SIZE = 128


class Harmonizer:
    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for missing/bad files
            raise ModelError(f"{path}: cannot load harmonizer model ({str(exc).splitlines()[0]})") from None
        names = {i.name for i in self.session.get_inputs()}
        if names != {"image", "mask"}:
            raise ModelError(f"{path}: not a faceveil harmonizer (inputs {sorted(names)}, expected image and mask)")
        self.path = str(path)

    def run(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Raw network call: float32 (N,3,128,128) and (N,1,128,128) in [0, 1] -> harmonized (N,3,128,128)."""
        return check_finite_output(self.session.run(None, {"image": image, "mask": mask})[0], self.path)

    def __call__(self, comp: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Harmonize ``comp`` (uint8 HxWx3, the face pasted with weight ``alpha`` HxW): returns uint8 HxWx3."""
        h, w = comp.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) > NET_SIZE else cv2.INTER_LINEAR
        x = cv2.resize(comp, (NET_SIZE, NET_SIZE), interpolation=interp).astype(np.float32) / 255
        m = cv2.resize(alpha.astype(np.float32), (NET_SIZE, NET_SIZE), interpolation=interp)
        y = self.run(x.transpose(2, 0, 1)[None].copy(), m[None, None].copy())[0].transpose(1, 2, 0)
        delta = cv2.resize(y - x, (w, h), interpolation=cv2.INTER_LINEAR)  # zero where the mask is 0
        return np.clip(comp + delta * 255 + 0.5, 0, 255).astype(np.uint8)


def default_model() -> Path:
    ref = resources.files("faceveil") / "data" / "harmonizer.onnx"
    with resources.as_file(ref) as p:
        return Path(p)


@lru_cache(maxsize=4)
def load_harmonizer(path: str = "", threads: int = 1) -> Harmonizer:
    """The model at ``path``; empty: the one shipped with faceveil."""
    p = Path(path) if path else default_model()
    if not p.is_file() and path:  # a name the user gave: bad usage
        raise UsageError(f"{p}: harmonizer model not found")
    if not p.is_file():
        raise ModelError(f"{p}: harmonizer model not found" + ("" if path else " (the package is incomplete)"))
    try:
        return Harmonizer(p, threads)
    except ModelError as exc:  # a foreign file the user named: bad usage, before any work
        raise (UsageError if path else ModelError)(str(exc)) from None
