"""Claim 2: local minima are exponentially rare among critical points.

The share of minima among the distinct critical points that :func:`landbench.critical_points`
finds from random starts on the Gaussian field (``gaussian_field(dim=d)``), against d, next to:

* the textbook argument (the background text): each of the d Hessian eigenvalues is positive
  independently with probability p = 1/2, so a critical point is a minimum with probability p^d;
* the probability that a d x d GOE matrix is positive definite, ``~ exp(-(ln 3)/4 d^2)`` (D. S. Dean
  and S. N. Majumdar, "Large deviations of extreme eigenvalues of random matrices", PRL 97, 160201
  (2006)): what an unshifted random Hessian would give;
* the Kac-Rice share for this field, computed here by Monte Carlo: with the value u ~ N(0, s^2) and
  the Hessian ``H = -u I + G`` given u (G a GOE, off-diagonal variance 1; s = l = 1), and the gradient
  independent of both (a stationary field), the density of critical points is ``p(0) E[|det H|]``
  and that of minima ``p(0) E[|det H| 1{H > 0}]`` (Kac-Rice; Bray and Dean 2007, Fyodorov 2004), so
  the share of minima among critical points counted uniformly is ``E[|det H| 1{H > 0}] /
  E[|det H|]``. The shift -u I makes this a large deviation of u (order d in the exponent: a value
  u ~ -2 sqrt d costs ``exp(-2 d)``), not of the GOE's extreme eigenvalue (order d^2): the textbook's
  independent signs and the pure-GOE rate both miss how the value couples every eigenvalue.

**Bias.** Newton's method from random starts does not sample critical points uniformly: each point is
found in proportion to its basin under the Newton iteration (Dauphin et al. 2014: it is drawn to
saddles), so the measured share is the finder's, which need not equal the Kac-Rice share. Where the
finder finds no minimum at a dimension, the figure shows the Wilson 95 % upper bound of the share
(0 of n), never a share of zero. The fits are binomial maximum-likelihood fits of the counts, ``log
share = a + b d`` against ``a + c d^2``; the slope's 95 % interval is the profile-likelihood interval of b
(a maximised out for each b; the b with 2 (LL_max - LL(b)) <= 3.841), in which a dimension with no minimum
counts through its binomial likelihood.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from landbench.claims import _critical_data as data
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.report import mpl
from landbench.report.data import wilson

#: Dean and Majumdar's rate: P(GOE_d positive definite) ~ exp(-DEAN_MAJUMDAR d^2).
DEAN_MAJUMDAR = math.log(3.0) / 4.0
#: The decay finding needs minima at this many dimensions and this many critical points in all.
MIN_DIMS_WITH_MINIMA = 2
MIN_CRITICAL_POINTS = 50
#: The textbook's rate ln 2 is judged only when the rate's interval is narrower than ln 2 / 2: an interval that
#: contains ln 2 then excludes half and double that rate.
MAX_RATE_WIDTH = math.log(2.0) / 2.0


def kac_rice_share(d: int, samples: int, seed: int) -> float:
    """The share of minima among critical points of the field by Kac-Rice, ``E[|det H| 1{H > 0}] /
    E[|det H|]`` with ``H = -u I + G``, ``u ~ N(0, 1)``, G a d x d GOE: u on a grid (step 0.05, from
    ``-2 sqrt d - 7`` to 7, weights its density), G by Monte Carlo (the same ``samples`` matrices at
    every u), in log space."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(samples, d, d, generator=generator, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvalsh((a + a.transpose(1, 2)) / math.sqrt(2.0))  # (S, d), ascending
    u = torch.arange(-2.0 * math.sqrt(d) - 7.0, 7.0, 0.05, dtype=torch.float64)
    log_phi = -0.5 * u**2
    log_det = torch.log((eigenvalues[None, :, :] - u[:, None, None]).abs()).sum(2)  # (U, S)
    positive = eigenvalues[None, :, 0] > u[:, None]  # H = G - u I > 0
    log_all = torch.logsumexp(log_phi[:, None] + log_det, dim=(0, 1))
    masked = torch.where(positive, log_det, torch.full_like(log_det, -math.inf))
    log_min = torch.logsumexp(log_phi[:, None] + masked, dim=(0, 1))
    return float(torch.exp(log_min - log_all))


def fit(ds: np.ndarray, k: np.ndarray, n: np.ndarray, power: int) -> tuple[float, float, float]:
    """Binomial maximum likelihood of ``log share = a + b d^power`` (share capped at 1): (a, b, log-likelihood)."""
    from scipy.optimize import minimize

    x = ds.astype(float) ** power

    def nll(theta: np.ndarray) -> float:
        log_p = np.minimum(theta[0] + theta[1] * x, -1e-12)
        log_q = np.log1p(-np.exp(log_p))
        return -float(np.sum(k * log_p + (n - k) * log_q))

    share = (k.sum() + 0.5) / (n.sum() + 1.0)
    best = None
    for slope in (-0.1, -0.5, -1.0, -2.0):
        result = minimize(
            nll,
            np.array([math.log(share), slope / x.mean() * 1.0]),
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
        )
        if best is None or result.fun < best.fun:
            best = result
    return float(best.x[0]), float(best.x[1]), -float(best.fun)


#: The 95 % point of chi-squared with one degree of freedom: the profile-likelihood interval's cut.
CHI2_95 = 3.841458820694124


def profile_loglik(ds: np.ndarray, k: np.ndarray, n: np.ndarray, b: float) -> float:
    """The binomial log-likelihood of ``log share = a + b d`` (share capped below 1) maximised over a for
    this b (it is concave in a)."""
    from scipy.optimize import minimize_scalar

    x = ds.astype(float)

    def nll(a: float) -> float:
        log_p = np.minimum(a + b * x, -1e-12)
        return -float(np.sum(k * log_p + (n - k) * np.log1p(-np.exp(log_p))))

    top = -float(np.max(b * x)) - 1e-12  # share below 1 at every d
    result = minimize_scalar(
        nll, bounds=(top - 60.0 - abs(b) * float(x.max()), top), method="bounded", options={"xatol": 1e-10}
    )
    return -float(result.fun)


def slope_profile_interval(
    ds: np.ndarray, k: np.ndarray, n: np.ndarray, b_hat: float, ll_hat: float, limit: float = 50.0
) -> tuple[float, float]:
    """The 95 % profile-likelihood interval of b in the binomial model ``share = exp(a + b d)``: the b with
    ``2 (LL_max - max_a LL(a, b)) <= 3.841``. A dimension with no minimum enters through its binomial
    likelihood (it caps how steep or shallow b can be), not as a fixed zero. An end not reached within
    |b - b_hat| <= limit is infinite."""
    from scipy.optimize import brentq

    ll_max = max(ll_hat, profile_loglik(ds, k, n, b_hat))

    def excess(b: float) -> float:
        return 2.0 * (ll_max - profile_loglik(ds, k, n, b)) - CHI2_95

    ends = []
    for direction in (-1.0, 1.0):
        step, inner = 0.05, b_hat
        end = direction * math.inf
        while step <= limit:
            outer = b_hat + direction * step
            if excess(outer) > 0:
                end = brentq(excess, min(inner, outer), max(inner, outer), xtol=1e-6)
                break
            inner, step = outer, step * 2
        ends.append(float(end))
    return ends[0], ends[1]


def loglik(share: np.ndarray, k: np.ndarray, n: np.ndarray) -> float:
    share = np.clip(share, 1e-300, 1 - 1e-16)
    return float(np.sum(k * np.log(share) + (n - k) * np.log1p(-share)))


def rate_finding(rate: float, rate_ci: tuple[float, float], decay_inconclusive: bool, note: str = "") -> Finding:
    """The textbook-rate finding by the stated test: the measured rate -b with its 95 % interval. Inconclusive
    when the decay finding is, or the interval is not narrower than MAX_RATE_WIDTH (ln 2 / 2); otherwise
    supported when ln 2 lies inside the interval, supported with a caveat when outside. ``note`` is appended."""
    low, high = rate_ci
    head = f"measured rate -b = {rate:.2f} per dimension, 95 % interval [{low:.2f}, {high:.2f}]"
    statistic = "rate of decay -b of the share of minima per dimension (the textbook's: ln 2 = 0.69)"
    width = high - low
    if decay_inconclusive or not width < MAX_RATE_WIDTH:
        reason = (
            "the decay finding is inconclusive, so there is no rate to compare"
            if decay_inconclusive
            else f"the interval is {width:.3f} wide, not narrower than ln 2 / 2 = {MAX_RATE_WIDTH:.3f}: it cannot "
            "tell ln 2 from half or double that rate"
        )
        return Finding(
            INCONCLUSIVE,
            statistic,
            rate,
            f"{head}: {reason}; more critical points per d would narrow it." + note,
            rate_ci,
        )
    inside = low <= math.log(2.0) <= high
    return Finding(
        SUPPORTED if inside else CAVEAT,
        statistic,
        rate,
        f"{head} ({width:.3f} wide, under ln 2 / 2 = {MAX_RATE_WIDTH:.3f}): the textbook's rate ln 2 = 0.69 is "
        f"{'inside' if inside else 'outside'} it"
        + ("." if inside else ": the independent-sign picture gets the rate wrong.")
        + note,
        rate_ci,
    )


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    dims = [int(d) for d in p["dims"]]
    starts = [int(s) for s in p["starts"]]
    instances = int(p["instances"])
    block = int(p.get("block", 100))
    rows = []
    flat_starts = flat_points = total_starts = 0
    checks = []
    for d, count in zip(dims, starts):
        minima = critical = 0
        for instance in range(instances):
            got = data.instance_points(ctx, f"gaussian_field(dim={d})", instance, count, block_size=block)
            critical += len(got["points"])
            minima += sum(int(point[1]) == 0 for point in got["points"])
            flat_starts += got["gradient_flat_starts"]
            flat_points += got["gradient_flat_points"]
            total_starts += got["starts"]
            checks.extend(got["sample"])
        low, high = wilson(minima, critical)
        theory = ctx.cached(
            f"kac-rice minima share | d={d} | samples={int(p['kac_rice_samples'])} | seed=0 | grid 0.05",
            lambda d=d: kac_rice_share(d, int(p["kac_rice_samples"]), 0),
        )
        rows.append(
            {
                "dim": d,
                "minima": minima,
                "critical_points": critical,
                "share": minima / critical if critical else math.nan,
                "wilson": [low, high],
                "textbook": 0.5**d,
                "dean_majumdar": math.exp(-DEAN_MAJUMDAR * d * d),
                "kac_rice": theory,
            }
        )
    ds = np.array([r["dim"] for r in rows])
    k = np.array([r["minima"] for r in rows])
    n = np.array([r["critical_points"] for r in rows])
    a1, b1, ll1 = fit(ds, k, n, 1)
    a2, c2, ll2 = fit(ds, k, n, 2)
    ll_textbook = loglik(0.5**ds, k, n)
    ll_kac = loglik(np.array([r["kac_rice"] for r in rows]), k, n)

    # the exponential slope's 95 % profile-likelihood interval (zero counts enter through their likelihood)
    lo, hi = slope_profile_interval(ds, k, n, b1, ll1)
    with_minima = int((k > 0).sum())
    statistic = "slope b of log(share of minima) = a + b d (binomial ML fit), per unit of d"
    if with_minima < MIN_DIMS_WITH_MINIMA or n.sum() < MIN_CRITICAL_POINTS:
        missing = []
        if with_minima < MIN_DIMS_WITH_MINIMA:
            missing.append(
                f"minima found at only {with_minima} dimension(s) (at least {MIN_DIMS_WITH_MINIMA} needed for a slope)"
            )
        if n.sum() < MIN_CRITICAL_POINTS:
            missing.append(f"only {int(n.sum())} critical points in all (at least {MIN_CRITICAL_POINTS} needed)")
        decay = Finding(
            INCONCLUSIVE,
            statistic,
            b1,
            "; ".join(missing) + f" ({int(k.sum())} minima among {int(n.sum())} critical points): more starts "
            "(at small d) would settle it",
            (lo, hi),
        )
    else:
        verdict = SUPPORTED if hi < 0 else NOT_SUPPORTED if lo > 0 else INCONCLUSIVE
        decay = Finding(
            verdict,
            statistic,
            b1,
            f"b = {b1:.2f} (profile-likelihood 95 % [{lo:.2f}, {hi:.2f}]): the share falls by a factor "
            f"{math.exp(-b1):.1f} per dimension; minima found at d = "
            f"{', '.join(str(r['dim']) for r in rows if r['minima'])} "
            f"({int(k.sum())} of {int(n.sum())} critical points)",
            (lo, hi),
        )
    # which picture fits: log-likelihoods of the counts (the fits have 2 parameters each, the theories none)
    best = max(
        ("exp(a + b d)", ll1),
        ("exp(a + c d^2)", ll2),
        ("textbook 2^-d", ll_textbook),
        ("Kac-Rice", ll_kac),
        key=lambda item: item[1],
    )
    rate, rate_ci = -b1, (-hi, -lo)
    likelihoods = (
        f" Log-likelihoods of the counts: exp(a + b d) {ll1:.1f}, exp(a + c d^2) (c = {c2:.3f}; Dean-Majumdar's pure "
        f"GOE: {DEAN_MAJUMDAR:.3f}) {ll2:.1f}, the textbook 2^-d {ll_textbook:.1f}, the Kac-Rice share {ll_kac:.1f}: "
        f"best {best[0]} (exponential minus d^2: {ll1 - ll2:+.1f}; a difference under 2 does not tell the two apart)."
    )
    comparison = rate_finding(rate, rate_ci, decay.verdict == INCONCLUSIVE, likelihoods)
    findings = [decay, comparison]
    good, checked = data.sample_check(checks)
    figure = draw(ctx, rows, (a1, b1), (a2, c2))
    return Measured(
        findings=findings,
        figures=[figure],
        captions=[
            "Share of minima among the distinct critical points found from random starts on the Gaussian field, "
            "against d (Wilson 95 % intervals; a triangle: the upper bound where none was found), with the textbook "
            "2^-d, Dean and Majumdar's GOE rate exp(-(ln 3)/4 d^2), the Kac-Rice share for this field (Monte Carlo) "
            "and the two fits; right: the same against d^2, where exp(a + c d^2) is a line."
        ],
        data={
            "by_dim": rows,
            "fit_exponential": {"a": a1, "b": b1, "loglik": ll1, "b_interval": [lo, hi]},
            "fit_gaussian": {"a": a2, "c": c2, "loglik": ll2},
            "loglik_textbook": ll_textbook,
            "loglik_kac_rice": ll_kac,
            "gradient_flat": {"starts": flat_starts, "distinct_points": flat_points, "of_starts": total_starts},
            "autograd_check": {"passed": good, "checked": checked},
        },
        summary=(
            f"The share of minima among critical points falls like exp({b1:.2f} d) (95 % [{lo:.2f}, {hi:.2f}]); "
            f"best description of the counts: {best[0]}; {flat_starts} of {total_starts} starts ended on "
            "gradient-flat points (excluded)"
        ),
    )


def draw(
    ctx: ClaimContext, rows: list[dict[str, Any]], exponential: tuple[float, float], gaussian: tuple[float, float]
):
    figure, axes = mpl.grid(2, columns=2, panel=(4.3, 3.4))
    ds = np.array([r["dim"] for r in rows], dtype=float)
    fine = np.linspace(max(1.0, ds.min() - 0.5), ds.max() + 0.5, 200)
    with mpl.style():
        for ax, power in zip(axes, (1, 2)):
            x_of = (lambda v: v) if power == 1 else (lambda v: v**2)
            found = [r for r in rows if r["minima"]]
            none = [r for r in rows if not r["minima"] and r["critical_points"]]
            if found:
                ax.errorbar(
                    [x_of(r["dim"]) for r in found],
                    [r["share"] for r in found],
                    yerr=[[r["share"] - r["wilson"][0] for r in found], [r["wilson"][1] - r["share"] for r in found]],
                    fmt="o",
                    color="#0072B2",
                    capsize=2,
                    label="measured share (Wilson 95 %)",
                    zorder=5,
                )
            if none:
                ax.scatter(
                    [x_of(r["dim"]) for r in none],
                    [r["wilson"][1] for r in none],
                    marker="v",
                    color="#0072B2",
                    zorder=5,
                    label="none found: Wilson upper bound",
                )
            ax.plot(x_of(fine), 0.5**fine, color="#E69F00", lw=1.3, ls="--", label="textbook p^d, p = 1/2")
            ax.plot(
                x_of(fine),
                np.exp(-DEAN_MAJUMDAR * fine**2),
                color="#CC79A7",
                lw=1.3,
                ls=":",
                label="GOE positive definite, exp(-(ln 3)/4 d^2)",
            )
            ax.plot(
                x_of(ds),
                [r["kac_rice"] for r in rows],
                color="black",
                lw=1.3,
                marker=".",
                label="Kac-Rice share, this field (Monte Carlo)",
            )
            ax.plot(
                x_of(fine),
                np.exp(np.minimum(exponential[0] + exponential[1] * fine, 0)),
                color="#009E73",
                lw=1.3,
                label=f"fit exp(a + b d), b = {exponential[1]:.2f}",
            )
            ax.plot(
                x_of(fine),
                np.exp(np.minimum(gaussian[0] + gaussian[1] * fine**2, 0)),
                color="#D55E00",
                lw=1.0,
                ls="-.",
                label=f"fit exp(a + c d^2), c = {gaussian[1]:.3f}",
            )
            ax.set_yscale("log")
            lowest = min([r["wilson"][1] for r in rows if r["critical_points"]] + [r["kac_rice"] for r in rows])
            ax.set_ylim(max(1e-8, lowest / 20), 1.5)
            ax.set_xlabel("dimension d" if power == 1 else "d^2")
            ax.set_ylabel("share of minima among critical points")
            ax.set_title("Minima share against d" if power == 1 else "... against d^2 (a Gaussian rate is a line)")
        axes[0].legend(loc="lower left", fontsize=6.5)
    mpl.tidy(axes)
    return mpl.save(figure, ctx.figure("rare_minima"))
