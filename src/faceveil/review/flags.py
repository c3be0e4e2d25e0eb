"""What the page shows of each item: its flags, their risk, and the listing sorted by risk."""
from __future__ import annotations

from ..errors import one_line
from . import videos
from .checks import matches
from .pairs import Item, page_name

# Risk of each kind of flag; an image's risk is the sum over the kinds it has (sort key).
RISK = {"kept": 20, "failed": 100, "pair": 100, "error": 100, "failed-frames": 95, "second": 80, "held-gap": 60,
        "no-record": 30, "unhidden": 90, "size": 50, "near": 40, "small": 15, "no-original": 5}


class FlagsMixin:
    """ReviewSet's views (see store.ReviewSet): read-only over its items, state and settings."""

    def _manual(self, rel: str) -> dict:
        return self.state["items"].get(rel, {})

    def flags(self, item: Item) -> list[dict]:
        a, c, rec = item.analysis, item.check, self._manual(item.rel)
        flags: list[dict] = []
        why = getattr(self, "failed", {}).get(item.rel)  # the run's report says this original failed
        if why is not None:
            flags.append({"kind": "failed", "text": self._failed_text(item, why)})
        elif item.out is None:
            flags.append({"kind": "failed", "text": "no output: the file failed or was skipped" + (
                "" if self.in_run(item) else " (its original is not shown: no report of the run names it)")})
        if item.orig is None:
            flags.append({"kind": "no-original", "text": "no original found: cannot compare or re-anonymize"})
        if a.get("error"):
            flags.append({"kind": "error", "text": a["error"]})
        if c.get("error"):
            flags.append({"kind": "error", "text": c["error"]})
        if c.get("pair"):
            flags.append({"kind": "pair", "text": f"not this output's original: {c['pair']}; Apply is refused"})
        if item.video:
            return flags + videos.flags(a)
        if c.get("size_mismatch"):
            flags.append({"kind": "size", "text": "output size differs from the original: cannot check"})
        removed = rec.get("removed", [])
        kept = self.kept_faces(item.rel)
        if kept:
            flags.append({"kind": "kept", "text": "kept as they are (--keep-*): " + ", ".join(
                f"{k['name']} at {k['distance']:.2f}" if "name" in k else k["by"] for k in kept)
                + "; click one to hide it", "count": len(kept), "boxes": [k["box"] for k in kept]})
        # One flag per kind, with its boxes: a crowd gives one line "23 faces ...", not 23 lines.
        found: dict[str, list] = {"unhidden": [], "second": [], "near": [], "small": []}
        for group, kind in (("main", "unhidden"), ("second", "second"), ("near", "near")):
            for face, hidden in zip(a.get(group, []), c.get(group, [])):
                if any(matches(face["box"], [k["box"]], iou=0.5) for k in kept):
                    continue  # the run kept it on purpose: its own flag says whom it matched
                if not hidden and not (group == "main" and matches(face["box"], removed)):
                    found[kind].append(face)
        for face in a.get("main", []):
            b = face["box"]
            if min(b[2] - b[0], b[3] - b[1]) < self.settings.small_face and not matches(b, removed):
                found["small"].append(face)
        for kind, faces in found.items():
            if not faces:
                continue
            n = len(faces)
            many = f"{n} faces" if n > 1 else "a face"
            best = max(f["score"] for f in faces)
            sources = ", ".join(sorted({f["by"] for f in faces}))
            text = {"unhidden": f"{many} found by {self.config.detector} (best {best:.2f}) but unchanged in the output",
                    "second": f"{many} found by {sources} (best {best:.2f}), not hidden in the output",
                    "near": f"{many} just under the threshold (best {best:.2f}), not hidden",
                    "small": f"{many} smaller than {self.settings.small_face} px"}[kind]
            flags.append({"kind": kind, "text": text, "count": n, "boxes": [f["box"] for f in faces]})
        return flags

    def _failed_text(self, item: Item, why: str) -> str:
        if item.out is not None:  # an output at its path, which this run did not write
            return f"the run failed on its original, not anonymized ({why}): this output is not that run's"
        text = f"not anonymized: the run failed on it ({why})"
        dst = self.out_path(item)
        if dst is None:
            text += f"; Apply refused: {self._no_target(item)}"
        elif dst.exists() or dst.is_symlink():
            text += f"; Apply would write over {dst}, another file's output: refused (anonymize it into another folder)"
        return text

    def _no_target(self, item: Item) -> str:
        """Why ``out_path`` does not know where the run would have written ``item``'s output."""
        src = page_name(item.orig.relative_to(self.in_root).as_posix())
        if src in self.run.unlocated:
            return (f"the run's report gives where its output was to go as {one_line(self.run.unlocated[src])}, "
                    "relative to the folder the run was started in, which is neither this folder nor the report's, "
                    "and no written output of the report shows where OUT was from there: start the review in the "
                    "folder the run was started in")
        if src in self.run.targets:
            return f"the run's report puts its output outside {one_line(self.out_root)}"
        return ("the run's report does not say where its output was to go (a report of an earlier faceveil); "
                "anonymize it again with this version")

    def kept_faces(self, rel: str) -> list[dict]:
        """The faces the run kept (--keep-people, --keep-region), as its report says, or for a dataset
        output as its manifest entry says (``kept``: box, by, name, distance)."""
        run = getattr(self, "run", None)
        if run is not None and rel in run.kept:
            return list(run.kept[rel])
        entry = (getattr(self, "manifest", None) or {}).get(rel)
        if entry is not None and isinstance(entry.get("kept"), list):
            return [k for k in entry["kept"] if isinstance(k, dict) and isinstance(k.get("box"), list)
                    and len(k["box"]) == 4]
        return []

    def item_json(self, item: Item) -> dict:
        a, rec = item.analysis, self._manual(item.rel)
        flags = self.flags(item)
        if item.video:
            return {
                "path": item.rel, "kind": "video", "size": a.get("size"), "frames": a.get("frames", 0),
                "fps": a.get("fps"), "hold": a.get("hold"), "tracks": a.get("tracks", []),
                "failed_frames": a.get("failed", []), "second": a.get("second", []), "samples": a.get("samples", []),
                "kept": a.get("kept", []), "kept_tracks": a.get("kept_tracks", []),
                "has_record": bool(a.get("record")), "has_output": item.out is not None,
                "has_original": item.orig is not None and self.in_run(item), "version": self.version(item),
                "faces": [],
                "suggestions": [], "manual": rec.get("manual", []), "removed": [],
                "applied_at": rec.get("applied_at"), "warnings": rec.get("warnings", []),
                "approved": bool(rec.get("approved")), "flags": flags,
                "checked": item.check_done, "risk": sum(RISK.get(f["kind"], 10) for f in flags),
            }
        removed = rec.get("removed", [])
        kept = self.kept_faces(item.rel)
        kept_boxes = [k["box"] for k in kept]
        faces = [{**f, "source": self.config.detector, "removed": matches(f["box"], removed)} for f in a.get("main", [])
                 if not matches(f["box"], kept_boxes, iou=0.5)]
        hidden = {g: item.check.get(g, []) for g in ("near", "second")}
        # A kept face is offered as a suggestion: a click adds it as a manual box (flip to hidden), a
        # click on that box takes it out again (back to kept). Its label: whom it matched, the distance.
        suggestions = [{"box": k["box"], "score": float(k.get("distance", 0)), "hidden": False, "kept": k,
                        "source": f"kept: {k['name']}" if "name" in k else f"kept by {k['by']}"} for k in kept]
        suggestions += [{**f, "source": f["by"], "hidden": h}
                        for g in ("near", "second") for f, h in zip(a.get(g, []), hidden[g])]
        return {
            "path": item.rel, "kind": "image",  # video items (tracks, frame strips) will add their own fields
            "size": a.get("size"), "has_output": item.out is not None,
            "has_original": item.orig is not None and self.in_run(item),
            "version": self.version(item), "faces": faces, "suggestions": suggestions,
            "manual": rec.get("manual", []), "removed": removed, "applied_at": rec.get("applied_at"),
            "approved": bool(rec.get("approved")), "flags": flags, "checked": item.check_done,
            "risk": sum(RISK.get(f["kind"], 10) for f in flags),
        }

    def listing(self) -> dict:
        with self._lock:
            items = [self.item_json(i) for i in self.items.values()]
        items.sort(key=lambda d: (-d["risk"], -sum(f.get("count", 1) for f in d["flags"]), d["path"]))
        flagged = [d for d in items if d["flags"]]
        unlisted = [{"input": one_line(src), "why": why}
                    for src, why in sorted(getattr(self, "failed_unlisted", {}).items())]
        return {
            "items": items,
            "summary": {"total": len(items), "flagged": len(flagged),
                        "flagged_remaining": sum(not d["approved"] for d in flagged),
                        "approved": sum(d["approved"] for d in items), "refused": len(self.refused),
                        "checking": self.checking},
            # inputs the run's report says failed that have no item (outside IN, gone, a link out of it): the
            # page names them above the images, so that one using only the page learns of every failed input
            "failed_unlisted": unlisted,
            "config": self.state["config"], "last": self.state.get("last"),
            "second_detectors": self._second_names, "threshold": self.threshold,
        }
