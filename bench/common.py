"""The one helper module the benchmarks share: paths, the LFW face-evaluation helpers, table output.

Benchmarks run as `python bench/NAME.py` from a checkout with faceveil installed (`make install`
or `pip install -e .`), so this folder is on sys.path and `import common` finds this file. They
import faceveil's public names and this module only, never each other.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from faceveil.anonymize import Compositor, RegionParams
from faceveil.anonymize.identity import descriptor
from faceveil.detections import Detections, box_iou
from faceveil.io.images import read_rgb

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"  # read only; nothing from it is written to the repository
TESTS = ROOT / "tests"


def use_checkout(src: Path) -> None:
    """Import faceveil from ``src`` (another checkout's src/, e.g. fault_matrix.py --src) before the installed one."""
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))


def synthetic_video(*names: str) -> tuple:
    """These names of `tests/synthetic_video.py` (synthetic clips with known face boxes, the leaked-face-frames
    metric). It is a test fixture, not part of the package, that bench_video.py reuses as it is: tests/ goes at the
    END of sys.path here, the one place a benchmark reaches outside bench/, so nothing of bench/ is shadowed."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    import synthetic_video as module

    return tuple(getattr(module, n) for n in names)


def tool_module(name: str):
    """``tools/<name>.py`` as a module (int8_calib.py reuses the model build's calibration code), loaded from its
    file so that no folder outside bench/ goes on sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"faceveil_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickle look modules up by name
    spec.loader.exec_module(module)
    return module


# LFW face evaluation (bench_replace.py, bench_harmonizer.py) -------------------------------------------------

def lfw_people() -> dict[str, list[Path]]:
    root = DATA / "lfw"
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}


class Face:
    def __init__(self, path: Path, cf, hog):
        self.path = path
        self.img = read_rgb(path)
        d = cf.detect(self.img)
        if not len(d):
            raise LookupError
        c = np.array([125, 125])
        i = int(np.argmin(np.linalg.norm((d.xyxy[:, :2] + d.xyxy[:, 2:]) / 2 - c, axis=1)))
        self.det = d[[i]]
        h = hog.detect(self.img)
        self.dbox = h.xyxy[int(np.argmax(h.areas))] if len(h) else self.det.xyxy[0]
        self.desc = descriptor(self.img, self.dbox)


def deepface_face(name: str, cf, scale: float, side: int = 480):
    """A deepface-unit photo (MIT) resized to ``side`` px, CenterFace's (``cf``) detections on it, and a square
    window (x1, y1, x2, y2) around its largest face reaching ``scale`` x the face's longer side from its centre:
    the rows of the before/after grids (bench_replace.py, research/fd_weights.py)."""
    import cv2

    img = read_rgb(DATA / "deepface-unit" / name)
    f = side / max(img.shape[:2])
    img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    dets = cf.detect(img)
    b = dets.xyxy[int(np.argmax(dets.areas))]
    c, s = (b[:2] + b[2:]) / 2, max(b[2:] - b[:2]) * scale
    x1, y1 = np.clip((c - s).astype(int), 0, None)
    x2, y2 = (c + s).astype(int)
    return img, dets, (x1, y1, x2, y2)


def lfw_gallery_and_probes(n_people: int, rng: np.random.Generator, cf, hog, gallery_limit: int = 0,
                           probe_side: str | None = None):
    """(gallery, probes, truth) of the LFW protocol (bench_replace.py, bench_learnedblur.py): each person's first
    photo in the gallery (the first ``gallery_limit`` people, 0: all) where CenterFace finds a face, and the second
    photo of up to ``n_people`` of them, drawn with ``rng``, as probes; ``truth`` indexes each probe's gallery face.
    ``probe_side`` ("tune" / "held_out"): probes only from that half of faceveil.eval.splits (by person), drawn from
    every person of it with a second photo (research/fd_weights.py chooses on one half and reports on the other)."""
    people = lfw_people()
    gallery, g_ok = [], []
    for name in list(people)[: gallery_limit or None]:
        try:
            gallery.append(Face(people[name][0], cf, hog))
            g_ok.append(name)
        except LookupError:
            pass
    if probe_side is None:
        order = [n for n in rng.permutation(g_ok)[: n_people * 2] if len(people[n]) >= 2]
    else:
        from faceveil.eval.splits import side

        order = rng.permutation([n for n in g_ok if len(people[n]) >= 2 and side(n) == probe_side])
    probes, truth = [], []
    for name in order:
        try:
            probes.append(Face(people[name][1], cf, hog))
            truth.append(g_ok.index(name))
        except LookupError:
            pass
        if len(probes) == n_people:
            break
    return gallery, probes, np.array(truth)


# The region the recorded results used: RegionParams' defaults until they became the shipped one (box 1.25)
ELLIPSE_13 = RegionParams(shape="ellipse", mask_scale=1.3)
COMP = Compositor(ELLIPSE_13)


def rank1(probes: np.ndarray, gallery: np.ndarray, truth: np.ndarray) -> float:
    d = np.linalg.norm(probes[:, None] - gallery[None], axis=2)
    return float((d.argmin(axis=1) == truth).mean())


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def ssim(a, b) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2))


def detected(dets: Detections, box) -> bool:
    return len(dets) > 0 and float(box_iou(dets.xyxy, np.asarray(box, np.float32)[None]).max()) >= 0.3


# The two labelled photo sets the recall and speed benches run on: name -> (images folder, labels file).
LABELLED_SETS = {
    "facemask": (DATA / "facemask" / "images", DATA / "facemask" / "gt.txt"),
    "wider": (DATA / "widerface-val" / "images", DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt"),
}


def labelled_sets(names: str):
    """(name, images, labels) for each comma-separated set name that is present; a missing one is said and skipped."""
    for name in names.split(","):
        images, labels = LABELLED_SETS[name]
        if not images.is_dir():
            print(f"{images} not found: skipping {name}", file=sys.stderr)
            continue
        yield name, images, labels


def pick(keys: list[str], limit: int) -> list[str]:
    """``limit`` evenly spaced keys (all of them when limit is 0 or covers them)."""
    if not limit or limit >= len(keys):
        return keys
    return [keys[i] for i in np.linspace(0, len(keys) - 1, limit).round().astype(int)]


def int8_line() -> str:
    """Which build precision=int8 runs on this CPU (faceveil.detect.centerface.int8_build): the 8-bit weights, or
    on x86 without VNNI the 7-bit ones unless FACEVEIL_INT8 forces one (docs/int8.md)."""
    from faceveil.detect.centerface import int8_build

    forced = os.environ.get("FACEVEIL_INT8")
    if forced in ("any", "7bit"):
        return f"int8 rows: the {'8' if forced == 'any' else '7'}-bit build (FACEVEIL_INT8={forced}, whatever the CPU)"
    if int8_build() == "int8":
        return "int8 rows: the 8-bit build (this CPU has VNNI or is not x86)"
    return "int8 rows: the 7-bit build (x86 without VNNI; FACEVEIL_INT8=any measures the 8-bit one)"


def table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


# Wall time and peak memory of a command ----------------------------------------------------------------------

# Run by a bare Python (-I -S: no site-packages, ~10 MB): starts the command, waits for it with wait4, prints
# "exit status, wall seconds, ru_maxrss (KiB)". Why a launcher: Linux keeps in a process's ru_maxrss the
# RSS of the process it was forked from (exec records the old memory's peak), so a command started straight
# from a benchmark holding 800 MB reported 800 MB whatever it used itself. Started from this launcher the
# command inherits only the launcher's ~10 MB.
_LAUNCHER = """\
import os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
print(p.returncode, time.perf_counter() - t, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)
"""


def compile_bytecode(src: Path | None = None) -> None:
    """Byte-compile faceveil's modules (under ``src``, a checkout's src/, or the imported package's folder) before
    timing it. pip compiles an installed package's modules, and the peers' (deface, numpy) are compiled here too;
    an editable checkout run with PYTHONDONTWRITEBYTECODE=1 (this machine's setting) compiled faceveil's ~80
    modules again in every process: ~0.23 s of CPU per start, a cost no installed faceveil pays. The files go to
    __pycache__/ folders (ignored by git); Python reads them whatever PYTHONDONTWRITEBYTECODE says."""
    import compileall

    import faceveil

    folder = src / "faceveil" if src is not None else Path(faceveil.__file__).parent
    compileall.compile_dir(str(folder), quiet=1)


def run_timed(cmd: list[str], env=None, ok=(0, 1)) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of ``cmd``. Peak: the largest of the
    command's process and of the processes it waited for (not their sum), at least the launcher's ~10 MB.
    CPU: the command and its reaped children (deface's ffmpeg); on a shared machine the steadier measure, wall
    time follows the load. Linux (ru_maxrss in KiB). RuntimeError with the end of its stderr when its exit
    status is not in ``ok``."""
    p = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, *map(str, cmd)], capture_output=True,
                       env=env)  # both pipes read as they fill: a talkative command cannot block on them
    err = p.stderr.decode(errors="replace")
    try:
        code, wall, kib, cpu = p.stdout.split()
    except ValueError:
        raise RuntimeError(f"{cmd[:3]} could not be started: {err[-500:]}") from None
    if int(code) not in ok:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-500:]}")
    return float(wall), int(kib) / 1024, float(cpu)
