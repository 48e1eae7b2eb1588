"""Claims 1 (saddles) and 2 (rare_minima): the test tiers end to end, resumed from the cache; the
done-when criterion of issue 13 checked on the finder's own block at d = 20 (the test tier is too small)
against an independent semicircle law (numerical integration); an independent autograd check of the
sampled points; the stated tests' rules on hand-made bins."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import landbench
import landbench.critical
from landbench.claims import VERDICTS, run_claim
from landbench.claims import _critical_data as critical_data
from landbench.claims.rare_minima import fit, kac_rice_share


def semicircle_fraction(t: float) -> float:
    """The share of the semicircle law on [-1, 1] below t, by quadrature of its density (2/pi) sqrt(1 - x^2)."""
    t = min(1.0, max(-1.0, t))
    return quad(lambda x: 2.0 / math.pi * math.sqrt(max(0.0, 1.0 - x * x)), -1.0, t)[0]


@pytest.fixture(scope="module")
def saddles(tmp_path_factory):
    critical_data._MEMO.clear()
    out = tmp_path_factory.mktemp("claims")
    return out, run_claim("saddles", "test", out, log=lambda line: None)


def blocks(folder) -> list[dict]:
    return [json.loads(line)["value"] for line in (folder / "cache.jsonl").read_text().splitlines()]


def test_saddles_test_tier_runs_and_resumes_from_its_cache(saddles, monkeypatch) -> None:
    out, outcome = saddles
    assert outcome.verdict in VERDICTS
    assert all(f.verdict in VERDICTS for f in outcome.measured.findings)
    assert outcome.measured.figures and outcome.measured.figures[0].exists()
    critical_data._MEMO.clear()

    def refuse(*args, **kwargs):
        raise AssertionError("critical_points called on a resumed run")

    monkeypatch.setattr(landbench.critical, "critical_points", refuse)
    again = run_claim("saddles", "test", out, log=lambda line: None)
    assert [f.as_dict() for f in again.measured.findings] == [f.as_dict() for f in outcome.measured.findings]


@pytest.fixture(scope="module")
def field_d20() -> dict:
    """The finder's own block at d = 20 (the claim's test tier is too small for the law): 128 random starts
    on gaussian_field(dim=20), instance 0, as the saddles claim computes its blocks."""
    return critical_data.compute_block("gaussian_field(dim=20)", 0, 0, 128, 0, 500)


def test_index_fraction_follows_the_semicircle_law_at_d_20(field_d20) -> None:
    """Done when: on the Gaussian field at d >= 20, in every value bin (t = u/(2 sqrt d), width 0.2)
    with at least 30 points, |mean index fraction - mean law over the bin's points| <= 0.05."""
    d = field_d20["dim"]
    assert d == 20
    bins: dict[int, list[tuple[float, float]]] = {}
    for value, index, *_ in field_d20["points"]:
        t = value / (2 * math.sqrt(d))
        bins.setdefault(math.floor(t / 0.2), []).append((index / d, semicircle_fraction(t)))
    full = [members for members in bins.values() if len(members) >= 30]
    assert full, f"no bin with 30 points among {len(field_d20['points'])}"
    for members in full:
        measured, law = np.mean(members, axis=0)
        assert abs(measured - law) <= 0.05, (measured, law, len(members))


def _bin(difference: float, stderr: float, count: int = 40) -> dict:
    return {
        "dim": 20,
        "low": 0.0,
        "high": 0.1,
        "count": count,
        "measured": 0.5 + difference,
        "law": 0.5,
        "difference": difference,
        "stderr": stderr,
    }


def test_law_finding_needs_three_bins_and_a_narrow_interval() -> None:
    from landbench.claims.saddles import law_finding

    assert law_finding([_bin(0.01, 0.01)] * 2, 0.05, "x", 30).verdict == "inconclusive"
    good = law_finding([_bin(0.01, 0.01), _bin(-0.03, 0.01), _bin(0.02, 0.01)], 0.05, "x", 30)
    assert good.verdict == "supported" and good.value == pytest.approx(0.03)
    assert good.interval == pytest.approx((0.03 - 1.96 * 0.01, 0.03 + 1.96 * 0.01))
    bad = law_finding([_bin(0.01, 0.01), _bin(0.12, 0.01), _bin(0.02, 0.01)], 0.05, "x", 30)
    assert bad.verdict == "not supported"
    wide = law_finding([_bin(0.01, 0.01), _bin(0.03, 0.04), _bin(0.02, 0.01)], 0.05, "x", 30)
    assert wide.verdict == "inconclusive"


def _autograd(landscape, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x.to(torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        return landscape.loss(v[None])[0]

    grad = torch.autograd.functional.jacobian(f, x)
    hessian = torch.autograd.functional.hessian(f, x)
    hessian = 0.5 * (hessian + hessian.T)
    if landscape.constrained:  # Riemannian: P (grad^2 f - (x.g/|x|^2) I) P on the tangent space
        d = x.numel()
        q, _ = torch.linalg.qr(torch.cat([x[:, None], torch.eye(d, dtype=x.dtype)], dim=1))
        frame = q[:, 1:]
        hessian = frame.T @ (hessian - (x @ grad) / (x @ x) * torch.eye(d, dtype=x.dtype)) @ frame
        grad = grad - (x @ grad) / (x @ x) * x
    return float(grad.norm()), torch.linalg.eigvalsh(hessian)


def test_sampled_critical_points_pass_the_autograd_check(saddles) -> None:
    out, _ = saddles
    checked = 0
    for b in blocks(out / "saddles"):
        landscape = landbench.make(b["spec"], seed=b["instance"], dtype=torch.float64)
        for s in b["sample"]:
            grad_norm, eigenvalues = _autograd(landscape, torch.tensor(s["x"], dtype=torch.float64))
            assert grad_norm < 1e-7, (b["spec"], s["value"], grad_norm)
            assert int((eigenvalues < -1e-6 * eigenvalues.abs().max()).sum()) == s["index"]
            assert float(landscape.loss(torch.tensor([s["x"]], dtype=torch.float64))[0]) == pytest.approx(s["value"])
            checked += 1
    assert checked >= 8


def test_semicircle_cdf_matches_quadrature() -> None:
    for t in (-1.5, -1.0, -0.7, -0.2, 0.0, 0.3, 0.9, 1.0, 2.0):
        assert critical_data.semicircle_cdf(t) == pytest.approx(semicircle_fraction(t), abs=1e-9)


def test_kac_rice_share_in_one_dimension_is_one_half() -> None:
    """d = 1: H = -u + G ~ N(0, 3) is symmetric, so minima are half the critical points; d = 2: the
    Monte Carlo agrees with itself across seeds."""
    assert kac_rice_share(1, 4000, 0) == pytest.approx(0.5, abs=0.03)
    assert kac_rice_share(2, 4000, 0) == pytest.approx(kac_rice_share(2, 4000, 1), abs=0.03)


def test_binomial_fit_recovers_a_known_slope() -> None:
    ds = np.arange(2, 9)
    n = np.full(len(ds), 200000)
    k = np.round(n * np.exp(-0.3 - 0.8 * ds)).astype(int)
    a, b, _ = fit(ds, k, n, 1)
    assert b == pytest.approx(-0.8, abs=0.02) and a == pytest.approx(-0.3, abs=0.1)


def test_rare_minima_test_tier_runs(tmp_path) -> None:
    outcome = run_claim("rare_minima", "test", tmp_path, log=lambda line: None)
    assert outcome.verdict in VERDICTS
    assert outcome.measured.figures[0].exists()
    rows = outcome.measured.data["by_dim"]
    assert all(r["critical_points"] > 0 and 0 <= r["wilson"][0] <= r["wilson"][1] <= 1 for r in rows)


def test_rare_minima_rate_rule_needs_a_narrow_interval() -> None:
    from landbench.claims.base import CAVEAT, INCONCLUSIVE, SUPPORTED
    from landbench.claims.rare_minima import MAX_RATE_WIDTH, rate_finding

    ln2 = math.log(2.0)
    assert MAX_RATE_WIDTH == ln2 / 2
    assert rate_finding(0.7, (0.6, 0.8), False).verdict == SUPPORTED  # ln 2 inside, 0.2 wide
    assert rate_finding(0.86, (0.73, 0.99), False).verdict == CAVEAT  # ln 2 outside, 0.26 wide
    assert rate_finding(0.7, (0.5, 0.5 + MAX_RATE_WIDTH), False).verdict == INCONCLUSIVE  # not narrower
    assert rate_finding(0.7, (0.5, 0.9), False).verdict == INCONCLUSIVE  # 0.4 wide
    assert rate_finding(0.7, (0.6, 0.8), True).verdict == INCONCLUSIVE  # no decay to compare
    assert rate_finding(0.7, (math.nan, math.nan), False).verdict == INCONCLUSIVE
    assert rate_finding(0.7, (0.6, 0.8), False, " note").why.endswith(" note")


def test_the_slope_profile_interval_covers_a_known_slope_with_zero_counts() -> None:
    """share = exp(-0.3 - 0.7 d) at d = 2..14, 3000 critical points each: the counts at large d are mostly
    0. The interval's ends are where the profile likelihood (maximised over a on a brute-force grid) drops
    by 3.841/2, and over 40 seeded draws it covers the true slope about 95 % of the time."""
    from landbench.claims.rare_minima import CHI2_95, loglik, slope_profile_interval

    ds, n = np.arange(2, 15), np.full(13, 3000)
    a_true, b_true = -0.3, -0.7
    rng = np.random.default_rng(1)
    covered, draws = 0, 40
    for draw in range(draws):
        k = rng.binomial(n, np.exp(a_true + b_true * ds))
        a, b, ll = fit(ds, k, n, 1)
        low, high = slope_profile_interval(ds, k, n, b, ll)
        assert low < b < high and math.isfinite(low) and math.isfinite(high)
        covered += low <= b_true <= high
        if draw == 0:
            assert (k[-4:] == 0).any()  # zero counts at large d
            # brute force: the profile over a grid of a at each end equals LL_max - 3.841 / 2
            grid = np.linspace(-3.0, 2.0, 20001)
            for end in (low, high):
                best = max(loglik(np.exp(np.minimum(g + end * ds, -1e-12)), k, n) for g in grid[::4])
                assert best == pytest.approx(ll - CHI2_95 / 2, abs=0.05)
    assert covered >= 34  # 95 % of 40 is 38; 34 or fewer has probability under 3 %


def test_the_slope_profile_interval_is_finite_with_minima_at_two_dimensions_only() -> None:
    """A dimension with no minimum counts through its likelihood: with minima at d = 2, 3 only, both ends
    are finite, and adding more zero-count dimensions (more evidence of decay) moves the upper end down."""
    from landbench.claims.rare_minima import slope_profile_interval

    ds, n = np.array([2, 3, 4, 5]), np.array([60, 60, 60, 60])
    k = np.array([6, 2, 0, 0])
    a, b, ll = fit(ds, k, n, 1)
    low, high = slope_profile_interval(ds, k, n, b, ll)
    assert math.isfinite(low) and math.isfinite(high) and low < b < high
    few = slope_profile_interval(ds[:2], k[:2], n[:2], *fit(ds[:2], k[:2], n[:2], 1)[1:])
    assert high < few[1]
