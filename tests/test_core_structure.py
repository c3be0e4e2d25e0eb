"""The structure of the core: one JSON form of detections (and the old shapes still read), one track
record module, and an import graph without circles that imports nothing from bench/, research/ or tests/.

The import graph of src/faceveil:

Edges come from every ``import faceveil.x`` / ``from .x import y`` / ``from faceveil.x import y`` in a
module, at module level AND inside functions (an import moved into a function still closes a circle,
it only hides it). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. An edge from a module to one of its own parent packages is left out: Python imports those
first anyway, so it can never close a circle that matters (``from .. import __version__``).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from faceveil.detections import Detections

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "faceveil"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every faceveil module ``name`` imports anywhere in its file, and the foreign top-level names."""
    is_pkg = path.name == "__init__.py"
    pkg = name if is_pkg else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                targets.append(f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod)
        for t in targets:
            if t.split(".")[0] in ("bench", "research", "tests", "conftest"):
                out.add(t)
            while t and t not in mods and t.startswith("faceveil"):
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t in mods and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(g):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(g[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif nxt in g and state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt in g and not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(g[nxt]))))
                path.append(nxt)
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_function_level_imports():
    g = graph()
    assert "faceveil.detect.presets" in g["faceveil.api"] or len(g["faceveil.api"]) > 2
    assert "faceveil.pipeline" in g["faceveil"]


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_src_imports_no_bench_research_or_tests():
    bad = {name: sorted(t for t in deps if not t.startswith("faceveil")) for name, deps in graph().items()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"src/ imports bench, research or tests: {bad}"


# The layers on top (docs/architecture.md): users of the core, which the core never imports.
TOP = ("faceveil.cli", "faceveil.review", "faceveil.eval", "faceveil.report", "faceveil.train",
       "faceveil.__main__")  # (api.py is imported by the package root and video: not listed)


def _is_top(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TOP)


def test_core_modules_import_no_higher_layer():
    """The core (io, detect, anonymize, track, people, pipeline, video, dataset, batch...) imports nothing from
    eval, report, train, review or cli, at module level or inside a function: e.g. the keep step's face
    describer lives in anonymize/descriptors.py, not in eval/."""
    bad = {name: sorted(d for d in deps if _is_top(d)) for name, deps in graph().items() if not _is_top(name)}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"core modules import a higher layer: {bad}"


# one JSON form of detections ----------------------------------------------------------------------------

def _dets() -> Detections:
    lm = np.arange(10, dtype=np.float32).reshape(1, 5, 2)
    lms = np.concatenate([lm, np.full((2, 5, 2), np.nan, np.float32)])
    return Detections(np.array([[1.5, 2, 30, 40], [5, 5, 9, 9], [50, 50, 60, 70]]), np.array([0.9, 0.0, 1.0]),
                      lms, np.array([3, 3, -1]), "track+manual", ["detected", "held", "manual"])


def test_to_dict_round_trips_through_json_with_each_box_source():
    d = _dets()
    back = Detections.from_dict(json.loads(json.dumps(d.to_dict())))
    np.testing.assert_array_equal(back.xyxy, d.xyxy)
    np.testing.assert_array_equal(back.score, d.score)
    np.testing.assert_array_equal(back.landmarks, d.landmarks)  # NaN rows stay NaN
    assert back.track_id.tolist() == [3, 3, -1]
    assert back.sources.tolist() == ["detected", "held", "manual"]
    assert back.source == "track+manual"
    faces = d.to_dict()["faces"]
    assert faces[1] == {"box": [5.0, 5.0, 9.0, 9.0], "score": 0.0, "landmarks": None, "track_id": 3, "source": "held"}
    assert "track_id" not in faces[2]


def test_sources_follow_selection_merge_and_transforms():
    d = _dets()
    assert d[d.score > 0.5].sources.tolist() == ["detected", "manual"]
    assert d.scaled(2).translated(1, 1).clipped(10, 10).sources.tolist() == ["detected", "held", "manual"]
    merged = Detections.merge([d[:1], Detections.from_boxes([[0, 0, 4, 4]], source="label")])
    assert merged.sources.tolist() == ["detected", "label"]
    assert Detections.from_boxes([[0, 0, 4, 4]], source="manual").sources.tolist() == ["manual"]
    assert Detections.from_boxes([[0, 0, 4, 4]], source="centerface").sources.tolist() == ["detected"]
    with pytest.raises(ValueError):
        Detections(np.zeros((1, 4)), np.ones(1), None, None, "", ["guessed"])


def test_from_dict_reads_the_shapes_earlier_versions_wrote():
    # a report's "detections" (faceveil 0.1.0's Detections.to_json): a list of faces, no source
    old_report = [{"box": [1.23, 2.0, 3.0, 4.0], "score": 0.1235, "landmarks": None},
                  {"box": [5, 6, 7, 8], "score": 0.5, "landmarks": [[1, 2]] * 5, "track_id": 4}]
    d = Detections.from_dict(old_report)
    np.testing.assert_allclose(d.xyxy, [[1.23, 2, 3, 4], [5, 6, 7, 8]], rtol=1e-6)
    assert d.sources.tolist() == ["detected", "detected"] and d.track_id.tolist() == [-1, 4]
    assert d.has_landmarks.tolist() == [False, True]
    # the eval cache's columns (eval/workbench before the one form)
    cache = {"xyxy": [[0, 0, 10, 10]], "score": [0.7], "landmarks": None}
    c = Detections.from_dict(cache)
    assert c.xyxy.tolist() == [[0, 0, 10, 10]] and c.score.tolist() == pytest.approx([0.7])
    for empty in (None, [], {"xyxy": [], "score": [], "landmarks": None}, {"detector": "x", "faces": []}):
        assert len(Detections.from_dict(empty)) == 0


def test_the_tracker_marks_held_and_backfilled_boxes():
    from faceveil.track import Tracker, TrackParams

    t = Tracker(TrackParams(hold=5, lookahead=3), (200, 200))
    t.step(0, Detections.empty())
    found = t.step(1, Detections.from_boxes([[50, 50, 90, 90]], [0.9]))
    assert found.sources.tolist() == ["detected"]
    held = t.step(2, Detections.empty())
    assert held.sources.tolist() == ["held"] and held.score.tolist() == [0.0]
    assert t.backfill(0).sources.tolist() == ["backfilled"]


def test_a_report_from_an_earlier_version_gives_the_review_its_regions(tmp_path):
    from faceveil.review.runs import load_run_record

    (tmp_path / "out").mkdir()
    (tmp_path / "in").mkdir()
    box = [10.5, 20.25, 60.0, 90.0]
    for faces in ([{"box": box, "score": 0.9, "landmarks": None}],  # 0.1.0: no source
                  Detections.from_boxes([box], [0.9]).to_dict(2, 4)["faces"]):  # this version
        doc = {"files": [{"input": str(tmp_path / "in" / "a.jpg"), "output": str(tmp_path / "out" / "a.jpg"),
                          "status": "written", "detections": faces}]}
        rec = load_run_record(doc, tmp_path / "r.json", tmp_path / "out", tmp_path / "in")
        assert rec.regions == {"a.jpg": [box]} and rec.inputs == {"a.jpg"}


# the video track record: one module writes and reads it ----------------------------------------------------

def _record_file(tmp_path: Path, data: dict) -> Path:
    from faceveil.video.record import tracks_path

    out = tmp_path / "clip.mp4"
    p = tracks_path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data))
    return out


def test_a_format_1_track_record_is_still_read(tmp_path):
    """faceveil 0.1.0 wrote boxes as [x1, y1, x2, y2, track id, "d" | "h" | "m"]."""
    from faceveil.review.videos import tracks
    from faceveil.video.record import read_record

    frames = [[[1, 2, 30, 40, 0, "d"]], [[1, 2, 30, 40, 0, "h"], [5, 5, 9, 9, -1, "m"]], [[1, 2, 30, 40, 0, "h"]],
              [[1.5, 2, 30, 40, 0, "d"]], []]
    out = _record_file(tmp_path, {"format": 1, "frames": frames, "size": [64, 48], "fps": 25.0, "hold": 12,
                                  "errors": {}, "config": None, "options": {}, "key": "clip.mp4"})
    rec = read_record(out)
    assert [len(f) for f in rec["frames"]] == [1, 2, 1, 1, 0]
    assert rec["frames"][1].sources.tolist() == ["held", "manual"]
    assert rec["frames"][1].track_id.tolist() == [0, -1]
    (t,) = tracks(rec)
    assert (t["start"], t["end"], t["held"], t["longest_gap"]) == (0, 3, [[1, 2]], 2)


def test_the_track_record_round_trips_through_the_record_module(tmp_path):
    from faceveil.review.videos import tracks
    from faceveil.video import VideoOptions
    from faceveil.video.record import FORMAT, FrameLog, frame_faces, read_record, write_record

    class Anon:
        def describe(self):
            return {"method": "blur", "detector_params": {"threads": 2}}

    per_frame = [_dets(), Detections.empty(), _dets()[:2]]
    info = SimpleNamespace(fps=25.0, width=64, height=48, rotation=0)
    dst = tmp_path / "clip.mp4"
    log = FrameLog(tmp_path)  # the boxes of each frame as it is written: in a temporary file, not in memory
    for d in per_frame:
        log.append(frame_faces(d))
    write_record(dst, Anon(), VideoOptions(), "clip.mp4", info, log, {"1": "boom"}, 1, 0)
    raw = json.loads((tmp_path / ".faceveil" / "clip.mp4.tracks.json").read_text())
    assert raw["format"] == FORMAT == 2 and raw["config"] == {"method": "blur", "detector_params": {}}
    assert raw["frames"][0][1]["source"] == "held" and raw["frames"][1] == []
    rec = read_record(dst)
    for got, want in zip(rec["frames"], per_frame):
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.05)
        assert got.sources.tolist() == want.sources.tolist()
        assert got.track_id.tolist() == want.track_id.tolist()
    assert tracks(rec)[0]["held"] == [[0, 0], [2, 2]]


def test_a_damaged_track_record_is_one_error_naming_the_file(tmp_path):
    from faceveil.errors import FaceveilError
    from faceveil.video.record import read_record

    out = _record_file(tmp_path, {"format": 2, "frames": [[{"score": 1}]]})
    with pytest.raises(FaceveilError, match="clip.mp4.tracks.json"):
        read_record(out)


def test_an_eval_cache_from_an_earlier_version_is_reused_and_read(tmp_path):
    """The eval cache kept detections as columns {"xyxy", "score", "landmarks"}: still read, not recomputed."""
    from faceveil.eval.workbench import ORIGINAL, Variant, Workbench, acquired
    from faceveil.io.images import write_image

    root = tmp_path / "imgs"
    rgb = np.full((48, 64, 3), 200, np.uint8)
    rgb[::2] = 40  # stripes, so that a blackout box changes pixels
    write_image(root / "a.png", rgb, None, False, 95)
    wb = Workbench(root, cache_dir=tmp_path / "cache", progress=False)
    st = (root / "a.png").stat()
    old = {"dets": {"xyxy": [[8.0, 4.0, 40.0, 36.0]], "score": [0.9], "landmarks": None}, "size": [64, 48],
           "box": [8.0, 4.0, 40.0, 36.0], "desc": None, "has": ["desc"], "sig": [st.st_size, st.st_mtime_ns]}
    wb._cache_file(ORIGINAL).parent.mkdir(parents=True)
    wb._cache_file(ORIGINAL).write_text(json.dumps({"variant": ORIGINAL.as_dict(), "records": {"a.png": old}}))
    rec = wb.originals(["a.png"])["a.png"]
    assert rec == old and wb._det is None  # from the cache: no detector was even built
    assert acquired(rec["dets"], [8, 4, 40, 36], 0.5) and not acquired(rec["dets"], [44, 4, 60, 20], 0.5)
    orig, anon = wb.anonymize_image(Variant.of("blackout"), "a.png", rec)
    changed = np.abs(orig.astype(int) - anon.astype(int)).max(axis=2) > 0
    assert changed[14:26, 18:30].all() and not changed[:, 54:].any()
