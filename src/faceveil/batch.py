"""Running many files: worker processes, a progress bar, a result per file.

Results come back in input order whatever the number of jobs (the bar counts them as they finish); a file that
fails is reported and the batch goes on.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from .progress import still_working, tqdm

from .errors import one_line
from .heap import keep_freed
from .io.atomic import file_identity, remove_live_temporaries, remove_stale_temporaries
from .io.inputs import Job
from .pipeline import Anonymizer, AnonymizerConfig, ItemResult

_worker: Anonymizer | None = None


def _init_worker(cfg: AnonymizerConfig) -> None:
    global _worker
    keep_freed()  # a worker process is the command's too (heap: freed arrays kept for the next)
    _worker = Anonymizer.from_config(cfg)


_initializing = False  # a pool worker still loading its models: ended quietly (nothing of it to unwind)


def _init_pool_worker(parent_pid: int, cfg: AnonymizerConfig) -> None:
    global _initializing
    from .signals import ignore_in_worker

    ignore_in_worker()  # Ctrl-C / `timeout` reach the parent, which shuts the pool down
    _initializing = True
    die_with_parent(parent_pid)  # after ignore_in_worker: the parent's death sends its own signal
    _init_worker(cfg)
    _initializing = False


# ---------------------------------------------------------------------------
# Worker processes must not outlive the run. A pool worker waits on a pipe from its parent; after the parent
# is killed (kill -9, OOM killer) nothing ever closes that pipe (its siblings hold copies), so without this
# the workers would sleep forever. The standard library has no option for it (ProcessPoolExecutor,
# multiprocessing), hence the few lines here: Linux's PR_SET_PDEATHSIG (through ctypes) signals the worker
# the moment its parent dies; a watchdog thread that polls the parent's pid covers other systems, a
# parent that died before the prctl call, and Ray actors (whose parent is Ray's raylet, not the run).
# The signal (_DEATH_SIGNAL) is turned into SystemExit: the worker unwinds, so an image being written loses its
# temporary file (io.atomic.atomic_path) instead of leaving it; a worker stuck in native code is ended
# with os._exit after a grace period.

PR_SET_PDEATHSIG = 1
# SIGUSR1, not SIGTERM: pool workers ignore SIGINT/SIGTERM sent to the whole process group (Ctrl-C,
# `timeout`), which the parent handles by shutting the pool down; the parent's death is told apart.
_DEATH_SIGNAL = getattr(signal, "SIGUSR1", signal.SIGTERM)
_POLL_S = 0.25
# then os._exit (_force_exit), which removes the temporary file the worker was writing first (io.atomic keeps the
# list: under load a kill -9 test found one left, its main thread still in an fsync or an encoder after the grace).
# 3 s, not 1: time for the unwinding, which also leaves the process's other state in order.
_GRACE_S = 3.0


def die_with_parent(parent_pid: int) -> None:
    """End this process soon after the process ``parent_pid`` (the run) dies.

    The run is our parent with the fork and spawn start methods; with forkserver (the default from Python
    3.14) or under Ray it is an ancestor, and then the watchdog polls its pid instead.
    """
    direct = os.getppid() == parent_pid

    def parent_gone() -> bool:
        if direct:
            return os.getppid() != parent_pid
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, someone else's: cannot be ours, but not gone either
            return False
        return False

    if threading.current_thread() is threading.main_thread():
        signal.signal(_DEATH_SIGNAL, _on_sigterm)
    if direct and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, _DEATH_SIGNAL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (musl oddities): the watchdog still works
            pass
    threading.Thread(target=_watch_parent, args=(parent_gone,), name="faceveil-parent-watch", daemon=True).start()


def _force_exit(code: int) -> None:
    """os._exit, which runs no except clause: the temporary file the stuck main thread was writing removed first."""
    remove_live_temporaries()
    os._exit(code)


def _watch_parent(parent_gone: Callable[[], bool]) -> None:
    while not parent_gone():
        time.sleep(_POLL_S)
    os.kill(os.getpid(), _DEATH_SIGNAL)  # unwind the main thread first (it removes temporary files)
    time.sleep(_GRACE_S)
    _force_exit(1)


def _on_sigterm(signum, frame) -> None:
    if _initializing:  # SystemExit in the pool's initializer printed "Exception in initializer:" and a traceback
        os._exit(128 + signum)
    killer = threading.Timer(_GRACE_S, _force_exit, (1,))  # in case unwinding blocks (a pipe to a dead parent)
    killer.daemon = True
    killer.start()
    raise SystemExit(128 + signum)


def pool_context():
    """Worker processes start fresh ("spawn"), never forked: the run has already loaded onnxruntime sessions
    (to fail fast on bad settings), and a child forked from a process whose thread pools wait on condition
    variables can hang forever when it tears one down (seen: a --jobs 2 dataset worker stuck in
    pthread_cond_destroy for minutes). A fresh interpreter costs about a second per worker."""
    import multiprocessing

    return multiprocessing.get_context("spawn")


def _run_one(mode: str, job: Job, overwrite: bool = False, faces: bool = True) -> ItemResult:
    """``faces=False``: the result without its per-face list (``detections``), which only a report reads: 2,000
    files kept ~60 MB of them in the run's process for nothing."""
    r = _run_job(mode, job, overwrite)
    return r if faces else replace(r, detections=None)


def _run_job(mode: str, job: Job, overwrite: bool) -> ItemResult:
    assert _worker is not None
    if mode == "detect":
        return _worker.detect_file(job.src)
    # The CLI's policy (--overwrite, --skip-existing, --in-place) has decided to write job.dst: without --overwrite
    # there was no file there, and one that another run writes meanwhile is not replaced (the file fails).
    if job.dst == job.src:  # --in-place
        return _worker.write_file(job.src, job.dst)
    if overwrite:  # process_file refuses an output that is the input through a link
        return _worker.process_file(job.src, job.dst, overwrite=True)
    # no file was there: one written meanwhile fails with the CLI's advice (process_file's check gives the API's)
    return _worker.write_file(job.src, job.dst, replace=False)


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), which ``os.cpu_count()`` (the machine's)
    ignores: under ``taskset -c 0`` on 2 cores a batch gave each worker threads for 2 while --jobs warned of 1. Every
    count of cores for workers and threads (and --jobs' warning) is this one."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this system (macOS, Windows)
        return os.cpu_count() or 1


def _threads_per_worker(jobs: int) -> int:
    return max(1, usable_cores() // jobs)


# Without --jobs, a batch of images runs in one worker process per core once each worker gets this many images: a
# worker's start-up (~1.5 s on 2 cores) paid for itself from 50-100 facemask-size photos and fewer WIDER-size ones
# (bench/bench_photo_speed.py, docs/benchmarks.md: 2 workers of one thread ran 100 facemask photos 1.12-1.23x and
# 40-100 WIDER photos 1.30-1.33x as fast as one process of 2 threads; 30 facemask photos 0.88x).
AUTO_JOBS_PER_WORKER = 32


def auto_jobs(images: int) -> int:
    """Worker processes for a batch of ``images`` when none are asked for: one per core once each gets
    AUTO_JOBS_PER_WORKER images, else 1 (this process)."""
    return max(1, min(usable_cores(), images // AUTO_JOBS_PER_WORKER))


def run_batch(
    cfg: AnonymizerConfig,
    jobs_list: list[Job],
    mode: str = "anonymize",
    jobs: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    faces: bool = True,
) -> list[ItemResult]:
    """Process every job; return results in input order. ``overwrite``: replace outputs that exist (the CLI's
    --overwrite); else one that exists when its file is written (another run's) fails that file. ``faces``: keep
    each result's per-face list (``ItemResult.detections``: a report's, the detect command's).

    The progress bar counts files as they finish, in any order; while none does, it says which file it waits
    for (progress.still_working)."""
    results: list[ItemResult | None] = [None] * len(jobs_list)
    unit = "file"
    bar = tqdm(total=len(jobs_list), unit=unit, disable=not progress, file=sys.stderr, dynamic_ncols=True,
               desc=("detecting" if mode == "detect" else "anonymizing") + (f" ({jobs} workers)" if jobs > 1 else ""))
    n_faces = failed = oldest = 0

    def waiting_for() -> str:  # the first file in input order not finished: the one taking longest
        return one_line(jobs_list[min(oldest, len(jobs_list) - 1)].rel)

    def consume(it: Iterable[tuple[int, ItemResult]]) -> None:
        nonlocal n_faces, failed, oldest
        for i, r in it:
            if mode != "detect" and r.status == "failed":
                r = planned(r, jobs_list[i])
            results[i] = r
            while oldest < len(results) and results[oldest] is not None:
                oldest += 1
            n_faces += r.faces
            failed += r.status == "failed"
            bar.set_postfix(faces=n_faces, failed=failed, refresh=False)
            bar.update(1)

    try:
        with still_working(bar, waiting_for):
            if jobs <= 1:
                _init_worker(cfg)
                consume((i, _run_one(mode, j, overwrite, faces)) for i, j in enumerate(jobs_list))
            else:
                cfg = _with_threads(cfg, _threads_per_worker(jobs))
                pooled = _pooled(cfg, jobs_list, mode, jobs, overwrite, faces, bar)
                try:
                    consume(pooled)
                finally:  # an interrupt raised out here (not in the wait) shuts its pool down now, not when freed
                    pooled.close()
    finally:
        bar.close()
    return results  # type: ignore[return-value]  # every slot filled


def planned(result: ItemResult, job: Job) -> ItemResult:
    """A failed file's result with the output it was to be (``target``): the review's Apply of it writes there, where
    the run would have (its path under IN may name another place: `anonymize IN/a/x.jpg -o OUT` aims at OUT/x.jpg)."""
    return replace(result, target=str(job.dst))


@contextlib.contextmanager
def group_signals_blocked():
    """Block SIGINT and SIGTERM in this thread for the block: worker processes started in it inherit the mask
    (through spawn's exec too), so a Ctrl-C while one is still importing does not print its traceback or kill it
    (which broke the pool); ignore_in_worker then ignores them for good. A signal arriving meanwhile is held, not
    lost: the parent gets it when the block ends."""
    group = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, group)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _pooled(cfg: AnonymizerConfig, jobs_list: list[Job], mode: str, jobs: int, overwrite: bool, faces: bool,
            bar) -> Iterator[tuple[int, ItemResult]]:
    """(index, result) of each job as it finishes, in ``jobs`` worker processes.

    A worker that dies (the OOM killer, kill -9) breaks the pool: the jobs finished before still count, the
    surviving workers are ended (the pool's own clean-up sent them SIGTERM, which they ignore, and the run hung).
    Then the batch goes on past it: the unfinished files the dead worker may have held (the pool hands out at
    most 2 x jobs + 1 ahead: _HELD) are run again one at a time, each in a fresh worker of its own (a photo that
    needed more memory than it had beside the others gets it alone; one that kills its worker again fails with one
    line), and the rest in a fresh pool of ``jobs`` workers. Before, every unfinished file failed and the run
    ended, and a rerun with --skip-existing met the same photo again at once: a batch could never pass it."""
    in_place = {i: _identity(j.src) for i, j in enumerate(jobs_list) if mode != "detect" and j.dst == j.src}
    todo = [(i, overwrite) for i in range(len(jobs_list))]
    while todo:
        lost = yield from _round(cfg, jobs_list, todo, mode, jobs, faces)
        if not lost:
            return
        # what the dead worker was writing (a SIGKILL runs no clean-up): its pid is gone, the sweep takes it
        if mode != "detect":
            remove_stale_temporaries({jobs_list[i].dst.parent for i in lost})
        bar.write(f"faceveil: warning: a worker process died (out of memory?) with {len(lost)} file"
                  f"{'s' if len(lost) > 1 else ''} unfinished: the one{'s' if len(lost) > 1 else ''} it may have "
                  "held are tried again one at a time, the rest go on", file=sys.stderr)
        again = []
        for i in lost:
            retry = _again(jobs_list[i], mode, overwrite, in_place.get(i, False))
            if isinstance(retry, ItemResult):
                yield i, retry
            else:
                again.append((i, retry))
        held = _HELD * jobs + 1
        for i, ow in again[:held]:
            if (yield from _round(cfg, jobs_list, [(i, ow)], mode, 1, faces)):
                src = jobs_list[i].src
                yield i, ItemResult(str(src), None, "failed", error=f"{src}: no result: a worker process died "
                                    "while it was processed, and again when it was tried alone (out of memory?)")
        todo = again[held:]


# Jobs a pool can have handed out beyond the ones finished, per worker: a worker's own and one in the call queue
# (concurrent.futures' EXTRA_QUEUED_CALLS adds one for the whole pool: the "+ 1").
_HELD = 2


def _identity(path) -> list[int] | None:
    """io.atomic's identity of ``path`` (device, inode, size, modification time), None where it is gone."""
    try:
        return file_identity(path)
    except OSError:
        return None


def _again(job: Job, mode: str, overwrite: bool, before) -> bool | ItemResult:
    """How a job a dead pool left unfinished runs again: its ``overwrite``, or its result where it must not run.
    Its worker may have written the output before it died (or was ended): the rename was atomic, so a file there
    is whole, and the same settings write the same bytes again. A new output (no --overwrite: none was there when
    the run started) is written again over itself; an --in-place original that is no longer the file the run
    started from was anonymized already, and is not anonymized twice."""
    if mode == "detect":
        return overwrite
    if job.dst == job.src:
        if _identity(job.src) != before:
            return ItemResult(str(job.src), None, "failed", error=f"{job.src}: no result: a worker process died "
                              "after it was written (it is anonymized; its faces were not reported)")
        return overwrite
    return overwrite or os.path.lexists(job.dst)


def _round(cfg: AnonymizerConfig, jobs_list: list[Job], todo: list[tuple[int, bool]], mode: str, jobs: int,
           faces: bool):
    """One pool of ``jobs`` workers over ``todo`` ((index, overwrite) pairs): yields (index, result) as they finish,
    returns the indices left unfinished where a worker died (in order), [] where none did."""
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_pool_worker, mp_context=pool_context(),
                             initargs=(os.getpid(), cfg)) as pool:
        try:
            futures, lost = {}, []
            with group_signals_blocked():  # the workers start (on submit) with them blocked
                for n, (i, ow) in enumerate(todo):
                    try:
                        futures[pool.submit(_run_one, mode, jobs_list[i], ow, faces)] = i
                    except BrokenProcessPool:  # a worker died while the jobs were handed in
                        lost = [k for k, _ in todo[n:]]
                        break
            for fut in as_completed(futures):  # a broken pool fails every pending future at once
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    lost.append(futures[fut])
                    continue
                yield futures[fut], result
            if lost:
                _end_workers(pool)
            return sorted(lost)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's live workers: _DEATH_SIGNAL first (they unwind, removing temporary files), SIGKILL after
    the grace period. The executor offers no way to reach its processes but this private mapping."""
    procs = [p for p in getattr(pool, "_processes", {}).values() if p.is_alive()]
    for p in procs:
        with contextlib.suppress(OSError):
            os.kill(p.pid, _DEATH_SIGNAL)
    deadline = time.monotonic() + _GRACE_S + 1
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1)


def _with_threads(cfg: AnonymizerConfig, threads: int) -> AnonymizerConfig:
    """Split the cores between workers (onnxruntime would otherwise oversubscribe them)."""
    from dataclasses import fields

    from .detect import DETECTORS
    from .registry import MAX_THREADS

    # Every detector with an onnxruntime session has a `threads` parameter (multiscale, the presets'
    # detector, included); the others (dlib, Haar) run single-threaded anyway.
    has_threads = "threads" in {f.name for f in fields(DETECTORS.get(cfg.detector).Params)}
    if has_threads and "threads" not in cfg.detector_params:  # at most MAX_THREADS (a 128-core machine's share)
        return replace(cfg, detector_params={**cfg.detector_params, "threads": min(threads, MAX_THREADS)})
    return cfg
