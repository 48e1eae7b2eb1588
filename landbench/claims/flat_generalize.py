"""Claim 9: flat minima generalise (``problems/claims/flat_generalize.toml``).

A population of minima reached by varied training (learning rate, batch size, gradient noise, the
start's scale, seeds) on two finite sums, ``deep_linear`` (wider than the data, fewer samples than
dimensions: the end-to-end map is not pinned down by the data, and the gap is not zero) and
``teacher_student`` (an over-parameterised soft committee machine on a modest sample). Each group
of runs is one engine batch (:func:`landbench.api.plan`) whose final points are kept only as the
numbers computed from them, cached per group (:meth:`ClaimContext.cached`): the training and the
test (population) loss, and from the exact dense Hessian (Hessian-vector products against the unit
vectors) the sharpness lambda_max, the trace, and the relative flatness
``kappa = sum_p w_p^2 H_pp`` (:mod:`landbench.metrics.relative_flatness`), exactly invariant under
layer- and neuron-wise rescaling. On ``deep_linear`` every run's final point is also rescaled,
``W_l -> c_l W_l`` with random ``c_l`` of product 1 (Dinh et al. 2017), and everything is computed
again there: the function is unchanged, the sharpness is not.

Statistics: Kendall's tau-b between a measure and the gap over the converged runs (training loss
within ``converge_tol`` of f*), with a seeded percentile bootstrap over runs (:func:`kendall_tau`,
:func:`bootstrap_tau`). The stated test (:func:`stated_test`) decides from the invariant measure's
tau on both families, and from sharpness's.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
import torch

from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.settings import check_batch_size

FAMILIES = ("deep_linear", "teacher_student")
MEASURES = ("sharpness", "relative_flatness")
LABELS = {"sharpness": "sharpness lambda_max", "relative_flatness": "relative flatness kappa"}

# --- statistics -----------------------------------------------------------------------------------


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``: ties corrected); NaN when either variable is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on a constant input, and says NaN
        return float(scipy.stats.kendalltau(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic)


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_taus(x: Any, y: Any, indices: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every bootstrap resample (rows of ``indices``; a pair drawn twice is a tie)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return np.array([kendall_tau(x[rows], y[rows]) for rows in indices])


@dataclass(frozen=True)
class Tau:
    """Kendall's tau-b of a measure against the gap over ``runs`` runs, with its 95 % percentile
    bootstrap interval."""

    tau: float
    low: float
    high: float
    runs: int

    def text(self) -> str:
        return f"tau = {self.tau:+.3f} [{self.low:+.3f}, {self.high:+.3f}] over {self.runs} runs"

    def as_dict(self) -> dict[str, Any]:
        return {"tau": _num(self.tau), "low": _num(self.low), "high": _num(self.high), "runs": self.runs}


def bootstrap_tau(x: Any, y: Any, resamples: int, seed: int) -> Tau:
    """tau-b of (x, y) and the 2.5 and 97.5 percentiles of its seeded bootstrap (NaN with < 3 points)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3:
        return Tau(math.nan, math.nan, math.nan, n)
    taus = bootstrap_taus(x, y, bootstrap_indices(n, resamples, seed))
    taus = taus[np.isfinite(taus)]
    tau = kendall_tau(x, y)
    if not len(taus) or not math.isfinite(tau):
        return Tau(tau, math.nan, math.nan, n)
    low, high = np.percentile(taus, [2.5, 97.5])
    return Tau(tau, float(low), float(high), n)


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- the stated test -------------------------------------------------------------------------------


def _positive(t: Tau) -> bool:
    return math.isfinite(t.low) and t.low > 0


def tau_finding(measure: str, family: str, t: Tau, min_runs: int, note: str = "") -> Finding:
    """One measure on one family: supported when its interval lies above 0, not supported when it
    includes 0 or lies below, inconclusive with fewer than ``min_runs`` converged runs."""
    statistic = f"Kendall tau-b({LABELS[measure]}, generalization gap) on {family}{note}, 95 % bootstrap"
    interval = (t.low, t.high) if math.isfinite(t.low) else None
    if t.runs < min_runs or not math.isfinite(t.tau):
        why = f"{t.runs} converged runs (< {min_runs}, or a constant variable): too few to rank; "
        why += "more seeds would settle it"
        return Finding(INCONCLUSIVE, statistic, t.tau, why, interval)
    if _positive(t):
        return Finding(SUPPORTED, statistic, t.tau, f"{t.text()}: flatter runs have the smaller gap", interval)
    side = "lies below 0: flatter runs have the larger gap" if t.high < 0 else "includes 0"
    return Finding(NOT_SUPPORTED, statistic, t.tau, f"{t.text()}: the interval {side}", interval)


def stated_test(invariant: dict[str, Tau], sharp: dict[str, Tau], min_runs: int) -> tuple[str, str]:
    """The claim's verdict from the invariant measure's tau on every family (and sharpness's):
    inconclusive when a family has fewer than ``min_runs`` converged runs; supported when the
    invariant measure's interval lies above 0 on every family; supported with a caveat when it does
    on some but not all, or on none while sharpness's does on some; not supported otherwise."""
    thin = [f for f, t in invariant.items() if t.runs < min_runs or not math.isfinite(t.tau)]
    if thin:
        counts = ", ".join(f"{f}: {invariant[f].runs}" for f in thin)
        return INCONCLUSIVE, f"too few converged runs ({counts}; at least {min_runs} needed)"
    listing = "; ".join(f"{f}: kappa {invariant[f].text()}, sharpness {sharp[f].text()}" for f in invariant)
    above = [f for f, t in invariant.items() if _positive(t)]
    if len(above) == len(invariant):
        return SUPPORTED, f"the invariant measure ranks the gap on every family ({listing})"
    if above:
        missing = ", ".join(f for f in invariant if f not in above)
        return CAVEAT, f"the invariant measure ranks the gap on {', '.join(above)} but not on {missing} ({listing})"
    sharp_above = [f for f, t in sharp.items() if _positive(t)]
    if sharp_above:
        return CAVEAT, (
            f"sharpness ranks the gap on {', '.join(sharp_above)} but the invariant measure does on no family "
            f"({listing})"
        )
    return NOT_SUPPORTED, f"no interval lies above 0 ({listing})"


# --- the experiment -------------------------------------------------------------------------------


def with_init(spec: str, init_scale: float) -> str:
    """``spec`` with ``init_scale`` added (the spec string's last character is its closing bracket)."""
    return f"{spec.strip()[:-1]}, init_scale={float(init_scale)!r})"


def rescale_factors(depth: int, runs: int, spread: float, seed: int) -> np.ndarray:
    """Per run, ``depth`` layer factors ``c_l = 10^{u_l}``, ``u_l ~ U(-spread, spread)`` for l >= 2 and
    ``c_1 = 1 / prod_{l >= 2} c_l`` (product 1: the end-to-end map is unchanged): ``(runs, depth)``."""
    rng = np.random.default_rng(seed)
    logs = rng.uniform(-spread, spread, size=(runs, depth))
    logs[:, 0] = -logs[:, 1:].sum(axis=1)
    return 10.0**logs


def rescale(land: Any, x: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """Each row's layers ``W_l`` (``land.offsets``) multiplied by its factor ``c_l``."""
    out = x.clone()
    c = torch.as_tensor(factors, dtype=x.dtype, device=x.device)
    for layer, (a, b) in enumerate(zip(land.offsets[:-1], land.offsets[1:])):
        out[:, a:b] *= c[:, layer : layer + 1]
    return out


def layer_slices(land: Any) -> list[tuple[int, int]]:
    offsets = getattr(land, "offsets", None)
    return list(zip(offsets[:-1], offsets[1:])) if offsets is not None else [(0, land.dim)]


def _measure_points(land: Any, x: torch.Tensor) -> dict[str, list[Any]]:
    from landbench.metrics.relative_flatness import curvature_summary

    with torch.no_grad():
        train, test = land.loss(x), land.test_loss(x)
    finite = torch.isfinite(x).all(dim=1) & torch.isfinite(train) & torch.isfinite(test)
    safe = torch.where(finite[:, None], x, torch.zeros_like(x))
    curv = curvature_summary(land, safe, layer_slices(land))
    keep = finite.tolist()
    out: dict[str, list[Any]] = {
        "train": [float(v) if k else None for v, k in zip(train.tolist(), keep)],
        "test": [float(v) if k else None for v, k in zip(test.tolist(), keep)],
    }
    for name, values in curv.items():
        out[name] = [float(v) if k and math.isfinite(v) else None for v, k in zip(values, keep)]
    return out


def endpoints(spec: str, optimizer: str, seeds: list[int], steps: int, noise: float, batch_size: int | None,
              rescaling: tuple[float, int] | None) -> dict[str, Any]:  # fmt: skip
    """One group of runs (one engine batch, float64), measured at the final points; with
    ``rescaling = (spread, seed)`` also at the rescaled final points (``rescaled``, with ``factors``)."""
    from landbench.api import plan

    prepared = plan(spec, optimizer, seeds=seeds, steps=steps, noise=noise, batch_size=batch_size,
                    dtype="float64", curvature=False)  # fmt: skip
    land = prepared.landscape
    x = prepared.execute().final_x.detach()
    out = {"f_star": land.f_star, **_measure_points(land, x)}
    if rescaling is not None:
        spread, seed = rescaling
        factors = rescale_factors(len(layer_slices(land)), len(seeds), spread, seed)
        out["factors"] = factors.tolist()
        out["rescaled"] = _measure_points(land, rescale(land, x, factors))
    return out


def _batch_sizes(values: list[Any]) -> list[int | None]:
    """The batch sizes of a table, ``"full"`` for the full batch (:func:`landbench.settings.check_batch_size`)."""
    return [check_batch_size(v, "flat_generalize batch_size") for v in values]


def groups(family: str, table: dict[str, Any]) -> list[dict[str, Any]]:
    """The training recipes of one family's table: every (lr, batch size, noise, init scale)."""
    out = []
    for lr in table["lr"]:
        for batch in _batch_sizes(table["batch_size"]):
            for noise in table["noise"]:
                for init in table["init_scale"]:
                    out.append({"family": family, "lr": float(lr), "batch_size": batch, "noise": float(noise),
                                "init_scale": float(init), "spec": with_init(table["spec"], init)})  # fmt: skip
    return out


def run_family(
    ctx: ClaimContext, family: str, table: dict[str, Any], rescaling: tuple[float, int] | None
) -> list[dict[str, Any]]:
    """Every run of one family as a flat list of rows (recipe, seed, measures, rescaled measures)."""
    count, steps = int(table["seeds"]), int(table["steps"])
    rows: list[dict[str, Any]] = []
    recipes = groups(family, table)
    with ctx.bar(len(recipes), "group", family) as bar:
        for number, g in enumerate(recipes):
            seeds = list(range(number * count, (number + 1) * count))  # each recipe its own starts: independent runs
            optimizer = f"sgd(lr={g['lr']!r})"
            salt = zlib.crc32(f"{g['spec']} {optimizer} {g['batch_size']} {g['noise']!r}".encode())
            resc = None if rescaling is None else (float(rescaling[0]), int(rescaling[1]) * 1_000_003 + salt)
            key = (
                f"flat_generalize endpoints {g['spec']} {optimizer} batch_size={g['batch_size']} "
                f"noise={g['noise']!r} seeds={seeds} steps={steps} float64 rescaling={resc} v1"
            )
            args = (g["spec"], optimizer, seeds, steps, g["noise"], g["batch_size"], resc)
            got = ctx.cached(key, functools.partial(endpoints, *args))
            for i, seed in enumerate(seeds):
                row = {**g, "seed": seed, "f_star": got["f_star"]}
                for name in ("train", "test", "sharpness", "hessian_trace", "relative_flatness", "layer_flatness"):
                    row[name] = got[name][i]
                if "rescaled" in got:
                    row["factors"] = got["factors"][i]
                    row["rescaled"] = {n: got["rescaled"][n][i] for n in got["rescaled"]}
                rows.append(row)
            bar.update(1)
    return rows


def converged(row: dict[str, Any], tol: float) -> bool:
    """A run counts when its final point is finite and its training loss within ``tol`` of f*."""
    needed = ("train", "test", "sharpness", "relative_flatness")
    if any(row.get(k) is None for k in needed):
        return False
    return row["train"] - float(row["f_star"] or 0.0) <= tol


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    tol, min_runs = float(p["converge_tol"]), int(p["min_runs"])
    resamples, seed = int(p["bootstrap"]), int(p["bootstrap_seed"])
    rescaling = (float(p["rescale_spread"]), int(p["rescale_seed"]))

    data: dict[str, Any] = {"families": {}}
    taus: dict[str, dict[str, Tau]] = {}
    kept: dict[str, list[dict[str, Any]]] = {}
    checks: dict[str, float] = {}
    for family in FAMILIES:
        table = p[family]
        rows = run_family(ctx, family, table, rescaling if family == "deep_linear" else None)
        good = [r for r in rows if converged(r, tol)]
        kept[family] = good
        gap = np.array([r["test"] - r["train"] for r in good])
        t: dict[str, Tau] = {}
        for k, m in enumerate(MEASURES):
            t[m] = bootstrap_tau([r[m] for r in good], gap, resamples, seed + k)
        for j, s in enumerate(sorted({r["init_scale"] for r in good})):  # within one start scale
            sel = [i for i, r in enumerate(good) if r["init_scale"] == s]
            for k, m in enumerate(MEASURES):
                t[f"{m} | init {s:g}"] = bootstrap_tau(
                    [good[i][m] for i in sel], gap[sel], resamples, seed + 10 * (j + 1) + k
                )
        if family == "deep_linear":
            moved = [r for r in good if r["rescaled"]["sharpness"] is not None]
            gap_r = np.array([r["rescaled"]["test"] - r["rescaled"]["train"] for r in moved])
            for k, m in enumerate(MEASURES):
                t[f"{m} rescaled"] = bootstrap_tau([r["rescaled"][m] for r in moved], gap_r, resamples, seed + k)
            checks = _invariance(moved)
        taus[family] = t
        data["families"][family] = {
            "spec": table["spec"],
            "runs": len(rows),
            "converged": len(good),
            "tau": {m: v.as_dict() for m, v in t.items()},
            "points": [
                {"gap": _num(r["test"] - r["train"]), "sharpness": r["sharpness"], "kappa": r["relative_flatness"],
                 "lr": r["lr"], "batch_size": r["batch_size"], "noise": r["noise"], "init_scale": r["init_scale"]}
                for r in good
            ],
        }  # fmt: skip
    data["invariance"] = checks

    findings = [tau_finding("relative_flatness", f, taus[f]["relative_flatness"], min_runs) for f in FAMILIES] + [
        tau_finding("sharpness", f, taus[f]["sharpness"], min_runs) for f in FAMILIES
    ]
    findings.append(
        tau_finding(
            "sharpness",
            "deep_linear",
            taus["deep_linear"]["sharpness rescaled"],
            min_runs,
            note=" after random layer rescaling (Dinh et al.)",
        )  # fmt: skip
    )
    findings.append(_invariance_finding(checks, taus["deep_linear"]))
    verdict, why = stated_test(
        {f: taus[f]["relative_flatness"] for f in FAMILIES}, {f: taus[f]["sharpness"] for f in FAMILIES}, min_runs
    )
    data["verdict_why"] = why
    figure = _draw(ctx, p, kept, taus)
    t_dl, t_ts = taus["deep_linear"], taus["teacher_student"]
    return Measured(
        findings=findings,
        figures=[figure],
        captions=[
            "Generalization gap (test minus train loss) of converged runs against sharpness lambda_max and against "
            "the relative flatness kappa = sum_p w_p^2 H_pp (exactly invariant under layer rescaling), on deep_linear "
            "and teacher_student, each colour a training recipe's init scale; on deep_linear also the runs after a "
            "random layer rescaling W_l -> c_l W_l (prod c_l = 1), which leaves the function and the gap unchanged. "
            "Right: Kendall tau-b with 95 % bootstrap intervals; tau = 0 (no association) is the null drawn."
        ],
        data=data,
        verdict=verdict,
        summary=(
            f"{verdict}: {why}. After rescaling, deep_linear's sharpness tau is {t_dl['sharpness rescaled'].tau:+.3f} "
            f"(was {t_dl['sharpness'].tau:+.3f}), kappa's {t_dl['relative_flatness rescaled'].tau:+.3f}; "
            f"teacher_student sharpness tau {t_ts['sharpness'].tau:+.3f}. Within one init scale, kappa's tau is "
            + "; ".join(f"{f} {_within(taus[f])}" for f in FAMILIES)
            + "."
        ),
    )


def _within(t: dict[str, Tau]) -> str:
    """``init 0.3: +0.14, init 1: +0.18``: kappa's tau within each start scale."""
    prefix = "relative_flatness | "
    return ", ".join(f"{k.removeprefix(prefix)}: {v.tau:+.2f}" for k, v in t.items() if k.startswith(prefix))


def _invariance(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The largest relative changes under the rescaling: of the gap, of kappa, of sharpness (max and median)."""
    if not rows:
        return {}

    def rel(a: float, b: float) -> float:
        return abs(a - b) / max(abs(a), abs(b), 1e-300)

    gap = [rel(r["test"] - r["train"], r["rescaled"]["test"] - r["rescaled"]["train"]) for r in rows]
    kappa = [rel(r["relative_flatness"], r["rescaled"]["relative_flatness"]) for r in rows]
    layer = [rel(r["layer_flatness"], r["rescaled"]["layer_flatness"]) for r in rows]
    ratio = [r["rescaled"]["sharpness"] / r["sharpness"] for r in rows]
    return {
        "max_rel_change_gap": max(gap),
        "max_rel_change_kappa": max(kappa),
        "max_rel_change_layer_flatness": max(layer),
        "sharpness_ratio_min": min(ratio),
        "sharpness_ratio_max": max(ratio),
    }


#: The rescaled kappa and gap must agree with the originals to this relative size (float64 round-off
#: through a Hessian whose blocks are rescaled by up to 10^(4 spread)).
INVARIANCE_TOL = 1e-6


def _invariance_finding(checks: dict[str, float], t: dict[str, Tau]) -> Finding:
    statistic = "max relative change of kappa and of the gap under random layer rescaling (deep_linear)"
    if not checks:
        return Finding(INCONCLUSIVE, statistic, math.nan, "no converged deep_linear run to rescale")
    worst = max(checks["max_rel_change_kappa"], checks["max_rel_change_gap"])
    numbers = (
        f"kappa changes by at most {checks['max_rel_change_kappa']:.1e}, "
        f"the gap by {checks['max_rel_change_gap']:.1e}, "
        f"while sharpness is multiplied by {checks['sharpness_ratio_min']:.3g} to {checks['sharpness_ratio_max']:.3g}; "
        f"tau(sharpness, gap) {t['sharpness'].tau:+.3f} -> {t['sharpness rescaled'].tau:+.3f}, "
        f"tau(kappa, gap) {t['relative_flatness'].tau:+.3f} -> {t['relative_flatness rescaled'].tau:+.3f}"
    )
    if worst <= INVARIANCE_TOL:
        return Finding(SUPPORTED, statistic, worst, f"{numbers}: Dinh et al.'s rescaling, checked")
    return Finding(
        NOT_SUPPORTED, statistic, worst, f"{numbers}: kappa or the gap is not invariant (> {INVARIANCE_TOL:g})"
    )


# --- the figure -----------------------------------------------------------------------------------


def _draw(
    ctx: ClaimContext, p: dict[str, Any], kept: dict[str, list[dict[str, Any]]], taus: dict[str, dict[str, Tau]]
) -> Any:
    from landbench.report import mpl

    with mpl.style():
        figure, axes = mpl.grid(6, columns=3, panel=(3.6, 3.0))
        letters = iter("abcdef")
        after = {"sharpness": "after layer rescaling", "relative_flatness": "after layer rescaling (on the originals)"}
        for row, family in enumerate(FAMILIES):
            good = kept[family]
            inits = sorted({r["init_scale"] for r in good})
            for col, m in enumerate(MEASURES):
                ax = axes[row * 3 + col]
                for i, s in enumerate(inits):
                    sel = [r for r in good if r["init_scale"] == s]
                    ax.plot([r[m] for r in sel], [r["test"] - r["train"] for r in sel], mpl.MARKERS[i], ms=3,
                            alpha=0.55, color=mpl.COLORS[i], label=f"init scale {s:g}")  # fmt: skip
                if family == "deep_linear":
                    moved = [r for r in good if r["rescaled"][m] is not None]
                    gaps = [r["rescaled"]["test"] - r["rescaled"]["train"] for r in moved]
                    ax.plot([r["rescaled"][m] for r in moved], gaps, "x", ms=3, alpha=0.35, color=mpl.COLORS[8],
                            label=after[m])  # fmt: skip
                ax.set_xscale("log")
                t = taus[family][m]
                ax.set_xlabel(LABELS[m] + " (log)")
                ax.set_ylabel("generalization gap (test - train)")
                ax.set_title(f"({next(letters)}) {family}: tau {t.tau:+.2f} [{t.low:+.2f}, {t.high:+.2f}]")
                ax.legend(fontsize=6.5, loc="best")
            ax = axes[row * 3 + 2]
            names = [k for k in taus[family]]
            for j, name in enumerate(names):
                t = taus[family][name]
                color = mpl.COLORS[8] if "rescaled" in name else mpl.COLORS[0 if name.startswith("sharp") else 2]
                face = "white" if "|" in name else color
                if math.isfinite(t.low):
                    ax.plot([t.low, t.high], [j, j], "-", color=color, lw=2)
                ax.plot([t.tau], [j], "o", color=color, markerfacecolor=face)
            ax.axvline(0.0, color="k", lw=1, ls="--")
            ax.set_yticks(range(len(names)), [n.replace("relative_flatness", "kappa") for n in names], fontsize=7)
            ax.set_ylim(-0.6, len(names) - 0.4)
            ax.set_xlim(-1, 1)
            ax.set_xlabel("Kendall tau-b with the gap (dashed: 0, none)")
            ax.set_title(f"({next(letters)}) {family}: {len(kept[family])} runs; open: one init")
        figure.suptitle("Claim 9: flat minima generalise? (rank correlation of flatness with the test gap)")
        return mpl.save(figure, ctx.figure("flat_generalize"))
