"""The critical-point finder (landbench.critical_points, `landbench critical`), checked against
critical points known in closed form or computed at construction, and every reported point
against an independent autograd gradient and a dense autograd Hessian computed here."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.critical import CriticalPointError, classify, critical_points
from landbench.landscapes.base import DIM, Landscape, smoothstep

# Tolerances of the independent checks: a critical point's autograd gradient is below GRAD; an
# eigenvalue counts as negative below -EIG * max|lambda| (as the finder's default eig_tol).
GRAD = 1e-7
EIG = 1e-6


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def autograd_gradient_and_hessian(landscape: Landscape, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Euclidean gradient and dense Hessian of ``landscape.loss`` at x by autograd, in float64."""
    land = landscape.astype(torch.float64)
    x = x.detach().to(torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        return land.loss(v[None])[0]

    grad = torch.autograd.functional.jacobian(f, x)
    hessian = torch.autograd.functional.hessian(f, x)
    return grad, 0.5 * (hessian + hessian.T)


def negative_count(eigenvalues: torch.Tensor) -> int:
    return int((eigenvalues < -EIG * eigenvalues.abs().max()).sum())


def check_euclidean(landscape: Landscape, found) -> None:
    """Every reported critical point: autograd gradient tiny, index = negatives of the autograd Hessian,
    the value = the loss there, and the kind follows from the index."""
    assert found.points, "no critical point found"
    for point in found.points:
        grad, hessian = autograd_gradient_and_hessian(landscape, point.x)
        assert float(grad.norm()) < GRAD, point
        eigenvalues = torch.linalg.eigvalsh(hessian)
        assert point.index == negative_count(eigenvalues), (point, eigenvalues)
        assert point.lambda_min == pytest.approx(float(eigenvalues[0]), abs=1e-7 * float(eigenvalues.abs().max()))
        assert point.lambda_max == pytest.approx(float(eigenvalues[-1]), abs=1e-7 * float(eigenvalues.abs().max()))
        assert point.value == pytest.approx(float(landscape.astype(torch.float64).loss(point.x[None])[0]), abs=1e-12)
        expected = "minimum" if point.index == 0 else "maximum" if point.index == landscape.dim else "saddle"
        assert point.kind == expected


def sphere_frame(x: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (d, d-1) of the tangent space of the sphere at x (complement of x by QR)."""
    d = x.numel()
    q, _ = torch.linalg.qr(torch.cat([x[:, None], torch.eye(d, dtype=x.dtype)], dim=1))
    return q[:, 1:d]


def riemannian(landscape: Landscape, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Riemannian gradient ``P g``, Riemannian Hessian ``P (grad^2 f - (x.g/|x|^2) I) P`` (d x d) and its
    eigenvalues on the tangent space, from autograd's Euclidean gradient and Hessian (Absil et al. 2008)."""
    grad, hessian = autograd_gradient_and_hessian(landscape, x)
    x = x.to(torch.float64)
    projection = torch.eye(x.numel(), dtype=x.dtype) - torch.outer(x, x) / (x @ x)
    weingarten = (x @ grad) / (x @ x)
    hess = projection @ (hessian - weingarten * torch.eye(x.numel(), dtype=x.dtype)) @ projection
    frame = sphere_frame(x)
    return projection @ grad, hess, torch.linalg.eigvalsh(frame.T @ hess @ frame)


def check_sphere(landscape: Landscape, found) -> None:
    radius = math.sqrt(landscape.dim)
    assert found.points and found.tangent_dim == landscape.dim - 1
    for point in found.points:
        assert float(point.x.norm()) == pytest.approx(radius, rel=1e-12)
        grad, _, eigenvalues = riemannian(landscape, point.x)
        assert float(grad.norm()) < GRAD, point
        assert point.index == negative_count(eigenvalues), (point, eigenvalues)
        expected = "minimum" if point.index == 0 else "maximum" if point.index == landscape.dim - 1 else "saddle"
        assert point.kind == expected


def matches(point, known, tol: float = 1e-6) -> bool:
    return float((point.x - known.point.double()).norm()) <= tol * max(1.0, float(known.point.norm()))


# --- the saddle family: the saddle at 0 and its ring of minima, and nothing else -------------------


@pytest.mark.parametrize("rotate", [False, True])
def test_saddle_finds_the_saddle_and_only_the_ring_of_minima(rotate: bool) -> None:
    landscape = landbench.make(f"saddle(dim=6, index=2, rotate={rotate})", dtype="float64")
    near = landscape.sample_start(range(8))  # within 1e-3 of the saddle
    far = 1.5 * torch.randn(40, 6, generator=_gen(1), dtype=torch.float64)
    found = critical_points(landscape, torch.cat([near, far]))
    assert found.counts()["converged"] == 48
    frame = landscape.frame if rotate else torch.eye(6, dtype=torch.float64)[:, :2]
    ring = landscape.gamma / landscape.quartic
    saddles = [p for p in found.points if p.kind == "saddle"]
    assert len(saddles) == 1
    (saddle,) = saddles
    assert float(saddle.x.norm()) < 1e-8 and saddle.index == 2 and abs(saddle.value) < 1e-15
    assert set(range(8)) <= set(saddle.starts)
    for point in found.points:
        if point is saddle:
            continue
        unstable = frame.T @ point.x
        stable = point.x - frame @ unstable
        assert float(unstable @ unstable) == pytest.approx(ring, rel=1e-8)
        assert float(stable.norm()) < 1e-8
        assert point.kind == "minimum" and point.index == 0 and point.nullity == 1  # along the ring
        assert point.value == pytest.approx(-(landscape.gamma**2) / (4 * landscape.quartic), abs=1e-12)
    check_euclidean(landscape, found)


# --- basins and valley: every point among the ones the family computes --------------------------


def _perturbed(points: list[torch.Tensor], copies: int, scale: float, seed: int) -> torch.Tensor:
    base = torch.stack([p.double() for p in points]).repeat(copies, 1)
    return base + scale * torch.randn(base.shape, generator=_gen(seed), dtype=torch.float64)


@pytest.mark.parametrize("dim", [2, 3])
def test_basins_points_are_the_ones_computed_at_construction(dim: int) -> None:
    landscape = landbench.make(f"basins(dim={dim})", dtype="float64")
    known = list(landscape.known.minima) + list(landscape.known.saddles)
    starts = torch.cat([landscape.sample_start(range(48)), _perturbed([k.point for k in known], 4, 0.05, dim)])
    found = critical_points(landscape, starts)
    for point in found.points:
        same = [k for k in known if matches(point, k)]
        assert len(same) == 1, point
        assert point.value == pytest.approx(same[0].value, abs=1e-12)
        assert point.index == same[0].index and point.kind == same[0].kind
    assert len(found.points) == len(known)  # each found, once
    check_euclidean(landscape, found)
    check_gradient_flat(landscape, found)
    assert dim == 2 or found.gradient_flat  # basins(dim=3) has a ring of them, off the axis at t = 1.594


def check_gradient_flat(landscape: Landscape, found) -> None:
    """Gradient-flat points, checked by autograd: the gradient is not small, but lies in the Hessian's
    near-kernel; none of them is among the critical points."""
    for point in found.gradient_flat:
        grad, hessian = autograd_gradient_and_hessian(landscape, point.x)
        scale = float(torch.linalg.eigvalsh(hessian).abs().max())
        assert float(grad.norm()) > 1e-3
        assert float((hessian @ grad).norm()) <= 1e-3 * scale * float(grad.norm())
    flat_starts = [i for i, k in enumerate(found.kind) if k == "gradient-flat"]
    assert sum(p.count for p in found.points) == found.counts()["converged"]
    assert all(i not in p.starts for p in found.points for i in flat_starts)


def test_valley_points_are_its_modes_and_ring_saddles() -> None:
    landscape = landbench.make("valley(dim=3)", dtype="float64")
    m = landscape.modes
    known = [landscape.minimum(k) for k in range(m)] + [landscape.ring_saddle(k) for k in range(m)]
    found = critical_points(landscape, 64)
    for point in found.points:
        same = [k for k in known if matches(point, k)]
        assert len(same) == 1, point
        assert point.value == pytest.approx(same[0].value, abs=1e-12)
        assert point.index == same[0].index
    assert len(found.points) == 2 * m
    check_euclidean(landscape, found)


# --- Rosenbrock in d = 4: both minima ----------------------------------------------------------------


def test_rosenbrock_4_finds_both_minima() -> None:
    landscape = landbench.make("rosenbrock(dim=4)", dtype="float64")
    found = critical_points(landscape, 128)  # the local minimum's Newton basin is small: 12 of these find it
    minima = [p for p in found.points if p.kind == "minimum"]
    assert len(minima) == 2
    best, local = minima
    assert float((best.x - 1).abs().max()) < 1e-10 and best.value < 1e-20
    assert local.value == pytest.approx(3.7014, abs=1e-4)  # Shang and Qiu 2006 (README, DESIGN.md)
    assert matches(local, landscape.minima[1])
    assert local.x[0] < -0.7 and bool((local.x[1:] > 0).all())  # "near (-1, 1, 1, 1)"
    check_euclidean(landscape, found)


# --- the spin glass on the sphere ------------------------------------------------------------------


def test_geodesic_difference_of_the_riemannian_gradient_is_the_riemannian_hessian() -> None:
    """The test's own formula for the Riemannian Hessian against a central difference of the
    Riemannian gradient along a geodesic (then projected on the tangent space at x); and the
    landscape's hvp, which the finder uses, against the formula."""
    landscape = landbench.make("pspin(dim=10, p=3)", dtype="float64")
    x = landscape.sample_start([3])[0]
    r = float(x.norm())
    frame = sphere_frame(x)
    v = frame @ torch.randn(9, generator=_gen(2), dtype=torch.float64)
    v /= v.norm()
    projection = torch.eye(10, dtype=torch.float64) - torch.outer(x, x) / (x @ x)

    def gradient_on(point: torch.Tensor) -> torch.Tensor:
        grad, _ = autograd_gradient_and_hessian(landscape, point)
        return grad - (point @ grad) / (point @ point) * point

    h = 1e-4
    ends = [x * math.cos(t / r) + r * v * math.sin(t / r) for t in (h, -h)]
    difference = projection @ (gradient_on(ends[0]) - gradient_on(ends[1])) / (2 * h)
    _, hess, _ = riemannian(landscape, x)
    assert torch.allclose(difference, hess @ v, atol=1e-7)
    assert torch.allclose(landscape.hvp(x[None], v[None])[0], hess @ v, atol=1e-12)


def test_pspin_points_are_on_the_sphere_with_riemannian_checks() -> None:
    landscape = landbench.make("pspin(dim=10, p=3)")  # float32: the finder works on a float64 twin
    found = critical_points(landscape, 48)
    assert found.counts()["converged"] >= 24
    check_sphere(landscape, found)
    for point in found.gradient_flat:  # Riemannian gradient in the near-kernel of the Riemannian Hessian
        grad, hess, eigenvalues = riemannian(landscape, point.x)
        assert float(grad.norm()) > 1e-4
        assert float((hess @ grad).norm()) <= 1e-3 * float(eigenvalues.abs().max()) * float(grad.norm())


def test_pspin_p2_points_are_eigenvectors_and_s_and_minus_s_are_one() -> None:
    """Pure p = 2 on the sphere: f = x^T M x / N with M = (J + J^T)/(2 sqrt N), so its critical points
    are ``+- sqrt(N)`` times the eigenvectors of M, of value ``lambda_k(M)`` and index k (the number of
    smaller eigenvalues); s and -s are one point."""
    n = 8
    landscape = landbench.make(f"pspin(dim={n}, p=2)", dtype="float64")
    j = landscape.couplings(2)
    eigenvalues, vectors = torch.linalg.eigh((j + j.T) / (2 * math.sqrt(n)))
    found = critical_points(landscape, 128)
    assert found.settings["symmetric"] and found.counts()["converged"] == 128
    both_signs = False
    for point in found.points:
        k = int((eigenvalues - point.value).abs().argmin())
        assert point.value == pytest.approx(float(eigenvalues[k]), abs=1e-12)
        assert point.index == k
        assert abs(float(point.x @ vectors[:, k])) == pytest.approx(math.sqrt(n), rel=1e-10)
        members = found.x[list(point.starts)]
        signs = torch.sign(members @ point.x)
        assert torch.allclose(members, signs[:, None] * point.x, atol=1e-8)
        both_signs |= bool((signs > 0).any() and (signs < 0).any())
    assert both_signs
    assert len({p.index for p in found.points}) == len(found.points)  # never s and -s apart
    check_sphere(landscape, found)


# --- gradient-flat points ------------------------------------------------------------------------


def _ramp(u: torch.Tensor) -> torch.Tensor:
    """``R(u) = int_0^u S``, S the quintic smoothstep (0 for u <= 0, 1 for u >= 1): ``2.5 u^4 - 3 u^5 + u^6``
    on [0, 1], ``u - 1/2`` beyond."""
    inside = u.clamp(0.0, 1.0)
    return 2.5 * inside**4 - 3 * inside**5 + inside**6 + (u - 1.0).clamp(min=0.0)


class FlatStrip(Landscape):
    """``f(x, y) = x^2 + s(y)``, ``s(y) = y - 2 sign(y) R(|y| - 1)``: ``s'(y) = 1 - 2 S(|y| - 1)``.

    * For ``|y| <= 1`` the landscape is ``x^2 + y``: on the segment x = 0 the gradient (0, 1) is not zero
      but the Hessian diag(2, 0) annihilates it, ``H g = 0``: gradient-flat points, where
      ``|g|^2 = 4 x^2 + s'(y)^2`` is at its smallest value 1 across the strip (Frye et al. 2021).
    * The critical points are at ``S(|y| - 1) = 1/2``, ``y = +-3/2``, where ``s'' = -2 sign(y) S'(1/2)
      = -+3.75``: a minimum at (0, -3/2) and a saddle of index 1 at (0, 3/2).
    """

    family = "flat_strip"
    params = (DIM,)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, 1]
        return x[:, 0] ** 2 + y - 2 * torch.sign(y) * _ramp(y.abs() - 1.0)

    def loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed form (the autograd checks below differentiate :meth:`loss`): ``(2x, 1 - 2 S(|y| - 1))``."""
        step, _, _ = smoothstep(x[:, 1].abs() - 1.0)
        return self.loss(x), torch.stack([2 * x[:, 0], 1 - 2 * step], dim=1)

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``diag(2, -2 sign(y) S'(|y| - 1)) v``."""
        _, slope, _ = smoothstep(x[:, 1].abs() - 1.0)
        return torch.stack([2 * v[:, 0], -2 * torch.sign(x[:, 1]) * slope * v[:, 1]], dim=1)

    def _sample_start(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(2, generator=generator, dtype=torch.float64)


def test_a_gradient_flat_point_is_reported_and_never_counted() -> None:
    landscape = FlatStrip(dim=2, dtype=torch.float64)
    y = torch.tensor([-0.9, -0.6, -0.3, -0.1, 0.2, 0.5, 0.8, -1.7, -1.6, -1.4, -1.3, 1.3, 1.4, 1.6, 1.7])
    x = 0.5 * torch.randn(len(y), generator=_gen(3), dtype=torch.float64)
    found = critical_points(landscape, torch.stack([x, y.double()], dim=1))
    assert found.kind[:7] == ["gradient-flat"] * 7
    assert found.kind[7:11] == ["minimum"] * 4 and found.kind[11:] == ["saddle"] * 4
    assert found.counts() == {
        "starts": 15,
        "converged": 8,
        "gradient_flat": 7,
        "not_converged": 0,
        "unique_points": 2,
        "unique_gradient_flat": 7,  # one per start: the strip is a segment of gradient-flat points
    }
    for point in found.gradient_flat:
        assert abs(float(point.x[0])) < 1e-12 and abs(float(point.x[1])) < 1
        assert point.grad_norm == pytest.approx(1.0, abs=1e-12)
    minimum, saddle = found.points
    assert torch.allclose(minimum.x, torch.tensor([0.0, -1.5], dtype=torch.float64), atol=1e-10)
    assert torch.allclose(saddle.x, torch.tensor([0.0, 1.5], dtype=torch.float64), atol=1e-10)
    assert (minimum.index, saddle.index) == (0, 1) and saddle.lambda_min == pytest.approx(-3.75, rel=1e-9)
    assert [r["kind"] for r in found.as_records()] == ["minimum", "saddle"] + ["gradient-flat"] * 7
    check_euclidean(landscape, found)
    check_gradient_flat(landscape, found)


def test_classify_on_synthetic_gradients_and_hessians() -> None:
    """The classifier alone: |g| <= grad_tol is critical (kind from the index); otherwise |H g| tiny
    relative to |H| |g| is gradient-flat; otherwise not converged."""
    eigenvalues = torch.tensor(
        [[-2.0, 1.0, 3.0], [0.5, 1.0, 3.0], [-3.0, -1.0, -1e-9], [0.0, 2.0, 4.0], [1.0, 2.0, 4.0]]
    )
    grad_norm = torch.tensor([1e-12, 1e-12, 1e-12, 0.5, 0.5])
    hg_norm = torch.tensor([1e-12, 1e-12, 1e-12, 1e-9, 0.4])
    kinds, index, nullity = classify(grad_norm, hg_norm, eigenvalues, grad_tol=1e-9, flat_tol=1e-4, eig_tol=1e-6)
    assert kinds == ["saddle", "minimum", "saddle", "gradient-flat", "not converged"]
    assert index.tolist() == [1, 0, 2, 0, 0] and nullity.tolist() == [0, 0, 1, 1, 0]
    kinds, _, _ = classify(grad_norm[:1], hg_norm[:1], -eigenvalues[1:2], grad_tol=1e-9, flat_tol=1e-5, eig_tol=1e-6)
    assert kinds == ["maximum"]
    # one dimension: at a gradient-flat point the only eigenvalue is ~0, so the scale is the run's (curvature)
    one = dict(grad_tol=1e-9, flat_tol=1e-4, eig_tol=1e-6)
    assert classify(torch.tensor([0.1]), torch.tensor([1e-8]), torch.tensor([[1e-7]]), **one)[0] == ["not converged"]
    flat = classify(
        torch.tensor([0.1]), torch.tensor([1e-8]), torch.tensor([[1e-7]]), curvature=torch.tensor([1.0]), **one
    )
    assert flat[0] == ["gradient-flat"]


# --- input, results, the command -----------------------------------------------------------------


def test_bad_input_is_refused_with_a_landbench_error() -> None:
    small = landbench.make("saddle(dim=3)")
    for bad in (
        dict(restarts=-1),
        dict(krylov_max_iter=0),
        dict(krylov_rtol=2.0),
        dict(dense_max_dim=-1),
        dict(spectrum="eig"),
    ):
        with pytest.raises(CriticalPointError, match=next(iter(bad))):
            critical_points(small, 2, **bad)
    for starts in (0, -1, 2.5, torch.zeros(4, 2), torch.full((2, 3), math.nan)):
        with pytest.raises(landbench.LandbenchError):
            critical_points(small, starts)
    with pytest.raises(landbench.LandbenchError, match="grad_tol"):
        critical_points(small, 2, grad_tol=-1.0)


def test_starts_are_the_landscapes_seeded_starts() -> None:
    landscape = landbench.make("rosenbrock(dim=4)", dtype="float64")
    found = critical_points(landscape, 3, seed=5, max_iter=0)
    assert torch.equal(found.x, landscape.sample_start([5, 6, 7]))
    assert found.kind == ["not converged"] * 3 and found.points == []
    records = json.loads(json.dumps(critical_points(landscape, 8).as_records()))
    assert {"kind", "value", "index", "grad_norm", "lambda_min", "lambda_max", "found_by", "point"} <= set(records[0])


def test_critical_command_json_lists_the_saddle() -> None:
    result = CliRunner().invoke(main, ["critical", "saddle(dim=4, index=1)", "--starts", "16", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    points, summary = lines[:-1], lines[-1]
    assert summary["kind"] == "summary" and summary["starts"] == 16
    assert summary["converged"] + summary["gradient_flat"] + summary["not_converged"] == 16
    saddle = [p for p in points if p["kind"] == "saddle"]
    assert len(saddle) == 1 and saddle[0]["index"] == 1 and abs(saddle[0]["value"]) < 1e-15
    assert max(abs(v) for v in saddle[0]["point"]) < 1e-8


def test_critical_command_prints_a_table() -> None:
    result = CliRunner().invoke(main, ["critical", "valley(dim=3)", "--starts", "32"])
    assert result.exit_code == 0, result.output
    assert "lambda_min" in result.output and "distinct critical points" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["critical", "sadle(dim=3)"], "did you mean 'saddle'"),
        (["critical", "saddle(dim=3)", "--max-iter", "-1"], "max_iter must be"),
        (["critical", "saddle(dim=3)", "--starts", "0"], "starts must be"),
    ],
)
def test_critical_command_bad_input_is_one_line_and_status_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


# --- the Krylov path (forced at small d with dense_max_dim=0) and restarts ------------------------


@pytest.mark.parametrize(
    "spec, starts", [("saddle(dim=6, index=2, rotate=True)", 24), ("valley(dim=3)", 32), ("pspin(dim=10, p=3)", 24)]
)
def test_krylov_path_finds_the_dense_paths_points(spec: str, starts: int) -> None:
    """MINRES steps and a full Lanczos spectrum instead of the dense Hessian: every start that the
    dense path takes to a critical point ends at the same point with the same index, and every
    reported point passes the autograd checks (gradient, index from the dense autograd Hessian)."""
    landscape = landbench.make(spec, dtype="float64")
    dense = critical_points(landscape, starts)
    krylov = critical_points(landscape, starts, dense_max_dim=0, spectrum="lanczos")
    assert dense.settings["path"] == "dense" and krylov.settings["path"] == "krylov"
    assert krylov.settings["spectrum"] == "lanczos"
    auto = critical_points(landscape, starts, dense_max_dim=0)  # the final spectrum dense: it fits
    assert auto.settings["spectrum"] == "dense"
    assert torch.equal(auto.index, krylov.index) and auto.kind == krylov.kind
    assert torch.allclose(auto.lambda_min, krylov.lambda_min, rtol=1e-8, atol=1e-10)
    assert krylov.counts() == dense.counts()
    for i, kind in enumerate(dense.kind):
        if kind in ("minimum", "saddle", "maximum"):
            assert krylov.kind[i] == kind
            assert float((krylov.x[i] - dense.x[i]).norm()) < 1e-8
            assert int(krylov.index[i]) == int(dense.index[i])
            assert float(krylov.lambda_min[i]) == pytest.approx(float(dense.lambda_min[i]), rel=1e-8, abs=1e-10)
            assert float(krylov.lambda_max[i]) == pytest.approx(float(dense.lambda_max[i]), rel=1e-8, abs=1e-10)
    if landscape.constrained:
        check_sphere(landscape, krylov)
    else:
        check_euclidean(landscape, krylov)


def test_krylov_path_finds_the_saddle_with_its_index() -> None:
    landscape = landbench.make("saddle(dim=40, index=7, rotate=True)", dtype="float64")
    found = critical_points(landscape, 4, dense_max_dim=0, spectrum="lanczos")
    (saddle,) = [p for p in found.points if p.kind == "saddle"]
    assert saddle.index == 7 and float(saddle.x.norm()) < 1e-8 and saddle.count == 4
    check_euclidean(landscape, found)


def test_lanczos_spectrum_is_the_autograd_hessians() -> None:
    """The full Lanczos tridiagonal's eigenvalues against a dense eigendecomposition of the autograd
    Hessian: a Gaussian field (distinct eigenvalues), the saddle family (three distinct eigenvalues,
    so the recurrence breaks down and restarts) and the spin glass's Riemannian Hessian on the sphere."""
    from landbench.krylov import lanczos_spectrum

    for spec in ("gaussian_field(dim=12)", "saddle(dim=30, index=4, rotate=True)", "pspin(dim=12, p=3)"):
        landscape = landbench.make(spec, dtype="float64")
        x = landscape.sample_start(range(3)).double() + (0.3 if not landscape.constrained else 0.0)
        n = landscape.dim - 1 if landscape.constrained else landscape.dim

        def op(rows: torch.Tensor, v: torch.Tensor, landscape=landscape, x=x) -> torch.Tensor:
            return landscape.hvp(x[rows], v)

        ritz = lanczos_spectrum(op, x, n, landscape.tangent)
        for b in range(3):
            if landscape.constrained:
                expected = riemannian(landscape, x[b])[2]
            else:
                expected = torch.linalg.eigvalsh(autograd_gradient_and_hessian(landscape, x[b])[1])
            scale = float(expected.abs().max())
            assert torch.allclose(ritz[b], expected, atol=1e-10 * scale), spec
        # fewer steps: interlacing bounds on the index
        from landbench.krylov import ritz_bounds

        few = lanczos_spectrum(op, x, n, landscape.tangent, steps=n // 2)
        cut = 1e-6 * ritz.abs().amax(1)
        low, high = ritz_bounds(few, n, cut)
        exact = (ritz < -cut[:, None]).sum(1)
        assert bool((low <= exact).all() and (exact <= high).all())


def test_minres_step_is_the_pseudo_inverse_step() -> None:
    """On a singular symmetric system with a gradient partly in the kernel (the gradient-flat case),
    the Krylov space's minimum-length least-squares step is ``-H^+ g`` (as MINRES-QLP's), with the
    exact decrease of the linear model; the damped steps are ``-(H^2 + mu I)^{-1} H g``."""
    from landbench.krylov import minres_subspace, subspace_steps

    g0 = _gen(7)
    d, b = 20, 3
    q, _ = torch.linalg.qr(torch.randn(b, d, d, generator=g0, dtype=torch.float64))
    lam = torch.randn(b, d, generator=g0, dtype=torch.float64)
    lam[:, :4] = 0.0  # a 4-dimensional kernel
    h = q @ torch.diag_embed(lam) @ q.transpose(1, 2)
    g = torch.randn(b, d, generator=g0, dtype=torch.float64)

    def op(rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (h[rows] @ v[:, :, None])[:, :, 0]

    space = minres_subspace(op, g, max_steps=d, rtol=1e-12)
    lengths = torch.tensor([1.0, 0.5], dtype=torch.float64)
    damping = torch.tensor([1.0, 1e-3], dtype=torch.float64)
    steps, predicted, smax = subspace_steps(space, lengths, damping, 1e-10)
    newton = -(torch.linalg.pinv(h, hermitian=True) @ g[:, :, None])[:, :, 0]
    assert torch.allclose(steps[:, 0], newton, atol=1e-9)
    assert torch.allclose(steps[:, 1], 0.5 * newton, atol=1e-9)
    for j, mu_rel in enumerate(damping.tolist()):
        mu = (smax**2 * mu_rel)[:, None, None]
        damped = -torch.linalg.solve(h @ h + mu * torch.eye(d, dtype=torch.float64), h @ g[:, :, None])[:, :, 0]
        assert torch.allclose(steps[:, 2 + j], damped, atol=1e-9)
    for k in range(4):
        residual = g + (h @ steps[:, k, :, None])[:, :, 0]
        linear = 0.5 * (g.square().sum(1) - residual.square().sum(1))
        assert torch.allclose(predicted[:, k], linear, atol=1e-9)
    assert bool((smax <= lam.abs().amax(1) * (1 + 1e-12)).all())


def test_restarts_turn_gradient_flat_ends_into_critical_points_deterministically() -> None:
    landscape = landbench.make("gaussian_field(dim=8)", dtype="float64")
    plain = critical_points(landscape, 12, seed=3)
    again = critical_points(landscape, 12, seed=3, restarts=3)
    flat = [i for i, k in enumerate(plain.kind) if k == "gradient-flat"]
    assert flat, "this instance has gradient-flat ends to restart"
    counts = again.counts()
    assert counts["converged"] > plain.counts()["converged"]
    assert counts["restarts"] == int(again.restarts.sum()) >= len(flat)
    # starts that did not end gradient-flat are untouched; the restarted ones record their restarts
    for i in range(12):
        if i not in flat:
            assert again.kind[i] == plain.kind[i] and torch.equal(again.x[i], plain.x[i])
            assert int(again.restarts[i]) == 0
        else:
            assert 1 <= int(again.restarts[i]) <= 3
            assert again.kind[i] != "gradient-flat" or int(again.restarts[i]) == 3
    assert [r["restarts"] for r in again.per_start()] == again.restarts.tolist()
    # every gradient-flat end is kept in the report (never counted as a critical point)
    assert counts["gradient_flat_ends"] == counts["restarts"] + counts["gradient_flat"]
    assert sum(p.count for p in again.gradient_flat) == counts["gradient_flat_ends"]
    assert sum(p.count for p in again.points) == counts["converged"]
    for i in flat:  # the restarted starts' points, by autograd
        if again.kind[i] != "gradient-flat":
            point = again.points[int(again.point_of[i])]
            grad, hessian = autograd_gradient_and_hessian(landscape, point.x)
            assert float(grad.norm()) < GRAD and point.index == negative_count(torch.linalg.eigvalsh(hessian))
    check_gradient_flat(landscape, again)
    # deterministic, and a start's restarts do not depend on its batch
    assert torch.equal(critical_points(landscape, 12, seed=3, restarts=3).x, again.x)
    for i in flat[:1]:
        alone = critical_points(landscape, 1, seed=3 + i, restarts=3)
        assert alone.kind[0] == again.kind[i] and int(alone.restarts[0]) == int(again.restarts[i])
        assert torch.allclose(alone.x[0], again.x[i], atol=1e-10)


@pytest.mark.slow
def test_krylov_path_beyond_the_dense_limit() -> None:
    """dim 600 > 512: the default runs the Krylov path; the saddle and its index, checked by autograd."""
    landscape = landbench.make("saddle(dim=600, index=5)", dtype="float64")
    found = critical_points(landscape, 2)
    assert found.settings["path"] == "krylov"
    (saddle,) = found.points
    assert saddle.kind == "saddle" and saddle.index == 5 and saddle.count == 2
    grad, _ = autograd_gradient_and_hessian(landscape, saddle.x)
    assert float(grad.norm()) < GRAD
