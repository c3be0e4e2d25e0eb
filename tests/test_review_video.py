"""Videos on the review page: tracks and flags from the run's record, frames, Apply over a frame range."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")

from faceveil.cli import main  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402
from faceveil.errors import FaceveilError  # noqa: E402
from faceveil.io.video import probe, read_frames  # noqa: E402
from faceveil.pipeline import AnonymizerConfig  # noqa: E402
from faceveil.review import ReviewSet, ReviewSettings, create_app  # noqa: E402
from synthetic_video import make_clip, sprite_from_photo, write_clip, write_timed_clip  # noqa: E402
from faceveil.video import tracks_path  # noqa: E402

TOKEN = "test-token-video"
HDR = {"X-Faceveil-Token": TOKEN}
FPS, N = 12, 24


def _second() -> tuple[str, ...]:
    try:
        get_detector("yunet", {})
        return ("yunet",)
    except FaceveilError:
        return ("none",)


def _astronaut_clip(astronaut):
    """The astronaut's face as a sprite moving over N frames of 256x192 (synthetic_video.make_clip, seed 5)."""
    import faceveil

    d = faceveil.detect(astronaut)
    sprite = sprite_from_photo(astronaut, d.xyxy[int(np.argmax(d.areas))])
    return make_clip([sprite], (256, 192), N, FPS, seed=5)


def make_video_set(root: Path, astronaut) -> tuple[Path, Path]:
    """IN/clip.mp4 (three moving faces, audio) anonymized by `faceveil anonymize` with blackout boxes;
    IN/leak.mp4 whose 'output' is the original itself with an empty record (every face missed)."""
    src, out = root / "in", root / "out"
    src.mkdir()
    clip = _astronaut_clip(astronaut)
    write_clip(src / "clip.mp4", clip.frames, FPS, audio=True)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface",
                 "-m", "blackout", "--shape", "box", "--mask-scale", "1.0"]) == 0
    write_clip(src / "leak.mp4", clip.frames, FPS, audio=False)
    shutil.copy2(src / "leak.mp4", out / "leak.mp4")
    rec = json.loads(tracks_path(out / "clip.mp4").read_text())
    leak = {**rec, "video": "leak.mp4", "frames": [[] for _ in rec["frames"]], "errors": {}}
    tracks_path(out / "leak.mp4").write_text(json.dumps(leak))
    return src, out


@pytest.fixture(scope="module")
def base(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("review-video")
    src, out = make_video_set(root, astronaut)
    return src, out, root / "cache"


@pytest.fixture()
def env(base, tmp_path):
    src, pristine, cache = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=_second()), cache)
    return rs, create_app(rs, TOKEN).test_client(use_cookies=False), src, out


def _frames(path: Path) -> list[np.ndarray]:
    return [f.rgb.astype(np.int16) for f in read_frames(path)]


def test_the_run_leaves_a_track_record(base):
    _, out, _ = base
    rec = json.loads(tracks_path(out / "clip.mp4").read_text())
    assert len(rec["frames"]) == N and rec["config"]["method"] == "blackout" and rec["size"] == [256, 192]
    kinds = {b["source"] for f in rec["frames"] for b in f}
    assert "detected" in kinds and {b.get("track_id", -1) for f in rec["frames"] for b in f} - {-1}  # with track ids
    assert not any(p.name.endswith(".tracks.json") for p in out.iterdir())  # hidden away in .faceveil/


def test_video_items_show_tracks_and_flags(env):
    rs, client, _, out = env
    data = client.get("/api/items", headers=HDR).get_json()
    items = {i["path"]: i for i in data["items"]}
    clip = items["clip.mp4"]
    assert clip["kind"] == "video" and clip["frames"] == N and clip["has_record"] and clip["size"] == [256, 192]
    assert clip["tracks"] and all(t["start"] <= t["end"] and t["start"] in t["strip"] and t["end"] in t["strip"]
                                  for t in clip["tracks"])
    boxes = client.get("/api/frame/clip.mp4?i=12", headers=HDR).get_json()["boxes"]
    assert boxes and all(len(b["box"]) == 4 for b in boxes)
    if _second() != ("none",):  # every face of leak.mp4 is unchanged: the second detector flags it first
        assert data["items"][0]["path"] == "leak.mp4"
        assert "second" in [f["kind"] for f in items["leak.mp4"]["flags"]]
    # frames of output and original are served as JPEG, from memory
    for url in ["/frame/out/clip.mp4?i=3", "/frame/orig/clip.mp4?i=3&w=64", "/thumb/clip.mp4"]:
        r = client.get(url, headers=HDR)
        assert r.status_code == 200 and r.data[:2] == b"\xff\xd8", url
    assert client.get("/frame/out/clip.mp4?i=999", headers=HDR).status_code == 404
    assert client.get("/frame/out/clip.mp4?i=-1", headers=HDR).status_code == 400

    # a held gap in a track and a failed frame (edited into the record) are flagged
    p = tracks_path(out / "clip.mp4")
    rec = json.loads(p.read_text())
    tid = max({b["track_id"] for f in rec["frames"] for b in f if "track_id" in b},
              key=lambda t: sum(b.get("track_id") == t for f in rec["frames"] for b in f))
    seen = [i for i, f in enumerate(rec["frames"]) if any(b.get("track_id") == tid for b in f)]
    for i in seen[2:7]:
        for b in rec["frames"][i]:
            if b.get("track_id") == tid:
                b["source"] = "held"
    rec["errors"] = {"4": "frame 4: boom"}
    p.write_text(json.dumps(rec))
    rs2 = ReviewSet(out, rs.in_root, AnonymizerConfig(), ReviewSettings(second=("none",)), rs.cache_dir)
    item = {i["path"]: i for i in create_app(rs2, TOKEN).test_client().get("/api/items", headers=HDR)
            .get_json()["items"]}["clip.mp4"]
    kinds = {f["kind"]: f for f in item["flags"]}
    assert "failed-frames" in kinds and kinds["failed-frames"]["frames"] == [4]
    assert "held-gap" in kinds and tid in kinds["held-gap"]["tracks"]


def test_apply_a_box_over_a_frame_range(env):
    rs, client, src, out = env
    before = _frames(out / "clip.mp4")
    orig = _frames(src / "clip.mp4")
    box, first, last = [8, 150, 56, 188], 6, 11  # background near the bottom-left corner
    seen = client.get(f"/api/frame/clip.mp4?i={first}", headers=HDR).get_json()["boxes"]  # the record, cached
    assert not [b for b in seen if b["kind"] == "m"]
    manual = [{"box": box, "from": first, "to": last}]
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": manual}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    after = _frames(out / "clip.mp4")
    after_bytes = (out / "clip.mp4").read_bytes()
    assert len(after) == len(before) == N
    x1, y1, x2, y2 = box
    for i in range(N):
        inside = np.abs(after[i][y1:y2, x1:x2] - before[i][y1:y2, x1:x2]).mean()
        if first <= i <= last:
            assert inside > 40 and after[i][y1 + 4:y2 - 4, x1 + 4:x2 - 4].max() < 30, i  # blacked out
        else:
            assert inside < 4, i  # codec noise only
        rest = np.abs(after[i] - before[i]).astype(np.float32)
        rest[max(0, y1 - 8):y2 + 8, max(0, x1 - 8):x2 + 8] = 0
        assert rest.mean() < 2, i
    assert probe(out / "clip.mp4").has_audio
    assert orig[first][y1:y2, x1:x2].mean() > 30  # the region was not black to begin with
    saved = json.loads((out / ".faceveil" / "review.json").read_text())["items"]["clip.mp4"]
    assert saved["manual"] == [{"box": [8.0, 150.0, 56.0, 188.0], "from": first, "to": last}]
    boxes = client.get(f"/api/frame/clip.mp4?i={first}", headers=HDR).get_json()["boxes"]
    assert [b["box"] for b in boxes if b["kind"] == "m"] == [[8.0, 150.0, 56.0, 188.0]]
    item = client.get("/api/items", headers=HDR).get_json()
    assert {i["path"]: i for i in item["items"]}["clip.mp4"]["manual"] == saved["manual"]
    bad = client.post("/api/apply", json={"path": "clip.mp4", "manual": [[1, 2, 3, 4]]}, headers=HDR)
    assert bad.status_code == 400
    # A range past the video's last frame, or a box of 1 px, hid nothing and was dropped with a 200: refused.
    for m in [{"box": box, "from": N + 5, "to": N + 9}, {"box": [8, 150, 9, 188], "from": 0, "to": 3}]:
        bad = client.post("/api/apply", json={"path": "clip.mp4", "manual": [m]}, headers=HDR)
        assert bad.status_code == 400, m
        assert "outside the video" in bad.get_json()["error"] or "under 2 px" in bad.get_json()["error"]
    assert (out / "clip.mp4").read_bytes() == after_bytes


def test_a_restarted_review_keeps_the_records_manual_boxes_and_refuses_removed(env, base):
    """review.json deleted (or lost) and the review restarted: the page shows no manual box, but the record still
    holds the earlier Apply's. Before, the next Apply re-rendered from the original without it (its face showed
    again, 200); now it stays hidden. A video's "removed" was ignored silently: now a 400."""
    rs, client, src, out = env
    a, b = [8, 150, 56, 188], [180, 8, 240, 60]
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [{"box": a, "from": 6, "to": 11}]}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    (out / ".faceveil" / "review.json").unlink()
    rs2 = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), base[2])
    client2 = create_app(rs2, TOKEN).test_client(use_cookies=False)
    shown = {i["path"]: i for i in rs2.listing()["items"]}["clip.mp4"]
    r = client2.post("/api/apply", json={"path": "clip.mp4", "version": shown["version"], "removed": [a],
                                         "manual": [{"box": b, "from": 0, "to": 3}]}, headers=HDR)
    assert r.status_code == 400 and "removed is for images" in r.get_json()["error"]
    r = client2.post("/api/apply", json={"path": "clip.mp4", "version": shown["version"],
                                         "manual": [{"box": b, "from": 0, "to": 3}]}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    after = _frames(out / "clip.mp4")
    x1, y1, x2, y2 = a
    assert all(after[i][y1 + 4:y2 - 4, x1 + 4:x2 - 4].max() < 30 for i in range(6, 12)), "a stays blacked out"
    assert {"box": [8.0, 150.0, 56.0, 188.0], "from": 6, "to": 11} in r.get_json()["manual"]


def test_video_endpoints_need_the_token(env):
    _, client, _, out = env
    for url in ["/frame/out/clip.mp4?i=0", "/frame/orig/clip.mp4?i=0", "/api/frame/clip.mp4?i=0", "/thumb/clip.mp4"]:
        assert client.get(url).status_code == 403
        assert client.get(url + "&token=wrong" if "?" in url else url + "?token=wrong").status_code == 403
    before = (out / "clip.mp4").read_bytes()
    body = {"path": "clip.mp4", "manual": [{"box": [0, 0, 50, 50], "from": 0, "to": 3}]}
    assert client.post("/api/apply", json=body).status_code == 403
    assert client.post(f"/api/apply?token={TOKEN}", json=body).status_code == 403
    assert (out / "clip.mp4").read_bytes() == before and not (out / ".faceveil" / "review.json").exists()
    assert client.get("/frame/out/../in/clip.mp4?i=0", headers=HDR).status_code == 404


def test_apply_redraws_a_replaced_video_with_the_runs_seed(tmp_path, astronaut):
    """`-m replace --seed 3`: Apply re-renders the video from the original with the run's seed and key, so the
    faces away from the manual box are the run's own new faces (another seed draws other ones)."""
    src = tmp_path / "in"
    src.mkdir()
    write_clip(src / "clip.mp4", _astronaut_clip(astronaut).frames, FPS, audio=False)
    for seed, name in ((3, "out"), (0, "other")):
        # lossless (--crf 0, which Apply takes from the video's record): the run's faces and Apply's are compared
        # exactly, not through two lossy encodes (x264's noise on the replaced faces' texture read 2-3 levels)
        args = ["anonymize", str(src), "-o", str(tmp_path / name), "-q", "-m", "replace", "--seed", str(seed),
                "--crf", "0"]
        assert main(args) == 0
    out = tmp_path / "out"
    orig, before, other = (_frames(p / "clip.mp4") for p in (src, out, tmp_path / "other"))
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=_second()), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    box = [8, 150, 56, 188]  # background near the bottom-left corner, frames 6..11
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [{"box": box, "from": 6, "to": 11}]},
                    headers=HDR)
    assert r.status_code == 200, r.get_json()
    after = _frames(out / "clip.mp4")
    face = [np.abs(b - o).max(axis=2) > 24 for b, o in zip(before, orig)]  # where the run drew its new face
    assert sum(f.sum() for f in face) > 2000
    for f in face:
        f[150 - 8:188 + 8, :56 + 8] = False
    same = np.mean([np.abs(a - b).max(axis=2)[f].mean() for a, b, f in zip(after, before, face) if f.any()])
    another = np.mean([np.abs(c - b).max(axis=2)[f].mean() for c, b, f in zip(other, before, face) if f.any()])
    assert same < 0.05 and another > 10, (same, another)


def test_sigterm_during_a_video_apply_ends_cleanly(base, tmp_path):
    """Before: the Apply ran in a daemon thread killed at exit: 'terminate called without an active exception',
    exit 134, its temporary video left in OUT (and a restarted review kept it). Now the Apply under way ends
    first, the exit is 143, nothing temporary is left; a dead writer's temporary is removed at start."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    src, pristine, _ = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".leak.mp4.faceveil.{dead.pid}.abcdefgh.tmp.mp4"
    stale.write_bytes(b"partial")
    cmd = [sys.executable, "-m", "faceveil", "review", str(out), "--originals", str(src), "--second", "none",
           "--cache-dir", str(tmp_path / "cache")]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = p.stdout.readline().strip()
    assert "token=" in url, p.stderr.read()
    assert not stale.exists(), "a dead writer's temporary is removed at start"
    base_url, token = url.split("/?token=")
    body = json.dumps({"path": "clip.mp4", "manual": [{"box": [8, 150, 56, 188], "from": 0, "to": N - 1}]})
    req = urllib.request.Request(base_url + "/api/apply", body.encode(), method="POST",
                                 headers={"X-Faceveil-Token": token, "Content-Type": "application/json"})
    threading.Thread(target=lambda: urllib.request.urlopen(req, timeout=60).read(), daemon=True).start()
    deadline = time.monotonic() + 20
    while not list(out.glob(".clip.mp4.*tmp*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "terminate called" not in err and "Traceback" not in err
    assert not list(out.rglob(".*tmp*")), "no temporary file left"
    assert len(_frames(out / "clip.mp4")) == N


def test_a_video_whose_record_was_made_from_another_file_is_flagged_and_not_applied(env):
    """leak.mp4's record is clip.mp4's (its content key): nothing proves IN/leak.mp4 is that output's original, so
    Apply (which redoes the ORIGINAL with the record's boxes) is refused; before, it redid whatever IN held."""
    rs, client, src, out = env
    items = {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}
    assert not any(f["kind"] == "pair" for f in items["clip.mp4"]["flags"])
    assert any(f["kind"] == "pair" for f in items["leak.mp4"]["flags"]), items["leak.mp4"]["flags"]
    before = (out / "leak.mp4").read_bytes()
    r = client.post("/api/apply", json={"path": "leak.mp4", "manual": [{"box": [8, 150, 56, 188], "from": 0, "to": 3}]},
                    headers=HDR)
    assert r.status_code == 409 and "not this output's original" in r.get_json()["error"]
    assert (out / "leak.mp4").read_bytes() == before


def _previewed_clip(base, tmp_path):
    """in/clip.mp4 anonymized into out/ with --preview 0.5 (stills in out/clip.mp4_preview/): (in, out)."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy2(base[0] / "clip.mp4", src / "clip.mp4")
    out = tmp_path / "out"
    assert main(["anonymize", str(src / "clip.mp4"), "-o", str(out), "-q", "--detector", "centerface",
                 "--preview", "0.5"]) == 0
    return src, out


def test_a_videos_preview_stills_are_part_of_its_item_not_items_of_their_own(base, tmp_path):
    """`anonymize clip.mp4 --preview 0.5` then review: each still was listed as a photo with "no original found"
    (risk 5), ranked above the video; a photo of the user's in a folder of that name without the video stays."""
    src, out = _previewed_clip(base, tmp_path)
    stills = sorted((out / "clip.mp4_preview").iterdir())
    assert len(stills) >= 3
    shutil.copy2(stills[0], out / "clip.mp4_preview" / "mine.jpg")  # not a still's name: listed
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    data = create_app(rs, TOKEN).test_client(use_cookies=False).get("/api/items", headers=HDR).get_json()
    assert sorted(i["path"] for i in data["items"]) == ["clip.mp4", "clip.mp4_preview/mine.jpg"]


@pytest.mark.parametrize("video", ["clip.mp4", "a [b]*?_00001.50s.mkv", "two\nlines.mov", "caf\udce9.webm",
                                   "v" * 251 + ".mp4"])
def test_the_review_knows_every_still_preview_path_names(tmp_path, video):
    """review matched a video's stills with a pattern of its own that restated video.job.preview_path's names: a
    video whose name held a newline had its stills listed each as a photo ("no original found"), and the stills of a
    long name (cut to fit, video.job) would not have matched. video.job.preview_video is now the one test."""
    from faceveil.review.pairs import list_images
    from faceveil.video import job

    v = tmp_path / video
    v.write_bytes(b"")
    stills = [job.preview_path(v, s) for s in (0, 1.5, 61.25, 123456.78)]
    stills += [job.preview_path(v, 1.5, 36), job.preview_path(v, 123456.78, 12345678)]  # seconds shared
    for p in stills:
        assert len(os.fsencode(p.name)) <= 255 and p.parent == job.preview_dir(v)
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"")
    mine = [job.preview_dir(v) / "mine.jpg", stills[1].with_name(stills[1].name.replace("01.50s", "1.50s")),
            stills[4].with_name(stills[4].name.replace("_f36", "_f06"))]
    for p in mine:  # a photo of the user's in that folder, and a name preview_path never gives: listed
        p.write_bytes(b"")
    assert sorted(list_images(tmp_path).values()) == sorted([v, *mine])
    assert [job.preview_video(p) for p in stills + mine] == [v] * len(stills) + [None] * len(mine)


def test_scrubbing_a_video_reads_its_record_once(env, monkeypatch):
    """Each frame's boxes read the whole track record again (a long video's is 25 MB): now once while unchanged."""
    import faceveil.review.store as store

    rs, client, _, _ = env
    reads = []
    real = store.read_record
    monkeypatch.setattr(store, "read_record", lambda *a, **k: reads.append(1) or real(*a, **k))
    got = [client.get(f"/api/frame/clip.mp4?i={i}", headers=HDR).get_json()["boxes"] for i in range(N)]
    assert len(reads) == 1 and any(got)


def test_a_videos_check_reads_its_record_once(env, tmp_path, monkeypatch):
    """An audit: the check of a video item read its track record in videos.analyse and again for its content key
    (the pair check): a long video's record twice (25 MB each) for every changed item. Now once, still telling
    the record made from another file (leak.mp4's is clip.mp4's) from its own."""
    rs, _, src, out = env
    reads = []
    real = Path.read_text

    def counted(self, *a, **k):
        if self.name.endswith(".tracks.json"):
            reads.append(self.name)
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", counted)
    fresh = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    fresh.analyse_all()
    assert sorted(reads) == ["clip.mp4.tracks.json", "leak.mp4.tracks.json"]  # before: each twice
    items = fresh.items
    assert items["leak.mp4"].check.get("pair") and not items["clip.mp4"].check.get("pair")
    assert items["clip.mp4"].analysis["record"] and items["clip.mp4"].analysis["frames"] == N


def test_a_videos_original_is_proven_by_the_reports_sha256(base, tmp_path):
    """Round 2: a video's pair was checked by its record's content key only (size, first and last MB): an original
    edited between them, of the same size, passed and an Apply re-rendered the edit with the old boxes. The report
    now records the whole file's SHA-256 for videos too, and the review checks it."""
    import hashlib

    from faceveil.review.runs import load_run_record

    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    shutil.copy2(base[0] / "clip.mp4", src / "clip.mp4")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface", "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["files"][0]["input_sha256"] == hashlib.sha256((src / "clip.mp4").read_bytes()).hexdigest()

    def items(doc):
        run = load_run_record(doc, report, out, src)
        rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache", run=run)
        client = create_app(rs, TOKEN).test_client(use_cookies=False)
        return client, {i["path"]: i for i in client.get("/api/items", headers=HDR).get_json()["items"]}

    _, got = items(doc)
    assert not any(f["kind"] == "pair" for f in got["clip.mp4"]["flags"])
    doc["files"][0]["input_sha256"] = "0" * 64  # the run read another file than IN/clip.mp4 is now
    client, got = items(doc)
    assert any(f["kind"] == "pair" for f in got["clip.mp4"]["flags"]), got["clip.mp4"]["flags"]
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [{"box": [8, 150, 56, 188], "from": 0,
                                                                        "to": 3}]}, headers=HDR)
    assert r.status_code == 409


def test_an_apply_keeps_the_videos_warnings_in_the_reviews_record(tmp_path):
    """`anonymize --report` warned that a frame repeating a timestamp was re-timed; the review's Apply re-renders the
    video from the same original, but recorded only its frames and failed frames in review.json: its warnings went
    nowhere (not in review.json, not in the Apply's answer). Now they are recorded and shown with the item."""
    from faceveil.cli import build_parser
    from faceveil.cli.review import config_from_args, run_record_from_args

    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    src.mkdir()
    write_timed_clip(src / "repeat.mkv", [0, 40, 80, 80, 120, 160, 200, 240], [40] * 8)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-m", "blackout", "--detector", "centerface",
                 "--report", str(report)]) == 0
    warned = json.loads(report.read_text())["files"][0]["warnings"]
    assert [w[:10] for w in warned] == ["re-timed: "], "set-up: the run warns"

    def review():
        args = build_parser().parse_args(["review", str(out), "--originals", str(src), "--second", "none",
                                          "--from-report", str(report)])
        rs = ReviewSet(out, src, config_from_args(args), ReviewSettings(second=("none",)), tmp_path / "cache",
                       run=run_record_from_args(args))
        return create_app(rs, TOKEN).test_client(use_cookies=False)

    manual = [{"box": [4, 4, 30, 30], "from": 0, "to": 7}]
    r = review().post("/api/apply", json={"path": "repeat.mkv", "manual": manual}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["warnings"] == warned
    assert json.loads((out / ".faceveil" / "review.json").read_text())["items"]["repeat.mkv"]["warnings"] == warned
    items = review().get("/api/items", headers=HDR).get_json()["items"]  # a restarted review still shows them
    assert [i["warnings"] for i in items if i["path"] == "repeat.mkv"] == [warned]


def test_apply_leaves_the_video_only_the_stills_of_its_new_render(base, tmp_path):
    """Apply re-renders a video with the run's options, --preview too: its stills were rewritten, but a still of an
    earlier run's at another time (clip_00000.25s.jpg, `--preview 0.25`) stayed beside them, showing the render
    from before the reviewer's edit. Now only this render's stills are left; a photo of the user's stays."""
    src, out = _previewed_clip(base, tmp_path)
    folder = out / "clip.mp4_preview"
    made = sorted(p.name for p in folder.iterdir())
    assert made == [f"clip_0000{s}s.jpg" for s in ("0.00", "0.50", "1.00", "1.50")]
    shutil.copy2(folder / "clip_00000.50s.jpg", folder / "clip_00000.25s.jpg")  # an earlier run's still
    shutil.copy2(folder / "clip_00000.50s.jpg", folder / "mine.jpg")
    before = (folder / "clip_00000.50s.jpg").read_bytes()
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    r = client.post("/api/apply", json={"path": "clip.mp4", "manual": [{"box": [8, 150, 56, 188], "from": 6,
                                                                         "to": 11}]}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    assert sorted(p.name for p in folder.iterdir()) == sorted(made + ["mine.jpg"])
    assert (folder / "clip_00000.50s.jpg").read_bytes() != before  # frame 6: the manual box drawn on it
