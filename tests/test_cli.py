"""The landbench command: list, describe, run, with --json and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from landbench.cli import main

TINY = """
name = "tiny"
seeds = 2
steps = 20
optimizers = ["sgd(lr=0.1)"]
[[problems]]
spec = "saddle(index=1)"
dims = [4]
[[problems]]
spec = "rastrigin"
dims = [2]
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_families_and_suites() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    assert "saddle(dim, index=1, gamma=1.0" in result.output and "smoke" in result.output
    data = json.loads(invoke("list", "--json").output)
    assert {"saddle", "rosenbrock", "levy"} <= set(data["families"]) and "smoke" in data["suites"]
    assert data["families"]["saddle"]["parameters"][1]["name"] == "index"


def test_describe_a_family_and_an_instance() -> None:
    family = invoke("describe", "saddle")
    assert family.exit_code == 0 and "index" in family.output and "Dauphin" in family.output
    instance = invoke("describe", "saddle(dim=6, index=2, gamma=2.0)")
    assert "f* = -1.0" in instance.output and "saddle: value 0, index 2" in instance.output
    data = json.loads(invoke("describe", "rosenbrock(dim=4)", "--json").output)
    assert data["minima"][1]["value"] == pytest.approx(3.7014, abs=1e-4)


def test_run_a_suite_file_with_json_then_resume(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = invoke("run", str(tiny), "--out", str(out), "--json", "--no-progress")
    assert first.exit_code == 0
    records = [json.loads(line) for line in first.output.splitlines()]
    assert len(records) == 4 and {r["problem"] for r in records} == {"saddle(dim=4)", "rastrigin(dim=2)"}
    again = invoke("run", str(tiny), "--out", str(out), "--json", "--no-progress")
    assert [json.loads(line) for line in again.output.splitlines()] == records
    text = invoke("run", str(tiny), "--out", str(out), "--no-progress")
    assert "0 runs ran, 4 were already in" in text.output and "saddle(dim=4)" in text.output


def test_optimizer_flag_replaces_the_suites_optimizers(tiny: Path, tmp_path: Path) -> None:
    result = invoke(
        "run",
        str(tiny),
        "--optimizer",
        "adam(lr=0.01)",
        "--optimizer",
        "rmsprop(lr=0.01)",
        "--seeds",
        "1",
        "--steps",
        "5",
        "--out",
        str(tmp_path),
        "--json",
    )
    records = [json.loads(line) for line in result.output.splitlines()]
    assert {r["optimizer"] for r in records} == {"adam(lr=0.01)", "rmsprop(lr=0.01)"}
    assert {(r["seed"], r["steps"]) for r in records} == {(0, 5)}


def test_run_problems_and_optimizers_from_flags(tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--problem",
        "saddle(dim=3)",
        "--optimizer",
        "sgd(lr=0.1)",
        "--seeds",
        "0,4",
        "--steps",
        "5",
        "--noise",
        "0",
        "--noise",
        "0.1",
        "--out",
        str(tmp_path),
        "--json",
    )
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["seed"], r["noise"]) for r in records] == [(0, 0.0), (4, 0.0), (0, 0.1), (4, 0.1)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "give a suite"),
        (["run", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
        (["run", "--problem", "saddle(dim=3)", "--optimizer", "adamm(lr=0.1)"], "unknown optimizer 'adamm'"),
        (
            ["run", "--problem", "saddle(dim=3, index=4)", "--optimizer", "sgd(lr=0.1)"],
            "index must be between 1 and dim=3",
        ),
        (["run", "--problem", "saddle(dim=3)", "--optimizer", "sgd(lr=-1)"], "lr must be a positive finite number"),
        (["describe", "sadle"], "did you mean 'saddle'"),
    ],
)
def test_bad_input_exits_with_status_2_and_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, args + (["--out", str(tmp_path)] if args[0] == "run" else []))
    assert result.exit_code == 2
    assert message in result.output


def test_the_quick_start_smoke_suite_runs(tmp_path: Path) -> None:
    result = invoke("run", "smoke", "--out", str(tmp_path), "--no-progress")
    assert result.exit_code == 0
    assert "runs ran" in result.output and "saddle(dim=100)" in result.output


@pytest.mark.skipif(shutil.which("landbench") is None, reason="the console script is not installed")
def test_console_script_is_installed() -> None:
    completed = subprocess.run(["landbench", "--version"], capture_output=True, text=True, check=True)
    assert "landbench, version" in completed.stdout


def test_a_reader_that_goes_away_stops_the_output_quietly_and_keeps_what_was_stored(tmp_path: Path) -> None:
    """``landbench run ... --json | head -1``: no "Broken pipe" error (which exit status 2 would call
    bad input), status 1, and the records of the jobs that finished are in the store."""
    # 2 x 200 records of about 2 kB: more than a pipe holds, so the writer meets the closed pipe
    args = "--problem 'quadratic(dim=2)' --problem 'saddle(dim=3)' --optimizer sgd --seeds 200 --steps 5 --json"
    script = f"landbench run {args} --out '{tmp_path}' | head -c 1 > /dev/null; echo $" + "{PIPESTATUS[0]}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1" and done.stderr == "", (done.stdout, done.stderr)
    assert (tmp_path / "results.jsonl").read_text().count("\n") >= 200  # the first job's runs


def test_the_command_line_imports_no_scipy_until_a_command_needs_it() -> None:
    """scipy.stats, optimize and integrate cost 1 s of import, which every command (and every error
    message) would pay: the modules that use them import them where they do."""
    script = "import sys, landbench.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_suite_with_a_failing_optimizer_fails_before_running_anything(tmp_path: Path) -> None:
    suite = tmp_path / "unsafe.toml"
    suite.write_text(
        'optimizers = ["sgd(lr=0.1)", "torch.optim:SparseAdam(lr=0.1)"]\n[[problems]]\nspec = "saddle(dim=3)"\n'
    )
    result = CliRunner().invoke(main, ["run", str(suite), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "fails on a small test problem" in result.output
    assert not (tmp_path / "out").exists()


def test_ctrl_c_says_how_to_resume(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import landbench.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landbench.cli, "run_suite", interrupted)
    result = CliRunner().invoke(main, ["run", str(tiny), "--out", str(tmp_path)])
    assert result.exit_code == 130 and "run the same command again to resume" in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "0,-1"], "--seeds must be a count >= 1 or a non-empty list"),
        (["--seeds", "2,2"], "lists a run seed twice"),
        (["--seeds", ","], "a non-empty list"),
        (["--seeds", "a,"], "expected a count"),
        (["--noise", "nan"], "noise must be a finite number >= 0"),
        (["--noise", "inf"], "noise must be a finite number >= 0"),
        (["--device", "cuda:7"], "device 'cuda:7'"),
    ],
)
def test_bad_budget_flags_exit_with_status_2(flags: list[str], message: str, tmp_path: Path) -> None:
    args = ["run", "--problem", "saddle(dim=3)", "--optimizer", "sgd(lr=0.1)", "--steps", "3", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args + flags)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "results.jsonl").exists()


def test_one_seed_other_than_zero_is_a_list_of_one(tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--problem",
        "saddle(dim=3)",
        "--optimizer",
        "sgd(lr=0.1)",
        "--steps",
        "3",
        "--seeds",
        "3,",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert [json.loads(line)["seed"] for line in result.output.splitlines()] == [3]


def test_summary_reports_a_censored_median_escape(tmp_path: Path) -> None:
    # lr 0.01 from radius 1e-3 needs ~700 steps to escape: with 50 none escapes.
    result = invoke(
        "run",
        "--problem",
        "saddle(dim=5)",
        "--optimizer",
        "sgd(lr=0.01)",
        "--seeds",
        "3",
        "--steps",
        "50",
        "--out",
        str(tmp_path),
    )
    assert "0/3" in result.output and ">50" in result.output


def test_every_commands_help_shows_ranges_only_where_an_option_has_one() -> None:
    """Whole-number options without bounds (rank --bootstrap, critical --starts, ...) check their
    range in the command: their help says INTEGER and no range (click's own would read ``x<=None``),
    while bounded ones keep theirs (run --steps: ``x>=1``)."""
    from landbench.cli import main as cli_main

    for name in cli_main.commands:
        shown = CliRunner().invoke(cli_main, [name, "--help"], terminal_width=200).output
        assert "None]" not in shown and "None;" not in shown, (name, shown)
    assert "[x>=1]" in CliRunner().invoke(cli_main, ["run", "--help"], terminal_width=200).output


def test_describe_of_a_family_with_arguments_but_no_dim_says_how_to_describe_an_instance() -> None:
    done = CliRunner().invoke(main, ["describe", "saddle(index=2)"])
    assert done.exit_code == 0 and done.stdout.startswith("saddle\n")
    assert "give a dim, as in saddle(dim=N, index=2), to describe an instance" in done.stderr
    assert CliRunner().invoke(main, ["describe", "saddle"]).stderr == ""


def test_landbench_warnings_are_one_line_on_the_command_line(tmp_path: Path) -> None:
    """A batch found coupled says so in one line, ``Warning: ...``, not as Python shows a warning
    (the file, the line and the source of landbench's code that raised it)."""
    tests = Path(__file__).resolve().parent
    args = ["--problem", "quadratic(dim=10)", "--optimizer", "adversarial:LateCouplingSGD(lr=0.01, warmup=120)"]
    done = subprocess.run(
        ["landbench", "run", *args, "--steps", "300", "--seeds", "4", "--out", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tests)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "couples the runs" in line]
    assert len(lines) == 1 and lines[0].startswith("Warning: adversarial:LateCouplingSGD"), done.stderr
    assert "UserWarning" not in done.stderr and "engine.py" not in done.stderr
