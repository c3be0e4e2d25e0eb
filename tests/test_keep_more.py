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
    from faceveil.io.images import read_rgb  # couple.png carries couple.jpg's colour profile: read in sRGB

    for name in ("couple.png", "alice.png"):  # the consenting face is byte-identical to the input
        sl = _box(LABELS[name][0])
        assert np.array_equal(_rgb(out / "images" / name)[sl], read_rgb(images / name)[sl]), name
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
    # another threshold (the Python API sets it): refused the same way
    from faceveil.dataset import DatasetConfig, anonymize_dataset
    from faceveil.errors import UsageError
    from faceveil.people import KeepPolicy, People
    from faceveil.pipeline import AnonymizerConfig

    stricter = KeepPolicy(People.load(base / "people.npz"), threshold=0.38)
    with pytest.raises(UsageError, match="made with other settings \\(keep:"):
        anonymize_dataset("wider", base / "ds" / "images", base / "ds" / "gt.txt", out,
                          DatasetConfig(AnonymizerConfig(keep=stricter), "union"), progress=False)
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


# --- the video review: one click flips a whole track ------------------------------------------------------------

@pytest.fixture(scope="module")
def kept_video(tmp_path_factory, astronaut):
    """IN/clip.mp4 (synthetic_video's three moving faces) anonymized with blackout boxes and --keep-region over the
    left half: face A crosses from left to right, so the run kept its track on some frames only (regions are
    decided per frame)."""
    pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")
    import faceveil
    from faceveil.cli import main
    from synthetic_video import make_clip, sprite_from_photo, write_clip

    root = tmp_path_factory.mktemp("kept-video")
    src, out = root / "in", root / "out"
    src.mkdir()
    d = faceveil.detect(astronaut)
    sprite = sprite_from_photo(astronaut, d.xyxy[int(np.argmax(d.areas))])
    clip = make_clip([sprite], (256, 192), 24, 12, seed=5)
    write_clip(src / "clip.mp4", clip.frames, 12, audio=False)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface", "-m", "blackout",
                 "--shape", "box", "--mask-scale", "1.0", "--keep-region", "0,0,0.5,1.0"]) == 0
    return src, out


def _record(out: Path) -> dict:
    from faceveil.video import tracks_path
    from faceveil.video.record import parse_record

    return parse_record(json.loads(tracks_path(out / "clip.mp4").read_text()))


def _where(out: Path, tid: int) -> tuple[dict, dict]:
    """Frame -> boxes of track ``tid`` the record says were hidden, and kept."""
    from faceveil.video.keep import track_boxes

    hidden, kept = track_boxes(_record(out))
    return hidden.get(tid, {}), kept.get(tid, {})


def _black(frame: np.ndarray, box) -> bool:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    inner = frame[y1 + 3:y2 - 3, x1 + 3:x2 - 3]
    return inner.size > 0 and float(inner.mean()) < 30


@pytest.mark.slow
def test_video_review_flips_a_whole_track_kept_and_hidden(kept_video, tmp_path, astronaut):
    from faceveil.io.video import read_frames
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    src, pristine = kept_video
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    hdr = {"X-Faceveil-Token": "t"}
    client = create_app(rs, "t").test_client(use_cookies=False)
    item = {i["path"]: i for i in client.get("/api/items", headers=hdr).get_json()["items"]}["clip.mp4"]
    half = [t for t in item["kept_tracks"] if t["kept_frames"] and t["hidden_frames"]]
    assert half, item["kept_tracks"]  # the run kept a track on some of its frames: what the click must fix
    tid = half[0]["id"]
    hidden0, kept0 = _where(out, tid)
    frames_of_t = set(hidden0) | set(kept0)
    others = {t["id"]: t["kept_frames"] for t in item["kept_tracks"] if t["id"] != tid}

    # one click: the track (kept on some frames) is hidden on every frame; the other tracks stay as they were
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [], "flip": [tid]}, headers=hdr)
    assert r.status_code == 200, r.get_json()
    hidden1, kept1 = _where(out, tid)
    assert kept1 == {} and set(hidden1) == frames_of_t
    after = r.get_json()
    assert tid not in {t["id"] for t in after["kept_tracks"]}
    assert {t["id"]: t["kept_frames"] for t in after["kept_tracks"] if t["id"] != tid} == others
    frames = [f.rgb for f in read_frames(out / "clip.mp4")]
    assert all(_black(frames[i], b) for i, bs in hidden1.items() for b in bs)

    # one more click: kept on every frame (by the reviewer), never half
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [], "flip": [tid]}, headers=hdr)
    assert r.status_code == 200, r.get_json()
    hidden2, kept2 = _where(out, tid)
    assert hidden2 == {} and set(kept2) == frames_of_t
    (t2,) = [t for t in r.get_json()["kept_tracks"] if t["id"] == tid]
    assert t2["by"] == "review" and t2["kept_frames"] == len(frames_of_t) and t2["hidden_frames"] == 0
    frames = [f.rgb.astype(int) for f in read_frames(out / "clip.mp4")]
    orig = [f.rgb.astype(int) for f in read_frames(src / "clip.mp4")]
    for i, bs in kept2.items():
        for b in bs:
            x1, y1, x2, y2 = (int(round(v)) for v in b)
            assert np.abs(frames[i][y1:y2, x1:x2] - orig[i][y1:y2, x1:x2]).mean() < 6, i  # codec noise only
    flags = {f["kind"]: f for f in r.get_json()["flags"]}
    assert f"track #{tid} by the reviewer" in flags["kept"]["text"]

    # a track the record does not have: a bad request, nothing re-rendered
    before = (out / "clip.mp4").read_bytes()
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [], "flip": [999]}, headers=hdr)
    assert r.status_code == 400 and "no track #999" in r.get_json()["error"]
    assert (out / "clip.mp4").read_bytes() == before


@pytest.mark.slow
def test_browser_one_click_hides_a_kept_track_whole(kept_video, tmp_path):
    """In headless Chromium: the track's "hide track" button, Apply, and the record has it hidden on every frame."""
    import threading

    from test_review_browser import TOKEN, _browser, _wait
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from werkzeug.serving import make_server

    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    src, pristine = kept_video
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    tid = next(t["id"] for t in rs.item_json(rs.items["clip.mp4"])["kept_tracks"] if t["kept_frames"])
    hidden0, kept0 = _where(out, tid)
    srv = make_server("127.0.0.1", 0, create_app(rs, TOKEN), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    driver = _browser()
    try:
        driver.get(f"http://127.0.0.1:{srv.server_port}/?token={TOKEN}")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '#grid .card[data-path="clip.mp4"]'),
              what="the video card")[0].click()

        def row(click: bool = False) -> str | None:
            """The track's row text (label and button), clicking its button; None while the page re-renders."""
            try:
                for r in driver.find_elements(By.CSS_SELECTOR, "#strips .strip"):
                    if r.find_element(By.CSS_SELECTOR, ".label").text.startswith(f"track #{tid}:"):
                        text = r.text
                        if click:
                            r.find_element(By.CSS_SELECTOR, "button.flip").click()
                        return text
            except StaleElementReferenceException:  # the strips were re-rendered under us: look again
                return None
            return None

        text = _wait(row, what="the track's flip button")
        assert "kept on" in text and "hide track" in text
        _wait(lambda: row(click=True), what="a click on the flip button")
        _wait(lambda: "pending" in (row() or ""), what="the pending flip")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
        _wait(lambda: "flipped whole" in driver.find_element(By.ID, "status").text, timeout=60, what="Apply")
        hidden1, kept1 = _where(out, tid)
        assert kept1 == {} and set(hidden1) == set(hidden0) | set(kept0)
        _wait(lambda: "keep track" in (row() or ""), what="the re-rendered strips")
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        srv.shutdown()
