"""What the views make of finite sums: the ranking by test loss (against the medians computed here
from the records), the asv metrics test_loss and gen_gap (and the asv version of existing benchmarks
unchanged), the report's generalisation figures, and the run table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import landbench
from landbench.asv_tracking import METRICS, LandbenchScores
from landbench.cli import main
from landbench.errors import LandbenchError
from landbench.ranking import rank

PROBLEM = "teacher_student(dim=4, hidden=4, teacher_hidden=2, samples=48, activation='erf')"
OPTIMIZERS = ("sgd(lr=0.3)", "adam(lr=0.02)", "sgd(lr=0.02)")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    out = []
    for optimizer in OPTIMIZERS:
        for batch in (4, None):
            out += landbench.run(PROBLEM, optimizer, seeds=4, steps=120, batch_size=batch)
    out += landbench.run("quadratic(dim=3)", "sgd(lr=0.3)", seeds=2, steps=20)
    return out


def _median_test(records: list[dict], optimizer: str, batch: int) -> float:
    from landbench.outcomes import batch_size_of

    chosen = [r for r in records if r["optimizer"] == optimizer and "test_loss" in r]
    values = [r["test_loss"] for r in chosen if (batch_size_of(r) or 0) == batch]
    return float(np.median(values))


def test_ranking_by_test_loss_orders_each_scenario_by_its_median_test_loss(records: list[dict]) -> None:
    board = rank(records, objective="test", bootstrap=50)
    assert len(board.scenarios) == 2 and any("not finite sums" in n for n in board.notes)
    for result in board.scenarios:
        batch = result.scenario.batch_size
        medians = {o: _median_test(records, o, batch) for o in OPTIMIZERS}
        expected = sorted(OPTIMIZERS, key=medians.__getitem__)
        assert sorted(OPTIMIZERS, key=result.ranks.__getitem__) == expected
        assert not result.targets  # the training-loss targets do not enter
    data = board.as_dict()
    assert data["options"]["objective"] == "test"
    assert {s["final_metric"] for s in data["scenarios"]} == {"test_loss"}
    assert "ranked by the median test (population) loss" in board.to_text()
    markdown = board.to_markdown()
    assert "median test loss" in markdown and "f* unknown" not in markdown
    assert markdown.count("ranked by the share of diverged runs, then the median test (population) loss") == 2
    train = rank(records, bootstrap=50)  # the same two scenarios (quadratic's was run by one optimizer)
    assert [r.scenario for r in train.scenarios] == [r.scenario for r in board.scenarios]
    assert all(r.targets for r in train.scenarios)
    with pytest.raises(LandbenchError, match="objective must be one of train, test"):
        rank(records, objective="validation")


def test_rank_objective_flag(tmp_path: Path, records: list[dict]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = CliRunner().invoke(main, ["rank", str(path), "--objective", "test", "--json", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["options"]["objective"] == "test"
    bad = CliRunner().invoke(main, ["rank", str(path), "--objective", "loss"])
    assert bad.exit_code == 2 and "'loss' is not one of 'train', 'test'" in bad.output


def test_asv_metrics_read_the_test_loss_and_gap(records: list[dict]) -> None:
    runs = [r for r in records if r["optimizer"] == OPTIMIZERS[0] and r.get("batch_size") == 4]
    assert METRICS["test_loss"][0](runs, None) == pytest.approx(float(np.median([r["test_loss"] for r in runs])))
    gaps = [r["test_loss"] - r["final_loss"] for r in runs]
    assert METRICS["gen_gap"][0](runs, None) == pytest.approx(float(np.median(gaps)), rel=1e-6, abs=1e-9)
    plain = [r for r in records if r["family"] == "quadratic"]
    assert math.isnan(METRICS["test_loss"][0](plain, None)) and math.isnan(METRICS["gen_gap"][0](plain, None))


def test_asv_batch_size_reaches_the_runs_and_existing_versions_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    import landbench.asv_tracking as tracking

    seen: list[object] = []
    real = tracking.run

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("batch_size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tracking, "run", spy)
    attrs = {"optimizers": ["sgd(lr=0.1)"], "problems": ["least_squares(dim=4, samples=32)"], "seeds": 2, "steps": 20}
    mini = type("Mini", (LandbenchScores,), {**attrs, "batch_size": 8})
    scores = mini().compute_scores()
    assert seen == [8] and scores[("test_loss", "sgd(lr=0.1)", attrs["problems"][0])] > 0
    assert tracking._settings(mini).endswith("batch_size=8")
    plain = type("Plain", (LandbenchScores,), attrs)
    # the metrics list of a subclass that tracks everything is the one before finite sums existed
    assert tracking._settings(plain) == (
        "seeds=2, steps=20, noise=0.0, instance=0, dtype='float32', "
        "metrics=['escape_steps', 'loss_gap', 'basin_miss', 'sharpness', 'diverged']"
    )
    with pytest.raises(TypeError, match=r"Bad\.batch_size: no problem is a finite sum"):
        type("Bad", (LandbenchScores,), {**attrs, "problems": ["saddle(dim=4)"], "batch_size": 8})
    mixed = type(
        "Mixed", (LandbenchScores,), {**attrs, "problems": [*attrs["problems"], "saddle(dim=4)"], "batch_size": 8}
    )
    seen.clear()
    mixed().compute_scores()
    assert seen == [8, None]  # the saddle runs its full batch
    with pytest.raises(TypeError, match=r"Big\.batch_size: .*exceeds the 32 training examples"):
        type("Big", (LandbenchScores,), {**attrs, "batch_size": 64})
    with pytest.raises(TypeError, match=r"Zero\.batch_size: batch_size must be a whole number"):
        type("Zero", (LandbenchScores,), {**attrs, "batch_size": 0})


def test_the_report_draws_generalisation_against_sharpness_and_batch_size(tmp_path: Path, records: list[dict]) -> None:
    from landbench.report.build import write_report

    write_report(records, tmp_path / "report")
    figures = tmp_path / "report" / "figures"
    assert (figures / "generalization.png").is_file() and (figures / "batch_size.png").is_file()
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Generalization gap against sharpness" in text and "against batch size" in text
    write_report([r for r in records if r["family"] == "quadratic"], tmp_path / "plain")
    assert not (tmp_path / "plain" / "figures" / "batch_size.png").exists()


def test_the_run_table_names_batch_sizes(records: list[dict]) -> None:
    from landbench.cli import summary_table

    table = summary_table(records)
    assert "0 batch 4" in table and "0 batch 48" not in table  # the full batch is named by no batch size
    header = table.splitlines()[0]
    assert "test loss" in header and "gen. gap" in header
    runs = [r for r in records if r.get("batch_size") == 4 and r["optimizer"] == OPTIMIZERS[0]]
    row = next(line for line in table.splitlines() if "0 batch 4 " in line and OPTIMIZERS[0] in line)
    assert f"{float(np.median([r['test_loss'] for r in runs])):.4g}" in row
    plain = summary_table([r for r in records if r["family"] == "quadratic"])
    assert "test loss" not in plain
