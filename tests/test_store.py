"""Results are never lost: batches are appended as they finish, and an interrupted sweep resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import landbench.jobs
import landbench.runner
from landbench.store import RESULTS_FILE, ResultStore, load_results
from landbench.suite import parse_suite

SUITE = """
seeds = 2
steps = 30
optimizers = ["sgd(lr=0.1)", "adam(lr=0.05)"]
[metrics]
curvature = false
[[problems]]
spec = "saddle(index=1)"
dims = [3, 6]
[[problems]]
spec = "quadratic(dim=3)"
"""

VOLATILE = ("wall_s", "metrics_s")


def _stable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def test_a_rerun_into_the_same_folder_skips_everything(tmp_path: Path) -> None:
    suite = parse_suite(SUITE)
    first = landbench.runner.run_suite(suite, tmp_path, progress=False)
    assert (first.ran, first.skipped) == (12, 0)
    second = landbench.runner.run_suite(suite, tmp_path, progress=False)
    assert (second.ran, second.skipped) == (0, 12)
    assert second.records == first.records
    assert len(ResultStore(tmp_path).records()) == 12


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = parse_suite(SUITE)
    reference = landbench.runner.run_suite(suite, tmp_path / "reference", progress=False).records
    real_run_batch = landbench.jobs.run_batch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):  # the third batch is killed mid-way (Ctrl-C)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_run_batch(*args, **kwargs)

    monkeypatch.setattr(landbench.jobs, "run_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        landbench.runner.run_suite(suite, tmp_path / "out", progress=False)
    assert len(ResultStore(tmp_path / "out").records()) == 4  # the two finished batches were kept
    monkeypatch.setattr(landbench.jobs, "run_batch", real_run_batch)
    resumed = landbench.runner.run_suite(suite, tmp_path / "out", progress=False)
    assert (resumed.ran, resumed.skipped) == (8, 4)
    assert _stable(resumed.records) == _stable(reference)


def test_more_seeds_later_only_runs_the_new_ones(tmp_path: Path) -> None:
    suite = parse_suite(SUITE)
    landbench.runner.run_suite(suite, tmp_path, progress=False)
    grown = landbench.runner.run_suite(suite.with_overrides(seeds=[0, 1, 2]), tmp_path, progress=False)
    assert (grown.ran, grown.skipped) == (6, 12)
    # A run does not depend on its batch: seed 0 alone equals seed 0 in the first batch.
    assert _stable(grown.records[:2]) == _stable(
        landbench.runner.run_suite(suite, tmp_path, progress=False).records[:2]
    )


def test_a_torn_last_line_is_set_aside_and_its_runs_run_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = parse_suite(SUITE)
    landbench.runner.run_suite(suite, tmp_path, progress=False)
    path = tmp_path / RESULTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:40])  # a crash in the middle of the last write
    rerun = landbench.runner.run_suite(suite, tmp_path, progress=False)
    assert rerun.ran == 1 and rerun.skipped == 11
    assert "cut short" in capsys.readouterr().err
    assert (tmp_path / (RESULTS_FILE + ".torn")).read_text().startswith(lines[-1][:40])
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_load_results_reads_folders_and_files_and_skips_bad_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def record(key: str) -> dict:
        return {"problem": "quadratic(dim=2)", "optimizer": "sgd(lr=0.1)", "seed": 0, "key": key}

    store = ResultStore(tmp_path / "a")
    store.append([record("1"), record("2")])
    loose = tmp_path / "b.jsonl"
    loose.write_text(f"{json.dumps(record('3'))}\nnot json\n{json.dumps(record('4'))}\n")
    assert [r["key"] for r in load_results([tmp_path / "a", loose])] == ["1", "2", "3", "4"]
    assert "b.jsonl:2: skipping a line that is not JSON" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no results at"):
        load_results([tmp_path / "missing"])
