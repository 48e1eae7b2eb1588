"""deep_linear against independent computations: autograd, numpy least squares, Monte Carlo, and
Saxe, McClelland and Ganguli's learning dynamics measured on gradient-descent runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch
from reference import dense_hessian

import landbench
from landbench.errors import SpecError
from landbench.landscapes.base import Landscape
from landbench.landscapes.deep_linear import DeepLinear, mode_strength, mode_time

F64 = torch.float64

SPECS = [
    "deep_linear(dim=3, depth=2, samples=20)",
    "deep_linear(dim=3, depth=3, width=4, samples=16)",
    "deep_linear(dim=4, depth=4, width=2, samples=12, label_noise=0.3)",
    "deep_linear(dim=5, depth=3, width=3, samples=3, label_noise=0.2)",  # n < d: raw (unwhitened) inputs
]


def _point(landscape: DeepLinear, rows: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return landscape.sample_start(range(rows)) + 0.4 * torch.randn(rows, landscape.dim, generator=generator, dtype=F64)


def _per_example_loss(landscape: DeepLinear, x: torch.Tensor) -> torch.Tensor:
    """The training loss as the mean of the per-example losses (independent of the closed form's statistics)."""
    return landscape.example_losses(x, None).mean(1)


def test_data_model_is_whitened_teacher_labels_and_the_documented_sizes() -> None:
    landscape = landbench.make("deep_linear(dim=4, depth=3, width=6, samples=50)", dtype=F64)
    d, h, n = 4, 6, 50
    assert landscape.dim == h * d + h * h + d * h and landscape.data_dim == d
    a, y, m = landscape.inputs64, landscape.labels64, landscape.teacher64
    torch.testing.assert_close(a.T @ a / n, torch.eye(d, dtype=F64), rtol=0, atol=1e-13)
    torch.testing.assert_close(y, a @ m.T, rtol=0, atol=1e-12)
    expected = [4.0 * (0.125 ** (k / 3)) for k in range(4)]  # log-spaced from 4 down to 0.5
    np.testing.assert_allclose(np.linalg.svd(m.numpy(), compute_uv=False), expected, rtol=1e-12)
    facts = landscape.facts()
    assert facts["search_dim"] == landscape.dim and facts["data_dim"] == d and facts["whitened"]
    assert facts["origin_saddle_order"] == 2
    # Unwhitenable sample (n < d): the raw Gaussian rows.
    raw = landbench.make("deep_linear(dim=6, samples=4)", dtype=F64)
    assert not raw.whitened and "balanced_half_times" not in raw.facts()


def test_instances_are_reproducible_and_draws_depend_only_on_their_parameters() -> None:
    a = landbench.make("deep_linear(dim=3, samples=10, label_noise=0.1)", seed=5, dtype=F64)
    b = landbench.make("deep_linear(dim=3, samples=10, label_noise=0.1)", seed=5, dtype=F64)
    c = landbench.make("deep_linear(dim=3, samples=10, label_noise=0.1)", seed=6, dtype=F64)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)
    # A sweep over the spectrum, the noise level or the depth keeps the frames and the inputs.
    d = landbench.make(
        "deep_linear(dim=3, samples=10, label_noise=0.2, teacher=(2.0, 1.0), depth=2)", seed=5, dtype=F64
    )
    assert torch.equal(a.inputs, d.inputs)
    u_a, _, _ = torch.linalg.svd(a.teacher64)
    u_d, _, _ = torch.linalg.svd(d.teacher64)
    torch.testing.assert_close(u_a[:, :2].abs(), u_d[:, :2].abs(), rtol=0, atol=1e-12)
    # The float32 instance is the float64 one, cast.
    single = landbench.make("deep_linear(dim=3, samples=10, label_noise=0.1)", seed=5)
    torch.testing.assert_close(single.labels, a.labels.float(), rtol=0, atol=0)


@pytest.mark.parametrize("spec", SPECS)
def test_gradient_and_hvp_match_autograd_of_the_per_example_losses(spec: str) -> None:
    landscape = landbench.make(spec, dtype=F64)
    x = _point(landscape, 4, 1)
    v = torch.randn(4, landscape.dim, generator=torch.Generator().manual_seed(9), dtype=F64)
    loss, grad = landscape.loss_and_grad(x)
    reference = x.clone().requires_grad_(True)
    auto_loss = _per_example_loss(landscape, reference)
    (auto_grad,) = torch.autograd.grad(auto_loss.sum(), reference, create_graph=True)
    (auto_hvp,) = torch.autograd.grad((auto_grad * v).sum(), reference)
    torch.testing.assert_close(loss, auto_loss.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(landscape.loss(x), loss, rtol=0, atol=0)
    torch.testing.assert_close(grad, auto_grad.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.hvp(x, v), auto_hvp, rtol=1e-10, atol=1e-10)
    # The base class's autograd versions (of the closed-form loss) agree too.
    torch.testing.assert_close(landscape.hvp(x, v), Landscape.hvp(landscape, x, v), rtol=1e-10, atol=1e-10)
    # Central differences along one direction.
    h, u = 1e-5, v[:1] / v[:1].norm()
    slope = (landscape.loss(x[:1] + h * u) - landscape.loss(x[:1] - h * u)) / (2 * h)
    assert float(slope) == pytest.approx(float((grad[:1] * u).sum()), rel=1e-7, abs=1e-7)
    curvature = (landscape.loss_and_grad(x[:1] + h * u)[1] - landscape.loss_and_grad(x[:1] - h * u)[1]) / (2 * h)
    torch.testing.assert_close(landscape.hvp(x[:1], u), curvature, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", SPECS[1:3])
def test_minibatch_loss_and_gradient_are_the_brute_force_mean_over_the_same_examples(spec: str) -> None:
    landscape = landbench.make(spec, dtype=F64)
    x = _point(landscape, 3, 2)
    n = landscape.samples
    index = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(s))[:5] for s in range(3)])
    loss, grad = landscape.batch_loss_and_grad(x, index)
    for b in range(3):
        row = x[b : b + 1].clone().requires_grad_(True)
        w = landscape.end_to_end(row)[0]
        terms = [0.5 * ((w @ landscape.inputs[i] - landscape.labels[i]) ** 2).sum() for i in index[b].tolist()]
        value = torch.stack(terms).mean()
        (g,) = torch.autograd.grad(value, row)
        assert float(loss[b]) == pytest.approx(float(value.detach()), rel=1e-12, abs=1e-13)
        torch.testing.assert_close(grad[b], g[0], rtol=1e-10, atol=1e-11)
    # A "minibatch" of all n examples is the full batch.
    everything = torch.arange(n).expand(3, n)
    full_loss, full_grad = landscape.loss_and_grad(x)
    all_loss, all_grad = landscape.batch_loss_and_grad(x, everything)
    torch.testing.assert_close(all_loss, full_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(all_grad, full_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(landscape.example_losses(x, index), landscape.example_losses(x, None).gather(1, index))


def _reduced_rank_regression(a: np.ndarray, y: np.ndarray, rank: int) -> float:
    """min over rank <= r maps B of |A B - Y|^2 / (2n): the least-squares fit projected on the top r
    right singular vectors of its fitted values (Reinsel and Velu, Multivariate Reduced-Rank
    Regression, 1998)."""
    ols, *_ = np.linalg.lstsq(a, y, rcond=None)
    _, _, vt = np.linalg.svd(a @ ols)
    projected = ols @ vt[:rank].T @ vt[:rank]
    return float(((a @ projected - y) ** 2).sum() / (2 * len(a)))


@pytest.mark.parametrize(
    "spec",
    [
        "deep_linear(dim=5, depth=3, width=2, samples=30)",
        "deep_linear(dim=4, depth=2, width=3, samples=25, label_noise=0.5)",
        "deep_linear(dim=4, depth=3, width=6, samples=25, label_noise=0.5)",
        "deep_linear(dim=6, depth=2, width=2, samples=4, label_noise=0.3)",
        "deep_linear(dim=6, depth=3, width=4, samples=4, label_noise=0.3)",
    ],
)
def test_global_minimum_is_the_brute_force_reduced_rank_fit(spec: str) -> None:
    landscape = landbench.make(spec, dtype=F64)
    a, y = landscape.inputs64.numpy(), landscape.labels64.numpy()
    expected = _reduced_rank_regression(a, y, landscape.rank)
    assert landscape.f_star == pytest.approx(expected, rel=1e-10, abs=1e-12)
    minimum = landscape.minima[0]
    loss, grad = landscape.loss_and_grad(minimum.point[None])
    assert float(loss) == pytest.approx(landscape.f_star, rel=1e-10, abs=1e-12)
    assert float(grad.abs().max()) < 1e-10
    if landscape.label_noise == 0:  # noiseless and whitened: the teacher's tail beyond rank r
        tail = landscape.teacher_values[landscape.rank :]
        assert landscape.f_star == pytest.approx(0.5 * sum(s * s for s in tail), rel=1e-12)


def test_known_hessians_match_the_dense_autograd_hessian() -> None:
    for spec in ("deep_linear(dim=3, depth=2, width=4, samples=20)", "deep_linear(dim=3, depth=3, width=2, samples=9)"):
        landscape = landbench.make(spec, dtype=F64)
        for point in [landscape.minima[0], landscape.saddle]:
            eigenvalues = torch.linalg.eigvalsh(dense_hessian(landscape, point.point))
            assert point.lambda_max == pytest.approx(float(eigenvalues.max()), abs=1e-9)
            assert point.lambda_min == pytest.approx(float(eigenvalues.min()), abs=1e-9)
            assert point.trace == pytest.approx(float(eigenvalues.sum()), abs=1e-8)
            assert point.index == int((eigenvalues < -1e-9).sum())
    # Balanced minimum on a whitened noiseless sample: lambda_max = L s_1^(2 - 2/L).
    for depth in (2, 3, 4):
        landscape = landbench.make(f"deep_linear(dim=3, depth={depth}, samples=10)", dtype=F64)
        assert landscape.minima[0].lambda_max == pytest.approx(depth * 4.0 ** (2 - 2 / depth), rel=1e-10)


def test_the_origin_is_a_saddle_of_order_depth_minus_one() -> None:
    # depth 2: a strict saddle, Hessian eigenvalues +-sigma_j(C), each width times.
    two = landbench.make("deep_linear(dim=3, depth=2, width=2, samples=12, label_noise=0.2)", dtype=F64)
    zero = torch.zeros(two.dim, dtype=F64)
    cross = (two.labels64.T @ two.inputs64 / two.samples).numpy()
    sigma = np.linalg.svd(cross, compute_uv=False)
    expected = np.sort(np.concatenate([sigma, -sigma] * 2))
    np.testing.assert_allclose(torch.linalg.eigvalsh(dense_hessian(two, zero)).numpy(), expected, atol=1e-12)
    assert two.saddle.value == pytest.approx(0.5 * float((two.labels64**2).sum(1).mean()), rel=1e-14)
    assert two.saddle.index == 6
    # depth >= 3: zero gradient and Hessian; the loss changes as t^L along a random direction
    # (all derivatives of order < L vanish) and decreases along the aligned one (not a minimum).
    for depth in (3, 4):
        landscape = landbench.make(f"deep_linear(dim=3, depth={depth}, samples=12, init='balanced')", dtype=F64)
        zero = torch.zeros(landscape.dim, dtype=F64)
        _, grad = landscape.loss_and_grad(zero[None])
        assert torch.equal(grad, torch.zeros_like(grad))
        assert float(dense_hessian(landscape, zero).abs().max()) == 0.0
        f0 = landscape.saddle.value
        assert float(landscape.loss(zero[None])) == pytest.approx(f0, rel=1e-14)
        direction = torch.randn(landscape.dim, generator=torch.Generator().manual_seed(3), dtype=F64)
        t = 1e-3
        rise = [float(landscape.loss((s * t * direction)[None])) - f0 for s in (1.0, 2.0)]
        assert rise[1] / rise[0] == pytest.approx(2.0**depth, rel=1e-2)
        aligned = landscape.sample_start([0])  # balanced along the top modes: f(0) - u sum_k s_k + O(u^2)
        assert float(landscape.loss(aligned)) < f0
        assert landscape.saddle.index == 0 and landscape.saddle.lambda_max == 0.0


def test_closed_form_test_loss_matches_monte_carlo() -> None:
    landscape = landbench.make("deep_linear(dim=4, depth=3, width=3, samples=16, label_noise=0.5)", dtype=F64)
    x = _point(landscape, 3, 4)
    generator = torch.Generator().manual_seed(11)
    a = torch.randn(200_000, 4, generator=generator, dtype=F64)
    y = a @ landscape.teacher64.T + 0.5 * torch.randn(200_000, 4, generator=generator, dtype=F64)
    w = landscape.end_to_end(x)
    closed = landscape.test_loss(x)
    for b in range(3):
        losses = 0.5 * ((a @ w[b].T - y) ** 2).sum(1)
        error = float(losses.std()) / math.sqrt(len(losses))
        assert abs(float(losses.mean()) - float(closed[b])) < 5 * error
        assert error < 0.01 * float(closed[b])


def test_balanced_start_has_every_mode_at_u0_and_gaussian_start_has_the_documented_scale() -> None:
    landscape = landbench.make(
        "deep_linear(dim=4, depth=3, width=5, samples=20, init='balanced', init_scale=0.2)", dtype=F64
    )
    x = landscape.sample_start(range(3))
    left, right = landscape.mode_left64, landscape.mode_right64
    projected = torch.einsum("dk,bde,el->bkl", left, landscape.end_to_end(x), right)
    torch.testing.assert_close(projected, (0.2**3 * torch.eye(4, dtype=F64)).expand(3, 4, 4), rtol=0, atol=1e-15)
    layers = landscape.layers(x)  # balanced: W_{l+1}^T W_{l+1} = W_l W_l^T
    for lower, upper in zip(layers, layers[1:]):
        torch.testing.assert_close(upper.transpose(1, 2) @ upper, lower @ lower.transpose(1, 2), rtol=0, atol=1e-15)
    assert not torch.equal(x[0], x[1])  # each run its own hidden frames
    gaussian = landbench.make("deep_linear(dim=40, depth=3, width=60, init_scale=0.5)", dtype=F64)
    first, middle, last = gaussian.layers(gaussian.sample_start(range(4)))
    for layer, fan_in in ((first, 40), (middle, 60), (last, 60)):
        assert float(layer.std()) == pytest.approx(0.5 / math.sqrt(fan_in), rel=0.05)


def test_mode_time_is_the_integral_of_the_flow() -> None:
    for depth in (2, 3, 5):
        for s, u0 in ((3.0, 1e-3), (0.5, 1e-4)):
            half = lambda t, u, s=s: u[0] - s / 2  # noqa: E731
            half.terminal = True
            solution = scipy.integrate.solve_ivp(
                lambda t, u, s=s, depth=depth: depth * u ** (2 - 2 / depth) * (s - u),
                (0.0, 1e4),
                [u0],
                events=half,
                rtol=1e-11,
                atol=1e-14,
            )
            assert mode_time(s, u0, depth) == pytest.approx(float(solution.t_events[0][0]), rel=1e-6)
    # depth 2 is the logistic: half of s at ln(s/u0 - 1) / (2 s).
    assert mode_time(2.0, 1e-3, 2) == pytest.approx(math.log(2.0 / 1e-3 - 1) / 4.0, rel=1e-14)
    assert mode_strength(math.log(2.0 / 1e-3 - 1) / 4.0, 2.0, 1e-3) == pytest.approx(1.0, rel=1e-12)


def _half_steps(landscape: DeepLinear, lr: float, max_steps: int) -> tuple[list[int], list[torch.Tensor]]:
    """Gradient descent from the landscape's own (balanced) start: the first step at which each
    mode's strength u_k = p_k^T W q_k reaches half of s_k, and the strengths after every step."""
    x = landscape.sample_start([0])
    s = landscape.cross_values
    hits: list[int | None] = [None] * len(s)
    path = []
    for step in range(1, max_steps + 1):
        _, grad = landscape.loss_and_grad(x)
        x = x - lr * grad
        u = landscape.mode_strengths(x)[0]
        path.append(u)
        for k, value in enumerate(u.tolist()):
            if hits[k] is None and value >= s[k] / 2:
                hits[k] = step
        if all(h is not None for h in hits):
            return hits, path  # type: ignore[return-value]
    raise AssertionError(f"not every mode was learned within {max_steps} steps: {hits}")


def test_saxe_plateau_times_match_gradient_descent_at_depth_two() -> None:
    """Saxe et al. 2014: from a balanced start of strength u0 each mode follows the sigmoid
    u(t) = s e^{2st} / (e^{2st} - 1 + s/u0), t = lr * steps, and reaches s/2 at ln(s/u0 - 1)/(2s)."""
    lr, scale = 0.002, 0.03
    spec = f"deep_linear(dim=3, depth=2, samples=32, teacher=(3.0, 1.5, 0.75), init='balanced', init_scale={scale})"
    landscape = landbench.make(spec, dtype=F64)
    u0 = scale**2
    hits, path = _half_steps(landscape, lr, 4000)
    for k, s in enumerate((3.0, 1.5, 0.75)):
        theory = math.log(s / u0 - 1) / (2 * s)
        assert hits[k] * lr == pytest.approx(
            theory, rel=0.01, abs=lr
        )  # measured 1.356, 2.476, 4.486 vs 1.352, 2.473, 4.483
        assert landscape.facts()["balanced_half_times"][k] == pytest.approx(theory, rel=1e-12)
        # The whole sigmoid: at a quarter, the half and 1.5x the plateau time.
        for fraction in (0.5, 1.0, 1.5):
            step = round(fraction * theory / lr)
            if step <= len(path):
                assert float(path[step - 1][k]) == pytest.approx(mode_strength(step * lr, s, u0), rel=0.03, abs=2e-3)


def test_saxe_plateau_times_match_gradient_descent_at_depth_three() -> None:
    lr, scale = 0.004, 0.1
    spec = f"deep_linear(dim=2, depth=3, samples=16, teacher=(2.0, 1.0), init='balanced', init_scale={scale})"
    landscape = landbench.make(spec, dtype=F64)
    hits, _ = _half_steps(landscape, lr, 6000)
    for k, s in enumerate((2.0, 1.0)):
        theory = mode_time(s, scale**3, 3)
        assert hits[k] * lr == pytest.approx(theory, rel=0.02, abs=lr)


def test_escape_from_the_origin_in_a_landbench_run_is_saxes() -> None:
    """The engine's escape step (loss halfway from f(0) to f* = 0) on the depth-2 sigmoids, with
    the threshold crossing of 1/2 sum_k (s_k - u_k(t))^2 found by bisection."""
    lr, scale, s = 0.002, 0.03, (3.0, 1.5, 0.75)
    spec = f"deep_linear(dim=3, depth=2, samples=32, teacher={s}, init='balanced', init_scale={scale})"
    records = landbench.run(spec, "sgd(lr=0.002)", seeds=[0], steps=800, dtype="float64", curvature=False)
    origin = 0.5 * sum(v * v for v in s)

    def excess(t: float) -> float:
        return 0.5 * sum((v - mode_strength(t, v, scale**2)) ** 2 for v in s) - origin / 2

    low, high = 0.0, 10.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if excess(middle) > 0 else (low, middle)
    assert records[0]["escape_step"] * lr == pytest.approx(high, rel=0.01, abs=lr)
    assert records[0]["test_loss"] == pytest.approx(records[0]["final_loss"], abs=1e-12)  # noiseless, whitened


def test_gradient_descent_from_random_starts_reaches_the_global_minimum() -> None:
    """Kawaguchi 2016: no spurious local minima, so gradient descent from random starts ends at f*
    (here with a rank-limited width: f* = s_3^2 / 2 > 0)."""
    landscape = landbench.make("deep_linear(dim=3, depth=3, width=2, samples=20, init_scale=1.0)", dtype=F64)
    x = landscape.sample_start(range(6))
    for _ in range(3000):
        _, grad = landscape.loss_and_grad(x)
        x = x - 0.03 * grad
    assert landscape.f_star == pytest.approx(0.5 * 0.5**2, rel=1e-12)
    np.testing.assert_allclose(landscape.loss(x).numpy(), landscape.f_star, rtol=1e-8)


def test_bad_parameters_are_refused_with_what_is_valid() -> None:
    for spec, words in [
        ("deep_linear(dim=2, teacher=(1.0, 2.0))", "non-increasing"),
        ("deep_linear(dim=2, teacher=(3.0, 2.0, 1.0))", "at most dim=2"),
        ("deep_linear(dim=2, teacher=(1.0, -1.0))", "> 0"),
        ("deep_linear(dim=2, depth=1)", "depth"),
        ("deep_linear(dim=2, init='orthogonal')", "init"),
    ]:
        with pytest.raises(SpecError, match=words):
            landbench.make(spec)
    assert DeepLinear.canonical(dim=3, depth=3, width=0) == "deep_linear(dim=3)"
    footprint = DeepLinear.footprint(torch.float32, 2**40, dim=100, samples=1000)
    assert footprint.instance >= 2 * 1000 * 100 * 4


def test_describe_and_facts_are_json_ready() -> None:
    import json

    landscape = landbench.make("deep_linear(dim=3, depth=2, width=2)")
    text = json.dumps(landscape.describe())
    assert "deep_linear" in text and landscape.describe()["saddle"]["value"] == landscape.saddle.value


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_gpu_see_the_same_instance() -> None:
    cpu = landbench.make("deep_linear(dim=5, depth=3, samples=40)", seed=3, dtype=F64)
    gpu = landbench.make("deep_linear(dim=5, depth=3, samples=40)", seed=3, dtype=F64, device="cuda")
    torch.testing.assert_close(gpu.inputs.cpu(), cpu.inputs, rtol=0, atol=0)
    x = cpu.sample_start(range(4))
    torch.testing.assert_close(gpu.sample_start(range(4)).cpu(), x, rtol=0, atol=0)
    torch.testing.assert_close(gpu.loss_and_grad(x.cuda())[1].cpu(), cpu.loss_and_grad(x)[1], rtol=1e-10, atol=1e-12)
    assert gpu.f_star == cpu.f_star
