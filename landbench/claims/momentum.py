"""Claim 4: momentum and adaptive methods escape saddles faster than gradient descent.

GD, heavy-ball and Nesterov momentum, Adam and RMSprop, each at the learning rate landbench's tuning
protocol chooses for the saddle family (``problems/claims/momentum.toml`` says for what), on saddles of a
few dimensions and indices. Per scenario, each method's median escape step against GD's (the runs are
paired: the same seed starts every optimizer at the same point), with a paired bootstrap; per method,
the geometric mean of those ratios. Escape and censoring are the records' own
(:func:`landbench.outcomes.escape_time`): a censored run ranks after every escape, so medians are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

from landbench import outcomes
from landbench.claims.base import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.ranking.stats import censored_quantiles
from landbench.report import mpl
from landbench.report.data import problem_params

#: The optimizers compared, in the order drawn; the first is the reference.
OPTIMIZERS = ("gd", "sgd(momentum=0.9)", "sgd(momentum=0.9, nesterov=True)", "adam", "rmsprop")
NAMES = {
    "gd": "GD",
    "sgd(momentum=0.9)": "heavy ball",
    "sgd(momentum=0.9, nesterov=True)": "Nesterov",
    "adam": "Adam",
    "rmsprop": "RMSprop",
}
#: The loss-gap targets tuning ranks the rates by (escape is a gap of 1/8; 1e-3 is settled).
TARGETS = (0.1, 0.01, 0.001)
BETA = 0.9
GAMMA = 1.0
#: |P_u x| where the loss is halfway from the saddle's 0 down to f* = -1/4 (gamma = quartic = 1).
RADIUS = math.sqrt(1 - 1 / math.sqrt(2))


def suite_text(p: dict[str, Any]) -> str:
    """The claim's suite: every problem at its dimensions, the five optimizers tuned per family."""
    optimizers = ", ".join(f'"{o}"' for o in OPTIMIZERS)
    lines = [
        'name = "claim_momentum"',
        f"seeds = {p['seeds']}",
        f"steps = {p['steps']}",
        'dtype = "float64"',
        f"optimizers = [{optimizers}]",
        "",
        "[metrics]",
        "curvature = false",
        f"targets = [{', '.join(repr(t) for t in TARGETS)}]",
        "",
        "[tuning]",
        "instances = [1000]",
        "seeds = [1000, 1001, 1002, 1003]",
    ]
    if "grid" in p:  # else the default grid, 1e-4 to 10 in half decades
        lines.append(f"grid = [{', '.join(repr(float(v)) for v in p['grid'])}]")
    for spec, dims in zip(p["problems"], p["dims"]):
        lines += ["", "[[problems]]", f'spec = "{spec}"', f"dims = [{', '.join(str(d) for d in dims)}]"]
    return "\n".join(lines) + "\n"


# --- the linear law ----------------------------------------------------------------------------------


def growth_matrix(name: str, lr: float) -> np.ndarray | None:
    """The linear map of (unstable coordinate u, previous velocity v) per step near the saddle, where
    the gradient is -gamma u; None for the adaptive methods (no linear law)."""
    if name == "gd":
        return np.array([[1 + lr * GAMMA, 0.0], [0.0, 0.0]])
    if name == "sgd(momentum=0.9)":
        return np.array([[1 + lr * GAMMA, -lr * BETA], [-GAMMA, BETA]])
    if name == "sgd(momentum=0.9, nesterov=True)":
        return np.array([[1 + lr * GAMMA * (1 + BETA), -lr * BETA * BETA], [-GAMMA, BETA]])
    return None


def growth_rate(name: str, lr: float) -> float | None:
    """Per-step growth of the unstable coordinate in the linear regime (the spectral radius)."""
    matrix = growth_matrix(name, lr)
    return None if matrix is None else float(np.max(np.abs(np.linalg.eigvals(matrix))))


def linear_escape(name: str, lr: float, start: float, radius: float = RADIUS, limit: int = 100_000) -> int | None:
    """First step at which the linear recursion's unstable coordinate, from ``start`` at rest, reaches
    ``radius`` (None for the adaptive methods)."""
    matrix = growth_matrix(name, lr)
    if matrix is None:
        return None
    state = np.array([start, 0.0])
    for step in range(1, limit):
        state = matrix @ state
        if abs(state[0]) >= radius:
            return step
    return None


def median_start(dim: int, index: int, eps: float) -> float:
    """The median of ``|P_u x_0|`` for a uniform point of the sphere of radius eps:
    ``eps sqrt(median Beta(k/2, (d-k)/2))``."""
    if index >= dim:
        return eps
    return eps * math.sqrt(scipy.stats.beta.ppf(0.5, index / 2, (dim - index) / 2))


# --- statistics ----------------------------------------------------------------------------------


def _times(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Escape steps by seed order (:func:`landbench.outcomes.escape_time`), censored runs as inf."""
    ordered = sorted(records, key=lambda r: r["seed"])
    return np.array([math.inf if (t := outcomes.escape_time(r)) is None else float(t) for r in ordered])


def _medians(times: np.ndarray) -> np.ndarray:
    """Medians along the last axis with inf for censored runs: landbench's censored median
    (:func:`landbench.ranking.stats.censored_quantiles`), inf where it falls on a censored run."""
    return censored_quantiles(times, 0.5)


def _ratio(method: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Ratio of medians: inf / finite = inf, finite / inf = 0, inf / inf = nan (undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return method / reference


def paired(
    by_seed: dict[str, list[dict[int, float]]],
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]], dict[str, list[int]]]:
    """Per method (other than GD) and scenario, its escape steps and GD's on the seeds both ran (a failed
    run of either leaves its seed out of the pair), in seed order; and the seeds of the pair's two series
    that were left out (unpaired) per scenario."""
    reference = by_seed[OPTIMIZERS[0]]
    methods, references, dropped = {}, {}, {}
    for name, series in by_seed.items():
        if name == OPTIMIZERS[0]:
            continue
        methods[name], references[name], dropped[name] = [], [], []
        for mine, gd in zip(series, reference):
            common = sorted(set(mine) & set(gd))
            methods[name].append(np.array([mine[s] for s in common], dtype=float))
            references[name].append(np.array([gd[s] for s in common], dtype=float))
            dropped[name].append(len(mine) + len(gd) - 2 * len(common))
    return methods, references, dropped


def bootstrap_ratios(
    methods: dict[str, list[np.ndarray]], references: dict[str, list[np.ndarray]], resamples: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per method, the ratio of its median escape step to GD's per scenario over the seeds both ran (from
    :func:`paired`), point values and paired bootstrap draws (per scenario, the paired seeds resampled
    jointly for the method and GD). A scenario with no paired seed has an undefined (nan) ratio."""
    rng = np.random.default_rng(seed)
    points, samples = {}, {}
    for name, series in methods.items():
        point, draws = [], []
        for m, g in zip(series, references[name]):
            if len(m) == 0:
                point.append(math.nan)
                draws.append(np.full(resamples, math.nan))
                continue
            d = rng.integers(0, len(m), size=(resamples, len(m)))
            point.append(_ratio(_medians(m), _medians(g)))
            draws.append(_ratio(_medians(m[d]), _medians(g[d])))
        points[name] = np.array(point, dtype=float)
        samples[name] = np.stack(draws, axis=1)
    return points, samples


def geometric_mean(ratios: np.ndarray) -> np.ndarray:
    """Geometric mean over the last axis (0 and inf propagate; nan where any is nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(ratios), axis=-1))


def interval(draws: np.ndarray) -> tuple[float, float]:
    """Percentile 95 % interval of bootstrap draws; (nan, nan) when any draw is undefined."""
    if np.isnan(draws).any():
        return math.nan, math.nan
    # no interpolation: a draw may be inf (a censored median), and inf - inf is not a number
    return float(np.percentile(draws, 2.5, method="lower")), float(np.percentile(draws, 97.5, method="higher"))


#: A ratio interval inside [1 - EQUIVALENCE, 1 + EQUIVALENCE] shows the method no faster (and no slower) than
#: GD by more than this share: "not supported". An interval that holds 1 but reaches beyond cannot decide.
EQUIVALENCE = 0.1


def ratio_verdict(low: float, high: float) -> tuple[str, str]:
    """The stated test on a method's interval [low, high] of its geometric-mean ratio to GD: below 1,
    supported (faster); above 1, not supported (slower); containing 1 and inside [0.9, 1.1], not supported
    (no faster than GD by more than 10 %); containing 1 and reaching beyond, inconclusive (the data cannot
    tell); undefined (NaN), inconclusive. Returns (verdict, the reason in words)."""
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE, "some ratio is undefined (both medians censored): raise steps"
    if high < 1:
        return SUPPORTED, "faster than GD (the interval lies below 1)"
    if low > 1:
        return NOT_SUPPORTED, "slower than GD (the interval lies above 1)"
    bounds = f"[{1 - EQUIVALENCE:g}, {1 + EQUIVALENCE:g}]"
    if low >= 1 - EQUIVALENCE and high <= 1 + EQUIVALENCE:
        return NOT_SUPPORTED, (
            f"no faster than GD by more than {EQUIVALENCE:.0%} (the interval contains 1 and lies inside {bounds})"
        )
    return INCONCLUSIVE, (
        f"the interval contains 1 but reaches outside {bounds}: the data cannot tell whether it is faster than "
        "GD (more seeds would narrow it)"
    )


# --- the experiment ------------------------------------------------------------------------------


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    resamples = int(p["resamples"])
    records, failed_records = outcomes.split_failed(ctx.sweep(suite_text(p), store="momentum"))
    # failed runs (the job raised: no outcome) are left out and counted per (scenario, optimizer)
    failed: dict[tuple[str, str], int] = {}
    for record in failed_records:
        key = (record["problem"], str(record.get("label") or record["optimizer"]))
        failed[key] = failed.get(key, 0) + 1
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        runs.setdefault((record["problem"], record["label"]), []).append(record)
    scenarios = list(dict.fromkeys([problem for problem, _ in runs] + [problem for problem, _ in failed]))
    rates = {label: float(r[0]["tuning"]["lr"]) for (_, label), r in runs.items()}
    times = {name: [_times(runs.get((s, name), [])) for s in scenarios] for name in OPTIMIZERS}
    by_seed = {}
    for name in OPTIMIZERS:
        by_seed[name] = []
        for i, s in enumerate(scenarios):
            ordered = sorted(runs.get((s, name), []), key=lambda r: r["seed"])
            by_seed[name].append({int(r["seed"]): t for r, t in zip(ordered, times[name][i])})
    # each method is paired with GD on the seeds both ran: a failed run drops its seed from that pair only
    methods, references, unpaired = paired(by_seed)
    points, samples = bootstrap_ratios(methods, references, resamples, seed=4)

    table = []
    for i, scenario in enumerate(scenarios):
        _, params = problem_params(scenario)
        start = median_start(int(params["dim"]), int(params["index"]), float(params["init_radius"]))
        for name in OPTIMIZERS:
            series = times[name][i]
            median = float(_medians(series)) if len(series) else math.nan
            rng = np.random.default_rng(10 + i)
            boot = (
                _medians(series[rng.integers(0, len(series), size=(resamples, len(series)))])
                if len(series)
                else np.full(resamples, math.nan)
            )
            row = {
                "problem": scenario,
                "optimizer": name,
                "lr": rates.get(name, math.nan),
                "runs": len(series),
                "failed": failed.get((scenario, name), 0),
                "escaped": int(np.isfinite(series).sum()),
                "median": _json(median),
                "median_ci": [_json(v) for v in interval(boot)],
                "linear_law": linear_escape(name, rates[name], start) if name in rates else None,
            }
            if name != OPTIMIZERS[0]:
                row["paired_seeds"] = len(methods[name][i])
                row["unpaired"] = unpaired[name][i]
                row["ratio"] = _json(float(points[name][i]))
                row["ratio_ci"] = [_json(v) for v in interval(samples[name][:, i])]
            table.append(row)

    findings, overall = [], {}
    for name in OPTIMIZERS[1:]:
        value = float(geometric_mean(points[name]))
        low, high = interval(geometric_mean(samples[name]))
        overall[name] = (value, low, high)
        each = ", ".join(f"{float(r):.2f}" for r in points[name])
        slower = [_short(s).replace("\n", " ") for s, r in zip(scenarios, points[name]) if not r < 1]
        statistic = f"{NAMES[name]}: geometric mean over the saddles of its median escape step over GD's"
        said = (
            f"{NAMES[name]} (lr {rates.get(name, math.nan):g}) against GD (lr {rates.get(OPTIMIZERS[0], math.nan):g}): "
            "ratio of medians "
            f"{value:.2f} [{low:.2f}, {high:.2f}] over {len(scenarios)} saddles (each: {each})"
        )
        verdict, reason = ratio_verdict(low, high)
        if verdict == SUPPORTED and slower:
            reason += f", though not on every saddle (ratio >= 1 at {'; '.join(slower)})"
        why = f"{said}; {reason}." if verdict == INCONCLUSIVE and math.isnan(low) else f"{said}: {reason}."
        lost = [
            (scenario, failed.get((scenario, name), 0), failed.get((scenario, OPTIMIZERS[0]), 0), unpaired[name][i])
            for i, scenario in enumerate(scenarios)
        ]
        lost = [row for row in lost if any(row[1:])]
        if lost:
            where = "; ".join(
                f"{_short(pr).replace(chr(10), ' ')}: {mine} of {NAMES[name]}'s and {gd} of GD's failed, "
                f"{n} unpaired run(s) dropped"
                for pr, mine, gd, n in lost
            )
            why += (
                f" Failed runs (the job raised; see landbench status) are left out and their seeds dropped from "
                f"the pair with GD: {sum(r[1] + r[2] for r in lost)} failed, {sum(r[3] for r in lost)} run(s) "
                f"dropped ({where})."
            )
        findings.append(Finding(verdict, statistic, value, why, (low, high)))

    faster = [NAMES[n] for n, f in zip(OPTIMIZERS[1:], findings) if f.verdict == SUPPORTED]
    data = {
        "tuned_rates": {NAMES[n]: _json(rates.get(n, math.nan)) for n in OPTIMIZERS},
        "tuned_for": "leaderboard rank over the saddle family: loss-gap targets 0.1, 0.01, 0.001 held, then ERT",
        "scenarios": table,
        "overall": {NAMES[n]: [_json(v) for v in overall[n]] for n in OPTIMIZERS[1:]},
        "paired_seeds": {
            NAMES[n]: [
                {"problem": sc, "paired": len(methods[n][i]), "dropped": unpaired[n][i]}
                for i, sc in enumerate(scenarios)
            ]
            for n in OPTIMIZERS[1:]
        },
        "failed_runs": {
            "total": len(failed_records),
            "by_scenario": [
                {"problem": pr, "optimizer": label, "failed": n} for (pr, label), n in sorted(failed.items())
            ],
        },
    }
    figure = _draw(ctx, scenarios, table, overall)
    caption = (
        "Escape from saddles (random start at radius 1e-3, rotated unstable subspace, float64) at each "
        "optimizer's tuned learning rate. Left: median escape step per saddle with bootstrap 95 % intervals; "
        "hollow markers: the linear-regime law at the tuned rate (GD, heavy ball, Nesterov). Right: the ratio "
        "of each method's median to GD's (small markers per saddle, large: geometric mean with paired "
        "bootstrap 95 % interval); below 1 is faster than GD."
    )
    summary = (
        f"At their tuned rates {', '.join(faster) if faster else 'no method'} escape{'s' if len(faster) == 1 else ''} "
        f"faster than GD ({len(faster)} of {len(findings)})."
    )
    return Measured(findings, [figure], [caption], data, summary=summary)


def _json(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


# --- the figure ----------------------------------------------------------------------------------


def _short(problem: str) -> str:
    _, params = problem_params(problem)
    return f"d={params['dim']}\nk={params['index']}"


def _draw(ctx: ClaimContext, scenarios: list[str], table: list[dict[str, Any]], overall: dict) -> Any:
    styles = mpl.Styles([NAMES[n] for n in OPTIMIZERS])
    width = 0.8 / len(OPTIMIZERS)
    with mpl.style():
        figure, axes = mpl.grid(2, columns=2, panel=(4.4, 3.4))
        ax = axes[0]
        for j, name in enumerate(OPTIMIZERS):
            label = NAMES[name]
            rows = [r for r in table if r["optimizer"] == name]
            xs = np.arange(len(scenarios)) + (j - (len(OPTIMIZERS) - 1) / 2) * width
            for x, row in zip(xs, rows):
                if row["median"] is None:
                    ax.plot([x], [ax.get_ylim()[1]], "^", color=styles.color(label), ms=6)
                    continue
                low, high = (v if v is not None else row["median"] for v in row["median_ci"])
                ax.errorbar(
                    [x],
                    [row["median"]],
                    yerr=[[row["median"] - low], [high - row["median"]]],
                    fmt=styles.marker(label),
                    color=styles.color(label),
                    ms=5,
                    capsize=2,
                )
                if row["linear_law"] is not None:
                    ax.plot([x], [row["linear_law"]], styles.marker(label), mfc="none", color=styles.color(label), ms=9)
            rate = rows[0]["lr"]
            ax.plot([], [], styles.marker(label), color=styles.color(label), label=f"{label} (lr {rate:g})")
        ax.plot([], [], "o", mfc="none", color="0.3", ms=8, label="linear law at the tuned lr")
        ax.set_xticks(range(len(scenarios)), [_short(s) for s in scenarios])
        ax.set(xlabel="saddle", ylabel="median escape step", title="(a) escape step at the tuned rates")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)

        ax = axes[1]
        for j, name in enumerate(OPTIMIZERS[1:]):
            label = NAMES[name]
            ratios = [r["ratio"] for r in table if r["optimizer"] == name]
            shown = [v for v in ratios if v is not None and v > 0]
            ax.plot(
                np.full(len(shown), j) + 0.12, shown, styles.marker(label), color=styles.color(label), ms=3.5, alpha=0.6
            )
            value, low, high = overall[name]
            if math.isfinite(value) and value > 0:
                ax.errorbar(
                    [j],
                    [value],
                    yerr=[[value - low], [high - value]] if math.isfinite(high) and low > 0 else None,
                    fmt=styles.marker(label),
                    color=styles.color(label),
                    ms=8,
                    capsize=3,
                )
        ax.axhline(1.0, color="0.2", ls="--", lw=1, label="GD (ratio 1)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(OPTIMIZERS) - 1), [NAMES[n] for n in OPTIMIZERS[1:]])
        ax.set(ylabel="median escape step / GD's", title="(b) ratio to GD (geometric mean, 95 % CI)")
        ax.legend(fontsize=7)
        mpl.tidy(axes)
        return mpl.save(figure, ctx.figure("momentum"))
