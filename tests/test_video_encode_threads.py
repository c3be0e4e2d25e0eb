"""The video encoder's bytes depend only on the frames and the settings: the same in every run, every process and
under any CPU affinity, with a fixed number of x264 frame threads (issue 20; io.video ENCODE_THREADS)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from faceveil.io.video import ENCODE_THREADS, EncodeOptions, VideoInfo, VideoWriter

SRC = Path(__file__).resolve().parents[1] / "src"


def _frames(w: int, h: int, n: int = 24) -> list[np.ndarray]:
    """A slow zoom and pan over a real photo (motion and texture for the encoder's search), ``w`` x ``h``."""
    im = data.astronaut()  # 512x512
    out = []
    for i in range(n):
        s = 1.0 - 0.015 * i
        cw, ch = 512 * s, 512 * s * h / w if w >= h else 512 * s
        x0, y0 = 3.0 * i, 2.0 * i
        crop = im[int(y0): int(y0 + min(ch, 512 - y0)), int(x0): int(x0 + min(cw, 512 - x0))]
        out.append(cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR))
    return out


def encode(path: Path, frames: list[np.ndarray], options: EncodeOptions = EncodeOptions(audio=False)) -> bytes:
    h, w = frames[0].shape[:2]
    info = VideoInfo(path.with_name("src.mp4"), w, h, Fraction(24), Fraction(1, 24), 0, 0.0, 0, "h264", False)
    with VideoWriter(path, info, options) as wr:
        for i, f in enumerate(frames):
            wr.write(f, i)
    return path.read_bytes()


def x264_settings(data: bytes) -> dict[str, str]:
    """x264's option string, which it writes into the stream (an SEI message): 'threads=2 sliced_threads=1 ...'."""
    start = data.index(b"x264 - core")
    text = data[start: data.index(b"\0", start)].decode("ascii", "replace")
    return dict(kv.split("=", 1) for kv in text.split(" options: ", 1)[1].split() if "=" in kv)


def test_same_bytes_run_after_run_in_one_process(tmp_path):
    """x264's CPU-specific code paths gave other bytes from run to run in one process: one thread, this 336x240
    pan, 11 different files in 35 runs (7 processes; each process saw 2-5). With x264's cpu-independent mode
    every run gives one file, with ENCODE_THREADS (> 1) frame threads."""
    frames = _frames(336, 240)
    first = encode(tmp_path / "a.mp4", frames)
    runs = [encode(tmp_path / f"{k}.mp4", frames) for k in range(7)]
    assert all(r == first for r in runs), len({hashlib.sha256(r).hexdigest() for r in runs + [first]})
    opts = x264_settings(first)
    assert ENCODE_THREADS > 1
    assert (opts["threads"], opts["sliced_threads"]) == (str(ENCODE_THREADS), "0"), opts
    # an explicit count still wins
    assert x264_settings(encode(tmp_path / "c.mp4", frames, EncodeOptions(audio=False, threads=1)))["threads"] == "1"


CHILD = textwrap.dedent("""
    import hashlib, os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from test_video_encode_threads import encode
    from faceveil.io.video import EncodeOptions
    frames_file, out_dir, runs, one_cpu = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    if one_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    frames = list(np.load(frames_file))
    for k in range(runs):
        out = encode(out_dir / f"{os.getpid()}-{k}.mp4", frames)
        print(hashlib.sha256(out).hexdigest())
""")


@pytest.mark.slow
@pytest.mark.parametrize("size", [(330, 240), (854, 480)])
def test_same_bytes_in_every_run_and_process_under_load(tmp_path, size):
    """6 processes at once (load on every core), 5 runs each, one of them pinned to a single CPU: one output,
    that of a run in this process. (330x240, before x264's cpu-independent mode: 6 files in 35 runs with one
    thread, 5 with 2 threads.)"""
    frames = np.stack(_frames(*size))
    np.save(tmp_path / "frames.npy", frames)
    (tmp_path / "child.py").write_text(CHILD)
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), tests_dir, os.environ.get("PYTHONPATH", "")])}
    one_cpu = hasattr(os, "sched_setaffinity")
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "child.py"), tests_dir, str(tmp_path / "frames.npy"),
                               str(tmp_path), "5", "1" if (k == 0 and one_cpu) else "0"],
                              stdout=subprocess.PIPE, text=True, env=env) for k in range(6)]
    hashes = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        hashes += out.split()
    assert len(hashes) == 30
    in_here = hashlib.sha256(encode(tmp_path / "here.mp4", list(frames))).hexdigest()
    assert set(hashes) == {in_here}, {h: hashes.count(h) for h in set(hashes)}


def test_resume_refuses_an_output_encoded_the_old_way(tmp_path, capsys):
    """The track record names how the encoder ran (ENCODER_MODE): an output written by the one-thread encoder of
    before (other bytes; its record has no encoder mode) is not taken for this run's by --skip-existing."""
    import json

    from faceveil.cli import main
    from faceveil.io.manifest import settings_key
    from faceveil.io.video import ENCODER_MODE
    from synthetic_video import write_clip

    rng = np.random.default_rng(4)
    src = tmp_path / "footage"
    src.mkdir()
    write_clip(src / "a.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(4)], 12, audio=False)
    out = tmp_path / "out"
    assert main(["anonymize", str(src), "-o", str(out), "-q"]) == 0
    record = out / ".faceveil" / "a.mp4.tracks.json"
    data = json.loads(record.read_text())
    assert data["settings"]["encoder_mode"] == ENCODER_MODE
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--skip-existing"]) == 0  # same settings: resumes
    del data["settings"]["encoder_mode"]  # as the faceveil before recorded it
    data["job"] = settings_key(data["settings"])
    record.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--skip-existing"]) == 2
    err = capsys.readouterr().err
    assert "a.mp4: made with other settings" in err and len(err.strip().splitlines()) == 1
