"""The statistics behind the leaderboard: expected running time, ranks, the bootstrap, paired tests.

All functions are pure and take plain sequences or numpy arrays; none knows what a record is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def expected_running_time(hits: Sequence[float | None], spent: Sequence[float]) -> float:
    """COCO's expected running time (ERT) to one target over the runs of one optimizer.

    With ``hits[i]`` the evaluations run i had used when it reached the target (``None`` if it did
    not; landbench passes the time from which the target is held, :mod:`landbench.outcomes`) and
    ``spent[i]`` what an unsuccessful run is charged (landbench: its whole budget, diverged or not)::

        ERT = (sum over successful runs of hits[i] + sum over unsuccessful runs of spent[i]) / n_successful

    the expected cost of reaching the target by restarting independent runs until one succeeds.
    ``inf`` when no run succeeded. References: Price, "Differential evolution vs. the functions
    of the 2nd ICEO" (1997); Auger and Hansen, "Performance evaluation of an advanced local search
    evolutionary algorithm", CEC 2005; Hansen, Auger, Brockhoff, Tusar and Tusar, "COCO:
    Performance assessment", arXiv:1605.03560.
    """
    successes = sum(hit is not None for hit in hits)
    if successes == 0:
        return math.inf
    used = sum(hit if hit is not None else total for hit, total in zip(hits, spent))
    return used / successes


def average_ranks(keys: Sequence[Any]) -> list[float]:
    """Fractional ranks of ``keys`` (smaller key = better = rank 1); equal keys share their mean rank.

    Keys that compare equal and occupy sorted positions i..j (1-based) all get (i + j) / 2, as
    ``scipy.stats.rankdata(method="average")``; keys may be tuples (lexicographic order).
    """
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = [0.0] * len(keys)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and keys[order[end + 1]] == keys[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def bootstrap_mean_ci(
    values: np.ndarray, *, resamples: int, seed: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap confidence intervals of the column means of ``values`` (rows resampled).

    ``values`` is (S, K): one row per scenario. Each of ``resamples`` resamples draws S rows with
    replacement (``numpy.random.default_rng(seed).integers(0, S, (resamples, S))``) and takes the
    column means; the interval is the (1 - confidence)/2 and (1 + confidence)/2 percentiles of
    those means (``numpy.percentile``, linear interpolation). Efron and Tibshirani, "An
    Introduction to the Bootstrap" (1993), ch. 13.
    """
    rows = values.shape[0]
    draws = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    means = np.stack([values[draw].mean(axis=0) for draw in draws])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return low, high


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    With the m p-values sorted ascending p_(1) <= ... <= p_(m), the adjusted value of p_(i) is
    ``max over j <= i of min(1, (m - j + 1) p_(j))``; rejecting where the adjusted value is below
    alpha is Holm's step-down procedure, which controls the family-wise error rate at alpha.
    Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6 (1979).
    """
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for position, index in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - position) * pvalues[index]))
        adjusted[index] = running
    return adjusted


#: Up to this many non-zero differences the signed-rank p-value is exact (all 2^n sign patterns).
EXACT_SIGNED_RANK = 16


def signed_rank_test(differences: Sequence[float]) -> tuple[float, int]:
    """Two-sided Wilcoxon signed-rank test of paired differences (one per scenario): (p, side).

    Zero differences are dropped (Wilcoxon's treatment, ``zero_method="wilcox"``); when every
    difference is zero the two are tied and p = 1. With W+ the sum of the ranks of |d| (mean ranks
    for ties) over the positive differences, and n <= :data:`EXACT_SIGNED_RANK` non-zero ones, p is
    exact: the share of the 2^n equally likely sign patterns whose W+ is at least as far from its
    mean n(n+1)/4 as the observed one (ties and all; scipy would run a slow permutation test).
    Beyond that, scipy's normal approximation with the tie correction. The smallest p possible is
    2 / 2^n, so n >= 6 is needed for p < 0.05. ``side`` is the sign of W+ - W-: -1 when the
    differences lean negative, 0 when neither.
    Wilcoxon, "Individual comparisons by ranking methods", Biometrics Bulletin 1 (1945).
    """
    from scipy.stats import rankdata, wilcoxon  # here: scipy.stats costs every command 0.9 s to import

    nonzero = np.asarray([d for d in differences if d != 0], dtype=float)
    if nonzero.size == 0:
        return 1.0, 0
    ranks = rankdata(np.abs(nonzero))
    w_plus = ranks[nonzero > 0].sum()
    side = int(np.sign(w_plus - (ranks.sum() - w_plus)))
    n = nonzero.size
    if n > EXACT_SIGNED_RANK:
        return float(wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided", method="approx").pvalue), side
    patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # every assignment of signs
    sums = patterns @ ranks
    centre = ranks.sum() / 2
    extreme = np.abs(sums - centre) >= abs(w_plus - centre) - 1e-9
    return float(extreme.mean()), side


def win_rate(first: Sequence[float], second: Sequence[float]) -> float:
    """Share of scenarios where ``first`` ranks better (lower) than ``second``, ties counting half."""
    wins = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a, b in zip(first, second))
    return wins / len(first)


def censored_quantile(times: Sequence[float | None], q: float) -> float | None:
    """The q-quantile (linear interpolation, as :func:`numpy.quantile`) of times where ``None`` is a
    censored run (never happened within the budget), ranked after every finite time; ``None`` where
    the quantile falls on a censored run, since it is then not a number (Kaplan-Meier reading of
    right-censored data without ties at the budget)."""
    if not times:
        return None
    value = float(censored_quantiles(np.array([math.inf if t is None else float(t) for t in times]), q))
    return None if math.isinf(value) else value


def censored_quantiles(times: np.ndarray, q: float) -> np.ndarray:
    """:func:`censored_quantile` along the last axis of an array whose censored runs are ``inf``
    (many series at once, e.g. bootstrap resamples): ``inf`` where the quantile falls on one."""
    ordered = np.sort(np.asarray(times, dtype=float), axis=-1)
    position = q * (ordered.shape[-1] - 1)
    low, high = math.floor(position), math.ceil(position)
    below, above = ordered[..., low], ordered[..., high]
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(above), math.inf, below + (above - below) * (position - low))
