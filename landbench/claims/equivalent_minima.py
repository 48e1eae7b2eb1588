"""Claim 5: in large models the minima that optimizers reach are nearly equivalent
(``problems/claims/equivalent_minima.toml``).

One sweep of the engine on the spherical 3-spin ``pspin(p=3, dim=N)``: GD (``sgd(lr=0.1 N)``), the same
with gradient noise at a fixed temperature of H, and Adam, on several instances and runs per N. A
record's ``final_loss`` is the energy per spin ``e = H/N`` (the family's loss, DESIGN.md's convention),
evaluated without noise at the last iterate. Two findings, each from the data:

(a) the spread (standard deviation of e over runs and instances) falls with N: its log-log slope,
    common to the optimizers, with a two-level bootstrap interval, against the theory's N^-1/2;
(b) the mean approaches the threshold E_th, not the ground state E_0: per optimizer, the fit
    ``mean(N) = e_inf + c N^(-2/3)`` extrapolated to N -> infinity, with its bootstrap interval.

Figures: Choromanska et al. 2015's histograms of final energies per N (one panel per optimizer, E_th
and E_0 drawn), and the spread and mean against N with the theory lines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from landbench import outcomes
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.landscapes.pspin import GROUND_STATE, threshold_energy

P = 3
#: Ground state and threshold energies per spin of the pure 3-spin (N -> infinity).
E_0 = GROUND_STATE[P]
E_TH = threshold_energy({P: 1.0})
#: The exponent of the finite-N model ``mean(N) = e_inf + c N^-ALPHA``, and those reported beside it.
ALPHA = 2.0 / 3.0
ALPHAS_SENSITIVITY = (0.5, 1.0)
#: The spread's theory exponent (sd ~ N^THEORY_SLOPE or faster).
THEORY_SLOPE = -0.5
#: The share of the budget over which the energy change measures convergence (the last 20 %).
TAIL = 0.2
BOOTSTRAP_SEED = 20150509
LABELS = ("GD", "noisy SGD", "Adam")
MIN_SIZES = 3
#: An extrapolation interval wider than this (about 4 (E_th - E_0)) cannot place the limit at E_th.
MAX_LIMIT_WIDTH = 0.1
#: More than this share of an optimizer's runs diverged or failed (left out of the energies): inconclusive.
MAX_LOST_SHARE = 0.1
#: The runs of a cell (optimizer, N) are settled when the 95 % interval of their mean energy change over the
#: last TAIL of the steps (mean +- 1.96 standard errors) lies inside +-DRIFT_LIMIT: a quarter of the gap
#: E_th - E_0 that the location test must resolve. The drift of the mean, not of single runs: noisy SGD at a
#: fixed temperature and Adam at a constant rate jitter forever, while only the means enter the fits. A mean
#: still falling by d over the last fifth of the budget has about that much left to fall, so a quarter of the
#: gap leaves the means (and the limit fitted through them) able to tell E_th from E_0.
DRIFT_LIMIT = (E_TH - E_0) / 4.0
DRIFT_Z = 1.96


# --- the sweep ------------------------------------------------------------------------------------


def noise_sigma(dim: int, lr: float, temperature: float) -> float:
    """Gradient noise per coordinate that makes ``x <- x - lr (grad(H/N) + sigma xi)`` Langevin dynamics
    of H at temperature T: a step is ``dt = lr/N`` of ``dx = -grad H dt + sqrt(2T) dW``, so
    ``lr^2 sigma^2 = 2 T lr/N``."""
    return math.sqrt(2.0 * temperature / (lr * dim))


def _per_size(p: dict[str, Any], key: str, count: int) -> list[int]:
    value = p[key]
    values = [int(v) for v in value] if isinstance(value, list) else [int(value)] * count
    if len(values) != count:
        raise ValueError(f"equivalent_minima: {count} dims but {len(values)} values of {key}")
    return values


def sizes(p: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """(N, steps, seeds, instances) per size of the tier (each one count per N, or one for all)."""
    dims = [int(d) for d in p["dims"]]
    return list(
        zip(
            dims,
            _per_size(p, "steps", len(dims)),
            _per_size(p, "seeds", len(dims)),
            _per_size(p, "instances", len(dims)),
        )
    )


def suite_text(p: dict[str, Any]) -> str:
    """The sweep: per N, GD and Adam without noise, and GD with noise at temperature T."""
    adam = float(p["adam_lr"])
    lines = [
        'name = "equivalent_minima"',
        'description = "spherical 3-spin: final energies per spin of GD, noisy SGD and Adam against N"',
        f'dtype = "{p.get("dtype", "float32")}"',
        "",
        "[metrics]",
        "curvature = false",
    ]
    for dim, steps, seeds, instances in sizes(p):
        lr = float(p["lr_factor"]) * dim
        sigma = noise_sigma(dim, lr, float(p["temperature"]))
        for optimizers, noise in (([f"sgd(lr={lr!r})", f"adam(lr={adam!r})"], None), ([f"sgd(lr={lr!r})"], sigma)):
            lines += [
                "",
                "[[problems]]",
                'spec = "pspin(p=3)"',
                f"dims = [{dim}]",
                f"steps = {steps}",
                f"seeds = {seeds}",
                f"instances = {instances}",
                *([] if noise is None else [f"noise = [{noise!r}]"]),
                "optimizers = [" + ", ".join(f'"{o}"' for o in optimizers) + "]",
            ]
    return "\n".join(lines) + "\n"


def label_of(record: dict[str, Any]) -> str:
    """GD, noisy SGD or Adam."""
    if str(record["optimizer"]).startswith("adam"):
        return "Adam"
    return "noisy SGD" if float(record.get("noise") or 0.0) > 0 else "GD"


def tail_change(record: dict[str, Any], tail: float = TAIL) -> float:
    """The energy change over the last ``tail`` of the budget, from the record's log-spaced loss curve:
    final energy minus the energy at the last curve point at or before step ``(1 - tail) steps``
    (negative: still descending). NaN without a curve."""
    curve = record.get("curve") or {}
    steps, losses = curve.get("steps") or [], curve.get("loss") or []
    if not steps or record.get("final_loss") is None:
        return math.nan
    at = (1.0 - tail) * float(record["steps"])
    earlier = [loss for step, loss in zip(steps, losses) if step <= at and loss is not None]
    return float(record["final_loss"]) - float(earlier[-1]) if earlier else math.nan


Cells = dict[tuple[str, int], list[np.ndarray]]


def collect(records: list[dict[str, Any]]) -> tuple[Cells, dict[tuple[str, int], dict[str, float]]]:
    """Final energies per (optimizer label, N), one array per instance (runs in seed order), and per cell
    the counts of diverged (and failed) runs and the convergence figures."""
    by_instance: dict[tuple[str, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    info: dict[tuple[str, int], dict[str, Any]] = defaultdict(lambda: {"diverged": 0, "failed": 0, "changes": []})
    for record in records:
        key = (label_of(record), int(record["dim"]))
        if outcomes.is_failed(record):
            info[key]["failed"] += 1
            continue
        if outcomes.is_diverged(record):
            info[key]["diverged"] += 1
            continue
        by_instance[key][int(record["instance"])].append(float(record["final_loss"]))
        info[key]["changes"].append(tail_change(record))
    cells = {key: [np.asarray(v[i]) for i in sorted(v)] for key, v in by_instance.items()}
    summary = {}
    for key, entry in info.items():
        signed = np.asarray([c for c in entry["changes"] if math.isfinite(c)])
        changes = np.abs(signed)
        drift, drift_ci = mean_drift(signed)
        summary[key] = {
            "diverged": entry["diverged"],
            "failed": entry["failed"],
            "tail_change_median": float(np.median(changes)) if changes.size else math.nan,
            "tail_change_max": float(changes.max()) if changes.size else math.nan,
            "drift": drift,
            "drift_ci": list(drift_ci),
            "runs_total": len(entry["changes"]) + entry["diverged"] + entry["failed"],
        }
    return cells, summary


def mean_drift(changes: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The mean of the runs' energy changes over the last TAIL of the steps, with its interval mean +-
    DRIFT_Z standard errors (NaN with fewer than 2 runs)."""
    changes = np.asarray(changes, dtype=float)
    if changes.size < 2:
        return (float(changes.mean()) if changes.size else math.nan), (math.nan, math.nan)
    mean = float(changes.mean())
    half = DRIFT_Z * float(changes.std(ddof=1)) / math.sqrt(changes.size)
    return mean, (mean - half, mean + half)


def settled(drift_ci: tuple[float, float] | list[float], limit: float = DRIFT_LIMIT) -> bool:
    """The stated test's convergence rule: the drift interval lies inside [-limit, limit]."""
    low, high = drift_ci
    return bool(math.isfinite(low) and math.isfinite(high) and -limit <= low and high <= limit)


# --- statistics ------------------------------------------------------------------------------------


def cell_stats(instances: list[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation (ddof 1) of all runs of all instances."""
    values = np.concatenate(instances)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def bootstrap_cell(instances: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap of one cell: per draw, instances with replacement, then runs with replacement
    within each drawn instance (as many as it has); the mean and standard deviation (ddof 1) of the
    drawn runs. Returns (resamples, 2)."""
    count = len(instances)
    sizes = np.asarray([v.size for v in instances])
    width = int(sizes.max())
    table = np.full((count, width), np.nan)
    for i, values in enumerate(instances):
        table[i, : values.size] = values
    drawn = rng.integers(0, count, (resamples, count))
    size = sizes[drawn]  # (B, I)
    runs = np.floor(rng.random((resamples, count, width)) * size[..., None]).astype(int)
    values = table[drawn[..., None], runs]  # (B, I, width)
    values[np.arange(width)[None, None, :] >= size[..., None]] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([np.nanmean(values, axis=(1, 2)), np.nanstd(values, axis=(1, 2), ddof=1)], axis=1)


def common_slope(points: dict[str, list[tuple[int, float]]]) -> float:
    """OLS slope of ln(sd) against ln(N), one slope for all optimizers, an intercept each (within-group
    centring). ``points``: per optimizer, (N, sd) pairs; non-positive or NaN spreads are left out."""
    num = den = 0.0
    for pairs in points.values():
        pairs = [(n, s) for n, s in pairs if math.isfinite(s) and s > 0]
        if len(pairs) < 2:
            continue
        x = np.log([n for n, _ in pairs])
        y = np.log([s for _, s in pairs])
        num += float(((x - x.mean()) * (y - y.mean())).sum())
        den += float(((x - x.mean()) ** 2).sum())
    return num / den if den > 0 else math.nan


def _slopes(groups: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """:func:`common_slope` over many draws at once: per group ``(ln N (n,), ln sd (B, n))``."""
    num, den = 0.0, 0.0
    for x, y in groups:
        if x.size < 2:
            continue
        xc = x - x.mean()
        num = num + ((y - y.mean(axis=1, keepdims=True)) * xc).sum(axis=1)
        den += float((xc**2).sum())
    return num / den if den > 0 else np.full(groups[0][1].shape[0] if groups else 1, np.nan)


def limit_fit(
    dims: list[int], means: list[float], alpha: float = ALPHA, weights: list[float] | None = None
) -> tuple[float, float]:
    """Least-squares fit of ``mean(N) = e_inf + c N^-alpha`` (weighted by ``weights``, e.g. the inverse
    variances of the means; unweighted without): (e_inf, c)."""
    x = np.asarray(dims, dtype=float) ** -alpha
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    out = _limits(dims, np.asarray(means, dtype=float)[None, :], alpha, w)
    return float(out[0][0]), float(out[1][0])


def _limits(
    dims: list[int], means: np.ndarray, alpha: float = ALPHA, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`limit_fit` over many draws at once: ``means`` is (B, n); returns (e_inf (B,), c (B,))."""
    x = np.asarray(dims, dtype=float) ** -alpha
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    xbar = float((w * x).sum())
    ybar = (means * w).sum(axis=1)
    c = ((means - ybar[:, None]) * (w * (x - xbar))).sum(axis=1) / float((w * (x - xbar) ** 2).sum())
    return ybar - c * xbar, c


def _interval(values: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of the finite draws (NaN when fewer than half are finite)."""
    finite = values[np.isfinite(values)]
    if finite.size < max(10, values.size // 2):
        return (math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def analyse(cells: Cells, resamples: int, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Means, spreads, the common spread slope, per-optimizer slopes and limits, with bootstrap intervals
    (one set of two-level draws per cell, shared by every statistic; ``seed`` fixes them)."""
    labels = [label for label in LABELS if any(key[0] == label for key in cells)]
    dims = {label: sorted(n for lab, n in cells if lab == label) for label in labels}
    rng = np.random.default_rng(seed)
    keys = sorted(cells, key=lambda key: (LABELS.index(key[0]), key[1]))
    point = {key: cell_stats(cells[key]) for key in keys}
    draws = {key: bootstrap_cell(cells[key], resamples, rng) for key in keys}

    def groups(label_list: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for label in label_list:
            good = [n for n in dims[label] if math.isfinite(point[(label, n)][1]) and point[(label, n)][1] > 0]
            if len(good) >= 2:
                with np.errstate(divide="ignore", invalid="ignore"):
                    y = np.log(np.stack([draws[(label, n)][:, 1] for n in good], axis=1))
                out.append((np.log(np.asarray(good, dtype=float)), y))
        return out

    def spread_points(label_list: list[str]) -> dict[str, list[tuple[int, float]]]:
        return {label: [(n, point[(label, n)][1]) for n in dims[label]] for label in label_list}

    common = groups(labels)
    result: dict[str, Any] = {
        "labels": labels,
        "dims": dims,
        "cells": {},
        "slope": common_slope(spread_points(labels)),
        "slope_ci": _interval(_slopes(common)) if common else (math.nan, math.nan),
        "slopes": {},
        "limits": {},
    }
    for key in keys:
        mean, sd = point[key]
        result["cells"][key] = {
            "mean": mean,
            "sd": sd,
            "mean_ci": _interval(draws[key][:, 0]),
            "sd_ci": _interval(draws[key][:, 1]),
            "runs": int(sum(v.size for v in cells[key])),
            "instances": len(cells[key]),
            **variance_components(cells[key]),
        }
    for label in labels:
        own = groups([label])
        result["slopes"][label] = (
            common_slope(spread_points([label])),
            _interval(_slopes(own)) if own else (math.nan, math.nan),
        )
        means = [point[(label, n)][0] for n in dims[label]]
        drawn = np.stack([draws[(label, n)][:, 0] for n in dims[label]], axis=1)
        # weights: the inverse bootstrap variances of the means (a cell of one instance and one run: 0)
        variances = drawn.var(axis=0)
        floor = max(float(np.median(variances[variances > 0])) if np.any(variances > 0) else 1.0, 1e-300) * 1e-3
        weights = 1.0 / np.maximum(variances, floor)
        enough = len(dims[label]) >= 2
        fit = limit_fit(dims[label], means, ALPHA, weights) if enough else (math.nan, math.nan)
        result["limits"][label] = {
            "e_inf": fit[0],
            "c": fit[1],
            "ci": _interval(_limits(dims[label], drawn, ALPHA, weights)[0]) if enough else (math.nan, math.nan),
            "e_inf_other_alpha": {
                str(a): limit_fit(dims[label], means, a, weights)[0] if enough else math.nan for a in ALPHAS_SENSITIVITY
            },
            "se": [float(v) for v in np.sqrt(variances)],
        }
    return result


def variance_components(instances: list[np.ndarray]) -> dict[str, float]:
    """The spread split in two: the standard deviation of the instance means (between instances) and the
    pooled standard deviation of runs about their instance's mean (within an instance)."""
    means = np.asarray([v.mean() for v in instances])
    within = [((v - v.mean()) ** 2).sum() for v in instances]
    dof = sum(v.size - 1 for v in instances)
    return {
        "sd_between_instances": float(means.std(ddof=1)) if means.size > 1 else math.nan,
        "sd_within_instance": float(math.sqrt(sum(within) / dof)) if dof > 0 else math.nan,
    }


# --- verdicts --------------------------------------------------------------------------------------


def _fmt_ci(ci: tuple[float, float], digits: int = 3) -> str:
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def run_quality(info: dict[tuple[str, int], dict[str, Any]], labels: list[str]) -> tuple[list[str], str]:
    """What the stated test requires of the runs before a verdict: per optimizer, at most MAX_LOST_SHARE of
    its runs diverged or failed (over all N), and at every N the mean energy settled (:func:`settled`: the
    interval of the mean change over the last TAIL of the steps inside +-DRIFT_LIMIT). Returns (the reasons
    the data cannot decide, empty when they can; a sentence with the counts and the drifts)."""
    problems, parts, drifts = [], [], []
    for label in labels:
        keys = sorted(key for key in info if key[0] == label)
        total = sum(info[key]["runs_total"] for key in keys)
        diverged = sum(info[key]["diverged"] for key in keys)
        failed = sum(info[key]["failed"] for key in keys)
        lost = (diverged + failed) / total if total else 1.0
        parts.append(f"{label} {diverged} diverged and {failed} failed of {total}")
        if lost > MAX_LOST_SHARE:
            problems.append(f"{lost:.0%} of {label}'s runs diverged or failed (at most {MAX_LOST_SHARE:.0%} allowed)")
        drifting = []
        for key in keys:
            drift, ci = info[key].get("drift", math.nan), info[key].get("drift_ci", (math.nan, math.nan))
            drifts.append(f"{label} N={key[1]} {drift:+.4f} {_fmt_ci(ci, 4)}")
            if not settled(ci):
                drifting.append(f"N = {key[1]}: {drift:+.4f} {_fmt_ci(ci, 4)}")
        if drifting:
            problems.append(
                f"{label}'s mean energy is still drifting (mean change over the last {TAIL:.0%} of the steps, 95 % "
                f"interval not inside +-{DRIFT_LIMIT:.4f} = (E_th - E_0)/4) at " + "; ".join(drifting)
            )
    text = " Runs left out of the energies (diverged or failed): " + "; ".join(parts) + "." if parts else ""
    if drifts:
        text += (
            f" Drift of the mean energy over the last {TAIL:.0%} of the steps (95 % interval; settled inside "
            f"+-{DRIFT_LIMIT:.4f}): " + ", ".join(drifts) + "."
        )
    return problems, text


def _undecided(problems: list[str]) -> str:
    return "the runs cannot decide it: " + "; ".join(problems) + ". Longer budgets (or smaller steps) would settle it."


def spread_finding(a: dict[str, Any], problems: list[str] | None = None, note: str = "") -> Finding:
    """(a): the common log-log slope of the spread against N, by the stated test."""
    statistic = (
        "log-log slope of the spread (sd of e = H/N over runs and instances) against N, common to the optimizers"
    )
    slope, (low, high) = a["slope"], a["slope_ci"]
    sizes_measured = min((len(d) for d in a["dims"].values()), default=0)
    per = "; ".join(f"{label} {s:.2f} {_fmt_ci(ci, 2)}" for label, (s, ci) in a["slopes"].items())
    spread = ", ".join(
        f"N={n}: "
        + "/".join(f"{a['cells'][(label, n)]['sd']:.4f}" for label in a["labels"] if (label, n) in a["cells"])
        for n in sorted({n for d in a["dims"].values() for n in d})
    )
    tail = f" Per optimizer: {per}. Spreads ({'/'.join(a['labels'])}): {spread}.{note}"
    if problems:
        ci = (low, high) if math.isfinite(low) and math.isfinite(high) else None
        return Finding(INCONCLUSIVE, statistic, slope, _undecided(problems) + tail, ci)
    if sizes_measured < MIN_SIZES or not (math.isfinite(low) and math.isfinite(high)):
        return Finding(
            INCONCLUSIVE,
            statistic,
            slope,
            f"only {sizes_measured} sizes with a spread (at least {MIN_SIZES} needed for a slope with an interval)."
            + tail,
            None if not math.isfinite(low) else (low, high),
        )
    head = f"slope {slope:.2f}, 95 % interval {_fmt_ci((low, high), 2)} (theory: -1/2 or steeper)."
    if low >= 0:
        return Finding(
            NOT_SUPPORTED, statistic, slope, "the spread does not shrink with N: " + head + tail, (low, high)
        )
    if high >= 0:
        return Finding(
            INCONCLUSIVE,
            statistic,
            slope,
            "the interval contains 0: " + head + " More instances or a wider range of N would settle it." + tail,
            (low, high),
        )
    flat = [label for label, (_, ci) in a["slopes"].items() if not ci[1] < 0]
    if low > THEORY_SLOPE:
        return Finding(
            CAVEAT,
            statistic,
            slope,
            "the spread shrinks, but more slowly than N^-1/2 (the interval lies above -1/2): " + head + tail,
            (low, high),
        )
    rate = "faster than N^-1/2" if high < THEORY_SLOPE else "consistent with N^-1/2"
    if flat:
        return Finding(
            CAVEAT,
            statistic,
            slope,
            f"the spread shrinks ({rate}), but the slope interval of {', '.join(flat)} alone reaches 0: " + head + tail,
            (low, high),
        )
    return Finding(SUPPORTED, statistic, slope, f"the spread shrinks, {rate}: " + head + tail, (low, high))


def location_finding(a: dict[str, Any], note: str = "", problems: list[str] | None = None) -> Finding:
    """(b): where the means go as N grows (E_th, not E_0), by the stated test; ``note`` (how converged
    the runs are, how many were left out) is appended to the reasons; ``problems`` (from :func:`run_quality`)
    make it inconclusive."""
    statistic = "GD's extrapolated mean energy per spin e_inf, fit mean(N) = e_inf + c N^(-2/3)"
    limits = a["limits"]
    gd = limits.get("GD") or next(iter(limits.values()), None)
    if gd is None:
        return Finding(INCONCLUSIVE, statistic, math.nan, "no runs ended without diverging.")
    value, ci = gd["e_inf"], gd["ci"]
    sizes_measured = min(len(d) for d in a["dims"].values())
    fits = "; ".join(
        f"{label} e_inf {lim['e_inf']:.4f} {_fmt_ci(lim['ci'], 4)}"
        + " (N^-1/2: "
        + ", N^-1: ".join(f"{v:.4f}" for v in lim["e_inf_other_alpha"].values())
        + ")"
        for label, lim in limits.items()
    )
    largest = {label: max(d) for label, d in a["dims"].items()}
    gaps = {label: (a["cells"][(label, n)]["mean"] - E_0, a["cells"][(label, n)]["sd"]) for label, n in largest.items()}
    at_largest = "; ".join(
        f"{label} at N={largest[label]}: mean {a['cells'][(label, largest[label])]['mean']:.4f}, "
        f"{gap:.4f} above E_0, spread {sd:.4f}"
        for label, (gap, sd) in gaps.items()
    )
    means_top = [a["cells"][(label, n)]["mean"] for label, n in largest.items()]
    between = (
        f" The optimizers' means at the largest N differ by {max(means_top) - min(means_top):.4f} at most"
        " (noisy SGD carries a thermal excess of about T/2 per spin)."
        if len(means_top) > 1
        else ""
    )
    tail = f" E_th = {E_TH:.5f}, E_0 = {E_0:.5f}. {fits}. {at_largest}.{between}{note}"
    if sizes_measured < MIN_SIZES or not all(math.isfinite(v) for lim in limits.values() for v in lim["ci"]):
        return Finding(
            INCONCLUSIVE,
            statistic,
            value,
            f"only {sizes_measured} sizes (at least {MIN_SIZES} needed to extrapolate with an interval)." + tail,
            None if not all(math.isfinite(v) for v in ci) else ci,
        )
    if problems:
        return Finding(INCONCLUSIVE, statistic, value, _undecided(problems) + tail, ci)
    # an interval that contains both E_0 and E_th, or is wider than MAX_LIMIT_WIDTH, cannot tell them apart
    undecided = [
        f"{label} {_fmt_ci(lim['ci'], 3)}"
        + (" contains both E_0 and E_th" if lim["ci"][0] <= E_0 and lim["ci"][1] >= E_TH else "")
        + (f" is {lim['ci'][1] - lim['ci'][0]:.3f} wide" if lim["ci"][1] - lim["ci"][0] > MAX_LIMIT_WIDTH else "")
        for label, lim in limits.items()
        if (lim["ci"][0] <= E_0 and lim["ci"][1] >= E_TH) or lim["ci"][1] - lim["ci"][0] > MAX_LIMIT_WIDTH
    ]
    if undecided:
        return Finding(
            INCONCLUSIVE,
            statistic,
            value,
            f"the extrapolation cannot tell E_th from E_0: the interval of {'; '.join(undecided)} (an interval "
            f"must exclude one of them and be at most {MAX_LIMIT_WIDTH} wide). More runs, more instances or "
            "larger N would narrow it." + tail,
            ci,
        )
    reach = [label for label, lim in limits.items() if lim["ci"][0] <= E_0]
    if reach:
        return Finding(
            NOT_SUPPORTED,
            statistic,
            value,
            f"the extrapolation of {', '.join(reach)} reaches the ground state E_0 (or lies below it) and excludes "
            "E_th." + tail,
            ci,
        )
    # the model: the main fit's interval must hold under the other exponents too (their point estimates)
    alternatives = ", ".join(f"N^-{_exponent(al)}" for al in ALPHAS_SENSITIVITY)
    sunk = [
        f"{label} under N^-{_exponent(float(al))} ({v:.4f})"
        for label, lim in limits.items()
        for al, v in lim["e_inf_other_alpha"].items()
        if not v > E_0
    ]
    if sunk:
        return Finding(
            INCONCLUSIVE,
            statistic,
            value,
            "every optimizer's extrapolated mean lies above E_0 under N^-2/3, but not under the other finite-N "
            f"models: the limit of {', '.join(sunk)} is at or below E_0 = {E_0:.5f}, so the extrapolation model "
            "decides whether it stays above the ground state; larger N would settle it." + tail,
            ci,
        )
    sides = {label: threshold_sides(lim) for label, lim in limits.items()}
    agree = all(len(set(side.values())) == 1 for side in sides.values())
    model_note = (
        f" Under {alternatives} (each point estimate with the main interval's offsets around it) every "
        "optimizer's relation to E_th is the same."
        if agree
        else " Against E_th the models disagree ("
        + "; ".join(
            f"{label}: " + ", ".join(f"N^-{_exponent(al)} {side}" for al, side in side_of.items())
            for label, side_of in sides.items()
        )
        + "): the extrapolation model decides whether the limit reaches E_th."
    )
    missed = [
        f"{label} ({'above' if lim['ci'][0] > E_TH else 'below'} E_th)"
        for label, lim in limits.items()
        if not lim["ci"][0] <= E_TH <= lim["ci"][1]
    ]
    if missed:
        return Finding(
            CAVEAT,
            statistic,
            value,
            f"every optimizer's extrapolated mean lies above E_0 (its interval under N^-2/3, its point estimate "
            f"under {alternatives}), but the interval of " + ", ".join(missed) + " misses E_th." + model_note + tail,
            ci,
        )
    if not agree:
        return Finding(
            CAVEAT,
            statistic,
            value,
            f"every optimizer's extrapolated mean lies above E_0 (its interval under N^-2/3, its point estimate "
            f"under {alternatives}) and the N^-2/3 intervals contain E_th, but not under every model."
            + model_note
            + tail,
            ci,
        )
    return Finding(
        SUPPORTED,
        statistic,
        value,
        "every optimizer's extrapolated mean excludes E_0 and contains E_th under N^-2/3 and stays so under "
        f"{alternatives}: the runs concentrate at the threshold, above the ground state." + model_note + tail,
        ci,
    )


def _exponent(alpha: float) -> str:
    return {0.5: "1/2", 2.0 / 3.0: "2/3", 1.0: "1"}.get(float(alpha), f"{float(alpha):g}")


def threshold_sides(limit: dict[str, Any]) -> dict[float, str]:
    """Per exponent (the main one and the sensitivity ones), where the limit lies against E_th: the main
    fit by its interval, each other by its point estimate carrying the main interval's offsets ("contains",
    "above" or "below" E_th)."""
    e, (low, high) = limit["e_inf"], limit["ci"]

    def side(point: float) -> str:
        lo, hi = point - (e - low), point + (high - e)
        return "above" if lo > E_TH else "below" if hi < E_TH else "contains"

    out = {ALPHA: side(e)}
    for alpha, point in limit["e_inf_other_alpha"].items():
        out[float(alpha)] = side(float(point))
    return out


# --- figures ---------------------------------------------------------------------------------------


def _styles(labels: list[str]) -> Any:
    from landbench.report import mpl

    return mpl.Styles(labels)


def draw_histograms(ctx: ClaimContext, cells: Cells, a: dict[str, Any]) -> Any:
    """Choromanska et al.'s figure: histograms of the final energies per N (overlaid), one panel per
    optimizer, E_th and E_0 drawn."""
    from landbench.report import mpl

    labels = a["labels"]
    all_dims = sorted({n for d in a["dims"].values() for n in d})
    values = np.concatenate([np.concatenate(v) for v in cells.values()])
    low, high = min(float(values.min()), E_0) - 0.01, float(values.max()) + 0.01
    bins = np.linspace(low, high, max(12, min(40, int((high - low) / 0.012))))
    with mpl.style():
        figure, axes = mpl.grid(len(labels), columns=len(labels), panel=(3.0, 2.8))
        handles = []
        for ax, label in zip(axes, labels):
            for k, n in enumerate(all_dims):
                if (label, n) not in cells:
                    continue
                data = np.concatenate(cells[(label, n)])
                color = mpl.COLORS[k % len(mpl.COLORS)]
                ax.hist(data, bins=bins, density=True, histtype="stepfilled", alpha=0.18, color=color)
                (line,) = ax.hist(
                    data, bins=bins, density=True, histtype="step", linewidth=1.3, color=color, label=f"N = {n}"
                )[2]
                if label == labels[0]:
                    handles.append(line)
            ax.axvline(E_TH, color="black", linestyle="--", linewidth=1.1)
            ax.axvline(E_0, color="black", linestyle="-", linewidth=1.1)
            ax.set_title(label)
            ax.set_xlabel("final energy per spin e = H/N")
        axes[0].set_ylabel("density")
        from matplotlib.lines import Line2D

        handles += [
            Line2D([], [], color="black", linestyle="--", label=f"threshold E_th = {E_TH:.3f}"),
            Line2D([], [], color="black", linestyle="-", label=f"ground state E_0 = {E_0:.3f}"),
        ]
        figure.suptitle("Final energies of the spherical 3-spin per N (Choromanska et al. 2015, Fig. 2)")
        mpl.legend_below(figure, handles)
    return mpl.save(figure, ctx.figure("equivalent_minima_histograms"))


def draw_summary(ctx: ClaimContext, a: dict[str, Any]) -> Any:
    """Spread against N (log-log, the fitted common slope and N^-1/2) and mean against N^(-2/3) (the
    fits extrapolated to N = infinity, their intervals at 0, E_th and E_0)."""
    from landbench.report import mpl

    labels = a["labels"]
    styles = _styles(labels)
    all_dims = sorted({n for d in a["dims"].values() for n in d})
    with mpl.style():
        figure, (left, right) = mpl.grid(2, columns=2, panel=(3.9, 3.3))
        handles = []
        # spread
        first_sd = []
        for label in labels:
            dims = a["dims"][label]
            sds = np.asarray([a["cells"][(label, n)]["sd"] for n in dims])
            cis = np.asarray([a["cells"][(label, n)]["sd_ci"] for n in dims])
            handle = left.errorbar(
                dims,
                sds,
                yerr=[sds - cis[:, 0], cis[:, 1] - sds],
                fmt=styles.marker(label),
                color=styles.color(label),
                capsize=2,
                label=label,
            )
            handles.append(handle)
            x = np.log(dims)
            y = np.log(sds)
            intercept = float(np.mean(y - a["slope"] * x))
            grid_n = np.geomspace(min(dims), max(dims), 20)
            left.plot(grid_n, np.exp(intercept) * grid_n ** a["slope"], color=styles.color(label), linewidth=1)
            first_sd.append(sds[0])
        n0 = all_dims[0]
        grid_n = np.geomspace(n0, all_dims[-1], 20)
        anchor = float(np.exp(np.mean(np.log(first_sd))))
        (theory,) = left.plot(grid_n, anchor * (grid_n / n0) ** THEORY_SLOPE, "k:", linewidth=1.5, label="N^-1/2")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xticks(all_dims, [str(n) for n in all_dims])
        left.set_xticks([], minor=True)
        from matplotlib.ticker import FuncFormatter

        left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        left.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        left.set_xlabel("N (spins)")
        left.set_ylabel("sd of final e over runs and instances")
        left.set_title(f"Spread: fitted slope {a['slope']:.2f} {_fmt_ci(a['slope_ci'], 2)}")
        # mean
        offsets = np.linspace(-0.004, 0.004, len(labels)) if len(labels) > 1 else [0.0]
        top = max(all_dims[0] ** -ALPHA, 1e-9)
        for offset, label in zip(offsets, labels):
            dims = a["dims"][label]
            x = np.asarray(dims, dtype=float) ** -ALPHA
            means = np.asarray([a["cells"][(label, n)]["mean"] for n in dims])
            cis = np.asarray([a["cells"][(label, n)]["mean_ci"] for n in dims])
            right.errorbar(
                x,
                means,
                yerr=[means - cis[:, 0], cis[:, 1] - means],
                fmt=styles.marker(label),
                color=styles.color(label),
                capsize=2,
            )
            lim = a["limits"][label]
            xs = np.linspace(0, top, 20)
            right.plot(xs, lim["e_inf"] + lim["c"] * xs, color=styles.color(label), linewidth=1, linestyle="--")
            lo, hi = lim["ci"]
            right.errorbar(
                [offset],
                [lim["e_inf"]],
                yerr=[[lim["e_inf"] - lo], [hi - lim["e_inf"]]],
                fmt=styles.marker(label),
                mfc="white",
                color=styles.color(label),
                capsize=3,
            )
        right.axhline(E_TH, color="black", linestyle="--", linewidth=1.1)
        right.axhline(E_0, color="black", linestyle="-", linewidth=1.1)
        bottom, upper = right.get_ylim()
        right.set_ylim(min(bottom, E_0 - 0.01), upper)
        ticks = [0.0] + [n**-ALPHA for n in all_dims]
        right.set_xticks(ticks, ["inf"] + [str(n) for n in all_dims])
        right.set_xlim(-0.012, top * 1.08)
        right.set_xlabel("N (axis linear in N^-2/3; open markers: the fit's limit)")
        right.set_ylabel("mean final e = H/N")
        right.set_title("Mean: fit e_inf + c N^-2/3, extrapolated")
        from matplotlib.lines import Line2D

        handles += [
            theory,
            Line2D([], [], color="gray", linestyle="--", linewidth=1, label="fits"),
            Line2D([], [], color="black", linestyle="--", label=f"E_th = {E_TH:.3f}"),
            Line2D([], [], color="black", linestyle="-", label=f"E_0 = {E_0:.3f}"),
        ]
        figure.suptitle("Spherical 3-spin: spread and mean of final energies against N (95 % bootstrap intervals)")
        mpl.legend_below(figure, handles)
    return mpl.save(figure, ctx.figure("equivalent_minima"))


# --- the claim -------------------------------------------------------------------------------------


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    plan = sizes(p)
    ctx.log(
        f"3-spin, N in {[n for n, *_ in plan]}, {[i for *_, i in plan]} instances x {[k for _, _, k, _ in plan]} "
        "runs x 3 optimizers"
    )
    records = ctx.sweep(suite_text(p), store="runs")
    cells, info = collect(records)
    if not cells:
        _, lost = run_quality(info, sorted({key[0] for key in info}))
        finding = Finding(INCONCLUSIVE, "final energies", math.nan, "no run ended without diverging." + lost)
        return Measured(findings=[finding], summary="No run of the 3-spin ended without diverging.")
    a = analyse(cells, int(p.get("bootstrap", 1000)))
    largest = max(n for n, *_ in plan)
    steps_of = {n: steps for n, steps, *_ in plan}
    problems, lost = run_quality(info, a["labels"])
    findings = [spread_finding(a, problems, lost), location_finding(a, lost, problems)]
    figures = [draw_summary(ctx, a), draw_histograms(ctx, cells, a)]
    convergence = ", ".join(
        f"{label} {info[(label, largest)]['drift']:+.4f}" for label in a["labels"] if (label, largest) in info
    )
    first = a["labels"][0]
    medians = ", ".join(f"{n}: {float(np.median(np.concatenate(cells[(first, n)]))):.3f}" for n in a["dims"][first])
    captions = [
        "Left: the spread (sd of the final energy per spin over "
        + ", ".join(f"{i} x {k}" for _, _, k, i in plan)
        + " instances x runs per N) "
        f"against N, with the fitted common slope {a['slope']:.2f} {_fmt_ci(a['slope_ci'], 2)} and the theory's "
        "N^-1/2. Right: the mean against N on an axis linear in N^-2/3, the fits mean = e_inf + c N^-2/3 and their "
        f"limits at N = infinity (open markers, 95 % intervals), the threshold E_th = {E_TH:.4f} (dashed) and the "
        f"ground state E_0 = {E_0:.4f} (solid). Convergence at N = {largest}: mean energy change over the last "
        f"{TAIL:.0%} of the steps {convergence} (settled when its 95 % interval lies inside +-{DRIFT_LIMIT:.4f}).",
        "Histograms of the final energy per spin per N (Choromanska et al. 2015's Fig. 2, here for GD, noisy SGD "
        f"and Adam on the spherical 3-spin), the threshold E_th (dashed) and the ground state E_0 (solid). GD's "
        f"median per N: {medians}.",
    ]
    rows = []
    for (label, n), cell in sorted(a["cells"].items(), key=lambda kv: (LABELS.index(kv[0][0]), kv[0][1])):
        rows.append(
            {
                "optimizer": label,
                "N": n,
                "steps": steps_of[n],
                **{k: v for k, v in cell.items() if k not in ("mean_ci", "sd_ci")},
                "mean_ci": list(cell["mean_ci"]),
                "sd_ci": list(cell["sd_ci"]),
                **info.get((label, n), {}),
            }
        )
    data = {
        "E_0": E_0,
        "E_th": E_TH,
        "alpha": ALPHA,
        "spread_slope": a["slope"],
        "spread_slope_ci": list(a["slope_ci"]),
        "slopes": {label: {"slope": s, "ci": list(ci)} for label, (s, ci) in a["slopes"].items()},
        "limits": {
            label: {
                "e_inf": lim["e_inf"],
                "c": lim["c"],
                "ci": list(lim["ci"]),
                "other_alpha": lim["e_inf_other_alpha"],
            }
            for label, lim in a["limits"].items()
        },
        "cells": rows,
        "optimizers": {
            "GD": f"sgd(lr={p['lr_factor']} N)",
            "noisy SGD": f"sgd(lr={p['lr_factor']} N), noise sqrt(2 T/(lr N)), T = {p['temperature']}",
            "Adam": f"adam(lr={p['adam_lr']})",
        },
    }
    gd = a["limits"].get("GD", {})
    summary = (
        f"Final 3-spin energies concentrate as N grows (spread ~ N^{a['slope']:.2f}) and"
        f" extrapolate to e_inf = {gd.get('e_inf', math.nan):.3f} for GD (E_th = {E_TH:.3f}, E_0 = {E_0:.3f})."
    )
    return Measured(findings=findings, figures=figures, captions=captions, data=data, summary=summary)
