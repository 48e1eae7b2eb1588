"""The tuning protocol: grids on held-out runs, a choice that follows theory, scored runs it never saw."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from landbench.errors import SuiteError
from landbench.optimizers import resolve
from landbench.optimizers.batching import grid_shares_batch
from landbench.ranking import rank
from landbench.runner import run_suite
from landbench.store import ResultStore
from landbench.suite import parse_suite
from landbench.tuning import CRITERION, DEFAULT_GRID, NOT_TUNED, Grid, Tuning, label_of, with_lr

GRID = [0.01, 0.03162, 0.1, 0.3162]

SUITE = """
name = "tuned"
seeds = [0, 1, 2]
instances = [0, 1]
steps = 200
dtype = "float64"
optimizers = ["gd", "sgd(momentum=0.9)"]

[metrics]
curvature = false

[tuning]
instances = [7]
seeds = [10, 11]
grid = [0.01, 0.03162, 0.1, 0.3162]

[[problems]]
spec = "quadratic(condition=10.0)"
dims = [6]

[[problems]]
spec = "rastrigin"
dims = [2]
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("tuned")
    run_suite(parse_suite(SUITE), out, progress=False)
    return out, ResultStore(out).records()


def test_tuning_never_scores_on_a_seed_or_instance_it_tuned_on(tuned: tuple[Path, list[dict]]) -> None:
    _, records = tuned
    tune = [r for r in records if r["phase"] == "tune"]
    score = [r for r in records if r["phase"] == "score"]
    assert len(tune) == 2 * 2 * len(GRID) * 2  # optimizers x problems x rates x seeds (one instance)
    assert len(score) == 2 * 2 * 2 * 3  # optimizers x problems x instances x seeds
    assert {r["instance"] for r in tune} == {7} and {r["seed"] for r in tune} == {10, 11}
    assert not {r["instance"] for r in tune} & {r["instance"] for r in score}
    assert not {r["seed"] for r in tune} & {r["seed"] for r in score}
    for record in score:
        assert record["instance"] not in record["tuning"]["instances"]
        assert record["seed"] not in record["tuning"]["seeds"]


def test_the_chosen_rate_is_the_one_theory_says_converges_fastest(tuned: tuple[Path, list[dict]]) -> None:
    """Gradient descent on 1/2 sum lambda_i x_i^2, lambda in [1, 10], contracts the error by
    max_i |1 - lr lambda_i| per step: of the grid, lr = 0.1 (factor 0.9) is the fastest, 0.3162
    diverges (|1 - 3.162| > 1)."""
    _, records = tuned
    eigenvalues = 10.0 ** np.linspace(0, 1, 6)
    factor = [np.abs(1 - lr * eigenvalues).max() for lr in GRID]
    expected = GRID[int(np.argmin(factor))]
    (chosen,) = {r["tuning"]["lr"] for r in records if r["phase"] == "score" and r["label"] == "gd" and r["dim"] == 6}
    assert chosen == expected == 0.1
    scored = [r for r in records if r["phase"] == "score" and r["label"] == "gd" and r["dim"] == 6]
    assert {r["optimizer"] for r in scored} == {"gd(lr=0.1)"}
    assert all(r["tuning"]["grid"] == GRID and r["tuning"]["family"] == "quadratic" for r in scored)
    assert all(r["tuning"]["seeds"] == [10, 11] and r["tuning"]["instances"] == [7] for r in scored)


def test_scored_records_say_what_was_tuned_from_what(tuned: tuple[Path, list[dict]]) -> None:
    """gd's own lr is its default 0.01; the absolute grid is relative to nothing; no rate diverged (at
    0.3162 the quadratic's loss grows 4.7-fold a step, which stays finite in float64 over 200 steps:
    the guard below has its own tests); gd is not learning-rate-free."""
    _, records = tuned
    (info,) = {
        json.dumps(r["tuning"], sort_keys=True)
        for r in records
        if r["phase"] == "score" and r["family"] == "quadratic" and r["label"] == "gd"
    }
    assert json.loads(info) == {
        "family": "quadratic",
        "tuned": ["lr"],
        "lr": 0.1,
        "given_lr": 0.01,
        "learning_rate_free": False,
        "grid": GRID,
        "grid_kind": "absolute",
        "grid_factors": None,
        "relative_to": None,
        "diverged_rates": [],
        "instances": [7],
        "seeds": [10, 11],
        "criterion": CRITERION,
    }
    json.dumps(records)  # every record stays plain JSON


def test_each_family_gets_its_own_rate_and_the_ranking_names_the_optimizer_once(
    tuned: tuple[Path, list[dict]],
) -> None:
    _, records = tuned
    board = rank(records)
    assert sorted(s.optimizer for s in board.standings) == ["gd", "sgd(momentum=0.9)"]
    assert len(board.scenarios) == 2
    assert any("tuning-phase records left out" in note for note in board.notes)


def test_a_tuned_suite_resumes_without_rerunning_anything(tuned: tuple[Path, list[dict]]) -> None:
    out, records = tuned
    again = run_suite(parse_suite(SUITE), out, progress=False)
    assert again.ran == 0 and again.skipped == 2 * 2 * 2 * 3
    assert len(ResultStore(out).records()) == len(records)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[tuning]\nseeds = [0, 1]\n", r"tuning.seeds: seeds \[0, 1\] are both tuned on and scored"),
        ("[tuning]\ninstances = [0]\n", r"tuning.instances: instances \[0\] are both tuned on and scored"),
        ("[tuning]\ngrid = [0.1, -1.0]\n", "tuning.grid: expected a non-empty list of distinct positive"),
        ("[tuning]\ngird = [0.1]\n", "tuning.gird: unknown key; valid keys of .tuning.: instances, seeds, grid"),
        ("[tuning]\n[tuning.grids]\nadam = [0.1, 0.1]\n", "adam: expected a non-empty list of distinct positive"),
        ("[tuning]\n[tuning.grids]\nadma = [0.1]\n", "'adma' names none of the optimizers; valid: gd"),
    ],
)
def test_bad_tuning_tables_are_refused_with_the_place_and_what_is_valid(table: str, message: str) -> None:
    text = 'seeds = 4\noptimizers = ["gd"]\n' + table + '[[problems]]\nspec = "quadratic(dim=2)"\n'
    with pytest.raises(SuiteError, match=message):
        parse_suite(text)


def test_grids_come_from_the_suite_then_the_shipped_defaults() -> None:
    tuning = Tuning(grids=(("sgd(momentum=0.9)", (0.5,)), ("adam", (0.2, 0.4))))
    assert tuning.rates_for("sgd(lr=0.1, momentum=0.9)") == (0.5,)  # by label
    assert tuning.rates_for("adam(lr=0.3)") == (0.2, 0.4)  # by name
    assert tuning.rates_for("adadelta") == (0.01, 0.03162, 0.1, 0.3162, 1.0, 3.162, 10.0, 31.62, 100.0)
    assert tuning.rates_for("sgd") == DEFAULT_GRID
    assert tuning.grid_for("sgd") == Grid(DEFAULT_GRID, "absolute")
    assert DEFAULT_GRID[0] == 1e-4 and DEFAULT_GRID[-1] == 10.0
    assert np.allclose(np.diff(np.log10(DEFAULT_GRID)), 0.5, atol=1e-3)  # half decades
    assert label_of("sgd(lr=0.1, momentum=0.9)") == "sgd(momentum=0.9)"
    assert with_lr("sam(base='adam')", 0.01) == "sam(base='adam', lr=0.01)"


def test_specs_that_differ_only_in_lr_and_overrides_that_overlap_tuning_are_refused() -> None:
    text = (
        'seeds = 4\noptimizers = ["adam(lr=0.1)", "adam(lr=0.01)"]\n[tuning]\n[[problems]]\nspec = "quadratic(dim=2)"\n'
    )
    with pytest.raises(SuiteError, match="differ only in lr, which tuning chooses: list 'adam' once"):
        parse_suite(text)
    suite = parse_suite(SUITE)
    with pytest.raises(SuiteError, match=r"seeds \[10, 11\] are both tuned on and scored"):
        suite.with_overrides(seeds=[10, 11, 12])


class SelfRate(torch.optim.Optimizer):
    """Reads its rate from ``self.lr``, not from its param groups (as some third-party classes do)."""

    def __init__(self, params, lr: float = 0.01) -> None:  # noqa: ANN001
        self.lr = lr
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-self.lr)


def test_a_grid_shares_a_batch_only_when_the_optimizer_reads_the_rate_of_its_param_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("self_rate")
    module.SelfRate = SelfRate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "self_rate", module)
    assert grid_shares_batch(resolve("adam(lr=0.01)"))
    assert grid_shares_batch(resolve("sam(lr=0.1)"))
    assert not grid_shares_batch(resolve("self_rate:SelfRate(lr=0.1)"))  # tuned one rate at a time
    assert not grid_shares_batch(resolve("lbfgs"))  # separate mode


# --- grids relative to the spec's own lr ------------------------------------------------------------

RELATIVE = """
seeds = [0, 1]
steps = 200
dtype = "float64"
optimizers = ["gd(lr=0.01)", "sgd(lr=0.5, momentum=0.9)"]

[metrics]
curvature = false

[tuning]
instances = [7]
seeds = [10, 11]
grid = {relative = [1, 3.162, 10, 31.62]}

[tuning.grids]
"sgd(momentum=0.9)" = {relative = [0.01, 0.1, 1]}

[[problems]]
spec = "quadratic(condition=10.0)"
dims = [6]
"""


def test_a_relative_grid_multiplies_the_specs_own_lr_and_the_records_say_so(tmp_path: Path) -> None:
    """gd(lr=0.01) times [1, 3.162, 10, 31.62] is the grid of the theory test above, so the chosen rate
    is again 0.1 (the fastest contraction, max |1 - lr lambda| = 0.9); a per-optimizer relative grid
    wins over the suite-wide one."""
    suite = parse_suite(RELATIVE)
    assert suite.tuning is not None
    assert suite.tuning.rates_for("gd(lr=0.01)") == tuple(GRID)
    assert suite.tuning.rates_for("sgd(lr=0.5, momentum=0.9)") == (0.005, 0.05, 0.5)
    assert suite.tuning.rates_for("gd(lr=2.0)") == (2.0, 6.324, 20.0, 63.24)
    run_suite(suite, tmp_path, progress=False)
    records = ResultStore(tmp_path).records()
    assert {r["optimizer"] for r in records if r["phase"] == "tune" and r["label"] == "gd"} == {
        f"gd(lr={lr})" for lr in GRID
    }
    gd = [r["tuning"] for r in records if r["phase"] == "score" and r["label"] == "gd"]
    assert {t["lr"] for t in gd} == {0.1}
    assert gd[0]["grid_kind"] == "relative" and gd[0]["relative_to"] == 0.01 and gd[0]["given_lr"] == 0.01
    assert gd[0]["grid_factors"] == [1.0, 3.162, 10.0, 31.62] and gd[0]["grid"] == GRID
    sgd = [r["tuning"] for r in records if r["phase"] == "score" and r["label"] == "sgd(momentum=0.9)"]
    assert sgd[0]["grid"] == [0.005, 0.05, 0.5] and sgd[0]["relative_to"] == 0.5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[tuning]\ngrid = {relativ = [0.1, 1]}\n",
            r"bad.toml:4: tuning.grid: expected a non-empty list of distinct positive learning rates, or "
            r"\{relative = \[factors\]\}.*got the key 'relativ' \(did you mean 'relative'\?\)",
        ),
        ("[tuning]\ngrid = {relative = [1, 1]}\n", r"bad.toml:4: tuning.grid: expected .*got \{'relative': \[1, 1\]\}"),
        (
            "[tuning]\ngrid = {relative = 10}\n",
            r"bad.toml:4: tuning.grid: expected .*multiples of each optimizer's own lr",
        ),
        (
            '[tuning]\n[tuning.grids]\n"gd" = [0.1]\n"sgd(momentum=0.9)" = {relative = [0.1, -1]}\n',
            r"bad.toml:6: tuning.grids.sgd\(momentum=0.9\): expected a non-empty list",
        ),
        ("[tuning]\n[tuning.grids]\nsgd = {relative = []}\n", r"bad.toml:5: tuning.grids.sgd: expected"),
    ],
)
def test_bad_relative_grids_are_refused_with_the_file_the_line_and_what_is_valid(table: str, message: str) -> None:
    text = 'seeds = 4\noptimizers = ["gd", "sgd(momentum=0.9)"]\n' + table + '[[problems]]\nspec = "quadratic(dim=2)"\n'
    with pytest.raises(SuiteError, match=message):
        parse_suite(text, "bad.toml")


# --- the choice never falls on a rate whose tuning runs diverged -------------------------------------


def _tuned_run(text: str, out: Path) -> tuple[list[dict], list[dict]]:
    run_suite(parse_suite(text), out, progress=False)
    records = ResultStore(out).records()
    return [r for r in records if r["phase"] == "tune"], [r for r in records if r["phase"] == "score"]


def test_a_rate_that_reaches_the_target_then_diverges_is_never_chosen(tmp_path: Path) -> None:
    text = (
        'seeds = [0, 1]\nsteps = 200\ndtype = "float64"\noptimizers = ["adversarial:Sprinter"]\n'
        "[metrics]\ncurvature = false\n[tuning]\ngrid = [0.01, 0.1, 1.0]\n"
        '[[problems]]\nspec = "quadratic(condition=10.0)"\ndims = [4]\n'
    )
    tune, score = _tuned_run(text, tmp_path)
    at_one = [r for r in tune if r["optimizer"] == "adversarial:Sprinter(lr=1.0)"]
    assert at_one and all(r["diverged"] for r in at_one)  # every run at lr = 1 blew up ...
    assert all(r["curve"]["loss"][1] == 0.0 for r in at_one)  # ... after sitting on f* from step 1
    # gd at 0.1 contracts by max|1 - 0.1 lambda| = 0.9 per step (0.9^200 ~ 7e-10), at 0.01 by 0.99
    assert {r["tuning"]["lr"] for r in score} == {0.1}
    assert score[0]["tuning"]["diverged_rates"] == [1.0]
    assert all(not r["diverged"] and r["loss_gap"] < 1e-12 for r in score)


def test_the_guard_overrules_a_rank_that_a_diverging_rate_wins_on_the_familys_other_scenarios(tmp_path: Path) -> None:
    """On quadratic(condition=10), gd at 0.3162 diverges (|1 - 3.162| > 1; inf in float32 within 200
    steps) while 0.1 converges; on the two condition-1 quadratics 0.3162 contracts faster (0.68 per
    step against 0.9). Its mean rank over the family is the better one (4/3 against 5/3), so the
    ranking alone would choose it; the guard chooses 0.1."""
    text = (
        'seeds = [0, 1]\nsteps = 200\noptimizers = ["gd"]\n[metrics]\ncurvature = false\n'
        "[tuning]\ngrid = [0.1, 0.3162]\n"
        '[[problems]]\nspec = "quadratic(condition=10.0)"\ndims = [2]\n'
        '[[problems]]\nspec = "quadratic(condition=1.0)"\ndims = [2, 3]\n'
    )
    tune, score = _tuned_run(text, tmp_path)
    diverged = {r["optimizer"] for r in tune if r["diverged"]}
    assert diverged == {"gd(lr=0.3162)"}
    unguarded = rank([{**r, "label": r["optimizer"], "phase": "score"} for r in tune], bootstrap=1)
    assert unguarded.standings[0].optimizer == "gd(lr=0.3162)"  # the ranking alone prefers it
    assert {r["tuning"]["lr"] for r in score} == {0.1}
    assert all(not r["diverged"] for r in score)
    assert {r["tuning"]["diverged_rates"][0] for r in score} == {0.3162}


def test_lion_on_the_saddle_chain_gets_the_rate_that_converges(tmp_path: Path) -> None:
    """pytorch_optimizer.Lion on saddle_chain(dim=3): at lr = 1 one sign step lands on a minimum and
    the runs then oscillate (final gap about 2.75); at lr = 0.1 they converge (gap about 1e-6, the
    resolution of a sign step of that size). Tuning must choose a rate whose scored runs end near
    the minimum."""
    pytest.importorskip("pytorch_optimizer")
    text = (
        'seeds = [0, 1, 2, 3]\nsteps = 3000\ndtype = "float64"\noptimizers = ["pytorch_optimizer:Lion"]\n'
        "[metrics]\ncurvature = false\n[tuning]\ngrid = [0.01, 0.03162, 0.1, 0.3162, 1.0]\n"
        '[[problems]]\nspec = "saddle_chain"\ndims = [3]\n'
    )
    tune, score = _tuned_run(text, tmp_path)
    final = {r["optimizer"]: r["loss_gap"] for r in tune}
    assert final["pytorch_optimizer:Lion(lr=1.0)"] > 1.0  # the trap is there ...
    assert final["pytorch_optimizer:Lion(lr=0.1)"] < 1e-5  # ... and so is the rate that converges
    assert {r["tuning"]["lr"] for r in score} == {0.1}
    assert all(not r["diverged"] and r["loss_gap"] < 1e-5 for r in score)


# --- tuning turned off, or on for a suite without [tuning] -------------------------------------------


def test_tune_false_keeps_every_spec_as_given_and_the_records_say_so(tmp_path: Path) -> None:
    suite = parse_suite(SUITE).with_overrides(optimizers=["gd(lr=0.05)", "sgd(lr=0.2, momentum=0.9)"], tune=False)
    run = run_suite(suite, tmp_path, progress=False)
    records = ResultStore(tmp_path).records()
    assert not [r for r in records if r["phase"] == "tune"]
    assert {r["optimizer"] for r in run.records} == {"gd(lr=0.05)", "sgd(lr=0.2, momentum=0.9)"}
    for record in run.records:
        assert record["phase"] == "score" and record["label"] == record["optimizer"]  # ranked under its full spec
        assert record["tuning"]["tuned"] == [] and record["tuning"]["why"] == NOT_TUNED
        assert record["tuning"]["lr"] == record["tuning"]["given_lr"] == resolve(record["optimizer"]).kwargs["lr"]
    # two rates of one optimizer are two contestants when nothing is tuned (refused when tuning chooses lr)
    both = parse_suite(SUITE).with_overrides(optimizers=["gd(lr=0.05)", "gd(lr=0.1)"], tune=False)
    assert {sc.optimizer for sc in both.scenarios()} == {"gd(lr=0.05)", "gd(lr=0.1)"}
    with pytest.raises(SuiteError, match="differ only in lr"):
        parse_suite(SUITE).with_overrides(optimizers=["gd(lr=0.05)", "gd(lr=0.1)"])


def test_tune_true_gives_a_suite_without_tuning_the_default_table() -> None:
    plain = 'seeds = 2\noptimizers = ["gd"]\n[[problems]]\nspec = "quadratic(dim=2)"\n'
    suite = parse_suite(plain)
    assert suite.tuning is None and suite.with_overrides(tune=False).tuning is None
    tuned = suite.with_overrides(tune=True)
    assert tuned.tuning == Tuning()
    assert tuned.tuning.instances == (1000,) and tuned.tuning.seeds == (1000, 1001, 1002, 1003)
    with pytest.raises(SuiteError, match=r"\[tuning\] \(the default, for --tune\): seeds \[1000\] are both tuned"):
        parse_suite(plain).with_overrides(seeds=[1000], tune=True)


# --- the command line: --tune / --no-tune --------------------------------------------------------------

SMALL = ["--problem", "quadratic(dim=2)", "--seeds", "2", "--steps", "20", "--no-progress", "--json"]


def _cli(*args: str):  # noqa: ANN202
    from click.testing import CliRunner

    from landbench.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_no_tune_on_the_baselines_keeps_the_users_lr(tmp_path: Path) -> None:
    result = _cli(
        "run", "baselines", "--optimizer", "sgd(momentum=0.9, lr=0.05)", "--no-tune", *SMALL, "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 * 2  # instances 0, 1 of the baselines x seeds 0, 1
    assert {r["optimizer"] for r in records} == {"sgd(lr=0.05, momentum=0.9)"}
    assert all(r["tuning"]["tuned"] == [] and r["tuning"]["lr"] == 0.05 for r in records)
    assert "lr kept as given: sgd(lr=0.05, momentum=0.9)" in result.stderr
    assert not [r for r in ResultStore(tmp_path).records() if r["phase"] == "tune"]


@pytest.mark.parametrize("tune", ["--no-tune", "--tune"])
def test_an_optimizer_whose_lr_is_required_runs_on_the_baselines(tmp_path: Path, tune: str) -> None:
    """A class without a default lr (a required argument) once failed with "the argument(s) lr are
    required" (review): its default is simply unknown, which no absolute grid needs."""
    result = _cli(
        "run", "baselines", "--optimizer", "adversarial:RequiredLrSGD(lr=0.005)", tune, *SMALL, "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    lrs = {r["tuning"]["lr"] for r in records}
    assert lrs == {0.005} if tune == "--no-tune" else lrs <= set(DEFAULT_GRID)


def test_the_baselines_tune_by_default_and_say_which_lr_they_replace(tmp_path: Path) -> None:
    result = _cli(
        "run",
        "baselines",
        "--optimizer",
        "sgd(momentum=0.9, lr=0.05)",
        "--optimizer",
        "adam",
        *SMALL,
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    grid = "[" + ", ".join(f"{r:g}" for r in DEFAULT_GRID) + "]"
    assert f"tuning lr of sgd(momentum=0.9) per family over {grid} (pass --no-tune to keep lr=0.05)" in lines
    assert f"tuning lr of adam per family over {grid}" in lines  # its default lr: nothing of the user's replaced
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["tuning"]["given_lr"] for r in records if r["label"] == "sgd(momentum=0.9)"} == {0.05}
    assert all(r["tuning"]["tuned"] == ["lr"] and r["tuning"]["lr"] in DEFAULT_GRID for r in records)


def test_tune_on_a_suite_without_tuning_uses_the_default_table(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text('seeds = 2\nsteps = 20\noptimizers = ["gd(lr=0.3)"]\n[[problems]]\nspec = "quadratic(dim=2)"\n')
    result = _cli("run", str(path), "--tune", "--no-progress", "--json", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "(pass --no-tune to keep lr=0.3)" in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(r["tuning"]["instances"] == [1000] and r["tuning"]["seeds"] == [1000, 1001, 1002, 1003] for r in records)
    clash = _cli("run", str(path), "--tune", "--seeds", "1001,1002", "--out", str(tmp_path / "out"))
    assert clash.exit_code == 2
    assert clash.stderr.strip().splitlines() == [
        "Error: plain: [tuning] (the default, for --tune): seeds [1001, 1002] are both tuned on and scored; "
        "tuning seeds must differ from scored ones"
    ]
