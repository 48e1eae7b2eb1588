"""Heavier statistical checks against theory: `python -m pytest -m slow` (not in the default run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from reference import scalar_escape_step
from runs import mean_noise_escape

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
    mean, error = mean_noise_escape(index, sigma, seeds=3000, dim=index + 4)
    base_mean, base_error = mean_noise_escape(1, sigma, seeds=3000, dim=5)
    predicted = 0.5 * (scipy.special.digamma(index / 2) - scipy.special.digamma(0.5)) / log_a
    assert base_mean - mean == pytest.approx(predicted, abs=4 * math.hypot(error, base_error) + 0.3)
