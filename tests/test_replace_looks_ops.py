"""replace_looks' faster forms of numpy's operations give the same values and dtypes as the plain ones (issue 22:
byte-identical speed-ups; research/replace_speed.py `same` checks the whole method)."""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.anonymize import replace_looks as looks


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int64, bool])
def test_over_channels_is_np_repeat(dtype):
    a = (np.random.default_rng(0).random((7, 5)) * 200).astype(dtype)
    for view in (a, a[1:6, 1:4]):
        got = looks.over_channels(view, 3)
        want = np.repeat(view[:, :, None], 3, axis=2)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert looks.over_channels(a, 1).shape == (7, 5, 1)


@pytest.mark.parametrize("wdtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_weighted_add_is_the_plain_sum(wdtype, channels):
    rng = np.random.default_rng(1)
    comp = (rng.random((40, 30, 3)) * 255).astype(np.float32)
    weight = np.zeros((40, 30), wdtype)
    weight[5:30, 8:25] = rng.random((25, 17))
    delta = rng.standard_normal((40, 30, channels)).astype(np.float32)
    want = comp + delta * weight[:, :, None]
    got = looks.weighted_add(comp.copy(), lambda box: delta[box], weight)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    scratch = comp.copy()
    got = looks.weighted_add(scratch, lambda box: delta[box], weight, inplace=True)
    assert np.array_equal(got, want) and (got is scratch) == (want.dtype == np.float32)
    given = looks.weighted_add(comp.copy(), lambda box: delta[box], weight, box=looks.nonzero_box(weight))
    assert given.dtype == want.dtype and np.array_equal(given, want)
    empty = looks.weighted_add(comp, lambda box: delta[box], np.zeros_like(weight))
    assert empty.dtype == want.dtype and np.array_equal(empty, comp)
