"""``landbench report``: the leaderboard and the figures, as DIR/index.html, DIR/report.md and DIR/figures/."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landbench.errors import LandbenchError
from landbench.ranking import rank
from landbench.report import data, html, mpl
from landbench.report.figures import FIGURES, Context, Drawn

FIGURES_DIR = "figures"


@dataclass
class Report:
    """What :func:`write_report` wrote: the pages, the figures drawn, and the figures skipped with why."""

    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def write_report(records: Iterable[dict[str, Any]], out: str | Path, *, title: str = "landbench report") -> Report:
    """Rank ``records`` and draw the report's figures into ``out`` (created if needed).

    Writes ``out/index.html`` (self-contained but for the images, which it references as
    ``figures/NAME.png``), ``out/report.md`` (the same content) and ``out/figures/*.png``. Only scored
    records count (tuning-phase records are left out, repeats counted once). Raises
    :class:`~landbench.errors.LandbenchError` when there is nothing to report or matplotlib is missing.
    """
    mpl.require()
    records = list(records)
    grouped, notes = data.grouped_records(records)
    if not grouped:
        raise LandbenchError(
            f"no scored runs to report ({len(records)} records, none of phase 'score'): "
            "run a suite first, e.g. landbench run smoke --out DIR"
        )
    board = rank(records)
    styles = mpl.Styles([s.optimizer for s in board.standings] + data.optimizers(grouped))
    context = Context(grouped, board, styles)
    out = Path(out)
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    report = Report(out / "index.html", out / "report.md")
    drawn = []
    for draw in FIGURES:
        with mpl.style():
            figure = draw(context)
        if figure.figure is not None:
            report.figures.append(mpl.save(figure.figure, out / FIGURES_DIR / f"{figure.name}.png"))
            figure.figure.clear()
        else:
            report.skipped[figure.name] = figure.note
        drawn.append(figure)
    runs = sum(len(rs) for runs in grouped.values() for rs in runs.values())
    markdown = _markdown(title, board.to_markdown(), drawn, runs, len(styles.order), len(grouped), notes)
    report.markdown.write_text(markdown, encoding="utf-8")
    captions = {f.caption for f in drawn if f.figure is not None}
    report.html.write_text(html.to_html(markdown, title, captions), encoding="utf-8")
    return report


def _markdown(
    title: str, leaderboard: str, drawn: list[Drawn], runs: int, optimizers: int, scenarios: int, notes: list[str]
) -> str:
    """The report: summary, leaderboard (standings to profiles), figures, then per-scenario tables and method."""
    board = "\n".join("#" + line if line.startswith("#") else line for line in leaderboard.splitlines())
    board = board.replace("## landbench leaderboard", "## Leaderboard", 1)
    head, marker, tail = board.partition("\n### Scenarios\n")
    lines = [f"# {title}", "", f"{runs} scored runs of {optimizers} optimizers on {scenarios} scenarios."]
    lines += [f"- note: {n}" for n in notes] + ["", head.rstrip(), "", "## Figures", ""]
    for figure in drawn:
        lines += [f"### {figure.title}", ""]
        if figure.figure is None:
            lines += [f"_Not drawn: {figure.note}._", ""]
        else:
            lines += [f"![{figure.title}]({FIGURES_DIR}/{figure.name}.png)", "", figure.caption, ""]
    if marker:
        lines += ["## Per-scenario tables", "", tail.replace("\n#### ", "\n### ").strip(), ""]
    return "\n".join(lines).rstrip() + "\n"
