"""A job, the unit of work any executor runs: one batch of runs, planned once, as a picklable value.

:func:`run_job` turns a :class:`Job` into its records. It is a top-level function of the job alone
(plus how many threads to use), so that the current process, a worker of a process pool or a Ray
task can call it and give the same numbers. It never raises for what the optimizer does: a job
whose optimizer (or anything it calls) raises, ``SystemExit`` included, comes back as *failed*
records (:data:`landbench.outcomes.IDENTITY_FIELDS` plus ``failed``, the exception's last line), so
that a sweep records the failure and goes on. Only ``KeyboardInterrupt`` passes through.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from landbench._version import __version__
from landbench.engine import run_batch
from landbench.landscapes import make
from landbench.optimizers import resolve
from landbench.optimizers.batching import grid_mode
from landbench.outcomes import RECORD_SCHEMA
from landbench.records import build_records
from landbench.suite import Scenario

ROLES = ("tune", "score")


@dataclass(frozen=True)
class Job:
    """One batch of runs: a scenario's problem, instance, budget and settings, the optimizer specs
    it runs (one, or a tuning grid's rates) and the seeds, on a device, in a role (``"tune"`` or
    ``"score"``). ``keys`` are the runs' keys (:meth:`landbench.suite.Scenario.key`), spec-major
    then seed, computed once when the job is planned (:func:`make_job`)."""

    role: str
    scenario: Scenario
    specs: tuple[str, ...]
    seeds: tuple[int, ...]
    device: str
    keys: tuple[str, ...]
    #: the user's intra-op thread count for every batch (None: chosen per size, landbench.threads)
    threads: int | None = None

    @property
    def runs(self) -> int:
        """How many runs the job makes."""
        return len(self.specs) * len(self.seeds)

    @property
    def label(self) -> str:
        """The job in a few words, for progress bars and messages."""
        sc = self.scenario
        what = sc.label if self.role == "tune" else (sc.label or sc.optimizer)
        verb = f"tuning {what} ({len(self.specs)} rates)" if self.role == "tune" else str(what)
        seeds = f"seed {self.seeds[0]}" if len(self.seeds) == 1 else f"{len(self.seeds)} seeds"
        return f"{verb} on {sc.problem}, instance {sc.instance}, noise {sc.noise_label}, {seeds}"

    @property
    def brief(self) -> str:
        """The job in fewer words, for a progress bar: ``adam(lr=0.05) on levy(dim=4)``."""
        sc = self.scenario
        what = f"tuning {sc.label}" if self.role == "tune" else (sc.label or sc.optimizer)
        return f"{what} on {sc.problem}"

    def runs_of(self) -> list[tuple[str, int, str]]:
        """Each run of the job as (spec, seed, key), in the order of :attr:`keys`."""
        pairs = [(spec, seed) for spec in self.specs for seed in self.seeds]
        return [(spec, seed, key) for (spec, seed), key in zip(pairs, self.keys)]


def make_job(role: str, scenario: Scenario, specs: Sequence[str], seeds: Sequence[int], device: str) -> Job:
    """A job with its keys computed here, once (``device`` is a device string such as ``"cuda:1"``;
    keys hold its type)."""
    if role not in ROLES:
        raise ValueError(f"a job's role is one of {', '.join(ROLES)}, got {role!r}")
    device_type = torch.device(device).type
    keys = tuple(scenario.key(seed, device_type, spec) for spec in specs for seed in seeds)
    return Job(role, scenario, tuple(specs), tuple(int(s) for s in seeds), device, keys)


Progress = Callable[[float], None]


def run_job(job: Job, threads: int | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """The records of ``job``, in the order of its keys: run records, or failed records where it raised.

    A tuning grid runs in one batch where it can; if that raises, its rates run one batch each, so
    that a rate that raises fails alone. ``threads`` sets torch's intra-op threads for the job (None:
    leave them): the budget within which each batch chooses its own (:mod:`landbench.threads`),
    unless the job says how many (``job.threads``). ``progress`` (same process only) is called with
    runs' worth of steps done.
    """
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    sc = job.scenario
    try:
        landscape = make(sc.problem, seed=sc.instance, device=job.device, dtype=sc.settings.dtype)
        records = _run_grid(job, landscape, progress) if len(job.specs) > 1 else None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # an optimizer that raises, or exits, fails its job only
        return failed_records(job, last_line(exc))
    if records is None:
        records = []
        for spec in job.specs:
            try:
                records += _run_one(job, landscape, spec, progress)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                part = replace(job, specs=(spec,), keys=tuple(k for s, _, k in job.runs_of() if s == spec))
                records += failed_records(part, last_line(exc))
    for record, (_, _, key) in zip(records, job.runs_of()):
        _set_role(record, job, key)
    return records


#: The longest error a failed record keeps.
MAX_ERROR = 300


def last_line(exc: BaseException) -> str:
    """The exception as Python prints its last line, on one line (its first, without terminal
    colours), at most :data:`MAX_ERROR` characters: ``RuntimeError: boom at step 30``."""
    text = traceback.format_exception_only(type(exc), exc)[-1]
    return one_line(text)


def one_line(text: str) -> str:
    """The first non-empty line of ``text`` without ANSI colour codes, cut to :data:`MAX_ERROR` characters."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 3] + "..."


def failed_records(job: Job, why: str) -> list[dict[str, Any]]:
    """The records of a failed job: each run's identity and ``failed`` (see :mod:`landbench.outcomes`)."""
    sc = job.scenario
    device_type = torch.device(job.device).type
    out = []
    for spec, seed, key in job.runs_of():
        record: dict[str, Any] = {
            "problem": sc.problem,
            "optimizer": spec,
            "instance": sc.instance,
            "seed": seed,
            "steps": sc.steps,
            "noise": float(sc.noise),
            **({} if sc.noise_model == "gaussian" else {"noise_model": sc.noise_model}),
            "dtype": sc.settings.dtype,
            "device": device_type,
            "failed": why,
            "settings": {**sc.settings.as_dict(), "targets": list(sc.settings.targets)},  # its law and batch size
            "landbench_version": __version__,
            "schema": RECORD_SCHEMA,
            "torch_version": torch.__version__,
        }
        _set_role(record, job, key)
        out.append(record)
    return out


def _set_role(record: dict[str, Any], job: Job, key: str) -> None:
    """A record's key (the job's, planned once) and, in a tuned suite, its phase, label and tuning."""
    sc = job.scenario
    if sc.phase is not None:
        record["phase"] = sc.phase
        record["label"] = sc.label
        if sc.tuning is not None:
            record["tuning"] = json.loads(sc.tuning)
    record["key"] = key


def _run_one(job: Job, landscape: Any, name: str, progress: Progress | None) -> list[dict[str, Any]]:
    """The records of one optimizer spec's batch of the job's seeds."""
    sc = job.scenario
    spec = resolve(name)
    seeds = list(job.seeds)
    tick = None if progress is None else (lambda n: progress(n * len(seeds) / sc.steps))
    outcome = run_batch(
        landscape, spec, seeds, steps=sc.steps, noise=sc.noise, settings=sc.settings, progress=tick, threads=job.threads
    )
    return build_records(landscape, spec, outcome, steps=sc.steps, noise=sc.noise, settings=sc.settings)


def _run_grid(job: Job, landscape: Any, progress: Progress | None) -> list[dict[str, Any]] | None:
    """Every rate of a tuning grid in one batch (a param group per rate) where the optimizer allows it
    (:func:`landbench.optimizers.batching.grid_mode`) and the spot check agrees; None to run one
    batch per rate instead (also when the shared batch raised: a rate that raises must not fail the
    others)."""
    sc = job.scenario
    resolved = [resolve(spec) for spec in job.specs]
    lrs = [float(spec.kwargs["lr"]) for spec in resolved]
    mode = grid_mode(resolved[0], landscape.device, landscape.dtype, lrs)
    if mode is None:
        return None
    common = {"steps": sc.steps, "noise": sc.noise, "settings": sc.settings}
    seeds = list(job.seeds)
    done = 0.0

    def tick(n: float) -> None:
        nonlocal done
        done += n * len(seeds) * len(lrs) / sc.steps
        if progress is not None:
            progress(n * len(seeds) * len(lrs) / sc.steps)

    try:
        outcome = run_batch(
            landscape, resolved[0], seeds, lrs=lrs, mode=mode, progress=tick, threads=job.threads, **common
        )
    except KeyboardInterrupt:
        raise
    except BaseException:  # CoupledBatch, or a rate that raised: one batch per rate
        if progress is not None:
            progress(-done)  # the rates run again one by one
        return None
    return build_records(landscape, [spec for spec in resolved for _ in seeds], outcome, **common)
