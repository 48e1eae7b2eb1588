"""The tuning protocol: each optimizer's learning rate is chosen per family, on runs that are never scored.

For every optimizer of a suite and every problem family in it (on a finite sum, every family and
minibatch size: :func:`tuning_group`; the best rate grows with the batch size):

1. **Grid** (:class:`Grid`). Absolute rates, or factors of a base rate:

   * ``absolute``: :data:`DEFAULT_GRID` (1e-4 to 10 in half decades, 11 rates: the spherical spin
     glass's natural step is of order N), :data:`DEFAULT_GRIDS` for optimizers whose scale
     differs, or the suite's own (``[tuning] grid = [...]`` for all, ``[tuning.grids]`` per
     optimizer name or label);
   * ``relative``: factors of the spec's own ``lr`` (``grid = {relative = [0.01, 0.1, 1, 10, 100]}``);
   * ``multiplier``: factors of the class's default ``lr``, for learning-rate-free optimizers
     (:func:`landbench.optimizers.learning_rate_free`: D-Adaptation, Prodigy, DoG, ...), whose
     ``lr`` scales a step size they estimate themselves: :data:`MULTIPLIER_GRID`, x0.1 to x10 in
     half decades, unless ``[tuning.grids]`` names them or the suite-wide grid is relative.

2. **Tuning runs.** Each rate runs every scenario of the family (same problems, dimensions, noise
   levels and step budgets as the scored runs, curvature metrics off) on the *tuning* instances
   and seeds (by default instance 1000 and seeds 1000 to 1003). The suite is refused if these
   overlap its scoring instances or seeds. The rates of a grid share one batch (a param group per
   rate, :func:`landbench.engine.run_batch`) wherever the optimizer runs batched or per tensor.
3. **Criterion.** Candidates are the rates none of whose tuning runs diverged (if every rate had a
   diverged run, those with the fewest): a rate that blew up is never chosen over one that did
   not. The candidates' tuning runs are ranked as the leaderboard ranks optimizers
   (:func:`landbench.ranking.rank` with the rates as contestants): per scenario by the share of
   (run, target) pairs held, then ERT at the reference target, then diverged share, then median
   final gap. The chosen rate
   has the best mean rank over the family's scenarios; ties go to the higher performance-profile
   score, then to the smaller rate (the safer one).
4. **Scoring.** The suite's own scenarios run with the chosen rate. Their records carry
   ``phase: "score"``, the optimizer's ``label`` (its spec without ``lr``, the name it is ranked
   under) and ``tuning`` (:func:`scored`: what was tuned, the chosen rate, the lr the spec gave,
   the grid and its kind, whether the optimizer is learning-rate-free, the rates whose tuning runs
   diverged, tuning instances and seeds); the tuning runs' records carry ``phase: "tune"`` and
   are never ranked.

Tuning can be turned off for a tuned suite (``Suite.with_overrides(tune=False)``, ``landbench run
--no-tune``): every spec then runs as given, its ``lr`` included, under its full spec as ``label``,
and its records' ``tuning`` says that nothing was tuned and why.

The protocol follows AlgoPerf's "external tuning" ruleset, where each submission's hyperparameters
are searched on a fixed budget per workload and the best is scored (Dahl et al., "Benchmarking
neural network training algorithms", arXiv:2306.07179, 2023), and the advice of Schmidt, Schneider
and Hennig ("Descending through a crowded valley", ICML 2021) to compare optimizers tuned on the
same budget rather than at their defaults.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from landbench.errors import SpecError
from landbench.optimizers import OptimizerSpec, resolve
from landbench.optimizers.batching import with_rate
from landbench.outcomes import batch_size_of, is_diverged
from landbench.records import tuning_json
from landbench.rng import global_state_kept
from landbench.spec import format_spec, parse_spec, suggest

if TYPE_CHECKING:
    from landbench.suite import Scenario


def _half_decades(low: int, high: int) -> tuple[float, ...]:
    """10^(k/2) for k = low..high, to 4 significant digits (0.1, 0.3162, 1, 3.162, ...)."""
    return tuple(float(f"{10 ** (k / 2):.4g}") for k in range(low, high + 1))


#: The default learning-rate grid: 1e-4 to 10 in half decades.
DEFAULT_GRID: tuple[float, ...] = _half_decades(-8, 2)
#: Optimizers whose learning rate lives on another scale (Adadelta's default is 1.0).
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = {
    "adadelta": _half_decades(-4, 4),
    "lbfgs": _half_decades(-4, 0),
}
#: The factors of a learning-rate-free optimizer's default lr that it is tuned over: x0.1 to x10 in half decades.
MULTIPLIER_GRID: tuple[float, ...] = _half_decades(-2, 2)
GRID_KINDS = ("absolute", "relative", "multiplier")
TUNING_INSTANCES: tuple[int, ...] = (1000,)
TUNING_SEEDS: tuple[int, ...] = (1000, 1001, 1002, 1003)
CRITERION = (
    "rates with no diverged tuning run (if none, those with the fewest); of them, the best mean per-scenario "
    "rank over the family's tuning scenarios; ties: higher profile score, smaller lr"
)
#: Why the records of a tuned suite run with tuning turned off say that nothing was tuned.
NOT_TUNED = (
    "tuning turned off (landbench run --no-tune, Suite.with_overrides(tune=False)): the spec's lr is kept as given"
)
NO_LR = "the optimizer has no learning rate to tune"


def check_grid(value: Any) -> tuple[float, ...] | None:
    """A grid as a tuple of distinct positive finite numbers, ascending; None if ``value`` is not one."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in value):
        return None
    try:
        rates = sorted({float(v) for v in value})
    except OverflowError:  # an integer too large for a float
        return None
    return tuple(rates) if len(rates) == len(value) else None


@dataclass(frozen=True)
class Grid:
    """A learning-rate grid: ``values`` are the rates (``kind="absolute"``), or factors of the spec's
    own lr (``"relative"``) or of the optimizer class's default lr (``"multiplier"``, the grid of
    learning-rate-free optimizers)."""

    values: tuple[float, ...]
    kind: str = "absolute"

    def __post_init__(self) -> None:
        if self.kind not in GRID_KINDS:
            raise SpecError(f"a grid's kind is one of {', '.join(GRID_KINDS)}, got {self.kind!r}")
        if check_grid(list(self.values)) != tuple(self.values):
            raise SpecError(f"a grid is a non-empty ascending list of distinct positive numbers, got {self.values!r}")

    def base(self, optimizer: str | OptimizerSpec) -> float | None:
        """The rate the values multiply: the spec's lr, its class's default lr, or None (absolute)."""
        if self.kind == "relative":
            return lr_of(optimizer)
        if self.kind == "multiplier":  # the class's default, or the spec's own where it has none
            return default_lr(optimizer) or lr_of(optimizer)
        return None

    def rates(self, optimizer: str | OptimizerSpec) -> tuple[float, ...]:
        """The learning rates this grid tries for ``optimizer``, ascending."""
        base = self.base(optimizer)
        if self.kind != "absolute" and base is None:
            raise SpecError(
                f"optimizer {resolve(optimizer).canonical}: no learning rate for a {self.kind} grid to multiply"
            )
        return self.values if base is None else tuple(float(f"{base * v:.10g}") for v in self.values)

    def describe(self, optimizer: str | OptimizerSpec) -> str:
        """The rates in words: ``[0.001, 0.01, 0.1] (x0.01 to x1 of its lr=0.1)``."""
        text = "[" + ", ".join(f"{r:g}" for r in self.rates(optimizer)) + "]"
        base = self.base(optimizer)
        if base is not None:
            whose = "its lr" if self.kind == "relative" else "its default lr"
            text += f" (x{self.values[0]:g} to x{self.values[-1]:g} of {whose}={base:g})"
        return text

    def record(self, optimizer: str | OptimizerSpec) -> dict[str, Any]:
        """The grid's fields of a scored record's ``tuning``."""
        relative = self.kind != "absolute"
        return {
            "grid": list(self.rates(optimizer)),
            "grid_kind": self.kind,
            "grid_factors": list(self.values) if relative else None,
            "relative_to": self.base(optimizer),
        }


def _as_grid(value: Grid | Sequence[float]) -> Grid:
    return value if isinstance(value, Grid) else Grid(tuple(float(v) for v in value))


@dataclass(frozen=True)
class Tuning:
    """A suite's ``[tuning]`` table: where tuning runs, and the grids it searches; ``enabled=False``
    keeps every spec's lr as given (``--no-tune``). Grids given as plain sequences are absolute."""

    instances: tuple[int, ...] = TUNING_INSTANCES
    seeds: tuple[int, ...] = TUNING_SEEDS
    grid: Grid = Grid(DEFAULT_GRID)
    grids: tuple[tuple[str, Grid], ...] = field(default_factory=tuple)  # (name or label, grid)
    enabled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", _as_grid(self.grid))
        object.__setattr__(self, "grids", tuple((key, _as_grid(grid)) for key, grid in self.grids))

    def grid_for(self, optimizer: str | OptimizerSpec) -> Grid:
        """The grid of an optimizer spec: the suite's ``[tuning.grids]`` for its label, then for its
        name; for a learning-rate-free optimizer, the suite-wide grid if it is relative, else
        :data:`MULTIPLIER_GRID`; else the shipped default for its name unless the suite sets a
        grid, then the suite's (or the default) grid."""
        overrides = dict(self.grids)
        spec = resolve(optimizer)
        if label_of(spec) in overrides:
            return overrides[label_of(spec)]
        if spec.name in overrides:
            return overrides[spec.name]
        if spec.learning_rate_free:
            return self.grid if self.grid.kind != "absolute" else Grid(MULTIPLIER_GRID, "multiplier")
        if self.grid == Grid(DEFAULT_GRID) and spec.name in DEFAULT_GRIDS:
            return Grid(DEFAULT_GRIDS[spec.name])
        return self.grid

    def rates_for(self, optimizer: str | OptimizerSpec) -> tuple[float, ...]:
        """The learning rates tuning tries for ``optimizer``."""
        return self.grid_for(optimizer).rates(optimizer)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instances": list(self.instances),
            "seeds": list(self.seeds),
            "grid": list(self.grid.values),
            "grid_kind": self.grid.kind,
            "enabled": self.enabled,
        }


def parse_grid(value: Any) -> Grid:
    """A grid from a suite file: a list of rates, or ``{relative = [factors]}`` (multiples of each
    optimizer's own lr). Raises ValueError saying what was expected and what was found."""
    expected = (
        "expected a non-empty list of distinct positive learning rates, or {relative = [factors]} "
        "(distinct positive multiples of each optimizer's own lr)"
    )
    if isinstance(value, dict):
        unknown = [k for k in value if k != "relative"]
        if unknown:
            raise ValueError(f"{expected}; got the key {unknown[0]!r}{suggest(unknown[0], ['relative'])}")
        factors = check_grid(value.get("relative"))
        if factors is None:
            raise ValueError(f"{expected}; got {value!r}")
        return Grid(factors, "relative")
    rates = check_grid(value)
    if rates is None:
        raise ValueError(f"{expected}; got {value!r}")
    return Grid(rates)


def label_of(optimizer: str | OptimizerSpec) -> str:
    """The name a tuned optimizer is ranked under: its canonical spec without ``lr``."""
    spec = resolve(optimizer)
    return format_spec(spec.name, {k: v for k, v in spec.kwargs.items() if k != "lr"})


def with_lr(optimizer: str | OptimizerSpec, lr: float) -> str:
    """The canonical spec of ``optimizer`` with its learning rate set to ``lr``
    (:func:`landbench.optimizers.batching.with_rate`)."""
    return with_rate(resolve(optimizer), lr).canonical


def tunable(optimizer: str | OptimizerSpec) -> bool:
    """Whether the optimizer has a learning rate to tune: an ``lr`` argument (which its canonical
    spec always writes), or ``sam``, which passes ``lr`` to its base."""
    spec = resolve(optimizer)
    return "lr" in spec.kwargs or spec.name == "sam"


def lr_of(optimizer: str | OptimizerSpec) -> float | None:
    """The learning rate a spec runs at: its ``lr`` argument, else the ``lr`` of the param group it
    builds (``sam`` without ``lr``: its base's default), else None."""
    spec = resolve(optimizer)
    value = spec.kwargs.get("lr")
    if value is None:
        with global_state_kept():
            built = spec.build([torch.zeros(1, 2, requires_grad=True)])
        value = built.param_groups[0].get("lr")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def default_lr(optimizer: str | OptimizerSpec) -> float | None:
    """The learning rate of the spec with its ``lr`` left out (the class's default); None when the
    class has no default (its ``lr`` is a required argument)."""
    spec = resolve(optimizer)
    parameter = inspect.signature(spec.cls.__init__).parameters.get("lr")
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return None
    return lr_of(format_spec(spec.name, {k: v for k, v in spec.kwargs.items() if k != "lr"}))


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
            valid = ", ".join(dict.fromkeys([*sorted(names), *labels]))
            return f"[tuning.grids] {key!r} names none of the optimizers; valid: {valid}"
    return None


def family_of(problem: str) -> str:
    return parse_spec(problem, what="problem").name


def tuning_group(problem: str, batch_size: int | None = None) -> str:
    """What one learning rate is tuned for: the problem's family, and on a finite sum its minibatch
    size where it has one (the best rate grows with the batch size, up to the critical one: McCandlish
    et al. 2018), e.g. ``"least_squares"``, ``"least_squares (batch 8)"``."""
    family = family_of(problem)
    return family if batch_size is None else f"{family} (batch {batch_size})"


def group_of_scenario(scenario: Scenario) -> str:
    """The :func:`tuning_group` of a scenario."""
    return tuning_group(scenario.problem, scenario.settings.batch_size)


def group_of_record(record: Mapping[str, Any]) -> str:
    """The :func:`tuning_group` of a run's record (:func:`landbench.outcomes.batch_size_of`)."""
    return tuning_group(str(record["problem"]), batch_size_of(record))


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


def check_tuning(tuning: Tuning | None, scenarios: Sequence[Scenario]) -> str | None:
    """Why a suite's tuning cannot run on its scenarios (:func:`check_disjoint`, then
    :func:`check_optimizers`), or None; nothing to check when tuning is absent or turned off."""
    if tuning is None or not tuning.enabled:
        return None
    return check_disjoint(tuning, scenarios) or check_optimizers(tuning, [sc.optimizer for sc in scenarios])


@dataclass(frozen=True)
class PlanEntry:
    """What a suite run does with one optimizer's learning rate (:func:`plan`)."""

    optimizer: str  # the canonical spec as given
    action: str  # "tune", "keep" (tuning turned off) or "none" (no learning rate)
    label: str  # the name it is ranked under
    lr: float | None  # the spec's own lr
    default_lr: float | None  # its class's default lr
    learning_rate_free: bool
    grid: str | None  # the grid in words (action "tune")

    @property
    def explicit_lr(self) -> bool:
        """Whether the spec's lr differs from its class's default (a rate the user chose)."""
        return self.lr is not None and self.lr != self.default_lr


def plan(tuning: Tuning | None, optimizers: Iterable[str]) -> list[PlanEntry]:
    """Per optimizer of a tuned suite (in order, once each), whether its lr is tuned (over which
    grid) or kept as given; empty for a suite without tuning."""
    if tuning is None:
        return []
    entries = []
    for optimizer in dict.fromkeys(optimizers):
        spec = resolve(optimizer)
        if not tunable(spec):
            action, label, grid = "none", spec.canonical, None
        elif not tuning.enabled:
            action, label, grid = "keep", spec.canonical, None
        else:
            action, label, grid = "tune", label_of(spec), tuning.grid_for(spec).describe(spec)
        lrs = (lr_of(spec), default_lr(spec)) if action != "none" else (None, None)
        entries.append(PlanEntry(spec.canonical, action, label, *lrs, spec.learning_rate_free, grid))
    return entries


def tuning_units(tuning: Tuning, scenarios: Sequence[Scenario]) -> list[Scenario]:
    """The tuning batches: every scored scenario's problem, noise and budget, on each tuning
    instance, with the tuning seeds, curvature off, for each tunable optimizer (its spec as given;
    the grid's rates replace its ``lr``). Repeats (scored instances that collapse) come once. None
    when tuning is turned off."""
    if not tuning.enabled:
        return []
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


@dataclass(frozen=True)
class Choice:
    """The rate tuning chose for one (label, tuning group), and the rates some tuning run of which diverged."""

    lr: float
    diverged_rates: tuple[float, ...] = ()


def choose(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], Choice]:
    """The chosen rate per (label, tuning group: :func:`tuning_group`) from tuning records (see the
    module docstring)."""
    from landbench.ranking import rank

    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["label"], group_of_record(record))].append(
            {**record, "label": record["optimizer"], "phase": "score"}
        )
    chosen = {}
    for key, runs in groups.items():
        lr_of_spec = {spec: float(resolve(spec).kwargs["lr"]) for spec in {r["optimizer"] for r in runs}}
        diverged: dict[str, int] = {spec: 0 for spec in lr_of_spec}
        for run in runs:
            diverged[run["optimizer"]] += is_diverged(run)
        fewest = min(diverged.values())
        candidates = [r for r in runs if diverged[r["optimizer"]] == fewest]
        board = rank(candidates, bootstrap=1)
        if not board.standings:
            raise SpecError(f"tuning {key[0]} on {key[1]}: the grid's rates did not run the same scenarios")
        best = min(board.standings, key=lambda s: (s.mean_rank, -(s.score or 0.0), lr_of_spec[s.optimizer]))
        chosen[key] = Choice(lr_of_spec[best.optimizer], tuple(sorted(lr_of_spec[s] for s, n in diverged.items() if n)))
    return chosen


def scored(scenarios: Sequence[Scenario], tuning: Tuning, chosen: Mapping[tuple[str, str], Choice]) -> list[Scenario]:
    """The suite's scenarios with tuned rates; each carries the ``tuning`` field of its records as
    canonical JSON, which enters its runs' keys, so that a change of grid or tuning runs never
    reuses old scored records. Every ``tuning`` says ``tuned`` (``["lr"]`` or ``[]``), ``lr`` (the
    rate the runs use), ``given_lr`` (the spec's own), ``learning_rate_free`` and ``family``; a tuned
    one adds the grid (``grid``, ``grid_kind``, ``grid_factors``, ``relative_to``), the
    ``diverged_rates``, the tuning ``instances`` and ``seeds`` and the ``criterion``; an untuned one
    says ``why``. With tuning turned off, an optimizer is ranked under its full spec."""
    out: list[Scenario] = []
    for sc in scenarios:
        family = family_of(sc.problem)
        spec = resolve(sc.optimizer)
        given = lr_of(spec) if tunable(spec) else None
        info: dict[str, Any] = {"family": family, "given_lr": given, "learning_rate_free": spec.learning_rate_free}
        if sc.settings.batch_size is not None:  # tuned per batch size (absent otherwise: the keys stay as they were)
            info["batch_size"] = sc.settings.batch_size
        optimizer, label = sc.optimizer, sc.optimizer
        if tuning.enabled and tunable(spec):
            label = label_of(spec)
            choice = chosen[(label, group_of_scenario(sc))]
            optimizer = with_lr(spec, choice.lr)
            info |= {"tuned": ["lr"], "lr": choice.lr, **tuning.grid_for(spec).record(spec)}
            info |= {"diverged_rates": list(choice.diverged_rates), "criterion": CRITERION}
            info |= {"instances": list(tuning.instances), "seeds": list(tuning.seeds)}
        else:
            info |= {"tuned": [], "lr": given, "why": NOT_TUNED if tunable(spec) else NO_LR}
        out.append(replace(sc, optimizer=optimizer, phase="score", label=label, tuning=tuning_json(info)))
    return out
