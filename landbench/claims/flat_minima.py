"""Claim 6: noise and sharpness-aware methods find flatter minima (``problems/claims/flat_minima.toml``).

On ``basins`` (a wide well and a narrow one), three sweeps of the engine: SGD with gradient noise
against the noise level, SAM against rho, and plain GD against the dimension. The share of runs
that end in the wide basin is the basins family's own rule (:func:`landbench.report.data.wide_share`),
with Wilson intervals. Theory drawn: the GD baseline share (the start distribution's mass in the wide
basin's basin of attraction under GD, a two-dimensional integral, :func:`gd_baseline`), a two-state
Eyring-Kramers model for the noise (:func:`kramers_share`), the wells' widths for SAM's rho, and the
minima's known sharpness.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from typing import Any

import numpy as np
import scipy.stats
import torch

from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.report.data import Share, is_basins, wide_share
from landbench.spec import parse_spec

#: A Wilson interval wider than this (of either compared share) makes a comparison inconclusive.
MAX_WIDTH = 0.3
ALPHA = 0.05


# --- suites ---------------------------------------------------------------------------------------


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def noise_suite(p: dict[str, Any]) -> str:
    """SGD at ``lr`` with gradient noise at every level, on basins(dim)."""
    return f"""name = "flat_minima_noise"
description = "basins: SGD with gradient noise, share of runs in the wide basin against the noise level"
seeds = {int(p["seeds"])}
steps = {int(p["noise_steps"])}
optimizers = ["sgd(lr={float(p["lr"])!r})"]

[[problems]]
spec = "basins"
dims = [{int(p["dim"])}]
noise = {_floats(p["noise"])}
"""


def sam_optimizers(p: dict[str, Any]) -> list[str]:
    """SAM over SGD at ``lr`` for every rho > 0, and plain SGD for rho = 0."""
    lr = float(p["lr"])
    return [f"sam(rho={float(r)!r}, lr={lr!r})" if r > 0 else f"sgd(lr={lr!r})" for r in p["rho"]]


def sam_suite(p: dict[str, Any]) -> str:
    optimizers = ", ".join(f'"{o}"' for o in sam_optimizers(p))
    return f"""name = "flat_minima_sam"
description = "basins: SAM against rho (rho = 0: SGD at the same lr), share of runs in the wide basin"
seeds = {int(p["seeds"])}
steps = {int(p["sam_steps"])}
optimizers = [{optimizers}]

[[problems]]
spec = "basins"
dims = [{int(p["dim"])}]
"""


def dims_suite(p: dict[str, Any]) -> str:
    return f"""name = "flat_minima_dims"
description = "basins: plain GD, share of runs in the wide basin against the dimension"
seeds = {int(p["seeds"])}
steps = {int(p["steps"])}
optimizers = ["sgd(lr={float(p["lr"])!r})"]

[[problems]]
spec = "basins"
dims = [{", ".join(str(int(d)) for d in p["dims"])}]
"""


def rho_of(optimizer: str) -> float:
    """SAM's rho in a canonical optimizer spec (its default when the spec omits it); 0 for any other optimizer."""
    spec = parse_spec(optimizer, what="optimizer")
    if spec.name != "sam":
        return 0.0
    from landbench.optimizers.sam import SAM

    return float(spec.kwargs.get("rho", inspect.signature(SAM.__init__).parameters["rho"].default))


# --- theory ---------------------------------------------------------------------------------------


def _landscape(dim: int) -> Any:
    from landbench.landscapes import make

    return make(f"basins(dim={int(dim)})", dtype="float64")


def gd_baseline(dim: int, lr: float, steps: int, grid: tuple[int, int] = (400, 100)) -> float:
    """The probability that plain GD (``lr``, ``steps``) from ``x0 ~ N(0, init_scale^2 I_dim)`` ends
    in the wide basin of ``basins(dim)``.

    f depends on x only through ``t = x.u`` and ``|y|`` (y across the axis), and a GD step multiplies
    y by a scalar, so a run from ``(t, y)`` is the run from ``(t, |y|)`` on ``basins(dim=2)`` (on
    ``basins(dim=1)`` for d = 1). The integral over the start distribution (``t ~ N(0, s^2)``,
    ``|y|^2/s^2 ~ chi^2(d-1)``) is a midpoint rule on an equal-mass grid of ``grid = (n_t, n_r)``
    quantiles; the grid's end points are classified by the family's own rule (``record_fields``).
    """
    n_t, n_r = (int(g) for g in grid)
    low = _landscape(min(dim, 2))
    scale = float(low.init_scale)
    t = scale * scipy.stats.norm.ppf((np.arange(n_t) + 0.5) / n_t)
    if dim == 1:
        points = t[:, None]
    else:
        r = scale * np.sqrt(scipy.stats.chi2.ppf((np.arange(n_r) + 0.5) / n_r, dim - 1))
        tt, rr = np.meshgrid(t, r, indexing="ij")
        points = np.stack([tt.ravel(), rr.ravel()], axis=1)
    x = torch.from_numpy(points).clone()
    with torch.no_grad():
        for _ in range(int(steps)):
            _, grad = low.loss_and_grad(x)
            x -= lr * grad
    diverged = ~torch.isfinite(x).all(dim=1)
    basin = low.record_fields(x, None, diverged)["basin"]
    from landbench.landscapes.basins import well_index

    wide = well_index(f"basins(dim={min(dim, 2)})", "wide")
    return float(np.mean([b == wide for b in basin]))


def basin_facts(dim: int) -> dict[str, Any]:
    """Per basin (wide, narrow) of ``basins(dim)``: its minimum's value, lambda_max, along-axis and
    transverse curvature, and its barrier; and the saddle's along-axis curvature and transverse one."""
    from landbench.landscapes.basins import well_index

    land = _landscape(dim)
    if len(land.basins) != 2:
        raise ValueError("the Kramers model is for two wells")
    profile = land.profile
    saddle_t = float(land.saddles[0].point[0])
    out: dict[str, Any] = {
        "saddle": {
            "along": float(profile.curvature(np.array(saddle_t))),
            "transverse": float(profile.transverse(np.array(saddle_t))),
            "value": land.saddles[0].value,
        }
    }
    for name in ("wide", "narrow"):
        basin = land.basins[well_index(f"basins(dim={dim})", name)]
        t = float(basin.minimum.point[0])
        barrier = basin.right_barrier if basin.right_barrier is not None else basin.left_barrier
        out[name] = {
            "value": basin.minimum.value,
            "lambda_max": basin.minimum.lambda_max,
            "along": float(profile.curvature(np.array(t))),
            "transverse": float(profile.transverse(np.array(t))),
            "barrier": float(barrier),
            "width": basin.width,
        }
    return out


def kramers_rate(facts: dict[str, Any], which: str, dim: int, temperature: float) -> float:
    """The Eyring-Kramers rate (per unit time ``lr * step``) of leaving basin ``which`` over the saddle:
    ``|g''(s)|/(2 pi) sqrt(det H(m)/|det H(s)|) exp(-barrier/T)``, ``det H = g'' transverse^(d-1)``."""
    if temperature <= 0:
        return 0.0
    s, m = facts["saddle"], facts[which]
    log_ratio = math.log(m["along"] / abs(s["along"])) + (dim - 1) * math.log(m["transverse"] / s["transverse"])
    return abs(s["along"]) / (2 * math.pi) * math.exp(0.5 * log_ratio - m["barrier"] / temperature)


def kramers_share(facts: dict[str, Any], dim: int, lr: float, sigma: float, steps: int, start: float) -> float:
    """The wide share of a two-state model: from ``start`` (the GD baseline) it relaxes towards
    ``k_n / (k_w + k_n)`` at rate ``k_w + k_n`` for a time ``lr * steps``, at ``T = lr sigma^2 / 2``."""
    temperature = lr * sigma * sigma / 2
    k_w, k_n = (kramers_rate(facts, w, dim, temperature) for w in ("wide", "narrow"))
    total = k_w + k_n
    if total == 0:
        return start
    equilibrium = k_n / total
    return equilibrium + (start - equilibrium) * math.exp(-total * lr * steps)


# --- statistics -----------------------------------------------------------------------------------


def one_sided_p(better: Share, worse: Share) -> float:
    """One-sided p-value of a two-proportion z-test (pooled) that ``better``'s share exceeds ``worse``'s."""
    n1, n2 = better.runs, worse.runs
    if n1 == 0 or n2 == 0:
        return math.nan
    pooled = (better.wide + worse.wide) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = better.share - worse.share
    if spread == 0:
        return 0.5 if diff == 0 else (0.0 if diff > 0 else 1.0)
    return float(scipy.stats.norm.sf(diff / spread))


def newcombe(a: Share, b: Share) -> tuple[float, float]:
    """The 95 % interval of ``a.share - b.share`` from the two Wilson intervals (Newcombe 1998, method 10)."""
    d = a.share - b.share
    return (
        d - math.sqrt((a.share - a.low) ** 2 + (b.high - b.share) ** 2),
        d + math.sqrt((a.high - a.share) ** 2 + (b.share - b.low) ** 2),
    )


def rise_finding(what: str, unit: str, levels: list[float], shares: list[Share], none: list[int]) -> Finding:
    """The stated test of one sweep: the best level > 0 against level 0, Bonferroni over the levels."""
    statistic = f"wide share at the best {what} minus at {unit} = 0 (one-sided z-test, Bonferroni)"
    if len(levels) < 2 or levels[0] != 0:
        return Finding(INCONCLUSIVE, statistic, math.nan, f"the sweep needs {unit} = 0 and at least one level above")
    base = shares[0]
    best = max(range(1, len(levels)), key=lambda i: (shares[i].share, -i))
    top = shares[best]
    diff, interval = top.share - base.share, newcombe(top, base)
    p = min(1.0, one_sided_p(top, base) * (len(levels) - 1))
    numbers = (
        f"{base.wide}/{base.runs} = {base.share:.3f} [{base.low:.3f}, {base.high:.3f}] at {unit} = 0, "
        f"{top.wide}/{top.runs} = {top.share:.3f} [{top.low:.3f}, {top.high:.3f}] at {unit} = {levels[best]:g}"
    )
    widest = max(base.high - base.low, top.high - top.low)
    if widest > MAX_WIDTH:
        return Finding(
            INCONCLUSIVE,
            statistic,
            diff,
            f"{numbers}: a Wilson interval is {widest:.2f} wide (> {MAX_WIDTH}); more seeds would settle it",
            interval,
        )
    if p >= ALPHA:
        return Finding(
            NOT_SUPPORTED,
            statistic,
            diff,
            f"{numbers}: no {what} raises the wide share beyond chance (corrected p = {p:.3g} over "
            f"{len(levels) - 1} levels)",
            interval,
        )
    last = len(levels) - 1
    if last != best:
        p_fall = one_sided_p(top, shares[last])
        if p_fall < ALPHA:
            return Finding(
                CAVEAT,
                statistic,
                diff,
                f"{numbers} (corrected p = {p:.3g}); but at {unit} = {levels[last]:g} it falls back to "
                f"{shares[last].share:.3f} (p = {p_fall:.3g}), {none[last]} of {shares[last].runs} runs ending "
                f"in no basin: too much {what} leaves the runs above the barrier",
                interval,
            )
    return Finding(SUPPORTED, statistic, diff, f"{numbers} (corrected p = {p:.3g})", interval)


def dims_finding(dims: list[int], shares: list[Share], theory: list[float]) -> Finding:
    """The d-dependence of plain GD: the rise from the smallest to the largest d, and whether the
    GD-baseline theory (basin-of-attraction volumes) accounts for every d (chi-square)."""
    statistic = "wide share (GD, no noise) at the largest d minus at the smallest"
    if len(dims) < 2:
        return Finding(INCONCLUSIVE, statistic, math.nan, "the sweep needs at least two dimensions")
    first, last = shares[0], shares[-1]
    diff, interval = last.share - first.share, newcombe(last, first)
    p_rise = one_sided_p(last, first)
    chi2, used = 0.0, 0
    for s, q in zip(shares, theory):
        if 0 < q < 1 and s.runs:
            chi2 += (s.wide - s.runs * q) ** 2 / (s.runs * q * (1 - q))
            used += 1
    p_fit = float(scipy.stats.chi2.sf(chi2, used)) if used else math.nan
    listing = ", ".join(f"d={d}: {s.share:.3f} (theory {q:.3f})" for d, s, q in zip(dims, shares, theory))
    numbers = f"{listing}; rise p = {p_rise:.3g}, theory chi^2 = {chi2:.2f} on {used} df, p = {p_fit:.3g}"
    widest = max(first.high - first.low, last.high - last.low)
    if widest > MAX_WIDTH:
        return Finding(INCONCLUSIVE, statistic, diff, f"{numbers}: a Wilson interval is {widest:.2f} wide", interval)
    if p_rise >= ALPHA:
        return Finding(NOT_SUPPORTED, statistic, diff, f"{numbers}: the wide share does not rise with d", interval)
    if not p_fit >= 0.01:
        return Finding(
            CAVEAT, statistic, diff, f"{numbers}: it rises with d, but the GD-baseline volumes do not fit", interval
        )
    return Finding(
        SUPPORTED,
        statistic,
        diff,
        f"{numbers}: plain GD already ends in the wide basin more often as d grows, as the start distribution's "
        f"mass in its basin of attraction predicts, which leaves noise and SAM less room in high d",
        interval,
    )


# --- the experiment -------------------------------------------------------------------------------


def _shares(records: list[dict[str, Any]], key: Any) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if is_basins(r):
            groups[key(r)].append(r)
    return dict(sorted(groups.items()))


def _share_row(x: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    s = wide_share(runs)
    none = sum(1 for r in runs if r.get("basin") is None)
    return {"x": x, "wide": s.wide, "runs": s.runs, "share": s.share, "low": s.low, "high": s.high, "none": none}


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    dim, lr = int(p["dim"]), float(p["lr"])
    grid = tuple(int(g) for g in p["grid"])

    noise_records = ctx.sweep(noise_suite(p), store="noise")
    sam_records = ctx.sweep(sam_suite(p), store="sam")
    dims_records = ctx.sweep(dims_suite(p), store="dims")

    noise_groups = _shares(noise_records, lambda r: float(r["noise"]))
    sam_groups = _shares(sam_records, lambda r: rho_of(str(r["optimizer"])))
    dims_groups = _shares(dims_records, lambda r: int(r["dim"]))
    noise_rows = [_share_row(x, rs) for x, rs in noise_groups.items()]
    sam_rows = [_share_row(x, rs) for x, rs in sam_groups.items()]
    dims_rows = [_share_row(x, rs) for x, rs in dims_groups.items()]

    def baseline(d: int, steps: int) -> float:
        key = f"flat_minima gd_baseline basins(dim={d}) sgd(lr={lr!r}) steps={steps} grid={list(grid)} float64 v1"
        return ctx.cached(key, lambda: gd_baseline(d, lr, steps, grid))

    facts = ctx.cached(f"flat_minima basin_facts basins(dim={dim}) v1", lambda: basin_facts(dim))
    base_noise = baseline(dim, int(p["noise_steps"]))
    base_sam = baseline(dim, int(p["sam_steps"]))
    theory_dims = [baseline(int(d), int(p["steps"])) for d in dims_groups]
    curve_dims = sorted({1, 2, 3, 4, 5, 7, 10} | {int(d) for d in p["dims"]})
    theory_curve = [baseline(d, int(p["steps"])) for d in curve_dims]
    sigmas = np.linspace(0, max(p["noise"]) * 1.05, 120).tolist()
    kramers = [kramers_share(facts, dim, lr, s, int(p["noise_steps"]), base_noise) for s in sigmas]

    def as_shares(rows: list[dict[str, Any]]) -> list[Share]:
        return [Share(r["wide"], r["runs"], 0, r["low"], r["high"]) for r in rows]

    noise_finding = rise_finding(
        "noise", "sigma", [r["x"] for r in noise_rows], as_shares(noise_rows), [r["none"] for r in noise_rows]
    )
    sam_finding = rise_finding(
        "rho", "rho", [r["x"] for r in sam_rows], as_shares(sam_rows), [r["none"] for r in sam_rows]
    )
    d_finding = dims_finding([int(r["x"]) for r in dims_rows], as_shares(dims_rows), theory_dims)

    sharpness = _sharpness(noise_records, sam_records)
    figure = _draw(ctx, p, facts, noise_rows, sam_rows, dims_rows, sigmas, kramers, base_noise, base_sam,
                   curve_dims, theory_curve, sharpness)  # fmt: skip
    verdict = _combine(noise_finding, sam_finding)
    return Measured(
        findings=[noise_finding, sam_finding, d_finding],
        figures=[figure],
        captions=[
            f"basins(dim={dim}), SGD at lr {lr:g}. Share of runs ending in the wide basin (95 % Wilson intervals; "
            "runs in no basin count as not wide) against the gradient-noise level with the GD baseline and a "
            "two-state Eyring-Kramers model (T = lr sigma^2/2), against SAM's rho with the wells' widths, and "
            "against d for plain GD with the share of starts in the wide basin's basin of attraction; and the "
            "endpoints' sharpness (Lanczos lambda_max) by optimizer, with the two minima's known lambda_max."
        ],
        data={
            "noise": noise_rows,
            "rho": sam_rows,
            "dims": dims_rows,
            "theory": {
                "gd_baseline_noise": base_noise,
                "gd_baseline_sam": base_sam,
                "gd_baseline_dims": dict(zip(map(str, curve_dims), theory_curve)),
                "kramers": {"sigma": sigmas[::10], "share": kramers[::10]},
                "basins": facts,
            },
            "sharpness": {k: {"median": float(np.median(v)), "runs": len(v)} for k, v in sharpness.items() if v},
            "overall_from": ["noise", "rho"],
        },
        verdict=verdict,
        summary=(
            f"Wide-basin share: noise {noise_finding.verdict} ({noise_finding.value:+.3f}), SAM {sam_finding.verdict} "
            f"({sam_finding.value:+.3f}); against d (plain GD): {d_finding.verdict} ({d_finding.value:+.3f})."
        ),
    )


def _combine(*findings: Finding) -> str:
    from landbench.claims.base import verdict_of

    return verdict_of(list(findings))


def _sharpness(noise_records: list[dict[str, Any]], sam_records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Endpoint sharpness (the records' Lanczos lambda_max) per label: SGD at each noise level, SAM at each rho."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in noise_records:
        if r.get("sharpness") is not None and math.isfinite(r["sharpness"]):
            out[f"SGD, sigma={float(r['noise']):g}"].append(float(r["sharpness"]))
    for r in sam_records:
        rho = rho_of(str(r["optimizer"]))
        if rho > 0 and r.get("sharpness") is not None and math.isfinite(r["sharpness"]):
            out[f"SAM, rho={rho:g}"].append(float(r["sharpness"]))
    return dict(out)


def _errorbars(ax: Any, rows: list[dict[str, Any]], color: str, label: str) -> None:
    xs = [r["x"] for r in rows]
    ys = [r["share"] for r in rows]
    err = [[r["share"] - r["low"] for r in rows], [r["high"] - r["share"] for r in rows]]
    ax.errorbar(xs, ys, yerr=err, fmt="o", color=color, capsize=3, label=label, zorder=3)


def _draw(ctx, p, facts, noise_rows, sam_rows, dims_rows, sigmas, kramers, base_noise, base_sam, curve_dims,
          theory_curve, sharpness):  # type: ignore[no-untyped-def]  # fmt: skip
    from landbench.report import mpl

    dim, lr = int(p["dim"]), float(p["lr"])
    with mpl.style():
        figure, axes = mpl.grid(4, columns=2, panel=(4.6, 3.4))
        ax = axes[0]
        _errorbars(ax, noise_rows, "C0", f"SGD(lr={lr:g}), {int(p['noise_steps'])} steps: measured")
        ax.plot(
            [r["x"] for r in noise_rows], [r["none"] / max(r["runs"], 1) for r in noise_rows], "x", color="0.5",
            label="share ending in no basin",
        )  # fmt: skip
        ax.plot(sigmas, kramers, "--", color="C1", label="two-state Kramers model")
        ax.axhline(base_noise, color="k", lw=1, ls=":", label=f"GD baseline {base_noise:.3f}")
        ax.set_xlabel("gradient noise sigma")
        ax.set_ylabel("share ending in the wide basin")
        ax.set_title(f"(a) against noise, basins(dim={dim})")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7, loc="center left")

        ax = axes[1]
        _errorbars(ax, sam_rows, "C2", f"SAM over SGD(lr={lr:g}), {int(p['sam_steps'])} steps (rho 0: SGD)")
        ax.axhline(base_sam, color="k", lw=1, ls=":", label=f"GD baseline {base_sam:.3f}")
        for name, ls in (("narrow", "-."), ("wide", "--")):
            ax.axvline(
                facts[name]["width"], color="C3", lw=1, ls=ls, label=f"{name} well's width {facts[name]['width']:g}"
            )
        ax.set_xscale("symlog", linthresh=0.05)
        ax.set_xlim(-0.01, max(p["rho"]) * 1.6)
        ax.set_xlabel("SAM's rho (symlog)")
        ax.set_ylabel("share ending in the wide basin")
        ax.set_title(f"(b) against SAM's rho, basins(dim={dim})")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7, loc="center left")

        ax = axes[2]
        _errorbars(ax, dims_rows, "C4", f"GD(lr={lr:g}), {int(p['steps'])} steps: measured")
        ax.plot(curve_dims, theory_curve, "-", color="k", lw=1, label="start mass in the wide basin of attraction")
        ax.set_xscale("log")
        ax.set_xticks([r["x"] for r in dims_rows], [f"{r['x']:g}" for r in dims_rows])
        ax.minorticks_off()
        ax.set_xlabel("dimension d")
        ax.set_ylabel("share ending in the wide basin")
        ax.set_title("(c) against d, no noise")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7, loc="lower right")

        ax = axes[3]
        labels = list(sharpness)
        rng = np.random.default_rng(0)
        for i, label in enumerate(labels):
            values = np.asarray(sharpness[label])
            ax.plot(i + rng.uniform(-0.25, 0.25, len(values)), values, ".", ms=3, alpha=0.4, color="C0")
            if len(values):
                ax.plot([i - 0.3, i + 0.3], [np.median(values)] * 2, "-", color="k", lw=1.5)
        for name, color in (("wide", "C2"), ("narrow", "C3")):
            value = facts[name]["lambda_max"]
            ax.axhline(value, color=color, ls="--", lw=1, label=f"{name} minimum: lambda_max {value:.3g}")
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("endpoint sharpness lambda_max")
        ax.set_title("(d) sharpness of the endpoints (bar: median)")
        ax.legend(fontsize=7, loc="best")
        figure.suptitle("Claim 6: noise and SAM find flatter minima? (basins: a wide and a narrow well)")
        return mpl.save(figure, ctx.figure("flat_minima"))
