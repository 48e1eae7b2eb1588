"""least_squares: the finite sum, its minimum, its closed-form test loss and the noisy quadratic
model's facts (linear scaling of the learning rate with the batch size up to a critical batch size),
each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import landbench
from landbench.minibatch import Minibatches

SPEC = "least_squares(dim=6, samples=40, condition=10.0, label_noise=0.1)"
#: a large training set, so that a run's first epoch is long enough for the SGD experiments
BIG = "least_squares(dim=16, samples=16384, condition=10.0, label_noise=0.5)"


def make(spec: str = SPEC, **kwargs) -> landbench.Landscape:
    return landbench.make(spec, dtype=torch.float64, **kwargs)


def test_minibatch_loss_and_gradient_are_the_mean_over_their_examples() -> None:
    landscape = make()
    x = landscape.sample_start(range(3))
    index = Minibatches(0, [0, 1, 2], 40, 7, "cpu").next()
    value, grad = landscape.batch_loss_and_grad(x, index)
    a, y = landscape.inputs64.numpy(), landscape.targets64.numpy()
    for b in range(3):
        rows = index[b].numpy()
        residual = a[rows] @ x[b].numpy() - y[rows]
        assert float(value[b]) == pytest.approx(0.5 * np.mean(residual**2), rel=1e-13)
        np.testing.assert_allclose(grad[b].numpy(), a[rows].T @ residual / 7, rtol=1e-12, atol=1e-14)
    auto = landbench.landscapes.finite_sum.FiniteSum.batch_loss_and_grad
    torch.testing.assert_close(grad, auto(landscape, x, index)[1], rtol=1e-12, atol=1e-13)
    # a batch of all n examples is the full-batch gradient
    full = torch.arange(40).expand(3, 40)
    torch.testing.assert_close(landscape.batch_loss_and_grad(x, full)[1], landscape.loss_and_grad(x)[1])


def test_minimum_matches_numpy_lstsq_and_its_hessian_numpy_eigvalsh() -> None:
    landscape = make()
    a, y = landscape.inputs64.numpy(), landscape.targets64.numpy()
    solution, residual, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    assert rank == 6
    minimum = landscape.minima[0]
    np.testing.assert_allclose(minimum.point.numpy(), solution, rtol=1e-10, atol=1e-12)
    assert landscape.f_star == pytest.approx(float(residual[0]) / (2 * 40), rel=1e-10)
    assert float(landscape.loss(minimum.point[None])[0]) == pytest.approx(landscape.f_star, rel=1e-12)
    assert float(landscape.loss_and_grad(minimum.point[None])[1].abs().max()) < 1e-13
    eigenvalues = np.linalg.eigvalsh(a.T @ a / 40)
    assert minimum.lambda_max == pytest.approx(eigenvalues.max(), rel=1e-12)
    assert minimum.lambda_min == pytest.approx(eigenvalues.min(), rel=1e-10)
    assert minimum.trace == pytest.approx(eigenvalues.sum(), rel=1e-12)


def test_fewer_examples_than_dimensions_interpolate() -> None:
    landscape = make("least_squares(dim=12, samples=5, label_noise=0.3)")
    a, y = landscape.inputs64.numpy(), landscape.targets64.numpy()
    assert landscape.f_star == 0.0
    minimum = landscape.minima[0]
    np.testing.assert_allclose(minimum.point.numpy(), np.linalg.lstsq(a, y, rcond=None)[0], rtol=1e-9, atol=1e-12)
    assert float(landscape.loss(minimum.point[None])[0]) < 1e-25
    assert minimum.lambda_min == 0.0
    assert np.linalg.eigvalsh(a.T @ a / 5).min() == pytest.approx(0.0, abs=1e-12)


def test_instance_is_reproducible_and_its_draw_independent_of_condition_and_noise() -> None:
    one, two = make(seed=3), make(seed=3)
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.targets, two.targets)
    assert not torch.equal(one.inputs, make(seed=4).inputs)
    other = make("least_squares(dim=6, samples=40, condition=100.0, label_noise=0.2)", seed=3)
    torch.testing.assert_close(other.w_star, one.w_star, rtol=0, atol=0)
    # the same standard normals z: a = z Sigma^(1/2) for both
    root = one.rotation64 @ torch.diag(one.eigenvalues64.rsqrt()) @ one.rotation64.T
    root_other = other.rotation64 @ torch.diag(other.eigenvalues64.rsqrt()) @ other.rotation64.T
    torch.testing.assert_close(one.inputs64 @ root, other.inputs64 @ root_other)
    noise_one = one.targets64 - one.inputs64 @ one.w_star64
    noise_other = other.targets64 - other.inputs64 @ other.w_star64
    torch.testing.assert_close(2 * noise_one, noise_other)
    float32 = landbench.make(SPEC, seed=3)
    torch.testing.assert_close(float32.inputs, one.inputs.float())


def test_closed_form_test_loss_matches_monte_carlo_on_fresh_samples() -> None:
    landscape = make()
    rng = np.random.default_rng(7)
    m = 200_000
    root = np.linalg.cholesky(landscape.covariance64.numpy())
    a = rng.standard_normal((m, 6)) @ root.T
    y = a @ landscape.w_star64.numpy() + 0.1 * rng.standard_normal(m)
    points = torch.cat([landscape.sample_start(range(3)), landscape.minima[0].point[None]])
    closed = landscape.test_loss(points).numpy()
    for w, value in zip(points.numpy(), closed):
        losses = 0.5 * (a @ w - y) ** 2
        assert abs(losses.mean() - value) < 4 * losses.std() / math.sqrt(m)
    assert landscape.facts()["test_loss_at_minimum"] == pytest.approx(float(closed[-1]), rel=1e-10)


def test_gradient_noise_scale_matches_monte_carlo_per_example_gradients() -> None:
    landscape = make()
    rng = np.random.default_rng(8)
    m = 400_000
    sigma = landscape.covariance64.numpy()
    a = rng.standard_normal((m, 6)) @ np.linalg.cholesky(sigma).T
    x = landscape.sample_start([0])[0].numpy()
    residual = a @ (x - landscape.w_star64.numpy()) - 0.1 * rng.standard_normal(m)
    grads = a * residual[:, None]
    g = grads.mean(0)
    covariance = np.cov(grads.T)
    exact_g = sigma @ (x - landscape.w_star64.numpy())
    np.testing.assert_allclose(g, exact_g, atol=5 * np.sqrt(np.diag(covariance) / m).max())
    scales = landscape.gradient_noise_scale(torch.from_numpy(x))
    b_noise = np.trace(sigma @ covariance) / (exact_g @ sigma @ exact_g)
    b_simple = np.trace(covariance) / (exact_g @ exact_g)
    assert scales["B_noise"] == pytest.approx(b_noise, rel=0.02)
    assert scales["B_simple"] == pytest.approx(b_simple, rel=0.02)


def test_steady_state_is_the_recursions_fixed_point_and_a_function_of_lr_over_batch() -> None:
    landscape = make()
    sigma2, trace = 0.01, float(landscape.eigenvalues64.sum())
    for lr, batch in [(0.05, 1), (0.2, 4), (0.5, 2)]:
        curve = landscape.sgd_test_loss(lr, batch, 4000)
        assert curve[-1] - sigma2 / 2 == pytest.approx(landscape.steady_state_excess(lr, batch), rel=1e-9)
    small = landscape.steady_state_excess(1e-3, 1)
    assert small == pytest.approx(sigma2 * 1e-3 * trace / 4, rel=2e-3)
    assert landscape.steady_state_excess(2e-3, 2) == pytest.approx(small, rel=2e-3)
    assert landscape.steady_state_excess(2.5, 1) == math.inf
    assert landscape.sgd_test_loss(0.3, math.inf, 2000)[-1] == pytest.approx(sigma2 / 2, rel=1e-12)


def run_sgd(landscape, lr: float, batch: int, steps: int, seeds) -> np.ndarray:
    """Minibatch SGD from the runs' starts: the test loss of every run at steps 0..steps ``(steps+1, R)``."""
    x = landscape.sample_start(seeds)
    stream = Minibatches(landscape.seed, seeds, landscape.samples, batch, "cpu")
    losses = [landscape.test_loss(x)]
    for _ in range(steps):
        _, grad = landscape.batch_loss_and_grad(x, stream.next())
        x -= lr * grad
        losses.append(landscape.test_loss(x))
    return torch.stack(losses).numpy()


def test_one_pass_minibatch_sgd_follows_the_exact_expected_test_loss() -> None:
    """Within its first epoch a run sees distinct examples in an order independent of them: SGD on
    the training set is SGD on fresh population samples, whose mean test loss the recursion gives."""
    landscape = make(BIG)
    runs = run_sgd(landscape, 0.1, 8, 400, range(24))  # 3200 examples < n = 16384
    theory = landscape.sgd_test_loss(0.1, 8, 400)
    mean, error = runs.mean(1), runs.std(1) / math.sqrt(runs.shape[1])
    for t in (0, 10, 50, 150, 400):
        assert abs(mean[t] - theory[t]) < 4 * error[t] + 0.03 * (theory[t] - 0.125), t
    # the steady state (the last 200 steps, averaged; the slowest mode relaxes in 1/(lr h_min) = 100 steps)
    steady = mean[200:].mean() - 0.125
    assert steady == pytest.approx(landscape.steady_state_excess(0.1, 8), rel=0.15)


def steps_to(curve: np.ndarray, level: float) -> int:
    below = np.flatnonzero(curve <= level)
    return int(below[0]) if below.size else math.inf


def scaling_table(landscape, target: float):
    critical = landscape.critical_batch_size(target, max_batch=4096)
    sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, math.inf]
    table = landscape.batch_size_scaling(target, sizes)
    return critical, sizes, table["steps"], table["lr"]


def test_tuned_steps_halve_per_doubling_below_the_critical_batch_size_and_saturate_above() -> None:
    landscape = make(BIG)
    target = 0.01
    critical, sizes, steps, lrs = scaling_table(landscape, target)
    assert 30 < critical < 300
    s_min = steps[-1]
    for k in range(len(sizes) - 2):
        ratio = steps[k] / steps[k + 1]
        if sizes[k] <= critical / 8:
            assert 1.8 < ratio < 2.2, (sizes[k], ratio)  # perfect scaling
            assert 1.6 < lrs[k + 1] / lrs[k] < 2.4  # with the lr in proportion to the batch size
        if sizes[k] >= 8 * critical:
            assert steps[k] < 1.4 * s_min  # no more gain
    # McCandlish's S(B) = S_min (1 + B_crit / B)
    for b, s in zip(sizes[:-1], steps[:-1]):
        assert s == pytest.approx(s_min * (1 + critical / b), rel=0.35), b
    # The experiment: tuned minibatch SGD reaches the target when the theory says (mean of 32 runs).
    level = 0.125 + target
    measured = {}
    for b in (4, 8, 512, 1024):
        k = sizes.index(b)
        horizon = int(1.3 * steps[k]) + 2
        curve = run_sgd(landscape, float(lrs[k]), b, horizon, range(24)).mean(1)
        measured[b] = steps_to(curve, level)
        assert measured[b] == pytest.approx(steps[k], rel=0.2, abs=1), b
    assert 1.6 < measured[4] / measured[8] < 2.4
    assert measured[512] / measured[1024] < 1.35


@pytest.mark.slow
def test_measured_steps_to_target_follow_the_theory_over_the_whole_batch_size_sweep() -> None:
    """Tuned minibatch SGD (mean of 64 runs, one epoch of n = 2**17) at every batch size 1..2048."""
    landscape = make("least_squares(dim=16, samples=131072, condition=10.0, label_noise=0.5)")
    target = 0.01
    critical, sizes, steps, lrs = scaling_table(landscape, target)
    measured = []
    for k, b in enumerate(sizes[:-1]):
        curve = run_sgd(landscape, float(lrs[k]), b, int(1.3 * steps[k]) + 2, range(64)).mean(1)
        measured.append(steps_to(curve, 0.125 + target))
        assert measured[-1] == pytest.approx(steps[k], rel=0.15, abs=1), b
    gains = [measured[k] / measured[k + 1] for k in range(len(measured) - 1)]
    below = [g for b, g in zip(sizes, gains) if b <= critical / 8]
    above = [g for b, g in zip(sizes, gains) if b >= 4 * critical]
    assert below and min(below) > 1.7 and above and max(above) < 1.3
