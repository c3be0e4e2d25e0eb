"""Audit 3: what a demanding user met on the command line and in the API (bad output paths, repeated parameters,
files named as another kind, names that look like options, formats under a wrong extension, LAB/CMYK TIFFs,
options a run has no file for)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from faceveil.cli import main

FAST = ("-q", "--detect", "fast")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def photo(tmp_path, astronaut) -> Path:
    p = tmp_path / "in" / "photo.jpg"
    p.parent.mkdir()
    Image.fromarray(astronaut).save(p, quality=90)
    return p


@pytest.mark.parametrize("folder_input", [False, True])
@pytest.mark.parametrize("out", ["afile/sub/", "afile/sub", "afile/sub/x.jpg", "afile/a/b/"])
def test_output_under_a_file_refused_before_any_work(photo, tmp_path, capsys, monkeypatch, out, folder_input):
    """`-o afile/sub/` with afile a regular file: the photo was detected, then failed writing (exit 1). Now bad
    usage, one line naming the folder and the file in the way, before any model is built."""
    from faceveil import pipeline

    (tmp_path / "afile").write_bytes(b"a regular file")
    if folder_input and out.endswith(".jpg"):
        pytest.skip("a folder's outputs go into a folder")

    def no_work(*a, **k):
        raise AssertionError("an anonymizer was built before the output was refused")

    monkeypatch.setattr(pipeline.Anonymizer, "from_config", no_work)
    code, _, err = run(capsys, "anonymize", photo.parent if folder_input else photo, "-o", tmp_path / out, *FAST)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: "), err
    assert "cannot make the output folder" in err and f"{tmp_path / 'afile'} is a file" in err, err
    assert (tmp_path / "afile").read_bytes() == b"a regular file"


def test_output_where_no_folder_can_be_made_refused(photo, capsys, monkeypatch):
    """/proc takes no new folder (root included): refused up front, not 'cannot write' after the detection."""
    from faceveil import pipeline

    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    monkeypatch.setattr(pipeline.Anonymizer, "from_config", lambda *a, **k: 1 / 0)
    code, _, err = run(capsys, "anonymize", photo, "-o", "/proc/faceveil-out/", *FAST)
    assert code == 2 and err.count("\n") == 1 and "/proc/faceveil-out: cannot make the output folder" in err, err


def test_fresh_nested_output_still_made(photo, tmp_path, capsys):
    code, _, err = run(capsys, "anonymize", photo.parent, "-o", tmp_path / "new" / "deep", *FAST)
    assert code == 0, err
    assert (tmp_path / "new" / "deep" / "photo.jpg").is_file()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["deep"], "the probe leaves nothing behind"


@pytest.mark.parametrize("argv,said", [(("-p", "relative=0.3", "-p", "relative=0.6"), "-p relative: given twice"),
                                       (("--dp", "threshold=0.3", "--dp", "threshold=0.5"),
                                        "--detector-param threshold: given twice"),
                                       (("--dp", "max_size=300", "--max-size", "500"),
                                        "--max-size 500 and --detector-param max_size=300")])
def test_a_parameter_given_twice_is_refused(photo, tmp_path, capsys, argv, said):
    """`-p relative=0.3 -p relative=0.6`: the last won without a word (nothing documents a meaning for a repeat)."""
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out", *FAST, *argv)
    assert code == 2 and err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "out").exists()


def test_the_same_value_twice_is_one_request(photo, tmp_path, capsys):
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out", *FAST, "-p", "relative=0.3",
                       "-p", "relative=0.3")
    assert code == 0, err


def test_parse_methods_refuses_a_method_parameter_given_twice():
    from faceveil.errors import UsageError
    from faceveil.train.train_on_anon import parse_methods

    with pytest.raises(UsageError, match="blur.kernel: given twice"):
        parse_methods("blur", ["blur.kernel=9", "blur:kernel=11"])
