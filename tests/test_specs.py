"""Bad input gets a clear error that names what is valid: specs, optimizers, settings."""

from __future__ import annotations

import sys
import types

import pytest
import torch

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
        ("adam(lr=0.1, betas=(0.9,))", r"betas must be a tuple of 2 numbers such as \(0.9, 0.999\), got \(0.9,\)"),
        (
            "no_such_pkg.mod:Opt(lr=0.1)",
            "cannot import module 'no_such_pkg.mod' \\(ModuleNotFoundError: No module named 'no_such_pkg'\\): "
            "install the package that provides 'no_such_pkg' in this environment \\(.*python.*\\), e.g. "
            "`python -m pip install -e .` in its folder, or put the folder that holds it on PYTHONPATH$",
        ),
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


# --- arguments that a class taking **kwargs swallows -------------------------------------------------


class KwargsIntoGroups(torch.optim.Optimizer):
    """Takes ``**kwargs`` into its param groups and reads ``decay`` in ``step``: legitimate."""

    def __init__(self, params, lr: float = 0.1, **kwargs) -> None:  # noqa: ANN001
        super().__init__(params, {"lr": lr, **kwargs})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1 - group.get("decay", 0.0)).add_(p.grad, alpha=-group["lr"])


class KwargsAsAttribute(torch.optim.SGD):
    """Keeps one of its ``**kwargs`` as an attribute: legitimate."""

    def __init__(self, params, lr: float = 0.1, **kwargs) -> None:  # noqa: ANN001
        self.clip = kwargs.pop("clip", None)
        super().__init__(params, lr=lr)


class KwargsToWrapped(torch.optim.Optimizer):
    """Passes its ``**kwargs`` to a wrapped SGD, which reads them in its step: legitimate."""

    def __init__(self, params, lr: float = 0.1, **kwargs) -> None:  # noqa: ANN001
        params = list(params)
        super().__init__(params, {"lr": lr})
        self.inner = torch.optim.SGD(params, lr=lr, **kwargs)

    def step(self, closure=None):  # noqa: ANN001, ANN201
        return self.inner.step(closure)


@pytest.fixture
def kwargs_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("kwargs_classes")
    for cls in (KwargsIntoGroups, KwargsAsAttribute, KwargsToWrapped):
        setattr(module, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "kwargs_classes", module)


def test_an_argument_a_kwargs_class_swallows_is_refused_like_a_typo_for_adam() -> None:
    pytest.importorskip("pytorch_optimizer")
    # pytorch-optimizer's Lion puts **kwargs into its param groups, where nothing ever reads 'betaz'
    with pytest.raises(
        SpecError,
        match=r"^optimizer pytorch_optimizer:Lion: unknown argument 'betaz' \(did you mean 'betas'\?\): the class "
        r"takes \*\*kwargs and stored it in its param groups, but a step never reads it; valid arguments: lr, betas, ",
    ):
        resolve("pytorch_optimizer:Lion(betaz=(0.9, 0.99))")
    with pytest.raises(
        SpecError, match=r"unknown argument 'betaz' \(did you mean 'betas'\?\); valid arguments: lr, betas"
    ):
        resolve("adam(betaz=(0.9, 0.99))")
    # D-Adaptation's classes drop what they do not know
    with pytest.raises(
        SpecError, match=r"unknown argument 'd00' \(did you mean 'd0'\?\): the class takes \*\*kwargs and ignored it"
    ):
        resolve("pytorch_optimizer:DAdaptAdam(d00=1e-5)")
    assert resolve("pytorch_optimizer:Lion(betas=(0.9, 0.95))").kwargs["betas"] == (0.9, 0.95)
    assert resolve("sam(lr=0.1, momentum=0.9)").canonical == "sam(lr=0.1, momentum=0.9)"  # SAM's base reads it
    # a name of a method of the class is no attribute of it (hasattr once let these through: review)
    with pytest.raises(SpecError, match="unknown argument 'zero_grad': the class takes"):
        resolve("pytorch_optimizer:Lion(zero_grad=1)")


def test_kwargs_that_a_third_party_class_reads_only_after_its_first_steps_are_accepted() -> None:
    """AvaGrad reads adam_debias from its second step on, AdaShift reads cautious once its queue of
    10 gradients is full: both change the numbers, so refusing them (as a one-step trial did) was wrong."""
    pytest.importorskip("pytorch_optimizer")
    assert resolve("pytorch_optimizer:AvaGrad(adam_debias=True)").kwargs["adam_debias"] is True
    assert resolve("pytorch_optimizer:AdaShift(cautious=True)").kwargs["cautious"] is True


@pytest.mark.usefixtures("kwargs_classes")
def test_kwargs_a_class_uses_are_accepted() -> None:
    assert resolve("kwargs_classes:KwargsIntoGroups(decay=0.5)").kwargs == {"lr": 0.1, "decay": 0.5}
    assert resolve("kwargs_classes:KwargsAsAttribute(clip=1.0)").kwargs["clip"] == 1.0
    assert resolve("kwargs_classes:KwargsToWrapped(momentum=0.9)").kwargs["momentum"] == 0.9
    with pytest.raises(SpecError, match="unknown argument 'decy': the class takes .*valid arguments: lr$"):
        resolve("kwargs_classes:KwargsIntoGroups(decy=0.5)")  # stored in the groups, never read
    with pytest.raises(
        SpecError, match=r"unknown argument 'clipp': the class takes \*\*kwargs and ignored it; valid arguments: lr$"
    ):
        resolve("kwargs_classes:KwargsAsAttribute(clipp=1.0)")  # dropped
    # and the accepted argument does what it says: one step of decay 0.5 halves x before the gradient step
    records = landbench.run(
        "quadratic(dim=2, condition=1.0)",
        "kwargs_classes:KwargsIntoGroups(lr=0.1, decay=0.5)",
        seeds=[0],
        steps=1,
        dtype="float64",
        curvature=False,
    )
    x0 = landbench.make("quadratic(dim=2, condition=1.0)", dtype="float64").sample_start([0])
    x1 = 0.5 * x0 - 0.1 * x0  # f = |x|^2/2: the gradient is x
    assert records[0]["final_loss"] == pytest.approx(float(0.5 * (x1 * x1).sum()), rel=1e-12)


def test_the_cli_refuses_a_swallowed_argument_with_status_2_and_one_line(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("pytorch_optimizer")
    from click.testing import CliRunner

    from landbench.cli import main

    result = CliRunner().invoke(
        main,
        [
            "run",
            "--problem",
            "quadratic(dim=2)",
            "--optimizer",
            "pytorch_optimizer:Lion(betaz=(0.9, 0.99))",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: optimizer pytorch_optimizer:Lion: unknown argument 'betaz' (did you mean 'betas'?)")
    assert not (tmp_path / "results.jsonl").exists()
