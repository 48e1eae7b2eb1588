"""The tuning protocol: grids on held-out runs, a choice that follows theory, scored runs it never saw."""

from __future__ import annotations

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
from landbench.tuning import DEFAULT_GRID, Tuning, label_of, with_lr

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
    assert tuning.grid_for("sgd(lr=0.1, momentum=0.9)") == (0.5,)  # by label
    assert tuning.grid_for("adam(lr=0.3)") == (0.2, 0.4)  # by name
    assert tuning.grid_for("adadelta") == (0.01, 0.03162, 0.1, 0.3162, 1.0, 3.162, 10.0, 31.62, 100.0)
    assert tuning.grid_for("sgd") == DEFAULT_GRID
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
