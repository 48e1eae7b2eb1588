"""matplotlib, imported lazily, and the house style: one colour and marker per optimizer everywhere.

matplotlib is optional for landbench (``pip install 'landbench[plot]'``). Figures are
:class:`matplotlib.figure.Figure` objects attached to an Agg canvas: nothing touches pyplot's
global state, no window opens, and drawing works on a headless machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landbench.errors import LandbenchError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'landbench[plot]'"

#: Okabe and Ito's colour-blind-safe palette (black left out: it is kept for known points).
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999")
#: A second cue for more optimizers than colours: the marker changes with each pass through the palette.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
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
    """A fixed colour and marker per optimizer, assigned in the order first given."""

    def __init__(self, names: Iterable[str]) -> None:
        self.order: list[str] = []
        for name in names:
            if name not in self.order:
                self.order.append(name)

    def _index(self, name: str) -> int:
        if name not in self.order:
            self.order.append(name)
        return self.order.index(name)

    def color(self, name: str) -> str:
        """The optimizer's colour."""
        return COLORS[self._index(name) % len(COLORS)]

    def _pass(self, name: str) -> int:
        return self._index(name) // len(COLORS)

    def marker(self, name: str) -> str:
        """The optimizer's marker: the same for the first eight, then one per pass through the colours."""
        return MARKERS[self._pass(name) % len(MARKERS)]

    def linestyle(self, name: str) -> str:
        """The optimizer's line style: solid for the first eight, then dashed, dotted, dash-dotted."""
        return LINESTYLES[self._pass(name) % len(LINESTYLES)]

    def hatch(self, name: str) -> str:
        """The optimizer's hatch for filled boxes: none for the first eight, then one per pass."""
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


def tidy(axes: list[Any]) -> None:
    """Plain tick labels on log axes (``0.01``, ``200``: no ``2 x 10^2``), minor labels (at 2 and 5
    times a power of ten) only where an axis spans less than 1.5 decades and has no fixed ticks, and
    y labels only on the first panel of each row."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    some = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
    for ax in axes:
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            if not isinstance(axis.get_major_locator(), FixedLocator):
                # at most about six labelled powers of ten, so that wide ranges do not run together
                axis.set_major_locator(LogLocator(numticks=6 if axis is ax.xaxis else 8))
            axis.set_major_formatter(plain)
            narrow = low > 0 and high / low < 10**1.5 and not isinstance(axis.get_major_locator(), FixedLocator)
            axis.set_minor_formatter(some if narrow else NullFormatter())
    for ax in axes:
        spec = ax.get_subplotspec()
        if spec is not None and spec.colspan.start > 0:
            ax.set_ylabel("")
