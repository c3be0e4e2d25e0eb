"""The product and the lab apart (issue 19, items 5 and 6), checked on the tree itself.

- dead code named in the issue is gone (it could only mislead a reader);
- test fixtures are not in the package; nothing under src/ imports bench/, research/ or tests/;
- the reusable benchmarks import faceveil's public names and one shared helper module (bench/common.py):
  no sys.path patching into each other, no private (`_name`) faceveil functions;
- one-off probes live in research/, each described in research/README.md;
- README.md is a user's README starting with the two commands, and every number it used to hold
  is still somewhere in README.md or docs/.
"""
from __future__ import annotations

import ast
import inspect
import re

from conftest import ROOT

SRC = ROOT / "src" / "faceveil"
BENCH = ROOT / "bench"
RESEARCH = ROOT / "research"
REUSABLE = ["bench_images", "bench_video", "bench_recall", "bench_dataset", "bench_replace", "bench_learnedblur",
            "bench_harmonizer", "review_flags", "wider_centerface", "fault_matrix", "bench_int8", "bench_keep",
            "contact_sheet", "bench_photo_speed", "int8_calib", "train_on_anon_ablation"]
PROBES = ["explore_recall", "replay_recall", "recall_levers", "cycle_probes", "zoom_tiles", "masked_replay", "thorough_region", "recall3",
          "wider_misses", "photo_overhead", "fd_caricature", "mixed_precision", "video_cpu",
          "fd_weights", "hikers", "big_gate", "donor_drift", "bf16_openvino", "occluder_labels",
          "skipped_cover", "masked_video", "face_plate", "face_focus", "coarse_gate", "weak_confirm",
          "replace_weak", "coarse_every", "shot_cuts", "turned_tracks", "cover_classifier", "nested_faces",
          "bank_ghosts", "int8_distill", "border_faces"]


def _imports(path):
    """(module, names) of every import statement in a file (inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module or "", [a.name for a in node.names]


def test_dead_code_is_gone():
    import faceveil
    from faceveil.batch import run_batch
    from faceveil.detect import centerface
    from faceveil.eval import metrics

    assert not hasattr(faceveil, "Pipeline") and "Pipeline" not in faceveil.__all__
    assert "on_result" not in inspect.signature(run_batch).parameters
    assert not hasattr(metrics, "FrechetDistance")
    assert "_lock" not in inspect.getsource(centerface.CenterFace)


def test_fixtures_are_out_of_the_package_and_src_imports_no_lab():
    assert not (SRC / "track" / "synthetic.py").exists()
    assert (ROOT / "tests" / "synthetic_video.py").is_file()
    for path in SRC.rglob("*.py"):
        for module, _ in _imports(path):
            assert module.split(".")[0] not in ("bench", "research", "tests", "conftest", "synthetic_video"), \
                f"{path.relative_to(ROOT)} imports {module}"


def test_benchmarks_use_public_names_and_one_helper():
    files = sorted(BENCH.glob("*.py"))
    names = {p.stem for p in files}
    assert set(REUSABLE) <= names, set(REUSABLE) - names
    assert not names & set(PROBES), "one-off probes belong in research/"
    assert names <= set(REUSABLE) | {"common"}, names - set(REUSABLE) - {"common"}
    for path in files:
        text = path.read_text()
        if path.stem != "common":
            assert "sys.path" not in text, f"{path.name} patches sys.path (bench/common.py is the one place)"
        for module, imported in _imports(path):
            top = module.split(".")[0]
            assert top not in names - {"common"}, f"{path.name} imports another benchmark ({module})"
            if top == "faceveil":
                private = [n for n in [*module.split("."), *imported] if n.startswith("_") and n != "__version__"]
                assert not private, f"{path.name} imports private {private} from {module}"
        assert not re.search(r"\b(det|detector|self\.det)\._[a-z]", text), f"{path.name} calls a private method"


def test_research_has_each_probe_and_says_what_it_answered():
    readme = (RESEARCH / "README.md").read_text()
    for probe in PROBES:
        assert (RESEARCH / f"{probe}.py").is_file(), probe
        assert f"`{probe}.py`" in readme, f"research/README.md does not describe {probe}.py"


def test_readme_is_for_users():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 16_000, len(text.encode())
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    for doc in ("recall.md", "learned-models.md", "benchmarks.md", "architecture.md"):
        assert (ROOT / "docs" / doc).is_file(), doc
        assert f"docs/{doc}" in text, f"README.md does not link docs/{doc}"


def _doc_commands():
    """(file, command) for every `faceveil ...` line in docs/*.md code blocks, continuations joined."""
    out = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), re.S | re.M):
            if lang in ("", "bash", "sh", "console"):
                out += [(path.name, line.strip()) for line in body.replace("\\\n", " ").splitlines()
                        if line.strip().startswith("faceveil ") and "..." not in line]
    return out


def test_docs_commands_are_accepted_by_the_parser(capsys):
    """The commands moved from README.md into docs/ stay valid (README's own are run by test_readme_commands)."""
    import shlex

    from faceveil.cli import build_parser

    commands = _doc_commands()
    assert len(commands) >= 20, commands
    parser = build_parser()
    for name, cmd in commands:
        try:
            parser.parse_args(shlex.split(cmd, comments=True)[1:])
        except SystemExit as exc:
            raise AssertionError(f"docs/{name}: {cmd}: exit {exc.code}: {capsys.readouterr().err}") from None
