from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The region tests of replace and learnedblur were written for: RegionParams' defaults until they became the one
# shipped region (box 1.25). A test that means "the default region" writes RegionParams() instead.
ELLIPSE_13 = {"shape": "ellipse", "mask_scale": 1.3}
SHARED = ROOT.parent / "shared" / "data"


def _workers_share_the_cores() -> None:
    """Under pytest-xdist with a worker per core (``make test``: 2 workers on CI's 2 cores), each worker's
    onnxruntime sessions would keep their threads spinning between runs (onnxruntime's default, faceveil's for
    photos: fastest when the detector has the machine to itself) and OpenCV would start a thread per core: both
    take the core the other worker is computing on. Measured on this suite's detection and replace tests (2 workers,
    2 cores): spinning off, CPU 193 -> 146 s and wall 246 -> 214 s for the same tests (tests/test_detect.py,
    test_detections_stable.py, test_eval_bench.py); OpenCV at one thread a worker, replace's tests 91 -> 86 s wall.
    Outputs are the same (neither setting changes the arithmetic). A test about the spinning itself takes the
    sessions as faceveil makes them (the ``real_sessions`` fixture)."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return
    import cv2
    import onnxruntime as ort

    from faceveil.batch import usable_cores

    cv2.setNumThreads(max(1, usable_cores() // workers))
    made = ort.InferenceSession

    class SleepingSession(made):
        def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs):
            opts = sess_options if sess_options is not None else ort.SessionOptions()
            try:
                opts.get_session_config_entry("session.intra_op.allow_spinning")  # set by the caller: kept
            except RuntimeError:  # absent: onnxruntime would spin
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            super().__init__(path_or_bytes, opts, *args, **kwargs)

    SleepingSession.made = made
    ort.InferenceSession = SleepingSession


_workers_share_the_cores()


@pytest.fixture()
def real_sessions(monkeypatch):
    """onnxruntime sessions as faceveil makes them, spinning included (_workers_share_the_cores undone), and
    CenterFace's session cache and the API's detector cache emptied for the test."""
    import onnxruntime as ort

    from faceveil import api
    from faceveil.detect import centerface

    monkeypatch.setattr(ort, "InferenceSession", getattr(ort.InferenceSession, "made", ort.InferenceSession))
    monkeypatch.setattr(centerface, "_SESSIONS", {})
    api._detector.cache_clear()  # the API's detectors hold the sessions they were made with
    yield
    api._detector.cache_clear()


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: tests on real photos need ../shared/data beside the checkout")
    return p


def _int8_exact() -> bool:
    from faceveil.detect.centerface import int8_exact

    return int8_exact()


# The 8-bit int8 build computes what it was measured to only on x86 with VNNI, or not x86; elsewhere its sums
# saturate and precision=int8 runs the 7-bit build (centerface.int8_build). Tests that read the 8-bit file itself
# against fp32 would measure the CPU there, not the build.
needs_exact_int8 = pytest.mark.skipif(not _int8_exact(), reason="this CPU has no VNNI: the 8-bit int8 build's sums "
                                      "saturate here (int8 runs the 7-bit build: faceveil.detect.centerface)")


def torch_or_skip():
    """torch, or skip the test: the training code needs the `train` extra."""
    return pytest.importorskip("torch", reason="torch is not installed (the train extra)")


def centerface_path_or_skip():
    """The shipped CenterFace ONNX file, or skip the test with the reason it is missing."""
    from faceveil.detect.centerface import centerface_model_path
    from faceveil.errors import ModelError

    try:
        return centerface_model_path()
    except ModelError as exc:
        pytest.skip(str(exc))


def toy_faces_dataset(tmp_path: Path, n: int, size: int = 96, seed: int = 0, per_image: int = 1,
                      widths: tuple[int, int] = (20, 36), eyes: bool = True) -> tuple[Path, Path]:
    """(images folder, WIDER gt.txt) of ``n`` noise images named img0.png.. with ``per_image`` skin-coloured
    elliptical 'faces' each (dark eyes if ``eyes``), face widths drawn from ``widths``: the training tests' data."""
    import cv2

    rng = np.random.default_rng(seed)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    lines = []
    for i in range(n):
        img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        boxes = []
        for _ in range(per_image):
            w = int(rng.integers(*widths))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - w))
            cv2.ellipse(img, (x + w // 2, y + w // 2), (w // 2, w // 2), 0, 0, 360, (230, 180, 150), -1)
            if eyes:
                cv2.circle(img, (x + w // 3, y + w // 3), 2, (20, 20, 20), -1)
                cv2.circle(img, (x + 2 * w // 3, y + w // 3), 2, (20, 20, 20), -1)
            boxes.append((x, y, w))
        cv2.imwrite(str(img_dir / f"img{i}.png"), img[:, :, ::-1])
        lines += [f"img{i}.png", str(len(boxes))] + [f"{x} {y} {w} {w} 0 0 0 0 0 0" for x, y, w in boxes]
    gt = tmp_path / "gt.txt"
    gt.write_text("\n".join(lines) + "\n")
    return img_dir, gt


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # public-domain NASA portrait, one face near (180..270, 58..178)


@pytest.fixture(scope="session")
def astronaut_faces(astronaut):
    import faceveil

    return faceveil.detect(astronaut)


@pytest.fixture()
def noise_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


# replace's tests (test_replace_look, test_replace_occluders, test_replace_looks3): the default preset's region
def default_comp():
    from faceveil.anonymize import Compositor, RegionParams
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    return Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))


def swap_on_open(monkeypatch, path: Path, other: Path) -> None:
    """Each time ``path`` is opened, the file opened stays open and ``other`` takes the name (the two then trade
    places again at the next open): a file replaced between two reads of one job (audits of races)."""
    import builtins
    import io
    import os

    real_open, versions = builtins.open, [other, path.with_name(f".{path.name}.swapped")]

    def open_then_swap(file, *a, **k):
        f = real_open(file, *a, **k)
        if isinstance(file, (str, os.PathLike)) and Path(file) == path:
            path.rename(versions[1])
            versions[0].rename(path)
            versions.reverse()
        return f

    monkeypatch.setattr(builtins, "open", open_then_swap)
    monkeypatch.setattr(io, "open", open_then_swap)


def unreadable_folders(monkeypatch, name: str) -> None:
    """Folders named ``name`` are as a chmod 000 folder is to a user who is not root (the tests run as root, for
    whom chmod blocks nothing): one cannot be listed, and nothing under it can be looked up (Permission denied)."""
    import errno
    import os

    def below(path) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and name in Path(os.fsdecode(path)).parts[:-1]

    def deny(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    def listing(real):
        def call(path="."):
            if os.path.basename(os.fsdecode(path)) == name or below(path):
                deny(path)
            return real(path)
        return call

    def lookup(real):
        def call(path, *a, **k):
            if below(path):
                deny(path)
            return real(path, *a, **k)
        return call

    for what, wrap in (("scandir", listing), ("listdir", listing), ("stat", lookup), ("lstat", lookup)):
        monkeypatch.setattr(os, what, wrap(getattr(os, what)))


_DEFAULT_DETECTIONS: dict = {}


def record_forwards(det) -> list:
    """Every network call a multiscale detector makes from now on, as its input's (height, width), in order: its
    main session's and, with precision=mixed, the other session the big-face passes run."""
    seen: list = []
    for net in {id(n): n for n in (det.cf, det._net("big"))}.values():
        net.forward = lambda img, f=net.forward: seen.append(img.shape[:2]) or f(img)
    return seen


@pytest.fixture
def each_frame_detected_once(monkeypatch):
    """The video preset's detector (MultiScale) run once per distinct image (a frame or a crop of one, by its bytes)
    and parameters in the test, copies handed out after: for tests about what a video job does with the boxes
    (replace's look over several seeds' runs of one clip, keep's tracks over frames that repeat), not about detection.
    The same boxes: detection is a function of the image and the parameters."""
    import copy

    from faceveil.detect.multiscale import MultiScale

    seen: dict = {}
    detect = MultiScale.detect

    def once(self, image):
        a = np.ascontiguousarray(image)
        k = (repr(self.params), a.shape, str(a.dtype), hashlib.sha1(a).digest())
        if k not in seen:
            seen[k] = detect(self, image)
        return copy.deepcopy(seen[k])

    monkeypatch.setattr(MultiScale, "detect", once)
    return seen


def detect_default(img):
    """The default detector's faces (the Python API's faceveil.detect), a fresh copy of them. Many looks
    tests detect the same real photos: each image (by its bytes) is detected once per test process."""
    import faceveil

    key = (img.shape, str(img.dtype), hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=16).digest())
    if key not in _DEFAULT_DETECTIONS:
        _DEFAULT_DETECTIONS[key] = faceveil.detect(img)
    d = _DEFAULT_DETECTIONS[key]
    return d[np.arange(len(d))]  # Detections.__getitem__ with an index array: every array copied


def replace_default(img, dets, seed=0, **params):
    """``replace`` with ``params`` over ``dets`` in the default region, seeded."""
    from faceveil.anonymize import get_method

    return get_method("replace", params).apply(img, dets, default_comp(), np.random.default_rng(seed))


_REPLACED_PORTRAITS: dict = {}


def replaced_portraits(side: int = 640):
    """(photo, its default detections, replaced with the defaults) for each deepface-unit portrait, scaled down to
    at most ``side`` px (skips without ../shared). Photo k is replaced with seed k: with seed 0 everywhere, 54 of
    the 88 faces drew the same bank entry, and the tests measured that one identity instead of the bank.
    Made once per test process (three looks tests read them; reading, resizing and replacing the 64 photos again took
    ~7 s of CPU each time; the same arrays: all three are deterministic), copies handed out."""
    import cv2

    from faceveil.io.images import read_rgb

    if side not in _REPLACED_PORTRAITS:
        made = []
        for k, path in enumerate(sorted(shared_path("deepface-unit").glob("*.jpg"))):
            img = read_rgb(path)
            f = side / max(img.shape[:2])
            img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else img
            dets = detect_default(img)
            made.append((img, dets, replace_default(img, dets, seed=k)))
        _REPLACED_PORTRAITS[side] = made
    for img, dets, out in _REPLACED_PORTRAITS[side]:
        yield img.copy(), dets[np.arange(len(dets))], out.copy()


def pytest_collection_modifyitems(config, items):
    """Tests marked slow first (in their file order), then the rest: with ``make test``'s one test at a time to
    whichever pytest-xdist worker is free (--maxschedchunk 1), the many short tests even out the workers at the end
    instead of one worker finishing a 100-200 s test alone while the other waits (the suite's slowest, e.g. the
    int8 rebuild, sat in the middle of the alphabetical order). Without it xdist hands each worker a quarter of the
    suite up front: this order would give one worker every slow test (measured: the CI run's slowest tests all ran
    on one worker, the flicker test last)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
