"""Optimizer names: landbench's own, torch.optim's, installed plug-ins' and import paths."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import landbench
from landbench.errors import BatchSafetyError, SpecError
from landbench.landscapes import make
from landbench.optimizers import LEARNING_RATE_FREE, choose_mode, optimizer_names, resolve
from landbench.runner import run_suite
from landbench.store import ResultStore
from landbench.suite import parse_suite
from landbench.tuning import DEFAULT_GRID, MULTIPLIER_GRID, Grid, Tuning


def test_gd_is_exactly_x_minus_lr_g() -> None:
    """Three steps of gd on a quadratic equal x <- x - lr grad f(x) written out, run by run."""
    landscape = landbench.make("quadratic(dim=3)", dtype="float64")
    start = landscape.sample_start([0, 1])
    param = torch.nn.Parameter(start.clone())
    optimizer = resolve("gd(lr=0.25)").build([param])
    for _ in range(3):
        _, param.grad = landscape.loss_and_grad(param.detach())
        optimizer.step()
    expected = start.clone()
    for _ in range(3):
        expected = expected - 0.25 * landscape.loss_and_grad(expected)[1]
    torch.testing.assert_close(param.detach(), expected, rtol=1e-15, atol=0)
    with pytest.raises(SpecError, match="unknown argument 'momentum'.*valid arguments: lr"):
        resolve("gd(lr=0.1, momentum=0.9)")


def test_every_torch_optim_class_has_a_name() -> None:
    classes = {
        cls
        for name in dir(torch.optim)
        if isinstance(cls := getattr(torch.optim, name), type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }
    named = {resolve(f"{name}(lr=0.01)" if name != "sam" else "sam(lr=0.01)").cls for name in optimizer_names()}
    assert classes <= named
    assert {"gd", "sam", "pgd", "lbfgs"} <= set(optimizer_names())


def test_an_unknown_name_lists_every_valid_one() -> None:
    with pytest.raises(SpecError, match=r"unknown optimizer 'sma' \(did you mean 'sam'\?\); valid names: gd, sam, pgd"):
        resolve("sma(lr=0.1)")


def test_sam_checks_the_arguments_of_its_base() -> None:
    with pytest.raises(SpecError, match="unknown argument 'momentm'.*momentum"):
        resolve("sam(lr=0.1, momentm=0.9)")
    with pytest.raises(SpecError, match="unknown base 'adm'.*did you mean 'adam'"):
        resolve("sam(base='adm', lr=0.1)")


def _install_plugin(root: Path, entry_points: str) -> None:
    """A package 'lbplugin' installed into ``root`` (a dist-info directory, as pip leaves it)."""
    (root / "lbplugin").mkdir()
    (root / "lbplugin" / "__init__.py").write_text(
        textwrap.dedent(
            '''
            import torch

            class SignDescent(torch.optim.Optimizer):
                """x <- x - lr sign(g): written for ordinary torch models."""

                def __init__(self, params, lr=0.01):
                    super().__init__(params, {"lr": lr})

                @torch.no_grad()
                def step(self, closure=None):
                    for group in self.param_groups:
                        for p in group["params"]:
                            if p.grad is not None:
                                p.add_(torch.sign(p.grad), alpha=-group["lr"])
            '''
        )
    )
    info = root / "lbplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lbplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_a_package_registers_names_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(
        tmp_path,
        "[landbench.optimizers]\nsigndescent = lbplugin:SignDescent\nbroken = lbplugin:Missing\n"
        "adam = lbplugin:SignDescent\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "signdescent" in optimizer_names()
    spec = resolve("signdescent(lr=0.125)")
    assert spec.canonical == "signdescent(lr=0.125)"
    # sign descent from x0 moves every coordinate by lr per step towards 0 on the quadratic
    (record,) = landbench.run("quadratic(dim=2)", spec, seeds=[0], steps=1, dtype="float64", curvature=False)
    landscape = landbench.make("quadratic(dim=2)", dtype="float64")
    x0 = landscape.sample_start([0])
    x1 = x0 - 0.125 * torch.sign(landscape.loss_and_grad(x0)[1])
    assert record["final_loss"] == pytest.approx(float(landscape.loss(x1)[0]), rel=1e-12)
    # built-in names win over a plug-in's; a plug-in that cannot load says which package it came from
    assert resolve("adam(lr=0.1)").cls is torch.optim.Adam
    with pytest.raises(SpecError, match="'broken' is registered by the package 'lbplugin'.*cannot be loaded"):
        resolve("broken(lr=0.1)")


def test_optimizers_that_need_the_autograd_graph_are_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    class HessianMethod(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[override]
            for group in self.param_groups:
                for p in group["params"]:
                    torch.autograd.grad(p.grad.sum(), p, create_graph=True)
            return super().step(closure)

    module = types.ModuleType("hessian_optimizers")
    module.HessianMethod = HessianMethod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hessian_optimizers", module)
    with pytest.raises(BatchSafetyError, match="closed-form gradients without an autograd graph"):
        choose_mode(resolve("hessian_optimizers:HessianMethod(lr=0.1)"))


@pytest.mark.parametrize(
    ("spec", "mode"),
    [
        ("pytorch_optimizer:Lamb(lr=0.01)", "per_tensor"),  # a trust ratio per tensor
        ("pytorch_optimizer:AdaBelief(lr=0.01)", "batched"),
        ("pytorch_optimizer:LBFGS(lr=0.5)", "separate"),  # needs a closure
        ("pytorch_optimizer:AliG(max_lr=0.1)", "separate"),  # closure=None, but raises NoClosureError without one
    ],
)
def test_classes_of_the_pytorch_optimizer_package_run_unchanged(spec: str, mode: str) -> None:
    """A third-party package that knows nothing of landbench (skipped where it is not installed)."""
    pytest.importorskip("pytorch_optimizer")
    records = landbench.run("rosenbrock(dim=4)", spec, seeds=3, steps=50, dtype="float64", curvature=False)
    assert {r["batch_mode"] for r in records} == {mode}
    alone = landbench.run("rosenbrock(dim=4)", spec, seeds=[1], steps=50, dtype="float64", curvature=False)
    assert records[1]["final_loss"] == pytest.approx(alone[0]["final_loss"], rel=1e-9)
    assert np.isfinite(records[1]["final_loss"])


def test_a_step_that_raises_without_the_closure_its_signature_makes_optional_gets_one() -> None:
    """pytorch-optimizer's AliG declares ``closure=None`` and raises NoClosureError without it. With
    the closure, its step is Polyak's for f* = 0: ``x - min(max_lr, f(x) / (|g|^2 + eps)) g``
    (Berrada et al. 2020; pytorch-optimizer's eps = 1e-6, no momentum), checked on a quadratic."""
    pytest.importorskip("pytorch_optimizer")
    records = landbench.run(
        "quadratic(dim=4, condition=10.0)", "pytorch_optimizer:AliG(max_lr=10.0)", seeds=3, steps=1, dtype="float64"
    )
    landscape = make("quadratic(dim=4, condition=10.0)", dtype="float64")
    x = landscape.sample_start([0, 1, 2])
    loss, grad = landscape.loss_and_grad(x)
    squared = grad.norm(dim=1).float().square() + 1e-6  # pytorch-optimizer sums squared norms in float32
    step = torch.clamp(loss / squared.double(), max=10.0)
    expected = landscape.loss(x - step[:, None] * grad)
    assert [r["final_loss"] for r in records] == pytest.approx(expected.tolist(), rel=1e-12)
    assert [r["grad_evals"] for r in records] == [1, 1, 1]  # its closure at the step's point: that evaluation


# --- learning-rate-free optimizers: a multiplier grid around their default lr -------------------------


class SelfTuned(torch.optim.SGD):
    """A plug-in that declares itself learning-rate-free (its lr a multiplier of 0.5 by default)."""

    landbench_learning_rate_free = True

    def __init__(self, params, lr: float = 0.5) -> None:  # noqa: ANN001
        super().__init__(params, lr=lr)


@pytest.fixture
def self_tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("self_tuned")
    module.SelfTuned = SelfTuned  # type: ignore[attr-defined]
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

    class NotFree(pytorch_optimizer.DAdaptSGD):
        """A subclass that opts out: its lr is an ordinary step size."""

        landbench_learning_rate_free = False

    module.NotFree = NotFree  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "self_tuned", module)


def test_the_list_of_learning_rate_free_classes_names_real_classes_whose_lr_is_a_multiplier_of_1() -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    import inspect

    listed = sorted(n.partition(":")[2] for n in LEARNING_RATE_FREE if n.startswith("pytorch_optimizer:"))
    assert {"DAdaptAdaGrad", "DAdaptAdam", "DAdaptAdan", "DAdaptLion", "DAdaptSGD", "Prodigy"} <= set(listed)
    for name in listed:
        cls = getattr(pytorch_optimizer, name)
        assert inspect.signature(cls.__init__).parameters["lr"].default == 1.0, name
        assert resolve(f"pytorch_optimizer:{name}").learning_rate_free, name
    assert not resolve("pytorch_optimizer:Lion").learning_rate_free
    assert not resolve("adadelta").learning_rate_free and not resolve("adam").learning_rate_free


@pytest.mark.usefixtures("self_tuned")
def test_a_learning_rate_free_optimizer_is_tuned_over_a_multiplier_grid_never_the_absolute_one() -> None:
    assert MULTIPLIER_GRID == (0.1, 0.3162, 1.0, 3.162, 10.0)  # x0.1 to x10 in half decades
    default = Tuning()
    absolute = Tuning(grid=(1e-3, 1e-2, 1e-1))  # a suite-wide absolute grid is for ordinary rates
    for tuning in (default, absolute):
        for spec in ("pytorch_optimizer:Prodigy", "pytorch_optimizer:DAdaptAdam(lr=2.0)"):
            assert tuning.grid_for(spec) == Grid(MULTIPLIER_GRID, "multiplier")
            assert tuning.rates_for(spec) == MULTIPLIER_GRID  # around the default lr (1), not the spec's
        assert tuning.rates_for("self_tuned:SelfTuned") == (0.05, 0.1581, 0.5, 1.581, 5.0)
        assert tuning.rates_for("self_tuned:NotFree") == tuning.grid.values  # opted out
    assert default.rates_for("pytorch_optimizer:Lion") == DEFAULT_GRID
    named = Tuning(grids=(("pytorch_optimizer:Prodigy", (0.5, 1.0)),))
    assert named.rates_for("pytorch_optimizer:Prodigy") == (0.5, 1.0)  # [tuning.grids] names it: that grid
    relative = Tuning(grid=Grid((0.5, 1.0, 2.0), "relative"))
    assert relative.rates_for("pytorch_optimizer:Prodigy(lr=0.5)") == (0.25, 0.5, 1.0)  # the suite-wide relative one


def test_a_learning_rate_free_optimizer_runs_its_multiplier_grid_and_the_records_say_so(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_optimizer")
    text = (
        'seeds = [0, 1]\nsteps = 100\ndtype = "float64"\noptimizers = ["pytorch_optimizer:Prodigy", "adam"]\n'
        "[metrics]\ncurvature = false\n[tuning]\nseeds = [10, 11]\n"
        '[[problems]]\nspec = "quadratic(condition=10.0)"\ndims = [4]\n'
    )
    run_suite(parse_suite(text), tmp_path, progress=False)
    records = ResultStore(tmp_path).records()
    prodigy = [r for r in records if r["label"] == "pytorch_optimizer:Prodigy"]
    assert {r["optimizer"] for r in prodigy if r["phase"] == "tune"} == {
        f"pytorch_optimizer:Prodigy(lr={m})" for m in MULTIPLIER_GRID
    }
    scored = [r["tuning"] for r in prodigy if r["phase"] == "score"]
    assert scored and all(t["learning_rate_free"] and t["grid_kind"] == "multiplier" for t in scored)
    assert all(
        t["relative_to"] == 1.0 and t["grid"] == list(MULTIPLIER_GRID) and t["lr"] in MULTIPLIER_GRID for t in scored
    )
    adam = [r["tuning"] for r in records if r["label"] == "adam" and r["phase"] == "score"]
    assert all(not t["learning_rate_free"] and t["grid"] == list(DEFAULT_GRID) for t in adam)
