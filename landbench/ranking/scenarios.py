"""From records to scenarios: which runs are compared, what each optimizer achieved, what is mixed.

A scenario is (problem, noise, steps): the problem's canonical spec includes its dimension, and
its instances and run seeds are repetitions of it, as COCO treats instances (Hansen et al.,
"COCO: Performance assessment", arXiv:1605.03560). Only records of the scoring phase count
(``phase`` absent or ``"score"``); a record whose ``key`` was seen before is a repeat of the same
run and is dropped; a record of another schema is left out with a warning (schema 2 counted a
target touched once as reached).

What each run achieved (escaped, reached a target and held it, diverged, its final gap) and what a
failure costs are decided by :mod:`landbench.outcomes`: time is counted in gradient evaluations,
and a run that does not reach a target, diverged or not, is charged its whole budget.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from landbench import outcomes
from landbench.errors import LandbenchError

#: Families by the question they ask; a family registered by another package goes to the group it
#: declares (:func:`landbench.landscapes.family_group`), any other family not listed to "other".
GROUPS: dict[str, tuple[str, ...]] = {
    "saddles": ("saddle", "saddle_chain"),
    "fields": ("gaussian_field",),
    "spin glasses": ("pspin",),
    "basins": ("basins",),
    "valleys": ("valley",),
    "classical": ("quadratic", "rosenbrock", "rastrigin", "ackley", "styblinski_tang", "levy"),
    "finite sums": ("least_squares", "deep_linear", "matrix_sensing", "phase_retrieval", "teacher_student"),
}

#: Record fields that must agree within a scenario for its runs to be comparable. (``batch_mode``
#: is not one: every mode gives the numbers of separate runs, which is how it is chosen.)
PROVENANCE_FIELDS = ("device", "dtype", "landbench_version", "torch_version")

#: Settings that change only the curvature metrics and the stored curve, never a ranked number.
METRIC_ONLY_SETTINGS = ("curvature", "tau", "lanczos_iterations", "hutchinson_probes", "basin_probes", "curve_points")

REQUIRED_FIELDS = ("problem", "optimizer", "noise", "steps", "diverged")


def group_of(family: str) -> str:
    """The group ("saddles", "fields", ...) a family belongs to: a built-in family's in
    :data:`GROUPS`, the one a registered family declares (its class attribute ``group``), or "other"
    (a family unknown here, or a registered one that cannot be loaded)."""
    group = next((group for group, families in GROUPS.items() if family in families), None)
    return group or _registered_group(family, tuple(sys.path)) or "other"


@functools.lru_cache(maxsize=256)
def _registered_group(family: str, path: tuple[str, ...]) -> str | None:
    """The group of a family registered in the ``landbench.landscapes`` entry-point group (read once
    per family and ``sys.path``); torch and the plug-in are imported only when ``family`` is one."""
    if not any(ep.name == family for ep in importlib.metadata.entry_points(group="landbench.landscapes")):
        return None
    from landbench.landscapes import family_group

    return family_group(family)


@dataclass(frozen=True, order=True)
class Scenario:
    """A problem (with its dimension) under one noise level and law and one step budget."""

    problem: str
    noise: float
    steps: int
    noise_model: str = "gaussian"
    #: on a finite sum, the minibatch size (outcomes.batch_size_of); 0 for the full batch and other landscapes
    batch_size: int = 0

    @property
    def label(self) -> str:
        noise = outcomes.noise_text(self.noise, self.noise_model, self.batch_size or None)
        return f"{self.problem} noise={noise} steps={self.steps}"


@dataclass(frozen=True)
class RunSummary:
    """What one optimizer achieved on one scenario, over its runs (instances x seeds), as
    :func:`landbench.outcomes.summarize` has it.

    ``ert[k]`` and ``successes[k]`` are per target ``targets[k]``: runs that reached the target and
    held it to the end, and COCO's expected running time in gradient evaluations with every failure
    (diverged ones included) charged its whole budget; ``reached_share`` the share of (run, target)
    pairs reached over all targets. ``median_final`` is the median final loss
    gap (final loss when f* is unknown) with diverged runs ranked worst: ``inf`` when the median
    falls on a diverged run.
    """

    runs: int
    diverged: int
    targets: tuple[float, ...]
    successes: tuple[int, ...]
    ert: tuple[float, ...]
    median_final: float
    instances: tuple[int, ...]
    reached_share: float = 0.0
    #: on a finite sum, the median population loss at the last iterate (diverged runs worst: ``inf``
    #: when the median falls on one); None on other landscapes
    median_test: float | None = None

    def success_rate(self, k: int) -> float:
        return self.successes[k] / self.runs


def select(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The scoring-phase records of the current schema, each run once (the first record of a key,
    :func:`landbench.store.first_per_key`), failed runs left out; notes and warnings on what was
    left out."""
    from landbench.store import first_per_key

    records = list(records)
    unique = first_per_key(records)
    kept, tuning, failed, repeats = [], 0, 0, len(records) - len(unique)
    schemas: Counter[int] = Counter()
    for record in unique:
        if outcomes.is_failed(record):
            failed += 1
            continue
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise LandbenchError(f"a record lacks {', '.join(missing)}: not a landbench run record")
        if record.get("phase", "score") != "score":
            tuning += 1
            continue
        schema = outcomes.schema_of(record)
        if schema != outcomes.RECORD_SCHEMA:
            schemas[schema] += 1
            continue
        kept.append(record)
    notes = [f"{tuning} tuning-phase records left out (only phase 'score' is ranked)"] if tuning else []
    if repeats:
        notes.append(f"{repeats} repeated records (same key) counted once")
    warnings = [f"{failed} failed runs left out (their jobs raised; landbench status lists them)"] if failed else []
    for schema, count in sorted(schemas.items()):
        why = (
            "their successes counted a target touched once; run them again with this landbench"
            if schema < outcomes.RECORD_SCHEMA
            else "they were written by a newer landbench; upgrade landbench to read them"
        )
        warnings.append(
            f"{count} records of schema {schema} left out (this landbench reads schema {outcomes.RECORD_SCHEMA}): {why}"
        )
    return kept, notes, warnings


def by_scenario(records: Iterable[dict[str, Any]]) -> dict[Scenario, dict[str, list[dict[str, Any]]]]:
    """Records grouped by scenario, then by optimizer: its ``label`` (a tuned optimizer's spec
    without ``lr``, the same in every family whatever rate each family got), else its spec."""
    grouped: dict[Scenario, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        scenario = Scenario(
            str(record["problem"]),
            float(record["noise"]),
            int(record["steps"]),
            outcomes.noise_model_of(record),
            outcomes.batch_size_of(record) or 0,
        )
        grouped[scenario][str(record.get("label") or record["optimizer"])].append(record)
    return {scenario: dict(runs) for scenario, runs in sorted(grouped.items())}


def common_scenarios(
    grouped: dict[Scenario, dict[str, list[dict[str, Any]]]], optimizers: Sequence[str]
) -> tuple[list[Scenario], list[str]]:
    """The scenarios every optimizer ran, and warnings naming those dropped and who lacked them."""
    common = [s for s, runs in grouped.items() if all(o in runs for o in optimizers)]
    dropped = [s for s in grouped if s not in common]
    if not dropped:
        return common, []
    lacking = ", ".join(f"{o} lacks {n}" for o in optimizers if (n := sum(o not in grouped[s] for s in dropped)))
    return common, [
        f"optimizers were run on different scenarios: only the {len(common)} of {len(grouped)} that every "
        f"optimizer ran are ranked ({lacking}); dropped: {_some(s.label for s in dropped)}"
    ]


def scenario_targets(runs: Iterable[dict[str, Any]]) -> tuple[float, ...]:
    """The targets every run of the scenario tracked (none when f* is unknown), hardest last."""
    return outcomes.common_targets(runs)


#: The unit of every time in the ranking (see :mod:`landbench.outcomes`).
TIME_UNIT = outcomes.UNITS["evals"]


def summarize(runs: Sequence[dict[str, Any]], targets: tuple[float, ...]) -> RunSummary:
    """The :class:`RunSummary` of one optimizer's runs on a scenario with these targets."""
    summary = outcomes.summarize(runs, targets, unit="evals")
    median = summary.median_loss_gap if targets else summary.median_final_loss
    return RunSummary(
        runs=summary.runs,
        diverged=summary.diverged,
        targets=targets,
        successes=tuple(r.successes for r in summary.targets),
        ert=tuple(r.ert for r in summary.targets),
        median_final=math.inf if median is None else median,
        instances=tuple(sorted({int(r.get("instance", 0)) for r in runs})),
        reached_share=summary.reached_share or 0.0,
        median_test=None if not summary.finite_sum else _inf_if_none(summary.median_test_loss),
    )


def _inf_if_none(value: float | None) -> float:
    return math.inf if value is None else value


def provenance_report(runs_by_scenario: dict[Scenario, list[dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """Warnings and notes, one per field whose value differs between runs compared within a scenario.

    Checked: device, dtype, landbench and torch versions, and each
    setting other than dtype (which has its own field). Differences across scenarios are fine
    (each scenario is ranked on its own); within a scenario they mean that the optimizers were
    not measured alike, and the ranking says so rather than mixing silently: a warning, or a note
    for the settings of :data:`METRIC_ONLY_SETTINGS`, which cannot change a ranked number.
    """
    mixed: dict[str, list[Scenario]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for scenario, runs in runs_by_scenario.items():
        values = [_provenance(r) for r in runs]
        for name in sorted({n for v in values for n in v}):
            seen = Counter(v.get(name, "absent") for v in values)
            if len(seen) > 1:
                mixed[name].append(scenario)
                counts[name].update(seen)
    warnings, notes = [], []
    for name, scenarios in mixed.items():
        harmless = name.removeprefix("settings.") in METRIC_ONLY_SETTINGS
        (notes if harmless else warnings).append(
            f"{name} is mixed within {len(scenarios)} of {len(runs_by_scenario)} scenarios "
            f"({', '.join(f'{value}: {n} runs' for value, n in counts[name].most_common())}), "
            f"e.g. {_some(s.label for s in scenarios)}" + (" (it does not enter the ranking)" if harmless else "")
        )
    return warnings, notes


def _provenance(record: dict[str, Any]) -> dict[str, str]:
    values = {name: str(record.get(name, "absent")) for name in PROVENANCE_FIELDS}
    for name, value in (record.get("settings") or {}).items():
        if name != "dtype":
            values[f"settings.{name}"] = json.dumps(value, sort_keys=True)
    return values


def instance_warnings(summaries_by_scenario: dict[Scenario, dict[str, RunSummary]]) -> list[str]:
    """A warning if, within a scenario, optimizers ran different sets of instances."""
    uneven = [s for s, summaries in summaries_by_scenario.items() if len({x.instances for x in summaries.values()}) > 1]
    if not uneven:
        return []
    return [f"optimizers ran different instances within {len(uneven)} scenarios: {_some(s.label for s in uneven)}"]


def _some(labels: Iterable[str], shown: int = 3) -> str:
    labels = list(labels)
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return "; ".join(labels[:shown]) + more
