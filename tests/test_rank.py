"""The leaderboard against hand-computed numbers: ERT, profiles, bootstrap, Holm, Wilcoxon, verdicts."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

import landbench
from landbench.errors import LandbenchError
from landbench.ranking import group_of, rank
from landbench.ranking.profiles import breakpoints, performance_ratios, profile, profile_score
from landbench.ranking.stats import average_ranks, bootstrap_mean_ci, holm, signed_rank_test, win_rate

TARGETS = [1.0, 0.01]


def make_record(
    optimizer: str,
    problem: str = "quadratic(dim=5)",
    *,
    family: str = "quadratic",
    seed: int = 0,
    instance: int = 0,
    steps: int = 100,
    hits: list[int | None] | None = None,
    spent: int | None = None,
    diverged: bool = False,
    final: float = 1.0,
    f_star: float | None = 0.0,
    targets: list[float] = TARGETS,
    **fields: Any,
) -> dict[str, Any]:
    """A run record with the fields ranking reads; ``hits`` are the times from which each target is
    held, in evaluations (and steps: one per step), also written as first hits; ``spent`` is where a
    diverged run diverged (every run is charged its whole budget, ``grad_evals = steps``). Like an old
    or hand-written record, a diverged one may hold hits and a final loss: the ranking must read it
    under landbench.outcomes' policy all the same."""
    hits = hits if hits is not None else [None] * len(targets)
    record = {
        "problem": problem,
        "optimizer": optimizer,
        "family": family,
        "dim": 5,
        "instance": instance,
        "seed": seed,
        "steps": steps,
        "noise": 0.0,
        "dtype": "float64",
        "device": "cpu",
        "final_loss": final,
        "f_star": f_star,
        "loss_gap": None if f_star is None else final - f_star,
        "targets": list(targets),
        "reach_steps": None if f_star is None else list(hits),
        "reach_evals": None if f_star is None else list(hits),
        "first_hit_steps": None if f_star is None else list(hits),
        "first_hit_evals": None if f_star is None else list(hits),
        "diverged": diverged,
        "diverged_step": spent if diverged else None,
        "grad_evals": steps,
        "schema": 3,
        "batch_mode": "batched",
        "landbench_version": "0.1.0",
        "torch_version": "2.13.0",
        "settings": {"dtype": "float64", "targets": list(targets), "curve_points": 50},
        "key": f"{optimizer}|{problem}|{instance}|{seed}|{steps}",
    }
    record.update(fields)
    return record


def strict_json(board: Any) -> dict[str, Any]:
    """The board's dict, after a strict JSON round trip (fails on NaN or infinity)."""
    return json.loads(json.dumps(board.as_dict(), allow_nan=False))


# --- expected running time and success rates ----------------------------------------------------


def hand_made_runs(**extra: Any) -> list[dict[str, Any]]:
    """Four runs of "a" on one scenario (targets 1 and 0.01), one diverged, plus a reference "b"."""
    return [
        make_record("a", seed=0, hits=[10, 50], final=0.005, **extra),
        make_record("a", seed=1, hits=[20, None], final=0.5, **extra),
        make_record("a", seed=2, hits=[None, None], final=3.0, **extra),
        make_record("a", seed=3, hits=[5, None], diverged=True, spent=30, final=1e30, **extra),
        make_record("b", seed=0, hits=[None, None], final=7.0, **extra),
    ]


def test_ert_and_success_rate_follow_coco_on_hand_made_runs() -> None:
    """Target 1: held from 10 and 20 evaluations; one run spends its budget of 100 without; the
    diverged run had touched it at 5 but a diverged run reaches nothing and is charged its whole
    budget: ERT = (10 + 20 + 100 + 100) / 2 = 115, success 2/4. Target 0.01: one success at 50, the
    others charged 100 each: ERT = 350, success 1/4. The median final gap ranks the diverged run
    worst: median(0.005, 0.5, 3, worst) = (0.5 + 3) / 2 = 1.75."""
    a = strict_json(rank(hand_made_runs()))["scenarios"][0]["optimizers"]["a"]
    assert a["ert"] == pytest.approx([115.0, 350.0])
    assert a["success_rate"] == [0.5, 0.25]
    assert (a["runs"], a["diverged"], a["median_final"]) == (4, 1, 1.75)


def test_records_of_an_older_schema_are_left_out_with_a_warning() -> None:
    """Schema 2 counted a target touched once as reached: such records are never mixed in."""
    runs = hand_made_runs()
    old = make_record("a", seed=7, hits=[1, 1], schema=2)
    old["hit_steps"] = old["hit_evals"] = old.pop("reach_steps")
    board = rank([*runs, old])
    assert strict_json(board)["scenarios"][0]["optimizers"]["a"]["runs"] == 4
    assert any("1 records of schema 2 left out" in w for w in board.warnings)
    newer = make_record("a", seed=7, schema=4)
    assert any("newer landbench" in w for w in rank([*runs, newer]).warnings)


def test_an_optimizer_that_never_reaches_a_target_has_null_ert_and_zero_success() -> None:
    b = strict_json(rank(hand_made_runs()))["scenarios"][0]["optimizers"]["b"]
    assert b["ert"] == [None, None] and b["success_rate"] == [0.0, 0.0]


def test_the_reference_target_is_the_hardest_reached_by_someone_in_half_its_runs() -> None:
    """Optimizer "a" holds 1 in 2 of 4 runs (half) and 0.01 in 1 of 4 (less): the reference is 1."""
    scenario = strict_json(rank(hand_made_runs()))["scenarios"][0]
    assert scenario["reference_target"] == 1.0
    assert scenario["optimizers"]["a"]["reference_ert"] == pytest.approx(115.0)


def test_diverged_runs_are_failures_never_numbers() -> None:
    """A diverged run's last loss (a small 1e-3 here) never enters a median as a number: it ranks
    worst; all-diverged gives null and ranks below an optimizer that made no progress."""
    runs = [make_record("steady", seed=s, final=g) for s, g in enumerate([1.0, 3.0, 1e30])]  # median 3
    runs += [make_record("wild", seed=s, final=g, diverged=s == 2, spent=4) for s, g in enumerate([1.0, 3.0, 1e-3])]
    runs += [make_record("dead", seed=s, final=1e-3, diverged=True, spent=3) for s in range(3)]
    board = strict_json(rank(runs))
    table = board["scenarios"][0]["optimizers"]
    assert table["steady"]["median_final"] == 3.0
    assert table["wild"]["median_final"] == 3.0  # median(1, 3, worst): the diverged run is not its 1e-3
    assert table["dead"]["median_final"] is None
    assert [s["optimizer"] for s in board["standings"]] == ["steady", "wild", "dead"]


# --- statistics on hand examples ----------------------------------------------------------------


def test_average_ranks_share_ties() -> None:
    assert average_ranks([(0, 5.0), (0, 1.0), (1, 0.0), (0, 1.0)]) == [3.0, 1.5, 4.0, 1.5]
    assert average_ranks([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]


def test_holm_on_the_classic_four_p_values() -> None:
    """Holm 1979: sorted 0.005, 0.01, 0.03, 0.04 against alpha/4, alpha/3, alpha/2, alpha/1 at
    alpha 0.05: 0.005 < 0.0125 and 0.01 < 0.0167 are rejected, 0.03 > 0.025 stops the procedure.
    Adjusted: 4 * 0.005 = 0.02, 3 * 0.01 = 0.03, 2 * 0.03 = 0.06, max(0.06, 1 * 0.04) = 0.06."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [p < 0.05 for p in adjusted] == [True, False, False, True]
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 2 * 0.5 capped at 1; 1 * 0.9 raised to the running maximum


def test_wilcoxon_p_values_by_enumeration_of_the_sign_flips() -> None:
    """Exact two-sided p: the share of the 2^n sign patterns whose W- is as extreme as observed."""
    differences = [1, 2, 3, -4, 5, 6]
    observed = 4  # W-: the rank of |-4|
    sums = [sum(r for r, neg in zip(range(1, 7), signs) if neg) for signs in itertools.product([0, 1], repeat=6)]
    exact = 2 * sum(s <= observed for s in sums) / len(sums)  # 2 * 7/64
    p, side = signed_rank_test(differences)
    assert p == pytest.approx(exact) == pytest.approx(14 / 64)
    assert side == 1
    assert signed_rank_test([-1.5] * 10) == (pytest.approx(2 / 2**10), -1)
    assert signed_rank_test([0.0, 0.0, 0.0]) == (1.0, 0)
    assert signed_rank_test([0.0, 1.0, 0.0]) == (1.0, 1)  # one non-zero difference: p = 2 / 2


def test_win_rate_counts_ties_half() -> None:
    assert win_rate([1, 2, 1.5, 3], [2, 1, 1.5, 1]) == pytest.approx((1 + 0 + 0.5 + 0) / 4)


def test_bootstrap_of_identical_rows_is_degenerate() -> None:
    values = np.tile([[1.0, 2.5, 2.5]], (7, 1))
    low, high = bootstrap_mean_ci(values, resamples=500, seed=3)
    assert low.tolist() == high.tolist() == [1.0, 2.5, 2.5]


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution() -> None:
    """For 4 scenarios, the 4^4 = 256 equally likely resamples give the exact bootstrap
    distribution of the mean; its 2.5% and 97.5% quantiles are what the percentile interval
    estimates. With 20000 resamples an empirical CDF has standard error <= 0.0011 near 0.025;
    the check below asserts the exact CDF is at least 0.005 (4.5 standard errors) from 0.025 and
    0.975 at the quantiles, so the estimate cannot land on another value."""
    values = np.array([[1.0, 3.0], [2.0, 1.0], [2.0, 2.0], [4.0, 3.0]])
    means = np.array([values[list(draw)].mean(axis=0) for draw in itertools.product(range(4), repeat=4)])
    low, high = bootstrap_mean_ci(values, resamples=20000, seed=0)
    for column in range(2):
        support = np.unique(means[:, column])
        cdf = np.array([(means[:, column] <= v).mean() for v in support])
        exact_low = support[np.argmax(cdf >= 0.025)]
        exact_high = support[np.argmax(cdf >= 0.975)]
        assert np.min(np.abs(cdf - 0.025)) > 0.005 and np.min(np.abs(cdf - 0.975)) > 0.005
        assert (low[column], high[column]) == (exact_low, exact_high)


def test_performance_profiles_and_their_area_on_three_by_three() -> None:
    """Times (rows scenarios, columns A, B, C; inf = failed):
        s1: 10, 20, inf  -> ratios 1, 2, inf
        s2: 30, 45, 60   -> ratios 1, 1.5, 2
        s3: inf, 80, 20  -> ratios inf, 4, 1
    Area up to 4 = mean over scenarios of max(0, 4 - r) / 3:
        A: (3 + 3 + 0) / 9 = 2/3;  B: (2 + 2.5 + 0) / 9 = 1/2;  C: (0 + 2 + 3) / 9 = 5/9.
    B by its steps: rho_B = 0 on [1, 1.5), 1/3 on [1.5, 2), 2/3 on [2, 4), 1 at 4:
        integral = 0.5/3 + 2 * 2/3 = 1.5, / 3 = 1/2."""
    times = np.array([[10, 20, np.inf], [30, 45, 60], [np.inf, 80, 20]])
    ratios = performance_ratios(times)
    np.testing.assert_array_equal(ratios, [[1, 2, np.inf], [1, 1.5, 2], [np.inf, 4, 1]])
    np.testing.assert_allclose(profile_score(ratios, 4.0), [2 / 3, 1 / 2, 5 / 9])
    taus = breakpoints(ratios, 4.0)
    np.testing.assert_array_equal(taus, [1, 1.5, 2, 4])
    expected = np.array([[2, 0, 1], [2, 1, 1], [2, 2, 2], [2, 3, 2]]) / 3
    np.testing.assert_allclose(profile(ratios, taus), expected)
    # Integrating the steps numerically agrees with the closed form.
    grid = np.linspace(1, 4, 300001)
    numeric = profile(ratios, grid).mean(axis=0)
    np.testing.assert_allclose(numeric, [2 / 3, 1 / 2, 5 / 9], atol=1e-4)
    assert np.all(np.isinf(performance_ratios(np.array([[np.inf, np.inf]]))))


def test_the_leaderboard_scores_are_the_profile_areas_of_the_erts() -> None:
    """The same 3 x 3 example as one-run records with a single target: ERT = the hit."""
    times = {"s1": (10, 20, None), "s2": (30, 45, 60), "s3": (None, 80, 20)}
    runs = [
        make_record(name, f"quadratic(dim={i + 2})", steps=100, targets=[1.0], hits=[hit])
        for i, hits in enumerate(times.values())
        for name, hit in zip("ABC", hits)
    ]
    board = rank(runs)
    assert {s.optimizer: s.score for s in board.standings} == pytest.approx({"A": 2 / 3, "B": 1 / 2, "C": 5 / 9})
    assert board.profile.taus == [1.0, 1.5, 2.0, 4.0]
    assert board.profile.rho["B"] == pytest.approx([0, 1 / 3, 2 / 3, 1])


# --- verdicts on synthetic optimizers -----------------------------------------------------------

PROBLEMS = [
    ("saddle(dim=10, index=2)", "saddle", 0.0),
    ("saddle_chain(dim=4)", "saddle_chain", -1.0),
    ("quadratic(dim=5)", "quadratic", 0.0),
    ("rosenbrock(dim=4)", "rosenbrock", 0.0),
    ("rastrigin(dim=3)", "rastrigin", 0.0),
    ("ackley(dim=3)", "ackley", 0.0),
    ("valley(dim=5)", "valley", 0.0),
    ("basins(dim=3)", "basins", 0.0),
    ("gaussian_field(dim=8)", "gaussian_field", None),
    ("pspin(dim=20)", "pspin", None),
]
TEN_TARGETS = [10.0 ** (1 - i) for i in range(10)]


def synthetic_runs(seeds: int = 6) -> list[dict[str, Any]]:
    """A good optimizer reaching each target 10^(1-k) after 20 (k + 1) + seed evaluations and
    ending at a gap of 1e-9; the same runs under a second name; a broken one that never moves
    from its start gap of 50 (loss 50 where f* is unknown; the good one ends at -3)."""
    runs = []
    for problem, family, f_star in PROBLEMS:
        for seed in range(seeds):
            good_hits = [20 * (k + 1) + seed for k in range(10)]
            common = dict(problem=problem, family=family, seed=seed, steps=500, f_star=f_star, targets=TEN_TARGETS)
            good_final = (f_star + 1e-9) if f_star is not None else -3.0
            broken_final = (f_star + 50.0) if f_star is not None else 50.0
            runs.append(make_record("good", hits=good_hits, final=good_final, **common))
            runs.append(make_record("alias", hits=good_hits, final=good_final, **common))
            runs.append(make_record("broken", hits=[None] * 10, final=broken_final, **common))
    return runs


def test_broken_ranks_last_significantly_and_an_alias_ties_with_its_original() -> None:
    """Per scenario: good and alias share rank 1.5, broken is 3. Broken against either: 10
    differences of the same sign, exact p = 2 / 2^10, Holm x3 = 0.0059 < 0.05. Good against
    alias: all differences 0, p = 1, win rate 1/2."""
    board = rank(synthetic_runs())
    standings = {s.optimizer: s for s in board.standings}
    assert board.standings[-1].optimizer == "broken"
    assert standings["broken"].mean_rank == 3.0 and standings["broken"].score == 0.0
    assert standings["good"].mean_rank == standings["alias"].mean_rank == 1.5
    assert standings["good"].score == standings["alias"].score == 1.0  # all 8 scenarios with f*
    assert (standings["good"].ci_low, standings["good"].ci_high) == (1.5, 1.5)
    pairs = {frozenset((p.first, p.second)): p for p in board.pairwise}
    tie = pairs[frozenset(("good", "alias"))]
    assert (tie.p_value, tie.significant, tie.better, tie.win_rate) == (1.0, False, None, 0.5)
    for name in ("good", "alias"):
        pair = pairs[frozenset((name, "broken"))]
        assert pair.significant and pair.better == name
        assert pair.p_holm == pytest.approx(3 * 2 / 2**10)
    assert not board.warnings


def test_the_family_breakdown_groups_families_as_documented() -> None:
    board = rank(synthetic_runs(seeds=2))
    groups = {g.group: g for g in board.groups}
    assert {g: row.scenarios for g, row in groups.items()} == {
        "saddles": 2,
        "classical": 4,
        "valleys": 1,
        "basins": 1,
        "fields": 1,
        "spin glasses": 1,
    }
    assert groups["fields"].score == {"good": None, "alias": None, "broken": None}  # no f*: no time to target
    assert groups["saddles"].best_in == {"good": 2, "alias": 2, "broken": 0}
    assert group_of("levy") == "classical" and group_of("my_family") == "other"


def test_renderings_lead_with_warnings_and_json_is_strict() -> None:
    runs = synthetic_runs(seeds=2)
    runs[0]["device"] = "cuda"
    board = rank(runs)
    text, markdown = board.to_text(), board.to_markdown()
    assert text.splitlines()[1].startswith("WARNING: device is mixed")
    assert "> **Warning:** device is mixed" in markdown.split("## Standings")[0]
    assert markdown.count("### ") == len(PROBLEMS)
    assert "alias ~ good: no significant difference (alias wins 50%, p_holm = 1)" in text
    field = next(s for s in strict_json(board)["scenarios"] if s["family"] == "gaussian_field")
    assert (field["final_metric"], field["reference_target"], field["targets"]) == ("final_loss", None, [])


def test_markdown_tables_only_the_significant_pairs_and_collapses_the_others() -> None:
    """good and alias each beat broken significantly (see the test above); good ~ alias is not: the
    two calls are in the table, the tie in a <details> element after it."""
    markdown = rank(synthetic_runs()).to_markdown()
    pairs = markdown.split("## Pairs")[1].split("\n## ")[0]
    shown, _, hidden = pairs.partition("<details>")
    assert "2 of 3 pairs differ significantly" in shown
    assert "| good | broken |" in shown and "| alias | broken |" in shown
    assert "no significant difference" not in shown.split("|", 1)[1]
    assert "<summary>1 pairs without a significant difference</summary>" in hidden
    assert "| alias | good |" in hidden or "| good | alias |" in hidden
    assert hidden.rstrip().endswith("</details>")


def test_the_optimizers_table_says_tuned_rates_batch_modes_and_shared_wall_times() -> None:
    """Two batches of 2 runs of "tuned" (1.0 s and 3.0 s: 4.0 s), tuned to 0.1 on the quadratic and
    0.01 on rosenbrock; "plain" runs as given, one batch per problem run separately (0.5 s each)."""
    runs = []
    for problem, family, lr in (("quadratic(dim=5)", "quadratic", 0.1), ("rosenbrock(dim=4)", "rosenbrock", 0.01)):
        for seed in (0, 1):
            tuning = {"family": family, "lr": lr, "tuned": ["lr"], "given_lr": 0.5}
            runs.append(
                make_record(
                    "tuned",
                    problem,
                    family=family,
                    seed=seed,
                    hits=[5, 9],
                    tuning=tuning,
                    wall_s=1.0 if lr == 0.1 else 3.0,
                    batch_size=2,
                    metrics_s=0.2,
                )
            )
            runs.append(
                make_record(
                    "plain",
                    problem,
                    family=family,
                    seed=seed,
                    hits=[5, None],
                    batch_mode="separate",
                    tuning={"family": family, "lr": 0.5, "tuned": [], "given_lr": 0.5},
                    wall_s=0.5,
                    batch_size=2,
                    metrics_s=0.2,
                )
            )
    board = rank(runs)
    tuned, plain = board.contestants["tuned"], board.contestants["plain"]
    assert tuned.tuned == {"quadratic": [0.1], "rosenbrock": [0.01]} and plain.tuned == {}
    assert (tuned.loop_s, plain.loop_s) == pytest.approx((4.0, 1.0))
    assert tuned.metrics_s == pytest.approx(0.4) and tuned.runs == 4
    assert (tuned.modes, plain.modes) == ({"batched": 4}, {"separate": 4})
    table = board.to_markdown().split("## Optimizers")[1]
    assert "| 1 | tuned | 0.01 (rosenbrock); 0.1 (quadratic) | batched | 4 | 0.4 |" in table
    assert "| 2 | plain | as given | separate | 1 | 0.4 |" in table
    assert [c["optimizer"] for c in strict_json(board)["contestants"]] == ["tuned", "plain"]


# --- provenance, coverage, phases -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("device", "cuda"), ("torch_version", "2.5.0"), ("landbench_version", "0.0.9"), ("dtype", "float32")],
)
def test_mixed_provenance_is_reported(field: str, value: str) -> None:
    runs = hand_made_runs()
    runs[-1][field] = value
    warnings = rank(runs).warnings
    assert len(warnings) == 1 and warnings[0].startswith(f"{field} is mixed within 1 of 1 scenarios")
    assert f"{value}: 1 runs" in warnings[0]


def test_mixed_settings_warn_unless_they_cannot_change_the_ranking() -> None:
    runs = hand_made_runs()
    runs[-1]["settings"] = {**runs[-1]["settings"], "curve_points": 20}
    board = rank(runs)
    assert not board.warnings and board.notes[0].startswith("settings.curve_points is mixed")
    runs[-1]["settings"] = {**runs[-1]["settings"], "targets": [1.0, 0.01, 1e-4]}
    assert rank(runs).warnings[0].startswith("settings.targets is mixed")


def test_scenarios_not_run_by_every_optimizer_are_dropped_and_named() -> None:
    runs = hand_made_runs() + [make_record("a", "rosenbrock(dim=4)", family="rosenbrock")]
    board = rank(runs)
    assert [r.scenario.problem for r in board.scenarios] == ["quadratic(dim=5)"]
    assert "only the 1 of 2 that every optimizer ran" in board.warnings[0]
    assert "b lacks 1" in board.warnings[0] and "rosenbrock(dim=4)" in board.warnings[0]


def test_different_instances_within_a_scenario_are_reported() -> None:
    runs = hand_made_runs()
    runs[-1]["instance"] = 7
    assert rank(runs).warnings == [
        "optimizers ran different instances within 1 scenarios: quadratic(dim=5) noise=0 steps=100"
    ]


def test_only_scoring_runs_count_and_repeated_keys_count_once() -> None:
    runs = hand_made_runs()
    tuning = make_record("a", seed=9, hits=[1, 1], phase="tune")
    repeat = dict(runs[2], reach_evals=[1, 1], reach_steps=[1, 1])  # same key: the first record stands
    board = rank([*runs, tuning, repeat, make_record("a", seed=8, hits=[None, None], phase="score")])
    a = strict_json(board)["scenarios"][0]["optimizers"]["a"]
    assert a["runs"] == 5 and a["ert"][0] == pytest.approx((10 + 20 + 100 + 100 + 100) / 2)
    assert board.notes == [
        "1 tuning-phase records left out (only phase 'score' is ranked)",
        "1 repeated records (same key) counted once",
    ]


def test_nothing_in_common_and_bad_options_are_clear() -> None:
    board = rank([make_record("a"), make_record("b", "rosenbrock(dim=4)")])
    assert board.standings == [] and board.warnings[-1].endswith("nothing to rank")
    assert "nothing to rank" in board.to_text() and strict_json(board)["standings"] == []
    with pytest.raises(LandbenchError, match="tau_max"):
        rank([], tau_max=1.0)
    with pytest.raises(LandbenchError, match="lacks optimizer"):
        rank([{"problem": "p", "noise": 0, "steps": 1, "diverged": False}])


def test_one_optimizer_ranks_first_everywhere_with_no_pairs() -> None:
    board = rank([make_record("a", hits=[3, None])])
    assert [(s.optimizer, s.mean_rank, s.score) for s in board.standings] == [("a", 1.0, 1.0)]
    assert board.pairwise == [] and "no pairs" in board.to_text()


# --- real records -------------------------------------------------------------------------------


def test_real_runs_put_a_learning_rate_that_cannot_move_last() -> None:
    """sgd(lr=1e-7) moves the start point by ~1e-5 in 200 steps: it never reaches a target the
    others reach; Adam and SGD at working learning rates do not diverge on these problems."""
    problems = ["quadratic(dim=5)", "saddle(dim=6, index=2)", "valley(dim=4)"]
    optimizers = ["adam(lr=0.05)", "sgd(lr=0.01)", "sgd(lr=1e-07)"]
    runs = [r for p in problems for o in optimizers for r in landbench.run(p, o, seeds=4, steps=200, curvature=False)]
    board = rank(runs)
    assert board.standings[-1].optimizer == "sgd(lr=1e-07)"
    assert board.standings[-1].mean_rank == 3.0 and board.standings[-1].score == 0.0
    assert math.isfinite(board.standings[0].score) and not board.warnings


def _scenario_rows(markdown: str) -> dict[str, list[str]]:
    """The cells of the per-scenario table rows of a one-scenario leaderboard, by optimizer."""
    table = markdown.split("## Scenarios")[1].split("\n## ")[0]
    rows = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[2:]
    return {cells[0]: dict(zip(header, cells)) for cells in body}  # type: ignore[misc]


def test_a_median_on_a_diverged_run_is_no_number_and_only_all_diverged_says_so() -> None:
    """On rosenbrock(dim=2), sgd(lr=0.003) diverges from 4 of 8 starts: numpy's median of the gaps
    with the diverged runs as inf (ranked worst, as landbench.outcomes ranks them) is inf, so the
    cell is ``-``, not "all diverged"; sgd(lr=0.01) diverges from all 8 (then "all diverged" is
    true), and sgd(lr=0.0003) from none (the cell is numpy's median)."""
    runs = {
        lr: landbench.run("rosenbrock(dim=2)", f"sgd(lr={lr})", seeds=8, steps=100, dtype="float64", curvature=False)
        for lr in (0.0003, 0.003, 0.01)
    }
    diverged = {lr: sum(r["diverged"] for r in rs) for lr, rs in runs.items()}
    assert diverged == {0.0003: 0, 0.003: 4, 0.01: 8}
    medians = {
        lr: float(np.median([math.inf if r["diverged"] else r["loss_gap"] for r in rs])) for lr, rs in runs.items()
    }
    assert math.isinf(medians[0.003]) and math.isfinite(medians[0.0003])
    rows = _scenario_rows(rank([r for rs in runs.values() for r in rs]).to_markdown())
    cells = {lr: rows[f"sgd(lr={lr})"] for lr in runs}
    assert cells[0.003]["median final gap"] == "-" and cells[0.003]["diverged"] == "4/8"
    assert cells[0.01]["median final gap"] == "all diverged" and cells[0.01]["diverged"] == "8/8"
    assert cells[0.0003]["median final gap"] == f"{medians[0.0003]:.3g}"
    for lr, rs in runs.items():  # the first criterion of the rank, counted from the records
        held = sum(t is not None for r in rs if not r["diverged"] for t in r["reach_evals"])
        assert cells[lr]["pairs held"] == f"{held / (len(rs) * len(rs[0]['targets'])):.0%}"


def test_the_method_states_the_rules_of_landbench_outcomes() -> None:
    """The Method paragraph of every Markdown leaderboard says what counts as landbench.outcomes
    decides it: a target counts when held to the end, every failure (diverged or not) is charged its
    whole budget, diverged runs rank worst in the median (not left out), and a median on one is no
    number; and none of the rules of schema 2 (first hits, medians over non-diverged runs)."""
    method = rank(hand_made_runs()).to_markdown().split("## Method")[1]
    for rule in (
        "a diverged run (its loss became NaN or inf within the budget) is a failure for every outcome",
        "the gap is at most the target at the end of the budget",
        "the gap stays within the target to the end",
        "a run that touches a target and leaves it has not reached it",
        "the whole budget of every unsuccessful run, diverged or not",
        "ranked by the share of (run, target) pairs reached and held over every target of the scenario",
        "with diverged runs ranked worse than any value",
        "a median that falls on a diverged run is not a number",
    ):
        assert rule in method, rule
    for wrong in ("to the hit", "non-diverged runs", "evaluations spent by unsuccessful runs", "by success rate"):
        assert wrong not in method, wrong
