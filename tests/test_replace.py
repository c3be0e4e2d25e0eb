"""Face replacement: a new identity in the original pose, never computed from the original face's pixels."""

import numpy as np
import pytest

from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.anonymize.bank import TEMPLATE, load_bank
from faceveil.detections import Detections
from faceveil.errors import UsageError

pytest.importorskip("dlib")
from faceveil.anonymize.identity import MATCH, Synthesizer, descriptor  # noqa: E402
from conftest import ELLIPSE_13  # noqa: E402

COMP = Compositor(RegionParams(**ELLIPSE_13))


@pytest.fixture(scope="module")
def face(astronaut_faces):
    return astronaut_faces[[int(np.argmax(astronaut_faces.areas))]]


def run(image, dets, seed=0, **params):
    method = get_method("replace", params)
    return method.apply(image, dets, COMP, np.random.default_rng(seed)), method


def test_same_seed_same_output_and_identity_param_fixes_the_face(astronaut, face):
    a, _ = run(astronaut, face, seed=3)
    b, _ = run(astronaut, face, seed=3)
    assert np.array_equal(a, b)
    c, _ = run(astronaut, face, seed=4)
    assert not np.array_equal(a, c)
    d, _ = run(astronaut, face, seed=5, identity=11)
    e, _ = run(astronaut, face, seed=6, identity=11)
    assert np.array_equal(d, e)


def test_different_seeds_give_different_people(astronaut, face):
    box = face.xyxy[0]
    orig = descriptor(astronaut, box)
    descs = []
    for ident in (0, 1, 2):
        out, m = run(astronaut, face, identity=ident)
        assert m.counts["replaced"] == 1
        descs.append(descriptor(out, box))
    for i in range(3):
        assert np.linalg.norm(descs[i] - orig) > MATCH, "the replaced face still matches the original"
        for j in range(i):
            assert np.linalg.norm(descs[i] - descs[j]) > MATCH, f"identities {i} and {j} look like one person"


def test_original_face_pixels_do_not_influence_the_output(astronaut, face):
    x1, y1, x2, y2 = face.xyxy[0]
    sl = np.s_[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))]
    changed = astronaut.copy()
    changed[sl] = np.random.default_rng(0).integers(0, 256, changed[sl].shape, dtype=np.uint8)
    # a box region, replaced whole (shape=region): the output does not change at all. The
    # default face-shaped mask keeps the pixels around the face: tests/test_replace_look.py
    box_comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
    method = get_method("replace", {"shape": "region"})
    out = method.apply(astronaut, face, box_comp, np.random.default_rng(1))
    out2 = method.apply(changed, face, box_comp, np.random.default_rng(1))
    assert np.array_equal(out, out2)
    # the ellipse (ELLIPSE_13) leaves the box's corners to the compositor (kept as they are, for every
    # method); every pixel the region owns is the same
    out, _ = run(astronaut, face, seed=1, shape="region")
    out2, _ = run(changed, face, seed=1, shape="region")
    mask = COMP.mask(face, astronaut.shape) > 0
    assert np.array_equal(out[mask], out2[mask])
    assert np.array_equal(out2[~mask], changed[~mask])
    # ... also when every pixel the region covers changes
    changed[mask] = 255 - changed[mask]
    out3, _ = run(changed, face, seed=1, shape="region")
    assert np.array_equal(out[mask], out3[mask])


def test_appearance_blurred_uses_only_a_4x4_summary(astronaut):
    lm = TEMPLATE[None] * 0.8 + np.array([180, 60], np.float32)  # a face whose box is 4 x (integer) pixels wide
    dets = Detections.from_boxes([[184, 60, 240, 152]], [0.9], lm)
    out, _ = run(astronaut, dets, seed=1, appearance="blurred", shape="region")
    plain, _ = run(astronaut, dets, seed=1, shape="region")
    assert not np.array_equal(out, plain), "the opt-in should change the output"
    # shuffle pixels within each of the 4x4 cells: same summary, same output
    img = astronaut.copy()
    rng = np.random.default_rng(0)
    for cy in range(4):
        for cx in range(4):
            cell = img[60 + cy * 23: 60 + (cy + 1) * 23, 184 + cx * 14: 184 + (cx + 1) * 14]
            flat = cell.reshape(-1, 3)
            cell[...] = flat[rng.permutation(len(flat))].reshape(cell.shape)
    out2, _ = run(img, dets, seed=1, appearance="blurred", shape="region")
    mask = COMP.mask(dets, img.shape) > 0  # the ellipse leaves the box's corners as they are
    assert np.array_equal(out[mask], out2[mask])


@pytest.mark.parametrize("params", [{}, {"harmonizer": "poisson"}, {"paste": "face", "shape": "region"},
                                    {"appearance": "blurred"}, {"shape": "region"}, {"harmonizer": "unet"}])
def test_only_region_pixels_change(astronaut, face, params):
    before = astronaut.copy()
    out, _ = run(astronaut, face, **params)
    assert np.array_equal(astronaut, before), "input must not be modified"
    mask = COMP.mask(face, astronaut.shape)
    changed = (out != astronaut).any(axis=2)
    assert not changed[mask == 0].any()
    # the face-shaped mask (default) leaves the region's edge as it was
    assert changed[mask == 1].mean() > (0.9 if params.get("shape") == "region" else 0.6)


def test_small_faces_profiles_and_missing_landmarks(astronaut, face):
    swapped = face.landmarks[:, [1, 0, 2, 4, 3]]  # eyes swapped: what a mirrored profile looks like
    tiny = Detections.from_boxes([[20, 20, 30, 31]], [0.9], TEMPLATE[None] * 0.1 + 10)
    nolm = Detections.from_boxes(face.xyxy, [0.9])
    dets = Detections.merge([Detections(face.xyxy, face.score, swapped), tiny, nolm])
    out, m = run(astronaut, Detections(dets.xyxy[:1], dets.score[:1], dets.landmarks[:1]))
    assert m.counts == {"blurred": 1}
    for d in (tiny, nolm):
        out, m = run(astronaut, d)
        assert m.counts == {"estimated": 1}  # the mean shape (box_landmarks) since issue 22
        mask = COMP.mask(d, astronaut.shape) == 1
        assert (out != astronaut).any(axis=2)[mask].mean() > 0.9


def test_packaged_bank_holds_only_averages():
    bank = load_bank()
    assert bank.kind == "averages" and len(bank) >= 32
    assert (bank.k >= 3).all()
    for entry, k in zip(bank.donors, bank.k):
        assert len(set(str(entry).split("|"))) == k
    assert bank.faces.shape[1:] == (256, 256, 3) and bank.faces.dtype == np.uint8  # 256 px since issue 22 (sharpness)
    assert "deepface" in bank.source and "lfw" not in bank.source.lower()


def test_bank_build_cli_and_a_donor_bank_in_replace(tmp_path, astronaut, face):
    from PIL import Image

    from faceveil.cli import main

    people = {"ann": astronaut, "bob": astronaut[:, ::-1], "cy": (astronaut * 0.7).astype(np.uint8)}
    for name, img in people.items():
        (tmp_path / "in" / name).mkdir(parents=True)
        Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "in" / name / "a.png")
    Image.fromarray(astronaut).save(tmp_path / "in" / "unlabelled.png")  # no sub-folder: not in a labelled run
    (tmp_path / "in" / "labels.csv").write_text("file,identity\nann/a.png,x\nbob/a.png,y\n")
    assert main(["bank", "build", str(tmp_path / "in"), "-o", str(tmp_path / "b.npz"), "-q"]) == 0
    bank = load_bank(tmp_path / "b.npz")
    assert bank.kind == "donors" and sorted(bank.identity) == ["ann", "bob", "cy", "unlabelled.png#0"]
    assert (bank.k == 1).all() and bank.faces.shape == (4, 128, 128, 3)
    # aligned: the eyes sit where the template says (the astronaut's left eye is darker than her cheek)
    eye = bank.faces[0, 48:53, 44:49].mean()
    cheek = bank.faces[0, 72:77, 36:41].mean()
    assert eye < cheek
    assert main(["bank", "build", str(tmp_path / "in"), "--labels", str(tmp_path / "in" / "labels.csv"),
                 "-o", str(tmp_path / "c.npz"), "-q"]) == 0
    assert sorted(load_bank(tmp_path / "c.npz").identity) == ["x", "y"]
    # a donor bank is averaged on the fly (3 people here: k=3, the check off because they are one person)
    syn = Synthesizer(bank, k=3, reject=False)
    ident = syn.identity(7)
    assert len(set(ident.donors)) == 3
    with pytest.raises(UsageError, match=r"holds 4 people; k=5 needs at least 5: give -p k=4"):
        Synthesizer(bank, k=5)  # the default k: the error said so, not what to give
    out, _ = run(astronaut, face, bank=str(tmp_path / "b.npz"), k=3, reject=False)
    assert (out != astronaut).any()
    assert main(["bank", "build", str(tmp_path / "in"), "-o", str(tmp_path / "d.npz"), "-q", "--k", "2"]) == 2


def test_a_donor_bank_unchecked_by_reject_false_is_a_warning_in_the_cli(tmp_path, astronaut, capsys):
    """With reject=false nothing checks a donors bank's averages against their donors (they are one person here, so
    the checks would redraw forever): anonymize and dataset anonymize say so in one warning line; an averages bank
    (the shipped one) gets none."""
    from PIL import Image

    from faceveil.anonymize.bank import Bank, align
    from faceveil.cli import main
    from faceveil.detect import get_detector

    lm = get_detector("centerface").detect(astronaut).landmarks[0]
    faces = np.stack([align((astronaut * f).astype(np.uint8), lm, 128) for f in (1.0, 0.8, 0.6)])
    ids = np.array(["ann", "bob", "cy"])
    Bank(faces, ids, np.ones(3, np.int32), ids.copy(), "donors").save(tmp_path / "donors.npz")
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    warning = "donors.npz: reject=false averages these donors unchecked"
    bank = ["-m", "replace", "-p", f"bank={tmp_path / 'donors.npz'}", "-p", "k=3", "-p", "reject=false"]
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-q", *bank]) == 0
    err = capsys.readouterr().err
    assert err.count(warning) == 1 and "faceveil: warning: " in err
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out2"), "-q", "-m", "replace"]) == 0
    assert "warning" not in capsys.readouterr().err
    root = tmp_path / "ds" / "images" / "ev0"
    root.mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "img000.png")
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text("ev0/img000.png\n1\n180 60 130 150 0 0 0 0 0 0\n")
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(tmp_path / "ds" / "images"), "--labels",
                 str(gt), "-o", str(tmp_path / "dsout"), "--boxes", "gt", *bank, "-q"]) == 0
    assert capsys.readouterr().err.count(warning) == 1
    # a bad parameter beside a donor bank is one error line, no warning first
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out3"), "-q", *bank[:-4],
                 "-p", "k=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ")
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(tmp_path / "ds" / "images"), "--labels",
                 str(gt), "-o", str(tmp_path / "dsout2"), *bank[:-4], "-p", "k=2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ")



def test_the_unchecked_donors_warning_escapes_the_banks_name(tmp_path, astronaut, capsys):
    """The reject=false warning printed the -p bank= path raw: a bank named 'x\\nfaceveil: ...' printed a line of
    its own. Its control characters are escaped as every message's file names are (errors.one_line)."""
    from PIL import Image

    from faceveil.anonymize.bank import Bank, align
    from faceveil.cli import main
    from faceveil.detect import get_detector

    lm = get_detector("centerface").detect(astronaut).landmarks[0]
    faces = np.stack([align((astronaut * f).astype(np.uint8), lm, 128) for f in (1.0, 0.8, 0.6)])
    ids = np.array(["ann", "bob", "cy"])
    bank = tmp_path / "don\nfaceveil: 1 of 1 files anonymized\x1b[2K.npz"
    Bank(faces, ids, np.ones(3, np.int32), ids.copy(), "donors").save(bank)
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-q", "-m", "replace",
                 "-p", f"bank={bank}", "-p", "k=3", "-p", "reject=false"]) == 0
    err = capsys.readouterr().err
    shown = f"{tmp_path}/don\\nfaceveil: 1 of 1 files anonymized\\x1b[2K.npz"
    lines = err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("faceveil: 1 of 1 files anonymized (1 face) -> "), err
    assert lines[0] == f"faceveil: warning: {shown}: reject=false averages these donors unchecked: a replaced face " \
                       "may look like one of them to a face recogniser (dlib)", err


def test_bad_bank_is_a_usage_error(tmp_path):
    from faceveil.errors import FaceveilError

    bad = tmp_path / "x.npz"
    bad.write_bytes(b"nope")
    with pytest.raises(FaceveilError, match="x.npz"):
        get_method("replace", {"bank": str(bad)})
    with pytest.raises(FaceveilError, match="k"):
        get_method("replace", {"k": "2"})


def test_cli_anonymize_with_replace(tmp_path, astronaut):
    from PIL import Image

    from faceveil.cli import main
    from faceveil.io.images import read_rgb

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", "replace", "-q"]) == 0
    out = read_rgb(tmp_path / "out" / "a.png")
    assert out.shape == astronaut.shape and (out != astronaut).any()


def _donors(astronaut, face, n: int = 6):
    """n "people": the astronaut's aligned face recoloured; dlib's descriptors of them are replaced in the tests."""
    from faceveil.anonymize.bank import Bank, align

    f = align(astronaut, face.landmarks[0], 128)
    rng = np.random.default_rng(0)
    faces = np.stack([np.clip(f * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8) for _ in range(n)])
    ids = np.array([f"p{i}" for i in range(n)])
    return Bank(faces, ids, np.ones(n, np.int32), ids.copy(), "donors")


def test_a_donor_banks_average_placed_near_a_donor_is_redrawn_then_blurred(astronaut, face, monkeypatch):
    """Donors banks (averaged per face) get the placement check at run time: dlib's descriptor of the output at the
    face within MATCH of a photo of one of the average's donors -> the next draw; PLACED_DRAWS matches -> blurred.
    A track keeps what its first face got (its identity never changes mid-track); other faces are each checked."""
    import dataclasses
    import zlib

    from faceveil.anonymize import identity
    from faceveil.anonymize.identity import seed_for

    def own(f):  # every crop its own descriptor: the aligned check passes
        return np.random.default_rng(zlib.crc32(np.ascontiguousarray(f).tobytes())).normal(0, 0.1, 128)

    monkeypatch.setattr(identity, "aligned_descriptor", own)
    bank = _donors(astronaut, face)
    calls = []

    def placed(match_first: int):
        def fake(image, box):  # the first `match_first` placements land on a donor's photo
            calls.append(np.asarray(box))
            if len(calls) <= match_first:
                donor = np.flatnonzero(bank.identity == drawn[-1].donors[0])[0]  # the identity just placed
                return own(bank.faces[donor])
            return np.full(128, 5.0)
        return fake

    drawn = []  # the identities the method asked its synthesizer for, in order

    def method_with(**kw):
        m = get_method("replace", {"identity": 7, "k": 3, **kw})
        m.synth = Synthesizer(bank, k=3, reject=kw.get("reject", True))
        ask = m.synth.identity
        m.synth.identity = lambda *a, **k: drawn.append(ask(*a, **k)) or drawn[-1]
        return m

    method = method_with()
    monkeypatch.setattr(identity, "descriptor", placed(1))
    out = method.apply(astronaut, face, COMP, np.random.default_rng(0))
    assert method.counts["placement_redraws"] == 1 and len(calls) == 2
    # dlib's box from the landmarks, inside the detection box (brows to chin, cheek to cheek)
    b, d = calls[0], face.xyxy[0]
    assert d[0] - 2 <= b[0] < b[2] <= d[2] + 2 and d[1] <= b[1] < b[3] <= d[3] + 2
    # the second draw, exactly: what that seed gives without the check
    expect = method_with(identity=seed_for(7, "placed", 1), reject=False).apply(astronaut, face, COMP,
                                                                                np.random.default_rng(0))
    assert np.array_equal(out, expect)
    first = method_with(reject=False).apply(astronaut, face, COMP, np.random.default_rng(0))
    assert not np.array_equal(out, first)
    # an untracked face is checked every time (a photo's output never depends on the photos before it)
    assert np.array_equal(method.apply(astronaut, face, COMP, np.random.default_rng(0)), first) and len(calls) == 3
    # a track: its first face decides, its next frames keep that draw without dlib
    tracked = dataclasses.replace(face, track_id=np.array([3]))
    calls.clear()
    method = method_with()
    out = method.apply(astronaut, tracked, COMP, np.random.default_rng(0))
    assert len(calls) == 2
    monkeypatch.setattr(identity, "descriptor", placed(99))  # would now reject every draw: not asked
    assert np.array_equal(method.apply(astronaut, tracked, COMP, np.random.default_rng(1)), out) and len(calls) == 2
    # every draw lands on a donor: the face is blurred, nothing of a donor average stays; a track stays blurred
    calls.clear()
    method = method_with()
    blurred = method.apply(astronaut, tracked, COMP, np.random.default_rng(0))
    assert method.counts["placement_blurred"] == 1 and len(calls) == method.PLACED_DRAWS
    assert np.array_equal(method.apply(astronaut, tracked, COMP, np.random.default_rng(0)), blurred)
    assert len(calls) == method.PLACED_DRAWS and method.counts["placement_blurred"] == 2
    region = COMP.regions(face, astronaut.shape)[0]
    assert (blurred[region.slices] != astronaut[region.slices]).mean() > 0.5
    outside = np.ones(astronaut.shape[:2], bool)
    outside[region.slices] = False
    assert np.array_equal(blurred[outside], astronaut[outside])
    # the shipped bank (averages, checked when built) and reject=false run no dlib here
    calls.clear()
    get_method("replace", {}).apply(astronaut, face, COMP, np.random.default_rng(0))
    method_with(reject=False).apply(astronaut, face, COMP, np.random.default_rng(0))
    assert calls == []


# banks and `faceveil bank build`'s options and inputs: refused in one line before any work, bad photos named

def _people_tree(tmp_path, astronaut, broken: bool = False):
    """DIR/<person>/a.png for three people (and a truncated photo of a fourth with ``broken``)."""
    from PIL import Image

    for i, name in enumerate(["ann", "bob", "cy"]):
        (tmp_path / "in" / name).mkdir(parents=True)
        Image.fromarray((astronaut * (1 - 0.15 * i)).astype(np.uint8)).save(tmp_path / "in" / name / "a.png")
    if broken:
        (tmp_path / "in" / "dee").mkdir()
        data = (tmp_path / "in" / "ann" / "a.png").read_bytes()
        (tmp_path / "in" / "dee" / "cut.png").write_bytes(data[: len(data) // 3])
    return tmp_path / "in"


@pytest.fixture
def no_work(monkeypatch):
    """build_bank, the detection, fails the test: what is refused must be refused before it. Records its items."""
    from faceveil.anonymize import bank

    seen = []

    def fake(items, **kw):
        seen.append(list(items))
        raise AssertionError("the detection ran")

    monkeypatch.setattr(bank, "build_bank", fake)
    return seen


def _one_error(capsys, *parts):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: "), err
    for part in parts:
        assert part in err, err


def test_bank_build_output_never_replaces_a_photo_or_a_file_unasked(tmp_path, astronaut, capsys, no_work):
    """-o a photo of DIR turned it into a zip (exit 0); -o keep.txt replaced it; a folder, a path under a file or an
    unwritable place failed with a traceback after all the detection: one line, exit 2, nothing touched now."""
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    photo = folder / "ann" / "a.png"
    (tmp_path / "keep.txt").write_text("mine")
    (tmp_path / "old.npz").write_bytes(b"an older bank")
    (tmp_path / "labels.npz").write_text("file,identity\nann/a.png,x\n")
    before = {p: p.read_bytes() for p in (photo, tmp_path / "keep.txt", tmp_path / "old.npz")}
    build = ["bank", "build", str(folder), "-q", "-o"]
    cases = [(photo, "a.png"), (tmp_path / "keep.txt", ".npz"), (folder / "new.npz", "inside"),
             (folder, "is a folder"), (tmp_path / "keep.txt" / "x.npz", "not a folder"),
             (tmp_path / "old.npz", "--overwrite")]
    for out, why in cases:
        assert main([*build, str(out)]) == 2, out
        _one_error(capsys, str(out), why)
    assert main([*build, str(tmp_path / "labels.npz"), "--labels", str(tmp_path / "labels.npz"), "--overwrite"]) == 2
    _one_error(capsys, "would overwrite an input")
    assert {p: p.read_bytes() for p in before} == before and not (folder / "new.npz").exists()


def test_bank_build_labels_and_folder_problems_are_one_line_before_any_work(tmp_path, astronaut, capsys, no_work):
    """A missing or Latin-1 --labels CSV, or a folder as one, was a traceback; a missing DIR exit 1; line numbers
    left out the header and a blank last line was refused; a UTF-8 BOM made the header an image to read."""
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    build = ["bank", "build", str(folder), "-q", "-o", str(tmp_path / "b.npz"), "--labels"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("file,identity\nann/a.png,Jos\xe9\n".encode("latin-1"))
    bad = tmp_path / "bad.csv"
    bad.write_text("file,identity\nann/a.png,x\n\nbob/a.png\n")
    for labels, why in [(tmp_path / "none.csv", "No such file"), (folder, "Is a directory"),
                        (latin, "line 2: not UTF-8"), (bad, "line 4: expected file,identity")]:
        assert main([*build, str(labels)]) == 2
        _one_error(capsys, str(labels), why)
    assert main(["bank", "build", str(tmp_path / "none"), "-o", str(tmp_path / "b.npz"), "-q"]) == 2
    _one_error(capsys, "none: no such folder")
    good = tmp_path / "good.csv"
    good.write_bytes("\ufefffile,identity\r\nann/a.png,x\r\nbob/a.png,y\r\n\r\n".encode())
    with pytest.raises(AssertionError, match="the detection ran"):
        main([*build, str(good)])
    assert no_work == [[(folder / "ann" / "a.png", "x"), (folder / "bob" / "a.png", "y")]]


def test_bank_build_names_each_photo_it_cannot_read_and_exits_1(tmp_path, astronaut, capsys):
    """A truncated photo, or one the labels name that is not there, was only "unreadable": N in the stats (exit 0):
    each is an error line now, the bank is still written from the rest, and the run exits 1."""
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut, broken=True)
    assert main(["bank", "build", str(folder), "-q", "-o", str(tmp_path / "b.npz")]) == 1
    err = capsys.readouterr().err
    assert f"faceveil: error: {folder / 'dee' / 'cut.png'}: cannot decode image" in err
    assert sorted(load_bank(tmp_path / "b.npz").identity) == ["ann", "bob", "cy"]
    (tmp_path / "l.csv").write_text("file,identity\nann/a.png,x\ngone.png,y\n")
    assert main(["bank", "build", str(folder), "-q", "-o", str(tmp_path / "c.npz"), "--labels",
                 str(tmp_path / "l.csv")]) == 1
    assert f"faceveil: error: {folder / 'gone.png'}: no such file" in capsys.readouterr().err


def test_bank_build_refuses_a_folder_it_cannot_read_before_any_work(tmp_path, astronaut, capsys, monkeypatch,
                                                                    no_work):
    """A sub-folder that cannot be read (chmod 000) was skipped silently, the bank built from the rest (exit 0);
    DIR itself was "no images found"; then the sub-folder was an error line and the bank was built from the rest
    (exit 1), where `people build` refuses such a person's folder (exit 2). Now it is bad usage as there: one line
    naming it, exit 2, before any face is detected, nothing written (an earlier bank kept under --overwrite)."""
    from conftest import unreadable_folders
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    (folder / "ann").rename(folder / "locked")
    unreadable_folders(monkeypatch, "locked")
    (tmp_path / "b.npz").write_bytes(b"an earlier bank")
    (tmp_path / "only" / "locked").mkdir(parents=True)
    (folder / "bob" / "a.png").rename(tmp_path / "only" / "locked" / "a.png")
    for top, named in ((folder, folder / "locked"), (folder / "locked", folder / "locked"),
                       (tmp_path / "only", tmp_path / "only" / "locked")):
        assert main(["bank", "build", str(top), "-q", "-o", str(tmp_path / "b.npz"), "--overwrite"]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {named}: cannot read the folder (Permission denied)\n"
    assert no_work == [] and (tmp_path / "b.npz").read_bytes() == b"an earlier bank"


def test_bank_build_with_labels_refuses_a_folder_it_cannot_enter_before_any_work(tmp_path, astronaut, capsys,
                                                                                 monkeypatch, no_work):
    """--labels naming photos in a folder that cannot be entered (chmod 000): each failed in the build, one error line
    per photo, and the bank was written from the rest without those people (exit 1), where folder mode refuses such a
    folder before any work (exit 2). Now the same: one line naming the folder, exit 2, nothing written."""
    from conftest import unreadable_folders
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    (folder / "ann").rename(folder / "locked")
    labels = tmp_path / "ids.csv"
    labels.write_text("file,identity\nlocked/a.png,ann\nbob/a.png,bob\ncy/a.png,cy\n")
    (tmp_path / "top.csv").write_text("file,identity\na.png,ann\n")
    unreadable_folders(monkeypatch, "locked")
    (tmp_path / "b.npz").write_bytes(b"an earlier bank")
    cases = ((folder, labels, folder / "locked"), (folder / "locked", tmp_path / "top.csv", folder / "locked"))
    for top, csv, named in cases:
        assert main(["bank", "build", str(top), "--labels", str(csv), "-q", "-o", str(tmp_path / "b.npz"),
                     "--overwrite"]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {named}: cannot read the folder (Permission denied); " \
                                          "1 labelled photo in it\n"
    assert no_work == [] and (tmp_path / "b.npz").read_bytes() == b"an earlier bank"


@pytest.mark.parametrize("option", [["--size", "0"], ["--size", "-5"], ["--size", "8"], ["--size", "1000000"],
                                    ["--average", "-1"], ["--min-face", "-10"], ["--average", "2", "--k", "4"],
                                    ["--average", "2"], ["--average", "1000000", "--k", "3"],
                                    ["--placed-distance", "nan"], ["--min-distance", "-1"]])
def test_bank_build_numbers_out_of_range_are_refused_before_any_work(tmp_path, astronaut, capsys, no_work, option):
    """--size 0 stored a zero template, 8 failed every file in replace (OpenCV's flow needs 12 px), 1000000 a
    traceback; --average -1 a traceback; --average 1000000 of 7 people drew 8 million averages of 21 sets."""
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    try:
        code = main(["bank", "build", str(folder), "-q", "-o", str(tmp_path / "b.npz"), *option])
    except SystemExit as exc:  # argparse's refusal
        code = exc.code
    assert code == 2
    _one_error(capsys, option[0] if option[0] != "--average" or option[1] == "-1" else "--k")


def test_bank_build_average_is_lowered_to_the_sets_of_people_found(tmp_path, astronaut, capsys, monkeypatch):
    """Unlabelled photos (each face a person): how many people there are is known after the detection; --average
    over C(people, k) is lowered there, with a warning line."""
    from faceveil.anonymize import bank as bank_module
    from faceveil.cli import bank as bank_cli, main

    folder = _people_tree(tmp_path, astronaut)
    asked = []

    def fake_averages(bank, items, args):
        asked.append(args.average)
        raise AssertionError("stop")

    monkeypatch.setattr(bank_cli, "_averages", fake_averages)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in folder.rglob("*.png"):
        (flat / f"{p.parent.name}.png").write_bytes(p.read_bytes())
    fake_bank = bank_module.Bank(np.zeros((4, 32, 32, 3), np.uint8), np.array(list("abcd")), np.ones(4, np.int32),
                                 np.array(list("abcd")))
    monkeypatch.setattr(bank_module, "build_bank", lambda items, **kw: (fake_bank, {}))
    with pytest.raises(AssertionError, match="stop"):
        main(["bank", "build", str(flat), "-q", "-o", str(tmp_path / "b.npz"), "--average", "50", "--k", "3"])
    assert asked == [4]
    assert "warning: --average 50: 4 people give only 4 different averages of --k 3; drawing 4" in \
        capsys.readouterr().err


def test_an_empty_or_invalid_bank_is_named_in_one_line_before_any_work(tmp_path, astronaut, capsys):
    """An empty bank: `bank info` a traceback, replace a ZeroDivisionError on every file; a bank of kind "weird"
    was "not a NumPy .npz file"; a bank with k=0 entries was refused without its name."""
    from PIL import Image

    from faceveil.anonymize.bank import Bank
    from faceveil.cli import main

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    ids = np.array(["a", "b", "c"])
    Bank(np.zeros((3, 32, 32, 3), np.uint8), ids, np.full(3, 5), ids, "averages").save(tmp_path / "ok.npz")
    ok = dict(np.load(tmp_path / "ok.npz"))
    variants = {"empty": {f: ok[f][:0] for f in ("faces", "identity", "k", "donors", "yaw")},
                "weird": dict(kind=np.array("weird")), "kzero": dict(k=np.zeros(3, np.int32))}
    for name, change in variants.items():
        np.savez_compressed(tmp_path / f"{name}.npz", **{**ok, **change})
    cases = {"empty": "the bank holds no faces", "weird": "not a valid faceveil bank (unknown bank kind 'weird')",
             "kzero": "fewer than 3 people"}
    for name, why in cases.items():
        path = str(tmp_path / f"{name}.npz")
        if name != "kzero":
            assert main(["bank", "info", path]) == 2
            _one_error(capsys, f"{path}: {why}")
        assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / name), "-q", "-m", "replace",
                     "-p", f"bank={path}"]) == 2
        _one_error(capsys, f"{path}: ", why)
        assert not (tmp_path / name).exists()


def test_bank_build_labels_of_the_header_alone_name_the_csv(tmp_path, astronaut, capsys, no_work):
    """A --labels CSV holding its header alone (or nothing) said "DIR: no images found", naming the folder, which
    holds photos: the CSV is what lists none."""
    from faceveil.cli import main

    folder = _people_tree(tmp_path, astronaut)
    for text in ("file,identity\n", ""):
        labels = tmp_path / "ids.csv"
        labels.write_text(text)
        assert main(["bank", "build", str(folder), "-q", "-o", str(tmp_path / "b.npz"), "--labels", str(labels)]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {labels}: no file,identity line in it\n"
    assert not (tmp_path / "b.npz").exists()


def test_a_folder_or_an_incomplete_file_as_a_bank_says_so_in_its_own_words(tmp_path, astronaut, capsys):
    """A folder given as a bank said "ppl: cannot read bank ([Errno 21] Is a directory: 'ppl')" (the path twice, and
    Python's error text); a .npz of faceveil's format lacking an array "cannot read bank ('faces is not a file in the
    archive')"."""
    from PIL import Image

    from faceveil.cli import main

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    (tmp_path / "ppl").mkdir()
    np.savez(tmp_path / "part.npz", format=np.array("faceveil-bank/1"))
    for path, why in [(tmp_path / "ppl", "a folder, not a bank file (.npz: `faceveil bank build` writes one)"),
                      (tmp_path / "part.npz", "not a complete faceveil bank (faces is not a file in the archive)")]:
        assert main(["bank", "info", str(path)]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {path}: {why}\n"
        assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "-q", "-m", "replace",
                     "-p", f"bank={path}"]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {path}: {why}\n"
    assert not (tmp_path / "o.png").exists()


def test_bank_build_with_no_usable_face_names_the_folder_and_why(tmp_path, capsys):
    """A folder of photos with no face (or only small ones) said 'no usable face found: the bank would be empty': no
    folder, and no way to tell a wrong folder from a too high --min-face."""
    from PIL import Image

    from faceveil.cli import main

    (tmp_path / "people" / "ann").mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "people" / "ann" / "wall.png")
    (tmp_path / "people" / "ann" / "cut.png").write_bytes(b"\x89PNG\r\n")
    assert main(["bank", "build", str(tmp_path / "people"), "-q", "-o", str(tmp_path / "b.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"faceveil: error: {tmp_path / 'people'}: no usable face in its 2 photos (1 with no face found, "
                       "1 unreadable; faces: 0 narrower than 60 px, 0 turned too far): the bank would be empty"), err
    assert not (tmp_path / "b.npz").exists()
