"""The tuning protocol: each optimizer's learning rate is chosen per family, on runs that are never scored.

For every optimizer of a suite and every problem family in it:

1. **Grid.** A log-spaced grid of learning rates: :data:`DEFAULT_GRID` (1e-4 to 10 in half
   decades, 11 rates: the spherical spin glass's natural step is of order N), :data:`DEFAULT_GRIDS`
   for optimizers whose scale differs, or the suite's own (``[tuning] grid`` for all,
   ``[tuning.grids]`` per optimizer name or label).
2. **Tuning runs.** Each rate runs every scenario of the family (same problems, dimensions, noise
   levels and step budgets as the scored runs, curvature metrics off) on the *tuning* instances
   and seeds (by default instance 1000 and seeds 1000 to 1003). The suite is refused if these
   overlap its scoring instances or seeds. The rates of a grid share one batch (a param group per
   rate, :func:`landbench.engine.run_batch`) wherever the optimizer runs batched or per tensor.
3. **Criterion.** The tuning runs are ranked as the leaderboard ranks optimizers
   (:func:`landbench.ranking.rank` with the rates as contestants): per scenario by success rate and
   ERT at the reference target, then diverged share, then median final gap. The chosen rate has
   the best mean rank over the family's scenarios; ties go to the higher performance-profile
   score, then to the smaller rate (the safer one).
4. **Scoring.** The suite's own scenarios run with the chosen rate. Their records carry
   ``phase: "score"``, the optimizer's ``label`` (its spec without ``lr``, the name it is ranked
   under) and ``tuning`` (family, chosen rate, grid, tuning instances and seeds); the tuning runs'
   records carry ``phase: "tune"`` and are never ranked.

The protocol follows AlgoPerf's "external tuning" ruleset, where each submission's hyperparameters
are searched on a fixed budget per workload and the best is scored (Dahl et al., "Benchmarking
neural network training algorithms", arXiv:2306.07179, 2023), and the advice of Schmidt, Schneider
and Hennig ("Descending through a crowded valley", ICML 2021) to compare optimizers tuned on the
same budget rather than at their defaults.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from landbench.errors import SpecError
from landbench.optimizers import OptimizerSpec, resolve
from landbench.spec import format_spec, parse_spec

if TYPE_CHECKING:
    from landbench.suite import Scenario

#: The default learning-rate grid: 1e-4 to 10 in half decades.
DEFAULT_GRID: tuple[float, ...] = tuple(float(f"{10 ** (k / 2):.4g}") for k in range(-8, 3))
#: Optimizers whose learning rate lives on another scale (Adadelta's default is 1.0).
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = {
    "adadelta": tuple(float(f"{10 ** (k / 2):.4g}") for k in range(-4, 5)),
    "lbfgs": tuple(float(f"{10 ** (k / 2):.4g}") for k in range(-4, 1)),
}
TUNING_INSTANCES: tuple[int, ...] = (1000,)
TUNING_SEEDS: tuple[int, ...] = (1000, 1001, 1002, 1003)
CRITERION = "best mean per-scenario rank over the family's tuning scenarios; ties: higher profile score, smaller lr"


@dataclass(frozen=True)
class Tuning:
    """A suite's ``[tuning]`` table: where tuning runs, and the grids it searches."""

    instances: tuple[int, ...] = TUNING_INSTANCES
    seeds: tuple[int, ...] = TUNING_SEEDS
    grid: tuple[float, ...] = DEFAULT_GRID
    grids: tuple[tuple[str, tuple[float, ...]], ...] = field(default_factory=tuple)  # (name or label, grid)

    def grid_for(self, optimizer: str) -> tuple[float, ...]:
        """The grid of an optimizer spec: the suite's for its label, then for its name, then the
        shipped default for its name, then the suite's (or the default) grid."""
        overrides = dict(self.grids)
        name = parse_spec(optimizer, what="optimizer").name
        if label_of(optimizer) in overrides:
            return overrides[label_of(optimizer)]
        if name in overrides:
            return overrides[name]
        if self.grid == DEFAULT_GRID and name in DEFAULT_GRIDS:
            return DEFAULT_GRIDS[name]
        return self.grid

    def as_dict(self) -> dict[str, Any]:
        return {"instances": list(self.instances), "seeds": list(self.seeds), "grid": list(self.grid)}


def check_grid(value: Any) -> tuple[float, ...] | None:
    """A grid as a tuple of distinct positive finite rates, ascending; None if ``value`` is not one."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in value):
        return None
    rates = sorted({float(v) for v in value})
    return tuple(rates) if len(rates) == len(value) else None


def label_of(optimizer: str | OptimizerSpec) -> str:
    """The name a tuned optimizer is ranked under: its canonical spec without ``lr``."""
    spec = resolve(optimizer)
    return format_spec(spec.name, {k: v for k, v in spec.kwargs.items() if k != "lr"})


def with_lr(optimizer: str, lr: float) -> str:
    """The canonical spec of ``optimizer`` with its learning rate set to ``lr``."""
    spec = resolve(optimizer)
    return resolve(format_spec(spec.name, {**spec.kwargs, "lr": lr})).canonical


def tunable(optimizer: str) -> bool:
    """Whether the optimizer has a learning rate to tune: an ``lr`` argument (which its canonical
    spec always writes), or ``sam``, which passes ``lr`` to its base."""
    spec = resolve(optimizer)
    return "lr" in spec.kwargs or spec.name == "sam"


def check_optimizers(tuning: Tuning, optimizers: Iterable[str]) -> str | None:
    """Why a tuned suite's optimizers cannot be tuned as given, or None: two specs that differ only
    in ``lr`` (tuning sets it, so they would be the same contestant), or a ``[tuning.grids]`` key
    that names none of the optimizers."""
    labels: dict[str, str] = {}
    for optimizer in dict.fromkeys(optimizers):
        label = label_of(optimizer) if tunable(optimizer) else optimizer
        if label in labels:
            return (
                f"optimizers {labels[label]!r} and {optimizer!r} differ only in lr, which tuning chooses: "
                f"list {label!r} once"
            )
        labels[label] = optimizer
    names = {parse_spec(o, what="optimizer").name for o in labels.values()}
    for key, _ in tuning.grids:
        if key not in labels and key not in names:
            return f"[tuning.grids] {key!r} names none of the optimizers; valid: {', '.join([*names, *labels])}"
    return None


def family_of(problem: str) -> str:
    return parse_spec(problem, what="problem").name


def check_disjoint(tuning: Tuning, scenarios: Iterable[Scenario]) -> str | None:
    """Why the tuning runs would overlap the scored ones (shared instances or seeds), or None."""
    scenarios = list(scenarios)
    instances = {sc.instance for sc in scenarios}
    seeds = {s for sc in scenarios for s in sc.seeds}
    if shared := sorted(instances & set(tuning.instances)):
        return f"instances {shared} are both tuned on and scored; tuning instances must differ from scored ones"
    if shared := sorted(seeds & set(tuning.seeds)):
        return f"seeds {shared} are both tuned on and scored; tuning seeds must differ from scored ones"
    return None


def tuning_units(tuning: Tuning, scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The tuning batches: every scored scenario's problem, noise and budget, on each tuning
    instance, with the tuning seeds, curvature off, for each tunable optimizer (its spec as given;
    the grid's rates replace its ``lr``). Repeats (scored instances that collapse) come once."""
    units: dict[Scenario, None] = {}
    for sc in scenarios:
        if not tunable(sc.optimizer):
            continue
        settings = replace(sc.settings, curvature=False)
        for instance in tuning.instances:
            unit = replace(
                sc,
                instance=instance,
                seeds=tuning.seeds,
                settings=settings,
                phase="tune",
                label=label_of(sc.optimizer),
            )
            units[unit] = None
    return list(units)


def choose(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """The chosen rate per (label, family) from tuning records (see the module docstring)."""
    from landbench.ranking import rank

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["label"], record["family"])].append({**record, "label": record["optimizer"], "phase": "score"})
    chosen = {}
    for key, runs in groups.items():
        board = rank(runs, bootstrap=1)
        if not board.standings:
            raise SpecError(f"tuning {key[0]} on {key[1]}: the grid's rates did not run the same scenarios")
        lr_of = {r["optimizer"]: float(resolve(r["optimizer"]).kwargs["lr"]) for r in runs}
        best = min(board.standings, key=lambda s: (s.mean_rank, -(s.score or 0.0), lr_of[s.optimizer]))
        chosen[key] = lr_of[best.optimizer]
    return chosen


def scored(scenarios: Sequence[Scenario], tuning: Tuning, chosen: Mapping[tuple[str, str], float]) -> list[Scenario]:
    """The suite's scenarios with tuned rates; each carries the ``tuning`` field of its records
    (family, chosen rate, grid, tuning instances and seeds) as canonical JSON, which enters its
    runs' keys, so that a change of grid or tuning runs never reuses old scored records."""
    out: list[Scenario] = []
    for sc in scenarios:
        label = label_of(sc.optimizer) if tunable(sc.optimizer) else sc.optimizer
        family = family_of(sc.problem)
        optimizer = sc.optimizer
        if (label, family) in chosen:
            lr = chosen[(label, family)]
            optimizer = with_lr(sc.optimizer, lr)
            info: dict[str, Any] = {
                "family": family,
                "lr": lr,
                "grid": list(tuning.grid_for(sc.optimizer)),
                "instances": list(tuning.instances),
                "seeds": list(tuning.seeds),
                "criterion": CRITERION,
            }
        else:
            info = {"family": family, "lr": None, "note": "no learning rate to tune"}
        out.append(
            replace(sc, optimizer=optimizer, phase="score", label=label, tuning=json.dumps(info, sort_keys=True))
        )
    return out
