"""How well the review page's flags point at leaks, on labelled photos (run by hand, not in CI).

Anonymizes N images of ../shared/data/facemask (or widerface-val) with the defaults, runs the
review check, and compares with the labels: a LEAK is a labelled face at least --min-face px
whose pixels the output left unchanged (same test as the page: compared with the original
re-encoded like the output). Prints image-level recall/precision of the flags and the rank of
leaking images in the page's order, plus face-level precision of the suggested boxes.

  PYTHONPATH=src python bench/review_flags.py --set facemask -n 60
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faceveil.cli import main
from faceveil.detections import box_iou
from faceveil.io.images import read_image
from faceveil.pipeline import AnonymizerConfig
from faceveil.review import ReviewSet, ReviewSettings
from faceveil.review.checks import HIDDEN_FLOOR, HIDDEN_RATIO, mse_inside, reencoded_like

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"facemask": ("facemask/images", "facemask/gt.txt"),
        "widerface": ("widerface-val/images", "widerface-val/ground_truth/wider_face_val_bbx_gt.txt")}


def read_gt(path: Path) -> dict[str, np.ndarray]:
    lines = path.read_text().split("\n")
    out, i = {}, 0
    while i < len(lines) and lines[i].strip():
        name, n = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, lines[i + 2 + k].split()[:4])) for k in range(n)]
        b = np.asarray(rows, np.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        out[Path(name).name] = b
        i += 2 + max(n, 1)
    return out


def main_() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=SETS, default="facemask")
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--min-face", type=float, default=10)
    ap.add_argument("--second", default="yunet")
    ap.add_argument("--near", type=float, default=0.5)
    args = ap.parse_args()
    img_dir, gt_file = (SHARED / p for p in SETS[args.set])
    if not img_dir.exists():
        print(f"{img_dir} not found", file=sys.stderr)
        return 2
    gt = read_gt(gt_file)
    files = sorted(p for p in img_dir.rglob("*.jpg") if p.name in gt)[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "in"), Path(tmp, "out")
        src.mkdir()
        for f in files:
            shutil.copy2(f, src / f.name)
        t0 = time.perf_counter()
        main(["anonymize", str(src), "-o", str(out), "-q"])
        t_anon = time.perf_counter() - t0
        t0 = time.perf_counter()
        rs = ReviewSet(out, src, AnonymizerConfig(), ReviewSettings(second=(args.second,), near=args.near),
                       Path(tmp, "cache"))
        t_check = time.perf_counter() - t0
        listing = rs.listing()["items"]
        leaks: dict[str, int] = {}
        for f in files:
            o, a = read_image(src / f.name).rgb, read_image(out / f.name).rgb
            base = reencoded_like(o, out / f.name, 95)
            n = 0
            for b in gt[f.name]:
                if min(b[2] - b[0], b[3] - b[1]) < args.min_face:
                    continue
                n += not (mse_inside(o, a, b) > HIDDEN_RATIO * mse_inside(o, base, b) + HIDDEN_FLOOR)
            leaks[f.name] = n
    leak_imgs = {k for k, v in leaks.items() if v}
    order = [i["path"] for i in listing]
    print(f"{args.set}: {len(files)} images, {sum(len(gt[f.name]) for f in files)} labelled faces, "
          f"{sum(leaks.values())} leaking faces >= {args.min_face:g} px in {len(leak_imgs)} images; "
          f"anonymize {t_anon:.0f} s, review check {t_check:.0f} s ({t_check / len(files):.2f} s/image; "
          f"2 shared cores, noisy)")
    print(f"{'flags counted':<28} {'flagged':>8} {'leak imgs flagged':>18} {'precision':>10}")
    for name, kinds in (("second", {"second"}), ("near", {"near"}), ("second+near", {"second", "near"}),
                        ("all (incl. small)", {"second", "near", "small", "unhidden", "failed", "error"})):
        flagged = {i["path"] for i in listing if any(f["kind"] in kinds for f in i["flags"])}
        hit = len(flagged & leak_imgs)
        print(f"{name:<28} {len(flagged):>8} {hit:>9}/{len(leak_imgs):<8} {hit / max(len(flagged), 1):>10.2f}")
    ranks = sorted(order.index(k) + 1 for k in leak_imgs)
    print(f"page positions of leaking images: {ranks} (of {len(order)})")
    sugg = [(i["path"], s) for i in listing for s in i["suggestions"] if not s["hidden"]]
    for src_name in sorted({s["source"] for _, s in sugg}):
        boxes = [(p, s) for p, s in sugg if s["source"] == src_name]
        true = sum(len(gt[p]) and box_iou(np.asarray([s["box"]]), gt[p]).max() >= 0.3 for p, s in boxes)
        print(f"suggested boxes from {src_name}: {len(boxes)}, on a labelled face (IoU >= 0.3): {true}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
