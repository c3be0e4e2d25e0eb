"""Keep who agreed, hide everyone else (issue 23): --keep-people, --keep-region, --only-region."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path
from faceveil.detections import Detections
from faceveil.errors import UsageError
from faceveil.people import THRESHOLD, KeepPolicy, People, Region, face_groups, match

DLIB = "face descriptors need dlib (pip install 'faceveil[eval]')"


def _faceveil(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "faceveil", *args], capture_output=True, text=True, cwd=cwd)


# --- regions (synthetic boxes, fast) ---------------------------------------------------------------

def _dets(*boxes):
    return Detections.from_boxes(np.asarray(boxes, np.float32))


def test_region_parse_pixels_fractions_and_time():
    r = Region.parse("10,20,30,40")
    assert not r.fractions and r.box(1000, 1000) == (10, 20, 40, 60)
    f = Region.parse("0.5,0,0.5,1.0@2-4.5")
    assert f.fractions and f.box(200, 100) == (100, 0, 200, 100)
    assert (f.t0, f.t1) == (2, 4.5) and f.active(3) and not f.active(5) and not f.active(1)
    assert not f.active(None) and r.active(None)  # an image has no time: only an untimed region applies
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,10", "0.5,0.5,0.6,0.2", "1,2,3,4@5-1", "-1,0,10,10"):
        with pytest.raises(UsageError):
            Region.parse(bad)
    # a region of the right form says what is wrong with it (all said "expected x,y,w,h ...", as if misspelt)
    for bad, why in (("0.5,0,0.6,1.0", "as fractions of the frame it reaches past its edge (x + w = 1.1, y + h = 1; "
                                       "at most 1)"),
                     ("0,0,0,10", "width and height must be above 0"),
                     ("1,2,3,4@5-1", "it ends at 1 s, before it starts at 5 s")):
        with pytest.raises(UsageError) as exc:
            Region.parse(bad)
        assert str(exc.value) == f"bad region {bad!r}: {why}"


def test_keep_region_by_centre_and_only_region_straddling_is_hidden():
    img = np.zeros((200, 200, 3), np.uint8)
    dets = _dets([10, 10, 50, 50], [80, 80, 120, 120], [150, 150, 190, 190])
    # keep-region 0..100: the first box's centre is inside, the second's (100,100) on the border
    # counts as inside, the third is outside
    hide, kept = KeepPolicy(keep_regions=(Region.parse("0,0,100,100"),)).decide(img, dets)
    assert [k["by"] for k in kept] == ["keep-region", "keep-region"]
    assert hide.xyxy.tolist() == [[150, 150, 190, 190]]
    # only-region 0..100: a box that touches it at all is hidden (the straddling one too)
    hide, kept = KeepPolicy(only_regions=(Region.parse("0,0,100,100"),)).decide(img, dets)
    assert hide.xyxy.tolist() == [[10, 10, 50, 50], [80, 80, 120, 120]]
    assert [k["by"] for k in kept] == ["outside-only-region"]
    # outside the only-region's time range nothing is restricted: every face is hidden (safe side)
    policy = KeepPolicy(only_regions=(Region.parse("0,0,100,100@0-5"),))
    assert len(policy.decide(img, dets, t=10)[0]) == 3
    assert len(policy.decide(img, dets, t=2)[0]) == 2


def test_keep_region_pixels_byte_identical_hidden_changed():
    from faceveil.pipeline import Anonymizer

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300, 3), np.uint8)
    dets = _dets([20, 20, 80, 80], [200, 100, 260, 160])
    anon = Anonymizer(load_detector=False, keep=KeepPolicy(keep_regions=(Region.parse("0,0,0.5,0.5"),)))
    hide, kept = anon.split(img, dets)
    out = anon.anonymize(img, hide)
    assert kept[0]["box"] == [20, 20, 80, 80]
    assert np.array_equal(out[:100, :150], img[:100, :150])  # the kept face and around it
    assert not np.array_equal(out[100:160, 200:260], img[100:160, 200:260])


def test_one_face_found_twice_is_one_decision():
    dets = _dets([100, 100, 200, 200], [90, 95, 215, 220], [400, 100, 450, 150])
    assert sorted(map(sorted, face_groups(dets))) == [[0, 1], [2]]


def test_match_needs_threshold_and_margin():
    assert match(np.array([0.30, 0.80])) == (0, pytest.approx(0.30))
    assert match(np.array([THRESHOLD + 0.01, 0.9])) is None
    assert match(np.array([0.30, 0.32])) is None  # two people nearly as close: undecided, hidden
    assert match(np.array([np.nan, np.nan])) is None


@pytest.mark.parametrize("name", ["threshold", "margin"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "0.4"])
def test_keep_policy_refuses_a_threshold_or_margin_that_is_not_a_finite_number(name, value):
    """From the Python API KeepPolicy took NaN/inf unchecked: threshold inf kept any face, NaN kept nobody, margin
    NaN dropped the second-best check, and a dataset's manifest recorded the bare token NaN (not JSON). Now refused
    when the policy is made, in one line naming the parameter; finite values are taken as before."""
    people = People(["a"], np.zeros((1, 128), np.float32), np.zeros(1, np.int64))
    with pytest.raises(UsageError, match=f"^bad value {name}=.*expected a finite number$"):
        KeepPolicy(people, **{name: value})
    assert getattr(KeepPolicy(people, **{name: np.float32(0.25)}), name) == 0.25


def test_keep_policy_refuses_a_negative_margin():
    """A margin under 0 switched the second-best check off: a face at 0.30 of one enrolled person and 0.31 of another
    was kept (as the first), where the default margin hides it as undecided. Refused in one line; 0 is taken."""
    people = People(["a", "b"], np.zeros((2, 128), np.float32), np.arange(2))
    with pytest.raises(UsageError, match=r"^bad value margin=-0\.01 for the keep policy: expected 0 or more$"):
        KeepPolicy(people, margin=-0.01)
    assert KeepPolicy(people, margin=0).margin == 0
    assert KeepPolicy(people, threshold=-1.0).threshold == -1.0  # keeps nobody: the safe side, taken


# --- real photos (deepface-unit: img1, img2, img4... are one person; couple.jpg holds her and a man) ---

@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    pytest.importorskip("dlib", reason=DLIB)
    src = shared_path("deepface-unit", "img2.jpg")
    consent = tmp_path_factory.mktemp("consent")
    (consent / "alice").mkdir()
    shutil.copy(src, consent / "alice" / "img2.jpg")
    people = People.build(consent)
    return consent, people


@pytest.mark.slow
def test_people_file_round_trip_and_damaged(gallery, tmp_path):
    _, people = gallery
    assert people.names == ["alice"] and people.descriptors.shape == (1, 128)
    people.save(tmp_path / "p.npz")
    back = People.load(tmp_path / "p.npz")
    assert back.names == ["alice"] and np.array_equal(back.descriptors, people.descriptors)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError):
        People.load(tmp_path / "bad.npz")


@pytest.mark.slow
def test_consenting_kept_stranger_hidden_real_photo(gallery, tmp_path):
    """couple.jpg: the consenting woman is kept byte for byte, the man is anonymized as without --keep."""
    from faceveil.io.images import read_rgb
    from faceveil.pipeline import Anonymizer

    consent, people = gallery
    src = shared_path("deepface-unit", "couple.jpg")
    rep = tmp_path / "r.json"
    r = _faceveil("anonymize", str(src), "-o", str(tmp_path / "out"), "--keep-people", str(consent),
                  "--report", str(rep), "-q")
    assert r.returncode == 0, r.stderr
    files = json.loads(rep.read_text())["files"]
    kept, hidden = files[0]["kept"], files[0]["detections"]
    assert len(kept) == 1 and kept[0]["name"] == "alice" and kept[0]["distance"] < THRESHOLD
    assert len(hidden) >= 1
    img = read_rgb(src)
    out = read_rgb(tmp_path / "out" / "couple.jpg")  # JPEG: compare against the same run without keep
    plain = Anonymizer()
    dets = plain.detect(img)
    hide, k2 = Anonymizer(keep=people, load_detector=False).split(img, dets)
    assert len(k2) == 1
    mine = Anonymizer(load_detector=False).anonymize(img, hide, plain.rng_for("couple.jpg"))
    x1, y1, x2, y2 = (int(v) for v in kept[0]["box"])
    assert np.array_equal(mine[y1:y2, x1:x2], img[y1:y2, x1:x2])  # kept: byte-identical
    everything = plain.anonymize(img, dets, plain.rng_for("couple.jpg"))
    hx1, hy1, hx2, hy2 = (int(v) for v in hide.xyxy[0])
    assert np.array_equal(mine[hy1:hy2, hx1:hx2], everything[hy1:hy2, hx1:hx2])  # hidden as before
    assert np.abs(mine[hy1:hy2, hx1:hx2].astype(int) - img[hy1:hy2, hx1:hx2]).mean() > 3
    assert np.abs(out.astype(int) - mine).mean() < 2  # the CLI wrote that image (JPEG re-encoded)


@pytest.mark.slow
def test_strangers_never_kept_real_photos(gallery):
    """Other people of deepface-unit (img38 group, img3 group, img17) are never kept as alice."""
    from faceveil.io.images import read_rgb
    from faceveil.pipeline import Anonymizer

    _, people = gallery
    anon = Anonymizer(keep=people)
    for name in ("img38.jpg", "img3.jpg", "img17.jpg"):
        img = read_rgb(shared_path("deepface-unit", name))
        dets = anon.detect(img)
        assert len(dets) >= 1
        hide, kept = anon.split(img, dets)
        assert kept == [] and len(hide) == len(dets), name


def test_stranger_who_resembles_nobody_is_never_kept():
    """A gallery far from everything: no face is kept, whatever its descriptor."""
    rng = np.random.default_rng(1)
    people = People(["far"], np.full((1, 128), 5.0, np.float32), np.zeros(1, np.int64))
    probes = rng.normal(0, 0.1, (500, 128)).astype(np.float32)
    assert all(match(row) is None for row in people.distances(probes))


@pytest.mark.slow
def test_small_face_of_consenting_person_is_never_kept(gallery):
    """Too small to describe reliably: hidden even though it is alice."""
    import cv2

    from faceveil.io.images import read_rgb
    from faceveil.pipeline import Anonymizer

    _, people = gallery
    img = read_rgb(shared_path("deepface-unit", "img2.jpg"))
    small = cv2.resize(img, (img.shape[1] // 14, img.shape[0] // 14), interpolation=cv2.INTER_AREA)
    anon = Anonymizer(keep=people)
    dets = anon.detect(small)
    assert len(dets) >= 1 and dets.widths.max() < 40
    hide, kept = anon.split(small, dets)
    assert kept == [] and len(hide) == len(dets)


# --- bad usage: one line, exit 2 -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--keep-people", "missing_folder/"], ["--keep-region", "1,2,3"],
                                  ["--only-region", "0.5,0.5,0.9,0.1"], ["--keep-people", "empty/"]])
def test_bad_keep_usage_exits_2_with_one_line(tmp_path, args):
    (tmp_path / "empty").mkdir()
    img = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    r = _faceveil("anonymize", str(img), "-o", str(tmp_path / "out"), *args, "-q", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceveil: error: "), r.stderr
    assert not (tmp_path / "out").exists()


def test_a_damaged_people_file_is_refused_before_any_work(tmp_path):
    """A name without descriptor rows passed loading, then every file failed ("zero-size array"), after the dataset
    output was made; other malformed arrays passed too. Each is refused in one line, exit 2, before any work."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 128)).astype(np.float32)
    rows *= 1.4 / np.linalg.norm(rows, axis=1, keepdims=True)  # dlib's length
    good = dict(descriptors=rows, person=np.array([0, 0, 1]), names=np.array(["alice", "bob"]), version=np.asarray(1))
    np.savez(tmp_path / "good.npz", **good)
    assert People.load(tmp_path / "good.npz").names == ["alice", "bob"]
    bad = {"no rows of a name": dict(names=np.array(["alice", "bob", "ghost"])),
           "transposed": dict(descriptors=rows.T.copy()), "zero": dict(descriptors=np.zeros_like(rows)),
           "not dlib's length": dict(descriptors=rows / 1.4 * 0.1), "float person": dict(person=np.array([0., 0, 1])),
           "version 2": dict(version=np.asarray(2)), "no version": dict(version=None),
           "same name twice": dict(names=np.array(["alice", "alice"]))}
    for why, change in bad.items():
        arrays = {k: v for k, v in {**good, **change}.items() if v is not None}
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(UsageError, match="damaged people file"):
            People.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad.npz", **{**good, **bad["no rows of a name"]})
    (tmp_path / "ds").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "ds" / "a.png")
    (tmp_path / "gt.txt").write_text("a.png\n0\n")
    r = _faceveil("dataset", "anonymize", "--format", "wider", "--images", str(tmp_path / "ds"), "--labels",
                  str(tmp_path / "gt.txt"), "-o", str(tmp_path / "out"), "--keep-people", str(tmp_path / "bad.npz"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no descriptor of ghost" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_people_build_empty_folder_exits_2(tmp_path):
    (tmp_path / "consent").mkdir()
    r = _faceveil("people", "build", str(tmp_path / "consent"), "-o", str(tmp_path / "p.npz"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no photos" in r.stderr
    assert not (tmp_path / "p.npz").exists()


def test_an_empty_person_folder_beside_others_is_an_error(gallery, tmp_path):
    """bob/ with no photo was dropped without a word when alice/ had some: the consent list was cut short."""
    from faceveil.errors import UsageError

    consent = tmp_path / "consent"
    shutil.copytree(gallery[0], consent)
    (consent / "bob").mkdir()
    (consent / "bob" / "notes.txt").write_text("photos to come")
    with pytest.raises(UsageError, match="bob: no photos of bob"):
        People.build(consent)


# --- video: one decision per track -----------------------------------------------------------------

def test_track_decision_is_all_or_nothing():
    from faceveil.io.video import VideoFrame
    from faceveil.video.keep import decide_track, split_frame
    from faceveil.video.tracking import TrackedFrame

    people = People(["a", "b"], np.zeros((2, 128), np.float32), np.array([0, 1]))
    policy = KeepPolicy(people)
    good = np.array([[0.30, 0.90]] * 5)
    assert decide_track(good, policy) == (0, pytest.approx(0.30))
    assert decide_track(good[:2], policy) is None  # too few frames described: hidden
    mixed = np.vstack([good, [[0.90, 0.30]]])  # one frame matches b: the track is hidden whole
    assert decide_track(mixed, policy) is None
    far = np.vstack([good[:2], [[0.6, 0.9]] * 5])  # most frames undecided: median too far
    assert decide_track(far, policy) is None
    # a kept track loses every box of it (detected, held, back-filled) on every frame; others stay
    img = np.zeros((100, 100, 3), np.uint8)
    dets = Detections(np.array([[0, 0, 20, 20], [50, 50, 70, 70]], np.float32), np.ones(2, np.float32),
                      np.full((2, 5, 2), np.nan, np.float32), np.array([7, 8]), "track",
                      np.array(["held", "detected"]))
    log = []
    kept = {7: {"track": 7, "name": "a", "spans": [[0, 3]]}}
    out = split_frame(TrackedFrame(VideoFrame(img, 3, None, 0.1), dets, None), kept, policy, log)
    assert out.detections.track_id.tolist() == [8]
    assert log[0]["kept"][0]["name"] == "a"


@pytest.fixture(scope="module")
def speaker_clip(tmp_path_factory):
    """The first 30 frames of the talking-head clip at half size, and a reference photo cut from frame 10."""
    av = pytest.importorskip("av")
    from PIL import Image

    src = shared_path("videos", "talking_head_speech_844.mp4")
    d = tmp_path_factory.mktemp("clip")
    (d / "consent" / "speaker").mkdir(parents=True)
    with av.open(str(src)) as inp, av.open(str(d / "clip.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 422, 422, "yuv420p"
        for i, f in enumerate(inp.decode(video=0)):
            if i == 30:
                break
            rgb = f.to_ndarray(format="rgb24")
            if i == 10:
                Image.fromarray(rgb).save(d / "consent" / "speaker" / "frame10.png")
            small = np.asarray(Image.fromarray(rgb).resize((422, 422)))
            for p in s.encode(av.VideoFrame.from_ndarray(small, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return d


@pytest.mark.slow
def test_video_track_kept_whole_and_stranger_hidden_in_every_frame(speaker_clip, tmp_path):
    pytest.importorskip("dlib", reason=DLIB)
    from faceveil.pipeline import Anonymizer
    from faceveil.video import process_video

    people = People.build(speaker_clip / "consent")
    res = process_video(Anonymizer(keep=people, preset="fast"), speaker_clip / "clip.mp4", tmp_path / "kept.mp4",
                        progress=False, record=False)
    assert res.status == "written", res.error
    (k,) = res.kept  # the speaker's track, kept on every frame (first, last, count)
    assert k["name"] == "speaker" and k["distance"] < THRESHOLD and k["frames"] == [0, 29, 30] and res.frames == 30
    # the same face against a gallery of someone else: the track is hidden on every frame
    other = People(["nobody"], people.descriptors + 0.2, np.zeros(1, np.int64))
    res2 = process_video(Anonymizer(keep=other, preset="fast"), speaker_clip / "clip.mp4", tmp_path / "hidden.mp4",
                         progress=False, record=False)
    # the track record names the kept track, and the review does not call the kept face a leak
    from faceveil.detect import get_detector
    from faceveil.review import videos

    out = tmp_path / "rec"
    out.mkdir()
    res3 = process_video(Anonymizer(keep=people, preset="fast"), speaker_clip / "clip.mp4", out / "kept.mp4",
                         progress=False)
    assert res3.kept == res.kept
    a = videos.analyse(speaker_clip / "clip.mp4", out / "kept.mp4", [("yunet", get_detector("yunet"))], 0.3, out)
    assert a["kept"][0]["name"] == "speaker" and a["samples"] and a["second"] == []
    kinds = [f["kind"] for f in videos.flags(a)]
    assert "kept" in kinds and "second" not in kinds
    # control: the same output without the record's kept part shows the speaker as a face left unchanged
    from faceveil.video.record import tracks_path

    text = tracks_path(out / "kept.mp4").read_text()
    rec = json.loads(text)
    del rec["kept"]
    tracks_path(out / "kept.mp4").write_text(json.dumps(rec))
    a2 = videos.analyse(speaker_clip / "clip.mp4", out / "kept.mp4", [("yunet", get_detector("yunet"))], 0.3, out)
    assert a2["second"] and "kept" not in [f["kind"] for f in videos.flags(a2)]
    tracks_path(out / "kept.mp4").write_text(text)
    # the review's Apply redoes the run: the kept track stays kept; a manual box range over it hides it
    from faceveil.io.video import read_frames
    from faceveil.video.record import read_record

    def frame15(p):
        return next(f.rgb for f in read_frames(p) if f.index == 15).astype(int)

    box = [int(v) for v in read_record(out / "kept.mp4", out)["kept"]["frames"]["15"][0]]
    face = (slice(box[1], box[3]), slice(box[0], box[2]))
    orig15 = frame15(speaker_clip / "clip.mp4")
    record = read_record(out / "kept.mp4", out)
    videos.apply(speaker_clip / "clip.mp4", out / "kept.mp4", record, [])
    assert np.abs(frame15(out / "kept.mp4")[face] - orig15[face]).mean() < 3  # still kept (re-encoded)
    assert read_record(out / "kept.mp4", out)["kept"]["tracks"][0]["frames"] == [0, 29, 30]
    videos.apply(speaker_clip / "clip.mp4", out / "kept.mp4", read_record(out / "kept.mp4", out),
                 [{"box": box, "from": 0, "to": 29}])
    assert np.abs(frame15(out / "kept.mp4")[face] - orig15[face]).mean() > 8  # flipped to hidden
    assert res2.status == "written" and res2.kept == []
    assert res2.faces - res.faces == 30  # every frame's speaker box hidden (other boxes as before)


@pytest.mark.slow
def test_a_video_replaced_between_the_two_passes_is_never_written_with_the_first_passes_boxes(
        speaker_clip, tmp_path, monkeypatch):
    """An audit: another video moved over the input between --keep-people's passes had its frames written with the
    first file's boxes (78 faces left visible, exit 0). Every pass reads the one open file, and the job fails when
    the path no longer holds it."""
    pytest.importorskip("dlib", reason=DLIB)
    import av

    from faceveil.pipeline import Anonymizer
    from faceveil.video import keep, process_video

    other = tmp_path / "other.mp4"  # the same clip, its face moved a third of the frame across
    with av.open(str(speaker_clip / "clip.mp4")) as inp, av.open(str(other), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 422, 422, "yuv420p"
        for f in inp.decode(video=0):
            moved = np.roll(f.to_ndarray(format="rgb24"), 140, axis=1)
            out.mux(s.encode(av.VideoFrame.from_ndarray(moved, format="rgb24")))
        out.mux(s.encode())
    people = People.build(speaker_clip / "consent")
    nobody = People(["nobody"], people.descriptors + 0.2, np.zeros(1, np.int64))
    plan = keep.plan_tracks

    def run(name, swap):
        src = tmp_path / name / "in.mp4"
        src.parent.mkdir()
        shutil.copy(speaker_clip / "clip.mp4", src)
        shutil.copy(other, tmp_path / name / "other.mp4")

        def plan_then_swap(*a):
            done = plan(*a)
            if swap:
                (tmp_path / name / "other.mp4").replace(src)
            return done

        monkeypatch.setattr(keep, "plan_tracks", plan_then_swap)
        return process_video(Anonymizer(keep=nobody, preset="fast"), src, tmp_path / name / "out.mp4",
                             progress=False, record=False)

    clean = run("clean", False)
    swapped = run("swapped", True)
    assert swapped.status == "failed" and swapped.error.endswith("in.mp4: changed while being read (replaced or "
                                                                 "written to)")
    assert not (tmp_path / "swapped" / "out.mp4").exists()
    from faceveil.io.video import VideoSource

    monkeypatch.setattr(VideoSource, "check", lambda self: None)  # and what was read is the open file, every pass
    unchecked = run("unchecked", True)
    assert clean.status == unchecked.status == "written" and clean.faces >= 30
    assert (tmp_path / "unchecked" / "out.mp4").read_bytes() == (tmp_path / "clean" / "out.mp4").read_bytes()


# --- the review page: kept faces named, flipped to hidden by a click, Apply re-renders ----------------

def test_review_shows_kept_face_and_apply_hides_it_on_flip(tmp_path, astronaut):
    pytest.importorskip("flask")
    from PIL import Image

    from faceveil.cli import main
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings
    from faceveil.review.runs import load_run_record

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    rep = tmp_path / "r.json"
    # the astronaut's face is in the upper middle of the 512x512 image: keep it by region
    assert main(["anonymize", str(src), "-o", str(out), "--keep-region", "0.2,0,0.6,0.5", "--report", str(rep),
                 "-q"]) == 0
    doc = json.loads(rep.read_text())
    (k,) = doc["files"][0]["kept"]
    assert k["by"] == "keep-region" and doc["keep"]["keep_regions"] == ["0.2,0,0.6,0.5"]
    x1, y1, x2, y2 = (int(v) for v in k["box"])
    assert np.array_equal(np.asarray(Image.open(out / "a.png"))[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])
    run = load_run_record(doc, rep, out, src)
    rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=("none",)), tmp_path / "cache", run=run)
    item = rs.item_json(rs.items["a.png"])
    assert [f["kind"] for f in item["flags"]] == ["kept"] and "keep-region" in item["flags"][0]["text"]
    assert item["suggestions"][0]["kept"]["by"] == "keep-region"
    # Apply with no edit: the kept face stays as it is
    rs.apply("a.png", [], [])
    assert np.array_equal(np.asarray(Image.open(out / "a.png"))[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])
    # flip to hidden: the page sends the kept box as a manual box; Apply hides it
    rs.apply("a.png", [k["box"]], [])
    after = np.asarray(Image.open(out / "a.png")).astype(int)
    assert np.abs(after[y1:y2, x1:x2] - astronaut[y1:y2, x1:x2]).mean() > 3


def test_people_build_writes_only_an_npz(tmp_path):
    """Round 2: `people build consent -o people.jpg` wrote a zip named .jpg (exit 0), `-o notes.txt --overwrite`
    replaced a text file with one; bank build already asked for .npz. Refused before any work, in one line."""
    (tmp_path / "consent" / "ann").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    for name, extra in (("people.jpg", []), ("notes.txt", ["--overwrite"])):
        r = _faceveil("people", "build", str(tmp_path / "consent"), "-o", str(tmp_path / name), *extra)
        assert r.returncode == 2 and r.stderr.strip() == (f"faceveil: error: {tmp_path / name}: a people file is an "
                                                          ".npz file; give a name ending in .npz"), r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "people.jpg").exists()
