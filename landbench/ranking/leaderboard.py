"""The leaderboard: :func:`rank` turns run records into per-scenario tables, ranks and tests.

Per scenario (see :mod:`landbench.ranking.scenarios`) and optimizer: the expected running time
(ERT) and success rate for every target, the share of diverged runs and the median final gap, as
:mod:`landbench.outcomes` defines them: a run succeeds at a target when it holds it at the end of
its budget, a diverged run is a failure for every outcome, and every failure is charged its whole
budget.

* Reference target of a scenario: the hardest target that at least one optimizer reaches in at
  least half of its runs (none if no target is reached that often, or f* is unknown). The time to
  target of an optimizer is its ERT at the reference target (``inf`` if it never reaches it).
* Per-scenario rank: optimizers are ordered by (1) the share of (run, target) pairs reached and
  held, over every target of the scenario, higher first (COCO's runtime ECDF at the budget: a run
  that diverged misses every target, however far it got, so an optimizer that diverges in half its
  runs holds at most half the pairs); (2) ERT at the reference target, lower first; (3) share of
  diverged runs, lower first; (4) median final loss gap (final loss without f*), diverged runs
  ranked worst, lower first. Without targets (f* unknown) only (3) and (4) apply. Ties share their
  mean rank.
* Mean rank over scenarios, with a percentile-bootstrap CI that resamples scenarios.
* Performance profiles of the times to target over the scenarios with targets (f* known), and
  their area up to ``tau_max`` as the score (:mod:`landbench.ranking.profiles`). Times are floored
  at 1 (the resolution of the counters: a start point already within the target costs 0).
* Pairwise: win rate (ties half) and a two-sided Wilcoxon signed-rank test of the per-scenario
  rank differences, Holm-adjusted over all pairs; a difference is called only when the adjusted
  p < ``alpha``.
* Per group of families (saddles, fields, ...): mean rank, score and scenarios won.

``objective="test"`` ranks the finite-sum scenarios (:mod:`landbench.landscapes.finite_sum`) by what
generalises instead: per scenario by (1) the share of diverged runs, lower first, then (2) the median
population (test) loss at the last iterate, diverged runs ranked worst; the training-loss targets do
not enter (no times, no profiles), and scenarios of other families are left out with a note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landbench.errors import LandbenchError
from landbench.outcomes import is_finite_sum_record
from landbench.ranking import contestants, profiles, render
from landbench.ranking.scenarios import (
    TIME_UNIT,
    RunSummary,
    Scenario,
    by_scenario,
    common_scenarios,
    group_of,
    instance_warnings,
    provenance_report,
    scenario_targets,
    select,
    summarize,
)
from landbench.ranking.stats import average_ranks, bootstrap_mean_ci, holm, signed_rank_test, win_rate


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario: its targets, reference target, each optimizer's summary and rank."""

    scenario: Scenario
    family: str
    group: str
    time_unit: str
    targets: tuple[float, ...]
    reference: int | None
    summaries: dict[str, RunSummary]
    ranks: dict[str, float]

    def time_to_target(self, optimizer: str) -> float:
        """ERT at the reference target, ``inf`` where it is never reached or there is none."""
        return math.inf if self.reference is None else self.summaries[optimizer].ert[self.reference]


@dataclass(frozen=True)
class Standing:
    """An optimizer's place: mean rank with its bootstrap CI, profile score, scenarios won."""

    optimizer: str
    mean_rank: float
    ci_low: float
    ci_high: float
    score: float | None
    best_in: int


@dataclass(frozen=True)
class Pair:
    """``first`` (the better mean rank) against ``second``: win rate, p-values, the call."""

    first: str
    second: str
    win_rate: float
    p_value: float
    p_holm: float
    significant: bool
    better: str | None


@dataclass(frozen=True)
class GroupRow:
    """The breakdown over one group of families."""

    group: str
    scenarios: int
    mean_rank: dict[str, float]
    score: dict[str, float | None]
    best_in: dict[str, int]


@dataclass(frozen=True)
class Profile:
    """rho_o(tau) at the breakpoints ``taus`` (1 to ``tau_max``), over ``scenarios`` scenarios."""

    tau_max: float
    scenarios: int
    taus: list[float]
    rho: dict[str, list[float]]


@dataclass
class Leaderboard:
    """Everything :func:`rank` found; render with :meth:`to_text`, :meth:`to_markdown`, :meth:`as_dict`."""

    standings: list[Standing]
    scenarios: list[ScenarioResult]
    profile: Profile
    pairwise: list[Pair]
    groups: list[GroupRow]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    contestants: dict[str, contestants.Contestant] = field(default_factory=dict)  # tuned lr, batch modes, times

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready and strict (no NaN or infinity: those are null)."""
        return render.as_dict(self)

    def to_markdown(self) -> str:
        return render.to_markdown(self)

    def to_text(self) -> str:
        return render.to_text(self)


def rank(
    records: Iterable[dict[str, Any]],
    *,
    alpha: float = 0.05,
    tau_max: float = 4.0,
    bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    objective: str = "train",
) -> Leaderboard:
    """Rank the optimizers of ``records`` (run records as written by landbench); see the module
    docstring. ``objective``: ``"train"`` (the training loss: targets, times, final gap) or ``"test"``
    (the population loss of finite-sum families)."""
    _check_options(alpha, tau_max, bootstrap, seed, confidence, objective)
    kept, notes, dropped = select(records)
    grouped = by_scenario(kept)
    empty_reason = "no scenario was run by every optimizer: nothing to rank"
    if objective == "test":
        finite = {
            s: runs for s, runs in grouped.items() if all(is_finite_sum_record(r) for rs in runs.values() for r in rs)
        }
        if len(finite) < len(grouped):
            notes = notes + [
                f"{len(grouped) - len(finite)} scenarios without a test loss (not finite sums) left out of the "
                "ranking by test loss"
            ]
        if grouped and not finite:
            empty_reason = "no scenario is a finite sum (none has a test loss): nothing to rank by test loss"
        grouped = finite
    optimizers = sorted({o for runs in grouped.values() for o in runs})
    common, warnings = common_scenarios(grouped, optimizers)
    warnings = dropped + warnings
    results = [_scenario_result(s, grouped[s], optimizers, objective) for s in common]
    runs = {r.scenario: [x for o in optimizers for x in grouped[r.scenario][o]] for r in results}
    mixed, harmless = provenance_report(runs)
    warnings += mixed + instance_warnings({r.scenario: r.summaries for r in results})
    options = {
        "alpha": alpha,
        "tau_max": tau_max,
        "bootstrap": bootstrap,
        "seed": seed,
        "confidence": confidence,
        "objective": objective,
    }
    if not results:
        warnings.append(empty_reason)
        return Leaderboard([], [], Profile(tau_max, 0, [], {}), [], [], warnings, notes + harmless, options)
    ranks = np.array([[r.ranks[o] for o in optimizers] for r in results])
    low, high = bootstrap_mean_ci(ranks, resamples=bootstrap, seed=seed, confidence=confidence)
    scores, profile = _profile(results, optimizers, tau_max)
    best = ranks == ranks.min(axis=1, keepdims=True)
    standings = sorted(
        (
            Standing(o, float(ranks[:, i].mean()), float(low[i]), float(high[i]), scores[o], int(best[:, i].sum()))
            for i, o in enumerate(optimizers)
        ),
        key=lambda s: (s.mean_rank, -(s.score or 0.0), s.optimizer),
    )
    order = [s.optimizer for s in standings]
    return Leaderboard(
        standings=standings,
        scenarios=results,
        profile=profile,
        pairwise=_pairwise(results, order, alpha),
        groups=_groups(results, order, tau_max),
        contestants=contestants.facts(grouped, common),
        warnings=warnings,
        notes=notes + harmless,
        options=options,
    )


#: What a ranking can rank by: the training loss, or the population loss of finite sums.
OBJECTIVES = ("train", "test")


#: The most bootstrap resamples ``rank`` draws (their indices are resamples x scenarios integers at once).
MAX_BOOTSTRAP = 100_000


def _check_options(alpha: float, tau_max: float, bootstrap: int, seed: int, confidence: float, objective: str) -> None:
    if objective not in OBJECTIVES:
        raise LandbenchError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not 0 < alpha < 1:
        raise LandbenchError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 1 < tau_max < math.inf:
        raise LandbenchError(f"tau_max must be a finite number > 1, got {tau_max!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or not 1 <= bootstrap <= MAX_BOOTSTRAP:
        raise LandbenchError(f"bootstrap must be a number of resamples from 1 to {MAX_BOOTSTRAP}, got {bootstrap!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LandbenchError(f"seed must be a non-negative integer (the bootstrap's seed), got {seed!r}")
    if not 0 < confidence < 1:
        raise LandbenchError(f"confidence must be in (0, 1), got {confidence!r}")


def _scenario_result(
    scenario: Scenario, runs: dict[str, list[dict[str, Any]]], optimizers: list[str], objective: str = "train"
) -> ScenarioResult:
    everything = [r for o in optimizers for r in runs[o]]
    targets = scenario_targets(everything) if objective == "train" else ()
    summaries = {o: summarize(runs[o], targets) for o in optimizers}
    reference = _reference_target(summaries, len(targets))
    keys = [_rank_key(summaries[o], reference, objective) for o in optimizers]
    return ScenarioResult(
        scenario=scenario,
        family=str(everything[0].get("family", "unknown")),
        group=group_of(str(everything[0].get("family", "unknown"))),
        time_unit=TIME_UNIT,
        targets=targets,
        reference=reference,
        summaries=summaries,
        ranks=dict(zip(optimizers, average_ranks(keys))),
    )


def _reference_target(summaries: dict[str, RunSummary], count: int) -> int | None:
    """Index of the hardest target some optimizer reaches in at least half of its runs, if any."""
    reached = [k for k in range(count) if any(2 * s.successes[k] >= s.runs for s in summaries.values())]
    return max(reached) if reached else None


def _rank_key(summary: RunSummary, reference: int | None, objective: str = "train") -> tuple[float, ...]:
    """Smaller is better: see the module docstring for the order of the criteria."""
    if objective == "test":
        return (summary.diverged / summary.runs, math.inf if summary.median_test is None else summary.median_test)
    tail = (summary.diverged / summary.runs, summary.median_final)
    if not summary.targets:
        return tail
    ert = math.inf if reference is None else summary.ert[reference]
    return (-summary.reached_share, ert, *tail)


def _profile(results: list[ScenarioResult], optimizers: list[str], tau_max: float) -> tuple[dict, Profile]:
    """Scores and profiles over the scenarios with targets (scores None when there are none)."""
    timed = [r for r in results if r.targets]
    if not timed:
        return dict.fromkeys(optimizers), Profile(tau_max, 0, [], {})
    times = np.maximum(np.array([[r.time_to_target(o) for o in optimizers] for r in timed]), 1.0)
    ratios = profiles.performance_ratios(times)
    taus = profiles.breakpoints(ratios, tau_max)
    rho = profiles.profile(ratios, taus)
    scores = profiles.profile_score(ratios, tau_max)
    return (
        {o: float(scores[i]) for i, o in enumerate(optimizers)},
        Profile(tau_max, len(timed), taus.tolist(), {o: rho[:, i].tolist() for i, o in enumerate(optimizers)}),
    )


def _pairwise(results: list[ScenarioResult], order: list[str], alpha: float) -> list[Pair]:
    tests = []
    for i, first in enumerate(order):
        for second in order[i + 1 :]:
            a = [r.ranks[first] for r in results]
            b = [r.ranks[second] for r in results]
            p, side = signed_rank_test([x - y for x, y in zip(a, b)])
            tests.append((first, second, win_rate(a, b), p, side))
    adjusted = holm([t[3] for t in tests])
    pairs = []
    for (first, second, rate, p, side), p_holm in zip(tests, adjusted):
        significant = p_holm < alpha
        better = (first if side < 0 else second) if significant else None
        pairs.append(Pair(first, second, rate, p, p_holm, significant, better))
    return pairs


def _groups(results: list[ScenarioResult], order: list[str], tau_max: float) -> list[GroupRow]:
    rows = []
    for group in sorted({r.group for r in results}):
        members = [r for r in results if r.group == group]
        ranks = np.array([[r.ranks[o] for o in order] for r in members])
        best = ranks == ranks.min(axis=1, keepdims=True)
        scores, _ = _profile(members, order, tau_max)
        rows.append(
            GroupRow(
                group=group,
                scenarios=len(members),
                mean_rank={o: float(ranks[:, i].mean()) for i, o in enumerate(order)},
                score=scores,
                best_in={o: int(best[:, i].sum()) for i, o in enumerate(order)},
            )
        )
    return rows
