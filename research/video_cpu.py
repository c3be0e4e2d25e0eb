"""CPU per video frame by stage, and inside detection (issue 20, third pass on video).

    python research/video_cpu.py [--clip 720p|1080p|SHARED_NAME] [--top N] [--no-profile] [--replay N]

Runs faceveil's own video job (``process_video``, the CLI's default video settings) on
one clip in ONE thread (``threaded=False``, the decoder and x264 with one thread each), under cProfile with
``time.process_time`` as its clock: every function's exclusive CPU, onnxruntime's pool threads included in
``InferenceSession.run`` (its run is synchronous). The stages are then summed from the profile: decode,
scene-cut check, detection (ORT run, input blob, resizes, peak decoding, NMS/fusion), tracking, anonymize, the
RGB -> Y'CbCr conversion and x264. ``720p`` / ``1080p``: bench_video.py's held-out labelled clip (quick sizes),
encoded at crf 16 in a temporary folder; any other name is a clip of ../shared/data/videos (whole).
One thread for decode and x264 keeps their CPU out of other stages' time; their threaded CPU is about the same
(frame threads add little work). Outputs go to a temporary folder that is removed.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

def cumulative(st: pstats.Stats, file_part: str, name: str) -> float:
    """Inclusive CPU seconds of the functions called ``name`` in files containing ``file_part``."""
    return sum(ct for (file, _, fn), (_, _, _, ct, _) in st.stats.items() if file_part in file and fn == name)


def exclusive(st: pstats.Stats, file_part: str, name: str, caller: tuple[str, str] | None = None) -> float:
    """Exclusive CPU seconds of ``name`` (built-ins: file ``~``), optionally only when called from ``caller``."""
    out = 0.0
    for (file, _, fn), (_, _, tt, _, callers) in st.stats.items():
        if file_part in file and name in fn:
            if caller is None:
                out += tt
            else:
                out += sum(v[2] for (cf, _, cn), v in callers.items() if caller[0] in cf and cn == caller[1])
    return out


def split(st: pstats.Stats) -> dict[str, float]:
    """The stages (seconds) from the profile; nested parts are taken out of their stage's rest."""
    s: dict[str, float] = {}
    detect = cumulative(st, "multiscale.py", "detect")
    s["detect: onnxruntime run"] = exclusive(st, "~", "onnxruntime_pybind11_state.run")
    s["detect: input blob (pad, transpose, float32)"] = exclusive(st, "centerface.py", "forward")
    s["detect: resizes"] = exclusive(st, "~", "<resize>", ("multiscale.py", "_pass"))
    s["detect: peak decoding"] = exclusive(st, "centerface.py", "detect_raw")
    s["detect: the rest (NMS, fusion, calibration)"] = detect - sum(s.values())
    s["scene-cut check"] = cumulative(st, "schedule.py", "__call__") - detect
    anon = cumulative(st, "pipeline.py", "anonymize")
    blur = cumulative(st, "blur.py", "render")
    s["anonymize: blur"] = blur
    s["anonymize: the rest (regions, compositing)"] = anon - blur
    write = cumulative(st, "io/video.py", "write") + cumulative(st, "io/video.py", "__exit__")
    yuv = cumulative(st, "io/video.py", "_yuv_frame")
    s["encode: RGB -> Y'CbCr"] = yuv
    s["encode: x264 + mux"] = write - yuv
    s["decode (+ RGB)"] = cumulative(st, "io/video.py", "read_frames")
    return s


def replay(an) -> None:
    """``an``'s detector answering each image it saw before from memory (keyed by its shape and a sample of its
    pixels), so later runs cost everything but the detector's own work."""
    seen: dict = {}
    detect = an.detector.detect

    def cached(image):
        key = (image.shape, image[::17, ::13].tobytes())
        if key not in seen:
            seen[key] = detect(image)
        return seen[key]
    an.detector.detect = cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="720p")
    ap.add_argument("--top", type=int, default=0, help="also print the N functions with most exclusive CPU")
    ap.add_argument("--no-profile", action="store_true", help="only the total CPU per frame, without cProfile's "
                    "overhead (which inflates the Python-heavy stages)")
    ap.add_argument("--dump", metavar="FILE", help="also write the profile (pstats) here")
    ap.add_argument("--replay", type=int, default=0, metavar="N", help="the total CPU of N more runs whose detector "
                    "answers come from the first run (the same boxes): the job without onnxruntime, whose two "
                    "threads swing the totals most on a loaded machine")
    args = ap.parse_args()

    import faceveil.io.video as iov
    import faceveil.video.job as job
    from faceveil.io.video import EncodeOptions
    from faceveil.pipeline import Anonymizer
    from faceveil.video.options import VideoOptions, video_preset

    with tempfile.TemporaryDirectory(prefix="faceveil-vcpu-") as tmp:
        work = Path(tmp)
        if args.clip in ("720p", "1080p"):
            import bench_video as bv
            from common import synthetic_video

            clip = next(c for c in bv.labelled_clips("held_out", True) if c.name == args.clip)
            src = work / f"{clip.name}.mp4"
            write_clip, = synthetic_video("write_clip")
            write_clip(src, clip.frames, clip.fps, audio=False, crf=16)
            del clip
        else:
            src = ROOT.parent / "shared" / "data" / "videos" / args.clip  # the whole clip (a few seconds)
        an = Anonymizer(preset=video_preset(None, None))
        opts = VideoOptions(encode=EncodeOptions(threads=1, audio=False))
        real = iov.read_frames
        job.read_frames = lambda path, report=None, threads=0, allow_truncated=False: real(
            path, report, 1, allow_truncated)  # one decoder thread: its CPU stays in the decode stage
        prof = cProfile.Profile(time.process_time)
        t0 = time.process_time()
        if not args.no_profile:
            prof.enable()
        if args.replay:
            replay(an)
        res = job.process_video(an, src, work / "out.mp4", opts, progress=False, threaded=False)
        prof.disable()
        total = time.process_time() - t0
        assert res.status == "written", res.error
        replayed = []
        for _ in range(args.replay):
            t0 = time.process_time()
            res = job.process_video(an, src, work / "out.mp4", opts, progress=False, threaded=False)
            replayed.append((time.process_time() - t0) / res.frames * 1000)
        # the same bytes before / after a change: the video and its track record (boxes, track ids)
        from faceveil.video.record import tracks_path

        digest = hashlib.sha256((work / "out.mp4").read_bytes() + tracks_path(work / "out.mp4").read_bytes())
        digest = digest.hexdigest()[:16]
    if replayed:
        print(f"{args.clip}: {res.frames} frames, without onnxruntime (detector answers replayed): "
              f"{' '.join(f'{t:.1f}' for t in replayed)} CPU ms per frame; output + record sha256 {digest}")
    if args.no_profile:
        print(f"{args.clip}: {res.frames} frames, {total / res.frames * 1000:.1f} CPU ms per frame in all; "
              f"output + record sha256 {digest}")
        return
    n = res.frames
    st = pstats.Stats(prof)
    if args.dump:
        st.dump_stats(args.dump)
    parts = split(st)
    parts["the rest (tracking, queues, record, Python)"] = total - sum(parts.values())
    print(f"{args.clip}: {n} frames, {total / n * 1000:.1f} CPU ms per frame in all (process_time, one thread); "
          f"output + record sha256 {digest}")
    print("| stage | CPU ms per frame | share |\n|---|---:|---:|")
    for stage, t in parts.items():
        print(f"| {stage} | {t / n * 1000:.1f} | {100 * t / total:.0f} % |")
    rows = sorted(((tt, file, name) for (file, _, name), (_, _, tt, _, _) in st.stats.items()), reverse=True)
    for tt, file, name in rows[:args.top]:
        print(f"{tt / n * 1000:7.2f} ms  {name}  {file[-60:]}")


if __name__ == "__main__":
    main()
