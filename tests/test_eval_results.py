"""The eval commands' result folders, failed images, bad numbers and what their JSON records (an audit of them).

Before: `eval leaks --labels cocot/results.json -o cocot` replaced the labels with results, `eval quality -o userout`
replaced the user's userout/quality.json, `eval detection --images imgs -o imgs` wrote its plots among the photos;
a truncated or missing image was a success (exit 0, `n_errors` only in the JSON); `--coverage 0.2` and
`--people -3` were tracebacks; the JSONs did not say which detection, region, seed or --limit gave them.
"""
import json

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main


def run(capsys, *argv):
    """main(argv) as the console script runs it: (exit code, stderr); argparse's exits included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ") and "Traceback" not in err, err
    return err


@pytest.fixture()
def imgs(tmp_path):
    """A folder of two small photos (a face-coloured disc on noise) and a WIDER gt.txt beside it."""
    import cv2

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        img = rng.integers(0, 120, (64, 80, 3), dtype=np.uint8)
        cv2.circle(img, (40, 32), 14, (150, 180, 230), -1)
        Image.fromarray(img).save(d / name)
    (tmp_path / "gt.txt").write_text("a.png\n1\n26 18 28 28 0 0 0 0 0 0\nb.png\n1\n26 18 28 28 0 0 0 0 0 0\n")
    return d


def listing(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. result files ---------------------------------------------------------------------------------------------


def test_results_never_replace_an_input_or_land_among_the_inputs(imgs, tmp_path, capsys):
    before = listing(imgs)
    for out, said in ((imgs, "is the input"), (imgs / "sub", "is inside the input")):
        code, err = run(capsys, "eval", "detection", "--images", imgs, "-o", out, "-q")
        assert code == 2 and said in one_line(err), err
    assert listing(imgs) == before, "nothing written among the photos"
    # COCO labels named results.json in the output folder: eval leaks replaced them with its results
    cocot = tmp_path / "cocot"
    cocot.mkdir()
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 64}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [26, 18, 28, 28]}],
            "categories": [{"id": 1, "name": "face"}]}
    (cocot / "results.json").write_text(json.dumps(coco))
    labels = (cocot / "results.json").read_bytes()
    code, err = run(capsys, "eval", "leaks", "--images", imgs, "--labels", cocot / "results.json", "-o", cocot, "-q")
    assert code == 2 and "would overwrite an input" in one_line(err)
    assert (cocot / "results.json").read_bytes() == labels and not (cocot / "pr_curve.png").exists()
    pairs = tmp_path / "p" / "privacy.json"  # a pairs CSV where privacy.json goes
    pairs.parent.mkdir()
    pairs.write_text("file_x,file_y,same\na.png,b.png,1\n")
    code, err = run(capsys, "eval", "privacy", "--pairs", pairs, "--images", imgs, "-o", pairs.parent, "-q")
    assert code == 2 and "would overwrite an input" in one_line(err)
    # -o an existing file: refused before the evaluation (it ran, then "cannot write: File exists", exit 1)
    for argv in (["eval", "quality", "--images", imgs], ["eval", "leaks", "--images", imgs, "--labels",
                                                         tmp_path / "gt.txt"]):
        code, err = run(capsys, *argv, "-o", tmp_path / "gt.txt", "-q")
        assert code == 2 and "is not a folder" in one_line(err), err
    assert (tmp_path / "gt.txt").read_bytes().startswith(b"a.png\n1\n")


def test_a_user_file_in_the_output_folder_is_replaced_only_under_overwrite(imgs, tmp_path, capsys):
    out = tmp_path / "userout"
    out.mkdir()
    (out / "quality.json").write_text("my notes")
    argv = ["eval", "quality", "--images", imgs, "-m", "blackout", "--detect", "fast", "-o", out, "-q"]
    code, err = run(capsys, *argv)
    assert code == 2 and "is not a file faceveil wrote" in one_line(err) and "--overwrite" in err
    assert (out / "quality.json").read_text() == "my notes" and not (out / "cache").exists()
    code, err = run(capsys, *argv, "--overwrite")
    assert code == 0, err
    assert next(iter(json.loads((out / "quality.json").read_text()))) == "faceveil"
    code, err = run(capsys, *argv)  # a rerun replaces faceveil's own results
    assert code == 0, err
    # a plot in a folder without faceveil's JSON is the user's too
    other = tmp_path / "other"
    other.mkdir()
    (other / "rate_dlib-hog.png").write_bytes(b"mine")
    code, err = run(capsys, "eval", "detection", "--images", imgs, "-o", other, "-q")
    assert code == 2 and "rate_dlib-hog.png" in one_line(err)
    assert (other / "rate_dlib-hog.png").read_bytes() == b"mine"
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "results.json").write_text("{}")
    code, err = run(capsys, "eval", "leaks", "--images", imgs, "--labels", tmp_path / "gt.txt", "-o", tmp_path / "l")
    assert code == 2 and "--overwrite" in one_line(err)


def test_eval_train_report_folder_over_its_labels_is_refused(imgs, tmp_path, capsys):
    pytest.importorskip("torch", reason="torch is not installed (the train extra)")
    out = tmp_path / "report"
    out.mkdir()
    gt = out / "results.json"
    gt.write_bytes((tmp_path / "gt.txt").read_bytes())
    code, err = run(capsys, "eval", "train", "--images", imgs, "--labels", gt, "-o", out, "--steps", "1", "-q")
    assert code == 2 and "would overwrite an input" in one_line(err)
    assert gt.read_bytes() == (tmp_path / "gt.txt").read_bytes()


# 2. failed images ----------------------------------------------------------------------------------------------


def test_a_truncated_or_missing_image_is_an_error_naming_it(imgs, tmp_path, capsys):
    bad = imgs / "c.png"
    bad.write_bytes((imgs / "a.png").read_bytes()[:200])
    for command, name in (("detection", "detection.json"), ("quality", "quality.json")):
        out = tmp_path / command
        code, err = run(capsys, "eval", command, "--images", imgs, "-m", "blackout", "--detect", "fast", "-o", out,
                        "-q")
        lines = err.splitlines()
        assert code == 1, err
        assert [x for x in lines if x.startswith("faceveil: error: ")] == [lines[0]] and "c.png" in lines[0], err
        assert "1 of 3 images failed" in err
        doc = json.loads((out / name).read_text())
        assert len(doc["failed"]) == 1 and "c.png" in doc["failed"][0]
    assert doc["variants"][0]["n_crops"] >= 0
    det = json.loads((tmp_path / "detection" / "detection.json").read_text())["variants"][0]
    assert (det["n_images"], det["n_errors"]) == (2, 1)
    # outputs made elsewhere, one missing: an error; once it is there, the cached failure is measured again
    bad.unlink()
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "a.png").write_bytes((imgs / "a.png").read_bytes())
    argv = ["eval", "quality", "--images", imgs, "--anonymized", ext, "--detect", "fast", "-o", tmp_path / "q", "-q"]
    code, err = run(capsys, *argv)
    assert code == 1 and "ext/b.png" in err and "no such file" in err, err
    (ext / "b.png").write_bytes((imgs / "b.png").read_bytes())
    code, err = run(capsys, *argv)
    assert code == 0, err


def test_labelled_images_not_found_are_an_error_at_the_end(imgs, tmp_path, capsys):
    """eval leaks said "1 labelled images not found (skipped)" and exited 0; eval detection said nothing."""
    gt = tmp_path / "gt.txt"
    gt.write_text(gt.read_text() + "c.png\n1\n26 18 28 28 0 0 0 0 0 0\n")
    for argv in (["eval", "leaks", "--labels", gt], ["eval", "detection", "--labels", gt, "-m", "blackout"]):
        out = tmp_path / argv[1]
        code, err = run(capsys, *argv, "--images", imgs, "--detect", "fast", "-o", out, "-q")
        errors = [x for x in err.splitlines() if x.startswith("faceveil: error: ")]
        assert code == 1 and errors == [f"faceveil: error: {imgs}: 1 labelled image not found (left out of the "
                                        "results), e.g. c.png"], err
        assert (out / f"{'results' if argv[1] == 'leaks' else 'detection'}.json").exists()
    assert json.loads((tmp_path / "leaks" / "results.json").read_text())["missing"] == 1
    det = json.loads((tmp_path / "detection" / "detection.json").read_text())["variants"][0]["pipeline_detector"]
    assert det["vs_labels"]["n_faces"] == 2


def test_privacy_says_a_truncated_photo_failed_not_that_it_has_no_face(tmp_path, astronaut, capsys):
    lfw = tmp_path / "lfw"
    for person in ("ann", "bob"):
        (lfw / person).mkdir(parents=True)
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    Image.fromarray(small).save(lfw / "ann" / "1.png")
    Image.fromarray(np.ascontiguousarray(small[:, ::-1])).save(lfw / "ann" / "2.png")
    (lfw / "bob" / "1.png").write_bytes((lfw / "ann" / "1.png").read_bytes()[:300])
    Image.fromarray(small[::-1].copy()).save(lfw / "bob" / "2.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\nann/1.png,ann/2.png,1\nbob/1.png,bob/2.png,1\nann/1.png,bob/2.png,0\n")
    out = tmp_path / "p"
    code, err = run(capsys, "eval", "privacy", "--pairs", pairs, "--images", lfw, "-m", "blackout", "--no-fta",
                    "--detect", "fast", "--people", "2", "-o", out, "-q")
    assert code == 1 and "bob/1.png" in err and "cannot decode" in err, err
    doc = json.loads((out / "privacy.json").read_text())
    assert doc["baseline"]["n_no_face"] == 0 and doc["baseline"]["n_errors"] == 1
    assert doc["settings"]["people"] == 2 and doc["settings"]["detect"] == "fast"


# 3./4. bad usage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["coverage", "pr_floor_high", "pr_floor_low", "privacy_people", "bench_people",
                                  "diversity_images", "bench_diversity_images"])
def test_bad_numbers_are_usage_errors(imgs, tmp_path, capsys, case):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\na.png,b.png,1\n")
    leaks = ["eval", "leaks", "--images", imgs, "--labels", tmp_path / "gt.txt", "-q"]
    privacy = ["--pairs", pairs, "--images", imgs, "-o", tmp_path / "o", "-q"]
    argv, option = {"coverage": (leaks + ["--coverage", "0.2"], "--coverage"),
                    "pr_floor_high": (leaks + ["--pr-floor", "1.5"], "--pr-floor"),
                    "pr_floor_low": (leaks + ["--pr-floor", "-0.1"], "--pr-floor"),
                    "privacy_people": (["eval", "privacy", *privacy, "--people", "-3"], "--people"),
                    "bench_people": (["bench", *privacy, "--people", "-2"], "--people"),
                    "diversity_images": (["eval", "quality", "--images", imgs, "-o", tmp_path / "o",
                                          "--diversity-images", "-1"], "--diversity-images"),
                    "bench_diversity_images": (["bench", *privacy, "--diversity-images", "-1"],
                                               "--diversity-images")}[case]
    code, err = run(capsys, *argv)
    assert code == 2 and option in one_line(err), err
    assert not (tmp_path / "o").exists()


def test_missing_or_wrong_inputs_are_usage_errors(imgs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["eval", "leaks", "--images", imgs, "--labels", tmp_path / "nope.txt"], "nope.txt"),
             (["eval", "leaks", "--images", imgs, "--labels", tmp_path / "gt.txt", "--format", "voc"], "--format wider"),
             (["eval", "detection", "--images", tmp_path / "nope", "-o", tmp_path / "o"],
              "nope: no such folder (--images)"),
             (["eval", "quality", "--images", empty, "-o", tmp_path / "o"], "no images"),
             (["eval", "detection", "--images", imgs, "--labels", tmp_path / "nope.txt", "-o", tmp_path / "o"],
              "nope.txt"),
             (["eval", "privacy", "--images", imgs, "--pairs", tmp_path / "nope.csv", "-o", tmp_path / "o"],
              "nope.csv")]
    for argv, said in cases:
        code, err = run(capsys, *argv, "-q")
        assert code == 2 and said in one_line(err), (argv, err)
    assert not (tmp_path / "o").exists()


def test_a_mistyped_folder_option_is_bad_usage_naming_it(imgs, tmp_path, capsys):
    """Round 5: --anonymized that is not there (or a file) said "/abs/nope: not a folder" with exit 1, as if a file had
    failed; a missing --images said "not a folder" (detection, quality, leaks) or, in privacy, "none of the 2 photos
    pairs.csv names is there". Now one line naming the option, "no such folder" or "not a folder", exit 2, nothing
    written."""
    (tmp_path / "pairs.csv").write_text("file_x,file_y,same\na.png,b.png,0\n")
    photo = imgs / "a.png"
    out = ["-o", tmp_path / "o", "-q"]
    privacy = ["eval", "privacy", "--pairs", tmp_path / "pairs.csv", "--no-fta"]
    for cmd in (privacy, ["eval", "detection"], ["eval", "quality"]):
        for folder, why in ((tmp_path / "nope", "no such folder"), (photo, "not a folder")):
            code, err = run(capsys, *cmd, "--images", imgs, "--anonymized", folder, *out)
            assert (code, err) == (2, f"faceveil: error: {folder}: {why} (--anonymized)\n"), (cmd, err)
            code, err = run(capsys, *cmd, "--images", folder, *out)
            assert (code, err) == (2, f"faceveil: error: {folder}: {why} (--images)\n"), (cmd, err)
    code, err = run(capsys, "eval", "leaks", "--images", tmp_path / "nope", "--labels", tmp_path / "gt.txt", *out)
    assert (code, err) == (2, f"faceveil: error: {tmp_path / 'nope'}: no such folder (--images)\n")
    assert not (tmp_path / "o").exists()


def test_a_wider_gt_folder_without_the_official_files_is_bad_usage_naming_them(imgs, tmp_path, capsys):
    """Round 5: `eval detection --wider-gt DIR` with a folder lacking the official .mat files (the images' folder,
    the WIDER download's root) said "DIR: cannot read the official WIDER FACE .mat files (Reader needs file name or
    open file-like object)", exit 1, after OUT was checked: one line naming the files it lacks, exit 2, before any
    work."""
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "wider_face_val.mat").write_bytes(b"not read: the others are missing")
    for folder, lacks in ((imgs, "wider_face_val.mat, wider_easy_val.mat, wider_medium_val.mat, wider_hard_val.mat"),
                          (tmp_path / "gt", "wider_easy_val.mat, wider_medium_val.mat, wider_hard_val.mat")):
        code, err = run(capsys, "eval", "detection", "--images", imgs, "--wider-gt", folder, "-o", tmp_path / "o", "-q")
        assert (code, err) == (2, f"faceveil: error: {folder}: no {lacks} in it (--wider-gt: the folder of WIDER "
                                  "FACE's official evaluation files, its ground_truth/)\n"), err
    assert not (tmp_path / "o").exists()


def test_quality_seeds_that_measure_no_diversity_say_so(imgs, tmp_path, capsys):
    """Round 5: `eval quality --seeds 1` (diversity needs two seeds), or --seeds with a method that is not random,
    measured no diversity, exit 0, its column "-", without a word (`bench --seeds 1` too). --seeds 1 is bad usage
    (exit 2, before any work); a variant that is not random is named in one warning line, the run goes on."""
    code, err = run(capsys, "eval", "quality", "--images", imgs, "-m", "noise", "--seeds", "1", "-o", tmp_path / "o",
                    "-q")
    assert (code, err) == (2, "faceveil: error: --seeds 1: diversity compares each face over several seeds: give at "
                              "least 2 (0: none)\n")
    assert not (tmp_path / "o").exists()
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_x,file_y,same\na.png,b.png,0\n")
    code, err = run(capsys, "bench", "--images", imgs, "--pairs", pairs, "--seeds", "1", "-o", tmp_path / "o", "-q")
    assert (code, err) == (2, "faceveil: error: --seeds 1: diversity compares each face over several seeds: give at "
                              "least 2 (0: none)\n")
    assert not (tmp_path / "o").exists()
    code, err = run(capsys, "eval", "quality", "--images", imgs, "-m", "blur", "--sweep", "blur.kernel=5,9", "--seeds",
                    "2", "-o", tmp_path / "o", "-q")
    assert code == 0 and err.splitlines()[0] == (
        "faceveil: warning: --seeds 2: blur(kernel=5), blur(kernel=9) give one output whatever the seed (not random): "
        "no diversity measured for them"), err
    code, err = run(capsys, "eval", "quality", "--images", imgs, "-m", "noise", "--seeds", "2", "-o", tmp_path / "n",
                    "-q")
    assert code == 0 and "warning" not in err, err
    assert "diversity" in json.loads((tmp_path / "n" / "quality.json").read_text())["variants"][0]


# 5./6. what the results record, and say --------------------------------------------------------------------------


def test_results_record_the_settings_to_rerun_them(imgs, tmp_path, capsys, monkeypatch):
    from faceveil import __version__
    from faceveil.detect.presets import DEFAULT_PRESET, PRESETS
    from faceveil.report import plots

    titles = []
    monkeypatch.setattr(plots, "rate_by_size_plot", lambda rates, path, title: titles.append(title))
    out = tmp_path / "d"
    code, err = run(capsys, "eval", "detection", "--images", imgs, "-m", "blackout", "--limit", "1", "--seed", "3",
                    "--feather", "0.1", "-o", out, "-q")
    assert code == 0, err
    doc = json.loads((out / "detection.json").read_text())
    s = doc["settings"]
    assert next(iter(doc)) == "faceveil" and doc["faceveil"] == __version__
    assert s["detect"] == DEFAULT_PRESET and s["detector"] == PRESETS[DEFAULT_PRESET]["detector"]
    assert s["region"]["feather"] == 0.1 and s["region"]["shape"] and s["region"]["mask_scale"]
    assert s["detector_params"]["threshold"] == PRESETS[DEFAULT_PRESET]["params"]["threshold"]
    assert (s["limit"], s["seed"]) == (1, 3)
    detector = PRESETS[DEFAULT_PRESET]["detector"]
    assert titles == [f"faces still detected by {detector}", "faces still detected by dlib-hog"]
    out = tmp_path / "l"
    code, err = run(capsys, "eval", "leaks", "--images", imgs, "--labels", tmp_path / "gt.txt", "--limit", "1",
                    "-o", out, "-q")
    assert code == 0, err
    doc = json.loads((out / "results.json").read_text())
    assert doc["detect"] == DEFAULT_PRESET and doc["limit"] == 1 and doc["evaluated"] == 1


def test_readme_counts_the_methods_eval_train_runs_by_default():
    from pathlib import Path

    from faceveil.train.train_on_anon import DEFAULT_METHODS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"({len(DEFAULT_METHODS.split(','))} methods x 20 min" in readme


def _help(capsys, *argv) -> str:
    try:
        main(list(argv) + ["--help"])
    except SystemExit:
        pass
    return " ".join(capsys.readouterr().out.split())


def test_help_of_limit_and_detect_names_every_value(capsys, monkeypatch):
    from faceveil.detect.presets import PRESETS

    monkeypatch.setenv("COLUMNS", "100")
    text = _help(capsys, "eval", "leaks")
    assert "(0: all)" in text.split("--limit", 1)[1].split("--max-crops")[0]
    detect = text.split("--detect PRESET", 1)[1].split("--detector")[0]
    assert all(name in detect for name in PRESETS), detect


def test_eval_leaks_reads_wider_boxes_in_the_stored_frame_of_an_exif_rotated_photo(tmp_path, astronaut, capsys):
    """The photo is read upright but WIDER/COCO/VOC boxes address stored pixels (as dataset mode reads them): a
    photo with orientation 6 was measured against boxes in the wrong frame (every face 'leaked', or dropped)."""
    from faceveil import detect
    from faceveil.dataset.orient import to_stored

    face = detect(astronaut)
    assert len(face) == 1
    x1, y1, x2, y2 = (int(round(v)) for v in face.xyxy[0])
    upright = np.zeros(astronaut.shape[:2], bool)
    upright[y1:y2, x1:x2] = True
    ys, xs = np.nonzero(to_stored(upright, 6))  # the same box in the stored pixels
    d = tmp_path / "imgs"
    d.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(to_stored(astronaut, 6)).save(d / "rot.jpg", exif=exif.tobytes(), quality=95)
    (tmp_path / "gt.txt").write_text(f"rot.jpg\n1\n{xs.min()} {ys.min()} {xs.max() + 1 - xs.min()} "
                                     f"{ys.max() + 1 - ys.min()} 0 0 0 0 0 0\n")
    code, _ = run(capsys, "eval", "leaks", "--images", d, "--labels", tmp_path / "gt.txt", "-o", tmp_path / "r", "-q")
    assert code == 0
    result = json.loads((tmp_path / "r" / "results.json").read_text())["result"]
    assert (result["faces"], result["leaked"]) == (1, 0), result


def test_a_cache_inside_the_images_or_on_a_file_is_refused_before_any_work(imgs, tmp_path, capsys):
    """--cache inside --images wrote its JSON among the photos; --cache naming a file ran everything, then failed."""
    before = listing(imgs)
    for cache, said in ((imgs / "cache", "is inside the input"), (tmp_path / "gt.txt", "is not a folder")):
        for argv in (["eval", "quality", "--images", imgs], ["eval", "detection", "--images", imgs],
                     ["bench", "--images", imgs, "--pairs", tmp_path / "gt.txt", "--methods", "blur"]):
            code, err = run(capsys, *argv, "-o", tmp_path / "out", "--cache", cache, "-q")
            assert code == 2 and said in one_line(err), err
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "cache").write_text("mine")  # the default cache, OUT/cache, a user's file
    code, err = run(capsys, "eval", "quality", "--images", imgs, "-o", tmp_path / "out2", "-q")
    assert code == 2 and "is not a folder" in one_line(err), err
    assert listing(imgs) == before and not (tmp_path / "out").exists()
    assert (tmp_path / "out2" / "cache").read_text() == "mine"
