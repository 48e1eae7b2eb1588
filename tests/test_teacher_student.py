"""teacher_student: a soft committee machine learning a teacher on Gaussian inputs.

Every fact is checked against an independent computation: the closed-form gradients and
Hessian-vector products against autograd and central differences (float64), the minibatch loss
against a brute-force mean, the closed-form population loss (both kernels) against Monte Carlo on
fresh inputs and its closed-form gradient against autograd, the global minimum (value 0, zero
gradient, Hessian summary) against a dense autograd Hessian, and Safran and Shamir's spurious
minima (slow) against seeded gradient-descent runs.
"""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

import landbench
import landbench.minibatch
from landbench.errors import SpecError
from landbench.landscapes.teacher_student import (
    STUCK_LOSS,
    TeacherStudent,
    describe_stuck,
    summarize_stuck,
)

SMALL = [
    "teacher_student(dim=5, hidden=3, teacher_hidden=3, samples=64, activation='erf')",
    "teacher_student(dim=5, hidden=4, teacher_hidden=2, samples=64, activation='erf', rotate=True)",
    "teacher_student(dim=5, hidden=3, teacher_hidden=3, samples=64, activation='relu')",
    "teacher_student(dim=4, hidden=5, teacher_hidden=3, samples=64, activation='relu', rotate=True)",
]


def _make(spec: str, seed: int = 0) -> TeacherStudent:
    landscape = landbench.make(spec, seed=seed, dtype=torch.float64)
    assert isinstance(landscape, TeacherStudent)
    return landscape


def _points(landscape: TeacherStudent, runs: int = 4, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = landscape.sample_start(range(runs))
    return x + 0.3 * torch.randn(x.shape, generator=generator, dtype=torch.float64)


def _brute_losses(landscape: TeacherStudent, x: torch.Tensor) -> torch.Tensor:
    """Per-example losses from an explicit loop over units, independent of the batched code: (B, n)."""
    a = landscape.inputs
    act = (lambda z: torch.erf(z / math.sqrt(2.0))) if landscape.activation == "erf" else torch.relu
    w = x.reshape(x.shape[0], landscape.hidden, landscape.data_dim)
    student = sum(act(a @ w[:, k].T).T for k in range(landscape.hidden))
    teacher = sum(act(a @ landscape.teacher[j]) for j in range(landscape.teacher_hidden))
    return 0.5 * (student - teacher) ** 2


def test_dimensions_and_parameters() -> None:
    landscape = _make("teacher_student(dim=7, hidden=3, teacher_hidden=2, samples=50)")
    assert landscape.data_dim == 7 and landscape.dim == 21
    facts = landscape.facts()
    assert facts["data_dim"] == 7 and facts["search_dim"] == 21
    assert landscape.inputs.shape == (50, 7) and landscape.labels.shape == (50,)
    assert landscape.sample_start([0, 1]).shape == (2, 21)
    with pytest.raises(SpecError, match="dim >= teacher_hidden"):
        landbench.make("teacher_student(dim=3, teacher_hidden=4)")
    with pytest.raises(SpecError, match="activation"):
        landbench.make("teacher_student(dim=3, hidden=2, teacher_hidden=2, activation='tanh')")


def test_teacher_is_orthonormal_and_labels_are_the_teachers() -> None:
    for spec in SMALL:
        landscape = _make(spec)
        v = landscape.teacher
        torch.testing.assert_close(v @ v.T, torch.eye(v.shape[0], dtype=torch.float64), rtol=0, atol=1e-12)
        if "rotate" not in spec:
            assert torch.equal(v, torch.eye(landscape.data_dim, dtype=torch.float64)[: v.shape[0]])
        act = (lambda z: torch.erf(z / math.sqrt(2.0))) if landscape.activation == "erf" else torch.relu
        torch.testing.assert_close(landscape.labels, act(landscape.inputs @ v.T).sum(1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", SMALL)
def test_loss_gradient_and_hvp_match_autograd(spec: str) -> None:
    landscape = _make(spec)
    x = _points(landscape)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(landscape.example_losses(x, None), _brute_losses(landscape, x), rtol=1e-12, atol=1e-12)
    loss, grad = landscape.loss_and_grad(x)
    auto_loss, auto_grad = landbench.Landscape.loss_and_grad(landscape, x)
    torch.testing.assert_close(loss, auto_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(landscape.hvp(x, v), landbench.Landscape.hvp(landscape, x, v), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("spec", SMALL)
def test_gradient_and_hvp_match_central_differences(spec: str) -> None:
    landscape = _make(spec)
    x = _points(landscape, runs=1, seed=3)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    v /= v.norm()
    h = 1e-6
    _, grad = landscape.loss_and_grad(x)
    slope = (landscape.loss(x + h * v) - landscape.loss(x - h * v)) / (2 * h)
    assert float(slope) == pytest.approx(float((grad * v).sum()), rel=1e-7, abs=1e-9)
    h = 1e-5  # relu: the steps must not move any pre-activation across its kink at 0
    z = landscape.inputs @ x.reshape(landscape.hidden, landscape.data_dim).T
    assert float(z.abs().min()) > 2 * h * float(landscape.inputs.norm(dim=1).max())
    curvature = (landscape.loss_and_grad(x + h * v)[1] - landscape.loss_and_grad(x - h * v)[1]) / (2 * h)
    torch.testing.assert_close(landscape.hvp(x, v), curvature, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", SMALL[1::2])
def test_minibatch_loss_and_gradient_are_brute_force_means(spec: str) -> None:
    landscape = _make(spec)
    x = _points(landscape, runs=3)
    minibatches = landbench.minibatch.Minibatches(0, [0, 1, 2], landscape.samples, 8, "cpu")
    for _ in range(3):
        index = minibatches.next()
        loss, grad = landscape.batch_loss_and_grad(x, index)
        for b in range(3):
            row = x[b : b + 1].clone().requires_grad_(True)
            brute = _brute_losses(landscape, row)[0, index[b]].mean()
            (brute_grad,) = torch.autograd.grad(brute, row)
            assert float(loss[b]) == pytest.approx(float(brute.detach()), rel=1e-12)
            torch.testing.assert_close(grad[b], brute_grad[0], rtol=1e-10, atol=1e-12)
    full = landscape.batch_loss_and_grad(x, torch.arange(landscape.samples).expand(3, -1))
    torch.testing.assert_close(full[0], landscape.loss_and_grad(x)[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(full[1], landscape.loss_and_grad(x)[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_population_loss_matches_monte_carlo(activation: str) -> None:
    """The closed form against the mean loss over 200000 fresh inputs (not the instance's), within
    five standard errors, at starts, a perturbed teacher and a point with a zero row."""
    landscape = _make(f"teacher_student(dim=6, hidden=4, teacher_hidden=3, samples=32, activation='{activation}')")
    x = _points(landscape, runs=3)
    near = landscape.minima[0].point[None] + 0.2 * torch.randn(
        1, landscape.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    x = torch.cat(
        [
            x,
            near,
            torch.cat([x[:1, : 3 * landscape.data_dim], torch.zeros(1, landscape.data_dim, dtype=torch.float64)], 1),
        ]
    )
    closed = landscape.test_loss(x)
    generator = torch.Generator().manual_seed(12345)
    a = torch.randn(200_000, landscape.data_dim, generator=generator, dtype=torch.float64)
    act = (lambda z: torch.erf(z / math.sqrt(2.0))) if activation == "erf" else torch.relu
    w = x.reshape(x.shape[0], landscape.hidden, landscape.data_dim)
    y = act(a @ landscape.teacher.T).sum(1)
    losses = 0.5 * (act(torch.einsum("nd,bkd->bnk", a, w)).sum(2) - y) ** 2  # (B, N)
    mean, error = losses.mean(1), losses.std(1) / math.sqrt(a.shape[0])
    assert torch.all((closed - mean).abs() <= 5 * error), (closed, mean, error)
    assert torch.all(error < 0.02 * mean)  # the check has teeth: errors of a percent of the loss


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_population_gradient_matches_autograd_and_differences(activation: str) -> None:
    landscape = _make(f"teacher_student(dim=6, hidden=5, teacher_hidden=3, samples=16, activation='{activation}')")
    x = _points(landscape, runs=4)
    value, grad = landscape.test_loss_and_grad(x)
    with torch.enable_grad():
        row = x.clone().requires_grad_(True)
        auto_value = landscape.test_loss(row)
        (auto_grad,) = torch.autograd.grad(auto_value.sum(), row)
    torch.testing.assert_close(value, auto_value.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-9, atol=1e-12)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    h = 1e-6
    slope = (landscape.test_loss(x + h * v) - landscape.test_loss(x - h * v)) / (2 * h)
    torch.testing.assert_close(slope, (grad * v).sum(1), rtol=1e-7, atol=1e-9)
    # the kernels' known values: K(u, u) = |u|^2 / 2 (relu), (2/pi) arcsin(|u|^2 / (1 + |u|^2)) (erf)
    u = x.reshape(4, 5, 6)[:, :1]
    diagonal = landscape._kernel(u, u, same=True)[:, 0, 0]
    nu = (u * u).sum((1, 2))
    expected = 0.5 * nu if activation == "relu" else (2 / math.pi) * torch.asin(nu / (1 + nu))
    torch.testing.assert_close(diagonal, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("spec", SMALL)
def test_global_minimum_is_the_teacher(spec: str) -> None:
    """Value 0 (training and population), zero gradient (both), and the Hessian summary against a
    dense autograd Hessian."""
    landscape = _make(spec)
    assert landscape.f_star == 0.0
    (minimum,) = landscape.minima
    point = minimum.point[None]
    loss, grad = landscape.loss_and_grad(point)
    test, test_grad = landscape.test_loss_and_grad(point)
    assert float(loss) == 0.0 and float(grad.abs().max()) == 0.0
    assert abs(float(test)) < 1e-14 and float(test_grad.abs().max()) < 1e-13
    # a permutation of the units is a global minimum too
    rows = point.reshape(landscape.hidden, landscape.data_dim)
    assert float(landscape.loss(rows.flip(0).reshape(1, -1))) < 1e-30  # rounding of another summation order
    if landscape.activation == "relu" and landscape.hidden > landscape.teacher_hidden:
        assert minimum.lambda_max is None  # once differentiable only across a zero row
        return
    hessian = torch.autograd.functional.hessian(lambda z: landscape.loss(z[None])[0], minimum.point)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert minimum.lambda_max == pytest.approx(float(eigenvalues[-1]), rel=1e-10)
    assert minimum.lambda_min == pytest.approx(float(eigenvalues[0]), rel=1e-8, abs=1e-12)
    assert minimum.trace == pytest.approx(float(hessian.trace()), rel=1e-12)
    assert float(eigenvalues[0]) > -1e-12  # a minimum: positive semi-definite


def test_same_seed_same_instance_and_data_depend_on_dim_and_samples_only() -> None:
    spec = "teacher_student(dim=5, hidden=3, teacher_hidden=2, samples=40, rotate=True)"
    one, two = _make(spec), _make(spec)
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.teacher, two.teacher)
    other = _make(spec, seed=1)
    assert not torch.equal(one.inputs, other.inputs) and not torch.equal(one.teacher, other.teacher)
    erf = _make("teacher_student(dim=5, hidden=4, teacher_hidden=2, samples=40, activation='erf', rotate=True)")
    assert torch.equal(one.inputs, erf.inputs) and torch.equal(one.teacher, erf.teacher)
    single = landbench.make(spec, dtype=torch.float32)
    assert torch.equal(single.inputs, one.inputs.float())  # drawn in float64 on the CPU, then cast
    assert torch.equal(one.sample_start([3]), two.sample_start([3]))


def test_stuck_field_and_summary() -> None:
    landscape = _make("teacher_student(dim=4, hidden=3, teacher_hidden=3, samples=64)")
    teacher = landscape.minima[0].point[None]
    start = landscape.sample_start([0])
    x = torch.cat([teacher, start, start])
    fields = landscape.record_fields(x, None, torch.tensor([False, False, True]))
    assert fields["stuck"] == [False, None, None]  # at the teacher; still moving; diverged
    records = [
        {"stuck": True, "diverged": False},
        {"stuck": False, "diverged": False},
        {"stuck": None, "diverged": False},
        {"stuck": None, "diverged": True},
    ]
    summary = summarize_stuck(records)
    assert summary["stuck"] == 1 and summary["reached"] == 1 and summary["moving"] == 1 and summary["diverged"] == 1
    assert summary["stuck_share"] == 0.25 and summary["stuck_share_settled"] == 0.5
    assert describe_stuck(summary) == "stuck 25% (1/4; 1 moving)"
    assert [f.name for f in TeacherStudent.outcome_fields] == ["stuck"]


def test_stuck_is_null_without_a_known_global_minimum() -> None:
    """With fewer units than the teacher f* is unknown: no run can be called stuck above it."""
    spec = "teacher_student(dim=4, hidden=1, teacher_hidden=3, samples=64)"
    records = landbench.run(spec, "sgd(lr=0.5)", seeds=3, steps=200)
    assert all(r["stuck"] is None for r in records)


def test_runs_through_the_engine_and_record_stuck() -> None:
    """Through ``landbench.run``: every run settles (300 steps of GD on 64 examples) and ``stuck``
    agrees with the record's training loss. (With so few examples the training loss has spurious
    minima of its own even at k = 3: run 0 settles in one, population loss 0.038.)"""
    records = landbench.run(
        "teacher_student(dim=4, hidden=3, teacher_hidden=3, samples=64)", "sgd(lr=0.5)", seeds=4, steps=300
    )
    assert all(r["stuck"] is not None for r in records)
    assert all(r["stuck"] == (r["final_loss"] > STUCK_LOSS) for r in records)
    assert any(r["stuck"] is False for r in records)


def test_a_weight_of_inf_is_a_divergence_though_erf_saturates() -> None:
    """erf(+-inf) = +-1 keeps the training loss finite at an infinite weight; the run still diverged
    (a loss of NaN from there on), is recorded so, and holds nothing; the others are untouched."""
    spec = "teacher_student(dim=3, hidden=2, teacher_hidden=2, activation='erf')"
    hit = landbench.run(spec, "adversarial:NaNAtStepSGD(lr=0.05, at=10, value='inf')", seeds=8, steps=40)
    plain = landbench.run(spec, "sgd(lr=0.05)", seeds=8, steps=40)
    start = landbench.make(spec).sample_start(range(8))
    for record, alone, positive in zip(hit, plain, (start[:, 0] > 0).tolist()):
        if positive:  # infinite weights from step 10
            assert record["diverged"] and record["diverged_step"] == 10 and record["final_loss"] is None
            assert record["reach_steps"] == [None] * len(record["targets"]) and record["stuck"] is None
        else:
            assert not record["diverged"] and record["final_loss"] == alone["final_loss"]


def test_population_loss_at_huge_weights_is_the_sign_units_in_float32() -> None:
    """As |w| grows, erf(w.a / sqrt 2) becomes sign(w.a), whose kernel is ``(2/pi) asin(cos angle)``
    against another sign unit and ``(2/pi) asin(w.v / (|w| sqrt(1 + |v|^2)))`` against a teacher unit.
    At |w| ~ 1e36 the float32 formula's ``1 + |w|^2`` would overflow: the loss is computed in float64."""
    landscape = landbench.make("teacher_student(dim=3, hidden=2, teacher_hidden=2, activation='erf')")
    x = landscape.sample_start([0, 1]) * 1e36
    w, v = x.double().reshape(2, 2, 3), landscape.teacher.double()
    unit = w / w.norm(dim=2, keepdim=True)
    own = (2 / math.pi) * torch.asin((unit @ unit.transpose(1, 2)).clamp(-1, 1)).sum((1, 2))
    cross = (2 / math.pi) * torch.asin(unit @ v.T / torch.sqrt(1 + (v * v).sum(1))).sum((1, 2))
    limit = 0.5 * own - cross + landscape.teacher_term
    assert landscape.test_loss(x).dtype == torch.float32
    assert landscape.test_loss(x).tolist() == pytest.approx(limit.tolist(), rel=1e-6)
    # the limit depends on the directions only, so s * grad(s w) tends to a constant: in float64 up
    # to |w| ~ 1e300 (no overflow in 1 + |w|^2), and without the cancellation of c -> 1 (|w| > 1e8)
    landscape64 = landbench.make(
        "teacher_student(dim=3, hidden=2, teacher_hidden=2, activation='erf')", dtype="float64"
    )
    w = landscape64.sample_start([0])
    scaled = [s * landscape64.test_loss_and_grad(s * w)[1] for s in (1e10, 1e160, 1e300)]
    for grad in scaled[1:]:
        assert torch.allclose(grad, scaled[0], rtol=1e-6, atol=0.0)
    losses = [float(landscape64.test_loss(s * w)) for s in (1e10, 1e160, 1e300)]
    # K(w, w) = 1 - (4/pi) asin(1 / (|w| sqrt 2)) + ...: 1e-10 from its limit at |w| = 1e10, in closed form
    assert losses[1] == pytest.approx(losses[2], rel=1e-14) and losses[0] == pytest.approx(losses[1], rel=1e-9)


def _gradient_descent(spec: str, seeds: int, steps: int, lr: float) -> list[bool | None]:
    landscape = landbench.make(spec, dtype=torch.float32)
    x = landscape.sample_start(range(seeds))
    for _ in range(steps):
        _, grad = landscape.loss_and_grad(x)
        x -= lr * grad
    return landscape.record_fields(x, None, torch.zeros(seeds, dtype=torch.bool))["stuck"]


@pytest.mark.slow
def test_spurious_minima_are_common_without_over_parameterisation() -> None:
    """Safran and Shamir 2018: relu, orthonormal teacher of k = 10 units, Xavier-like starts, full-batch
    GD. With hidden = k a share of the runs settle in spurious minima; with hidden = k + 2 fewer
    (one-sided Fisher exact test). Seeded: the same runs every time. 2 x 48 runs x 3000 steps: about
    7 minutes on a loaded 2-core machine."""
    k, n, seeds, steps = 10, 2000, 48, 3000
    exact = _gradient_descent(
        f"teacher_student(dim={k}, hidden={k}, teacher_hidden={k}, samples={n})", seeds, steps, 0.5
    )
    over = _gradient_descent(
        f"teacher_student(dim={k}, hidden={k + 2}, teacher_hidden={k}, samples={n})", seeds, steps, 0.5
    )
    stuck_exact, stuck_over = sum(s is True for s in exact), sum(s is True for s in over)
    assert sum(s is None for s in exact + over) <= 2  # the budget lets the runs settle
    _, p = scipy.stats.fisher_exact([[stuck_exact, seeds - stuck_exact], [stuck_over, seeds - stuck_over]], "greater")
    assert stuck_exact >= 8 and p < 0.01, (stuck_exact, stuck_over, p)
