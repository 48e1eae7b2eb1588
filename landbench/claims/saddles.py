"""Claim 1: most critical points are saddles, and their index rises with their value.

Critical points of the Gaussian field (``gaussian_field(dim=d)``, no confinement, the default
M = max(256, 16 d) features) and of the spherical 3-spin (``pspin(dim=N, p=3)``), found by
:func:`landbench.critical_points` from many starts (see :mod:`landbench.claims._critical_data`).

**The law on the Gaussian field** (Bray and Dean 2007; the ``GaussianField`` docstring): given the
value u, the Hessian is ``-(u/l^2) I + (s/l^2) GOE``, so the index fraction (index/d) is
``F(u/(2 s sqrt d))``, ``F(t) = 1/2 + (t sqrt(1-t^2) + arcsin t)/pi`` (l = s = 1 here).

**The law on the spherical p-spin, in landbench's convention** (derived here): the loss is
``f = H/N`` on ``|x|^2 = N``, i.e. the energy per spin E itself. With ``E[H(s)H(s')] = N q^p``,
differentiating the covariance twice in each argument along directions orthogonal to s gives
``E[d_ij H d_kl H] = p(p-1)/N (delta_ik delta_jl + delta_il delta_jk)`` on the tangent space, and
``E[H d_ij H] = 0`` there: the tangent block of the Euclidean Hessian of H is ``sqrt(p(p-1)/N) G``
(G an (N-1) x (N-1) GOE, off-diagonal variance 1) independent of H. The Riemannian Hessian adds
``-(x.grad H/|x|^2) I = -(p H/N) I`` (Euler: ``x.grad H = p H``). So ``N Hess f = Hess H =
sqrt(p(p-1)/N) G - p E I``: a semicircle centred at ``-p E`` of radius ``2 sqrt(p(p-1)) sqrt((N-1)/N)``,
and the index fraction (index/(N-1)) is ``F(p E / (2 sqrt(p(p-1)(N-1)/N)))`` -> ``F(E/|E_th|)``,
``E_th = -2 sqrt((p-1)/p)`` (zero below E_th), the law of Auffinger, Ben Arous and Cerny 2013 in
the convention of DESIGN.md. The figure checks it independently: the autograd spectra at sampled
points, ``N lambda + p E``, pooled, against that semicircle.

Kac-Rice weights the conditional Hessian by ``|det|``, which repels eigenvalues from 0; at finite d
this moves the index law slightly (the tolerance 0.05 allows for it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from landbench.claims import _critical_data as data
from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.report import mpl
from landbench.report.data import wilson

P = 3


def field_spec(d: int) -> str:
    return f"gaussian_field(dim={d})"


def pspin_spec(n: int) -> str:
    return f"pspin(dim={n}, p={P})"


def pspin_scale(n: int) -> float:
    """The semicircle radius of ``N Hess f + p E`` on the (N-1)-dimensional tangent space, over p:
    the index fraction is ``F(E / pspin_scale(N))`` (-> |E_th| as N -> infinity)."""
    return 2.0 * math.sqrt(P * (P - 1) * (n - 1) / n) / P


def collect(ctx: ClaimContext) -> dict[str, Any]:
    """The critical points of every landscape of the tier: per (family, dim, instance, start kind)."""
    p = ctx.params
    block = int(p.get("block", 100))
    out: dict[str, Any] = {"field": [], "pspin": []}
    for family, spec_of, dims in (
        ("field", field_spec, p["field_dims"]),
        ("pspin", pspin_spec, p.get("pspin_dims", [])),
    ):
        for d in dims:
            for instance in range(int(p[f"{family}_instances"])):
                for kind, starts, descent in (
                    ("random", int(p[f"{family}_starts"]), 0),
                    ("descended", int(p.get(f"{family}_descended", 0)), int(p.get(f"{family}_descent", 0))),
                ):
                    if starts:
                        got = data.instance_points(ctx, spec_of(d), instance, starts, block_size=block, descent=descent)
                        out[family].append({"dim": d, "instance": instance, "starts_kind": kind, **got})
    return out


def field_rows(entries: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One row per distinct critical point of the Gaussian field: d, value u, t = u/(2 sqrt d),
    index fraction, F(t), whether a saddle, and from which starts."""
    rows = []
    for e in entries:
        d = e["dim"]
        for value, index, *_ in e["points"]:
            t = value / (2.0 * math.sqrt(d))
            rows.append(
                {
                    "dim": d,
                    "instance": e["instance"],
                    "starts": e["starts_kind"],
                    "value": value,
                    "t": t,
                    "fraction": index / d,
                    "law": data.semicircle_cdf(t),
                    "kind": "minimum" if index == 0 else "maximum" if index == d else "saddle",
                }
            )
    return rows


def pspin_rows(entries: list[dict[str, Any]]) -> list[dict[str, float]]:
    rows = []
    for e in entries:
        n = e["dim"]
        for value, index, *_ in e["points"]:
            rows.append(
                {
                    "dim": n,
                    "instance": e["instance"],
                    "starts": e["starts_kind"],
                    "value": value,
                    "t": value / pspin_scale(n),
                    "fraction": index / (n - 1),
                    "law": data.semicircle_cdf(value / pspin_scale(n)),
                    "kind": "minimum" if index == 0 else "maximum" if index == n - 1 else "saddle",
                }
            )
    return rows


def binned(rows: list[dict[str, float]], width: float, minimum: int, by: str = "t") -> list[dict[str, float]]:
    """Bins of ``by`` of the given width (edges at multiples of it), per dimension: count, centre,
    mean measured index fraction, mean of the law over the bin's points, their difference and the
    standard error of the measured mean; only bins with at least ``minimum`` points."""
    groups: dict[tuple[int, int], list[dict[str, float]]] = {}
    for r in rows:
        groups.setdefault((int(r["dim"]), math.floor(r[by] / width)), []).append(r)
    out = []
    for (d, k), members in sorted(groups.items()):
        if len(members) < minimum:
            continue
        measured = np.array([m["fraction"] for m in members])
        law = np.array([m["law"] for m in members])
        out.append(
            {
                "dim": d,
                "low": k * width,
                "high": (k + 1) * width,
                "count": len(members),
                "measured": float(measured.mean()),
                "law": float(law.mean()),
                "law_at_centre": data.semicircle_cdf((k + 0.5) * width) if by == "t" else math.nan,
                "difference": float(measured.mean() - law.mean()),
                "stderr": float(measured.std(ddof=1) / math.sqrt(len(members))),
                "mean_value": float(np.mean([m["value"] for m in members])),
            }
        )
    return out


#: The index law is judged only on at least this many bins (with enough points each).
MIN_BINS = 3


def law_finding(
    bins: list[dict[str, float]], tolerance: float, what: str, min_count: int, min_bins: int = MIN_BINS
) -> Finding:
    """The issue's criterion: |mean measured index fraction - mean law| <= tolerance in every bin with at
    least ``min_count`` points, judged on at least ``min_bins`` such bins; the value is the largest
    |difference|, its interval the 95 % normal interval of that bin's mean (1.96 standard errors); an
    interval half-width above the tolerance cannot tell a deviation of 0 from one of twice the tolerance."""
    statistic = f"max |mean index fraction - mean semicircle law| over {what} bins with >= {min_count} points"
    if len(bins) < min_bins:
        return Finding(
            INCONCLUSIVE,
            statistic,
            max((abs(b["difference"]) for b in bins), default=math.nan),
            f"{len(bins)} {what} value bin(s) with {min_count} points ({sum(b['count'] for b in bins)} points in "
            f"them); at least {min_bins} needed: more starts or instances would settle it",
        )
    worst = max(bins, key=lambda b: abs(b["difference"]))
    value = abs(worst["difference"])
    half = 1.96 * worst["stderr"]
    interval = (max(0.0, value - half), value + half)
    why = (
        f"{len(bins)} bins ({sum(b['count'] for b in bins)} points); the worst, d={worst['dim']} "
        f"t in [{worst['low']:.2f}, {worst['high']:.2f}) with {worst['count']} points, measures "
        f"{worst['measured']:.3f} against the law's {worst['law']:.3f} (|difference| {value:.3f} "
        f"{'<=' if value <= tolerance else '>'} {tolerance}; standard error {worst['stderr']:.3f}, 95 % "
        f"[{interval[0]:.3f}, {interval[1]:.3f}])"
    )
    if half > tolerance:
        return Finding(
            INCONCLUSIVE,
            statistic,
            value,
            why + f": the interval's half-width {half:.3f} exceeds the tolerance {tolerance}, too wide to decide; "
            "more points per bin would settle it",
            interval,
        )
    verdict = SUPPORTED if value <= tolerance else NOT_SUPPORTED
    return Finding(verdict, statistic, value, why, interval)


def spectrum_check(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The autograd spectra at sampled p-spin points, rescaled ``N lambda + p E``: pooled mean and
    variance against the semicircle's 0 and ``p (p-1) (N-1)/N``."""
    scaled, variance_law = [], []
    for e in entries:
        n = e["dim"]
        for s in e["sample"]:
            if "eigenvalues" in s:
                scaled.extend(n * v + P * s["value"] for v in s["eigenvalues"])
                variance_law.append(P * (P - 1) * (n - 1) / n)
    if not scaled:
        return {"count": 0}
    array = np.array(scaled)
    return {
        "count": len(scaled),
        "points": len(variance_law),
        "mean": float(array.mean()),
        "variance": float(array.var()),
        "variance_law": float(np.mean(variance_law)),
        "values": [round(v, 5) for v in scaled],
    }


def measure(ctx: ClaimContext) -> Measured:
    p = ctx.params
    tolerance = float(p.get("tolerance", 0.05))
    width = float(p.get("bin_width", 0.1))
    min_bin = int(p.get("min_bin", 30))
    large = int(p.get("large_dim", 20))
    found = collect(ctx)
    rows = field_rows(found["field"])
    bins = binned([r for r in rows if r["dim"] >= large], width, min_bin)
    findings = [law_finding(bins, tolerance, f"Gaussian-field (d >= {large})", min_bin)]

    # "most are saddles": random starts only (descended starts aim at low values on purpose)
    plain = [r for r in rows if r["starts"] == "random"]
    saddles = sum(r["kind"] == "saddle" for r in plain)
    low, high = wilson(saddles, len(plain))
    share = saddles / len(plain) if plain else math.nan
    statistic = "share of saddles among the distinct critical points found from random starts (all d)"
    if len(plain) < 30:
        findings.append(Finding(INCONCLUSIVE, statistic, share, f"only {len(plain)} critical points", (low, high)))
    else:
        verdict = SUPPORTED if low > 0.5 else NOT_SUPPORTED if high < 0.5 else INCONCLUSIVE
        findings.append(
            Finding(
                verdict,
                statistic,
                share,
                f"{saddles} of {len(plain)} critical points are saddles (Wilson 95 % [{low:.3f}, {high:.3f}]; "
                f"'most' needs the interval above 0.5)",
                (low, high),
            )
        )

    # the p-spin: its own finding; it turns the verdict into a caveat when it fails, never inconclusive alone
    prow = pspin_rows(found["pspin"])
    pbins = binned(prow, float(p.get("pspin_bin_width", 0.1)), int(p.get("pspin_min_bin", 20)))
    spectrum = spectrum_check(found["pspin"])
    pspin_finding = law_finding(pbins, tolerance, f"{P}-spin", int(p.get("pspin_min_bin", 20)))
    if spectrum.get("count"):
        pspin_finding = Finding(
            pspin_finding.verdict,
            pspin_finding.statistic,
            pspin_finding.value,
            pspin_finding.why
            + f"; the autograd spectra at {spectrum['points']} sampled points, N lambda + p E, have mean "
            f"{spectrum['mean']:.3f} (law 0) and variance {spectrum['variance']:.2f} "
            f"(law p(p-1)(N-1)/N = {spectrum['variance_law']:.2f})",
            pspin_finding.interval,
        )
    findings.append(pspin_finding)
    field_verdicts = [f.verdict for f in findings[:2]]
    if INCONCLUSIVE in field_verdicts:
        overall = INCONCLUSIVE
    elif all(v == SUPPORTED for v in field_verdicts):
        overall = SUPPORTED if pspin_finding.verdict in (SUPPORTED, INCONCLUSIVE) else CAVEAT
    elif all(v == NOT_SUPPORTED for v in field_verdicts):
        overall = NOT_SUPPORTED
    else:
        overall = CAVEAT

    flat_points = sum(e["gradient_flat_points"] for e in found["field"] + found["pspin"])
    flat_starts = sum(e["gradient_flat_starts"] for e in found["field"] + found["pspin"])
    starts = sum(e["starts"] for e in found["field"] + found["pspin"])
    unconverged = sum(e["not_converged"] for e in found["field"] + found["pspin"])
    good, checked = data.sample_check([s for e in found["field"] + found["pspin"] for s in e["sample"]])

    figure = draw(ctx, rows, bins, prow, pbins, spectrum, large)
    summary = (
        f"{share:.0%} of the Gaussian field's critical points from random starts are saddles; at d >= {large} "
        f"the index fraction follows Bray and Dean's semicircle law to within {findings[0].value:.3f} in every bin "
        f"with >= {min_bin} points; {flat_starts} of {starts} starts ended on gradient-flat points "
        f"({flat_points} distinct), excluded"
        if bins and plain
        else "too few critical points to test the law"
    )
    return Measured(
        findings=findings,
        figures=[figure],
        captions=[
            "Index fraction of the critical points found against their value: the Gaussian field (coloured by d) "
            "with Bray and Dean's law F(u/(2 sqrt d)) and the bin means at large d; Dauphin et al.'s index-against-"
            f"value plot at the largest d; the spherical {P}-spin with F(E/|E_th|) (finite-N radius); and the "
            "autograd Hessian spectra at sampled p-spin points against the semicircle they should follow."
        ],
        data={
            "bins": bins,
            "pspin_bins": pbins,
            "saddles": {"saddles": saddles, "critical_points": len(plain), "wilson": [low, high]},
            "by_dim": by_dim(rows),
            "gradient_flat": {"starts": flat_starts, "distinct_points": flat_points, "of_starts": starts},
            "not_converged_starts": unconverged,
            "autograd_check": {"passed": good, "checked": checked},
            "spectrum": {k: v for k, v in spectrum.items() if k != "values"},
            "finder_seconds": sum(e["seconds"] for e in found["field"] + found["pspin"]),
        },
        verdict=overall,
        summary=summary,
    )


def by_dim(rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for d in sorted({int(r["dim"]) for r in rows}):
        members = [r for r in rows if r["dim"] == d and r["starts"] == "random"]
        kinds = {k: sum(r["kind"] == k for r in members) for k in ("minimum", "saddle", "maximum")}
        out.append({"dim": d, "critical_points": len(members), **kinds})
    return out


def draw(
    ctx: ClaimContext,
    rows: list[dict[str, float]],
    bins: list[dict[str, float]],
    prow: list[dict[str, float]],
    pbins: list[dict[str, float]],
    spectrum: dict[str, Any],
    large: int,
) -> Any:
    figure, axes = mpl.grid(4, columns=2, panel=(4.4, 3.3))
    grid_t = np.linspace(-1.2, 1.2, 241)
    law = [data.semicircle_cdf(t) for t in grid_t]
    with mpl.style():
        ax = axes[0]
        dims = sorted({int(r["dim"]) for r in rows})
        for i, d in enumerate(dims):
            members = [r for r in rows if r["dim"] == d]
            ax.scatter(
                [r["t"] for r in members],
                [r["fraction"] for r in members],
                s=6,
                alpha=0.45,
                color=mpl.COLORS[i % len(mpl.COLORS)],
                label=f"d = {d} ({len(members)})",
                linewidths=0,
            )
        ax.plot(grid_t, law, color="black", lw=1.4, label="Bray-Dean: F(u / 2 sqrt d)")
        _bin_means(ax, [0.5 * (b["low"] + b["high"]) for b in bins], bins, f"bin means, d >= {large} (>= 30 pts)")
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("t = u / (2 s sqrt d)   (u: value at the critical point)")
        ax.set_ylabel("index fraction  index / d")
        ax.set_title("Gaussian field: index against value")
        ax.legend(loc="upper left", fontsize=6.5, markerscale=1.5)

        ax = axes[1]
        top = max(dims) if dims else 0
        members = [r for r in rows if r["dim"] == top]
        for starts, marker, color in (("random", "o", "#0072B2"), ("descended", "^", "#009E73")):
            chosen = [r for r in members if r["starts"] == starts]
            if chosen:
                ax.scatter(
                    [r["value"] for r in chosen],
                    [r["fraction"] for r in chosen],
                    s=9,
                    alpha=0.6,
                    marker=marker,
                    color=color,
                    linewidths=0,
                    label=f"{starts} starts ({len(chosen)})",
                )
        if top:
            u = np.linspace(-2.2 * math.sqrt(top), 2.2 * math.sqrt(top), 400)
            ax.plot(u, [data.semicircle_cdf(v / (2 * math.sqrt(top))) for v in u], color="black", lw=1.4, label="law")
            values = [r["value"] for r in members] or [0.0]
            ax.set_xlim(min(values) - 0.5, max(values) + 0.5)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("value u at the critical point")
        ax.set_ylabel("index fraction")
        ax.set_title(f"Dauphin et al. 2014's plot, Gaussian field d = {top}")
        ax.legend(loc="upper left", fontsize=6.5)

        ax = axes[2]
        ns = sorted({int(r["dim"]) for r in prow})
        for i, n in enumerate(ns):
            for starts, marker in (("random", "o"), ("descended", "^")):
                chosen = [r for r in prow if r["dim"] == n and r["starts"] == starts]
                if chosen:
                    ax.scatter(
                        [r["value"] for r in chosen],
                        [r["fraction"] for r in chosen],
                        s=9,
                        alpha=0.55,
                        marker=marker,
                        color=mpl.COLORS[(i + 2) % len(mpl.COLORS)] if starts == "random" else mpl.COLORS[4],
                        linewidths=0,
                        label=f"N = {n}, {starts} starts ({len(chosen)})",
                    )
        e_th = -2 * math.sqrt((P - 1) / P)
        energies = np.linspace(-1.8, 1.8, 361)
        ax.plot(
            energies,
            [data.semicircle_cdf(e / abs(e_th)) for e in energies],
            color="black",
            lw=1.4,
            label="F(E / |E_th|), N -> inf",
        )
        for n in ns:
            ax.plot(
                energies,
                [data.semicircle_cdf(e / pspin_scale(n)) for e in energies],
                color="black",
                lw=0.8,
                ls="--",
                label=f"finite-N law, N = {n}",
            )
        ax.axvline(e_th, color="#CC79A7", lw=1, ls=":", label=f"E_th = {e_th:.3f}")
        _bin_means(ax, [b["mean_value"] for b in pbins], pbins, "bin means")
        ax.set_xlim(-1.8, 1.0)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("energy per spin E = H/N (landbench's loss)")
        ax.set_ylabel("index fraction  index / (N-1)")
        ax.set_title(f"Spherical {P}-spin: index against energy")
        ax.legend(loc="upper left", fontsize=6)

        ax = axes[3]
        if spectrum.get("count"):
            radius = 2 * math.sqrt(spectrum["variance_law"])
            ax.hist(
                spectrum["values"],
                bins=30,
                density=True,
                color="#56B4E9",
                alpha=0.8,
                label=f"{spectrum['count']} eigenvalues at {spectrum['points']} points",
            )
            z = np.linspace(-radius, radius, 300)
            ax.plot(
                z,
                2 / (math.pi * radius**2) * np.sqrt(np.maximum(radius**2 - z**2, 0)),
                color="black",
                lw=1.4,
                label=f"semicircle, radius 2 sqrt(p(p-1)(N-1)/N) = {radius:.2f}",
            )
            ax.legend(loc="upper left", fontsize=6.5)
        ax.set_xlabel("N lambda + p E   (lambda: autograd Riemannian Hessian eigenvalue)")
        ax.set_ylabel("density")
        ax.set_title(f"{P}-spin: the Hessian law, checked by autograd")
    mpl.tidy(axes)
    return mpl.save(figure, ctx.figure("saddles"))


def _bin_means(ax: Any, xs: list[float], bins: list[dict[str, Any]], label: str) -> None:
    """The measured mean index fraction of each value bin, with its 95 % interval (1.96 standard errors)."""
    if bins:
        ax.errorbar(
            xs,
            [b["measured"] for b in bins],
            yerr=[1.96 * b["stderr"] for b in bins],
            fmt="s",
            ms=4,
            color="#D55E00",
            mec="black",
            mew=0.5,
            capsize=2,
            label=label,
            zorder=5,
        )
