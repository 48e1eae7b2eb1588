"""The ring valley against independent computations: dense autograd Hessians at the documented
critical points, grid scans and scipy minimisations for the barriers, autograd and finite
differences for the closed forms, the start sector for the mode GD ends in."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize
import scipy.stats
import torch
from reference import dense_hessian

import landbench
from landbench.errors import SpecError
from landbench.landscapes.base import Landscape
from landbench.landscapes.valley import Valley
from landbench.mode_connectivity import connectivity

# A non-default instance: every parameter enters the formulas checked below.
PARAMS = {"modes": 5, "radius": 1.5, "radial": 4.0, "ring_barrier": 0.3, "confinement": 2.0}


def _valley(dim: int = 6, rotate: bool = False, **overrides: float) -> Valley:
    return Valley(dim=dim, rotate=rotate, dtype=torch.float64, **{**PARAMS, **overrides})


def _plane_basis(landscape: Valley) -> tuple[torch.Tensor, torch.Tensor]:
    """An orthonormal basis (q1, q2) of the ring's plane, oriented by theta, recovered from the
    documented points alone: mode 0 at theta = 0 and the first ring saddle at theta = pi/m."""
    q1 = landscape.minimum(0).point / landscape.radius
    saddle = landscape.ring_saddle(0).point
    q2 = saddle - (saddle @ q1) * q1
    return q1, q2 / q2.norm()


def _theta(landscape: Valley, x: torch.Tensor) -> torch.Tensor:
    q1, q2 = _plane_basis(landscape)
    return torch.atan2(x @ q2, x @ q1)


# --- the documented critical points -----------------------------------------------------------


@pytest.mark.parametrize("rotate", [False, True])
def test_every_mode_is_a_stationary_minimum_with_the_documented_hessian(rotate: bool) -> None:
    landscape = _valley(rotate=rotate)
    m, r, a, h, c, d = 5, 1.5, 4.0, 0.3, 2.0, 6
    expected = sorted([2 * a, h * m * m / (2 * r * r)] + [c] * (d - 2))
    q1, q2 = _plane_basis(landscape)
    assert landscape.f_star == 0.0
    for k in range(m):
        point = landscape.minimum(k).point
        theta = 2 * math.pi * k / m
        torch.testing.assert_close(point, r * (math.cos(theta) * q1 + math.sin(theta) * q2), rtol=0, atol=1e-12)
        if not rotate:
            assert float(point[2:].abs().max()) == 0.0 and float(point[:2].norm()) == pytest.approx(r)
        loss, grad = Landscape.loss_and_grad(landscape, point[None])  # the autograd reference
        assert float(loss) == pytest.approx(0.0, abs=1e-14) and float(grad.abs().max()) < 1e-12
        spectrum = torch.linalg.eigvalsh(dense_hessian(landscape, point))
        torch.testing.assert_close(spectrum, torch.tensor(expected, dtype=torch.float64), atol=1e-10, rtol=0)
        known = landscape.minimum(k)
        assert (known.value, known.index) == (0.0, 0)
        assert (known.lambda_max, known.lambda_min) == pytest.approx((max(expected), min(expected)))
        assert known.trace == pytest.approx(sum(expected))
    for known, k in zip(landscape.minima, (0, 1)):  # what `describe` and `landbench connect` see
        torch.testing.assert_close(known.point, landscape.minimum(k).point)


@pytest.mark.parametrize("rotate", [False, True])
def test_ring_saddles_are_stationary_of_index_one_at_value_h(rotate: bool) -> None:
    landscape = _valley(rotate=rotate)
    m, r, a, h, c, d = 5, 1.5, 4.0, 0.3, 2.0, 6
    expected = sorted([2 * a, -h * m * m / (2 * r * r)] + [c] * (d - 2))
    q1, q2 = _plane_basis(landscape)
    for k in range(m):
        point = landscape.ring_saddle(k).point
        theta = (2 * k + 1) * math.pi / m
        torch.testing.assert_close(point, r * (math.cos(theta) * q1 + math.sin(theta) * q2), rtol=0, atol=1e-12)
        loss, grad = Landscape.loss_and_grad(landscape, point[None])
        assert float(loss) == pytest.approx(h, abs=1e-14) and float(grad.abs().max()) < 1e-12
        spectrum = torch.linalg.eigvalsh(dense_hessian(landscape, point))
        torch.testing.assert_close(spectrum, torch.tensor(expected, dtype=torch.float64), atol=1e-10, rtol=0)
        assert int((spectrum < 0).sum()) == 1 == landscape.ring_saddle(k).index
        assert landscape.ring_saddle(k).lambda_min == pytest.approx(min(expected))


# --- barriers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("modes", [2, 3, 4, 5, 8])
def test_the_straight_segment_between_neighbours_peaks_at_the_documented_linear_barrier(modes: int) -> None:
    """Grid scan of f along the segment; theory: a R^2 (1 - cos(pi/m))^2 + h at the midpoint for
    m >= 3; for m = 2 the segment passes through the axis, where f = a R^2 and the angular term
    is 0 on both halves."""
    landscape = _valley(rotate=True, modes=modes)
    a, r, h = 4.0, 1.5, 0.3
    theory = a * r * r * (1 - math.cos(math.pi / modes)) ** 2 + (h if modes >= 3 else 0.0)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    for k in (0, modes - 1):  # the last pair wraps round to mode 0
        start, end = landscape.minimum(k).point, landscape.minimum(k + 1).point
        profile = landscape.loss(torch.lerp(start, end, t))
        assert float(profile.max()) == pytest.approx(theory, rel=1e-9)
        assert float(t[profile.argmax()]) == pytest.approx(0.5, abs=1e-4)
    assert landscape.linear_barrier == pytest.approx(theory, rel=1e-12)
    assert landscape.facts()["linear_barrier"] == pytest.approx(theory, rel=1e-12)


@pytest.mark.parametrize("rotate", [False, True])
def test_the_ring_arc_between_neighbours_has_barrier_h(rotate: bool) -> None:
    landscape = _valley(rotate=rotate)
    m, r, h = 5, 1.5, 0.3
    q1, q2 = _plane_basis(landscape)
    theta = torch.linspace(0, 2 * math.pi, 50001, dtype=torch.float64)[:, None]
    profile = landscape.loss(r * (torch.cos(theta) * q1 + torch.sin(theta) * q2))
    arc = theta[:, 0] <= 2 * math.pi / m
    assert float(profile[arc].max()) == pytest.approx(h, rel=1e-9)  # the arc from mode 0 to mode 1
    assert float(profile.max()) == pytest.approx(h, rel=1e-9)  # and every other arc
    assert float(profile.min()) == pytest.approx(0.0, abs=1e-12)
    assert landscape.ring_barrier == h == landscape.facts()["ring_barrier"]


@pytest.mark.parametrize("rotate", [False, True])
def test_no_path_beats_the_ring_the_minimum_over_the_dividing_half_plane_is_h(rotate: bool) -> None:
    """Every path from mode 0 to mode 1 crosses the half-plane theta = pi/m (any x_perp) or the axis
    rho = 0: scipy minimises f over the half-plane from many starts, and f on the axis is >= a R^2."""
    landscape = _valley(rotate=rotate)
    m, r, a, h, d = 5, 1.5, 4.0, 0.3, 6
    q1, q2 = _plane_basis(landscape)
    ray = math.cos(math.pi / m) * q1 + math.sin(math.pi / m) * q2

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        """f at rho * ray + (the part of y across the plane), params = (rho, y); autograd gradient."""
        rho_y = torch.from_numpy(params).requires_grad_(True)
        free = rho_y[1:]
        value = landscape.loss((rho_y[0] * ray + free - (free @ q1) * q1 - (free @ q2) * q2)[None])[0]
        (grad,) = torch.autograd.grad(value, rho_y)
        return float(value.detach()), grad.numpy()

    rng = np.random.default_rng(0)
    best = []
    for rho0 in (0.02, 0.3, 0.6, 0.74, 1.0, 1.4, 2.5, 4.0):
        start = np.concatenate([[rho0], rng.normal(size=d)])
        bounds = [(0.0, 6.0)] + [(None, None)] * d
        result = scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
        best.append(result.fun)
    assert min(best) == pytest.approx(h, abs=1e-9)
    # A fine scan in rho on the plane; x_perp only adds c/2 |x_perp|^2 (checked on random points).
    rho = torch.linspace(0, 4 * r, 40001, dtype=torch.float64)[:, None]
    scan = landscape.loss(rho * ray)
    assert float(scan.min()) == pytest.approx(h, rel=1e-9) and float(rho[scan.argmin()]) == pytest.approx(r, abs=1e-3)
    across = torch.from_numpy(rng.normal(size=(50, d)))
    across -= (across @ q1)[:, None] * q1 + (across @ q2)[:, None] * q2
    shifted = landscape.loss((rho[::800] * ray + across[:, None]).reshape(-1, d)).reshape(50, -1)
    torch.testing.assert_close(shifted, scan[::800] + 0.5 * 2.0 * (across * across).sum(1, keepdim=True))
    # The axis rho = 0: f = a R^2 + c/2 |x|^2 >= a R^2 = 9 > h.
    torch.testing.assert_close(landscape.loss(across), a * r * r + 0.5 * 2.0 * (across * across).sum(1))


def test_the_minimax_path_on_a_grid_of_the_plane_crosses_at_h() -> None:
    """The lowest barrier of any path in the plane (through the centre included), from connected
    components of the sublevel sets {f < level} on a 641 x 641 grid: mode 0 and mode 1 join at h."""
    landscape = _valley(rotate=True)
    r, h = 1.5, 0.3
    q1, q2 = _plane_basis(landscape)
    axis = torch.linspace(-1.6 * r, 1.6 * r, 641, dtype=torch.float64)
    u, v = torch.meshgrid(axis, axis, indexing="ij")
    grid = landscape.loss(u.reshape(-1, 1) * q1 + v.reshape(-1, 1) * q2).reshape(u.shape).numpy()
    step = float(axis[1] - axis[0])

    def joined(level: float) -> bool:
        labels, _ = scipy.ndimage.label(grid < level)
        ends = []
        for k in (0, 1):
            x, y = (landscape.minimum(k).point @ q1, landscape.minimum(k).point @ q2)
            ends.append(labels[round((float(x) + 1.6 * r) / step), round((float(y) + 1.6 * r) / step)])
        return ends[0] != 0 and ends[0] == ends[1]

    # Grid points straddle the saddle: the crossing is within curvature * (step/2)^2 ~ 2e-5 of h.
    assert joined(h + 1e-3) and not joined(h - 1e-3)


def test_a_fitted_bezier_curve_finds_a_low_path_the_straight_segment_does_not() -> None:
    """landbench.mode_connectivity between modes 0 and 1 (what `landbench connect` does): the
    linear profile (101 points, the midpoint among them) reads the documented linear barrier; the
    fitted one-bend curve stays far below it but, as no path can, not below h."""
    landscape = Valley(dim=5, rotate=True, dtype=torch.float64)  # defaults: m = 4, R = 1, a = 10, h = 0.1
    result = connectivity(landscape, landscape.minima[0].point, landscape.minima[1].point)
    assert result.linear.barrier == pytest.approx(10 * (1 - math.cos(math.pi / 4)) ** 2 + 0.1, rel=1e-9)
    assert 0.1 <= result.bezier.barrier < result.linear.barrier / 3


def test_at_the_largest_allowed_barrier_f_still_falls_outwards_everywhere_inside_the_switch() -> None:
    """h = a R^2 / 8 (the bound _check allows): the autograd slope of f along z/rho is negative for
    0 < rho <= R/2 at every theta, so the switch creates no critical point there."""
    landscape = _valley(ring_barrier=4.0 * 1.5**2 / 8)
    rho = torch.linspace(1e-4, 0.75, 300, dtype=torch.float64)
    theta = torch.linspace(0, 2 * math.pi, 181, dtype=torch.float64)
    rho, theta = (g.reshape(-1) for g in torch.meshgrid(rho, theta, indexing="ij"))
    outward = torch.zeros(rho.numel(), 6, dtype=torch.float64)
    outward[:, 0], outward[:, 1] = torch.cos(theta), torch.sin(theta)
    _, grad = Landscape.loss_and_grad(landscape, rho[:, None] * outward)
    assert float((grad * outward).sum(1).max()) < -0.4 * 4.0 * 1.5  # at most -a R + 0.55 a R


# --- closed forms -----------------------------------------------------------------------------


def _probe_points(landscape: Valley, generator: torch.Generator) -> torch.Tensor:
    """Starts, points near the axis (inside the switch, rho < R/2), across the switch's edge and far out."""
    x = landscape.sample_start(range(4)) + 0.3 * torch.randn(4, landscape.dim, generator=generator, dtype=torch.float64)
    q1, q2 = _plane_basis(landscape)
    rho = landscape.radius * torch.tensor([0.01, 0.2, 0.35, 0.499, 0.501, 2.5], dtype=torch.float64)[:, None]
    theta = torch.tensor([0.3, 1.1, 2.0, -2.6, 0.7, -1.0], dtype=torch.float64)[:, None]
    across = 0.5 * torch.randn(6, landscape.dim, generator=generator, dtype=torch.float64)
    across -= (across @ q1)[:, None] * q1 + (across @ q2)[:, None] * q2
    return torch.cat([x, rho * (torch.cos(theta) * q1 + torch.sin(theta) * q2) + across])


@pytest.mark.parametrize("rotate", [False, True])
def test_closed_form_gradient_and_hvp_match_autograd(rotate: bool) -> None:
    landscape = _valley(rotate=rotate)
    generator = torch.Generator().manual_seed(1)
    x = _probe_points(landscape, generator)
    v = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad = Landscape.loss_and_grad(landscape, x)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(landscape.loss(x), auto_loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rotate", [False, True])
def test_gradient_and_hvp_match_central_finite_differences(rotate: bool) -> None:
    landscape = _valley(rotate=rotate)
    generator = torch.Generator().manual_seed(2)
    x = _probe_points(landscape, generator)
    v = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    v /= v.norm(dim=1, keepdim=True)
    step = 1e-5
    _, grad = landscape.loss_and_grad(x)
    slope = (landscape.loss(x + step * v) - landscape.loss(x - step * v)) / (2 * step)
    torch.testing.assert_close((grad * v).sum(1), slope, rtol=1e-6, atol=1e-6)
    curvature = (landscape.loss_and_grad(x + step * v)[1] - landscape.loss_and_grad(x - step * v)[1]) / (2 * step)
    torch.testing.assert_close(
        landscape.hvp(x, v), curvature, rtol=1e-5, atol=1e-5 * (1 + float(curvature.abs().max()))
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_the_axis_f_is_continuous_and_the_gradient_finite(dtype: torch.dtype) -> None:
    """rho = 0 is the apex of a cone: f -> a R^2 + c/2 |x_perp|^2 from every direction (the angular
    term is switched off there), the gradient is c x_perp (0 in the plane) and nothing is NaN."""
    landscape = Valley(dim=4, dtype=dtype, **PARAMS)
    a, r, c = 4.0, 1.5, 2.0
    axis = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, -1.0]], dtype=dtype)
    loss, grad = landscape.loss_and_grad(axis)
    torch.testing.assert_close(loss, torch.tensor([a * r * r, a * r * r + 1.25 * c / 2], dtype=dtype))
    torch.testing.assert_close(grad, c * axis * torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=dtype))
    hv = landscape.hvp(axis, torch.ones_like(axis))
    assert bool(torch.isfinite(hv).all())
    theta = torch.linspace(0, 2 * math.pi, 37, dtype=torch.float64)
    for rho in (1e-3, 1e-6):
        near = torch.zeros(37, 4, dtype=dtype)
        near[:, 0], near[:, 1] = rho * torch.cos(theta), rho * torch.sin(theta)
        values = landscape.loss(near).double()
        # a (rho - R)^2 plus at most h S(4 rho^2/R^2) <= h 10 (2 rho/R)^6: continuous at the axis.
        torch.testing.assert_close(values, torch.full_like(values, a * (rho - r) ** 2), rtol=1e-6, atol=0)
        assert bool(torch.isfinite(landscape.loss_and_grad(near)[1]).all())


# --- runs and modes -----------------------------------------------------------------------------


def test_the_start_distribution_is_the_documented_annulus_and_gaussian_across() -> None:
    """rho ~ U[R/2, 3R/2] and theta ~ U[-pi, pi) (Kolmogorov-Smirnov, n = 2000; under the law
    p < 1e-4 has probability 1e-4, and the seeds are fixed); |x_perp|^2 ~ (init_perp R)^2
    chi2_{d-2}/(d-2): mean (0.7 * 1.5)^2, standard error mean sqrt(2/(d-2))/sqrt(n), margin 5 se."""
    landscape = _valley(rotate=True, init_perp=0.7)
    n, r = 2000, 1.5
    x = landscape.sample_start(range(n))
    q1, q2 = _plane_basis(landscape)
    z1, z2 = x @ q1, x @ q2
    rho, theta = torch.hypot(z1, z2), torch.atan2(z2, z1)
    assert 0.5 * r <= float(rho.min()) and float(rho.max()) <= 1.5 * r
    assert scipy.stats.kstest(rho.numpy(), scipy.stats.uniform(0.5 * r, r).cdf).pvalue > 1e-4
    assert scipy.stats.kstest(theta.numpy(), scipy.stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-4
    perp = (x - z1[:, None] * q1 - z2[:, None] * q2).square().sum(1)
    mean = (0.7 * r) ** 2
    assert float(perp.mean()) == pytest.approx(mean, abs=5 * mean * math.sqrt(2 / 4) / math.sqrt(n))
    # Starts do not depend on the batch, nor on the dtype beyond rounding.
    torch.testing.assert_close(landscape.sample_start([7])[0], x[7], rtol=0, atol=0)
    single = Valley(dim=6, rotate=True, init_perp=0.7, **PARAMS).sample_start(range(3))
    torch.testing.assert_close(single, x[:3].float(), rtol=0, atol=0)


def test_runs_started_near_a_mode_end_in_that_mode() -> None:
    """Gradient descent with the autograd gradient from 8 perturbed copies of each minimum; a point
    at a ring saddle (loss h >= h/2) or far up the wall is in no mode."""
    landscape = _valley(rotate=True)
    generator = torch.Generator().manual_seed(3)
    no_divergence = torch.zeros(8, dtype=torch.bool)
    for k in range(5):
        x = landscape.minimum(k).point + 0.15 * torch.randn(8, 6, generator=generator, dtype=torch.float64)
        for _ in range(100):
            x = x - 0.1 * Landscape.loss_and_grad(landscape, x)[1]
        assert landscape.record_fields(x, None, no_divergence)["mode"] == [k] * 8
    points = torch.stack([landscape.minimum(2).point, landscape.ring_saddle(2).point, 3 * landscape.minimum(1).point])
    assert landscape.record_fields(points, None, torch.zeros(3, dtype=torch.bool))["mode"] == [2, None, None]
    assert landscape.record_fields(points, None, torch.tensor([True, False, False]))["mode"] == [None, None, None]


def test_gd_from_the_start_distribution_ends_in_the_mode_of_its_start_sector_uniformly() -> None:
    """Along the ring, GD moves theta monotonically towards the nearest minimum: rho stays >= R/2
    (lr 2a = 0.64 < 1) and the tangential step, lr h m^2/(2 rho^2) <= 0.53 < 1, cannot overshoot.
    So each run ends in the mode of the sector it starts in, and theta is uniform: counts ~
    Binomial(250, 1/5), mean 50, sd 6.3; margin 5 sd (p < 3e-6 over the 5 modes)."""
    landscape = _valley(rotate=True)
    n, m = 250, 5
    records = landbench.run(landscape, "sgd(lr=0.08)", seeds=n, steps=800, curvature=False)
    start_theta = _theta(landscape, landscape.sample_start(range(n)))
    sectors = torch.remainder(torch.round(start_theta * m / (2 * math.pi)), m).long().tolist()
    assert [rec["mode"] for rec in records] == sectors
    assert all(not rec["diverged"] and rec["final_loss"] < 1e-10 for rec in records)
    counts = np.bincount(sectors, minlength=m)
    assert np.all(np.abs(counts - n / m) < 5 * math.sqrt(n * (1 / m) * (1 - 1 / m)))


def test_diverged_runs_are_in_no_mode() -> None:
    """lr 1 on radial curvature 2a = 8 multiplies the distance from the ring by 7 a step: float32
    overflows within 50 steps."""
    landscape = Valley(dim=4, **PARAMS)
    records = landbench.run(landscape, "sgd(lr=1.0)", seeds=4, steps=200, curvature=False)
    assert all(rec["diverged"] and rec["mode"] is None for rec in records)


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 1}, "dim must be an integer >= 2"),
        ({"dim": 4, "modes": 1}, "modes must be an integer >= 2"),
        ({"dim": 4, "modes": 2.5}, "modes must be an integer >= 2"),
        ({"dim": 4, "radius": 0.0}, "radius must be a number > 0"),
        ({"dim": 4, "radial": -1.0}, "radial must be a number > 0"),
        ({"dim": 4, "ring_barrier": 0.0}, "ring_barrier must be a number > 0"),
        ({"dim": 4, "confinement": 0.0}, "confinement must be a number > 0"),
        ({"dim": 4, "init_perp": -0.1}, "init_perp must be a number >= 0"),
        ({"dim": 4, "ring_barrier": 1.5}, "ring_barrier must be at most radial * radius^2 / 8 = 1.25"),
    ],
)
def test_bad_parameters_are_rejected_naming_what_is_valid(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("*", r"\*").replace("^", r"\^")):
        Valley(**kwargs)
    with pytest.raises(SpecError):
        Valley.canonical(**kwargs)


def test_the_instance_depends_on_the_seed_and_dim_only() -> None:
    base = _valley(rotate=True)
    same_frame = Valley(dim=6, rotate=True, modes=3, radius=2.0, dtype=torch.float64)
    other = Valley(dim=6, rotate=True, seed=1, dtype=torch.float64)
    q, q_same, q_other = (torch.stack(_plane_basis(v)) for v in (base, same_frame, other))
    torch.testing.assert_close(q, q_same)
    assert float((q - q_other).abs().max()) > 0.1
    torch.testing.assert_close(q @ q.T, torch.eye(2, dtype=torch.float64))
    assert Valley.canonical(dim=6, modes=4, rotate=True) == "valley(dim=6, rotate=True)"


def test_runs_with_curvature_metrics_read_the_documented_hessian_at_the_minimum() -> None:
    """In float32 (the basin width then runs on a float64 twin of the landscape): GD ends at a
    minimum, where Lanczos's sharpness is lambda_max = 2a = 8 and the record is JSON-ready."""
    landscape = Valley(dim=6, rotate=True, **PARAMS)
    records = landbench.run(landscape, "sgd(lr=0.04)", seeds=3, steps=2000)
    for record in records:
        assert record["mode"] in range(5) and record["final_loss"] < 1e-6
        assert record["sharpness"] == pytest.approx(8.0, rel=1e-3)
        assert record["basin_width"] is not None
    json.dumps(records)
    description = json.loads(json.dumps(landscape.describe()))
    assert [(s["value"], s["index"]) for s in description["saddles"]] == [(0.3, 1)]
    assert description["facts"]["axis_value"] == 4.0 * 1.5**2
    assert [m["value"] for m in description["minima"]] == [0.0, 0.0]


@pytest.mark.parametrize(
    ("dtype", "distance"), [(torch.float32, 1e-25), (torch.float32, 1e-36), (torch.float64, 1e-170)]
)
def test_the_gradient_stays_exact_next_to_the_axis(dtype: torch.dtype, distance: float) -> None:
    """Where rho^2 would underflow, the in-plane gradient is still 2 a (rho - R) z/rho = -2 a R e_1."""
    landscape = Valley(dim=3, dtype=dtype)
    x = torch.tensor([[distance, 0.0, 0.3]], dtype=dtype)
    _, grad = landscape.loss_and_grad(x)
    expected = torch.tensor([[-2 * landscape.radial * landscape.radius, 0.0, 0.3 * landscape.confinement]], dtype=dtype)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-6)
