"""The review page's method comparison: one image's faces hidden by each method, rendered on demand.

The faces are the ones Apply would hide (the run's recorded regions, then the detections on the
original that none of them covers, minus the reviewer's removed boxes, plus their manual boxes);
each method runs with its own defaults (the run's method with the run's parameters), the run's region
and seed key. The result is a JPEG kept in memory only: nothing is written under OUT or to the cache.
Images only (a video's frames are compared by playing them).
"""
from __future__ import annotations

import io

import numpy as np

from ..anonymize import get_method
from ..anonymize.base import METHODS
from ..detections import Detections
from ..errors import FaceveilError
from ..io.images import read_image
from ..io.manifest import sha256_file
from .checks import matches

MAX_RENDERS = 64  # rendered JPEGs kept in memory


class CompareMixin:
    """ReviewSet's method comparison (see store.ReviewSet)."""

    def compare_methods(self) -> list[str]:
        """The methods that can be built here (a missing extra or model drops one), the run's first."""
        if getattr(self, "_compare_methods", None) is None:
            names = []
            for name in [self.config.method] + [n for n in METHODS.names() if n != self.config.method]:
                try:
                    self._compare_method(name)
                except (FaceveilError, ImportError, ValueError):
                    continue
                names.append(name)
            self._compare_methods = names
        return list(self._compare_methods)

    def _compare_method(self, name: str):
        cache = self.__dict__.setdefault("_compare_instances", {})
        if name not in cache:
            if name not in METHODS.names():
                raise KeyError(name)
            cache[name] = (self.anonymizer.method if name == self.config.method else get_method(name, {}))
        return cache[name]

    def compare_faces(self, rel: str) -> Detections:
        """The boxes Apply would hide on this image now (before any new edit)."""
        item = self.items[rel]
        base = [f["box"] for f in item.analysis.get("main", [])
                if not any(matches(f["box"], [k["box"]], iou=0.5) for k in self.kept_faces(rel))]
        rec = self._manual(rel)
        run_kept, kept = self._with_run_regions(rel, base, [list(b) for b in rec.get("removed", [])])
        parts = [] if run_kept is None else [run_kept]  # scores and landmarks: replace as the run drew it
        return Detections.merge(parts + [Detections.from_boxes(kept, None, None, self.config.detector),
                                         Detections.from_boxes([list(b) for b in rec.get("manual", [])], None, None,
                                                               "manual")])

    def compare(self, rel: str, method: str, width: int | None = None) -> bytes:
        """The ORIGINAL of ``rel`` anonymized by ``method`` as JPEG bytes (``width``: downscaled to it).
        Unknown item or method: KeyError; a video or an image faceveil cannot read: FaceveilError."""
        from PIL import Image

        item = self.items.get(rel)
        if item is None or method not in self.compare_methods():
            raise KeyError(rel if item is None else method)
        if item.video:
            raise FaceveilError(f"{rel}: the method comparison is for images")
        if item.orig is None:
            raise FaceveilError(f"{rel}: no original to compare methods on")
        src = self.file("orig", rel)  # resolved and checked now (PermissionError outside IN or the run)
        from .pairs import stat_key

        key = ("compare", rel, stat_key(src), method, width, repr(self._manual(rel)))
        with self._lock:
            cached = self.__dict__.setdefault("_renders", {})
            if key in cached:
                return cached[key]
        if not item.check_done:
            self._analyse(item, save=False)
        if item.analysis.get("error"):
            raise FaceveilError(item.analysis["error"])
        rgb = read_image(src).rgb
        dets = self.compare_faces(rel)
        rng = self.anonymizer.rng_for(sha256_file(src))  # the batch's seed key (the file's content), as Apply
        with self._detect_lock:  # some methods hold models that are not known to be thread-safe
            out = self._compare_method(method).apply(rgb, dets, self.anonymizer.compositor, rng)
        if out.shape != rgb.shape or out.dtype != np.uint8:
            raise FaceveilError(f"method {method!r} returned {out.shape} {out.dtype}")
        im = Image.fromarray(out)
        if width and width < im.width:
            im = im.resize((width, max(1, round(im.height * width / im.width))))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=88)
        data = buf.getvalue()
        with self._lock:
            cached[key] = data
            while len(cached) > MAX_RENDERS:
                cached.pop(next(iter(cached)))
        return data
