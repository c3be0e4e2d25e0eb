"""Issue 21: boxed-short faces in the leak measure, the masked-face detector and its use in the presets."""
import math

import numpy as np
import pytest

from faceveil.detections import Detections
from faceveil.eval.leaks import LeakMetric


def _labels(*xyxy):
    return Detections.from_boxes(np.array(xyxy, np.float32).reshape(-1, 4), source="label")


def test_boxed_short_and_never_boxed_by_hand():
    # 100x40 image; six 10x10 faces on the top row (bucket 10-20 px) covered 100, 80, 50, 30, 29, 0 %,
    # and one 20x20 face (bucket 20-40 px) covered 70 %.
    labels = _labels([0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10], [40, 0, 50, 10],
                     [50, 0, 60, 10], [60, 0, 80, 20])
    anon = np.zeros((40, 100), bool)
    anon[0:10, 0:10] = True  # 100 %
    anon[0:8, 10:20] = True  # 80 %: exactly the cut, not leaked
    anon[0:5, 20:30] = True  # 50 %: boxed short
    anon[0:3, 30:40] = True  # 30 %: boxed short (the lower edge counts as short)
    anon[0:2, 40:50] = True
    anon[2, 40:49] = True  # 29 %: never boxed
    anon[0:14, 60:80] = True  # 280 of 400 = 70 %: boxed short
    metric = LeakMetric(buckets=((10, 20), (20, 40)))
    item = metric.update(anon, labels)
    assert item.coverage.tolist() == pytest.approx([1.0, 0.8, 0.5, 0.3, 0.29, 0.0, 0.7])
    r = metric.compute()
    assert (r.faces, r.leaked, r.boxed_short, r.never_boxed) == (7, 5, 3, 2)
    assert [(b["faces"], b["leaked"], b["boxed_short"], b["never_boxed"]) for b in r.buckets] == [(6, 4, 2, 2),
                                                                                                 (1, 1, 1, 0)]
    assert r.to_json()["boxed_short"] == 3 and r.to_json()["buckets"][0]["never_boxed"] == 2
    # The lower cut is a parameter: at 0.5 the 30 % face is never boxed.
    m2 = LeakMetric(buckets=((10, 20), (20, 40)), short_min=0.5)
    m2.update(anon, labels)
    assert (m2.compute().boxed_short, m2.compute().never_boxed) == (2, 3)
    with pytest.raises(ValueError):
        LeakMetric(short_min=0.9)


def test_eval_leaks_split_and_boxed_short_columns(tmp_path, astronaut, capsys):
    import json

    from PIL import Image

    from faceveil.cli import main
    from faceveil.eval.splits import side

    names = [f"p{i}.png" for i in range(20)]
    tune = next(n for n in names if side(n) == "tune")
    held = next(n for n in names if side(n) == "held_out")
    images = tmp_path / "images"
    images.mkdir()
    # the held-out photo: the real face, a box on the empty sky (never boxed) and one whose bottom half hangs
    # below the face into the sky (boxed short); the tune photo: only the sky box
    Image.fromarray(astronaut).save(images / held)
    Image.fromarray(astronaut).save(images / tune)
    (tmp_path / "gt.txt").write_text(f"{held}\n3\n180 60 90 115 0 0 0 0 0 0\n10 10 40 40 0 0 0 0 0 0\n"
                                     f"200 120 50 120 0 0 0 0 0 0\n{tune}\n1\n10 10 40 40 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    code = main(["eval", "leaks", "--images", str(images), "--labels", str(tmp_path / "gt.txt"), "-o", str(out), "-q",
                 "--detect", "fast", "--split", "held_out"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "1 images (held_out half of the split)" in printed
    doc = json.loads((out / "results.json").read_text())
    r = doc["result"]
    assert doc["split"] == "held_out" and doc["evaluated"] == 1 and r["faces"] == 3
    cov = sorted(leak["coverage"] for leak in r["leaks"])
    assert (r["leaked"], r["boxed_short"], r["never_boxed"]) == (2, 1, 1) and cov[0] == 0 and 0.3 <= cov[1] < 0.8
    assert f"all >= 10 px                     3       2  66.67%            1            1" in printed
