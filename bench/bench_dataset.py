"""Dataset-mode throughput: 1 and 2 local workers, Ray with 2 workers, and the plain batch as a peer.

    python bench/bench_dataset.py [--n 300] [--source facemask|wider] [--no-ray]

Builds a WIDER-layout dataset of N images in a temporary folder by replicating
the shared photos (facemask: ~400 px street photos; wider: 1024 px crowds) with
their labels, then times `anonymize_dataset` (blur, --boxes union) in this
process for each backend, and the plain `faceveil anonymize` batch (run_batch,
detector boxes only, no manifest) on the same images as the peer. CPU
utilisation is the CPU time of this process and all its descendants (workers,
Ray's raylet and workers) over wall time x cores; the machine-wide busy share
is printed too, since other work on the machine slows every run. Checks that
Ray's output is byte-identical to the local runs' (SHA-256 from the manifests).
Nothing is written outside the temporary folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = {
    "facemask": (SHARED / "facemask" / "images", SHARED / "facemask" / "gt.txt"),
    "wider": (SHARED / "widerface-val" / "images", SHARED / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt"),
}


def build(tmp: Path, source: str, n: int) -> tuple[Path, Path]:
    from faceveil.io.labels import ImageLabels, LabelSet, read_wider, write_wider

    images, gt = SOURCES[source]
    if not gt.exists():
        sys.exit(f"{gt} not found: the benchmark needs ../shared/data beside the checkout")
    src = [im for im in read_wider(gt).images if (images / im.path).exists()]
    root = tmp / "ds" / "images"
    out: list[ImageLabels] = []
    for i in range(n):
        im = src[i % len(src)]
        rel = f"rep{i // len(src)}/{im.path}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / im.path, root / rel)  # a copy: a hard link changed the shared files' link count
        out.append(ImageLabels(rel, im.xywh, im.classes, im.extra))
    labels = tmp / "ds" / "gt.txt"
    write_wider(LabelSet("wider", out, meta={"trailing_space": False}), labels)
    return root, labels


class CpuMeter:
    """CPU seconds of this process and every descendant, sampled so that short-lived workers count too."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()

    def _sample(self):
        for p in [self.me] + self.me.children(recursive=True):
            try:
                t = p.cpu_times()
                self.seen[p.pid] = max(self.seen.get(p.pid, 0.0), t.user + t.system)
            except self.psutil.Error:
                pass

    def _loop(self):
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self):
        self._sample()
        self.base = dict(self.seen)
        self.sys0 = self.psutil.cpu_times()
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._sample()
        self._stop.set()
        self.thread.join()
        self.wall = time.perf_counter() - self.t0
        self.cpu = sum(v - self.base.get(pid, 0.0) for pid, v in self.seen.items())
        s1 = self.psutil.cpu_times()
        busy = lambda t: t.user + t.nice + t.system + t.irq + t.softirq + t.steal  # noqa: E731
        total = lambda t: busy(t) + t.idle + t.iowait  # noqa: E731
        self.machine = (busy(s1) - busy(self.sys0)) / max(total(s1) - total(self.sys0), 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--source", choices=sorted(SOURCES), default="facemask")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    from faceveil.batch import run_batch
    from faceveil.dataset import DatasetConfig, anonymize_dataset
    from faceveil.io.images import is_image_path
    from faceveil.io.inputs import plan_jobs
    from faceveil.io.manifest import read_manifest
    from faceveil.pipeline import AnonymizerConfig

    cores = os.cpu_count() or 1
    cfg = DatasetConfig(AnonymizerConfig("blur"), "union", 0.0)
    rows, hashes = [], {}
    with tempfile.TemporaryDirectory(prefix="faceveil-bench-") as tmp:
        tmp = Path(tmp)
        root, labels = build(tmp, args.source, args.n)
        runs = [("local", 1), ("local", 2)] + ([] if args.no_ray else [("ray", 2)])
        for backend, jobs in runs:
            out = tmp / f"out-{backend}-{jobs}"
            if backend == "ray":
                import ray

                from faceveil.dataset import start_ray

                with CpuMeter() as m:
                    start_ray(jobs)
                rows.append((f"  ray start-up (x{jobs}, not in the row below)", 0, m.wall, 0, m.cpu, m.machine, 0))
            with CpuMeter() as m:
                s = anonymize_dataset("wider", root, labels, out, cfg, jobs=jobs, backend=backend, progress=False)
            if backend == "ray":
                ray.shutdown()
            for err in s.failed[:3]:
                print(f"{backend} x{jobs}: failed: {err}", file=sys.stderr)
            faces = s.faces_labels + s.faces_detected_extra
            hashes[(backend, jobs)] = {e["path"]: e["output_sha256"] for e in read_manifest(out / "manifest.jsonl")[0]}
            rows.append((f"dataset {backend} x{jobs}", s.done, m.wall, faces, m.cpu, m.machine, len(s.failed)))
            # resume: everything is done, so this measures the manifest + hash check alone
            if (backend, jobs) == ("local", 2):
                with CpuMeter() as m2:
                    s2 = anonymize_dataset("wider", root, labels, out, cfg, jobs=jobs, progress=False)
                rows.append(("  rerun (all skipped)", s2.skipped, m2.wall, 0, m2.cpu, m2.machine, 0))
        jobs_list, _ = plan_jobs([root], tmp / "out-batch", is_image_path)
        with CpuMeter() as m:
            res = run_batch(AnonymizerConfig("blur"), jobs_list, "anonymize", 2, progress=False)
        rows.append(("peer: faceveil anonymize x2", sum(r.status == "written" for r in res), m.wall,
                     sum(r.faces for r in res), m.cpu, m.machine, sum(r.status == "failed" for r in res)))

    base = rows[0][1] / rows[0][2]
    print(f"\n{args.n} images from {args.source}, blur, --boxes union; {cores} cores "
          f"(shared with other work: see 'machine busy')\n")
    print(f"| run | images | wall s | images/s | faces/s | vs local x1 | CPU util (of {cores} cores) | CPU s/image "
          "| machine busy | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, wall, faces, cpu, machine, failed in rows:
        rate = n / wall
        if not n:
            print(f"| {name} | | {wall:.1f} | | | | {100 * cpu / (wall * cores):.0f}% | {cpu:.1f} s total "
                  f"| {100 * machine:.0f}% | |")
            continue
        ratio = "" if name.strip().startswith("rerun") else f"{rate / base:.2f}x"  # skipped images: no speed
        print(f"| {name} | {n} | {wall:.1f} | {rate:.2f} | {faces / wall:.1f} | {ratio} | "
              f"{100 * cpu / (wall * cores):.0f}% | {cpu / n:.3f} | {100 * machine:.0f}% | {failed} |")
    ref = hashes[("local", 2)]
    print()
    for key, h in hashes.items():
        if key == ("local", 2):
            continue  # the reference itself
        same = h == ref
        print(f"output SHA-256 of {key[0]} x{key[1]} == local x2: {same} ({len(h)} files)")
    if ("ray", 2) in hashes and hashes[("ray", 2)] != ref:
        sys.exit("Ray output differs from the local run")


if __name__ == "__main__":
    main()
