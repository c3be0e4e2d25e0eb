"""Replace's stop-63 speed levers (issue 22): the cached seeded noise tiles, the coarse grid's
upsampling and nearest-neighbour crops, and OpenCV's bounding box, against the plain operations they stand for."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from faceveil.anonymize import replace_geometry as geo
from faceveil.anonymize import replace_looks as looks


def _numpy_box(a):
    nz = a != 0
    rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


@pytest.mark.parametrize("dtype", [bool, np.float32, np.float64, np.uint8])
def test_nonzero_box_is_numpys(dtype):
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = np.zeros((rng.integers(1, 60), rng.integers(1, 60)), dtype)
        n = rng.integers(0, 4)
        for _ in range(n):
            a[rng.integers(0, a.shape[0]), rng.integers(0, a.shape[1])] = 1
        for view in (a, a[::-1], a[1:, 2:]):
            assert looks.nonzero_box(view) == _numpy_box(view)
    f = np.zeros((9, 9), np.float32)
    f[3, 7] = np.nan  # NaN counts as non-zero
    assert looks.nonzero_box(f) == (slice(3, 4), slice(7, 8))
    assert looks.nonzero_box(np.zeros((0, 5), bool)) is None


@pytest.mark.parametrize("kind", ["grain", "texture"])
def test_noise_window_is_seeded_and_reads_one_wrapping_tile(kind):
    a = looks.noise_window(kind, 11, (40, 30))
    assert a.dtype == np.float32 and a.shape == (40, 30)
    assert np.array_equal(a, looks.noise_window(kind, 11, (40, 30)))  # the same seed, the same noise
    assert not np.allclose(a, looks.noise_window(kind, 12, (40, 30)))  # another seed, another window
    # a window at an offset is that part of the larger window (texture's box within a face's crop), also past
    # the tile's size (the tile repeats)
    n = looks.NOISE_TILE
    big = looks.noise_window(kind, 5, (n + 70, n + 50))
    assert big.shape == (n + 70, n + 50)
    assert np.array_equal(big[n:, n:], big[:70, :50])
    assert np.array_equal(looks.noise_window(kind, 5, (20, 25), at=(n + 3, 17)), big[n + 3: n + 23, 17:42])
    with pytest.raises(ValueError):
        a[0, 0] = 1.0  # the cached tile is never written through a window


def test_noise_tiles_levels():
    grain = looks.noise_tile("grain")[: looks.NOISE_TILE, : looks.NOISE_TILE]
    assert abs(float(grain.mean())) < 0.01 and abs(float(grain.std()) - 1) < 0.01
    tex = looks.noise_tile("texture")[: looks.NOISE_TILE, : looks.NOISE_TILE]
    assert abs(float(np.sqrt(np.mean(tex.astype(np.float64) ** 2))) - 1) < 1e-4
    # the texture is fine detail (the band above a 1.5 px blur): a 3 px blur of it keeps under a fifth of its RMS,
    # and it is seamless across the tile's edge (as fine across it as inside)
    assert np.sqrt(np.mean(cv2.GaussianBlur(tex, (0, 0), 3) ** 2)) < 0.2
    across = np.abs(np.diff(looks.noise_tile("texture")[:, looks.NOISE_TILE - 3: looks.NOISE_TILE + 3], axis=1))
    assert abs(float(across[:, 2].mean()) / float(across.mean()) - 1) < 0.1


@pytest.mark.parametrize("interpolation", [cv2.INTER_CUBIC, cv2.INTER_LINEAR])
@pytest.mark.parametrize("shape", [(50, 40), (51, 37)])
def test_upsampled_crop_is_the_whole_resize(interpolation, shape):
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    whole = cv2.resize(small, (shape[1] * 2, shape[0] * 2), interpolation=interpolation)
    for rows, cols in [(slice(0, 10), slice(0, 7)), (slice(13, 77), slice(5, 60)), (slice(90, 100), slice(70, 74)),
                       (slice(0, shape[0] * 2), slice(0, shape[1] * 2))]:
        got = geo.upsampled(small, 2, rows, cols, interpolation=interpolation)
        assert np.array_equal(got, whole[rows, cols])
    # a frame row past the coarse grid (an odd window: its size rounded down) replicates the last one's reading
    got = geo.upsampled(small, 2, slice(0, shape[0] * 2 + 1), slice(0, 4), interpolation=interpolation)
    assert got.shape == (shape[0] * 2 + 1, 4, 3)


def test_nearest_crop_is_the_whole_resize():
    rng = np.random.default_rng(4)
    small = rng.random((63, 48)) > 0.5
    for shape in [(203, 155), (126, 96), (63, 48)]:
        whole = cv2.resize(small.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        at = (slice(5, shape[0] - 3), slice(0, shape[1] // 2))
        assert np.array_equal(geo.nearest(small, shape, at), whole[at])
