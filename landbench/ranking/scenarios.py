"""From records to scenarios: which runs are compared, what each optimizer achieved, what is mixed.

A scenario is (problem, noise, steps): the problem's canonical spec includes its dimension, and
its instances and run seeds are repetitions of it, as COCO treats instances (Hansen et al.,
"COCO: Performance assessment", arXiv:1605.03560). Only records of the scoring phase count
(``phase`` absent or ``"score"``); a record whose ``key`` was seen before is a repeat of the same
run and is dropped.

Time is counted in gradient evaluations where records carry ``hit_evals`` (and ``grad_evals``
for what a run spent), else in optimizer steps (``hit_steps``, and the steps a run took before it
diverged or its budget): one unit per record, and a mix of units within a scenario is reported.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from landbench.errors import LandbenchError
from landbench.ranking.stats import expected_running_time

#: Families by the question they ask; families not listed go to "other".
GROUPS: dict[str, tuple[str, ...]] = {
    "saddles": ("saddle", "saddle_chain"),
    "fields": ("gaussian_field",),
    "spin glasses": ("pspin",),
    "basins": ("basins",),
    "valleys": ("valley",),
    "classical": ("quadratic", "rosenbrock", "rastrigin", "ackley", "styblinski_tang", "levy"),
}

#: Record fields that must agree within a scenario for its runs to be comparable. (``batch_mode``
#: is not one: every mode gives the numbers of separate runs, which is how it is chosen.)
PROVENANCE_FIELDS = ("device", "dtype", "landbench_version", "torch_version")

#: Settings that change only the curvature metrics and the stored curve, never a ranked number.
METRIC_ONLY_SETTINGS = ("curvature", "tau", "lanczos_iterations", "hutchinson_probes", "basin_probes", "curve_points")

REQUIRED_FIELDS = ("problem", "optimizer", "noise", "steps", "diverged")


def group_of(family: str) -> str:
    """The group ("saddles", "fields", ...) a family belongs to, or "other"."""
    return next((group for group, families in GROUPS.items() if family in families), "other")


@dataclass(frozen=True, order=True)
class Scenario:
    """A problem (with its dimension) under one noise level and step budget."""

    problem: str
    noise: float
    steps: int

    @property
    def label(self) -> str:
        return f"{self.problem} noise={self.noise:g} steps={self.steps}"


@dataclass(frozen=True)
class RunSummary:
    """What one optimizer achieved on one scenario, over its runs (instances x seeds).

    ``ert[k]`` and ``successes[k]`` are per target ``targets[k]`` (see
    :func:`~landbench.ranking.stats.expected_running_time`); ``median_final`` is the median of the
    final loss gap (of the final loss when f* is unknown) over the runs that did not diverge,
    ``inf`` when all diverged: diverged runs never enter it as numbers.
    """

    runs: int
    diverged: int
    targets: tuple[float, ...]
    successes: tuple[int, ...]
    ert: tuple[float, ...]
    median_final: float
    instances: tuple[int, ...]

    def success_rate(self, k: int) -> float:
        return self.successes[k] / self.runs


def select(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The scoring-phase records, each run once, and notes on what was left out."""
    kept, seen, tuning, repeats = [], set(), 0, 0
    for record in records:
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise LandbenchError(f"a record lacks {', '.join(missing)}: not a landbench run record")
        if record.get("phase", "score") != "score":
            tuning += 1
            continue
        key = record.get("key")
        if key is not None and key in seen:
            repeats += 1
            continue
        seen.add(key)
        kept.append(record)
    notes = [f"{tuning} tuning-phase records left out (only phase 'score' is ranked)"] if tuning else []
    if repeats:
        notes.append(f"{repeats} repeated records (same key) counted once")
    return kept, notes


def by_scenario(records: Iterable[dict[str, Any]]) -> dict[Scenario, dict[str, list[dict[str, Any]]]]:
    """Records grouped by scenario, then by optimizer: its ``label`` (a tuned optimizer's spec
    without ``lr``, the same in every family whatever rate each family got), else its spec."""
    grouped: dict[Scenario, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        scenario = Scenario(str(record["problem"]), float(record["noise"]), int(record["steps"]))
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
    tracked = [set(r["targets"]) for r in runs if r.get("hit_steps") is not None and r.get("targets")]
    return tuple(sorted(set.intersection(*tracked), reverse=True)) if tracked else ()


def time_unit(record: dict[str, Any]) -> str:
    """The unit the record's times are counted in: gradient evaluations or optimizer steps."""
    return "gradient evaluations" if "hit_evals" in record else "steps"


def summarize(runs: Sequence[dict[str, Any]], targets: tuple[float, ...]) -> RunSummary:
    """The :class:`RunSummary` of one optimizer's runs on a scenario with these targets."""
    hits = [hit_times(r, targets) for r in runs]
    spent = [_spent(r) for r in runs]
    finals = [v for r in runs if not r["diverged"] and (v := _final(r, bool(targets))) is not None]
    return RunSummary(
        runs=len(runs),
        diverged=sum(bool(r["diverged"]) for r in runs),
        targets=targets,
        successes=tuple(sum(h[k] is not None for h in hits) for k in range(len(targets))),
        ert=tuple(expected_running_time([h[k] for h in hits], spent) for k in range(len(targets))),
        median_final=float(statistics.median(finals)) if finals else math.inf,
        instances=tuple(sorted({int(r.get("instance", 0)) for r in runs})),
    )


def hit_times(record: dict[str, Any], targets: tuple[float, ...]) -> list[float | None]:
    times = record.get("hit_evals") if "hit_evals" in record else record.get("hit_steps")
    if times is None:
        return [None] * len(targets)
    position = {float(t): k for k, t in enumerate(record["targets"])}
    return [times[position[t]] for t in targets]


def _spent(record: dict[str, Any]) -> float:
    """Evaluations (or steps) the run used: its budget, or what it used before it diverged."""
    if "hit_evals" in record:
        return float(record["grad_evals"])
    if record["diverged"] and record.get("diverged_step") is not None:
        return float(record["diverged_step"])
    return float(record["steps"])


def _final(record: dict[str, Any], with_f_star: bool) -> float | None:
    value = record.get("loss_gap") if with_f_star else record.get("final_loss")
    return None if value is None else float(value)


def provenance_report(runs_by_scenario: dict[Scenario, list[dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """Warnings and notes, one per field whose value differs between runs compared within a scenario.

    Checked: device, dtype, landbench and torch versions, the time unit, and each
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
    values["time unit"] = time_unit(record)
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
