"""Claim 8 (small_batches): the stated test's branches on data with a known answer, the theory's
formulas against brute force, and the test tier end to end with a resume that recomputes nothing."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from landbench.claims import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, VERDICTS, run_claim
from landbench.claims import small_batches as sb

SIZES = [4, 8, 16, 32, 64]


def synthetic(slope: float, seeds: int = 40, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """values (seeds, B) = slope * log2 B + a per-seed offset + noise: a known trend with log B."""
    rng = np.random.default_rng(seed)
    x = np.log2(np.asarray(SIZES, dtype=float))
    return slope * x[None, :] + rng.normal(0, 1, (seeds, 1)) + spread * rng.normal(0, 1, (seeds, len(SIZES)))


def stats(values: np.ndarray) -> tuple[float, tuple[float, float]]:
    return sb.bootstrap_spearman(values, SIZES, 300, seed=1)


def test_spearman_matches_scipy_and_sees_a_perfect_trend() -> None:
    values = synthetic(1.0)
    x = np.broadcast_to(np.log2(SIZES), values.shape)
    import scipy.stats

    assert sb.spearman(values, SIZES) == pytest.approx(scipy.stats.spearmanr(x.ravel(), values.ravel()).statistic)
    exact = np.tile(np.log2(SIZES), (5, 1))  # the same ranks as log B, ties across seeds
    assert sb.spearman(exact, SIZES) == pytest.approx(1.0)
    values[0, 0] = np.nan  # a missing run is left out
    assert math.isfinite(sb.spearman(values, SIZES))


def test_arm_a_branches() -> None:
    up, down, flat = stats(synthetic(1.0)), stats(synthetic(-1.0, seed=1)), stats(synthetic(0.0, seed=2))
    assert up[1][0] > 0 and down[1][1] < 0 and flat[1][0] < 0 < flat[1][1]
    runs = 200
    assert sb.arm_a_finding("f", runs, SIZES, up, stats(synthetic(0.5, seed=3))).verdict == SUPPORTED
    caveat = sb.arm_a_finding("f", runs, SIZES, up, down)
    assert caveat.verdict == CAVEAT and "falls with B" in caveat.why
    assert sb.arm_a_finding("f", runs, SIZES, down, up).verdict == CAVEAT  # only the gap rises
    assert "no trend" in sb.arm_a_finding("f", runs, SIZES, up, flat).why
    assert sb.arm_a_finding("f", runs, SIZES, down, flat).verdict == NOT_SUPPORTED
    assert sb.arm_a_finding("f", runs, SIZES, flat, flat).verdict == NOT_SUPPORTED
    # thin: few runs, or few batch sizes, or wide intervals from few seeds
    assert sb.arm_a_finding("f", 10, SIZES, up, up).verdict == INCONCLUSIVE
    assert sb.arm_a_finding("f", runs, SIZES[:2], up, up).verdict == INCONCLUSIVE
    few = [stats(synthetic(0.0, seeds=3, spread=3.0, seed=s)) for s in (4, 5)]
    assert max(iv[1] - iv[0] for _, iv in few) > sb.MAX_WIDTH
    assert sb.arm_a_finding("f", 25, SIZES, *few).verdict == INCONCLUSIVE


def test_arm_b_branches() -> None:
    def slope(value: float, seed: int, seeds: int = 60) -> tuple[float, tuple[float, float]]:
        return sb.bootstrap_slope(synthetic(value, seeds=seeds, spread=0.2, seed=seed), SIZES, 300, seed=2)

    a = slope(1.0, 0)
    assert a[0] == pytest.approx(1.0, abs=0.15) and a[1][0] > 0
    assert sb.arm_b_finding("f", 300, SIZES, slope(0.0, 1), a).verdict == SUPPORTED
    assert sb.arm_b_finding("f", 300, SIZES, slope(-1.0, 2), a).verdict == NOT_SUPPORTED
    assert sb.arm_b_finding("f", 300, SIZES, slope(1.0, 3), a).verdict == NOT_SUPPORTED
    # the threshold T = 0.5 |a| = 0.5: a slope of 0.5 straddles it
    assert sb.arm_b_finding("f", 300, SIZES, slope(0.5, 4), a).verdict == INCONCLUSIVE
    # arm (a) without a slope: nothing to compare with
    assert sb.arm_b_finding("f", 300, SIZES, slope(0.0, 5), slope(0.0, 6)).verdict == INCONCLUSIVE
    assert sb.arm_b_finding("f", 10, SIZES, slope(0.0, 1), a).verdict == INCONCLUSIVE


def test_median_slope_is_the_least_squares_slope_of_the_medians() -> None:
    values = np.array([[1.0, 2.0, 4.0], [3.0, 4.0, 5.0], [2.0, 0.0, 9.0]])
    sizes = [2, 8, 32]  # log2: 1, 3, 5; medians 2, 2, 5
    assert sb.median_slope(values, sizes) == pytest.approx(0.75)


def test_stability_line_is_where_gradient_descent_on_a_quadratic_stops_converging() -> None:
    lr = 0.3
    h_line = sb.stability_line(lr)
    assert h_line == pytest.approx(2 / lr)
    for h, stable in ((0.99 * h_line, True), (1.01 * h_line, False)):
        x = 1.0
        for _ in range(2000):
            x -= lr * h * x  # gradient descent on h x^2 / 2
        assert (abs(x) < 1.0) is stable


def test_noise_scale_is_the_covariance_of_a_minibatch_drawn_without_replacement() -> None:
    rng = np.random.default_rng(0)
    n = 7
    g = rng.normal(size=(n, 2))  # per-example gradients
    sigma = np.cov(g.T, bias=True)  # the per-example covariance
    lr = 0.2
    for b in range(1, n + 1):
        means = np.array([g[list(s)].mean(0) for s in itertools.combinations(range(n), b)])
        covariance = np.cov(means.T, bias=True)  # exact: every subset equally likely
        # per unit of time lr: the step's covariance lr^2 Cov / lr
        assert lr * covariance == pytest.approx(sb.noise_scale(lr, b, n) * sigma, abs=1e-12)
    assert sb.noise_scale(lr, n, n) == 0.0


def test_suite_runs_every_batch_size_for_the_same_epochs_in_both_arms() -> None:
    from landbench.suite import parse_suite

    p = {
        "seeds": 2,
        "ts": {"problem": "teacher_student(hidden=3, teacher_hidden=1, samples=20, activation='erf')", "dim": 2,
               "lr": 0.2, "pivot": 5, "batch_sizes": [5, 10, 40], "epochs": 3},
    }  # fmt: skip
    assert sb.family_names(p) == ["ts"]
    suite = parse_suite(sb.suite_text(p, "ts"), "x.toml")
    got = sorted((s.settings.batch_size or 20, sb.lr_of(s.optimizer), s.steps) for s in suite.scenarios())
    # B = 40 > n is dropped; n = 20 is the full batch; at B = pivot the arms coincide
    assert got == [(5, 0.2, 12), (10, 0.2, 6), (10, 0.4, 6), (20, 0.2, 3), (20, 0.8, 3)]


def test_diverged_runs_are_counted_per_batch_size_and_named_in_the_why() -> None:
    records = [
        {"batch_size": 1, "diverged": True, "lr": 1},
        {"batch_size": 1, "diverged": False, "lr": 1},
        {"batch_size": 4, "diverged": False, "lr": 1},
        {"batch_size": 1, "diverged": True, "lr": 2},  # another arm
    ]
    counts = sb.diverged_counts(records, lambda r: r["lr"] == 1)
    assert counts == {1: (1, 2), 4: (0, 1)}
    assert sb.diverged_text(counts) == "; diverged (left out): 1/2 runs at B = 1"
    assert sb.diverged_text({4: (0, 3)}) == ""


def test_deep_linear_minima_differ_in_test_loss_only_off_the_inputs_span() -> None:
    """The premise of deep_linear's setting (n < dim, raw inputs): SGD never moves W_1 on the inputs'
    null space, and maps that agree on the span fit every example exactly but differ in test loss."""
    import torch

    from landbench.landscapes import make

    land = make("deep_linear(dim=6, depth=3, width=4, samples=3, init_scale=1.0)", dtype="float64")
    a, y = land.inputs64, land.labels64
    null = torch.eye(6, dtype=torch.float64) - torch.linalg.pinv(a) @ a
    x = land._sample_start(torch.Generator().manual_seed(0))[None]
    start = land.layers(x)[0][0] @ null
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        index = torch.randint(0, 3, (1, 2), generator=generator)
        x = x - 0.01 * land.batch_loss_and_grad(x, index)[1]
    assert float((land.layers(x)[0][0] @ null - start).abs().max()) < 1e-12
    assert land.known.f_star == 0.0  # interpolation: n = 3 <= width
    w_span = land.end_to_end(land.known.minima[0].point[None])[0]  # the minimum-norm interpolant
    other = w_span + torch.randn(6, 6, dtype=torch.float64, generator=generator) @ null
    for w in (w_span, other):
        assert torch.allclose(a @ w.T, y, atol=1e-10)  # every example fit
    m = land.teacher64
    assert float(((other - m) ** 2).sum()) > float(((w_span - m) ** 2).sum()) + 1.0  # the test loss x 2 differs


def test_test_tier_end_to_end_and_resume(tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = run_claim("small_batches", "test", tmp_path, progress=False, log=lambda line: None)
    measured = outcome.measured
    assert outcome.verdict in VERDICTS
    assert len(measured.findings) == 4 and all(f.verdict in VERDICTS for f in measured.findings)
    assert [f.statistic.split(",")[0] for f in measured.findings] == ["teacher_student"] * 2 + ["deep_linear"] * 2
    assert measured.figures and measured.figures[0].exists()
    json.dumps(measured.data)
    assert list(measured.data) == ["teacher_student", "deep_linear"]
    rows = measured.data["teacher_student"]["arm_a"]
    assert [r["batch_size"] for r in rows] == [8, 32, 64]
    assert all(r["stability_line"] == pytest.approx(2 / 0.3) for r in rows)
    deep = measured.data["deep_linear"]
    assert [r["batch_size"] for r in deep["arm_a"]] == [2, 8]
    assert [r["lr"] for r in deep["arm_b"]] == pytest.approx([0.01 * 2 / 8, 0.01])
    assert [r["steps"] for r in deep["arm_a"]] == [400, 100]  # the same 100 epochs of n = 8
    assert deep["known_lambda_max"] == pytest.approx(42.35, abs=0.01)
    folder = tmp_path / "small_batches"
    stores = [folder / name / "results.jsonl" for name in ("teacher_student", "deep_linear")]
    stored = [path.read_text() for path in stores]
    cache = (folder / "cache.jsonl").read_text()
    again = run_claim("small_batches", "test", tmp_path, progress=False, log=lambda line: None)
    assert [path.read_text() for path in stores] == stored  # nothing rerun
    assert (folder / "cache.jsonl").read_text() == cache
    assert [f.as_dict() for f in again.measured.findings] == [f.as_dict() for f in measured.findings]
