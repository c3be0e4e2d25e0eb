"""`faceveil dataset anonymize|verify`: argument parsing and messages only (the work is in faceveil.dataset)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .. import __version__
from ..errors import UsageError, one_line
from .common import (add_detection_args, add_region_args, anonymizer_config, at_least, check_backend,
                     check_jpeg_quality, check_result_path, check_writable, done_verb, region_from_args,
                     strict_json, warn_many_jobs, warn_unchecked_donors, warn_weak, whole, write_result_file)
from .people import add_keep_args, keep_policy

EPILOG = """\
examples:
  faceveil dataset anonymize --format wider --images wider/images --jobs 2 \\
      --labels wider/ground_truth/wider_face_val_bbx_gt.txt -o wider-anon/
  faceveil dataset anonymize --format coco --images coco/images -o anon/ \\
      --labels coco/faces.json -m pixelate --boxes gt --min-size 8
  faceveil dataset anonymize --format yolo --images ds/images -o anon/ \\
      --labels ds/labels --face-classes 0 --backend ray --jobs 4
  faceveil dataset anonymize --format wider --images ds/images -o anon/ \\
      --labels ds/gt.txt --keep-people people.npz  # those people not hidden
  faceveil dataset verify anon/

Images keep their names, folders and sizes; label files are copied byte for byte, so the
labels stay valid. OUT/manifest.jsonl records every file with its input and output SHA-256.
Run the same command again to resume after a crash or Ctrl-C, or after editing the labels.
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ds = sub.add_parser("dataset", help="anonymize an annotated dataset, keeping its labels valid")
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="DATASET_COMMAND", required=True)

    a = ds_sub.add_parser("anonymize", help="anonymize every image of a WIDER, COCO, YOLO or VOC dataset",
                          formatter_class=fmt, epilog=EPILOG,
                          description="Anonymize the faces of an annotated dataset into OUT, resumably.")
    a.add_argument("--format", "-f", required=True, choices=["wider", "coco", "yolo", "voc"],
                   help="label format (voc: a folder of Pascal VOC XML files)")
    a.add_argument("--images", required=True, metavar="DIR", help="the images root the labels refer to")
    a.add_argument("--labels", required=True, metavar="FILE",
                   help="label file (wider, coco) or folder (yolo: .txt per image; voc: .xml)")
    a.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (outside the dataset)")
    a.add_argument("--method", "-m", default="blur", help="anonymization method (see `faceveil methods`)")
    a.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[], help="method parameter")
    a.add_argument("--boxes", choices=["gt", "detect", "union"], default="auto",
                   help="labelled boxes, detections, or both (default union when the labels are faces, else "
                        "it asks); gt runs no detector: unlabelled faces stay visible")
    a.add_argument("--min-size", type=at_least(0), default=0.0, metavar="N",
                   help="leave (and count) faces under N px on their shorter side (default 0)")
    a.add_argument("--face-classes", metavar="NAMES",
                   help="face classes, a,b (default: all if named face/mask, else it asks)")
    add_region_args(a)

    add_detection_args(a, videos=False)
    add_keep_args(a)  # the same --keep-people, --keep-region, --only-region as `faceveil anonymize`
    o = a.add_argument_group("output and scale")
    o.add_argument("--seed", type=whole(), default=0, help="seed for random methods (recorded in the manifest)")
    o.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG/WebP/AVIF/HEIC quality (default 95)")
    o.add_argument("--keep-metadata", action="store_true",
                   help="keep EXIF (GPS too), XMP, comments (stripped by default)")
    o.add_argument("--jobs", "-j", type=int, default=None,
                   help="worker processes or Ray actors (default 1; local: one per core when each gets 32 images)")
    o.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local worker processes, or Ray (a local instance unless --address)")
    o.add_argument("--address", help="Ray cluster address, e.g. ray://head:10001 or auto")
    o.add_argument("--overwrite", action="store_true",
                   help="OUT is another dataset's: replace its labels and same-named images")
    o.add_argument("--summary", metavar="FILE", help="also write the run's summary as JSON (-: standard output)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    a.set_defaults(func=cmd_dataset_anonymize)

    v = ds_sub.add_parser("verify", help="recheck the hashes of a dataset output against its manifest")
    v.add_argument("output", metavar="OUT", help="a folder written by `faceveil dataset anonymize`")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.add_argument("--debug", action="store_true", help="show tracebacks")
    v.set_defaults(func=cmd_dataset_verify)


def cmd_dataset_anonymize(args) -> int:
    from ..dataset import DatasetConfig, anonymize_dataset
    from ..io.inputs import refuse_unreachable
    from ..registry import parse_assignments

    # before --keep-people's gallery is described
    refuse_unreachable(args.images, args.labels, args.output, args.summary, args.keep_people)
    check_backend(args)
    check_jpeg_quality(args)
    region = region_from_args(args)
    anon_cfg = anonymizer_config(args, args.method, parse_assignments(args.param), region)
    from ..anonymize import METHODS, get_method
    from ..registry import make_params

    method_cls = METHODS.get(anon_cfg.method)  # bad names and parameters fail first
    warn_weak(anon_cfg.method, make_params(method_cls, anon_cfg.method_params, f"method {anon_cfg.method!r}"))
    if anon_cfg.method == "replace":
        warn_unchecked_donors(get_method(anon_cfg.method, anon_cfg.method_params))
    if args.keep_people or args.keep_region or args.only_region:
        from ..pipeline import Anonymizer

        # a folder of photos is described once, here, with the run's detector; workers get the descriptors
        keep = keep_policy(args, Anonymizer.from_config(anon_cfg).detector if args.keep_people else None)
        anon_cfg = dataclasses.replace(anon_cfg, keep=keep)
    cfg = DatasetConfig(anon_cfg, args.boxes, args.min_size)
    classes = None
    if args.face_classes is not None:
        classes = {c.strip() for c in args.face_classes.split(",") if c.strip()}
        if not classes:
            raise UsageError("--face-classes is empty; use --boxes detect when no label class is a face")
    if args.summary:
        check_writable(args.summary, "the summary")
        check_result_path(args.summary, "the summary", [args.labels], folders=[args.images, args.output, args.labels])
    if args.backend == "local":
        warn_many_jobs(args.jobs)
    s = anonymize_dataset(args.format, args.images, args.labels, args.output, cfg, args.jobs, args.backend,
                          args.address, classes, progress=not args.quiet, overwrite=args.overwrite)
    for msg in s.failed:
        print(f"faceveil: error: {one_line(msg)}", file=sys.stderr)
    for rel in s.missing[:20]:
        # An error (the run exits 1): the labels promise an image the output will not have.
        print(f"faceveil: error: {one_line(rel)}: in the labels but no such image; not written", file=sys.stderr)
    if len(s.missing) > 20:
        print(f"faceveil: error: ... and {len(s.missing) - 20} more missing images", file=sys.stderr)
    if s.unlabelled:
        print(f"faceveil: warning: {len(s.unlabelled)} images under {one_line(args.images)} are not in the labels and "
              f"were not written (e.g. {one_line(s.unlabelled[0])})", file=sys.stderr)
    if s.other_media:
        # names escaped (one_line): a name holding a newline printed a status line of its own
        shown = ", ".join(map(one_line, s.other_media[:5])) + (", ..." if len(s.other_media) > 5 else "")
        print(f"faceveil: warning: {len(s.other_media)} pictures or videos under {one_line(args.images)} in formats "
              f"faceveil does not read skipped, not anonymized and not written: {shown}", file=sys.stderr)
    if s.no_label_file:
        # YOLO's convention (no file: no object); under --boxes gt nothing hides a face there, so it is said
        risk = (" and, with --boxes gt, written with any face as it is" if s.boxes == "gt" else
                ", their faces hidden by detection only")
        print(f"faceveil: warning: {len(s.no_label_file)} images have no label file (e.g. "
              f"{one_line(s.no_label_file[0])}): taken as having no labelled face{risk}", file=sys.stderr)
    if args.summary:
        write_result_file(args.summary, strict_json({"faceveil": __version__, **s.to_json()}), "the summary")
    rate = s.done / s.seconds if s.seconds > 0 else 0.0
    from ..anonymize import METHODS

    msg = (f"faceveil: {s.done} images {done_verb(METHODS.get(anon_cfg.method))}, {s.skipped} already done, "
           f"{len(s.failed)} failed, "
           f"{len(s.missing)} missing ({rate:.1f} images/s) -> {one_line(args.output)}\n"
           f"faceveil: faces (--boxes {s.boxes}): {s.faces_labels} labelled, "
           + ("detector not run (--boxes gt): faces without a label are not hidden, " if s.boxes == "gt" else
              f"{s.faces_detected} detected ({s.faces_detected_extra} not in the labels), ")
           + f"{s.small_left} below --min-size left alone, "
           f"{s.clipped} labelled boxes clipped to the image, {s.degenerate} without area"
           + (f"; {s.kept} kept as they are (--keep-*)" if s.keep else ""))
    frame = ("upright view, as Ultralytics reads it" if args.format == "yolo" else
             f"stored pixels, as {args.format.upper()} boxes address them")
    for what in s.frame_unchecked[:20]:  # boxes drawn on the other view would miss every face: the user must look
        msg += (f"\nfaceveil: warning: {one_line(Path(args.images) / what)}: nothing in the labels shows which view "
                f"their boxes were drawn on; taken in the {frame}: check that its faces are hidden")
    if len(s.frame_unchecked) > 20:
        msg += f"\nfaceveil: warning: ... and {len(s.frame_unchecked) - 20} more such EXIF-rotated images"
    if s.stale_tmp_removed:
        msg += f"\nfaceveil: removed {s.stale_tmp_removed} partial files left by an interrupted run"
    print(msg, file=sys.stderr)
    return 1 if s.failed or s.missing else 0


def cmd_dataset_verify(args) -> int:
    from ..dataset import verify

    rep = verify(args.output)
    if args.json:
        print(json.dumps({"ok": rep.ok, "checked": rep.checked, "missing": rep.missing, "altered": rep.altered,
                          "damaged": rep.damaged, "unexpected": rep.unexpected, "mixed": rep.mixed,
                          "unlabelled": rep.unlabelled, "unreadable": rep.unreadable, "unchecked": rep.unchecked},
                         indent=1))
    for line in rep.unreadable:  # "rel: why", named from OUT as other commands name a folder they cannot read
        print(f"faceveil: error: {one_line(Path(args.output) / line)}", file=sys.stderr)
    for kind, items in (("missing", rep.missing), ("altered", rep.altered), ("does not decode", rep.damaged),
                        ("not in the manifest", rep.unexpected), ("made with other settings", rep.mixed),
                        ("not as the labels say", rep.unlabelled)):
        for rel in items:
            print(f"faceveil: {kind}: {one_line(rel)}", file=sys.stderr)
    status = "ok" if rep.ok else "FAILED"
    # an unreadable folder is said as one, not counted as one file: the outputs in it are counted as not checked
    folders, files = rep.unreadable_folders, len(rep.unreadable) - rep.unreadable_folders
    unreadable = " and ".join(f"{n} {what}{'' if n == 1 else 's'}" for n, what in ((folders, "folder"), (files, "file"))
                              if n) + " cannot be read"
    print(f"faceveil: verify {status}: {rep.checked} files checked, {len(rep.missing)} missing, "
          f"{len(rep.altered)} altered, {len(rep.damaged)} do not decode, {len(rep.unexpected)} not in the manifest"
          + (f", {len(rep.mixed)} made with other settings" if rep.mixed else "")
          + (f", {len(rep.unlabelled)} not as the labels say" if rep.unlabelled else "")
          + (f", {len(rep.unchecked)} not checked ({unreadable})" if rep.unchecked else
             f", {unreadable}" if rep.unreadable else ""),
          file=sys.stderr)
    return 0 if rep.ok else 1
