"""The Ray executor: one Ray task per job, on a cluster or on a Ray started here.

``address`` is a running cluster's (``host:6379``, ``"auto"`` for the cluster this machine is part
of, or ``ray://host:10001`` with ``pip install "ray[client]"``); without one, the cluster of
``$RAY_ADDRESS`` (set by ``ray job submit``), else a local Ray started for the sweep and stopped
after it. A ``host:port`` that does not answer within :data:`CONNECT_TIMEOUT` seconds is refused.
Each task asks for one CPU, and for one GPU when the jobs run on CUDA (Ray then sets the task's
``CUDA_VISIBLE_DEVICES``, and the job runs on ``cuda``); it runs torch with one intra-op thread, so
that a node runs as many jobs as it has cores. Results stream back as tasks finish. A task whose
worker dies (a lost node, SIGKILL, out of memory) is retried by Ray up to ``max_retries`` times;
after that, the job comes back as failed records that say so. This is the only module of landbench
that imports Ray (``pip install "landbench[ray]"``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from landbench.errors import LandbenchError
from landbench.executors import Finished, StepProgress
from landbench.jobs import Job, failed_records, last_line, one_line, run_job

MAX_RETRIES = 3
#: Seconds to wait for a cluster's address to answer before refusing it.
CONNECT_TIMEOUT = 10.0
#: Ray's errors that mean a worker, node or owner died, not that the job raised.
DEATHS = ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "ObjectLostError", "LocalRayletDiedError")
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


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` nothing answers on, at once (Ray itself would wait for minutes)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise LandbenchError(
            f"--address: expected host:port (such as head-node:6379), auto or ray://host:port, got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise LandbenchError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}): is the Ray head running?"
        ) from None


class RayExecutor:
    """Jobs as Ray tasks (``num_gpus=1`` each on CUDA), retried up to ``max_retries`` times when a worker dies."""

    name = "ray"

    def __init__(self, device: str = "cpu", address: str | None = None, max_retries: int = MAX_RETRIES) -> None:
        place = torch.device(device)
        if place.type == "cuda" and place.index is not None:
            raise LandbenchError(
                f"--device {device}: with --executor ray give --device cuda (Ray gives each task its GPU)"
            )
        if address is not None and not address.strip():
            raise LandbenchError("--address: expected a Ray cluster's address such as head-node:6379 or auto, got ''")
        self.ray = _import_ray()
        self.cuda = place.type == "cuda"
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_retries = max_retries
        self._started = False
        self._task: Any = None

    def __enter__(self) -> RayExecutor:
        ray = self.ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"logging_level": "warning", "log_to_driver": True}
            if self.address is None:  # a Ray of its own, even where a cluster runs on this machine
                options |= {"address": "local", "include_dashboard": False, "object_store_memory": LOCAL_OBJECT_STORE}
                where = "start a local Ray"
            else:
                _check_reachable(self.address)
                options["address"] = self.address
                where = f"connect to the Ray cluster at {self.address}"
            try:
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
                raise LandbenchError(f"cannot {where}: {last_line(exc)}") from None
            self._started = True
        if self.cuda and not ray.cluster_resources().get("GPU"):
            self.__exit__()
            raise LandbenchError("--device cuda: the Ray cluster has no GPU (its tasks would wait forever)")
        self._task = ray.remote(run_job).options(
            num_cpus=1, num_gpus=1 if self.cuda else 0, max_retries=self.max_retries, retry_exceptions=False
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def warnings(self) -> list[str]:
        return []

    def _why(self, exc: BaseException) -> str:
        """A failed job's error: a worker or node that died more than ``max_retries`` times, or what
        the task raised (run_job itself catches what an optimizer raises, so that is rare)."""
        if type(exc).__name__ in DEATHS:
            return one_line(f"WorkerDied: its Ray worker died {self.max_retries + 1} times: {last_line(exc)}")
        return last_line(getattr(exc, "cause", None) or exc)

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
                    except ray.exceptions.RayError as exc:
                        records = failed_records(job, self._why(exc))
                    yield job, records
        finally:
            for ref in pending:  # an interrupted sweep: stop what is still queued or running
                ray.cancel(ref, force=True)
