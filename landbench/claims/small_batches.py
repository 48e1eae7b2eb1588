"""Claim 8: small batches end in flatter minima and generalise better; at a fixed lr/B the minima are
alike (``problems/claims/small_batches.toml``).

Per finite-sum family (``teacher_student`` and ``deep_linear``), one sweep of the engine with two arms
that share their seeded starts (the start is a function of the instance and the run seed only):

* arm (a): plain SGD at one learning rate ``lr`` for every batch size B;
* arm (b): SGD at ``lr_B = lr * B / pivot`` (a fixed ratio ``lr_B / B = lr / pivot``), which meets arm
  (a) at B = ``pivot``.

Every scenario runs the same number of epochs (passes over the n training examples: ``epochs * (n //
B)`` steps, the minibatches dropping the last ``n mod B`` examples of an epoch): the runs see the same
data, and in arm (b) the same gradient-flow time ``lr_B * steps = epochs * n * lr / pivot``.

The stated test: arm (a), the Spearman correlation of the final sharpness (the records' Lanczos
``sharpness``) and of the ``generalization_gap`` with log B over all runs, with a bootstrap interval that
resamples seeds (a seed's runs at every B are paired: one start); arm (b), the slope of the median
sharpness per doubling of B against arm (a)'s. Theory drawn: the linear-stability line ``2 / lr``
(:func:`stability_line`) and the minibatch noise scale ``lr/B (n - B)/(n - 1)`` (:func:`noise_scale`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats

from landbench import outcomes
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.landscapes import finite_sum
from landbench.spec import format_spec, parse_spec
from landbench.tuning import lr_of

#: Fewer finite runs than this (or fewer than three batch sizes) in an arm: inconclusive.
MIN_RUNS = 20
#: A Spearman interval wider than this says too little: "not supported" needs both narrower.
MAX_WIDTH = 0.6
#: Arm (b) is "flat" when its sharpness slope's interval lies within +-FLAT_SHARE * |arm (a)'s slope|.
FLAT_SHARE = 0.5
#: The quantities of the stated test: record field, its name in words.
QUANTITIES = (("sharpness", "sharpness"), ("generalization_gap", "test gap"))


# --- theory -----------------------------------------------------------------------------------


def stability_line(lr: float) -> float:
    """The largest Hessian eigenvalue at which a minimum is linearly stable for gradient descent at
    ``lr``: ``2 / lr`` (the step multiplies the component along an eigenvector of curvature h by
    ``1 - lr h``, which must stay in [-1, 1]). Wu, Ma and E (2018): SGD's bound is stricter with small
    B (the minibatch noise, which vanishes at an interpolating minimum only in expectation, adds
    ``lr^2 (n - B) / (B (n - 1)) Var_i(h_i)`` to the second moment's growth factor)."""
    return 2.0 / float(lr)


def noise_scale(lr: float, batch: int, n: int) -> float:
    """The SDE temperature of SGD with minibatches of B of n drawn without replacement: the step's
    noise covariance is ``lr^2 Cov(mean of B) = lr^2 (n - B) / (B (n - 1)) Sigma`` (Sigma the
    per-example gradient covariance), and per unit of gradient-flow time ``lr`` that is
    ``lr/B (n - B)/(n - 1) Sigma`` (Jastrzebski et al. 2017's lr/B, with the finite-population factor:
    0 at the full batch)."""
    if n <= 1:
        return 0.0
    return float(lr) / int(batch) * (int(n) - int(batch)) / (int(n) - 1)


# --- suites -----------------------------------------------------------------------------------


def family_names(p: dict[str, Any]) -> list[str]:
    """The families of a tier (its sub-tables with a ``problem``), in the file's order."""
    return [key for key, value in p.items() if isinstance(value, dict) and "problem" in value]


def examples_of(problem: str, dim: int) -> int:
    """The number of training examples n of a finite-sum problem spec (without ``dim``) at ``dim``."""
    spec = parse_spec(problem, what="problem")
    return finite_sum.examples_of(format_spec(spec.name, {**spec.kwargs, "dim": int(dim)}))


def batch_sizes(f: dict[str, Any], n: int) -> list[int]:
    """The family's batch sizes (those above n dropped), n (the full batch) added, ascending."""
    return sorted({int(b) for b in f["batch_sizes"] if int(b) <= n} | {n})


def steps_of(epochs: int, batch: int, n: int) -> int:
    """Steps of ``epochs`` passes with minibatches of B: ``epochs * (n // B)`` (an epoch drops n mod B)."""
    return int(epochs) * (int(n) // int(batch))


def arm_b_lr(f: dict[str, Any], batch: int) -> float:
    """Arm (b)'s learning rate at B: ``lr * B / pivot`` (lr/B fixed at lr/pivot)."""
    return float(f["lr"]) * int(batch) / int(f["pivot"])


def _sgd(lr: float) -> str:
    return f"sgd(lr={float(lr)!r})"


def suite_text(p: dict[str, Any], name: str) -> str:
    """One family's sweep: for every B, SGD at arm (a)'s lr and at arm (b)'s lr * B / pivot."""
    f = p[name]
    dim, n, epochs = int(f["dim"]), examples_of(f["problem"], int(f["dim"])), int(f["epochs"])
    blocks = []
    for b in batch_sizes(f, n):
        optimizers = list(dict.fromkeys([_sgd(f["lr"]), _sgd(arm_b_lr(f, b))]))
        blocks.append(
            f"""[[problems]]
spec = "{f["problem"]}"
dims = [{dim}]
batch_size = {b}
steps = {steps_of(epochs, b, n)}
optimizers = [{", ".join(f'"{o}"' for o in optimizers)}]
"""
        )
    return (
        f'name = "small_batches_{name}"\n'
        f'description = "{name}: SGD against the batch size at a fixed lr (arm a) and at a fixed lr/B (arm b), '
        f'{epochs} epochs"\n'
        f"seeds = {int(p['seeds'])}\n"
        f"steps = {epochs}\n"
        f'optimizers = ["{_sgd(f["lr"])}"]\n\n' + "\n".join(blocks)
    )


# --- statistics -------------------------------------------------------------------------------


def arm_table(records: Sequence[dict[str, Any]], keep: Any, field: str) -> tuple[list[int], list[int], np.ndarray]:
    """``(batch sizes, seeds, values)`` of the records ``keep(record)`` selects: values ``(seeds, B)``,
    NaN where a run is missing, diverged or its ``field`` is null."""
    cells: dict[tuple[int, int], float] = {}
    for r in records:
        if not keep(r):
            continue
        value = outcomes.final_value(r, field)  # None for a diverged run or a value not measured
        good = value is not None and math.isfinite(value)
        cells[(int(r["seed"]), int(r["batch_size"]))] = value if good else math.nan
    sizes = sorted({b for _, b in cells})
    seeds = sorted({s for s, _ in cells})
    values = np.full((len(seeds), len(sizes)), np.nan)
    for (s, b), v in cells.items():
        values[seeds.index(s), sizes.index(b)] = v
    return sizes, seeds, values


def diverged_counts(records: Sequence[dict[str, Any]], keep: Any) -> dict[int, tuple[int, int]]:
    """Per batch size, ``(diverged runs, runs)`` among the records ``keep(record)`` selects."""
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if keep(r):
            cell = counts[int(r["batch_size"])]
            cell[0] += 1 if outcomes.is_diverged(r) else 0
            cell[1] += 1
    return {b: (c[0], c[1]) for b, c in sorted(counts.items())}


def diverged_text(counts: dict[int, tuple[int, int]]) -> str:
    """``"; diverged (left out): 32/32 runs at B = 1"`` for the batch sizes with diverged runs ("" when none)."""
    parts = [f"{d}/{t} runs at B = {b}" for b, (d, t) in counts.items() if d]
    return f"; diverged (left out): {', '.join(parts)}" if parts else ""


def spearman(values: np.ndarray, sizes: Sequence[int]) -> float:
    """Spearman's rho of the finite entries of ``values (seeds, B)`` with log B (NaN when undefined)."""
    x = np.broadcast_to(np.log2(np.asarray(sizes, dtype=float)), values.shape)
    ok = np.isfinite(values)
    if ok.sum() < 3 or len(np.unique(x[ok])) < 2 or len(np.unique(values[ok])) < 2:
        return math.nan
    return float(scipy.stats.spearmanr(x[ok], values[ok]).statistic)


def seed_bootstrap(
    statistic: Callable[[np.ndarray, Sequence[int]], float],
    values: np.ndarray,
    sizes: Sequence[int],
    resamples: int,
    seed: int,
) -> tuple[float, tuple[float, float]]:
    """``statistic(values, sizes)`` and its percentile 95 % interval, resampling seeds (rows) with
    replacement: a seed's runs at every B share one start, so they are resampled together. The
    interval is NaN when the point is not finite or more than a tenth of the resamples are not."""
    point = statistic(values, sizes)
    rng = np.random.default_rng(seed)
    rows = values.shape[0]
    draws = np.array([statistic(values[rng.integers(0, rows, rows)], sizes) for _ in range(int(resamples))])
    draws = draws[np.isfinite(draws)]
    if not math.isfinite(point) or len(draws) < 0.9 * resamples:
        return point, (math.nan, math.nan)
    return point, (float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975)))


def bootstrap_spearman(
    values: np.ndarray, sizes: Sequence[int], resamples: int, seed: int
) -> tuple[float, tuple[float, float]]:
    """Spearman's rho with log B (:func:`spearman`) and its seed-bootstrap interval (:func:`seed_bootstrap`)."""
    return seed_bootstrap(spearman, values, sizes, resamples, seed)


def median_slope(values: np.ndarray, sizes: Sequence[int]) -> float:
    """The least-squares slope of the per-B median (over seeds) against log2 B: the change per
    doubling of B (NaN with fewer than two batch sizes that have a finite median)."""
    x = np.log2(np.asarray(sizes, dtype=float))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(values, axis=0)
    ok = np.isfinite(medians)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(x[ok], medians[ok], 1)[0])


def bootstrap_slope(
    values: np.ndarray, sizes: Sequence[int], resamples: int, seed: int
) -> tuple[float, tuple[float, float]]:
    """:func:`median_slope` and its seed-bootstrap interval (:func:`seed_bootstrap`)."""
    return seed_bootstrap(median_slope, values, sizes, resamples, seed)


def _sign(interval: tuple[float, float]) -> str:
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    return "positive" if low > 0 else "negative" if high < 0 else "none"


def _rho_text(name: str, rho: float, interval: tuple[float, float]) -> str:
    return f"{name} rho = {rho:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def arm_a_finding(
    family: str,
    runs: int,
    sizes: Sequence[int],
    sharp: tuple[float, tuple[float, float]],
    gap: tuple[float, tuple[float, float]],
    note: str = "",
) -> Finding:
    """The stated test of arm (a): the Spearman correlations (with their bootstrap intervals) of the
    sharpness and of the test gap with log B. Supported when both intervals lie above 0; supported
    with a caveat when exactly one does; not supported when neither does and both intervals are at most
    :data:`MAX_WIDTH` wide; inconclusive when the runs are too few (< :data:`MIN_RUNS`, or fewer than
    three batch sizes) or neither lies above 0 and an interval is wider than that or undefined."""
    statistic = f"{family}, arm (a) fixed lr: Spearman rho of sharpness with log B (bootstrap over seeds)"
    rho, interval = sharp
    numbers = f"{_rho_text('sharpness', *sharp)}, {_rho_text('test gap', *gap)} over {runs} runs at B = " + ", ".join(
        map(str, sizes)
    )
    numbers += f"{note}"
    if runs < MIN_RUNS or len(sizes) < 3:
        why = f"{numbers}: too few runs (need >= {MIN_RUNS} at >= 3 batch sizes); more seeds would settle it"
        return Finding(INCONCLUSIVE, statistic, rho, why, interval)
    signs = {"sharpness": _sign(sharp[1]), "test gap": _sign(gap[1])}
    if "undefined" in signs.values() and "positive" not in signs.values():
        return Finding(INCONCLUSIVE, statistic, rho, f"{numbers}: an interval is undefined (constant values)", interval)
    positive = [k for k, v in signs.items() if v == "positive"]
    if len(positive) == 2:
        why = f"{numbers}: both rise with B (intervals above 0): small batches end flatter and with a smaller test gap"
        return Finding(SUPPORTED, statistic, rho, why, interval)
    if len(positive) == 1:
        other = "test gap" if positive[0] == "sharpness" else "sharpness"
        how = {"negative": "falls with B (interval below 0)", "none": "shows no trend (interval around 0)"}.get(
            signs[other], "is undefined"
        )
        why = f"{numbers}: the {positive[0]} rises with B, but the {other} {how}"
        return Finding(CAVEAT, statistic, rho, why, interval)
    widest = max(sharp[1][1] - sharp[1][0], gap[1][1] - gap[1][0])
    if widest > MAX_WIDTH:
        why = (
            f"{numbers}: neither rises with B, but an interval is {widest:.2f} wide (> {MAX_WIDTH}); "
            "more seeds would settle it"
        )
        return Finding(INCONCLUSIVE, statistic, rho, why, interval)
    why = f"{numbers}: neither the sharpness nor the test gap rises with B (no interval above 0)"
    return Finding(NOT_SUPPORTED, statistic, rho, why, interval)


def arm_b_finding(
    family: str,
    runs: int,
    sizes: Sequence[int],
    slope_b: tuple[float, tuple[float, float]],
    slope_a: tuple[float, tuple[float, float]],
    note: str = "",
) -> Finding:
    """The stated test of arm (b): the slope of the median sharpness per doubling of B at fixed lr/B
    (bootstrap interval) against the threshold ``T = FLAT_SHARE * |arm (a)'s slope|``. Supported
    ("flat") when its interval lies within [-T, T]; not supported when it lies wholly outside; otherwise,
    or when arm (a)'s own slope interval contains 0 (no slope to compare with) or the runs are too few,
    inconclusive."""
    statistic = f"{family}, arm (b) fixed lr/B: slope of median sharpness per doubling of B (bootstrap over seeds)"
    b, (b_low, b_high) = slope_b
    a, (a_low, a_high) = slope_a
    numbers = (
        f"slope {b:+.3g} [{b_low:+.3g}, {b_high:+.3g}] per doubling at fixed lr/B, against {a:+.3g} "
        f"[{a_low:+.3g}, {a_high:+.3g}] at fixed lr ({runs} runs at B = {', '.join(map(str, sizes))}){note}"
    )
    if runs < MIN_RUNS or len(sizes) < 3 or not all(map(math.isfinite, (b_low, b_high, a_low, a_high))):
        why = f"{numbers}: too few runs or an undefined interval (need >= {MIN_RUNS} runs at >= 3 batch sizes)"
        return Finding(INCONCLUSIVE, statistic, b, why, (b_low, b_high))
    if a_low <= 0 <= a_high:
        why = f"{numbers}: arm (a) shows no slope to compare with (its interval contains 0)"
        return Finding(INCONCLUSIVE, statistic, b, why, (b_low, b_high))
    t = FLAT_SHARE * abs(a)
    if -t <= b_low and b_high <= t:
        why = f"{numbers}: within +-{t:.3g} ({FLAT_SHARE:g} x arm (a)'s slope): flat along lr/B = const"
        return Finding(SUPPORTED, statistic, b, why, (b_low, b_high))
    if b_low > t or b_high < -t:
        why = (
            f"{numbers}: wholly outside +-{t:.3g} ({FLAT_SHARE:g} x arm (a)'s slope): lr/B alone does not set "
            "the sharpness"
        )
        return Finding(NOT_SUPPORTED, statistic, b, why, (b_low, b_high))
    why = f"{numbers}: the interval straddles +-{t:.3g} ({FLAT_SHARE:g} x arm (a)'s slope); more seeds would settle it"
    return Finding(INCONCLUSIVE, statistic, b, why, (b_low, b_high))


# --- the experiment -----------------------------------------------------------------------------


def _quiet_median(values: np.ndarray) -> list[float | None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanmedian(values, axis=0)
    return [float(v) if math.isfinite(v) else None for v in out]


def _quantiles(values: np.ndarray, q: float) -> list[float | None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = np.nanquantile(values, q, axis=0)
    return [float(v) if math.isfinite(v) else None for v in out]


def _known_lambda_max(problem: str) -> float | None:
    """The Hessian's largest eigenvalue at the family's known minimum (None when it has none)."""
    from landbench.landscapes import make

    land = make(problem, dtype="float64")
    minima = getattr(land.known, "minima", None) or []
    value = minima[0].lambda_max if minima else None
    return float(value) if value is not None else None


def analyse_family(ctx: ClaimContext, name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One family's arms: the tables per quantity, the statistics, the two findings and the plotted rows."""
    p = ctx.params
    f = p[name]
    dim = int(f["dim"])
    n = examples_of(f["problem"], dim)
    resamples = int(p["resamples"])
    lr = float(f["lr"])

    def arm_a(r: dict[str, Any]) -> bool:
        return math.isclose(lr_of(r["optimizer"]), lr, rel_tol=1e-12)

    def arm_b(r: dict[str, Any]) -> bool:
        return math.isclose(lr_of(r["optimizer"]), arm_b_lr(f, int(r["batch_size"])), rel_tol=1e-12)

    out: dict[str, Any] = {"family": name, "problem": f"{f['problem']} dim={dim}", "n": n, "lr": lr}
    out["pivot"] = int(f["pivot"])
    tables: dict[str, dict[str, Any]] = {}
    for arm, keep in (("a", arm_a), ("b", arm_b)):
        for field in ("sharpness", "generalization_gap", "test_loss", "final_loss"):
            sizes, seeds, values = arm_table(records, keep, field)
            tables[f"{arm}:{field}"] = {"sizes": sizes, "seeds": seeds, "values": values}
    sizes_a = tables["a:sharpness"]["sizes"]
    sizes_b = tables["b:sharpness"]["sizes"]
    runs_a = int(np.isfinite(tables["a:sharpness"]["values"]).sum())
    runs_b = int(np.isfinite(tables["b:sharpness"]["values"]).sum())
    sharp_a = bootstrap_spearman(tables["a:sharpness"]["values"], sizes_a, resamples, seed=1)
    gap_a = bootstrap_spearman(tables["a:generalization_gap"]["values"], sizes_a, resamples, seed=2)
    slope_a = bootstrap_slope(tables["a:sharpness"]["values"], sizes_a, resamples, seed=3)
    slope_b = bootstrap_slope(tables["b:sharpness"]["values"], sizes_b, resamples, seed=4)
    gap_slope_a = bootstrap_slope(tables["a:generalization_gap"]["values"], sizes_a, resamples, seed=5)
    gap_slope_b = bootstrap_slope(tables["b:generalization_gap"]["values"], sizes_b, resamples, seed=6)

    diverged = {"a": diverged_counts(records, arm_a), "b": diverged_counts(records, arm_b)}
    train_a = _quiet_median(tables["a:final_loss"]["values"])
    worst = max((v for v in train_a if v is not None), default=math.nan)
    note_a = f"; median final training loss at most {worst:.2g}{diverged_text(diverged['a'])}"
    note_b = (
        f"{diverged_text(diverged['b'])}; test-gap slope {gap_slope_b[0]:+.3g} "
        f"[{gap_slope_b[1][0]:+.3g}, {gap_slope_b[1][1]:+.3g}] at fixed lr/B "
        f"vs {gap_slope_a[0]:+.3g} [{gap_slope_a[1][0]:+.3g}, {gap_slope_a[1][1]:+.3g}] at fixed lr"
    )
    out["findings"] = [
        arm_a_finding(name, runs_a, sizes_a, sharp_a, gap_a, note_a),
        arm_b_finding(name, runs_b, sizes_b, slope_b, slope_a, note_b),
    ]
    out["stats"] = {
        "spearman_sharpness_a": [sharp_a[0], list(sharp_a[1])],
        "spearman_gap_a": [gap_a[0], list(gap_a[1])],
        "slope_sharpness_a": [slope_a[0], list(slope_a[1])],
        "slope_sharpness_b": [slope_b[0], list(slope_b[1])],
        "slope_gap_a": [gap_slope_a[0], list(gap_slope_a[1])],
        "slope_gap_b": [gap_slope_b[0], list(gap_slope_b[1])],
        "runs": {"a": runs_a, "b": runs_b},
        "diverged": {arm: {str(b): list(c) for b, c in counts.items()} for arm, counts in diverged.items()},
    }
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for arm in ("a", "b"):
        sizes = tables[f"{arm}:sharpness"]["sizes"]
        med = {
            k: _quiet_median(tables[f"{arm}:{k}"]["values"])
            for k in ("sharpness", "generalization_gap", "test_loss", "final_loss")
        }
        low = {k: _quantiles(tables[f"{arm}:{k}"]["values"], 0.25) for k in ("sharpness", "generalization_gap")}
        high = {k: _quantiles(tables[f"{arm}:{k}"]["values"], 0.75) for k in ("sharpness", "generalization_gap")}
        for i, b in enumerate(sizes):
            lr_b = lr if arm == "a" else arm_b_lr(f, b)
            rows[arm].append(
                {
                    "batch_size": b,
                    "lr": lr_b,
                    "steps": steps_of(int(f["epochs"]), b, n),
                    "noise_scale": noise_scale(lr_b, b, n),
                    "stability_line": stability_line(lr_b),
                    "runs": int(np.isfinite(tables[f"{arm}:sharpness"]["values"][:, i]).sum()),
                    "diverged": diverged[arm].get(b, (0, 0))[0],
                    "sharpness": med["sharpness"][i],
                    "sharpness_q1": low["sharpness"][i],
                    "sharpness_q3": high["sharpness"][i],
                    "gap": med["generalization_gap"][i],
                    "gap_q1": low["generalization_gap"][i],
                    "gap_q3": high["generalization_gap"][i],
                    "test_loss": med["test_loss"][i],
                    "train_loss": med["final_loss"][i],
                }
            )
    out["rows"] = dict(rows)
    out["points"] = {
        arm: {
            "sizes": tables[f"{arm}:sharpness"]["sizes"],
            "sharpness": tables[f"{arm}:sharpness"]["values"].tolist(),
            "gap": tables[f"{arm}:generalization_gap"]["values"].tolist(),
        }
        for arm in ("a", "b")
    }
    canonical = str(records[0]["problem"]) if records else None
    key = f"small_batches known lambda_max {canonical} instance=0 v1"
    out["known_lambda_max"] = ctx.cached(key, lambda: _known_lambda_max(canonical)) if canonical else None
    return out


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    names = family_names(p)
    results = []
    for name in names:
        ctx.log(f"small_batches: {name} ...")

        records, failed = outcomes.split_failed(ctx.sweep(suite_text(p, name), store=name))
        if failed:
            ctx.log(f"small_batches: {name}: {len(failed)} failed runs left out")
        results.append(analyse_family(ctx, name, records))
    findings = [finding for r in results for finding in r["findings"]]
    figure = _draw(ctx, results)
    data = {
        r["family"]: {
            "problem": r["problem"],
            "n": r["n"],
            "lr": r["lr"],
            "pivot": r["pivot"],
            "known_lambda_max": r["known_lambda_max"],
            "arm_a": r["rows"]["a"],
            "arm_b": r["rows"]["b"],
            "stats": r["stats"],
        }
        for r in results
    }
    summary = "; ".join(
        f"{r['family']}: (a) {r['findings'][0].verdict} (sharpness rho {r['stats']['spearman_sharpness_a'][0]:+.2f}, "
        f"gap rho {r['stats']['spearman_gap_a'][0]:+.2f}), (b) {r['findings'][1].verdict}"
        for r in results
    )
    return Measured(
        findings=findings,
        figures=[figure],
        captions=[
            "Per family (rows), SGD from the same seeded starts for the same number of epochs at every batch size B: "
            "arm (a) at one lr, arm (b) at lr/B fixed (the two meet at the pivot B). Left: final sharpness (Lanczos "
            "lambda_max; median and quartiles, dots: runs) with the linear-stability line 2/lr of each arm and the "
            "known minimum's lambda_max. Middle: test gap (population minus training loss). Right: the minibatch "
            "noise scale lr/B (n - B)/(n - 1) of each arm (0 at the full batch)."
        ],
        data=data,
        summary=summary,
    )


def _draw(ctx: ClaimContext, results: list[dict[str, Any]]) -> Any:
    from landbench.report import mpl

    rng = np.random.default_rng(0)
    styles = {"a": ("C0", "o", "(a) fixed lr"), "b": ("C3", "s", "(b) fixed lr/B")}
    with mpl.style():
        figure, axes = mpl.grid(3 * max(len(results), 1), columns=3, panel=(4.4, 3.3))
        for row, r in enumerate(results):
            ax_s, ax_g, ax_n = axes[3 * row : 3 * row + 3]
            for arm, (color, marker, label) in styles.items():
                rows = r["rows"][arm]
                sizes = np.array([x["batch_size"] for x in rows], dtype=float)
                shift = 0.96 if arm == "a" else 1.04
                for ax, key, pts in ((ax_s, "sharpness", "sharpness"), (ax_g, "gap", "gap")):
                    values = np.array(r["points"][arm][pts], dtype=float)
                    for i, b in enumerate(r["points"][arm]["sizes"]):
                        column = values[:, i] if values.size else np.array([])
                        column = column[np.isfinite(column)]
                        jitter = np.exp(rng.uniform(-0.06, 0.06, len(column)))
                        ax.plot(b * shift * jitter, column, marker, ms=2, alpha=0.25, color=color)
                    med = np.array([np.nan if x[key] is None else x[key] for x in rows], dtype=float)
                    q1 = np.array([np.nan if x[f"{key}_q1"] is None else x[f"{key}_q1"] for x in rows], dtype=float)
                    q3 = np.array([np.nan if x[f"{key}_q3"] is None else x[f"{key}_q3"] for x in rows], dtype=float)
                    ax.errorbar(sizes * shift, med, yerr=[med - q1, q3 - med], fmt=marker + "-", color=color,
                                capsize=3, label=f"{label}: median, quartiles", zorder=3)  # fmt: skip
                for x in rows:
                    if x.get("diverged"):
                        ax_s.text(x["batch_size"] * shift, 0.03 + (0.06 if arm == "b" else 0.0),
                                  f"{x['diverged']} diverged", color=color, fontsize=6, ha="center",
                                  transform=ax_s.get_xaxis_transform())  # fmt: skip
                line = np.array([x["stability_line"] for x in rows])
                ax_s.plot(
                    sizes, line, ":", color=color, lw=1.2, label=f"{label}: stability line 2/lr (>= {line.min():.3g})"
                )
                noisy = [(x["batch_size"], x["noise_scale"]) for x in rows if x["noise_scale"] > 0]
                ax_n.plot([b for b, _ in noisy], [v for _, v in noisy], marker + "-", color=color, label=label)
            if r["known_lambda_max"] is not None:
                ax_s.axhline(r["known_lambda_max"], color="0.4", ls="--", lw=1,
                             label=f"known minimum: lambda_max {r['known_lambda_max']:.3g}")  # fmt: skip
            sharp_values = [x["sharpness"] for arm in ("a", "b") for x in r["rows"][arm] if x["sharpness"] is not None]
            if sharp_values:
                ax_s.set_ylim(0, 1.6 * max(max(sharp_values), r["known_lambda_max"] or 0))
            fa, fb = r["findings"]
            for ax in (ax_s, ax_g, ax_n):
                ax.set_xscale("log", base=2)
                ax.set_xlabel("batch size B (n = full batch)")
            ax_s.set_ylabel("final sharpness lambda_max")
            ax_s.set_title(f"{r['family']}: sharpness\n(a) {fa.verdict}; (b) {fb.verdict}", fontsize=9)
            ax_s.legend(fontsize=6, loc="upper left")
            ax_g.set_ylabel("test gap: test - train loss")
            ax_g.set_title(f"{r['family']}: generalisation gap (n = {r['n']})", fontsize=9)
            ax_g.legend(fontsize=6, loc="best")
            ax_n.set_yscale("log")
            ax_n.set_ylabel("noise scale lr/B (n-B)/(n-1)")
            ax_n.set_title(f"{r['family']}: noise scale (0 at B = n)", fontsize=9)
            ax_n.legend(fontsize=6, loc="best")
        figure.suptitle("Claim 8: small batches end in flatter minima and generalise better?")
        return mpl.save(figure, ctx.figure("small_batches"))
