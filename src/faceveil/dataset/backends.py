"""Where the images run: local worker processes or Ray actors, each yielding results as they finish (any order).

Both call the same ``worker.process_item``, so their outputs are byte-identical.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import FaceveilError, UsageError
from ..batch import pool_context
from .config import DatasetConfig, Item
from .worker import init_pool_worker, init_worker, process_item


def _threads(cfg: DatasetConfig, workers: int) -> DatasetConfig:
    from ..batch import _threads_per_worker, _with_threads

    return replace(cfg, anonymizer=_with_threads(cfg.anonymizer, _threads_per_worker(workers)))


def run_local(cfg: DatasetConfig, items: list[Item], jobs: int = 1) -> Iterator[dict]:
    """Each item's result as it finishes, in ``jobs`` worker processes. A worker that dies (the OOM killer on an
    image too big beside the others, kill -9) breaks the pool: the items it may have held (those in flight) run
    again one at a time, each in a fresh worker of its own, and one that kills that worker too fails with one line;
    the rest go on in a fresh pool. Before, the run stopped (resumable), and its resume met the same image at once."""
    if jobs <= 1 or len(items) <= 1:
        init_worker(_threads(cfg, jobs))  # same threads as the pool would use: same numbers
        for it in items:
            yield process_item(it)
        return
    cfg = _threads(cfg, jobs)
    todo = list(items)
    while todo:
        held, todo = yield from _local_round(cfg, todo, jobs)
        if not held:
            continue
        print(f"faceveil: warning: a worker process died (out of memory?) with {len(held)} image"
              f"{'s' if len(held) > 1 else ''} in flight: tried again one at a time, the rest go on", file=sys.stderr)
        for it in held:
            if (yield from _local_round(cfg, [it], 1))[0]:
                yield {"error": f"{it.src}: a worker process died while it was processed, and again when it was "
                                "tried alone (out of memory?); nothing was written", "path": it.rel}


def _local_round(cfg: DatasetConfig, items: list[Item], jobs: int):
    """One pool of ``jobs`` workers, at most 2 x jobs items in flight (``_windowed``): yields each result, returns
    ([], []) when every item ran, else (the items in flight when a worker died, the items not yet handed in)."""
    from ..batch import _end_workers

    with ProcessPoolExecutor(max_workers=jobs, initializer=init_pool_worker, mp_context=pool_context(),
                             initargs=(os.getpid(), cfg)) as pool:
        queue = iter(enumerate(items))  # _windowed takes from it: what is left there was never handed in
        inflight: dict = {}  # future -> (index, item), until its result is taken
        handing: list = []  # the item being handed in: a pool already broken refuses it

        def submit(kx):
            handing[:] = [kx]
            f = pool.submit(process_item, kx[1])
            inflight[f] = handing.pop()
            return f

        def get(f):
            result = f.result()  # BrokenProcessPool: a worker died
            del inflight[f]
            return result

        try:
            yield from _windowed(submit, queue, 2 * jobs, lambda fs: wait(fs, return_when=FIRST_COMPLETED)[0], get)
            return [], []
        except BrokenProcessPool:
            _end_workers(pool)
            held = sorted([*inflight.values(), *handing], key=lambda kx: kx[0])
            return [x for _, x in held], [x for _, x in queue]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_ray(cfg: DatasetConfig, items: list[Item], jobs: int = 1, address: str | None = None) -> Iterator[dict]:
    """Ray actors, each holding one Anonymizer (models load once per actor).

    With an address the images and OUT must be on storage every node sees, and
    faceveil installed on every node.
    """
    ray = _import_ray()
    started = start_ray(jobs, address)
    try:
        actor_cls = ray.remote(num_cpus=1)(_RayWorker)
        cfg_t = _threads(cfg, jobs) if not address else cfg
        driver = os.getpid() if not address else None  # a local instance: actors end when this process dies

        def failed(it: Item, exc: Exception | None) -> dict:
            if exc is None:
                return {"error": f"{it.src}: a Ray worker died while it was processed, and again when it was tried "
                                 "alone (out of memory?); nothing was written", "path": it.rel}
            return {"error": f"{it.src}: Ray worker failed: {str(exc).splitlines()[0]}", "path": it.rel}

        for _, result in on_actors(ray, lambda: actor_cls.remote(cfg_t, driver), max(1, jobs), items,
                                   2 * max(1, jobs), lambda actor, it: actor.run.remote(it), failed, "image"):
            yield result
    finally:
        if started:
            ray.shutdown()
            _stop_reaper()


def on_actors(ray, make_actor: Callable, n: int, items: Iterable, window: int, call: Callable, failed: Callable,
              noun: str) -> Iterator[tuple]:
    """(item, result) as each item finishes on ``n`` Ray actors made by ``make_actor()``: ``call(actor, item)``
    starts it (an ObjectRef), at most ``window`` in flight, each handed to the least busy actor; a task that
    raised gives ``failed(item, exc)``.

    An actor that dies (the OOM killer on an item too big beside the others, kill -9, its node lost) fails every
    task it held and every one handed to it after, so a dead actor once failed 1/n of the rest of the run. It is
    replaced by a fresh one at the first news of its death; the items it held run again at the end, one at a time,
    each on a fresh actor of its own, and one that kills that actor too gives ``failed(item, None)`` (as the local
    pool does, run_local). Written here: Ray's own ``ray.util.ActorPool`` neither replaces nor retries."""
    actors = [make_actor() for _ in range(n)]
    load = [0] * n  # tasks in flight per actor
    pending: dict = {}  # ref -> (item, slot, the actor it went to)
    held: list = []  # items whose actor died under them

    def submit(item):
        k = load.index(min(load))
        load[k] += 1
        ref = call(actors[k], item)
        pending[ref] = (item, k, actors[k])
        return ref

    def collect(refs):
        return ray.wait(list(refs), num_returns=1)[0]

    def result(ref):
        item, k, actor = pending.pop(ref)
        load[k] -= 1
        try:
            return item, ray.get(ref)
        except ray.exceptions.RayActorError:
            if actors[k] is actor:  # the first of its tasks to say so: a fresh actor takes its place
                ray.kill(actor, no_restart=True)
                actors[k] = make_actor()
            held.append(item)
            return None
        except ray.exceptions.RayError as exc:
            return item, failed(item, exc)

    for r in _windowed(submit, items, window, collect, result):
        if r is not None:
            yield r
    for actor in actors:  # each holds a CPU: the lone tries below would wait for one for ever
        ray.kill(actor, no_restart=True)
    if not held:
        return
    print(f"faceveil: warning: a Ray worker died (out of memory?) with {len(held)} {noun}"
          f"{'s' if len(held) > 1 else ''} in flight: tried again one at a time, the rest went on", file=sys.stderr)
    for item in held:
        actor = make_actor()
        try:
            yield item, ray.get(call(actor, item))
        except ray.exceptions.RayActorError:
            yield item, failed(item, None)
        except ray.exceptions.RayError as exc:
            yield item, failed(item, exc)
        finally:
            ray.kill(actor, no_restart=True)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'faceveil[ray]'") from None
    return ray


# How long a cluster's port may take to accept a connection. Ray itself retries an address where nothing answers
# for minutes (8 and more), deaf to Ctrl-C and SIGTERM for half a minute at a time.
CONNECT_TIMEOUT_S = 10.0


def check_ray_address(address: str | None) -> None:
    """Refuse, in one line and within CONNECT_TIMEOUT_S, an address Ray could not use: a Ray Client address
    (ray://) without Ray's client package, or a host and port where nothing accepts a connection."""
    import importlib.util
    import socket
    from urllib.parse import urlsplit

    if not address or address == "local" or address in _ANSWERED:
        return
    if address == "auto":
        _check_auto()
        return
    client = address.startswith("ray://")
    if client and importlib.util.find_spec("grpc") is None:  # what Ray checks (get_ray_client_dependency_error)
        raise UsageError(f"--address {address}: a ray:// address needs Ray's client package: "
                         "pip install 'ray[client]'")
    try:
        where = urlsplit(address if client else f"//{address}")
        host, port = where.hostname, where.port or (10001 if client else 6379)
    except ValueError:
        host = None
    if not host:
        raise UsageError(f"--address {address}: not a Ray address (HOST:PORT, ray://HOST:PORT or auto)")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        cause = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or exc.__class__.__name__
        raise UsageError(f"--address {address}: no Ray cluster answers at {host}:{port} ({cause}); start it "
                         "(ray start --head) or give its address") from None
    _ANSWERED.add(address)  # start_ray checks again what the CLI checked: one probe (and one wait) is enough


_ANSWERED: set[str] = set()


def _check_auto() -> None:
    """``--address auto`` finds no cluster: refuse before any work (Ray said so only after OUT was made)."""
    try:  # Ray's own lookup (RAY_ADDRESS, the last `ray start`, a running GCS); private, so only where it is found
        from ray._private.services import get_ray_address_from_environment
    except (ImportError, AttributeError):
        return
    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UsageError("--address auto: no Ray cluster runs on this machine; start one (ray start --head), "
                         "give its address, or leave --address out for a local instance") from None
    if found and found != "auto":
        check_ray_address(found)


def start_ray(jobs: int, address: str | None = None) -> bool:
    """Connect to ``address`` or start a local instance with ``jobs`` CPUs; False if Ray was already up."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    check_ray_address(address)
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:  # no cluster there, or not a Ray one
            raise FaceveilError(f"--address {address}: {str(exc).splitlines()[0]}") from None
    else:
        # Workers of a local instance must import this same faceveil, even from a source tree.
        pkg_parent = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join([pkg_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        before = _children()
        ray.init(num_cpus=jobs, runtime_env={"env_vars": {"PYTHONPATH": path}}, **kwargs)
        _start_reaper(before)
    return True


# A local Ray instance must not outlive this process either. Ray fate-shares its head processes (gcs_server,
# raylet) with the driver and its workers with the raylet, but its agents (DashboardAgent, RuntimeEnvAgent)
# outlive a kill -9 of the driver by a minute (they try to report the raylet's death to the dead GCS, with a
# fixed 60 s timeout). So a small reaper process, started after ray.init, holds the list of the processes Ray
# started; when this process ends without saying "done" (killed), the reaper kills what is left of them.
# The list grows while the run lives: every REAPER_POLL_S the reaper adds the descendants of the processes on it
# (the raylet starts workers later: for an actor's runtime environment, or to replace one). A worker still
# starting up when the driver was killed (not yet connected to its raylet, so deaf to its death) outlived the kill
# by more than 15 s under load (tests/test_faults_dataset.py: 2 of 31 runs beside CPU-bound processes failed):
# it was not on the list taken after ray.init. psutil comes with Ray (ray/thirdparty_files); the
# create time guards against a reused pid.
_REAPER_CODE = r"""
import json, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.path.insert(0, sys.argv[1])
import psutil
known = dict(json.loads(sys.argv[2]))
poll = float(sys.argv[3])

def alive(pid, created):
    try:
        p = psutil.Process(pid)
        return p if abs(p.create_time() - created) < 0.01 else None
    except psutil.Error:
        return None

def grow():
    # one pass over the process table (children() per process would read it once each)
    kids, born = {}, {}
    for p in psutil.process_iter(["ppid", "create_time"]):
        kids.setdefault(p.info["ppid"], []).append(p.pid)
        born[p.pid] = p.info["create_time"] or -1.0  # None: not ours to read
    todo = [pid for pid, created in known.items() if abs(born.get(pid, -1.0) - created) < 0.01]
    while todo:
        for pid in kids.get(todo.pop(), ()):
            if pid not in known:
                known[pid] = born[pid]
                todo.append(pid)

said = []  # what the run says before its end closes the pipe: "done", or nothing when it was killed
threading.Thread(target=lambda: said.append(sys.stdin.read()), daemon=True).start()
while not said:
    grow()
    time.sleep(poll)
if said[0].strip() != "done":
    grow()  # the raylet may still be there: what it started last
    time.sleep(2.0)  # Ray's own fate-sharing goes first
    for pid, created in known.items():
        p = alive(pid, created)
        try:
            if p is not None:
                p.kill()
        except psutil.Error:
            pass
"""
REAPER_POLL_S = 0.5  # one pass over the process table: ~2 ms for 65 processes here
_REAPER: dict = {}


def _children() -> set:
    try:
        import psutil  # Ray's copy (ray/thirdparty_files) when it is not installed on its own
    except ImportError:
        return set()
    return {(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)}


def _start_reaper(before: set) -> None:
    """Only the processes that ray.init started: a library caller's own child processes are none of its business."""
    import subprocess

    try:
        import psutil
    except ImportError:
        return
    procs = sorted(_children() - before)
    path = str(Path(psutil.__file__).resolve().parents[1])
    _REAPER["proc"] = subprocess.Popen([sys.executable, "-c", _REAPER_CODE, path, json.dumps(procs),
                                        str(REAPER_POLL_S)],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True)


def _stop_reaper() -> None:
    proc = _REAPER.pop("proc", None)
    if proc is not None:
        try:
            proc.communicate(b"done\n", timeout=10)
        except Exception:  # it only ever kills Ray's own processes, which ray.shutdown has ended already
            proc.kill()


class _RayWorker:
    def __init__(self, cfg: DatasetConfig, driver_pid: int | None = None):
        if driver_pid is not None:
            from ..batch import die_with_parent

            die_with_parent(driver_pid)
        init_worker(cfg)

    def run(self, item: Item) -> dict:
        return process_item(item)


def _windowed(submit: Callable, items: Iterable, window: int, wait_some: Callable, get: Callable) -> Iterator:
    """Keep at most ``window`` items in flight (a million-image job must not queue everything at once)."""
    it = iter(items)
    inflight = set()
    for x in it:
        inflight.add(submit(x))
        if len(inflight) >= window:
            break
    while inflight:
        for f in wait_some(inflight):
            inflight.discard(f)
            yield get(f)
            nxt = next(it, None)
            if nxt is not None:
                inflight.add(submit(nxt))
