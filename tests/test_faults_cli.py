"""Issue 17 (never leak, never lose): output planning, videos, signals and the API's defaults."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def coll(tmp_path, astronaut):
    """Two folders that both hold x.jpg (different pictures)."""
    for i, img in enumerate((astronaut, astronaut[:, ::-1]), 1):
        d = tmp_path / "coll" / f"d{i}"
        d.mkdir(parents=True)
        Image.fromarray(img).save(d / "x.jpg", quality=90)
    return tmp_path / "coll"


FAST = ("-q", "--detect", "fast")


def test_two_folders_with_one_name_refused_before_writing(coll, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", coll / "d1", coll / "d2", "-o", out, *FAST)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error:") and "x.jpg" in err
    assert "d1" in err and "d2" in err
    assert not out.exists() or not any(out.iterdir()), "nothing written"


def test_two_files_with_one_name_refused(coll, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", coll / "d1" / "x.jpg", coll / "d2" / "x.jpg", "-o", out, *FAST)
    assert code == 2 and "x.jpg" in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


def test_same_file_twice_is_one_input(coll, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", coll / "d1" / "x.jpg", coll / "d1" / "x.jpg", "-o", out, *FAST)
    assert code == 0 and "1 of 1 files" in err, err


def test_existing_output_refused_overwritten_or_skipped(coll, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.jpg").write_bytes(b"someone else's file")
    code, _, err = run(capsys, "anonymize", coll / "d1", "-o", out, *FAST)
    assert code == 2 and err.count("\n") == 1 and "x.jpg" in err and "--overwrite" in err
    assert (out / "x.jpg").read_bytes() == b"someone else's file", "an unrelated file is never replaced silently"

    code, _, err = run(capsys, "anonymize", coll / "d1", "-o", out, "--skip-existing", *FAST)
    assert code == 0, err
    assert (out / "x.jpg").read_bytes() == b"someone else's file"
    assert "0 of 0 files" in err or "1 existing" in err

    code, _, err = run(capsys, "anonymize", coll / "d1", "-o", out, "--overwrite", *FAST)
    assert code == 0, err
    assert (out / "x.jpg").read_bytes()[:2] == b"\xff\xd8"

    with pytest.raises(SystemExit) as exc:  # argparse: the two policies exclude each other
        run(capsys, "anonymize", coll / "d1", "-o", out, "--overwrite", "--skip-existing", *FAST)
    assert exc.value.code == 2


def test_single_file_output_name_is_a_file(coll, tmp_path, capsys, astronaut):
    dst = tmp_path / "res" / "name.jpg"
    code, _, err = run(capsys, "anonymize", coll / "d1" / "x.jpg", "-o", dst, *FAST)
    assert code == 0, err
    assert dst.is_file(), "-o name.jpg with one input file writes that file, not a folder"
    from faceveil.io.images import read_rgb

    got = read_rgb(dst).astype(int)
    assert np.abs(got[80:160, 190:260] - astronaut[80:160, 190:260]).mean() > 10, "the face is hidden"
    # A second run refuses to replace it unless told to.
    code, _, err = run(capsys, "anonymize", coll / "d1" / "x.jpg", "-o", dst, *FAST)
    assert code == 2 and "name.jpg" in err
    code, _, err = run(capsys, "anonymize", coll / "d1" / "x.jpg", "-o", dst, "--overwrite", *FAST)
    assert code == 0, err
