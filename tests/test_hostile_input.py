"""Bad input, tried as a hostile user would: one class of input per test, through the CLI and the API.

Every one ends in one line, ``Error: ...``, on stderr, exit status 2, no traceback, and nothing run or
written: sizes that cannot be allocated, optimizers whose import or construction fails (SystemExit
included), arguments of the wrong type or that make a run a no-op, numbers that overflow, suite files
of the wrong encoding or types, suites with nothing to run.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import LandbenchError, SpecError, SuiteError
from landbench.optimizers import resolve
from landbench.preflight import check_problem, check_suite
from landbench.settings import Settings
from landbench.suite import adhoc_suite, load_suite, parse_suite

GIB = 2**30


def run_cli(tmp_path: Path, *args: str) -> tuple[str, Path]:
    """``landbench run ARGS --steps 1 --seeds 1 --out OUT``: assert the one-line error and exit 2;
    return the error line and OUT."""
    out = tmp_path / "out"
    flags = [] if "--steps" in args else ["--steps", "1"]
    flags += [] if "--seeds" in args else ["--seeds", "1"]
    result = CliRunner().invoke(main, ["run", *args, *flags, "--no-progress", "--out", str(out)])
    assert_one_line_error(result)
    return result.stderr.strip(), out


def assert_one_line_error(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.rglob("*.jsonl*"))


# --- sizes: checked before the first job, with what fits ---------------------------------------


def test_a_problem_too_big_for_memory_fails_before_the_problems_before_it_run(tmp_path: Path) -> None:
    line, out = run_cli(
        tmp_path,
        "--problem",
        "saddle(dim=3)",
        "--problem",
        "quadratic(dim=1000000000000)",
        "--optimizer",
        "sgd(lr=0.1)",
    )
    assert "quadratic(dim=1000000000000) needs" in line and "available: use dim <= " in line
    assert nothing_written(out)


@pytest.mark.parametrize(
    ("problem", "words"),
    [
        ("pspin(dim=5000, p=4)", "couplings at every evaluation"),  # auto: streamed, hours per step
        ("pspin(dim=5000, p=4, storage='blocks')", "couplings at every evaluation"),
        ("pspin(dim=5000, p=4, storage='dense')", "for its dense couplings"),
        ("gaussian_field(dim=1000000)", "for its random features"),
        ("saddle(dim=10000000, index=10000000, rotate=True)", "for its rotated frame"),
    ],
)
def test_instances_that_cannot_be_built_are_refused_with_what_fits(tmp_path: Path, problem: str, words: str) -> None:
    line, out = run_cli(tmp_path, "--problem", problem, "--optimizer", "sgd(lr=0.1)")
    assert words in line and ("use " in line or "no dim fits" in line), line
    assert nothing_written(out)


def test_dim_times_seeds_beyond_memory_says_which_dim_or_how_many_seeds_fit() -> None:
    settings = Settings(curvature=False)
    check_problem("quadratic(dim=1000)", "float32", 1000, settings, "cpu", free=GIB)  # 24 MB: fits
    with pytest.raises(SpecError) as caught:
        check_problem("quadratic(dim=1000000)", "float32", 10000, settings, "cpu", free=GIB)
    message = str(caught.value)
    assert "needs 224 GiB in float32" in message and "has 1 GiB available" in message
    assert re.search(r"use dim <= 44\d\d \(with 10000 seeds\) or at most 4\d seeds$", message), message


def test_the_p_spin_estimate_is_the_couplings_tensor() -> None:
    with pytest.raises(SpecError, match=r"pspin\(dim=5000, p=4, storage='dense'\) needs 4.4\d PiB in float64 "):
        check_problem("pspin(dim=5000, p=4, storage='dense')", "float64", 8, None, "cpu", free=23 * GIB)
    # what it says fits, fits, and one more does not
    with pytest.raises(SpecError, match=r"use dim <= (\d+)") as caught:
        check_problem("pspin(dim=5000, p=3, storage='dense')", "float64", 8, None, "cpu", free=23 * GIB)
    best = int(caught.value.args[0].split("use dim <= ")[1].split()[0])
    check_problem(f"pspin(dim={best}, p=3, storage='dense')", "float64", 8, None, "cpu", free=23 * GIB)
    with pytest.raises(SpecError):
        check_problem(f"pspin(dim={best + 1}, p=3, storage='dense')", "float64", 8, None, "cpu", free=23 * GIB)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "1000000000000"], "--seeds must be a count of at most 1000000"),
        # int() takes these; --seeds, like every whole-number option, takes ASCII digits only
        (["--seeds", "\uff13"], "expected a count (8) or a comma-separated list of run seeds (0,3,7), got '\uff13'"),
        (["--seeds", "\u0663,"], "got '\u0663,'"),
        (["--seeds", "1_000"], "got '1_000'"),
        (["--steps", "100000000000000000000000"], "steps must be at most 1e+09"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_huge_budgets_and_unknown_devices(tmp_path: Path, flags: list[str], message: str) -> None:
    line, out = run_cli(tmp_path, "--problem", "saddle(dim=3)", "--optimizer", "sgd(lr=0.1)", *flags)
    assert message in line
    assert nothing_written(out)


def test_the_api_checks_sizes_before_building_anything() -> None:
    with pytest.raises(SpecError, match="needs .* use dim <= "):
        landbench.run("quadratic(dim=1000000000000)", "sgd(lr=0.1)", seeds=1, steps=1)
    with pytest.raises(SpecError, match="couplings at every evaluation"):
        landbench.api.plan("pspin(dim=5000, p=4)", "sgd(lr=0.1)", seeds=1, steps=1)
    with pytest.raises(SpecError, match="steps must be at most"):
        landbench.run("saddle(dim=3)", "sgd(lr=0.1)", seeds=1, steps=10**12)


def test_check_suite_checks_every_scenario_and_every_optimizer_before_anything() -> None:
    suite = adhoc_suite(["saddle(dim=3)", "quadratic(dim=1000000000000)"], ["sgd(lr=0.1)"])
    with pytest.raises(SpecError, match=r"quadratic\(dim=1000000000000\) needs"):
        check_suite(suite, "cpu")
    with pytest.raises(LandbenchError, match="fails on a small test problem"):
        check_suite(adhoc_suite(["saddle(dim=3)"], ["sgd(lr=0.1)", "torch.optim:SparseAdam(lr=0.1)"]), "cpu")
    with pytest.raises(SpecError, match="unknown device"):
        check_suite(adhoc_suite(["saddle(dim=3)"], ["sgd(lr=0.1)"]), "gpu")
    check_suite(load_suite("smoke"), "cpu")


# --- optimizer import and construction ---------------------------------------------------------

PLUGINS = {
    "lb_zero_division": "1 / 0\n",
    "lb_exits_on_import": "import sys\nsys.exit(3)\n",
    "lb_raises_base_exception_subclass": "class Odd(Exception):\n    pass\nraise Odd('line one\\nthe last line')\n",
    "lb_bad_init": textwrap.dedent(
        """
        import sys
        import torch

        class KeyErrorSGD(torch.optim.SGD):
            def __init__(self, params, lr=0.1):
                raise KeyError("deep inside")

        class ExitingSGD(torch.optim.SGD):
            def __init__(self, params, lr=0.1):
                sys.exit(0)

        class AssertingSGD(torch.optim.SGD):
            def __init__(self, params, lr=0.1):
                assert lr > 1, "lr must be large\\nreally large"
        """
    ),
}


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "plugins"
    root.mkdir()
    for name, source in PLUGINS.items():
        (root / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))
    for name in PLUGINS:
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ("lb_zero_division:Opt", "importing module 'lb_zero_division' raised ZeroDivisionError: division by zero"),
        ("lb_exits_on_import:Opt", "importing module 'lb_exits_on_import' raised SystemExit: 3"),
        ("lb_raises_base_exception_subclass:Opt", "raised Odd: the last line"),
        ("lb_bad_init:KeyErrorSGD", "KeyError: 'deep inside'"),
        ("lb_bad_init:ExitingSGD", "SystemExit: 0"),
        ("lb_bad_init:AssertingSGD", "AssertionError: really large"),
        ("collections:OrderedDict", "is the class collections.OrderedDict, not a torch.optim.Optimizer subclass"),
        ("os:getcwd", "'getcwd' is not a class"),
        ("no_such_module_anywhere:Opt", "cannot import module 'no_such_module_anywhere'"),
    ],
)
def test_any_failure_to_import_or_build_an_optimizer_is_one_line(
    plugins: None, tmp_path: Path, optimizer: str, message: str
) -> None:
    line, out = run_cli(tmp_path, "--problem", "saddle(dim=3)", "--optimizer", optimizer)
    assert message in line, line
    assert nothing_written(out)
    with pytest.raises(SpecError, match="^optimizer "):
        resolve(optimizer)


def test_a_registered_plug_in_that_exits_or_raises_on_load_is_one_line(
    plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    import landbench.optimizers

    group = landbench.optimizers.ENTRY_POINT_GROUP
    points = {
        "exiter": importlib.metadata.EntryPoint("exiter", "lb_exits_on_import:Opt", group),
        "divider": importlib.metadata.EntryPoint("divider", "lb_zero_division:Opt", group),
        "dicty": importlib.metadata.EntryPoint("dicty", "collections:OrderedDict", group),
    }
    monkeypatch.setattr(landbench.optimizers, "registered", lambda: points)
    for name, message in [
        ("exiter", "cannot be loaded: SystemExit: 3"),
        ("divider", "cannot be loaded: ZeroDivisionError: division by zero"),
        ("dicty", "not a torch.optim.Optimizer subclass"),
    ]:
        line, out = run_cli(tmp_path, "--problem", "saddle(dim=3)", "--optimizer", f"{name}(lr=0.1)")
        assert f"optimizer {name!r}" in line and message in line, line
        assert nothing_written(out)


# --- argument types, overflow, non-finite numbers, no-op settings -------------------------------


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ("adam(betas=(0.9,))", "betas must be a tuple of 2 numbers such as (0.9, 0.999), got (0.9,)"),
        ("adam(betas=(0.9, 0.99, 0.999))", "betas must be a tuple of 2 numbers"),
        ("adam(betas='fast')", "betas must be a tuple of 2 numbers"),
        ("sgd(lr=0.1, nesterov='yes')", "nesterov must be True or False, got 'yes'"),
        ("adam(amsgrad=1)", "amsgrad must be True or False, got 1"),
        ("sgd(lr=0.1, momentum='0.9')", "momentum must be a number, got '0.9'"),
        ("lbfgs(max_iter=2.5)", "max_iter must be an integer, got 2.5"),
        ("sgd(lr=1e999)", "lr must be a finite number, got inf"),
        ("sgd(lr=0.1, weight_decay=inf)", "weight_decay must be a finite number, got inf"),
        ("sgd(lr=0.1, momentum=-inf)", "momentum must be a finite number, got -inf"),
        ("sgd(lr=nan)", "lr must be a finite number, got nan"),
        ("sgd(lr=0.1, momentum=" + "9" * 400 + ")", "momentum is too large for a float"),
        ("sgd(lr=1j)", "lr must be a real number, got the complex number 1j"),
        ("lbfgs(max_iter=0)", "max_iter must be at least 1"),
        ("lbfgs(history_size=0)", "history_size must be at least 1"),
        ("lbfgs(line_search_fn='armijo')", "line_search_fn must be None or 'strong_wolfe'"),
        ("sgd(lr=0.1, momentum=0.9, dampening=1)", "dampening must be >= 0 and < 1 with momentum"),
        ("sgd(lr=0.1, maximize=True)", "maximize=True climbs the loss"),
        ("rprop(step_sizes=(50, 1e-6))", "step_sizes must be (smallest, largest)"),
        ("asgd(t0=-1)", "t0 must be >= 0"),
        ("sgd(lr=0)", "lr must be a positive finite number"),
    ],
)
def test_optimizer_arguments_of_the_wrong_kind_or_that_do_nothing(tmp_path: Path, optimizer: str, message: str) -> None:
    line, out = run_cli(tmp_path, "--problem", "saddle(dim=3)", "--optimizer", optimizer)
    assert message in line, line
    assert nothing_written(out)


def test_the_api_refuses_what_the_cli_refuses_with_the_same_words() -> None:
    for spec in ({"name": "sgd", "lr": 0.1, "weight_decay": float("inf")}, "sgd(lr=0.1, weight_decay=inf)"):
        with pytest.raises(SpecError, match="weight_decay must be a finite number, got inf"):
            landbench.run("saddle(dim=3)", spec, seeds=1, steps=1)
    with pytest.raises(SpecError, match="nesterov must be True or False"):
        landbench.run("saddle(dim=3)", {"name": "sgd", "lr": 0.1, "nesterov": "yes"}, seeds=1, steps=1)
    with pytest.raises(SpecError, match="max_iter must be at least 1"):
        landbench.run("saddle(dim=3)", {"name": "lbfgs", "max_iter": 0}, seeds=1, steps=1)


def test_numpy_numbers_through_the_api_are_the_python_numbers_they_hold() -> None:
    records = landbench.run(
        {"name": "quadratic", "dim": np.int64(3), "condition": np.float32(10.0)},
        {"name": "sgd", "lr": np.float32(0.25), "momentum": np.float64(0.5)},
        seeds=np.int64(2),
        steps=np.int64(3),
        noise=np.float32(0.0),
        tau=np.float32(0.5),
        targets=[np.float32(0.5)],
    )
    assert [r["optimizer"] for r in records] == ["sgd(lr=0.25, momentum=0.5)"] * 2
    assert records[0]["problem"] == "quadratic(dim=3, condition=10.0)"
    assert resolve({"name": "adam", "betas": np.array([0.8, 0.9])}).canonical == "adam(lr=0.001, betas=(0.8, 0.9))"
    with pytest.raises(SpecError, match="must be a finite number"):
        resolve({"name": "sgd", "lr": 0.1, "momentum": np.float32("nan")})


def test_huge_and_non_finite_problem_and_setting_values() -> None:
    for problem, message in [
        ("saddle(dim=3, gamma=inf)", "gamma must be a number > 0.0, got inf"),
        ("saddle(dim=" + "9" * 5000 + ")", "Exceeds the limit"),
        ("saddle(dim=float('nan'))", "is not a finite number"),
    ]:
        with pytest.raises(SpecError, match=message):
            landbench.run(problem, "sgd(lr=0.1)", seeds=1, steps=1)
    for settings, message in [
        ({"targets": [10**400]}, "targets must be a non-empty list of positive finite numbers"),
        ({"tau": float("inf")}, "tau must be a number > 0.0"),
    ]:
        with pytest.raises(SpecError, match=message):
            landbench.run("saddle(dim=3)", "sgd(lr=0.1)", seeds=1, steps=1, **settings)
    with pytest.raises(SpecError, match="noise must be a finite number"):
        landbench.run("saddle(dim=3)", "sgd(lr=0.1)", seeds=1, steps=1, noise=10**400)


# --- suite files -----------------------------------------------------------------------------

GOOD = 'steps = 2\nseeds = 1\noptimizers = ["sgd(lr=0.1)"]\n[[problems]]\nspec = "saddle"\ndims = [3]\n'


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_suite(path).scenarios()[0].problem == "saddle(dim=3)"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GOOD.replace("saddle", "sadd\xe9").encode("latin-1"), r"bad.toml:5: not valid UTF-8 \(byte 0xe9"),
        (GOOD.encode("utf-16"), "bad.toml: the file is UTF-16; save it as UTF-8"),
        (GOOD.encode("utf-32"), "bad.toml: the file is UTF-32"),
        (b'optimizers = ["sgd(lr=0.1)"\n', "bad.toml:1: not valid TOML"),
        (b"", "bad.toml: problems: the suite has no \\[\\[problems\\]\\] table"),
        (b'optimizers = ["sgd(lr=0.1)"]\n', "bad.toml: problems: the suite has no"),
        (
            b'[[problems]]\nspec = "saddle"\ndims = [3]\n',
            r"bad.toml:2: optimizers: problems\[0\] \(saddle\) has no optimizers",
        ),
        (b'optimizers = []\n[[problems]]\nspec = "saddle"\ndims = [3]\n', "bad.toml:1: optimizers: expected a list"),
        (b"steps = 10000000000000\n" + GOOD.encode().split(b"\n", 1)[1], "bad.toml:1: steps: expected at most 1e\\+09"),
        (GOOD.replace("seeds = 1", "seeds = 10000000000").encode(), "bad.toml:2: seeds: expected a count >= 1"),
        (b"noise = 1" + b"0" * 400 + b"\n" + GOOD.encode(), "bad.toml:1: noise: expected a number >= 0"),
        (b'"a\\nb" = 1\n', r"bad.toml: 'a\\nb': unknown key"),
        (b"name = 3\n" + GOOD.encode(), "bad.toml:1: name: expected a string, got 3"),
        (
            GOOD.replace("dims = [3]", "dims = [3.5]").encode(),
            "bad.toml:6: problems\\[0\\].dims: expected a list of positive",
        ),
        (GOOD.replace('spec = "saddle"', "spec = 3").encode(), "problems\\[0\\].spec: expected spec = "),
        (
            GOOD.replace('"sgd(lr=0.1)"', "\"sgd(lr=0.1, nesterov='yes')\"").encode(),
            "optimizers: optimizer sgd: nesterov must",
        ),
        (GOOD.encode() + b"[metrics]\ntargets = [1e999]\n", "bad.toml:8: metrics.targets: targets must be"),
        (
            GOOD.encode() + b"[tuning]\ngrid = [1" + b"0" * 400 + b"]\n",
            "bad.toml:8: tuning.grid: expected a non-empty list",
        ),
    ],
)
def test_bad_suite_files_name_the_file_line_and_key(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)
    line, out = run_cli(tmp_path, str(path))
    assert nothing_written(out)


def test_the_tuning_grid_error_lists_each_valid_name_once() -> None:
    text = 'optimizers = ["sgd(lr=0.1)", "sgd(lr=0.1, momentum=0.9)"]\n[[problems]]\nspec = "saddle"\ndims = [3]\n'
    with pytest.raises(SuiteError) as caught:
        parse_suite(text + "[tuning.grids]\nadam = [0.1, 0.01]\n", "t.toml")
    message = str(caught.value)
    valid = message.split("valid: ")[1].split(", ")
    assert len(valid) == len(set(valid)) and "sgd" in valid, message


def test_bad_suite_names_and_paths(tmp_path: Path) -> None:
    for name, message in [
        ("x" * 5000 + ".toml", "not a usable path"),
        (str(tmp_path), "is not a file"),
        ("no_such_suite", "unknown suite 'no_such_suite'; shipped suites: "),
    ]:
        with pytest.raises(SuiteError, match=message):
            load_suite(name)
        run_cli(tmp_path, name)


# --- found by a review: every exception of a plug-in, numbers the dtype cannot hold, paths -------


class CustomBaseException(BaseException):
    """Neither an Exception nor SystemExit: what some frameworks raise to unwind."""


class RaisesBaseExceptionInInit(torch.optim.SGD):
    def __init__(self, params, lr: float = 0.1) -> None:  # noqa: ANN001
        raise CustomBaseException("unwinding")


def test_a_base_exception_from_a_plug_in_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "RaisesBaseExceptionInInit", RaisesBaseExceptionInInit, raising=False)
    line, out = run_cli(
        tmp_path, "--problem", "quadratic(dim=2)", "--optimizer", f"{__name__}:RaisesBaseExceptionInInit"
    )
    assert "CustomBaseException: unwinding" in line and nothing_written(out)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--noise", "1e39"], "noise 1e+39 does not fit in float32"),
        (["--noise", "1e39", "--dtype", "float64", "--noise", "1e309"], "noise must be a finite number"),
    ],
)
def test_numbers_the_runs_dtype_cannot_hold_are_refused(tmp_path: Path, flags: list[str], message: str) -> None:
    line, out = run_cli(tmp_path, "--problem", "quadratic(dim=2)", "--optimizer", "sgd", *flags)
    assert message in line and nothing_written(out)
    with pytest.raises(SpecError, match="does not fit in float32"):
        landbench.run("quadratic(dim=2)", "sgd", noise=1e39, steps=1, seeds=1)


def test_a_tuning_rate_the_dtype_cannot_hold_is_refused(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'optimizers = ["sgd"]\nsteps = 5\nseeds = 1\n[tuning]\ngrid = [0.1, 1e39]\n'
        '[[problems]]\nspec = "quadratic"\ndims = [2]\n'
    )
    line, out = run_cli(tmp_path, str(suite))
    assert "the tuning rate 1e+39 of sgd does not fit in float32" in line and nothing_written(out)


def test_minus_zero_noise_is_the_same_scenario_as_zero(tmp_path: Path) -> None:
    first = landbench.run("quadratic(dim=2)", "sgd", noise=-0.0, steps=3, seeds=1)
    second = landbench.run("quadratic(dim=2)", "sgd", noise=0.0, steps=3, seeds=1)
    assert first[0]["key"] == second[0]["key"] and str(first[0]["noise"]) == "0.0"


def test_a_tensor_argument_is_the_number_it_holds_or_refused() -> None:
    assert resolve({"name": "sgd", "lr": torch.tensor(0.25, dtype=torch.float64)}).canonical == "sgd(lr=0.25)"
    with pytest.raises(SpecError, match="must be a finite number"):
        resolve({"name": "sgd", "lr": torch.tensor(float("inf"))})
    with pytest.raises(SpecError, match="not a tensor of shape \\(2,\\)"):
        resolve({"name": "adam", "betas": torch.tensor([0.9, 0.99])})


def test_paths_that_cannot_be_used_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    too_long = str(tmp_path / ("a" * 300))
    for args in (
        ["rank", too_long],
        ["status", too_long],
        ["run", "--problem", "quadratic(dim=2)", "--optimizer", "sgd", "--out", too_long],
    ):
        result = CliRunner().invoke(main, args)
        assert_one_line_error(result)
    result = CliRunner().invoke(main, ["connect", "basins(dim=2)", "--points", "1000000000000"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_the_blocks_storage_is_offered_only_where_it_fits() -> None:
    with pytest.raises(SpecError) as refused:
        check_problem(
            "pspin(dim=5000, p=4, storage='dense')", "float32", 8, Settings(), torch.device("cpu"), free=20 * GIB
        )
    assert "storage='blocks'" not in str(refused.value)
    with pytest.raises(SpecError, match="or storage='blocks'"):
        check_problem(
            "pspin(dim=2000, p=3, storage='dense')", "float32", 8, Settings(), torch.device("cpu"), free=20 * GIB
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "smoke", "--steps", "0"], "Error: Invalid value for '--steps': 0 is not in the range x>=1."),
        (["run", "smoke", "--dtype", "float16"], "Error: Invalid value for '--dtype': 'float16' is not one of"),
        (["run", "smoke", "--stpes", "5"], "Error: No such option '--stpes'"),
        (["rnu", "smoke"], "Error: No such command 'rnu'. Did you mean 'run'?"),
        (["--bogus", "run"], "Error: No such option '--bogus'"),
        (["bench", "--repeats", "0"], "Error: Invalid value for '--repeats'"),
        (
            ["bench", "--repeats", "1.5"],
            "Error: Invalid value for '--repeats': '1.5' is not a whole number in the range 1<=x<=100.",
        ),
        (
            ["run", "smoke", "--workers", "2147483648"],
            "Error: Invalid value for '--workers': 2147483648 is not in the range 1<=x<=1024.",
        ),
        (["bench", "--repeats", "\u0663"], "Error: Invalid value for '--repeats': '\u0663' is not a whole number"),
        (["bench", "--repeats", "1_000"], "Error: Invalid value for '--repeats': '1_000' is not a whole number"),
        (
            ["bench", "--repeats", "9" * 5000],
            "Error: Invalid value for '--repeats': '"
            + "9" * 37
            + "...' (5000 digits) is too long a number in the range 1<=x<=100.",
        ),
        (
            ["critical", "saddle(dim=3)", "--starts", "1.5"],
            "Error: Invalid value for '--starts': '1.5' is not a whole number.",
        ),
        (["rank", ".", "--bootstrap", "ten"], "Error: Invalid value for '--bootstrap': 'ten' is not a whole number."),
        (
            ["run", "smoke", "--steps", "ten"],
            "Error: Invalid value for '--steps': 'ten' is not a whole number in the range x>=1.",
        ),
    ],
)
def test_values_options_and_commands_click_refuses_are_one_line_too(args: list[str], message: str) -> None:
    """What click itself refuses (a value out of its range, an unknown option or command) is one line
    naming what is valid, exit 2, as landbench's own checks are (click's usage block left out)."""
    result = CliRunner().invoke(main, args)
    assert_one_line_error(result)
    assert result.stderr.startswith(message), result.stderr
