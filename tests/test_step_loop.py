"""The one step loop: every caller goes through it, and its host work does not grow with the runs."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch

import landbench
import landbench.stepping
from landbench.api import plan
from landbench.landscapes import make
from landbench.optimizers import resolve
from landbench.optimizers.batching import PROBE_STEPS, _chosen, choose_mode
from landbench.report.trajectories import record


def _python_calls(work: Callable[[], Any]) -> Counter[str]:
    """How often each Python function was called while ``work()`` ran (C functions not counted)."""
    calls: Counter[str] = Counter()

    def profiler(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls[f"{frame.f_code.co_filename}:{frame.f_code.co_name}"] += 1

    sys.setprofile(profiler)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("optimizer", ["sgd(lr=0.01)", "adam(lr=0.01)", "sam(lr=0.01, rho=0.05)"])
def test_the_python_work_of_a_batch_does_not_grow_with_its_runs(optimizer: str) -> None:
    """Events, progress and evaluation counts are per step, not per run: a batch of 64 runs makes
    the same Python calls, the same number of times, as a batch of 2 (the records, one per run, are
    built after the loop)."""

    def batch(runs: int) -> Counter[str]:
        prepared = plan("saddle(dim=10)", optimizer, seeds=runs, steps=300, curvature=False)
        prepared.execute(lambda n: None)  # warm: lazy imports
        calls = _python_calls(lambda: prepared.execute(lambda n: None))
        return Counter({f: n for f, n in calls.items() if n >= 300})  # per step, not per batch

    few, many = batch(2), batch(64)
    assert few == many
    assert max(few.values()) >= 300  # the loop was seen


def test_the_engine_the_probe_and_the_trajectories_step_through_one_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    loop = landbench.stepping.step_loop

    def counting(stepper: Any, evaluator: Any, steps: int, observe: Any = None) -> torch.Tensor:
        seen.append(steps)
        return loop(stepper, evaluator, steps, observe)

    monkeypatch.setattr(landbench.stepping, "step_loop", counting)
    monkeypatch.setattr("landbench.engine.step_loop", counting)
    monkeypatch.setattr("landbench.report.trajectories.step_loop", counting)
    spec = resolve("adam(lr=0.0123)")
    monkeypatch.delitem(_chosen, (spec.canonical, "cpu", torch.float64), raising=False)
    choose_mode(spec, "cpu", torch.float64)
    assert seen and all(steps == PROBE_STEPS for steps in seen)  # the probe's runs
    seen.clear()
    landbench.run("saddle(dim=4)", "adam(lr=0.0123)", seeds=2, steps=17, dtype="float64")
    assert seen == [17]
    seen.clear()
    record(make("rosenbrock(dim=2)"), "adam(lr=0.0123)", [0], 9)
    assert seen == [9]


def test_the_fast_step_honours_hooks_and_the_profiler() -> None:
    """landbench skips torch.optim's per-call wrapper only when nothing uses it: a registered step
    hook still runs, and under a profiler the step is recorded as torch records it."""
    from landbench.stepping import optimizer_step

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.5)
    param.grad = torch.ones(3)
    optimizer_step(optimizer)
    assert torch.equal(param.detach(), torch.full((3,), 0.5))  # the class's own step ran
    seen: list[str] = []
    handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append("post"))
    optimizer_step(optimizer)
    handle.remove()
    assert seen == ["post"] and torch.equal(param.detach(), torch.zeros(3))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        optimizer_step(optimizer)
    assert any(e.name == "Optimizer.step#SGD.step" for e in profile.events())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)  # wraps the instance's step
    optimizer_step(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would be raised
        scheduler.step()


def test_the_fast_step_keeps_grad_mode_where_the_optimizer_sets_it() -> None:
    """torch's ``_use_grad_for_differentiable`` is skipped only where it changes nothing: a
    ``differentiable`` optimizer still steps with grad on, and grad mode is restored after the step."""
    from torch.optim.optimizer import _use_grad_for_differentiable

    from landbench.stepping import optimizer_step

    seen: list[bool] = []

    class Recording(torch.optim.SGD):
        @_use_grad_for_differentiable
        def step(self, closure: Any = None) -> Any:
            seen.append(torch.is_grad_enabled())
            for param in self.param_groups[0]["params"]:
                param.data.add_(param.grad, alpha=-self.param_groups[0]["lr"])

    for differentiable in (False, True):
        param = torch.nn.Parameter(torch.ones(3))
        optimizer = Recording([param], lr=0.5, differentiable=differentiable)
        param.grad = torch.ones(3)
        with torch.no_grad():
            optimizer_step(optimizer)
            assert not torch.is_grad_enabled()
        assert torch.equal(param.detach(), torch.full((3,), 0.5))
    assert seen == [False, True]


@pytest.mark.parametrize(
    "text",
    [
        "sgd(lr=0.05)",
        "sgd(lr=0.05, momentum=0.9, nesterov=True)",
        "adam(lr=0.01)",
        "torch.optim:AdamW(lr=0.01)",
        "torch.optim:RMSprop(lr=0.01)",
        "torch.optim:Adagrad(lr=0.1)",
        "torch.optim:NAdam(lr=0.01)",
    ],
)
def test_kernels_chosen_once_are_the_kernels_torch_chooses(text: str) -> None:
    """The steppers' optimizers get torch's own foreach choice once (stepping.build) and step to the
    same bits as the optimizer torch builds, which makes that choice on every step."""
    from landbench.stepping import build

    spec = resolve(text)
    start = torch.randn(6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    fast, plain = build(spec, [ours]), spec.build([theirs])
    assert fast.param_groups[0]["foreach"] is False and plain.param_groups[0]["foreach"] is None
    for step in range(20):
        grad = torch.sin(start * (step + 1))
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        with torch.no_grad():
            fast.step()
            plain.step()
    assert torch.equal(ours.detach(), theirs.detach())


def test_the_kernel_choice_is_torchs_and_is_left_alone_where_it_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The foreach choice is torch's rule's answer (on a device with foreach kernels it would be
    True), and a choice the user made, a differentiable optimizer or a subclass keep their own."""
    import torch.optim.optimizer as optim_module

    from landbench.stepping import build

    param = torch.nn.Parameter(torch.zeros(2, 3))
    monkeypatch.setattr(optim_module, "_default_to_fused_or_foreach", lambda params, diff, use_fused: (False, True))
    assert build(resolve("adam(lr=0.1)"), [param]).param_groups[0]["foreach"] is True
    assert build(resolve("adam(lr=0.1, foreach=False)"), [param]).param_groups[0]["foreach"] is False
    assert build(resolve("sgd(lr=0.1, differentiable=True)"), [param]).param_groups[0]["foreach"] is None

    class Mine(torch.optim.SGD):
        pass

    spec = resolve("sgd(lr=0.1)")
    mine = build(dataclasses.replace(spec, cls=Mine), [param])
    assert mine.param_groups[0]["foreach"] is None


def test_project_set_on_the_instance_is_still_called() -> None:
    """The step loop calls the landscape's project_ as the instance has it (it skips only the
    base class's no-op): one set on the instance (a wrapper, mock.patch.object) is not skipped."""
    landscape = make("saddle(dim=4)")
    calls = []

    def project_(x: torch.Tensor) -> None:
        calls.append(1)

    landscape.project_ = project_  # type: ignore[method-assign]
    landbench.run(landscape, "sgd(lr=0.05)", seeds=2, steps=5, curvature=False)
    assert calls
