"""Issue 18, "tell the truth": what the interface says (reports, help, messages, exit codes) is what it does."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import build_parser, main

TOKEN = "test-token-0123456789"
HDR = {"X-Faceveil-Token": TOKEN}


def _run(argv, capsys):
    """main(argv) as the console script runs it: (exit code, stdout, stderr); argparse's exits included."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------
# 1. parameters are written as JSON and read back in every form


@pytest.mark.parametrize("text", ["0.6,0.9", "[0.6, 0.9]", "(0.6, 0.9)", " ( 0.6 , 0.9 ) ", "[0.6,0.9]"])
def test_tuple_parameters_read_in_every_written_form(text):
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    p = make_params(DETECTORS.get("multiscale"), {"big_scales": text}, "detector 'multiscale'")
    assert p.big_scales == (0.6, 0.9)


@pytest.mark.parametrize("value", ["", "()", "[]", [], ()])
def test_empty_tuple_parameters(value):
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    assert make_params(DETECTORS.get("multiscale"), {"big_scales": value}, "d").big_scales == ()


def test_json_lists_become_tuples():
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    p = make_params(DETECTORS.get("multiscale"), {"big_scales": [0.6, 0.9]}, "d")
    assert p.big_scales == (0.6, 0.9) and isinstance(p.big_scales, tuple)


def test_detect_dp_takes_the_tuple_as_python_writes_it(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    for text in ("(0.6, 0.9)", "[0.6, 0.9]", "0.6,0.9"):
        rc, out, err = _run(["detect", str(img), "-q", "--dp", f"big_scales={text}"], capsys)
        assert rc == 0, err
        assert json.loads(out)["detector_params"]["big_scales"] == [0.6, 0.9]


def test_review_loop_on_default_settings(tmp_path, astronaut):
    """README's loop: anonymize --report -> review --from-report -> Apply, all on the default preset."""
    pytest.importorskip("flask", reason="the review page needs Flask")
    from faceveil.review import ReviewSet, ReviewSettings, create_app
    from faceveil.review.cli import config_from_args

    src, out, report = tmp_path / "photos", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "astro.png")
    assert main(["anonymize", str(src), "-o", str(out), "--report", str(report), "-q"]) == 0
    doc = json.loads(report.read_text())
    assert doc["detector_params"]["big_scales"] == [0.6, 0.9], "tuples are written as JSON lists"
    made = (out / "astro.png").read_bytes()

    args = build_parser().parse_args(["review", str(out), "--originals", str(src), "--from-report", str(report)])
    cfg = config_from_args(args)  # raised "bad value big_scales='(0.6, 0.9)'" before
    rs = ReviewSet(out, src, cfg, ReviewSettings(second=()), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    r = client.post("/api/apply", json={"path": "astro.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    # Apply without edits redoes the original with the run's own settings: the same pixels.
    assert np.array_equal(np.asarray(Image.open(out / "astro.png")), np.asarray(Image.open(io_bytes(made))))
    saved = json.loads((out / "review.json").read_text())
    assert saved["config"]["detector_params"]["big_scales"] == [0.6, 0.9]


def io_bytes(data: bytes):
    import io

    return io.BytesIO(data)
