"""One answer everywhere: a battery of edge-case runs fed to every view of landbench, which must agree.

The views: the CLI's summary table, ``landbench.testing`` (summary and assertions), the ranking,
tuning, the report's data and the asv metrics. The expected numbers are counted by hand from the
policy of ``landbench.outcomes`` (a diverged run is a failure for every outcome and is charged its
whole budget; a target counts when it is held to the end of the budget), and then from real runs of
optimizers written to diverge.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import landbench
from landbench import asv_tracking, outcomes
from landbench.cli import summary_table
from landbench.ranking import rank
from landbench.report import data
from landbench.testing import assert_escapes, assert_in_basin, assert_reaches, summary
from landbench.tuning import choose

STEPS = 100
TARGETS = [1.0, 0.01]


def run(seed: int, **fields: Any) -> dict[str, Any]:
    """A schema-3 run record on ``saddle(dim=10)`` (f* = -0.25), 100 steps of one evaluation each.

    ``reach`` are the evaluations (= steps) from which each target is held, ``hits`` COCO's first hits
    (default: the same). Like a hand-written or foreign record, a diverged one may carry outcomes
    from before its divergence: every view must read it as a failure all the same."""
    reach = fields.pop("reach", [None, None])
    hits = fields.pop("hits", reach)
    gap = fields.pop("gap", 0.0)
    record = {
        "problem": "saddle(dim=10)",
        "optimizer": "sgd(lr=0.1)",
        "family": "saddle",
        "dim": 10,
        "instance": 0,
        "seed": seed,
        "steps": STEPS,
        "noise": 0.0,
        "dtype": "float64",
        "device": "cpu",
        "final_loss": None if gap is None else gap - 0.25,
        "f_star": -0.25,
        "loss_gap": gap,
        "escape_step": None,
        "escaped": False,
        "targets": list(TARGETS),
        "reach_steps": list(reach),
        "reach_evals": list(reach),
        "first_hit_steps": list(hits),
        "first_hit_evals": list(hits),
        "sharpness": None,
        "diverged": False,
        "diverged_step": None,
        "grad_evals": STEPS,
        "batch_mode": "batched",
        "landbench_version": landbench.__version__,
        "torch_version": "2.13.0",
        "schema": outcomes.RECORD_SCHEMA,
        "settings": {"dtype": "float64", "targets": list(TARGETS)},
        "key": f"battery-{seed}",
    }
    record.update(fields)
    return record


def battery() -> list[dict[str, Any]]:
    """Seven runs, one of each kind (see the expectations in :data:`EXPECTED`)."""
    return [
        run(0, escaped=True, escape_step=10, reach=[30, 60]),  # escapes, holds both targets
        run(  # escapes at 12 and holds target 1 from 20 on ... then diverges at 40
            1, escaped=True, escape_step=12, reach=[20, None], gap=0.5, diverged=True, diverged_step=40
        ),
        run(2, escaped=True, escape_step=15, reach=[25, None], hits=[25, 50], gap=0.2),  # touches 0.01, leaves
        run(3, gap=3.0),  # censored: never escapes, reaches nothing
        run(4, gap=None, diverged=True, diverged_step=0),  # NaN from step 0
        run(5, escaped=True, escape_step=20, reach=[35, 70]),
        run(6, escaped=True, escape_step=5, reach=[8, 40]),
    ]


#: Counted by hand: escaped and not diverged: runs 0, 2, 5, 6 (steps 10, 15, 20, 5); sorted with the
#: three others last, 5 10 15 20 - - -, the median (4th of 7) is 20. Target 1 held: runs 0, 2, 5, 6
#: at 30, 25, 35, 8; the three failures (1 and 4 diverged, 3 censored) are charged 100 each: ERT =
#: (30 + 25 + 35 + 8 + 300) / 4. Target 0.01: runs 0, 5, 6 at 60, 70, 40: ERT = (170 + 400) / 3. Final
#: gaps 0, 0.2, 3, 0, 0 and two diverged (worst): 0 0 0 0.2 3 - -, median 0.2.
EXPECTED = {
    "runs": 7,
    "diverged": 2,
    "escaped": 4,
    "median_escape": 20.0,
    "successes": [4, 3],
    "ert": [(30 + 25 + 35 + 8 + 300) / 4, (60 + 70 + 40 + 400) / 3],
    "median_gap": 0.2,
}


def _table_row(records: list[dict[str, Any]]) -> dict[str, str]:
    """The CLI summary table's one data row, by column."""
    header, _, row = summary_table(records).splitlines()
    names = ["problem", "optimizer", "noise", "inst", "steps", "dtype", "runs", "div", "final loss", "loss gap"]
    names += ["escaped", "esc. step", "sharpness", "ended in"]
    assert header.split()[:2] == ["problem", "optimizer"]
    cells = row.split()
    return dict(zip(names[2:], cells[2:])) | {"problem": cells[0], "optimizer": cells[1]}


def test_every_view_agrees_on_the_battery() -> None:
    records = battery()
    expect = EXPECTED
    # the one summary
    result = outcomes.summarize(records)
    assert (result.runs, result.diverged, result.escapes.escaped) == (7, 2, 4)
    assert result.escapes.median == expect["median_escape"]
    assert [r.successes for r in result.targets] == expect["successes"]
    assert [r.ert for r in result.targets] == pytest.approx(expect["ert"])
    assert [r.first_hits for r in result.targets] == [5, 4]  # COCO's first hits, for comparison only
    assert result.median_loss_gap == expect["median_gap"]
    # the CLI's table
    row = _table_row(records)
    assert (row["runs"], row["div"], row["escaped"], row["esc. step"]) == ("7", "2", "4/7", "20")
    assert float(row["loss gap"]) == expect["median_gap"]
    # landbench.testing
    headline = summary(records)
    assert (headline["runs"], headline["diverged"]) == (7, 2)
    assert headline["escaped_share"] == pytest.approx(4 / 7) and headline["median_escape_step"] == 20
    assert headline["median_loss_gap"] == expect["median_gap"]
    assert assert_escapes(records, at_least=0) == pytest.approx(4 / 7)
    assert assert_reaches(records, 1.0, at_least=0) == pytest.approx(4 / 7)
    assert assert_reaches(records, 0.01, at_least=0) == pytest.approx(3 / 7)
    # the ranking
    (scenario,) = rank(records, bootstrap=10).scenarios
    ranked = scenario.summaries["sgd(lr=0.1)"]
    assert [round(s * 7) for s in (ranked.success_rate(0), ranked.success_rate(1))] == expect["successes"]
    assert list(ranked.ert) == pytest.approx(expect["ert"])
    assert (ranked.runs, ranked.diverged, ranked.median_final) == (7, 2, expect["median_gap"])
    # the report
    escapes = data.escape_stats(records)
    assert (escapes.runs, escapes.escaped, escapes.diverged, escapes.median) == (7, 4, 2, 20)
    grouped, _ = data.grouped_records(records)
    ecdf = data.ecdfs(grouped)["all"]["sgd(lr=0.1)"]
    assert ecdf.fraction(STEPS) == pytest.approx(sum(expect["successes"]) / (7 * len(TARGETS)))
    assert ecdf.diverged == 2
    # the asv metrics
    assert asv_tracking.escape_steps(records, None) == 20
    assert asv_tracking.loss_gap(records, None) == expect["median_gap"]
    assert asv_tracking.diverged(records, None) == pytest.approx(2 / 7)


def test_a_run_that_escapes_and_then_diverges_escaped_nothing_in_every_view() -> None:
    """Three runs escape at step 10 and diverge later, one is censored: 0 escaped everywhere (the
    CLI once printed "3/4 escaped, step 10" while landbench.testing said 0)."""
    records = [run(s, escaped=True, escape_step=10, diverged=True, diverged_step=50, gap=None) for s in range(3)]
    records.append(run(3, gap=1.0))
    row = _table_row(records)
    assert (row["escaped"], row["esc. step"], row["div"]) == ("0/4", f">{STEPS}", "3")
    assert summary(records)["escaped_share"] == 0 and summary(records)["median_escape_step"] is None
    assert data.escape_stats(records).escaped == 0
    assert math.isnan(asv_tracking.escape_steps(records, None))
    assert assert_escapes(records, at_least=0) == 0


def test_a_run_that_reaches_a_target_and_then_diverges_reached_nothing_in_every_view() -> None:
    """Once: the ranking counted a success with ERT 5 while assert_reaches said 0 of 1 reached."""
    records = [run(0, reach=[5, 5], diverged=True, diverged_step=20, gap=None)]
    board = rank(records, bootstrap=10)
    (scenario,) = board.scenarios
    assert scenario.summaries["sgd(lr=0.1)"].successes == (0, 0)
    assert scenario.summaries["sgd(lr=0.1)"].ert == (math.inf, math.inf)
    assert assert_reaches(records, 1.0, at_least=0) == 0
    assert outcomes.summarize(records).targets[0].first_hits == 1  # what COCO's first hit would say


def test_a_run_that_touches_a_target_and_leaves_it_has_not_reached_it() -> None:
    records = [run(0, reach=[None, None], hits=[3, 3], gap=2.75)]
    assert assert_reaches(records, 1.0, at_least=0) == 0
    assert rank(records, bootstrap=10).scenarios[0].summaries["sgd(lr=0.1)"].successes == (0, 0)


def test_all_diverged_and_empty_are_clean_in_every_view() -> None:
    records = [run(s, diverged=True, diverged_step=s, gap=None, reach=[1, 1]) for s in range(3)]
    result = outcomes.summarize(records)
    assert (result.diverged, result.escapes.escaped, result.escapes.median) == (3, 0, None)
    assert [r.successes for r in result.targets] == [0, 0] and result.median_loss_gap is None
    row = _table_row(records)
    assert (row["div"], row["escaped"], row["loss gap"]) == ("3", "0/3", "-")
    assert summary(records)["median_loss_gap"] is None
    assert math.isnan(asv_tracking.loss_gap(records, None)) and asv_tracking.diverged(records, None) == 1.0
    assert rank(records, bootstrap=10).scenarios[0].summaries["sgd(lr=0.1)"].median_final == math.inf
    empty = outcomes.summarize([])
    assert (empty.runs, empty.escapes, empty.targets, empty.median_loss_gap) == (0, None, (), None)
    assert summary_table([]).splitlines()[0].startswith("problem")
    with pytest.raises(ValueError, match="no records"):
        summary([])
    assert rank([], bootstrap=10).standings == []


def test_the_wide_basin_share_counts_a_diverged_run_as_a_miss_in_every_view() -> None:
    """Four runs of basins(dim=2) (well 0 is the wide one): two in well 0, one in well 1, one diverged."""
    base = {"problem": "basins(dim=2)", "family": "basins", "f_star": None, "loss_gap": None, "escaped": None}
    base |= {"reach_steps": None, "reach_evals": None, "first_hit_steps": None, "first_hit_evals": None}
    records = [
        run(0, **base, basin=0),
        run(1, **base, basin=0),
        run(2, **base, basin=1),
        run(3, **{**base, "final_loss": None}, basin=0, diverged=True, diverged_step=9),  # ended nowhere
    ]
    assert assert_in_basin(records, "wide", at_least=0) == 0.5
    assert data.wide_share(records).share == 0.5
    assert asv_tracking.basin_miss(records, None) == 0.5
    assert summary(records)["basin"]["wide_share"] == 0.5
    assert _table_row(records)["ended in"] == "basin"  # the table's cell: "basin 0:50% 1:25%"
    assert "basin 0:50% 1:25%" in summary_table(records)


def test_tuning_never_chooses_a_rate_whose_runs_hit_the_target_and_then_diverged() -> None:
    """Rate 10 reaches the target at once in every run, then diverges; rate 0.1 converges slowly."""
    wild = [run(s, reach=[1, 1], diverged=True, diverged_step=30, gap=None, optimizer="sgd(lr=10.0)") for s in range(4)]
    calm = [run(s, reach=[60, 90], optimizer="sgd(lr=0.1)") for s in range(4)]
    records = [{**r, "label": "sgd", "phase": "tune", "key": f"{r['optimizer']}-{r['seed']}"} for r in wild + calm]
    ((_, choice),) = choose(records).items()
    assert choice.lr == 0.1


# --- real runs -------------------------------------------------------------------------------------


NAN_SGD = "adversarial:NaNAtStepSGD(lr=0.3)"  # at=20, its default


def test_an_optimizer_that_diverges_on_purpose_never_ranks_above_the_same_one_that_does_not() -> None:
    """NaN-SGD is plain SGD that writes NaN into the runs whose first coordinate is positive at step
    20, after they reached the easy targets: it used to rank first (a diverged run was charged 20
    evaluations, a run that missed the target 100). Now its diverged runs are failures charged their
    whole budget, on two scenarios."""
    records = []
    for problem in ("quadratic(dim=5)", "saddle(dim=5)"):
        for optimizer in ("sgd(lr=0.3)", NAN_SGD):
            records += landbench.run(problem, optimizer, seeds=8, steps=100, dtype="float64", curvature=False)
    wild = [r for r in records if "NaN" in r["optimizer"]]
    assert 0 < sum(r["diverged"] for r in wild) < len(wild)  # some runs diverged, after hitting targets
    assert any(r["diverged"] and any(h is not None for h in r["first_hit_evals"]) for r in wild)
    board = rank(records, bootstrap=200)
    assert [s.optimizer for s in board.standings] == ["sgd(lr=0.3)", NAN_SGD]
    for scenario in board.scenarios:
        assert scenario.ranks["sgd(lr=0.3)"] < scenario.ranks[NAN_SGD]
    # and every view counts the same diverged runs and the same successes
    for problem in ("quadratic(dim=5)", "saddle(dim=5)"):
        runs = [r for r in wild if r["problem"] == problem]
        diverged = sum(r["diverged"] for r in runs)
        assert summary(runs)["diverged"] == diverged == int(_table_row(runs)["div"])
        share = assert_reaches(runs, 1e-6, at_least=0)
        (scenario,) = [s for s in board.scenarios if s.scenario.problem == problem]
        k = scenario.targets.index(1e-6)
        assert scenario.summaries[NAN_SGD].success_rate(k) == share
        assert share <= 1 - diverged / len(runs)


def test_holding_a_hard_target_in_half_the_runs_and_diverging_in_the_rest_ranks_below_converging() -> None:
    """NaN-SGD at lr 0.019 converges fast, and at step 500 writes NaN into the runs whose first
    coordinate is positive: half of them hold 1e-8 (the reference target they set), the other half
    diverge after reaching every target. Plain SGD at lr 0.01 holds 1e-6 in all its runs and never
    1e-8. Ranked by the success at the reference target alone, NaN-SGD came first (review); ranked by
    the share of (run, target) pairs held over every target, it holds at most half of them and comes
    second."""
    records = []
    for optimizer in ("adversarial:NaNAtStepSGD(lr=0.019, at=500)", "sgd(lr=0.01)"):
        records += landbench.run("quadratic(dim=4)", optimizer, seeds=8, steps=600, dtype="float64", curvature=False)
    wild = [r for r in records if "NaN" in r["optimizer"]]
    assert 0 < sum(r["diverged"] for r in wild) < len(wild)
    board = rank(records, bootstrap=10)
    (scenario,) = board.scenarios
    assert scenario.targets[scenario.reference] == 1e-8  # set by NaN-SGD's surviving runs
    summaries = scenario.summaries
    assert summaries["adversarial:NaNAtStepSGD(lr=0.019, at=500)"].success_rate(scenario.reference) >= 0.5
    assert summaries["sgd(lr=0.01)"].success_rate(scenario.reference) == 0
    assert [s.optimizer for s in board.standings][0] == "sgd(lr=0.01)"
    wild_share = summaries["adversarial:NaNAtStepSGD(lr=0.019, at=500)"].reached_share
    assert summaries["sgd(lr=0.01)"].reached_share > wild_share


def test_a_run_that_starts_inside_a_target_and_diverges_is_no_success() -> None:
    """sgd(lr=100) diverges from every start; a start already within gap 10 was once a success at 10."""
    records = landbench.run("quadratic(dim=2)", "sgd(lr=100.0)", seeds=16, steps=50, dtype="float64", curvature=False)
    assert all(r["diverged"] for r in records)
    assert any(r["first_hit_evals"][0] == 0 for r in records)  # started within gap 10: COCO's first hit
    assert all(r["reach_evals"] == [None] * len(r["targets"]) for r in records)
    (scenario,) = rank(records, bootstrap=10).scenarios
    assert scenario.summaries["sgd(lr=100.0)"].successes == (0,) * len(scenario.targets)
    assert assert_reaches(records, 10.0, at_least=0) == 0


# --- the record type and the writer -----------------------------------------------------------------


def test_every_field_a_run_writes_is_typed_and_every_outcome_field_is_written() -> None:
    typed = set(outcomes.RunRecord.__annotations__)
    for problem, family_fields in [
        ("saddle_chain(dim=3)", {"chain_escapes", "chain_underflow"}),
        ("basins(dim=2)", {"basin"}),
        ("valley(dim=3)", {"mode"}),
        ("gaussian_field(dim=2)", {"field_value"}),
        ("saddle(dim=4)", set()),
    ]:
        (record,) = landbench.run(problem, "sgd(lr=0.01)", seeds=1, steps=3, curvature=False)
        assert set(record) - typed == family_fields, problem
        declared = {f.name for f in landbench.make(problem).outcome_fields}
        assert family_fields <= declared, problem  # each family field is declared, with its summary
    assert {f.name for f in outcomes.FIELDS} <= typed


def test_a_diverged_run_is_written_as_a_failure_for_every_outcome() -> None:
    """The writer applies the policy (outcomes.settle): on real runs that escape and then diverge."""
    records = landbench.run("saddle(dim=4)", "adversarial:NaNAtStepSGD(lr=0.5, at=60)", seeds=8, steps=80)
    diverged = [r for r in records if r["diverged"]]
    assert diverged, "some runs start with a positive first coordinate"
    for r in diverged:
        assert r["diverged_step"] == 60 and r["grad_evals"] == 80  # the whole budget
        assert r["escaped"] is False and r["escape_step"] is None
        assert r["final_loss"] is r["loss_gap"] is r["sharpness"] is r["basin_width"] is None
        assert r["reach_evals"] == [None] * len(r["targets"])
        assert any(h is not None for h in r["first_hit_evals"])  # what it touched before, kept for COCO
    raw = run(0, escaped=True, escape_step=3, reach=[2, 4], diverged=True, diverged_step=9)
    settled = outcomes.settle(dict(raw))
    assert (settled["escaped"], settled["escape_step"], settled["reach_evals"]) == (False, None, [None, None])
    assert settled["first_hit_evals"] == [2, 4] and settled["final_loss"] is None


def test_results_of_an_older_schema_are_refused_by_every_view_with_what_to_do(tmp_path) -> None:  # noqa: ANN001
    """Schema 2 counted a target touched once as reached: rank and report refuse such results with a
    one-line error (exit status 2), landbench.testing with a ValueError; never a silent leaderboard."""
    import json

    from click.testing import CliRunner

    from landbench.cli import main

    old = [{**run(s, reach=[3, None]), "schema": 2, "hit_steps": [3, None]} for s in range(2)]
    for r in old:
        del r["reach_steps"], r["reach_evals"]
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    for command in (["rank", str(path)], ["report", str(path), "--out", str(tmp_path / "r")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "are of record schema 2, and this landbench reads schema 3" in result.output
        assert "run them again" in result.output
    with pytest.raises(ValueError, match="records of schema 2.*run them again"):
        assert_reaches(old, 1.0)
