"""``landbench report``: the pages and figures are written, reference only files that exist, and the
numbers the figures show agree with independent computations from the records."""

from __future__ import annotations

import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import LandbenchError
from landbench.ranking import group_of, rank
from landbench.ranking.stats import censored_quantile
from landbench.report import Report, data, figures, mpl, write_report
from landbench.report.build import figure_context
from landbench.runner import run_suite
from landbench.store import ResultStore, load_results
from landbench.suite import parse_suite

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.text import Text

PROBLEMS = [
    "saddle(dim=2, init_radius=0.1)",
    "saddle(dim=4, init_radius=0.1)",
    "saddle(dim=4, index=2, init_radius=0.1)",
    "basins(dim=1)",
    "basins(dim=2)",
    "quadratic(dim=2)",
]
OPTIMIZERS = ["sgd(lr=0.1)", "adam(lr=0.05)"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small results folder: saddles at two dims and two indices, basins (two dims, two noise levels),
    a quadratic; two optimizers, four seeds, 60 steps."""
    folder = tmp_path_factory.mktemp("results")
    store = ResultStore(folder)
    for problem in PROBLEMS:
        for optimizer in OPTIMIZERS:
            for noise in (0.0, 0.1) if problem.startswith("basins") else (0.0,):
                store.append(landbench.run(problem, optimizer, seeds=4, steps=60, noise=noise, lanczos_iterations=8))
    return folder


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The report of ``results``, written by ``landbench report`` (the one full report of this module)."""
    out = tmp_path_factory.mktemp("report") / "site"
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out / 'index.html'} and {out / 'report.md'} with ")
    skipped = dict(re.findall(r"not drawn: (\w+): (.+)", result.output))
    return Report(out / "index.html", out / "report.md", sorted((out / "figures").glob("*.png")), skipped)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == PNG and raw[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def test_report_writes_pages_and_valid_figures(report: Report) -> None:
    assert report.html.is_file() and report.markdown.is_file()
    names = {p.stem for p in report.figures}
    expected = {"escape_dim", "escape_index", "ecdf", "profiles", "loss_gap", "basin_width", "sharpness"}
    assert expected | {"basin_share_dim", "basin_share_noise"} == names, report.skipped
    image = pytest.importorskip("matplotlib.image")
    for path in report.figures:
        width, height = _png_size(path)
        assert 300 < width < 2000 and 200 < height < 2000, (path, width, height)
        assert image.imread(path).shape[:2] == (height, width)


def test_html_is_self_contained_and_references_only_existing_files(report: Report) -> None:
    text = report.html.read_text()
    parser = _Links()
    parser.feed(text)
    images = [link for link in parser.links if not link.startswith("#")]
    assert sorted(images) == sorted(f"figures/{p.name}" for p in report.figures)
    assert all((report.html.parent / link).is_file() for link in images)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    anchors = set(re.findall(r'id="([^"]+)"', text))
    assert all(link[1:] in anchors for link in parser.links if link.startswith("#"))
    assert "<table>" in text and "Standings" in text


def test_markdown_references_only_existing_files(report: Report) -> None:
    text = report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(report.figures)
    assert all((report.markdown.parent / link).is_file() for link in links)
    assert "## Leaderboard" in text and "## Figures" in text and "| optimizer |" in text


def test_figure_without_its_data_is_skipped_with_a_note(results: Path, tmp_path: Path) -> None:
    quadratic = [r for r in load_results([results]) if r["family"] == "quadratic"]
    report = write_report(quadratic, tmp_path)
    for name in ("escape_dim", "escape_index", "basin_share_dim", "basin_share_noise"):
        assert name in report.skipped
    assert "saddle" in report.skipped["escape_dim"] and "basins" in report.skipped["basin_share_noise"]
    text = report.markdown.read_text()
    assert text.count("_Not drawn:") == len(report.skipped)
    assert "Not drawn: no saddle problem was run" in report.html.read_text()


def test_escape_medians_are_numpy_medians_of_the_records(results: Path) -> None:
    records = load_results([results])
    grouped, _ = data.grouped_records(records)
    (panel,) = [
        p for p in data.sweep(grouped, "dim", data.has_saddle) if p.title.startswith("saddle(init_radius=0.1),")
    ]
    for optimizer in OPTIMIZERS:
        for dim in (2, 4):
            problem = f"saddle(dim={dim}, init_radius=0.1)"
            runs = [r for r in records if r["problem"] == problem and r["optimizer"] == optimizer]
            assert all(r["escaped"] for r in runs)
            stats = data.escape_stats(panel.series[optimizer][dim])
            steps = np.array([r["escape_step"] for r in runs], dtype=float)
            assert stats.median == np.median(steps)
            assert (stats.q1, stats.q3) == tuple(np.quantile(steps, [0.25, 0.75]))


def test_runs_that_escaped_then_diverged_are_not_plotted_as_escape_times() -> None:
    """At lr 3 gradient descent leaves the saddle within a few steps (its gap passes 0.1, beyond the
    halfway level 0.125 of saddle(dim=10)) and then blows up: no escape time may be drawn, neither
    from the records nor from records written before schema 3 (which said escaped: true)."""
    records = landbench.run("saddle(dim=10)", "gd(lr=3.0)", seeds=4, steps=100, curvature=False)
    assert all(r["diverged"] and r["first_hit_steps"][2] is not None for r in records)
    old = [dict(r, escaped=True, escape_step=r["first_hit_steps"][2]) for r in records]
    for runs in (records, old):
        stats = data.escape_stats(runs)
        assert (stats.escaped, stats.diverged, stats.median, stats.q1, stats.q3) == (0, 4, None, None, None)


@pytest.mark.parametrize("escaped", range(9))
def test_censored_median_is_never_a_number_where_half_did_not_escape(escaped: int) -> None:
    times = [float(t) for t in (3, 9, 4, 12, 7, 30, 5, 8)[:escaped]] + [None] * (8 - escaped)
    with_inf = np.array([math.inf if t is None else t for t in times])
    expected = np.median(with_inf)  # numpy ranks inf last; the middle pair is finite only if 5 of 8 escaped
    median = censored_quantile(times, 0.5)
    assert (median is None) == (not np.isfinite(expected)) == (escaped <= 4)
    if median is not None:
        assert median == expected


def test_ecdf_at_the_budget_is_the_share_of_targets_held(results: Path) -> None:
    """The ECDF counts a (run, target) pair when the run holds the target to the end of its budget
    (its reach time) and did not diverge, at the evaluations it had spent by then (floored at 1)."""
    records = load_results([results])
    grouped, _ = data.grouped_records(records)
    curves = data.ecdfs(grouped)["all"]
    for optimizer in OPTIMIZERS:
        runs = [r for r in records if r["optimizer"] == optimizer and r["f_star"] is not None]
        pairs = sum(len(r["targets"]) for r in runs)
        held = [max(1, t) for r in runs if not r["diverged"] for t in r["reach_evals"] if t is not None]
        curve = curves[optimizer]
        assert curve.pairs == pairs and held
        assert curve.fraction(max(r["grad_evals"] for r in runs)) == pytest.approx(len(held) / pairs)
        assert curve.fraction(min(held) - 0.5) == 0
        middle = float(np.median(held))
        assert curve.fraction(middle) == pytest.approx(sum(t <= middle for t in held) / pairs)


def test_wide_basin_share_counts_the_wide_well_with_a_wilson_interval(results: Path) -> None:
    records = load_results([results])
    grouped, _ = data.grouped_records(records)
    (panel,) = data.sweep(grouped, "noise", data.is_basins)[:1]
    for points in panel.series.values():
        assert sorted(points) == [0.0, 0.1]
        for runs in points.values():
            share = data.wide_share(runs)
            wide = sum(r["basin"] == 0 for r in runs)  # well 0 is the wide one by default: widths (1, 0.25)
            assert (share.wide, share.runs) == (wide, len(runs))
            interval = scipy.stats.binomtest(wide, len(runs)).proportion_ci(method="wilson")
            assert (share.low, share.high) == pytest.approx((interval.low, interval.high))


def test_tuning_records_and_repeats_are_left_out(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("landbench.report.build.FIGURES", (figures.escape_vs_index,))  # only the words matter here
    records = load_results([results])
    tuning = [dict(r, phase="tune", key=f"tune-{i}") for i, r in enumerate(records[:5])]
    report = write_report(records + tuning + records[:3], tmp_path)
    assert f"{len(records)} scored runs of 2 optimizers" in report.markdown.read_text()
    assert "5 tuning-phase records left out" in report.markdown.read_text()


def test_report_command_refuses_empty_input(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["report", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "give results to report" in result.output
    result = runner.invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no scored runs to report" in result.output
    result = runner.invoke(main, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no results at" in result.output


def test_without_matplotlib_the_error_says_how_to_install_it(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(LandbenchError, match=r"pip install 'landbench\[plot\]'"):
        write_report(load_results([results]), tmp_path)
    result = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "pip install 'landbench[plot]'" in result.output


# --- reports that hold 30 optimizers ----------------------------------------------------------

#: Thirty optimizers as users name them: rates on both sides of stable (some diverge), momentum,
#: adaptive methods, third-party classes with long names.
CROWD = [
    "sgd(lr=0.001)",
    "sgd(lr=0.01)",
    "sgd(lr=0.1)",
    "sgd(lr=0.3)",
    "sgd(lr=3.0)",
    "sgd(lr=0.01, momentum=0.9)",
    "sgd(lr=0.05, momentum=0.9, nesterov=True)",
    "adam(lr=0.001)",
    "adam(lr=0.01)",
    "adam(lr=0.1)",
    "adam(lr=0.01, amsgrad=True)",
    "adamw(lr=0.01, weight_decay=0.1)",  # not the default 0.01, which the canonical spec leaves out
    "adamax(lr=0.01)",
    "nadam(lr=0.01)",
    "radam(lr=0.01)",
    "rmsprop(lr=0.001)",
    "rmsprop(lr=0.01, momentum=0.5)",
    "rmsprop(lr=10.0)",
    "adagrad(lr=0.1)",
    "adagrad(lr=0.5)",
    "gd(lr=0.2)",
    "sam(lr=0.05)",
    "pgd(lr=0.05)",
    "pytorch_optimizer:AdaBelief(lr=0.001)",
    "pytorch_optimizer:AdaBelief(lr=0.01)",
    "pytorch_optimizer:Lion(lr=0.001)",
    "pytorch_optimizer:Lion(lr=0.0001)",
    "pytorch_optimizer:AdaBound(lr=0.01)",
    "pytorch_optimizer:DiffGrad(lr=0.01)",
    "pytorch_optimizer:Lamb(lr=0.01)",
]
#: Every figure's data, as small as will do: saddles at two dims and two indices, basins at two dims
#: and two noise levels, a valley (narrow ranges: y ticks), a quadratic.
CROWD_PROBLEMS = (
    [(p, 0.0, None) for p in PROBLEMS[:3]]
    + [(p, noise, None) for p in ("basins(dim=1)", "basins(dim=2)") for noise in (0.0, 0.1)]
    + [("valley(dim=2)", 0.0, None), ("quadratic(dim=2)", 0.0, None)]
    + [("teacher_student(dim=3, hidden=3, teacher_hidden=2, samples=16, activation='erf')", 0.0, b) for b in (4, None)]
)
CHEAP_CURVATURE = {"lanczos_iterations": 4, "hutchinson_probes": 2, "basin_probes": 2}


@pytest.fixture(scope="module")
def crowd() -> list[dict]:
    """Records of the 30 optimizers on every problem of :data:`CROWD_PROBLEMS`: 3 seeds, 60 steps."""
    pytest.importorskip("pytorch_optimizer")
    return [
        record
        for optimizer in CROWD
        for problem, noise, batch in CROWD_PROBLEMS
        for record in landbench.run(
            problem, optimizer, seeds=3, steps=60, noise=noise, batch_size=batch, **CHEAP_CURVATURE
        )
    ]


def _drawn_texts(figure: Figure) -> list[Text]:
    """Every text the figure draws (once drawn: laid out): titles, axis labels, the tick labels of
    the ticks in view, legend entries, annotations."""
    from matplotlib.text import Text

    ticks, drawn = set(), []
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            # a relative slack on a log axis (a linear one lets 1e-10 into a view that starts at 7e-9)
            slack = 1e-9 * low if axis.get_scale() == "log" else 1e-9 * (high - low)
            for tick in [*axis.majorTicks, *axis.minorTicks]:
                ticks |= {id(tick.label1), id(tick.label2)}
            for tick, loc in [
                *zip(axis.get_major_ticks(), axis.get_majorticklocs()),
                *zip(axis.get_minor_ticks(), axis.get_minorticklocs()),
            ]:
                if low - slack <= loc <= high + slack:
                    drawn += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    others = [t for t in figure.findobj(Text) if id(t) not in ticks and t.get_visible()]
    return [t for t in drawn + others if t.get_text().strip()]


def _clipped(figure: Figure) -> list[str]:
    """The texts that reach outside the figure (by more than a pixel): cut off in the PNG."""
    renderer = figure.canvas.get_renderer()
    page = figure.bbox.padded(1)
    return [
        t.get_text()
        for t in _drawn_texts(figure)
        if not page.contains(*t.get_window_extent(renderer).p0) or not page.contains(*t.get_window_extent(renderer).p1)
    ]


def _overlapping(figure: Figure) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap by more than half a pixel both ways: text run together."""
    renderer = figure.canvas.get_renderer()
    texts = _drawn_texts(figure)
    boxes = np.array([t.get_window_extent(renderer).extents for t in texts])  # x0, y0, x1, y1
    wide = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    tall = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    i, j = np.nonzero(np.triu((wide > 0.5) & (tall > 0.5), k=1))
    return [(texts[a].get_text(), texts[b].get_text()) for a, b in zip(i, j)]


def _texts_over_data(figure: Figure) -> list[tuple[str, str]]:
    """Texts drawn over a panel's data (by more than half a pixel both ways): (text, panel title).
    The data: boxes (patches) and lines in data coordinates (whiskers, medians, dots, curves) with
    their width, each as far as the panel shows it (they are clipped to the axes)."""
    from matplotlib.transforms import Bbox

    renderer = figure.canvas.get_renderer()
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(figure)]
    over = []
    for ax in figure.axes:
        frame = ax.get_window_extent(renderer)
        lines = [line for line in ax.lines if line.get_transform() == ax.transData]
        extents = [patch.get_window_extent(renderer) for patch in ax.patches] + [
            line.get_window_extent(renderer).padded(line.get_linewidth() * figure.dpi / 144) for line in lines
        ]
        for whole in extents:
            extent = Bbox.intersection(whole, frame)
            if extent is None:
                continue
            for text, box in texts:
                wide = min(box.x1, extent.x1) - max(box.x0, extent.x0)
                tall = min(box.y1, extent.y1) - max(box.y0, extent.y0)
                if wide > 0.5 and tall > 0.5:
                    over.append((text, ax.get_title()))
    return sorted(set(over))


def _censored_lines(ax: Any) -> list[Any]:
    """The hollow triangles of a panel of the escape figures: its censored points."""
    from matplotlib.colors import to_rgba

    return [line for line in ax.lines if line.get_marker() == "^" and to_rgba(line.get_markerfacecolor()) == (1,) * 4]


def _censored_overlaps(figure: Figure) -> list[tuple[str, int]]:
    """Hollow triangles (censored points of the escape figures) closer than their size to another of
    the same panel: (panel title, how many pairs)."""
    out = []
    for ax in figure.axes:
        centres, size = [], 0.0
        for line in _censored_lines(ax):
            centres += list(line.get_transform().transform(line.get_xydata()))
            size = max(size, line.get_markersize() * figure.dpi / 72)
        if len(centres) > 1:
            points = np.array(centres)
            distance = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
            close = int(np.triu(distance < size - 0.5, k=1).sum())
            if close:
                out.append((ax.get_title(), close))
    return out


def _y_tick_labels(ax: Any) -> list[str]:
    """The y tick labels a panel shows (ticks in view, non-empty; the figure drawn)."""
    low, high = sorted(ax.yaxis.get_view_interval())
    shown = [
        tick.label1.get_text()
        for tick, loc in [
            *zip(ax.yaxis.get_major_ticks(), ax.yaxis.get_majorticklocs()),
            *zip(ax.yaxis.get_minor_ticks(), ax.yaxis.get_minorticklocs()),
        ]
        if low - 1e-9 * (high - low) <= loc <= high + 1e-9 * (high - low) and tick.label1.get_visible()
    ]
    return [label for label in shown if label.strip()]


def _legend_keys(figure: Figure) -> dict[str, tuple[tuple[float, ...], str]]:
    """Per optimizer named in the figure's legend: its colour (RGB) and its marker, or its hatch for a box."""
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D

    (legend,) = figure.legends
    keys = {}
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        number, name = text.get_text().split(". ", 1)
        name = re.sub(r" \(\d+ diverged\)$", "", name)
        if isinstance(handle, Line2D):
            keys[name] = (to_rgb(handle.get_color()), str(handle.get_marker()))
        else:
            keys[name] = (to_rgb(handle.get_facecolor()), f"hatch {handle.get_hatch()}")
    return keys


@pytest.fixture(scope="module", params=[2, 9, 30], ids=lambda n: f"{n}-optimizers")
def crowd_figures(request: pytest.FixtureRequest, crowd: list[dict]) -> tuple[figures.Context, list[figures.Drawn]]:
    """Every figure of the report of the first 2, 9 or all 30 optimizers of :data:`CROWD`, drawn
    (laid out as in the PNG)."""
    names = set(CROWD[: request.param])
    chosen = [r for r in crowd if r["optimizer"] in names]
    assert {r["optimizer"] for r in chosen} == names  # each spec as the records write it (canonical)
    context, _ = figure_context(chosen)
    drawn = []
    for draw in figures.FIGURES:
        with mpl.style():
            drawn.append(draw(context))
        if drawn[-1].figure is not None:
            drawn[-1].figure.canvas.draw()
    assert all(d.figure is not None for d in drawn), {d.name: d.note for d in drawn if d.figure is None}
    return context, drawn


def test_the_layout_checks_catch_what_reports_of_18_optimizers_showed() -> None:
    """The checks below fail on what was seen: a legend wider than its figure, "N div." counts run
    together, a log panel of less than a decade without a labelled y tick."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    figure, (left, right) = mpl.grid(2)
    left.plot([1, 2], [0.38, 0.63])
    left.set_yscale("log")
    left.yaxis.set_major_locator(LogLocator())
    left.yaxis.set_minor_formatter(NullFormatter())
    for x in (0.0, 0.05):
        right.annotate("4 div.", (x, 0), xycoords="axes fraction", va="top")
    handles = [Line2D([], [], label=f"pytorch_optimizer:AdaBelief(lr={i})") for i in range(18)]
    figure.legend(handles=handles, loc="outside lower center", ncols=6)
    figure.canvas.draw()
    assert any(text.startswith("pytorch_optimizer:") for text in _clipped(figure))
    assert ("4 div.", "4 div.") in _overlapping(figure)
    assert _y_tick_labels(left) == []


def test_a_legend_entry_wider_than_its_figure_widens_the_figure() -> None:
    from matplotlib.lines import Line2D

    figure, (ax,) = mpl.grid(1)
    ax.plot([1, 2], [1, 2])
    mpl.legend_below(figure, [Line2D([], [], label="mypkg.optimizers:" + "VeryLongName" * 12 + "(lr=0.001)")])
    figure.canvas.draw()
    assert _clipped(figure) == [] and figure.get_figwidth() > mpl.WIDTH


def test_the_layout_checks_catch_what_reports_of_30_optimizers_showed() -> None:
    """The checks below fail on what the review of a 30-optimizer report saw: the "<= 1e-12" floor
    label written over the last boxes, and hollow censored triangles on top of each other."""
    figure, (boxes, escape) = mpl.grid(2)
    boxes.boxplot([np.array([1e-12, 1e-11, 1e-10])] * 3, patch_artist=True)
    boxes.set_yscale("log")
    boxes.annotate("<= 1e-12", (1, 1e-12), xycoords=("axes fraction", "data"), ha="right", va="bottom")
    for x in (4.0, 4.02, 4.04):  # three optimizers censored at d = 4, spread as the medians are
        escape.plot([x], [1.0], "^", ms=6, mfc="white", transform=escape.get_xaxis_transform(), clip_on=False)
    escape.set_xscale("log")
    escape.set_xlim(2, 20)
    figure.canvas.draw()
    assert ("<= 1e-12", "") in _texts_over_data(figure)
    assert _censored_overlaps(figure) == [("", 3)]


def test_no_text_is_clipped_or_runs_into_another(crowd_figures: tuple[figures.Context, list[figures.Drawn]]) -> None:
    _, drawn = crowd_figures
    for figure in drawn:
        assert _clipped(figure.figure) == [], figure.name
        assert _overlapping(figure.figure) == [], figure.name
        assert _texts_over_data(figure.figure) == [], figure.name
        assert _censored_overlaps(figure.figure) == [], figure.name
        width, height = figure.figure.get_size_inches() * figure.figure.dpi
        assert width < 1400 and height < 2000, (figure.name, width, height)


def test_every_panel_labels_its_own_y_axis(crowd_figures: tuple[figures.Context, list[figures.Drawn]]) -> None:
    _, drawn = crowd_figures
    for figure in drawn:
        for ax in figure.figure.axes:
            assert len(_y_tick_labels(ax)) >= 2, (figure.name, ax.get_title(), _y_tick_labels(ax))


def test_each_optimizer_keeps_one_colour_and_marker_distinct_from_all_others(
    crowd_figures: tuple[figures.Context, list[figures.Drawn]],
) -> None:
    from matplotlib.colors import to_rgb

    context, drawn = crowd_figures
    styles = context.styles
    pairs = {(styles.color(o), styles.marker(o)) for o in styles.order}
    assert len(pairs) == len(styles.order)  # up to 70 optimizers
    for figure in drawn:
        keys = _legend_keys(figure.figure)
        assert len(set(keys.values())) == len(keys), figure.name  # no two look alike in one legend
        for name, (color, marker) in keys.items():
            assert color == to_rgb(styles.color(name)), (figure.name, name)
            assert marker in (styles.marker(name), f"hatch {styles.hatch(name)}"), (figure.name, name, marker)


def test_boxes_are_labelled_and_their_diverged_runs_counted(
    crowd_figures: tuple[figures.Context, list[figures.Drawn]], crowd: list[dict]
) -> None:
    """Under each box: the optimizer's name or number, and its diverged runs, counted from the records."""
    context, drawn = crowd_figures
    (figure,) = [d.figure for d in drawn if d.name == "loss_gap"]
    names = set(context.styles.order)
    by_number = {str(context.styles.number(o)): o for o in names}
    for ax in figure.axes:
        group = ax.get_title()
        runs = [r for r in crowd if r["optimizer"] in names and group_of(r["family"]) == group]
        expected = {o: sum(r["diverged"] for r in runs if r["optimizer"] == o) for o in {r["optimizer"] for r in runs}}
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert len(labels) == len(expected), group
        seen = {}
        for label in labels:
            key, *counts = re.split(r"\n|  ", label)
            optimizer = by_number.get(key, key)
            diverged = [int(c.split()[0]) for c in counts if c.endswith("div.")]
            seen[optimizer] = diverged[0] if diverged else 0
        assert seen == expected, group


def test_the_floor_is_a_y_tick_label_and_censored_points_sit_side_by_side(
    crowd_figures: tuple[figures.Context, list[figures.Drawn]], crowd: list[dict]
) -> None:
    """A loss-gap panel with a run below the floor labels the floor on its y axis ("≤1e-12"), beside
    the boxes; every (optimizer, dimension) where at most half the runs escaped has its own triangle
    (the layout test above checks that none covers another)."""
    context, drawn = crowd_figures
    by_name = {d.name: d.figure for d in drawn}
    names = set(context.styles.order)
    for ax in by_name["loss_gap"].axes:
        gaps = [
            r["loss_gap"]
            for r in crowd
            if r["optimizer"] in names and group_of(r["family"]) == ax.get_title() and r["loss_gap"] is not None
        ]
        floored = min(gaps) <= figures.GAP_FLOOR
        assert ("≤1e-12" in _y_tick_labels(ax)) == floored, ax.get_title()
    (panel,) = [p for p in data.sweep(context.grouped, "dim", data.has_saddle)]
    lost = sum(data.escape_stats(rs).median is None for points in panel.series.values() for rs in points.values())
    (ax,) = by_name["escape_dim"].axes
    triangles = sum(len(line.get_xydata()) for line in _censored_lines(ax))
    assert triangles == lost and (lost > 2 or len(names) < 30)


def test_gaps_on_their_way_to_overflow_are_drawn_at_the_ceiling_without_warnings() -> None:
    """sgd(lr=0.03) on quadratic(dim=2) (curvature 100: |1 - 3| = 2 a step) ends 480 steps at gaps
    of 1e289 to 1e290, finite; sgd(lr=0.01) converges. The gap axes end just above the ceiling
    instead of spanning 300 decades, the captions say which runs are drawn there, and drawing raises
    no overflow warning (the ratio of the axis limits overflowed, and the locator's powers of ten)."""
    import warnings

    records = [
        r
        for lr in (0.03, 0.01)
        for r in landbench.run(
            "quadratic(dim=2)", f"sgd(lr={lr})", seeds=3, steps=480, dtype="float64", **CHEAP_CURVATURE
        )
    ]
    huge = [r["loss_gap"] for r in records if r["optimizer"] == "sgd(lr=0.03)"]
    assert not any(r["diverged"] for r in records) and min(huge) > 1e280
    context, _ = figure_context(records)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with mpl.style():
            drawn = [figures.loss_gaps(context), figures.sharpness_vs_loss(context)]
        for d in drawn:
            d.figure.canvas.draw()
    (gap_axis,) = drawn[0].figure.axes
    (sharpness_axis,) = drawn[1].figure.axes
    for low, high in (gap_axis.get_ylim(), sharpness_axis.get_xlim()):
        assert high < 100 * figures.GAP_CEILING and low >= figures.GAP_FLOOR / 100
    assert "≥1e+08" in _y_tick_labels(gap_axis)
    for d in drawn:
        assert "Drawn at 1e+08: 3 runs with a larger gap (sgd(lr=0.03) " in d.caption, d.caption
        assert f"(largest {max(huge):.3g})" in d.caption


def test_tidy_reads_axis_limits_near_the_ends_of_the_float_range_without_overflow() -> None:
    import warnings

    figure, (ax,) = mpl.grid(1)
    ax.set_yscale("log")
    ax.set_ylim(1e-26, 1e289)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mpl.tidy([ax])


def test_the_profiles_legend_counts_diverged_runs_as_the_others_do(
    crowd_figures: tuple[figures.Context, list[figures.Drawn]], crowd: list[dict]
) -> None:
    """Each optimizer's diverged runs on the scenarios of the profiles (those with targets: f* known),
    counted from the records, in its legend entry."""
    context, drawn = crowd_figures
    (figure,) = [d.figure for d in drawn if d.name == "profiles"]
    (legend,) = figure.legends
    shown = {}
    for text in legend.get_texts():
        name = re.sub(r" \(\d+ diverged\)$", "", text.get_text().split(". ", 1)[1])
        count = re.search(r"\((\d+) diverged\)$", text.get_text())
        shown[name] = int(count[1]) if count else 0
    names = set(context.styles.order)
    expected = {o: sum(r["diverged"] for r in crowd if r["optimizer"] == o and r["f_star"] is not None) for o in names}
    assert shown == expected
    assert any(expected.values()) or len(names) < 30


def test_a_report_of_30_optimizers_reads_in_order_with_contents_and_unique_ids(
    crowd: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contents first, linking to every section; the figures before the pairs and per-scenario tables;
    the pairs table only for significant pairs, the rest collapsed; no id twice."""
    monkeypatch.setattr("landbench.report.build.FIGURES", (figures.performance_profiles,))  # the page is the point
    report = write_report(crowd, tmp_path)
    text = report.html.read_text()
    ids = re.findall(r'id="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    parser = _Links()
    parser.feed(text)
    internal = [link[1:] for link in parser.links if link.startswith("#")]
    assert set(internal) <= set(ids)
    assert {"leaderboard", "figures", "pairs", "per-scenario-tables", "method", "performance-profiles"} <= set(internal)
    markdown = report.markdown.read_text()
    order = [markdown.index(h) for h in ("## Contents", "## Leaderboard", "## Figures", "## Pairs", "## Per-scenario")]
    assert order == sorted(order)
    assert markdown.index("![") < markdown.index("| first | second |")
    board = rank(crowd)
    pairs = text[text.index('id="pairs"') : text.index('id="per-scenario-tables"')]
    shown, _, hidden = pairs.partition("<details>")
    significant = sum(p.significant for p in board.pairwise)
    assert shown.count("<tr><td>") == significant and "no significant difference</td>" not in shown
    assert (
        hidden.count("no significant difference</td>") == len(board.pairwise) - significant == 30 * 29 / 2 - significant
    )
    assert "</details>" in hidden and "<summary>" in hidden


def test_the_leaderboard_says_each_optimizers_tuned_rate_batch_mode_and_run_time(tmp_path: Path) -> None:
    """A tuned optimizer's rate per family is the one its records' tuning chose; an untuned one runs
    as given; the loop time is the sum of its batches' wall times (each batch once)."""
    suite = parse_suite(TUNED_SUITE)
    run_suite(suite, tmp_path / "tuned", progress=False)
    records = ResultStore(tmp_path / "tuned").records() + [
        r
        for problem in ("quadratic(dim=2)", "valley(dim=2)")
        for r in landbench.run(problem, "adam(lr=0.05)", seeds=[0, 1], steps=40, curvature=False)
    ]
    board = rank(records)
    facts = board.contestants
    scored = [r for r in records if r.get("phase", "score") == "score"]
    chosen = {r["tuning"]["family"]: r["tuning"]["lr"] for r in scored if r.get("label") == "sgd(momentum=0.9)"}
    assert facts["sgd(momentum=0.9)"].tuned == {family: [lr] for family, lr in chosen.items()}
    assert set(chosen) == {"quadratic", "valley"} and set(chosen.values()) <= {0.01, 0.1}
    assert facts["adam(lr=0.05)"].tuned == {}
    for name in ("sgd(momentum=0.9)", "adam(lr=0.05)"):
        mine = [r for r in scored if (r.get("label") or r["optimizer"]) == name]
        batches = {(r["problem"], r["instance"], r["noise"]): r["wall_s"] for r in mine}  # a batch: one wall_s
        assert facts[name].loop_s == pytest.approx(sum(batches.values()))
        assert facts[name].modes == {"batched": len(mine)}
    table = board.to_markdown().split("## Optimizers")[1].split("\n## ")[0]
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if re.match(r"\| \d+ \|", line)}
    assert " | as given | batched | " in rows["adam(lr=0.05)"]
    by_rate: dict[float, list[str]] = {}
    for family, lr in sorted(chosen.items()):
        by_rate.setdefault(lr, []).append(family)
    expected = "; ".join(f"{lr:g} ({', '.join(families)})" for lr, families in sorted(by_rate.items()))
    assert f" | {expected} | batched | {facts['sgd(momentum=0.9)'].loop_s:.3g} | " in rows["sgd(momentum=0.9)"]


TUNED_SUITE = """
name = "tuned"
seeds = [0, 1]
steps = 40
optimizers = ["sgd(momentum=0.9)"]
[metrics]
curvature = false
[tuning]
grid = [0.01, 0.1]
instances = [1000]
seeds = [1000, 1001]
[[problems]]
spec = "quadratic"
dims = [2]
[[problems]]
spec = "valley"
dims = [2]
"""
