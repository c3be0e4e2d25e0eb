"""The consent audit's defects: a stranger is never kept on the strength of a consenting face beside him."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path
from faceveil.detections import Detections
from faceveil.errors import UsageError
from faceveil.people import KeepPolicy, People, Region, face_groups

DLIB = "face descriptors need dlib (pip install 'faceveil[eval]')"


def _faceveil(*args):
    return subprocess.run([sys.executable, "-m", "faceveil", *args], capture_output=True, text=True)


def _rgb(path):
    from faceveil.io.images import read_rgb

    return read_rgb(path)


def test_a_small_face_over_a_larger_ones_shoulder_is_a_face_of_its_own():
    # the audit's boxes: a 56 px head whose centre lies inside a consenting face's 185 px box
    dets = Detections.from_boxes(np.asarray([[147, 141, 205, 219], [170, 177, 356, 414],
                                             [175, 180, 352, 410], [230, 250, 330, 380]], np.float32))
    # the two large boxes and the part of the face are one face found three times; the head is not
    assert sorted(map(sorted, face_groups(dets))) == [[0], [1, 2, 3]]


def test_a_box_of_one_face_that_matches_nobody_hides_the_face():
    """Boxes of one face: kept only when every box that could be described matched the same person."""
    img = np.zeros((300, 300, 3), np.uint8)
    dets = Detections.from_boxes(np.asarray([[100, 100, 200, 200], [90, 95, 215, 220]], np.float32))
    policy = KeepPolicy(People(["a"], np.zeros((1, 128), np.float32), np.zeros(1, np.int64)))
    near, far = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # distances 0 and 1.13 to a
    policy.describe_faces = lambda image, d: (np.stack([near, far])[:len(d)], [None] * len(d))
    hide, kept = policy.decide(img, dets)
    assert kept == [] and len(hide) == 2
    undescribable = np.full(128, np.nan, np.float32)  # the other box could not be described: one face, kept
    policy.describe_faces = lambda image, d: (np.stack([near, undescribable])[:len(d)], [None, "profile"][:len(d)])
    hide, kept = policy.decide(img, dets)
    assert len(hide) == 0 and [k["name"] for k in kept] == ["a", "a"]


@pytest.fixture(scope="module")
def gore(tmp_path_factory):
    """consent/alice = three photos of Al Gore; a photo of Gore with David Beckham's head (~56 px) over his
    shoulder (the audit's in2/c0.png)."""
    pytest.importorskip("dlib", reason=DLIB)
    import cv2

    lfw = shared_path("lfw")
    d = tmp_path_factory.mktemp("gore")
    (d / "consent" / "alice").mkdir(parents=True)
    for i in (1, 2, 3):
        shutil.copy(lfw / "Al_Gore" / f"Al_Gore_000{i}.jpg", d / "consent" / "alice")
    g = cv2.imread(str(lfw / "Al_Gore" / "Al_Gore_0004.jpg"))
    s = cv2.imread(str(lfw / "David_Beckham" / "David_Beckham_0001.jpg"))
    can = cv2.resize(g, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    face = cv2.resize(s[60:210, 55:195], (84, 90), interpolation=cv2.INTER_AREA)
    can[130:220, 133:217] = face
    (d / "in").mkdir()
    cv2.imwrite(str(d / "in" / "c0.png"), can)
    return d


@pytest.mark.slow
def test_stranger_over_a_consenting_shoulder_is_hidden(gore, tmp_path):
    rep = tmp_path / "r.json"
    r = _faceveil("anonymize", str(gore / "in"), "-o", str(tmp_path / "out"), "--keep-people",
                  str(gore / "consent"), "--report", str(rep), "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(rep.read_text())
    (f,) = doc["files"]
    (kept,) = f["kept"]  # Gore only
    # faces counted as hidden are the hidden ones (it said "2 faces" with one of them kept)
    assert "1 of 1 files anonymized (1 face) -> " in r.stderr and "; 1 kept as they are" in r.stderr, r.stderr
    assert doc["summary"]["faces"] == 2 and doc["summary"]["kept"] == 1
    assert kept["name"] == "alice" and kept["box"][2] - kept["box"][0] > 150
    (hidden,) = f["detections"]  # Beckham's head: hidden
    x1, y1, x2, y2 = (int(v) for v in hidden["box"])
    assert 130 <= (y1 + y2) / 2 <= 220 and 133 <= (x1 + x2) / 2 <= 217
    img, out = _rgb(gore / "in" / "c0.png"), _rgb(tmp_path / "out" / "c0.png")
    assert np.abs(out[140:210, 143:207].astype(int) - img[140:210, 143:207]).mean() > 5
    kx1, ky1, kx2, ky2 = (int(v) for v in kept["box"])
    # Gore's face below the head's blur (its region reaches ~1.25x the head box): as the input has it
    below = y2 + (y2 - y1) // 2
    assert np.array_equal(out[below:ky2, kx1:kx2], img[below:ky2, kx1:kx2])


# --- video: a kept track is kept only on frames whose face is the consenting person -------------------------

def test_a_track_is_kept_only_until_a_frame_matches_nobody():
    from faceveil.video.keep import keep_span

    policy = KeepPolicy(People(["a"], np.zeros((1, 128), np.float32), np.zeros(1, np.int64)))
    detected = list(range(0, 80, 2))  # detected on every other frame, each detection described
    good, stranger = np.array([0.2]), np.array([0.86])
    rows = [(f, good if f < 40 else stranger) for f in detected]
    (p, _, n), span = keep_span(rows, detected, policy)
    assert (p, n) == (0, 20) and span == [0, 38]  # hidden from the first detection that matched nobody
    assert keep_span(rows[:20], detected[:20], policy)[1] == [0, 38]  # matched to its last detection
    assert keep_span([(f, stranger) for f, _ in rows], detected, policy) is None
    # a detection not described (between two samples) or not describable ends the keep: its face is unknown
    sampled = [(f, r) for f, r in rows if f % 10 == 0]
    assert keep_span(sampled, detected, policy) is None  # kept on frame 0 alone: too few frames
    blurred = [(f, np.array([np.nan]) if f == 20 else r) for f, r in rows]
    assert keep_span(blurred, detected, policy)[1] == [0, 18]


def _clip(path, frames):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 640, 360, "yuv420p", {"crf": "12"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _frames(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.slow
def test_a_kept_track_does_not_carry_over_a_cut_or_a_swap(gore, tmp_path, each_frame_detected_once):
    """Al Gore (consenting) for 40 frames, then George W. Bush: after a hard cut (full frame), and in the same
    place on the same background (no cut): Bush is hidden on every frame of his. Each clip shows two still pictures:
    a decoded frame that repeats one before it byte for byte is not detected again (each_frame_detected_once)."""
    import cv2

    lfw = shared_path("lfw")
    from faceveil.pipeline import Anonymizer
    from faceveil.video import process_video

    def photo(name, size):
        im = cv2.cvtColor(cv2.imread(str(lfw / name.rsplit("_", 1)[0] / f"{name}.jpg")), cv2.COLOR_BGR2RGB)
        return cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)

    people = People.build(gore / "consent")
    a, b = photo("Al_Gore_0001", 360), photo("George_W_Bush_0001", 360)
    shots = [np.full((360, 640, 3), 60, np.uint8) for _ in range(2)]
    shots[0][:, 140:500], shots[1][:, 140:500] = a, b
    _clip(tmp_path / "cut.mp4", [shots[i >= 40] for i in range(52)])
    a, b = photo("Al_Gore_0001", 200), photo("George_W_Bush_0001", 200)
    swap = [np.full((360, 640, 3), 90, np.uint8) for _ in range(2)]
    swap[0][80:280, 220:420], swap[1][80:280, 220:420] = a, b
    _clip(tmp_path / "swap.mp4", [swap[i >= 40] for i in range(52)])
    for name, face in (("cut", np.s_[60:300, 200:440]), ("swap", np.s_[110:250, 250:390])):
        res = process_video(Anonymizer(keep=people), tmp_path / f"{name}.mp4", tmp_path / f"o_{name}.mp4",
                            progress=False, record=False)
        assert res.status == "written", res.error
        (k,) = res.kept
        assert k["name"] == "alice" and k["frames"][0] == 0 and 30 <= k["frames"][1] <= 39, (name, k)
        src, out = _frames(tmp_path / f"{name}.mp4"), _frames(tmp_path / f"o_{name}.mp4")
        assert len(out) == 52
        for i in range(40, 52):  # Bush: anonymized on every frame
            assert np.abs(out[i][face].astype(int) - src[i][face]).mean() > 8, (name, i)
        assert np.abs(out[5][face].astype(int) - src[5][face]).mean() < 3  # Gore: as the input has him


@pytest.mark.slow
@pytest.mark.parametrize("every,swap", [(2, (12, 18)), (4, (21, 39))])
def test_a_stranger_in_the_kept_faces_place_between_two_checks_is_hidden(gore, tmp_path, every, swap):
    """The audit's swap: Al Gore on every frame but Al Sharpton in the same place on a few frames between two of
    the track's sampled checks (every 10th frame): the track was kept whole, Sharpton's frames unchanged."""
    from PIL import Image

    from faceveil.pipeline import Anonymizer
    from faceveil.video import VideoOptions, process_video

    lfw = shared_path("lfw")
    a, b = (np.asarray(Image.open(lfw / n.rsplit("_", 1)[0] / f"{n}.jpg").convert("RGB"))
            for n in ("Al_Gore_0004", "Al_Sharpton_0001"))
    frames = []
    for i in range(48):
        f = np.full((360, 640, 3), 110, np.uint8)
        f[:, :100] = 60
        f[55:305, 195 + i % 3 - 1:445 + i % 3 - 1] = b if swap[0] <= i <= swap[1] else a
        frames.append(f)
    _clip(tmp_path / "swap.mp4", frames)
    res = process_video(Anonymizer(keep=People.build(gore / "consent")), tmp_path / "swap.mp4",
                        tmp_path / "out.mp4", VideoOptions(detect_every=every), progress=False, record=False)
    assert res.status == "written", res.error
    (k,) = res.kept
    assert k["name"] == "alice" and k["frames"][0] == 0 and k["frames"][1] < swap[0], k
    src, out = _frames(tmp_path / "swap.mp4"), _frames(tmp_path / "out.mp4")
    face = np.s_[110:250, 250:390]
    for i in range(swap[0], swap[1] + 1):  # Sharpton: anonymized on every frame of his
        assert np.abs(out[i][face].astype(int) - src[i][face]).mean() > 8, i
    assert np.abs(out[2][face].astype(int) - src[2][face]).mean() < 3  # Gore before the swap: as the input has him


# --- people build never replaces a file unasked ----------------------------------------------------------------

def test_people_build_refuses_an_output_in_the_consent_folder_or_an_existing_file(tmp_path):
    consent = tmp_path / "consent" / "alice"
    consent.mkdir(parents=True)
    photo = consent / "a.jpg"
    photo.write_bytes(b"my consent photo")
    old = tmp_path / "people.npz"
    old.write_bytes(b"an earlier gallery")
    for out in (photo, consent / "people.npz", old):
        r = _faceveil("people", "build", str(tmp_path / "consent"), "-o", str(out))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (out, r.stderr)
    r = _faceveil("people", "build", str(tmp_path / "consent"), "-o", str(photo), "--overwrite")
    assert r.returncode == 2 and "inside" in r.stderr
    assert photo.read_bytes() == b"my consent photo" and old.read_bytes() == b"an earlier gallery"
    assert not (consent / "people.npz").exists()
    # --overwrite replaces an earlier file (the photo is no face: the build itself then fails, exit 2, file kept)
    r = _faceveil("people", "build", str(tmp_path / "consent"), "-o", str(old), "--overwrite")
    assert r.returncode == 2 and "exists" not in r.stderr and old.read_bytes() == b"an earlier gallery"


def test_people_build_says_what_to_give_for_a_folder_given_as_file_or_the_reverse(tmp_path, capsys):
    """Round 5: `-o outdir` (a folder) said "exists; give another name ..., or --overwrite to replace it", and with
    --overwrite "a people file is an .npz file"; `-o new/` the latter; a people.npz or a photo given as DIR said "no
    such folder", as if it were not there; a photo given to --keep-people "not a people file (ValueError)". Each is
    one line now saying what to give instead, exit 2, nothing written."""
    from faceveil.cli import main

    (tmp_path / "consent" / "ann").mkdir(parents=True)
    photo = tmp_path / "consent" / "ann" / "a.jpg"
    photo.write_bytes(b"a photo")
    folder, npz = tmp_path / "outdir", tmp_path / "people.npz"
    folder.mkdir()
    npz.write_bytes(b"a gallery")
    for out, extra in ((str(folder), []), (str(folder), ["--overwrite"]), (f"{tmp_path / 'new'}/", [])):
        assert main(["people", "build", str(tmp_path / "consent"), "-o", out, *extra]) == 2
        assert capsys.readouterr().err == (f"faceveil: error: {out}: a folder; the people file is one .npz file: give "
                                           f"its name, as in -o {folder if out == str(folder) else tmp_path / 'new'}"
                                           "/people.npz\n")
    assert list(folder.iterdir()) == [] and not (tmp_path / "new").exists()
    for given, what, tail in ((npz, "a people file", "; a people file is read by `anonymize --keep-people`"),
                              (photo, "a photo", "")):
        assert main(["people", "build", str(given), "-o", str(tmp_path / "p.npz")]) == 2
        assert capsys.readouterr().err == (f"faceveil: error: {given}: {what}, not a folder: give the folder of "
                                           f"consenting people, one folder per person (consent/<name>/*.jpg){tail}\n")
    assert not (tmp_path / "p.npz").exists()
    with pytest.raises(UsageError, match=r"a\.jpg: a photo, not a people file: give the folder of consenting people, "
                                         r"one folder per person \(consent/<name>/\*\.jpg\), or a people\.npz"):
        People.open(photo)


def test_people_build_names_a_folder_it_cannot_read_in_one_line(tmp_path, capsys, monkeypatch):
    """A consent folder, or a person's folder in it, that cannot be read (chmod 000) was a traceback: now one line
    naming it, exit 2 before any photo is described (that person would be hidden like a stranger)."""
    from conftest import unreadable_folders
    from faceveil.cli import main

    (tmp_path / "consent" / "alice").mkdir(parents=True)
    (tmp_path / "consent" / "alice" / "a.jpg").write_bytes(b"not read: the listing fails first")
    (tmp_path / "consent" / "locked").mkdir()
    unreadable_folders(monkeypatch, "locked")
    out = tmp_path / "people.npz"
    for folder, named in ((tmp_path / "consent", tmp_path / "consent" / "locked"),
                          (tmp_path / "consent" / "locked", tmp_path / "consent" / "locked")):
        assert main(["people", "build", str(folder), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"faceveil: error: {named}: cannot read the folder (Permission denied)\n", err
    assert not out.exists()


def test_a_timed_keep_region_keeps_nobody_in_a_photo():
    from faceveil.pipeline import Anonymizer

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300, 3), np.uint8)
    dets = Detections.from_boxes(np.asarray([[20, 20, 80, 80]], np.float32))
    for region, kept in (("0,0,300,200@0-10", 0), ("0,0,300,200", 1)):
        anon = Anonymizer(load_detector=False, keep=KeepPolicy(keep_regions=(Region.parse(region),)))
        hide, k = anon.split(img, dets)
        out = anon.anonymize(img, hide)
        assert len(k) == kept and len(hide) == 1 - kept
        assert np.array_equal(out[20:80, 20:80], img[20:80, 20:80]) == bool(kept)


def test_a_timed_region_on_photos_is_said(tmp_path, astronaut):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "in" / "a.png")
    r = _faceveil("anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--keep-region",
                  "0,0,1.0,1.0@100-200")
    assert r.returncode == 0 and "warning: regions with a time window (@t0-t1) apply to videos only" in r.stderr


def test_a_skipped_consent_photo_is_named_once(tmp_path):
    """The gallery's message for an unreadable photo said its path twice ("a.jpg: a.jpg: not an image")."""
    pytest.importorskip("dlib", reason=DLIB)
    (tmp_path / "alice").mkdir()
    shutil.copy(shared_path("lfw", "Al_Gore", "Al_Gore_0001.jpg"), tmp_path / "alice" / "good.jpg")
    (tmp_path / "alice" / "bad.jpg").write_bytes(b"not a photo")
    (line,) = People.build(tmp_path).skipped
    assert line.startswith(str(tmp_path / "alice" / "bad.jpg") + ": ") and line.count("bad.jpg") == 1, line


def test_a_person_of_one_photo_without_a_usable_face_is_named_by_the_photo(tmp_path):
    """DIR/<name>.jpg without a usable face was named "DIR/<name>: no usable photo", a path that is not there."""
    pytest.importorskip("dlib", reason=DLIB)
    from PIL import Image

    (tmp_path / "alice").mkdir()
    shutil.copy(shared_path("lfw", "Al_Gore", "Al_Gore_0001.jpg"), tmp_path / "alice" / "good.jpg")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "bob.png")
    with pytest.raises(UsageError, match="^" + re.escape(f"{tmp_path / 'bob.png'}: no usable photo of bob (no face")):
        People.build(tmp_path)


def _consent_folder(tmp_path):
    """consent/alice/ with a photo of a face (good.jpg), a broken file (bad.jpg) and a photo with no face (blank.png)."""
    from PIL import Image

    consent = tmp_path / "consent" / "alice"
    consent.mkdir(parents=True)
    shutil.copy(shared_path("lfw", "Al_Gore", "Al_Gore_0001.jpg"), consent / "good.jpg")
    (consent / "bad.jpg").write_bytes(b"not a photo")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(consent / "blank.png")
    return consent


def test_people_build_fails_on_a_consent_photo_it_cannot_read(tmp_path, capsys):
    """An unreadable consent photo was a warning only (exit 0) where `bank build` fails on one (exit 1): the gallery
    is built from the rest, the photo named in an error line, exit 1. A photo without a usable face stays a warning."""
    pytest.importorskip("dlib", reason=DLIB)
    from faceveil.cli import main

    consent = _consent_folder(tmp_path)
    out = tmp_path / "people.npz"
    assert main(["people", "build", str(tmp_path / "consent"), "-o", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"faceveil: error: {consent / 'bad.jpg'}: ") and err[0].endswith(": skipped"), err
    assert err[1] == f"faceveil: warning: {consent / 'blank.png'}: no face found: skipped", err
    assert err[2].startswith("faceveil: 1 people, 1 photos described (2 skipped, 1 could not be read) -> "), err
    assert People.load(out).names == ["alice"]
    (consent / "bad.jpg").unlink()
    assert main(["people", "build", str(tmp_path / "consent"), "-o", str(out), "--overwrite"]) == 0
    assert "error" not in capsys.readouterr().err


def test_a_consent_photo_with_a_face_over_the_subjects_is_skipped(tmp_path):
    """The audit's photobomb: Al Sharpton's head (0.7x the size) over Al Gore's face, centres 111 px apart. The two
    were taken as one face found twice, and the higher-scoring box, Sharpton's, was enrolled as Gore."""
    pytest.importorskip("dlib", reason=DLIB)
    import cv2

    g = _rgb(shared_path("lfw", "Al_Gore", "Al_Gore_0004.jpg"))
    s = _rgb(shared_path("lfw", "Al_Sharpton", "Al_Sharpton_0001.jpg"))[50:245, 60:210]
    img = cv2.resize(g, None, fx=2.2, fy=2.2, interpolation=cv2.INTER_CUBIC)
    s = cv2.resize(s, None, fx=1.2, fy=1.2, interpolation=cv2.INTER_CUBIC)
    (h, w), cx, cy = s.shape[:2], img.shape[1] // 2 + 100, int(img.shape[0] * 0.52) + 90
    img[cy - h // 2:cy - h // 2 + h, cx - w // 2:cx - w // 2 + w] = s
    (tmp_path / "alice").mkdir()
    cv2.imwrite(str(tmp_path / "alice" / "photobomb.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    shutil.copy(shared_path("lfw", "Al_Gore", "Al_Gore_0001.jpg"), tmp_path / "alice" / "good.jpg")
    people = People.build(tmp_path)
    assert len(people.descriptors) == 1, people.skipped  # good.jpg only
    (line,) = people.skipped
    assert line.startswith(str(tmp_path / "alice" / "photobomb.png") + ": another face"), line



def test_a_close_up_consent_photo_found_at_two_scales_is_one_face(tmp_path):
    """A close-up, the face filling the photo (a crop of couple.jpg's left face), is found by the default preset as a
    box inside a larger one (IoU 0.29): people build took the two for two people ('another face at least half the
    size of the largest: whose photo is it?'), so a person with only such photos could not be enrolled at all, and
    deepface's img1.jpg (three boxes of one face) was skipped. The boxes are one face when face_groups joins them
    and dlib describes them as one person (0.04 apart here); the photobomb above is still skipped."""
    pytest.importorskip("dlib", reason=DLIB)
    import cv2

    rgb = _rgb(shared_path("deepface-unit", "couple.jpg"))
    (tmp_path / "consent" / "him").mkdir(parents=True)
    close = cv2.cvtColor(rgb[350:1400, 200:1150], cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(tmp_path / "consent" / "him" / "close.png"), close)
    people = People.build(tmp_path / "consent")
    assert len(people.descriptors) == 1 and people.skipped == [], people.skipped


def test_a_part_of_a_kept_face_boxed_again_is_that_face_not_a_stranger():
    """A box of the group that matched nobody but lies inside the box that matched the person is a part of that
    face (a close-up's eyes and nose boxed again): kept with it. One reaching out of it stays a reason to hide."""
    img = np.zeros((300, 300, 3), np.uint8)
    policy = KeepPolicy(People(["a"], np.zeros((1, 128), np.float32), np.zeros(1, np.int64)))
    near, far = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)  # distances 0 and 1.13 to a
    policy.describe_faces = lambda image, d: (np.stack([near, far])[:len(d)], [None] * len(d))
    part = Detections.from_boxes(np.asarray([[80, 80, 240, 250], [100, 100, 200, 200]], np.float32))
    hide, kept = policy.decide(img, part)
    assert len(hide) == 0 and [k["name"] for k in kept] == ["a", "a"]
    out = Detections.from_boxes(np.asarray([[80, 80, 240, 250], [60, 100, 160, 200]], np.float32))  # 80 % inside
    assert len(face_groups(out)) == 1
    hide, kept = policy.decide(img, out)
    assert kept == [] and len(hide) == 2
    policy.describe_faces = lambda image, d: (np.stack([far, near])[:len(d)], [None] * len(d))
    hide, kept = policy.decide(img, part)  # the inner box matched, the outer one not: the outer is no part
    assert kept == [] and len(hide) == 2


def test_a_close_up_of_a_consenting_person_is_kept(tmp_path):
    """A close-up of a consenting person (a crop of couple.jpg's left face, enrolled from another crop of it) is
    found by the default preset three times: the face, a box inside it, and its eyes and nose (dlib: 0.71 from the
    person, nobody). The part matched nobody, so the whole face was hidden: --keep-people hid the consenting person
    on every selfie-like photo. The part inside the matched box is that face now: the photo is written as it was."""
    pytest.importorskip("dlib", reason=DLIB)
    import cv2

    rgb = _rgb(shared_path("deepface-unit", "couple.jpg"))
    (tmp_path / "consent" / "him").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "consent" / "him" / "close.png"), cv2.cvtColor(rgb[350:1400, 200:1150],
                                                                              cv2.COLOR_RGB2BGR))
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "selfie.png"), cv2.cvtColor(rgb[330:1420, 180:1170], cv2.COLOR_RGB2BGR))
    rep = tmp_path / "r.json"
    r = _faceveil("anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--keep-people",
                  str(tmp_path / "consent"), "--report", str(rep), "-q")
    assert r.returncode == 0, r.stderr
    (f,) = json.loads(rep.read_text())["files"]
    assert len(f["kept"]) == 3 and {k["name"] for k in f["kept"]} == {"him"} and f["detections"] == [], f
    assert np.array_equal(_rgb(tmp_path / "out" / "selfie.png"), _rgb(tmp_path / "in" / "selfie.png"))


def test_a_consent_photo_whose_face_is_boxed_again_inside_is_enrolled(tmp_path):
    """deepface's img39 and img47 (close portraits): the default preset boxes the face and a part of it inside the
    face's box, which dlib puts 0.41 and 0.91 from the face: 'another face at least half the size of the largest:
    whose photo is it?', so neither could be enrolled. A part inside the subject's box is the subject's face."""
    pytest.importorskip("dlib", reason=DLIB)
    for name in ("img39", "img47"):
        (tmp_path / "c" / name).mkdir(parents=True)
        shutil.copy(shared_path("deepface-unit", f"{name}.jpg"), tmp_path / "c" / name)
    people = People.build(tmp_path / "c")
    assert people.names == ["img39", "img47"] and len(people.descriptors) == 2 and people.skipped == []


def test_a_person_whose_photos_are_two_people_is_refused(tmp_path):
    """alice/ held Al Gore and, in a sub-folder, Al Sharpton (0.94 apart): both were enrolled as alice, and
    Sharpton was then kept as her. Two people under one name are refused; a sub-folder is not read, and said."""
    pytest.importorskip("dlib", reason=DLIB)
    from faceveil.errors import UsageError

    (tmp_path / "alice" / "others").mkdir(parents=True)
    shutil.copy(shared_path("lfw", "Al_Gore", "Al_Gore_0001.jpg"), tmp_path / "alice")
    shutil.copy(shared_path("lfw", "Al_Sharpton", "Al_Sharpton_0002.jpg"), tmp_path / "alice" / "others")
    people = People.build(tmp_path)
    assert len(people.descriptors) == 1 and people.skipped == [
        f"{tmp_path / 'alice' / 'others'}: a folder in alice/, not read (photos of alice go in {tmp_path / 'alice'}/ "
        "itself)"]
    shutil.move(tmp_path / "alice" / "others" / "Al_Sharpton_0002.jpg", tmp_path / "alice")
    r = _faceveil("people", "build", str(tmp_path), "-o", str(tmp_path.parent / f"{tmp_path.name}.npz"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "alice: Al_Gore_0001.jpg and Al_Sharpton_0002.jpg are not one person" in r.stderr, r.stderr
    with pytest.raises(UsageError):
        People.build(tmp_path)


def test_two_people_with_two_photos_each_under_one_name_are_refused(tmp_path):
    """Round 2: every photo had a close twin (Gore 1 and 2, Bush 1 and 2), so the folder passed and Bush's third
    photo was kept as "Al_Gore" (distance 0.37). The photos must all be linked by close pairs."""
    pytest.importorskip("dlib", reason=DLIB)
    from faceveil.errors import UsageError

    (tmp_path / "c" / "Al_Gore").mkdir(parents=True)
    for name in ("Al_Gore_0001", "Al_Gore_0002"):
        shutil.copy(shared_path("lfw", "Al_Gore", f"{name}.jpg"), tmp_path / "c" / "Al_Gore")
    for name in ("George_W_Bush_0001", "George_W_Bush_0002"):
        shutil.copy(shared_path("lfw", "George_W_Bush", f"{name}.jpg"), tmp_path / "c" / "Al_Gore")
    with pytest.raises(UsageError, match="are not one person .*no photo between them"):
        People.build(tmp_path / "c")
    for name in ("George_W_Bush_0001", "George_W_Bush_0002"):  # one person's photos pass
        (tmp_path / "c" / "Al_Gore" / f"{name}.jpg").unlink()
    assert len(People.build(tmp_path / "c").descriptors) == 2


def test_anonymize_with_a_consent_folder_names_the_photos_it_skipped_and_stops_on_an_unreadable_one(tmp_path, capsys):
    """`anonymize --keep-people consent/` (and `dataset anonymize`) built the gallery without a word of the photos it
    skipped or could not read. It says them as `people build` does; an unreadable one stops the run before any work
    (exit 2): whoever it shows could be hidden like a stranger. A photo without a usable face stays a warning."""
    pytest.importorskip("dlib", reason=DLIB)
    from PIL import Image

    from faceveil.cli import main

    consent = _consent_folder(tmp_path)
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / "in" / "x.png")
    (tmp_path / "gt.txt").write_text("x.png\n0\n")
    keep = ["--keep-people", str(tmp_path / "consent"), "-q"]
    blank = f"faceveil: warning: {consent / 'blank.png'}: no face found: skipped"
    for argv in (["anonymize", str(tmp_path / "in")],
                 ["dataset", "anonymize", "-f", "wider", "--images", str(tmp_path / "in"), "--labels",
                  str(tmp_path / "gt.txt")]):
        out = tmp_path / "out"
        assert main([*argv, "-o", str(out), *keep]) == 2, argv
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith(f"faceveil: error: {consent / 'bad.jpg'}: ") and err[0].endswith(": skipped"), err
        assert err[1:] == [blank, f"faceveil: error: {tmp_path / 'consent'}: 1 consent photo could not be read "
                                  "(named above): whoever it shows may be hidden like a stranger; nothing anonymized "
                                  "(make it readable, or move it out)"], err
        assert not out.exists(), argv
    (consent / "bad.jpg").unlink()
    assert main(["anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *keep]) == 0
    assert capsys.readouterr().err.splitlines()[0] == blank
