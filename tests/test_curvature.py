"""Curvature metrics against independent answers: dense eigensolvers, exact traces, closed forms."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.optimize
import torch

import landbench
from landbench.errors import LandbenchError
from landbench.landscapes import make
from landbench.landscapes.base import Landscape
from landbench.landscapes.classical import StyblinskiTang
from landbench.landscapes.pspin import PSpin
from landbench.landscapes.saddle import Saddle
from landbench.metrics import curvature
from landbench.metrics.curvature import basin_width, curvature_metrics, hessian_trace, needs_float64, sharpness

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


def test_a_run_that_breaks_down_leaves_the_batch_without_changing_the_others() -> None:
    # f = sum a_i x_i^4 / 12: H = diag(a_i x_i^2), 0 at the origin (breakdown at the first step),
    # 100 distinct eigenvalues elsewhere (no breakdown in 32 steps of the three-term recurrence).
    a = torch.linspace(1.0, 2.0, 100, dtype=torch.float64)
    landscape = FunctionLandscape(lambda x: (a * x**4).sum(1) / 12, dim=100)
    x = random_points(4, 100, seed=12)
    x[1] = 0.0
    seeds = [0, 1, 2, 3]
    batched = sharpness(landscape, x, seeds)
    alone = torch.cat([sharpness(landscape, x[b : b + 1], [seeds[b]]) for b in range(4)])
    torch.testing.assert_close(batched, alone, rtol=1e-12, atol=1e-12)
    assert batched[1] == 0.0
    top = (a * x**2).amax(1)
    assert torch.all((batched[[0, 2, 3]] <= top[[0, 2, 3]] * (1 + 1e-12)) & (batched[[0, 2, 3]] > 0.9 * top[[0, 2, 3]]))


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


def test_trace_signs_are_the_bits_of_each_runs_bytes() -> None:
    # bit i of byte k is entry 8k + i: set -> -1, clear -> +1; a dimension not a multiple of 8 is cut
    signs = curvature._unpack_signs(torch.tensor([[[0b00000001, 0b10000010]]], dtype=torch.uint8), 13, torch.float32)
    expected = [-1, 1, 1, 1, 1, 1, 1, 1, 1, -1, 1, 1, 1]
    assert signs.tolist() == [expected]


@pytest.mark.parametrize("batch_elements", [1, 2 * 17 * 4, 2**17], ids=["one-probe-a-call", "chunks", "all-at-once"])
def test_trace_does_not_depend_on_how_probes_are_batched(monkeypatch: pytest.MonkeyPatch, batch_elements: int) -> None:
    matrix = symmetric_with_spectrum(np.linspace(-1.0, 4.0, 17), seed=11)
    x, seeds = random_points(4, 17), [3, 1, 4, 1]
    reference = hessian_trace(MatrixQuadratic(matrix), x, seeds, probes=7)
    monkeypatch.setattr(curvature, "_PROBE_BATCH_ELEMENTS", batch_elements)
    value = hessian_trace(MatrixQuadratic(matrix), x, seeds, probes=7)
    torch.testing.assert_close(value, reference, rtol=1e-12, atol=1e-12)
    diagonal = np.linspace(-2.0, 5.0, 17)  # and still exact where H is diagonal, in float32 too
    value = hessian_trace(DiagonalQuadratic(diagonal, dtype=torch.float32), x.float(), seeds, probes=7)
    np.testing.assert_allclose(value.numpy(), diagonal.sum(), rtol=1e-6)


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


def rise_search_by_brute_force(f: Callable[[float], float], x0: float, tau: float) -> float:
    """The documented basin width of a 1-d ``f`` at ``x0`` (the one direction is +-1), found
    independently: r0 from ``f''(x0)`` by finite differences, the walk on the grid ``r0 * 2**i``
    from r0, and the crossing inside the bracket from a fine grid refined by brentq (asserted
    to be the only one there)."""

    def g(r: float) -> float:
        return (f(x0 + r) + f(x0 - r)) / 2 - f(x0)

    h = 1e-4
    c = (f(x0 + h) - 2 * f(x0) + f(x0 - h)) / h**2
    r0 = math.sqrt(2 * tau / c) if c > 0 else 1.0
    if g(r0) >= tau:
        i = 0
        while g(r0 * 2.0 ** (i - 1)) >= tau:
            i -= 1
            if i == -12:
                return r0 * 2.0**-12
        lo, hi = r0 * 2.0 ** (i - 1), r0 * 2.0**i
    else:
        i = 0
        while g(r0 * 2.0 ** (i + 1)) < tau:
            i += 1
            if i == 12:
                return math.inf
        lo, hi = r0 * 2.0**i, r0 * 2.0 ** (i + 1)
    radii = np.geomspace(lo, hi, 20001)
    above = np.array([g(r) >= tau for r in radii])
    ups = np.flatnonzero(~above[:-1] & above[1:])
    assert len(ups) == 1 and not np.any(above[:-1] & ~above[1:]), "the test wants one crossing in the bracket"
    return scipy.optimize.brentq(lambda r: g(r) - tau, radii[ups[0]], radii[ups[0] + 1], xtol=1e-15, rtol=1e-14)


def wavy(x: float) -> float:
    return x * x / 100 + 1 - math.cos(2 * math.pi * x)


def bumpy(x: float) -> float:
    # f''(0) = 1, so r0 = 1 for tau = 0.5; a bump of height 1.5/e >= tau near |x| = 2**-6 and zero
    # curvature at 0: the crossing nearest r0 (in [1/2, 1]) is not the smallest crossing (near 2**-6).
    u = (x * 64) ** 4
    return 0.5 * x * x + 0.1 * x**4 + 1.5 * u * math.exp(-u)


@pytest.mark.parametrize(
    "f, torch_f, x0, tau",
    [
        (wavy, lambda x: x * x / 100 + 1 - torch.cos(2 * math.pi * x), 0.0, 0.9),
        (wavy, lambda x: x * x / 100 + 1 - torch.cos(2 * math.pi * x), 0.1, 1.2),
        (wavy, lambda x: x * x / 100 + 1 - torch.cos(2 * math.pi * x), 0.45, 0.1),  # f'' < 0: r0 = 1, g < 0 first
        (wavy, lambda x: x * x / 100 + 1 - torch.cos(2 * math.pi * x), 0.3, 0.6),  # walks up past bumps to [4, 8]
        (bumpy, lambda x: 0.5 * x * x + 0.1 * x**4 + 1.5 * (x * 64) ** 4 * torch.exp(-((x * 64) ** 4)), 0.0, 0.5),
    ],
    ids=["wavy-up", "wavy-off-centre", "wavy-near-a-maximum", "wavy-far", "bump-below-r0"],
)
def test_basin_width_is_the_crossing_nearest_r0_on_a_non_monotone_rise(
    f: Callable[[float], float], torch_f: Callable[[torch.Tensor], torch.Tensor], x0: float, tau: float
) -> None:
    expected = rise_search_by_brute_force(f, x0, tau)
    landscape = FunctionLandscape(lambda x: torch_f(x).sum(1), dim=1)
    value = basin_width(landscape, torch.full((1, 1), x0, dtype=torch.float64), [0], tau=tau)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-7)


def test_basin_width_ignores_a_crossing_below_r0_when_g_reaches_tau_at_r0() -> None:
    landscape = FunctionLandscape(
        lambda x: (0.5 * x * x + 0.1 * x**4 + 1.5 * (x * 64) ** 4 * torch.exp(-((x * 64) ** 4))).sum(1), dim=1
    )
    value = basin_width(landscape, torch.zeros(1, 1, dtype=torch.float64), [0], tau=0.5).item()
    assert value == pytest.approx(math.sqrt((-0.5 + math.sqrt(0.25 + 0.2)) / 0.2), rel=1e-7)  # 0.5 r^2 + 0.1 r^4 = tau


def test_basin_width_search_uses_few_loss_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a quadratic g(r0) = tau: one evaluation at r0, one grid step, then one or two refinements.
    calls: list[int] = []
    original = curvature._RiseAlongDirections.__call__

    def counted(
        self: curvature._RiseAlongDirections, radius: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        calls.append(len(radius))
        return original(self, radius, rows)

    monkeypatch.setattr(curvature._RiseAlongDirections, "__call__", counted)
    diagonal = np.linspace(1.0, 3.0, 50)
    value = basin_width(
        DiagonalQuadratic(diagonal), random_points(16, 50, scale=0.1), list(range(16)), tau=0.1, probes=8
    )
    assert torch.isfinite(value).all()
    assert len(calls) <= 5


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
    with pytest.raises(LandbenchError, match="shape"):
        curvature_metrics(landscape, torch.zeros(2, 3), [0, 1])
    with pytest.raises(LandbenchError, match="tau"):
        curvature_metrics(landscape, x, [0, 1], tau=-1.0)
    with pytest.raises(LandbenchError, match="seed"):
        curvature_metrics(landscape.astype(torch.float32), x, [0])


# --- as recorded -------------------------------------------------------------------------------


def test_curvature_metrics_is_the_three_metrics() -> None:
    saddle = Saddle(dim=12, index=3, gamma=1.0, mu=2.0, quartic=1.0, rotate=True, dtype=torch.float32)
    x, seeds = random_points(3, 12, seed=13).float(), [0, 1, 2]
    values = curvature_metrics(saddle, x, seeds, iterations=6, probes=5, tau=0.2, basin_probes=3)
    assert list(values) == ["sharpness", "hessian_trace", "basin_width"]
    assert not needs_float64(saddle, x, tau=0.2).any()  # |f| ~ 1: float32 resolves tau
    for name, metric in METRICS.items():
        torch.testing.assert_close(values[name], metric(saddle, x, seeds), rtol=0, atol=0)


def styblinski_tang_rows(dim: int) -> torch.Tensor:
    """Rows at the minimum (|f| = 39.17 dim), at 0 (f = 0) and at the minimum shifted by 0.1 in one
    coordinate, in float32."""
    minimum = torch.full((dim,), -2.903534027771178)
    shifted = minimum.clone()
    shifted[0] += 0.1
    return torch.stack([minimum, torch.zeros(dim), shifted])


def test_the_twin_rule_on_styblinski_tang() -> None:
    landscape = StyblinskiTang(dim=1000)  # float32; |f| = 39166 at the minimum
    x = styblinski_tang_rows(1000)
    limit = 0.1 * 2.0**-15 / torch.finfo(torch.float32).eps  # |f| above which float32 cannot resolve tau
    assert needs_float64(landscape, x, tau=0.1).tolist() == [True, False, True]
    assert needs_float64(landscape, x, tau=39166.0 / limit * 0.1 * 1.01).tolist() == [False, False, False]
    assert not needs_float64(landscape.astype(torch.float64), x, tau=0.1).any()
    assert needs_float64(StyblinskiTang(dim=1), torch.full((1, 1), -2.903534027771178), tau=0.1).tolist() == [True]
    x[2, 1] = math.nan
    assert needs_float64(landscape, x, tau=0.1).tolist() == [True, False, False]  # a non-finite row: no twin


def test_the_twin_gives_the_float64_width_where_float32_cannot_resolve_tau() -> None:
    dim, seeds = 2000, [0, 2]
    landscape = StyblinskiTang(dim=dim)  # eps * |f| = 0.009 at the minimum: 9 % of tau in float32
    x = styblinski_tang_rows(dim)[[0, 2]]
    recorded = curvature_metrics(landscape, x, seeds, iterations=2, probes=1)["basin_width"]
    precise = basin_width(landscape.astype(torch.float64), x.double(), seeds)
    np.testing.assert_allclose(recorded.numpy(), precise.numpy(), rtol=1e-6)
    # every coordinate is a well of curvature 6 x^2 - 16 = 34.58 at the minimum
    np.testing.assert_allclose(recorded[0].item(), math.sqrt(2 * 0.1 / 34.58), rtol=0.01)


def test_a_recorded_run_does_not_depend_on_its_batch() -> None:
    # rows that need the twin and rows that do not, alone and in a batch of five
    landscape = StyblinskiTang(dim=20)
    base = styblinski_tang_rows(20)
    x = torch.cat([base, base[:2] + 0.01])
    seeds = [4, 0, 3, 1, 2]
    assert needs_float64(landscape, x).tolist() == [True, False, True, True, False]
    batched = curvature_metrics(landscape, x, seeds, iterations=8, probes=4)
    for b in range(5):
        alone = curvature_metrics(landscape, x[b : b + 1], [seeds[b]], iterations=8, probes=4)
        for name, values in batched.items():
            torch.testing.assert_close(values[b : b + 1], alone[name], rtol=1e-12, atol=1e-12, msg=f"{name} row {b}")


def test_curvature_metrics_on_the_sphere() -> None:
    # The 2-spin at its ground state +-sqrt(N) v_min: Riemannian Hessian eigenvalues 2 (lambda_k - lambda_min) / N
    # on the tangent space; probes, Lanczos vectors and basin directions stay tangent, points are retracted.
    n = 24
    landscape = PSpin(dim=n, p=2, dtype=torch.float64, seed=3)
    j = landscape.couplings(2).numpy()
    eigenvalues = np.linalg.eigvalsh((j + j.T) / (2 * math.sqrt(n)))
    x = torch.stack([landscape.minima[0].point, -landscape.minima[0].point]).to(torch.float64)
    values = curvature_metrics(landscape, x, [0, 1], iterations=n, probes=64)
    np.testing.assert_allclose(values["sharpness"].numpy(), 2 * (eigenvalues[-1] - eigenvalues[0]) / n, rtol=1e-8)
    gaps = 2 * (eigenvalues[1:] - eigenvalues[0]) / n
    sigma = math.sqrt(2 * np.sum(gaps**2) / 64)  # at most: the off-diagonal part of the tangent Hessian
    assert np.all(np.abs(values["hessian_trace"].numpy() - gaps.sum()) < 5 * sigma)
    assert torch.all(torch.isfinite(values["basin_width"]) & (values["basin_width"] > 0))
    single = landscape.astype(torch.float32)
    assert not needs_float64(single, x).any()  # |H/N| ~ 1
    torch.testing.assert_close(
        curvature_metrics(single, x, [0, 1])["basin_width"], basin_width(single, x, [0, 1]), rtol=0, atol=0
    )


def test_a_small_start_component_along_the_top_eigenvector_is_not_a_breakdown() -> None:
    """At the saddle family's minima H has two eigenvalues, 2 (once) and 1; a Gaussian start has a
    component of about 1/sqrt(d) along the top one (3e-3 at d = 1e5), which a breakdown threshold of
    sqrt(eps32) = 3e-4 took for an invariant subspace in about one run in six, reporting 1."""
    landscape = make("saddle(dim=100000, index=1)", dtype="float32")
    minimum = landscape.minima[0]
    point = torch.as_tensor(minimum.x if hasattr(minimum, "x") else minimum.point, dtype=torch.float32)
    x = point.reshape(1, -1).expand(16, -1).contiguous()
    assert sharpness(landscape, x, list(range(16))).tolist() == pytest.approx([2.0] * 16, rel=1e-5)


def test_a_width_that_even_float64_cannot_resolve_is_nan_not_noise() -> None:
    """Two steps of SGD at lr 0.01 from Rosenbrock's box leave losses of 1e14 to 1e22, finite: a rise
    of 0.1 is below their float64 resolution, so the width is NaN (it was noise from 1e-10 to inf,
    four decades apart between dtypes)."""
    for dtype in ("float32", "float64"):
        records = landbench.run("rosenbrock(dim=3)", "sgd(lr=0.01)", seeds=6, steps=2, dtype=dtype)
        huge = [r for r in records if r["final_loss"] > 1e10]
        assert len(huge) == 5 and not any(r["diverged"] for r in records)
        assert all(r["basin_width"] is None and r["sharpness"] is not None for r in huge)  # NaN: null
        (resolved,) = [r for r in records if r["final_loss"] < 1e10]  # 4.2e6: float64 resolves 0.1
        assert 0 < resolved["basin_width"] < 1
