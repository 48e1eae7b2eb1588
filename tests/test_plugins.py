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
from landbench.optimizers import choose_mode, optimizer_names, resolve


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
