"""Issue 19 item 1, the cli/ package: one set of option groups with the defaults a run applies,
explicit imports (no private names of the command line used elsewhere), and a --help that loads
no heavy library."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from faceveil.cli import build_parser

SRC = Path(__file__).resolve().parents[1] / "src" / "faceveil"


def _help_default(text: str, flag: str) -> str:
    text = " ".join(text.split())
    m = re.search(re.escape(flag) + r" [^(]*\(default ([^:;,)]+)", text)
    assert m, f"{flag}: no default in the help"
    return m.group(1).strip()


@pytest.mark.parametrize("argv", [["eval", "privacy"], ["eval", "detection"], ["eval", "quality"], ["bench"]])
def test_eval_and_bench_help_state_the_defaults_they_run_with(argv, tmp_path):
    """The eval commands had their own region/detection group that stated no defaults for the region and
    threshold; they now share anonymize's, whose help prints what the run resolves."""
    from dataclasses import fields

    from faceveil.anonymize import RegionParams
    from faceveil.cli.eval import workbench

    parser = build_parser()
    sub = parser
    for word in argv:
        sub = next(a for a in sub._actions if a.dest in ("command", "eval_command")).choices[word]
    text = sub.format_help()
    (tmp_path / "imgs").mkdir()
    extra = ["--pairs", "p.csv"] if argv[-1] in ("privacy", "bench") else []
    args = parser.parse_args([*argv, "--images", str(tmp_path / "imgs"), *extra, "-o", str(tmp_path / "o")])
    wb = workbench(args, tmp_path / "imgs")
    region = {**{f.name: f.default for f in fields(RegionParams)}, **wb.region}  # what the compositor applies
    assert _help_default(text, "--shape") == region["shape"]
    assert float(_help_default(text, "--mask-scale")) == region["mask_scale"]
    assert float(_help_default(text, "--feather")) == region["feather"]
    assert float(_help_default(text, "--threshold")) == wb.detector_params["threshold"]
    # and the same options as anonymize: --max-size reaches the detector as there
    args = parser.parse_args([*argv, "--images", str(tmp_path / "imgs"), *extra, "-o", "o", "--max-size", "640"])
    assert workbench(args, tmp_path / "imgs").detector_params["max_size"] == 640


def _imports(path: Path):
    """(module imported from, names) of every `from X import ...` in a file, relative ones resolved."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]  # a/b/c.py and a/b/__init__.py: a.b
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield module, [a.name for a in node.names]


def test_no_module_uses_private_names_of_the_command_line():
    """Command modules imported cli.py's private helpers (_add_detection_args, _config, ...): a loop no
    import graph showed. Each cli module now imports what it uses from cli.common by public name."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for module, names in _imports(path):
            if module == "faceveil.cli" or module.startswith("faceveil.cli."):
                bad += [f"{path.relative_to(SRC)}: {module}.{n}" for n in names if n.startswith("_")]
    assert not bad, bad


def test_commands_are_registered_by_explicit_imports():
    """No command module is loaded from a name string (importlib), so the import graph shows them all."""
    for path in sorted((SRC / "cli").glob("*.py")):
        assert "import_module" not in path.read_text(), path.name


def test_help_loads_no_heavy_library():
    code = ("import sys\nfrom faceveil.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'flask', 'dlib', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
