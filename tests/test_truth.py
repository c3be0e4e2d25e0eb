"""Issue 18, "tell the truth": what the interface says (reports, help, messages, exit codes) is what it does."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import build_parser, main

TOKEN = "test-token-0123456789"
HDR = {"X-Faceveil-Token": TOKEN}


def _run(argv, capsys):
    """main(argv) as the console script runs it: (exit code, stdout, stderr); argparse's exits included."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------
# 1. parameters are written as JSON and read back in every form


@pytest.mark.parametrize("text", ["0.6,0.9", "[0.6, 0.9]", "(0.6, 0.9)", " ( 0.6 , 0.9 ) ", "[0.6,0.9]"])
def test_tuple_parameters_read_in_every_written_form(text):
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    p = make_params(DETECTORS.get("multiscale"), {"big_scales": text}, "detector 'multiscale'")
    assert p.big_scales == (0.6, 0.9)


@pytest.mark.parametrize("value", ["", "()", "[]", [], ()])
def test_empty_tuple_parameters(value):
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    assert make_params(DETECTORS.get("multiscale"), {"big_scales": value}, "d").big_scales == ()


def test_json_lists_become_tuples():
    from faceveil.detect import DETECTORS
    from faceveil.registry import make_params

    p = make_params(DETECTORS.get("multiscale"), {"big_scales": [0.6, 0.9]}, "d")
    assert p.big_scales == (0.6, 0.9) and isinstance(p.big_scales, tuple)


def test_detect_dp_takes_the_tuple_as_python_writes_it(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    for text in ("(0.6, 0.9)", "[0.6, 0.9]", "0.6,0.9"):
        rc, out, err = _run(["detect", str(img), "-q", "--dp", f"big_scales={text}"], capsys)
        assert rc == 0, err
        assert json.loads(out)["detector_params"]["big_scales"] == [0.6, 0.9]


def test_review_loop_on_default_settings(tmp_path, astronaut):
    """README's loop: anonymize --report -> review --from-report -> Apply, all on the default preset."""
    pytest.importorskip("flask", reason="the review page needs Flask")
    from faceveil.review import ReviewSet, ReviewSettings, create_app
    from faceveil.cli.review import config_from_args

    src, out, report = tmp_path / "photos", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "astro.png")
    assert main(["anonymize", str(src), "-o", str(out), "--report", str(report), "-q"]) == 0
    doc = json.loads(report.read_text())
    assert doc["detector_params"]["big_scales"] == [0.6, 0.9], "tuples are written as JSON lists"
    made = (out / "astro.png").read_bytes()

    args = build_parser().parse_args(["review", str(out), "--originals", str(src), "--from-report", str(report)])
    cfg = config_from_args(args)  # raised "bad value big_scales='(0.6, 0.9)'" before
    rs = ReviewSet(out, src, cfg, ReviewSettings(second=()), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    r = client.post("/api/apply", json={"path": "astro.png", "manual": [], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.data
    # Apply without edits redoes the original with the run's own settings: the same pixels.
    assert np.array_equal(np.asarray(Image.open(out / "astro.png")), np.asarray(Image.open(io_bytes(made))))
    saved = json.loads((out / ".faceveil" / "review.json").read_text())
    assert saved["config"]["detector_params"]["big_scales"] == [0.6, 0.9]


def io_bytes(data: bytes):
    import io

    return io.BytesIO(data)


# ---------------------------------------------------------------------------
# 3. usage errors exit 2 with one line; unknown flags get "did you mean" and "see --help"


def _tiny_video(path: Path, frames: int = 4) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture()
def photo(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(p)
    return p


@pytest.mark.parametrize("opts,name", [
    (["-m", "replace", "-p", "bank=nothere.npz"], "nothere.npz"),
    (["-m", "learnedblur", "-p", "model=nothere.onnx"], "nothere.onnx"),
    (["-m", "replace", "-p", "harmonizer=unet", "-p", "harmonizer_model=nothere.onnx"], "nothere.onnx"),
])
def test_a_missing_file_named_in_a_parameter_is_bad_usage(tmp_path, photo, capsys, opts, name):
    rc, _, err = _run(["anonymize", str(photo), "-o", str(tmp_path / "out"), "-q", *opts], capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ") and name in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("opts", [["-m", "replace", "-p", "bank={}"], ["-m", "learnedblur", "-p", "model={}"],
                                  ["-m", "replace", "-p", "harmonizer=unet", "-p", "harmonizer_model={}"]])
def test_an_unreadable_file_named_in_a_parameter_is_bad_usage(tmp_path, photo, capsys, opts):
    """-p bank=/etc/passwd or model=/etc/passwd exited 1 (a failed file), the bank's message suggesting to load
    it unsafely (allow_pickle); a bad overlay image was already bad usage (exit 2)."""
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    opts = [o.format(tmp_path / "passwd") for o in opts]
    rc, _, err = _run(["anonymize", str(photo), "-o", str(tmp_path / "out"), "-q", *opts], capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ") and "passwd" in err
    assert "allow_pickle" not in err and "unsafe" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unknown_encoder_preset_is_bad_usage(tmp_path, capsys):
    clip = _tiny_video(tmp_path / "clip.mp4")
    rc, _, err = _run(["anonymize", str(clip), "-o", str(tmp_path / "out"), "-q", "--preset", "superduper"], capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and "superduper" in err and "avcodec" not in err
    assert "veryfast" in err  # the choices are named


def _one_line_usage_error(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("faceveil: error: ") and "usage:" not in err
    assert "--help" in err
    return err


@pytest.mark.parametrize("argv,hint", [
    (["anonymize", "photo.jpg", "-o", "out", "--treshold", "0.1"], "--threshold"),
    (["anonymize", "photo.jpg", "-o", "out", "--mask-scael", "1.2"], "--mask-scale"),
    (["anonymize", "photo.jpg", "-o", "out", "--jbos", "2"], "--jobs"),
    (["detect", "photo.jpg", "--jsn", "x.json"], "--json"),
    (["dataset", "anonymize", "--fromat", "wider"], "--format"),
    # deface's spellings
    (["anonymize", "photo.jpg", "-o", "out", "--tresh", "0.1"], "--threshold"),
    (["anonymize", "photo.jpg", "-o", "out", "--replacewith", "mosaic"], "-m pixelate"),
    (["anonymize", "photo.jpg", "-o", "out", "--keep-audio"], "--no-audio"),
    (["anonymize", "photo.jpg", "-o", "out", "--scale", "640x360"], "--max-size"),
])
def test_unknown_flags_one_line_with_did_you_mean(argv, hint, capsys):
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    err = _one_line_usage_error(err)
    assert hint in err, err


@pytest.mark.parametrize("argv", [
    ["anonymize", "photo.jpg", "-o", "out", "--seed", "-1"],
    ["dataset", "anonymize", "--format", "wider", "--images", "i", "--labels", "l", "-o", "o", "--seed", "-3"],
    ["eval", "leaks", "--images", "i", "--labels", "l", "--limit", "-1"],
    ["eval", "quality", "--images", "i", "-o", "o", "--limit", "-1"],
    ["eval", "quality", "--images", "i", "-o", "o", "--seeds", "x"],
    ["eval", "leaks", "--images", "i", "--labels", "l", "--min-size", "-5"],
    ["anonymize", "photo.jpg", "-o", "out", "--max-size", "-1"],
    ["dataset", "anonymize", "--format", "wider", "--images", "i", "--labels", "l", "-o", "o", "--min-size", "nan"],
])
def test_a_negative_seed_or_count_is_bad_usage_before_any_work(argv, capsys):
    """--seed -1 failed every file at its first face (exit 1); --limit -1 dropped the last image silently (quality,
    detection), ran nearly every pair (privacy) or printed a traceback (leaks)."""
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    _one_line_usage_error(err)
    assert "at least 0" in err or "expected a whole number" in err


def test_deface_thresh_is_taken_as_threshold():
    # argparse takes an unambiguous prefix: deface's --thresh is --threshold here, with the same meaning
    args = build_parser().parse_args(["anonymize", "photo.jpg", "-o", "out", "--thresh", "0.1"])
    assert args.threshold == 0.1


def test_other_argparse_errors_are_one_line_and_exit_2(capsys):
    for argv in (["anonymize", "x.jpg", "--shape", "circle"], ["anonymize", "x.jpg", "--jobs", "two"],
                 ["anonymise", "x.jpg"], ["review", "out/"]):
        rc, _, err = _run(argv, capsys)
        assert rc == 2, argv
        _one_line_usage_error(err)
    rc, _, err = _run(["anonymise", "x.jpg"], capsys)
    assert "did you mean anonymize" in err


def test_a_misspelt_choice_is_matched_against_its_own_options_choices(capsys):
    """`--detect fastest` was answered "did you mean faster?": every option's choices were searched together, and
    x264's --preset has "faster" (no --detect value). Now the choices of the option the error names."""
    for argv, want in ((["anonymize", "x.jpg", "--detect", "fastest"], "did you mean fast?"),
                       (["anonymize", "x.jpg", "--preset", "fastr"], "did you mean faster?"),
                       (["anonymize", "x.jpg", "--shape", "elipse"], "did you mean ellipse?")):
        rc, _, err = _run(argv, capsys)
        assert rc == 2 and want in err, (argv, err)


def test_mask_scale_help_says_what_deface_1_3_is_here(capsys):
    rc, out, _ = _run(["anonymize", "--help"], capsys)
    assert rc == 0
    assert re.search(r"deface's\s+--mask-scale\s+1\.3\s+is\s+1\.6", out)


# ---------------------------------------------------------------------------
# 2. help shows the defaults a run applies (one source)


def _help(argv, capsys) -> str:
    rc, out, _ = _run([*argv, "--help"], capsys)
    assert rc == 0
    return " ".join(out.split())  # argparse wraps lines anywhere


def _help_default(text: str, flag: str) -> str:
    text = text.split("options:", 1)[1]  # not the usage line
    m = re.search(re.escape(flag) + r" \S+ [^()]*?\(default:? ([\w.]+)", text)
    assert m, f"{flag}: no default in the help"
    return m.group(1)


def _assert_help_matches_run(text: str, region: dict, params: dict):
    assert _help_default(text, "--shape") == region["shape"]
    assert float(_help_default(text, "--mask-scale")) == region["mask_scale"]
    assert float(_help_default(text, "--feather")) == region["feather"]
    assert float(_help_default(text, "--threshold")) == params["threshold"]


def test_anonymize_help_states_the_defaults_a_run_records(tmp_path, photo, capsys):
    report = tmp_path / "r.json"
    rc, _, err = _run(["anonymize", str(photo), "-o", str(tmp_path / "out"), "-q", "--report", str(report)], capsys)
    assert rc == 0, err
    doc = json.loads(report.read_text())
    _assert_help_matches_run(_help(["anonymize"], capsys), doc["region"], doc["detector_params"])


def test_dataset_help_states_the_defaults_a_run_records(tmp_path, capsys):
    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(root / "a.png")
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text("a.png\n1\n10 8 20 24 0 0 0 0 0 0\n")
    out = tmp_path / "anon"
    rc, _, err = _run(["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt),
                       "-o", str(out), "-q"], capsys)
    assert rc == 0, err
    entry = next(json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()
                 if json.loads(line).get("kind") == "image")
    _assert_help_matches_run(_help(["dataset", "anonymize"], capsys), entry["region"], entry["detector_params"])


def test_eval_leaks_help_states_the_defaults_a_run_records(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(images / "a.png")
    gt = tmp_path / "gt.txt"
    gt.write_text("a.png\n1\n10 10 20 20 0 0 0 0 0 0\n")
    rc, _, err = _run(["eval", "leaks", "--images", str(images), "--labels", str(gt), "-o", str(tmp_path / "l"),
                       "-q"], capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "l" / "results.json").read_text())
    _assert_help_matches_run(_help(["eval", "leaks"], capsys), doc["region"], doc["detector_params"])


@pytest.mark.parametrize("argv", [["eval", "leaks"], ["eval", "quality"], ["detect"], ["dataset", "anonymize"]])
def test_photo_only_commands_do_not_promise_video_defaults(argv, capsys):
    """`eval leaks --help` said "default balanced; videos: video" and "videos 0.15, 0.07": it reads no video."""
    text = " ".join(_help(argv, capsys).split())
    assert "default balanced)" in text and "videos" not in text.split("--detect PRESET", 1)[1].split("--max-size")[0]
    text = " ".join(_help(["anonymize"], capsys).split())
    assert "default balanced; videos: video)" in text and "videos 0.15, 0.07" in text


def test_max_size_help_says_the_presets_still_detect_at_half_size_in_tiles(capsys, monkeypatch):
    """--max-size said "detect on a copy at most this long", but the presets' main pass alone is that long: their
    min_factor adds a pass in PX tiles at >= 1/2 the photo's size (fast/video once PX shrinks it more than 2x;
    balanced/thorough at its own size once PX shrinks it at all), so an 844 px video at --max-size 320 ran 3
    detector runs a frame instead of 1. The help now says so; the runs below are what it says."""
    from faceveil.detect import DETECTORS
    from faceveil.detect.centerface import CenterFace
    from faceveil.detect.presets import PRESETS, resolve

    line = re.search(r"--max-size PX (.*?\(0: any\))", _help(["anonymize"], capsys)).group(1)
    assert "main pass at most PX long" in line and ">= 1/2 size in PX tiles" in line, line
    tiled, real = [], CenterFace.detect_tiled
    monkeypatch.setattr(CenterFace, "detect_tiled", lambda self, image, factor, *a: tiled.append(factor)
                        or real(self, image, factor, *a))
    frame = np.zeros((474, 844, 3), np.uint8)
    for preset in PRESETS:
        for px, want in ((320, "tiles"), (600, "tiles" if preset in ("balanced", "thorough") else None)):
            name, params, _ = resolve(preset, None, {"max_size": px})
            tiled.clear()
            DETECTORS.create(name, params).detect(frame)
            assert (tiled and min(tiled) >= 0.5) if want else not tiled, (preset, px, tiled)


def test_detectors_listing_names_the_default_the_cli_runs(capsys):
    from faceveil.detect.presets import DEFAULT_PRESET, PRESETS

    rc, out, _ = _run(["detectors"], capsys)
    assert rc == 0
    default = PRESETS[DEFAULT_PRESET]["detector"]
    from faceveil.detect import DETECTORS

    summaries = {line.split(":")[0]: line for line in out.splitlines() if line.split(":")[0] in DETECTORS.names()}
    assert "default" in summaries[default]
    assert not any("default" in line for name, line in summaries.items() if name != default), summaries
    assert f"--detect {DEFAULT_PRESET}" in out


def test_readme_states_the_default_region():
    from faceveil.detect.presets import DEFAULT_PRESET, PRESETS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    methods = readme.split("### Methods", 1)[1].split("###", 1)[0]
    region = PRESETS[DEFAULT_PRESET]["region"]
    assert f"{region['mask_scale']}" in methods and "1.3 ×" not in methods
    detectors = readme.split("### Detectors", 1)[1].split("###", 1)[0]
    assert "`centerface` (default" not in detectors


# ---------------------------------------------------------------------------
# 4. an unwritable --report / --json fails before the work, in one line


@pytest.mark.parametrize("cmd", ["anonymize", "detect"])
@pytest.mark.parametrize("where", ["under_a_file", "a_folder", "proc"])
def test_unwritable_report_fails_first_in_one_line(tmp_path, photo, capsys, cmd, where):
    target = {"under_a_file": str(photo / "r.json"), "a_folder": str(tmp_path), "proc": "/proc/faceveil-r.json"}[where]
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    out = tmp_path / "out"
    argv = (["anonymize", str(photo), "-o", str(out), "--report", target] if cmd == "anonymize"
            else ["detect", str(photo), "--json", target])
    rc, _, err = _run([*argv, "-q"], capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: ") and "Traceback" not in err
    assert not out.exists(), "nothing is anonymized before the report is known to be writable"


# ---------------------------------------------------------------------------
# 5. smaller ones


@pytest.mark.slow
def test_eval_privacy_limit_does_what_its_help_says(tmp_path, capsys):
    from conftest import shared_path

    lfw = shared_path("lfw")
    rc, help_text, _ = _run(["eval", "privacy", "--help"], capsys)
    assert "--limit" in help_text
    out = tmp_path / "p"
    rc, _, err = _run(["eval", "privacy", "--pairs", str(lfw / "pairs.csv"), "--images", str(lfw), "--people", "3",
                       "--all-pairs", "--limit", "5", "--no-fta", "-m", "blackout", "-o", str(out), "-q"], capsys)
    assert rc == 0, err
    doc = json.loads((out / "privacy.json").read_text())
    assert doc["baseline"]["n_pairs"] == 5


def test_detect_on_a_video_says_what_to_use(tmp_path, capsys):
    clip = _tiny_video(tmp_path / "clip.mp4")
    rc, out, err = _run(["detect", str(clip), "-q"], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "clip.mp4" in err and "video" in err and "faceveil anonymize" in err
    rc, help_text, _ = _run(["detect", "--help"], capsys)
    assert "images only" in " ".join(help_text.split())


def test_detect_names_the_videos_it_skips_in_a_folder(tmp_path, photo, capsys):
    folder = tmp_path / "mix"
    folder.mkdir()
    _tiny_video(folder / "clip.mp4")
    Image.open(photo).save(folder / "a.png")
    rc, out, err = _run(["detect", str(folder), "-q"], capsys)
    assert rc == 0 and len(json.loads(out)["files"]) == 1
    assert "1 video skipped" in err


def test_eval_leaks_crops_match_the_table(tmp_path, capsys):
    """A leaked face too small for any bucket of the table gets no crop: crops == leaked faces shown."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(images / "a.png")  # flat: no detection
    gt = tmp_path / "gt.txt"
    gt.write_text("a.png\n2\n10 10 3 3 0 0 0 0 0 0\n60 40 14 14 0 0 0 0 0 0\n")  # a 3 px face and a 14 px face
    out = tmp_path / "leaks"
    rc, table, err = _run(["eval", "leaks", "--images", str(images), "--labels", str(gt), "-o", str(out), "-q"], capsys)
    assert rc == 0, err
    rows = [line.split() for line in table.splitlines() if re.match(r"^\d+-\d+ px|^\d+\+ px", line)]
    in_table = sum(int(r[3]) for r in rows)  # size, "px", faces, leaked, ...
    assert in_table == 1
    crops = list((out / "leaked").glob("*.png"))
    assert len(crops) == in_table
    assert re.search(rf"\b{in_table} leaked-face crop\b", err), err


def test_h265_quiet_prints_no_encoder_chatter(tmp_path, capfd):
    """x265 writes its own "x265 [info]: ..." lines to the process's stderr; -q means nothing but errors."""
    import av

    try:
        av.codec.Codec("libx265", "w")
    except Exception:
        pytest.skip("this PyAV build has no libx265")
    clip = _tiny_video(tmp_path / "clip.mp4")
    rc = main(["anonymize", str(clip), "-o", str(tmp_path / "out"), "--codec", "h265", "-q"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "x265 [info]" not in err and "x265 [" not in err, err


def test_eval_train_without_torch_says_so_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    gt = tmp_path / "gt.txt"
    gt.write_text("a.png\n1\n4 4 10 10 0 0 0 0 0 0\nmissing.png\n1\n4 4 10 10 0 0 0 0 0 0\n")
    rc, _, err = _run(["eval", "train", "--images", str(images), "--labels", str(gt), "-o", str(tmp_path / "r")],
                      capsys)
    assert rc == 1
    assert err.startswith("faceveil: error: ") and "needs torch" in err and err.count("\n") == 1, err


def test_video_summary_counts_face_frames_and_tracks(tmp_path, astronaut, capsys):
    import av

    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    Image.fromarray(astronaut).save(tmp_path / "in" / "photo.png")
    frame = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 256, 256, "yuv420p"
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    rc, _, err = _run(["anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    per_video = next(line for line in err.splitlines() if line.startswith("faceveil: ") and "clip.mp4:" in line)
    assert re.search(r"5 frames, 5 face-frames in 1 track\b", per_video), per_video
    summary = err.strip().splitlines()[-1]
    assert "(1 face in images, 5 face-frames in videos)" in summary, summary


def test_progress_into_a_log_is_lines_not_carriage_returns(tmp_path, astronaut, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(astronaut).save(src / f"{i}.png")
    rc, _, err = _run(["anonymize", str(src), "-o", str(tmp_path / "out")], capsys)  # stderr is no terminal here
    assert rc == 0, err
    assert "\r" not in err and "\x1b[" not in err
    assert any("3/3" in line for line in err.splitlines()), err


def test_progress_lines_come_every_few_seconds_at_most():
    import io

    from faceveil.progress import tqdm

    log = io.StringIO()
    for _ in tqdm(range(20000), file=log, desc="work"):
        pass
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and "20000/20000" in lines[-1] and "\r" not in log.getvalue()


# ---------------------------------------------------------------------------
# help fits on a screen (100 x 64) and the top level names what faceveil does


def _all_parsers():
    import argparse

    def walk(p):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in dict.fromkeys(a.choices.values()):
                    yield from walk(sub)

    return list(walk(build_parser()))


def test_every_help_fits_on_a_screen(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    parsers = _all_parsers()
    assert len(parsers) > 15
    for p in parsers:
        text = p.format_help()
        lines = text.rstrip("\n").splitlines()
        assert len(lines) <= 64, f"{p.prog} --help: {len(lines)} lines"
        wide = [line for line in lines if len(line) > 100]
        assert not wide, f"{p.prog} --help: {wide[0]!r}"
        assert "usage:" in lines[0] and len(text.split("\n\n")[0].splitlines()) <= 3, f"{p.prog}: usage block"


def test_top_level_help_names_video_dataset_and_review(capsys):
    text = _help([], capsys)
    desc = text.split("positional arguments")[0]
    for word in ("video", "dataset", "review"):
        assert word in desc, word
