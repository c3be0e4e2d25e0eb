"""The review server over HTTP (Flask's test client): token, file confinement, flags, Apply, resume."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")

from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.cli import main  # noqa: E402
from faceveil.detections import Detections  # noqa: E402
from faceveil.pipeline import AnonymizerConfig  # noqa: E402
from faceveil.review import ReviewSet, ReviewSettings, create_app  # noqa: E402
from faceveil.cli.review import _is_loopback, config_from_args  # noqa: E402

TOKEN = "test-token-0123456789"
HDR = {"X-Faceveil-Token": TOKEN}


# The base fixture's run: `faceveil anonymize --detector centerface` (its own defaults, the default region).
CF = AnonymizerConfig(detector="centerface")


def _read(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB"))


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory, astronaut):
    """IN (originals) and a pristine OUT made by `faceveil anonymize IN -o OUT`.

    leak.png's output is overwritten with its original: a face deliberately left un-anonymized.
    bad.png cannot be read, so it has no output (a failed file).
    """
    root = tmp_path_factory.mktemp("review")
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "astro.png")
    Image.fromarray(astronaut).save(src / "leak.png")
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)).save(src / "sub" / "noise.png")
    (src / "bad.png").write_bytes(b"not a png")
    out = root / "out"
    # plain centerface (the CLI's and the library's default is the balanced preset); the review below uses CF
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface"]) == 1  # bad.png fails
    shutil.copy2(src / "leak.png", out / "leak.png")
    return src, out, root / "cache"


@pytest.fixture()
def env(base, tmp_path):
    src, pristine, cache = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    rs = ReviewSet(out, src, CF, ReviewSettings(second=("yunet",)), cache)
    client = create_app(rs, TOKEN).test_client(use_cookies=False)  # each request shows its own credentials
    return rs, client, src, out


def test_every_endpoint_needs_the_token(env):
    rs, client, _, _ = env
    gets = ["/", "/static/review.js", "/api/items", "/img/out/astro.png", "/img/orig/astro.png", "/thumb/astro.png"]
    for url in gets:
        assert client.get(url).status_code == 403, url
        assert client.get(url + "?token=wrong").status_code == 403, url
        assert client.get(url, headers={"X-Faceveil-Token": "wrong"}).status_code == 403, url
        assert client.get(url + f"?token={TOKEN}").status_code == 200, url
        assert client.get(url, headers=HDR).status_code == 200, url
    for url in ["/api/apply", "/api/approve"]:
        body = {"path": "astro.png", "manual": []}
        assert client.post(url, json=body).status_code == 403
        # A token in the query (or a cookie) is not enough for a change: only the header the page's script sends.
        assert client.post(url + f"?token={TOKEN}", json=body).status_code == 403
        assert client.post(url, json=body, headers={"X-Faceveil-Token": "x"}).status_code == 403
    assert not (rs.out_root / ".faceveil" / "review.json").exists(), "a refused POST must change nothing"


def test_first_page_load_sets_a_cookie_that_serves_assets(env):
    client = create_app(env[0], TOKEN).test_client()
    r = client.get(f"/?token={TOKEN}")
    assert r.status_code == 200 and b"faceveil review" in r.data
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert r.headers["Referrer-Policy"] == "no-referrer" and "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert client.get("/static/review.css").status_code == 200  # the test client keeps the cookie
    assert client.get("/").status_code == 200  # a reload of the page (the token is gone from the address bar)
    assert client.post("/api/approve", json={"path": "astro.png"}).status_code == 403  # cookie alone: no POST
    # A browser sends a host's cookies to every port: another local server gets it. Before, it held the token
    # itself (originals and Apply for anyone holding it); now a session value that opens the page's assets only.
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in cookie and value
    other = create_app(env[0], TOKEN).test_client(use_cookies=False)
    for url in ["/img/orig/astro.png", "/img/out/astro.png", "/api/items", "/thumb/astro.png"]:
        assert client.get(url).status_code == 403, url
        assert other.get(f"{url}?token={value}").status_code == 403, url
    assert other.post("/api/apply", json={"path": "astro.png"}, headers={"X-Faceveil-Token": value}).status_code == 403


def test_items_are_sorted_flags_first_with_a_counter(env):
    _, client, _, _ = env
    data = client.get("/api/items", headers=HDR).get_json()
    order = [i["path"] for i in data["items"]]
    assert set(order[:2]) == {"bad.png", "leak.png"}, order
    assert set(order[2:]) == {"astro.png", "sub/noise.png"}
    items = {i["path"]: i for i in data["items"]}
    assert [f["kind"] for f in items["bad.png"]["flags"]][:1] == ["failed"] and not items["bad.png"]["has_output"]
    leak = items["leak.png"]
    assert [f["kind"] for f in leak["flags"]] == ["unhidden"]
    # the flagged box is the astronaut's face
    (x1, y1, x2, y2), = leak["flags"][0]["boxes"]
    assert 170 < x1 < 200 and 50 < y1 < 70 and 255 < x2 < 285 and 165 < y2 < 190
    assert items["astro.png"]["flags"] == [] and len(items["astro.png"]["faces"]) == 1
    assert data["summary"] == {"total": 4, "flagged": 2, "flagged_remaining": 2, "approved": 0, "refused": 0,
                               "checking": 0}
    assert data["second_detectors"] == ["yunet"]


def test_second_detector_and_near_threshold_flags(base, tmp_path):
    """Main detector at threshold 0.95 misses the face (0.93): yunet finds it, and it is 'just under'."""
    src, pristine, cache = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    shutil.copy2(src / "astro.png", out / "astro.png")  # as if made at that threshold: face left as is
    rs = ReviewSet(out, src, AnonymizerConfig(detector="centerface", detector_params={"threshold": 0.95}), ReviewSettings(second=("yunet",)),
                   cache)
    items = {i["path"]: i for i in rs.listing()["items"]}
    kinds = sorted(f["kind"] for f in items["astro.png"]["flags"])
    assert kinds == ["near", "second"]
    assert items["astro.png"]["faces"] == []
    assert {s["source"] for s in items["astro.png"]["suggestions"]} == {"near", "yunet"}


def test_small_faces_are_flagged(base, tmp_path, astronaut):
    src, _, cache = base
    small_in, out = tmp_path / "in", tmp_path / "out"
    small_in.mkdir()
    # The astronaut shrunk until her face is ~15 px wide, on a larger grey canvas.
    face = np.asarray(Image.fromarray(astronaut).resize((96, 96)))
    canvas = np.full((240, 320, 3), 128, np.uint8)
    canvas[60:156, 100:196] = face
    Image.fromarray(canvas).save(small_in / "small.png")
    assert main(["anonymize", str(small_in), "-o", str(out), "-q", "-t", "0.05"]) == 0
    rs = ReviewSet(out, small_in, AnonymizerConfig(detector="centerface", detector_params={"threshold": 0.05}),
                   ReviewSettings(second=("none",)), tmp_path / "cache")
    item = rs.listing()["items"][0]
    assert item["faces"], "the shrunk face should still be detected at threshold 0.05"
    assert "small" in [f["kind"] for f in item["flags"]]


def test_traversal_and_unlisted_files_are_refused(env, tmp_path):
    rs, client, src, out = env
    (tmp_path / "secret.png").write_bytes((src / "astro.png").read_bytes())
    for url in ["/img/out/../../secret.png", "/img/orig/../out/astro.png", "/img/orig/%2e%2e/secret.png",
                "/img/orig//etc/passwd", "/img/out/review.json", "/img/etc/astro.png", "/thumb/../secret.png",
                "/static/../store.py", "/static/%2e%2e/server.py", "/img/out/sub/../../secret.png"]:
        r = client.get(url, headers=HDR)
        assert r.status_code in (403, 404), (url, r.status_code)
        assert r.data != (tmp_path / "secret.png").read_bytes()
    r = client.post("/api/apply", json={"path": "../secret.png", "manual": [[0, 0, 50, 50]]}, headers=HDR)
    assert r.status_code == 404


def test_symlinks_out_of_the_roots_are_refused(base, tmp_path):
    src, pristine, cache = base
    secret = tmp_path / "secret.png"
    shutil.copy2(src / "astro.png", secret)
    in2, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(src, in2, symlinks=True)
    shutil.copytree(pristine, out)
    (out / "evil.png").symlink_to(secret)
    (in2 / "evil.png").symlink_to(secret)
    (in2 / "evil2.png").symlink_to(secret)
    rs = ReviewSet(out, in2, CF, ReviewSettings(second=("none",)), cache)
    client = create_app(rs, TOKEN).test_client()
    assert sorted(rs.refused) == ["evil.png", "evil2.png"]
    for url in ["/img/out/evil.png", "/img/orig/evil.png", "/img/orig/evil2.png", "/thumb/evil.png"]:
        assert client.get(url, headers=HDR).status_code == 404, url
    assert client.post("/api/apply", json={"path": "evil.png", "manual": [[0, 0, 9, 9]]},
                       headers=HDR).status_code == 404
    # A link swapped in after start-up is caught when the file is served.
    (out / "astro.png").unlink()
    (out / "astro.png").symlink_to(secret)
    assert client.get("/img/out/astro.png", headers=HDR).status_code == 403
    assert client.get("/thumb/astro.png", headers=HDR).status_code == 403
    assert secret.read_bytes() == (src / "astro.png").read_bytes()


def test_apply_changes_exactly_the_new_box_and_records_it(env):
    rs, client, src, out = env
    before_in = _digest(src)
    before = _read(out / "sub" / "noise.png")
    noise = next(i for i in rs.listing()["items"] if i["path"] == "sub/noise.png")
    assert noise["faces"] == [], "the noise image must have no detected face for this test"
    box = [40.0, 50.0, 100.0, 130.0]
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [box], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    item = r.get_json()
    assert item["manual"] == [box] and item["applied_at"]
    after = _read(out / "sub" / "noise.png")
    changed = (before != after).any(axis=2)
    mask = Compositor(RegionParams(**rs.config.region)).mask(Detections.from_boxes([box]), before.shape) > 0
    assert not (changed & ~mask).any(), "pixels outside the new box's region changed"
    assert changed[mask].mean() > 0.95, "the new region should be re-anonymized (blur on noise changes ~all)"
    saved = json.loads((out / ".faceveil" / "review.json").read_text())
    assert saved["items"]["sub/noise.png"]["manual"] == [box]
    assert saved["config"]["method"] == "blur" and saved["last"] == "sub/noise.png"
    assert _digest(src) == before_in, "originals must never be modified"
    assert not list(out.rglob(".*.tmp*")), "no temporary file left"


def test_apply_where_the_review_cannot_be_saved_changes_nothing_and_says_why(env, monkeypatch):
    """OUT (or its .faceveil folder) read-only: the Apply is refused before the output changes (409, the folder named),
    not written and then left unrecorded. os.access is patched: as root a chmod does not stop a write."""
    import faceveil.review.edits as edits

    rs, client, src, out = env
    before = _digest(out)
    real = edits.os.access
    monkeypatch.setattr(edits.os, "access", lambda p, mode: False if mode == edits.os.W_OK else real(p, mode))
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [[40, 50, 100, 130]]}, headers=HDR)
    assert r.status_code == 409, r.data
    assert "cannot save the review there" in r.get_json()["error"] and "nothing was changed" in r.get_json()["error"]
    assert _digest(out) == before, "the output or the review state changed"
    monkeypatch.setattr(edits.os, "access", real)
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [[40, 50, 100, 130]]}, headers=HDR)
    assert r.status_code == 200 and _digest(out) != before


def test_a_manual_box_dropped_by_a_later_apply_shows_again_and_a_sliver_is_refused(env):
    rs, client, src, out = env
    run_output = _read(out / "sub" / "noise.png")
    a, b = [40.0, 50.0, 100.0, 130.0], [120.0, 20.0, 180.0, 90.0]
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [a, b], "removed": []}, headers=HDR)
    assert r.status_code == 200
    both = _read(out / "sub" / "noise.png")
    # dropped on the version the page showed (the page sends it): an explicit drop
    r = client.post("/api/apply", json={"path": "sub/noise.png", "version": r.get_json()["version"], "manual": [b],
                                        "removed": []}, headers=HDR)
    assert r.status_code == 200 and r.get_json()["manual"] == [b]
    after = _read(out / "sub" / "noise.png")
    mask = Compositor(RegionParams(**rs.config.region)).mask
    in_a = mask(Detections.from_boxes([a]), after.shape) > 0
    in_b = mask(Detections.from_boxes([b]), after.shape) > 0
    # a's area is the run's output again (it stayed hidden while review.json listed only b), b's stays hidden
    assert (after[in_a & ~in_b] == run_output[in_a & ~in_b]).all()
    assert (after[in_b] == both[in_b]).all() and (after[~in_a] == both[~in_a]).all()
    # A box under 2 px (here 1 px high after clipping to the image) would hide nothing: refused, nothing written.
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [[10, -5, 90, 1]], "removed": []},
                    headers=HDR)
    assert r.status_code == 400 and "under 2 px" in r.get_json()["error"]
    assert (_read(out / "sub" / "noise.png") == after).all()
    assert json.loads((out / ".faceveil" / "review.json").read_text())["items"]["sub/noise.png"]["manual"] == [b]


def test_a_large_manual_box_does_not_make_its_output_another_photos(env):
    """After an Apply with a manual box over much of the photo, the check that the output is of this original
    (its pixels away from faces as the original's) counted the reviewer's own box as "away": 53 % of a facemask
    photo differed, the review flagged it "not this output's original" and refused every later Apply (409). The
    applied manual boxes are faces to that check, as the run's regions are."""
    rs, client, src, out = env
    big = [0.0, 0.0, 200.0, 150.0]
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [big], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    assert "pair" not in [f["kind"] for f in r.get_json()["flags"]], r.get_json()["flags"]
    small = [210.0, 140.0, 235.0, 175.0]
    r = client.post("/api/apply", json={"path": "sub/noise.png", "version": r.get_json()["version"],
                                        "manual": [big, small], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    assert r.get_json()["manual"] == [big, small]


def test_a_second_tab_never_un_hides_a_box_another_tab_applied(env):
    """Two tabs (or a client naming no version): before, the second Apply dropped the first one's box silently
    (its face showed again, 200). Now an edit on an older version is refused (409, reload), and one that names no
    version keeps every earlier box."""
    rs, client, src, out = env
    a, b, c = [5.0, 5.0, 40.0, 40.0], [100.0, 100.0, 150.0, 150.0], [180.0, 100.0, 230.0, 150.0]
    shown = next(i for i in rs.listing()["items"] if i["path"] == "sub/noise.png")["version"]
    first = client.post("/api/apply", json={"path": "sub/noise.png", "version": shown, "manual": [a, b]}, headers=HDR)
    assert first.status_code == 200
    hidden_b = _read(out / "sub" / "noise.png")
    r = client.post("/api/apply", json={"path": "sub/noise.png", "version": shown, "manual": [a, c]}, headers=HDR)
    assert r.status_code == 409 and "reload the page" in r.get_json()["error"]
    assert (_read(out / "sub" / "noise.png") == hidden_b).all(), "a refused edit changes nothing"
    r = client.post("/api/approve", json={"path": "sub/noise.png", "version": shown}, headers=HDR)
    assert r.status_code == 409, "approving a version the reviewer never saw"
    r = client.post("/api/apply", json={"path": "sub/noise.png", "manual": [a, c]}, headers=HDR)
    assert r.status_code == 200 and r.get_json()["manual"] == [a, c, b]
    in_b = Compositor(RegionParams(**rs.config.region)).mask(Detections.from_boxes([b]), hidden_b.shape) > 0
    assert (_read(out / "sub" / "noise.png")[in_b] == hidden_b[in_b]).all(), "b stays hidden"


def test_apply_fixes_the_leak_and_clears_its_flag(env):
    rs, client, src, out = env
    leak = next(i for i in client.get("/api/items", headers=HDR).get_json()["items"] if i["path"] == "leak.png")
    before = _read(out / "leak.png")
    assert (before == _read(src / "leak.png")).all()
    face = leak["flags"][0]["boxes"][0]
    r = client.post("/api/apply", json={"path": "leak.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200
    assert r.get_json()["flags"] == []
    # Now identical to what `faceveil anonymize` wrote for the same picture (same method, key-free blur).
    assert (_read(out / "leak.png") == _read(out / "astro.png")).all()
    x1, y1, x2, y2 = (int(v) for v in face)
    assert (_read(out / "leak.png")[y1:y2, x1:x2] != before[y1:y2, x1:x2]).any(axis=2).mean() > 0.8
    assert client.get("/api/items", headers=HDR).get_json()["summary"]["flagged_remaining"] == 1


def test_removing_a_false_box_restores_its_pixels(env):
    rs, client, src, out = env
    astro = next(i for i in rs.listing()["items"] if i["path"] == "astro.png")
    face = astro["faces"][0]["box"]
    r = client.post("/api/apply", json={"path": "astro.png", "manual": [], "removed": [face]}, headers=HDR)
    assert r.status_code == 200
    assert r.get_json()["faces"][0]["removed"] is True
    assert (_read(out / "astro.png") == _read(src / "astro.png")).all()


def test_bad_requests(env):
    _, client, _, _ = env
    assert client.post("/api/apply", data="nope", headers=HDR).status_code == 400
    assert client.post("/api/apply", json={"manual": []}, headers=HDR).status_code == 400
    r = client.post("/api/apply", json={"path": "astro.png", "manual": [[1, 2, "x", 4]]}, headers=HDR)
    assert r.status_code == 400 and "bad box" in r.get_json()["error"]
    assert client.post("/api/apply", json={"path": "bad.png", "manual": [[0, 0, 9, 9]]}, headers=HDR).status_code == 409
    assert client.post("/api/approve", json={"path": "nope.png"}, headers=HDR).status_code == 404
    r = client.post("/api/approve", json={"path": "astro.png", "approved": "no"}, headers=HDR)
    assert r.status_code == 400 and "true or false" in r.get_json()["error"]  # bool("no") approved it
    assert client.get("/api/apply", headers=HDR).status_code == 405


def test_approve_and_resume_after_restart(env, base):
    rs, client, src, out = env
    box = [10.0, 10.0, 60.0, 60.0]
    assert client.post("/api/apply", json={"path": "sub/noise.png", "manual": [box]}, headers=HDR).status_code == 200
    r = client.post("/api/approve", json={"path": "leak.png", "approved": True}, headers=HDR)
    assert r.status_code == 200 and r.get_json()["approved"] is True
    assert client.get("/api/items", headers=HDR).get_json()["summary"]["flagged_remaining"] == 1
    # restart: a new ReviewSet on the same folders
    rs2 = ReviewSet(out, src, CF, ReviewSettings(second=("yunet",)), base[2])
    data = rs2.listing()
    items = {i["path"]: i for i in data["items"]}
    assert items["leak.png"]["approved"] and items["sub/noise.png"]["manual"] == [box]
    assert data["summary"]["flagged_remaining"] == 1 and data["summary"]["approved"] == 1
    assert data["last"] == "leak.png"
    client2 = create_app(rs2, "other").test_client()
    assert client2.post("/api/approve", json={"path": "leak.png", "approved": False},
                        headers={"X-Faceveil-Token": "other"}).get_json()["approved"] is False


def test_thumbnails_are_kept_in_memory_and_nothing_of_the_originals_is_copied(env, tmp_path):
    rs, client, src, out = env
    before_out = set(_digest(out))
    for rel in ["astro.png", "leak.png", "sub/noise.png"]:
        r = client.get(f"/thumb/{rel}", headers=HDR)
        assert r.status_code == 200 and r.mimetype == "image/jpeg"
        assert max(Image.open(__import__("io").BytesIO(r.data)).size) <= 320
        client.get(f"/img/orig/{rel}", headers=HDR)
    assert client.get("/thumb/bad.png", headers=HDR).status_code == 404  # no output, and never a thumb of an original
    client.post("/api/approve", json={"path": "astro.png"}, headers=HDR)
    assert set(_digest(out)) - before_out == {".faceveil/review.json"}
    # An audit (stop 53): a thumbnail cached on disk kept an output's missed face after Apply hid it, for good.
    # Only the detection cache (boxes) is on disk; no pixels at all, of the outputs or the originals.
    assert {p.name for p in rs.cache_dir.iterdir()} <= {"analysis.json"}
    originals = {hashlib.sha1(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}
    assert not originals & {hashlib.sha1(p.read_bytes()).hexdigest() for p in rs.cache_dir.rglob("*") if p.is_file()}


def test_a_thumbnail_is_made_again_after_apply_and_none_outlives_it(env):
    rs, client, src, out = env
    before = client.get("/thumb/leak.png", headers=HDR).data
    item = client.get("/api/items", headers=HDR).get_json()
    version = next(i for i in item["items"] if i["path"] == "leak.png").get("version") or ""
    r = client.post("/api/apply", json={"path": "leak.png", "version": version, "manual": [[0, 0, 60, 60]]},
                    headers=HDR)
    assert r.status_code == 200, r.data
    assert client.get("/thumb/leak.png", headers=HDR).data != before
    assert not list(rs.cache_dir.rglob("*.jpg")) and not any(before == data for _, data in rs._thumbs.values())


def test_default_cache_dir_is_outside_out(base, monkeypatch, tmp_path):
    from faceveil.review.store import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = default_cache_dir(base[1])
    assert d.parent == tmp_path / "xdg" / "faceveil" / "review"


def test_cli_usage(base, tmp_path, capsys):
    src, out, _ = base
    assert main(["review", str(tmp_path / "nope"), "--originals", str(src), "-q"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["review", str(out), "--originals", str(out), "-q"]) == 2
    assert "same folder" in capsys.readouterr().err
    assert main(["review", str(out), "--originals", str(src), "--second", "nonesuch", "-q"]) == 2
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2")


def _ctrl_c(server, *a, **k):
    raise KeyboardInterrupt  # a server stopped at once


def test_bad_flag_numbers_address_or_port_are_one_line_usage_errors(base, capsys, monkeypatch):
    """Before: --near nan turned every near/small flag off, --near -1 and --small-face -5 were taken; a port in use
    or a host not of this machine printed werkzeug's lines and exited 1."""
    import socket

    from socketserver import BaseServer

    monkeypatch.setattr(BaseServer, "serve_forever", _ctrl_c)
    src, out, cache = base
    common = ["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second", "none"]
    for bad in (["--near", "nan"], ["--near", "-1"], ["--near", "1.5"], ["--small-face", "-5"]):
        with pytest.raises(SystemExit) as e:
            main(common + bad)
        assert e.value.code == 2, bad
        assert bad[0] in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        for extra in (["--port", str(port)], ["--host", "300.1.1.1"]):
            assert main(common + extra) == 2, extra
            err = capsys.readouterr().err
            assert err.startswith("faceveil: error: cannot listen on ") and err.count("\n") == 1, err


def test_a_cache_dir_that_cannot_be_made_is_one_line_usage_error(base, tmp_path, capsys):
    """--cache-dir naming a file (or a folder under one) ended in a FileExistsError traceback, exit 1."""
    src, out, _ = base
    (tmp_path / "afile").write_bytes(b"x")
    for cache, why in ((tmp_path / "afile", "a file is there"), (tmp_path / "afile" / "sub", "Not a directory")):
        code = main(["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second", "none"])
        err = capsys.readouterr().err
        assert (code, err) == (2, f"faceveil: error: {cache}: cannot make the cache folder ({why})\n")


def test_a_second_review_of_the_same_out_is_refused(base, tmp_path, monkeypatch, capsys):
    """Before, a second server on one OUT saved its own review.json over the first one's (approvals, boxes lost)."""
    from socketserver import BaseServer

    src, pristine, cache = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    common = ["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second", "none"]
    second = {}

    def serve(self, *a, **k):  # the first server is up: start a second one on the same OUT
        second["rc"] = main(common)
        second["err"] = capsys.readouterr().err
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", serve)
    assert main(common) == 130
    assert second["rc"] == 2 and "another `faceveil review` is serving this folder" in second["err"]
    monkeypatch.setattr(BaseServer, "serve_forever", _ctrl_c)
    assert main(common) == 130, "the first one's lock ends with it"


def test_open_keeps_the_token_off_the_browsers_command_line(base, tmp_path, monkeypatch, capsys):
    """Before, --open gave the browser the tokenised URL (its command line, visible in ps to every local user).
    Now it opens a private local file that redirects to it, removed when the review stops."""
    import stat
    import webbrowser
    from socketserver import BaseServer

    src, pristine, cache = base
    opened = []

    def look(self, *a, **k):
        page = Path(opened[0].removeprefix("file://"))
        opened.append((stat.S_IMODE(page.stat().st_mode), page.read_text(), page))
        raise KeyboardInterrupt

    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    monkeypatch.setattr(BaseServer, "serve_forever", look)
    assert main(["review", str(pristine), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second",
                 "none", "--open"]) == 130
    token = capsys.readouterr().out.strip().split("token=")[1]
    mode, text, page = opened[1]
    assert opened[0].startswith("file://") and token not in opened[0]
    assert mode == 0o600 and f"token={token}" in text and not page.exists()


def test_open_without_a_browser_says_to_open_the_url_by_hand(base, monkeypatch, capsys):
    """Before, --open where no browser can be started (no display, no BROWSER: webbrowser.open returns False)
    said nothing: the page just never came. Now one line says so, with the URL to open by hand."""
    import webbrowser
    from socketserver import BaseServer

    src, pristine, cache = base
    left = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: left.append(Path(url.removeprefix("file://"))))
    monkeypatch.setattr(BaseServer, "serve_forever", _ctrl_c)
    assert main(["review", str(pristine), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second",
                 "none", "--open"]) == 130
    cap = capsys.readouterr()
    url = cap.out.strip()
    assert url.startswith("http://127.0.0.1:") and "token=" in url
    assert [line for line in cap.err.splitlines() if "browser" in line] == [
        f"faceveil: warning: --open: no browser could be started here; open {url} by hand"]
    assert not left[0].exists()  # the redirecting page holds the token: not left behind


def test_config_from_an_anonymize_report(tmp_path):
    import argparse

    from faceveil.cli import build_parser

    report = tmp_path / "report.json"
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(src / "a.png")
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "-m", "pixelate", "-p", "cells=6",
                 "--mask-scale", "1.5", "--seed", "7", "-t", "0.3", "--report", str(report)]) == 0
    args = build_parser().parse_args(["review", "o", "--originals", "i", "--from-report", str(report)])
    cfg = config_from_args(args)
    assert (cfg.method, cfg.method_params["cells"], cfg.region["mask_scale"], cfg.seed) == ("pixelate", 6, 1.5, 7)
    assert cfg.detector_params["threshold"] == 0.3
    args = build_parser().parse_args(["review", "o", "--originals", "i", "--from-report", str(report), "-m", "blur"])
    assert config_from_args(args).method_params == {}
    assert isinstance(args, argparse.Namespace)


def test_cli_prints_a_url_with_a_token_and_warns_off_loopback(base, monkeypatch, capsys):
    """The real command up to serving: the server is stopped at once, as by Ctrl-C."""
    from socketserver import BaseServer

    src, out, cache = base
    seen = {}

    def fake_serve(self, *a, **k):
        seen["port"] = self.port
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", fake_serve)
    assert main(["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "-q",
                 "--second", "none"]) == 130  # stopped as by Ctrl-C
    captured = capsys.readouterr()
    url = captured.out.strip()
    assert url.startswith(f"http://127.0.0.1:{seen['port']}/?token=") and len(url.split("token=")[1]) >= 32
    assert "warning" not in captured.err
    assert main(["review", str(out), "--originals", str(src), "--cache-dir", str(cache), "-q", "--second", "none",
                 "--host", "0.0.0.0"]) == 130
    captured = capsys.readouterr()
    assert "warning: listening on 0.0.0.0" in captured.err
    assert captured.out.split("token=")[1] != url.split("token=")[1], "a new token per run"


def test_apply_without_edits_reproduces_a_seeded_random_method(base, tmp_path):
    """Apply seeds each file as the batch does, so an Apply with no edits rewrites the same pixels."""
    src, _, _ = base
    out = tmp_path / "out"
    only = tmp_path / "in"
    only.mkdir()
    shutil.copy2(src / "astro.png", only / "astro.png")
    assert main(["anonymize", str(only), "-o", str(out), "-q", "-m", "noise", "--seed", "4", "-d", "centerface"]) == 0
    before = _read(out / "astro.png")
    rs = ReviewSet(out, only, AnonymizerConfig(method="noise", seed=4, detector="centerface"), ReviewSettings(second=("none",)),
                   tmp_path / "cache")
    rs.apply("astro.png", [], [])
    assert (_read(out / "astro.png") == before).all()
    # What the run hid is kept as it was; a new box is drawn with the seeded noise of this file.
    box = [400.0, 400.0, 480.0, 480.0]
    pristine = (out / "astro.png").read_bytes()
    rs.apply("astro.png", [box], [])
    seed4 = _read(out / "astro.png")
    (out / "astro.png").write_bytes(pristine)
    rs2 = ReviewSet(out, only, AnonymizerConfig(method="noise", seed=5, detector="centerface"), ReviewSettings(second=("none",)),
                    tmp_path / "cache2")
    rs2.apply("astro.png", [box], [])
    after = _read(out / "astro.png")
    assert (after[400:480, 400:480] != seed4[400:480, 400:480]).any(), "another seed gives other noise"
    moved = (after != before).any(axis=2)
    moved[400:480, 400:480] = False
    # every pixel the run changed stays as the run wrote it (elsewhere only pixels still equal to the original may move)
    assert not (moved & (before != _read(only / "astro.png")).any(axis=2)).any()


def test_a_reencoded_but_untouched_face_is_flagged_in_jpeg_outputs(tmp_path, astronaut):
    """JPEG outputs differ from the original everywhere; the check compares against the original
    re-encoded with the output's own tables, so an untouched face is still caught (any quality)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "ok.jpg", quality=90)
    Image.fromarray(astronaut[:, ::-1].copy()).save(src / "leak.jpg", quality=90)
    assert main(["anonymize", str(src), "-o", str(out), "-q"]) == 0
    Image.open(src / "leak.jpg").save(out / "leak.jpg", quality=70)  # another tool, nothing hidden
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache")
    items = {i["path"]: i for i in rs.listing()["items"]}
    assert items["ok.jpg"]["flags"] == []
    assert [f["kind"] for f in items["leak.jpg"]["flags"]] == ["unhidden"]


def test_background_checking_and_cached_restart(base, tmp_path):
    src, pristine, _ = base
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    cache = tmp_path / "cache"
    rs = ReviewSet(out, src, CF, ReviewSettings(second=("none",)), cache, background=True)
    data = rs.listing()
    assert data["summary"]["checking"] == 4 and not any(i["checked"] for i in data["items"])
    rs.start_checking()
    rs.wait(120)
    data = rs.listing()
    assert data["summary"]["checking"] == 0 and data["items"][0]["path"] in ("bad.png", "leak.png")
    assert data["summary"]["flagged_remaining"] == 2
    # a restart with nothing changed has every result at once, from the cache
    rs2 = ReviewSet(out, src, CF, ReviewSettings(second=("none",)), cache, background=True)
    assert rs2.checking == 0 and rs2.listing()["summary"]["flagged_remaining"] == 2
    # an output changed since then is checked again
    shutil.copy2(src / "astro.png", out / "astro.png")
    rs3 = ReviewSet(out, src, CF, ReviewSettings(second=("none",)), cache, background=True)
    assert rs3.checking == 1


def _review_cli(args: list[str], monkeypatch, capsys, drive) -> None:
    """`faceveil review ARGS` for real up to serving; ``drive(client, token)`` then uses its page, and it stops."""
    import time
    from socketserver import BaseServer

    def serve(self, *a, **k):
        token = capsys.readouterr().out.strip().split("token=")[1]
        client = self.app.test_client(use_cookies=False)
        for _ in range(600):  # the background check done: the flags are all there
            if client.get("/api/items", headers={"X-Faceveil-Token": token}).get_json()["summary"]["checking"] == 0:
                break
            time.sleep(0.1)
        drive(client, {"X-Faceveil-Token": token})
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseServer, "serve_forever", serve)
    assert main(["review", *args, "-q", "--second", "none"]) == 130


def test_outputs_pair_with_the_inputs_the_report_names_and_an_unproven_pair_is_refused(tmp_path, astronaut,
                                                                                        monkeypatch, capsys):
    """Files from two folders go side by side into OUT: out/b.png is in/sub/b.png's output, not in/b.png's (another
    photo of the same size, never given to the run). Before, the review paired out/b.png with in/b.png: an Apply
    re-anonymized the wrong photo (the box stayed as it was, the face visible; pixels of the other photo copied
    in) and listed sub/b.png as failed, whose Apply wrote a second copy out/sub/b.png."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "r.json"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "a.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(src / "sub" / "b.png")  # the face elsewhere
    Image.fromarray(astronaut).save(src / "b.png")
    assert main(["anonymize", str(src / "a.png"), str(src / "sub" / "b.png"), "-o", str(out), "-q",
                 "-d", "centerface", "--report", str(report)]) == 0
    before = _read(out / "b.png")
    box = [20.0, 300.0, 200.0, 480.0]  # no face there: blurred now only by the Apply
    right = _read(src / "sub" / "b.png")
    common = [str(out), "--originals", str(src), "--cache-dir", str(tmp_path / "cache")]

    def without_report(client, hdr):  # nothing proves in/b.png is out/b.png's original: flagged, Apply refused
        item = next(i for i in client.get("/api/items", headers=hdr).get_json()["items"] if i["path"] == "b.png")
        assert any(f["kind"] == "pair" for f in item["flags"]), item["flags"]
        r = client.post("/api/apply", json={"path": "b.png", "manual": [box], "removed": []}, headers=hdr)
        assert r.status_code == 409 and "not this output's original" in r.get_json()["error"]
        a = next(i for i in client.get("/api/items", headers=hdr).get_json()["items"] if i["path"] == "a.png")
        assert not any(f["kind"] == "pair" for f in a["flags"]), "a.png is its own original: proven by its pixels"

    _review_cli(common + ["-d", "centerface"], monkeypatch, capsys, without_report)
    assert (_read(out / "b.png") == before).all()

    def with_report(client, hdr):
        items = {i["path"]: i for i in client.get("/api/items", headers=hdr).get_json()["items"]}
        assert sorted(items) == ["a.png", "b.png"], "sub/b.png went to out/b.png: not a failed file of its own"
        assert items["b.png"]["flags"] == [] and items["b.png"]["has_original"]
        assert client.post("/api/apply", json={"path": "b.png", "manual": [box], "removed": []},
                           headers=hdr).status_code == 200
        assert client.post("/api/apply", json={"path": "sub/b.png", "manual": [box], "removed": []},
                           headers=hdr).status_code == 404

    _review_cli(common + ["--from-report", str(report)], monkeypatch, capsys, with_report)
    after = _read(out / "b.png")
    mask = Compositor(RegionParams(**json.loads(report.read_text())["region"])).mask(
        Detections.from_boxes([box]), after.shape) > 0
    changed = (after != before).any(axis=2)
    assert not (changed & ~mask).any(), "nothing outside the new box changed (no pixel of another photo)"
    x1, y1, x2, y2 = (int(v) for v in box)
    inner = (slice(y1 + 20, y2 - 20), slice(x1 + 20, x2 - 20))
    assert np.abs(after[inner].astype(int) - right[inner]).mean() > 10, "the box is hidden"
    assert np.abs(after[inner].astype(int) - before[inner]).mean() > 10
    assert not (out / "sub").exists(), "no second copy"

    doc = json.loads(report.read_text())  # the report's input is not the one in IN now (changed since the run)
    good = doc["files"][1]["input_sha256"]
    doc["files"][1]["input_sha256"] = "0" * 64
    report.write_text(json.dumps(doc))
    _review_cli(common + ["--from-report", str(report)], monkeypatch, capsys, without_report)

    # Round 2: the report proves the original, not that OUT still holds this run's output. Another run replaced
    # out/b.png (here with another photo, its face visible): it was listed clean (no flag) and Apply allowed.
    doc["files"][1]["input_sha256"] = good
    report.write_text(json.dumps(doc))
    Image.fromarray(astronaut).save(out / "b.png")

    def replaced(client, hdr):
        item = next(i for i in client.get("/api/items", headers=hdr).get_json()["items"] if i["path"] == "b.png")
        assert any(f["kind"] == "pair" for f in item["flags"]), item["flags"]
        r = client.post("/api/apply", json={"path": "b.png", "manual": [box], "removed": []}, headers=hdr)
        assert r.status_code == 409, r.get_json()

    _review_cli(common + ["--from-report", str(report)], monkeypatch, capsys, replaced)


def test_an_output_name_that_is_not_utf8_is_listed_served_and_applied(tmp_path, astronaut):
    """A file name with a byte that is not UTF-8 (caf\\xe9.png from a Latin-1 system) was listed with a lone
    surrogate in its path: the page's encodeURIComponent threw on it and no card at all was drawn. Now the review
    names it caf\\xe9.png (written out), and that name opens, thumbnails and applies to the real file."""
    import os
    from urllib.parse import quote

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    bad = os.fsdecode(b"caf\xe9.png")
    rng = np.random.default_rng(2)
    for name in (bad, "x1.png", "x2.png"):
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(src / name)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-d", "centerface"]) == 0
    rs = ReviewSet(out, src, CF, ReviewSettings(second=("none",)), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    listing = client.get("/api/items", headers=HDR)
    paths = [i["path"] for i in listing.get_json()["items"]]
    assert sorted(paths) == ["caf\\xe9.png", "x1.png", "x2.png"]
    listing.data.decode("ascii")  # \uXXXX escapes of valid characters only: no lone surrogate for the page
    name = quote("caf\\xe9.png")
    assert client.get(f"/img/out/{name}", headers=HDR).data == (out / bad).read_bytes()
    assert client.get(f"/img/orig/{name}", headers=HDR).data == (src / bad).read_bytes()
    assert client.get(f"/thumb/{name}", headers=HDR).status_code == 200
    before = _read(out / bad)
    r = client.post("/api/apply", json={"path": "caf\\xe9.png", "manual": [[20, 20, 80, 80]], "removed": []},
                    headers=HDR)
    assert r.status_code == 200, r.data
    assert (_read(out / bad) != before).any() and sorted(os.listdir(out)) == [".faceveil", bad, "x1.png", "x2.png"]


@pytest.fixture(scope="module")
def replace_run(tmp_path_factory):
    """A facemask photo (15 faces, 4 of them weak: scores 0.10-0.16) anonymized with `-m replace --report`:
    (IN, the pristine OUT, the report, the photo's name)."""
    from conftest import shared_path

    photo = shared_path("facemask", "images", "maksssksksss1.jpg")
    root = tmp_path_factory.mktemp("replace_run")
    only, out, report = root / "in", root / "out", root / "report.json"
    only.mkdir()
    shutil.copy2(photo, only / photo.name)
    assert main(["anonymize", str(only), "-o", str(out), "-q", "-m", "replace", "--report", str(report)]) == 0
    return only, out, report, photo.name


def _replace_review(replace_run, tmp_path):
    """A review of a copy of the replace run's OUT, started from its report."""
    from faceveil.review.runs import load_run_record

    only, pristine, report, name = replace_run
    out = tmp_path / "out"
    shutil.copytree(pristine, out)
    run = load_run_record(json.loads(report.read_text()), report, out, only)
    return ReviewSet(out, only, AnonymizerConfig(method="replace"), ReviewSettings(second=("none",)),
                     tmp_path / "cache", run=run), out, name


def test_apply_without_edits_redraws_replace_as_the_run_drew_it(replace_run, tmp_path):
    """Apply redrew the run's regions from plain boxes, with a new detection's landmarks and no score: replace
    drew a new face where the run had drawn its weak-detection blur, and its part past the run's changes showed
    beside the run's pixels (a face fragment, up to 175 grey levels off on a facemask photo). It takes the run's
    own detections from the report now (scores, landmarks): an Apply without edits rewrites the run's pixels up to
    the report's rounding of landmarks (0.01 px) and the JPEG's."""
    rs, out, name = _replace_review(replace_run, tmp_path)
    before = _read(out / name).astype(int)
    rs.apply(name, [], [])
    assert np.abs(_read(out / name).astype(int) - before).max() <= 12


def test_the_method_comparison_shows_replace_as_a_run_draws_it(replace_run, tmp_path):
    """The review's method comparison drew replace on plain boxes: faces fitted to boxes (and on the weak ones),
    not what `-m replace` writes (12,481 pixels of the facemask photo more than 30 grey levels off the run's
    output). With the run's detections: its own JPEG's noise (32 such pixels)."""
    import io

    rs, out, name = _replace_review(replace_run, tmp_path)
    shown = np.asarray(Image.open(io.BytesIO(rs.compare(name, "replace")))).astype(int)
    assert (np.abs(shown - _read(out / name).astype(int)).max(axis=2) > 30).sum() < 300
