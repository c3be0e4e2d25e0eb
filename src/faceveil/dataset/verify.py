"""Verify an output folder against its manifest: every file there, unaltered, decoding, and nothing unaccounted for."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.inputs import is_inside
from ..io.manifest import read_manifest, sha256_file
from .config import MANIFEST, OWN_DIR, REVIEW_FILE

@dataclass
class VerifyReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # files under OUT that no manifest line accounts for
    damaged: list[str] = field(default_factory=list)  # images whose bytes match the manifest but do not decode

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected or self.damaged)


def verify(out: str | os.PathLike) -> VerifyReport:
    out = Path(out)
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: no manifest (not a faceveil dataset output?)")
    entries, _ = read_manifest(manifest_path)
    latest = {(e.get("kind"), e.get("path")): e for e in entries}
    rep = VerifyReport()
    known = {MANIFEST, REVIEW_FILE}  # faceveil's own records, not outputs
    for e in latest.values():
        rel = e.get("output")
        if not rel:
            continue
        known.add(rel)
        rep.checked += 1
        path = out / rel
        if not is_inside(path, out):
            rep.altered.append(f"{rel} (path outside the output folder)")
        elif not path.is_file():
            rep.missing.append(rel)
        elif sha256_file(path) != e.get("output_sha256"):
            rep.altered.append(rel)
        elif e.get("kind") == "image" and not _decodes(path):
            rep.damaged.append(rel)  # a write that was recorded without being checked (older versions)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            rel = p.relative_to(out).as_posix()
            if rel not in known and rel.split("/", 1)[0] != OWN_DIR:
                rep.unexpected.append(rel)
    return rep


def _decodes(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # any decoder complaint means the file is not a whole image
        return False
