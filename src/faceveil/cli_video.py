"""The video part of `faceveil anonymize`: its options and the loop over video files.

Kept out of cli.py so the image path stays as it was; cli.py calls
``add_video_args`` and ``run_videos``.
"""
from __future__ import annotations

import argparse
import sys

from .errors import UsageError
from .io.images import is_image_path
from .io.video import is_video_path


def is_media_path(path) -> bool:
    return is_image_path(path) or is_video_path(path)


# x264's and x265's preset names (both encoders take the same ones); anything else fails in the encoder.
X264_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]


def add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (mp4, mov, mkv, avi, webm)")
    g.add_argument("--crf", type=int, default=20, help="video quality, lower is better (x264 CRF; default 20)")
    g.add_argument("--codec", help="video codec (default libx264; libvpx-vp9 for .webm), e.g. libx265")
    g.add_argument("--preset", default="veryfast", choices=X264_PRESETS, metavar="PRESET",
                   help=f"x264/x265 speed: {X264_PRESETS[0]}..{X264_PRESETS[-1]} (default %(default)s)")
    g.add_argument("--no-audio", action="store_true", help="drop the audio stream (default: copied unchanged)")
    g.add_argument("--hold", type=int, metavar="FRAMES",
                   help="keep a lost face hidden where it is predicted (default 0.5 s)")
    g.add_argument("--lookahead", type=int, metavar="FRAMES",
                   help="hide a face this long before it is first detected (default 0.25 s)")
    g.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="detect on every Nth frame, track in between (faster, may leak more)")
    g.add_argument("--no-tracking", action="store_true", help="per-frame detections only (no hold, no look-ahead)")
    g.add_argument("--on-error", choices=["blur", "drop"], default="blur",
                   help="a frame that fails is written fully blurred (default) or dropped")
    g.add_argument("--preview", type=float, default=0, metavar="SECONDS",
                   help="also write a still every SECONDS into OUT/<name>_preview/")
    g.add_argument("--allow-truncated", action="store_true",
                   help="write what decodes of a truncated video (exit 1; default: write nothing)")


def video_options(args):
    from .io.video import EncodeOptions
    from .video import VideoOptions

    if args.crf is not None and not 0 <= args.crf <= 63:
        raise UsageError("--crf must be between 0 and 63")
    enc = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset, audio=not args.no_audio)
    return VideoOptions(tracking=not args.no_tracking, hold=args.hold, lookahead=args.lookahead,
                        detect_every=args.detect_every, on_error=args.on_error, preview=args.preview,
                        allow_truncated=args.allow_truncated, encode=enc)


def split_video_jobs(jobs):
    return [j for j in jobs if not is_video_path(j.src)], [j for j in jobs if is_video_path(j.src)]


def run_videos(cfg, jobs, args) -> list:
    """Each video in turn (each uses every core); a result per video, failures reported, never raised."""
    from .pipeline import Anonymizer
    from .video import process_video

    if not jobs:
        return []
    options = video_options(args)
    anonymizer = Anonymizer.from_config(cfg)
    results = []
    for i, job in enumerate(jobs):
        if not args.quiet and len(jobs) > 1:
            print(f"faceveil: video {i + 1}/{len(jobs)}: {job.rel}", file=sys.stderr)
        r = process_video(anonymizer, job.src, job.dst, options, progress=not args.quiet, key=job.rel)
        if r.status == "written":
            if r.failed_frames:
                what = "dropped" if options.on_error == "drop" else "written fully blurred"
                print(f"faceveil: warning: {job.src}: {r.failed_frames} frames could not be processed ({what}); "
                      f"first: {r.warnings[0] if r.warnings else '?'}", file=sys.stderr)
            if r.decode_errors:
                print(f"faceveil: warning: {job.src}: {r.decode_errors} packets could not be decoded (left out)",
                      file=sys.stderr)
            if r.truncated:
                print(f"faceveil: warning: {job.src}: truncated: {r.truncated}; the frames that decoded were written",
                      file=sys.stderr)
            if not args.quiet:
                # A face seen in 300 frames is 300 face-frames and one track (boxes linked over time).
                print(f"faceveil: {job.rel}: {r.frames} frames, {r.faces} face-frames in {r.tracks} "
                      f"track{'' if r.tracks == 1 else 's'}, {r.fps:.1f} fps", file=sys.stderr)
        results.append(r)
    return results
