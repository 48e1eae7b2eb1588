"""Performance profiles (Dolan and More 2002) and their area up to ``tau_max`` (the AlgoPerf score).

For scenarios s and optimizers o with times to target t_{s,o} (``inf`` where o fails):

* ratio      r_{s,o} = t_{s,o} / min_o t_{s,o}   (``inf`` where o fails, or where every optimizer does)
* profile    rho_o(tau) = |{s : r_{s,o} <= tau}| / n_s, a non-decreasing step function of tau >= 1
* score      B_o = 1 / (tau_max - 1) * integral from 1 to tau_max of rho_o(tau) dtau
                 = (1 / n_s) * sum_s max(0, tau_max - r_{s,o}) / (tau_max - 1)   (exactly, rho being a step function)

B_o is in [0, 1]; 1 means fastest on every scenario; a scenario solved more than tau_max times
slower than the fastest gives no credit, as a failure. References: Dolan and More, "Benchmarking
optimization software with performance profiles", Math. Program. 91 (2002) 201-213; the AlgoPerf
benchmark score (Dahl et al., "Benchmarking neural network training algorithms", arXiv:2306.07179,
2023; AlgoPerf DOCUMENTATION.md, "Integrating performance profiles for the benchmark score"),
which integrates rho on a linear tau axis from 1 to r_max = 4, normalised by r_max - 1.
"""

from __future__ import annotations

import numpy as np


def performance_ratios(times: np.ndarray) -> np.ndarray:
    """r_{s,o} = t_{s,o} / min_o t_{s,o} for an (S, O) array of positive times (``inf`` = failed)."""
    best = times.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        ratios = times / best
    return np.where(np.isfinite(best), ratios, np.inf)


def profile(ratios: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rho_o(tau) for each tau in ``taus``: a (len(taus), O) array (share of the S scenarios)."""
    return (ratios[None, :, :] <= taus[:, None, None]).mean(axis=1)


def profile_score(ratios: np.ndarray, tau_max: float) -> np.ndarray:
    """B_o = mean over scenarios of max(0, tau_max - r_{s,o}) / (tau_max - 1), the area under rho_o."""
    credit = np.clip(tau_max - ratios, 0.0, None) / (tau_max - 1.0)
    return credit.mean(axis=0)


def breakpoints(ratios: np.ndarray, tau_max: float) -> np.ndarray:
    """Where the profiles step: 1, every ratio in (1, tau_max], and tau_max, sorted."""
    inside = ratios[(ratios > 1.0) & (ratios <= tau_max)]
    return np.unique(np.concatenate([[1.0, tau_max], inside]))
