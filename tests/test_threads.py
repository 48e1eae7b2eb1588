"""Intra-op threads: chosen by size, overridden by the user, carried by every record."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench import threads
from landbench.cli import main
from landbench.errors import SpecError
from landbench.jobs import make_job, run_job
from landbench.runner import run_suite
from landbench.suite import adhoc_suite
from landbench.threads import ENV, SMALL_BATCH_ELEMENTS, check_threads, choose_threads, using_threads


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_a_small_batch_runs_on_one_thread_and_a_large_one_on_the_process_threads_less_a_core_for_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    with using_threads(8):  # a plain process: every core, so one is left to the machine
        assert choose_threads(SMALL_BATCH_ELEMENTS - 1) == 1
        assert choose_threads(SMALL_BATCH_ELEMENTS) == 7
    with using_threads(16):  # more threads than cores: still one core left
        assert choose_threads(SMALL_BATCH_ELEMENTS) == 7
    with using_threads(4):  # a pool worker's share of the driver's threads: kept whole
        assert choose_threads(10 * SMALL_BATCH_ELEMENTS) == 4
    with using_threads(1):
        assert choose_threads(10 * SMALL_BATCH_ELEMENTS) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    assert choose_threads(10 * SMALL_BATCH_ELEMENTS) == 1


def test_pool_workers_share_the_drivers_threads_not_the_logical_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with two logical CPUs per core (16 CPUs, torch's default of 8 threads), one
    worker runs what the driver would, 8 threads, and keeps them in a large batch (8 < 16 CPUs):
    with the logical CPUs it had 16, then 15, two threads on most cores."""
    from landbench.executors.processes import ProcessExecutor

    monkeypatch.setattr(threads, "available_cores", lambda: 16)
    with using_threads(8):
        assert [threads.worker_threads(w) for w in (1, 2, 3, 8, 16, 64)] == [8, 4, 2, 1, 1, 1]
        assert ProcessExecutor(workers=1).threads == 8
        assert ProcessExecutor(workers=3).threads == 2
    with using_threads(8):  # what the worker then chooses for a large batch: all 8 (it leaves 8 CPUs free)
        assert choose_threads(10 * SMALL_BATCH_ELEMENTS) == 8


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_available_cores_are_the_cpu_affinity_of_the_process() -> None:
    assert threads.available_cores() == len(os.sched_getaffinity(0)) >= 1


def test_the_argument_wins_over_the_environment_which_wins_over_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "3")
    assert choose_threads(10) == 3
    assert choose_threads(10, threads=2) == 2
    monkeypatch.setenv(ENV, " ")
    assert choose_threads(10) == 1  # blank: not set


@pytest.mark.parametrize("bad", [0, -1, "x", "2.5", True, 10**6, "", "\u00b2", "\u0663", "\u2460"])
def test_a_bad_thread_count_is_one_line_naming_what_is_valid(bad: object) -> None:
    with pytest.raises(SpecError, match=r"whole number of threads from 1 to 1024, got") as error:
        check_threads(bad)
    assert "\n" not in str(error.value)


def test_using_threads_restores_the_process_count_even_when_the_block_raises() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), using_threads(1 if before > 1 else 2):
        assert torch.get_num_threads() != before
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("problem", "optimizer", "curvature"),
    [
        ("saddle(dim=20000)", "adam(lr=0.01)", True),
        ("quadratic(dim=20000)", "sgd(lr=0.01, momentum=0.9)", False),
        ("rosenbrock(dim=20000)", "adam(lr=0.001)", False),
        ("rastrigin(dim=20000)", "rmsprop(lr=0.001)", False),
    ],
)
def test_records_carry_the_threads_and_the_numbers_do_not_depend_on_them(
    problem: str, optimizer: str, curvature: bool
) -> None:
    """A batch of two or more runs of an elementwise family, stepped as one tensor: torch gives each
    row's sum to one thread, so the same numbers bit for bit (the metrics too), at a size where it
    does split the kernels across two threads (80000 elements). (A batch of one run is not: torch
    splits a single row's sum across threads; the README says so.)"""
    one, two = (
        landbench.run(problem, optimizer, seeds=4, steps=30, curvature=curvature, threads=count) for count in (1, 2)
    )
    assert {r["threads"] for r in one} == {1} and {r["threads"] for r in two} == {2}
    ignored = {"threads", "wall_s", "metrics_s"}
    assert [{k: v for k, v in r.items() if k not in ignored} for r in one] == [
        {k: v for k, v in r.items() if k not in ignored} for r in two
    ]


def test_a_job_carries_the_users_threads_to_any_process(tmp_path: Path) -> None:
    suite = adhoc_suite(["quadratic(dim=3)"], ["sgd(lr=0.1)"], [0, 1], 20, [0.0]).with_overrides(tune=False)
    result = run_suite(suite, tmp_path, progress=False, threads=2)
    assert {r["threads"] for r in result.records} == {2}
    job = make_job("score", suite.scenarios()[0], ["sgd(lr=0.1)"], [0], "cpu")
    shipped = pickle.loads(pickle.dumps(job.__class__(**{**job.__dict__, "threads": 2})))  # as a worker gets it
    assert run_job(shipped)[0]["threads"] == 2


def test_bad_threads_on_the_command_line_or_in_the_environment_exit_2_before_anything_runs(tmp_path: Path) -> None:
    runner = CliRunner()
    command = ["run", "--problem", "quadratic(dim=3)", "--optimizer", "sgd(lr=0.1)", "--seeds", "2", "--steps", "5"]
    command += ["--no-tune", "--no-progress", "--out", str(tmp_path / "out")]
    bad_option = runner.invoke(main, [*command, "--threads", "0"])
    assert bad_option.exit_code == 2 and len(bad_option.output.strip().splitlines()) == 1
    assert "--threads must be a whole number of threads from 1 to 1024, got '0'" in bad_option.output
    bad_env = runner.invoke(main, command, env={ENV: "many"})
    assert bad_env.exit_code == 2 and f"{ENV} must be a whole number" in bad_env.output
    assert not (tmp_path / "out").exists()
    good = runner.invoke(main, [*command, "--threads", "2", "--json"])
    assert good.exit_code == 0, good.output
    assert {json.loads(line)["threads"] for line in good.output.splitlines() if line.startswith("{")} == {2}


def test_more_threads_than_cores_is_said_once_and_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert threads.oversubscription(None) is None and threads.oversubscription(2) is None
    command = ["run", "--problem", "quadratic(dim=3)", "--optimizer", "sgd(lr=0.1)", "--seeds", "2", "--steps", "5"]
    command += ["--no-tune", "--no-progress", "--out", str(tmp_path / "out"), "--threads", "64"]
    done = CliRunner().invoke(main, command)
    assert done.exit_code == 0, done.output
    assert done.stderr.count("64 threads on 2 cores") == 1
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert {r["threads"] for r in records} == {64}
