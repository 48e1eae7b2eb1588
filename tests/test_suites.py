"""TOML suites: the shipped catalogue loads, and malformed files name the file, line or key, and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from landbench.errors import SuiteError
from landbench.suite import adhoc_suite, available_suites, load_suite, parse_suite

GOOD = """
name = "mini"
description = "two problems"
seeds = 3
steps = 50
noise = [0.0, 0.1]
optimizers = ["sgd(lr=0.1)", "adam(lr=1e-2)"]

[metrics]
tau = 0.5
targets = [1.0, 0.01]

[[problems]]
spec = "saddle(index=2)"
dims = [4, 8]

[[problems]]
spec = "rosenbrock(dim=3)"
steps = 20
noise = 0.0
seeds = [5, 9]
"""


def test_every_shipped_suite_loads_and_smoke_is_there() -> None:
    suites = available_suites()
    assert "smoke" in suites
    for name in suites:
        suite = load_suite(name)
        assert suite.scenarios(), name


def test_a_suite_expands_into_scenarios() -> None:
    suite = parse_suite(GOOD, "mini.toml")
    scenarios = suite.scenarios()
    # saddle: 2 dims x 2 noise x 2 optimizers; rosenbrock: 1 x 1 x 2.
    assert len(scenarios) == 10
    first = scenarios[0]
    assert (first.problem, first.optimizer, first.noise, first.seeds, first.steps) == (
        "saddle(dim=4, index=2)",
        "sgd(lr=0.1)",
        0.0,
        (0, 1, 2),
        50,
    )
    last = scenarios[-1]
    assert (last.problem, last.optimizer, last.seeds, last.steps, last.noise) == (
        "rosenbrock(dim=3)",
        "adam(lr=0.01)",
        (5, 9),
        20,
        0.0,
    )
    assert first.settings.tau == 0.5 and first.settings.targets == (1.0, 0.01)


def test_overrides_replace_optimizers_problems_and_budget() -> None:
    suite = parse_suite(GOOD).with_overrides(optimizers=["rmsprop(lr=0.01)"], seeds=[0], steps=7, noise=[0.2])
    assert {s.optimizer for s in suite.scenarios()} == {"rmsprop(lr=0.01)"}
    assert {(s.seeds, s.steps, s.noise) for s in suite.scenarios()} == {((0,), 7, 0.2)}
    replaced = parse_suite(GOOD).with_overrides(problems=["quadratic(dim=2)"])
    assert {s.problem for s in replaced.scenarios()} == {"quadratic(dim=2)"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seeds = 3\nsteps = [", "bad.toml:2: not valid TOML: "),
        ("seeds = 3\nsteps = 5 5\nnoise = 0\n", "bad.toml:2: not valid TOML: .*line 2"),
        ("seed = 3\n", "bad.toml:1: seed: unknown key; valid top-level keys: name, description, seeds"),
        ("steps = 0\n", "bad.toml:1: steps: expected an integer >= 1, got 0"),
        ("noise = -1\n", "bad.toml:1: noise: expected a number >= 0"),
        ("optimizers = ['sgd(lr=0.1)', 'adamm']\n", "bad.toml:1: optimizers: unknown optimizer 'adamm'"),
        ("optimizers = 'sgd'\n", "bad.toml:1: optimizers: expected a list of optimizer specs"),
        ("[metrics]\ntua = 1\n", "bad.toml:2: metrics.tua: unknown setting 'tua' \\(did you mean 'tau'\\?\\)"),
        ("[metrics]\ntau = -1\n", "bad.toml:2: metrics.tau: tau must be a number > 0.0"),
        ("dtype = 'float16'\n", "bad.toml:1: dtype: dtype must be one of 'float32', 'float64'"),
        (
            "[[problems]]\nspec = 'saddle'\ndims = [3, 'ten']\n",
            "bad.toml:3: problems\\[0\\].dims: expected a list of positive integers",
        ),
        (
            "[[problems]]\nspec = 'saddle(dim=4)'\n\n[[problems]]\nspec = 'saddle(index=9)'\ndims = [4]\n",
            "bad.toml:5: problems\\[1\\].spec: saddle: index must be between 1 and dim=4",
        ),
        ("[[problems]]\nspec = 'saddle'\n", "problems\\[0\\].spec: the problem 'saddle' needs a dimension"),
        ("[[problems]]\nspec = 'saddle(dim=3)'\ndims = [4]\n", "names dim and dims are given too"),
        ("[[problems]]\nspec = 'sadle'\ndims = [4]\n", "unknown landscape family 'sadle'"),
        ("[[problems]]\ndims = [4]\n", "problems\\[0\\].spec: expected spec = "),
        (
            "[[problems]]\nspec = 'saddle'\ndims = [4]\nseed = 1\n",
            "bad.toml:4: problems\\[0\\].seed: unknown key; valid keys of a problem: spec, dims",
        ),
        (
            "[[problems]]\nspec = 'saddle'\ndims = [4]\nseeds = [1, 1]\n",
            "problems\\[0\\].seeds: expected a count >= 1 or a non-empty list of distinct",
        ),
    ],
)
def test_malformed_suites_name_the_file_the_place_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(text, "bad.toml")


def test_unknown_suite_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="unknown suite 'smok'; shipped suites: .*smoke"):
        load_suite("smok")
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")


def test_adhoc_suite_needs_problems_and_optimizers() -> None:
    with pytest.raises(Exception, match="give a suite"):
        adhoc_suite([], ["sgd(lr=0.1)"])
    with pytest.raises(Exception, match="at least one --optimizer"):
        adhoc_suite(["saddle(dim=3)"], [])
    with pytest.raises(Exception, match="needs a dimension"):
        adhoc_suite(["saddle"], ["sgd(lr=0.1)"])
    suite = adhoc_suite(["saddle(dim=3)"], ["sgd(lr=0.1)"], seeds=[0, 1], steps=9, noise=[0.0, 0.5])
    assert [(s.problem, s.seeds, s.steps, s.noise) for s in suite.scenarios()] == [
        ("saddle(dim=3)", (0, 1), 9, 0.0),
        ("saddle(dim=3)", (0, 1), 9, 0.5),
    ]


def test_a_scenario_listed_twice_runs_once() -> None:
    text = 'optimizers = ["sgd(lr=0.1)", "sgd(lr=1e-1)"]\nnoise = [0.0, 0.0]\n'
    text += '[[problems]]\nspec = "saddle"\ndims = [3, 3]\n[[problems]]\nspec = "saddle(dim=3)"\n'
    assert len(parse_suite(text).scenarios()) == 1


def test_a_folder_named_like_a_suite_does_not_hide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert load_suite("smoke").name == "smoke"
    with pytest.raises(SuiteError, match="is not a file"):
        load_suite("./smoke")


def test_replacement_problems_take_the_files_top_level_budget() -> None:
    text = 'steps = 40\nseeds = 2\noptimizers = ["sgd(lr=0.1)"]\n[[problems]]\nspec = "saddle(dim=3)"\nsteps = 999\n'
    (scenario,) = parse_suite(text).with_overrides(problems=["quadratic(dim=2)"]).scenarios()
    assert (scenario.problem, scenario.steps, scenario.seeds) == ("quadratic(dim=2)", 40, (0, 1))


def test_a_problem_can_have_its_own_optimizers_and_dtype_and_flags_replace_them() -> None:
    text = 'optimizers = ["sgd(lr=0.1)"]\n[[problems]]\nspec = "saddle(dim=3)"\n'
    text += (
        '[[problems]]\nspec = "quadratic(dim=3)"\noptimizers = ["adam(lr=0.01)", "sgd(lr=1e-2)"]\ndtype = "float64"\n'
    )
    suite = parse_suite(text)
    assert [(s.problem, s.optimizer, s.settings.dtype) for s in suite.scenarios()] == [
        ("saddle(dim=3)", "sgd(lr=0.1)", "float32"),
        ("quadratic(dim=3)", "adam(lr=0.01)", "float64"),
        ("quadratic(dim=3)", "sgd(lr=0.01)", "float64"),
    ]
    replaced = suite.with_overrides(optimizers=["rmsprop(lr=0.01)"], dtype="float32").scenarios()
    assert {(s.optimizer, s.settings.dtype) for s in replaced} == {("rmsprop(lr=0.01)", "float32")}
    with pytest.raises(SuiteError, match="bad.toml:3: problems\\[0\\].dtype: expected 'float32' or 'float64'"):
        parse_suite('[[problems]]\nspec = "saddle(dim=3)"\ndtype = "half"\n', "bad.toml")
