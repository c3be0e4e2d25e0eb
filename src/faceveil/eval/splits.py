"""The one seeded split by photo used wherever a value is tuned on shared data.

A photo's side depends only on its name and the seed (a hash, not a permutation of a list), so the
split is the same whichever subset of photos is loaded, in whatever order, and it is fixed once:
values are tuned on ``tune`` and reported on ``held_out`` beside the tuned number.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import PurePath

SPLIT_SEED = 20261202


def side(name: str, seed: int = SPLIT_SEED) -> str:
    """'tune' or 'held_out' for one photo, by the stem of its file name (folders and extension ignored)."""
    stem = PurePath(str(name)).stem
    digest = hashlib.sha256(f"{seed}:{stem}".encode()).digest()
    return "tune" if digest[0] % 2 == 0 else "held_out"


def split(names: Iterable[str], seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """(tune, held_out) names, each in the order given."""
    names = list(names)
    return ([n for n in names if side(n, seed) == "tune"], [n for n in names if side(n, seed) == "held_out"])
