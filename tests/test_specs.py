"""Bad input gets a clear error that names what is valid: specs, optimizers, settings."""

from __future__ import annotations

import pytest

import landbench
from landbench.errors import SpecError
from landbench.optimizers import resolve
from landbench.spec import parse_spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "sadle(dim=3)",
            "unknown landscape family 'sadle' \\(did you mean 'saddle'\\?\\); valid families: saddle, ",
        ),
        (
            "saddle(dim=3, indx=1)",
            "unknown parameter 'indx' \\(did you mean 'index'\\?\\); valid parameters: dim, index",
        ),
        ("saddle(dim=3, index=5)", "index must be between 1 and dim=3"),
        ("saddle(dim=0)", "dim must be an integer >= 1, got 0"),
        ("saddle(dim=2.5)", "dim must be an integer >= 1, got 2.5"),
        ("saddle(index=2)", "the parameter 'dim' is required"),
        ("saddle(dim=3, gamma=-1)", "gamma must be a number > 0.0, got -1"),
        ("saddle(dim=3, rotate=1)", "rotate must be True or False"),
        ("saddle(dim=3, init='center')", "init must be one of 'random', 'unstable'"),
        ("rosenbrock(dim=1)", "rosenbrock: dim must be at least 2"),
        ("saddle(dim=)", "cannot parse the arguments of problem spec"),
        ("saddle(3)", "positional argument; write every argument as key=value"),
        ("saddle(dim=os.system('x'))", "is not a Python literal"),
        ("3saddle", "cannot parse problem spec"),
        ({"dim": 3}, "has no name"),
    ],
)
def test_bad_problem_specs(spec: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        landbench.make(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sgd(lr=-0.1)", "lr must be a positive finite number, got -0.1"),
        ("sgd(lr=0)", "lr must be a positive finite number"),
        ("adamm(lr=0.1)", "unknown optimizer 'adamm' \\(did you mean 'adam'\\?\\); valid names: gd, sam, pgd, sgd"),
        (
            "sgd(lr=0.1, momentun=0.9)",
            "unknown argument 'momentun' \\(did you mean 'momentum'\\?\\); valid arguments: lr, momentum",
        ),
        ("sgd(lr=0.1, momentum=-0.5)", "optimizer sgd\\(lr=0.1, momentum=-0.5\\): Invalid momentum value"),
        ("adam(lr=0.1, betas=(1.2, 0.9))", "Invalid beta parameter"),
        ("no_such_pkg.mod:Opt(lr=0.1)", "cannot import module 'no_such_pkg.mod'"),
        ("torch.optim:Nope(lr=0.1)", "has no attribute 'Nope'"),
    ],
)
def test_bad_optimizer_specs(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        resolve(spec)


def test_optimizer_canonical_form() -> None:
    assert resolve("sgd(lr=1)").canonical == "sgd(lr=1.0)"
    assert resolve("sgd( momentum=0.9, lr=0.1 )").canonical == "sgd(lr=0.1, momentum=0.9)"
    assert resolve({"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99]}).canonical == "adam(lr=0.001, betas=(0.9, 0.99))"
    assert resolve("torch.optim:SGD(lr=0.1)").canonical == "torch.optim:SGD(lr=0.1)"


def test_spec_values_are_literals_never_evaluated() -> None:
    spec = parse_spec("pkg.mod:Opt(lr=1e-3, betas=(0.9, 0.99), mix={2: 0.5}, name='x', flag=None)")
    assert spec.name == "pkg.mod:Opt"
    assert spec.kwargs == {"lr": 1e-3, "betas": (0.9, 0.99), "mix": {2: 0.5}, "name": "x", "flag": None}
    with pytest.raises(SpecError):
        parse_spec("saddle(dim=__import__('os').getcwd())")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sgd(lr=0.1, lr=0.2)", "gives 'lr' twice"),
        ("adam(lr=1)(lr=2)", "expected one name\\(key=value, ...\\) and nothing after it"),
        ("saddle(dim=3).x(index=1)", "nothing after it"),
        ("saddle(dim=3) + f(index=2)", "nothing after it"),
    ],
)
def test_spec_strings_that_are_not_one_call_are_refused(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec)


def test_huge_and_non_finite_values_are_refused_clearly() -> None:
    with pytest.raises(SpecError, match="gamma must be a number > 0.0"):
        landbench.make("saddle(dim=3, gamma=" + "9" * 400 + ")")
    with pytest.raises(SpecError, match="too large for a float"):
        resolve("sgd(lr=" + "9" * 400 + ")")
    with pytest.raises(SpecError, match="overflow the landscape's known values"):
        landbench.make("saddle(dim=3, gamma=1e200)")


def test_optimizer_defaults_are_dropped_but_lr_is_always_written() -> None:
    assert resolve("sgd(lr=0.1, momentum=0)").canonical == resolve("sgd(lr=0.1)").canonical == "sgd(lr=0.1)"
    assert resolve("adam").canonical == resolve("adam(lr=1e-3, betas=(0.9, 0.999))").canonical == "adam(lr=0.001)"
    assert resolve("sgd(lr=0.1, nesterov=False, momentum=0.9)").canonical == "sgd(lr=0.1, momentum=0.9)"


def test_numpy_integers_are_accepted_where_integers_are() -> None:
    import numpy as np

    records = landbench.run("saddle(dim=4)", "sgd(lr=0.1)", seeds=np.arange(2), steps=np.int64(3))
    assert [r["seed"] for r in records] == [0, 1] and records[0]["steps"] == 3
    assert landbench.make({"name": "saddle", "dim": np.int32(5)}).spec == "saddle(dim=5)"
