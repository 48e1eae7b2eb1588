"""phase_retrieval: the finite sum, its known critical points, its closed-form population loss and
the absence of spurious minima with enough samples, each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import dense_hessian

import landbench
from landbench.landscapes.finite_sum import FiniteSum
from landbench.minibatch import Minibatches

SPEC = "phase_retrieval(dim=6, samples=60)"


def make(spec: str = SPEC, **kwargs) -> landbench.Landscape:
    return landbench.make(spec, dtype=torch.float64, **kwargs)


def test_minibatch_loss_and_gradient_are_the_mean_over_their_examples() -> None:
    landscape = make()
    x = landscape.sample_start(range(3))
    index = Minibatches(0, [0, 1, 2], 60, 9, "cpu").next()
    value, grad = landscape.batch_loss_and_grad(x, index)
    a, y = landscape.inputs64.numpy(), landscape.targets64.numpy()
    for b in range(3):
        rows = index[b].numpy()
        z = a[rows] @ x[b].numpy()
        assert float(value[b]) == pytest.approx(np.mean((z * z - y[rows]) ** 2) / 4, rel=1e-13)
        np.testing.assert_allclose(grad[b].numpy(), a[rows].T @ ((z * z - y[rows]) * z) / 9, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, FiniteSum.batch_loss_and_grad(landscape, x, index)[1], rtol=1e-12, atol=1e-13)


def test_known_minima_and_the_origin_match_the_dense_autograd_hessian() -> None:
    landscape = make()
    a, y = landscape.inputs64, landscape.targets64
    assert landscape.f_star == 0.0
    for minimum in landscape.minima:
        loss, grad = landscape.loss_and_grad(minimum.point[None])
        assert float(loss) == 0.0 and float(grad.abs().max()) == 0.0
        hessian = dense_hessian(landscape, minimum.point)
        torch.testing.assert_close(hessian, 2 * a.T @ (y[:, None] * a) / 60)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        assert minimum.lambda_min == pytest.approx(float(eigenvalues.min()), rel=1e-10)
        assert minimum.lambda_max == pytest.approx(float(eigenvalues.max()), rel=1e-10)
        assert minimum.trace == pytest.approx(float(eigenvalues.sum()), rel=1e-10)
    torch.testing.assert_close(landscape.minima[1].point, -landscape.minima[0].point)
    origin = landscape.saddle
    assert origin.kind == "maximum" and origin.index == 6
    zero = torch.zeros(6, dtype=torch.float64)
    assert float(landscape.loss_and_grad(zero[None])[1].abs().max()) == 0.0
    assert origin.value == pytest.approx(float(landscape.loss(zero[None])), rel=1e-13)
    eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, zero))
    assert origin.lambda_max == pytest.approx(float(eigenvalues.max()), rel=1e-10) and origin.lambda_max < 0
    assert origin.trace == pytest.approx(float(eigenvalues.sum()), rel=1e-10)


def test_with_fewer_samples_than_dimensions_the_origin_is_degenerate() -> None:
    landscape = make("phase_retrieval(dim=8, samples=5)")
    assert landscape.saddle.kind == "saddle" and landscape.saddle.index == 5
    eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, torch.zeros(8, dtype=torch.float64)))
    assert int((eigenvalues < -1e-9).sum()) == 5 and float(eigenvalues.max()) == pytest.approx(0.0, abs=1e-12)


def population(x: torch.Tensor, x_star: torch.Tensor) -> torch.Tensor:
    """The population loss of one point, written out for autograd."""
    n2, overlap = (x * x).sum(), (x * x_star).sum()
    return (3 * n2 * n2 + 3 * (x_star * x_star).sum() ** 2 - 2 * n2 * (x_star * x_star).sum() - 4 * overlap**2) / 4


def test_closed_form_population_loss_matches_monte_carlo_on_fresh_samples() -> None:
    landscape = make()
    rng = np.random.default_rng(5)
    m = 400_000
    a = rng.standard_normal((m, 6))
    y = (a @ landscape.x_star64.numpy()) ** 2
    points = torch.cat([landscape.sample_start(range(3)), torch.zeros(1, 6, dtype=torch.float64)])
    for x, value in zip(points.numpy(), landscape.test_loss(points).numpy()):
        losses = ((a @ x) ** 2 - y) ** 2 / 4
        assert abs(losses.mean() - value) < 4 * losses.std() / math.sqrt(m)
        assert value == pytest.approx(float(population(torch.from_numpy(x), landscape.x_star64)), rel=1e-12)


def test_population_critical_points_are_the_documented_ones() -> None:
    """Sun, Qu and Wright 2018: 0 a maximum (3/4), +-x* minima (0), saddles x.x* = 0, |x|^2 = 1/3 (2/3)."""
    landscape = make()
    x_star = landscape.x_star64
    other = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    other = other - (other @ x_star) * x_star
    saddle = other / other.norm() / math.sqrt(3)
    cases = [
        (torch.zeros(6, dtype=torch.float64), 0.75, [-3.0] + [-1.0] * 5),
        (x_star, 0.0, [2.0] * 5 + [6.0]),
        (-x_star, 0.0, [2.0] * 5 + [6.0]),
        (saddle, 2.0 / 3.0, [-2.0, 0.0, 0.0, 0.0, 0.0, 2.0]),
    ]
    for point, value, spectrum in cases:
        x = point.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(population(x, x_star), x)
        assert float(grad.abs().max()) < 1e-14
        assert float(landscape.test_loss(point[None])) == pytest.approx(value, abs=1e-14)
        hessian = torch.autograd.functional.hessian(lambda z: population(z, x_star), point)
        torch.testing.assert_close(
            torch.linalg.eigvalsh(hessian), torch.tensor(spectrum, dtype=torch.float64), atol=1e-12, rtol=0
        )


def test_instance_is_reproducible_and_the_same_in_float32() -> None:
    one, two = make(seed=2), make(seed=2)
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.x_star, two.x_star)
    assert not torch.equal(one.x_star, make(seed=3).x_star)
    assert torch.equal(make("phase_retrieval(dim=6, samples=90)", seed=2).x_star, one.x_star)
    torch.testing.assert_close(landbench.make(SPEC, seed=2).inputs, one.inputs.float())


def test_gradient_descent_from_random_starts_recovers_the_signal_up_to_sign() -> None:
    """n = 20 d: no spurious minima (Sun, Qu and Wright 2018); every seeded start reaches +-x*."""
    landscape = make("phase_retrieval(dim=10, samples=200)")
    seeds = list(range(24))
    x = landscape.sample_start(seeds)
    for _ in range(1500):
        x -= 0.1 * landscape.loss_and_grad(x)[1]
    signs = landscape.record_fields(x, None, torch.zeros(len(seeds), dtype=torch.bool))["recovered"]
    assert all(s in (1, -1) for s in signs), signs
    assert len(set(signs)) == 2  # both signs are reached from random starts
    distance = torch.minimum((x - landscape.x_star).norm(dim=1), (x + landscape.x_star).norm(dim=1))
    assert float(distance.max()) < 1e-6
    assert float(landscape.loss(x).max()) < 1e-12
