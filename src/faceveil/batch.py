"""Running many files: worker processes, a progress bar, a result per file.

Results come back in input order whatever the number of jobs; a file that fails
is reported and the batch goes on.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable

from .progress import tqdm

from .io.inputs import Job
from .pipeline import Anonymizer, AnonymizerConfig, ItemResult

_worker: Anonymizer | None = None


def _init_worker(cfg: AnonymizerConfig) -> None:
    global _worker
    _worker = Anonymizer.from_config(cfg)


def _init_pool_worker(cfg: AnonymizerConfig) -> None:
    from .signals import ignore_in_worker

    ignore_in_worker()
    _init_worker(cfg)


def _run_one(mode: str, job: Job) -> ItemResult:
    assert _worker is not None
    if mode == "detect":
        return _worker.detect_file(job.src)
    return _worker.process_file(job.src, job.dst, job.rel)


def _threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def run_batch(
    cfg: AnonymizerConfig,
    jobs_list: list[Job],
    mode: str = "anonymize",
    jobs: int = 1,
    progress: bool = True,
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Process every job; return results in input order."""
    results: list[ItemResult] = []
    unit = "file"
    bar = tqdm(total=len(jobs_list), unit=unit, disable=not progress, file=sys.stderr, dynamic_ncols=True,
               desc="detecting" if mode == "detect" else "anonymizing")
    faces = failed = 0

    def consume(it: Iterable[ItemResult]) -> None:
        nonlocal faces, failed
        for r in it:
            results.append(r)
            faces += r.faces
            failed += r.status == "failed"
            bar.set_postfix(faces=faces, failed=failed, refresh=False)
            bar.update(1)
            if on_result:
                on_result(r)

    try:
        if jobs <= 1:
            _init_worker(cfg)
            consume(_run_one(mode, j) for j in jobs_list)
        else:
            threads = _threads_per_worker(jobs)
            cfg = _with_threads(cfg, threads)
            with ProcessPoolExecutor(max_workers=jobs, initializer=_init_pool_worker, initargs=(cfg,)) as pool:
                try:
                    consume(pool.map(_run_one, [mode] * len(jobs_list), jobs_list, chunksize=1))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return results


def _with_threads(cfg: AnonymizerConfig, threads: int) -> AnonymizerConfig:
    """Split the cores between workers (onnxruntime would otherwise oversubscribe them)."""
    from dataclasses import replace

    if cfg.detector in ("centerface",) and "threads" not in cfg.detector_params:
        return replace(cfg, detector_params={**cfg.detector_params, "threads": threads})
    return cfg
