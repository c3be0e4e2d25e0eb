"""The option groups several commands share, and the one place options become an AnonymizerConfig."""
from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import sys
from pathlib import Path

from ..detect.presets import VIDEO_PRESET
from ..errors import FaceveilError, UsageError, one_line
from ..io.atomic import too_long


def default_settings() -> dict:
    """What a run without options uses (the default preset's detector and region, RegionParams for the
    rest): the one source help texts print their defaults from."""
    from dataclasses import fields

    from ..anonymize import RegionParams
    from ..detect.presets import DEFAULT_PRESET, PRESETS

    p = PRESETS[DEFAULT_PRESET]
    return {"detector": p["detector"], "detector_params": dict(p["params"]),
            "region": {**{f.name: f.default for f in fields(RegionParams)}, **p["region"]}}


def add_region_args(p: argparse.ArgumentParser) -> None:
    """--shape, --mask-scale, --feather with the defaults a run applies."""
    from ..detect.presets import DEFAULT_PRESET

    reg = default_settings()["region"]
    r = p.add_argument_group("region")
    r.add_argument("--shape", choices=["ellipse", "box"],
                   help=f"region shape around each face (default {reg['shape']}: the {DEFAULT_PRESET} preset's)")
    r.add_argument("--mask-scale", metavar="X",
                   help=f"region / face box size, at least 1.0, for an ellipse 1.1; or X,Y@PX: Y for boxes from PX px "
                        f"(default {reg['mask_scale']}; deface's --mask-scale 1.3 is 1.6)")
    r.add_argument("--feather", type=float, metavar="F",
                   help=f"soft edge outside the region, fraction of face size (default {reg['feather']:g})")


def add_detection_args(p: argparse.ArgumentParser, videos: bool = True) -> None:
    """--detect, --detector, --threshold, --max-size, --detector-param with the defaults a run applies; ``videos``:
    the command reads videos too, whose defaults are the video preset's (photo-only commands' help named them)."""
    g = p.add_argument_group("detection")
    from ..detect.presets import DEFAULT_PRESET, PRESETS

    d = default_settings()["detector_params"]
    still = "/".join(k for k in PRESETS if k != VIDEO_PRESET)
    g.add_argument("--detect", choices=list(PRESETS), metavar="PRESET",
                   help=f"{still}: slower, safer (default {DEFAULT_PRESET}; videos: {VIDEO_PRESET})" if videos else
                   f"{still}: slower, safer; or {VIDEO_PRESET} (default {DEFAULT_PRESET})")
    g.add_argument("--detector", "-d", metavar="NAME",
                   help="a detector (`faceveil detectors`) with its own defaults, not a preset")
    small = f", {d['small_threshold']} up to {d['small_px']:g} px" if d.get("small_threshold") != d["threshold"] else ""
    v = PRESETS[VIDEO_PRESET]["params"]  # videos run the video preset's cuts: the help named only the photos'
    vt = f"; videos {v['threshold']}, {v['small_threshold']}" if videos else ""
    g.add_argument("--threshold", "-t", type=float, metavar="T", help=f"detection score cut (default {d['threshold']}"
                   f"{small}{vt}); lower finds more faces; sets every cut (haar has none)")
    # not a cap on the detector's work: the presets' main pass runs at most PX long, but their min_factor (>= 0.5)
    # adds a pass in PX tiles so faces are still seen at >= 1/2 size (balanced/thorough: any shrink, at own size)
    g.add_argument("--max-size", type=whole(), metavar="PX",
                   help="main pass at most PX long; presets keep >= 1/2 size in PX tiles (0: any)")
    g.add_argument("--detector-param", "--dp", action="append", metavar="NAME=VALUE", default=[],
                   help="any detector parameter, repeatable")


def add_common_args(p: argparse.ArgumentParser, jobs: bool = True) -> None:
    """--jobs (where the command runs a batch in worker processes), --quiet, --debug."""
    if jobs:
        p.add_argument("--jobs", "-j", type=int, default=None,
                       help="worker processes (default 1; one per core when each gets 32 images)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def batch_jobs(requested: int | None, images: int) -> int:
    """--jobs as given, or without it ``batch.auto_jobs``: one worker per core once each gets 32 images, else 1."""
    from ..batch import auto_jobs

    if images:
        warn_many_jobs(requested)
    return requested if requested is not None else auto_jobs(images)


def warn_many_jobs(requested: int | None) -> None:
    """One line when --jobs asks for more local worker processes than there are cores: they share the cores, each
    with its own models (300 photos on 2 cores: -j 2 25 s, -j 8 37 s and 1.5 GB)."""
    from ..batch import usable_cores

    cores = usable_cores()
    if requested is not None and requested > cores:
        print(f"faceveil: warning: --jobs {requested} is more than the {cores} core"
              f"{'s' if cores > 1 else ''}: the workers share them, each with its own models (slower, more memory); "
              f"--jobs {cores} is the most that helps", file=sys.stderr)


def note_int8_build(*detectors, quiet: bool = False) -> None:
    """One line on stderr when one of these detectors runs the int8 CenterFace's 7-bit build (x86 without VNNI:
    centerface.int8_build): its results are not the bytes a VNNI CPU gives, and docs/int8.md measures both."""
    if not quiet and any(getattr(d, "int8_7bit", False) for d in detectors):
        print("faceveil: note: this CPU has no VNNI instructions: the int8 CenterFace runs its 7-bit build (other "
              "bytes than on CPUs with VNNI; docs/int8.md)", file=sys.stderr)


def warn_unchecked_donors(method) -> None:
    """One line on stderr when replace averages a bank of single donors with ``reject=false``: then nothing checks
    that a replaced face does not look like one of its donors (dlib), neither as an aligned crop nor where it is
    placed (the checks replace runs by default with such a bank; banks of averages were checked when built)."""
    synth = getattr(method, "synth", None)
    if synth is not None and synth.bank.kind == "donors" and not method.params.reject:
        print(f"faceveil: warning: {one_line(method.params.bank)}: reject=false averages these donors unchecked: a "
              "replaced face may look like one of them to a face recogniser (dlib)", file=sys.stderr)


def warn_weak(name: str, params) -> None:
    """One line on stderr for a method or parameter value measured weak (anonymize.weak): taken, not refused."""
    from ..anonymize.weak import weak_warning

    line = weak_warning(name, params)
    if line:
        print(line, file=sys.stderr)


def done_verb(method) -> str:
    """What a run's summary says its written files are: -m outline said "anonymized", and hid no face."""
    return "anonymized" if method.hides else "outlined, NOT anonymized"


# What each eval command imports from the eval extra: checked before any work (without it, eval leaks ran the whole
# evaluation and then failed on matplotlib with a traceback; eval privacy failed on an empty array).
EVAL_NEEDS = {"leaks": ("matplotlib",), "detection": ("matplotlib", "scipy"), "quality": ("skimage", "scipy"),
              "privacy": ("matplotlib", "scipy", "dlib", "face_recognition_models"),
              "bench": ("matplotlib", "scipy", "skimage", "dlib", "face_recognition_models")}


def need_eval_extra(command: str) -> None:
    """UsageError (one line) when a module ``faceveil eval <command>`` (or bench) needs is not installed."""
    import importlib.util

    missing = [m for m in EVAL_NEEDS[command] if importlib.util.find_spec(m) is None]
    if missing:
        name = "bench" if command == "bench" else f"eval {command}"
        raise UsageError(f"`faceveil {name}` needs the eval extra ({', '.join(missing)} missing): "
                         "pip install 'faceveil[eval]'")


def check_backend(args) -> None:
    """--backend/--address agree, and Ray is installed for --backend ray: before any work (without Ray, a dataset's
    OUT got its manifest and labels before the refusal)."""
    import importlib.util

    if args.address and args.backend != "ray":
        raise UsageError("--address needs --backend ray")
    if args.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--backend ray needs Ray: pip install 'faceveil[ray]'")
    if args.backend == "ray":
        from ..dataset.backends import check_ray_address

        check_ray_address(args.address)


def evenly_spaced(items: list, n: int) -> list:
    """``n`` evenly spaced items, first and last included (all of them when n is 0 or covers them)."""
    if not n or n >= len(items):
        return list(items)
    import numpy as np

    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def region_from_args(args) -> dict:
    """The region options given (--shape, --mask-scale, --feather); the rest is the preset's."""
    from ..anonymize.compositor import format_mask_scale, parse_mask_scale

    scale = args.mask_scale
    if scale is not None:  # "1.25" is the number 1.25, as a report records it
        try:
            scale = format_mask_scale(parse_mask_scale(scale))
        except ValueError as exc:
            raise UsageError(f"--mask-scale: {exc}") from None
    return {k: v for k, v in (("shape", args.shape), ("mask_scale", scale), ("feather", args.feather))
            if v is not None}


def detector_params_from_args(args) -> dict:
    """--detector-param assignments, plus --max-size."""
    from ..registry import parse_assignments

    params = parse_assignments(args.detector_param, "--detector-param")
    if args.max_size is not None:
        if "max_size" in params and params["max_size"] != str(args.max_size):  # --max-size won without a word
            raise UsageError(f"--max-size {args.max_size} and --detector-param max_size={params['max_size']}: give "
                             "one of them")
        params["max_size"] = args.max_size
    return params


def resolve_detection(args, region: dict | None = None) -> tuple[str, dict, dict]:
    """(detector, detector parameters, region) as `faceveil anonymize` resolves the detection options."""
    from ..detect.presets import resolve

    return resolve(args.detect, args.detector, detector_params_from_args(args), region, args.threshold)


def check_jpeg_quality(args) -> None:
    from ..pipeline import check_jpeg_quality as check

    check(args.jpeg_quality, "--jpeg-quality")


def anonymizer_config(args, method: str = "blur", method_params: dict | None = None, region: dict | None = None,
                      *, detection: tuple[str, dict, dict] | None = None, seed: int | None = None):
    """The AnonymizerConfig the options ask for: detection resolved from them unless ``detection``
    (detector, parameters, region) is given, seed, metadata and JPEG quality from them unless absent."""
    from ..pipeline import AnonymizerConfig

    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    detector, detector_params, region = detection or resolve_detection(args, region)
    return AnonymizerConfig(
        method=method, method_params=method_params or {}, detector=detector,
        detector_params=detector_params, region=region,
        seed=getattr(args, "seed", 0) if seed is None else seed, keep_metadata=getattr(args, "keep_metadata", False),
        jpeg_quality=getattr(args, "jpeg_quality", 95),
    )


# A result file (--report, --json, --summary) named "-" is standard output, as ffmpeg and most tools read it: a file
# named "-" was written in the working folder, and nothing printed.
STDOUT = "-"


def check_writable(path: str, what: str) -> None:
    """Refuse (bad usage, before any work) a file that could not be written at the end of a run.

    Probes the nearest existing folder with a temporary file: permission bits alone say nothing
    for root, a read-only mount or /proc. Creates no folder."""
    import tempfile

    if path == STDOUT:
        return
    p = Path(path)
    why = too_long(p)
    if why:
        raise UsageError(f"{one_line(path)}: cannot write {what} ({why})")
    try:
        if p.is_dir():
            raise UsageError(f"{one_line(path)}: is a folder; give a file name for {what}")
        anc = p.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
    except OSError as exc:  # a link loop (a name too long is refused above)
        raise UsageError(f"{one_line(path)}: cannot write {what} ({exc.strerror or exc})") from None
    if not anc.is_dir():
        raise UsageError(f"{path}: cannot write {what}: {anc} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as exc:
        raise UsageError(f"{path}: cannot write {what} in {anc} ({exc.strerror or exc})") from None


def plan_inputs(inputs, output, accept, in_place: bool = False):
    """io.inputs.plan_jobs, with a warning line for each link to a folder it does not follow and one naming the
    entries that are no regular file (skipped); (jobs, skipped files). A folder (the one given or one deep inside it)
    or file that cannot be listed or looked up is bad usage before any work, as in `dataset anonymize` and the other
    commands: it was counted as one failed file (exit 1), and the run went on without its images."""
    from ..io.inputs import plan_jobs

    links: list = []
    special: list = []
    jobs, skipped = plan_jobs(inputs, output, accept, in_place, links, special=special)
    check_output_folders(jobs)
    for link in links:
        print(f"faceveil: warning: {one_line(link)}: a link to a folder, not followed (give {one_line(link.resolve())} "
              "as an input)", file=sys.stderr)
    if special:
        shown = ", ".join(f"{one_line(p)} ({what})" for p, what in special[:5]) + (", ..." if len(special) > 5 else "")
        print(f"faceveil: warning: {len(special)} entries that are not regular files skipped (not read, not written): "
              f"{shown}", file=sys.stderr)
    return jobs, skipped


def check_output_folders(jobs) -> None:
    """Bad usage (one line, before any work) when a job's output folder can neither be written nor made: a file on
    its way (`-o afile/sub/` with afile a regular file), a place where no folder can be made (/proc, a read-only
    mount). Before, every photo was detected first and then failed naming its output (exit 1). Probes each nearest
    existing folder once, with a temporary file where the output folder exists and a temporary folder where it is
    to be made; leaves nothing behind. In place (an output that is its input) needs no check."""
    import tempfile

    probed: set = set()
    for job in jobs:
        if job.dst == job.src:
            continue
        folder = job.dst.parent
        anc = folder
        try:
            while not os.path.lexists(anc) and anc != anc.parent:
                anc = anc.parent
            is_dir = anc.is_dir()
        except OSError as exc:  # a link loop on the way
            raise UsageError(f"{one_line(folder)}: cannot make the output folder ({exc.strerror or exc})") from None
        if not is_dir:
            raise UsageError(f"{one_line(folder)}: cannot make the output folder: {one_line(anc)} is a file, not a "
                             "folder; nothing written")
        key = (anc, anc == folder)
        if key in probed:
            continue
        probed.add(key)
        try:
            if anc == folder:
                with tempfile.TemporaryFile(dir=anc, prefix=".faceveil-probe-"):
                    pass
            else:
                os.rmdir(tempfile.mkdtemp(dir=anc, prefix=".faceveil-probe-"))
        except OSError as exc:
            what = "cannot write in the output folder" if anc == folder else f"cannot make the output folder in {anc}"
            raise UsageError(f"{one_line(folder)}: {what} ({exc.strerror or exc}); nothing written") from None


def whole(minimum: int = 0, maximum: int | None = None):
    """An argparse type: a whole number of at least ``minimum`` (a seed, a count), at most ``maximum`` if given;
    anything else is bad usage (exit 2) before any work. Before, --seed -1 failed every file at its first face and
    --limit -1 dropped the last image silently."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _number(text: str) -> float:
    """``text`` as a float, or argparse's error (exit 2): the part ``at_least`` and ``between`` share."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def at_least(minimum: float = 0.0):
    """An argparse type: a finite number of at least ``minimum`` (a size in px); anything else is bad usage."""
    def parse(text: str) -> float:
        value = _number(text)
        if not value >= minimum or value == float("inf"):  # nan fails the first test
            raise argparse.ArgumentTypeError(f"must be a finite number of at least {minimum:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def between(low: float, high: float, low_open: bool = False):
    """An argparse type: a number from ``low`` to ``high`` (above ``low`` with ``low_open``): a share, a score;
    anything else is bad usage (exit 2) before any work."""
    def parse(text: str) -> float:
        value = _number(text)
        if not (low < value if low_open else low <= value) or not value <= high:  # nan fails both
            side = "above" if low_open else "from"
            raise argparse.ArgumentTypeError(f"must be a number {side} {low:g} to {high:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def preset_name(args) -> str | None:
    """The preset a run's detection comes from: --detect, else the default one unless --detector replaces it."""
    from ..detect.presets import DEFAULT_PRESET

    return args.detect or (None if args.detector else DEFAULT_PRESET)


def check_result_path(path: str, what: str, inputs=(), outputs=(), folders=(), overwrite: bool | None = None) -> None:
    """Refuse (bad usage, before any work) a result file (report, detections, summary) that would replace what the
    user did not ask to replace: one of the run's inputs or outputs, a file inside ``folders`` (an input dataset, an
    output dataset that `dataset verify` checks), or an existing file that no faceveil run wrote (no "faceveil" key
    first), unless ``overwrite`` (None: the command has no --overwrite). Never inside faceveil's own folder
    (OUT/.faceveil: track records, the review's state), whose files a result would replace or be taken for."""
    from ..dataset.config import OWN_DIR

    if path == STDOUT:
        return
    p = Path(path)
    target = p.resolve()
    if OWN_DIR in p.parts or OWN_DIR in target.parts:
        raise UsageError(f"{path}: {what} would be written in faceveil's own {OWN_DIR} folder (track records, the "
                         "review's state); give a path outside it")
    for group, verb in ((inputs, "an input"), (outputs, "an output of this run")):
        # compare by name first: resolving every path of a large batch costs more than the check is worth
        if any(Path(q).name == p.name and Path(q).resolve() == target for q in group):
            raise UsageError(f"{path}: {what} would overwrite {verb}; give another file name")
    for folder in folders:
        if folder and (target == Path(folder).resolve() or Path(folder).resolve() in target.parents):
            raise UsageError(f"{path}: {what} would be written inside {folder}; give a path outside it")
    if p.is_file() and not overwrite and not faceveil_json(p):
        hint = ", or --overwrite to replace it" if overwrite is not None else ""
        raise UsageError(f"{path}: exists and is not a file faceveil wrote; give another name for {what}{hint}")


def check_result_folder(output: str, names: list[str], what: str, inputs=(), folders=(),
                        overwrite: bool | None = None) -> None:
    """Refuse (bad usage, before any work) an output folder whose results would replace what the user did not ask to
    replace: a folder that is a file, or is (or is inside) one of the input ``folders``; a result (``names``: the
    faceveil JSON first, then the plots and folders written beside it) over one of the ``inputs`` or an existing
    file faceveil did not write, unless ``overwrite``. The files beside a JSON faceveil wrote are its own."""
    from ..io.inputs import is_inside

    out = Path(output)
    inputs = [q for q in inputs if q]
    if out.exists() and not out.is_dir():
        raise UsageError(f"{output}: exists and is not a folder; give a folder for {what}")
    for folder in folders:
        if folder and is_inside(out, Path(folder)):
            where = "is" if out.resolve() == Path(folder).resolve() else "is inside"
            raise UsageError(f"{output}: the output folder {where} the input {folder}; give a folder outside it")
    main = out / names[0]
    check_writable(str(main), what)
    check_result_path(str(main), what, inputs, folders=folders, overwrite=overwrite)
    ours = overwrite or faceveil_json(main)
    for name in names[1:]:
        p = out / name
        check_result_path(str(p), what, inputs, folders=folders, overwrite=True)
        if p.exists() and not ours:
            hint = ", or --overwrite to replace it" if overwrite is not None else ""
            raise UsageError(f"{p}: exists and is not faceveil's (no faceveil {names[0]} beside it); give another "
                             f"folder for {what}{hint}")


def faceveil_json(path: Path) -> bool:
    """Whether a file starts as faceveil's JSON results do: an object whose first key is "faceveil"."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.replace(b" ", b"").replace(b"\n", b"").startswith(b'{"faceveil":')


def strict_json(doc, default=None, indent: int | None = 1) -> bytes:
    """``doc`` as a results file holds it: strict JSON (RFC 8259), that jq, JavaScript and strict parsers read. An
    undefined number (NaN: nothing measured, e.g. rank-1 without a probe; +-inf) is null: json.dumps wrote the bare
    tokens NaN and Infinity, which are not JSON. allow_nan=False so that none can slip in again unseen.
    ``indent=None``: one line (a report printed on stderr)."""
    return json.dumps(_finite(doc), indent=indent, default=default, allow_nan=False).encode()


def _finite(v):
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):  # numpy's floats too
        return float(v) if math.isfinite(v) else None
    return v


def write_result_file(path: str, data: bytes, what: str) -> None:
    """``data`` written atomically to ``path``, or to standard output for "-" (STDOUT)."""
    from ..io.atomic import write_bytes_atomic

    if path == STDOUT:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return
    try:
        write_bytes_atomic(path, data, sweep=True)  # a killed run's temporary of it (its writer gone) removed first
    except OSError as exc:  # e.g. the disk filled up during the run
        raise FaceveilError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None


def report_missing_images(missing: list[str], images) -> int:
    """After the results: one line saying how many labelled images are not in ``images`` (left out of the
    numbers); the exit code, 1 if any (the eval commands' rule for a file that failed)."""
    if not missing:
        return 0
    n = len(missing)
    print(f"faceveil: error: {one_line(images)}: {n} labelled image{'' if n == 1 else 's'} not found (left out of the "
          f"results), e.g. {one_line(missing[0])}", file=sys.stderr)
    return 1


def report_failures(results) -> int:
    """Print each failed result's error; return how many failed."""
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"faceveil: error: {one_line(r.error)}", file=sys.stderr)
    return len(failed)
