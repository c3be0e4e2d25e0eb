"""Faults found in the review page (issues 17 and 18): reads confined at the time of use, Apply never
un-hides what the run hid, faceveil's own files under OUT/.faceveil/, honest bodies and messages."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")

from conftest import shared_path  # noqa: E402
from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.cli import build_parser, main  # noqa: E402
from faceveil.detections import Detections  # noqa: E402
from faceveil.pipeline import AnonymizerConfig  # noqa: E402
from faceveil.review import ReviewSet, ReviewSettings, create_app  # noqa: E402
from faceveil.cli import review as review_cli  # noqa: E402
from faceveil.cli.review import config_from_args  # noqa: E402

TOKEN = "test-token-faults"
HDR = {"X-Faceveil-Token": TOKEN}
NONE = ReviewSettings(second=("none",))
FAST = ("-d", "centerface")  # where the detector does not matter: one plain pass, not the preset's


def _read(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB"))


def _changed(a: np.ndarray, b: np.ndarray, box, tol: int = 8) -> float:
    """Fraction of pixels inside ``box`` that differ clearly between two images."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    d = np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2].astype(int)).max(axis=2)
    return float((d > tol).mean())


def _review(out: Path, src: Path, *extra: str):
    """A ReviewSet as `faceveil review OUT --originals IN ...` builds it, and its Flask test client."""
    args = build_parser().parse_args(["review", str(out), "--originals", str(src), "--second", "none", *extra])
    record = getattr(review_cli, "run_record_from_args", None)  # (absent before the fix: the tests still run)
    kw = {"run": record(args)} if record else {}
    rs = ReviewSet(out, src, config_from_args(args), NONE, out.parent / "cache", **kw)
    return rs, create_app(rs, TOKEN).test_client(use_cookies=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, astronaut):
    """`faceveil anonymize IN -o OUT --report report.json` with the DEFAULT preset, JPEG photos."""
    root = tmp_path_factory.mktemp("faults-review")
    src = root / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "m1.jpg", quality=92)
    Image.fromarray(astronaut[:, ::-1].copy()).save(src / "m2.jpg", quality=92)
    assert main(["anonymize", str(src), "-o", str(root / "out"), "-q", "--report", str(root / "report.json")]) == 0
    return root


@pytest.fixture()
def env(run, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(run / "in", src)
    shutil.copytree(run / "out", out)
    shutil.copy2(run / "report.json", tmp_path / "report.json")
    return src, out, tmp_path / "report.json"


# issue 17 item 4 ------------------------------------------------------------------------------
def test_apply_refuses_an_original_swapped_for_a_link_out_of_the_originals(env, tmp_path, astronaut):
    src, out, _ = env
    rs, client = _review(out, src, *FAST)
    secret = tmp_path / "secret.jpg"
    Image.fromarray(astronaut[::-1].copy()).save(secret)
    before = (out / "m2.jpg").read_bytes()
    (src / "m2.jpg").unlink()
    (src / "m2.jpg").symlink_to(secret)
    assert client.get("/img/orig/m2.jpg", headers=HDR).status_code == 403
    r = client.post("/api/apply", json={"path": "m2.jpg", "manual": [[0, 0, 20, 20]]}, headers=HDR)
    assert r.status_code == 403, r.data
    assert (out / "m2.jpg").read_bytes() == before, "Apply wrote a file made from outside the originals"


def test_apply_refuses_an_output_folder_swapped_for_a_link(env, tmp_path):
    src, out, _ = env
    (src / "sub").mkdir()
    shutil.copy2(src / "m1.jpg", src / "sub" / "m3.jpg")
    (out / "sub").mkdir()
    shutil.copy2(out / "m1.jpg", out / "sub" / "m3.jpg")
    rs, client = _review(out, src, *FAST)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(out / "sub", elsewhere)
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    before = (elsewhere / "m3.jpg").read_bytes()
    r = client.post("/api/apply", json={"path": "sub/m3.jpg", "manual": [[0, 0, 20, 20]]}, headers=HDR)
    assert r.status_code == 403, r.data
    assert (elsewhere / "m3.jpg").read_bytes() == before


# issue 18 item 1 + issue 17 item 5 -------------------------------------------------------------
@pytest.mark.parametrize("form", ["as written", "list", "python text"])
def test_report_tuple_parameters_are_read_in_either_form(env, form):
    src, out, report = env
    doc = json.loads(report.read_text())
    if form == "list":
        doc["detector_params"]["big_scales"] = [0.6, 0.9]
    elif form == "python text":  # what faceveil 0.1.0 wrote
        doc["detector_params"]["big_scales"] = "(0.6, 0.9)"
    report.write_text(json.dumps(doc))
    args = build_parser().parse_args(["review", str(out), "--originals", str(src), "--from-report", str(report)])
    cfg = config_from_args(args)
    assert tuple(cfg.detector_params["big_scales"]) == (0.6, 0.9)
    assert cfg.region == {"shape": "box", "mask_scale": 1.25, "feather": 0.0}


def test_report_to_review_to_apply_on_the_default_preset(env):
    """anonymize --report -> review --from-report -> Apply (HTTP) keeps the face hidden, adds the manual box,
    and leaves every pixel away from both regions as the run wrote it."""
    src, out, report = env
    rs, client = _review(out, src, "--from-report", str(report))
    before = _read(out / "m1.jpg")
    orig = _read(src / "m1.jpg")
    (face,) = [f["box"] for f in json.loads(report.read_text())["files"][0]["detections"]]
    assert _changed(before, orig, face) > 0.8
    manual = [400.0, 400.0, 460.0, 470.0]
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [manual], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    after = _read(out / "m1.jpg")
    assert _changed(after, orig, face) > 0.8, "the face the run hid is visible after Apply"
    assert _changed(after, orig, manual) > 0.5, "the manual box was not anonymized"
    comp = Compositor(RegionParams(shape="box", mask_scale=1.25))
    near = comp.mask(Detections.from_boxes([face, manual]), after.shape) > 0
    import cv2

    near = cv2.dilate(near.astype(np.uint8), np.ones((33, 33), np.uint8)) > 0  # JPEG blocks touching a region
    assert (after[~near] == before[~near]).all(), "pixels away from the regions changed"


def test_a_state_that_cannot_be_saved_changes_nothing_and_says_why(env):
    """OUT/.faceveil a plain file: before, approve gave 500 'internal error (FaceveilError)' (the item approved in
    memory only) and Apply answered 409 after rewriting the output. Now both refuse first, with the cause."""
    src, out, _ = env
    rs, client = _review(out, src, *FAST)
    (out / ".faceveil").write_bytes(b"")
    before = (out / "m1.jpg").read_bytes()
    r = client.post("/api/approve", json={"path": "m1.jpg"}, headers=HDR)
    assert r.status_code == 409 and "not faceveil's own folder" in r.get_json()["error"]
    assert not {i["path"]: i for i in rs.listing()["items"]}["m1.jpg"]["approved"]
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [[400, 400, 460, 470]]}, headers=HDR)
    assert r.status_code == 409 and "not faceveil's own folder" in r.get_json()["error"]
    assert (out / "m1.jpg").read_bytes() == before


def test_apply_refuses_an_output_that_is_a_link_to_another_output(env):
    """ln -sf m1.jpg OUT/m2.jpg: before, Apply on m2.jpg rewrote OUT/m1.jpg from m2's original."""
    src, out, _ = env
    (out / "m2.jpg").unlink()
    (out / "m2.jpg").symlink_to("m1.jpg")
    rs, client = _review(out, src, *FAST)
    before = (out / "m1.jpg").read_bytes()
    r = client.post("/api/apply", json={"path": "m2.jpg", "manual": [[10, 10, 60, 60]]}, headers=HDR)
    assert r.status_code == 403
    assert (out / "m1.jpg").read_bytes() == before and (out / "m2.jpg").is_symlink()


def test_apply_keeps_the_recorded_regions_when_the_review_detects_fewer(env):
    """Started with the run's report but a stricter threshold, Apply still redoes every face the run hid."""
    src, out, report = env
    rs, client = _review(out, src, "--from-report", str(report), "-t", "0.99")
    assert not rs.listing()["items"][0]["faces"], "the review's own detector must miss the face for this test"
    orig = _read(src / "m1.jpg")
    (face,) = [f["box"] for f in json.loads(report.read_text())["files"][0]["detections"]]
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [[0, 0, 30, 30]]}, headers=HDR)
    assert r.status_code == 200, r.data
    assert _changed(_read(out / "m1.jpg"), orig, face) > 0.8, "Apply un-hid a face the run recorded"


def test_apply_without_a_record_keeps_what_a_thorough_run_hid(tmp_path, run):
    """No report: the review (default options: box 1.25) must not shrink the thorough run's region (box 1.4)."""
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(run / "in", src)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detect", "thorough"]) == 0
    rs, client = _review(out, src)
    before, orig = _read(out / "m1.jpg"), _read(src / "m1.jpg")
    (face,) = [f["box"] for i in rs.listing()["items"] if i["path"] == "m1.jpg" for f in i["faces"]]
    x1, y1, x2, y2 = face
    # the band the thorough region hid beyond the default one (box 1.25 .. 1.4), left side
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    x1, x2, y1, y2 = int(np.ceil(cx - 1.4 * hw)), int(np.floor(cx - 1.25 * hw)), int(cy - hh), int(cy + hh)

    def off(a, b):  # mean difference over the band
        return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2].astype(int)).mean())

    assert x2 - x1 >= 4 and off(before, orig) > 10, "the thorough run must have hidden the band (test set-up)"
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    after = _read(out / "m1.jpg")
    assert off(after, before) < 0.25 * off(orig, before), "Apply showed pixels the run had hidden"
    assert _changed(after, orig, face) > 0.8


# issue 17 item 9 --------------------------------------------------------------------------------
def test_review_state_lives_under_dot_faceveil_and_a_user_review_json_is_left_alone(env):
    src, out, _ = env
    label = b'{"images": [], "annotations": []}'
    (out / "review.json").write_bytes(label)  # e.g. a dataset's label file of that name
    rs, client = _review(out, src, *FAST)
    assert client.post("/api/approve", json={"path": "m1.jpg"}, headers=HDR).status_code == 200
    assert (out / "review.json").read_bytes() == label
    saved = json.loads((out / ".faceveil" / "review.json").read_text())
    assert saved["items"]["m1.jpg"]["approved"] is True
    assert "review.json" not in {i["path"] for i in rs.listing()["items"]}


def test_an_old_review_json_is_still_resumed(env):
    src, out, _ = env
    rs, client = _review(out, src, *FAST)
    client.post("/api/approve", json={"path": "m2.jpg"}, headers=HDR)
    shutil.move(out / ".faceveil" / "review.json", out / "review.json")  # where faceveil 0.1.0 kept it
    rs2, _ = _review(out, src, *FAST)
    assert {i["path"]: i["approved"] for i in rs2.listing()["items"]} == {"m1.jpg": False, "m2.jpg": True}


def test_a_dataset_label_file_named_review_json_survives_a_review(tmp_path):
    from faceveil.dataset import DatasetConfig, anonymize_dataset, verify

    rng = np.random.default_rng(1)
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(root / "images" / f"img{i}.png")
        lines += [f"img{i}.png", "1", "8 8 16 16 0 0 0 0 0 0"]
    (root / "review.json").write_text("\n".join(lines) + "\n")  # WIDER labels, named review.json
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root / "images", root / "review.json", out,
                          DatasetConfig(AnonymizerConfig(method="blackout"), "gt"), progress=False)
    assert s.done == 2 and verify(out).ok and (out / "review.json").is_file()
    rs, client = _review(out, root)
    assert client.post("/api/approve", json={"path": "images/img0.png"}, headers=HDR).status_code == 200
    r = client.post("/api/apply", json={"path": "images/img1.png", "manual": [[40, 20, 60, 40]]}, headers=HDR)
    assert r.status_code == 200, r.data
    rep = verify(out)
    assert rep.ok, rep
    assert (out / ".faceveil" / "review.json").is_file()
    assert (out / "review.json").read_text() == (root / "review.json").read_text()


# issue 18 item 4 --------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    "[" * 100000 + "]" * 100000,
    '{"path": "m1.jpg", "manual": ' + "[" * 50000 + "]" * 50000 + "}",
    '{"path": "m1.jpg", "manual": [[1, 2, 3',
    "\xff\xfe not json",
    '{"path": "m1.jpg", "manual": [[1, 2, 3, 4]]}' + " " * (2 << 20),
])
def test_malformed_huge_or_nested_bodies_get_a_400_with_a_one_line_json_error(env, body):
    src, out, _ = env
    rs, client = _review(out, src, *FAST)
    before = (out / "m1.jpg").read_bytes()
    for url in ("/api/apply", "/api/approve"):
        r = client.post(url, data=body.encode("utf-8", "surrogateescape"), headers={**HDR, "Content-Type":
                                                                                   "application/json"})
        assert r.status_code == 400, (url, r.status_code)
        err = r.get_json()["error"]
        assert isinstance(err, str) and "\n" not in err and len(err) < 300, err
    assert (out / "m1.jpg").read_bytes() == before


def test_a_deeply_nested_box_gets_a_short_400(env):
    src, out, _ = env
    rs, client = _review(out, src, *FAST)
    deep: list = [1]
    for _ in range(500):
        deep = [deep]
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [deep]}, headers=HDR)
    assert r.status_code == 400 and len(r.get_json()["error"]) < 300


def test_originals_not_part_of_the_run_are_not_served(env, astronaut):
    src, out, report = env
    Image.fromarray(astronaut[::2, ::2].copy()).save(src / "private.jpg")  # in IN, never anonymized
    for extra in ([], ["--from-report", str(report)]):
        rs, client = _review(out, src, *extra, *FAST)
        assert client.get("/img/orig/private.jpg", headers=HDR).status_code in (403, 404), extra
        r = client.post("/api/apply", json={"path": "private.jpg", "manual": []}, headers=HDR)
        assert r.status_code in (403, 404, 409), extra
        assert not (out / "private.jpg").exists()


def test_a_file_the_report_does_not_name_is_no_failed_item(env, astronaut):
    """`anonymize photos/a.jpg -o out/ --report r.json`, then `review out --originals photos --from-report r.json`:
    every other file of the folder was listed as failed ("no output: the file failed or was skipped (its original is
    not shown: no report of the run names it)"), ranked above the run's outputs, though the report names every file
    the run was given and --help says only the run's files are shown (an audit: 3 of 4 clips listed as failed)."""
    src, out, report = env
    Image.fromarray(astronaut[::2, ::2].copy()).save(src / "private.jpg")  # in IN, never given to the run
    rs, client = _review(out, src, "--from-report", str(report), *FAST)
    items = client.get("/api/items", headers=HDR).get_json()
    assert sorted(i["path"] for i in items["items"]) == ["m1.jpg", "m2.jpg"]
    assert not any(f["kind"] == "failed" for i in items["items"] for f in i["flags"])
    rs, client = _review(out, src, *FAST)  # no report: a file of IN with no output may be one that failed
    items = client.get("/api/items", headers=HDR).get_json()["items"]
    assert [f["kind"] for i in items if i["path"] == "private.jpg" for f in i["flags"]][:1] == ["failed"]


def test_the_report_of_another_run_is_refused(env, tmp_path):
    """`review OUT --from-report r.json` with the report of a run that wrote elsewhere (another folder, another clip)
    was taken without a word: the page listed OUT's files and Apply redrew them with that run's method, detector and
    regions (an audit: a video run's report, its video preset, over 80 photos)."""
    from faceveil.errors import UsageError

    src, out, report = env
    other = tmp_path / "other.json"
    assert main(["anonymize", str(src / "m1.jpg"), "-o", str(tmp_path / "elsewhere" / "clip.jpg"), "-q", *FAST,
                 "-m", "pixelate", "--report", str(other)]) == 0
    with pytest.raises(UsageError, match="none of the 1 files it says were written is in"):
        _review(out, src, "--from-report", str(other), *FAST)
    rs, _ = _review(out, src, "--from-report", str(report), *FAST)  # its own report: taken
    assert sorted(rs.items) == ["m1.jpg", "m2.jpg"]


def test_a_failed_file_in_the_report_is_served(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "ok.png")
    (src / "bad.png").write_bytes(b"not a png")
    report = tmp_path / "report.json"
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "-d", "centerface",
                 "--report", str(report)]) == 1
    rs, client = _review(tmp_path / "out", src, "--from-report", str(report))
    assert client.get("/img/orig/bad.png", headers=HDR).status_code == 200


def test_a_failed_input_whose_path_is_another_inputs_output_is_listed_and_its_apply_refused(tmp_path, astronaut):
    """`anonymize IN/sub IN/a/x.png`: the folder's a/x.png goes to OUT/a/x.png, IN/a/x.png (which fails) to OUT/x.png.
    The review keys failed inputs by their path under IN, outputs by theirs under OUT: IN/a/x.png was hidden behind
    OUT/a/x.png's item, never listed, and the reviewer never learnt a photo was not anonymized. Its Apply writes
    where the run aimed (OUT/x.png, the report's "target"), and is refused where another file is there now."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    (src / "sub" / "a").mkdir(parents=True)
    (src / "a").mkdir()
    Image.fromarray(astronaut).save(src / "sub" / "a" / "x.png")
    (src / "a" / "x.png").write_bytes(b"not a png")
    assert main(["anonymize", str(src / "sub"), str(src / "a" / "x.png"), "-o", str(out), "-q", *FAST,
                 "--report", str(report)]) == 1
    written = (out / "a" / "x.png").read_bytes()
    rs, client = _review(out, src, "--from-report", str(report))
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    failed = items.get("(failed input) a/x.png")
    assert failed is not None, sorted(items)
    flag = next(f for f in failed["flags"] if f["kind"] == "failed")
    assert "not an image" in flag["text"] and "write over" not in flag["text"], flag  # it aimed at OUT/x.png
    assert failed["has_original"] and not failed["has_output"]
    assert client.get("/img/orig/(failed input) a/x.png", headers=HDR).status_code == 200
    assert not any(f["kind"] == "failed" for f in items["a/x.png"]["flags"]), "in/sub/a/x.png's output is fine"
    # another file at OUT/x.png now (another run's): the Apply that would write over it is refused
    (out / "x.png").write_bytes(written)
    rs, client = _review(out, src, "--from-report", str(report))
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    flag = next(f for f in items["(failed input) a/x.png"]["flags"] if f["kind"] == "failed")
    assert f"write over {out / 'x.png'}" in flag["text"], flag
    r = client.post("/api/apply", json={"path": "(failed input) a/x.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 409 and "write over" in r.get_json()["error"], r.get_json()
    assert (out / "a" / "x.png").read_bytes() == (out / "x.png").read_bytes() == written
    assert sorted(p.name for p in out.iterdir()) == ["a", "x.png"], "nothing else written"

    # A report that says an input failed where OUT holds an output at its path (another run's): flagged, not clean.
    doc = json.loads(report.read_text())
    doc["files"] = [{**f, "status": "failed", "output": None, "error": f"{f['input']}: cannot write"}
                    if f["status"] == "written" else f for f in doc["files"]]
    report.write_text(json.dumps(doc))
    rs, client = _review(out, src, "--from-report", str(report))
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    assert {p for p, i in items.items() if any(f["kind"] == "failed" for f in i["flags"])} == {"a/x.png", "sub/a/x.png"}


def test_apply_of_a_failed_input_writes_where_the_run_would_have(tmp_path, astronaut, monkeypatch):
    """`anonymize in/a/y.png in/z.png -o out` (files named one by one: out/y.png, out/z.png), a/y.png's write failing:
    the review's Apply of it wrote out/a/y.png, a path that run never uses. The report now records where a failed
    file's output was to go ("target"), and Apply writes exactly there; a report without it (an earlier faceveil's)
    gets a 409 that says so, and nothing is written."""
    import errno

    import faceveil.pipeline as pipeline

    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    (src / "a").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "a" / "y.png")
    Image.fromarray(astronaut[:, ::-1].copy()).save(src / "z.png")
    write_bytes_atomic = pipeline.write_bytes_atomic

    def full_disk(dst, *a, **k):  # the write of y.png fails for real, as on a full disk
        if Path(dst).name == "y.png":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return write_bytes_atomic(dst, *a, **k)

    monkeypatch.setattr(pipeline, "write_bytes_atomic", full_disk)
    assert main(["anonymize", str(src / "a" / "y.png"), str(src / "z.png"), "-o", str(out), "-q", *FAST,
                 "--report", str(report)]) == 1
    monkeypatch.undo()
    doc = json.loads(report.read_text())
    (y,) = [f for f in doc["files"] if f["input"].endswith("y.png")]
    assert y["status"] == "failed" and y["output"] is None and y["target"] == str(out / "y.png"), y
    assert sorted(p.name for p in out.iterdir()) == ["z.png"]

    rs, client = _review(out, src, "--from-report", str(report))
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    assert any(f["kind"] == "failed" for f in items["a/y.png"]["flags"])
    r = client.post("/api/apply", json={"path": "a/y.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert sorted(p.name for p in out.iterdir()) == [".faceveil", "y.png", "z.png"]  # before: out/a/y.png
    face = [f["box"] for f in rs.items["a/y.png"].analysis["main"]][0]
    assert _changed(_read(out / "y.png"), astronaut, face) > 0.3  # anonymized

    # the report of an earlier faceveil (no "target"): where the run aimed is unknown, Apply refused
    (out / "y.png").unlink()
    del y["target"]
    report.write_text(json.dumps(doc))
    rs, client = _review(out, src, "--from-report", str(report))
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    flag = next(f for f in items["a/y.png"]["flags"] if f["kind"] == "failed")
    assert "does not say where its output was to go" in flag["text"], flag
    r = client.post("/api/apply", json={"path": "a/y.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 409 and "does not say where its output was to go" in r.get_json()["error"], r.get_json()
    assert sorted(p.name for p in out.iterdir()) == [".faceveil", "z.png"]

    # a written input whose output is gone since: Apply writes it where the report says the run wrote it
    assert main(["anonymize", str(src / "a" / "y.png"), "-o", str(out), "-q", *FAST, "--report", str(report)]) == 0
    (out / "y.png").unlink()
    rs, client = _review(out, src, "--from-report", str(report))
    r = client.post("/api/apply", json={"path": "a/y.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert sorted(p.name for p in out.iterdir()) == [".faceveil", "y.png", "z.png"]


# issue 18 items 5 and 2 -------------------------------------------------------------------------
def _review_started_and_stopped(monkeypatch, tmp_path, astronaut) -> list[str]:
    """One photo anonymized into tmp_path/out; `faceveil review` on it then stops as by Ctrl-C once it serves.
    Returns the review command's arguments."""
    from socketserver import BaseServer

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "-d", "centerface"]) == 0

    def fake_serve(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", fake_serve)
    return ["review", str(tmp_path / "out"), "--originals", str(src), "--cache-dir", str(tmp_path / "c")]


def test_status_line_counts_images_and_videos(monkeypatch, capsys, tmp_path, astronaut):
    from faceveil.cli.review import counted

    assert counted(0, 2) == "2 videos" and counted(1, 2) == "1 image and 2 videos" and counted(3, 0) == "3 images"
    args = _review_started_and_stopped(monkeypatch, tmp_path, astronaut)
    assert main([*args, "--second", "none"]) == 130  # as by Ctrl-C
    err = capsys.readouterr().err
    assert "reviewing 1 image (" in err and ".faceveil" in err


def test_review_names_a_folder_it_cannot_read(monkeypatch, capsys, tmp_path, astronaut):
    """A folder under OUT or --originals that cannot be read (chmod 000) was passed over silently (its images not
    in the review, no word of it); OUT itself was a traceback, --originals "none of the outputs has its original
    there". Now each folder is named in one line, as every other command names one: under OUT or IN a warning (the
    rest is reviewed), OUT or IN itself bad usage (exit 2) before the review starts."""
    from socketserver import BaseServer

    from conftest import unreadable_folders

    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    for name in ("a.png", "locked/b.png"):
        Image.fromarray(astronaut).save(src / name)
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "-d", "centerface"]) == 0

    def fake_serve(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", fake_serve)
    unreadable_folders(monkeypatch, "locked")
    args = ["--cache-dir", str(tmp_path / "c"), "--second", "none"]
    assert main(["review", str(tmp_path / "out"), "--originals", str(src), *args]) == 130  # as by Ctrl-C
    err = capsys.readouterr().err
    for root in (tmp_path / "out", src):
        assert f"faceveil: warning: {root.resolve() / 'locked'}: cannot read the folder (Permission denied); not " \
               "listed\n" in err, err
    assert "reviewing 1 image (" in err
    for out, originals, named in ((tmp_path / "locked", src, tmp_path / "locked"),
                                  (tmp_path / "out", tmp_path / "in" / "locked", tmp_path / "in" / "locked")):
        if not out.exists():
            (tmp_path / "out").rename(out)
        assert main(["review", str(out), "--originals", str(originals), *args]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {named}: cannot read the folder (Permission denied)\n"
        if out != tmp_path / "out":
            out.rename(tmp_path / "out")


def test_review_start_up_lines_escape_control_characters(monkeypatch, capsys, tmp_path, astronaut):
    """The start-up line printed OUT's and the cache's names raw, and a refused item's name too: a newline in one
    made a status line of its own. Escaped now (errors.one_line), as every other message is."""
    from socketserver import BaseServer

    src, out, cache = tmp_path / "in", tmp_path / "out\nfaceveil: 0 to check", tmp_path / "c\x1b[2K"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-d", "centerface"]) == 0
    Image.fromarray(astronaut).save(tmp_path / "elsewhere.png")
    (out / "l\nfaceveil: ok.png").symlink_to(tmp_path / "elsewhere.png")  # a link leading out of OUT: refused

    def fake_serve(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", fake_serve)
    assert main(["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "--second", "none"]) == 130
    lines = capsys.readouterr().err.splitlines()
    assert all(ln.startswith("faceveil: ") for ln in lines), lines
    assert "faceveil: warning: l\\nfaceveil: ok.png: refused, a link leading out of OUT or IN" in lines, lines
    start = next(ln for ln in lines if ln.startswith("faceveil: reviewing"))
    assert f"edits saved in {tmp_path}/out\\nfaceveil: 0 to check/.faceveil/review.json; cache {tmp_path}/c\\x1b[2K" \
        in start, start


def test_review_warns_when_no_second_detector_can_run(monkeypatch, capsys, tmp_path, astronaut):
    """`--second auto` (the default) with neither yunet nor dlib-hog installed: the page would only say "second:
    none", so the command says on start-up that faces only another detector finds are not flagged, and how to fix it;
    with one installed, no warning."""
    from faceveil.errors import FaceveilError
    from faceveil.review import store

    args = _review_started_and_stopped(monkeypatch, tmp_path, astronaut)
    assert main(args) == 130
    assert "no second detector" not in capsys.readouterr().err  # yunet is part of the review extra
    real = store.DETECTORS.create

    def missing(name, params):
        if name in ("yunet", "dlib-hog"):
            raise FaceveilError(f"{name} is not installed")
        return real(name, params)

    monkeypatch.setattr(store.DETECTORS, "create", missing)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "warning: no second detector (yunet or dlib-hog) is installed" in err and "pip install" in err


def test_apply_keeps_the_runs_jpeg_quality_from_its_report(run, tmp_path):
    """anonymize --jpeg-quality 60 --report: before, the report did not record it and Apply rewrote the JPEG at 95
    (2.5x the bytes, pixels away from every region changed). Now the report records it and the review reads it."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    shutil.copytree(run / "in", src)
    assert main(["anonymize", str(src), "-o", str(out), "-q", *FAST, "--jpeg-quality", "60",
                 "--report", str(report)]) == 0
    assert json.loads(report.read_text())["jpeg_quality"] == 60
    rs, client = _review(out, src, "--from-report", str(report))
    assert rs.config.jpeg_quality == 60
    before, size = _read(out / "m1.jpg"), (out / "m1.jpg").stat().st_size
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [[400, 400, 460, 470]]}, headers=HDR)
    assert r.status_code == 200, r.data
    assert (out / "m1.jpg").stat().st_size < 1.2 * size
    away = np.ones(before.shape[:2], bool)
    away[350:, 350:] = False  # the manual box and the JPEG blocks around it
    diff = np.abs(_read(out / "m1.jpg").astype(int) - before.astype(int))[away]
    assert diff.mean() < 1.0, diff.mean()
    assert _review(out, src, "--from-report", str(report), "--jpeg-quality", "90")[0].config.jpeg_quality == 90


def test_apply_keeps_a_face_drawn_by_the_alpha_channel_hidden(tmp_path, astronaut):
    """The end-to-end path with a stencil (flat black, the face in the alpha): anonymize --report hides it in what a
    viewer shows (the alpha blurred over its region); an Apply of another box, from the report, must not bring
    the original alpha (and with it the face) back."""
    grey = np.asarray(Image.fromarray(astronaut).convert("L")).astype(int)
    rgba = np.dstack([np.zeros(grey.shape + (3,), np.uint8), (255 - grey).astype(np.uint8)])
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    Image.fromarray(rgba, "RGBA").save(src / "s.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--report", str(report)]) == 0

    def on_white(p):
        x = np.asarray(Image.open(p).convert("RGBA")).astype(float)
        return x[:, :, :3] * x[:, :, 3:] / 255 + 255 * (1 - x[:, :, 3:] / 255)

    face = (slice(70, 170), slice(190, 260))
    shown = on_white(src / "s.png")
    assert np.abs(on_white(out / "s.png") - shown)[face].mean() > 15
    rs, client = _review(out, src, "--from-report", str(report))
    r = client.post("/api/apply", json={"path": "s.png", "manual": [[400, 400, 460, 470]]}, headers=HDR)
    assert r.status_code == 200, r.data
    assert np.abs(on_white(out / "s.png") - shown)[face].mean() > 15, "Apply brought the face back"
    assert np.abs(on_white(out / "s.png") - shown)[400:470, 400:460].mean() > 3


def test_review_help_prints_the_defaults_that_apply(capsys):
    from faceveil.detect.presets import DEFAULT_PRESET, PRESETS

    with pytest.raises(SystemExit):
        main(["review", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    region = PRESETS[DEFAULT_PRESET]["region"]
    assert f"region shape (default {region['shape']}" in text
    assert f"(default {region['mask_scale']}" in text
    assert "default ellipse" not in text and "default 1.3)" not in text
    assert "OUT/.faceveil/review.json" in text


# the server's security, one test per endpoint ----------------------------------------------------
ENDPOINTS = {  # name: (method, url or JSON path template, reads a file of the item, which item)
    "page": ("GET", "/", None),
    "favicon": ("GET", "/favicon.ico", None),
    "static": ("GET", "/static/{rel}", "review.js"),
    "items": ("GET", "/api/items", None),
    "img-out": ("GET", "/img/out/{rel}", "a.png"),
    "img-orig": ("GET", "/img/orig/{rel}", "a.png"),
    "thumb": ("GET", "/thumb/{rel}", "a.png"),
    "frame-out": ("GET", "/frame/out/{rel}?i=0", "clip.mp4"),
    "frame-orig": ("GET", "/frame/orig/{rel}?i=0", "clip.mp4"),
    "frame-boxes": ("GET", "/api/frame/{rel}?i=0", "clip.mp4"),
    "apply": ("POST", "/api/apply", "a.png"),
    "approve": ("POST", "/api/approve", "a.png"),
}
TRAVERSALS = ["../{secret}", "sub/../../{secret}", "%2e%2e/{secret}", "%2e%2e%2f{secret}", "..%2f{secret}",
              "/{abs}", "{abs}", "%2F{abs_enc}", "..\\{secret}"]


@pytest.fixture(scope="module")
def served_base(tmp_path_factory, astronaut):
    """IN/OUT holding a video (with its track record) and an image, as `faceveil anonymize` wrote them."""
    from test_review_video import make_video_set

    root = tmp_path_factory.mktemp("served")
    src, out = make_video_set(root, astronaut)
    Image.fromarray(astronaut).save(src / "a.png")
    assert main(["anonymize", str(src / "a.png"), "-o", str(out), "-q", "-d", "centerface"]) == 0
    return root


@pytest.fixture()
def served(served_base, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(served_base / "in", src, symlinks=True)
    shutil.copytree(served_base / "out", out, symlinks=True)
    # What a traversal or a swapped link would reach: valid media, but none of the run's files.
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(
        tmp_path / "secret.png")
    (tmp_path / "secret.mp4").write_bytes((src / "leak.mp4").read_bytes() + b"secret")  # trailing bytes: still plays
    rs = ReviewSet(out, src, AnonymizerConfig(), NONE, tmp_path / "cache")
    return rs, create_app(rs, TOKEN).test_client(use_cookies=False), src, out, tmp_path


def _call(client, name: str, rel: str | None = None, **kw):
    method, template, default = ENDPOINTS[name]
    rel = default if rel is None else rel
    if method == "POST":
        body = {"path": rel, "manual": [[0, 0, 8, 8]]} if name == "apply" else {"path": rel}
        return client.post(template, json=body, **kw)
    return client.get(template.format(rel=rel), **kw)


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_endpoint_needs_the_token(served, name):
    rs, client, src, out, _ = served
    method = ENDPOINTS[name][0]
    assert _call(client, name).status_code == 403
    assert _call(client, name, headers={"X-Faceveil-Token": "wrong"}).status_code == 403
    assert _call(client, name, headers={"X-Faceveil-Token": ""}).status_code == 403
    assert _call(client, name, headers={"X-Faceveil-Token": TOKEN[:-1]}).status_code == 403
    if method == "GET":
        assert client.get(ENDPOINTS[name][1].format(rel=ENDPOINTS[name][2]) + ("&" if "?" in ENDPOINTS[name][1]
                          else "?") + "token=wrong").status_code == 403
    else:  # a token in the query is never enough for a change
        assert client.post(ENDPOINTS[name][1] + f"?token={TOKEN}", json={"path": "a.png"}).status_code == 403
    assert not (out / ".faceveil" / "review.json").exists(), "a refused request changed something"
    r = _call(client, name, headers=HDR)
    assert r.status_code in (200, 204), (name, r.status_code, r.data[:200])


@pytest.mark.parametrize("name", [n for n, e in ENDPOINTS.items() if e[2] is not None])
def test_endpoint_refuses_traversal(served, name):
    rs, client, src, out, tmp = served
    suffix = Path(ENDPOINTS[name][2]).suffix or ".png"
    secret = tmp / f"secret{suffix if suffix in ('.png', '.mp4') else '.png'}"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for t in TRAVERSALS:
        rel = t.format(secret=secret.name, abs=str(secret).lstrip("/"), abs_enc=str(secret).lstrip("/"))
        r = _call(client, name, rel, headers=HDR)
        assert r.status_code in (400, 403, 404, 405), (name, rel, r.status_code)
        assert secret.read_bytes()[:4096] not in r.data, (name, rel)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", [n for n, e in ENDPOINTS.items() if e[2] in ("a.png", "clip.mp4")
                                  and n != "approve"])
@pytest.mark.parametrize("side", ["out", "orig"])
def test_endpoint_refuses_a_link_swapped_in_after_start_up(served, name, side):
    rs, client, src, out, tmp = served
    rel = ENDPOINTS[name][2]
    secret = tmp / f"secret{Path(rel).suffix}"
    target = (out if side == "out" else src) / rel
    saved = tmp / "saved"
    shutil.move(target, saved)
    target.symlink_to(secret)
    before = secret.read_bytes()
    r = _call(client, name, headers=HDR)
    expected_ok = (side == "out" and name in ("img-orig", "frame-orig")) or (
        side == "orig" and name in ("img-out", "thumb", "frame-out", "frame-boxes"))
    if expected_ok:  # the endpoint does not read the swapped side
        assert r.status_code == 200, (name, side, r.status_code)
    else:
        assert r.status_code == 403, (name, side, r.status_code, r.data[:200])
    assert secret.read_bytes() == before, "a file outside OUT was written"
    if r.status_code == 200 and r.mimetype.startswith("image/") and rel.endswith(".png"):
        assert r.data != before
    assert not any(p.is_file() and not p.is_symlink() and p.read_bytes() == before for p in out.rglob("*")), \
        "the outside file was copied into OUT"


def test_dataset_inputs_under_the_reserved_name_are_refused(tmp_path):
    from faceveil.dataset import DatasetConfig, anonymize_dataset
    from faceveil.errors import UsageError

    root = tmp_path / "ds"
    (root / "images" / ".faceveil").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(root / "images" / ".faceveil" / "review.png")
    (root / "labels.txt").write_text(".faceveil/review.png\n1\n4 4 8 8 0 0 0 0 0 0\n")
    with pytest.raises(UsageError, match=r"\.faceveil"):
        anonymize_dataset("wider", root / "images", root / "labels.txt", tmp_path / "out",
                          DatasetConfig(AnonymizerConfig(method="blackout"), "gt"), progress=False)
    assert not (tmp_path / "out" / "images" / ".faceveil").exists()


def test_issue_17_5_a_face_only_the_thorough_run_found_stays_hidden(tmp_path):
    """The issue's own case: facemask maksssksksss1.jpg, `anonymize --detect thorough` hides a face scored
    0.107 that the default preset does not find; a review with default options and no report then Applies."""

    photo = shared_path("facemask", "images", "maksssksksss1.jpg")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy2(photo, src / "m1.jpg")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detect", "thorough"]) == 0
    rs, client = _review(out, src)
    orig, before = _read(src / "m1.jpg"), _read(out / "m1.jpg")
    weak = [34.1, 59.3, 59.9, 92.5]
    assert not any(_matches_box(f["box"], weak) for f in rs.listing()["items"][0]["faces"]), "set-up: default misses it"
    assert _changed(before, orig, weak) > 0.6
    r = client.post("/api/apply", json={"path": "m1.jpg", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    assert _changed(_read(out / "m1.jpg"), orig, weak) >= 0.95 * _changed(before, orig, weak)


def test_the_check_of_a_1_bit_photo_finds_the_faces_the_run_found(tmp_path):
    """The run detects on ``detection_view`` (a 1-bit photo smoothed), the check detected on the raw dots: it
    found none of the 5 faces the run hid, so an output that left them all visible was not flagged."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    Image.open(shared_path("facemask", "images", "maksssksksss5.jpg")).convert("1").save(src / "bw.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", *FAST, "--report", str(report)]) == 0
    ran = [d["box"] for d in json.loads(report.read_text())["files"][0]["detections"]]
    assert len(ran) >= 4, "set-up: the run finds the faces"
    rs, _ = _review(out, src, *FAST, "--from-report", str(report))
    item = rs.listing()["items"][0]
    faces = [f["box"] for f in item["faces"]]
    assert len(faces) == len(ran) and all(_matches_box(b, faces) for b in ran)
    assert not [f for f in item["flags"] if f["kind"] == "unhidden"]
    Image.open(src / "bw.png").convert("L").save(out / "bw.png")  # an output that hides nothing
    rs, _ = _review(out, src, *FAST, "--from-report", str(report))
    unhidden = [f for f in rs.listing()["items"][0]["flags"] if f["kind"] == "unhidden"]
    assert unhidden and unhidden[0]["count"] == len(ran)


def _matches_box(a, b) -> bool:
    from faceveil.detections import box_iou

    return float(box_iou(np.asarray(a), np.asarray(b)).max()) >= 0.3


def test_settings_compare_equal_whichever_form_a_tuple_was_written_in():
    from faceveil.review.runs import plain_params, same_settings

    old = {"method": "m", "method_params": {"sizes": "(0.6, 0.9)", "n": 3}, "region": {"shape": "box"}, "seed": 0}
    new = {"method": "m", "method_params": {"sizes": [0.6, 0.9], "n": 3}, "region": {"shape": "box"}, "seed": 0}
    assert same_settings(old, new)
    assert not same_settings(old, {**new, "method_params": {"sizes": [0.6, 1.0], "n": 3}})
    assert plain_params({"a": "()", "b": "(2.0)", "c": "(x)", "d": "text"}) == {"a": (), "b": (2.0,), "c": "(x)",
                                                                              "d": "text"}


def test_a_report_with_relative_paths_is_matched_from_another_folder(run, tmp_path, monkeypatch):
    """`cd photos-parent && faceveil anonymize in -o out --report r.json`, then the review started elsewhere."""
    from faceveil.review.runs import load_run_record

    work = tmp_path / "work"
    shutil.copytree(run / "in", work / "in")
    monkeypatch.chdir(work)
    assert main(["anonymize", "in", "-o", "out", "-q", "-d", "centerface", "--report", "r.json"]) == 0
    doc = json.loads((work / "r.json").read_text())
    assert doc["files"][0]["output"].startswith("out"), "set-up: paths written relative"
    monkeypatch.chdir(tmp_path)
    rec = load_run_record(doc, work / "r.json", work / "out", work / "in")
    assert set(rec.regions) == {"m1.jpg", "m2.jpg"} and rec.inputs == {"m1.jpg", "m2.jpg"}
    assert all(len(v) == 1 for v in rec.regions.values())
    moved = tmp_path / "elsewhere"
    shutil.move(work, moved)  # report, IN and OUT moved together: matched by the report's folder
    rec = load_run_record(doc, moved / "r.json", moved / "out", moved / "in")
    assert set(rec.regions) == {"m1.jpg", "m2.jpg"}


BOX = [380, 250, 470, 350]  # a manual box away from the face of _face_photo's photo, where it is not flat


def _face_photo(dst: Path, name: str = "img2.jpg", width: int = 480) -> np.ndarray:
    """A real photo of one face (../shared/data, else the test is skipped), saved smaller at ``dst``; its pixels."""
    img = Image.open(shared_path("deepface-unit", name)).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)))
    img.save(dst, quality=95)
    return _read(dst)


def _faces_on(rgb: np.ndarray) -> list:
    """The boxes the run's detector (FAST) finds on ``rgb``."""
    from faceveil.pipeline import Anonymizer

    cfg = config_from_args(build_parser().parse_args(["review", "o", "--originals", "i", *FAST]))
    return Anonymizer.from_config(cfg).detect(rgb).xyxy.tolist()


def _failed_run(tmp_path: Path, broken: bytes):
    """`anonymize IN/sub IN/b/y.jpg -o OUT --report r.json`, IN/b/y.jpg ``broken`` (not an image: it fails)."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    (src / "sub" / "a").mkdir(parents=True)
    (src / "b").mkdir()
    _face_photo(src / "sub" / "a" / "x.jpg", "img1.jpg")
    (src / "b" / "y.jpg").write_bytes(broken)
    assert main(["anonymize", str(src / "sub"), str(src / "b" / "y.jpg"), "-o", str(out), "-q", *FAST,
                 "--report", str(report)]) == 1
    return src, out, report


def test_apply_of_a_failed_input_replaced_since_its_check_hides_its_face(tmp_path):
    """A failed input (not an image) is checked while it cannot be decoded: no faces. The user then puts a real
    photo there and Applies with a box elsewhere: the Apply wrote the photo with its face untouched (200), for it
    used the check's (empty) detections, and the item's version (no output: null) never changed. Now the version
    follows the original, an Apply on an original changed since its check is refused (409, reload) and checks it
    again, and the Apply after the reload hides the face."""
    src, out, report = _failed_run(tmp_path, b"not an image")
    rs, client = _review(out, src, "--from-report", str(report), *FAST)
    shown = next(i for i in client.get("/api/items", headers=HDR).get_json()["items"] if i["path"] == "b/y.jpg")
    assert any(f["kind"] == "failed" for f in shown["flags"]) and not shown["faces"], shown
    photo = _face_photo(src / "b" / "y.jpg")  # the user fixes the broken input while the page is open
    faces = _faces_on(photo)
    assert faces, "the photo has a face the run's detector finds"
    r = client.post("/api/apply", json={"path": "b/y.jpg", "version": shown["version"], "manual": [BOX],
                                        "removed": []}, headers=HDR)
    target = out / "y.jpg"
    assert not target.exists() or all(_changed(_read(target), photo, f) > 0.3 for f in faces), \
        f"{r.status_code}: the face written visible"
    assert r.status_code == 409 and "changed since" in r.get_json()["error"], r.get_json()
    assert not target.exists(), "nothing written"
    now = next(i for i in client.get("/api/items", headers=HDR).get_json()["items"] if i["path"] == "b/y.jpg")
    assert now["version"] != shown["version"] and now["faces"], now  # checked again: the reload shows the face
    r = client.post("/api/apply", json={"path": "b/y.jpg", "version": now["version"], "manual": [BOX],
                                        "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert all(_changed(_read(target), photo, f) > 0.3 for f in faces), "every face hidden"
    assert _changed(_read(target), photo, BOX) > 0.3, "the reviewer's box too"
    assert not any(f["kind"] == "unhidden" for f in r.get_json()["flags"]), r.get_json()["flags"]


def test_apply_of_a_failed_input_hides_the_faces_found_at_apply_time(tmp_path):
    """The same with a replacement the check's stat cannot see (same size and modification time, as `cp -p` or a
    restore from backup keep them): Apply detects again on the original it reads and hides every face it finds."""
    photo_bytes = tmp_path / "photo.jpg"
    photo = _face_photo(photo_bytes)
    src, out, report = _failed_run(tmp_path, b"\0" * photo_bytes.stat().st_size)
    st = (src / "b" / "y.jpg").stat()
    rs, client = _review(out, src, "--from-report", str(report), *FAST)
    shown = next(i for i in client.get("/api/items", headers=HDR).get_json()["items"] if i["path"] == "b/y.jpg")
    shutil.copyfile(photo_bytes, src / "b" / "y.jpg")
    import os

    os.utime(src / "b" / "y.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    faces = _faces_on(photo)
    assert faces
    r = client.post("/api/apply", json={"path": "b/y.jpg", "version": shown["version"], "manual": [BOX],
                                        "removed": []}, headers=HDR)
    target = out / "y.jpg"
    assert r.status_code in (200, 409), r.get_json()
    assert not target.exists() or all(_changed(_read(target), photo, f) > 0.3 for f in faces), \
        f"{r.status_code}: the face written visible"
    assert r.status_code == 200 and target.exists(), r.get_json()


def _failed_unlisted_run(tmp_path: Path, astronaut):
    """A run whose report names two failed inputs the review cannot list: one outside IN, one gone from IN since."""
    src, other, out, report = tmp_path / "in", tmp_path / "other", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    other.mkdir()
    Image.fromarray(astronaut).save(src / "ok.png")
    far, gone = other / "far\n\x1b[32mY.jpg", src / "gone\n\x1b[31mZ.jpg"
    far.write_bytes(b"junk")
    gone.write_bytes(b"junk")
    assert main(["anonymize", str(src), str(far), "-o", str(out), "-q", *FAST, "--report", str(report)]) == 1
    gone.unlink()
    return src, out, report


def test_failed_inputs_warnings_escape_the_reports_text(monkeypatch, capsys, tmp_path, astronaut):
    """A failed input outside IN, or gone from IN since the run, is named in a warning at start with the report's
    error, which names the file: printed raw, a name with a newline and an escape code started a line of its own
    ("\\x1b[32mY.jpg: not an image...", coloured). Every part from the report is escaped now (errors.one_line)."""
    from socketserver import BaseServer

    src, out, report = _failed_unlisted_run(tmp_path, astronaut)
    capsys.readouterr()

    def fake_serve(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", fake_serve)
    assert main(["review", str(out), "--originals", str(src), "--from-report", str(report), "--cache-dir",
                 str(tmp_path / "c"), "--second", "none", *FAST]) == 130
    err = capsys.readouterr().err
    assert "\x1b" not in err and all(ln.startswith("faceveil: ") for ln in err.splitlines()), err
    assert "far\\n\\x1b[32mY.jpg: failed in the run" in err and "gone\\n\\x1b[31mZ.jpg: failed in the run" in err, err


def test_failed_inputs_the_review_cannot_list_are_shown_on_the_page(tmp_path, astronaut):
    """A failed input outside IN (or gone from it) was only named in a console warning: a reviewer using the page
    never learnt that a photo of the run was not anonymized. /api/items now names every such input with why, and
    the page shows them above the images (no Apply: there is no original to redo)."""
    src, out, report = _failed_unlisted_run(tmp_path, astronaut)
    rs, client = _review(out, src, "--from-report", str(report), *FAST)
    data = client.get("/api/items", headers=HDR).get_json()
    shown = {f["input"]: f["why"] for f in data.get("failed_unlisted", [])}
    assert len(shown) == 2, data
    far = next((k for k in shown if k.endswith("far\\n\\x1b[32mY.jpg")), None)
    assert far is not None and "not an image" in shown[far] and "not under" in shown[far], shown
    assert "not found in" in shown.get("gone\\n\\x1b[31mZ.jpg", ""), shown
    assert all(ch.isprintable() for text in shown.items() for t in text for ch in t), shown
    static = Path(__file__).parents[1] / "src" / "faceveil" / "review" / "static"
    assert 'id="failed-unlisted"' in (static / "index.html").read_text()
    js = (static / "review.js").read_text()
    assert "showFailedUnlisted(data.failed_unlisted)" in js
    node = shutil.which("node")
    if node is None:
        return  # what the page's function draws from it is checked where Node.js is installed
    import re
    import subprocess

    func = re.search(r"\nfunction showFailedUnlisted\(.*?\n}\n", js, re.S).group(0)
    stub = """const el = (tag) => ({tag, children: [], textContent: "", hidden: true, appendChild(c) { this.children.push(c); },
      replaceChildren(...c) { this.children = c; }});
    const root = el("div"); const document = {createElement: el}; const $ = () => root;
    const text = (e) => [e.textContent, ...e.children.map(text)].join("\\n");"""
    script = f"{stub}{func}showFailedUnlisted({json.dumps(data['failed_unlisted'])});" \
             "console.log(JSON.stringify({hidden: root.hidden, text: text(root)}));"
    drawn = json.loads(subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout)
    assert not drawn["hidden"] and "2 inputs of the run failed" in drawn["text"], drawn
    assert all(f"{k}: {v}" in drawn["text"] for k, v in shown.items()), drawn


def test_apply_of_a_failed_input_with_a_relative_target_from_another_folder(tmp_path, monkeypatch):
    """`anonymize IN/sub IN/b/y.jpg -o OUT --report reports/r.json` (relative paths) fails on y.jpg; the review is
    started from another folder. The report's relative paths are resolved against the folder the review starts in,
    the report's folder, else by the tail that exists under OUT, which a target never written has not: its Apply was
    refused saying the report "puts its output outside OUT", untrue. The written outputs show how the run named OUT
    ("OUT/..."): the target is read the same way and Apply writes OUT/y.jpg; with no written output to learn it
    from, the refusal says the target is relative to another folder."""
    run = tmp_path / "run"
    (run / "IN" / "sub" / "a").mkdir(parents=True)
    (run / "IN" / "b").mkdir()
    (run / "reports").mkdir()
    (tmp_path / "elsewhere").mkdir()
    _face_photo(run / "IN" / "sub" / "a" / "x.jpg", "img1.jpg")
    (run / "IN" / "b" / "y.jpg").write_bytes(b"not an image")
    monkeypatch.chdir(run)
    assert main(["anonymize", "IN/sub", "IN/b/y.jpg", "-o", "OUT", "-q", *FAST, "--report", "reports/r.json"]) == 1
    doc = json.loads((run / "reports" / "r.json").read_text())
    assert [f["target"] for f in doc["files"] if f["status"] == "failed"] == ["OUT/y.jpg"], doc["files"]
    photo = _face_photo(run / "IN" / "b" / "y.jpg")  # fixed before the review starts
    monkeypatch.chdir(tmp_path / "elsewhere")
    rs, client = _review(run / "OUT", run / "IN", "--from-report", str(run / "reports" / "r.json"), *FAST)
    r = client.post("/api/apply", json={"path": "b/y.jpg", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert all(_changed(_read(run / "OUT" / "y.jpg"), photo, f) > 0.3 for f in _faces_on(photo))

    # no written output tells how the run named OUT: refused, saying why
    shutil.rmtree(run / "OUT")
    (run / "OUT").mkdir()
    doc["files"] = [f for f in doc["files"] if f["status"] == "failed"]
    (run / "reports" / "r.json").write_text(json.dumps(doc))
    rs, client = _review(run / "OUT", run / "IN", "--from-report", str(run / "reports" / "r.json"), *FAST)
    flag = next(f for f in rs.item_json(rs.items["b/y.jpg"])["flags"] if f["kind"] == "failed")
    r = client.post("/api/apply", json={"path": "b/y.jpg", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 409, r.get_json()
    for text in (flag["text"], r.get_json()["error"]):
        assert "outside" not in text and "relative to the folder the run was started in" in text, text
    assert not (run / "OUT" / "y.jpg").exists()


def test_a_report_that_cannot_be_read_says_why_in_its_own_words(tmp_path, astronaut, capsys):
    """--from-report said "nothere.json: cannot read report ([Errno 2] No such file or directory: 'nothere.json')",
    a folder "[Errno 21] Is a directory", a text file "cannot read report (Expecting value: line 1 column 1 (char
    0))", and a dataset manifest that is not there "a manifest with no anonymized image"."""
    src, out = tmp_path / "in", tmp_path / "out"
    for d in (src, out):
        d.mkdir()
        Image.fromarray(astronaut).save(d / "a.png")
    (tmp_path / "gt.txt").write_text("a.png\n1\n1 1 20 20 0 0 0 0 0 0\n")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{")
    (tmp_path / "folder.jsonl").mkdir()
    cases = {"nothere.json": "no such file (--from-report)", "nothere.jsonl": "no such file (--from-report)",
             "out": "a folder, not a report file (--from-report)",
             "folder.jsonl": "a folder, not a manifest file (--from-report)",
             "gt.txt": "not a `faceveil anonymize --report` file (not JSON: Expecting value at line 1 column 1)",
             "bin.json": "not a `faceveil anonymize --report` file (not UTF-8 text)"}
    for name, why in cases.items():
        report = tmp_path / name
        assert main(["review", str(out), "-i", str(src), "--from-report", str(report), "-q"]) == 2, name
        assert capsys.readouterr().err == f"faceveil: error: {report}: {why}\n", name


def test_a_file_given_as_out_or_originals_is_not_a_folder_not_a_missing_one(tmp_path, astronaut, capsys):
    """A photo given as OUT or --originals was told "no such folder": it is there, and not a folder."""
    src, out = tmp_path / "in", tmp_path / "out"
    for d in (src, out):
        d.mkdir()
        Image.fromarray(astronaut).save(d / "a.png")
    review_out, originals = "(the anonymized output to review)", "(--originals must be the input folder)"
    for argv, line in [([str(out / "a.png"), "-i", str(src)], f"{out / 'a.png'}: not a folder {review_out}"),
                       ([str(out), "-i", str(src / "a.png")], f"{src / 'a.png'}: not a folder {originals}"),
                       ([str(tmp_path / "none"), "-i", str(src)], f"{tmp_path / 'none'}: no such folder {review_out}")]:
        assert main(["review", *argv, "-q"]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {line}\n"
