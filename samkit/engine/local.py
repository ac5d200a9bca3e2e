"""The local engine: a pool of worker processes on this machine, one model per worker.

Workers are spawned (not forked: torch's thread pools do not survive a fork) and each uses
``cores // workers`` torch threads. At most two images per worker are in flight, so a kill
loses little. If a worker dies (the OOM killer, a crash in native code) the pool is rebuilt
and the images it held are retried once; an image in flight during two deaths is recorded
as failed. Workers ask the kernel to kill them when the parent dies (Linux), so no orphan
keeps writing after the run is gone. ``workers=0`` annotates in this process (debugging).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from samkit.engine.modes import ModeSpec
from samkit.engine.worker import Outcome, Task, Worker

_worker: Worker | None = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: orphans finish their one image and exit on the closed queue


def _init(spec: ModeSpec, threads: int, gpus: Any) -> None:
    """Worker start: its threads, and its own GPU when the run is on several (``gpus``: a
    queue of device indices, one taken per worker)."""
    global _worker
    _die_with_parent()
    import torch

    torch.set_num_threads(threads)
    if gpus is not None:
        spec = dataclasses.replace(spec, device=f"cuda:{gpus.get()}")
    _worker = Worker(spec)


def worker_devices(spec: ModeSpec, workers: int) -> list[str]:
    """The device of each of ``workers`` local workers: with CUDA, one GPU each (round robin
    when there are more workers than GPUs), else the spec's device for all."""
    from samkit.runtime import resolve_device

    dev = resolve_device(spec.device)
    if dev.type != "cuda" or dev.index is not None:
        return [str(dev)] * workers
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)]


def _run(task: Task) -> Outcome:
    assert _worker is not None
    return _worker.run(task)


def run_local(
    tasks: list[Task], spec: ModeSpec, workers: int, threads: int | None = None
) -> Iterator[Outcome]:
    """Annotate the tasks with ``workers`` processes (``threads`` torch threads each, default
    cores / workers); yields outcomes as they finish."""
    if workers <= 0:
        worker = Worker(spec)
        for t in tasks:
            yield worker.run(t)
        return
    workers = min(workers, max(1, len(tasks)))
    threads = threads or max(1, available_cores() // workers)
    devices = worker_devices(spec, workers)
    ctx = mp.get_context("spawn")
    pending: deque[Task] = deque(tasks)
    deaths: dict[str, int] = {}
    while pending:
        gpus = None
        if devices[0].startswith("cuda:") and len(set(devices)) > 1:
            gpus = ctx.Queue()
            for d in devices:
                gpus.put(int(d.split(":")[1]))
        pool = ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init,
            initargs=(spec, threads, gpus),
        )
        running: dict[Future, Task] = {}
        try:
            while pending or running:
                while pending and len(running) < 2 * workers:
                    t = pending.popleft()
                    running[pool.submit(_run, t)] = t
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    out = f.result()  # a dead worker raises here, leaving f in running
                    del running[f]
                    yield out
        except BrokenProcessPool:
            for f, t in [*running.items()]:
                if f.done() and not f.cancelled() and f.exception() is None:
                    yield f.result()  # finished before the pool broke
                    continue
                n = deaths[t.item.file_name] = deaths.get(t.item.file_name, 0) + 1
                if n >= 2:
                    yield Outcome(
                        t.item,
                        False,
                        error="worker process died twice on this image "
                        "(out of memory or a crash in native code)",
                    )
                else:
                    pending.appendleft(t)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
