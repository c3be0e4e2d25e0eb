"""`faceveil anonymize`: images, videos and folders (the video options and the loop over video files too)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from .. import __version__
from ..detect.presets import VIDEO_DETECT_EVERY, VIDEO_HOLD_S, VIDEO_LOOKAHEAD_S, VIDEO_PRESET
from ..errors import FaceveilError, InputError, UsageError, one_line
from ..io.images import is_image_path
from ..io.inputs import OTHER_MEDIA, output_folders
from ..io.video import is_video_path
from .people import add_keep_args, keep_policy
from .common import (add_common_args, add_detection_args, add_region_args, anonymizer_config, batch_jobs,
                     check_backend, check_jpeg_quality, check_result_path, check_writable, note_int8_build, plan_inputs,
                     region_from_args, report_failures, strict_json, warn_unchecked_donors, warn_weak, done_verb,
                     write_result_file, whole, STDOUT)

EPILOG_ANON = """\
examples:
  faceveil anonymize photo.jpg -o out/
  faceveil anonymize photos/ -o out/ --report report.json --jobs 2
  faceveil anonymize clip.mp4 -o out/ --detect-every 2             # videos: H.264, audio copied

Outputs keep names, formats, folders; metadata is stripped; a failed file is not written (exit 1).
"""


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    a = sub.add_parser("anonymize", help="hide faces in images, videos or folders", formatter_class=fmt,
                       epilog=EPILOG_ANON, description="Detect faces in images and videos and hide them.")
    a.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="images (jpg png webp bmp tif avif heic; - stdin), videos, folders")
    a.add_argument("-o", "--output", metavar="OUT",
                   help="output folder (made if missing); one input: a file (x.jpg), - stdout")
    a.add_argument("--method", "-m", default="blur", help="anonymization method (see `faceveil methods`); default blur")
    a.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", default=[],
                   help="a method parameter, repeatable, e.g. -p relative=0.5")
    add_region_args(a)
    add_detection_args(a)
    o = a.add_argument_group("output")
    o.add_argument("--report", metavar="FILE",
                   help="JSON summary (-: stdout): per file faces, method, params, time, errors")
    o.add_argument("--keep-metadata", action="store_true",
                   help="photos: keep EXIF (GPS too), XMP, comments, no previews (videos: never)")
    o.add_argument("--jpeg-quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP/AVIF/HEIC quality (default 95; a lossless WebP stays lossless)")
    o.add_argument("--in-place", action="store_true", help="overwrite the inputs instead of writing to -o (careful)")
    ex = o.add_mutually_exclusive_group()
    ex.add_argument("--overwrite", action="store_true",
                    help="replace existing outputs (default: refuse, naming the first)")
    ex.add_argument("--skip-existing", action="store_true",
                    help="leave existing outputs alone (a video's only if these settings made it)")
    o.add_argument("--seed", type=whole(), default=0,
                   help="seed for random methods (same seed and file: same output, any path)")
    o.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="videos one by one (local) or one per task on --jobs Ray actors (ray)")
    o.add_argument("--address", help="Ray cluster for --backend ray, e.g. ray://head:10001 (default: local)")
    add_keep_args(a)
    add_common_args(a)
    add_video_args(a)
    a.set_defaults(func=cmd_anonymize, stdio=True)  # "-" in and -o - out: one photo through a pipe


def cmd_anonymize(args) -> int:
    from ..pipeline import Anonymizer
    from ..registry import parse_assignments
    from ..batch import run_batch
    from ..io.inputs import refuse_unreachable

    refuse_unreachable(*args.inputs, args.output, args.report)  # an input there was counted as one failed file
    region = region_from_args(args)
    check_jpeg_quality(args)
    cfg = anonymizer_config(args, args.method, parse_assignments(args.param), region)
    if args.in_place and args.output:
        raise UsageError("give either -o OUT or --in-place, not both")
    if args.report:
        check_writable(args.report, "the report")
    video_options(args)  # bad video options fail before any work
    check_backend(args)
    keep = keep_policy(args, Anonymizer.from_config(cfg).detector if args.keep_people else None)
    cfg = dataclasses.replace(cfg, keep=keep)
    if STDIO in map(str, args.inputs) or args.output == STDIO:
        return _piped(args, cfg)
    jobs, skipped = plan_inputs(args.inputs, args.output, is_media_path, args.in_place)
    # A file named on the command line is planned whatever its name: one faceveil cannot write fails before any work
    # (it was detected first, then failed naming the output), and the batch goes on.
    unwritable = [j for j in jobs if not is_media_path(j.dst)]
    jobs = [j for j in jobs if is_media_path(j.dst)]
    media = [p for p in skipped if p.suffix.lower() in OTHER_MEDIA]
    if media:
        print(f"faceveil: warning: {len(media)} pictures or videos in formats faceveil does not read skipped, not "
              f"anonymized and not written: {', '.join(map(one_line, media[:5]))}{', ...' if len(media) > 5 else ''}",
              file=sys.stderr)
    from ..io.inputs import check_existing

    jobs, kept = check_existing(jobs, "overwrite" if args.overwrite else "skip" if args.skip_existing else "refuse")
    if args.report:
        check_result_path(args.report, "the report", [j.src for j in jobs + kept], [j.dst for j in jobs + kept],
                          overwrite=args.overwrite)
    image_jobs, video_jobs = split_video_jobs(jobs)
    kept_images, kept_videos = split_video_jobs(kept)
    warn_unused(args, photos=bool(image_jobs or kept_images or unwritable), videos=bool(video_jobs or kept_videos))
    warn_quality_unused(args, [j.dst for j in image_jobs])
    timed = [r for r in (keep.keep_regions + keep.only_regions) if r.t0 is not None or r.t1 is not None] if keep else []
    if timed and image_jobs:  # a photo has no time: such a region keeps nobody there (fails closed), say so
        print(f"faceveil: warning: regions with a time window (@t0-t1) apply to videos only: in the {len(image_jobs)} "
              "images they keep no face (--keep-region) and restrict none (--only-region)", file=sys.stderr)
    if args.preview:
        check_previews(video_jobs, [j.dst for j in jobs + kept])
    check_lookaheads(video_jobs, video_options(args))
    from ..io.atomic import remove_stale_temporaries

    # the kept outputs' folders too: a run killed before its video had its name set that video's record aside there
    # (--skip-existing's check below reads it once the sweep has put it back)
    stale = remove_stale_temporaries(output_folders(jobs + kept))
    # Build once here so bad names, parameters or a missing model fail before any work.
    vanon = first = Anonymizer.from_config(cfg)  # the videos' too, unless they get the video preset below
    warn_unchecked_donors(vanon.method)
    warn_weak(cfg.method, vanon.method.params)
    describe = vanon.describe()
    vcfg = cfg
    if (video_jobs or kept_videos) and args.detect is None and args.detector is None:
        # Per-frame cost decides video speed and tracking (hold, look-ahead) bridges a missed frame,
        # so videos default to the video preset (fast's one pass, int8; bench/bench_video.py measures leaks and fps).
        vcfg = anonymizer_config(argparse.Namespace(**{**vars(args), "detect": VIDEO_PRESET}), args.method,
                                 parse_assignments(args.param), region)
        vcfg = dataclasses.replace(vcfg, keep=keep)
        vanon = Anonymizer.from_config(vcfg)
        if image_jobs:
            describe["video"] = vanon.describe()
        elif video_jobs:
            describe = vanon.describe()
    note_int8_build(first.detector, vanon.detector, quiet=args.quiet)
    if kept_videos:  # --skip-existing: only outputs made with these settings count as done (exit 2 otherwise)
        from ..video.record import check_resume

        check_resume([j.dst for j in kept_videos], vanon, video_options(args), [j.src for j in kept_videos])
    workers = batch_jobs(args.jobs, len(image_jobs))
    results = run_batch(cfg, image_jobs, "anonymize", workers, not args.quiet, args.overwrite,
                        faces=bool(args.report)) if image_jobs else []  # each face's box: for the report only
    report_photo_warnings(results)
    results += run_videos(vcfg, video_jobs, args)
    results += [unwritten(j) for j in unwritable]
    n_failed = report_failures(results)
    written = [r for r in results if r.status == "written"]
    n_kept = sum(_kept(r) for r in written)
    if args.report:
        _write_report(args.report, cfg, describe, results, skipped, [j.dst for j in kept])
    where = one_line(args.output) if args.output else "in place"
    n_files = len(jobs) + len(unwritable)
    if n_files or not kept:
        msg = (f"faceveil: {len(written)} of {n_files} files {done_verb(first.method)} ({_faces_text(written)}) "
               f"-> {where}")
    else:  # --skip-existing with every output there: "0 of 0 files anonymized (0 faces)" said nothing of it
        msg = f"faceveil: nothing to do -> {where}"
    if keep and n_files:
        msg += f"; {n_kept} kept as they are (faces; tracks in videos)"
    if len(skipped) > len(media):
        msg += f"; {len(skipped) - len(media)} other files skipped"
    if media:
        msg += f"; {len(media)} pictures or videos in other formats skipped"
    if kept:
        msg += f"; {_left(len(kept))}"
        if kept_images:  # a video's track record says which settings made it (checked above); an image has none
            msg += (" (an image whose settings faceveil cannot check: --overwrite redoes it)" if len(kept_images) == 1
                    else f" ({len(kept_images)} images whose settings faceveil cannot check: --overwrite redoes them)")
    if stale:
        msg += f"; {stale} temporary files of interrupted runs removed"
    if n_failed:
        msg += f"; {n_failed} failed (not written)"
    print(msg, file=sys.stderr)
    # Video frames blurred or dropped, or a truncated or damaged video written under --allow-truncated.
    partial = any(getattr(r, "failed_frames", 0) or getattr(r, "truncated", None) or getattr(r, "decode_errors", 0)
                  for r in written)
    return 1 if n_failed or partial else 0


def _left(n: int) -> str:
    """The summary's words for the outputs --skip-existing left alone."""
    return "1 existing output left as it was" if n == 1 else f"{n} existing outputs left as they were"


STDIO = STDOUT  # an input "-" is standard input, -o - standard output (one photo, as in ffmpeg and ImageMagick)


def _piped(args, cfg) -> int:
    """One photo through a pipe: ``-`` in (standard input) and/or ``-o -`` out (standard output), in the input's
    format unless -o names a file. Written only once the whole output is encoded (a failed photo writes nothing:
    exit 1); the summary goes to standard error as for files."""
    import os
    from pathlib import Path

    from ..io.atomic import write_bytes_atomic
    from ..io.images import read_file
    from ..io.inputs import check_existing, Job
    from ..pipeline import Anonymizer, ItemResult

    inputs = [str(p) for p in args.inputs]
    if len(inputs) > 1:
        raise UsageError("standard input or output takes one photo: give '-' or one file, alone")
    if args.in_place:
        raise UsageError("--in-place cannot be used with standard input or output")
    src, out = inputs[0], args.output
    if out is None:
        raise UsageError("-: reading standard input needs -o FILE (e.g. -o blurred.jpg) or -o - (standard output)")
    if src != STDIO and is_video_path(src):
        raise UsageError(f"{src}: a video cannot go to standard output (its container needs a file): give -o FILE")
    if src != STDIO and not os.path.isfile(src):
        raise UsageError(f"{src}: no such file")
    if out == STDIO and args.report == STDIO:
        raise UsageError("--report - and -o - both want standard output: give the report a file name")
    if out == STDIO and sys.stdout.isatty():
        raise UsageError("-o -: standard output is a terminal; redirect it (> blurred.jpg) or pipe it")
    if out != STDIO:
        if os.path.isdir(out) or out.endswith(("/", os.sep)) or not is_image_path(out):
            raise UsageError(f"{one_line(out)}: standard input needs an image file name to write (e.g. -o "
                             "blurred.jpg), not a folder" if src == STDIO else
                             f"{one_line(out)}: not an image file name (e.g. -o blurred.jpg)")
        from ..io.atomic import remove_stale_temporaries

        remove_stale_temporaries({Path(out).parent})  # a killed run's temporary file beside it
        todo, _ = check_existing([Job(Path(src), Path(out), src)],
                                 "overwrite" if args.overwrite else "skip" if args.skip_existing else "refuse")
        if not todo:  # --skip-existing: the output stays as it is
            print(f"faceveil: nothing to do -> {one_line(out)}; {_left(1)}", file=sys.stderr)
            return 0
    if src == STDIO and sys.stdin.isatty():  # it waited, silently, for a photo typed in
        raise UsageError("-: standard input is a terminal; pipe a photo in (< photo.jpg) or name the file")
    if args.report:
        check_result_path(args.report, "the report", [] if src == STDIO else [src], [] if out == STDIO else [out],
                          overwrite=args.overwrite)
    warn_unused(args, photos=True, videos=False)
    warn_quality_unused(args, [] if out == STDIO else [out])  # standard output: the input's format, not known yet
    anon = Anonymizer.from_config(cfg)
    warn_unchecked_donors(anon.method)
    warn_weak(cfg.method, anon.method.params)
    name = "standard input" if src == STDIO else src  # as the results and messages name it
    try:
        data = sys.stdin.buffer.read() if src == STDIO else read_file(Path(src))
        if not data:  # as an empty file is named ("not an image or unsupported format" before)
            raise InputError("standard input: empty (0 bytes: nothing was piped in)")
    except FaceveilError as exc:
        result, encoded = ItemResult(name, None, "failed", error=str(exc)), None
    else:
        result, encoded = anon.encode_bytes(data, name, None if out == STDIO else out)
    if encoded is not None and out != STDIO:
        try:
            write_bytes_atomic(out, encoded, replace=args.overwrite)
        except FaceveilError as exc:  # the folder cannot be made, a disk full: the file fails, as in a batch
            result, encoded = ItemResult(name, None, "failed", error=str(exc), target=out), None
    if encoded is not None:
        if out == STDIO:
            sys.stdout.buffer.write(encoded)
            sys.stdout.flush()
        result.output = "standard output" if out == STDIO else out
    report_photo_warnings([result])
    report_failures([result])
    if args.report:
        _write_report(args.report, cfg, anon.describe(), [result])
    where = "standard output" if out == STDIO else one_line(out)
    if encoded is None:
        print(f"faceveil: 0 of 1 files {done_verb(anon.method)} -> {where}; 1 failed (not written)", file=sys.stderr)
        return 1
    print(f"faceveil: 1 of 1 files {done_verb(anon.method)} ({_faces_text([result])}) -> {where}", file=sys.stderr)
    return 0


def report_photo_warnings(results) -> None:
    """A written photo's warnings, one line each (a .jpg that lost the input's transparency: it went silently).
    A video's are said with its other lines (run_videos)."""
    for r in results:
        for w in r.warnings or []:
            print(f"faceveil: warning: {one_line(w)}", file=sys.stderr)


def _write_report(path: str, cfg, describe: dict, results: list, skipped=(), existing=()) -> None:
    """--report's document: the settings, how the files were written too (`review --from-report` rewrites them the
    same way), each file's result, the files skipped and the existing outputs left as they were, and the counts."""
    written = [r for r in results if r.status == "written"]
    report = {"faceveil": __version__, **describe, "jpeg_quality": cfg.jpeg_quality,
              "keep_metadata": cfg.keep_metadata, "files": [r.to_json() for r in results],
              "skipped": [str(p) for p in skipped], "existing": [str(p) for p in existing],
              "summary": {"written": len(written), "failed": sum(r.status == "failed" for r in results),
                          "skipped": len(skipped), "faces": sum(r.faces for r in written),
                          "kept": sum(_kept(r) for r in written)}}
    write_result_file(path, strict_json(report), "the report")


def unwritten(job):
    """The failed result of a named file that faceveil cannot write under its name."""
    from ..pipeline import ItemResult

    kind = f"faceveil does not write {job.dst.suffix} files" if job.dst.suffix.lower() in OTHER_MEDIA else \
        "not an image or video faceveil writes"
    return ItemResult(str(job.src), None, "failed", error=f"{job.src}: {kind} (images: .jpg, .png, .webp, .bmp, "
                      ".tif, .avif, .heic; videos: .mp4, .mov, .mkv, .avi, .webm); if it is a picture, give it alone "
                      "with -o NAME.png")


def _kept(result) -> int:
    """Faces (an image's) or tracks (a video's) a result left as they are."""
    return len(getattr(result, "kept", None) or [])


def _faces_text(written) -> str:
    """"3 faces" hidden, or for videos "14387 face-frames in videos" (one face over 300 frames counts 300). An image's
    faces kept as they are (--keep-people, --keep-region) are not counted: they are named after this."""
    n_img = sum(r.faces - _kept(r) for r in written if not is_video_path(r.input))
    n_vid = sum(r.faces for r in written if is_video_path(r.input))
    img = f"{n_img} face{'' if n_img == 1 else 's'}"
    if not any(is_video_path(r.input) for r in written):
        return img
    vid = f"{n_vid} face-frame{'' if n_vid == 1 else 's'} in videos"
    return f"{img} in images, {vid}" if len(written) > sum(is_video_path(r.input) for r in written) else vid


def is_media_path(path) -> bool:
    return is_image_path(path) or is_video_path(path)


# x264's and x265's preset names (both encoders take the same ones); anything else fails in the encoder.
X264_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]


def add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (mp4, mov, mkv, avi, webm)")
    g.add_argument("--crf", type=int, default=20, help="video quality, lower is better (x264 CRF 0-51; default 20)")
    g.add_argument("--codec", help="video codec (default libx264; libvpx-vp9 for .webm), e.g. libx265")
    g.add_argument("--preset", default="veryfast", choices=X264_PRESETS, metavar="PRESET",
                   help=f"x264/x265 speed: {X264_PRESETS[0]}..{X264_PRESETS[-1]} (default %(default)s)")
    g.add_argument("--no-audio", action="store_true", help="drop the audio stream (default: copied unchanged)")
    g.add_argument("--hold", type=int, metavar="FRAMES",
                   help=f"keep a lost face hidden where it is predicted (default {VIDEO_HOLD_S:g} s)")
    g.add_argument("--lookahead", type=int, metavar="FRAMES",
                   help=f"hide a face this long before it is first detected (default {VIDEO_LOOKAHEAD_S:g} s)")
    g.add_argument("--detect-every", type=int, default=VIDEO_DETECT_EVERY, metavar="N",
                   help=f"detect on every Nth frame and at cuts, track between (default {VIDEO_DETECT_EVERY})")
    g.add_argument("--full-every", type=int, default=1, metavar="N",
                   help="full frames every N, crops between (default 1; margin: --crop-margin M)")
    g.add_argument("--crop-margin", type=float, default=1.0, metavar="M", help=argparse.SUPPRESS)
    g.add_argument("--no-tracking", action="store_true",
                   help="detect on every frame (whatever --detect-every), no hold, no look-ahead")
    g.add_argument("--on-error", choices=["blur", "drop"], default="blur",
                   help="a frame that fails is written fully blurred (default) or dropped")
    g.add_argument("--preview", type=float, default=0, metavar="SECONDS",
                   help="also write a still every SECONDS into OUT/<name>_preview/")
    g.add_argument("--allow-truncated", action="store_true",
                   help="write what decodes of a truncated video (exit 1; default: write nothing)")


# Output options for photos only (videos never keep metadata; their quality is --crf).
PHOTO_ONLY = {"keep_metadata": ("--keep-metadata", False), "jpeg_quality": ("--jpeg-quality", 95)}


def warn_unused(args, photos: bool, videos: bool) -> None:
    """One warning line (as ffmpeg's for an option no stream uses) when a run has no file an option given applies
    to: --crf and the other video options in a run of photos only, --keep-metadata and --jpeg-quality in a run of
    videos only; they were ignored without a word. A value given equal to the default changes nothing either way."""
    if not photos and not videos:  # nothing to run
        return
    unused = []
    if not videos:
        probe = argparse.ArgumentParser(add_help=False)
        add_video_args(probe)
        unused += [max(a.option_strings, key=len) for a in probe._actions
                   if a.option_strings and getattr(args, a.dest, a.default) != a.default]
    if not photos:
        unused += [flag for dest, (flag, default) in PHOTO_ONLY.items() if getattr(args, dest, default) != default]
    if unused:
        kind, other = ("videos", "photos") if not videos else ("photos", "videos")
        print(f"faceveil: warning: {', '.join(unused)} appl{'ies' if len(unused) == 1 else 'y'} to {kind} only, and "
              f"this run has only {other}: not used", file=sys.stderr)


def warn_quality_unused(args, outputs) -> None:
    """One warning line when --jpeg-quality is given and none of the photos to write takes a quality (PNG, TIFF, BMP
    are lossless): it was ignored without a word, as --crf in a run of photos was before warn_unused."""
    from ..io.images import takes_quality

    default = PHOTO_ONLY["jpeg_quality"][1]
    if outputs and args.jpeg_quality != default and not any(takes_quality(p) for p in outputs):
        print("faceveil: warning: --jpeg-quality applies to JPEG, WebP, AVIF and HEIC outputs only, and this run "
              "writes none (PNG, TIFF, BMP are lossless): not used", file=sys.stderr)


def video_options(args):
    from ..io.video import EncodeOptions
    from ..video import VideoOptions

    if args.codec:
        from ..io.video import check_codec

        check_codec(args.codec)
    enc = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, audio=not args.no_audio)
    return VideoOptions(tracking=not args.no_tracking, hold=args.hold, lookahead=args.lookahead,
                        detect_every=args.detect_every, full_every=args.full_every,
                        crop_margin=args.crop_margin, on_error=args.on_error, preview=args.preview,
                        allow_truncated=args.allow_truncated, encode=enc)


def check_previews(video_jobs, outputs) -> None:
    """--preview: no two videos write their stills into one folder (named after each video's whole name: only a clash
    of two long names' hashes could), and no output of the run lies in a video's stills folder (an image
    OUT/clip.mp4_preview/x.jpg), where a still would replace it."""
    from ..video.job import preview_dir

    owner: dict = {}
    for j in video_jobs:
        d = preview_dir(j.dst)
        if d in owner:
            raise UsageError(f"{j.src}: its --preview stills would go to {d}, as those of {owner[d]} do; "
                             "give the videos different names, or leave out --preview")
        owner[d] = j.src
    for dst in outputs:
        for d in dst.parents:
            if d in owner:
                raise UsageError(f"{dst}: an output inside {d}, where the --preview stills of {owner[d]} go; "
                                 "leave out --preview or move that input")


def check_lookaheads(video_jobs, options) -> None:
    """--lookahead and --full-every (which raises the look-ahead) against each video's frame rate, before any work
    (exit 2); a video that cannot be read fails later, as any other. The default look-ahead (0.5 s) always fits."""
    from ..io.video import probe
    from ..video.job import check_lookahead

    if options.lookahead is None and options.full_every == 1:
        return
    for j in video_jobs:
        try:
            fps = float(probe(j.src).fps)
        except FaceveilError:
            continue
        check_lookahead(options, fps, j.src)


def split_video_jobs(jobs):
    return [j for j in jobs if not is_video_path(j.src)], [j for j in jobs if is_video_path(j.src)]


def run_videos(cfg, jobs, args) -> list:
    """Each video in turn (each uses every core); a result per video, failures reported, never raised."""
    from ..pipeline import Anonymizer
    from ..video import process_video

    if not jobs:
        return []
    options = video_options(args)
    replace = args.overwrite or args.in_place  # else an output another run makes meanwhile is not replaced
    if getattr(args, "backend", "local") == "ray":
        from ..video.ray_backend import run_videos_ray

        done: dict[int, object] = {}
        for i, r in run_videos_ray(cfg, jobs, options, args.jobs or 1, args.address, replace):
            done[i] = r
            if not args.quiet:
                print(f"faceveil: video {len(done)}/{len(jobs)} done: {one_line(jobs[i].rel)}", file=sys.stderr)
        finished = ((jobs[i], done[i]) for i in range(len(jobs)))  # reported in input order, as locally
    else:
        anonymizer = Anonymizer.from_config(cfg)

        def local():
            for i, job in enumerate(jobs):
                if not args.quiet and len(jobs) > 1:
                    print(f"faceveil: video {i + 1}/{len(jobs)}: {one_line(job.rel)}", file=sys.stderr)
                yield job, process_video(anonymizer, job.src, job.dst, options, progress=not args.quiet,
                                         replace=replace)

        finished = local()
    from ..batch import planned

    results = []
    for job, r in finished:
        name = one_line(job.src)
        if r.status == "failed":
            r = planned(r, job)
        if r.status == "written":
            if r.failed_frames:
                what = "dropped" if options.on_error == "drop" else "written fully blurred"
                print(f"faceveil: warning: {name}: {r.failed_frames} frames could not be processed ({what}); "
                      f"first: {one_line(r.warnings[0]) if r.warnings else '?'}", file=sys.stderr)
            if r.decode_errors:  # written under --allow-truncated
                first = next((w for w in r.warnings or [] if w.startswith("damaged: ")), "?")
                print(f"faceveil: warning: {name}: {r.decode_errors} damaged places (packets left out, frames "
                      f"missing or concealed by the decoder); first: {one_line(first[len('damaged: '):])}",
                      file=sys.stderr)
            for w in r.warnings or []:
                # a stream the output lacks, a setting that can leak, frames whose timestamps were mended, an
                # earlier run's --preview still of this video that could not be removed, a track record not written
                # once the video had its name (the review flags the video, a resume refuses it)
                if w.startswith(("not copied: ", "risk: ", "re-timed: ", "old still not removed: ",
                                 "track record not written: ")):
                    print(f"faceveil: warning: {name}: {one_line(w)}", file=sys.stderr)  # w may name a file
            if r.truncated:
                print(f"faceveil: warning: {name}: truncated: {one_line(r.truncated)}; the frames that decoded were "
                      "written", file=sys.stderr)
            if not args.quiet:
                # A face seen in 300 frames is 300 face-frames and one track (boxes linked over time).
                print(f"faceveil: {one_line(job.rel)}: {r.frames} frames, {r.faces} face-frames in {r.tracks} "
                      f"track{'' if r.tracks == 1 else 's'}, {r.fps:.1f} fps", file=sys.stderr)
        results.append(r)
    return results
