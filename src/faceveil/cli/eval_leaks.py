"""`faceveil eval leaks`: how many labelled faces the detection settings leave uncovered."""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import FaceveilError, UsageError, check_folder, one_line
from ..eval.leaks import SHORT_MIN
from .common import (add_common_args, add_detection_args, add_region_args, between, check_result_folder,
                     evenly_spaced, region_from_args, at_least, need_eval_extra, note_int8_build, preset_name,
                     report_missing_images, resolve_detection, strict_json, whole)

EPILOG = """\
examples:
  faceveil eval leaks --images data/facemask/images --labels data/facemask/gt.txt -o leaks/
  faceveil eval leaks --images widerface/images --labels wider_face_val_bbx_gt.txt --detect thorough
  faceveil eval leaks --images imgs/ --labels annotations/ --format voc --threshold 0.3 --mask-scale 1.5
  faceveil eval leaks --images data/facemask/images --labels data/facemask/gt.txt --split held_out

A labelled face (shorter side >= --min-size px, 10 by default) is leaked when less than
--coverage (80 %) of its box is anonymized (compositor weight >= 0.5): "boxed short" when at
least 30 % of it is (a region in the wrong place or too small), "never boxed" below. Away-from-face:
the share of pixels outside every labelled box enlarged 1.6x that were anonymized.
-o writes results.json, pr_curve.png and leaked/ (one crop per leaked face: anonymized
pixels tinted red, the labelled box in green) for a person to look at.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("leaks", help="leaked faces and over-anonymized area against labelled boxes",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                              description="Run detection on labelled photos and count faces left uncovered.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the labelled images")
    p.add_argument("--labels", required=True, metavar="PATH",
                   help="WIDER gt .txt, VOC folder of .xml, COCO .json or YOLO folder of .txt")
    p.add_argument("--format", choices=["wider", "voc", "coco", "yolo"], help="label format (default: guessed)")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="write results.json, pr_curve.png and leaked/ crops here")
    p.add_argument("--overwrite", action="store_true", help="replace files in OUTDIR that faceveil did not write")
    add_region_args(p)
    add_detection_args(p, videos=False)
    m = p.add_argument_group("measure")
    m.add_argument("--min-size", type=at_least(0), default=10, help="faces smaller than this (shorter side, px) are "
                   "reported in their own bucket only (default 10)")
    m.add_argument("--coverage", type=between(SHORT_MIN, 1), default=0.8,
                   help=f"a face is leaked below this covered share ({SHORT_MIN:g} to 1; default 0.8)")
    m.add_argument("--pr-floor", type=between(0, 1), default=0.05,
                   help="the PR curve and its AP count candidates scoring at least this, also above the "
                        "detector's own cut (0 to 1; default 0.05)")
    m.add_argument("--split", choices=["all", "tune", "held_out"], default="all",
                   help="only the photos on this side of the one seeded split by photo (faceveil.eval.splits): "
                        "values are tuned on 'tune' and reported on 'held_out' (default all)")
    m.add_argument("--limit", type=whole(), default=0, help="evaluate only N images, evenly spaced (0: all)")
    m.add_argument("--max-crops", type=whole(), default=500, help="write at most this many leaked-face crops")
    add_common_args(p, jobs=False)  # one process: its ms/image are the detector's own
    p.set_defaults(func=cmd_leaks)


def cmd_leaks(args) -> int:
    need_eval_extra("leaks")
    from ..progress import tqdm

    from .. import __version__
    from ..eval.leaks import LeakMetric, PRCurve, anonymized_mask, detect_with_candidates
    from ..io.labels import check_labels_path, find_images, read_eval_labels
    from ..detections import Detections
    from ..io.images import read_image
    from ..io.inputs import refuse_unreachable
    from ..pipeline import Anonymizer

    refuse_unreachable(args.images, args.labels, args.output)  # each was a traceback at its first look
    images = Path(args.images)
    check_folder(images, "--images")
    unread = _unreadable(images)
    check_labels_path(args.format, Path(args.labels))  # bad usage, as in `dataset anonymize`
    if args.output:
        check_result_folder(args.output, ["results.json", "pr_curve.png", "leaked"], "the results", [args.labels],
                            [args.images, args.labels], args.overwrite)
    labels = read_eval_labels(args.labels, args.format, images)
    keys = list(labels)  # before the models load: a run with nothing to measure stops at once
    if not keys:  # was "none of the 0 labelled images is in IMAGES", as if the photos were elsewhere
        raise UsageError(f"{args.labels}: no labelled images in it; nothing to measure")
    if args.split != "all":
        from ..eval.splits import split

        n = len(keys)
        keys = split(keys)[0 if args.split == "tune" else 1]
        if not keys:
            raise UsageError(f"{args.labels}: none of its {n} labelled image{'s' if n != 1 else ''} is on the "
                             f"{args.split!r} side of the split (faceveil.eval.splits): give more, or --split all")
    detector, params, region = resolve_detection(args, region_from_args(args))
    anon = Anonymizer(method="blur", detector=detector, detector_params=params, region=region)
    describe = anon.describe()
    note_int8_build(anon.detector, quiet=args.quiet)
    keys = evenly_spaced(keys, args.limit)
    not_read, keys = _blocked(images, keys, unread)
    found, missing = find_images(images, keys, not_read)
    if not found:
        raise UsageError(not_read[0] if not_read else f"none of the {len(keys)} labelled images is in {images}")

    out = Path(args.output) if args.output else None
    if out is not None:
        _clear_crops(out / "leaked")  # an earlier run's crops go: leaked/ shows this run's
    leak, pr, pr_used = LeakMetric(args.coverage, args.min_size), PRCurve(0.5, args.min_size), PRCurve(0.5, args.min_size)
    failed, seconds, crops, outside = [], 0.0, 0, []
    bar = tqdm(found, unit="img", file=sys.stderr, disable=args.quiet, dynamic_ncols=True, desc="evaluating")
    for key, path in bar:
        try:
            im = read_image(path)
        except FaceveilError as exc:
            failed.append(str(exc))
            continue
        img = im.rgb
        t0 = time.perf_counter()
        dets, candidates = detect_with_candidates(anon.detector, img, args.pr_floor)
        drawn = anon.drawn_by_alpha(im, dets)  # what anonymize also hides of a transparent photo (pipeline.py)
        dets = Detections.merge([dets, drawn], dets.source) if len(drawn) else dets
        seconds += time.perf_counter() - t0
        mask = anonymized_mask(anon.compositor, dets, img.shape)
        lab = labels[key]
        faces, ignore = _upright_faces(lab, path, img.shape, labels.format), lab.ignore
        visible = _visible(faces, img.shape)  # a box with no pixel in the photo is no face to find, for both metrics
        if not visible.all():
            outside += [f"{key} {[round(float(v), 1) for v in b]}" for b in faces.xyxy[~visible]]
            faces, ignore = faces[visible], ignore[visible]
        item = leak.update(mask, faces, ignore, key)
        pr.update(candidates, faces, ignore)
        pr_used.update(dets, faces, ignore)
        bar.set_postfix(leaked=int(sum(r.leaked.sum() for r in leak.per_image)), refresh=False)
        if out is not None:  # crops of the leaks the table counts (faces under its smallest bucket are not in it)
            shown = item.size >= leak.buckets[0][0]
            crops += _write_crops(out / "leaked", key, img, mask, faces.xyxy, item, args.max_crops - crops, shown)
    bar.close()
    n = len(found) - len(failed)
    res = leak.compute()
    pr_res = pr.compute()
    op = _operating_point(pr_used.compute())
    ms = seconds / max(n, 1) * 1000
    _print_summary(res, pr_res, op, ms, n, describe, args)
    if outside:
        print(f"faceveil: warning: {len(outside)} labelled box{'' if len(outside) == 1 else 'es'} with no pixel in "
              f"the image left out, e.g. {one_line(outside[0])}", file=sys.stderr)
    failed = not_read + failed  # n (evaluated) is counted above: not_read were never among the found
    for msg in failed:
        print(f"faceveil: error: {one_line(msg)}", file=sys.stderr)
    code = max(1 if failed else 0, report_missing_images(missing, images))
    if out is not None:
        from ..io.atomic import write_bytes_atomic
        from ..report.leaks import plot_pr_curve

        doc = {"faceveil": __version__, "images": str(images), "labels": str(args.labels),
               "detect": preset_name(args), **{k: describe[k] for k in ("detector", "detector_params", "region")},
               "evaluated": n, "missing": len(missing), "failed": failed, "outside": outside,
               "ms_per_image": round(ms, 1), "min_size": args.min_size, "coverage": args.coverage,
               "pr_floor": args.pr_floor, "split": args.split, "limit": args.limit, "max_crops": args.max_crops,
               "result": res.to_json(),
               "pr": {"ap": pr_res.ap if pr_res.positives else math.nan, "positives": pr_res.positives,
                      "operating_point": op,
                      "recall": _thin(pr_res.recall), "precision": _thin(pr_res.precision),
                      "thresholds": _thin(pr_res.thresholds)}}
        write_bytes_atomic(out / "results.json", strict_json(doc, default=str))
        point = (op["recall"], op["precision"]) if op and pr_res.positives else None
        plot_pr_curve(pr_res, out / "pr_curve.png", point,
                      f"{describe['detector']} on {n} images, {pr_res.positives} faces >= {args.min_size:g} px")
        print(f"faceveil: results.json, pr_curve.png and {crops} leaked-face crop{'' if crops == 1 else 's'} "
              f"(faces >= {leak.buckets[0][0]:g} px) -> {one_line(out)}", file=sys.stderr)
    return code


def _unreadable(images: Path) -> list[tuple[Path, str]]:
    """The folders and files under --images that cannot be read, with why (io.inputs.list_folder); --images itself
    is bad usage (exit 2, before any work), as a missing one is. Before, the first labelled image in one was a
    traceback."""
    from ..io.inputs import list_folder

    bad = list_folder(images)[2]
    for p, why in bad:
        if p == images:
            raise UsageError(f"{one_line(images)}: {why}")
    return bad


def _blocked(images: Path, keys: list[str], unread: list[tuple[Path, str]]) -> tuple[list[str], list[str]]:
    """(one line per unreadable folder or file that holds labelled images, naming it and how many are not
    evaluated; the other keys)."""
    held: dict[tuple[Path, str], int] = {}
    own, rest = set(), []  # own: files that are a labelled image themselves
    for k in keys:
        p = images / k
        where = next(((b, why) for b, why in unread if b == p or b in p.parents), None)
        if where is None:
            rest.append(k)
            continue
        held[where] = held.get(where, 0) + 1
        if where[0] == p:
            own.add(p)
    lines = [f"{b}: {why}" + ("" if b in own else f"; {n} labelled image{'' if n == 1 else 's'} in it not evaluated")
             for (b, why), n in held.items()]
    return lines, rest


def _upright_faces(lab, path, shape, fmt: str):
    """The labelled faces in the upright frame the image is read (and anonymized) in. WIDER, COCO and VOC boxes
    address the stored pixels, as dataset mode reads them (a photo with an EXIF orientation was measured against
    boxes in the wrong frame: every face 'leaked'); YOLO's are upright, as Ultralytics reads them."""
    from ..dataset.orient import boxes_to_oriented, exif_orientation
    from ..detections import Detections

    orientation = exif_orientation(path) if fmt != "yolo" else 1
    if orientation == 1:
        return lab.faces
    h, w = shape[:2]
    sw, sh = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the stored size
    return Detections.from_boxes(boxes_to_oriented(lab.xyxy, orientation, sw, sh), source="label")


def _visible(faces, shape) -> np.ndarray:
    """Per labelled box: whether it has a pixel in the image (see ``pixel_spans``)."""
    from ..eval.leaks import pixel_spans

    s = pixel_spans(faces.xyxy, shape[1], shape[0])
    return (s[:, 2] > s[:, 0]) & (s[:, 3] > s[:, 1])


def _operating_point(used) -> dict | None:
    """Recall and precision of the detections in use (a size-aware cut is no single point on the score axis)."""
    if not len(used.recall):
        return None
    return {"recall": float(used.recall[-1]) if used.positives else math.nan, "precision": float(used.precision[-1])}


def _thin(a: np.ndarray, n: int = 400) -> list[float]:
    a = np.asarray(a, np.float64)
    if len(a) > n:
        a = a[np.linspace(0, len(a) - 1, n).round().astype(int)]
    return [round(float(v), 5) for v in a]


def _pct(x: float) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:5.2f}%"


def _print_summary(res, pr, op, ms, n, describe, args) -> None:
    params = ", ".join(f"{k}={v}" for k, v in describe["detector_params"].items())
    region = describe["region"]
    print(f"detector: {describe['detector']} ({params})")
    print(f"region: {region['shape']}, mask_scale {region['mask_scale']}, feather {region['feather']}")
    split = "" if args.split == "all" else f" ({args.split} half of the split)"
    print(f"{n} images{split}, {ms:.0f} ms/image for detection\n")
    print(f"{'face size (shorter side)':26s} {'faces':>7s} {'leaked':>7s} {'rate':>7s} {'boxed short':>12s} "
          f"{'never boxed':>12s}")
    for b in res.buckets:
        print(f"{b['bucket']:26s} {b['faces']:7d} {b['leaked']:7d} {_pct(b['rate']):>7s} {b['boxed_short']:12d} "
              f"{b['never_boxed']:12d}")
    print(f"{'all >= %g px' % args.min_size:26s} {res.faces:7d} {res.leaked:7d} {_pct(res.leak_rate):>7s} "
          f"{res.boxed_short:12d} {res.never_boxed:12d}")
    print(f"(leaked = boxed short, {res.short_min:.0%} to {args.coverage:.0%} covered, + never boxed, "
          f"under {res.short_min:.0%})")
    print(f"\nover-anonymized (away from faces): {_pct(res.away_rate)} of pixels "
          f"(mean per image {_pct(res.away_rate_mean)})")
    def num(v: float) -> str:  # AP and recall are undefined without a labelled face
        return f"{v:.3f}" if pr.positives else "-"

    line = f"detector vs labels (IoU 0.5, faces >= {args.min_size:g} px): AP {num(pr.ap)}"
    if op:
        line += f"; detections in use: recall {num(op['recall'])}, precision {op['precision']:.3f}"
    print(line)


CROP_NAME = re.compile(r".+_-?\d+_-?\d+_cov\d\d+\.png")  # _write_crops's names (and the flat ones before)


def _clear_crops(folder: Path) -> None:
    """Remove the leaked-face crops an earlier run wrote into ``folder`` (files named as ``_write_crops`` names
    them; anything else stays), and the subfolders that leaves empty."""
    if not folder.is_dir():
        return
    for p in sorted(folder.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        if p.is_file() and not p.is_symlink() and CROP_NAME.fullmatch(p.name):
            p.unlink()
        elif p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            p.rmdir()


def _write_crops(folder: Path, key: str, image, mask, boxes, item, budget: int, shown=None) -> int:
    """Crops of a photo's leaked faces: leaked/<its folder>/<its name>_<face index>_<x>_<y>_cov<NN>.png."""
    from PIL import Image

    from ..io.atomic import atomic_path
    from ..report.leaks import leak_crop

    written = 0
    for i in np.flatnonzero(item.leaked if shown is None else item.leaked & shown):
        if written >= budget:
            break
        x1, y1 = int(boxes[i][0]), int(boxes[i][1])
        crop = leak_crop(image, mask, boxes[i])
        with atomic_path(folder / f"{key}_{i}_{x1}_{y1}_cov{int(item.coverage[i] * 100):02d}.png") as tmp:
            Image.fromarray(crop).save(tmp, format="PNG")
        written += 1
    return written
