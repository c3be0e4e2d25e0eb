"""The fast part of the fault matrix (bench/fault_matrix.py): the promise of issue 17, checked by code.

Each case builds its inputs from real shared photos and clips, injects one fault, runs the real
CLI in a subprocess and checks the invariants (outputs complete and anonymized, no temporary
file or process left, exit code and a one-line message naming the file, no traceback, resumed
runs byte-identical, inputs unchanged). The full matrix is run by hand:
``python bench/fault_matrix.py --write-docs`` (docs/faults.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import shared_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fault_matrix as fm  # noqa: E402


SLOW = {n for n in fm.CASES if "during a" in n or n.startswith("review/") or n.startswith("storage/full")}


def _params():
    for name, c in fm.CASES.items():
        if not c.quick:
            continue
        marks = []
        if name in SLOW:
            marks.append(pytest.mark.slow)
        yield pytest.param(name, id=name.replace(" ", "_"), marks=marks)


@pytest.mark.parametrize("name", list(_params()))
def test_fault_case(name, tmp_path):
    shared_path("facemask")  # every case is built from the shared photos (skips with the reason when absent)
    row = fm.run_case(name, tmp_path)
    if row.held is None:
        pytest.skip(row.detail)
    assert row.held, f"{name}: {row.detail}"


def test_the_invariant_checks_can_fail(tmp_path):
    """The checks themselves: a visible face, a left-over temporary file and a traceback are caught."""
    import numpy as np
    from PIL import Image

    def ctx():
        return fm.Ctx(tmp_path, fm.random.Random(0))

    rgb = np.full((40, 40, 3), 200, np.uint8)
    assert not fm.check_hidden(ctx(), rgb, [(5, 5, 30, 30)], "face")
    rgb[5:30, 5:30] = 128
    assert fm.check_hidden(ctx(), rgb, [(5, 5, 30, 30)], "face")
    c = ctx()
    fm.check_no_temp(c, tmp_path)
    assert not c.problems
    (tmp_path / ".x.jpg.abc.tmp.jpg").write_bytes(b"")
    fm.check_no_temp(c, tmp_path)
    assert c.problems
    assert not fm.check_message(ctx(), fm.Res(1, "", "Traceback (most recent call last):\n", 0), {1})
    assert not fm.check_message(ctx(), fm.Res(0, "", "", 0), {2})
    assert not fm.check_message(ctx(), fm.Res(1, "", "faceveil: error: b.jpg: bad\n", 0), {1}, ("a.jpg",))
    assert fm.check_message(ctx(), fm.Res(1, "", "faceveil: error: a.jpg: truncated\n", 0), {1}, ("a.jpg",))
    Image.fromarray(rgb).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError):
        fm.decode_image(tmp_path / "t.jpg")
