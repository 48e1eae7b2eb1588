"""How far a sweep has got: runs done, failed and missing, per phase and per optimizer.

With a suite, the counts are those of its plan (:mod:`landbench.planning`) against the records:
*done* (a record that did not fail), *failed* (:func:`landbench.outcomes.is_failed`) and
*missing* (no record; scored runs of an optimizer whose tuning is not finished are missing until it
is, since their learning rate is not chosen yet). Without a suite, the records are counted as they
are. Either way the failed runs are listed, grouped by job, with the exception's last line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from landbench.jobs import make_job
from landbench.outcomes import batch_size_of, is_failed, noise_model_of
from landbench.planning import Shard, Stored, grid, scoring, shard_scenarios
from landbench.suite import Suite
from landbench.tuning import group_of_scenario, label_of, tunable, tuning_units

PHASES = ("tune", "score")


@dataclass
class Count:
    """Runs of one phase and optimizer."""

    done: int = 0
    failed: int = 0
    missing: int = 0

    @property
    def total(self) -> int:
        return self.done + self.failed + self.missing


@dataclass
class Status:
    """Counts per (phase, optimizer label), and the failed runs grouped by job."""

    counts: dict[tuple[str, str], Count] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # labels whose scoring waits for tuning

    def count(self, phase: str, label: str) -> Count:
        return self.counts.setdefault((phase, label), Count())

    @property
    def complete(self) -> bool:
        """Whether nothing is missing (failed runs aside)."""
        return all(c.missing == 0 for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "phases": {
                phase: {
                    label: {"done": c.done, "failed": c.failed, "missing": c.missing, "total": c.total}
                    for (p, label), c in self.counts.items()
                    if p == phase
                }
                for phase in PHASES
            },
            "failures": self.failures,
            "waiting_for_tuning": self.waiting,
            "complete": self.complete,
        }

    def to_text(self) -> str:
        rows = [("phase", "optimizer", "done", "failed", "missing", "total")]
        for phase in PHASES:
            for (p, label), c in self.counts.items():
                if p == phase:
                    rows.append((phase, label, str(c.done), str(c.failed), str(c.missing), str(c.total)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        totals = Count(*(sum(getattr(c, n) for c in self.counts.values()) for n in ("done", "failed", "missing")))
        lines.append(f"\n{totals.done} runs done, {totals.failed} failed, {totals.missing} missing of {totals.total}")
        if self.waiting:
            lines.append("scored runs wait for tuning to finish: " + ", ".join(self.waiting))
        if self.failures:
            lines.append(f"\nfailed jobs ({len(self.failures)}; landbench run --retry-failed runs them again):")
            for f in self.failures:
                where = f"{f['optimizer']} on {f['problem']}, instance {f['instance']}, seeds {_seeds(f['seeds'])}"
                lines.append(f"  {f['phase']}: {where}: {f['failed']}")
        return "\n".join(lines)


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def failures(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed runs grouped by job (phase, problem, instance, optimizer, noise, error)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        if not is_failed(r):
            continue
        phase = r.get("phase", "score")
        batch = batch_size_of(r)
        key = (phase, r["problem"], r.get("instance"), r["optimizer"], r.get("noise"), noise_model_of(r), batch)
        key += (r["failed"],)
        entry = groups.setdefault(
            key,
            {
                "phase": phase,
                "problem": r["problem"],
                "instance": r.get("instance"),
                "optimizer": r["optimizer"],
                "noise": r.get("noise"),
                "noise_model": noise_model_of(r),
                "batch_size": batch,
                "failed": r["failed"],
                "seeds": [],
            },
        )
        entry["seeds"].append(r["seed"])
    return list(groups.values())


def folder_status(records: Sequence[dict[str, Any]]) -> Status:
    """What a folder holds, without a suite to compare with (nothing can be called missing)."""
    status = Status()
    for r in records:
        count = status.count(r.get("phase", "score"), r.get("label") or r["optimizer"])
        if is_failed(r):
            count.failed += 1
        else:
            count.done += 1
    status.failures = failures(records)
    return status


def suite_status(
    suite: Suite, records: Sequence[dict[str, Any]], device: str = "cpu", shard: Shard | None = None
) -> Status:
    """What is done, failed and missing of ``suite`` (or its ``shard``) on ``device`` in ``records``
    (deduplicated, first of each key). The scored runs of an optimizer and family whose tuning is
    not finished are missing (waiting for it); those whose every tuning rate failed count as failed."""
    stored = Stored.of(records)
    scenarios = shard_scenarios(suite, shard)
    status = Status()
    seen: list[dict[str, Any]] = []
    unfinished: set[tuple[str, str]] = set()
    if suite.tuning is not None:
        for unit in tuning_units(suite.tuning, scenarios):
            job = make_job("tune", unit, grid(suite, unit), unit.seeds, device)
            count = status.count("tune", str(unit.label))
            for key in job.keys:
                record = stored.records.get(key)
                _tally(count, record, seen)
                if record is None:
                    unfinished.add((str(unit.label), group_of_scenario(unit)))
    tuned = suite.tuning is not None and suite.tuning.enabled
    ready = []
    for sc in scenarios:
        group = (label_of(sc.optimizer), group_of_scenario(sc)) if tuned and tunable(sc.optimizer) else None
        if group is not None and group in unfinished:
            status.count("score", group[0]).missing += len(sc.seeds)
            if group[0] not in status.waiting:
                status.waiting.append(group[0])
        else:
            ready.append(sc)
    plan = scoring(suite, ready, stored, device)
    for sc in plan.scenarios:
        count = status.count("score", sc.label or sc.optimizer)
        for key in plan.keys[sc]:
            _tally(count, stored.records.get(key), seen)
    status.failures = failures(seen)
    for sc, why in plan.untuned:
        label = label_of(sc.optimizer)
        status.count("score", label).failed += len(sc.seeds)
        status.failures.append(
            {
                "phase": "score",
                "problem": sc.problem,
                "instance": sc.instance,
                "optimizer": label,
                "noise": sc.noise,
                "noise_model": sc.noise_model,
                "batch_size": sc.settings.batch_size,
                "failed": f"not scored: {why}",
                "seeds": list(sc.seeds),
            }
        )
    return status


def _tally(count: Count, record: dict[str, Any] | None, seen: list[dict[str, Any]]) -> None:
    if record is None:
        count.missing += 1
        return
    seen.append(record)
    if is_failed(record):
        count.failed += 1
    else:
        count.done += 1
