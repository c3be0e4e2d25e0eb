"""Leaked faces, over-anonymized area and time per image: the deface CLI against faceveil's presets.

Runs the `deface` CLI itself (CenterFace, --replacewith solid, --mask-scale 1.3) on
lossless PNG copies of the labelled photos in a temporary folder and takes every
pixel it changed as anonymized; runs each faceveil preset in this process (read,
detect, blur, write PNG) and takes the compositor's mask (weight >= 0.5). Both
are scored by the same LeakMetric against the labels.

  python bench/bench_recall.py                       # both sets in full (slow: tens of minutes)
  python bench/bench_recall.py --limit 100           # evenly spaced 100 photos per set
  python bench/bench_recall.py --sets facemask --presets balanced --deface ""
  python bench/bench_recall.py --split held_out      # the photos nothing was tuned on (faceveil.eval.splits)

Times are wall clock on a shared machine: noisy. deface's time per image includes
its start-up (model load) spread over the images; faceveil's includes reading,
detecting, blurring and writing each image.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from faceveil.detect.presets import PRESETS, resolve
from faceveil.io.labels import find_image as resolve_image, read_eval_labels as read_labels
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from common import labelled_sets, pick
from faceveil.eval.splits import split
from faceveil.io.images import read_rgb
from faceveil.pipeline import Anonymizer

DEFACE = Path(sys.executable).with_name("deface")



def flat(key: str) -> str:
    return Path(key).with_suffix("").as_posix().replace("/", "__")


def summarize(metric: LeakMetric, seconds: float, n: int) -> dict:
    r = metric.compute()
    b = {x["bucket"]: x for x in r.buckets}
    return {"leak": r.leak_rate, "leaked": r.leaked, "faces": r.faces, "leak_5_10": b["5-10 px"]["rate"],
            "faces_5_10": b["5-10 px"]["faces"], "leak_10_20": b["10-20 px"]["rate"], "away": r.away_rate,
            "boxed_short": r.boxed_short, "never_boxed": r.never_boxed,
            "ms": seconds / n * 1000}


def run_deface(thr: float, src: Path, work: Path, keys, lab, originals) -> dict:
    d = work / f"deface_{thr}"
    shutil.copytree(src, d)
    t0 = time.perf_counter()
    proc = subprocess.run([str(DEFACE), str(d), "--thresh", str(thr), "--mask-scale", "1.3", "--replacewith", "solid"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"deface failed: {proc.stderr[-500:]}")
    metric = LeakMetric(min_size=10)
    for k in keys:
        out = np.asarray(Image.open(d / f"{flat(k)}_anonymized.png").convert("RGB"))
        # deface draws black rectangles: a changed pixel is an anonymized one (pixels black already are missed)
        metric.update((out != originals[k]).any(axis=2), lab[k].faces, lab[k].ignore, k)
    shutil.rmtree(d)
    return summarize(metric, seconds, len(keys))


def run_preset(name: str, src: Path, work: Path, keys, lab) -> dict:
    det, params, region = resolve(name)
    anon = Anonymizer("blur", detector=det, detector_params=params, region=region)
    out = work / f"faceveil_{name}"
    out.mkdir()
    metric = LeakMetric(min_size=10)
    seconds = 0.0
    for k in tqdm(keys, file=sys.stderr, desc=name, leave=False):
        t0 = time.perf_counter()
        img = read_rgb(src / f"{flat(k)}.png")
        dets = anon.detector.detect(img)
        frame = anon.anonymize(img, dets)
        Image.fromarray(frame).save(out / f"{flat(k)}.png")
        seconds += time.perf_counter() - t0
        metric.update(anonymized_mask(anon.compositor, dets, img.shape), lab[k].faces, lab[k].ignore, k)
    shutil.rmtree(out)
    return summarize(metric, seconds, len(keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="facemask,wider")
    ap.add_argument("--limit", type=int, default=0, help="evenly spaced photos per set (0: all)")
    ap.add_argument("--deface", default="0.2,0.1", help="deface thresholds to run ('' for none)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--split", choices=["all", "tune", "held_out"], default="all",
                    help="only this side of the seeded split by photo (faceveil.eval.splits; default all)")
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    rows = []
    for setname, images, labels in labelled_sets(a.sets):
        lab = read_labels(labels)
        keys = [k for k in lab if resolve_image(images, k)]
        if a.split != "all":
            keys = split(keys)[0 if a.split == "tune" else 1]
        keys = pick(keys, a.limit)
        with tempfile.TemporaryDirectory(prefix="bench_recall_") as tmp:
            work = Path(tmp)
            src = work / "png"
            src.mkdir()
            originals = {}
            for k in tqdm(keys, file=sys.stderr, desc=f"{setname}: PNG copies", leave=False):
                originals[k] = read_rgb(resolve_image(images, k))
                Image.fromarray(originals[k]).save(src / f"{flat(k)}.png")
            for thr in [float(t) for t in a.deface.split(",") if t]:
                print(f"{setname}: deface --thresh {thr} ...", file=sys.stderr, flush=True)
                rows.append({"set": setname, "split": a.split, "setting": f"deface CLI, thresh {thr}, mask-scale 1.3",
                             **run_deface(thr, src, work, keys, lab, originals)})
                print(rows[-1], file=sys.stderr, flush=True)
            for name in [p for p in a.presets.split(",") if p]:
                rows.append({"set": setname, "split": a.split, "setting": f"faceveil --detect {name}",
                             **run_preset(name, src, work, keys, lab)})
                print(rows[-1], file=sys.stderr, flush=True)
            rows_n = len(keys)
        for r in rows:
            r.setdefault("images", rows_n)
    print("\n| set | setting | images | faces >= 10 px | leaked >= 10 px (boxed short / never boxed) | leaked 5-10 px "
          "| away from faces | ms/image |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        l5 = "-" if r["faces_5_10"] == 0 else f"{r['leak_5_10'] * 100:.1f} % of {r['faces_5_10']}"
        name = r["set"] if r["split"] == "all" else f"{r['set']} ({r['split']})"
        print(f"| {name} | {r['setting']} | {r['images']} | {r['faces']} | {r['leak'] * 100:.2f} % ({r['leaked']}: "
              f"{r['boxed_short']} / {r['never_boxed']}) "
              f"| {l5} | {r['away'] * 100:.2f} % | {r['ms']:.0f} |")
    print(f"\n(cpu: {os.cpu_count()} cores, shared; times are noisy)")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
