"""`faceveil eval privacy|detection|quality|train` (and `eval leaks` from eval_leaks.py): argument parsing and
tables; the work is in faceveil.eval (and faceveil.train for `eval train`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import FaceveilError, UsageError, check_folder, one_line
from ..train.train_on_anon import DEFAULT_METHODS
from . import eval_leaks
from .common import (add_detection_args, add_region_args, check_result_folder, faceveil_json, preset_name,
                     region_from_args, need_eval_extra, report_missing_images, resolve_detection, strict_json, whole)

EPILOG_PRIVACY = """\
examples:
  faceveil eval privacy --pairs ../shared/data/lfw/pairs.csv --images ../shared/data/lfw -m blur \\
      --sweep blur.kernel=5,9,15,25,35,51 -o out/privacy
  faceveil eval privacy --pairs master.csv --images deepface-unit/ -m pixelate -p cells=8 -o out/p
  faceveil eval privacy --pairs pairs.csv --images lfw/ --anonymized other_tool_out/ -o out/other
  faceveil eval privacy --pairs pairs.csv --images lfw/ -m blur --people 60 --all-pairs -o out/small

The attacker is dlib's ResNet descriptor (5-point alignment) computed at the face
box found on the ORIGINAL photo, for the original and the anonymized version alike.
Writes OUT/privacy.json and OUT/det_<attack>.png; descriptors are cached in OUT/cache.
"""

EPILOG_DETECTION = """\
examples:
  faceveil eval detection --images ../shared/data/facemask/images --labels ../shared/data/facemask/gt.txt \\
      -m blur -o out/det
  faceveil eval detection --images ../shared/data/widerface-val/images \\
      --wider-gt ../shared/data/widerface-val/ground_truth -m pixelate -o out/wider

Detection rate: the share of faces found on the original (by the pipeline detector,
and by dlib HOG) still found at IoU >= 0.5 after anonymization, by face height.
Fidelity: AP of each detector on the anonymized images against its own original
detections. --wider-gt adds the official WIDER FACE AP (easy/medium/hard) of
CenterFace run benchmark-style (single scale, padded to 256, threshold 0.02).
"""

EPILOG_QUALITY = """\
examples:
  faceveil eval quality --images ../shared/data/deepface-unit -m blur -p kernel=25 -o out/q
  faceveil eval quality --images photos/ -m noise --seeds 5 -o out/q

Per face crop (the detected box): L1, MSE, PSNR, SSIM between the original and the
anonymized crop; FD-dlib, the Frechet distance between the dlib descriptors of
original and anonymized faces (not FID); with --seeds N, for random methods, the
mean pairwise descriptor distance over N seeds of the same face (diversity).
"""


def add_variant_args(p: argparse.ArgumentParser, single: bool = True) -> None:
    if single:
        p.add_argument("--method", "-m", default="blur", help="anonymization method (default blur)")
        p.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[],
                       help="a method parameter, repeatable")
        p.add_argument("--sweep", action="append", metavar="METHOD.PARAM=V1,V2,...", default=[],
                       help="evaluate one variant per value, e.g. blur.kernel=5,9,15,25")
        p.add_argument("--anonymized", metavar="DIR",
                       help="evaluate outputs made elsewhere: a folder mirroring --images (instead of --method)")
    p.add_argument("--seed", type=whole(), default=0, help="seed for random methods")
    add_region_args(p)  # as `faceveil anonymize`, with the same defaults
    add_detection_args(p, videos=False)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace result files in OUT that faceveil did not write")
    p.add_argument("--cache", metavar="DIR", help="measurement cache (default OUT/cache)")
    p.add_argument("--limit", type=whole(), default=0, help="use only the first N images (0: all)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def register(sub) -> None:
    ev = sub.add_parser("eval", help="measure leaks, privacy, utility and quality")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND", required=True)
    register_variant_commands(ev_sub)
    eval_leaks.register(ev_sub)
    register_train(ev_sub)


def register_variant_commands(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("privacy", help="face-recognition attacks on anonymized photos", formatter_class=fmt,
                       epilog=EPILOG_PRIVACY, description="Can dlib's face recognition still match anonymized people?")
    p.add_argument("--pairs", required=True, metavar="CSV", help="file_x,file_y,same (1/0) or Decision (Yes/No)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder the CSV's paths are relative to")
    p.add_argument("--people", type=whole(), default=0, help="use only N identities (seeded choice; 0: all)")
    p.add_argument("--all-pairs", action="store_true", help="verify every pair of the used photos, not the CSV's")
    p.add_argument("--no-fta", action="store_true", help="skip the failure-to-acquire detectors (faster)")
    add_variant_args(p)
    next(a for a in p._actions if a.dest == "limit").help = "use only the first N pairs (after --people; 0: all)"
    p.set_defaults(func=cmd_privacy)

    d = sub.add_parser("detection", help="do detectors still find faces after anonymization?", formatter_class=fmt,
                       epilog=EPILOG_DETECTION, description="Detection utility of an anonymization method.")
    d.add_argument("--images", required=True, metavar="DIR", help="photos to detect faces on, before and after")
    d.add_argument("--labels", metavar="PATH", help="face labels: WIDER gt .txt, VOC folder of .xml, COCO .json or "
                   "YOLO folder of .txt")
    d.add_argument("--wider-gt", metavar="DIR", help="folder with the official wider_face_val.mat and easy/medium/hard")
    add_variant_args(d)
    d.set_defaults(func=cmd_detection)

    q = sub.add_parser("quality", help="image quality of the anonymized faces", formatter_class=fmt,
                       epilog=EPILOG_QUALITY, description="Quality and diversity of anonymized faces.")
    q.add_argument("--images", required=True, metavar="DIR", help="photos whose faces are anonymized and measured")
    q.add_argument("--seeds", type=whole(), default=0, help="diversity over N >= 2 seeds (random methods)")
    q.add_argument("--diversity-images", type=whole(1), default=20, help="images used for diversity (default 20)")
    add_variant_args(q)
    q.set_defaults(func=cmd_quality)


# shared helpers -------------------------------------------------------------

def workbench(args, root):
    from ..eval.workbench import Workbench

    # Resolved as `faceveil anonymize` resolves them, so eval measures what anonymize ships.
    name, dp, region = resolve_detection(args, region_from_args(args))
    cache = Path(args.cache) if args.cache else Path(args.output) / "cache"
    return Workbench(Path(root), cache, name, dp, region, not args.quiet)


def variants(args) -> list:
    from ..registry import parse_assignments
    from ..eval.workbench import Variant, parse_sweep

    if args.anonymized:
        if args.sweep or args.param:
            raise UsageError("--anonymized evaluates a folder of outputs: it takes no --param or --sweep")
        check_folder(args.anonymized, "--anonymized")
        return [Variant.external(args.anonymized, Path(args.anonymized).name or "external")]
    base = parse_assignments(args.param)
    return [Variant.of(args.method, {**base, **s}, args.seed) for s in parse_sweep(args.method, args.sweep)]


PATH_OPTIONS = ("images", "pairs", "labels", "wider_gt", "det_images", "anonymized", "cache", "output")


def check_paths(args) -> None:
    """The eval commands' and bench's paths (``PATH_OPTIONS`` they have), each in a folder that may not be entered:
    bad usage, before any work (io.inputs.refuse_unreachable); a traceback at the first look."""
    from ..io.inputs import refuse_unreachable

    refuse_unreachable(*(getattr(args, name, None) for name in PATH_OPTIONS))


def list_images(root, limit: int = 0, option: str = "--images") -> list[str]:
    """The images under ``root`` (relative paths, sorted), listed as anonymize lists a folder (io.inputs.list_folder:
    hidden files and folders are not inputs). A missing folder, one without images, and a folder or file in it that
    cannot be read are bad usage, before any work: a rglob passed over an unreadable sub-folder without a word, and
    the results were computed on fewer images than given (a file in a folder that may not be entered: a traceback)."""
    from ..io.images import is_image_path
    from ..io.inputs import list_folder

    check_folder(root, option)
    root = Path(root)
    found, _, bad, _ = list_folder(root)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UsageError(f"{one_line(bad[0][0])}: {bad[0][1]}{more}; nothing evaluated (make it readable, or move "
                         "it out)")
    files = sorted(p.relative_to(root).as_posix() for p in found if is_image_path(p))
    if not files:
        raise UsageError(f"{root}: no images found")
    return files[:limit] if limit else files


def check_pair_photos(args, files: list[str]) -> None:
    """--images holds the photos of the pairs (``files``): a folder that cannot be read, or the wrong folder (none of
    them there), is bad usage before any work; it was a traceback (a photo's stat refused, or the metrics on an empty
    gallery). A photo missing, or in a folder that cannot be read, fails on its own: named, the results leave it out."""
    import os

    from ..io.inputs import read_folder

    check_folder(args.images, "--images")  # "none of the 2602 photos ... is there" of a folder that is not there
    if os.path.isdir(args.images):
        read_folder(args.images)
    if files and not any(os.path.isfile(Path(args.images) / f) for f in files):
        raise UsageError(f"{args.images}: none of the {len(files)} photos {args.pairs} names is there "
                         f"(e.g. {files[0]}); give the folder the pairs' paths are relative to")


def check_pair_faces(args, pairset, originals: dict, result: str) -> None:
    """The attacker's descriptor is taken at the face found on the original photo. No face in any of the pairs'
    photos (noise, other pictures) leaves nothing to measure: a failure in one line (the unreadable photos named
    first), before the anonymization and with no results written; it was a traceback in the metrics (an empty
    gallery). An earlier run's results in OUT (``result``, faceveil's JSON) are left as they were, and the line
    says so: they looked like this run's. Photos without a face are named in a warning with what the results leave
    out (not failures)."""
    files = pairset.files
    face = {f for f in files if originals.get(f, {}).get("box") is not None}
    errors, n_failed = file_errors(files, originals)
    if not face:
        report_errors(errors, 0, len(files))
        n = len(files) - n_failed
        what = (f"none of the {len(files)} photos {args.pairs} names could be read" if not n else
                f"no face found in any of the {n} photos {args.pairs} names"
                + (f" ({n_failed} more could not be read)" if n_failed else ""))
        # An earlier run's results stay (this run has nothing to put in their place; removing them would lose
        # them without a word), named so that nobody takes them for this run's.
        earlier = Path(args.output) / result
        left = f" ({one_line(earlier)} is from an earlier run, left as it was)" if faceveil_json(earlier) else ""
        raise FaceveilError(f"{what}: nothing to measure (the attacks need the face on the original); "
                            f"no results written{left}")
    no_face = [f for f in files if f not in face and "error" not in originals.get(f, {})]
    if no_face:
        gallery, probes = pairset.gallery_split()
        out = set(no_face)
        first = {pairset.identity[g]: g for g in gallery}  # each person's gallery photo
        counts = [(sum(a in out or b in out for a, b, _ in pairset.pairs), len(pairset.pairs), "pairs"),
                  (sum(g in out for g in gallery), len(gallery), "gallery photos"),
                  (sum(p in out or first[pairset.identity[p]] in out for p in probes), len(probes), "probes")]
        left = ", ".join(f"{n} of the {total} {what}" for n, total, what in counts if n or what == "pairs")
        print(f"faceveil: warning: no face found on {len(no_face)} of the {len(files)} photos (e.g. "
              f"{one_line(no_face[0])}): the results leave out {left}", file=sys.stderr)


def check_output(args, names: list[str], inputs=(), folders=()) -> None:
    """Refuse, before any work, an OUT whose results (``names``, the JSON first) would replace an input, land in an
    input folder (--images, --anonymized and the command's own ``folders``) or replace a file faceveil did not write
    (unless --overwrite), and a cache (OUT/cache or --cache) that is a file or inside an input folder. The cache is
    faceveil's own: every eval command may share it."""
    from ..io.inputs import is_inside

    folders = [args.images, getattr(args, "anonymized", None), *folders]
    check_result_folder(args.output, names, "the results", inputs, folders, args.overwrite)
    cache = Path(args.cache) if args.cache else Path(args.output) / "cache"  # written during the run: checked now
    if cache.exists() and not cache.is_dir():
        raise UsageError(f"{cache}: exists and is not a folder; give a folder for the measurement cache (--cache)")
    for folder in folders:
        if folder and is_inside(cache, Path(folder)):
            raise UsageError(f"{cache}: the cache folder is inside the input {folder}; give a --cache outside it")


def check_labels_file(path, option: str = "--labels") -> None:
    """A labels file named on the command line must be there (bad usage, as in `dataset anonymize`)."""
    if path and not Path(path).exists():
        raise UsageError(f"{path}: no such {option} file")


def run_settings(args, wb, **extra) -> dict:
    """What a reader needs to rerun an evaluation: the detection (its preset, detector and parameters), the region,
    --seed, --limit and the command's own options (``extra``). Every parameter, as `eval leaks` records them."""
    from dataclasses import asdict

    from ..pipeline import Anonymizer, _plain

    region = Anonymizer(detector=wb.detector, detector_params=wb.detector_params, region=wb.region,
                        load_detector=False).compositor.params
    return {"detect": preset_name(args), "detector": wb.detector,
            "detector_params": {k: _plain(v) for k, v in asdict(wb.det.params).items()}, "region": asdict(region),
            "seed": args.seed, "limit": args.limit, **extra}


def file_errors(files, *records) -> tuple[list[str], int]:
    """(each error once, how many of ``files`` failed) in any of these measurements: an unreadable original, a
    missing or different anonymized output (an original's error repeats in every variant's records)."""
    errors: dict = {}
    failed = set()
    for recs in records:
        for f in files:
            msg = recs.get(f, {}).get("error")
            if msg:
                errors.setdefault(msg, None)
                failed.add(f)
    return list(errors), len(failed)


def report_errors(errors: list[str], n_failed: int, n_files: int) -> int:
    """Print, as `eval leaks` does, one line per error and what the results leave out; the exit code (1 if any)."""
    for msg in errors:
        print(f"faceveil: error: {one_line(msg)}", file=sys.stderr)
    if n_failed:
        print(f"faceveil: {n_failed} of {n_files} images failed: the results leave them out", file=sys.stderr)
    return 1 if errors else 0


def write_json(path: Path, doc) -> None:
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(path, strict_json(doc, default=float))  # NaN (nothing measured) as null: valid JSON


def fmt(v, digits: int = 3) -> str:
    if v is None or v != v:  # NaN: nothing measured (rank-1 without a probe), as the bench report writes it
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# commands ---------------------------------------------------------------------

def cmd_privacy(args) -> int:
    need_eval_extra("privacy")
    check_paths(args)
    from .. import __version__
    from ..report.plots import det_plot
    from ..eval.privacy import ATTACKS, evaluate_privacy, load_pairs

    out = Path(args.output)
    check_labels_file(args.pairs, "--pairs")
    check_output(args, ["privacy.json"] + [f"det_{attack}.png" for attack in ATTACKS], [args.pairs])
    pairset = load_pairs(args.pairs, args.people, args.seed, args.all_pairs)
    if args.limit:  # the first N pairs (after --people / --all-pairs), and only the photos they use
        from ..eval.privacy import PairSet

        pairs = pairset.pairs[:args.limit]
        used = {f for a, b, _ in pairs for f in (a, b)}
        pairset = PairSet(pairs, {f: i for f, i in pairset.identity.items() if f in used})
    files = pairset.files
    check_pair_photos(args, files)
    wb = workbench(args, args.images)
    vs = wb.check_variants(variants(args))
    need_o = {"desc"} if args.no_fta else {"desc", "hog"}
    need_a = {"desc"} if args.no_fta else {"desc", "detect"}
    originals = wb.originals(files, need_o)
    check_pair_faces(args, pairset, originals, "privacy.json")
    settings = run_settings(args, wb, people=args.people, all_pairs=args.all_pairs, no_fta=args.no_fta)
    doc = {"faceveil": __version__, "settings": settings, "images": str(args.images), "pairs": str(args.pairs),
           "attacker": "dlib ResNet 128-D, 5-point alignment",
           "baseline": evaluate_privacy(pairset, originals, None), "variants": []}
    measured = [originals]
    for v in vs:
        anon = wb.anonymized(v, files, originals, need_a)
        measured.append(anon)
        doc["variants"].append({"variant": v.as_dict(), **evaluate_privacy(pairset, originals, anon)})
    doc["failed"], n_failed = file_errors(files, *measured)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "privacy.json", doc)
    base = doc["baseline"]["attacks"]["original"]
    for attack in ATTACKS:
        curves = [("original (no anonymization)", base["det"]["fmr"], base["det"]["fnmr"])] if "det" in base else []
        for r in doc["variants"]:
            a = r["attacks"][attack]
            if "det" in a:
                curves.append((r["variant"]["label"], a["det"]["fmr"], a["det"]["fnmr"]))
        det_plot(curves, out / f"det_{attack}.png", f"DET, {attack} attack ({Path(args.pairs).name})")
    print(privacy_table(doc))
    code = report_errors(doc["failed"], n_failed, len(files))
    print(f"faceveil: privacy results -> {one_line(out / 'privacy.json')}", file=sys.stderr)
    return code


def privacy_table(doc) -> str:
    b = doc["baseline"]
    failed = f", {b['n_errors']} failed" if b.get("n_errors") else ""
    lines = [f"{b['n_images']} photos, {b['n_pairs']} pairs, {b['n_gallery']} gallery identities "
             f"(chance rank-1 {b['chance_rank1']:.3f}); {b['n_no_face']} photos without a face on the original"
             f"{failed}",
             "| variant | attack | EER | FMR@0.6 | FNMR@0.6 | TAR@FAR1e-3 | rank-1 | FTA det | FTA hog |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = [("original", "original", b["attacks"]["original"], {})]
    for r in doc["variants"]:
        for attack, a in r["attacks"].items():
            rows.append((r["variant"]["label"], attack, a, r.get("fta", {})))
    for label, attack, a, fta in rows:
        lines.append(f"| {label} | {attack} | {fmt(a.get('eer'))} | {fmt(a.get('fmr_at_threshold'))} | "
                     f"{fmt(a.get('fnmr_at_threshold'))} | {fmt(a.get('tar_at_far_0.001'))} | {fmt(a.get('rank1'))} | "
                     f"{fmt(fta.get('pipeline_detector'))} | {fmt(fta.get('dlib-hog'))} |")
    return "\n".join(lines)


def _image_run(args, names: list[str], inputs=(), folders=()):
    """What eval detection and eval quality start from: OUT (checked: ``names`` are its results), the images, a
    workbench and the checked variants."""
    files = list_images(args.images, args.limit)
    check_output(args, names, inputs, folders)
    wb = workbench(args, args.images)
    return Path(args.output), files, wb, wb.check_variants(variants(args))


def cmd_detection(args) -> int:
    need_eval_extra("detection")
    check_paths(args)
    from .. import __version__
    from ..report.plots import rate_by_size_plot
    from ..eval.utility import evaluate_detection, read_face_labels, wider_ap

    check_labels_file(args.labels)
    if args.wider_gt and not Path(args.wider_gt).is_dir():
        raise UsageError(f"{args.wider_gt}: no such --wider-gt folder")
    if args.wider_gt:  # the wrong folder was exit 1 with scipy's words ("Reader needs file name or open file-like ...")
        from ..eval.widerface import ground_truth_files

        lacks = [name for name in ground_truth_files() if not (Path(args.wider_gt) / name).is_file()]
        if lacks:
            raise UsageError(f"{one_line(args.wider_gt)}: no {', '.join(lacks)} in it (--wider-gt: the folder of WIDER "
                             "FACE's official evaluation files, its ground_truth/)")
    plots = [f"rate_{det}.png" for det in DETECTORS]
    out, files, wb, vs = _image_run(args, ["detection.json", *plots], [args.labels], [args.wider_gt])
    labels, missing = read_face_labels(args.labels, args.images, files) if args.labels else (None, [])
    gt = None
    if args.wider_gt:
        from ..eval.widerface import load_ground_truth

        gt = load_ground_truth(args.wider_gt)
    extra = {"wider"} if gt is not None else set()
    originals = wb.originals(files, {"hog"} | extra)
    settings = run_settings(args, wb, wider_gt=args.wider_gt)
    doc = {"faceveil": __version__, "settings": settings, "images": str(args.images), "n_files": len(files),
           "labels": args.labels, "variants": []}
    if gt is not None:
        doc["wider_original"] = wider_ap(files, originals, gt)
    measured = [originals]
    for v in vs:
        anon = wb.anonymized(v, files, originals, {"detect"} | extra)
        measured.append(anon)
        r = {"variant": v.as_dict(), **evaluate_detection(files, originals, anon, labels)}
        if gt is not None:
            r["wider"] = wider_ap(files, anon, gt)
        doc["variants"].append(r)
    doc["failed"], n_failed = file_errors(files, *measured)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "detection.json", doc)
    for det, plot in zip(DETECTORS, plots):
        rate_by_size_plot({r["variant"]["label"]: r[det]["by_size"] for r in doc["variants"]},
                          out / plot, f"faces still detected by {wb.detector if det == 'pipeline_detector' else det}")
    print(detection_table(doc))
    code = max(report_errors(doc["failed"], n_failed, len(files)), report_missing_images(missing, args.images))
    print(f"faceveil: detection results -> {one_line(out / 'detection.json')}", file=sys.stderr)
    return code


DETECTORS = ("pipeline_detector", "dlib-hog")  # the detectors eval detection measures, as its JSON names them


def detection_table(doc) -> str:
    lines = ["| variant | detector | faces | rate | fidelity AP | rate vs labels | by height |", "|---|---|---|---|---|---|---|"]
    for r in doc["variants"]:
        for det in ("pipeline_detector", "dlib-hog"):
            d = r[det]
            by = " ".join(f"{k}:{fmt(v, 2)}" for k, v in d["by_size"].items())
            vl = d.get("vs_labels", {}).get("rate")
            lines.append(f"| {r['variant']['label']} | {det} | {d['n_faces']} | {fmt(d['rate'])} | "
                         f"{fmt(d['fidelity_ap'])} | {fmt(vl)} | {by} |")
    if "wider_original" in doc:
        lines += ["", "WIDER FACE official-protocol AP (CenterFace, single scale, pad 256, thr 0.02):",
                  "| images | easy | medium | hard |", "|---|---|---|---|"]
        w = doc["wider_original"]
        lines.append(f"| original | {fmt(w['easy']['ap'])} | {fmt(w['medium']['ap'])} | {fmt(w['hard']['ap'])} |")
        for r in doc["variants"]:
            w = r["wider"]
            lines.append(f"| {r['variant']['label']} | {fmt(w['easy']['ap'])} | {fmt(w['medium']['ap'])} | {fmt(w['hard']['ap'])} |")
    return "\n".join(lines)


def cmd_quality(args) -> int:
    need_eval_extra("quality")
    check_paths(args)
    from dataclasses import replace

    from .. import __version__
    from ..eval.quality import evaluate_diversity, evaluate_quality

    if args.seeds == 1:  # it measured no diversity, without a word
        raise UsageError("--seeds 1: diversity compares each face over several seeds: give at least 2 (0: none)")
    out, files, wb, vs = _image_run(args, ["quality.json"])
    fixed = [v.label for v in vs if v.anon_dir is not None or not wb.anonymizer(v).method.uses_rng]
    if args.seeds >= 2 and fixed:  # its diversity column said "-" and nothing else
        one = len(fixed) == 1
        print(f"faceveil: warning: --seeds {args.seeds}: {', '.join(fixed)} give{'s' if one else ''} one output "
              f"whatever the seed (not random): no diversity measured for {'it' if one else 'them'}", file=sys.stderr)
    originals = wb.originals(files, {"desc"})
    settings = run_settings(args, wb, seeds=args.seeds, diversity_images=args.diversity_images)
    doc = {"faceveil": __version__, "settings": settings, "images": str(args.images), "n_files": len(files),
           "variants": []}
    measured = [originals]
    for v in vs:
        anon = wb.anonymized(v, files, originals, {"desc", "quality"})
        measured.append(anon)
        r = {"variant": v.as_dict(), **evaluate_quality(files, originals, anon)}
        if args.seeds >= 2 and v.anon_dir is None and wb.anonymizer(v).method.uses_rng:
            sub = files[: args.diversity_images]
            per_seed = [wb.anonymized(replace(v, seed=s), sub, originals, {"desc"}) for s in range(args.seeds)]
            measured += per_seed
            r["diversity"] = evaluate_diversity(per_seed, sub)
        doc["variants"].append(r)
    doc["failed"], n_failed = file_errors(files, *measured)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "quality.json", doc)
    lines = ["| variant | crops | L1 | MSE | PSNR | SSIM | FD-dlib | diversity |", "|---|---|---|---|---|---|---|---|"]
    for r in doc["variants"]:
        div = r.get("diversity", {}).get("diversity")
        lines.append(f"| {r['variant']['label']} | {r['n_crops']} | {fmt(r['l1'], 2)} | {fmt(r['mse'], 1)} | "
                     f"{fmt(r['psnr'], 2)} | {fmt(r['ssim'])} | {fmt(r['fd_dlib'])} | {fmt(div)} |")
    print("\n".join(lines))
    code = report_errors(doc["failed"], n_failed, len(files))
    print(f"faceveil: quality results -> {one_line(out / 'quality.json')}", file=sys.stderr)
    return code


# eval train -------------------------------------------------------------------

EPILOG_TRAIN = """\
examples:
  faceveil eval train --images data/images --labels data/gt.txt -o report/
  faceveil eval train --images data/images --labels data/gt.txt --methods none,blur,pixelate --budget 5m -o report/
  faceveil eval train --images data/images --labels data/gt.txt -p blur.kernel=9 --device cuda --budget 2m -o report/
  faceveil eval train --images data/images --labels data/gt.txt --methods none,blur:relative=1.25,learnedblur --budget 5m -o report/
    (learned blur against Gaussian blur of the same kernel: learnedblur's default is 1.25x the face width)

Defaults follow Safe Fakes: blur kernel=25, pixelate cells=10, fullblur kernel=18. 'none' (the original data) is
always trained first: every fidelity is relative to it. A time budget alone varies the number of steps between
runs; add --steps N for exactly reproducible weights.
"""


def register_train(sub) -> None:
    p = sub.add_parser("train", help="train a detector on anonymized data, test it on clean data (Safe Fakes)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_TRAIN,
                       description="What an anonymizer costs a face detector trained on its output.")
    p.add_argument("--images", required=True, help="folder of the labelled images")
    p.add_argument("--labels", required=True, help="WIDER-layout gt.txt (name, count, x y w h ... per face)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated methods, optional METHOD:NAME=VALUE "
                                                              f"(default {DEFAULT_METHODS})")
    p.add_argument("--param", "-p", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method parameter, repeatable, e.g. -p blur.kernel=25 (or blur:kernel=25)")
    p.add_argument("--budget", default="20m", help="training time per method (20m, 90s, 1h; default 20m)")
    p.add_argument("--steps", type=whole(1), help="also stop after this many steps (reproducible weights)")
    p.add_argument("-o", "--output", required=True, help="report folder (results.json, report.md, plots)")
    p.add_argument("--overwrite", action="store_true", help="replace files in the report folder faceveil did not write")
    p.add_argument("--seed", type=whole(), default=0, help="training seed (default 0)")
    p.add_argument("--split-seed", type=whole(), default=0, help="seed of the train/test split (default 0)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of images held out for testing (default 0.2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--batch", type=whole(1), default=16, help="training batch size (default 16)")
    p.add_argument("--input-size", type=whole(32), default=320, help="training crop side in pixels (default 320)")
    p.add_argument("--width", type=whole(1), default=16,
                   help="detector width (channels of the first stage; default 16)")
    p.add_argument("--threads", type=whole(1), default=4, help="augmentation threads (default 4)")
    p.add_argument("--max-images", type=whole(1), help="use only the first N labelled images (quick runs)")
    p.add_argument("--save-models", action="store_true", help="export each method's detector as ONNX under OUT/models/")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    import importlib.util

    from ..train.train_on_anon import INSTALL_HINT, RunConfig, load_samples, parse_duration, parse_methods, run

    check_paths(args)
    if importlib.util.find_spec("torch") is None:  # before reading any data: nothing else matters without it
        raise FaceveilError(f"`faceveil eval train` needs torch: {INSTALL_HINT}")
    specs = parse_methods(args.methods, args.param)
    budget = parse_duration(args.budget)
    if budget <= 0 and not args.steps:
        raise UsageError("--budget must be positive (or give --steps)")
    if not 0 < args.test_fraction < 1:
        raise UsageError("--test-fraction must be between 0 and 1")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        raise UsageError(f"--device {args.device!r}: expected cpu or cuda")
    if not Path(args.images).exists():  # bad usage, as in `eval leaks`
        raise UsageError(f"{args.images}: no such folder (--images)")
    check_labels_file(args.labels)
    check_result_folder(args.output, ["results.json", "report.md", "ap_by_size.png", "ap_vs_time.png", "models"],
                        "the report", [args.labels], [args.images], args.overwrite)
    samples = load_samples(args.images, args.labels, args.max_images)  # an image that cannot be read: exit 1 there
    cfg = RunConfig(specs, budget if budget > 0 else float("inf"), args.steps, args.seed, args.split_seed,
                    args.test_fraction, args.device, args.batch, args.input_size, args.width, args.threads,
                    save_models=args.save_models, quiet=args.quiet)
    t0 = time.perf_counter()
    res = run(samples, cfg, args.output, {"images": str(args.images), "labels": str(args.labels)})
    print(f"faceveil: {len(res['methods'])} methods in {time.perf_counter() - t0:.0f} s -> "
          f"{one_line(Path(args.output) / 'report.md')}", file=sys.stderr)
    return 0
