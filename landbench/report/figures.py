"""The report's figures: each is drawn only when the records hold what it needs, else skipped with a note.

Every function takes a :class:`Context` and returns a :class:`Drawn`: a matplotlib figure with
its title and caption, or no figure and the reason. Colours and markers are the optimizer's
everywhere (:class:`~landbench.report.mpl.Styles`); diverged runs are counted in the legend and
never drawn as numbers; censored escape times are never drawn as numbers either.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from landbench import outcomes
from landbench.report import data
from landbench.report.mpl import Styles, bound_ticks, grid, legend_below, tidy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from landbench.ranking import Leaderboard

#: At most this many panels per figure (the others are named in the note).
MAX_PANELS = 9
#: Loss gaps below this are drawn at it on a log axis (float32 resolves gaps only to ~1e-7 |f*|).
GAP_FLOOR = 1e-12
#: Loss gaps above this are drawn at it: a run still finite at 1e289 (on its way to overflow) would
#: otherwise stretch the log axis over 300 decades and squash every other box to a line.
GAP_CEILING = 1e8


@dataclass
class Context:
    """What every figure draws from: grouped scored records, the leaderboard, the optimizers' styles."""

    grouped: data.Grouped
    board: Leaderboard
    styles: Styles


@dataclass
class Drawn:
    """A figure (``figure`` None when skipped, with ``note`` saying why) and its words."""

    name: str
    title: str
    caption: str = ""
    figure: Figure | None = None
    note: str = ""


def _skip(name: str, title: str, why: str) -> Drawn:
    return Drawn(name, title, note=why)


def _legend(figure: Figure, styles: Styles, names: Sequence[str], diverged: dict[str, int], kind: str = "line") -> None:
    """One legend for the figure, below the panels (:func:`~landbench.report.mpl.legend_below`): each
    optimizer by its number and name, with its diverged runs counted, in its colour and marker."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    for name in names:
        label = styles.label(name) + (f" ({diverged[name]} diverged)" if diverged.get(name) else "")
        color = styles.color(name)
        if kind == "patch":
            handles.append(Patch(facecolor=color, alpha=0.6, edgecolor=color, hatch=styles.hatch(name), label=label))
        else:
            # "marker": a scatter's dot alone; "line": line and marker
            line = styles.linestyle(name) if kind == "line" else "none"
            size = 6 if kind == "marker" else 4.5
            handles.append(
                Line2D([], [], color=color, marker=styles.marker(name), ls=line, markersize=size, label=label)
            )
    legend_below(figure, handles)


def _markevery(index: int) -> tuple[float, float]:
    """Where a step curve shows its optimizer's marker: every fifth of the axes' diagonal, starting
    at a point that differs between neighbours (the golden ratio spreads the starts)."""
    return (0.2 * ((index * 0.618034) % 1), 0.2)


def _more(panels: Sequence[Any], title: Callable[[Any], str]) -> str:
    if len(panels) <= MAX_PANELS:
        return ""
    rest = [title(p) for p in panels[MAX_PANELS:]]
    return f" Not shown ({len(rest)} more panels): {'; '.join(rest[:5])}{' ...' if len(rest) > 5 else ''}."


def _spread(index: int, count: int, xs: Sequence[float]) -> float:
    """A multiplicative offset so that error bars of optimizers at the same x do not overlap: the
    optimizers share at most a third of the smallest gap between the x values (in decades), and
    at most 0.025 decades each."""
    gaps = np.diff(np.log10(sorted(set(xs)))) if len(set(xs)) > 1 else np.array([1.0])
    step = min(0.025, float(gaps.min()) / 3 / max(count - 1, 1))
    return 10 ** (step * (index - (count - 1) / 2))


# --- escape time ------------------------------------------------------------------------------


def escape_time(ctx: Context, axis: str) -> Drawn:
    """Median escape step (interquartile bars) against the dimension or the saddle index, per optimizer."""
    what = {"dim": "dimension d", "index": "saddle index k (unstable directions)"}[axis]
    name, title = f"escape_{axis}", f"Escape time against {what.split(' (')[0]}"
    panels = data.sweep(ctx.grouped, axis, data.has_saddle)
    if not panels:
        return _skip(name, title, f"no saddle problem was run at two or more values of {axis} with all else equal")
    figure, axes = grid(min(len(panels), MAX_PANELS))
    names = ctx.styles.sort({o for p in panels for o in p.series})
    diverged: dict[str, int] = dict.fromkeys(names, 0)
    censored = []
    lost: dict[int, list[tuple[float, str]]] = {}  # per panel: (x, optimizer) where at most half escaped
    for ax, panel in zip(axes, panels):
        present = [o for o in names if o in panel.series]
        medians = 0
        for i, optimizer in enumerate(present):
            xs, stats = zip(*sorted((x, data.escape_stats(rs)) for x, rs in panel.series[optimizer].items()))
            diverged[optimizer] += sum(s.diverged for s in stats)
            color, marker = ctx.styles.color(optimizer), ctx.styles.marker(optimizer)
            shifted = [x * _spread(i, len(present), panel.xs()) for x in xs]
            known = [(x, s) for x, s in zip(shifted, stats) if s.median is not None]
            medians += len(known)
            if known:
                line = ctx.styles.linestyle(optimizer)
                ax.plot(
                    [x for x, _ in known],
                    [s.median for _, s in known],
                    color=color,
                    marker=marker,
                    ms=4,
                    lw=1.3,
                    ls=line,
                )
            bars = [(x, s) for x, s in known if s.q1 is not None and s.q3 is not None]
            if bars:
                low = [s.median - s.q1 for _, s in bars]  # type: ignore[operator]
                high = [s.q3 - s.median for _, s in bars]  # type: ignore[operator]
                ax.errorbar(
                    [x for x, _ in bars],
                    [s.median for _, s in bars],
                    yerr=[low, high],
                    fmt="none",
                    ecolor=color,
                    elinewidth=1,
                    capsize=2.5,
                )
            lost.setdefault(id(ax), []).extend((x, optimizer) for x, s in zip(xs, stats) if s.median is None)
            censored += [
                f"{optimizer} at {axis} = {x:g}: {s.escaped}/{s.runs} escaped"
                for x, s in zip(xs, stats)
                if s.escaped < s.runs
            ]
        ax.set_xscale("log")
        ax.set_yscale("log")
        if not medians:  # no point escaped: the axis spans the escape steps possible, 1 to the budget
            ax.set_ylim(1, max(r["steps"] for points in panel.series.values() for rs in points.values() for r in rs))
        ax.set_xticks(panel.xs(), [f"{x:g}" for x in panel.xs()])
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel(what)
        ax.set_ylabel("escape step (optimizer steps)")
    tidy(axes)
    _legend(figure, ctx.styles, names, diverged)
    figure.canvas.draw()  # lay out, so that the triangles are placed by the panels' final sizes
    for ax in axes:
        _censored_marks(ax, lost.get(id(ax), []), ctx.styles)
    tidy(axes)
    caption = (
        f"Median escape step (the first step at which the loss is halfway from the saddle's value down to f*) "
        f"against {what}, over the instances and seeds of each point; bars span the interquartile range. "
        "Runs that did not escape within the budget are censored, and diverged runs (even those that escaped "
        "before diverging) count as not escaped; neither is drawn as a number: a median is drawn only "
        "where more than half the runs escaped, a bar only where more than three quarters did; a hollow triangle "
        "in the optimizer's colour at the top of a panel marks a point where at most half escaped (the triangles "
        "of one x side by side in the optimizers' order, in rows from the top where they do not fit in one)."
    )
    if censored:
        caption += f" Censored runs: {'; '.join(censored[:8])}{' ...' if len(censored) > 8 else ''}."
    return Drawn(name, title, caption + _more(panels, lambda p: p.title), figure)


#: Size of a censored point's hollow triangle, and the distance between neighbouring ones, in points.
CENSORED_SIZE = 6.0
CENSORED_PITCH = 7.5


def _censored_marks(ax: Any, lost: Sequence[tuple[float, str]], styles: Styles) -> None:
    """Hollow triangles at the top of a (laid out) panel, one per (x, optimizer) where at most half
    the runs escaped: those of one x side by side, centred on it, in the optimizers' order, in as
    many rows down from the top as the room between x values needs; the y axis is raised so that
    the rows below the first cover no median."""
    from matplotlib.transforms import ScaledTranslation

    if not lost:
        return
    figure = ax.figure
    box = ax.get_window_extent()
    scale = 72 / figure.dpi  # points per pixel
    xs = sorted({x for x, _ in lost} | set(ax.get_xticks()))
    left, right = ax.get_xlim()
    low, high = ax.get_ylim()
    rows_needed = 1
    for x in sorted({x for x, _ in lost}):
        group = styles.sort(o for at, o in lost if at == x)
        # the room about x: to the nearest other x (half each way), and to the panel's edges
        pixel = ax.transData.transform((x, 1))[0]
        others = [ax.transData.transform((v, 1))[0] for v in xs if v != x and left <= v <= right]
        half = min([abs(pixel - o) / 2 for o in others] + [pixel - box.x0, box.x1 - pixel]) * scale
        per_row = max(1, int((2 * half - CENSORED_SIZE) // CENSORED_PITCH) + 1)
        rows = -(-len(group) // per_row)
        rows_needed = max(rows_needed, rows)
        for k, optimizer in enumerate(group):
            row, column = divmod(k, per_row)
            in_row = min(per_row, len(group) - row * per_row)
            dx = (column - (in_row - 1) / 2) * CENSORED_PITCH
            dy = -row * CENSORED_PITCH
            ax.plot(
                [x],
                [1.0],
                linestyle="none",
                marker="^",
                ms=CENSORED_SIZE,
                mfc="white",
                mec=styles.color(optimizer),
                transform=ax.get_xaxis_transform() + ScaledTranslation(dx / 72, dy / 72, figure.dpi_scale_trans),
                clip_on=False,
                zorder=4,
            )
    ax.set_xlim(left, right)  # the triangles' x is data: keep the limits as laid out
    ax.set_ylim(low, high)
    if rows_needed > 1:
        free = ((rows_needed - 1) * CENSORED_PITCH + CENSORED_SIZE / 2) / (box.height * scale)
        if ax.get_yscale() == "log":
            span = math.log10(high) - math.log10(low)
            ax.set_ylim(low, 10 ** (math.log10(low) + span / (1 - min(free, 0.6))))
        else:
            ax.set_ylim(low, low + (high - low) / (1 - min(free, 0.6)))


def escape_vs_dim(ctx: Context) -> Drawn:
    """Escape time against the dimension."""
    return escape_time(ctx, "dim")


def escape_vs_index(ctx: Context) -> Drawn:
    """Escape time against the saddle index."""
    return escape_time(ctx, "index")


# --- time to target -----------------------------------------------------------------------------


def ecdf_time_to_target(ctx: Context) -> Drawn:
    """COCO-style ECDFs: the share of (run, target) pairs reached against gradient evaluations."""
    name, title = "ecdf", "Time to target (ECDF of run-target pairs)"
    panels = data.ecdfs(ctx.grouped)
    if not panels:
        return _skip(name, title, "no scenario has targets (f* is unknown for every problem run)")
    groups = [g for g in panels if g != "all"]
    keys = ["all"] + groups if len(groups) > 1 else groups
    figure, axes = grid(min(len(keys), MAX_PANELS))
    names = ctx.styles.sort({o for p in panels.values() for o in p})
    uneven = False
    for ax, key in zip(axes, keys):
        curves = panels[key]
        uneven |= len({c.scenarios for c in curves.values()}) > 1
        for optimizer in ctx.styles.sort(curves):
            c = curves[optimizer]
            reached = np.arange(1, len(c.times) + 1) / c.pairs
            xs = np.concatenate([[1.0], c.times, [max(c.budget, 1.0)]])
            ys = np.concatenate([[0.0], reached, [reached[-1] if len(reached) else 0.0]])
            color = ctx.styles.color(optimizer)
            ax.step(
                xs,
                ys,
                where="post",
                color=color,
                lw=1.4,
                ls=ctx.styles.linestyle(optimizer),
                marker=ctx.styles.marker(optimizer),
                ms=3.5,
                markevery=_markevery(ctx.styles.number(optimizer)),
            )
            ax.plot(xs[-1], ys[-1], marker="x", color=color, ms=6, mew=1.5)
        runs = max(c.scenarios for c in curves.values())
        ax.set_title(f"{'all scenarios' if key == 'all' else key} ({runs} scenario{'s' * (runs != 1)})", fontsize=8)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("gradient evaluations")
        ax.set_ylabel("fraction of (run, target) pairs")
    tidy(axes)
    _legend(figure, ctx.styles, names, {o: c.diverged for o, c in panels["all"].items()})
    caption = (
        "Empirical cumulative distribution of the time to target, as in COCO (Hansen et al. 2016), with "
        "landbench's rule for reaching a target: for every run and every target on the loss gap (10, 1, ..., 1e-8, "
        "those all runs of the scenario track), the gradient evaluations the run had spent by the step from which "
        "its gap stayed within the target to the end of its budget (a start already within a target counts as 1). "
        "A run that touched a target and left it, and a diverged run, reached none. A curve ends, marked x, at the "
        "largest budget of its runs; its height there is the share of pairs reached. Scenarios where f* is "
        "unknown have no targets and are left out."
    )
    if uneven:
        caption += " Optimizers ran different scenarios here: curves over different scenario sets are not comparable."
    return Drawn(name, title, caption, figure)


def performance_profiles(ctx: Context) -> Drawn:
    """The leaderboard's performance profiles (Dolan and More) of the ERT at the reference target."""
    name, title = "profiles", "Performance profiles"
    profile = ctx.board.profile
    if not profile.scenarios:
        return _skip(name, title, "no ranked scenario has a reference target (see the leaderboard's warnings)")
    figure, (ax,) = grid(1, panel=(5.0, 3.0))
    names = [s.optimizer for s in ctx.board.standings]
    for optimizer in names:
        color, line = ctx.styles.color(optimizer), ctx.styles.linestyle(optimizer)
        ax.step(
            profile.taus,
            profile.rho[optimizer],
            where="post",
            color=color,
            lw=1.5,
            ls=line,
            marker=ctx.styles.marker(optimizer),
            ms=3.5,
            markevery=_markevery(ctx.styles.number(optimizer)),
        )
    ax.set_xlim(1, profile.tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("ratio tau to the fastest optimizer's ERT")
    ax.set_ylabel("fraction of scenarios")
    profiled = [r for r in ctx.board.scenarios if r.targets]  # the scenarios of the profile: those with targets
    _legend(figure, ctx.styles, names, {o: sum(r.summaries[o].diverged for r in profiled) for o in names})
    caption = (
        f"Share of the {profile.scenarios} ranked scenarios with targets (f* known) on which each optimizer's "
        f"expected running time at the reference target is within tau times the fastest one's (Dolan and More "
        f"2002; a scenario where no optimizer reaches a target in half its runs has no reference target and counts "
        f"for none); the area under each curve up to tau = {profile.tau_max:g}, normalised, is the leaderboard's "
        "score. Diverged runs on these scenarios are counted in the legend (each is a failure charged its whole "
        "budget in the ERT)."
    )
    return Drawn(name, title, caption, figure)


# --- distributions -----------------------------------------------------------------------------


#: Width of a box plot's slot per optimizer, in inches (a panel is never narrower than 3.1 inches).
BOX_SLOT = 0.12
#: Font size of the labels under the boxes.
BOX_LABEL_SIZE = 6.5


def _boxes(
    ctx: Context,
    panels: dict[str, dict[str, data.Values]],
    ylabel: str,
    bounds: tuple[float, float] | None,
    missing: str,
) -> Figure:
    """Box plots per panel and optimizer; each box labelled by the optimizer's name where every name
    fits its slot, else by its number (keyed in the legend), with its diverged runs and the runs
    without a value counted under the label; the labels turn upright where they do not fit.

    ``bounds`` (floor, ceiling): values beyond are drawn at the bound, marked by a dashed line and a
    y tick label of its own (``≤floor``, ``≥ceiling``) beside the axis, never over a box."""
    keys = list(panels)[:MAX_PANELS]
    names = ctx.styles.sort({o for p in panels.values() for o in p})
    most = max(len(panels[key]) for key in keys)
    width = max(3.1, 0.6 + BOX_SLOT * most)
    figure, axes = grid(len(keys), columns=max(1, min(3, int(9.4 // width))), panel=(width, 2.7))
    slot = (width - 0.9) * 72 / (most + 0.4)  # points per box (the y tick labels take about 0.9 inches)
    by_name = all(_text_width(o) <= 0.8 * slot for p in panels.values() for o in p)
    labels = {key: _box_labels(ctx.styles, panels[key], by_name, missing) for key in keys}
    upright = any(_text_width(line) > 0.8 * slot for lines in labels.values() for label in lines for line in label)
    for ax, key in zip(axes, keys):
        present = ctx.styles.sort(panels[key])
        values = [panels[key][o].values for o in present]
        shown = [np.clip(v, *bounds) if bounds else v for v in values]
        positions = np.arange(len(present))
        filled = [i for i, v in enumerate(shown) if len(v)]
        if filled:
            parts = ax.boxplot(
                [shown[i] for i in filled],
                positions=positions[filled],
                widths=0.6,
                patch_artist=True,
                showfliers=False,
                medianprops={"color": "black", "lw": 1.2},
            )
            for box, i in zip(parts["boxes"], filled):
                color = ctx.styles.color(present[i])
                box.set(facecolor=color, alpha=0.55, edgecolor=color, hatch=ctx.styles.hatch(present[i]))
            rng = np.random.default_rng(0)
            for i in filled:
                jitter = rng.uniform(-0.18, 0.18, len(shown[i]))
                ax.plot(
                    positions[i] + jitter,
                    shown[i],
                    linestyle="none",
                    marker=".",
                    ms=2.5,
                    color=ctx.styles.color(present[i]),
                    alpha=0.8,
                )
        ax.set_yscale("log" if all((v > 0).all() for v in shown if len(v)) else "linear")
        ax.set_xticks(
            positions,
            [("  ".join(lines) if upright else "\n".join(lines)) for lines in labels[key]],
            rotation=90 if upright else 0,
            fontsize=BOX_LABEL_SIZE,
        )
        ax.set_xlim(-0.7, len(present) - 0.3)
        ax.tick_params(axis="x", length=0)
        ax.grid(axis="x", visible=False)
        ax.set_title(key, fontsize=8)
        ax.set_ylabel(ylabel)
    tidy(axes)
    if bounds is not None:
        for ax, key in zip(axes, keys):
            values = [panels[key][o].values for o in panels[key]]
            marks = {}
            if any(len(v) and (v <= bounds[0]).any() for v in values):
                marks[bounds[0]] = f"≤{bounds[0]:g}"
            if any(len(v) and (v >= bounds[1]).any() for v in values):
                marks[bounds[1]] = f"≥{bounds[1]:g}"
            for bound in marks:
                ax.axhline(bound, color="0.45", lw=0.8, ls="--", zorder=0)
            if marks:
                bound_ticks(ax, marks)
    diverged = {o: sum(p[o].diverged for p in panels.values() if o in p) for o in names}
    _legend(figure, ctx.styles, names, diverged, kind="patch")
    return figure


def _box_labels(styles: Styles, panel: dict[str, data.Values], by_name: bool, missing: str) -> list[list[str]]:
    """The lines under each box of a panel, in the styles' order: the optimizer's name or number,
    then its diverged runs and its runs without a value, where there are any."""
    labels = []
    for o in styles.sort(panel):
        counts = [
            f"{panel[o].diverged} div." if panel[o].diverged else "",
            f"{panel[o].missing} {missing}" if panel[o].missing else "",
        ]
        labels.append([o if by_name else str(styles.number(o)), *(c for c in counts if c)])
    return labels


def _text_width(text: str, size: float = BOX_LABEL_SIZE) -> float:
    """The width in points of ``text`` in the default font at ``size`` points."""
    from matplotlib.textpath import TextPath

    return float(TextPath((0, 0), text, size=size).get_extents().width)


def loss_gaps(ctx: Context) -> Drawn:
    """Final loss gap per optimizer and family group (log scale), diverged runs counted."""
    name, title = "loss_gap", "Final loss gap"
    panels = data.distributions(
        ctx.grouped, "loss_gap", lambda s, r: data.by_group(s, r) if r.get("f_star") is not None else None
    )
    if not any(len(v.values) for p in panels.values() for v in p.values()):
        return _skip(name, title, "no run with a known f* (and so a loss gap) that did not diverge")
    figure = _boxes(ctx, panels, "final loss gap f - f*", (GAP_FLOOR, GAP_CEILING), "null")
    caption = (
        "Final loss gap f(x_T) - f* of every run that did not diverge, per family group (problems where f* is "
        "known), pooled over the group's problems, dimensions, noise levels, instances and seeds: box from the first "
        f"to the third quartile, black line at the median, whiskers to 1.5 IQR, dots the runs. Gaps below "
        f"{GAP_FLOOR:g} (float32 resolves gaps only to about 1e-7 |f*|) are drawn at {GAP_FLOOR:g}, and gaps above "
        f"{GAP_CEILING:g} (runs still finite on their way to overflow) at {GAP_CEILING:g}, each bound a dashed line "
        "labelled on the y axis. Diverged runs "
        "(div.) and runs without a gap (null) are counted under their box, diverged runs also in the legend. Each "
        "box is labelled by its optimizer's name, or by its number in the legend where names do not fit."
    )
    caption += _above_ceiling({f"in {k}": {o: v.values for o, v in p.items()} for k, p in panels.items()})
    return Drawn(name, title, caption + _more(list(panels), str), figure)


def _above_ceiling(values: dict[str, dict[str, np.ndarray]]) -> str:
    """The caption's sentence on the gaps drawn at :data:`GAP_CEILING`: how many runs of which
    optimizer, where (``values``: per place, per optimizer, the gaps), with the largest; "" if none."""
    above = [
        (optimizer, where, v[v > GAP_CEILING])
        for where, by_optimizer in values.items()
        for optimizer, v in by_optimizer.items()
        if len(v) and (v > GAP_CEILING).any()
    ]
    if not above:
        return ""
    listed = "; ".join(f"{o} {where}: {len(v)} (largest {v.max():.3g})" for o, where, v in above[:8])
    more = f"; and {len(above) - 8} more" if len(above) > 8 else ""
    runs = sum(len(v) for _, _, v in above)
    return f" Drawn at {GAP_CEILING:g}: {runs} run{'s' * (runs != 1)} with a larger gap ({listed}{more})."


def basin_widths(ctx: Context) -> Drawn:
    """Basin width at the final point per optimizer and family group (log scale)."""
    name, title = "basin_width", "Basin width at the final point"
    panels = data.distributions(ctx.grouped, "basin_width", data.by_group)
    if not any(len(v.values) for p in panels.values() for v in p.values()):
        return _skip(name, title, "no run has a basin width (curvature metrics were off, or every run diverged)")
    taus = sorted({float(r["tau"]) for rs in ctx.grouped.values() for x in rs.values() for r in x if r.get("tau")})
    figure = _boxes(ctx, panels, "basin width r (distance in x)", None, "unb.")
    caption = (
        "Basin width at the final iterate: the smallest radius at which the mean loss rise along random "
        f"directions reaches tau (tau = {', '.join(f'{t:g}' for t in taus) or '?'}), per family group, over the runs "
        "that did not diverge; larger is flatter. Runs whose rise stayed below tau over the whole scan have no "
        "width and are counted as unbounded (unb.) under their box; diverged runs (div.) are counted too, never "
        "drawn. Each box is labelled by its optimizer's name, or by its number in the legend where names do not fit."
    )
    return Drawn(name, title, caption + _more(list(panels), str), figure)


def _dots(ctx: Context, ax: Any, pairs: dict[str, data.Pairs], clip: tuple[float, float] | None = None) -> None:
    """One dot per run of each optimizer, in its colour and marker (x clipped to ``clip`` if given)."""
    for optimizer in ctx.styles.sort(pairs):
        p = pairs[optimizer]
        x = np.clip(p.x, *clip) if clip else p.x
        style = {"marker": ctx.styles.marker(optimizer), "color": ctx.styles.color(optimizer)}
        ax.plot(x, p.y, linestyle="none", ms=3.5, alpha=0.7, mew=0, **style)


def _dots_legend(figure: Figure, ctx: Context, panels: dict[str, dict[str, data.Pairs]]) -> None:
    """The legend of a figure of dots: every optimizer of the panels, with its diverged runs counted."""
    names = ctx.styles.sort({o for p in panels.values() for o in p})
    diverged = {o: sum(p[o].diverged for p in panels.values() if o in p) for o in names}
    _legend(figure, ctx.styles, names, diverged, kind="marker")


def _spans_decades(values: np.ndarray) -> bool:
    """Whether positive values spread over more than a factor of 20 (a log axis reads them better)."""
    return bool(len(values)) and bool((values > 0).all()) and float(values.max()) > 20 * float(values.min())


def sharpness_vs_loss(ctx: Context) -> Drawn:
    """Sharpness against the final loss gap (final loss where f* is unknown), per family."""
    name, title = "sharpness", "Sharpness against final loss"
    known = {
        data.by_family(s, r)
        for s, runs in ctx.grouped.items()
        for rs in runs.values()
        for r in rs
        if r.get("f_star") is not None
    }
    unknown = {data.by_family(s, r) for s, runs in ctx.grouped.items() for rs in runs.values() for r in rs} - known

    def x_of(record: data.Record) -> float | None:
        return record.get("final_loss") if record.get("family") in unknown else record.get("loss_gap")

    panels = {k: v for k, v in data.paired(ctx.grouped, x_of, "sharpness").items() if any(len(p.x) for p in v.values())}
    if not panels:
        return _skip(name, title, "no run has a sharpness (curvature metrics were off, or every run diverged)")
    keys = list(panels)[:MAX_PANELS]
    figure, axes = grid(len(keys))
    for ax, key in zip(axes, keys):
        gap = key not in unknown
        _dots(ctx, ax, panels[key], (GAP_FLOOR, GAP_CEILING) if gap else None)
        if gap:
            ax.set_xscale("log")
        if _spans_decades(np.concatenate([p.y for p in panels[key].values()])):
            ax.set_yscale("log")
        ax.set_xlabel("final loss gap f - f*" if gap else "final loss f (f* unknown)")
        ax.set_ylabel("sharpness λ_max")
        ax.set_title(key, fontsize=8)
    tidy(axes)
    _dots_legend(figure, ctx, panels)
    caption = (
        "Largest Hessian eigenvalue at the final iterate (Lanczos) against the final loss gap, one dot per run that "
        "did not diverge, per family (against the final loss where f* is unknown). Gaps below "
        f"{GAP_FLOOR:g} are drawn at {GAP_FLOOR:g}, gaps above {GAP_CEILING:g} at {GAP_CEILING:g}. A negative "
        "sharpness means the run ended where every curvature is negative (near a maximum or a saddle of index d)."
    )
    caption += _above_ceiling(
        {f"on {k}": {o: p.x for o, p in v.items()} for k, v in panels.items() if k not in unknown and k in keys}
    )
    return Drawn(name, title, caption + _more(list(panels), str), figure)


# --- finite sums: generalisation -------------------------------------------------------------


def sharpness_vs_gap(ctx: Context) -> Drawn:
    """The generalization gap against the sharpness at the final point, per finite-sum family."""
    name, title = "generalization", "Generalization gap against sharpness"

    def x_of(record: data.Record) -> float | None:
        return outcomes.final_value(record, "sharpness") if outcomes.is_finite_sum_record(record) else None

    pairs = data.paired(ctx.grouped, x_of, "generalization_gap")
    panels = {k: v for k, v in pairs.items() if any(len(p.x) for p in v.values())}
    if not panels:
        return _skip(name, title, "no finite-sum run with a sharpness and a test loss (or every run diverged)")
    keys = list(panels)[:MAX_PANELS]
    figure, axes = grid(len(keys))
    for ax, key in zip(axes, keys):
        _dots(ctx, ax, panels[key])
        if _spans_decades(np.concatenate([p.x for p in panels[key].values()])):
            ax.set_xscale("log")
        ax.set_xlabel("sharpness λ_max at the final point")
        ax.set_ylabel("test loss - training loss")
        ax.set_title(key, fontsize=8)
    tidy(axes)
    _dots_legend(figure, ctx, panels)
    caption = (
        "Generalization gap (the population loss minus the training loss at the final iterate) against the largest "
        "Hessian eigenvalue of the training loss there, one dot per run that did not diverge, per finite-sum family. "
        "The population loss is the family's closed form, or its held-out sample (landbench describe says which). "
        "Whether sharper minima generalise worse is claim 9 of landbench claims; sharpness alone can be changed by "
        "reparameterising (Dinh et al. 2017)."
    )
    return Drawn(name, title, caption + _more(list(panels), str), figure)


def test_loss_vs_batch(ctx: Context) -> Drawn:
    """Median test loss and generalization gap against the batch size, per finite-sum problem."""
    name, title = "batch_size", "Test loss and generalization gap against batch size"
    panels = data.sweep(ctx.grouped, "batch_size", outcomes.is_finite_sum_record)[: MAX_PANELS // 2]
    if not panels:
        return _skip(name, title, "no finite-sum problem was run at two or more batch sizes with all else equal")
    figure, axes = grid(2 * len(panels), columns=2)
    names = ctx.styles.sort({o for p in panels for o in p.series})
    diverged: dict[str, int] = dict.fromkeys(names, 0)
    for row, panel in enumerate(panels):
        xs = panel.xs()
        measures = (("test_loss", "median test loss"), ("generalization_gap", "median generalization gap"))
        for column, (field, label) in enumerate(measures):
            ax = axes[2 * row + column]
            for optimizer in [o for o in names if o in panel.series]:
                points = sorted(panel.series[optimizer].items())
                if column == 0:
                    diverged[optimizer] += sum(outcomes.is_diverged(r) for _, rs in points for r in rs)
                medians = [outcomes.median_of(rs, field) for _, rs in points]
                shown = [(x, m) for (x, _), m in zip(points, medians) if m is not None]
                ax.plot(
                    [x for x, _ in shown],
                    [m for _, m in shown],
                    color=ctx.styles.color(optimizer),
                    marker=ctx.styles.marker(optimizer),
                    ls=ctx.styles.linestyle(optimizer),
                    ms=4,
                    lw=1.3,
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.minorticks_off()
            ax.set_xlabel("batch size (examples per gradient)")
            ax.set_ylabel(label)
            heading = panel.title if column == 0 else "median generalization gap (test - training loss)"
            ax.set_title(textwrap.fill(heading, 48), fontsize=7)
    tidy(axes)
    _legend(figure, ctx.styles, names, diverged)
    caption = (
        "Median population (test) loss at the final iterate (left) and median generalization gap, test minus "
        "training loss (right), against the minibatch size, per finite-sum problem, noise and budget; diverged runs "
        "rank worst in each median (a median that falls on one is not drawn) and are counted in the legend. The "
        "largest batch size of a problem is its full batch, n examples."
    )
    return Drawn(name, title, caption + _more(panels, lambda p: p.title), figure)


# --- basins ----------------------------------------------------------------------------------


def wide_basin_share(ctx: Context, axis: str) -> Drawn:
    """The share of runs that end in the wide basin against the dimension or the gradient noise."""
    what = {"dim": "dimension d", "noise": "gradient noise sigma"}[axis]
    name, title = f"basin_share_{axis}", f"Wide-basin share against {what.split(' sigma')[0]}"
    panels = data.sweep(ctx.grouped, axis, data.is_basins)
    if not panels:
        return _skip(name, title, f"no basins problem was run at two or more values of {axis} with all else equal")
    figure, axes = grid(min(len(panels), MAX_PANELS))
    names = ctx.styles.sort({o for p in panels for o in p.series})
    diverged: dict[str, int] = dict.fromkeys(names, 0)
    for ax, panel in zip(axes, panels):
        xs = panel.xs()
        present = [o for o in names if o in panel.series]
        for i, optimizer in enumerate(present):
            points = sorted((x, data.wide_share(rs)) for x, rs in panel.series[optimizer].items())
            diverged[optimizer] += sum(s.diverged for _, s in points)
            shown = [(x, s) for x, s in points if s.runs]
            if axis == "noise":
                width = min(0.06, 0.5 / max(len(present) - 1, 1))  # all within half the distance between xs
                position = [xs.index(x) + width * (i - (len(present) - 1) / 2) for x, _ in shown]
            else:
                position = [x * _spread(i, len(present), xs) for x, _ in shown]
            share = np.array([s.share for _, s in shown])
            error = [share - [s.low for _, s in shown], [s.high for _, s in shown] - share]
            color = ctx.styles.color(optimizer)
            ax.errorbar(
                position,
                share,
                yerr=error,
                color=color,
                marker=ctx.styles.marker(optimizer),
                ms=4,
                lw=1.3,
                capsize=2.5,
                elinewidth=1,
            )
        if axis == "noise":
            ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
            ax.set_xlim(-0.5, len(xs) - 0.5)
        else:
            ax.set_xscale("log")
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(panel.title, fontsize=8)
        ax.set_xlabel(what)
        ax.set_ylabel("share ending in the wide basin")
    tidy(axes)
    _legend(figure, ctx.styles, names, diverged)
    caption = (
        f"Share of the runs whose final point lies in the basin of the widest well (record field basin; well "
        f"{{wide}} of the problem's wells), against the {what}, with 95 % Wilson intervals; runs that ended in no "
        "basin count as not wide, and so do diverged runs (which ended in none), also counted in the legend."
    )
    wide = sorted(
        {data.wide_well(str(r["problem"])) for p in panels for rs in p.series.values() for x in rs.values() for r in x}
    )
    return Drawn(
        name, title, caption.format(wide=" or ".join(map(str, wide))) + _more(panels, lambda p: p.title), figure
    )


def basin_share_vs_dim(ctx: Context) -> Drawn:
    """Wide-basin share against the dimension."""
    return wide_basin_share(ctx, "dim")


def basin_share_vs_noise(ctx: Context) -> Drawn:
    """Wide-basin share against the gradient noise."""
    return wide_basin_share(ctx, "noise")


#: The report's figures, in order.
FIGURES: tuple[Callable[[Context], Drawn], ...] = (
    escape_vs_dim,
    escape_vs_index,
    ecdf_time_to_target,
    performance_profiles,
    loss_gaps,
    basin_widths,
    sharpness_vs_loss,
    sharpness_vs_gap,
    test_loss_vs_batch,
    basin_share_vs_dim,
    basin_share_vs_noise,
)
