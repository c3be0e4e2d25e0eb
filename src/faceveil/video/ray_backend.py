"""A folder of videos on Ray: one video per task, on actors that each hold one Anonymizer (issue 20, lever 5).

Reuses the dataset mode's Ray plumbing (dataset/backends.py: a local instance or ``--address``, the reaper
that ends a local instance's processes with the run, the window of tasks in flight) and its thread split:
on a local instance each actor's detector gets ``cores // workers`` onnxruntime threads, on a cluster
``cluster CPUs // workers``. Every actor runs the same ``process_video`` as a local run (same detector,
options, seeds, encoder settings), so the outputs are byte-identical (tests/test_video_speed.py). A crash
leaves no partial file (every output is written atomically) and no process behind; run the same command
with ``--skip-existing`` to do only the videos that are missing.
"""
from __future__ import annotations

import os
from typing import Iterator

from ..io.inputs import Job
from ..pipeline import AnonymizerConfig
from .options import VideoOptions, VideoResult


class _VideoWorker:
    def __init__(self, cfg: AnonymizerConfig, driver_pid: int | None = None):
        if driver_pid is not None:
            from ..batch import die_with_parent

            die_with_parent(driver_pid)  # a killed run must not leave its actors encoding
        from ..pipeline import Anonymizer

        self.anonymizer = Anonymizer.from_config(cfg)

    def run(self, job: Job, options: VideoOptions, replace: bool = True) -> VideoResult:
        from .job import process_video

        return process_video(self.anonymizer, job.src, job.dst, options, progress=False, replace=replace)


def run_videos_ray(cfg: AnonymizerConfig, jobs: list[Job], options: VideoOptions, workers: int = 1,
                   address: str | None = None, replace: bool = True) -> Iterator[tuple[int, VideoResult]]:
    """(index into ``jobs``, result) as each video finishes (any order). ``replace=False``: an output another run
    makes meanwhile is not replaced (that video fails)."""
    from ..batch import _with_threads, usable_cores
    from ..dataset.backends import _import_ray, _stop_reaper, on_actors, start_ray

    ray = _import_ray()
    workers = max(1, workers)
    started = start_ray(workers, address)
    try:
        cpus = usable_cores() if not address else int(ray.cluster_resources().get("CPU", 1))
        cfg_t = _with_threads(cfg, max(1, cpus // workers))
        driver = os.getpid() if not address else None
        actor_cls = ray.remote(num_cpus=1)(_VideoWorker)

        def failed(k_job, exc):
            k, job = k_job
            why = ("a Ray worker died while it was encoded, and again when it was tried alone (out of memory?)"
                   if exc is None else f"Ray worker failed: {str(exc).splitlines()[0]}")
            return VideoResult(str(job.src), None, "failed", 0, 0.0, f"{job.src}: {why}")

        # One video per actor in flight: a video keeps an actor busy for a while, and a queued one would
        # wait behind it while another actor idles. An actor that dies is replaced (on_actors).
        for (k, _), result in on_actors(ray, lambda: actor_cls.remote(cfg_t, driver), workers, list(enumerate(jobs)),
                                        workers, lambda actor, kj: actor.run.remote(kj[1], options, replace), failed,
                                        "video"):
            yield k, result
    finally:
        if started:
            ray.shutdown()
            _stop_reaper()
            # Actors ended mid-video (Ctrl-C, a failed run) cannot unwind: their temporary files stayed while the
            # run said "no partial files were left". Their processes are gone now, so these count as stale.
            from ..io.atomic import remove_stale_temporaries
            from ..io.inputs import output_folders

            remove_stale_temporaries(output_folders(jobs))
