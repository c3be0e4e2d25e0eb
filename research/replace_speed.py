"""Replace's CPU per face, one source tree against another, and whether they give the same bytes (issue 22).

    python research/replace_speed.py cache
    python research/replace_speed.py profile SET [--sort tottime|cumtime] [--top N]
    python research/replace_speed.py same OTHER_SRC
    python research/replace_speed.py ab OTHER_SRC [--rounds N]

``cache``: detections (the default preset) of 40 LFW photos with one face each (every 12th photo of
../shared/data/lfw), the talking-head clip's first 40 frames and facemask's first 9 photos (90 boxes), so that
only replace is timed (research/out/replace_speed.pkl). ``profile``: cProfile of replace over one set,
``time.process_time`` as its clock. ``same``: replace's outputs (their SHA-1) under the default and seven other
parameter sets (grain off, occluders replace, identity 3, poisson, no landmarks with estimated-keep,
color_strength 0.5, shape region) on 20 of the LFW photos, 6 frames, the facemask photos and grey copies of 6
of them, by this checkout's src and by OTHER_SRC (main's: ``git -C ../main archive HEAD src | tar -x -C /tmp/base``,
then /tmp/base/src), each in its own process. ``ab``: faces per CPU-second (``time.process_time`` over replace
alone, 3 faces' warm-up), OTHER_SRC and this checkout alternated run by run, one process per run, best of the
rounds and each round's ratio (on a shared machine the ratios are what to read).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "research" / "out" / "replace_speed.pkl"
PARAMS = {"default": {}, "nograin": {"grain": False}, "occrep": {"occluders": "replace"}, "ident3": {"identity": 3},
          "poisson": {"harmonizer": "poisson"}, "estkeep": {"no_landmarks": "estimated-keep"},
          "cs05": {"color_strength": 0.5}, "region": {"shape": "region"}}
REPS = {"lfw": 3, "talk": 2, "facemask": 5}


def cache() -> None:
    from itertools import islice

    import faceveil
    from faceveil.io.images import read_rgb
    from faceveil.io.video import read_frames

    sets = {"lfw": [], "talk": [], "facemask": []}
    for p in sorted(DATA.glob("lfw/*/*.jpg"))[::12]:
        img = read_rgb(p)
        d = faceveil.detect(img)
        if len(d) == 1 and d.score[0] >= 0.4:
            sets["lfw"].append((p.name, img, d))
        if len(sets["lfw"]) >= 40:
            break
    for i, f in enumerate(islice(read_frames(DATA / "videos" / "talking_head_speech_844.mp4"), 0, 40)):
        sets["talk"].append((f"talk{i}", f.rgb, faceveil.detect(f.rgb)))
    for p in sorted((DATA / "facemask" / "images").glob("*.jpg"))[:9]:
        img = read_rgb(p)
        sets["facemask"].append((p.name, img, faceveil.detect(img)))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_bytes(pickle.dumps(sets))
    print({k: (len(v), sum(len(d) for *_, d in v)) for k, v in sets.items()})


def _setup(params: dict | None = None):
    import numpy as np

    from faceveil.anonymize import Compositor, RegionParams, get_method
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    comp = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    return pickle.loads(CACHE.read_bytes()), comp, get_method("replace", params or {}), np


def profile(which: str, sort: str, top: int) -> None:
    import cProfile
    import pstats

    sets, comp, m, np = _setup()
    pr = cProfile.Profile(time.process_time)
    pr.enable()
    for i, (_, img, d) in enumerate(sets[which]):
        m.apply(img, d, comp, np.random.default_rng(i))
    pr.disable()
    pstats.Stats(pr).sort_stats(sort).print_stats(top)


def hashes() -> dict:
    import cv2

    from faceveil.detections import Detections

    sets, comp, _, np = _setup()
    items = sets["lfw"][:20] + sets["talk"][:40:7] + sets["facemask"]
    for name, img, d in sets["lfw"][20:23] + sets["talk"][3:4] + sets["facemask"][:2]:  # grey scenes
        items.append(("grey " + name, cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB), d))
    out = {}
    for pname, params in PARAMS.items():
        m = _setup(params)[2]
        for i, (_, img, d) in enumerate(items):
            if pname == "estkeep":  # every face without landmarks: the estimated path
                d = Detections(d.xyxy, d.score, None, d.track_id)
            out[f"{pname}/{i}"] = hashlib.sha1(m.apply(img, d, comp, np.random.default_rng(i)).tobytes()).hexdigest()
        out[f"{pname}/counts"] = json.dumps(dict(sorted(m.counts.items())))
    return out


def speed(which: str, reps: int) -> float:
    sets, comp, m, np = _setup()
    for i, (_, img, d) in enumerate(sets[which][:3]):  # warm: the bank, its caches
        m.apply(img, d, comp, np.random.default_rng(i))
    n, c = 0, time.process_time()
    for _ in range(reps):
        for i, (_, img, d) in enumerate(sets[which]):
            m.apply(img, d, comp, np.random.default_rng(i))
            n += len(d)
    return n / (time.process_time() - c)


def _run(src: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=src)
    return subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


def main() -> int:
    try:  # as the CLI's process and its workers do (faceveil.heap)
        from faceveil.heap import keep_freed

        keep_freed()
    except ImportError:  # a source tree from before it (ab, same)
        pass
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["cache", "profile", "same", "ab", "_hashes", "_speed"])
    ap.add_argument("arg", nargs="?", default="")
    ap.add_argument("reps", nargs="?", type=int, default=1)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    here = str(ROOT / "src")
    if a.stage == "cache":
        cache()
    elif a.stage == "profile":
        profile(a.arg or "talk", a.sort, a.top)
    elif a.stage == "_hashes":
        print(json.dumps(hashes()))
    elif a.stage == "_speed":
        print(speed(a.arg, a.reps))
    elif a.stage == "same":
        other, mine = (json.loads(_run(src, "_hashes")) for src in (a.arg, here))
        diff = sorted(k for k in other if other[k] != mine.get(k))
        print(f"{len(other)} outputs and counts; differ: {len(diff)} {diff[:20]}")
    else:  # ab
        for which, reps in REPS.items():
            res = {"other": [], "here": []}
            for r in range(a.rounds):
                for v in ("other", "here") if r % 2 == 0 else ("here", "other"):
                    res[v].append(float(_run(a.arg if v == "other" else here, "_speed", which, str(reps))))
            ratios = [h / o for h, o in zip(res["here"], res["other"])]
            print(f"{which}: other {max(res['other']):.2f} (runs {', '.join(f'{x:.1f}' for x in res['other'])}), "
                  f"here {max(res['here']):.2f} (runs {', '.join(f'{x:.1f}' for x in res['here'])}); best / best "
                  f"{max(res['here']) / max(res['other']):.2f}x, per round {', '.join(f'{x:.2f}' for x in ratios)}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
