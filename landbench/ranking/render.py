"""The leaderboard as strict JSON, as Markdown and as a terminal table; warnings always come first."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from landbench.ranking.leaderboard import Leaderboard, Pair, ScenarioResult
    from landbench.ranking.scenarios import RunSummary

#: The taus at which Markdown shows the performance profiles (clipped to tau_max).
PROFILE_TAUS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)

METHOD = (
    "Scenarios are (problem, noise and its law, batch size, steps); instances and seeds are repetitions. "
    "What counts (`landbench.outcomes`): "
    "a diverged run (its loss became NaN or inf within the budget) is a failure for every outcome, whatever it did "
    "before, and has no final gap. A run reaches a target on the loss gap f - f* only if it holds it: the gap is at "
    "most the target at the end of the budget, and its time is the evaluations it had spent by the step from which "
    "the gap stays within the target to the end; a run that touches a target and leaves it has not reached it "
    "(COCO's first hit is kept in the records as `first_hit_*`, for comparison only). Per scenario and target, "
    "ERT = (evaluations of successful runs to the step from which they hold the target + the whole budget of every "
    "unsuccessful run, diverged or not) / successes (COCO's expected running time; null when no run succeeds), "
    "beside the success rate. The reference target is the hardest one some optimizer reaches in at least half its "
    "runs. Per scenario, optimizers are ranked by the share of (run, target) pairs reached and held over every "
    "target of the scenario (COCO's runtime ECDF at the budget; a diverged run misses every target), then ERT at "
    "the reference target, then diverged share, then median final gap (final loss where f* is unknown) with "
    "diverged runs ranked worse than any value (ties share the mean rank); a median that falls on a diverged run "
    "is not a number (`-` in tables, null in JSON). "
    "Mean rank: {confidence:.0%} percentile-bootstrap CI over scenarios ({bootstrap} resamples, seed {seed}). "
    "Score: area under the performance profile of the ERT at the reference target (Dolan and More 2002), "
    "1/(tau_max-1) * integral of rho(tau) from 1 to tau_max = {tau_max:g}, on a linear tau axis as in AlgoPerf "
    "(Dahl et al. 2023). Pairs: Wilcoxon signed-rank test of the per-scenario ranks, Holm-adjusted over all pairs; "
    "a difference is called when p_holm < {alpha:g}."
)
#: What replaces the per-scenario order when the ranking is by test loss (``objective="test"``).
TEST_METHOD = (
    " Ranked by test loss: only finite-sum scenarios, and per scenario optimizers are ordered by the share of "
    "diverged runs, then the median population (test) loss at the last iterate, diverged runs ranked worse than any "
    "value; the training-loss targets, times and profiles do not enter."
)


def as_dict(board: Leaderboard) -> dict[str, Any]:
    """The leaderboard as JSON-ready data, with every non-finite number as null."""
    data = {
        "options": board.options,
        "warnings": board.warnings,
        "notes": board.notes,
        "standings": [asdict(s) for s in board.standings],
        "pairwise": [asdict(p) for p in board.pairwise],
        "profile": asdict(board.profile),
        "groups": [asdict(g) for g in board.groups],
        "contestants": [
            asdict(board.contestants[s.optimizer]) for s in board.standings if s.optimizer in board.contestants
        ],
        "scenarios": [_scenario_dict(r, board.options.get("objective") == "test") for r in board.scenarios],
    }
    return _strict(data)


def _scenario_dict(result: ScenarioResult, test: bool = False) -> dict[str, Any]:
    k = result.reference
    return {
        "problem": result.scenario.problem,
        "noise": result.scenario.noise,
        "noise_model": result.scenario.noise_model,
        "batch_size": result.scenario.batch_size or None,
        "steps": result.scenario.steps,
        "family": result.family,
        "group": result.group,
        "time_unit": result.time_unit,
        "targets": list(result.targets),
        "reference_target": None if k is None else result.targets[k],
        "final_metric": "test_loss" if test else "loss_gap" if result.targets else "final_loss",
        "optimizers": {
            o: {
                "rank": result.ranks[o],
                "runs": s.runs,
                "diverged": s.diverged,
                "instances": list(s.instances),
                "success_rate": [n / s.runs for n in s.successes],
                "ert": list(s.ert),
                "reference_success_rate": None if k is None else s.success_rate(k),
                "reference_ert": None if k is None else s.ert[k],
                "reached_share": s.reached_share if result.targets else None,
                "median_final": s.median_final,
                "median_test_loss": s.median_test,
            }
            for o, s in result.summaries.items()
        },
    }


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def to_text(board: Leaderboard) -> str:
    """For the terminal: warnings, standings, the calls on pairs, the breakdown by family."""
    lines = _headline(board) + [f"WARNING: {w}" for w in board.warnings]
    if not board.standings:
        return "\n".join(lines + [f"note: {n}" for n in board.notes])
    lines += ["", _aligned(*_standings_table(board))]
    lines += ["", f"Pairs (Wilcoxon signed-rank over scenarios, Holm-adjusted p < {board.options['alpha']:g}):"]
    lines += [f"  {_verdict(p)}" for p in board.pairwise] or ["  (one optimizer: no pairs)"]
    lines += ["", "By family (mean rank / score):", _aligned(*_groups_table(board))]
    lines += [f"note: {n}" for n in board.notes]
    lines += ["", "Per-scenario tables: --markdown or --json."]
    return "\n".join(lines)


def to_markdown(board: Leaderboard) -> str:
    """A Markdown report: warnings, standings, optimizers, pairs, families, profiles, per-scenario
    tables, method (the sections of :func:`markdown_sections`, in that order)."""
    lines = ["# landbench leaderboard", ""]
    for section in markdown_sections(board):
        lines += ([f"## {section.title}", ""] if section.title else []) + [section.body, ""]
        for title, body in section.parts:
            lines += [f"### {title}", "", body, ""]
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class Section:
    """A part of the Markdown leaderboard: a heading (none for the lead), its text, and sub-parts
    (heading, text) such as the per-scenario tables."""

    key: str
    title: str
    body: str
    parts: tuple[tuple[str, str], ...] = ()


def markdown_sections(board: Leaderboard) -> list[Section]:
    """The leaderboard's Markdown by section, so that a report can place each where it reads best.

    Keys: ``lead`` (headline and warnings), then where anything is ranked ``standings``,
    ``optimizers``, ``pairs``, ``families``, ``profiles`` (if any scenario has a reference target),
    ``scenarios`` (one part per scenario); always ``method`` (with the notes)."""
    lead = "\n\n".join([*_headline(board), *(f"> **Warning:** {w}" for w in board.warnings)])
    sections = [Section("lead", "", lead)]
    if board.standings:
        sections += [
            Section("standings", "Standings", _markdown(*_standings_table(board))),
            Section("optimizers", "Optimizers", _contestants_markdown(board)),
            Section("pairs", "Pairs", _pairs_markdown(board)),
            Section("families", "By family (mean rank / score)", _markdown(*_groups_table(board))),
        ]
        if board.profile.scenarios:
            sections.append(Section("profiles", "Performance profiles", _markdown(*_profile_table(board))))
        order = [s.optimizer for s in board.standings]
        test = board.options.get("objective") == "test"
        parts = tuple(
            (r.scenario.label, f"{_scenario_caption(r, test)}\n\n{_markdown(*_scenario_table(r, order, test))}")
            for r in board.scenarios
        )
        sections.append(Section("scenarios", "Scenarios", "One table per ranked scenario.", parts))
    method = METHOD.format(**board.options) + (TEST_METHOD if board.options.get("objective") == "test" else "")
    notes = "\n".join(f"- note: {n}" for n in board.notes)
    sections.append(Section("method", "Method", method + (f"\n\n{notes}" if notes else "")))
    return sections


def _headline(board: Leaderboard) -> list[str]:
    timed = sum(bool(r.targets) for r in board.scenarios)
    if board.options.get("objective") == "test":
        return [
            f"{len(board.standings)} optimizers on {len(board.scenarios)} finite-sum scenarios, ranked by the "
            "median test (population) loss at the last iterate"
        ]
    return [
        f"{len(board.standings)} optimizers on {len(board.scenarios)} scenarios "
        f"({timed} with targets, {len(board.scenarios) - timed} ranked by final loss)"
    ]


Table = tuple[Sequence[str], Sequence[Sequence[str]]]


def _standings_table(board: Leaderboard) -> Table:
    level = f"{board.options['confidence']:.0%} CI"
    header = ["#", "optimizer", "mean rank", level, f"score (tau<={board.options['tau_max']:g})", "best in"]
    rows = [
        [str(i + 1), s.optimizer, f"{s.mean_rank:.2f}", f"[{s.ci_low:.2f}, {s.ci_high:.2f}]", _num(s.score, ".3f")]
        + [f"{s.best_in}/{len(board.scenarios)}"]
        for i, s in enumerate(board.standings)
    ]
    return header, rows


def _verdict(pair: Pair) -> str:
    if pair.better is None:
        return (
            f"{pair.first} ~ {pair.second}: no significant difference "
            f"({pair.first} wins {pair.win_rate:.0%}, p_holm = {pair.p_holm:.3g})"
        )
    worse = pair.second if pair.better == pair.first else pair.first
    rate = pair.win_rate if pair.better == pair.first else 1 - pair.win_rate
    return f"{pair.better} beats {worse}: wins {rate:.0%} of scenarios (ties half), p_holm = {pair.p_holm:.3g}"


def _pairs_table(pairs: Sequence[Pair]) -> Table:
    header = ["first", "second", "first's win rate", "p", "p (Holm)", "call"]
    rows = [
        [p.first, p.second, f"{p.win_rate:.0%}", f"{p.p_value:.3g}", f"{p.p_holm:.3g}"]
        + [f"{p.better} better" if p.better else "no significant difference"]
        for p in pairs
    ]
    return header, rows


def _pairs_markdown(board: Leaderboard) -> str:
    """The pairs with a significant difference as a table, and the others in a collapsed
    ``<details>`` element (GitHub and the report's HTML show it closed)."""
    alpha = board.options["alpha"]
    called = [p for p in board.pairwise if p.significant]
    rest = [p for p in board.pairwise if not p.significant]
    if not board.pairwise:
        return "One optimizer: no pairs."
    lines = [
        f"{len(called)} of {len(board.pairwise)} pairs differ significantly (Wilcoxon signed-rank over "
        f"scenarios, Holm-adjusted p < {alpha:g})" + (":" if called else ".")
    ]
    if called:
        lines += ["", _markdown(*_pairs_table(called))]
    if rest:
        lines += [
            "",
            "<details>",
            f"<summary>{len(rest)} pairs without a significant difference</summary>",
            "",
            _markdown(*_pairs_table(rest)),
            "",
            "</details>",
        ]
    return "\n".join(lines)


#: What the columns of the optimizers' table mean.
CONTESTANTS = (
    'Learning rate: the one tuning chose per family (the records\' `tuning`), or "as given" where the '
    "optimizer ran at its spec's rate. Batch mode: how its runs were stepped (runs per mode if mixed). "
    "Loop time: wall time of the optimisation loops of its runs on the ranked scenarios, each batch's "
    "`wall_s` shared equally among its `batch_runs` runs and summed; metrics time: the same for the "
    "curvature metrics after the loop (`metrics_s`). Times compare only between runs on the same machine "
    "and device."
)


def _contestants_markdown(board: Leaderboard) -> str:
    """What each optimizer ran with (see :mod:`landbench.ranking.contestants`), with what the numbers are."""
    return CONTESTANTS + "\n\n" + _markdown(*_contestants_table(board))


def _contestants_table(board: Leaderboard) -> Table:
    header = ["#", "optimizer", "learning rate", "batch mode", "loop time (s)", "metrics time (s)"]
    rows = []
    for i, standing in enumerate(board.standings):
        facts = board.contestants.get(standing.optimizer)
        if facts is None:
            rows.append([str(i + 1), standing.optimizer, "-", "-", "-", "-"])
            continue
        modes = ", ".join(m if len(facts.modes) == 1 else f"{m} ({n})" for m, n in facts.modes.items())
        rows.append(
            [str(i + 1), standing.optimizer, _tuned(facts.tuned), modes]
            + [_num(facts.loop_s, ".3g"), _num(facts.metrics_s, ".3g")]
        )
    return header, rows


def _tuned(tuned: dict[str, list[float]]) -> str:
    """Tuned rates per family, grouped by rate: ``0.01 (basins, saddle); 0.1 (valley)``."""
    if not tuned:
        return "as given"
    by_rate: dict[str, list[str]] = {}
    for family, rates in tuned.items():
        by_rate.setdefault(" or ".join(f"{r:g}" for r in rates), []).append(family)
    return "; ".join(f"{rate} ({', '.join(families)})" for rate, families in sorted(by_rate.items(), key=_rate_key))


def _rate_key(item: tuple[str, list[str]]) -> float:
    return float(item[0].split(" or ")[0])


def _groups_table(board: Leaderboard) -> Table:
    header = ["optimizer"] + [f"{g.group} ({g.scenarios})" for g in board.groups]
    rows = [
        [s.optimizer] + [f"{g.mean_rank[s.optimizer]:.2f} / {_num(g.score[s.optimizer], '.2f')}" for g in board.groups]
        for s in board.standings
    ]
    return header, rows


def _profile_table(board: Leaderboard) -> Table:
    profile = board.profile
    grid = sorted({min(t, profile.tau_max) for t in PROFILE_TAUS})
    at = np.searchsorted(profile.taus, grid, side="right") - 1
    header = ["optimizer"] + [f"rho({t:g})" for t in grid]
    rows = [[s.optimizer] + [f"{profile.rho[s.optimizer][i]:.2f}" for i in at] for s in board.standings]
    return header, rows


def _scenario_caption(result: ScenarioResult, test: bool = False) -> str:
    if test:
        return (
            f"Family {result.family} ({result.group}); ranked by the share of diverged runs, then the median test "
            "(population) loss at the last iterate, diverged runs worst."
        )
    if not result.targets:
        reference = "none (f* unknown: ranked by final loss)"
    elif result.reference is None:
        reference = "none (no target reached by any optimizer in half its runs)"
    else:
        reference = f"{result.targets[result.reference]:g}"
    held = (
        f" Pairs held: the share of (run, target) pairs reached and held over the {len(result.targets)} targets; "
        "success and ERT: at the reference target."
        if result.targets
        else ""
    )
    return f"Family {result.family} ({result.group}); reference target {reference}; time in {result.time_unit}.{held}"


def _scenario_table(result: ScenarioResult, order: list[str], test: bool = False) -> Table:
    if test:
        header = ["optimizer", "rank", "diverged", "median test loss"]
        rows = [
            [o, f"{result.ranks[o]:g}", f"{s.diverged}/{s.runs}", _num(s.median_test, ".3g")]
            for o, s in ((o, result.summaries[o]) for o in order)
        ]
        return header, rows
    final = "median final gap" if result.targets else "median final loss"
    tested = any(s.median_test is not None for s in result.summaries.values())
    header = ["optimizer", "rank", "pairs held", "success", "ERT", "diverged", final]
    header += ["median test loss"] if tested else []
    rows = []
    for o in order:
        s = result.summaries[o]
        k = result.reference
        held = f"{s.reached_share:.0%}" if result.targets else "-"
        success = "-" if k is None else f"{s.success_rate(k):.0%}"
        ert = "-" if k is None else _num(s.ert[k], ".4g")
        row = [o, f"{result.ranks[o]:g}", held, success, ert, f"{s.diverged}/{s.runs}", _median_cell(s)]
        rows.append(row + ([_num(s.median_test, ".3g")] if tested else []))
    return header, rows


def _median_cell(summary: RunSummary) -> str:
    """The median final gap (or loss) of a table row: ``-`` where it is not a number (it falls on a
    diverged run, or a run has no value: see :func:`landbench.outcomes.median_of`), and "all
    diverged" only where every run diverged."""
    if math.isfinite(summary.median_final):
        return f"{summary.median_final:.3g}"
    return "all diverged" if summary.runs and summary.diverged == summary.runs else "-"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows])


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])
