"""``landbench rank`` from the command line, and the shipped baselines it ranks against."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from landbench.cli import main
from landbench.references import available_references, load_reference
from landbench.suite import load_suite


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    args = ["run", "--problem", "quadratic(dim=4, condition=10.0)", "--problem", "saddle(dim=4)", "--seeds", "4"]
    args += ["--optimizer", "sgd(lr=0.1)", "--optimizer", "sgd(lr=1e-06)", "--steps", "200", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    return out


def test_rank_prints_a_leaderboard_json_and_markdown(results: Path) -> None:
    text = CliRunner().invoke(main, ["rank", str(results)])
    assert text.exit_code == 0, text.output
    assert "2 optimizers on 2 scenarios" in text.output
    lines = text.output.splitlines()
    first = next(line for line in lines if line.startswith("1 "))
    assert "sgd(lr=0.1)" in first  # the step size that cannot move ranks last
    data = json.loads(CliRunner().invoke(main, ["rank", str(results), "--json"]).output)
    assert [s["optimizer"] for s in data["standings"]] == ["sgd(lr=0.1)", "sgd(lr=1e-06)"]
    markdown = CliRunner().invoke(main, ["rank", str(results / "results.jsonl"), "--markdown"]).output
    assert markdown.startswith("# landbench leaderboard")
    assert "| 1 | sgd(lr=0.1) |" in markdown and "| 2 | sgd(lr=1e-06) |" in markdown


def test_rank_refuses_nothing_to_rank_and_unknown_references(results: Path) -> None:
    nothing = CliRunner().invoke(main, ["rank"])
    assert nothing.exit_code == 2 and "baselines" in nothing.output
    unknown = CliRunner().invoke(main, ["rank", str(results), "--against", "basleines"])
    assert unknown.exit_code == 2 and "unknown reference 'basleines'; shipped references: baselines" in unknown.output
    both = CliRunner().invoke(main, ["rank", str(results), "--json", "--markdown"])
    assert both.exit_code == 2
    empty = CliRunner().invoke(main, ["rank", str(results.parent)])  # a folder without results
    assert empty.exit_code == 2 and "no scored runs in" in empty.output


def test_rank_reads_gzipped_results(results: Path, tmp_path: Path) -> None:
    packed = tmp_path / "results.jsonl.gz"
    packed.write_bytes(gzip.compress((results / "results.jsonl").read_bytes()))
    plain = json.loads(CliRunner().invoke(main, ["rank", str(results), "--json"]).output)
    zipped = json.loads(CliRunner().invoke(main, ["rank", str(packed), "--json"]).output)
    assert zipped == plain


def test_the_shipped_baselines_cover_their_suite_with_every_classic_tuned_on_held_out_runs() -> None:
    assert "baselines" in available_references()
    records = load_reference("baselines")
    suite = load_suite("baselines")
    expected = {(sc.problem, sc.instance, sc.noise, sc.steps, seed) for sc in suite.scenarios() for seed in sc.seeds}
    labels = {"gd", "sgd(momentum=0.9)", "sgd(momentum=0.9, nesterov=True)", "adam", "adamw", "rmsprop"}
    labels |= {"adagrad", "sam", "pgd"}
    assert {r["label"] for r in records} == labels
    for label in labels:
        mine = [r for r in records if r["label"] == label]
        assert {(r["problem"], r["instance"], r["noise"], r["steps"], r["seed"]) for r in mine} == expected, label
    for record in records:
        assert record["phase"] == "score" and record["dtype"] == "float64"
        assert record["seed"] not in record["tuning"]["seeds"]
        assert record["instance"] not in record["tuning"]["instances"]
        assert f"lr={record['tuning']['lr']}" in record["optimizer"] or record["tuning"]["lr"] is None


def test_a_new_optimizer_is_ranked_against_the_baselines_by_running_only_itself(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    args = ["run", "baselines", "--problem", "quadratic(dim=100, condition=100.0)"]
    args += ["--optimizer", "torch.optim:SGD", "--out", str(out)]
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code == 0, ran.output
    board = CliRunner().invoke(main, ["rank", "--against", "baselines", str(out), "--json"])
    data = json.loads(board.output)
    assert len(data["standings"]) == 10 and len(data["scenarios"]) == 1
    assert "torch.optim:SGD" in [s["optimizer"] for s in data["standings"]]
    assert any("only the 1 of" in w for w in data["warnings"])  # the scenarios it did not run are named
    # the same optimizer as the shipped "gd" under another name: the same tuned rate, the same numbers
    ours, theirs = data["scenarios"][0]["optimizers"]["torch.optim:SGD"], data["scenarios"][0]["optimizers"]["gd"]
    assert ours["rank"] == theirs["rank"] and ours["ert"] == theirs["ert"]
    assert ours["median_final"] == pytest.approx(theirs["median_final"], rel=1e-9)


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--seed", "-1"], "seed must be a non-negative integer"),
        (["--bootstrap", "100000000000"], "bootstrap must be a number of resamples from 1 to 100000"),
        (["--bootstrap", "0"], "bootstrap must be a number of resamples from 1 to 100000"),
    ],
)
def test_rank_refuses_a_bad_seed_or_resample_count_in_one_line(results: Path, option: list[str], named: str) -> None:
    """A negative bootstrap seed, or more resamples than fit in memory, is one line and exit 2 (they
    had been a traceback from numpy)."""
    done = CliRunner().invoke(main, ["rank", str(results), *option])
    assert done.exit_code == 2 and named in done.output, done.output
    assert "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1


def test_ranking_by_test_loss_without_finite_sums_says_so(results: Path) -> None:
    """Results without a finite-sum scenario have nothing to rank by test loss, and the warning says
    why (it had said that no scenario was run by every optimizer)."""
    done = CliRunner().invoke(main, ["rank", str(results), "--objective", "test"])
    assert "no scenario is a finite sum" in done.output, done.output
    assert "run by every optimizer" not in done.output
