from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: tests on real photos need ../shared/data beside the checkout")
    return p


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # public-domain NASA portrait, one face near (180..270, 58..178)


@pytest.fixture(scope="session")
def astronaut_faces(astronaut):
    import faceveil

    return faceveil.detect(astronaut)


@pytest.fixture()
def noise_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
