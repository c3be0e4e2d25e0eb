"""False keeps of `--keep-people` on LFW (evaluation only: nothing derived from LFW is shipped).

Every LFW photo is detected with the default preset and described as `faceveil anonymize
--keep-people` does (faces too small, blurred, profile or without landmarks are never kept).
Then, for galleries of G consenting people (G = 1, 10, 100; drawn at random, `--trials` times),
each gallery person is enrolled with `--enroll` photos; the probes are
- strangers: every photo of every person not in the gallery -> a false keep if it matches anyone;
- consenting: the gallery people's other photos -> kept if it matches the right person.
A probe that could not be described is never kept (it counts in the denominators).

    python bench/bench_keep.py --lfw /work/shared/data/lfw --cache /tmp/lfw_desc.npz

Prints a table per threshold (markdown) and the largest threshold whose false-keep rate is
<= 0.1 % at every G.

    python bench/bench_keep.py --video /work/shared/data/videos/group_hikers_640x480_ccby.mp4

Video: the clip is tracked once (the video preset); the reference "photo" is the longest track's face
on the frame where it is largest (described as `people build` would); then the keep pass runs with
that one person and prints which tracks were kept (the reference's, and any other: a false keep).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def describe_all(lfw: Path, cache: Path | None, limit: int | None):
    if cache and cache.exists():
        z = np.load(cache)
        return list(z["people"]), z["desc"]
    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve
    from faceveil.io.images import read_rgb
    from faceveil.people import KeepPolicy

    name, params, _ = resolve(None)
    det = get_detector(name, params)
    policy = KeepPolicy()
    people, rows = [], []
    files = sorted(lfw.glob("*/*.jpg"))[:limit]
    t0 = time.time()
    for k, f in enumerate(files):
        rgb = read_rgb(f)
        d = det.detect(rgb)
        desc = np.full(128, np.nan, np.float32)
        if len(d):
            # the face LFW is about is the one nearest the centre
            c = (d.xyxy[:, :2] + d.xyxy[:, 2:]) / 2
            i = int(np.argmin(np.linalg.norm(c - np.array([125, 125]), axis=1)))
            desc = policy.describe_faces(rgb, d[[i]])[0][0]
        people.append(f.parent.name)
        rows.append(desc)
        if k % 200 == 0:
            print(f"{k}/{len(files)} {time.time() - t0:.0f}s", file=sys.stderr)
    desc = np.asarray(rows, np.float32)
    if cache:
        np.savez(cache, people=np.asarray(people), desc=desc)
    return people, desc


def video(path: str) -> int:
    from faceveil.io.video import probe, read_frames
    from faceveil.people import KeepPolicy, People, unreliable
    from faceveil.pipeline import Anonymizer
    from faceveil.video.keep import plan_tracks
    from faceveil.video.options import VideoOptions, video_preset
    from faceveil.video.tracking import tracked_frames

    anon = Anonymizer(preset=video_preset(None, None))
    fps = float(probe(path).fps)
    t0 = time.time()
    lengths: dict[int, int] = {}
    best: dict[int, tuple[float, int]] = {}  # track -> (area, frame)
    for item in tracked_frames(read_frames(path), anon.detector.detect, VideoOptions(), fps):
        d = item.detections
        for i, tid in enumerate(d.track_id):
            tid = int(tid)
            if tid < 0 or d.sources[i] != "detected":
                continue
            lengths[tid] = lengths.get(tid, 0) + 1
            a = float(d.areas[i])
            if a > best.get(tid, (0, 0))[0] and unreliable(item.frame.rgb, d, i) is None:
                best[tid] = (a, item.frame.index)
    ref = max(best, key=lengths.get)  # the longest track with a face that can be described
    frame = best[ref][1]
    policy = KeepPolicy()
    desc = None
    for item in tracked_frames(read_frames(path), anon.detector.detect, VideoOptions(), fps):
        if item.frame.index == frame:
            d = item.detections[item.detections.track_id == ref]
            desc, why = policy.describe_faces(item.frame.rgb, d)
            break
    if desc is None or not np.isfinite(desc).all():
        print(f"{path}: the reference face (track {ref}, frame {frame}) cannot be described: {why}")
        return 1
    people = People(["reference"], desc.reshape(1, 128), np.zeros(1, np.int64))
    with tempfile.TemporaryDirectory() as scratch:  # the plan waits on disk, as in a run (video.keep.PlanLog)
        plan, kept = plan_tracks(read_frames(path), anon.detector.detect, VideoOptions(), fps, KeepPolicy(people),
                                 Path(scratch), Path(path))
        try:
            frames = [(i, d) for i, d, _ in plan]
        finally:
            plan.close()
    boxes = sum(len(d) for _, d in frames)

    def kept_on(idx: int, d) -> np.ndarray:  # the boxes kept on frame idx: a kept track's, within its spans
        return np.asarray([any(a <= idx <= b for a, b in kept.get(int(t), {}).get("spans", ())) for t in d.track_id],
                          bool)

    kept_boxes = sum(int(kept_on(i, d).sum()) for i, d in frames)
    ref_boxes = sum(int((kept_on(i, d) & (d.track_id == ref)).sum()) for i, d in frames)
    print(f"{Path(path).name}: {len(frames)} frames, {len(lengths)} tracks, {boxes} boxes; reference: track {ref} "
          f"({lengths[ref]} detected frames, face cut from frame {frame})")
    print(f"kept tracks: {sorted(kept)} ({kept_boxes} boxes kept, {ref_boxes} of them the reference's, "
          f"{boxes - kept_boxes} hidden); "
          f"reference kept: {ref in kept}; other tracks kept: {sorted(set(kept) - {ref})} "
          f"{[kept[t]['distance'] for t in sorted(kept)]}; {time.time() - t0:.0f}s")
    return 0


# The seeded split of LFW's people, fixed once: thresholds are chosen on "tune", reported on "held-out".
SPLIT_SEED = 20261202


def false_keeps(people, desc, usable, ids, ths, trials, enroll, seed) -> dict:
    """(G, threshold) -> [strangers kept, strangers, consenting kept as themselves, consenting] over
    ``trials`` random galleries of G people drawn from ``ids`` (strangers: everybody else in ``ids``)."""
    from faceveil.people import MARGIN, People, match

    rng = np.random.default_rng(seed)
    in_part = np.isin(people, ids)
    res = {}
    for g in (1, 10, 100):
        for _ in range(trials):
            chosen = rng.choice(len(ids), min(g, len(ids) - 1), replace=False)
            gal_rows, gal_person, probes_c, probes_c_person, names = [], [], [], [], []
            for k, pi in enumerate(chosen):
                idx = rng.permutation(np.flatnonzero(people == ids[pi]))
                enrolled = [i for i in idx if usable[i]][:enroll]
                gal_rows += enrolled
                gal_person += [k] * len(enrolled)
                rest = [i for i in idx if i not in enrolled]
                probes_c += rest
                probes_c_person += [k] * len(rest)
                names.append(ids[pi])
            if not gal_rows:
                continue
            gal = People(names, desc[gal_rows], np.asarray(gal_person))
            strangers = np.flatnonzero(in_part & ~np.isin(people, names))
            ds = gal.distances(np.nan_to_num(desc[strangers], nan=1e3))
            dc = gal.distances(np.nan_to_num(desc[probes_c], nan=1e3))
            for t in ths:
                r = res.setdefault((g, t), [0, 0, 0, 0])
                r[0] += sum(match(row, t, MARGIN) is not None for row in ds)
                r[1] += len(strangers)
                r[2] += sum((m := match(row, t, MARGIN)) is not None and m[0] == p
                            for row, p in zip(dc, probes_c_person))
                r[3] += len(probes_c)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", default="/work/shared/data/lfw")
    ap.add_argument("--cache", type=Path, help="descriptors cache (.npz, outside the repository)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--enroll", type=int, default=2, help="photos per consenting person in the gallery")
    ap.add_argument("--thresholds", default="0.35,0.38,0.40,0.42,0.45,0.48,0.50,0.55,0.60")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", action="store_true",
                    help="choose the threshold on half of the people (seeded split) and report the other half")
    ap.add_argument("--video", action="append", default=[], help="measure on a clip instead (repeatable)")
    args = ap.parse_args()
    if args.video:
        return max(video(v) for v in args.video)
    from faceveil.people import MARGIN

    people, desc = describe_all(Path(args.lfw), args.cache, args.limit)
    people = np.asarray(people)
    ids = sorted(set(people))
    usable = np.isfinite(desc).all(axis=1)
    print(f"{len(desc)} photos of {len(ids)} people; describable {usable.mean():.1%}")
    ths = [float(t) for t in args.thresholds.split(",")]
    parts = {"all": ids}
    if args.split:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
        parts = {"tune": sorted(ids[i] for i in order[: len(ids) // 2]),
                 "held-out": sorted(ids[i] for i in order[len(ids) // 2:])}
    chosen = {}
    for part, part_ids in parts.items():
        res = false_keeps(people, desc, usable, part_ids, ths, args.trials, args.enroll, args.seed)
        print(f"\n{part}: {len(part_ids)} people, {args.trials} random galleries per size, {args.enroll} photos "
              f"enrolled per person, margin {MARGIN}\n")
        print("| threshold | G | strangers kept | consenting kept |")
        print("|---|---|---|---|")
        ok = []
        for t in ths:
            good = True
            for g in (1, 10, 100):
                f, n, k, m = res[(g, t)]
                good &= f <= 0.001 * n
                print(f"| {t:.2f} | {g} | {f}/{n} = {f / max(n, 1):.3%} | {k}/{m} = {k / max(m, 1):.1%} |")
            if good:
                ok.append(t)
        chosen[part] = max(ok) if ok else None
        print(f"\n{part}: largest threshold with <= 0.1 % strangers kept at every G: {chosen[part]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
