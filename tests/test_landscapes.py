"""Every family against independent computations: autograd, finite differences, published optima."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
from reference import dense_hessian

import landbench
from landbench.landscapes import FAMILIES, Landscape

SPECS = [
    "saddle(dim=7, index=3)",
    "saddle(dim=7, index=3, rotate=True, gamma=2.0, mu=0.5, quartic=3.0)",
    "saddle(dim=1)",
    "saddle_chain(dim=5, stiffness=3.0)",
    "saddle_chain(dim=1)",
    "valley(dim=5, modes=3, rotate=True)",
    "basins(dim=4, rotate=True)",
    "gaussian_field(dim=6, length_scale=0.7, confinement=0.3)",
    "pspin(dim=6, mix={2: 0.5, 3: 1.0})",
    "basins(dim=1, wells=((1.0, 0.5),))",
    "quadratic(dim=6, condition=50.0)",
    "quadratic(dim=1)",
    "rosenbrock(dim=2)",
    "rosenbrock(dim=6)",
    "rastrigin(dim=5)",
    "ackley(dim=4)",
    "styblinski_tang(dim=3)",
    "levy(dim=1)",
    "levy(dim=5)",
    "least_squares(dim=6, samples=40, condition=30.0, label_noise=0.2)",
    "least_squares(dim=8, samples=5)",
    "phase_retrieval(dim=6, samples=60)",
    "phase_retrieval(dim=5, samples=3)",
    "matrix_sensing(dim=5, rank=2, measurements=40)",
    "teacher_student(dim=4, hidden=3, teacher_hidden=2, samples=32, activation='erf')",
    "deep_linear(dim=3, depth=3, width=4, samples=16)",
    "deep_linear(dim=4, depth=2, width=2, samples=3, label_noise=0.3)",
]


def test_every_family_is_covered() -> None:
    covered = {spec.split("(")[0] for spec in SPECS}
    assert covered == set(FAMILIES)


def _autograd_reference(landscape: Landscape, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Loss, gradient and Hessian-vector product by autograd. On a constrained landscape (the
    sphere) the reference is Riemannian: the gradient projected onto the tangent space P, and
    ``P (Hess P v) - (x . grad / |x|^2) P v`` (Absil, Mahony and Sepulchre 2008, ch. 5)."""
    loss, grad = Landscape.loss_and_grad(landscape, x)
    if not landscape.constrained:
        return loss, grad, Landscape.hvp(landscape, x, v)
    tangent_v = landscape.tangent(x, v)
    weingarten = (x * grad).sum(1, keepdim=True) / (x * x).sum(1, keepdim=True)
    hessian_v = landscape.tangent(x, Landscape.hvp(landscape, x, tangent_v)) - weingarten * tangent_v
    return loss, landscape.tangent(x, grad), hessian_v


@pytest.mark.parametrize("spec", SPECS)
def test_closed_form_gradient_and_hvp_match_autograd(spec: str) -> None:
    landscape = landbench.make(spec, dtype=torch.float64)
    generator = torch.Generator().manual_seed(1)
    x = landscape.sample_start(range(5)) + 0.3 * torch.randn(5, landscape.dim, generator=generator, dtype=torch.float64)
    x = landscape.retract(x)
    v = torch.randn(5, landscape.dim, generator=generator, dtype=torch.float64)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad, auto_hvp = _autograd_reference(landscape, x, v)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.hvp(x, v), auto_hvp, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_gradient_and_hvp_match_central_finite_differences(spec: str) -> None:
    landscape = landbench.make(spec, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    x = landscape.sample_start([3]) + 0.1 * torch.randn(1, landscape.dim, generator=generator, dtype=torch.float64)
    x = landscape.retract(x)
    v = landscape.tangent(x, torch.randn(1, landscape.dim, generator=generator, dtype=torch.float64))
    v /= v.norm()
    h = 1e-5
    _, grad = landscape.loss_and_grad(x)
    slope = (landscape.loss(x + h * v) - landscape.loss(x - h * v)) / (2 * h)
    assert float(slope) == pytest.approx(float((grad * v).sum()), rel=1e-6, abs=1e-6)
    if landscape.constrained:
        # Along the retraction curve t -> R(x + t v) (second order for the sphere's projection),
        # the second derivative of the loss is <v, Hess v>.
        h = 1e-4
        second = (landscape.loss(landscape.retract(x + h * v)) - 2 * landscape.loss(x)) / h**2
        second = second + landscape.loss(landscape.retract(x - h * v)) / h**2
        assert float(second) == pytest.approx(float((v * landscape.hvp(x, v)).sum()), rel=1e-4, abs=1e-5)
        return
    curvature = (landscape.loss_and_grad(x + h * v)[1] - landscape.loss_and_grad(x - h * v)[1]) / (2 * h)
    torch.testing.assert_close(
        landscape.hvp(x, v), curvature, rtol=1e-5, atol=1e-5 * (1 + float(curvature.abs().max()))
    )


def test_rosenbrock_matches_scipy_and_its_published_local_minimum() -> None:
    landscape = landbench.make("rosenbrock(dim=4)", dtype=torch.float64)
    points = np.random.default_rng(0).uniform(-2, 2, size=(6, 4))
    ours = landscape.loss(torch.from_numpy(points)).numpy()
    np.testing.assert_allclose(ours, [scipy.optimize.rosen(p) for p in points], rtol=1e-13)
    _, grad = landscape.loss_and_grad(torch.from_numpy(points))
    np.testing.assert_allclose(grad.numpy(), [scipy.optimize.rosen_der(p) for p in points], rtol=1e-12)
    # Shang and Qiu 2006 / Kok and Sandrock 2009: a local minimum near (-1, 1, 1, 1) of value 3.7014.
    local = scipy.optimize.minimize(
        scipy.optimize.rosen, [-1, 1, 1, 1], jac=scipy.optimize.rosen_der, method="BFGS", options={"gtol": 1e-10}
    )
    assert local.fun == pytest.approx(3.7014, abs=5e-5)
    second = landscape.minima[1]
    assert second.value == pytest.approx(local.fun, rel=1e-9)
    np.testing.assert_allclose(second.point.numpy(), local.x, atol=1e-6)
    assert np.linalg.eigvalsh(scipy.optimize.rosen_hess(local.x)).max() == pytest.approx(second.lambda_max, rel=1e-8)


OPTIMA = [
    # spec, optimum location (per coordinate), published optimum value
    ("rosenbrock(dim=5)", 1.0, 0.0),
    ("rastrigin(dim=5)", 0.0, 0.0),
    ("ackley(dim=5)", 0.0, 0.0),
    ("styblinski_tang(dim=5)", -2.903534027771178, -39.16616570377142 * 5),
    ("levy(dim=5)", 1.0, 0.0),
    ("quadratic(dim=5)", 0.0, 0.0),
    ("saddle(dim=5, index=2, gamma=3.0, quartic=2.0)", None, -9.0 / 8.0),
    ("saddle_chain(dim=5, gamma=3.0, quartic=2.0)", math.sqrt(1.5), -5 * 9.0 / 8.0),
]


@pytest.mark.parametrize(("spec", "location", "value"), OPTIMA)
def test_documented_optimum(spec: str, location: float | None, value: float) -> None:
    landscape = landbench.make(spec, dtype=torch.float64)
    assert landscape.f_star == pytest.approx(value, abs=1e-12)
    point = landscape.minima[0].point
    if location is not None:
        torch.testing.assert_close(point, torch.full_like(point, location))
    loss, grad = landscape.loss_and_grad(point[None])
    assert float(loss) == pytest.approx(value, abs=1e-12)
    assert float(grad.abs().max()) < 1e-9
    # Nothing nearby is lower (it is a minimum, not just a stationary point).
    generator = torch.Generator().manual_seed(0)
    nearby = point + 1e-3 * torch.randn(64, landscape.dim, generator=generator, dtype=torch.float64)
    assert float(landscape.loss(nearby).min()) >= value - 1e-12


@pytest.mark.parametrize(
    "spec",
    [
        "saddle(dim=6, index=3, gamma=2.0, mu=0.7)",
        "saddle(dim=6, index=2, rotate=True, gamma=0.5, mu=3.0, quartic=2.0)",
        "saddle_chain(dim=4, gamma=2.0, stiffness=3.0)",
        "valley(dim=4, modes=5, rotate=True)",
        "basins(dim=3, wells=((1.0, 1.0), (2.0, 0.3), (1.0, 0.5)), rotate=True)",
        "quadratic(dim=5, condition=30.0)",
        "rosenbrock(dim=5)",
        "rastrigin(dim=3)",
        "styblinski_tang(dim=3)",
        "levy(dim=4)",
    ],
)
def test_known_hessians_match_the_dense_autograd_hessian(spec: str) -> None:
    landscape = landbench.make(spec, dtype=torch.float64)
    points = list(landscape.minima) + ([landscape.saddle] if landscape.saddle else [])
    for point in points:
        eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, point.point))
        assert point.lambda_max == pytest.approx(float(eigenvalues.max()), abs=1e-9)
        assert point.lambda_min == pytest.approx(float(eigenvalues.min()), abs=1e-9)
        assert point.trace == pytest.approx(float(eigenvalues.sum()), abs=1e-8)
        assert point.index == int((eigenvalues < -1e-9).sum())


def test_saddle_spectrum_is_the_documented_one() -> None:
    gamma, mu, quartic, d, k = 2.0, 0.7, 4.0, 8, 3
    landscape = landbench.make(
        f"saddle(dim={d}, index={k}, gamma={gamma}, mu={mu}, quartic={quartic}, rotate=True)", dtype=torch.float64
    )
    at_saddle = torch.linalg.eigvalsh(dense_hessian(landscape, torch.zeros(d, dtype=torch.float64)))
    torch.testing.assert_close(at_saddle, torch.tensor(sorted([-gamma] * k + [mu] * (d - k)), dtype=torch.float64))
    # Any point of the ring |P_u x|^2 = gamma/quartic, P_s x = 0 is a minimum with value -gamma^2/(4 quartic).
    frame = landscape.frame
    coefficients = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    ring_point = frame @ (math.sqrt(gamma / quartic) * coefficients / coefficients.norm())
    loss, grad = landscape.loss_and_grad(ring_point[None])
    assert float(loss) == pytest.approx(-(gamma**2) / (4 * quartic))
    assert float(grad.abs().max()) < 1e-12
    at_minimum = torch.linalg.eigvalsh(dense_hessian(landscape, ring_point))
    torch.testing.assert_close(
        at_minimum,
        torch.tensor(sorted([0.0] * (k - 1) + [2 * gamma] + [mu] * (d - k)), dtype=torch.float64),
        atol=1e-9,
        rtol=0,
    )


def test_ackley_minimum_is_a_kink_with_no_hessian() -> None:
    landscape = landbench.make("ackley(dim=3)", dtype=torch.float64)
    minimum = landscape.minima[0]
    assert minimum.lambda_max is None and minimum.trace is None
    loss, grad = landscape.loss_and_grad(torch.zeros(1, 3, dtype=torch.float64))
    assert float(loss) == pytest.approx(0.0, abs=1e-14) and torch.equal(grad, torch.zeros_like(grad))


START_BOXES = {"rosenbrock": 2.0, "rastrigin": 5.12, "ackley": 5.0, "styblinski_tang": 5.0, "levy": 10.0}


@pytest.mark.parametrize("name", list(START_BOXES))
def test_start_distribution_is_uniform_in_the_documented_box(name: str) -> None:
    landscape = landbench.make(f"{name}(dim=50)", dtype=torch.float64)
    x = landscape.sample_start(range(40))
    half = START_BOXES[name]
    assert float(x.abs().max()) <= half
    # Uniform on [-h, h]: mean 0 and variance h^2/3, to within sampling error over 2000 values.
    assert abs(float(x.mean())) < 4 * half / math.sqrt(3 * x.numel())
    assert float(x.var()) == pytest.approx(half**2 / 3, rel=0.1)


def test_saddle_starts_on_the_sphere_or_along_the_unstable_direction() -> None:
    random_start = landbench.make("saddle(dim=20, init_radius=0.01)", dtype=torch.float64).sample_start(range(6))
    torch.testing.assert_close(random_start.norm(dim=1), torch.full((6,), 0.01, dtype=torch.float64))
    rotated = landbench.make(
        "saddle(dim=20, index=2, init='unstable', init_radius=0.01, rotate=True)", dtype=torch.float64
    )
    start = rotated.sample_start([0, 1])
    torch.testing.assert_close(start[0], start[1])
    torch.testing.assert_close(start[0], 0.01 * rotated.frame[:, 0])


def test_starts_depend_on_seed_and_instance_but_not_on_the_batch() -> None:
    landscape = landbench.make("rastrigin(dim=4)")
    batch = landscape.sample_start([0, 1, 2])
    torch.testing.assert_close(landscape.sample_start([2])[0], batch[2], rtol=0, atol=0)
    assert not torch.equal(batch[0], batch[1])
    other_instance = landbench.make("rastrigin(dim=4)", seed=1).sample_start([0])
    assert not torch.equal(other_instance[0], batch[0])


def test_instances_are_reproducible_and_differ_by_seed() -> None:
    a = landbench.make("saddle(dim=30, index=4, rotate=True)", seed=3)
    b = landbench.make("saddle(dim=30, index=4, rotate=True)", seed=3)
    c = landbench.make("saddle(dim=30, index=4, rotate=True)", seed=4)
    assert torch.equal(a.frame, b.frame) and not torch.equal(a.frame, c.frame)
    # Other parameters do not change the random frame: a sweep over gamma keeps the instance.
    d = landbench.make("saddle(dim=30, index=4, rotate=True, gamma=5.0)", seed=3)
    assert torch.equal(a.frame, d.frame)
    torch.testing.assert_close(a.frame.T @ a.frame, torch.eye(4), atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_gpu_see_the_same_instance() -> None:
    cpu = landbench.make("saddle(dim=64, index=5, rotate=True)", seed=7)
    gpu = landbench.make("saddle(dim=64, index=5, rotate=True)", seed=7, device="cuda")
    torch.testing.assert_close(gpu.frame.cpu(), cpu.frame, rtol=0, atol=0)
    torch.testing.assert_close(gpu.sample_start(range(4)).cpu(), cpu.sample_start(range(4)), rtol=0, atol=0)
    x = cpu.sample_start(range(4)) * 300
    torch.testing.assert_close(gpu.loss_and_grad(x.cuda())[1].cpu(), cpu.loss_and_grad(x)[1], rtol=1e-5, atol=1e-6)


def test_canonical_spec_drops_defaults_and_normalises_types() -> None:
    assert landbench.make("saddle(dim=10, index=1, gamma=1)").spec == "saddle(dim=10)"
    assert landbench.make({"name": "saddle", "dim": 10, "gamma": 2}).spec == "saddle(dim=10, gamma=2.0)"
    assert landbench.make("quadratic( dim = 3 , condition=10 )").spec == "quadratic(dim=3, condition=10.0)"


def test_large_rotated_saddle_never_builds_a_dense_matrix() -> None:
    landscape = landbench.make("saddle(dim=200000, index=4, rotate=True)")
    assert tuple(landscape.frame.shape) == (200000, 4)
    x = landscape.sample_start(range(2))
    loss, grad = landscape.loss_and_grad(x)
    assert loss.shape == (2,) and grad.shape == (2, 200000)


def test_gradient_descent_on_rosenbrock_4d_ends_at_one_of_its_two_published_minima() -> None:
    """Shang and Qiu 2006: rosenbrock(d = 4) has the global minimum 0 and a local one of value 3.7014."""
    records = landbench.run(
        "rosenbrock(dim=4)", "sgd(lr=0.0002, momentum=0.9)", seeds=64, steps=20000, dtype="float64", curvature=False
    )
    finals = [r["final_loss"] for r in records]
    at_global = sum(value < 1e-8 for value in finals)
    at_local = sum(abs(value - 3.70142861) < 1e-6 for value in finals)
    assert at_global + at_local == 64 and at_global > 0 and at_local > 0
