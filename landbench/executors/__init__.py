"""Executors: where a sweep's jobs run. Each maps jobs to their records as they finish.

==============  ==================================================================================
``serial``      the current process, one job after another (the default)
``processes``   a local pool of worker processes: one per visible GPU (pinned with
                ``CUDA_VISIBLE_DEVICES``), or ``workers`` on the CPU, each with its share of the
                driver's intra-op threads (torch's threads ``// workers``); a worker that dies is
                replaced and its jobs retried
``ray``         one Ray task per job on a Ray cluster (``address``; a local one when none is given),
                ``num_gpus=1`` per task on CUDA, worker deaths retried by Ray (``max_retries``);
                needs ``pip install "landbench[ray]"``
==============  ==================================================================================

Every executor calls :func:`landbench.jobs.run_job`, so the records do not depend on the executor.
Only the driver writes results (:mod:`landbench.runner`). A job that raises comes back as failed
records; a job whose worker died more than ``max_retries`` times comes back failed too, saying so.
One executor per file; only :mod:`landbench.executors.ray` imports Ray.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from landbench.errors import LandbenchError
from landbench.jobs import Job

#: Executor names and the class that implements each (module path, class name).
EXECUTORS: dict[str, tuple[str, str]] = {
    "serial": ("landbench.executors.serial", "SerialExecutor"),
    "processes": ("landbench.executors.processes", "ProcessExecutor"),
    "ray": ("landbench.executors.ray", "RayExecutor"),
}

Finished = tuple[Job, list[dict[str, Any]]]
StepProgress = Callable[[float], None]


class Executor(Protocol):
    """Runs jobs and yields each with its records as it finishes (in any order). Used as a context
    manager: entering starts workers (a pool, a Ray connection), leaving stops them. ``progress``
    receives runs' worth of steps done inside a job, where the executor can see them (serial)."""

    name: str

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def warnings(self) -> list[str]:
        """Lines the user should read before the sweep (more workers than cores, say)."""
        ...

    def map(self, jobs: Sequence[Job], progress: StepProgress | None = None) -> Iterator[Finished]: ...


def make_executor(
    name: str, *, device: str = "cpu", workers: int | None = None, address: str | None = None
) -> Executor:
    """The executor called ``name`` (:data:`EXECUTORS`) for jobs on ``device``."""
    if name not in EXECUTORS:
        raise LandbenchError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    if workers is not None and name != "processes":
        raise LandbenchError(f"--workers is an option of the processes executor, not of {name}")
    if address is not None and name != "ray":
        raise LandbenchError(f"--address is an option of the ray executor, not of {name}")
    module, cls = EXECUTORS[name]
    options: dict[str, Any] = {"device": device}
    if name == "processes":
        options["workers"] = workers
    if name == "ray":
        options["address"] = address
    return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["EXECUTORS", "Executor", "Finished", "make_executor"]
