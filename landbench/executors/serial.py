"""The serial executor: every job in the current process, in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from landbench.executors import Finished, StepProgress
from landbench.jobs import Job, run_job


class SerialExecutor:
    """Runs jobs one after another here; the progress bar sees the steps of each."""

    name = "serial"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def warnings(self) -> list[str]:
        return []

    def map(self, jobs: Sequence[Job], progress: StepProgress | None = None) -> Iterator[Finished]:
        for job in jobs:
            yield job, run_job(job, progress=progress)
