"""The pairs under review: output and original files found under OUT and IN, kept inside their roots."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io.images import is_image_path
from ..io.inputs import list_folder
from ..io.video import is_video_path
from ..video.job import preview_video

OWN_DIR = ".faceveil"  # faceveil's own files under OUT (a video's track record too: video.tracks_path)
REVIEW_FILE = f"{OWN_DIR}/review.json"
OLD_REVIEW_FILE = "review.json"  # where faceveil 0.1.0 kept it: still read (when it is ours), never written


def inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def page_name(rel: str) -> str:
    """A posix relative path as the review names it (page, API, review.json): the path itself, but for bytes
    that are not UTF-8 (held as surrogates, which no browser can put in a URL), written as \\xNN."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


def video_still(p: Path) -> bool:
    """Whether ``p`` is one of a video's --preview stills (``clip_preview/clip_00001.50s.jpg`` beside ``clip.mp4``,
    or ``clip_00001.50s_f36.jpg``): part of the video's item (an Apply writes them again), not an item of its own.
    They were listed each as a photo with "no original found", ranked above the video. video.job says which names
    are stills (one source)."""
    return preview_video(p) is not None


def list_images(root: Path, refused: dict[str, str] | None = None) -> dict[str, Path]:
    """Image files under root by ``page_name`` of their posix relative path, found as anonymize lists a folder
    (io.inputs.list_folder; links kept: the caller refuses one that leads out of its root); hidden files/folders
    (ours, temp files) and a video's preview stills skipped. A name that is not UTF-8 whose page name is another
    file's goes to ``refused``; so does, by its path, a folder or file that cannot be read (a rglob passed over such a
    folder silently: its images were missing from the review; a file in a folder that may not be entered was a
    traceback)."""
    files, links, bad, odd = list_folder(root)
    if refused is not None:
        refused.update((str(p), f"{why}; not listed") for p, why in bad)
    found: dict[str, Path] = {}
    for p in sorted(files + links + [p for p, _ in odd if p.is_symlink()]):
        rel = p.relative_to(root)
        if not (is_image_path(p) or is_video_path(p)) or video_still(p):
            continue
        name = page_name(rel.as_posix())
        if name in found or (name != rel.as_posix() and (root / name).exists()):
            if refused is not None:
                refused[name] = "refused, its name (not UTF-8) reads as another file's"
            continue
        found[name] = p
    return found


def stat_key(p: Path | None) -> str | None:
    if p is None or not p.is_file():
        return None
    st = p.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


@dataclass
class Item:
    rel: str
    out: Path | None
    orig: Path | None
    analysis: dict = field(default_factory=dict)  # detections on the original (cached)
    check: dict = field(default_factory=dict)  # per face: hidden in the output? (cached by output stat)
    check_done: bool = False
    analysed: str | None = None  # the original's key (path, stat, settings) its analysis was made with

    @property
    def video(self) -> bool:
        return is_video_path(self.rel)
