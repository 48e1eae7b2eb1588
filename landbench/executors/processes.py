"""The processes executor: a local pool of worker processes, replaced when one dies.

One worker per visible GPU, each pinned to its GPU with ``CUDA_VISIBLE_DEVICES`` (jobs then run on
``cuda``, the worker's only device), or ``workers`` workers on the CPU. Each worker runs torch with
its share of the driver's intra-op threads (:func:`landbench.threads.worker_threads`: torch's
default, the physical cores, divided by ``workers``), so that the pool never asks for more threads
than one process would (oversubscribed thread pools cost 5 to 70 times on a busy machine). Workers
are started with ``spawn`` (a forked copy of a process that already ran torch may hang in its thread pool).

A worker that dies (SIGKILL, out of memory) breaks the pool: the pool is replaced and the jobs that
were running are run again, each up to ``max_retries`` times; a job that keeps killing its worker
comes back as failed records that say so. The driver keeps every finished job's records.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

import torch

from landbench.errors import LandbenchError
from landbench.executors import Finished, StepProgress
from landbench.jobs import Job, failed_records, last_line, run_job
from landbench.threads import available_cores, worker_threads

MAX_RETRIES = 2
#: The most worker processes a pool may have (each imports torch).
MAX_WORKERS = 1024
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def visible_gpus() -> list[str]:
    """The GPU ids this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (or 0..n-1)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _init_worker(gpus: Any, threads: int) -> None:
    """Pin a new worker to the next GPU of the queue (if any) and set its thread count. Ctrl-C is
    the driver's to handle (it stops the workers): a worker ignores it, so that an interrupt is never
    mistaken for a job that failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the driver dies (a SIGKILLed driver would otherwise
    leave its workers, and on a GPU their CUDA contexts, behind); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return
    if os.getppid() == 1:  # the driver died before the request took effect
        os._exit(1)


def _ready() -> int:
    """What a worker answers when the pool starts: that it could import landbench and run."""
    return os.getpid()


class ProcessExecutor:
    """A pool of ``workers`` processes (default: one per visible GPU for CUDA, one per core on the CPU)."""

    name = "processes"

    def __init__(self, device: str = "cpu", workers: int | None = None, max_retries: int = MAX_RETRIES) -> None:
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise LandbenchError(
                f"--workers: expected a number of worker processes from 1 to {MAX_WORKERS}, got {workers}"
            )
        place = torch.device(device)
        self.gpus: list[str] | None = None
        if place.type == "cuda":
            visible = visible_gpus()
            if not visible:
                raise LandbenchError("the processes executor found no visible GPU for --device cuda")
            if place.index is not None:
                if place.index >= len(visible):
                    raise LandbenchError(
                        f"--device {device}: {len(visible)} GPUs are visible (cuda:0 to cuda:{len(visible) - 1})"
                    )
                visible = [visible[place.index]]
            self.workers = workers or len(visible)
            self.gpus = [visible[i % len(visible)] for i in range(self.workers)]
        else:
            self.workers = workers or available_cores()
        self.threads = worker_threads(self.workers)
        self.max_retries = max_retries
        self._pool: ProcessPoolExecutor | None = None

    def warnings(self) -> list[str]:
        """What the user should know about this pool before it runs."""
        cores = available_cores()
        if self.gpus is None and self.workers > cores:
            return [f"{self.workers} worker processes on {cores} cores: they slow each other down (one thread each)"]
        return []

    def __enter__(self) -> ProcessExecutor:
        self._start()
        assert self._pool is not None
        try:  # a pool whose workers cannot start fails here, once, not as every job failing
            self._pool.submit(_ready).result()
        except BrokenProcessPool:
            self._stop(kill=True)
            raise LandbenchError(
                "the processes executor could not start its worker processes (a script that starts a sweep "
                "needs if __name__ == '__main__':, and cannot be read from stdin); try --executor serial"
            ) from None
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop(kill=exc_type is not None)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        queue = None
        if self.gpus is not None:
            queue = context.Queue()
            for gpu in self.gpus:
                queue.put(gpu)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker, initargs=(queue, self.threads)
        )

    def _stop(self, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:  # an interrupted sweep: do not wait for the jobs in flight
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=not kill, cancel_futures=True)

    def _pinned(self, job: Job) -> Job:
        """The job as a pinned worker runs it: its only GPU is ``cuda``."""
        return replace(job, device="cuda") if self.gpus is not None else job

    def map(self, jobs: Sequence[Job], progress: StepProgress | None = None) -> Iterator[Finished]:
        queue: deque[tuple[Job, int]] = deque((job, 0) for job in jobs)
        running: dict[Future[list[dict[str, Any]]], tuple[Job, int]] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                job, tries = queue.popleft()
                assert self._pool is not None
                try:
                    running[self._pool.submit(run_job, self._pinned(job), self.threads)] = (job, tries)
                except BrokenProcessPool:
                    queue.appendleft((job, tries))
                    break
            if not running:  # the pool broke before anything ran
                self._stop(kill=True)
                self._start()
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = any(isinstance(f.exception(), BrokenProcessPool) for f in done)
            if broken:  # every job in flight went down with the pool: collect them all
                done, _ = wait(running)
            for future in done:
                job, tries = running.pop(future)
                error = future.exception()
                if error is None:
                    yield job, future.result()
                elif isinstance(error, BrokenProcessPool):
                    if tries < self.max_retries:
                        queue.append((job, tries + 1))
                    else:
                        why = (
                            f"WorkerDied: its worker process died {tries + 1} times (killed, out of memory, or exited)"
                        )
                        yield job, failed_records(job, why)
                elif isinstance(error, KeyboardInterrupt):  # not the job's fault: the sweep stops
                    raise error
                else:  # the job could not be sent or returned (pickling): a failure of the job
                    yield job, failed_records(job, last_line(error))
            if broken:
                self._stop(kill=True)
                self._start()
