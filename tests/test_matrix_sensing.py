"""matrix_sensing: closed forms against autograd, finite differences, brute force, numpy and Monte Carlo;
the known minimum (U*) and saddle (U = 0) against dense Hessians; recovery and overfitting by
gradient descent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import dense_hessian

import landbench
from landbench.landscapes.base import Landscape
from landbench.landscapes.finite_sum import FiniteSum
from landbench.landscapes.matrix_sensing import MatrixSensing
from landbench.minibatch import Minibatches

SPEC = "matrix_sensing(dim=5, rank=2, measurements=40)"


def make(spec: str = SPEC, **kwargs) -> MatrixSensing:
    return landbench.make(spec, dtype=torch.float64, **kwargs)


def points(landscape: MatrixSensing, count: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(count, landscape.dim, generator=generator, dtype=torch.float64)


def brute_force(landscape: MatrixSensing, x: torch.Tensor, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient of each run over its own examples, one run and one example at a time in
    numpy, from the unpacked (d, d) matrices: f = 1/(4 m_b) sum r_i^2, grad = 1/(4 m_b) sum 2 r_i (A_i + A_i^T) U."""
    a = landscape.sensing_matrices().numpy()
    y = landscape.labels.numpy()
    d, r = landscape.data_dim, landscape.rank
    losses, grads = [], []
    for b in range(x.shape[0]):
        u = x[b].numpy().reshape(d, r)
        value, grad = 0.0, np.zeros((d, r))
        for i in index[b]:
            residual = float(np.sum(a[i] * (u @ u.T))) - y[i]
            value += residual**2 / 4
            grad += 2 * residual * (a[i] + a[i].T) @ u / 4
        losses.append(value / len(index[b]))
        grads.append(grad.reshape(-1) / len(index[b]))
    return np.array(losses), np.array(grads)


def test_the_instance_follows_its_stated_law() -> None:
    landscape = make("matrix_sensing(dim=6, rank=3, measurements=3000)")
    a = landscape.sensing_matrices()
    assert a.shape == (3000, 6, 6)
    torch.testing.assert_close(a, a.transpose(1, 2), rtol=0, atol=0)
    # A = (G + G^T)/2: diagonal N(0, 1), off-diagonal N(0, 1/2).
    diagonal = torch.diagonal(a, dim1=1, dim2=2)
    off = a[:, torch.triu_indices(6, 6, 1)[0], torch.triu_indices(6, 6, 1)[1]]
    assert float(diagonal.var()) == pytest.approx(1.0, abs=0.05)
    assert float(off.var()) == pytest.approx(0.5, abs=0.03)
    assert abs(float(a.mean())) < 0.02
    # y_i = <A_i, M*>, M* = U* U*^T with U* = Q diag(s), Q orthonormal, s in [1, 2].
    truth = landscape.truth
    target = truth @ truth.T
    torch.testing.assert_close(landscape.labels, torch.einsum("mij,ij->m", a, target), rtol=1e-12, atol=1e-12)
    gram = truth.T @ truth
    s = torch.tensor(landscape.facts()["truth_singular_values"], dtype=torch.float64)
    torch.testing.assert_close(gram, torch.diag(s**2), atol=1e-12, rtol=0)
    assert float(s.min()) >= 1.0 and float(s.max()) <= 2.0
    assert np.linalg.matrix_rank(target.numpy()) == 3
    facts = landscape.facts()
    assert facts["data_dim"] == 6 and facts["search_dim"] == landscape.dim == 18
    assert landscape.examples == landscape.samples == 3000


def test_instances_are_reproducible_and_sweeps_over_measurements_keep_the_truth() -> None:
    a, b = make(seed=3), make(seed=3)
    assert torch.equal(a.packed, b.packed) and torch.equal(a.labels, b.labels)
    c = make(seed=4)
    assert not torch.equal(a.truth, c.truth) and not torch.equal(a.packed, c.packed)
    more = make("matrix_sensing(dim=5, rank=2, measurements=80)", seed=3)
    assert torch.equal(a.truth, more.truth)
    single = landbench.make(SPEC, seed=3)  # float32: the float64 draw, cast
    assert torch.equal(single.packed, a.packed.float()) and torch.equal(single.truth, a.truth.float())


def test_rank_above_dim_is_refused() -> None:
    with pytest.raises(landbench.SpecError, match="rank"):
        landbench.make("matrix_sensing(dim=3, rank=4)")


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_and_hvp_match_autograd_and_finite_differences(seed: int) -> None:
    landscape = make()
    x = points(landscape, 5, seed)
    v = points(landscape, 5, seed + 10)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad = Landscape.loss_and_grad(landscape, x)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-10, atol=1e-10)
    h = 1e-5
    slope = (landscape.loss(x + h * v) - landscape.loss(x - h * v)) / (2 * h)
    torch.testing.assert_close(slope, (grad * v).sum(1), rtol=1e-7, atol=1e-7)
    curvature = (landscape.loss_and_grad(x + h * v)[1] - landscape.loss_and_grad(x - h * v)[1]) / (2 * h)
    torch.testing.assert_close(landscape.hvp(x, v), curvature, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("runs", "batch"), [(2, 10), (6, 10), (3, 40)])
def test_minibatch_loss_and_gradient_match_brute_force(runs: int, batch: int) -> None:
    landscape = make()
    x = points(landscape, runs, 5)
    index = Minibatches(0, list(range(runs)), landscape.examples, batch, "cpu").next()
    assert landscape._gathers(index) == (runs * batch <= landscape.examples)
    loss, grad = landscape.batch_loss_and_grad(x, index)
    expected_loss, expected_grad = brute_force(landscape, x, index.numpy())
    np.testing.assert_allclose(loss.numpy(), expected_loss, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), expected_grad, rtol=1e-10, atol=1e-12)
    # Autograd of the per-example losses over the same examples (the contract's default).
    auto_loss, auto_grad = FiniteSum.batch_loss_and_grad(landscape, x, index)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-10)
    assert landscape.example_losses(x, index).shape == (runs, batch)
    if batch == landscape.examples:  # every example: the full batch
        torch.testing.assert_close(loss, landscape.loss(x), rtol=1e-12, atol=0)
        torch.testing.assert_close(grad, landscape.loss_and_grad(x)[1], rtol=1e-10, atol=1e-12)


def test_population_loss_matches_monte_carlo_on_fresh_matrices() -> None:
    landscape = make()
    d = landscape.data_dim
    x = torch.cat([landscape.minima[0].point[None] + 0.3 * points(landscape, 2, 7), points(landscape, 2, 8)])
    target = landscape.truth @ landscape.truth.T
    rng = np.random.default_rng(123)
    count = 40000
    g = rng.standard_normal((count, d, d))
    symmetrised = (g + g.transpose(0, 2, 1)) / 2
    closed = landscape.test_loss(x).numpy()
    for b in range(x.shape[0]):
        u = x[b].numpy().reshape(d, landscape.rank)
        error = u @ u.T - target.numpy()
        for sensing in (symmetrised, g):  # symmetric D: the same variance for plain Gaussian A
            samples = np.einsum("nij,ij->n", sensing, error) ** 2 / 4
            standard_error = samples.std() / math.sqrt(count)
            assert abs(samples.mean() - closed[b]) < 4.5 * standard_error
    # With many measurements the training loss approaches the test loss.
    many = make("matrix_sensing(dim=5, rank=2, measurements=20000)")
    torch.testing.assert_close(many.loss(x), many.test_loss(x), rtol=0.06, atol=0)


def test_the_minimum_manifold_and_its_hessian() -> None:
    landscape = make()
    d, r = landscape.data_dim, landscape.rank
    minimum = landscape.minima[0]
    assert landscape.f_star == 0.0 and minimum.value == 0.0
    truth = minimum.point.reshape(d, r)
    rotation, _ = torch.linalg.qr(torch.randn(r, r, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    for point in (truth, truth @ rotation, -truth):
        loss, grad = landscape.loss_and_grad(point.reshape(1, -1))
        assert float(loss) < 1e-26 and float(grad.abs().max()) < 1e-12
    eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, minimum.point))
    zero_modes = r * (r - 1) // 2
    assert int((eigenvalues.abs() < 1e-9).sum()) == zero_modes
    assert minimum.lambda_max == pytest.approx(float(eigenvalues[-1]), rel=1e-10)
    assert minimum.lambda_min == 0.0
    assert minimum.trace == pytest.approx(float(eigenvalues.sum()), rel=1e-10)
    facts = landscape.facts()
    assert facts["minimum_zero_modes"] == zero_modes
    assert facts["minimum_lambda_min_nonzero"] == pytest.approx(float(eigenvalues[zero_modes]), rel=1e-9)
    # The population Hessian at U* (autograd of the test loss) against the stated spectrum.
    population = torch.autograd.functional.hessian(lambda z: landscape.test_loss(z[None])[0], minimum.point)
    population = torch.linalg.eigvalsh(population)
    s = facts["truth_singular_values"]
    stated = sorted(
        [0.0] * zero_modes + [s[0] ** 2 + s[1] ** 2] + [2 * v * v for v in s] + [v * v for v in s for _ in range(d - r)]
    )
    np.testing.assert_allclose(population.numpy(), stated, atol=1e-10)
    assert facts["population_minimum_lambda_max"] == pytest.approx(stated[-1])
    assert facts["population_minimum_lambda_min_nonzero"] == pytest.approx(stated[zero_modes])


def test_large_instances_leave_the_dense_hessian_out() -> None:
    landscape = landbench.make("matrix_sensing(dim=101, rank=4, measurements=2)")
    assert landscape.minima[0].lambda_max is None and landscape.facts()["minimum_lambda_min_nonzero"] is None


def test_the_saddle_at_the_origin() -> None:
    landscape = make()
    r, m = landscape.rank, landscape.examples
    saddle = landscape.saddle
    origin = torch.zeros(1, landscape.dim, dtype=torch.float64)
    loss, grad = landscape.loss_and_grad(origin)
    assert float(grad.abs().max()) == 0.0
    y = landscape.labels.numpy()
    assert saddle.value == pytest.approx(float(loss)) == pytest.approx(float(np.mean(y**2) / 4))
    # Hessian at 0 = -(I_r (x) S), S = (1/m) sum y_i A_i (numpy), against autograd's dense Hessian.
    sample = np.einsum("m,mij->ij", y, landscape.sensing_matrices().numpy()) / m
    hessian = dense_hessian(landscape, origin[0]).numpy()
    np.testing.assert_allclose(hessian, -np.kron(sample, np.eye(r)), atol=1e-12)  # x[i r + k] = U[i, k]
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert saddle.index == int((eigenvalues < -1e-10).sum()) == r * int((np.linalg.eigvalsh(sample) > 0).sum())
    assert saddle.index >= r * r
    assert saddle.lambda_min == pytest.approx(eigenvalues.min())
    assert saddle.lambda_max == pytest.approx(eigenvalues.max())
    assert saddle.trace == pytest.approx(eigenvalues.sum())
    # In population: Hessian -(I_r (x) M*), index r^2, lambda_min = -s_max^2, value |M*|_F^2 / 4.
    population = torch.autograd.functional.hessian(lambda z: landscape.test_loss(z[None])[0], origin[0])
    population = np.linalg.eigvalsh(population.numpy())
    facts = landscape.facts()
    assert int((population < -1e-10).sum()) == facts["population_saddle_index"] == r * r
    assert facts["population_saddle_lambda_min"] == pytest.approx(population.min())
    assert facts["population_saddle_value"] == pytest.approx(float(landscape.test_loss(origin)))
    assert landscape.escape_thresholds == [pytest.approx(saddle.value / 2)]


def descend(landscape: MatrixSensing, seeds: range, lr: float, steps: int) -> torch.Tensor:
    x = landscape.sample_start(seeds)
    for _ in range(steps):
        x -= lr * landscape.loss_and_grad(x)[1]
    return x


def test_gradient_descent_from_small_random_starts_recovers_the_truth_with_ample_measurements() -> None:
    """m = 10 d r: no spurious local minima, strict saddles (BNS 2016; GJZ 2017): every run reaches f < 1e-6."""
    landscape = make("matrix_sensing(dim=6, rank=2, measurements=120)", seed=1)
    starts = landscape.sample_start(range(16))
    torch.testing.assert_close(starts.norm(dim=1), torch.full((16,), 1e-3, dtype=torch.float64))
    x = descend(landscape, range(16), lr=0.1, steps=600)
    assert float(landscape.loss(x).max()) < 1e-6
    assert float(landscape.test_loss(x).max()) < 1e-5
    assert float(landscape.recovery_error(x).max()) < 1e-3


def test_too_few_measurements_interpolate_without_recovering() -> None:
    """m = 12 < d r - r(r-1)/2 = 27: the training loss reaches ~0 but U U^T is not M* (overfitting)."""
    landscape = make("matrix_sensing(dim=10, rank=3, measurements=12)", seed=2)
    assert landscape.facts()["degrees_of_freedom"] == 27
    x = descend(landscape, range(4), lr=0.05, steps=2000)
    origin = torch.zeros(1, landscape.dim, dtype=torch.float64)
    assert float(landscape.loss(x).max()) < 1e-6
    assert float(landscape.test_loss(x).min()) > 0.1 * float(landscape.test_loss(origin))


def test_footprint_counts_the_sensing_matrices() -> None:
    spec = {"dim": 30, "rank": 3, "measurements": 500}
    built = landbench.make("matrix_sensing(dim=30, rank=3, measurements=500)")
    estimate = MatrixSensing.footprint(torch.float32, 2**34, **spec)
    assert built.tensor_bytes() <= estimate.instance <= 3 * built.tensor_bytes()
    assert estimate.host >= 500 * 30 * 31 // 2 * 8


def test_a_short_engine_run_escapes_the_origin() -> None:
    records = landbench.run(
        "matrix_sensing(dim=5, rank=2, measurements=40)", "sgd(lr=0.1)", seeds=4, steps=400, dtype="float64"
    )
    assert all(r["final_loss"] < 1e-6 for r in records)
