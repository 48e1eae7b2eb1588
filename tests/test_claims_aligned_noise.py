"""Claim 10 (aligned_noise): its closed forms against brute force (autograd Hessians, landbench's own
hessian noise, the family's basin rule), its stated test on synthetic censored data with known answers,
and the test tier end to end (figure, verdicts, a resume that recomputes nothing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landbench.claims import VERDICTS, run_claim
from landbench.claims import aligned_noise as claim
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from landbench.landscapes import make
from landbench.noise import hessian_noise


def _hessian(land, point: torch.Tensor) -> torch.Tensor:
    """Brute force: the autograd Hessian of the loss at one point (float64)."""
    return torch.autograd.functional.hessian(lambda x: land.loss(x[None])[0], point.clone())


@pytest.mark.parametrize("dim", [2, 4])
def test_equal_trace_scale_and_zhu_indicator_against_an_autograd_hessian(dim: int) -> None:
    land = make(f"basins(dim={dim})", dtype="float64")
    facts = claim.geometry(dim)
    narrow = land.basins[1].minimum
    hessian = _hessian(land, narrow.point)
    values = torch.linalg.eigvalsh(hessian)
    assert facts["scale"] == pytest.approx(float(values.sum()) / dim, rel=1e-9)
    sigma = 1.7
    absolute = torch.linalg.eigh(hessian)
    aligned = sigma**2 * (absolute.eigenvectors * absolute.eigenvalues.abs()) @ absolute.eigenvectors.T / facts["scale"]
    isotropic = sigma**2 * torch.eye(dim, dtype=torch.float64)
    zhu = claim.zhu_indicator(facts, sigma)
    # equal total variance at the sharp minimum, and Tr(H Sigma) of each law
    assert float(torch.trace(aligned)) == pytest.approx(dim * sigma**2, rel=1e-9)
    assert zhu["total_variance_aligned"] == pytest.approx(dim * sigma**2, rel=1e-12)
    assert zhu["isotropic"] == pytest.approx(float(torch.trace(hessian @ isotropic)), rel=1e-9)
    assert zhu["aligned"] == pytest.approx(float(torch.trace(hessian @ aligned)), rel=1e-9)
    assert zhu["ratio"] == pytest.approx(zhu["aligned"] / zhu["isotropic"], rel=1e-12)
    assert 1 <= zhu["ratio"] < 1.001  # the narrow well is almost isotropic


def test_landbench_s_hessian_noise_has_the_aligned_covariance_at_the_narrow_minimum() -> None:
    """The engine's law, not ours: hessian_noise is linear in z (exact Krylov for d <= 32), so applied
    to the unit vectors it gives the matrix square root F of |H| / scale; F F is the covariance."""
    dim = 3
    land = make(f"basins(dim={dim})", dtype="float64")
    facts = claim.geometry(dim)
    point = land.basins[1].minimum.point
    root = hessian_noise(land, point.repeat(dim, 1), torch.eye(dim, dtype=torch.float64), facts["scale"])
    covariance = root @ root.T
    hessian = _hessian(land, point)
    torch.testing.assert_close(covariance, hessian / facts["scale"], rtol=1e-9, atol=1e-12)
    assert float(torch.trace(covariance)) == pytest.approx(dim, rel=1e-9)


def test_the_path_mean_curvature_is_twice_the_largest_slope_over_the_distance() -> None:
    land = make("basins(dim=2)", dtype="float64")
    facts = claim.geometry(2)
    for name in ("narrow", "wide"):
        start, end = facts[name]["t"], facts["saddle"]["t"]
        t = np.linspace(min(start, end), max(start, end), 400_001)
        largest = float(np.max(np.abs(land.profile.slope(t))))
        assert facts[name]["path_curvature"] == pytest.approx(2 * largest / abs(end - start), rel=1e-6)


def test_the_temperatures_and_the_kramers_median() -> None:
    facts = claim.geometry(2)
    lr, sigma = 0.05, 3.0
    iso = claim.temperature(facts, "isotropic", "narrow", lr, sigma)
    assert iso == pytest.approx(lr * sigma**2 / 2)
    at_minimum = claim.temperature(facts, "aligned", "narrow", lr, sigma, "minimum")
    assert at_minimum == pytest.approx(iso * facts["narrow"]["along"] / facts["scale"])
    # Eyring-Kramers by hand: |g''(s)|/(2 pi) sqrt(g''(m) tr_m / (|g''(s)| tr_s)) exp(-barrier / T),
    # median ln 2 / (k lr)
    s, m = facts["saddle"], facts["narrow"]
    rate = (
        abs(s["along"]) / (2 * math.pi) * math.sqrt(m["along"] * m["transverse"] / (abs(s["along"]) * s["transverse"]))
    )
    rate *= math.exp(-m["barrier"] / iso)
    assert claim.kramers_median(facts, "isotropic", "narrow", lr, sigma) == pytest.approx(math.log(2) / (rate * lr))
    assert claim.kramers_median(facts, "aligned", "narrow", lr, sigma) > claim.kramers_median(
        facts, "isotropic", "narrow", lr, sigma
    )


def test_in_basin_names_the_wells_as_the_theory_does() -> None:
    """The escape rule's wells are the theory's: each known minimum (at its axis coordinate from
    geometry) lies in its own basin and not the other's, the saddle in neither."""
    land = make("basins(dim=2)", dtype="float64")
    facts = claim.geometry(2)
    points = torch.zeros(3, 2, dtype=torch.float64)
    points[:, 0] = torch.tensor([facts["wide"]["t"], facts["narrow"]["t"], facts["saddle"]["t"]])
    assert claim.in_basin(land, points, "wide").tolist() == [True, False, False]
    assert claim.in_basin(land, points, "narrow").tolist() == [False, True, False]


# --- the stated test on synthetic censored data ---------------------------------------------------


def _times(rng: np.random.Generator, scale: float, n: int, budget: int) -> list[int | None]:
    """Exponential escape steps of the given mean, censored (None) past the budget."""
    draws = np.ceil(rng.exponential(scale, n)).astype(int)
    return [int(d) if d <= budget else None for d in draws]


def _rows(pairs: list[tuple[float, float]], n: int = 200, budget: int = 2000, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k, (aligned, isotropic) in enumerate(pairs):
        row = claim.compare(
            _times(rng, aligned, n, budget), _times(rng, isotropic, n, budget), 400, k, 1 - 0.05 / len(pairs)
        )
        row["sigma"] = float(k + 1)
        rows.append(row)
    return rows


def test_the_stated_test_s_branches_have_the_known_answers() -> None:
    # aligned three times faster at every level: supported
    assert claim.judge(_rows([(100, 300), (50, 150)]), 10, 0.05)[0] == SUPPORTED
    # faster at one level, the same at the other: a caveat
    assert claim.judge(_rows([(100, 300), (150, 150)]), 10, 0.05)[0] == CAVEAT
    # slower: not supported (and, for the wide minimum's finding, supported)
    slower = _rows([(600, 200), (300, 100)])
    assert claim.judge(slower, 10, 0.05)[0] == NOT_SUPPORTED
    assert claim.judge(slower, 10, 0.05, expect="slower")[0] == SUPPORTED
    # the same law with many runs: the interval excludes a 25 % speed-up, so "as fast": not supported
    same = _rows([(100, 100)], n=4000, budget=100_000)
    assert claim.judge(same, 10, 0.05)[0] == NOT_SUPPORTED
    # the same law with few runs: inconclusive
    assert claim.judge(_rows([(100, 100)], n=12, budget=100_000), 5, 0.05)[0] == INCONCLUSIVE
    # fewer than min_escapes escapes of both laws everywhere (all censored): inconclusive
    few = _rows([(1e6, 1e6), (1e6, 2e6)], n=50, budget=100)
    assert max(max(r["escaped"].values()) for r in few) < 10
    assert claim.judge(few, 10, 0.05) == (INCONCLUSIVE, None, "fewer than 10 escapes of both laws at every noise level")


def test_mann_whitney_ranks_censored_runs_after_every_escape() -> None:
    import scipy.stats

    inf = math.inf
    a, b = np.array([1.0, 2.0, 3.0, inf]), np.array([4.0, inf, inf, inf])
    less, greater = claim.mann_whitney(a, b)
    big = 5.0  # any number above every escape gives the same ranks
    expected = scipy.stats.mannwhitneyu(
        np.where(np.isinf(a), big, a), np.where(np.isinf(b), big, b), alternative="less"
    )
    assert less == pytest.approx(expected.pvalue) and less < 0.1 < 0.9 < greater
    assert claim.mann_whitney(np.full(5, inf), np.full(5, inf)) == (1.0, 1.0)


def test_the_median_ratio_of_censored_times() -> None:
    inf = math.inf
    ratio, _ = claim.median_ratio(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]), 200, 0)
    assert ratio == pytest.approx(2.0)
    assert claim.median_ratio(np.array([inf, inf, 1.0]), np.array([1.0, 2.0, 3.0]), 200, 0)[0] == inf
    assert claim.median_ratio(np.array([1.0, 2.0, 3.0]), np.array([inf, inf, 1.0]), 200, 0)[0] == 0.0
    assert math.isnan(claim.median_ratio(np.full(3, inf), np.full(3, inf), 200, 0)[0])


# --- end to end ---------------------------------------------------------------------------------


def test_the_test_tier_runs_draws_and_resumes_without_recomputing(tmp_path, monkeypatch) -> None:
    outcome = run_claim("aligned_noise", "test", tmp_path, log=lambda line: None)
    measured = outcome.measured
    assert len(measured.findings) == 3 and all(f.verdict in VERDICTS for f in measured.findings)
    assert outcome.verdict == measured.findings[0].verdict  # the fair (saddle) arm decides
    assert measured.findings[0].statistic.startswith("sharp escape direction (saddle family)")
    assert measured.figures[0].exists() and measured.figures[0].stat().st_size > 10_000
    assert {"narrow", "wide", "zhu_indicator", "scale", "sharp"} <= set(measured.data)
    assert measured.data["sharp"]["zhu_indicator"]["ratio"] > 1.5
    cache = tmp_path / "aligned_noise" / "cache.jsonl"
    before = cache.read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(claim, "escape_steps", refuse)
    monkeypatch.setattr(claim, "geometry", refuse)
    monkeypatch.setattr(claim, "saddle_escape_steps", refuse)
    monkeypatch.setattr(claim, "saddle_geometry", refuse)
    again = run_claim("aligned_noise", "test", tmp_path, log=lambda line: None)
    assert cache.read_bytes() == before
    assert [f.as_dict() for f in again.measured.findings] == [f.as_dict() for f in measured.findings]


# --- the fair arm: saddle(dim=2, index=1), sharp along its escape direction -----------------------

GAMMA, MU, QUARTIC = 4.0, 0.25, 4.0


def test_the_saddle_arm_s_scale_and_zhu_indicator_against_an_autograd_hessian() -> None:
    facts = claim.saddle_geometry(GAMMA, MU, QUARTIC)
    land = make(facts["family"], dtype="float64")
    point = torch.tensor([facts["sharp"]["t"], 0.0], dtype=torch.float64)
    # +m is a minimum: zero gradient, and the barrier is f(saddle) - f(+m)
    _, grad = land.loss_and_grad(point[None])
    assert float(grad.abs().max()) < 1e-12
    barrier = float(land.loss(torch.zeros(1, 2, dtype=torch.float64))[0] - land.loss(point[None])[0])
    assert facts["sharp"]["barrier"] == pytest.approx(barrier, rel=1e-12)
    hessian = _hessian(land, point)
    values = torch.linalg.eigvalsh(hessian)
    assert facts["scale"] == pytest.approx(float(values.sum()) / 2, rel=1e-12)
    assert (facts["sharp"]["along"], facts["sharp"]["transverse"]) == pytest.approx(
        (float(hessian[0, 0]), float(hessian[1, 1])), rel=1e-12
    )
    sigma = 1.3
    aligned = sigma**2 * hessian.abs() / facts["scale"]  # H is diagonal and positive here: |H| = H
    isotropic = sigma**2 * torch.eye(2, dtype=torch.float64)
    zhu = claim.zhu_indicator(facts, sigma, start="sharp")
    assert float(torch.trace(aligned)) == pytest.approx(2 * sigma**2, rel=1e-12)
    assert zhu["isotropic"] == pytest.approx(float(torch.trace(hessian @ isotropic)), rel=1e-12)
    assert zhu["aligned"] == pytest.approx(float(torch.trace(hessian @ aligned)), rel=1e-12)
    # sharp along the escape axis: the aligned indicator is larger, 2 tr(H^2) / (tr H)^2 = 1.8825
    assert zhu["ratio"] == pytest.approx(2 * (64 + 0.0625) / 8.25**2, rel=1e-12) and zhu["ratio"] > 1.8
    # and the engine's hessian law has that covariance at +m
    root = hessian_noise(land, point.repeat(2, 1), torch.eye(2, dtype=torch.float64), facts["scale"])
    torch.testing.assert_close(root @ root.T, aligned / sigma**2, rtol=1e-9, atol=1e-12)


def test_the_saddle_arm_s_path_curvature_and_kramers_medians_in_closed_form() -> None:
    facts = claim.saddle_geometry(GAMMA, MU, QUARTIC)
    # mean of |3 q t^2 - gamma| over [0, m]: 2 |f'(m / sqrt 3)| / m = 4 gamma / (3 sqrt 3)
    assert facts["sharp"]["path_curvature"] == pytest.approx(4 * GAMMA / (3 * math.sqrt(3)), rel=1e-8)
    lr, sigma = 0.05, 3.0
    iso = lr * sigma**2 / 2
    rate = (
        GAMMA / (2 * math.pi) * math.sqrt(2 * GAMMA * MU / (GAMMA * MU)) * math.exp(-(GAMMA**2) / (4 * QUARTIC) / iso)
    )
    assert claim.kramers_median(facts, "isotropic", "sharp", lr, sigma) == pytest.approx(math.log(2) / (rate * lr))
    # path average below the isotropic variance (slower), the local picture above it (faster)
    assert claim.kramers_median(facts, "aligned", "sharp", lr, sigma) > claim.kramers_median(
        facts, "isotropic", "sharp", lr, sigma
    )
    assert claim.kramers_median(facts, "aligned", "sharp", lr, sigma, "minimum") < claim.kramers_median(
        facts, "isotropic", "sharp", lr, sigma
    )


def test_the_saddle_arm_s_escape_rule() -> None:
    facts = claim.saddle_geometry(GAMMA, MU, QUARTIC)
    # no noise: SGD sits exactly at +m, never escapes (censored)
    still = claim.saddle_escape_steps(facts, "gaussian", 0.0, 0.05, 50, range(3))
    assert still == {"steps": [None, None, None], "diverged": 0}
    # loud noise: every run crosses x_1 <= 0 at some step > 0
    loud = claim.saddle_escape_steps(facts, "gaussian", 6.0, 0.05, 2000, range(8))
    assert all(s is not None and s > 0 for s in loud["steps"])
