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
  faceveil anonymize clip.mp4 -o out/                  videos: faces tracked, audio copied
  faceveil review out/ --originals photos/             check the result, fix missed faces
  faceveil dataset anonymize --format voc --images imgs/ --labels xml/ -o anon/
  faceveil detect photos/ --json boxes.json            boxes, scores and 5 landmarks per face
  faceveil methods                                     every method with its parameters
"""

EPILOG_ANON = """\
examples:
  faceveil anonymize photo.jpg -o out/
  faceveil anonymize photos/ -o out/ --report report.json --jobs 2
  faceveil anonymize photos/ -o out/ -m blur -p kernel=25            fixed 25x25 Gaussian
  faceveil anonymize photos/ -o out/ -m pixelate -p cells=16         16x16 mosaic per face
  faceveil anonymize clip.mp4 -o out/ --detect-every 2               videos: H.264, audio copied

Outputs keep the input's names, formats and folder tree; metadata (EXIF, GPS) is stripped unless
--keep-metadata. A file that could not be processed is not written: it is reported (exit code 1).
"""


# deface's options (its README) and what they are here: its users type them from habit.
DEFACE_FLAGS = {
    "--thresh": "--threshold (-t)",
    "--replacewith": "-m METHOD (blur, -m pixelate for mosaic, -m blackout for solid, -m overlay for img)",
    "--replaceimg": "-m overlay -p image=FILE",
    "--mosaicsize": "-m pixelate -p block=N",
    "--keep-audio": "nothing: audio is kept by default (--no-audio drops it)",
    "--scale": "--max-size N (the longer side to detect at)",
    "--boxes": "--shape box",
    "--draw-scores": "-m outline",
    "--disable-progress-output": "--quiet (-q)",
    "--ffmpeg-config": "--codec, --crf, --preset",
    "--execution-provider": "nothing: detection runs on the CPU with onnxruntime",
    "--backend": "nothing: detection runs on the CPU with onnxruntime",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that fits a screen: "-m, --method METHOD" once (argparse repeats the metavar per spelling),
    "usage: faceveil anonymize [options] INPUT [INPUT ...]" instead of every option again, and at most
    100 columns."""

    def __init__(self, prog, indent_increment=2, max_help_position=26, width=None):
        import shutil

        width = width or max(60, min(100, shutil.get_terminal_size().columns - 2))
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join(sorted(action.option_strings, key=len))
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _fill_text(self, text, width, indent):
        # Descriptions and epilogs keep their own line breaks (examples line up); only a line wider than the
        # screen is wrapped.
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         if len(indent + line) > width else indent + line for line in text.splitlines())

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # argparse undercounts the indented command names
            self._action_max_length += 4

    def _format_usage(self, usage, actions, groups, prefix):
        if usage is not None:
            return super()._format_usage(usage, actions, groups, prefix)
        shown = [a for a in actions if not a.option_strings or a.required]
        prog = self._prog
        if len(shown) < len(actions):
            self._prog = f"{prog} [options]"  # wrapped with the rest when the line is too long
        try:
            return super()._format_usage(usage, shown, groups, prefix)
        finally:
            self._prog = prog


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's message rules: one line, exit 2, "see --help", and "did you mean"
    for close option names and deface's spellings (argparse < 3.14 prints the whole usage block and
    suggests nothing; 3.14's suggest_on_error covers choices only)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter  # every command's help, wherever it is registered
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # collected across subcommands: name them against the subcommand that was chosen
            leaf = self._leaf(ns)
            flags = [a for a in extras if a.startswith("-") and len(a) > 1]
            if flags:
                leaf.error(f"unknown option {flags[0].split('=', 1)[0]}" + leaf._suggest(flags[0]))
            leaf.error(f"unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}")
        return ns

    def _leaf(self, ns) -> "ArgumentParser":
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(ns, action.dest, None) or "")
                if isinstance(chosen, ArgumentParser):
                    return chosen._leaf(ns)
        return self

    def _suggest(self, flag: str) -> str:
        import difflib

        flag = flag.split("=", 1)[0]
        if flag in DEFACE_FLAGS:
            return f" (deface's {flag}? here: {DEFACE_FLAGS[flag]})"
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
        return f"; did you mean {close[0]}?" if close else ""

    def error(self, message: str):
        import difflib

        message = message.replace("\n", " ")
        if "invalid choice" in message:  # e.g. a misspelt command
            import re

            m = re.search(r"invalid choice: '([^']*)'", message)
            choices = [c for a in self._actions if a.choices for c in a.choices if isinstance(c, str)]
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6) if m else []
            if close:
                message += f"; did you mean {close[0]}?"
        where = self.prog.partition(" ")[2]  # "anonymize" for "faceveil anonymize"
        self.exit(2, f"faceveil: error: {where + ': ' if where else ''}{message} (see `{self.prog} --help`)\n")


def default_settings() -> dict:
    """What a run without options uses (the default preset's detector and region, RegionParams for the
    rest): the one source help texts print their defaults from."""
    from dataclasses import fields

    from .anonymize import RegionParams
    from .detect.presets import DEFAULT_PRESET, PRESETS

    p = PRESETS[DEFAULT_PRESET]
    return {"detector": p["detector"], "detector_params": dict(p["params"]),
            "region": {**{f.name: f.default for f in fields(RegionParams)}, **p["region"]}}


def add_region_args(p: argparse.ArgumentParser) -> None:
    """--shape, --mask-scale, --feather with the defaults a run applies."""
    from .detect.presets import DEFAULT_PRESET

    reg = default_settings()["region"]
    r = p.add_argument_group("region")
    r.add_argument("--shape", choices=["ellipse", "box"],
                   help=f"region shape around each face (default {reg['shape']}: the {DEFAULT_PRESET} preset's)")
    r.add_argument("--mask-scale", type=float, metavar="X",
                   help=f"region size relative to the detected box (default {reg['mask_scale']}: the "
                        f"{DEFAULT_PRESET} preset's; deface's --mask-scale 1.3 is 1.6 here)")
    r.add_argument("--feather", type=float, metavar="F",
                   help=f"soft edge outside the region, fraction of face size (default {reg['feather']:g})")


def _add_detection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection")
    from .detect.presets import DEFAULT_PRESET, PRESETS

    d = default_settings()["detector_params"]
    g.add_argument("--detect", choices=list(PRESETS), metavar="PRESET",
                   help=f"{', '.join(list(PRESETS)[:-1])} or {list(PRESETS)[-1]}: "
                        f"fewer leaks cost time (default {DEFAULT_PRESET}; videos: {VIDEO_PRESET})")
    g.add_argument("--detector", "-d", metavar="NAME",
                   help="a detector (`faceveil detectors`) with its own defaults, not a preset")
    small = f", {d['small_threshold']} up to {d['small_px']:g} px" if d.get("small_threshold") != d["threshold"] else ""
    g.add_argument("--threshold", "-t", type=float, metavar="T", help=f"detection score cut (default {d['threshold']}{small}: the "
                   f"{DEFAULT_PRESET} preset's); lower finds more faces; sets every cut the detector has")
    g.add_argument("--max-size", type=int, metavar="PX", help="detect on a copy at most this long (px)")
    g.add_argument("--detector-param", "--dp", action="append", metavar="NAME=VALUE", default=[],
                   help="any detector parameter, repeatable")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = ArgumentParser(
        prog="faceveil", formatter_class=fmt, epilog=EPILOG_MAIN,
        description="Find every face in images and videos (anonymize) or in annotated datasets (dataset) and\n"
                    "hide it; check and fix the result in the browser (review); measure how well it worked\n"
                    "(eval leaks, eval privacy, bench).",
    )
    parser.add_argument("--version", action="version", version=f"faceveil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("anonymize", help="hide faces in images, videos or folders", formatter_class=fmt,
                       epilog=EPILOG_ANON, description="Detect faces in images and videos and hide them.")
    a.add_argument("inputs", nargs="+", metavar="INPUT", help="images, videos and/or folders (searched recursively)")
    a.add_argument("-o", "--output", metavar="OUT", help="output folder (created if missing)")
    a.add_argument("--method", "-m", default="blur", help="anonymization method (see `faceveil methods`); default blur")
    a.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[],
                   help="a method parameter, repeatable, e.g. -p kernel=25")
    add_region_args(a)
    _add_detection_args(a)
    o = a.add_argument_group("output")
    o.add_argument("--report", metavar="FILE", help="write a JSON summary: per file faces, method, params, time, errors")
    o.add_argument("--keep-metadata", action="store_true", help="keep EXIF/ICC metadata (stripped by default; GPS too)")
    o.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG/WebP quality (default 95)")
    o.add_argument("--in-place", action="store_true", help="overwrite the inputs instead of writing to -o (careful)")
    ex = o.add_mutually_exclusive_group()
    ex.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (default: refuse, naming the first)")
    ex.add_argument("--skip-existing", action="store_true", help="leave outputs that already exist alone")
    o.add_argument("--seed", type=int, default=0, help="seed for random methods (same seed, same output)")
    _add_common(a)
    from .cli_video import add_video_args

    add_video_args(a)
    a.set_defaults(func=cmd_anonymize)

    d = sub.add_parser("detect", help="write face boxes, scores and landmarks as JSON", formatter_class=fmt,
                       description="Detect faces in images only (a video's per-frame faces: `faceveil anonymize` "
                                   "writes them to OUT/.faceveil/<name>.tracks.json).",
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


def check_writable(path: str, what: str) -> None:
    """Refuse (bad usage, before any work) a file that could not be written at the end of a run.

    Probes the nearest existing folder with a temporary file: permission bits alone say nothing
    for root, a read-only mount or /proc. Creates no folder."""
    import tempfile

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{path}: {what} is a folder; give a file name")
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"{path}: cannot write {what}: {anc} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as exc:
        raise UsageError(f"{path}: cannot write {what} in {anc} ({exc.strerror or exc})") from None


def _write_result_file(path: str, data: bytes, what: str) -> None:
    from .io.atomic import write_bytes_atomic

    try:
        write_bytes_atomic(path, data)
    except OSError as exc:  # e.g. the disk filled up during the run
        raise FaceveilError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None


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
    if args.report:
        check_writable(args.report, "the report")
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
        report = {"faceveil": __version__, **describe, "files": [r.to_json() for r in results],
                  "skipped": [str(p) for p in skipped], "existing": [str(j.dst) for j in kept],
                  "summary": {"written": len(written), "failed": n_failed, "skipped": len(skipped), "faces": faces}}
        _write_result_file(args.report, json.dumps(report, indent=1).encode(), "the report")
    where = args.output if args.output else "in place"
    msg = f"faceveil: {len(written)} of {len(jobs)} files anonymized ({_faces_text(written)}) -> {where}"
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


def _faces_text(written) -> str:
    """"3 faces", or for videos "14387 face-frames in videos" (one face over 300 frames counts 300)."""
    from .cli_video import is_video_path

    n_img = sum(r.faces for r in written if not is_video_path(r.input))
    n_vid = sum(r.faces for r in written if is_video_path(r.input))
    img = f"{n_img} face{'' if n_img == 1 else 's'}"
    if not any(is_video_path(r.input) for r in written):
        return img
    vid = f"{n_vid} face-frame{'' if n_vid == 1 else 's'} in videos"
    return f"{img} in images, {vid}" if len(written) > sum(is_video_path(r.input) for r in written) else vid


def cmd_detect(args) -> int:
    from .io.images import is_image_path
    from .io.inputs import plan_jobs
    from .pipeline import Anonymizer
    from .batch import run_batch

    from .io.video import is_video_path

    cfg = _config(args)
    for p in args.inputs:
        if is_video_path(p) and not Path(p).is_dir():
            raise UsageError(f"{p}: a video; `faceveil detect` reads images only (`faceveil anonymize {p} -o OUT` "
                             "records a video's faces per frame in OUT/.faceveil/<name>.tracks.json)")
    if args.json:
        check_writable(args.json, "the detections")
    jobs, skipped = plan_jobs(args.inputs, ".", is_image_path, in_place=True)
    videos = sum(1 for p in skipped if is_video_path(p))
    if videos:
        print(f"faceveil: {videos} video{'s' if videos > 1 else ''} skipped (`faceveil detect` reads images only)",
              file=sys.stderr)
    describe = Anonymizer.from_config(cfg).describe()
    results = run_batch(cfg, jobs, "detect", args.jobs, _progress(args))
    n_failed = _report_failures(results)
    doc = {"faceveil": __version__, "detector": describe["detector"], "detector_params": describe["detector_params"],
           "files": [{"path": r.input, "size": r.size, "faces": r.detections, "error": r.error} for r in results]}
    text = json.dumps(doc, indent=1)
    if args.json:
        _write_result_file(args.json, text.encode(), "the detections")
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
        reg = default_settings()["region"]
        print(f"Region options for every method: --shape ellipse|box (default {reg['shape']}), --mask-scale "
              f"(default {reg['mask_scale']}), --feather (default {reg['feather']:g}).")
        print("Set a parameter with -p NAME=VALUE, e.g. faceveil anonymize in/ -o out/ -m blur -p kernel=25")
    else:
        from .detect.presets import DEFAULT_PRESET, PRESETS

        d = default_settings()
        presets = ", ".join(f"--detect {k}" for k in PRESETS)
        print(f"The CLI's default is {d['detector']} with the --detect {DEFAULT_PRESET} preset's parameters "
              f"({presets}; `faceveil detect --help`), which differ from the defaults listed above.")
        print("Choose another with --detector NAME (its own defaults); set a parameter with --dp NAME=VALUE.")
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
