"""SAM and perturbed GD against hand formulas, reference loops over single runs, and the law of the kicks."""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from landbench.errors import SpecError
from landbench.optimizers.perturbed import PerturbedGD
from landbench.optimizers.sam import SAM

F64 = torch.float64
Grad = Callable[[torch.Tensor], torch.Tensor]


def _symmetric(d: int, seed: int) -> np.ndarray:
    """A random symmetric, indefinite matrix (eigenvalues of both signs, a few units in size)."""
    m = np.random.default_rng(seed).standard_normal((d, d))
    return (m + m.T) / 2


def _rows(scales: list[float], d: int, seed: int) -> np.ndarray:
    """Start points whose rows differ in scale by up to 8 orders of magnitude."""
    return np.asarray(scales)[:, None] * np.random.default_rng(seed).standard_normal((len(scales), d))


def _closure(param: torch.Tensor, grad: Grad, calls: list[int] | None = None) -> Callable[[], torch.Tensor]:
    """What the engine passes: set ``param.grad`` at the current point and return a loss."""

    def closure() -> torch.Tensor:
        if calls is not None:
            calls.append(1)
        param.grad = grad(param.detach())
        return param.detach().sum()

    return closure


def _run_sam(start: torch.Tensor, grad: Grad, steps: int, **kwargs) -> torch.Tensor:
    """SAM the way the engine steps it: ``param.grad`` at the current point, then ``step(closure)``."""
    param = torch.nn.Parameter(start.clone())
    opt = SAM([param], **kwargs)
    closure = _closure(param, grad)
    for _ in range(steps):
        closure()
        opt.step(closure)
    return param.detach()


# --- SAM -------------------------------------------------------------------------------------------


def test_sam_sgd_step_is_the_hand_formula_with_the_norm_taken_per_run() -> None:
    """w - lr A (w + rho A w / |A w|), row by row, for rows 8 orders of magnitude apart (a norm over
    the batch would leave the small rows almost unperturbed)."""
    a, lr, rho = _symmetric(5, 0), 0.1, 0.05
    w = _rows([1e-4, 1.0, 1e4], 5, 1)
    calls: list[int] = []
    param = torch.nn.Parameter(torch.tensor(w))
    opt = SAM([param], base="sgd", rho=rho, lr=lr)
    closure = _closure(param, lambda x: x @ torch.tensor(a), calls)
    closure()
    opt.step(closure)
    for row, got in zip(w, param.detach().numpy()):
        g = a @ row
        expected = row - lr * a @ (row + rho * g / np.linalg.norm(g))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert len(calls) == 2  # the engine's evaluation and SAM's one at the perturbed point


def test_asam_step_is_the_hand_formula() -> None:
    """Kwon et al.'s adaptive perturbation e = rho T^2 g / |T g|, T = diag(|w|), per run."""
    a, lr, rho = _symmetric(4, 2), 0.05, 0.5
    w = _rows([1e-3, 1.0, 1e3], 4, 3)
    got = _run_sam(torch.tensor(w), lambda x: x @ torch.tensor(a), 1, base="sgd", rho=rho, lr=lr, adaptive=True)
    for row, new in zip(w, got.numpy()):
        g = a @ row
        e = rho * row**2 * g / np.linalg.norm(np.abs(row) * g)
        np.testing.assert_allclose(new, row - lr * a @ (row + e), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("base", "cls", "kwargs", "rtol"),
    [
        ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, 1e-12),
        ("adam", torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99)}, 1e-12),
        ("rmsprop", torch.optim.RMSprop, {"lr": 0.01}, 1e-10),
    ],
)
def test_sam_with_a_stateful_base_equals_a_reference_loop_per_run(
    base: str, cls: type, kwargs: dict, rtol: float
) -> None:
    """The base's state evolves with the gradients at the perturbed points: a direct loop over one
    run (1-D tensor) that computes grad L(w + rho g/|g|) and hands it to the torch.optim class.
    (RMSprop's steps, lr g/sqrt(v), are ten times the 1e-3 row itself: a last-bit difference in
    e (rho g/|g| against g rho/|g|) grows to 7e-12 relative in 12 steps, hence 1e-10 there.)"""
    a, rho, steps = torch.tensor(_symmetric(6, 4)), 0.1, 12
    w = torch.tensor(_rows([1e-3, 1.0, 1e3], 6, 5))
    got = _run_sam(w, lambda x: x @ a, steps, base=base, rho=rho, **kwargs)
    for row, new in zip(w, got):
        param = torch.nn.Parameter(row.clone())
        reference = cls([param], **kwargs)
        for _ in range(steps):
            g = a @ param.detach()
            param.grad = a @ (param.detach() + rho * g / torch.linalg.vector_norm(g))
            reference.step()
        torch.testing.assert_close(new, param.detach(), rtol=rtol, atol=0)


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_sam_batch_equals_separate_runs(base: str) -> None:
    a = torch.tensor(_symmetric(5, 6))
    w = torch.tensor(_rows([1e-4, 1.0, 1e4, 3.0], 5, 7))
    kwargs = {"base": base, "rho": 0.05, "lr": 0.02}
    batched = _run_sam(w, lambda x: x @ a, 20, **kwargs)
    for i in range(len(w)):
        alone = _run_sam(w[i : i + 1], lambda x: x @ a, 20, **kwargs)
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-12, atol=0)


def test_sam_leaves_a_run_with_zero_gradient_unperturbed() -> None:
    """No epsilon in the norm: g = 0 gives e = 0 (not 0/0), and the other rows are unaffected."""
    a = torch.tensor(_symmetric(3, 8))
    w = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], dtype=F64)
    points: list[torch.Tensor] = []

    def grad(x: torch.Tensor) -> torch.Tensor:
        points.append(x.clone())
        return x @ a

    got = _run_sam(w, grad, 1, base="sgd", rho=0.3, lr=0.1)
    assert torch.equal(points[1][0], w[0]) and torch.equal(got[0], w[0])
    g = a @ w[1]
    torch.testing.assert_close(points[1][1] - w[1], 0.3 * g / g.norm(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(2, 3, 4), (7,), ()])
def test_sam_treats_a_tensor_that_is_not_2d_as_one_run(shape: tuple[int, ...]) -> None:
    weights = torch.linspace(0.5, 3.0, math.prod(shape), dtype=F64).reshape(shape)
    w = torch.linspace(-1.0, 2.0, math.prod(shape), dtype=F64).reshape(shape) + 0.1
    got = _run_sam(w, lambda x: weights * x, 1, base="sgd", rho=0.2, lr=0.1)
    g = weights * w
    expected = w - 0.1 * weights * (w + 0.2 * g / torch.sqrt((g**2).sum()))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_sam_requires_a_closure_and_shares_groups_and_state_with_its_base() -> None:
    param = torch.nn.Parameter(torch.ones(2, 3, dtype=F64))
    opt = SAM([param], base="sgd", lr=0.1, momentum=0.9)
    assert inspect.signature(opt.step).parameters["closure"].default is inspect.Parameter.empty
    param.grad = torch.ones_like(param)
    with pytest.raises(TypeError):
        opt.step()  # type: ignore[call-arg]
    assert opt.param_groups is opt.base.param_groups and opt.state is opt.base.state
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    closure = _closure(param, lambda x: 2 * x)
    before = param.detach().clone()
    closure()
    opt.step(closure)
    scheduler.step()
    assert opt.base.param_groups[0]["lr"] == 0.05
    # The first step used lr 0.1 on the gradient 2 (w + e), e = 0.05 g/|g| per row.
    g = 2 * before
    e = 0.05 * g / g.norm(dim=1, keepdim=True)
    torch.testing.assert_close(param.detach(), before - 0.1 * 2 * (before + e), rtol=1e-12, atol=0)
    # state_dict round trip: a copy loaded from it continues identically (momentum buffers included).
    twin_param = torch.nn.Parameter(param.detach().clone())
    twin = SAM([twin_param], base="sgd", lr=1.0, momentum=0.9)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch's load_state_dict shares the tensors
    assert twin.param_groups[0]["lr"] == 0.05 and twin.state is twin.base.state
    for p, o in ((param, opt), (twin_param, twin)):
        c = _closure(p, lambda x: 2 * x)
        c()
        o.step(c)
    torch.testing.assert_close(twin_param.detach(), param.detach(), rtol=0, atol=0)


# --- perturbed gradient descent -----------------------------------------------------------------------


def _saddle_grad(x: torch.Tensor, quartic: float = 0.0) -> torch.Tensor:
    """Gradient of f = 1/2 (x1^2 - x2^2) + quartic x2^4 / 4, per row."""
    return torch.stack([x[:, 0], -x[:, 1] + quartic * x[:, 1] ** 3], dim=1)


def _saddle_loss(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x[:, 0] ** 2 - x[:, 1] ** 2) + x[:, 1] ** 4 / 4


def _run_pgd(
    start: torch.Tensor, grad: Grad, steps: int, seeds: list[int] | None, instance: int = 0, **kwargs
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Final point and per-step residuals x_{t+1} - (x_t - lr grad f(x_t)) (the kicks)."""
    param = torch.nn.Parameter(start.clone())
    opt = PerturbedGD([param], **kwargs)
    if seeds is not None:
        opt.bind_runs(seeds, instance)
    lr = opt.param_groups[0]["lr"]
    kicks = []
    for _ in range(steps):
        before = param.detach().clone()
        param.grad = grad(before)
        opt.step()
        kicks.append(param.detach() - (before - lr * param.grad))
    return param.detach(), kicks


def test_pgd_perturbs_only_when_the_gradient_is_small_and_none_happened_within_t_thres_steps() -> None:
    """f = 1/2 (x1^2 - x2^2), lr 0.1, g_thres 1, t_thres 5, radius 1e-3, 40 steps:
    * row 0 starts at the saddle: |g| stays below 0.1 < 1 (kicks of 1e-3 grow by 1.1 per step), so
      it is kicked at step 0 and then every t_thres + 1 = 6 steps: 0, 6, ..., 36;
    * row 1 starts at (10, 0): |g_t| = 10 * 0.9^t first drops to <= 1 at t = 22 (0.985; 1.094 at 21),
      then it is kicked at 22, 28, 34;
    * row 2 starts at (0, 5): |g_t| = 5 * 1.1^t > 1 throughout, never kicked.
    A kick is a residual above 1e-10 (rounding leaves < 1e-14; a kick below 1e-10 has probability 1e-14)."""
    start = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]], dtype=F64)
    _, kicks = _run_pgd(start, _saddle_grad, 40, [0, 1, 2], lr=0.1, radius=1e-3, g_thres=1.0, t_thres=5)
    norms = torch.stack([k.norm(dim=1) for k in kicks])  # (steps, runs)
    kicked = [torch.nonzero(norms[:, run] > 1e-10).flatten().tolist() for run in range(3)]
    assert kicked == [list(range(0, 40, 6)), [22, 28, 34], []]
    assert float(norms.max()) <= 1e-3


def test_pgd_with_t_thres_zero_and_a_flat_landscape_kicks_every_step() -> None:
    _, kicks = _run_pgd(torch.zeros(4, 3, dtype=F64), torch.zeros_like, 10, None, radius=0.2, t_thres=0)
    norms = torch.stack([k.norm(dim=1) for k in kicks])
    assert bool((norms > 1e-6).all()) and bool((norms <= 0.2).all())


@pytest.mark.parametrize("dim", [3, 40])
def test_pgd_kicks_are_uniform_in_the_ball(dim: int) -> None:
    """Zero gradient and t_thres = 0: every step adds a fresh point uniform in the ball of radius r.
    Then (|xi|/r)^d ~ U(0, 1) (volume fraction) and, for the direction u = xi/|xi|, (1 + u_1)/2 ~
    Beta((d-1)/2, (d-1)/2) (uniform for d = 3, Archimedes). Kolmogorov-Smirnov tests on 8000 points
    (seeded, so deterministic; a correct sampler gives p-values uniform on (0, 1), we require > 1e-3).
    The mean direction has standard error 1/sqrt(d n) per component; we allow 5 of them."""
    runs, steps, radius = 80, 100, 0.5
    _, kicks = _run_pgd(
        torch.zeros(runs, dim, dtype=F64), torch.zeros_like, steps, list(range(runs)), radius=radius, t_thres=0
    )
    xi = torch.cat(kicks).numpy()
    norms = np.linalg.norm(xi, axis=1)
    assert norms.max() <= radius
    assert stats.kstest((norms / radius) ** dim, "uniform").pvalue > 1e-3
    u = xi / norms[:, None]
    half = (dim - 1) / 2
    for component in (0, dim - 1):
        assert stats.kstest((1 + u[:, component]) / 2, stats.beta(half, half).cdf).pvalue > 1e-3
    n = len(u)
    assert np.abs(u.mean(axis=0)).max() < 5 / math.sqrt(dim * n)


def test_pgd_escapes_the_saddle_where_gd_stays() -> None:
    """f = 1/2 (x1^2 - x2^2) + x2^4/4 from exactly 0: the gradient is 0, so GD never moves, while
    PGD is kicked at step 0 and slides to a minimum (0, +-1), f* = -1/4 (a kick of 1e-3 grows by
    1.1 a step: ~ 72 steps to O(1) and a few dozen more to converge). At the minimum the gradient
    is small again, so PGD (which has no stopping test) is kicked every t_thres + 1 steps: it stays
    within about radius = 1e-3 of the minimum, a loss at most 2 * radius^2 / 2 = 1e-6 above f*."""
    start = torch.zeros(4, 2, dtype=F64)
    grad = lambda x: _saddle_grad(x, quartic=1.0)  # noqa: E731
    final, _ = _run_pgd(start, grad, 400, [0, 1, 2, 3], lr=0.1, t_thres=50)
    torch.testing.assert_close(_saddle_loss(final), torch.full((4,), -0.25, dtype=F64), rtol=0, atol=1e-6)
    torch.testing.assert_close(final.abs(), torch.tensor([[0.0, 1.0]] * 4, dtype=F64), rtol=0, atol=2e-3)
    param = torch.nn.Parameter(start.clone())
    gd = torch.optim.SGD([param], lr=0.1)
    for _ in range(400):
        param.grad = grad(param.detach())
        gd.step()
    assert torch.equal(param.detach(), start)


def test_pgd_batch_equals_separate_runs_and_is_reproducible() -> None:
    """Row i of a batch (bound to seeds[i]) is run i alone, in any row order; the same seeds give
    the same numbers, another seed other numbers."""
    start = torch.tensor([[0.0, 0.0], [1e-4, 0.0], [3.0, 0.0], [0.0, 1e-5], [2e3, -1e-3]], dtype=F64)
    seeds = [11, 3, 7, 5, 2]
    kwargs = {"lr": 0.05, "radius": 1e-2, "g_thres": 1e-2, "t_thres": 3}
    grad = lambda x: _saddle_grad(x, quartic=1.0)  # noqa: E731
    batched, kicks = _run_pgd(start, grad, 60, seeds, instance=4, **kwargs)
    assert sum(bool((k.norm(dim=1) > 1e-10).any()) for k in kicks) >= 3
    for i, seed in enumerate(seeds):
        alone, _ = _run_pgd(start[i : i + 1], grad, 60, [seed], instance=4, **kwargs)
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-12, atol=0)
    order = [3, 0, 4, 1, 2]
    permuted, _ = _run_pgd(start[order], grad, 60, [seeds[i] for i in order], instance=4, **kwargs)
    torch.testing.assert_close(permuted, batched[order], rtol=1e-12, atol=0)
    again, _ = _run_pgd(start, grad, 60, seeds, instance=4, **kwargs)
    assert torch.equal(again, batched)
    other_seed, _ = _run_pgd(start[:1], grad, 60, [12], instance=4, **kwargs)
    other_instance, _ = _run_pgd(start[:1], grad, 60, [11], instance=5, **kwargs)
    assert not torch.equal(other_seed, batched[:1]) and not torch.equal(other_instance, batched[:1])


def test_pgd_unbound_uses_its_seed_and_treats_a_tensor_that_is_not_2d_as_one_run() -> None:
    start = torch.zeros(2, 3, 4, dtype=F64)
    first, kicks = _run_pgd(start, torch.zeros_like, 5, None, radius=0.3, t_thres=0, seed=9)
    same, _ = _run_pgd(start, torch.zeros_like, 5, None, radius=0.3, t_thres=0, seed=9)
    other, _ = _run_pgd(start, torch.zeros_like, 5, None, radius=0.3, t_thres=0, seed=10)
    assert first.shape == start.shape and torch.equal(first, same) and not torch.equal(first, other)
    for kick in kicks:
        assert 0 < float(kick.norm()) <= 0.3  # one ball over all 24 elements


def test_steps_never_synchronise_with_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside step, no tensor is read on the host (.item(), bool(), float(), int(), .tolist(), .numpy())."""
    pgd_param = torch.nn.Parameter(torch.zeros(3, 2, dtype=F64))
    pgd = PerturbedGD([pgd_param], radius=0.1, g_thres=1.0, t_thres=1)
    pgd.bind_runs([0, 1, 2], 0)
    sam_param = torch.nn.Parameter(torch.ones(3, 2, dtype=F64))
    sam = SAM([sam_param], base="sgd", lr=0.1, momentum=0.9)
    closure = _closure(sam_param, lambda x: 2 * x)

    def host_read(*args, **kwargs):
        raise AssertionError("host synchronisation inside step")

    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for _ in range(5):
        pgd_param.grad = _saddle_grad(pgd_param.detach())
        pgd.step()
        closure()
        sam.step(closure)
    monkeypatch.undo()
    assert pgd.state[pgd_param]["perturbations"].tolist() == [3, 3, 3]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: SAM(p, rho=0.0), "rho must be a positive finite number"),
        (lambda p: SAM(p, rho=-0.1), "rho must be a positive finite number"),
        (lambda p: SAM(p, rho=math.inf), "rho must be a positive finite number"),
        (lambda p: SAM(p, base="adm"), r"did you mean 'adam'.*valid bases: gd, pgd, sgd, adam, adamw"),
        (lambda p: SAM(p, base="lbfgs"), "base 'lbfgs' needs a closure in step.*valid bases: gd, pgd, sgd"),
        (lambda p: SAM(p, base=torch.optim.LBFGS), "closure"),
        (lambda p: SAM(p, base=dict), "torch.optim.Optimizer subclass"),
        (lambda p: SAM(p, lr=0.1, momentun=0.9), r"did you mean 'momentum'.*momentum, dampening"),
        (lambda p: SAM(p, adaptive="yes"), "adaptive must be True or False"),
        (lambda p: PerturbedGD(p, radius=-1e-3), "radius must be a non-negative finite number"),
        (lambda p: PerturbedGD(p, t_thres=-1), "t_thres must be a non-negative integer"),
        (lambda p: PerturbedGD(p, t_thres=2.5), "t_thres must be a non-negative integer"),
        (lambda p: PerturbedGD(p, lr=0.0), "lr must be a positive finite number"),
        (lambda p: PerturbedGD(p, g_thres=math.nan), "g_thres must be a non-negative number"),
        (lambda p: PerturbedGD(p, seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise_spec_errors_naming_what_is_valid(build: Callable, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build([torch.nn.Parameter(torch.zeros(2, 3))])


def test_bind_runs_needs_one_seed_per_row_before_the_first_step() -> None:
    param = torch.nn.Parameter(torch.zeros(3, 2))
    opt = PerturbedGD([param])
    with pytest.raises(ValueError, match="2 seeds for parameters of 3 runs in all"):
        opt.bind_runs([0, 1], 0)
    param.grad = torch.zeros_like(param)
    opt.step()
    with pytest.raises(ValueError, match="before the first step"):
        opt.bind_runs([0, 1, 2], 0)
