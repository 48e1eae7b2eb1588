"""Plan a suite into jobs: what is stored is skipped, tuning is a phase of its own, shards split a suite.

A sweep has two phases. The *tuning* phase (suites with a ``[tuning]`` table) is one job per tuning
batch (:func:`landbench.tuning.tuning_units`) that is not stored yet: every rate of its grid on the
tuning seeds. Tuning is a barrier: the *scoring* jobs are planned from the tuning records
(:func:`landbench.tuning.choose`), one per scenario, with the seeds that are not stored yet.

Which runs count as stored (:class:`Stored`): a key with a record, the first of that key
(:func:`landbench.store.first_per_key`); a failed record (:func:`landbench.outcomes.is_failed`)
counts as stored too, so that a sweep does not run a failing job again and again, unless the
sweep retries failed runs (``landbench run --retry-failed``).

A shard (``--shard i/n``) is a deterministic part of a suite for clusters where each node runs
``landbench run`` on its own (a Slurm array): the scenarios are grouped by what tuning shares (an
optimizer's label and the problem family, with its minibatch size on a finite sum: tuning chooses
one rate per such group, :func:`landbench.tuning.tuning_group`), groups go to
shards longest first (the greedy LPT rule, on the cost ``dim x steps x runs``), and each shard
tunes exactly the groups it scores. The shards' folders read together hold the records of the
whole suite (the same keys as one unsharded run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from landbench.errors import LandbenchError
from landbench.jobs import Job, make_job
from landbench.outcomes import is_failed
from landbench.spec import parse_spec
from landbench.store import first_per_key
from landbench.suite import Scenario, Suite
from landbench.tuning import (
    Choice,
    choose,
    group_of_record,
    group_of_scenario,
    label_of,
    scored,
    tunable,
    tuning_units,
    with_lr,
)


@dataclass
class Stored:
    """The records already in a results folder, one per key by the store's duplicate rule
    (:func:`landbench.store.first_per_key`), and whether failed runs count as missing
    (``retry_failed``)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    retry_failed: bool = False

    @classmethod
    def of(cls, records: Iterable[dict[str, Any]], retry_failed: bool = False) -> Stored:
        """From a folder's records, in the order written."""
        return cls({r["key"]: r for r in first_per_key(records) if "key" in r}, retry_failed)

    def done(self, key: str) -> bool:
        """Whether the run of ``key`` needs no job: stored, and not a failure to retry."""
        record = self.records.get(key)
        return record is not None and not (self.retry_failed and is_failed(record))

    def add(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take a finished job's records; returns those to write: the ones that the duplicate rule
        (:func:`landbench.store.first_per_key`) keeps over what is stored (a key's first record, or a
        retry of a failed one), never a second record that would be read past."""
        new = []
        for record in records:
            old = self.records.get(record["key"])
            if old is None or first_per_key([old, record])[0] is record:
                self.records[record["key"]] = record
                new.append(record)
        return new


#: The most shards a suite can be split into (one array task each).
MAX_SHARDS = 1_000_000


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count`` of a suite."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/3"``: the second of three shards."""
        match = re.fullmatch(r"\s*(\d{1,12})\s*/\s*(\d{1,12})\s*", text)
        if not match or not 1 <= int(match[1]) <= int(match[2]) <= MAX_SHARDS:
            raise LandbenchError(
                f"--shard: expected i/n with 1 <= i <= n <= {MAX_SHARDS:,} (such as 1/3), got {text!r}"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_scenarios(suite: Suite, shard: Shard | None) -> list[Scenario]:
    """The scenarios of ``suite`` that ``shard`` runs (all of them without a shard)."""
    scenarios = suite.scenarios()
    if shard is None or shard.count == 1:
        return scenarios
    tuned = suite.tuning is not None and suite.tuning.enabled
    groups: dict[Any, list[Scenario]] = {}
    for sc in scenarios:
        group = (label_of(sc.optimizer) if tunable(sc.optimizer) else sc.optimizer, group_of_scenario(sc))
        groups.setdefault(group if tuned else sc, []).append(sc)
    loads = [0.0] * min(shard.count, len(groups))  # more shards than groups: one group each, the rest empty
    mine: set[Scenario] = set()
    order = sorted(groups.values(), key=lambda g: -sum(_cost(sc) for sc in g))  # stable: suite order on ties
    for group_scenarios in order:
        target = loads.index(min(loads))
        loads[target] += sum(_cost(sc) for sc in group_scenarios)
        if target == shard.index - 1:
            mine.update(group_scenarios)
    return [sc for sc in scenarios if sc in mine]


def _cost(scenario: Scenario) -> float:
    """What a scenario costs, up to a constant: dim x steps x runs."""
    dim = parse_spec(scenario.problem, what="problem").kwargs.get("dim", 1)
    return float(dim) * scenario.steps * len(scenario.seeds)


def tuning_jobs(suite: Suite, scenarios: Sequence[Scenario], stored: Stored, device: str) -> list[Job]:
    """The tuning phase: one job per tuning batch of ``scenarios`` with any run not stored."""
    if suite.tuning is None:
        return []
    jobs = []
    for unit in tuning_units(suite.tuning, scenarios):
        job = make_job("tune", unit, grid(suite, unit), unit.seeds, device)
        if not all(stored.done(key) for key in job.keys):
            jobs.append(job)
    return jobs


def grid(suite: Suite, unit: Scenario) -> list[str]:
    """The optimizer specs of a tuning batch: its optimizer at each rate of its grid."""
    assert suite.tuning is not None
    return [with_lr(unit.optimizer, lr) for lr in suite.tuning.rates_for(unit.optimizer)]


@dataclass
class Scoring:
    """The scoring phase: the scored scenarios (tuned where the suite tunes) with their runs' keys
    (in seed order), the jobs of the runs that are not stored, and the scenarios that cannot be
    scored because their tuning failed."""

    scenarios: list[Scenario]
    keys: dict[Scenario, tuple[str, ...]]
    jobs: list[Job]
    untuned: list[tuple[Scenario, str]]

    def order(self) -> list[str]:
        """Every scored run's key, in scenario then seed order."""
        return [key for sc in self.scenarios for key in self.keys[sc]]


def scoring(suite: Suite, scenarios: Sequence[Scenario], stored: Stored, device: str) -> Scoring:
    """Plan the scoring jobs from what is stored (the tuning phase's records included)."""
    untuned: list[tuple[Scenario, str]] = []
    if suite.tuning is not None:
        chosen = tuning_choices(suite, scenarios, stored, device)
        ready = []
        for sc in scenarios:
            group = (label_of(sc.optimizer), group_of_scenario(sc))
            if suite.tuning.enabled and tunable(sc.optimizer) and group not in chosen:
                untuned.append((sc, f"every tuning run of {group[0]} on {group[1]} failed"))
            else:
                ready.append(sc)
        scenarios = scored(ready, suite.tuning, chosen)
    jobs = []
    keys = {}
    for sc in scenarios:
        keys[sc] = make_job("score", sc, [sc.optimizer], sc.seeds, device).keys
        missing = [(seed, key) for seed, key in zip(sc.seeds, keys[sc]) if not stored.done(key)]
        if missing:
            seeds, job_keys = zip(*missing)
            jobs.append(Job("score", sc, (sc.optimizer,), seeds, device, job_keys))
    return Scoring(list(scenarios), keys, jobs, untuned)


def tuning_choices(
    suite: Suite, scenarios: Sequence[Scenario], stored: Stored, device: str
) -> Mapping[tuple[str, str], Choice]:
    """The rate chosen per (label, family) from the stored tuning runs; a rate with a failed tuning
    run in a family is no candidate there (it raised: no outcome to compare)."""
    if suite.tuning is None:
        return {}
    runs = []
    for unit in tuning_units(suite.tuning, scenarios):
        for key in make_job("tune", unit, grid(suite, unit), unit.seeds, device).keys:
            record = stored.records.get(key)
            if record is None:
                raise LandbenchError(f"tuning run {key} of {unit.label} on {unit.problem} is missing: tune first")
            runs.append(record)
    failing = {(r["label"], group_of_record(r), r["optimizer"]) for r in runs if is_failed(r)}
    return choose(r for r in runs if (r["label"], group_of_record(r), r["optimizer"]) not in failing)
