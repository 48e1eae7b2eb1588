"""The Gaussian random field against its covariance, the Bray-Dean index law, autograd and finite
differences, its scaling laws, and an end-to-end run."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from reference import dense_hessian

import landbench
from landbench.errors import SpecError
from landbench.landscapes.base import Landscape
from landbench.landscapes.gaussian_field import GaussianField


def _field(dtype: torch.dtype = torch.float64, **kwargs) -> GaussianField:
    return GaussianField(dtype=dtype, **kwargs)


def test_covariance_over_instances_is_the_squared_exponential() -> None:
    """Given its frequencies W the field is exactly Gaussian, f(x) ~ N(0, s^2), with covariance
    (s^2/M) sum_m cos(w_m.(x - y)), whose mean over W is s^2 exp(-r^2/(2 l^2)) exactly.

    Sample: N = 500 instances (d = 3, default M = 256) x K = 40 pairs (x_k, x_k + r l u_k) per
    instance and per r, u_k random unit vectors, the pairs 8 sqrt(3) l apart (covariance exp(-96)):
    n = 20000 values, uncorrelated. Standard errors: mean s/sqrt(n) (0.0071 s); variance
    s^2 sqrt(2/n) (0.010 s^2); E f(x)f(y): s^2 sqrt((1 + rho^2)/n) (<= 0.0095 s^2). The values of one
    instance share W, which changes these by under 6 % (measured from the spread of per-instance
    means). Each is tested at 5 standard errors.
    """
    s, ell, d, instances, pairs = 1.7, 0.6, 3, 500, 40
    ratios = (0.5, 1.0, 1.5, 2.5)
    generator = torch.Generator().manual_seed(0)
    anchors = 8 * ell * torch.arange(pairs, dtype=torch.float64)[:, None] * torch.ones(d, dtype=torch.float64)
    directions = torch.randn(len(ratios), pairs, d, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=2, keepdim=True)
    points = torch.cat([anchors] + [anchors + r * ell * u for r, u in zip(ratios, directions)])
    values = torch.stack([_field(dim=d, amplitude=s, length_scale=ell, seed=i).loss(points) for i in range(instances)])
    at_anchor = values[:, :pairs].flatten()
    n = at_anchor.numel()
    assert abs(float(at_anchor.mean())) < 5 * s / math.sqrt(n)
    assert float(at_anchor.square().mean()) == pytest.approx(s**2, abs=5 * s**2 * math.sqrt(2 / n))
    for j, r in enumerate(ratios):
        moved = values[:, pairs * (j + 1) : pairs * (j + 2)].flatten()
        rho = math.exp(-(r**2) / 2)
        standard_error = s**2 * math.sqrt((1 + rho**2) / n)
        assert float((at_anchor * moved).mean()) == pytest.approx(s**2 * rho, abs=5 * standard_error), r


def _semicircle_fraction(t: np.ndarray) -> np.ndarray:
    """F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t)/pi: the semicircle's mass below 2 sqrt(d) t."""
    t = np.clip(t, -1.0, 1.0)
    return 0.5 + (t * np.sqrt(1 - t * t) + np.arcsin(t)) / np.pi


def _goe_spectrum(d: int, matrices: int, seed: int) -> np.ndarray:
    """Sorted eigenvalues of GOE matrices (off-diagonal variance 1, diagonal variance 2)."""
    a = torch.randn(matrices, d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return np.sort(torch.linalg.eigvalsh((a + a.mT) / math.sqrt(2)).flatten().numpy())


def _hessians_by_features(landscape: GaussianField, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f and the dense Hessian at each row of x from the cos + sin form of DESIGN.md,
    ``H = -s/sqrt(M) sum_m (a_m cos w_m.x + b_m sin w_m.x) w_m w_m^T``, with ``(a, b)`` recovered
    from the stored amplitude-phase pairs ``a = r cos phi``, ``b = r sin phi``."""
    w, r, phi = landscape.frequencies, landscape.weights, landscape.offsets
    a, b = r * torch.cos(phi), r * torch.sin(phi)
    phase = x @ w.T
    coefficient = torch.cos(phase) * a + torch.sin(phase) * b
    scale = landscape.amplitude / math.sqrt(landscape.n_features)
    hessian = -scale * (w.T[None] * coefficient[:, None, :]) @ w
    return scale * coefficient.sum(1), hessian


def _hessians_by_autograd(landscape: GaussianField, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f and the dense Hessian at each row of x, column by column from the autograd reference."""
    n, d = x.shape
    columns = Landscape.hvp(landscape, x.repeat_interleave(d, 0), torch.eye(d, dtype=x.dtype).repeat(n, 1))
    return landscape.loss(x), columns.reshape(n, d, d)


Hessians = Callable[[GaussianField, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_index_law(d: int, instances: int, per_instance: int, bins: int, hessians: Hessians, tol: float) -> None:
    """Bin random points of random instances (s = 2, l = 0.5, default M) by u = f(x); in each bin
    the mean fraction of negative Hessian eigenvalues must match, within ``tol``, the finite-d GOE
    law (the eigenvalue distribution function of 4000 sampled GOE matrices at u/s, whose error
    ~3e-4 is negligible) and, within ``tol + 0.005``, the semicircle ``F((u/s)/(2 sqrt d))``."""
    s, ell = 2.0, 0.5
    values, fractions = [], []
    for i in range(instances):
        landscape = _field(dim=d, amplitude=s, length_scale=ell, seed=i)
        x = ell * torch.randn(per_instance, d, generator=torch.Generator().manual_seed(1000 + i), dtype=torch.float64)
        u, hessian = hessians(landscape, x)
        torch.testing.assert_close(landscape.hvp(x, x), (hessian @ x[:, :, None])[:, :, 0], rtol=1e-10, atol=1e-10)
        values.append(u / s)
        fractions.append((torch.linalg.eigvalsh(hessian) < 0).double().mean(1))
    u = torch.cat(values).numpy()
    observed = torch.cat(fractions).numpy()
    spectrum = _goe_spectrum(d, 4000, seed=7)
    finite_d = np.searchsorted(spectrum, u) / spectrum.size
    semicircle = _semicircle_fraction(u / (2 * math.sqrt(d)))
    edges = np.quantile(u, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, bins - 1)
    for k in range(bins):
        in_bin = which == k
        assert observed[in_bin].mean() == pytest.approx(finite_d[in_bin].mean(), abs=tol), k
        assert observed[in_bin].mean() == pytest.approx(semicircle[in_bin].mean(), abs=tol + 0.005), k
    # The law has a slope: the outer bins differ by ~0.2 (without it this test would be vacuous).
    assert observed[which == bins - 1].mean() - observed[which == 0].mean() > 0.15


def test_index_at_random_points_rises_with_the_value_as_the_shifted_semicircle() -> None:
    """Given f(x) = u the Hessian is -(u/l^2) I + (s/l^2) G, G a GOE matrix, so the fraction of
    negative eigenvalues at a random point is the GOE eigenvalue distribution function at u/s
    (F((u/s)/(2 sqrt d)) as d grows) (Bray and Dean 2007).

    d = 30 with the default M = 480 features, 40 instances x 50 points x ~ N(0, l^2 I) (2000 points,
    u/s in about [-3.5, 4.5], expected fractions 0.3 to 0.7), in 8 bins of u of 250 points each;
    Hessians from the cos + sin form (checked against ``hvp`` along one direction per point).
    Each point's fraction scatters by 0.025 about its expectation, so a bin mean has standard
    error 0.0016; the finite-M bias is up to 0.007 at M = 16 d (5 seeds of this test: max
    |deviation| 0.002 to 0.007), and 0.02 to 0.03 at M = d. Tolerance 0.015 (9 standard errors,
    twice the largest deviation seen); without the -u/l^2 shift every fraction would be about 1/2,
    off by 0.1 in the outer bins.
    """
    _check_index_law(30, instances=40, per_instance=50, bins=8, hessians=_hessians_by_features, tol=0.015)


@pytest.mark.slow
def test_index_law_with_autograd_hessians_in_dimension_40() -> None:
    """As above at d = 40 (M = 640) with dense autograd Hessians: 60 instances x 50 points in 10
    bins of 300; a bin mean's standard error is 0.0011 and 5 seeds gave max |deviation| 0.0014 to
    0.0033. Tolerance 0.01 (9 standard errors, three times the largest deviation seen)."""
    _check_index_law(40, instances=60, per_instance=50, bins=10, hessians=_hessians_by_autograd, tol=0.01)


@pytest.mark.parametrize("confinement", [0.0, 0.8])
def test_gradient_and_hvp_match_autograd_and_finite_differences(confinement: float) -> None:
    landscape = _field(dim=6, amplitude=1.7, length_scale=0.6, confinement=confinement, seed=4)
    generator = torch.Generator().manual_seed(5)
    x = 0.6 * torch.randn(5, 6, generator=generator, dtype=torch.float64)
    v = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad = Landscape.loss_and_grad(landscape, x)  # the autograd reference
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-10, atol=1e-10)
    h = 1e-5
    unit = v / v.norm(dim=1, keepdim=True)
    slope = (landscape.loss(x + h * unit) - landscape.loss(x - h * unit)) / (2 * h)
    torch.testing.assert_close(slope, (grad * unit).sum(1), rtol=1e-7, atol=1e-7)
    curvature = (landscape.loss_and_grad(x + h * unit)[1] - landscape.loss_and_grad(x - h * unit)[1]) / (2 * h)
    torch.testing.assert_close(landscape.hvp(x, unit), curvature, rtol=1e-6, atol=1e-6)
    # The loss is f + c/2 |x|^2, and the closed-form Hessian is the dense autograd one.
    field = _field(dim=6, amplitude=1.7, length_scale=0.6, seed=4)
    torch.testing.assert_close(loss, field.loss(x) + 0.5 * confinement * x.square().sum(1), rtol=1e-13, atol=1e-13)
    dense = dense_hessian(landscape, x[0])
    columns = landscape.hvp(x[0].expand(6, 6), torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(columns, dense, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dense - dense_hessian(field, x[0]), confinement * torch.eye(6, dtype=torch.float64))


def test_length_scale_rescales_the_same_instance_and_amplitude_scales_the_values() -> None:
    """w = w~ / l with w~ fixed by (seed, dim, M): f_l(x) = f_1(x / l), grad_l(x) = grad_1(x/l) / l,
    H_l(x) = H_1(x/l) / l^2; and f is linear in the amplitude s."""
    ell, s = 2.5, 3.0
    unit = _field(dim=5, seed=2)
    stretched = _field(dim=5, length_scale=ell, seed=2)
    louder = _field(dim=5, amplitude=s, seed=2)
    generator = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(7, 5, generator=generator, dtype=torch.float64)
    v = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    loss, grad = stretched.loss_and_grad(x)
    unit_loss, unit_grad = unit.loss_and_grad(x / ell)
    torch.testing.assert_close(loss, unit_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, unit_grad / ell, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stretched.hvp(x, v), unit.hvp(x / ell, v) / ell**2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(louder.loss(x), s * unit.loss(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(louder.loss_and_grad(x)[1], s * unit.loss_and_grad(x)[1], rtol=1e-13, atol=1e-13)


def test_instances_are_reproducible_and_depend_only_on_seed_dim_and_features() -> None:
    a, b, c = _field(dim=12, seed=3), _field(dim=12, seed=3), _field(dim=12, seed=4)
    assert torch.equal(a.frequencies, b.frequencies) and torch.equal(a.weights, b.weights)
    assert torch.equal(a.offsets, b.offsets)
    assert not torch.equal(a.frequencies, c.frequencies)
    assert a.n_features == 256 and _field(dim=40).n_features == 640  # max(256, 16 dim)
    assert a.describe()["facts"]["features"] == 256 and a.f_star is None and not a.minima and a.saddle is None
    few = _field(dim=12, features=7, seed=3)
    assert tuple(few.frequencies.shape) == (7, 12) and few.spec == "gaussian_field(dim=12, features=7)"
    other = _field(dim=12, amplitude=2.0, confinement=0.5, seed=3)
    torch.testing.assert_close(other.frequencies, a.frequencies, rtol=0, atol=0)


def test_float32_and_float64_hold_the_same_instance_drawn_in_several_chunks() -> None:
    """At d = 300 (M = 4800) the frequencies are drawn in two float64 chunks (3495 and 1305 rows)."""
    single = _field(torch.float32, dim=300, length_scale=0.7, seed=1)
    double = _field(torch.float64, dim=300, length_scale=0.7, seed=1)
    torch.testing.assert_close(single.frequencies, double.frequencies.float(), rtol=0, atol=0)
    assert single.tensor_bytes() == 4 * (4800 * 300 + 2 * 4800)
    # The rows are iid N(0, I / l^2): their mean square is 1 / l^2 to within 0.2 % (5 standard errors).
    assert float(double.frequencies.square().mean()) == pytest.approx(1 / 0.49, rel=5 * math.sqrt(2 / 1.44e6))


def test_start_is_gaussian_with_the_length_scale_and_independent_of_the_batch() -> None:
    landscape = _field(dim=50, length_scale=0.3)
    batch = landscape.sample_start(range(200))
    torch.testing.assert_close(landscape.sample_start([17, 3]), batch[[17, 3]], rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[1])
    # 10000 values of N(0, 0.09): mean SE 0.003, variance SE 0.09 sqrt(2/10000); 5 standard errors.
    assert abs(float(batch.mean())) < 5 * 0.3 / 100
    assert float(batch.var()) == pytest.approx(0.09, abs=5 * 0.09 * math.sqrt(2e-4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim must be an integer >= 1"),
        ({"dim": 3, "length_scale": 0.0}, "length_scale must be a number > 0"),
        ({"dim": 3, "length_scale": -1.0}, "length_scale must be a number > 0"),
        ({"dim": 3, "amplitude": 0.0}, "amplitude must be a number > 0"),
        ({"dim": 3, "features": -1}, "features must be an integer >= 0"),
        ({"dim": 3, "features": 2.5}, "features must be an integer >= 0"),
        ({"dim": 3, "confinement": -0.5}, "confinement must be a number >= 0"),
    ],
)
def test_bad_parameters_say_what_is_valid(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        GaussianField(**kwargs)


def test_gd_with_confinement_reaches_a_minimum_whose_sharpness_is_recorded() -> None:
    """GD (lr 0.1, 600 steps) on the confined field: the record's final loss is that of an independent GD
    with autograd gradients, whose final point is stationary, and the record's sharpness (Lanczos,
    32 >= d steps: exact) is the top eigenvalue of the dense autograd Hessian there."""
    lr, steps = 0.1, 600
    landscape = _field(dim=16, confinement=1.0, seed=3)
    records = landbench.run(landscape, f"sgd(lr={lr})", seeds=4, steps=steps)
    x = landscape.sample_start(range(4))
    for _ in range(steps):
        x = x - lr * Landscape.loss_and_grad(landscape, x)[1]
    loss, grad = Landscape.loss_and_grad(landscape, x)
    assert float(grad.norm(dim=1).max()) < 1e-10
    for record, point, value in zip(records, x, loss):
        assert record["final_loss"] == pytest.approx(float(value), abs=1e-10)
        spectrum = torch.linalg.eigvalsh(dense_hessian(landscape, point))
        assert float(spectrum[0]) > 0  # a minimum
        assert record["sharpness"] == pytest.approx(float(spectrum[-1]), rel=1e-8)
        assert record["f_star"] is None and record["loss_gap"] is None and record["escape_step"] is None


def test_field_value_is_the_loss_without_the_confinement_term() -> None:
    landscape = _field(dim=8, confinement=0.7, seed=2)
    records = landbench.run(landscape, "sgd(lr=0.05)", seeds=3, steps=50, curvature=False)
    final = landscape.sample_start(range(3))
    for _ in range(50):
        final = final - 0.05 * Landscape.loss_and_grad(landscape, final)[1]
    bare = landscape.loss(final) - 0.35 * final.square().sum(1)
    for record, value in zip(records, bare):
        assert record["field_value"] == pytest.approx(float(value), abs=1e-9)
