"""Claim 3: gradient descent stalls at saddles, noise escapes them, more unstable directions escape faster.

Four sweeps of plain gradient descent on the saddle family (``problems/claims/escape.toml``): from the
exact saddle with and without gradient noise, the escape step against the noise level, against the
dimension at a fixed index (k = 1) and at an index proportional to it (k = d/10), and against the index
at a fixed dimension; each next to its closed form (DESIGN.md, "Saddle escape", and the Beta law of the
unstable part of a uniform start derived here). What counts as escaped, and when, is the records' own
(:func:`landbench.outcomes.escape_time`); a censored run is never a number here: a part whose sweep has
one is inconclusive.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.special
import scipy.stats

from landbench import outcomes
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.ranking.stats import bootstrap_mean_ci
from landbench.report import mpl
from landbench.report.data import problem_params, wilson

#: The saddle's curvatures (gamma = mu = quartic = 1, the family's defaults).
GAMMA = 1.0
QUARTIC = 1.0
#: |P_u x| where the loss is halfway from the saddle's value 0 down to f* = -gamma^2/(4 quartic).
RADIUS = math.sqrt(GAMMA / QUARTIC * (1 - 1 / math.sqrt(2)))
#: DESIGN.md's constant: -1/2 (digamma(1/2) + ln 2) = 1/2 (gamma_E + ln 2) = 0.635.
DESIGN_CONSTANT = 0.635


# --- closed forms ---------------------------------------------------------------------------------


def design_random_start(dim: float, lr: float, eps: float) -> float:
    """DESIGN.md: GD from a uniform point of the sphere of radius eps, k = 1:
    ``[ln(r/eps) + 1/2 ln d + 0.635] / ln(1 + lr gamma)`` steps (linear regime, large d)."""
    return (math.log(RADIUS / eps) + 0.5 * math.log(dim) + DESIGN_CONSTANT) / math.log(1 + lr * GAMMA)


def random_start_mean(dim: int, index: int, lr: float, eps: float) -> float:
    """Mean escape step from a uniform point of the sphere of radius eps at index k, linear regime:
    ``|P_u x_0|^2 / eps^2 ~ Beta(k/2, (d-k)/2)`` so ``E[ln |P_u x_0|] = ln eps + 1/2 (digamma(k/2) -
    digamma(d/2))``, and ``T = ln(r / |P_u x_0|) / ln a``. ``k = d`` starts wholly unstable."""
    gap = 0.0 if index >= dim else 0.5 * (scipy.special.digamma(dim / 2) - scipy.special.digamma(index / 2))
    return (math.log(RADIUS / eps) + gap) / math.log(1 + lr * GAMMA)


def noise_mean(sigma: float, index: int, lr: float) -> float:
    """DESIGN.md: from the exact saddle with isotropic gradient noise sigma,
    ``E[T] = [ln(r sqrt(a^2-1)/(lr sigma)) - 1/2 (digamma(k/2) + ln 2)] / ln a``, ``a = 1 + lr gamma``."""
    a = 1 + lr * GAMMA
    head = math.log(RADIUS * math.sqrt(a * a - 1) / (lr * sigma))
    return (head - 0.5 * (scipy.special.digamma(index / 2) + math.log(2))) / math.log(a)


def noise_cdf(steps: np.ndarray, sigma: float, index: int, lr: float) -> np.ndarray:
    """P(T <= t) from the exact saddle in the linear regime: the unstable part after t steps is
    ``lr sigma sqrt((a^{2t} - 1)/(a^2 - 1)) chi_k``, and it has escaped when that is at least r."""
    a = 1 + lr * GAMMA
    t = np.asarray(steps, dtype=float)
    spread = lr * sigma * np.sqrt(np.expm1(2 * t * math.log(a)) / (a * a - 1))
    with np.errstate(divide="ignore"):
        needed = np.where(spread > 0, RADIUS / np.where(spread > 0, spread, 1.0), np.inf)
    return scipy.stats.chi.sf(needed, index)


# --- statistics ----------------------------------------------------------------------------------


def escape_times(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """The escape steps of the runs that escaped (:func:`landbench.outcomes.escape_time`) and how
    many did not (censored or diverged)."""
    times = [outcomes.escape_time(r) for r in records]
    done = np.array([t for t in times if t is not None], dtype=float)
    return done, len(times) - len(done)


def ols_slope(xs: np.ndarray, means: np.ndarray, counts: np.ndarray) -> float:
    """Slope of the least-squares line through every run, ``t`` on ``x``, from the group means (the
    runs of a group share their x): the n-weighted regression of the means."""
    w = counts / counts.sum()
    xbar = float(w @ xs)
    return float(w @ ((xs - xbar) * means) / (w @ (xs - xbar) ** 2))


def slope_interval(
    xs: Sequence[float], groups: Sequence[np.ndarray], resamples: int, seed: int
) -> tuple[float, float, float]:
    """The OLS slope of the escape step on ``x`` over all runs, and its stratified percentile-bootstrap
    95 % interval (the runs of each x resampled with replacement)."""
    x = np.asarray(xs, dtype=float)
    counts = np.array([len(g) for g in groups], dtype=float)
    slope = ols_slope(x, np.array([g.mean() for g in groups]), counts)
    rng = np.random.default_rng(seed)
    means = np.stack([g[rng.integers(0, len(g), size=(resamples, len(g)))].mean(axis=1) for g in groups], axis=1)
    draws = np.array([ols_slope(x, row, counts) for row in means])
    low, high = np.percentile(draws, [2.5, 97.5])
    return slope, float(low), float(high)


def mean_interval(times: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of a mean (:func:`landbench.ranking.stats.bootstrap_mean_ci`)."""
    low, high = bootstrap_mean_ci(times[:, None], resamples=resamples, seed=seed)
    return float(low[0]), float(high[0])


# --- the experiment ------------------------------------------------------------------------------


def suite_text(p: dict[str, Any]) -> str:
    """The claim's suite: the noise sweep from the exact saddle (noise 0 is plain GD), random starts
    at k = 1 and at k = d * index_fraction over ``dims``, and over ``indices`` at ``k_dim``."""
    problems: dict[int, set[int]] = {}
    for dim in p["dims"]:
        problems.setdefault(1, set()).add(dim)
        problems.setdefault(proportional_index(dim, p), set()).add(dim)
    for index in p["indices"]:
        problems.setdefault(index, set()).add(p["k_dim"])
    lines = [
        'name = "claim_escape"',
        f"seeds = {p['seeds']}",
        f"steps = {p['steps']}",
        'dtype = "float64"',
        f'optimizers = ["sgd(lr={p["lr"]})"]',
        "",
        "[metrics]",
        "curvature = false",
        "",
        "[[problems]]",
        'spec = "saddle(index=1, init_radius=0.0)"',
        f"dims = [{p['noise_dim']}]",
        f"noise = [0.0, {', '.join(repr(float(s)) for s in p['noise'])}]",
        f"steps = {p['noise_steps']}",
    ]
    for index, dims in sorted(problems.items()):
        lines += ["", "[[problems]]", f'spec = "saddle(index={index}, init_radius={p["eps"]})"']
        lines.append(f"dims = [{', '.join(str(d) for d in sorted(dims))}]")
    return "\n".join(lines) + "\n"


def proportional_index(dim: int, p: dict[str, Any]) -> int:
    return max(1, round(dim * p["index_fraction"]))


def _by_point(records: Sequence[dict[str, Any]]) -> dict[tuple[int, int, float, float], list[dict[str, Any]]]:
    """Records by (dim, index, init_radius, noise)."""
    out: dict[tuple[int, int, float, float], list[dict[str, Any]]] = {}
    for record in records:
        _, params = problem_params(record["problem"])
        key = (
            int(params["dim"]),
            int(params["index"]),
            float(params["init_radius"]),
            float(record.get("noise") or 0.0),
        )
        out.setdefault(key, []).append(record)
    return out


def _point(runs: list[dict[str, Any]], theory: float, x: float, resamples: int, seed: int) -> dict[str, Any]:
    times, censored = escape_times(runs)
    row: dict[str, Any] = {"x": x, "runs": len(runs), "escaped": len(times), "censored": censored, "theory": theory}
    if censored == 0 and len(times):
        row["mean"] = float(times.mean())
        row["ci"] = list(mean_interval(times, resamples, seed))
        row["median"] = float(np.median(times))
    else:
        row["mean"], row["ci"], row["median"] = None, None, outcomes.Escapes(tuple(times)).median
    return row


def _series(
    points: dict, keys: list[tuple], xs: list[float], theory: list[float], resamples: int, seed: int
) -> tuple[list[dict[str, Any]], list[np.ndarray], int]:
    rows, groups, censored = [], [], 0
    for n, (key, x, th) in enumerate(zip(keys, xs, theory)):
        runs = points[key]
        rows.append(_point(runs, th, x, resamples, seed + n))
        times, lost = escape_times(runs)
        groups.append(times)
        censored += lost
    return rows, groups, censored


#: (b) "supported" needs the slope's interval to hold the law and be narrower than this share of |law|.
LAW_WIDTH = 0.2
#: (b) "not supported" when the interval lies wholly outside law +- this share of |law| (or wholly above 0).
LAW_MARGIN = 0.5
#: (c) the k = d/10 slope counts as "not growing with d" when its upper bound is at most this share of the
#: fixed-k slope's lower bound.
FLAT_SHARE = 0.25


def law_slope_verdict(low: float, high: float, law: float) -> tuple[str, str]:
    """Part (b)'s rule on the slope's 95 % interval [low, high] against the law's slope (< 0): wholly above 0,
    or wholly outside law +- LAW_MARGIN |law|, not supported; holding the law and narrower than LAW_WIDTH
    |law|, supported; wholly below 0, not holding the law and not wholly outside the margin, supported with a
    caveat (escape slows as noise falls, off the law); otherwise (it reaches 0 or above, or it holds the
    law but is too wide to pin the slope) inconclusive. Returns (verdict, the reason in words)."""
    band = (law * (1 + LAW_MARGIN), law * (1 - LAW_MARGIN))
    if low > 0:
        return NOT_SUPPORTED, "the interval lies above 0: less noise does not slow the escape"
    if high < band[0] or low > band[1]:
        return NOT_SUPPORTED, (
            f"the interval lies wholly outside the law +- {LAW_MARGIN:.0%} [{band[0]:.2f}, {band[1]:.2f}]"
        )
    width = high - low
    if low <= law <= high and width <= LAW_WIDTH * abs(law):
        return SUPPORTED, f"the interval holds the law and is narrower than {LAW_WIDTH:.0%} of |law|"
    if high < 0 and not low <= law <= high:
        return CAVEAT, "the interval lies below 0 (less noise, slower escape) but excludes the law"
    if high >= 0:
        return INCONCLUSIVE, "the interval reaches 0: the sign of the slope is not decided"
    return INCONCLUSIVE, (
        f"the interval holds the law but is {width:.2f} wide, more than {LAW_WIDTH:.0%} of |law| "
        f"({LAW_WIDTH * abs(law):.2f}): more seeds"
    )


def dims_verdict(fixed: tuple[float, float, float], prop: tuple[float, float, float]) -> str:
    """Part (c)'s rule on the (slope, low, high) of the escape step against ln d at k = 1 (fixed) and at
    k = d/10 (prop), each from its 95 % interval."""
    if fixed[2] <= 0 and prop[2] <= 0:
        return SUPPORTED
    if fixed[1] > 0 and prop[2] <= FLAT_SHARE * fixed[1]:
        return CAVEAT
    if fixed[1] > 0 and prop[1] > 0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    lr, eps, resamples = float(p["lr"]), float(p["eps"]), int(p["resamples"])
    log_a = math.log(1 + lr * GAMMA)
    records, failed_records = outcomes.split_failed(ctx.sweep(suite_text(p), store="escape"))
    points = _by_point(records)
    failed = _by_point(failed_records)

    # (a) GD from the exact saddle against noisy GD
    gd_runs = points[(p["noise_dim"], 1, 0.0, 0.0)]
    gd_escaped = sum(outcomes.escape_time(r) is not None for r in gd_runs)
    gd_share = (gd_escaped / len(gd_runs), *wilson(gd_escaped, len(gd_runs)))
    noisy = []
    for sigma in p["noise"]:
        runs = points[(p["noise_dim"], 1, 0.0, float(sigma))]
        times, censored = escape_times(runs)
        noisy.append({"sigma": float(sigma), "runs": len(runs), "escaped": len(times), "censored": censored})
        noisy[-1]["share"] = [len(times) / len(runs), *wilson(len(times), len(runs))]
        noisy[-1]["times"] = sorted(times.tolist())
    lowest_noisy = min(n["share"][1] for n in noisy)
    if gd_share[2] < lowest_noisy:
        verdict_a = SUPPORTED
    elif gd_escaped > 0 or any(n["escaped"] == 0 for n in noisy):
        verdict_a = NOT_SUPPORTED
    else:
        verdict_a = INCONCLUSIVE
    shares = ", ".join(f"sigma {n['sigma']:g}: {n['escaped']}/{n['runs']}" for n in noisy)
    finding_a = Finding(
        verdict_a,
        "share of GD runs from the exact saddle that escape (Wilson 95 %), against noisy GD",
        gd_share[0],
        f"GD without noise escaped in {gd_escaped} of {len(gd_runs)} runs (Wilson upper bound {gd_share[2]:.3f}; "
        f"every run censored at its budget of {p['noise_steps']} steps); with noise: {shares} "
        f"(lowest Wilson lower bound {lowest_noisy:.3f}).",
        (gd_share[1], gd_share[2]),
    )

    # (b) escape time against the noise level
    sigmas = [float(s) for s in p["noise"]]
    keys = [(p["noise_dim"], 1, 0.0, s) for s in sigmas]
    noise_rows, noise_groups, noise_censored = _series(
        points, keys, sigmas, [noise_mean(s, 1, lr) for s in sigmas], resamples, 100
    )
    law = -1 / log_a
    if noise_censored or len(sigmas) < 2:
        finding_b = Finding(
            INCONCLUSIVE,
            "slope of the escape step against ln sigma (steps per unit of ln sigma)",
            math.nan,
            f"{noise_censored} noisy runs did not escape within {p['noise_steps']} steps (or fewer than two "
            "noise levels): the mean is not defined; raise noise_steps.",
        )
    else:
        slope, low, high = slope_interval(np.log(sigmas), noise_groups, resamples, seed=1)
        verdict_b, reason_b = law_slope_verdict(low, high, law)
        finding_b = Finding(
            verdict_b,
            "slope of the escape step against ln sigma (steps per unit of ln sigma)",
            slope,
            f"measured slope {slope:.2f} [{low:.2f}, {high:.2f}] against the law's -1/ln(1 + lr gamma) = {law:.2f} "
            f"({100 * (slope / law - 1):+.1f} %): {100:g} times less noise costs {math.log(100) * -slope:.1f} steps "
            f"(law {math.log(100) * -law:.1f}): {reason_b}.",
            (low, high),
        )

    # (c) against d at k = 1 and at k proportional to d
    dims = [int(d) for d in p["dims"]]
    fixed_rows, fixed_groups, fixed_censored = _series(
        points,
        [(d, 1, eps, 0.0) for d in dims],
        [float(d) for d in dims],
        [random_start_mean(d, 1, lr, eps) for d in dims],
        resamples,
        200,
    )
    prop_index = [proportional_index(d, p) for d in dims]
    prop_rows, prop_groups, prop_censored = _series(
        points,
        [(d, k, eps, 0.0) for d, k in zip(dims, prop_index)],
        [float(d) for d in dims],
        [random_start_mean(d, k, lr, eps) for d, k in zip(dims, prop_index)],
        resamples,
        300,
    )
    for row, k in zip(prop_rows, prop_index):
        row["index"] = k
    for row, d in zip(fixed_rows, dims):
        row["design"] = design_random_start(d, lr, eps)
    log_d = np.log(dims)
    theory_fixed = ols_slope(log_d, np.array([r["theory"] for r in fixed_rows]), np.ones(len(dims)))
    theory_prop = ols_slope(log_d, np.array([r["theory"] for r in prop_rows]), np.ones(len(dims)))
    statistic_c = "slope of the mean escape step against ln d at k = 1 (k = d/10 in why)"
    if fixed_censored or prop_censored or len(dims) < 2:
        finding_c = Finding(
            INCONCLUSIVE,
            statistic_c,
            math.nan,
            f"{fixed_censored + prop_censored} random-start runs did not escape within {p['steps']} steps "
            "(or fewer than two dimensions): raise steps.",
        )
        slopes_c = None
    else:
        fixed = slope_interval(log_d, fixed_groups, resamples, seed=2)
        prop = slope_interval(log_d, prop_groups, resamples, seed=3)
        slopes_c = {"fixed": fixed, "proportional": prop}
        verdict_c = dims_verdict(fixed, prop)
        fraction = p["index_fraction"]
        finding_c = Finding(
            verdict_c,
            statistic_c,
            fixed[0],
            f"at fixed index k = 1 escape slows by {fixed[0]:.2f} [{fixed[1]:.2f}, {fixed[2]:.2f}] steps per unit "
            f"of ln d (law 1/(2 ln a) -> {theory_fixed:.2f} over these d); at k = {fraction:g} d it changes by "
            f"{prop[0]:.2f} [{prop[1]:.2f}, {prop[2]:.2f}] (law {theory_prop:.2f}: the unstable part starts at eps "
            f"sqrt(k/d) whatever d). High dimension offers more escape routes only when the index grows with d.",
            (fixed[1], fixed[2]),
        )

    # (d) against k at fixed d
    indices = [int(k) for k in p["indices"]]
    k_rows, k_groups, k_censored = _series(
        points,
        [(p["k_dim"], k, eps, 0.0) for k in indices],
        [float(k) for k in indices],
        [random_start_mean(p["k_dim"], k, lr, eps) for k in indices],
        resamples,
        400,
    )
    theory_k = ols_slope(np.log(indices), np.array([r["theory"] for r in k_rows]), np.ones(len(indices)))
    statistic_d = f"slope of the mean escape step against ln k at d = {p['k_dim']}"
    if k_censored or len(indices) < 2:
        finding_d = Finding(
            INCONCLUSIVE,
            statistic_d,
            math.nan,
            f"{k_censored} runs did not escape within {p['steps']} steps (or fewer than two indices): raise steps.",
        )
        slope_d = None
    else:
        slope_d = slope_interval(np.log(indices), k_groups, resamples, seed=4)
        verdict_d = SUPPORTED if slope_d[2] < 0 else NOT_SUPPORTED if slope_d[1] > 0 else INCONCLUSIVE
        first, last = k_rows[0], k_rows[-1]
        finding_d = Finding(
            verdict_d,
            statistic_d,
            slope_d[0],
            f"{slope_d[0]:.2f} [{slope_d[1]:.2f}, {slope_d[2]:.2f}] steps per unit of ln k (law {theory_k:.2f}): "
            f"mean {first['mean']:.1f} steps at k = {indices[0]}, {last['mean']:.1f} at k = {indices[-1]} "
            f"(law {first['theory']:.1f} and {last['theory']:.1f}, which the cubic term raises by 2-3 steps).",
            (slope_d[1], slope_d[2]),
        )

    # failed runs (the job raised: no outcome) are left out of every part; each part says how many of its own
    scenarios = {
        "a": [(p["noise_dim"], 1, 0.0, 0.0)] + keys,
        "b": keys,
        "c": [(d, 1, eps, 0.0) for d in dims] + [(d, k, eps, 0.0) for d, k in zip(dims, prop_index)],
        "d": [(p["k_dim"], k, eps, 0.0) for k in indices],
    }
    findings = [
        _with_failed(finding, failed, scenarios[part])
        for part, finding in zip("abcd", [finding_a, finding_b, finding_c, finding_d])
    ]
    data = {
        "lr": lr,
        "eps": eps,
        "radius": RADIUS,
        "exact_saddle": {
            "gd": {"runs": len(gd_runs), "escaped": gd_escaped, "share": list(gd_share), "budget": p["noise_steps"]},
            "noisy": [{k: v for k, v in n.items() if k != "times"} for n in noisy],
        },
        "noise": {"dim": p["noise_dim"], "rows": noise_rows, "law_slope": law},
        "dims": {"fixed": fixed_rows, "proportional": prop_rows, "law_slopes": [theory_fixed, theory_prop]},
        "indices": {"dim": p["k_dim"], "rows": k_rows, "law_slope": theory_k},
        "failed_runs": {
            "total": len(failed_records),
            "by_scenario": [
                {"dim": d, "index": k, "init_radius": r, "noise": sigma, "failed": len(runs)}
                for (d, k, r, sigma), runs in sorted(failed.items())
            ],
        },
    }
    if slopes_c:
        data["dims"]["slopes"] = {name: list(v) for name, v in slopes_c.items()}
    figure = _draw(ctx, p, gd_runs, gd_escaped, noisy, noise_rows, fixed_rows, prop_rows, k_rows)
    caption = (
        "Escape from the saddle f = |P_s x|^2/2 - |P_u x|^2/2 + |P_u x|^4/4 by gradient descent (lr "
        f"{lr:g}, float64): measured means with bootstrap 95 % intervals, the closed forms of the claim's theory as "
        "lines. (a) From the exact saddle GD never moves (all runs censored at the budget) while every noise "
        "level escapes, at the times the noise law predicts. (b) Mean escape step against the noise level. "
        "(c) Against d from a random start of radius eps: at k = 1 it grows as 1/2 ln d / ln a, at k = d/10 "
        "it does not. (d) Against the index k at fixed d: more unstable directions, faster escape."
    )
    summary = (
        "GD stalls at the exact saddle and noise escapes it as the noise law says; more unstable directions "
        "escape faster, but high dimension helps only when the index grows with it."
    )
    return Measured(findings, [figure], [caption], data, summary=summary)


def _with_failed(finding: Finding, failed: dict[tuple, list], keys: list[tuple]) -> Finding:
    """The finding with a sentence on the failed runs (outcomes.is_failed: the job raised) of its scenarios,
    which were left out; the finding itself when none failed."""
    counts = [(key, len(failed[key])) for key in dict.fromkeys(keys) if failed.get(key)]
    if not counts:
        return finding
    where = "; ".join(f"d = {d}, k = {k}, eps = {r:g}, sigma = {s:g}: {n}" for (d, k, r, s), n in counts)
    note = (
        f" {sum(n for _, n in counts)} run(s) of this part failed (the job raised; left out, see landbench "
        f"status): {where}."
    )
    return dataclasses.replace(finding, why=finding.why + note)


# --- the figure ----------------------------------------------------------------------------------


def _draw(
    ctx: ClaimContext,
    p: dict[str, Any],
    gd_runs: list,
    gd_escaped: int,
    noisy: list[dict[str, Any]],
    noise_rows: list[dict[str, Any]],
    fixed_rows: list[dict[str, Any]],
    prop_rows: list[dict[str, Any]],
    k_rows: list[dict[str, Any]],
) -> Any:
    lr = float(p["lr"])
    with mpl.style():
        figure, axes = mpl.grid(4, columns=2, panel=(4.3, 3.3))
        ax = axes[0]
        budget = int(p["noise_steps"])
        steps = np.arange(0, budget + 1)
        for n, row in enumerate(noisy):
            color = mpl.COLORS[(n + 1) % len(mpl.COLORS)]
            times = np.array(row["times"])
            share = np.searchsorted(times, steps, side="right") / row["runs"]
            ax.step(steps, share, where="post", color=color, label=f"noisy GD, sigma = {row['sigma']:g}")
            ax.plot(steps, noise_cdf(steps, row["sigma"], 1, lr), ":", color=color, lw=1.2)
        ax.plot(steps, np.zeros_like(steps, dtype=float), color=mpl.COLORS[0], lw=2, label="GD, no noise")
        ax.plot([budget], [gd_escaped / len(gd_runs)], "x", color=mpl.COLORS[0], ms=9, mew=2)
        ax.annotate(
            f"GD: {gd_escaped}/{len(gd_runs)} escaped,\nall censored at {budget}",
            (budget, 0.0),
            xytext=(-6, 14),
            textcoords="offset points",
            ha="right",
            fontsize=7.5,
        )
        ax.plot([], [], ":", color="0.3", label="noise law P(T <= t)")
        ax.set(
            xlabel="step t",
            ylabel="share of runs escaped by t",
            title=f"(a) from the exact saddle (d = {p['noise_dim']}, k = 1)",
        )
        ax.set_ylim(-0.04, 1.04)
        ax.legend(loc="center right", fontsize=7)

        ax = axes[1]
        _measured(ax, noise_rows, mpl.COLORS[1], "noisy GD, measured mean")
        xs = np.geomspace(min(r["x"] for r in noise_rows) / 2, max(r["x"] for r in noise_rows) * 2, 60)
        ax.plot(xs, [noise_mean(s, 1, lr) for s in xs], "--", color="0.2", label="closed-form noise law E[T]")
        ax.set_xscale("log")
        ax.set(xlabel="gradient noise sigma", ylabel="escape step", title="(b) escape time against the noise level")
        ax.legend(fontsize=7)

        ax = axes[2]
        _measured(ax, fixed_rows, mpl.COLORS[0], "k = 1, measured mean")
        _measured(ax, prop_rows, mpl.COLORS[2], f"k = {p['index_fraction']:g} d, measured mean", shift=1.06)
        ds = np.geomspace(min(r["x"] for r in fixed_rows), max(r["x"] for r in fixed_rows), 60)
        ax.plot(
            ds,
            [design_random_start(d, lr, p["eps"]) for d in ds],
            "--",
            color=mpl.COLORS[0],
            label="closed-form law, k = 1",
        )
        ax.plot(
            [r["x"] for r in prop_rows],
            [r["theory"] for r in prop_rows],
            "--",
            color=mpl.COLORS[2],
            label="Beta law, k = d/10",
        )
        ax.set_xscale("log")
        ax.set(xlabel="dimension d", ylabel="escape step", title=f"(c) from a random start, |x_0| = {p['eps']:g}")
        ax.legend(fontsize=7)

        ax = axes[3]
        _measured(ax, k_rows, mpl.COLORS[3], "measured mean")
        ax.plot(
            [r["x"] for r in k_rows], [r["theory"] for r in k_rows], "--", color="0.2", label="Beta law (linear regime)"
        )
        ax.set_xscale("log")
        ax.set(
            xlabel="index k (unstable directions)",
            ylabel="escape step",
            title=f"(d) against the index at d = {p['k_dim']}",
        )
        ax.legend(fontsize=7)
        mpl.tidy(axes)
        return mpl.save(figure, ctx.figure("escape"))


def _measured(ax: Any, rows: list[dict[str, Any]], color: str, label: str, shift: float = 1.0) -> None:
    """Measured means with their intervals; ``shift`` moves the markers sideways (a factor on a log
    axis) so that two series that share a point both show."""
    shown = [r for r in rows if r["mean"] is not None]
    if not shown:
        return
    xs = np.array([r["x"] for r in shown]) * shift
    means = np.array([r["mean"] for r in shown])
    errors = np.array([[r["mean"] - r["ci"][0], r["ci"][1] - r["mean"]] for r in shown]).T
    ax.errorbar(xs, means, yerr=errors, fmt="o", color=color, ms=4, capsize=2.5, label=label)
