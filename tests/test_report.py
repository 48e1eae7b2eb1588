"""``landbench report``: the pages and figures are written, reference only files that exist, and the
numbers the figures show agree with independent computations from the records."""

from __future__ import annotations

import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

import landbench
from landbench.cli import main
from landbench.errors import LandbenchError
from landbench.report import Report, data, figures, write_report
from landbench.store import ResultStore, load_results

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
    """At lr 3 gradient descent leaves the saddle within a few steps and then blows up: every run
    has an escape step and every run diverged, so no escape time may be drawn."""
    records = landbench.run("saddle(dim=10)", "gd(lr=3.0)", seeds=4, steps=100, curvature=False)
    assert all(r["escaped"] and r["escape_step"] is not None and r["diverged"] for r in records)
    stats = data.escape_stats(records)
    assert (stats.escaped, stats.diverged, stats.median, stats.q1, stats.q3) == (0, 4, None, None, None)


@pytest.mark.parametrize("escaped", range(9))
def test_censored_median_is_never_a_number_where_half_did_not_escape(escaped: int) -> None:
    times = [float(t) for t in (3, 9, 4, 12, 7, 30, 5, 8)[:escaped]] + [None] * (8 - escaped)
    with_inf = np.array([math.inf if t is None else t for t in times])
    expected = np.median(with_inf)  # numpy ranks inf last; the middle pair is finite only if 5 of 8 escaped
    median = data.censored_quantile(times, 0.5)
    assert (median is None) == (not np.isfinite(expected)) == (escaped <= 4)
    if median is not None:
        assert median == expected


def test_ecdf_at_the_budget_is_the_share_of_targets_hit(results: Path) -> None:
    records = load_results([results])
    grouped, _ = data.grouped_records(records)
    curves = data.ecdfs(grouped)["all"]
    for optimizer in OPTIMIZERS:
        runs = [r for r in records if r["optimizer"] == optimizer and r["f_star"] is not None]
        pairs = sum(len(r["targets"]) for r in runs)
        hit = sum(t is not None for r in runs for t in r["hit_evals"])
        curve = curves[optimizer]
        assert curve.pairs == pairs
        assert curve.fraction(max(r["grad_evals"] for r in runs)) == pytest.approx(hit / pairs)
        first = min(max(1, t) for r in runs for t in r["hit_evals"] if t is not None)
        assert curve.fraction(first - 0.5) == 0


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
