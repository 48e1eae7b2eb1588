"""``landbench plot``: a landscape (or a 2-D slice of it) as filled contours, with optimizers' trajectories."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from landbench.landscapes import make
from landbench.noise import check_noise_model, effective_noise_model
from landbench.optimizers import resolve
from landbench.outcomes import noise_text
from landbench.report import mpl
from landbench.report.trajectories import Plane, Trajectories, choose_plane, final_points, grid_losses, record

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Grid points per side of the contour plot.
RESOLUTION = 181
#: Colours switch to a log scale when a tenth of the plot lies within this share of the range above the lowest value
#: (a narrow valley, such as Rosenbrock's, would otherwise be one flat colour).
LOG_WHEN = 0.01


def plot_landscape(
    problem: str,
    optimizers: Sequence[str],
    *,
    seeds: int | Sequence[int] = 3,
    steps: int = 300,
    instance: int = 0,
    noise: float = 0.0,
    out: str | Path | None = None,
    resolution: int = RESOLUTION,
    noise_model: str = "gaussian",
    batch_size: int | None = None,
) -> tuple[Figure, list[Trajectories], Plane]:
    """Draw ``problem`` (a spec with its dim) with each optimizer's trajectories from ``seeds``.

    In two dimensions the landscape is drawn on its coordinate plane; above, on the plane of
    :func:`~landbench.report.trajectories.choose_plane`, with the iterates projected onto it. The
    landscape is built in float64 on the CPU. Writes a PNG to ``out`` if given; returns the
    figure, the trajectories and the plane.
    """
    mpl.require()
    specs = [resolve(o) for o in optimizers]
    landscape = make(problem, seed=instance, dtype="float64")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    runs = [record(landscape, spec, seed_list, steps, noise, noise_model, batch_size) for spec in specs]
    stochastic = noise_text(noise, effective_noise_model(noise, check_noise_model(noise_model)), batch_size)
    plane = choose_plane(landscape, runs)
    known = _known_points(landscape, plane)
    (a_low, a_high), (b_low, b_high) = _extent(plane, runs, [xy for _, xy in known])
    a, b = torch.meshgrid(
        torch.linspace(a_low, a_high, resolution, dtype=torch.float64),
        torch.linspace(b_low, b_high, resolution, dtype=torch.float64),
        indexing="xy",
    )
    values = grid_losses(landscape, plane, a, b).numpy()
    with mpl.style():
        figure = _draw(landscape.spec, plane, a.numpy(), b.numpy(), values, runs, known, steps, stochastic, landscape)
    if out is not None:
        mpl.save(figure, Path(out))
    return figure, runs, plane


def _known_points(landscape: Any, plane: Plane) -> list[tuple[str, tuple[float, float]]]:
    points = []
    if landscape.saddle is not None and landscape.saddle.point is not None:
        points.append(("saddle", landscape.saddle.point))
    points += [("minimum", m.point) for m in landscape.minima if m.point is not None]
    out = []
    for kind, point in points:
        a, b = plane.coordinates(point.double().cpu())
        out.append((kind, (float(a), float(b))))
    return out


def _extent(
    plane: Plane, runs: Sequence[Trajectories], known: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The plotted window: the iterates (their 1-99 % range, so one wild excursion does not shrink
    the rest to a dot), every start and end, and the known points, padded by 12 %; neither side
    shorter than a third of the other (so that a thin slice is not stretched into a false shape)."""
    coords = torch.cat([plane.coordinates(t.points).reshape(-1, 2) for t in runs])
    coords = coords[torch.isfinite(coords).all(-1)].numpy()
    ends = np.array([plane.coordinates(p).tolist() for t in runs for p in [*t.points[0], *final_points(t)]])
    pts = np.concatenate([np.quantile(coords, [0.01, 0.99], axis=0), ends, np.asarray(known).reshape(-1, 2)])
    pts = pts[np.isfinite(pts).all(1)]
    low, high = pts.min(0), pts.max(0)
    span = np.maximum(high - low, 1e-3 * np.maximum(np.abs(low), np.abs(high)).clip(1.0))
    span = np.maximum(span, span.max() / 3)  # neither side under a third of the other: no false stretching
    centre = (low + high) / 2
    return [(float(c - 0.62 * s), float(c + 0.62 * s)) for c, s in zip(centre, span)]


def _draw(
    spec: str,
    plane: Plane,
    a: np.ndarray,
    b: np.ndarray,
    values: np.ndarray,
    runs: Sequence[Trajectories],
    known: Sequence[tuple[str, tuple[float, float]]],
    steps: int,
    noise: str,
    landscape: Any,
) -> Figure:
    from matplotlib import colors, patheffects
    from matplotlib.lines import Line2D

    window = (a.min(), a.max(), b.min(), b.max())
    spread = (window[1] - window[0]) / (window[3] - window[2])
    equal = 0.5 < spread < 2
    # With equal axes the figure takes the window's shape (plus the colour bar), so that no blank
    # margin is left beside a tall window; the legend wraps to fit.
    width = float(np.clip(4.3 * spread + 1.9, 5.4, 9.0)) if equal else 7.2
    seeds = len(runs[0].seeds)
    title = f"{spec}: {seeds} run{'s' * (seeds != 1)} per optimizer, {steps} steps" + (
        f", noise {noise}" if noise != "0" else ""
    )
    heading = [*textwrap.wrap(title, 80), *textwrap.wrap(plane.description, 80)]
    figure = mpl.new_figure(width, 5.6 + 0.2 * (len(heading) - 1))  # room for every line of the heading
    ax = figure.add_subplot()
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    f_star = landscape.f_star
    base = f_star if f_star is not None and f_star <= low else low
    shifted = values - base
    logarithmic = high > low and float(np.nanquantile(shifted, 0.1)) < LOG_WHEN * (high - low)
    cmap = colors.LinearSegmentedColormap.from_list("landbench", ["#f7f7f7", "#bdbdbd", "#525252"])
    if logarithmic:
        floor = max(float(np.nanmin(shifted[shifted > 0])) if (shifted > 0).any() else 1e-12, (high - base) * 1e-8)
        levels = np.geomspace(floor, high - base, 28)
        filled = ax.contourf(
            a,
            b,
            np.maximum(shifted, floor),
            levels=levels,
            cmap=cmap,
            norm=colors.LogNorm(floor, high - base),
            extend="both",
        )
        ax.contour(a, b, np.maximum(shifted, floor), levels=levels[::3], colors="0.35", linewidths=0.4, alpha=0.6)
        label = "f(x) - f*, log scale" if base == f_star else f"f(x) - {low:.3g} (the lowest value shown), log scale"
    else:
        filled = ax.contourf(a, b, values, levels=28, cmap=cmap)
        ax.contour(a, b, values, levels=filled.levels[::3], colors="0.35", linewidths=0.4, alpha=0.6)
        label = "f(x)"
    if landscape.constrained:
        label += "; points retracted onto the sphere"
    bar = figure.colorbar(filled, ax=ax, shrink=0.85, pad=0.02)
    bar.set_label(label)
    if logarithmic:
        from matplotlib.ticker import LogLocator

        bar.locator = LogLocator()
        bar.formatter = _plain()
        bar.update_ticks()
    styles = mpl.Styles(t.optimizer for t in runs)
    outline = [patheffects.Stroke(linewidth=2.6, foreground="white", alpha=0.8), patheffects.Normal()]
    handles: list[Any] = []
    for run in runs:
        color = styles.color(run.optimizer)
        xy = plane.coordinates(run.points).numpy()  # (T+1, B, 2)
        for k in range(len(run.seeds)):
            path = xy[:, k][np.isfinite(xy[:, k]).all(1)]
            ax.plot(
                path[:, 0],
                path[:, 1],
                color=color,
                lw=1.3,
                ls=styles.linestyle(run.optimizer),
                path_effects=outline,
                zorder=3,
            )
            ax.plot(*path[0], marker="o", ms=6, mfc="white", mec=color, mew=1.5, zorder=4)
            ax.plot(*path[-1], marker=styles.marker(run.optimizer), ms=7, color=color, mec="black", mew=0.6, zorder=5)
        diverged = sum(d is not None for d in run.diverged)
        text = run.optimizer + (f" ({diverged}/{len(run.seeds)} diverged)" if diverged else "")
        handles.append(
            Line2D([], [], color=color, lw=1.5, marker=styles.marker(run.optimizer), mec="black", mew=0.6, label=text)
        )
    handles += [
        Line2D([], [], ls="none", marker="o", mfc="white", mec="0.2", label="start"),
        Line2D([], [], ls="none", marker="o", color="0.2", label="end (optimizer's marker)"),
    ]
    for kind in ("minimum", "saddle"):
        inside = [
            xy for k, xy in known if k == kind and window[0] <= xy[0] <= window[1] and window[2] <= xy[1] <= window[3]
        ]
        if inside:
            marker, face = ("*", "#F0E442") if kind == "minimum" else ("X", "white")
            ax.plot(*np.array(inside).T, ls="none", marker=marker, ms=11, mfc=face, mec="black", mew=0.8, zorder=6)
            handles.append(Line2D([], [], ls="none", marker=marker, ms=9, mfc=face, mec="black", label=f"known {kind}"))
    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    if equal:
        ax.set_aspect("equal")
    else:
        ax.set_box_aspect(0.75)
    ax.grid(False)
    ax.set_xlabel(plane.labels[0])
    ax.set_ylabel(plane.labels[1])
    ax.set_title("\n".join(heading), fontsize=9)
    columns = 3 if width >= 7 else 2
    figure.legend(handles=handles, loc="outside lower center", ncols=min(columns, len(handles)), frameon=False)
    return figure


def _plain() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")
