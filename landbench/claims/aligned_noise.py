"""Claim 10: noise aligned with the Hessian escapes sharp minima faster than isotropic noise of equal
variance (Zhu et al. 2019), measured on ``basins`` (``problems/claims/aligned_noise.toml``).

SGD at a fixed rate with gradient noise of each law, ``gaussian`` (isotropic, standard deviation
sigma) and ``hessian(scale)`` (covariance ``sigma^2 |H(x)| / scale``, :mod:`landbench.noise`), started
at the narrow (sharp) minimum, and, as a second finding, at the wide minimum. ``scale`` is
``tr H(narrow minimum) / d``, so that both laws have the same total variance ``d sigma^2`` at the
sharp minimum. A run escapes at the first step whose iterate lies in the other well's basin (the
family's own basin rule: the axis coordinate past the saddle and the loss below the saddle's
value); a run that never does within the budget is censored.

The runs start at a chosen point, which a suite cannot express (``basins`` samples its starts from
``N(0, init_scale^2 I)``), so they are made here with landbench's own gradient evaluator, noise streams
and optimizer stepper (:mod:`landbench.stepping`, :class:`landbench.rng.RunNoise`), one batch per (start,
law, noise level), each a resumable unit stored through ``ctx.cached``.

Theory: Zhu et al.'s indicator ``Tr(H Sigma)`` at the start in closed form, and Eyring-Kramers
median escape times (:func:`landbench.claims.flat_minima.kramers_rate`) with the law's temperature along
the escape path (the aligned law's axial variance ``sigma^2 |f''(x_1)| / scale`` averaged over the path
from the minimum to the saddle, in both arms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats
import torch

from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.claims.flat_minima import basin_facts, kramers_rate
from landbench.ranking.stats import censored_quantile, censored_quantiles
from landbench.report import mpl

#: The two laws compared: name in the figure, and the noise model (``{scale}`` filled in).
LAWS = {"isotropic": "gaussian", "aligned": "hessian(scale={scale!r})"}
#: Starts: the narrow (sharp) minimum (the claim) and the wide one (the second finding).
STARTS = ("narrow", "wide")
#: Run seeds of law i from start j begin at ``i * LAW_SEEDS + j * START_SEEDS``: independent samples.
LAW_SEEDS = 1_000_000
START_SEEDS = 100_000
#: "As fast": the Bonferroni interval of the median ratio aligned/isotropic lies above this (the data
#: exclude a speed-up of more than 1/EQUIVALENT - 1 = 25 %).
EQUIVALENT = 0.8
ALPHA = 0.05


def spec(dim: int) -> str:
    return f"basins(dim={int(dim)})"


def _landscape(dim: int, device: str = "cpu") -> Any:
    from landbench.landscapes import make

    return make(spec(dim), dtype="float64", device=device)


# --- closed forms ---------------------------------------------------------------------------------


def geometry(dim: int) -> dict[str, Any]:
    """The facts the theory needs (JSON): :func:`landbench.claims.flat_minima.basin_facts` (curvatures
    along the axis and across it at both minima and the saddle, barriers) with the axis coordinates,
    the equal-trace ``scale`` = tr H(narrow minimum) / d, and per basin the mean of ``|g''(t)|`` along
    the axis from its minimum to the saddle (:func:`path_curvature`)."""
    land = _landscape(dim)
    facts = basin_facts(dim)
    facts["saddle"]["t"] = float(land.saddles[0].point[0])
    for name in STARTS:
        minimum = next(m for m in land.known.minima if abs(m.value - facts[name]["value"]) == 0.0)
        facts[name]["t"] = float(minimum.point[0])
        facts[name]["trace"] = float(minimum.trace)
        facts[name]["path_curvature"] = path_curvature(land.profile, facts[name]["t"], facts["saddle"]["t"])
    facts["dim"] = int(dim)
    facts["scale"] = facts["narrow"]["trace"] / dim
    return facts


def path_curvature(profile: Any, start: float, end: float, points: int = 200_001) -> float:
    """The mean of ``|g''(t)|`` over the axis from ``start`` to ``end`` (trapezoid rule on a fine grid):
    the aligned law's axial variance per unit sigma^2 (times 1/scale), averaged along the escape path.
    With one inflection point between a minimum and a saddle it is ``2 max |g'| / |end - start|``."""
    t = np.linspace(start, end, points)
    curvature = np.abs(profile.curvature(t))
    return float(np.sum((curvature[1:] + curvature[:-1]) / 2) / (points - 1))


def zhu_indicator(facts: dict[str, Any], sigma: float = 1.0, start: str = "narrow") -> dict[str, float]:
    """``Tr(H Sigma)`` at the minimum ``start`` (the narrow one of basins, the sharp one of saddle) for each
    law (Zhu et al. 2019's escaping indicator), and
    the total variance ``tr Sigma``. ``H = diag(g'', transverse, ..., transverse)`` (d - 1 transverse
    eigenvalues, all > 0): isotropic ``Sigma = sigma^2 I``, ``Tr(H Sigma) = sigma^2 tr H``; aligned
    ``Sigma = sigma^2 H / scale``, ``Tr(H Sigma) = sigma^2 tr(H^2) / scale`` with ``scale = tr H / d``,
    so ``tr Sigma = d sigma^2`` for both and the ratio is ``d tr(H^2) / (tr H)^2 >= 1`` (equal to 1
    exactly when H is a multiple of I)."""
    d, m, scale = facts["dim"], facts[start], facts["scale"]
    trace = m["along"] + (d - 1) * m["transverse"]
    squares = m["along"] ** 2 + (d - 1) * m["transverse"] ** 2
    s2 = sigma * sigma
    return {
        "isotropic": s2 * trace,
        "aligned": s2 * squares / scale,
        "ratio": d * squares / trace**2,
        "total_variance_isotropic": d * s2,
        "total_variance_aligned": s2 * trace / scale,
    }


# --- the fair arm: saddle(dim=2, index=1), sharp along its escape direction --------------------------


#: The start's name in the saddle arm's facts (the minimum at x_1 = +m).
SHARP = "sharp"


def saddle_spec(gamma: float, mu: float, quartic: float) -> str:
    return f"saddle(dim=2, index=1, gamma={float(gamma)!r}, mu={float(mu)!r}, quartic={float(quartic)!r})"


class QuarticProfile:
    """The saddle family's loss along x_1 (index 1): ``g(t) = -gamma/2 t^2 + quartic/4 t^4``."""

    def __init__(self, gamma: float, quartic: float) -> None:
        self.gamma, self.quartic = float(gamma), float(quartic)

    def value(self, t: Any) -> Any:
        return -self.gamma / 2 * np.square(t) + self.quartic / 4 * np.power(t, 4)

    def curvature(self, t: Any) -> Any:
        return -self.gamma + 3 * self.quartic * np.square(t)


def saddle_geometry(gamma: float, mu: float, quartic: float) -> dict[str, Any]:
    """The saddle arm's facts in closed form, in the shape :func:`kramers_median` and :func:`zhu_indicator`
    read: the minimum ``+m`` (``"sharp"``: value, ``along`` = 2 gamma, ``transverse`` = mu, barrier
    ``gamma^2 / (4 quartic)``, ``t`` = m, the path mean of ``|g''|`` from m to 0, which is
    ``2 max |g'| / m = 4 gamma / (3 sqrt 3)`` with one inflection at ``m / sqrt 3``), the saddle at 0
    (``along`` = -gamma, ``transverse`` = mu), d = 2 and ``scale = tr H(+m) / d = (2 gamma + mu) / 2``."""
    gamma, mu, quartic = float(gamma), float(mu), float(quartic)
    m = math.sqrt(gamma / quartic)
    sharp = {
        "t": m,
        "value": -gamma * gamma / (4 * quartic),
        "along": 2 * gamma,
        "transverse": mu,
        "barrier": gamma * gamma / (4 * quartic),
        "trace": 2 * gamma + mu,
        "path_curvature": path_curvature(QuarticProfile(gamma, quartic), m, 0.0),
    }
    return {
        "family": saddle_spec(gamma, mu, quartic),
        "saddle": {"t": 0.0, "value": 0.0, "along": -gamma, "transverse": mu},
        SHARP: sharp,
        "dim": 2,
        "scale": sharp["trace"] / 2,
    }


def temperature(facts: dict[str, Any], law: str, start: str, lr: float, sigma: float, where: str = "path") -> float:
    """The Langevin temperature ``T = lr v / 2`` of SGD with gradient noise of axial variance v (time
    ``lr * step``): isotropic ``v = sigma^2``; aligned ``v = sigma^2 |g''| / scale`` with ``|g''|``
    averaged along the axis from the start's minimum to the saddle (``where="path"``) or taken at the
    minimum (``where="minimum"``, Zhu et al.'s local picture)."""
    if law == "isotropic":
        return lr * sigma * sigma / 2
    kappa = facts[start]["path_curvature"] if where == "path" else facts[start]["along"]
    return lr * sigma * sigma * kappa / facts["scale"] / 2


def kramers_median(facts: dict[str, Any], law: str, start: str, lr: float, sigma: float, where: str = "path") -> float:
    """The Eyring-Kramers median escape step: exponential escape at rate k per unit time ``lr * step``,
    median ``ln 2 / (k lr)`` steps (inf when the rate underflows)."""
    rate = kramers_rate(facts, start, facts["dim"], temperature(facts, law, start, lr, sigma, where))
    return math.log(2) / (rate * lr) if rate > 0 else math.inf


# --- the runs -------------------------------------------------------------------------------------


def in_basin(land: Any, x: torch.Tensor, which: str) -> torch.Tensor:
    """Whether each row of ``x`` is in the basin of the ``which`` well ("narrow" or "wide") of the
    ``basins`` landscape ``land``, by the family's own rule (:meth:`landbench.landscapes.basins.Basins.basin_of`)."""
    from landbench.landscapes.basins import well_index

    return torch.from_numpy(land.basin_of(x) == well_index(land.spec, which)).to(x.device)


def escape_steps(
    facts: dict[str, Any],
    start: str,
    model: str,
    sigma: float,
    lr: float,
    steps: int,
    seeds: Sequence[int],
    device: str = "cpu",
) -> dict[str, Any]:
    """SGD(lr) from the minimum of basin ``start`` with gradient noise ``sigma`` of ``model``, one run
    per seed, through landbench's evaluator, noise streams and stepper: per run the first step k <= steps
    whose iterate x_k lies in the other basin (None: censored), and how many runs diverged (censored
    too). Stops early once every run has escaped or diverged (the recorded steps do not change)."""
    land = _landscape(facts["dim"], device)
    other = "wide" if start == "narrow" else "narrow"
    point = torch.zeros(land.dim, dtype=land.dtype, device=land.device)
    point[0] = facts[start]["t"]
    return _escapes(land, point, model, sigma, lr, steps, seeds, lambda x, loss: in_basin(land, x, other))


def saddle_escape_steps(
    facts: dict[str, Any], model: str, sigma: float, lr: float, steps: int, seeds: Sequence[int], device: str = "cpu"
) -> dict[str, Any]:
    """The saddle arm: SGD(lr) from exactly ``(+m, 0)`` (float64) with gradient noise ``sigma`` of ``model``,
    one run per seed; a run escapes at the first step k <= steps with ``x_1 <= 0`` (at or past the saddle,
    on the mirror minimum's side); None: censored."""
    from landbench.landscapes import make

    land = make(facts["family"], dtype="float64", device=device)
    point = torch.zeros(land.dim, dtype=land.dtype, device=land.device)
    point[0] = facts[SHARP]["t"]
    return _escapes(land, point, model, sigma, lr, steps, seeds, lambda x, loss: x[:, 0] <= facts["saddle"]["t"])


def _escapes(
    land: Any, point: torch.Tensor, model: str, sigma: float, lr: float, steps: int, seeds: Sequence[int], escaped: Any
) -> dict[str, Any]:
    """The step loop of both arms through landbench's evaluator, noise streams and stepper: per run the
    first step k <= steps whose iterate x_k satisfies ``escaped(x, loss)`` (None: censored, or diverged)."""
    from landbench.optimizers import resolve
    from landbench.rng import RunNoise
    from landbench.stepping import BatchedStepper, Evaluator, step_loop

    seeds = [int(s) for s in seeds]
    streams = [RunNoise(land.seed, seeds, land.dim, land.dtype, land.device, model)]
    evaluator = Evaluator(land, float(sigma), streams)
    stepper = BatchedStepper(resolve(f"sgd(lr={float(lr)!r})"), point.repeat(len(seeds), 1), evaluator)
    first = torch.full((len(seeds),), -1, dtype=torch.long, device=land.device)
    diverged = torch.zeros(len(seeds), dtype=torch.bool, device=land.device)

    def observe(k: int, loss: torch.Tensor) -> bool:
        """Record which runs are at an escaped point x_k; True (stop) once every run is done."""
        nonlocal first, diverged
        diverged |= ~torch.isfinite(loss)
        first = torch.where((first < 0) & ~diverged & escaped(stepper.points(), loss), k, first)
        return k % 100 == 0 and bool(((first >= 0) | diverged).all())

    final = step_loop(stepper, evaluator, int(steps), observe)
    with torch.no_grad():  # the budget's last point x_steps (after an early end: the point just observed)
        observe(int(steps), land.loss(final))
    first_list, gone = first.cpu().tolist(), diverged.cpu().tolist()
    return {"steps": [None if f < 0 or g else int(f) for f, g in zip(first_list, gone)], "diverged": sum(gone)}


# --- statistics -----------------------------------------------------------------------------------


def as_times(steps: Sequence[int | None]) -> np.ndarray:
    """Escape steps with censored runs as +inf."""
    return np.array([math.inf if s is None else float(s) for s in steps], dtype=float)


def mann_whitney(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """One-sided Mann-Whitney p-values that ``first`` escapes earlier, and later, than ``second``.
    Censored runs (+inf, all censored at the same budget) rank after every escape and tie with each
    other: the ranks are those of the complete data, so the test is exact for common censoring."""
    if len(first) == 0 or len(second) == 0:
        return math.nan, math.nan
    big = max(np.max(first[np.isfinite(first)], initial=0.0), np.max(second[np.isfinite(second)], initial=0.0)) + 1
    a, b = np.where(np.isfinite(first), first, big), np.where(np.isfinite(second), second, big)
    if np.all(a == big) and np.all(b == big):
        return 1.0, 1.0
    less = scipy.stats.mannwhitneyu(a, b, alternative="less").pvalue
    greater = scipy.stats.mannwhitneyu(a, b, alternative="greater").pvalue
    return float(less), float(greater)


def median_ratio(
    aligned: np.ndarray, isotropic: np.ndarray, resamples: int, seed: int, confidence: float = 0.95
) -> tuple[float, tuple[float, float]]:
    """The ratio of censored medians aligned / isotropic (inf when only the aligned median is censored,
    0 when only the isotropic one is, NaN when both are), and its percentile-bootstrap interval (each
    group resampled with replacement; a resample whose two medians are both censored counts as a ratio
    of 1, the ends are NaN when over half of the resamples are)."""

    def ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isinf(a) & np.isinf(b), np.nan, np.where(np.isinf(b), 0.0, a / b))

    point = float(ratio(censored_quantiles(aligned, 0.5), censored_quantiles(isotropic, 0.5)))
    rng = np.random.default_rng(seed)
    draws_a = aligned[rng.integers(0, len(aligned), size=(resamples, len(aligned)))]
    draws_i = isotropic[rng.integers(0, len(isotropic), size=(resamples, len(isotropic)))]
    ratios = ratio(censored_quantiles(draws_a, 0.5), censored_quantiles(draws_i, 0.5))
    if np.mean(np.isnan(ratios)) > 0.5:
        return point, (math.nan, math.nan)
    ratios = np.where(np.isnan(ratios), 1.0, ratios)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail], method="nearest")
    return point, (float(low), float(high))


def compare(
    aligned: Sequence[int | None], isotropic: Sequence[int | None], resamples: int, seed: int, confidence: float
) -> dict[str, Any]:
    """One noise level: escapes per law, censored medians, the median ratio with its interval at
    ``confidence``, and the two one-sided Mann-Whitney p-values (aligned earlier, aligned later)."""
    a, i = as_times(aligned), as_times(isotropic)
    ratio, interval = median_ratio(a, i, resamples, seed, confidence)
    less, greater = mann_whitney(a, i)
    return {
        "escaped": {"aligned": int(np.isfinite(a).sum()), "isotropic": int(np.isfinite(i).sum())},
        "runs": {"aligned": len(a), "isotropic": len(i)},
        "median": {
            "aligned": censored_quantile(list(aligned), 0.5),
            "isotropic": censored_quantile(list(isotropic), 0.5),
        },
        "median_interval": {
            "aligned": median_interval(a, resamples, seed + 7919),
            "isotropic": median_interval(i, resamples, seed + 104729),
        },
        "ratio": ratio,
        "interval": list(interval),
        "p_faster": less,
        "p_slower": greater,
    }


def judge(
    rows: Sequence[dict[str, Any]], min_escapes: int, alpha: float, expect: str = "faster"
) -> tuple[str, int | None, str]:
    """The stated test over noise levels (``rows`` from :func:`compare`, with ``sigma``), for the claim
    that aligned noise escapes ``expect`` ("faster" or "slower") than isotropic noise. A level is
    informative when either law escaped in at least ``min_escapes`` runs; on it, aligned is significantly
    faster (slower) when its one-sided Mann-Whitney p is below alpha / m (Bonferroni over the m levels).
    Supported: the expected direction at every informative level; with a caveat: at some; not supported:
    at none, and the opposite direction at one at least, or every informative level's median-ratio
    interval (at 1 - alpha/m) excludes a change of more than 25 % in the expected direction (the laws
    are as fast); inconclusive: no informative level, or neither. Returns (verdict, the index of the
    deciding row: the informative level with the smallest p in the expected direction, reason)."""
    want, other = ("p_faster", "p_slower") if expect == "faster" else ("p_slower", "p_faster")
    level = alpha / max(1, len(rows))
    informative = [n for n, r in enumerate(rows) if max(r["escaped"].values()) >= min_escapes]
    if not informative:
        return INCONCLUSIVE, None, f"fewer than {min_escapes} escapes of both laws at every noise level"
    best = min(informative, key=lambda n: rows[n][want])
    hits = [n for n in informative if rows[n][want] < level]
    against = [n for n in informative if rows[n][other] < level]

    def same(row: dict[str, Any]) -> bool:
        low, high = row["interval"]
        if expect == "faster":
            return math.isfinite(low) and low >= EQUIVALENT
        return math.isfinite(high) and high <= 1 / EQUIVALENT

    def sigmas(ns: list[int]) -> str:
        return ", ".join(f"{rows[n]['sigma']:g}" for n in ns)

    if len(hits) == len(informative):
        return SUPPORTED, best, f"aligned escapes significantly {expect} at every informative level ({sigmas(hits)})"
    if hits:
        return (
            CAVEAT,
            best,
            (f"aligned escapes significantly {expect} at sigma {sigmas(hits)} only, of {sigmas(informative)}"),
        )
    if against:
        return (
            NOT_SUPPORTED,
            best,
            (
                f"aligned escapes significantly {'slower' if expect == 'faster' else 'faster'} at sigma "
                f"{sigmas(against)} and significantly {expect} at none"
            ),
        )
    if all(same(rows[n]) for n in informative):
        return (
            NOT_SUPPORTED,
            best,
            (
                "no significant difference, and every informative level's median-ratio interval excludes a 25 % "
                "change in the claimed direction (the laws are as fast)"
            ),
        )
    return (
        INCONCLUSIVE,
        best,
        "no significant difference either way, and the intervals are too wide to call the laws equal",
    )


# --- the experiment -------------------------------------------------------------------------------


def _model(law: str, scale: float) -> str:
    return LAWS[law].format(scale=float(scale))


def _unit(ctx: ClaimContext, facts: dict[str, Any], start: str, law: str, sigma: float, steps: int) -> dict[str, Any]:
    p = ctx.params
    lr, n = float(p["lr"]), int(p["seeds"])
    model = _model(law, facts["scale"])
    if start == SHARP:
        first = list(LAWS).index(law) * LAW_SEEDS + len(STARTS) * START_SEEDS
        key = (
            f"aligned_noise escape from +m of {facts['family']} float64 (first x_1 <= 0), sgd(lr={lr!r}), "
            f"noise {float(sigma)!r} {model}, {steps} steps, seeds {first}..{first + n - 1}, device {ctx.device}"
        )
        return ctx.cached(
            key, lambda: saddle_escape_steps(facts, model, sigma, lr, steps, range(first, first + n), ctx.device)
        )
    first = list(LAWS).index(law) * LAW_SEEDS + STARTS.index(start) * START_SEEDS
    key = (
        f"aligned_noise escape from the {start} minimum of {spec(facts['dim'])} float64, sgd(lr={lr!r}), "
        f"noise {float(sigma)!r} {model}, {steps} steps, seeds {first}..{first + n - 1}, device {ctx.device}"
    )
    return ctx.cached(
        key, lambda: escape_steps(facts, start, model, sigma, lr, steps, range(first, first + n), ctx.device)
    )


#: How each start is named in the findings and the progress bars.
WHERE = {
    SHARP: "the minimum +m of the saddle family (sharp along its escape direction)",
    "narrow": "the narrow minimum of basins",
    "wide": "the wide minimum of basins",
}


def _sweep(
    ctx: ClaimContext, facts: dict[str, Any], start: str, sigmas: list[float], steps: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, list[list[int | None]]]]:
    p = ctx.params
    confidence = 1 - ALPHA / max(1, len(sigmas))
    rows, times = [], {law: [] for law in LAWS}
    with ctx.bar(len(sigmas) * len(LAWS), "batch", f"escapes from {WHERE[start]}") as bar:
        for n, sigma in enumerate(sigmas):
            units = {}
            for law in LAWS:
                units[law] = _unit(ctx, facts, start, law, sigma, steps)
                times[law].append(units[law]["steps"])
                bar.update(1)
            row = compare(
                units["aligned"]["steps"], units["isotropic"]["steps"], int(p["resamples"]), seed + n, confidence
            )
            row["sigma"] = float(sigma)
            row["diverged"] = {law: units[law]["diverged"] for law in LAWS}
            row["budget"] = steps
            row["theory"] = {
                "isotropic": kramers_median(facts, "isotropic", start, float(p["lr"]), sigma),
                "aligned": kramers_median(facts, "aligned", start, float(p["lr"]), sigma),
                "aligned_at_minimum": kramers_median(facts, "aligned", start, float(p["lr"]), sigma, "minimum"),
            }
            rows.append(row)
    return rows, times


def _finding(rows: list[dict[str, Any]], p: dict[str, Any], start: str, expect: str) -> tuple[Finding, str]:
    verdict, best, reason = judge(rows, int(p["min_escapes"]), ALPHA, expect)
    statistic = (
        f"median escape step ratio aligned / isotropic from {WHERE[start]} (censored runs as +inf), at the "
        f"noise level most favourable to 'aligned is {expect}' (one-sided Mann-Whitney, Bonferroni over "
        f"{len(rows)} levels; interval: bootstrap at 1 - {ALPHA:g}/{len(rows)})"
    )
    per_level = "; ".join(
        f"sigma {r['sigma']:g}: escaped {r['escaped']['aligned']}/{r['runs']['aligned']} aligned vs "
        f"{r['escaped']['isotropic']}/{r['runs']['isotropic']} isotropic, medians {_fmt(r['median']['aligned'])} vs "
        f"{_fmt(r['median']['isotropic'])} steps (budget {r['budget']}), p(aligned faster) = {r['p_faster']:.2g}, "
        f"p(slower) = {r['p_slower']:.2g}"
        + (
            f" ({r['diverged']['aligned']} aligned, {r['diverged']['isotropic']} isotropic runs diverged: censored)"
            if sum(r.get("diverged", {}).values())
            else ""
        )
        for r in rows
    )
    if best is None:
        return Finding(
            INCONCLUSIVE, statistic, math.nan, f"{reason}: {per_level}. Raise the budget or the noise."
        ), reason
    row = rows[best]
    low, high = row["interval"]
    interval = (low, high) if math.isfinite(low) and math.isfinite(high) else None
    return Finding(verdict, statistic, row["ratio"], f"{reason}. {per_level}.", interval), reason


def _fmt(value: float | None) -> str:
    return "censored" if value is None else f"{value:.0f}"


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    dim, lr = int(p["dim"]), float(p["lr"])
    gamma, mu, quartic = float(p["sharp_gamma"]), float(p["sharp_mu"]), float(p["sharp_quartic"])
    sharp_facts = ctx.cached(
        f"aligned_noise geometry of {saddle_spec(gamma, mu, quartic)}", lambda: saddle_geometry(gamma, mu, quartic)
    )
    sharp_zhu = zhu_indicator(sharp_facts, start=SHARP)
    sharp_rows, sharp_times = _sweep(
        ctx, sharp_facts, SHARP, [float(s) for s in p["sharp_noise"]], int(p["sharp_steps"]), seed=300
    )
    sharp, sharp_reason = _finding(sharp_rows, p, SHARP, "faster")
    at = sharp_facts[SHARP]
    sharp = Finding(
        sharp.verdict,
        "sharp escape direction (saddle family): " + sharp.statistic,
        sharp.value,
        sharp.why
        + (
            f" Theory: at +m = {at['t']:g} H = diag({at['along']:g}, {at['transverse']:g}) (sharp along the escape "
            f"axis x_1), scale = tr H / 2 = {sharp_facts['scale']:g}, total variance 2 sigma^2 for both laws; Zhu et "
            f"al.'s Tr(H Sigma) / sigma^2 = {sharp_zhu['aligned']:.4f} aligned vs {sharp_zhu['isotropic']:.4f} "
            f"isotropic (ratio {sharp_zhu['ratio']:.4f}: the indicator predicts a faster aligned escape). The aligned "
            f"law's axial variance is sigma^2 x {at['along'] / sharp_facts['scale']:.3f} at the minimum but sigma^2 x "
            f"{at['path_curvature'] / sharp_facts['scale']:.3f} on average along the path to the saddle (|f''(x_1)| "
            f"vanishes at the inflection m / sqrt 3), barrier {at['barrier']:g}."
        ),
        sharp.interval,
    )

    facts = ctx.cached(f"aligned_noise geometry of {spec(dim)}", lambda: geometry(dim))
    zhu = zhu_indicator(facts)
    narrow_sigmas = [float(s) for s in p["noise"]]
    wide_sigmas = [float(s) for s in p["wide_noise"]]
    narrow_rows, narrow_times = _sweep(ctx, facts, "narrow", narrow_sigmas, int(p["steps"]), seed=100)
    wide_rows, _ = _sweep(ctx, facts, "wide", wide_sigmas, int(p["wide_steps"]), seed=200)

    main, main_reason = _finding(narrow_rows, p, "narrow", "faster")
    theory_note = (
        f" Theory: at the narrow minimum H = diag({facts['narrow']['along']:.3f}, {facts['narrow']['transverse']:.3f} "
        f"x {dim - 1}), scale = tr H / d = {facts['scale']:.4f}, total variance d sigma^2 for both laws; Zhu et al.'s "
        f"Tr(H Sigma) / sigma^2 = {zhu['aligned']:.4f} aligned vs {zhu['isotropic']:.4f} isotropic (ratio "
        f"{zhu['ratio']:.6f}: the sharp minimum of basins is almost isotropic, so the indicator predicts no "
        f"difference and this arm cannot test the claim); along the escape path the aligned law's axial variance "
        f"falls to sigma^2 x {facts['narrow']['path_curvature'] / facts['scale']:.3f} on average (|g''| vanishes at "
        f"the well's inflection), which Eyring-Kramers turns into a slower escape."
    )
    main = Finding(
        main.verdict, "round sharp well (basins): " + main.statistic, main.value, main.why + theory_note, main.interval
    )
    wide, wide_reason = _finding(wide_rows, p, "wide", "slower")
    wide = Finding(
        wide.verdict,
        "wide minimum (basins): " + wide.statistic,
        wide.value,
        wide.why + f" At the wide minimum the aligned law's total variance is sigma^2 tr H(wide) / scale = "
        f"{facts['wide']['trace'] / facts['scale']:.3f} sigma^2 against {dim} sigma^2 isotropic.",
        wide.interval,
    )
    data = {
        "dim": dim,
        "lr": lr,
        "scale": facts["scale"],
        "zhu_indicator": zhu,
        "geometry": facts,
        "narrow": narrow_rows,
        "wide": wide_rows,
        "sharp": {
            "geometry": sharp_facts,
            "scale": sharp_facts["scale"],
            "zhu_indicator": sharp_zhu,
            "rows": sharp_rows,
        },
    }
    figure = _draw(ctx, p, sharp_facts, sharp_rows, sharp_times, facts, narrow_rows, wide_rows)
    caption = (
        f"SGD (lr {lr:g}) with isotropic gradient noise and noise aligned with the Hessian, of equal total variance "
        f"at the start. (a) Median escape step from the minimum +m of {sharp_facts['family']} (Hessian diag(2 gamma, "
        "mu), sharp along the escape axis x_1) to x_1 <= 0, with bootstrap 95 % intervals (open markers at the "
        "budget: median censored) and Eyring-Kramers medians (lines). (b) Share of those runs not yet escaped "
        "against the step. (c) Axial noise variance per unit sigma^2 along x_1 on the saddle family: the aligned "
        "law follows |f''(x_1)| / scale, above the isotropic 1 at the minimum and zero at the inflection. "
        f"(d) As (a) from the narrow (round) minimum of basins(dim={dim}), where Tr(H Sigma) is the same for both "
        "laws. (e) As (c) on the basins axis. (f) As (a) from the wide minimum of basins."
    )
    summary = (
        f"Equal total variance at the start: from the minimum of the saddle family that is sharp along its escape "
        f"direction (Tr(H Sigma) {sharp_zhu['ratio']:.2f}x larger for the aligned law), {sharp_reason} "
        f"({sharp.verdict}); from the round narrow minimum of basins, {main_reason} ({main.verdict}); from the "
        f"wide minimum of basins, {wide_reason} ({wide.verdict})."
    )
    return Measured([sharp, main, wide], [figure], [caption], data, verdict=sharp.verdict, summary=summary)


# --- the figure -----------------------------------------------------------------------------------


def _draw(
    ctx: ClaimContext,
    p: dict[str, Any],
    sharp_facts: dict[str, Any],
    sharp_rows: list[dict[str, Any]],
    sharp_times: dict[str, list[list[int | None]]],
    facts: dict[str, Any],
    narrow_rows: list[dict[str, Any]],
    wide_rows: list[dict[str, Any]],
) -> Any:
    colors = {"isotropic": mpl.COLORS[0], "aligned": mpl.COLORS[3]}
    with mpl.style():
        figure, axes = mpl.grid(6, columns=2, panel=(4.4, 3.4))
        _medians(axes[0], sharp_rows, sharp_facts, p, SHARP, colors, "f'' at the minimum: Zhu's local picture")
        axes[0].set_title("(a) escape from +m of saddle: sharp along x_1 (the claim)")

        ax = axes[1]
        budget = int(p["sharp_steps"])
        grid = np.arange(0, budget + 1)
        for n, row in enumerate(sharp_rows):
            shade = mpl.COLORS[(n + 1) % len(mpl.COLORS)] if len(sharp_rows) > 1 else "0.2"
            for law, style in (("isotropic", "-"), ("aligned", "--")):
                times = np.sort(as_times(sharp_times[law][n]))
                left = 1 - np.searchsorted(times, grid, side="right") / len(times)
                ax.step(grid, left, style, where="post", color=shade, lw=1.3)
            ax.plot([], [], "-", color=shade, label=f"sigma = {row['sigma']:g}")
        ax.plot([], [], "-", color="0.3", label="isotropic")
        ax.plot([], [], "--", color="0.3", label="aligned")
        ax.set(xlabel="step", ylabel="share with x_1 > 0 so far", title="(b) survival at +m (saddle family)")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=7, ncol=2)

        m = sharp_facts[SHARP]["t"]
        profile = QuarticProfile(-sharp_facts["saddle"]["along"], _quartic(sharp_facts))
        _axial(
            axes[2],
            np.linspace(-0.2 * m, 1.5 * m, 1200),
            profile,
            sharp_facts["scale"],
            {SHARP: (m, "sharp\nminimum +m"), "saddle": (0.0, "saddle")},
            colors,
            "x_1",
        )
        axes[2].set_title("(c) noise along x_1 (saddle family)")

        _medians(axes[3], narrow_rows, facts, p, "narrow", colors, "g'' at the minimum; ~ isotropic")
        axes[3].set_title(f"(d) escape from the round narrow minimum of basins, d = {facts['dim']}")

        land = _landscape(facts["dim"])
        _axial(
            axes[4],
            np.linspace(facts["wide"]["t"] - 1.5, facts["narrow"]["t"] + 0.6, 1200),
            land.profile,
            facts["scale"],
            {
                "narrow": (facts["narrow"]["t"], "sharp\nminimum"),
                "wide": (facts["wide"]["t"], "wide\nminimum"),
                "saddle": (facts["saddle"]["t"], "saddle"),
            },
            colors,
            "axis coordinate t",
        )
        axes[4].set_title("(e) noise along the axis (basins)")

        _medians(axes[5], wide_rows, facts, p, "wide", colors, "g'' at the minimum")
        axes[5].set_title("(f) escape from the wide (flat) minimum of basins")
        mpl.tidy(axes)
        return mpl.save(figure, ctx.figure("aligned_noise"))


def _quartic(facts: dict[str, Any]) -> float:
    """The saddle arm's quartic coefficient from its facts: gamma / m^2."""
    return -facts["saddle"]["along"] / facts[SHARP]["t"] ** 2


def _axial(
    ax: Any,
    t: np.ndarray,
    profile: Any,
    scale: float,
    marks: dict[str, tuple[float, str]],
    colors: dict[str, str],
    xlabel: str,
) -> None:
    """The axial noise variance per unit sigma^2 of both laws along the escape axis, with the loss's shape."""
    floor = 1e-3
    ax.plot(t, np.ones_like(t), "-", color=colors["isotropic"], label="isotropic: 1")
    ax.plot(
        t,
        np.maximum(np.abs(profile.curvature(t)) / scale, floor),
        "-",
        color=colors["aligned"],
        label="aligned: |f''| / scale",
    )
    values = profile.value(t)
    ax.plot(t, values - values.min() + 0.01, ":", color="0.4", label="loss - min + 0.01 (its shape)")
    for where, label in marks.values():
        ax.axvline(where, color="0.75", lw=0.8, zorder=0)
        ax.annotate(label, (where, 1.5 * floor), ha="center", va="bottom", fontsize=7, backgroundcolor="white")
    ax.set_yscale("log")
    ax.set_ylim(floor, 60)
    ax.set(xlabel=xlabel, ylabel="axial noise variance / sigma^2")
    ax.legend(fontsize=7, loc="upper center", ncol=2)


def _medians(
    ax: Any,
    rows: list[dict[str, Any]],
    facts: dict[str, Any],
    p: dict[str, Any],
    start: str,
    colors: dict[str, str],
    local: str,
) -> None:
    """Measured censored medians with bootstrap 95 % intervals (open markers at the budget when censored)
    and the Eyring-Kramers medians for each law."""
    budget = rows[0]["budget"] if rows else 1
    lr = float(p["lr"])
    sigmas = np.array([r["sigma"] for r in rows])
    for k, law in enumerate(LAWS):
        shift = 1 + 0.012 * (2 * k - 1)
        medians = [r["median"][law] for r in rows]
        intervals = [r["median_interval"][law] for r in rows]
        shown = [n for n, m in enumerate(medians) if m is not None]
        if shown:
            ys = np.array([medians[n] for n in shown])
            lows = np.array([intervals[n][0] for n in shown])
            highs = np.array([budget if intervals[n][1] is None else intervals[n][1] for n in shown])
            ax.errorbar(
                sigmas[shown] * shift,
                ys,
                yerr=[ys - lows, highs - ys],
                fmt="o",
                color=colors[law],
                ms=4.5,
                capsize=2.5,
                label=f"{law}, measured median",
            )
        hidden = [n for n, m in enumerate(medians) if m is None]
        if hidden:
            ax.plot(
                sigmas[hidden] * shift,
                [budget] * len(hidden),
                "o",
                mfc="none",
                color=colors[law],
                ms=6,
                label=f"{law}: median censored",
            )
    ax.axhline(budget, color="0.6", lw=0.8, ls="-.", label=f"budget ({budget} steps)")
    if len(sigmas):
        xs = np.linspace(sigmas.min() * 0.9, sigmas.max() * 1.1, 80)
        curves = (
            ("isotropic", (), "-", 1.0, "Kramers, isotropic"),
            ("aligned", (), "--", 1.0, "Kramers, aligned (path-mean |f''|)"),
            ("aligned", ("minimum",), ":", 1.2, f"Kramers, aligned ({local})"),
        )
        for law, where, style, width, label in curves:
            medians = [kramers_median(facts, law, start, lr, s, *where) for s in xs]
            ax.plot(xs, medians, style, color=colors[law], lw=width, label=label)
    ax.set_yscale("log")
    ax.set_ylim(1, budget * 30)
    ax.set(xlabel="gradient noise sigma", ylabel="median escape step")
    ax.legend(fontsize=6.5, loc="lower left")


def median_interval(times: np.ndarray, resamples: int, seed: int) -> list[float | None]:
    """Percentile-bootstrap 95 % interval of a censored median (censored runs +inf); None for an end
    that falls on a censored run."""
    rng = np.random.default_rng(seed)
    medians = censored_quantiles(times[rng.integers(0, len(times), size=(resamples, len(times)))], 0.5)
    ends = np.percentile(medians, [2.5, 97.5], method="nearest")
    return [float(e) if math.isfinite(e) else None for e in ends]
