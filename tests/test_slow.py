"""Heavier statistical checks against theory: `python -m pytest -m slow` (not in the default run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from reference import scalar_escape_step

import landbench

pytestmark = pytest.mark.slow


def test_median_escape_keeps_its_log_d_law_up_to_a_hundred_thousand_dimensions() -> None:
    lr, eps = 0.1, 1e-3
    for dim in (10_000, 100_000):
        records = landbench.run(
            f"saddle(dim={dim}, init_radius={eps}, rotate=True)", f"sgd(lr={lr})", seeds=201, steps=600, curvature=False
        )
        median = float(np.median([r["escape_step"] for r in records]))
        median_u0 = eps * math.sqrt(scipy.stats.beta.ppf(0.5, 0.5, (dim - 1) / 2))
        assert abs(median - scalar_escape_step(median_u0, lr, 1.0, 1.0)) <= 4


@pytest.mark.parametrize("index", [1, 3, 6])
def test_noise_escape_index_dependence_follows_the_digamma_term(index: int) -> None:
    sigma, log_a = 1e-5, math.log(1 + 0.1)  # lr = 0.1, gamma = 1
    records = landbench.run(
        f"saddle(dim={index + 4}, index={index}, init_radius=0.0)",
        "sgd(lr=0.1)",
        seeds=3000,
        steps=800,
        noise=sigma,
        dtype="float64",
        curvature=False,
    )
    steps = np.array([r["escape_step"] for r in records], dtype=float)
    reference = landbench.run(
        "saddle(dim=5, init_radius=0.0)",
        "sgd(lr=0.1)",
        seeds=3000,
        steps=800,
        noise=sigma,
        dtype="float64",
        curvature=False,
    )
    base = np.array([r["escape_step"] for r in reference], dtype=float)
    predicted = 0.5 * (scipy.special.digamma(index / 2) - scipy.special.digamma(0.5)) / log_a
    standard_error = math.hypot(steps.std(), base.std()) / math.sqrt(3000)
    assert base.mean() - steps.mean() == pytest.approx(predicted, abs=4 * standard_error + 0.3)
