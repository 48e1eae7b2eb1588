"""Claim 7: minima are connected by low paths, more so in high dimension.

Endpoints of independent gradient-descent runs (``landbench.api.plan(...).execute().final_x``, in
float64) on three landscapes: the ring ``saddle(index=d, gamma=4, quartic=4)`` = ``(|x|^2 - 1)^2 - 1``
(the reference: every point of the unit sphere is a minimum), the confined Gaussian field and the
spherical 3-spin. Endpoints that are not critical (gradient norm above a tolerance) and repeats of an
earlier endpoint (the same minimum within a relative distance) are counted and dropped; for every pair
of the remaining endpoints of one instance, :func:`landbench.mode_connectivity.connectivity` gives the
straight-line barrier and the barrier along a fitted quadratic Bezier curve (each pair is one
``ctx.cached`` entry). On the sphere the module retracts every path point onto ``|x|^2 = N`` (so the
straight segment becomes the great-circle arc) and fits the bend through the retraction by autograd.

The statistic: the share of pairs whose curve barrier is under a tenth of the straight one, with its
Wilson interval, per dimension, and a Cochran-Armitage trend test of that share against ln d.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from landbench.claims.base import CAVEAT, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimContext, Finding, Measured
from landbench.critical import same_point
from landbench.report.data import wilson

#: A pair counts as "connected" when its curve barrier is below this share of its straight barrier.
RATIO = 0.1
#: One-sided 5 % critical value of the trend test's z.
Z_TREND = 1.6448536269514722

KINDS = ("ring", "field", "pspin")
LABELS = {"ring": "ring (|x|^2-1)^2 (reference)", "field": "confined Gaussian field", "pspin": "spherical 3-spin"}


# --- the landscapes and their runs -------------------------------------------------------------


def problem(kind: str, dim: int, params: dict[str, Any]) -> tuple[str, str, int]:
    """The landscape spec, the optimizer spec and the step budget of one kind at one dimension."""
    if kind == "ring":
        return f"saddle(dim={dim}, index={dim}, gamma=4.0, quartic=4.0)", "sgd(lr=0.1)", int(params["ring_steps"])
    if kind == "field":
        c = float(params["confinement"])
        lr = float(params["field_lr_scale"]) / (4 * math.sqrt(dim) + c)  # lambda_max ~ 4 sqrt(d) + c at a minimum
        return f"gaussian_field(dim={dim}, confinement={c!r})", f"sgd(lr={lr:.6g})", int(params["field_steps"])
    if kind == "pspin":
        lr = float(params["pspin_lr_scale"]) * dim  # the loss is H/N: a step of order N (landbench.landscapes.pspin)
        return f"pspin(dim={dim}, p=3)", f"sgd(lr={lr:.6g})", int(params["pspin_steps"])
    raise ValueError(kind)


def endpoints(spec: str, optimizer: str, steps: int, runs: int, instance: int) -> dict[str, Any]:
    """Final points of ``runs`` GD runs (seeds 0..runs-1) on one instance, their losses and gradient
    norms (Riemannian on the sphere), JSON-ready."""
    from landbench.api import plan

    prepared = plan(spec, optimizer, seeds=runs, steps=steps, instance=instance, dtype="float64")
    final = prepared.execute().final_x.detach().to(torch.float64).cpu()
    landscape = prepared.landscape
    loss, grad = landscape.loss_and_grad(final.to(landscape.device))
    return {
        "x": final.tolist(),
        "loss": loss.double().cpu().tolist(),
        "grad_norm": grad.double().norm(dim=1).cpu().tolist(),
    }


def select(ends: dict[str, Any], grad_tol: float, same_tol: float) -> tuple[list[int], int, int]:
    """The endpoints kept: critical (gradient norm <= grad_tol) and not a repeat of an earlier kept one
    (``|a - b| <= same_tol max(|a|, |b|, 1)``). Returns the kept indices and the counts dropped."""
    x = torch.tensor(ends["x"], dtype=torch.float64)
    kept: list[int] = []
    not_critical = repeats = 0
    for i, g in enumerate(ends["grad_norm"]):
        if not (math.isfinite(g) and g <= grad_tol):
            not_critical += 1
            continue
        if kept and bool(same_point(x[kept], x[i], same_tol).any()):  # the finder's rule for one point
            repeats += 1
            continue
        kept.append(i)
    return kept, not_critical, repeats


# --- theory: the first-moment (Kriging) prediction of the straight barrier ------------------------


def kriging_path(kernel: str, length: float, values: tuple[float, float], slopes: tuple[float, float], t: torch.Tensor):
    """The conditional mean of a stationary Gaussian process on [0, length] given its values and first
    derivatives at both ends: ``c(z)^T C^{-1} [h(0), h(L), h'(0), h'(L)]`` with ``Cov(h(x), h(y)) = k(x -
    y)``, ``Cov(h(x), h'(y)) = -k'(x - y)``, ``Cov(h'(x), h'(y)) = -k''(x - y)``. ``kernel``:
    ``"se"`` (k = exp(-D^2/2), the field's restriction to a line, D in units of l) or ``"p3"`` (k = cos^3 D,
    the 3-spin's restriction to a great circle, D the angle). ``t`` in [0, 1] maps to z = t L."""

    def k(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if kernel == "se":
            e = torch.exp(-0.5 * d * d)
            return e, -d * e, (d * d - 1) * e
        c, s = torch.cos(d), torch.sin(d)
        return c**3, -3 * c**2 * s, 6 * c * s * s - 3 * c**3

    ends = torch.tensor([0.0, length], dtype=torch.float64)
    diff = ends[:, None] - ends[None, :]
    k0, k1, k2 = k(diff)
    cov = torch.zeros(4, 4, dtype=torch.float64)
    cov[:2, :2] = k0
    cov[:2, 2:] = -k1
    cov[2:, :2] = -k1.T
    cov[2:, 2:] = -k2
    obs = torch.tensor([*values, *slopes], dtype=torch.float64)
    weights = torch.linalg.solve(cov, obs)
    z = t.double()[:, None] * length - ends[None, :]
    c0, c1, _ = k(z)
    cross = torch.cat([c0, -c1], dim=1)
    return cross @ weights


def straight_theory(kind: str, a: torch.Tensor, b: torch.Tensor, fa: float, fb: float, params: dict[str, Any]) -> float:
    """The predicted straight-line barrier of one pair. Ring: exactly ``sin^4(theta/2)`` (the segment's
    lowest-norm point is its midpoint, at norm cos(theta/2)). Field (s = l = 1, confinement c): the
    confinement ``c/2 |x(t)|^2`` exactly plus the field's conditional mean given its values ``f - c/2
    |x|^2`` and its slopes ``-c x.(b - a)`` at the ends (the gradient of f is 0 there): a first-moment
    prediction, which ignores the conditioning on the Hessian and the field's O(1) fluctuation about its
    mean (the minima lie at depth O(sqrt d)). 3-spin: the same conditional mean along the great circle
    given the end energies and zero slopes, which is EXACT: H restricted to a great circle ``cos(phi) a +
    sin(phi) b`` is a cubic form in (cos phi, sin phi), four coefficients fixed by the two values and the
    two slopes (the covariance cos^3 of the restriction has rank four)."""
    t = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    top = max(fa, fb)
    if kind == "ring":
        cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
        return (1 - (1 + cos) / 2) ** 2
    if kind == "field":
        c = float(params["confinement"])
        d = b - a
        length = float(d.norm())
        ua, ub = fa - 0.5 * c * float(a @ a), fb - 0.5 * c * float(b @ b)
        sa, sb = -c * float(a @ d) / length, -c * float(b @ d) / length  # slopes per unit length
        field = kriging_path("se", length, (ua, ub), (sa, sb), t)
        points = a[None, :] + t[:, None] * d[None, :]
        return float((field + 0.5 * c * points.square().sum(1)).max()) - top
    q = float(torch.dot(a, b) / (a.norm() * b.norm()))
    angle = math.acos(max(-1.0, min(1.0, q)))
    return float(kriging_path("p3", angle, (fa, fb), (0.0, 0.0), t).max()) - top


# --- one pair -------------------------------------------------------------------------------------


def fit_pair(landscape: Any, a: torch.Tensor, b: torch.Tensor, params: dict[str, Any]) -> dict[str, float]:
    """Straight and Bezier barriers of one pair (``landbench.connectivity``), with the highest loss along
    each path and the distance."""
    from landbench.mode_connectivity import connectivity

    result = connectivity(
        landscape,
        a,
        b,
        points=int(params["points"]),
        steps=int(params["fit_steps"]),
        samples=int(params["samples"]),
        seed=0,
    )
    ends = max(result.linear.loss[0], result.linear.loss[-1])
    return {
        "straight": float(result.linear.barrier),
        "curve": float(result.bezier.barrier),
        "straight_max": float(ends + result.linear.barrier),
        "curve_max": float(ends + result.bezier.barrier),
        "distance": float((b - a).norm()),
    }


def measure_kind(ctx: ClaimContext, kind: str) -> list[dict[str, Any]]:
    """Every dimension of one kind: endpoints, the pairs' fits, the theory; one summary per dimension."""
    params = ctx.params
    rows = []
    for dim in params[f"{kind}_dims"]:
        spec, optimizer, steps = problem(kind, int(dim), params)
        pairs: list[dict[str, Any]] = []
        counts = {"runs": 0, "not_critical": 0, "repeats": 0}
        for instance in params["instances"]:
            found, dropped = measure_instance(ctx, kind, spec, optimizer, steps, int(instance))
            pairs += found
            counts["runs"] += int(params["runs"])
            counts["not_critical"] += dropped[0]
            counts["repeats"] += dropped[1]
        rows.append(summarise(kind, int(dim), spec, optimizer, counts, pairs, float(params["barrier_floor"])))
        ctx.log(f"{kind} d={dim}: {_count(rows[-1]['informative'], 'pair')}, share {rows[-1]['share']:.2f}")
    return rows


def measure_instance(
    ctx: ClaimContext, kind: str, spec: str, optimizer: str, steps: int, instance: int
) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """One instance: its endpoints (cached), the kept ones' pairs (each fit cached), with the theory;
    and the numbers of endpoints dropped (not critical, repeats)."""
    from landbench.landscapes import make

    params = ctx.params
    runs = int(params["runs"])
    where = f"{spec}|instance={instance}|{optimizer}|steps={steps}|float64"
    ends = ctx.cached(
        f"endpoints|{where}|seeds=0..{runs - 1}", lambda: endpoints(spec, optimizer, steps, runs, instance)
    )
    kept, not_critical, repeats = select(ends, float(params[f"{kind}_grad_tol"]), float(params["same_tol"]))
    x = torch.tensor(ends["x"], dtype=torch.float64)
    built: list[Any] = []

    def compute(i: int, j: int) -> dict[str, float]:
        if not built:
            built.append(make(spec, seed=instance, dtype="float64"))
        return fit_pair(built[0], x[i], x[j], params)

    pairs = []
    combos = list(itertools.combinations(kept, 2))
    bar = ctx.bar(len(combos), "pair", f"paths between minima of {spec}")
    for i, j in combos:
        key = (
            f"pair|{where}|seeds={i},{j}|points={params['points']}|fit_steps={params['fit_steps']}"
            f"|samples={params['samples']}|fit_seed=0"
        )
        fit = dict(ctx.cached(key, lambda i=i, j=j: compute(i, j)))
        fa, fb = ends["loss"][i], ends["loss"][j]
        fit.update(
            instance=instance,
            seeds=[i, j],
            ends=[fa, fb],
            theory=straight_theory(kind, x[i], x[j], fa, fb, params),
            cos=float(torch.dot(x[i], x[j]) / (x[i].norm() * x[j].norm())),
        )
        pairs.append(fit)
        bar.update(1)
    bar.close()
    return pairs, (not_critical, repeats)


def summarise(
    kind: str, dim: int, spec: str, optimizer: str, counts: dict[str, int], pairs: list[dict[str, Any]], floor: float
) -> dict[str, Any]:
    """One dimension: the pairs whose straight barrier exceeds ``floor`` (the others have no barrier to
    lower), the share of them with curve < straight/10 and its Wilson interval, the median ratio."""
    informative = [p for p in pairs if p["straight"] > floor]
    hits = sum(p["curve"] < RATIO * p["straight"] for p in informative)
    ratios = sorted(p["curve"] / p["straight"] for p in informative)
    lo, hi = wilson(hits, len(informative))
    return {
        "kind": kind,
        "dim": dim,
        "spec": spec,
        "optimizer": optimizer,
        **counts,
        "pairs": len(pairs),
        "no_straight_barrier": len(pairs) - len(informative),
        "informative": len(informative),
        "connected": hits,
        "share": hits / len(informative) if informative else math.nan,
        "wilson": [lo, hi],
        "median_ratio": _median(ratios),
        "median_straight": _median(sorted(p["straight"] for p in informative)),
        "median_curve": _median(sorted(p["curve"] for p in informative)),
        "median_theory": _median(sorted(p["theory"] for p in informative)),
        "pair_data": pairs,
    }


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


# --- the tests ------------------------------------------------------------------------------------


def trend_z(rows: list[dict[str, Any]]) -> float:
    """Cochran-Armitage z of the share against ln d (positive: rising); NaN when no test is possible
    (fewer than two dimensions with pairs, or every pair on one side: the share is 0 or 1 everywhere)."""
    used = [r for r in rows if r["informative"] > 0]
    if len(used) < 2:
        return math.nan
    n = sum(r["informative"] for r in used)
    p = sum(r["connected"] for r in used) / n
    x = [math.log(r["dim"]) for r in used]
    t = sum(xi * (r["connected"] - r["informative"] * p) for xi, r in zip(x, used))
    sx = sum(r["informative"] * xi for xi, r in zip(x, used))
    sxx = sum(r["informative"] * xi * xi for xi, r in zip(x, used))
    var = p * (1 - p) * (sxx - sx * sx / n)
    return t / math.sqrt(var) if var > 0 else math.nan


def _count(n: int, noun: str) -> str:
    """``1 pair``, ``2 pairs``, ``0 pairs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def claim_finding(kind: str, rows: list[dict[str, Any]], min_pairs: int) -> Finding:
    """The stated test on one landscape: the share at the largest d high (Wilson interval above 1/2)
    and rising with d (trend z > 1.645): supported; one of the two: caveat; the share's interval below
    1/2: not supported; otherwise (too few pairs, interval across 1/2): inconclusive."""
    used = [r for r in rows if r["informative"] > 0]
    statistic = f"share of pairs with curve barrier < straight/10 at the largest d ({LABELS[kind]})"
    largest = rows[-1] if rows else None  # the tier's largest d decides, whether or not it has pairs
    if largest is None or largest["informative"] < min_pairs:
        n = largest["informative"] if largest else 0
        where = f"d={largest['dim']}" if largest else "the largest d"
        return Finding(
            INCONCLUSIVE,
            statistic,
            largest["share"] if largest and largest["informative"] else math.nan,
            f"only {_count(n, 'pair')} of distinct minima with a straight barrier at {where}, the largest d "
            f"(at least {min_pairs} wanted): more runs or instances would settle it",
        )
    top, low = used[-1], used[0]
    lo, hi = top["wilson"]
    z = trend_z(rows)
    rising = math.isfinite(z) and z > Z_TREND
    high, below = lo > 0.5, hi < 0.5
    trend = f"trend z = {z:.2f}" if math.isfinite(z) else "no trend test possible (the same share at every d)"
    shares = ", ".join(f"d={r['dim']}: {r['connected']}/{r['informative']}" for r in used)
    numbers = (
        f"share {top['share']:.2f} at d={top['dim']} (Wilson {lo:.2f}-{hi:.2f}) against {low['share']:.2f} at "
        f"d={low['dim']} (Wilson {low['wilson'][0]:.2f}-{low['wilson'][1]:.2f}); {trend} "
        f"({shares}); the median curve/straight ratio goes from {low['median_ratio']:.2f} at d={low['dim']} to "
        f"{top['median_ratio']:.2f} at d={top['dim']}. Pairs share "
        f"endpoints, so the intervals, which treat pairs as independent, are optimistic."
    )
    if high and rising:
        verdict, why = SUPPORTED, f"High and rising with d: {numbers}"
    elif high:
        verdict, why = CAVEAT, f"Most pairs are connected by a low curve, but the share does not rise with d: {numbers}"
    elif below:
        extra = " It rises with d, but stays below 1/2." if rising else ""
        verdict, why = NOT_SUPPORTED, f"The fitted one-bend curve rarely removes 90 % of the barrier: {numbers}{extra}"
    elif rising:
        verdict, why = CAVEAT, f"The share rises with d, but is not clearly above 1/2 at the largest d: {numbers}"
    else:
        verdict, why = INCONCLUSIVE, f"The share's interval straddles 1/2 and no trend is detected: {numbers}"
    return Finding(verdict, statistic, top["share"], why, (lo, hi))


def reference_finding(rows: list[dict[str, Any]], sphere: list[dict[str, Any]], tolerance: float) -> Finding:
    """The reference checks. Ring: every straight barrier is ``sin^4(theta/2)`` (to 1e-6) and every curve
    barrier is under a tenth of it. Sphere: every 3-spin straight barrier (the module retracts the segment
    onto the great circle) equals the exact cubic interpolation of :func:`straight_theory` to ``tolerance``
    relative (the ends' gradients are zero only to the runs' tolerance). Otherwise the method is not to be
    trusted (inconclusive)."""
    pairs = [p for r in rows for p in r["pair_data"]]
    informative = [p for p in pairs if p["straight"] > 0]
    error = max((abs(p["straight"] - p["theory"]) for p in pairs), default=math.nan)
    spherical = [p for r in sphere for p in r["pair_data"]]
    off = max((abs(p["straight"] - p["theory"]) / max(1.0, abs(p["theory"])) for p in spherical), default=0.0)
    hits = sum(p["curve"] < RATIO * p["straight"] for p in informative)
    n = len(informative)
    lo, hi = wilson(hits, n)
    statistic = "reference check on the ring: share of pairs with curve < straight/10 (theory: all)"
    worst = max((p["curve"] / p["straight"] for p in informative), default=math.nan)
    why = (
        f"{hits}/{n} ring pairs have a curve barrier under a tenth of the straight one (largest curve/straight "
        f"{worst:.3f}); straight barriers match sin^4(theta/2) to {error:.1e}. On the sphere the {len(spherical)} "
        f"straight (great-circle) barriers match the exact cubic interpolation to {off:.1e} relative."
    )
    ok = n > 0 and hits == n and error < 1e-6 and off < tolerance
    return Finding(SUPPORTED if ok else INCONCLUSIVE, statistic, hits / n if n else math.nan, why, (lo, hi))


# --- the figure -----------------------------------------------------------------------------------


def draw(ctx: ClaimContext, results: dict[str, list[dict[str, Any]]], e_th: float) -> Any:
    from landbench.report import mpl

    figure, axes = mpl.grid(4, columns=2, panel=(4.2, 3.2))
    colors = {"ring": mpl.COLORS[2], "field": mpl.COLORS[0], "pspin": mpl.COLORS[3]}
    with mpl.style():
        # (a) the ring: straight barrier against the angle, with sin^4(theta/2); curve barriers near 0
        ax = axes[0]
        pairs = [p for r in results["ring"] for p in r["pair_data"]]
        theta = [math.degrees(math.acos(max(-1.0, min(1.0, p["cos"])))) for p in pairs]
        grid = torch.linspace(0, 180, 181, dtype=torch.float64)
        ax.plot(grid, torch.sin(torch.deg2rad(grid) / 2) ** 4, color="black", lw=1, label="theory: sin$^4$(θ/2)")
        ax.scatter(theta, [p["straight"] for p in pairs], s=14, color=colors["ring"], label="straight barrier")
        ax.scatter(theta, [p["curve"] for p in pairs], s=14, marker="x", color=mpl.COLORS[1], label="curve barrier")
        ax.axhline(0, color="black", lw=0.8, ls=":", label="theory: curve barrier 0")
        ax.set(xlabel="angle θ between the two minima (degrees)", ylabel="barrier", title="(a) ring (|x|²−1)², check")
        ax.legend(loc="upper left")
        # (b) the field: barriers against d
        for ax, kind, title, ylabel in (
            (axes[1], "field", "(b) confined Gaussian field", "barrier (loss units)"),
            (axes[2], "pspin", "(c) spherical 3-spin", "barrier (energy per spin)"),
        ):
            rows = [r for r in results[kind] if r["informative"]]
            for r in rows:
                informative = [p for p in r["pair_data"] if p["straight"] > 0]
                jitter = [r["dim"] * (1 + 0.04 * ((k % 5) - 2)) for k in range(len(informative))]
                ax.scatter(jitter, [p["straight"] for p in informative], s=8, alpha=0.35, color=colors[kind])
                ax.scatter(jitter, [p["curve"] for p in informative], s=8, alpha=0.35, marker="x", color=mpl.COLORS[1])
            dims = [r["dim"] for r in rows]
            ax.plot(dims, [r["median_straight"] for r in rows], "o-", color=colors[kind], label="straight (median)")
            ax.plot(dims, [r["median_curve"] for r in rows], "x-", color=mpl.COLORS[1], label="curve (median)")
            theory = (
                "straight, exact (cubic on the great circle)" if kind == "pspin" else "straight, first-moment theory"
            )
            ax.plot(dims, [r["median_theory"] for r in rows], "k--", lw=1, label=f"{theory} (median)")
            ax.plot(dims, [RATIO * r["median_straight"] for r in rows], ":", color="gray", label="straight/10 (median)")
            _dimension_axis(ax, dims)
            ax.set(xlabel="dimension d" if kind == "field" else "N (spins)", ylabel=ylabel, title=title)
            if kind == "pspin":
                top = [max(p["ends"]) for r in rows for p in r["pair_data"]]
                gap = e_th - (sum(top) / len(top)) if top else math.nan
                title += f"\n(the higher ends lie {abs(gap):.2f} {'above' if gap < 0 else 'below'} E_th on average)"
                ax.set_title(title)
            ax.legend(loc="upper left")
        # (d) the share against d
        ax = axes[3]
        every: list[int] = []
        for kind in KINDS:
            rows = [r for r in results[kind] if r["informative"]]
            every += [r["dim"] for r in rows]
            dims = [r["dim"] for r in rows]
            shares = [r["share"] for r in rows]
            err = [
                [s - r["wilson"][0] for s, r in zip(shares, rows)],
                [r["wilson"][1] - s for s, r in zip(shares, rows)],
            ]
            ax.errorbar(dims, shares, yerr=err, fmt="o-", capsize=3, color=colors[kind], label=LABELS[kind])
            ax.plot(dims, [r["median_ratio"] for r in rows], "s:", mfc="none", color=colors[kind], alpha=0.7)
        ax.axhline(0.5, color="black", lw=0.8, ls="--", label="1/2 (the stated test)")
        ax.plot([], [], "s:", mfc="none", color="gray", label="median curve/straight ratio")
        _dimension_axis(ax, every)
        ax.set_ylim(-0.03, 1.03)
        ax.set(
            xlabel="dimension d (N for the spin glass)",
            ylabel="share with curve < straight/10",
            title="(d) share of pairs with curve < straight/10 (Wilson 95 %)",
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7)
    return mpl.save(figure, ctx.figure("connected_minima"))


def _finite(value: Any) -> Any:
    """The value with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dimension_axis(ax: Any, dims: list[int]) -> None:
    """A log axis labelled at the dimensions measured, without minor labels."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    ticks = sorted(set(dims))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def measure(ctx: ClaimContext) -> Measured:
    from landbench.landscapes.pspin import threshold_energy

    torch.manual_seed(0)
    results = {kind: measure_kind(ctx, kind) for kind in KINDS}
    min_pairs = int(ctx.params["min_pairs"])
    e_th = threshold_energy({3: 1.0})
    ring = reference_finding(results["ring"], results["pspin"], float(ctx.params["sphere_tol"]))
    claims = [claim_finding("field", results["field"], min_pairs), claim_finding("pspin", results["pspin"], min_pairs)]
    pspin_pairs = [p for r in results["pspin"] for p in r["pair_data"] if p["straight"] > 0]
    below = sum(p["curve_max"] < e_th for p in pspin_pairs)
    ends_below = sum(max(p["ends"]) < e_th for p in pspin_pairs)
    from landbench.claims.base import verdict_of

    overall = verdict_of(claims) if ring.verdict == SUPPORTED else INCONCLUSIVE
    figure = draw(ctx, results, e_th)
    data = {kind: [{k: v for k, v in r.items() if k != "pair_data"} for r in rows] for kind, rows in results.items()}
    data["pspin_threshold"] = {
        "E_th": e_th,
        "pairs": len(pspin_pairs),
        "curve_max_below_E_th": below,
        "higher_end_below_E_th": ends_below,
    }
    data["trend_z"] = {kind: trend_z(results[kind]) for kind in KINDS}
    caption = (
        "Minima reached by gradient descent from independent starts: barriers of the straight segment and of a "
        "fitted one-bend Bezier curve (landbench.connectivity; on the sphere the path is retracted onto |x|²=N). "
        "(a) the ring, where theory gives sin^4(θ/2) and 0; (b, c) barriers against d, with the straight barrier's "
        "first-moment (Gaussian conditional-mean) prediction on the field and its exact value on the 3-spin (a cubic "
        "on the great circle); (d) the share of pairs whose curve barrier "
        f"is under a tenth of the straight one. On the 3-spin, {below}/{len(pspin_pairs)} fitted curves stay below "
        f"E_th = {e_th:.3f} ({_count(ends_below, 'pair')} {'has' if ends_below == 1 else 'have'} both ends below it)."
    )
    summary = (
        f"Field: {claims[0].why.split(':')[0]}; spin glass: {claims[1].why.split(':')[0]} (ring check: {ring.verdict})."
    )
    return Measured(
        findings=[*claims, ring],
        figures=[figure],
        captions=[caption],
        data=_finite(data),
        verdict=overall,
        summary=summary,
    )
