"""Issue 21: which region should `thorough` draw, measured on WIDER as well as facemask?

Question: `thorough` with a 1.25x box region instead of 1.4x met its facemask goal on both halves of
faceveil.eval.splits (masked_replay.py); does WIDER leak more with it?

Stage `cf` writes thorough's CenterFace passes over the WIDER photos in masked_replay.py's cache format
(research/out/masked/wd_thorough.pkl), then `masked_replay.py sweep wd thorough "{'mask_scale': [...]}"` replays
each region. Thorough's passes on WIDER's 1024 px photos are the 1x pass, its mirror, the whole-photo 2x zoom (up
to 2560 px) and the 640 px coarse pass. zoom_tiles.py's cache (research/out/zoom/wd.pkl, balanced's passes at a
lower floor: the same 1x pass, the 2x pass wherever 2048 px allows 2x, the coarse pass) is reused for the passes
it holds at the same factor and cut to this cache's floor (a score cut commutes with greedy NMS, so it is exact);
the mirrored pass and the larger zoom of tall photos are run here. The first photos' reused passes are checked
against a fresh run.

  python research/thorough_region.py cf research/out/zoom/wd.pkl [part nparts]
  python research/thorough_region.py join
  python research/masked_replay.py sweep wd thorough "{'mask_scale': [1.25, 1.3, 1.4]}" -v
  python research/thorough_region.py sizes thorough fm wd          # region scales by box size, GRIDS["thorough"]
  python research/thorough_region.py sizes balanced fm wd -v       # -v: per size and kind of miss, every row
  python research/thorough_region.py sizes balanced wd "1.4,1.25@24" "1.25"   # given specs instead of the grid

Stage `sizes` asks whether a region that depends on the box size (faceveil's --mask-scale X,Y@PX: X under PX px,
Y from PX px, sqrt of the box area) does better than one scale: for `thorough`, small boxes 1.25x and big ones
larger keep WIDER's big faces covered while hiding facemask's background less; for `balanced`, a larger scale on
small boxes may turn WIDER's "boxed short" small faces into covered ones at little away area. Each preset's passes
are fused once per photo (its own keep and fuse, as masked_replay.py) and drawn with faceveil's own Compositor for
each spec, scored by faceveil's LeakMetric per half of faceveil.eval.splits: the numbers `faceveil eval leaks
--split tune|held_out --mask-scale SPEC` prints. The caches are masked_replay.py's `cf` stage's
(research/out/masked/<set>_<preset>.pkl; `wd_thorough.pkl` also from stage `cf` here).
"""
from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceveil.detect import get_detector
from faceveil.detect.presets import resolve
from faceveil.io.images import read_rgb
from faceveil.io.labels import find_image, read_eval_labels

from masked_replay import FLOOR, OUT  # noqa: E402  (research/ is the script's folder)
from replay_recall import SETS, as_array, as_detections  # noqa: E402

# --mask-scale specs per preset. thorough: the first session's round (small boxes' scale, large boxes' scale from
# PX), then a second around its best; balanced: its 1.25x with small boxes larger (WIDER's boxed-short faces).
GRIDS = {
    "thorough": ["1.25", "1.4", "1.25,1.4@40", "1.25,1.4@32", "1.25,1.4@48", "1.3,1.4@40", "1.25,1.5@40",
                 "1.25,1.35@40", "1.25,1.4@56", "1.25,1.4@64", "1.22,1.4@40", "1.25,1.45@48", "1.2,1.4@32",
                 "1.25,1.3@32,1.4@64", "1.25,1.35@32", "1.25,1.35@48", "1.3,1.35@40", "1.25,1.3@40,1.4@80"],
    "balanced": ["1.25", "1.3", "1.35", "1.4,1.25@16", "1.4,1.25@24", "1.4,1.25@32", "1.5,1.25@16", "1.5,1.25@24",
                 "1.35,1.25@24", "1.35,1.25@32", "1.35,1.25@40", "1.3,1.25@32", "1.3,1.25@48", "1.5,1.3@16,1.25@32",
                 "1.25,1.3@64", "1.4,1.25@24,1.3@64"],
}
CHECK = 3  # photos whose reused passes are compared with a fresh run


def cache(zoom_pkl: str, part: int = 0, nparts: int = 1) -> None:
    images, labels = SETS["wd"]
    keys = list(read_eval_labels(labels))[part::nparts]
    with open(zoom_pkl, "rb") as f:
        zc = pickle.load(f)["photos"]
    name, params, _ = resolve("thorough")
    det = get_detector(name, {**params, "threads": 1})
    own_pass = det._pass
    store, shapes, ms = {}, {}, {}
    for i, key in enumerate(tqdm(keys, desc=f"wd thorough {part}/{nparts}", file=sys.stderr, mininterval=20)):
        img = read_rgb(find_image(images, key))
        e = zc[key]
        h, w = img.shape[:2]
        cached = {e["f1"]: e["p1"], e["zf"]: e["p2"]}
        if "coarse" in e:
            cached[640 / max(h, w)] = e["coarse"]

        def replayed(image, factor, floor, flip=False, _cached=cached, _i=i):
            a = None if flip else next((v for k, v in _cached.items() if abs(k - factor) < 1e-9), None)
            if a is None:
                return own_pass(image, factor, floor, flip)
            d = as_detections(a[a[:, 4] >= floor], "centerface")
            if _i < CHECK:  # the cache is this code's pass: a fresh run gives the same boxes
                fresh = own_pass(image, factor, floor, flip)
                assert len(fresh) == len(d) and np.allclose(fresh.xyxy, d.xyxy, atol=1e-3), (key, factor)
            return d

        det._pass = replayed
        t0 = time.perf_counter()
        parts = det.passes(img, FLOOR)
        ms[key] = (time.perf_counter() - t0) * 1000  # only the passes run here: not thorough's time
        store[key] = [(d.source, as_array(d)) for d in parts]
        shapes[key] = (h, w)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"wd_thorough.part{part}of{nparts}.pkl", "wb") as f:
        pickle.dump({"passes": store, "shapes": shapes, "ms": ms, "preset": "thorough"}, f)


def sizes(preset: str, setnames: list[str], specs: list[str], verbose: bool = False) -> None:
    from dataclasses import asdict

    from faceveil.anonymize import Compositor, RegionParams
    from faceveil.detect.multiscale import MultiScale
    from faceveil.eval.leaks import LeakMetric, anonymized_mask
    from faceveil.eval.splits import side

    _, params, region = resolve(preset)
    det = get_detector("multiscale", {**asdict(MultiScale.Params()), **params})
    for setname in setnames:
        with open(OUT / f"{setname}_{preset}.pkl", "rb") as f:
            cf = pickle.load(f)
        assert cf.get("preset", preset) == preset, (setname, cf.get("preset"))
        labels = read_eval_labels(SETS[setname][1])
        fused = {}
        for key, parts in cf["passes"].items():
            h, w = cf["shapes"][key]
            fused[key] = det.fuse([det.keep(as_detections(a, s)) for s, a in parts], w, h)
        for spec in specs or GRIDS[preset]:
            comp = Compositor(RegionParams(region["shape"], spec, 0.0))
            metrics = {"tune": LeakMetric(), "held_out": LeakMetric()}
            for key, d in fused.items():
                h, w = cf["shapes"][key]
                metrics[side(key)].update(anonymized_mask(comp, d, (h, w)), labels[key].faces, labels[key].ignore, key)
            row, tables = [], []
            for half, m in metrics.items():
                r = m.compute()
                row.append(f"{half} {r.leak_rate * 100:.2f}% ({r.leaked}/{r.faces}: short {r.boxed_short}, never "
                           f"{r.never_boxed}) / {r.away_rate * 100:.2f}%")
                tables.append((half, r))
            print(f"{setname} {preset} --mask-scale {spec}: " + " | ".join(row), flush=True)
            if verbose:
                for half, r in tables:
                    cells = ", ".join(f"{b['bucket']} {b['leaked']}/{b['faces']} (short {b['boxed_short']}, never "
                                      f"{b['never_boxed']})" for b in r.buckets)
                    print(f"    {half}: {cells}")


def join() -> None:
    out = {"passes": {}, "shapes": {}, "ms": {}, "preset": "thorough"}
    for p in sorted(OUT.glob("wd_thorough.part*.pkl")):
        with open(p, "rb") as f:
            d = pickle.load(f)
        for k in ("passes", "shapes", "ms"):
            out[k].update(d[k])
    # the labels' order, as masked_replay's own caches
    order = [k for k in read_eval_labels(SETS["wd"][1]) if k in out["passes"]]
    out = {**out, **{k: {key: out[k][key] for key in order} for k in ("passes", "shapes", "ms")}}
    print(len(order), "photos")
    with open(OUT / "wd_thorough.pkl", "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("cf", "join", "sizes"):
        sys.exit(__doc__)
    if sys.argv[1] == "cf":
        cache(sys.argv[2], *map(int, sys.argv[3:5]))
    elif sys.argv[1] == "sizes":
        args = [a for a in sys.argv[3:] if a != "-v"]
        sets = [a for a in args if a in SETS]
        sizes(sys.argv[2], sets, [a for a in args if a not in SETS], "-v" in sys.argv)
    else:
        join()
