"""Keep who agreed (issue 23), the rest: dataset mode (local and Ray), the review of a kept dataset face, and
one click in the video review that flips a whole track between kept and hidden."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from faceveil.io.manifest import read_manifest

DLIB = "face descriptors need dlib (pip install 'faceveil[eval]')"
# Labelled faces (WIDER x y w h, drawn by hand around what the default detector finds, not equal to it):
# couple.png: alice (consenting) and a man; alice.png: alice alone; stranger.png: somebody else.
LABELS = {"couple.png": [(125, 210, 210, 285), (500, 130, 200, 290)], "alice.png": [(82, 120, 196, 270)],
          "stranger.png": [(295, 105, 180, 230)]}


def _faceveil(*args):
    return subprocess.run([sys.executable, "-m", "faceveil", *args], capture_output=True, text=True)


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _box(xywh):
    x, y, w, h = xywh
    return slice(y, y + h), slice(x, x + w)


def _images(out: Path) -> dict[str, dict]:
    return {Path(e["path"]).name: e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"}


@pytest.fixture(scope="module")
def kds(tmp_path_factory):
    """A small WIDER dataset of real photos (PNG, so kept pixels can be compared byte for byte), two galleries
    of the same name (alice: img2 / img4 of deepface-unit) and the CLI run with the first."""
    pytest.importorskip("dlib", reason=DLIB)
    from faceveil.people import People

    src = shared_path("deepface-unit")
    base = tmp_path_factory.mktemp("keepds")
    for gallery, photo in (("consent", "img2.jpg"), ("consent2", "img4.jpg")):
        (base / gallery / "alice").mkdir(parents=True)
        shutil.copy(src / photo, base / gallery / "alice" / photo)
    People.build(base / "consent").save(base / "people.npz")
    images = base / "ds" / "images"
    images.mkdir(parents=True)
    for name, photo, side in (("couple.png", "couple.jpg", 800), ("alice.png", "img5.jpg", None),
                              ("stranger.png", "img17.jpg", 800)):
        im = Image.open(src / photo).convert("RGB")
        if side:
            s = side / max(im.size)
            im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.LANCZOS)
        im.save(images / name)
    lines = []
    for name, boxes in LABELS.items():
        lines += [name, str(len(boxes))] + [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in boxes]
    (base / "ds" / "gt.txt").write_text("\n".join(lines) + "\n")
    out = base / "out"
    r = _faceveil("dataset", "anonymize", "--format", "wider", "--images", str(images), "--labels",
                  str(base / "ds" / "gt.txt"), "-o", str(out), "--keep-people", str(base / "people.npz"),
                  "--summary", str(base / "summary.json"), "-q")
    return base, out, r


def _args(base: Path, out: Path, *extra: str) -> list[str]:
    return ["dataset", "anonymize", "--format", "wider", "--images", str(base / "ds" / "images"), "--labels",
            str(base / "ds" / "gt.txt"), "-o", str(out), "-q", *extra]


@pytest.mark.slow
def test_dataset_keeps_the_consenting_person_and_hides_the_stranger(kds, tmp_path):
    from faceveil.dataset import DatasetConfig, anonymize_dataset, verify
    from faceveil.people import THRESHOLD, People
    from faceveil.pipeline import AnonymizerConfig

    base, out, r = kds
    assert r.returncode == 0, r.stderr
    assert "2 kept as they are" in r.stderr
    ents = _images(out)
    for name in ("couple.png", "alice.png"):  # whom, how far, which box: the labelled face, recorded once
        (k,) = ents[name]["kept"]
        assert (k["by"], k["name"], k["source"]) == ("person", "alice", "label") and k["distance"] < THRESHOLD
        assert ents[name]["faces"]["kept"] == 1
    assert ents["stranger.png"]["kept"] == [] and ents["couple.png"]["faces"]["labels_anonymized"] == 1
    images = base / "ds" / "images"
    for name in ("couple.png", "alice.png"):  # the consenting face is byte-identical to the input
        sl = _box(LABELS[name][0])
        assert np.array_equal(_rgb(out / "images" / name)[sl], _rgb(images / name)[sl]), name
    assert np.array_equal(_rgb(out / "images" / "alice.png"), _rgb(images / "alice.png"))  # nothing else there
    # The man and the stranger are anonymized exactly as a run without --keep-people does.
    plain = tmp_path / "plain"
    anonymize_dataset("wider", images, base / "ds" / "gt.txt", plain, DatasetConfig(AnonymizerConfig(), "union"),
                      progress=False)
    for name, i in (("couple.png", 1), ("stranger.png", 0)):
        sl = _box(LABELS[name][i])
        mine, theirs, orig = (_rgb(p / name)[sl] for p in (out / "images", plain / "images", images))
        assert np.array_equal(mine, theirs), name
        assert np.abs(mine - orig).mean() > 3, name
    # The keep settings round-trip through the summary (report), every manifest line and the job's settings.
    people = People.load(base / "people.npz")
    summary = json.loads((base / "summary.json").read_text())
    assert summary["kept"] == 2 and summary["keep"]["people"] == ["alice"]
    assert summary["keep"]["people_sha256"] == people.fingerprint() and summary["keep"]["threshold"] == THRESHOLD
    entries = read_manifest(out / "manifest.jsonl")[0]
    assert all((e.get("settings") or e)["keep"] == summary["keep"] for e in entries)
    assert verify(out).ok


@pytest.mark.slow
def test_dataset_resume_refuses_another_gallery_threshold_region_or_none(kds):
    from faceveil.dataset import verify

    base, out, r = kds
    assert r.returncode == 0, r.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = _faceveil(*_args(base, out, "--keep-people", str(base / "people.npz")))
    assert again.returncode == 0 and "0 images anonymized, 3 already done" in again.stderr, again.stderr
    # the same name, other photos: another gallery (its hash differs), refused before any work
    for extra in (["--keep-people", str(base / "consent2")],
                  ["--keep-people", str(base / "people.npz"), "--keep-region", "0,0,0.5,1.0"],
                  []):
        r2 = _faceveil(*_args(base, out, *extra))
        assert r2.returncode == 2, (extra, r2.stderr)
        lines = r2.stderr.strip().splitlines()
        assert len(lines) == 1 and "made with other settings (keep:" in lines[0] and "Traceback" not in r2.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert verify(out).ok


@pytest.mark.slow
def test_verify_notices_a_file_made_with_another_gallery(kds, tmp_path):
    """A manifest whose lines disagree on the keep settings (e.g. written by an older faceveil that resumed
    with another gallery): `dataset verify` fails and names the file and what differs."""
    from faceveil.dataset import verify

    base, out, r = kds
    assert r.returncode == 0, r.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    entries = read_manifest(mixed / "manifest.jsonl")[0]
    e = next(e for e in entries if e["kind"] == "image" and e["path"] == "stranger.png")
    e["keep"] = {**e["keep"], "people_sha256": "0" * 64}
    e["job"] = "0123456789abcdef"
    (mixed / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in entries))
    rep = verify(mixed)
    assert not rep.ok and rep.mixed == ["images/stranger.png (other settings: keep)"]
    v = _faceveil("dataset", "verify", str(mixed))
    assert v.returncode == 1 and "made with other settings: images/stranger.png" in v.stderr
    assert verify(out).ok


@pytest.mark.slow
def test_dataset_gt_boxes_keep_the_labelled_consenting_face(kds, tmp_path):
    """--boxes gt: the detector runs only to tell whose the labelled faces are; its own boxes are not hidden."""
    from faceveil.dataset import DatasetConfig, anonymize_dataset
    from faceveil.people import KeepPolicy, People
    from faceveil.pipeline import AnonymizerConfig

    base, _, _ = kds
    keep = KeepPolicy(People.load(base / "people.npz"))
    out = tmp_path / "gt"
    s = anonymize_dataset("wider", base / "ds" / "images", base / "ds" / "gt.txt", out,
                          DatasetConfig(AnonymizerConfig(keep=keep), "gt"), progress=False)
    assert s.done == 3 and s.kept == 2 and not s.failed
    e = _images(out)["couple.png"]
    assert [k["name"] for k in e["kept"]] == ["alice"] and e["faces"]["detected"] == 0
    assert e["regions"] == [[500.0, 130.0, 700.0, 420.0]]  # the man's labelled box only
    assert "detector" in (read_manifest(out / "manifest.jsonl")[0][0]["settings"])  # it ran: part of the job


@pytest.mark.slow
def test_dataset_ray_backend_keeps_as_local_does(kds, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'faceveil[ray]')")
    from faceveil.dataset import DatasetConfig, anonymize_dataset
    from faceveil.people import KeepPolicy, People
    from faceveil.pipeline import AnonymizerConfig

    base, out, r = kds
    assert r.returncode == 0, r.stderr
    keep = KeepPolicy(People.load(base / "people.npz"))
    ray_out = tmp_path / "ray"
    s = anonymize_dataset("wider", base / "ds" / "images", base / "ds" / "gt.txt", ray_out,
                          DatasetConfig(AnonymizerConfig(keep=keep), "union"), jobs=1, backend="ray", progress=False)
    assert s.done == 3 and s.kept == 2 and not s.failed
    local, ray = _images(out), _images(ray_out)
    assert {n: (e["output_sha256"], e["kept"]) for n, e in ray.items()} == \
        {n: (e["output_sha256"], e["kept"]) for n, e in local.items()}


@pytest.mark.slow
def test_dataset_review_shows_the_kept_face_and_hides_it_on_flip(kds, tmp_path):
    pytest.importorskip("flask")
    from faceveil.cli import build_parser
    from faceveil.cli.review import config_from_args
    from faceveil.dataset import verify
    from faceveil.review import ReviewSet, ReviewSettings

    base, out, r = kds
    assert r.returncode == 0, r.stderr
    rev = tmp_path / "out"
    shutil.copytree(out, rev)
    root = base / "ds"
    cfg = config_from_args(build_parser().parse_args(["review", str(rev), "--originals", str(root)]))
    rs = ReviewSet(rev, root, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    rel = "images/couple.png"
    item = rs.item_json(rs.items[rel])
    kinds = [f["kind"] for f in item["flags"]]
    assert "kept" in kinds and "unhidden" not in kinds, item["flags"]  # kept on purpose, not a leak
    flag = next(f for f in item["flags"] if f["kind"] == "kept")
    assert "alice at 0." in flag["text"]
    (sug,) = [s for s in item["suggestions"] if s.get("kept")]
    assert sug["kept"]["name"] == "alice" and sug["hidden"] is False
    # flip: the page sends the kept box as a manual box; Apply hides it and the manifest keeps her no more
    rs.apply(rel, [sug["box"]], [])
    sl = _box(LABELS["couple.png"][0])
    assert np.abs(_rgb(rev / rel)[sl] - _rgb(root / rel)[sl]).mean() > 3
    e = _images(rev)["couple.png"]
    assert e["kept"] == [] and e["faces"]["kept"] == 0 and e["reviewed"] is True
    assert verify(rev).ok
    item = rs.item_json(rs.items[rel])
    assert "kept" not in [f["kind"] for f in item["flags"]]
