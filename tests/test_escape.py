"""Escape from the saddle against theory: the scalar recursion, the random-start law, the noise law.

References: DESIGN.md ("Saddle escape"); Dauphin et al. 2014; Jin et al. 2017.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from reference import noise_escape_mean, scalar_escape_step
from runs import mean_noise_escape

import landbench

CASES = [
    # dim, index, gamma, quartic, lr, init_radius, rotate
    (10, 1, 1.0, 1.0, 0.1, 1e-3, False),
    (50, 3, 2.0, 0.5, 0.05, 1e-6, False),
    (40, 2, 0.5, 4.0, 0.3, 1e-2, True),
    (300, 5, 1.0, 1.0, 0.01, 1e-4, True),
]


@pytest.mark.parametrize(("dim", "index", "gamma", "quartic", "lr", "eps", "rotate"), CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gd_from_the_unstable_direction_escapes_at_the_scalar_recursion_step(
    dim: int, index: int, gamma: float, quartic: float, lr: float, eps: float, rotate: bool, dtype: str
) -> None:
    expected = scalar_escape_step(eps, lr, gamma, quartic)
    spec = (
        f"saddle(dim={dim}, index={index}, gamma={gamma}, quartic={quartic}, "
        f"init='unstable', init_radius={eps}, rotate={rotate})"
    )
    (record,) = landbench.run(spec, f"sgd(lr={lr})", seeds=1, steps=expected + 20, dtype=dtype, curvature=False)
    assert record["escaped"] is True
    if dtype == "float64":
        assert record["escape_step"] == expected
    else:
        assert abs(record["escape_step"] - expected) <= 1


def test_censored_escape_is_null_not_a_large_number() -> None:
    (record,) = landbench.run(
        "saddle(dim=5, init='unstable', init_radius=1e-6)", "sgd(lr=0.01)", seeds=1, steps=50, curvature=False
    )
    assert record["escaped"] is False and record["escape_step"] is None


def test_no_saddle_means_no_escape_fields() -> None:
    (record,) = landbench.run("quadratic(dim=3)", "sgd(lr=0.1)", seeds=1, steps=10, curvature=False)
    assert record["escaped"] is None and record["escape_step"] is None


def test_escape_from_a_random_start_grows_with_dimension_as_predicted() -> None:
    """From a uniform point of the sphere of radius eps, the unstable coordinate starts at
    u0 = eps |z_1|/|z|, and (u0/eps)^2 ~ Beta(1/2, (d-1)/2).

    * Median: the escape step is decreasing in u0, so the median escape step is the scalar
      recursion's step from the median u0; since u0 ~ eps/sqrt(d), it grows like
      1/2 log(d) / log(1 + lr gamma) per unit of log d.
    * Mean: in the linear regime T = log(r/u0)/log a, a = 1 + lr gamma, and
      E[log(u0/eps)] = 1/2 (digamma(1/2) - digamma(d/2)) exactly, which is DESIGN.md's
      -(1/2 log d + 0.635) for large d. Differences between dimensions are exact; the absolute
      value is a few steps above the linear formula (the cubic term slows the last steps).
    """
    lr, eps, seeds = 0.1, 1e-3, 401
    log_a = math.log(1 + lr)
    radius = math.sqrt(1 - 1 / math.sqrt(2))  # where the loss is halfway to f* (gamma = quartic = 1)
    medians, means, errors = {}, {}, {}
    for dim in (10, 100, 1000):
        records = landbench.run(
            f"saddle(dim={dim}, init_radius={eps})",
            f"sgd(lr={lr})",
            seeds=seeds,
            steps=400,
            dtype="float64",
            curvature=False,
        )
        steps = np.array([r["escape_step"] for r in records], dtype=float)
        assert all(r["escaped"] for r in records)
        medians[dim], means[dim], errors[dim] = float(np.median(steps)), steps.mean(), steps.std() / math.sqrt(seeds)
        # The population median of u0 gives the prediction, up to the sampling error of a median
        # of 401 draws (about 0.6 steps; 3 steps is about 5 standard errors).
        median_u0 = eps * math.sqrt(scipy.stats.beta.ppf(0.5, 0.5, (dim - 1) / 2))
        assert abs(medians[dim] - scalar_escape_step(median_u0, lr, 1.0, 1.0)) <= 3
        design = (math.log(radius / eps) + 0.5 * math.log(dim) + 0.635) / log_a
        assert 0 <= means[dim] - design <= 4
    slope = 0.5 * math.log(10) / log_a  # steps per decade of dimension: 12.08
    assert medians[100] - medians[10] == pytest.approx(slope, abs=3)
    assert medians[1000] - medians[100] == pytest.approx(slope, abs=3)
    for low, high in ((10, 100), (100, 1000)):
        exact = 0.5 * (scipy.special.digamma(high / 2) - scipy.special.digamma(low / 2)) / log_a
        assert means[high] - means[low] == pytest.approx(exact, abs=4 * math.hypot(errors[low], errors[high]))


def test_each_random_start_escapes_when_its_own_unstable_coordinate_says() -> None:
    """Per run, exactly: the run's escape step is the scalar recursion's from its own u0."""
    landscape = landbench.make("saddle(dim=64, index=1, init_radius=1e-4)", dtype="float64")
    records = landbench.run(landscape, "sgd(lr=0.2)", seeds=12, steps=300, curvature=False)
    starts = landscape.sample_start(range(12))[:, 0].abs().numpy()
    expected = [scalar_escape_step(u0, 0.2, 1.0, 1.0) for u0 in starts]
    assert [r["escape_step"] for r in records] == expected


def test_noise_driven_escape_from_the_exact_saddle_follows_the_closed_form() -> None:
    """Started exactly at the saddle, only the gradient noise can move GD. The closed form is for
    the linear regime; its dependence on sigma (log(1/sigma)/log a) and on the index k (the
    digamma term) is exact there, and the cubic term adds a constant that cancels in differences."""
    lr, gamma = 0.1, 1.0
    radius = math.sqrt((1 - 1 / math.sqrt(2)) * gamma)  # where the loss is halfway to f*
    log_a = math.log(1 + lr * gamma)
    k1_small, se1 = mean_noise_escape(1, 1e-4)
    k1_tiny, se2 = mean_noise_escape(1, 1e-6)
    k2_small, se3 = mean_noise_escape(2, 1e-4)
    # sigma 100 times smaller: log(100)/log(1.1) = 48.3 steps longer.
    assert k1_tiny - k1_small == pytest.approx(math.log(100) / log_a, abs=4 * math.hypot(se1, se2) + 0.5)
    # index 2 instead of 1: 1/2 (digamma(1) - digamma(1/2)) / log a = 7.27 steps shorter.
    digamma_gap = 0.5 * (scipy.special.digamma(1.0) - scipy.special.digamma(0.5)) / log_a
    assert k1_small - k2_small == pytest.approx(digamma_gap, abs=4 * math.hypot(se1, se3) + 0.5)
    # The absolute value, within the few steps that the cubic term and whole steps add.
    predicted = noise_escape_mean(lr, gamma, 1e-4, 1, radius)
    assert 0 <= k1_small - predicted <= 4


def test_noise_escape_matches_an_independent_one_dimensional_simulation() -> None:
    """At dim=1 the saddle is u -> -u^2/2 + u^4/4; a numpy simulation of the same noisy recursion
    (independent code, independent random numbers) must give the same mean escape time."""
    lr, sigma, n = 0.1, 1e-4, 20_000
    rng = np.random.default_rng(0)
    u, escape = np.zeros(n), np.full(n, -1)
    for t in range(1, 600):
        u = u + lr * (u - u**3) - lr * sigma * rng.standard_normal(n)
        escape[(-u * u / 2 + u**4 / 4 <= -1 / 8) & (escape < 0)] = t
    reference = escape.mean()
    ours, standard_error = mean_noise_escape(1, sigma, seeds=600, dim=1)
    assert abs(ours - reference) <= 4 * math.hypot(standard_error, escape.std() / math.sqrt(n))
