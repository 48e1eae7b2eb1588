"""What the report's figures show, computed from run records without matplotlib.

Records go through the ranking's rules (:func:`landbench.ranking.scenarios.select` and
:func:`~landbench.ranking.scenarios.by_scenario`): scored runs only, each run once, named by
``label`` where a tuned suite gave one, else by ``optimizer``. What each run achieved is
:mod:`landbench.outcomes`' rule, as in every view: a diverged run escaped nothing, reached no
target and ended in no basin; a target counts when held to the end of the budget. Censored and
diverged runs are never turned into numbers: a quantile of escape steps exists only where enough
runs escaped, and diverged runs are counted, not drawn.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landbench import outcomes
from landbench.errors import SpecError
from landbench.landscapes import family
from landbench.ranking.scenarios import GROUPS, Scenario, by_scenario, group_of, scenario_targets, select
from landbench.spec import bind_params, format_spec, non_defaults, parse_spec

Record = dict[str, Any]
Grouped = dict[Scenario, dict[str, list[Record]]]


def grouped_records(records: Iterable[Record]) -> tuple[Grouped, list[str]]:
    """Scored records grouped by scenario, then optimizer name; and notes (warnings first) on what was
    left out."""
    kept, notes, warnings = select(records)
    return by_scenario(kept), warnings + notes


def optimizers(grouped: Grouped) -> list[str]:
    """Every optimizer name in the grouped records, in order of first appearance."""
    return list(dict.fromkeys(name for runs in grouped.values() for name in runs))


@functools.lru_cache(maxsize=4096)
def problem_params(problem: str) -> tuple[str, dict[str, Any]]:
    """A problem spec's family and all its parameter values (defaults filled in)."""
    spec = parse_spec(problem, what="problem")
    cls = family(spec.name)
    return cls.family, bind_params(cls.family, cls.params, spec.kwargs)


# --- sweeps: one quantity against dim, index or noise -----------------------------------------


@dataclass
class Panel:
    """Runs that differ only in the swept quantity ``axis``: ``series[optimizer][x]`` are the runs at x."""

    title: str
    axis: str
    series: dict[str, dict[float, list[Record]]] = field(default_factory=dict)

    def xs(self) -> list[float]:
        """Every x value of the panel, sorted."""
        return sorted({x for points in self.series.values() for x in points})


def sweep(grouped: Grouped, axis: str, keep: Callable[[Record], bool] = lambda r: True) -> list[Panel]:
    """Panels of runs that differ only in ``axis`` ("dim", "index" or another problem parameter,
    "noise", or "batch_size" on finite sums): one per family and other parameters, noise, batch size
    and step budget, and only those with at least two values of ``axis``. Only scenarios whose runs
    pass ``keep`` (e.g. have a saddle) count."""
    panels: dict[tuple[Any, ...], Panel] = {}
    for scenario, runs in grouped.items():
        if not all(keep(r) for rs in runs.values() for r in rs):
            continue
        try:
            name, values = problem_params(scenario.problem)
        except SpecError:  # a family not installed here (a plug-in's): its runs are ranked, not swept
            continue
        batch = scenario.batch_size
        if axis == "noise":
            x, rest, noise = scenario.noise, values, None
        elif axis == "batch_size":
            if not all(outcomes.is_finite_sum_record(r) for rs in runs.values() for r in rs):
                continue
            examples = next(r["batch_size"] for rs in runs.values() for r in rs)  # n for the full batch
            x, rest, noise, batch = float(batch or examples), values, scenario.noise, 0
        elif axis in values:
            x, rest, noise = float(values[axis]), {k: v for k, v in values.items() if k != axis}, scenario.noise
        else:
            continue
        params = [p for p in family(name).params if p.name in rest]
        title = format_spec(name, non_defaults(params, rest))
        title += "" if noise is None else f", noise {noise:g}"
        title += "" if scenario.noise_model == "gaussian" else f", {scenario.noise_model}"
        title += f", batch {batch}" if batch else ""
        title += f", {scenario.steps} steps"
        order = tuple((k, _sortable(v)) for k, v in rest.items())
        # one noise law and batch size per panel
        key = (name, order, noise or 0.0, scenario.noise_model, batch, scenario.steps)
        panel = panels.setdefault(key, Panel(title, axis))
        for optimizer, rs in runs.items():
            panel.series.setdefault(optimizer, {}).setdefault(x, []).extend(rs)
    return [panels[key] for key in sorted(panels) if len(panels[key].xs()) >= 2]


def _sortable(value: Any) -> tuple[int, float, str]:
    """Parameter values in a sort key: numbers by value, anything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


# --- escape times ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EscapeStats:
    """Escape steps of the runs at one point: quartiles where defined (see :func:`censored_quantile`)."""

    runs: int
    escaped: int
    diverged: int
    q1: float | None
    median: float | None
    q3: float | None


def escape_stats(runs: Sequence[Record]) -> EscapeStats:
    """Quartiles of the escape step over ``runs`` (:func:`landbench.outcomes.summarize`); censored runs
    and diverged runs (even those that escaped before diverging) count as never escaping."""
    summary = outcomes.summarize(runs, targets=())
    escapes = summary.escapes or outcomes.Escapes(tuple(None for _ in runs))
    return EscapeStats(
        runs=summary.runs,
        escaped=escapes.escaped,
        diverged=summary.diverged,
        q1=escapes.quantile(0.25),
        median=escapes.median,
        q3=escapes.quantile(0.75),
    )


#: Whether the run had a designated saddle to escape (:func:`landbench.outcomes.has_saddle`).
has_saddle = outcomes.has_saddle


# --- time to target (ECDF) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ecdf:
    """An optimizer's (run, target) pairs over some scenarios: the times of those reached and held to
    the end of the budget (sorted, floored at 1 evaluation, as the ranking floors them), how many
    pairs there are, and the largest budget of a run."""

    times: np.ndarray
    pairs: int
    budget: float
    scenarios: int
    runs: int
    diverged: int

    def fraction(self, t: float) -> float:
        """The share of pairs reached within ``t`` evaluations."""
        return float(np.searchsorted(self.times, t, side="right")) / self.pairs


def ecdfs(grouped: Grouped) -> dict[str, dict[str, Ecdf]]:
    """ECDFs of time to target per panel ("all", then each family group with targets) and optimizer,
    over the scenarios with targets (f* known) each optimizer ran."""
    hits: dict[tuple[str, str], list[float]] = defaultdict(list)
    count: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # pairs, scenarios, runs, diverged
    budget: dict[tuple[str, str], float] = defaultdict(float)
    for scenario, runs in grouped.items():
        targets = scenario_targets([r for rs in runs.values() for r in rs])
        if not targets:
            continue
        group = by_group(scenario, next(iter(runs.values()))[0])
        for optimizer, rs in runs.items():
            summary = outcomes.summarize(rs, targets)
            for panel in ("all", group):
                key = (panel, optimizer)
                for reached in summary.targets:
                    hits[key] += [max(1.0, float(t)) for t in reached.times if t is not None]
                    budget[key] = max([budget[key], *reached.charged])
                c = count[key]
                c[0] += summary.runs * len(targets)
                c[1] += 1
                c[2] += summary.runs
                c[3] += summary.diverged
    out: dict[str, dict[str, Ecdf]] = defaultdict(dict)
    for (panel, optimizer), (pairs, scenarios, runs, diverged) in sorted(count.items(), key=_ecdf_order):
        times = np.sort(np.asarray(hits[(panel, optimizer)], dtype=float))
        out[panel][optimizer] = Ecdf(times, pairs, budget[(panel, optimizer)], scenarios, runs, diverged)
    return dict(out)


def _ecdf_order(item: tuple[tuple[str, str], list[int]]) -> tuple[bool, tuple[int, str]]:
    panel = item[0][0]
    return panel != "all", _group_order(panel)


# --- distributions per optimizer ----------------------------------------------------------------


@dataclass(frozen=True)
class Values:
    """One metric over an optimizer's runs: the values, runs that diverged, runs where it is null."""

    values: np.ndarray
    diverged: int
    missing: int


def distributions(
    grouped: Grouped, metric: str, by: Callable[[Scenario, Record], str | None]
) -> dict[str, dict[str, Values]]:
    """``metric`` per panel (``by(scenario, record)``, None to leave the run out) and optimizer,
    over the runs that did not diverge; null values are counted as ``missing``."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for scenario, runs in grouped.items():
        for optimizer, rs in runs.items():
            for r in rs:
                panel = by(scenario, r)
                if panel is None:
                    continue
                key = (panel, optimizer)
                value = outcomes.final_value(r, metric)  # None for a diverged run, and where unmeasured
                if outcomes.is_diverged(r):
                    counts[key][0] += 1
                elif value is None:
                    counts[key][1] += 1
                else:
                    values[key].append(value)
    out: dict[str, dict[str, Values]] = defaultdict(dict)
    for panel, optimizer in sorted(set(values) | set(counts)):
        diverged, missing = counts.get((panel, optimizer), (0, 0))
        out[panel][optimizer] = Values(np.asarray(values.get((panel, optimizer), []), dtype=float), diverged, missing)
    return {panel: out[panel] for panel in sorted(out, key=_group_order)}


def by_group(scenario: Scenario, record: Record) -> str:
    """The family group of a run (saddles, fields, ...)."""
    return group_of(str(record.get("family") or problem_params(scenario.problem)[0]))


def by_family(scenario: Scenario, record: Record) -> str:
    """The family of a run."""
    return str(record.get("family") or problem_params(scenario.problem)[0])


def _group_order(name: str) -> tuple[int, str]:
    order = list(GROUPS)
    return (order.index(name) if name in order else len(order), name)


@dataclass(frozen=True)
class Pairs:
    """Paired values (x, y) of an optimizer's runs that did not diverge and have both, and the count diverged."""

    x: np.ndarray
    y: np.ndarray
    diverged: int


def paired(grouped: Grouped, x_of: Callable[[Record], float | None], y_metric: str) -> dict[str, dict[str, Pairs]]:
    """Per family and optimizer: ``x_of(run)`` against ``run[y_metric]``, over runs with both."""
    xs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    diverged: dict[tuple[str, str], int] = defaultdict(int)
    for scenario, runs in grouped.items():
        for optimizer, rs in runs.items():
            for r in rs:
                key = (by_family(scenario, r), optimizer)
                diverged[key] += outcomes.is_diverged(r)
                x, y = x_of(r), outcomes.final_value(r, y_metric)
                if not outcomes.is_diverged(r) and x is not None and y is not None:
                    xs[key].append((float(x), float(y)))
    out: dict[str, dict[str, Pairs]] = defaultdict(dict)
    for key in sorted(set(xs) | set(diverged)):
        points = np.asarray(xs.get(key, []), dtype=float).reshape(-1, 2)
        out[key[0]][key[1]] = Pairs(points[:, 0], points[:, 1], diverged[key])
    return dict(out)


# --- basins: the share of runs that end in the wide well ---------------------------------------


def wide_well(problem: str) -> int:
    """The index of the widest well of a ``basins`` problem (the first of equally wide ones)."""
    from landbench.landscapes.basins import well_index

    return well_index(problem, "wide")


def is_basins(record: Record) -> bool:
    """Whether the run is on the basins family (its record says which basin it ended in)."""
    return record.get("family") == "basins" and "basin" in record


@dataclass(frozen=True)
class Share:
    """Runs that ended in the wide basin, out of all runs (a diverged run ended in none, as everywhere),
    with a 95 % Wilson interval."""

    wide: int
    runs: int
    diverged: int
    low: float
    high: float

    @property
    def share(self) -> float:
        return self.wide / self.runs if self.runs else math.nan


def wide_share(runs: Sequence[Record]) -> Share:
    """The share of ``runs`` of a basins problem that ended in its wide well: the basins family's own
    summary (:func:`landbench.landscapes.basins.summarize_basins`), diverged runs counted as misses."""
    from landbench.landscapes.basins import summarize_basins

    summary = summarize_basins(runs)
    low, high = wilson(summary["wide"], summary["runs"])
    return Share(summary["wide"], summary["runs"], summary["diverged"], low, high)


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default); (nan, nan) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
