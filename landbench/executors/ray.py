"""The Ray executor: one Ray task per job, on a cluster or on a Ray started here.

``address`` is a running cluster's (``ray://host:10001`` or ``host:6379``, or ``"auto"``); without
one, a local Ray is started for the sweep and stopped after it. Each task asks for one CPU, and for
one GPU when the jobs run on CUDA (Ray then sets the task's ``CUDA_VISIBLE_DEVICES``, and the job
runs on ``cuda``); it runs torch with one intra-op thread, so that a node runs as many jobs as it
has cores. Results stream back as tasks finish. A task whose worker dies (a lost node, SIGKILL, out
of memory) is retried by Ray up to ``max_retries`` times; after that, the job comes back as failed
records that say so. This is the only module of landbench that imports Ray
(``pip install "landbench[ray]"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from landbench.errors import LandbenchError
from landbench.executors import Finished, StepProgress
from landbench.jobs import Job, failed_records, last_line, run_job

MAX_RETRIES = 3
#: The object store of a Ray started here: records are small, and a default store (30 % of memory)
#: fails where /dev/shm is small.
LOCAL_OBJECT_STORE = 256 * 2**20


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LandbenchError(
            'the ray executor needs Ray: pip install "landbench[ray]" (or choose --executor serial or processes)'
        ) from None
    return ray


class RayExecutor:
    """Jobs as Ray tasks (``num_gpus=1`` each on CUDA), retried up to ``max_retries`` times when a worker dies."""

    name = "ray"

    def __init__(self, device: str = "cpu", address: str | None = None, max_retries: int = MAX_RETRIES) -> None:
        self.ray = _import_ray()
        self.cuda = torch.device(device).type == "cuda"
        self.address = address
        self.max_retries = max_retries
        self._started = False
        self._task: Any = None

    def __enter__(self) -> RayExecutor:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": True}
            if self.address is None:
                options["object_store_memory"] = LOCAL_OBJECT_STORE
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise LandbenchError(f"--address {self.address}: cannot connect to Ray: {last_line(exc)}") from None
            self._started = True
        self._task = ray.remote(run_job).options(
            num_cpus=1, num_gpus=1 if self.cuda else 0, max_retries=self.max_retries, retry_exceptions=False
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def map(self, jobs: Sequence[Job], progress: StepProgress | None = None) -> Iterator[Finished]:
        ray = self.ray
        pending: dict[Any, Job] = {}
        try:
            for job in jobs:
                sent = replace(job, device="cuda") if self.cuda else job
                pending[self._task.remote(sent, 1)] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        records = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died more than max_retries times
                        why = f"WorkerDied: its Ray task failed after {self.max_retries} retries: {last_line(exc)}"
                        records = failed_records(job, why.splitlines()[0])
                    yield job, records
        finally:
            for ref in pending:  # an interrupted sweep: stop what is still queued or running
                ray.cancel(ref, force=True)
