"""`faceveil bench`: privacy, detection utility and quality of many methods in one run, with a report.

Every (image, method, parameters) measurement is cached under OUT/cache, so adding
a method or a sweep value to a finished run only computes the new part.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import UsageError, one_line
from .eval import (DETECTORS, add_variant_args, check_labels_file, check_output, check_pair_faces, check_pair_photos,
                   check_paths, file_errors, list_images, report_errors, run_settings, workbench, write_json)
from .common import need_eval_extra, report_missing_images, whole

EPILOG = """\
examples:
  faceveil bench --images ../shared/data/lfw --pairs ../shared/data/lfw/pairs.csv --people 100 \\
      --methods blur,pixelate,blackout,block,noise -o report/
  faceveil bench --images lfw/ --pairs lfw/pairs.csv --methods blur,pixelate \\
      --sweep blur.kernel=5,15,51 --sweep pixelate.cells=4,8,16 -o report/
  faceveil bench ... --det-images ../shared/data/facemask/images \\
      --labels ../shared/data/facemask/gt.txt

Writes OUT/results.json, OUT/report.md and OUT/report.html (PNG plots beside them).
Privacy and quality are measured on the pairs' photos; detection utility on the
same photos, or on --det-images when given (labelled faces with --labels).
"""


def register(sub) -> None:
    b = sub.add_parser("bench", help="compare anonymization methods: privacy, utility, quality, report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Run every evaluation for several methods and write a report.")
    b.add_argument("--images", required=True, metavar="DIR", help="photos the pairs CSV refers to")
    b.add_argument("--pairs", required=True, metavar="CSV", help="file_x,file_y,same (1/0) or Decision (Yes/No)")
    b.add_argument("--methods", default="blur,pixelate,blackout,block,noise,eyebar",
                   help="comma-separated methods (default: the conventional ones)")
    b.add_argument("--param", "-p", action="append", metavar="METHOD.NAME=VALUE", default=[],
                   help="a fixed parameter of one method, repeatable, e.g. -p blur.kernel=25 (or blur:kernel=25)")
    b.add_argument("--sweep", action="append", metavar="METHOD.PARAM=V1,V2,...", default=[],
                   help="one variant per value for that method, repeatable")
    b.add_argument("--people", type=whole(), default=0, help="use only N identities of the pairs (0: all)")
    b.add_argument("--all-pairs", action="store_true", help="verify every pair of the used photos")
    b.add_argument("--det-images", metavar="DIR", help="measure detection utility on these images instead")
    b.add_argument("--labels", metavar="PATH", help="face labels of --det-images (as eval leaks reads them)")
    b.add_argument("--seeds", type=whole(), default=3,
                   help="seeds for the diversity of random methods, 0 or >= 2 (default 3; 0: none)")
    b.add_argument("--diversity-images", type=whole(1), default=20, help="images used for diversity (default 20)")
    add_variant_args(b, single=False)
    b.set_defaults(func=cmd_bench)


def build_variants(args) -> list:
    from ..registry import split_method_param
    from ..eval.workbench import Variant, parse_sweep

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("--methods is empty")
    fixed: dict[str, dict] = {m: {} for m in methods}
    for item in args.param:
        m, name, v = split_method_param(item)
        if m not in fixed:
            raise UsageError(f"-p {item}: method {m!r} is not in --methods")
        fixed[m][name] = v
    sweeps: dict[str, list[str]] = {}
    for s in args.sweep:
        m = s.split(".", 1)[0]
        if m not in fixed:
            raise UsageError(f"--sweep {s}: method {m!r} is not in --methods")
        sweeps.setdefault(m, []).append(s)
    out = []
    for m in methods:
        for values in parse_sweep(m, sweeps.get(m, [])):
            out.append(Variant.of(m, {**fixed[m], **values}, args.seed))
    return out


def cmd_bench(args) -> int:
    need_eval_extra("bench")
    check_paths(args)
    from .. import __version__
    from ..report.bench_report import write_report
    from ..eval.privacy import ATTACKS, evaluate_privacy, load_pairs
    from ..eval.quality import evaluate_diversity, evaluate_quality
    from ..eval.utility import evaluate_detection, read_face_labels

    out = Path(args.output)
    if args.seeds == 1:  # it measured no diversity, without a word (as `eval quality --seeds 1`)
        raise UsageError("--seeds 1: diversity compares each face over several seeds: give at least 2 (0: none)")
    if args.labels and not args.det_images:
        raise UsageError("--labels needs --det-images (the labelled images)")
    check_labels_file(args.pairs, "--pairs")
    check_labels_file(args.labels)
    det_files = list_images(args.det_images, args.limit, "--det-images") if args.det_images else None
    plots = [f"{kind}_{det}.png" for kind in ("rate", "pareto") for det in DETECTORS]
    check_output(args, ["results.json", "report.md", "report.html", *plots] + [f"det_{a}.png" for a in ATTACKS],
                 [args.pairs, args.labels], [args.det_images])
    pairset = load_pairs(args.pairs, args.people, args.seed, args.all_pairs)
    # read before any photo is measured (the pairs' descriptors take minutes): a bad label file stops the run at once
    labels, missing = read_face_labels(args.labels, args.det_images, det_files) if args.labels else (None, [])
    files = pairset.files[: args.limit or None]
    check_pair_photos(args, files)
    wb = workbench(args, args.images)
    vs = wb.check_variants(build_variants(args))
    if args.limit:
        keep = set(files)
        pairset = replace(pairset, pairs=[p for p in pairset.pairs if p[0] in keep and p[1] in keep],
                          identity={f: i for f, i in pairset.identity.items() if f in keep})
    originals = wb.originals(files, {"desc", "hog"})
    check_pair_faces(args, pairset, originals, "results.json")
    det_wb, det_orig = wb, originals
    measured, det_measured = [originals], []
    if args.det_images:
        det_wb = workbench(args, args.det_images)
        det_orig = det_wb.originals(det_files, {"hog"})
        det_measured.append(det_orig)
    config = {**run_settings(args, wb, methods=args.methods, param=args.param, sweep=args.sweep, seeds=args.seeds,
                             diversity_images=args.diversity_images),
              "images": str(args.images), "pairs": str(args.pairs), "people": args.people,
              "all_pairs": args.all_pairs, "det_images": args.det_images, "labels": args.labels,
              "attacker": "dlib ResNet 128-D, 5-point alignment, box from the original"}
    doc = {"faceveil": __version__, "config": config,
           "baseline": evaluate_privacy(pairset, originals, None), "variants": []}
    for v in vs:
        anon = wb.anonymized(v, files, originals, {"desc", "detect", "quality"})
        measured.append(anon)
        r = {"variant": v.as_dict(), "family": v.method,
             "privacy": evaluate_privacy(pairset, originals, anon),
             "quality": evaluate_quality(files, originals, anon)}
        if args.det_images:
            danon = det_wb.anonymized(v, det_files, det_orig, {"detect"})
            det_measured.append(danon)
            r["detection"] = evaluate_detection(det_files, det_orig, danon, labels)
        else:
            r["detection"] = evaluate_detection(files, originals, anon)
        if args.seeds >= 2 and wb.anonymizer(v).method.uses_rng:
            sub = files[: args.diversity_images]
            per_seed = [anon if s == v.seed else wb.anonymized(replace(v, seed=s), sub, originals, {"desc"})
                        for s in range(args.seeds)]
            measured += per_seed
            r["diversity"] = evaluate_diversity(per_seed, sub)
        doc["variants"].append(r)
    errors, n_failed = file_errors(files, *measured)
    if det_measured:
        det_errors, n_det_failed = file_errors(det_files, *det_measured)
        errors, n_failed = errors + det_errors, n_failed + n_det_failed
    doc["failed"] = errors
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", doc)
    md = write_report(doc, out)
    print(md["summary"])
    code = max(report_errors(errors, n_failed, len(files) + len(det_files or [])),
               report_missing_images(missing, args.det_images))
    print(f"faceveil: bench results -> {one_line(out / 'results.json')}, {one_line(out / 'report.md')}, "
          f"{one_line(out / 'report.html')}", file=sys.stderr)
    return code
