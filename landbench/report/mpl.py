"""matplotlib, imported lazily, and the house style: one colour and marker per optimizer everywhere.

matplotlib is optional for landbench (``pip install 'landbench[plot]'``). Figures are
:class:`matplotlib.figure.Figure` objects attached to an Agg canvas: nothing touches pyplot's
global state, no window opens, and drawing works on a headless machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landbench.errors import LandbenchError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'landbench[plot]'"

#: Okabe and Ito's colour-blind-safe palette (black left out: it is kept for known points), and two
#: dark colours of Paul Tol's palettes (wine, indigo) that none of them resembles.
COLORS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#999999",
    "#882255",
    "#332288",
)
#: Markers; their number is prime to the number of colours, so that optimizer i gets colour i mod 10
#: and marker i mod 7: the (colour, marker) pair of every optimizer differs up to 70 optimizers, and
#: neighbours in the order differ in both.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: A third cue, per pass through the colours: the line style (lines) and the hatch (boxes).
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "////", "....", "xxxx")
DPI = 130
#: Width of a figure in inches (about 1040 pixels at DPI).
WIDTH = 8.0

RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": DPI,
}


def require() -> Any:
    """The ``matplotlib`` module, or a :class:`LandbenchError` saying how to install it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise LandbenchError(f"figures need matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def new_figure(width: float = WIDTH, height: float = 4.0) -> Figure:
    """A figure with constrained layout on its own Agg canvas (never pyplot)."""
    require()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style():
        figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def style() -> Any:
    """A context manager applying :data:`RC` (used around drawing, so fonts and grids apply)."""
    import matplotlib

    return matplotlib.rc_context(RC)


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG (at :data:`DPI`; constrained layout keeps every label inside) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with style():
        figure.savefig(path, dpi=DPI, metadata={"Software": "landbench"})
    return path


class Styles:
    """A fixed colour, marker, line style, hatch and number per optimizer, assigned in the order first
    given (the report gives the leaderboard's order, so that the number is the standings' ``#``)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.order: list[str] = []
        for name in names:
            if name not in self.order:
                self.order.append(name)

    def _index(self, name: str) -> int:
        if name not in self.order:
            self.order.append(name)
        return self.order.index(name)

    def number(self, name: str) -> int:
        """The optimizer's number, from 1: what labels its box and keys it in the legends."""
        return self._index(name) + 1

    def label(self, name: str) -> str:
        """The optimizer's legend label: its number and its name."""
        return f"{self.number(name)}. {name}"

    def color(self, name: str) -> str:
        """The optimizer's colour (one of :data:`COLORS`, in turn)."""
        return COLORS[self._index(name) % len(COLORS)]

    def marker(self, name: str) -> str:
        """The optimizer's marker (one of :data:`MARKERS`, in turn)."""
        return MARKERS[self._index(name) % len(MARKERS)]

    def _pass(self, name: str) -> int:
        return self._index(name) // len(COLORS)

    def linestyle(self, name: str) -> str:
        """The optimizer's line style: solid for the first ten, then dashed, dotted, dash-dotted."""
        return LINESTYLES[self._pass(name) % len(LINESTYLES)]

    def hatch(self, name: str) -> str:
        """The optimizer's hatch for filled boxes: none for the first ten, then one per pass."""
        return HATCHES[self._pass(name) % len(HATCHES)]

    def sort(self, names: Iterable[str]) -> list[str]:
        """``names`` in the styles' order (the leaderboard's, where there is one)."""
        return sorted(names, key=self._index)


def grid(count: int, columns: int = 3, panel: tuple[float, float] = (3.1, 2.7)) -> tuple[Figure, list[Any]]:
    """A figure with ``count`` axes in rows of at most ``columns``; unused cells are removed."""
    cols = max(1, min(columns, count))
    rows = -(-count // cols)
    figure = new_figure(min(WIDTH * 1.25, panel[0] * cols + 0.6), panel[1] * rows + 0.6)
    with style():
        axes = figure.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.remove()
    return figure, axes[:count]


#: A legend of more rows than this is given the full figure width, when its figure is narrower.
LEGEND_ROWS = 8


def legend_below(figure: Figure, handles: list[Any]) -> Any:
    """One legend for the figure, below its panels, never clipped: as many columns as fit the
    figure's width (the figure is widened to :data:`WIDTH` when the legend would otherwise run over
    :data:`LEGEND_ROWS` rows, and to the legend's width when one column is wider still), and the
    figure is made taller by the legend's height so that the panels keep theirs."""
    if not handles:
        return None
    renderer = figure.canvas.get_renderer()
    for attempt in range(2):
        room = figure.get_figwidth() * figure.dpi - 8
        for columns in range(min(len(handles), 6), 0, -1):
            legend = figure.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False)
            box = legend.get_window_extent(renderer)
            if box.width <= room or columns == 1:
                break
            legend.remove()
        rows = -(-len(handles) // columns)
        if -(-len(handles) // rows) < columns:  # as many rows, fewer columns: the last row less empty
            legend.remove()
            columns = -(-len(handles) // rows)
            legend = figure.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False)
            box = legend.get_window_extent(renderer)
        if attempt or rows <= LEGEND_ROWS or figure.get_figwidth() >= WIDTH:
            break
        legend.remove()
        figure.set_figwidth(WIDTH)
    if box.width > room:
        figure.set_figwidth((box.width + 16) / figure.dpi)
    figure.set_figheight(figure.get_figheight() + box.height / figure.dpi + 0.1)
    return legend


def tidy(axes: list[Any]) -> None:
    """Readable ticks on every panel, and y axis labels only on the first panel of each row (the
    tick labels stay on every panel: panels have their own ranges).

    Log axes get plain labels (``0.01``, ``200``: no ``2 x 10^2``) at powers of ten, minor labels
    (at 2 and 5 times a power of ten) where an axis spans less than 1.5 decades, and plain linear
    ticks where even these leave fewer than two labels in view. Linear axes get no offset (no
    ``1e-7+1e1`` above the panel); a range too narrow to label apart is widened about its centre.
    """
    for ax in axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim), (ax.yaxis, ax.get_ylim)):
            if axis.get_scale() == "log":
                _log_ticks(ax, axis, axis is ax.xaxis, limits())
            elif axis.get_scale() == "linear":
                _linear_ticks(ax, axis, axis is ax.xaxis, limits())
    for ax in axes:
        spec = ax.get_subplotspec()
        if spec is not None and spec.colspan.start > 0:
            ax.set_ylabel("")


def _log_ticks(ax: Any, axis: Any, horizontal: bool, limits: tuple[float, float]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    low, high = sorted(limits)
    if isinstance(axis.get_major_locator(), FixedLocator):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
        return
    # at most about six labelled powers of ten, so that wide ranges do not run together
    locator = LogLocator(numticks=6 if horizontal else 8)
    axis.set_major_locator(locator)
    axis.set_major_formatter(plain)
    # in decades: a ratio of limits near the ends of the float range (1e-26 to 1e289) overflows
    narrow = low > 0 and math.log10(high) - math.log10(low) < 1.5
    some = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
    axis.set_minor_formatter(some if narrow else NullFormatter())
    if low <= 0:
        return
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    labelled = [m * 10.0**k for k in decades for m in ((1, 2, 5) if narrow else (1,)) if low <= m * 10.0**k <= high]
    if len(labelled) < 2:
        ticks = [t for t in MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high) if low <= t <= high]
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_formatter(NullFormatter())
        (ax.set_xlim if horizontal else ax.set_ylim)(low, high)


def _linear_ticks(ax: Any, axis: Any, horizontal: bool, limits: tuple[float, float]) -> None:
    from matplotlib.ticker import ScalarFormatter

    if not isinstance(axis.get_major_formatter(), ScalarFormatter):
        return
    axis.get_major_formatter().set_useOffset(False)
    low, high = sorted(limits)
    centre = (low + high) / 2
    if centre and high - low < 1e-4 * abs(centre):
        half = 0.01 * abs(centre)
        (ax.set_xlim if horizontal else ax.set_ylim)(centre - half, centre + half)


def bound_ticks(ax: Any, bounds: dict[float, str]) -> None:
    """Label the values where a y axis clips what it draws (a floor, a ceiling) as y ticks of their
    own, e.g. ``{1e-12: "≤1e-12"}``: the label sits beside the axis, where no box or point can be,
    and the ticks whose labels would run into a bound's are dropped. Call it after :func:`tidy`."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.yaxis
    low, high = sorted(ax.get_ylim())
    scaled = axis.get_transform().transform  # to the axis' linear units (log10 on a log axis)
    shown = [(loc, label) for loc, label in _tick_labels(axis) if low <= loc <= high and label.strip()]
    # a label's height (the tick label font, with a little air) in the axis' units
    tall = 1.4 * float(RC["ytick.labelsize"])
    points = ax.get_window_extent().height * 72 / ax.figure.dpi
    span = float(abs(scaled(high) - scaled(low)))
    room = span * tall / max(points, 1.0)
    marks = [b for b in bounds if low <= b <= high]
    kept = [loc for loc, _ in shown if all(abs(float(scaled(loc) - scaled(b))) >= room for b in marks)]
    labels = {loc: label for loc, label in shown if loc in kept}
    labels.update({b: bounds[b] for b in marks})
    axis.set_major_locator(FixedLocator(sorted(labels)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _nearest(labels, value)))
    axis.set_minor_formatter(NullFormatter())
    ax.set_ylim(low, high)


def _tick_labels(axis: Any) -> list[tuple[float, str]]:
    """Every labelled tick of ``axis`` (major and minor) as (location, label text), undrawn."""
    out = []
    for locator, formatter in (
        (axis.get_major_locator(), axis.get_major_formatter()),
        (axis.get_minor_locator(), axis.get_minor_formatter()),
    ):
        locs = [float(v) for v in locator()]
        out += list(zip(locs, formatter.format_ticks(locs)))
    return out


def _nearest(labels: dict[float, str], value: float) -> str:
    """The label of the tick at ``value`` (to rounding)."""
    return next((text for loc, text in labels.items() if math.isclose(loc, value, rel_tol=1e-9)), f"{value:g}")
