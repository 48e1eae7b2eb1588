"""Curvature metrics against independent answers: dense eigensolvers, exact traces, closed forms."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.optimize
import torch

from landbench.errors import LandbenchError
from landbench.landscapes.base import Landscape
from landbench.landscapes.saddle import Saddle
from landbench.metrics import curvature
from landbench.metrics.curvature import basin_width, hessian_trace, sharpness

# --- test landscapes ------------------------------------------------------------------------


class MatrixQuadratic(Landscape):
    """``f(x) = 1/2 x^T A x`` for a given symmetric matrix A; the base class's autograd hvp."""

    family = "test_matrix_quadratic"

    def __init__(self, matrix: np.ndarray, dtype: torch.dtype = torch.float64) -> None:
        self.matrix64 = torch.as_tensor(matrix, dtype=torch.float64)
        super().__init__(dim=self.matrix64.shape[0], dtype=dtype)

    def _build(self) -> None:
        self.matrix = self._tensor(self.matrix64)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ self.matrix) * x).sum(1)


class DiagonalQuadratic(Landscape):
    """``f(x) = 1/2 sum_i h_i x_i^2`` with a closed-form hvp (cheap in high dimension)."""

    family = "test_diagonal_quadratic"

    def __init__(self, diagonal: np.ndarray, dtype: torch.dtype = torch.float64) -> None:
        self.diagonal64 = torch.as_tensor(diagonal, dtype=torch.float64)
        super().__init__(dim=self.diagonal64.numel(), dtype=dtype)

    def _build(self) -> None:
        self.diagonal = self._tensor(self.diagonal64)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.diagonal * x * x).sum(1)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.diagonal * v


class FunctionLandscape(Landscape):
    """Any batched ``f: (B, d) -> (B,)``; autograd hvp."""

    family = "test_function"

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], dim: int) -> None:
        self.function = function
        super().__init__(dim=dim, dtype=torch.float64)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


class Kink(Landscape):
    """``f(x) = sum_i |x_i|``, whose Hessian is 0 (taken as 0 at the kink too)."""

    family = "test_kink"

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().sum(1)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(v)


def symmetric_with_spectrum(eigenvalues: list[float] | np.ndarray, seed: int) -> np.ndarray:
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal Q: a dense matrix of known spectrum."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((eigenvalues.size, eigenvalues.size)))
    matrix = (q * eigenvalues) @ q.T
    return 0.5 * (matrix + matrix.T)


def random_points(batch: int, dim: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.as_tensor(np.random.default_rng(seed).standard_normal((batch, dim)))


@pytest.fixture(params=["reorthogonalised", "three-term"])
def lanczos_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a sharpness test with full reorthogonalisation and with the plain recurrence."""
    if request.param == "three-term":
        monkeypatch.setattr(curvature, "_REORTH_MAX_ELEMENTS", 0)
    return request.param


# --- sharpness --------------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [32, 40])
def test_sharpness_matches_dense_eigvalsh(lanczos_mode: str, iterations: int) -> None:
    eigenvalues = np.concatenate([np.linspace(-9.0, 3.0, 39), [5.0]])
    matrix = symmetric_with_spectrum(eigenvalues, seed=1)
    expected = np.linalg.eigvalsh(matrix)[-1]
    value = sharpness(MatrixQuadratic(matrix), random_points(3, 40), [0, 1, 2], iterations=iterations)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-8)


@pytest.mark.parametrize("rotate", [False, True])
def test_sharpness_is_largest_algebraic_not_largest_magnitude(lanczos_mode: str, rotate: bool) -> None:
    saddle = Saddle(dim=30, index=3, gamma=5.0, mu=1.0, quartic=1.0, rotate=rotate, dtype=torch.float64)
    value = sharpness(saddle, torch.zeros(2, 30, dtype=torch.float64), [4, 5])
    np.testing.assert_allclose(value.numpy(), 1.0, rtol=1e-10)  # eigenvalues -5 (x3) and 1 (x27)

    matrix = symmetric_with_spectrum([-10.0, -7.0, -4.0, 0.5, 1.0, 2.0], seed=2)
    value = sharpness(MatrixQuadratic(matrix), random_points(1, 6), [0])
    np.testing.assert_allclose(value.numpy(), 2.0, rtol=1e-10)


@pytest.mark.parametrize(
    "matrix",
    [
        np.array([[-3.0]]),
        np.array([[2.5]]),
        np.array([[2.0, 1.0], [1.0, -1.0]]),
        symmetric_with_spectrum([-4.0, -1.0, 0.0, 0.3, 0.7], seed=3),
    ],
    ids=["d1-negative", "d1-positive", "d2", "d5"],
)
def test_sharpness_when_dimension_is_below_iterations(lanczos_mode: str, matrix: np.ndarray) -> None:
    expected = np.linalg.eigvalsh(matrix)[-1]
    dim = matrix.shape[0]
    value = sharpness(MatrixQuadratic(matrix), random_points(2, dim), [0, 1], iterations=32)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", [2.5, -1.5])
def test_sharpness_of_a_multiple_of_the_identity(lanczos_mode: str, c: float) -> None:
    # Breakdown after one step: the padding of T must not push the answer above c (e.g. to 0).
    landscape = DiagonalQuadratic(np.full(10, c))
    value = sharpness(landscape, random_points(3, 10), [0, 1, 2])
    np.testing.assert_allclose(value.numpy(), c, rtol=1e-12)


def test_sharpness_at_the_saddle_minimum_with_three_distinct_eigenvalues(lanczos_mode: str) -> None:
    for gamma, expected in [(0.3, 1.0), (2.0, 4.0)]:  # eigenvalues 2 gamma, 0 (x2), mu=1 (x5)
        saddle = Saddle(dim=8, index=3, gamma=gamma, mu=1.0, quartic=1.0, rotate=False, dtype=torch.float64)
        minimum = torch.zeros(1, 8, dtype=torch.float64)
        minimum[0, 0] = math.sqrt(gamma)
        np.testing.assert_allclose(sharpness(saddle, minimum, [0]).numpy(), expected, rtol=1e-10)


def test_sharpness_per_run_against_autograd_hessians(lanczos_mode: str) -> None:
    saddle = Saddle(dim=8, index=2, gamma=1.5, mu=0.7, quartic=2.0, rotate=True, dtype=torch.float64)
    x = torch.cat([torch.zeros(1, 8, dtype=torch.float64), random_points(3, 8, seed=4)])
    expected = [
        np.linalg.eigvalsh(torch.autograd.functional.hessian(lambda p: saddle.loss(p[None])[0], row).numpy())[-1]
        for row in x
    ]
    value = sharpness(saddle, x, [0, 1, 2, 3], iterations=8)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-9)
    assert value[0] == pytest.approx(0.7, rel=1e-10)  # mu at the saddle


def test_sharpness_float32() -> None:
    matrix = symmetric_with_spectrum(np.linspace(-6.0, 4.0, 20), seed=5)
    value = sharpness(MatrixQuadratic(matrix, dtype=torch.float32), random_points(2, 20).float(), [0, 1])
    assert value.dtype == torch.float64
    np.testing.assert_allclose(value.numpy(), 4.0, rtol=1e-4)


def test_sharpness_float32_three_term_in_high_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    # A two-dimensional Krylov space (eigenvalues -2 and 1) in d = 1e5: float32 vector arithmetic
    # would lose it to rounding (d * eps ~ 1e-2) and report ghosts above 1.
    monkeypatch.setattr(curvature, "_REORTH_MAX_ELEMENTS", 0)
    saddle = Saddle(dim=100_000, index=1, gamma=2.0, mu=1.0, quartic=1.0, dtype=torch.float32)
    value = sharpness(saddle, torch.zeros(4, 100_000), [0, 1, 2, 3])
    np.testing.assert_allclose(value.numpy(), 1.0, rtol=1e-6)


# --- Hessian trace ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_trace_is_exact_for_a_diagonal_hessian(dtype: torch.dtype, rtol: float) -> None:
    diagonal = np.linspace(-2.0, 5.0, 17)
    value = hessian_trace(DiagonalQuadratic(diagonal, dtype=dtype), random_points(3, 17).to(dtype), [0, 1, 2], probes=3)
    np.testing.assert_allclose(value.numpy(), diagonal.sum(), rtol=rtol)


def test_trace_per_run_at_the_saddle_and_the_minimum() -> None:
    gamma, mu, dim, index = 1.5, 0.5, 10, 3
    saddle = Saddle(dim=dim, index=index, gamma=gamma, mu=mu, quartic=1.0, rotate=False, dtype=torch.float64)
    x = torch.zeros(2, dim, dtype=torch.float64)
    x[1, 0] = math.sqrt(gamma)  # a minimum: Hessian diag(2 gamma, 0, 0, mu, ...)
    value = hessian_trace(saddle, x, [0, 1], probes=4)
    expected = [-index * gamma + (dim - index) * mu, 2 * gamma + (dim - index) * mu]
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12)


def test_trace_within_statistical_tolerance_on_a_dense_hessian() -> None:
    matrix = symmetric_with_spectrum(np.linspace(-1.0, 4.0, 30), seed=6)
    probes, runs = 64, 16
    # Rademacher probes: Var(z^T A z) = 2 sum_{i != j} A_ij^2.
    sigma = math.sqrt(2 * (np.sum(matrix**2) - np.sum(np.diag(matrix) ** 2)) / probes)
    value = hessian_trace(MatrixQuadratic(matrix), random_points(runs, 30), list(range(runs)), probes=probes)
    exact = np.trace(matrix)
    assert np.all(np.abs(value.numpy() - exact) < 5 * sigma)
    assert abs(value.mean().item() - exact) < 5 * sigma / math.sqrt(runs)


# --- basin width ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "eigenvalues", [[0.5, 1.0, 2.0, 3.0, 4.0, 7.0], [-1.0, 0.5, 1.0, 2.0, 3.0, 6.0]], ids=["spd", "indefinite"]
)
@pytest.mark.parametrize("tau", [0.1, 0.37])
def test_basin_width_exact_with_a_full_orthonormal_basis(eigenvalues: list[float], tau: float) -> None:
    matrix = symmetric_with_spectrum(eigenvalues, seed=7)
    x = random_points(3, 6, seed=8)  # not stationary: the antithetic pairs cancel the linear term
    value = basin_width(MatrixQuadratic(matrix), x, [0, 1, 2], tau=tau, probes=8)
    np.testing.assert_allclose(value.numpy(), math.sqrt(2 * tau * 6 / np.trace(matrix)), rtol=1e-6)


@pytest.mark.parametrize("dim", [2000, 5000], ids=["orthonormal", "gaussian"])
def test_basin_width_concentrates_in_high_dimension(dim: int) -> None:
    diagonal = np.linspace(1.0, 3.0, dim)  # v^T H v has relative spread ~ 0.3 sqrt(2/d) per probe
    value = basin_width(DiagonalQuadratic(diagonal), random_points(2, dim, scale=0.1), [0, 1], tau=0.1, probes=8)
    np.testing.assert_allclose(value.numpy(), math.sqrt(2 * 0.1 * dim / diagonal.sum()), rtol=0.02)


def test_basin_width_takes_the_first_crossing_of_a_non_monotone_rise() -> None:
    # f(x) = x^2/100 + 1 - cos(2 pi x) at 0: g(r) = f(r) rises above 1.5 near r = 1/3, falls below
    # it again after r = 2/3 and crosses it again after r = 4/3: the answer is the first crossing.
    def rise(r: float) -> float:
        return r * r / 100 + 1 - math.cos(2 * math.pi * r)

    landscape = FunctionLandscape(lambda x: (x * x / 100 + 1 - torch.cos(2 * math.pi * x)).sum(1), dim=1)
    expected = scipy.optimize.brentq(lambda r: rise(r) - 1.5, 0.0, 0.5, xtol=1e-14)
    value = basin_width(landscape, torch.zeros(1, 1, dtype=torch.float64), [0], tau=1.5)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-7)


@pytest.mark.parametrize("tau", [0.05, 0.8, 5.0])
def test_basin_width_of_the_double_well(tau: float) -> None:
    # f = (x^2 - 1)^2 at the minimum x = 1: g(r) = 4 r^2 + r^4, so r^2 = sqrt(4 + tau) - 2.
    landscape = FunctionLandscape(lambda x: ((x * x - 1) ** 2).sum(1), dim=1)
    value = basin_width(landscape, torch.ones(1, 1, dtype=torch.float64), [3], tau=tau)
    np.testing.assert_allclose(value.numpy(), math.sqrt(math.sqrt(4 + tau) - 2), rtol=1e-7)


def test_basin_width_is_infinite_when_the_rise_never_reaches_tau() -> None:
    landscape = FunctionLandscape(lambda x: 1 - torch.exp(-(x * x).sum(1)), dim=3)  # g < 1 everywhere
    value = basin_width(landscape, torch.zeros(2, 3, dtype=torch.float64), [0, 1], tau=2.0)
    assert torch.isinf(value).all() and (value > 0).all()


def test_basin_width_at_a_kink_uses_the_unit_start_radius() -> None:
    # f = |x| has zero hvp at 0, so r0 = 1; g(r) = r crosses tau at r = tau, and a tau below the
    # smallest scan radius 2**-12 returns that radius.
    landscape = Kink(dim=1, dtype=torch.float64)
    origin = torch.zeros(1, 1, dtype=torch.float64)
    np.testing.assert_allclose(basin_width(landscape, origin, [0], tau=0.1).numpy(), 0.1, rtol=1e-8)
    np.testing.assert_allclose(basin_width(landscape, origin, [0], tau=1e-5).numpy(), 2.0**-12, rtol=1e-12)


def test_basin_width_float32() -> None:
    diagonal = np.array([1.0, 2.0, 4.0, 5.0])
    landscape = DiagonalQuadratic(diagonal, dtype=torch.float32)
    value = basin_width(landscape, random_points(2, 4, scale=0.1).float(), [0, 1], tau=0.1, probes=4)
    np.testing.assert_allclose(value.numpy(), math.sqrt(2 * 0.1 * 4 / diagonal.sum()), rtol=1e-3)


# --- all three --------------------------------------------------------------------------------

METRICS = {
    "sharpness": lambda landscape, x, seeds: sharpness(landscape, x, seeds, iterations=6),
    "hessian_trace": lambda landscape, x, seeds: hessian_trace(landscape, x, seeds, probes=5),
    "basin_width": lambda landscape, x, seeds: basin_width(landscape, x, seeds, tau=0.2, probes=3),
}


@pytest.mark.parametrize("metric", list(METRICS))
def test_a_run_does_not_depend_on_its_batch(metric: str) -> None:
    saddle = Saddle(dim=12, index=3, gamma=1.0, mu=2.0, quartic=1.0, rotate=True, dtype=torch.float64)
    x, seeds = random_points(4, 12, seed=9), [5, 1, 9, 2]
    batched = METRICS[metric](saddle, x, seeds)
    alone = torch.cat([METRICS[metric](saddle, x[b : b + 1], [seeds[b]]) for b in range(4)])
    torch.testing.assert_close(batched, alone, rtol=1e-12, atol=1e-12)
    repeated = METRICS[metric](saddle, x[[0, 0]], [seeds[0], 7])  # same point, another run seed
    # equal to rounding: BLAS may block a (2, d) product differently from a (4, d) one (seen: 7e-15),
    # while another seed's probes would change the value at the first digit
    torch.testing.assert_close(batched[0], repeated[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("metric", list(METRICS))
def test_non_finite_rows_give_nan(metric: str) -> None:
    landscape = DiagonalQuadratic(np.array([1.0, 2.0, 3.0]))
    x = random_points(4, 3, seed=10)
    x[1, 0], x[3, 2] = math.nan, math.inf
    value = METRICS[metric](landscape, x, [0, 1, 2, 3])
    assert torch.isnan(value[[1, 3]]).all() and torch.isfinite(value[[0, 2]]).all()
    torch.testing.assert_close(value[[0, 2]], METRICS[metric](landscape, x[[0, 2]], [0, 2]), rtol=1e-12, atol=0)


def test_bad_arguments_are_rejected() -> None:
    landscape = DiagonalQuadratic(np.array([1.0, 2.0]))
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(LandbenchError, match="seed"):
        sharpness(landscape, x, [0])
    with pytest.raises(LandbenchError, match="iterations"):
        sharpness(landscape, x, [0, 1], iterations=0)
    with pytest.raises(LandbenchError, match="tau"):
        basin_width(landscape, x, [0, 1], tau=0.0)
    with pytest.raises(LandbenchError, match="shape"):
        hessian_trace(landscape, torch.zeros(2, 3), [0, 1])
