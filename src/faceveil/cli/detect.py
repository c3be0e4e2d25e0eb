"""`faceveil detect`: face boxes, scores and landmarks of images as JSON."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..errors import UsageError, one_line
from .common import (add_common_args, add_detection_args, anonymizer_config, batch_jobs, check_result_path,
                     STDOUT, check_writable, note_int8_build, plan_inputs, report_failures, strict_json,
                     write_result_file)


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser("detect", help="write face boxes, scores and landmarks as JSON", formatter_class=fmt,
                       description="Detect faces in images only (a video's per-frame faces: `faceveil anonymize` "
                                   "writes them to OUT/.faceveil/<name>.tracks.json).",
                       epilog="example:\n  faceveil detect photos/ --json boxes.json --threshold 0.3\n\n"
                              "Each face: \"box\" [x1, y1, x2, y2] (corners, not x y w h) in pixels of the upright\n"
                              "image (EXIF orientation applied), \"score\", 5 \"landmarks\" [x, y] (eyes, nose,\n"
                              "mouth corners; image-left first).")
    d.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="images (jpg png webp bmp tif avif heic) and/or folders")
    d.add_argument("--json", metavar="FILE", help="write results here (default: standard output)")
    add_detection_args(d, videos=False)
    add_common_args(d)
    d.set_defaults(func=cmd_detect)


def cmd_detect(args) -> int:
    from ..io.images import is_image_file, is_image_path
    from ..pipeline import Anonymizer
    from ..batch import run_batch

    from ..io.inputs import refuse_unreachable
    from ..io.video import is_video_path

    refuse_unreachable(*args.inputs, args.json)  # an input there was counted as one failed file, or a traceback
    cfg = anonymizer_config(args)
    for p in args.inputs:
        if is_video_path(p) and not Path(p).is_dir() and not is_image_file(p):  # a photo named .mp4: detected
            raise UsageError(f"{p}: a video; `faceveil detect` reads images only (`faceveil anonymize {p} -o OUT` "
                             "records a video's faces per frame in OUT/.faceveil/<name>.tracks.json)")
    if args.json:
        check_writable(args.json, "the detections")
    jobs, skipped = plan_inputs(args.inputs, ".", is_image_path, in_place=True)
    if args.json:
        check_result_path(args.json, "the detections", [j.src for j in jobs])
    videos = sum(1 for p in skipped if is_video_path(p))
    if videos:
        print(f"faceveil: {videos} video{'s' if videos > 1 else ''} skipped (`faceveil detect` reads images only)",
              file=sys.stderr)
    anon = Anonymizer.from_config(cfg)
    describe = anon.describe()
    note_int8_build(anon.detector, quiet=args.quiet)
    results = run_batch(cfg, jobs, "detect", batch_jobs(args.jobs, len(jobs)), not args.quiet) if jobs else []
    n_failed = report_failures(results)
    doc = {"faceveil": __version__, "detector": describe["detector"], "detector_params": describe["detector_params"],
           "files": [{"path": r.input, "size": r.size, "faces": r.detections, "error": r.error} for r in results]}
    write_result_file(args.json or STDOUT, strict_json(doc), "the detections")  # no --json: standard output
    if args.json:
        total = sum(r.faces for r in results)
        where = "standard output" if args.json == STDOUT else one_line(args.json)  # it said "-> -"
        n = len(results) - n_failed  # "1 faces in 1 files" before
        print(f"faceveil: {total} face{'' if total == 1 else 's'} in {n} file{'' if n == 1 else 's'} -> {where}",
              file=sys.stderr)
    return 1 if n_failed else 0
