"""Claim 7 (connected minima): the experiment end to end at the test tier, and its parts against theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import landbench
from landbench.claims import VERDICTS, run_claim
from landbench.claims import connected_minima as cm
from landbench.mode_connectivity import connectivity


def test_the_test_tier_runs_draws_and_resumes_from_its_cache(tmp_path, monkeypatch) -> None:
    first = run_claim("connected_minima", "test", tmp_path, log=lambda line: None)
    folder = tmp_path / "connected_minima"
    assert (folder / "connected_minima.png").stat().st_size > 10_000
    assert first.measured.figures == [folder / "connected_minima.png"]
    assert first.verdict in VERDICTS and all(f.verdict in VERDICTS for f in first.measured.findings)
    assert len(first.measured.findings) == 3
    # The ring reference passes: every curve barrier under a tenth of sin^4(theta/2).
    assert first.measured.findings[2].verdict == "supported"
    lines = (folder / "cache.jsonl").read_text().splitlines()

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached unit of work")

    monkeypatch.setattr(cm, "endpoints", refuse)
    monkeypatch.setattr(cm, "fit_pair", refuse)
    second = run_claim("connected_minima", "test", tmp_path, log=lambda line: None)
    assert (folder / "cache.jsonl").read_text().splitlines() == lines
    assert [f.as_dict() for f in second.measured.findings] == [f.as_dict() for f in first.measured.findings]
    assert second.verdict == first.verdict


@pytest.mark.parametrize("angle", [0.4, math.pi / 2, 2.5])
def test_the_ring_straight_barrier_is_sin4_half_angle(angle: float) -> None:
    """On saddle(index=d, gamma=4, quartic=4) = (|x|^2 - 1)^2 - 1 the segment between minima at angle
    theta has barrier sin^4(theta/2) (DESIGN.md: 1 for antipodes); the module measures it, the theory
    function gives it in closed form."""
    landscape = landbench.make("saddle(dim=3, index=3, gamma=4.0, quartic=4.0)", dtype="float64")
    a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([math.cos(angle), math.sin(angle), 0.0], dtype=torch.float64)
    measured = connectivity(landscape, a, b, steps=0).linear.barrier
    expected = math.sin(angle / 2) ** 4
    assert measured == pytest.approx(expected, abs=1e-10)
    assert cm.straight_theory("ring", a, b, -1.0, -1.0, {}) == pytest.approx(expected, abs=1e-12)


def test_the_spin_glass_kriging_at_zero_overlap_is_the_closed_form() -> None:
    """At overlap 0 (p = 3) the end values and zero slopes are uncorrelated with each other's slope, so
    the conditional mean along the great circle is cos^3(phi) E_a + sin^3(phi) E_b."""
    t = torch.linspace(0, 1, 41, dtype=torch.float64)
    mean = cm.kriging_path("p3", math.pi / 2, (-1.6, -1.5), (0.0, 0.0), t)
    phi = t * math.pi / 2
    assert torch.allclose(mean, -1.6 * torch.cos(phi) ** 3 - 1.5 * torch.sin(phi) ** 3, atol=1e-12)
    # Two minima at energy E, overlap 0: barrier (1 - 2^(-1/2)) |E|.
    a = torch.zeros(6, dtype=torch.float64)
    b = torch.zeros(6, dtype=torch.float64)
    a[0] = b[1] = math.sqrt(6)
    assert cm.straight_theory("pspin", a, b, -1.56, -1.56, {}) == pytest.approx((1 - 2**-0.5) * 1.56, rel=1e-4)


@pytest.mark.parametrize("kernel, length", [("se", 0.7), ("se", 3.0), ("p3", 1.2)])
def test_kriging_interpolates_the_end_values_and_slopes(kernel: str, length: float) -> None:
    values, slopes = (0.3, -1.1), (0.8, -0.4)
    h = 1e-6
    t = torch.tensor([0.0, h, 1.0 - h, 1.0], dtype=torch.float64)
    mean = cm.kriging_path(kernel, length, values, slopes, t)
    assert float(mean[0]) == pytest.approx(values[0], abs=1e-9)
    assert float(mean[3]) == pytest.approx(values[1], abs=1e-9)
    assert float((mean[1] - mean[0]) / (h * length)) == pytest.approx(slopes[0], abs=1e-4)
    assert float((mean[3] - mean[2]) / (h * length)) == pytest.approx(slopes[1], abs=1e-4)


def test_far_apart_field_minima_decorrelate_in_the_middle() -> None:
    """Along a long segment the field's conditional mean returns to its prior mean 0 far from both ends."""
    t = torch.tensor([0.5], dtype=torch.float64)
    assert abs(float(cm.kriging_path("se", 20.0, (-5.0, -6.0), (0.0, 0.0), t)[0])) < 1e-12


def test_the_trend_statistic_is_sqrt_n_times_the_correlation() -> None:
    """Cochran-Armitage's z (binomial variance) equals sqrt(n) times the Pearson correlation between the
    score ln d and the 0/1 outcome over all pairs."""
    rows = [
        {"dim": 2, "informative": 10, "connected": 2},
        {"dim": 10, "informative": 12, "connected": 6},
        {"dim": 50, "informative": 9, "connected": 8},
    ]
    score = np.concatenate([np.full(r["informative"], math.log(r["dim"])) for r in rows])
    outcome = np.concatenate([[1] * r["connected"] + [0] * (r["informative"] - r["connected"]) for r in rows])
    expected = math.sqrt(len(score)) * np.corrcoef(score, outcome)[0, 1]
    assert cm.trend_z(rows) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(cm.trend_z([{**r, "connected": r["informative"]} for r in rows]))  # saturated: no test


def _rows(counts: list[tuple[int, int, int]]) -> list[dict]:
    from landbench.report.data import wilson

    out = []
    for dim, n, k in counts:
        out.append(
            {
                "dim": dim,
                "informative": n,
                "connected": k,
                "share": k / n if n else float("nan"),
                "wilson": list(wilson(k, n)),
                "median_ratio": 0.5,
            }
        )
    return out


@pytest.mark.parametrize(
    "counts, verdict",
    [
        ([(2, 30, 5), (50, 30, 28)], "supported"),
        ([(2, 30, 29), (50, 30, 29)], "supported with a caveat"),
        ([(2, 30, 0), (50, 30, 1)], "not supported"),
        ([(2, 30, 14), (50, 30, 15)], "inconclusive"),
        ([(2, 30, 14), (50, 2, 2)], "inconclusive"),
        ([(2, 30, 0), (10, 30, 1), (50, 0, 0)], "inconclusive"),  # no pair at the largest d: no smaller d decides
    ],
)
def test_the_stated_test(counts: list[tuple[int, int, int]], verdict: str) -> None:
    assert cm.claim_finding("field", _rows(counts), min_pairs=10).verdict == verdict


def test_repeated_and_non_critical_endpoints_are_dropped() -> None:
    ends = {
        "x": [[1.0, 0.0], [1.0 + 1e-9, 0.0], [0.0, 1.0], [0.5, 0.5]],
        "loss": [0.0, 0.0, 0.0, 0.3],
        "grad_norm": [0.0, 1e-12, 1e-10, 0.2],
    }
    kept, not_critical, repeats = cm.select(ends, grad_tol=1e-8, same_tol=1e-6)
    assert (kept, not_critical, repeats) == ([0, 2], 1, 1)


def test_counts_of_pairs_read_in_english() -> None:
    assert cm._count(1, "pair") == "1 pair" and cm._count(0, "pair") == "0 pairs" and cm._count(3, "pair") == "3 pairs"
    one = cm.claim_finding("field", [], min_pairs=10)
    assert "only 0 pairs" in one.why
