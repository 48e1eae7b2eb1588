"""Run a suite into a results folder: plan the jobs, execute them anywhere, store what comes back.

The three parts, each in its own module:

* **plan** (:mod:`landbench.planning`): the suite and what the folder holds become jobs
  (:class:`landbench.jobs.Job`), tuning first, then scoring from the tuning records;
* **execute** (:mod:`landbench.executors`): ``serial``, ``processes`` or ``ray`` runs
  :func:`landbench.jobs.run_job` on each job and hands its records back as it finishes;
* **store** (:mod:`landbench.store`): only this process writes; each finished job's records are
  appended in one atomic write, so an interrupted sweep (Ctrl-C, SIGKILL, a dead worker) loses at
  most the jobs in flight, and running it again runs exactly the missing jobs.

A job that raised is stored as failed records (:mod:`landbench.outcomes`); the sweep goes on, and
a later run retries them only with ``retry_failed``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from landbench.executors import Executor, make_executor
from landbench.jobs import Job
from landbench.outcomes import is_failed
from landbench.planning import Shard, Stored, scoring, shard_scenarios, tuning_jobs
from landbench.preflight import check_suite
from landbench.store import ResultStore
from landbench.suite import Scenario, Suite
from landbench.threads import oversubscription, requested_threads


@dataclass
class SuiteRun:
    """What a suite run did: every scored record of its scenarios (old and new, failed ones
    included, in scenario order), how many runs ran and were already stored, the failed runs, and
    the scenarios that could not be scored because all their tuning runs failed."""

    records: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0  # scored runs that ran now
    skipped: int = 0  # scored runs that were stored
    tuned: int = 0  # tuning runs that ran now
    failed: list[dict[str, Any]] = field(default_factory=list)
    untuned: list[tuple[Scenario, str]] = field(default_factory=list)


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    executor: str | Executor = "serial",
    workers: int | None = None,
    address: str | None = None,
    shard: Shard | None = None,
    retry_failed: bool = False,
    check: bool = True,
    threads: int | None = None,
) -> SuiteRun:
    """Run every run of ``suite`` (or of its ``shard``) that ``out`` does not hold yet.

    A suite with a ``[tuning]`` table first runs its tuning jobs (:mod:`landbench.tuning`), then
    scores its scenarios with the chosen learning rates; both phases resume from ``out``. Jobs run
    on ``executor`` (a name of :data:`landbench.executors.EXECUTORS` with its ``workers`` or
    ``address``, or an executor); records do not depend on which. Failed runs stored by an earlier
    sweep run again only with ``retry_failed``. ``on_record`` sees every scored record of the suite
    in scenario order, stored ones included (the CLI's ``--json`` prints them), as soon as the
    scenarios before it are complete. ``progress``: one bar on stderr over every run of every job,
    with the job that finished last and the time left (None: only on a terminal). Everything is
    checked (:func:`landbench.preflight.check_suite`, unless the caller did: ``check=False``; the
    folder can be written) before the first job runs. ``threads``: the intra-op threads of every
    batch (default: ``$LANDBENCH_THREADS``, else chosen per size; :mod:`landbench.threads`).
    """
    threads = requested_threads(threads)
    if check:
        check_suite(suite, device)
    runner = (
        make_executor(executor, device=device, workers=workers, address=address)
        if isinstance(executor, str)
        else executor
    )
    store = ResultStore(out)
    store.check_writable()
    stored = Stored.of(store.records(), retry_failed)
    scenarios = shard_scenarios(suite, shard)
    result = SuiteRun()
    for line in [*runner.warnings(), oversubscription(threads)]:
        if line is not None:
            print(f"landbench: {line}", file=sys.stderr)
    tune = _with_threads(tuning_jobs(suite, scenarios, stored, device), threads)
    scored_runs = sum(len(sc.seeds) for sc in scenarios)
    with _Bar(suite.name, sum(job.runs for job in tune) + scored_runs, progress) as bar, runner:
        for job, records in runner.map(tune, bar.steps):
            store.append(stored.add(records))
            result.tuned += len(records)
            bar.finished(job, records)
        plan = scoring(suite, scenarios, stored, device)
        result.untuned = plan.untuned
        for scenario, why in plan.untuned:
            bar.write(f"landbench: not scored: {scenario.label} on {scenario.problem}: {why}")
        bar.expect(sum(job.runs for job in plan.jobs) - scored_runs)
        emit = _InOrder(plan.order(), stored, on_record)
        for job, records in runner.map(_with_threads(plan.jobs, threads), bar.steps):
            store.append(stored.add(records))
            result.ran += len(records)
            bar.finished(job, records)
            emit.flush()
        emit.flush()
    result.records = emit.records
    result.skipped = len(result.records) - result.ran
    result.failed = [r for r in stored.records.values() if is_failed(r) and r["key"] in emit.keys]
    return result


def _with_threads(jobs: list[Job], threads: int | None) -> list[Job]:
    """The jobs with the user's thread count (None: each batch chooses)."""
    return jobs if threads is None else [replace(job, threads=threads) for job in jobs]


class _InOrder:
    """Hands the scored records to ``on_record`` in scenario order, each once, as soon as every
    scenario before it is complete (the first record of each key: the store's rule)."""

    def __init__(self, order: list[str], stored: Stored, on_record: Callable[[dict[str, Any]], None] | None) -> None:
        self.order = order
        self.keys = set(self.order)
        self.stored = stored
        self.on_record = on_record
        self.records: list[dict[str, Any]] = []

    def flush(self) -> None:
        while len(self.records) < len(self.order):
            record = self.stored.records.get(self.order[len(self.records)])
            if record is None:
                return
            self.records.append(record)
            if self.on_record is not None:
                self.on_record(record)


def _short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (a progress bar's label must leave room for the bar)."""
    return text if len(text) <= width else text[: width - 3] + "..."


class _Bar:
    """One progress bar over every run of every job, whatever the executor: it moves by steps where
    the executor reports them (serial) and by whole jobs otherwise, shows the job that finished
    last, and the time left."""

    def __init__(self, name: str, total: int, progress: bool | None) -> None:
        self.bar = tqdm(
            total=total,
            unit="run",
            desc=name,
            disable=None if progress is None else not progress,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} runs [{elapsed}<{remaining}]{postfix}",
            delay=0.5,
            file=sys.stderr,
        )
        self.done = 0  # runs of finished jobs

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def steps(self, runs: float) -> None:
        """Runs' worth of steps done inside the job in flight."""
        self.bar.update(runs)

    def expect(self, more: int) -> None:
        """Change the total by ``more`` runs (the scoring phase, once planned, skips stored runs)."""
        self.bar.total = max(self.bar.total + more, self.done)
        self.bar.refresh()

    def finished(self, job: Job, records: list[dict[str, Any]]) -> None:
        """A job ended: count its runs exactly, name it, and say so if it failed."""
        self.done += job.runs
        failed = [r for r in records if is_failed(r)]
        if failed:
            self.write(f"landbench: failed: {job.label}: {failed[0]['failed']} ({len(failed)} runs)")
        self.bar.set_postfix_str(("failed: " if failed else "done: ") + _short(job.brief, 60), refresh=False)
        self.bar.update(self.done - self.bar.n)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)
