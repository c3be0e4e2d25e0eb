"""Command line: argument parsing and messages only; the work happens in the library.

Exit codes: 0 all done, 1 some items failed, 2 bad usage. No tracebacks unless --debug.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from . import __version__
from .errors import FaceveilError, UsageError

EPILOG_MAIN = """\
examples:
  faceveil anonymize photo.jpg -o out/                 blur every face (the default method)
  faceveil anonymize photos/ -o out/ --jobs 2          a whole tree, mirrored under out/
  faceveil anonymize photos/ -o out/ -m pixelate -p cells=10
  faceveil detect photos/ --json boxes.json            boxes, scores and 5 landmarks per face
  faceveil methods                                     every method with its parameters
  faceveil detectors                                   every detector with its parameters
"""

EPILOG_ANON = """\
examples:
  faceveil anonymize photo.jpg -o out/
  faceveil anonymize photos/ -o out/ --report report.json --jobs 2
  faceveil anonymize photos/ -o out/ -m blur -p kernel=25            fixed 25x25 Gaussian
  faceveil anonymize photos/ -o out/ -m blur -p kernel=9 -p sigma=3
  faceveil anonymize photos/ -o out/ -m pixelate -p cells=16         16x16 mosaic per face
  faceveil anonymize photos/ -o out/ -m blackout -p color=128        constant grey
  faceveil anonymize photos/ -o out/ -m overlay -p image=emoji.png
  faceveil anonymize photos/ -o out/ --threshold 0.1 --mask-scale 1.5 --shape box

Outputs keep the input's file names, formats and folder tree. Metadata (EXIF,
GPS) is stripped unless --keep-metadata. Nothing is written for a file that
could not be processed: it is reported, and the exit code is 1.
"""


def _add_detection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--detect", choices=["fast", "balanced", "thorough"], help="detection preset: fast, balanced "
                   "(default for images; videos default to fast) or thorough; fewer leaked faces costs time (see README)")
    g.add_argument("--detector", "-d", help="detector name (see `faceveil detectors`), its own defaults instead of a preset")
    g.add_argument("--threshold", "-t", type=float, help="detection threshold (lower finds more faces; default: the preset's)")
    g.add_argument("--max-size", type=int, help="downscale images whose longer side exceeds this before detecting")
    g.add_argument("--detector-param", "--dp", action="append", metavar="NAME=VALUE", default=[],
                   help="any detector parameter, repeatable")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="faceveil", formatter_class=fmt, epilog=EPILOG_MAIN,
        description="Find every face in images and hide it; measure how well it worked.",
    )
    parser.add_argument("--version", action="version", version=f"faceveil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("anonymize", help="hide faces in images or folders", formatter_class=fmt,
                       epilog=EPILOG_ANON, description="Detect faces and hide them with the chosen method.")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders (searched recursively)")
    a.add_argument("-o", "--output", metavar="OUT", help="output folder (created if missing)")
    a.add_argument("--method", "-m", default="blur", help="anonymization method (see `faceveil methods`); default blur")
    a.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[],
                   help="a method parameter, repeatable, e.g. -p kernel=25")
    r = a.add_argument_group("region")
    r.add_argument("--shape", choices=["ellipse", "box"], help="region shape around each face (default: the preset's)")
    r.add_argument("--mask-scale", type=float, help="region size relative to the detected box (default: the preset's)")
    r.add_argument("--feather", type=float, help="soft edge outside the region, fraction of face size (default 0)")
    _add_detection_args(a)
    o = a.add_argument_group("output")
    o.add_argument("--report", metavar="FILE", help="write a JSON summary: per file faces, method, params, time, errors")
    o.add_argument("--keep-metadata", action="store_true", help="keep EXIF/ICC metadata (stripped by default; GPS too)")
    o.add_argument("--jpeg-quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    o.add_argument("--in-place", action="store_true", help="overwrite the inputs instead of writing to -o (careful)")
    ex = o.add_mutually_exclusive_group()
    ex.add_argument("--overwrite", action="store_true",
                    help="replace outputs that already exist (default: refuse, naming the first one)")
    ex.add_argument("--skip-existing", action="store_true", help="leave outputs that already exist alone")
    o.add_argument("--seed", type=int, default=0, help="seed for random methods (same seed, same output)")
    _add_common(a)
    from .cli_video import add_video_args

    add_video_args(a)
    a.set_defaults(func=cmd_anonymize)

    d = sub.add_parser("detect", help="write face boxes, scores and landmarks as JSON", formatter_class=fmt,
                       epilog="example:\n  faceveil detect photos/ --json boxes.json --threshold 0.3")
    d.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    d.add_argument("--json", metavar="FILE", help="write results here (default: standard output)")
    _add_detection_args(d)
    _add_common(d)
    d.set_defaults(func=cmd_detect)

    m = sub.add_parser("methods", help="list anonymization methods and their parameters")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_list, registry="methods")
    t = sub.add_parser("detectors", help="list detectors and their parameters")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_list, registry="detectors")

    # Command groups that later features fill in: each module in the lists
    # below has `register(subparsers)` adding its commands.
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    if EVAL_MODULES:
        ev = sub.add_parser("eval", help="measure leaks, privacy, utility and quality")
        ev_sub = ev.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
        for module in EVAL_MODULES:
            importlib.import_module(module).register(ev_sub)
    if TRAIN_MODULES:
        tr = sub.add_parser("train", help="train the learned models faceveil ships (needs the train extra: torch)")
        tr_sub = tr.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)
        for module in TRAIN_MODULES:
            importlib.import_module(module).register(tr_sub)
    return parser


# Modules adding top-level commands (e.g. dataset, review) and `faceveil eval ...` commands.
COMMAND_MODULES: list[str] = ["faceveil.dataset_cli", "faceveil.review.cli", "faceveil.eval.bench", "faceveil.bank_cli"]
EVAL_MODULES: list[str] = ["faceveil.eval.commands", "faceveil.eval.cli_leaks", "faceveil.train.train_on_anon"]
# Detection preset for videos when neither --detect nor --detector is given (images: presets.DEFAULT_PRESET);
# one constant, shared with faceveil.video's Python API.
from .detect.presets import VIDEO_PRESET  # noqa: E402

# `faceveil train ...` commands (each module's `register(subparsers)`; torch is imported only when one runs).
TRAIN_MODULES: list[str] = ["faceveil.train.learnedblur_cli", "faceveil.train.harmonizer"]


def _detector_params(args) -> dict:
    from .registry import parse_assignments

    params = parse_assignments(args.detector_param)
    if args.max_size is not None:
        params["max_size"] = args.max_size
    return params


def _config(args, method: str = "blur", method_params: dict | None = None, region: dict | None = None):
    from .detect.presets import resolve
    from .pipeline import AnonymizerConfig

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    detector, detector_params, region = resolve(args.detect, args.detector, _detector_params(args), region, args.threshold)
    return AnonymizerConfig(
        method=method, method_params=method_params or {}, detector=detector,
        detector_params=detector_params, region=region,
        seed=getattr(args, "seed", 0), keep_metadata=getattr(args, "keep_metadata", False),
        jpeg_quality=getattr(args, "jpeg_quality", 95),
    )


def _progress(args) -> bool:
    return not args.quiet


def _report_failures(results) -> int:
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"faceveil: error: {r.error}", file=sys.stderr)
    return len(failed)


def cmd_anonymize(args) -> int:
    from .io.inputs import plan_jobs
    from .pipeline import Anonymizer
    from .registry import parse_assignments
    from .batch import run_batch

    region = {k: v for k, v in (("shape", args.shape), ("mask_scale", args.mask_scale), ("feather", args.feather))
              if v is not None}
    if not 1 <= args.jpeg_quality <= 100:
        raise UsageError("--jpeg-quality must be between 1 and 100")
    cfg = _config(args, args.method, parse_assignments(args.param), region)
    if args.in_place and args.output:
        raise UsageError("give either -o OUT or --in-place, not both")
    from .cli_video import is_media_path, run_videos, split_video_jobs, video_options

    video_options(args)  # bad video options fail before any work
    jobs, skipped = plan_jobs(args.inputs, args.output, is_media_path, args.in_place)
    from .io.inputs import check_existing

    jobs, kept = check_existing(jobs, "overwrite" if args.overwrite else "skip" if args.skip_existing else "refuse")
    from .io.atomic import remove_stale_temporaries

    # The outputs' folders and their .faceveil/ (video track records, see video.tracks_path).
    stale = remove_stale_temporaries([d for j in jobs for d in (j.dst.parent, j.dst.parent / ".faceveil")])
    image_jobs, video_jobs = split_video_jobs(jobs)
    # Build once here so bad names, parameters or a missing model fail before any work.
    describe = Anonymizer.from_config(cfg).describe()
    vcfg = cfg
    if video_jobs and args.detect is None and args.detector is None:
        # Per-frame cost decides video speed and tracking (hold, look-ahead) bridges a missed frame,
        # so videos default to the fast preset (bench/bench_video.py measures leaks and fps).
        vcfg = _config(argparse.Namespace(**{**vars(args), "detect": VIDEO_PRESET}), args.method,
                       parse_assignments(args.param), region)
        if image_jobs:
            describe["video"] = Anonymizer.from_config(vcfg).describe()
        elif video_jobs:
            describe = Anonymizer.from_config(vcfg).describe()
    results = run_batch(cfg, image_jobs, "anonymize", args.jobs, _progress(args)) if image_jobs else []
    results += run_videos(vcfg, video_jobs, args)
    n_failed = _report_failures(results)
    written = [r for r in results if r.status == "written"]
    faces = sum(r.faces for r in written)
    if args.report:
        from .io.atomic import write_bytes_atomic

        report = {"faceveil": __version__, **describe, "files": [r.to_json() for r in results],
                  "skipped": [str(p) for p in skipped], "existing": [str(j.dst) for j in kept],
                  "summary": {"written": len(written), "failed": n_failed, "skipped": len(skipped), "faces": faces}}
        write_bytes_atomic(args.report, json.dumps(report, indent=1).encode())
    where = args.output if args.output else "in place"
    msg = f"faceveil: {len(written)} of {len(jobs)} files anonymized ({faces} faces) -> {where}"
    if skipped:
        msg += f"; {len(skipped)} non-image files skipped"
    if kept:
        msg += f"; {len(kept)} existing outputs left as they were"
    if stale:
        msg += f"; {stale} temporary files of interrupted runs removed"
    if n_failed:
        msg += f"; {n_failed} failed (not written)"
    print(msg, file=sys.stderr)
    # Video frames blurred or dropped, or a truncated video written under --allow-truncated.
    partial = any(getattr(r, "failed_frames", 0) or getattr(r, "truncated", None) for r in written)
    return 1 if n_failed or partial else 0


def cmd_detect(args) -> int:
    from .io.images import is_image_path
    from .io.inputs import plan_jobs
    from .pipeline import Anonymizer
    from .batch import run_batch

    cfg = _config(args)
    jobs, _ = plan_jobs(args.inputs, ".", is_image_path, in_place=True)
    describe = Anonymizer.from_config(cfg).describe()
    results = run_batch(cfg, jobs, "detect", args.jobs, _progress(args))
    n_failed = _report_failures(results)
    doc = {"faceveil": __version__, "detector": describe["detector"], "detector_params": describe["detector_params"],
           "files": [{"path": r.input, "size": r.size, "faces": r.detections, "error": r.error} for r in results]}
    text = json.dumps(doc, indent=1)
    if args.json:
        from .io.atomic import write_bytes_atomic

        write_bytes_atomic(args.json, text.encode())
        total = sum(r.faces for r in results)
        print(f"faceveil: {total} faces in {len(results) - n_failed} files -> {args.json}", file=sys.stderr)
    else:
        print(text)
    return 1 if n_failed else 0


def cmd_list(args) -> int:
    if args.registry == "methods":
        from .anonymize import METHODS as reg
    else:
        from .detect import DETECTORS as reg
    items = reg.describe()
    if args.json:
        print(json.dumps(items, indent=1, default=str))
        return 0
    for item in items:
        print(f"{item['name']}: {item['summary']}")
        for p in item["params"]:
            d = p["default"]
            if isinstance(d, tuple):  # written the way --dp/-p take it: "0.6,0.9"; "" is none
                default = repr(",".join(map(str, d)))
            else:
                default = json.dumps(d) if not isinstance(d, str) else repr(d)
            print(f"    {p['name']} ({p['type']}, default {default})")
            print(textwrap.indent(textwrap.fill(p["help"], 70), " " * 8))
        print()
    if args.registry == "methods":
        print("Region options for every method: --shape ellipse|box, --mask-scale, --feather.")
        print("Set a parameter with -p NAME=VALUE, e.g. faceveil anonymize in/ -o out/ -m blur -p kernel=25")
    else:
        print("Choose with --detector NAME; set a parameter with --dp NAME=VALUE.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    from .signals import Terminated, terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            return args.func(args)
    except Terminated:
        print("faceveil: terminated; no partial files were left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("faceveil: interrupted; no partial files were left", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except UsageError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"faceveil: error: {exc}", file=sys.stderr)
        return 2
    except FaceveilError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"faceveil: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
