"""Batched and fallback modes: each optimizer runs in the fastest mode that equals separate runs."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import landbench
from landbench.engine import run_batch
from landbench.errors import BatchSafetyError
from landbench.optimizers import choose_mode, resolve
from landbench.settings import Settings


class GlobalNormSGD(torch.optim.SGD):
    """SGD on the gradient clipped to a global norm of 1 over all its parameters (couples every run)."""

    def step(self, closure=None):  # type: ignore[override]
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        total = torch.sqrt(sum((g * g).sum() for g in grads))
        for g in grads:
            g.mul_(torch.clamp(1.0 / total, max=1.0))
        return super().step(closure)


class GuardedSGD(torch.optim.SGD):
    """SGD that skips the whole step when any gradient is non-finite (one NaN run stalls the rest)."""

    def step(self, closure=None):  # type: ignore[override]
        if any(not torch.isfinite(p.grad).all() for group in self.param_groups for p in group["params"]):
            return None
        return super().step(closure)


@pytest.fixture(autouse=True)
def third_party(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("third_party_optimizers")
    module.GlobalNormSGD = GlobalNormSGD  # type: ignore[attr-defined]
    module.GuardedSGD = GuardedSGD  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "third_party_optimizers", module)


@pytest.mark.parametrize(
    ("optimizer", "mode"),
    [
        ("sgd(lr=0.1, momentum=0.9)", "batched"),
        ("adam(lr=0.01)", "batched"),
        ("torch.optim:Adafactor(lr=0.01)", "per_tensor"),  # a factored moment per tensor
        ("third_party_optimizers:GlobalNormSGD(lr=0.1)", "separate"),  # a norm over all parameters
        ("third_party_optimizers:GuardedSGD(lr=0.1)", "separate"),  # a NaN anywhere stalls all
        ("lbfgs(lr=0.5, max_iter=4)", "separate"),  # a closure and a line search over everything
        ("sam(lr=0.05, rho=0.1)", "batched"),  # a closure; the ascent step is normalised per run
        ("sam(base='adam', rho=0.1, lr=0.02)", "batched"),
        ("pgd(lr=0.05, g_thres=2.0, t_thres=3, radius=0.1)", "batched"),  # kicks from per-run streams
        ("muon(lr=0.02)", "per_tensor"),  # orthogonalises each matrix: a (1, d) tensor is one run
    ],
)
def test_each_optimizer_gets_the_fastest_mode_that_keeps_runs_independent(optimizer: str, mode: str) -> None:
    assert choose_mode(resolve(optimizer), "cpu", torch.float64) == mode
    seeds = [0, 1, 2]
    problem = "rosenbrock(dim=4)"
    batched = landbench.run(problem, optimizer, seeds=seeds, steps=40, noise=0.01, dtype="float64")
    assert {r["batch_mode"] for r in batched} == {mode}
    for seed, together in zip(seeds, batched):
        (alone,) = landbench.run(problem, optimizer, seeds=[seed], steps=40, noise=0.01, dtype="float64")
        for key in ("grad_evals", "reach_steps", "reach_evals", "first_hit_steps", "first_hit_evals", "diverged"):
            assert together[key] == alone[key], key
        if alone["final_loss"] is None:
            assert together["final_loss"] is None and together["diverged"]
        else:
            assert together["final_loss"] == pytest.approx(alone["final_loss"], rel=1e-10)


def test_a_closure_at_the_steps_own_point_is_not_charged_a_second_evaluation() -> None:
    """LBFGS (and pytorch-optimizer's AliG) start a step with ``closure()`` where the step loop has
    just evaluated: that is the same evaluation, not another. With ``max_iter=1`` LBFGS evaluates
    once a step (its iteration's update is not re-evaluated): 40 evaluations in 40 steps, as a loop
    of ``optimizer.step(closure)`` would count them; SAM's closure, at its perturbed point, is a
    second evaluation. The iterates are those of a closure that evaluates again."""
    options = {"seeds": 3, "steps": 40, "dtype": "float64", "curvature": False}
    lbfgs = landbench.run("quadratic(dim=4, condition=10.0)", "lbfgs(lr=0.5, max_iter=1)", **options)
    assert [r["grad_evals"] for r in lbfgs] == [40, 40, 40]
    sam = landbench.run("quadratic(dim=4, condition=10.0)", "sam(lr=0.05)", **options)
    assert [r["grad_evals"] for r in sam] == [80, 80, 80]
    # by hand: LBFGS's iterates with a closure that always evaluates afresh
    landscape = landbench.make("quadratic(dim=4, condition=10.0)", dtype=torch.float64)
    for seed, record in enumerate(lbfgs):
        x = torch.nn.Parameter(landscape.sample_start([seed]))
        optimizer = torch.optim.LBFGS([x], lr=0.5, max_iter=1)

        def closure(x: torch.nn.Parameter = x) -> torch.Tensor:
            loss, grad = landscape.loss_and_grad(x.detach())
            x.grad = grad
            return loss.sum()

        for _ in range(40):
            optimizer.step(closure)
        assert record["final_loss"] == pytest.approx(float(landscape.loss(x.detach())), rel=1e-12)


def test_a_closure_after_a_move_through_data_evaluates_at_the_moved_point() -> None:
    """SAM written with ``p.data.add_`` moves its parameters without moving their version counters:
    its closure must still evaluate at the perturbed point (two evaluations a step), as a hand loop
    of the same class does, not hand back the step's own gradient."""
    spec = "adversarial:DataSAM(lr=0.005, rho=0.05)"
    records = landbench.run("quadratic(dim=3)", spec, seeds=2, steps=20, dtype="float64", curvature=False)
    landscape = landbench.make("quadratic(dim=3)", dtype=torch.float64)
    from adversarial import DataSAM

    for seed, record in enumerate(records):
        x = torch.nn.Parameter(landscape.sample_start([seed]))
        optimizer = DataSAM([x], lr=0.005, rho=0.05)

        def closure(x: torch.nn.Parameter = x) -> torch.Tensor:
            loss, grad = landscape.loss_and_grad(x.detach())
            x.grad = grad
            return loss.sum()

        for _ in range(20):
            closure()
            optimizer.step(closure)
        assert record["grad_evals"] == 40
        assert record["final_loss"] == pytest.approx(float(landscape.loss(x.detach())), rel=1e-12)


def test_lbfgs_counts_its_own_evaluations_per_run() -> None:
    """LBFGS evaluates the landscape several times per step (its closure), a varying number per run:
    grad_evals counts them all, and a time in evaluations is never below the time in steps."""
    records = landbench.run("rosenbrock(dim=4)", "lbfgs(lr=0.5, max_iter=5)", seeds=4, steps=30, dtype="float64")
    assert all(r["grad_evals"] > 30 for r in records)
    assert len({r["grad_evals"] for r in records}) > 1
    for r in records:
        for steps_field, evals_field in (("reach_steps", "reach_evals"), ("first_hit_steps", "first_hit_evals")):
            for step, evals in zip(r[steps_field], r[evals_field]):
                assert (step is None) == (evals is None)
                assert step is None or evals >= step


@pytest.mark.parametrize("mode", ["per_tensor", "separate"])
def test_every_mode_gives_the_numbers_of_the_batched_mode_for_an_elementwise_optimizer(mode: str) -> None:
    landscape = landbench.make("saddle(dim=20, index=2, rotate=True)", dtype="float64")
    settings = Settings(dtype="float64", curvature=False)
    spec = resolve("adam(lr=0.05)")
    batched = run_batch(landscape, spec, [0, 1, 2], steps=60, noise=0.02, settings=settings, mode="batched")
    other = run_batch(landscape, spec, [0, 1, 2], steps=60, noise=0.02, settings=settings, mode=mode)
    torch.testing.assert_close(other.final_x, batched.final_x, rtol=1e-12, atol=1e-12)
    assert other.tracker.first_hit_steps.tolist() == batched.tracker.first_hit_steps.tolist()
    assert [t.tolist() for t in other.tracker.held()] == [t.tolist() for t in batched.tracker.held()]


def test_an_optimizer_that_fails_even_alone_is_refused_with_its_error() -> None:
    with pytest.raises(BatchSafetyError, match="fails on a small test problem .* even for a single run"):
        landbench.run("saddle(dim=4)", "torch.optim:SparseAdam(lr=0.1)", seeds=2, steps=3)


class ExitingSGD(torch.optim.SGD):
    """SGD that calls sys.exit(0) at its tenth step (inside the probe)."""

    def step(self, closure=None):  # type: ignore[override]
        self.count = getattr(self, "count", 0) + 1
        if self.count == 10:
            sys.exit(0)
        return super().step(closure)


def test_an_optimizer_that_calls_sys_exit_in_the_probe_is_refused_not_a_silent_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("exiting")
    module.ExitingSGD = ExitingSGD  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "exiting", module)
    with pytest.raises(BatchSafetyError, match="SystemExit: 0 \\(the optimizer called sys.exit"):
        choose_mode(resolve("exiting:ExitingSGD(lr=0.1)"), "cpu", torch.float64)


@pytest.mark.parametrize(
    "optimizer", ["sgd(momentum=0.9)", "adafactor(beta2_decay=-0.8)", "sam(rho=0.05)", "pgd(g_thres=5.0, t_thres=4)"]
)
def test_a_learning_rate_grid_in_one_batch_equals_each_rate_run_on_its_own(optimizer: str) -> None:
    """G rates x B runs as G*B rows (one param group per rate) give each rate's own numbers, noise included."""
    landscape = landbench.make("rosenbrock(dim=4)", dtype="float64")
    settings = Settings(dtype="float64", curvature=False)
    spec, lrs, seeds = resolve(optimizer), [1e-4, 3e-4, 1e-3], [0, 1]
    grid = run_batch(landscape, spec, seeds, steps=50, noise=0.05, settings=settings, lrs=lrs)
    assert grid.mode == choose_mode(spec, "cpu", torch.float64) and grid.seeds == seeds * 3
    for g, lr in enumerate(lrs):
        alone = run_batch(
            landscape, resolve(f"{optimizer[:-1]}, lr={lr})"), seeds, steps=50, noise=0.05, settings=settings
        )
        rows = slice(g * len(seeds), (g + 1) * len(seeds))
        torch.testing.assert_close(grid.final_x[rows], alone.final_x, rtol=1e-12, atol=1e-14, equal_nan=True)
        assert grid.tracker.first_hit_steps[rows].tolist() == alone.tracker.first_hit_steps.tolist()
        assert grid.tracker.held()[0][rows].tolist() == alone.tracker.held()[0].tolist()


@pytest.mark.parametrize(
    "spec",
    [
        "adversarial:GlobalNoiseSGD(lr=0.01, sigma=0.5)",
        "adversarial:GlobalNoiseSGD(lr=0.01, sigma=0.5, at_init=False, after=100)",  # past the probe's 64 steps
        "pytorch_optimizer:Gravity(lr=0.01)",
        "adversarial:KickOnBigGradSGD(lr=0.005)",  # draws in the probe only with its infinite row
    ],
)
def test_an_optimizer_drawing_from_the_global_rng_gives_each_run_its_own_stream(spec: str) -> None:
    """Draws from torch's global generator (``randn_like``, or Gravity's ``normal_`` state) couple a
    batched tensor's rows, so the probe gives the optimizer one per run; each run's optimizer then
    draws from its run's own stream: the same records whatever the process drew before and whichever
    runs share the batch, and the process's own global state is left as it was."""
    if spec.startswith("pytorch_optimizer"):
        pytest.importorskip("pytorch_optimizer")

    def final(seeds: list[int], process_seed: int) -> dict[int, float]:
        torch.manual_seed(process_seed)  # what else the process drew before: another process
        records = landbench.run("quadratic(dim=6)", spec, seeds=seeds, steps=150, dtype="float64", curvature=False)
        assert {r["batch_mode"] for r in records} == {"separate"}
        return {r["seed"]: r["final_loss"] for r in records}

    if "after=" in spec:  # the probe saw no draw: the first batch does, says so, and runs again
        assert choose_mode(resolve(spec), "cpu", torch.float64) == "batched"
        with pytest.warns(UserWarning, match="draws from torch's global random generator"):
            final([0, 1], process_seed=0)
    together = final([0, 1, 2, 3, 4, 5], process_seed=1)
    assert len(set(together.values())) == 6  # the runs drew different noise
    assert final([0, 1, 2, 3, 4, 5], process_seed=2) == together
    assert final([2], process_seed=3)[2] == together[2]
    assert final([7, 2], process_seed=4)[2] == together[2]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    landbench.run("quadratic(dim=6)", spec, seeds=2, steps=5, curvature=False)
    assert torch.equal(torch.rand(3), expected)  # the process's global stream, untouched


def test_a_landscape_that_draws_from_the_global_rng_is_named_and_the_optimizer_not_blamed() -> None:
    """Draws the optimizer's own streams cannot hold (a plug-in family's ``loss_and_grad`` adding
    ``randn_like`` noise) make the batch an error naming the landscape as a cause; plain SGD keeps
    its batched mode for the next run."""
    from landbench.errors import LandbenchError
    from landbench.optimizers.batching import draws_from_global

    landscape = landbench.make("quadratic(dim=3)")
    exact = landscape.loss_and_grad

    def noisy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = exact(x)
        return loss, grad + 1e-3 * torch.randn_like(grad)

    landscape.loss_and_grad = noisy  # type: ignore[method-assign]
    with pytest.warns(UserWarning), pytest.raises(LandbenchError, match="the landscape \\(a plug-in family"):
        landbench.run(landscape, "sgd(lr=0.01)", seeds=2, steps=5)
    spec = resolve("sgd(lr=0.01)")
    assert not draws_from_global(spec) and choose_mode(spec, "cpu", torch.float32) == "batched"
    (record, _) = landbench.run("quadratic(dim=3)", "sgd(lr=0.01)", seeds=2, steps=5)
    assert record["batch_mode"] == "batched"
