"""The reviewer's edits: approvals and boxes recorded in review.json, and Apply, which re-anonymizes the original.

Apply redoes the regions the run recorded (its --report, a dataset's manifest) plus the reviewer's
boxes, and keeps every pixel the run changed as the run left it (unless the reviewer removed that
box): it never shows more of a face than the run's output did.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..detections import Detections
from ..errors import FaceveilError
from ..io.atomic import write_bytes_atomic
from ..io.images import read_image, write_image
from ..io.manifest import ManifestWriter, sha256_file
from ..video.record import read_record
from . import videos
from .checks import KEEP_TOLERANCE, clean_boxes, matches, reencoded_like
from .pairs import REVIEW_FILE, Item, inside
from .runs import same_settings


class EditsMixin:
    """ReviewSet's edits (see store.ReviewSet); every change is written to OUT/.faceveil/review.json at once."""

    def _manifest_apply(self, rel: str, entry: dict, dst: Path, regions, manual, removed) -> None:
        """Append the reviewed image to the manifest (append-only, fsynced), so that `dataset verify`
        passes and a resumed `dataset anonymize` skips it (same job key, new output hash)."""
        from ..dataset import MANIFEST

        new = {**entry, "output_sha256": sha256_file(dst), "regions": regions, "anonymized_regions": len(regions),
               "reviewed": True, "manual": manual, "removed": removed, "faceveil": __version__,
               "time": _now()}
        if isinstance(entry.get("kept"), list):  # a kept face the reviewer hid (a manual box over it) is kept no more
            new["kept"] = [k for k in entry["kept"]
                           if not (isinstance(k, dict) and matches(k.get("box"), manual, iou=0.5))]
            new["faces"] = {**entry.get("faces", {}), "kept": len(new["kept"])}
        with ManifestWriter(self.out_root / MANIFEST) as w:
            w.append(new)
        self.manifest[rel] = new

    def _check_manifest_config(self, rel: str, entry: dict) -> None:
        if not same_settings(entry, self.anonymizer.describe()):
            raise FaceveilError(f"{rel}: the dataset was anonymized with other settings ({entry.get('method')} "
                                f"{entry.get('method_params')}); start the review without method options "
                                "(it then takes them from OUT/manifest.jsonl)")

    def _apply_video(self, item: Item, manual, removed, flip, version) -> dict:
        out = self.file("out", item.rel) if item.out is not None else None
        rec = read_record(out, self.out_root) if out is not None else None
        if rec is None or not rec.get("config"):
            raise FaceveilError(f"{item.rel}: no usable track record beside the output (anonymize it again with this "
                                "faceveil): Apply needs the run's settings")
        if removed:  # a video's detections are tracks: a kept track is flipped whole, a false one stays hidden
            raise ValueError("removed is for images; a video's track is kept or hidden whole with flip")
        w, h = rec["size"]
        ranges = videos.clean_ranges(manual, w, h, len(rec["frames"]))
        known = self._manual(item.rel).get("manual")
        if version is None or known is None:
            # Only an edit made on the current version drops an earlier box the page showed; the record's boxes
            # (review.json lost or deleted) were not shown: they stay.
            ranges += [r for r in (videos.manual_ranges(rec) if known is None else known) if r not in ranges]
        if flip is not None and not isinstance(flip, list):
            raise ValueError("flip must be a list of track ids")
        self._check_writable()  # before the output changes: a state that cannot be saved refuses it
        result = videos.apply(self.file("orig", item.rel), out, rec, ranges, flip)
        flipped = self._manual(item.rel).get("flipped", []) + ([{"tracks": flip, "at": _now()}] if flip else [])
        self._saved(item.rel, manual=ranges, applied_at=_now(), approved=False, approved_at=None, **result,
                    **({"flipped": flipped} if flipped else {}))
        self._analyse(item)
        return self.item_json(item)

    def _record(self, rel: str, **changes) -> dict:
        """Record the changes in review.json; in memory only once written (a failed write changes nothing)."""
        items = {**self.state["items"], rel: {**self.state["items"].get(rel, {}), **changes}}
        state = {**self.state, "items": items, "last": rel, "updated": _now()}
        write_bytes_atomic(self._own(REVIEW_FILE), json.dumps(state, indent=1).encode())
        self.state = state
        return items[rel]

    def _saved(self, rel: str, **changes) -> None:
        """``_record`` after the output was rewritten: a failure says the output did change."""
        try:
            self._record(rel, **changes)
        except FaceveilError as exc:
            raise FaceveilError(f"{rel}: re-anonymized and written, but the review could not record it ({exc})") \
                from None

    def _check_writable(self) -> None:
        """Refuse an edit whose record could not be saved, before anything changes (its cause named)."""
        path = self._own(REVIEW_FILE)  # OUT/.faceveil a link or a file: refused here
        folder = path.parent if path.parent.is_dir() else self.out_root
        if not os.access(folder, os.W_OK):
            raise FaceveilError(f"{folder}: cannot save the review there (read-only?); nothing was changed")

    def _check_version(self, item: Item, version) -> None:
        """An edit made on an older view of the item (another tab, or a page not reloaded) is refused."""
        if version is not None and version != (self.version(item) or ""):  # "": shown with no version (none yet)
            if item.orig is not None and self.in_run(item):
                self.check_original(item)  # its original replaced: checked again, for the reload, and said so
            raise Stale(f"{item.rel}: changed since this page showed it (an Apply in another tab?): reload the page "
                        "and redo the edit")

    def _with_run_regions(self, rel: str, base: list, removed: list) -> tuple[Detections | None, list]:
        """What Apply and the method comparison redraw of ``rel`` besides the manual boxes, less the ``removed``
        ones: the regions the run hid first, then the boxes of ``base`` (our detector's faces) none of them covers.
        Returns (the run's regions as its own detections, or None, and the other boxes). Its own detections where
        the report has what the method reads (scores, landmarks for a method that uses them): from plain boxes with
        a new detection's landmarks and no score, replace drew a face where the run had drawn its weak-detection
        blur, and the part of it past the run's changes showed beside the run's pixels (a face fragment). An older
        report's regions (plain boxes) are among the other boxes."""
        run_dets = None
        if self.run is not None and rel in self.run.regions:
            recorded = self.run.regions[rel]
            base = recorded + [b for b in base if not matches(b, recorded, iou=0.5)]
            dets = self.run.detections.get(rel)
            if dets is not None and len(dets) == len(recorded) and len(dets) and (
                    dets.landmarks is not None or not getattr(self.anonymizer.method, "uses_landmarks", False)):
                run_dets = dets
        kept = [not matches(b, removed) for b in base]
        if run_dets is None:
            return None, [b for b, k in zip(base, kept) if k]
        n = len(run_dets)
        return run_dets[np.array(kept[:n], bool)], [b for b, k in zip(base[n:], kept[n:]) if k]

    def _keep_run_changes(self, orig: np.ndarray, new: np.ndarray, old_path: Path, removed: list) -> np.ndarray:
        """``new`` with the current output's pixels wherever the run changed the original: a region the
        review does not know of (no record of the run, another shape, scale or strength, a box our
        detector misses) stays exactly as hidden as the run left it; ``new`` only adds what the run left
        untouched. Removed boxes are the reviewer's decision: not kept. Fails closed: an output that
        cannot be compared refuses the Apply."""
        try:
            old = read_image(old_path).rgb
            if old.shape != orig.shape:
                raise FaceveilError(f"{old_path}: its size differs from the original's; Apply cannot keep what "
                                    "the run hid (anonymize it again instead)")
            base = reencoded_like(orig, old_path, self.config.jpeg_quality)
        except (OSError, ValueError) as exc:
            raise FaceveilError(f"{old_path}: cannot compare with the original ({exc})") from None
        lossless = np.array_equal(base, orig)
        changed = np.abs(old.astype(np.int16) - base.astype(np.int16)).max(axis=2) > (0 if lossless else
                                                                                        KEEP_TOLERANCE)
        keep = changed
        if removed:
            keep &= ~(self.anonymizer.compositor.mask(Detections.from_boxes(removed), orig.shape) > 0)
        if not keep.any():
            return new
        out = new.copy()
        out[keep] = old[keep]
        return out

    def approve(self, rel: str, approved: bool = True, version: str | None = None) -> dict:
        with self._lock:
            if rel not in self.items:
                raise KeyError(rel)
            self._check_open()
            self._check_version(self.items[rel], version)
            self._check_writable()
            self._record(rel, approved=bool(approved), approved_at=_now() if approved else None)
            return self.item_json(self.items[rel])

    def apply(self, rel: str, manual: list, removed: list, flip: list | None = None,
              version: str | None = None) -> dict:
        """Re-anonymize the ORIGINAL with the main detections (minus removed) plus manual boxes.

        Same method, parameters, region and seed key as ``faceveil anonymize IN -o OUT``,
        so pixels outside the changed regions come out as before. Written atomically over the output.
        ``version``: the item's version the edit was made on ("" for none yet; ``Stale`` when the output changed);
        without one, an earlier manual box missing from ``manual`` stays (only a versioned edit drops one).
        """
        with self._lock:
            item = self.items.get(rel)
            if item is None:
                raise KeyError(rel)
            self._check_open()
            self._check_version(item, version)
            if item.orig is None:
                raise FaceveilError(f"{rel}: no original to re-anonymize")
            if not self.in_run(item):
                raise FaceveilError(f"{rel}: not part of the anonymize run (no output, and no report naming it); "
                                    "start the review with --from-report to redo the run's failed files")
            if not item.check_done:  # not reached by the background check yet
                self._analyse(item, save=False)
            self.file("orig", rel)  # a link out of IN now: refused (403) before anything else
            self.check_original(item)  # the faces to hide were found on this file, not on one it replaced
            if item.out is not None and item.out.is_symlink():
                raise PermissionError(rel)  # a link, even to another output, would rewrite that file from this original
            if item.check.get("pair"):  # redoing another photo would leave the face visible, and copy that photo in
                raise FaceveilError(f"{rel}: Apply refused, not this output's original: {item.check['pair']}")
            if item.out is None and self.out_path(item) is None:
                raise FaceveilError(f"{rel}: Apply refused: {self._no_target(item)}; nothing was changed")
            if item.out is None and os.path.lexists(self.out_path(item)):  # another input's output (a failed input)
                raise FaceveilError(f"{rel}: Apply refused: it would write over {self.out_path(item)}, another file's "
                                    "output; nothing was changed")
            if item.video:
                return self._apply_video(item, manual, removed, flip, version)
            if flip:
                raise ValueError("flip (whole tracks) is for videos; an image's kept face is hidden with a box")
            # Resolved and checked now: IN/x may have become a link to a file elsewhere since start-up.
            img = read_image(self.file("orig", rel))
            self.check_original(item)  # and not replaced while it was read
            old_path = self.file("out", rel) if item.out is not None else None
            dst = old_path if old_path is not None else self.out_path(item)
            if not inside(dst.parent.resolve(), self.out_root):
                raise PermissionError(rel)
            h, w = img.rgb.shape[:2]
            manual_boxes = clean_boxes(manual, w, h)
            removed_boxes = clean_boxes(removed, w, h, min_size=0)
            # A manual box of an earlier Apply that this one drops shows again, as a dropped detection does (it
            # stayed hidden while review.json listed no box there); a region of the run's under it stays hidden.
            # Only an edit made on the current version drops one: another tab's box is never dropped unseen.
            dropped = [b for b in self._manual(rel).get("manual", []) if not matches(b, manual_boxes, iou=0.999)]
            if version is None:
                manual_boxes, dropped = manual_boxes + dropped, []
            self._check_writable()  # before the output changes: a state that cannot be saved refuses it
            entry = self.manifest.get(rel) if self.manifest is not None else None
            if entry is not None:
                # A dataset output: redo exactly the run's regions (labels and detections), not our detections.
                if "regions" not in entry:
                    raise FaceveilError(f"{rel}: its manifest entry has no regions (an older faceveil): "
                                        "run `faceveil dataset anonymize` again with this version first")
                self._check_manifest_config(rel, entry)
                base = entry["regions"]
                run_kept, kept = None, [b for b in base if not matches(b, removed_boxes)]
                key = entry["input_sha256"]  # the dataset seeds each image by its content, as the CLI does
            else:
                # Faces the run kept (--keep-*) stay kept unless the reviewer hides them (a manual box).
                kept_by_run = self.kept_faces(rel)
                base = [f["box"] for f in item.analysis.get("main", [])
                        if not any(matches(f["box"], [k["box"]], iou=0.5) for k in kept_by_run)]
                if old_path is None:
                    # No output of the run's to keep pixels from (a failed input): the faces the run's detector
                    # finds on the pixels read now are hidden, whatever the check saw (a file replaced since
                    # with its size and time kept, as `cp -p` does, passes the stat the check recorded).
                    found = self.anonymizer.detect(img.rgb).clipped(w, h)
                    base += [b for b in found.xyxy.tolist() if not matches(b, base, iou=0.5)
                             and not any(matches(b, [k["box"]], iou=0.5) for k in kept_by_run)]
                run_kept, kept = self._with_run_regions(rel, base, removed_boxes)
                # The batch seeds each file by its content (rng_for); the same key gives the same noise.
                key = sha256_file(self.file("orig", rel))
            kept_dets = Detections.from_boxes(kept, None, None, self.config.detector)
            if getattr(self.anonymizer.method, "uses_landmarks", False) and len(kept_dets):
                # The recorded regions are plain boxes: give them the detector's landmarks as the run did
                # (dataset mode's labelled boxes; a detection matches itself), else replace rebuilds the box.
                kept_dets = kept_dets.with_landmarks_from(self.anonymizer.detect(img.rgb).clipped(w, h))
            if run_kept is not None:  # the run's own detections, scores and landmarks as it drew them
                kept_dets = Detections.merge([run_kept, kept_dets])
            dets = Detections.merge([
                kept_dets,
                Detections.from_boxes(manual_boxes, None, None, "manual")])
            out = self.anonymizer.anonymize(img.rgb, dets, self.anonymizer.rng_for(key))
            if old_path is not None:
                out = self._keep_run_changes(img.rgb, out, old_path, removed_boxes + dropped)
            deep_region = self.anonymizer.compositor.mask(dets, out.shape) > 0 if img.deep is not None else None
            if entry is not None:
                # A dataset output keeps the original's stored pixel frame and orientation tag (its labels
                # address stored pixels), and is read back before the manifest records it, as dataset mode does.
                from ..dataset import write_checked

                write_checked(str(dst), out, self.anonymizer.hide_in_alpha(img, dets), int(entry.get("orientation", 1)),
                              self.config.keep_metadata, self.config.jpeg_quality, deep_region)
            else:  # an image with transparency: its alpha hidden where the faces are, as the run did
                write_image(dst, out, self.anonymizer.hide_in_alpha(img, dets), self.config.keep_metadata,
                            self.config.jpeg_quality, deep_region)
            item.out = dst
            if entry is not None:  # before review.json: the manifest is what `dataset verify` trusts
                self._manifest_apply(rel, entry, dst, [list(map(float, b)) for b in dets.xyxy], manual_boxes,
                                     removed_boxes)
            self._saved(rel, manual=manual_boxes, removed=removed_boxes, applied_at=_now(),
                        faces=len(dets), approved=False, approved_at=None)
            self._analyse(item)
            return self.item_json(item)


class Stale(FaceveilError):
    """An edit made on an older version of the item than the one in OUT now (the server answers 409)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
