"""Photo speed, end to end: the deface CLI against faceveil's CLI presets on the same files, in one run.

    python bench/bench_photo_speed.py [--sets facemask,wider] [--limit 100] [--rounds 3] [--settings 0,4,6]

Per set: evenly spaced held-out photos (faceveil.eval.splits) copied into a temporary folder; each
round runs every setting once, in turn (deface CLI --thresh 0.2; faceveil anonymize --detect fast,
fast with int8 weights, the balanced preset as it was before zoom tiles, the default, the default
with int8 weights, and the default in one process, --jobs 1), and the
table keeps each setting's fastest round (a shared machine: the other rounds carry other jobs' load).
ms/photo includes each CLI's start-up (model load) spread over the photos; CPU ms/photo is the CLI's user + system
time (all its threads; each setting's lowest round), steadier than wall time on a shared machine. Leaks are not measured here:
`faceveil eval leaks` and bench/bench_recall.py do that. ``--compare SRC`` also runs each faceveil setting
with another checkout's src/ (PYTHONPATH=SRC) right after this one's, rows marked "(SRC's name)": a before
and after in the same run, under the same load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import compile_bytecode, int8_line, labelled_sets, pick, run_timed
from faceveil.eval.splits import split
from faceveil.io.labels import find_image, read_eval_labels

BIN = Path(sys.executable).parent
# The balanced preset before zoom tiles (its 2x pass over the whole photo; photos under 800 px enlarged whole).
BEFORE = ["--dp", "zoom_tiles=false"]
SETTINGS = {
    "deface CLI, thresh 0.2": None,
    "faceveil --detect fast": ["--detect", "fast"],
    "faceveil --detect fast, int8": ["--detect", "fast", "--dp", "precision=int8"],
    "faceveil balanced, before (whole-photo zoom)": BEFORE,
    "faceveil balanced (default)": [],
    "faceveil balanced, int8": ["--dp", "precision=int8"],
    # the default runs a folder of >= 32 photos per core in one worker process per core (one onnxruntime thread
    # each); this row is one process with a thread per core, the default before
    "faceveil balanced, one process (--jobs 1)": ["--jobs", "1"],
}



def run(setting: str, src: Path, work: Path, code: Path | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system, every thread) for one setting on the photos in ``src``; ``code``:
    run faceveil from that checkout's src/."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    if SETTINGS[setting] is None:
        shutil.copytree(src, out)  # deface writes NAME_anonymized.jpg beside each input
        cmd = [str(BIN / "deface"), *sorted(str(p) for p in out.iterdir()), "--thresh", "0.2", "--replacewith", "blur"]
    else:
        cmd = [str(BIN / "faceveil"), "anonymize", str(src), "-q", "-o", str(out), *SETTINGS[setting]]
    try:
        seconds, _, cpu = run_timed(cmd, env=env, ok=(0,))
    except RuntimeError as exc:
        raise SystemExit(f"{setting} failed: {exc}") from None
    return seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="facemask,wider")
    ap.add_argument("--limit", type=int, default=100, help="evenly spaced held-out photos per set (0: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", type=Path, metavar="SRC",
                    help="also run the faceveil settings from this src/ folder (another checkout's), in turn")
    ap.add_argument("--settings", help="only these rows, by their 0-based index in SETTINGS (0: deface)")
    a = ap.parse_args()
    print(int8_line())
    if a.settings:
        names = list(SETTINGS)
        keep = {names[int(i)] for i in a.settings.split(",")} | {names[0]}  # the peer is always run
        for name in names:
            if name not in keep:
                del SETTINGS[name]
    runs = [(s, None) for s in SETTINGS]
    compile_bytecode()
    if a.compare:
        a.compare = a.compare.resolve()
        label = a.compare.parent.name if a.compare.name == "src" else a.compare.name
        compile_bytecode(a.compare)
        runs = [r for s in SETTINGS for r in [(s, None)] + ([(s, a.compare)] if SETTINGS[s] is not None else [])]
    rows = []
    for setname, images, labels in labelled_sets(a.sets):
        keys = [k for k in read_eval_labels(labels) if find_image(images, k)]
        keys = pick(split(keys)[1], a.limit)
        with tempfile.TemporaryDirectory(prefix="bench_photo_speed_") as tmp:
            work = Path(tmp)
            src = work / "in"
            src.mkdir()
            for k in keys:
                p = find_image(images, k)
                shutil.copy(p, src / (Path(k).with_suffix("").as_posix().replace("/", "__") + p.suffix))
            best = {r: float("inf") for r in runs}
            cpu = dict(best)
            for r in range(a.rounds):
                for s, code in runs:
                    wall, c = run(s, src, work, code)
                    best[s, code], cpu[s, code] = min(best[s, code], wall), min(cpu[s, code], c)
                    print(f"{setname} round {r + 1}: {s}{f' ({code})' if code else ''}: best {best[s, code]:.1f} s",
                          file=sys.stderr, flush=True)
            base = best["deface CLI, thresh 0.2", None] / len(keys) * 1000
            base_cpu = cpu["deface CLI, thresh 0.2", None] / len(keys) * 1000
            for s, code in runs:
                ms, cms = best[s, code] / len(keys) * 1000, cpu[s, code] / len(keys) * 1000
                name = f"{s} ({label})" if code else s
                rows.append(f"| {setname} ({len(keys)}) | {name} | {ms:.0f} | {1000 / ms:.1f} | {base / ms:.2f}x | "
                            f"{cms:.0f} | {base_cpu / cms:.2f}x |")
    print("\n| photos | setting | ms/photo | photos/s | x deface | CPU ms/photo | x deface (CPU) |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
