"""What each ranked optimizer was run with, from its scored records: the learning rate tuning chose
per family, how its batches were stepped, and the wall time its runs took.

* ``tuned``: the ``lr`` of the records' ``tuning`` field per family, where it says tuning chose it
  (empty where the optimizer ran at the rate its spec gives);
* ``modes``: the records' ``batch_mode`` (batched, per_tensor or separate) and how many runs each;
* ``loop_s``: the wall time of the optimisation loops attributed to the optimizer's runs, the sum
  over its runs of ``wall_s / batch_runs`` (the batch's loop time shared equally among the runs
  that shared the batch); ``metrics_s`` likewise for the curvature metrics after the loop. Both are
  None when a record lacks the fields. Times from different machines or devices do not compare:
  the leaderboard warns when ``device`` is mixed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from landbench.outcomes import runs_in_batch

Record = dict[str, Any]


@dataclass(frozen=True)
class Contestant:
    """One optimizer's runs on the ranked scenarios: how many, tuned rates, batch modes, wall times."""

    optimizer: str
    runs: int
    tuned: dict[str, list[float]] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    loop_s: float | None = None
    metrics_s: float | None = None


def facts(grouped: Mapping[Any, Mapping[str, Sequence[Record]]], scenarios: Iterable[Any]) -> dict[str, Contestant]:
    """Per optimizer name (as ranked), the facts of its runs on ``scenarios`` (keys of ``grouped``:
    scored records by scenario, then optimizer, as :func:`~landbench.ranking.scenarios.by_scenario`
    groups them)."""
    runs: dict[str, list[Record]] = defaultdict(list)
    for scenario in scenarios:
        for optimizer, records in grouped[scenario].items():
            runs[optimizer] += records
    return {optimizer: describe(optimizer, records) for optimizer, records in sorted(runs.items())}


def describe(optimizer: str, records: Sequence[Record]) -> Contestant:
    """The facts of one optimizer's ``records`` (see the module docstring)."""
    tuned: dict[str, set[float]] = defaultdict(set)
    for record in records:
        tuning = record.get("tuning")
        if was_tuned(tuning):
            tuned[str(tuning.get("family", record.get("family", "?")))].add(float(tuning["lr"]))
    modes = Counter(str(record.get("batch_mode") or "unknown") for record in records)
    return Contestant(
        optimizer=optimizer,
        runs=len(records),
        tuned={family: sorted(rates) for family, rates in sorted(tuned.items())},
        modes=dict(modes.most_common()),
        loop_s=_shared_time(records, "wall_s"),
        metrics_s=_shared_time(records, "metrics_s"),
    )


def was_tuned(tuning: Any) -> bool:
    """Whether a record's ``tuning`` field says its ``lr`` was chosen by tuning: ``"lr"`` in its
    ``tuned`` list (records before that list existed: a ``grid`` was searched)."""
    if not isinstance(tuning, Mapping) or tuning.get("lr") is None:
        return False
    return "lr" in tuning["tuned"] if "tuned" in tuning else "grid" in tuning


def _shared_time(records: Sequence[Record], name: str) -> float | None:
    """The sum over ``records`` of ``record[name] / batch_runs`` (:func:`landbench.outcomes.runs_in_batch`);
    None if any record lacks them."""
    total = 0.0
    for record in records:
        seconds, size = record.get(name), runs_in_batch(record)
        if seconds is None or not size:
            return None
        total += float(seconds) / int(size)
    return total
