"""``landbench report``: the leaderboard and the figures, as DIR/index.html, DIR/report.md and DIR/figures/."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landbench.errors import LandbenchError
from landbench.ranking import rank, render
from landbench.ranking.render import Section
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
    records = list(records)
    context, notes = figure_context(records)
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
    runs = sum(len(rs) for runs in context.grouped.values() for rs in runs.values())
    summary = f"{runs} scored runs of {len(context.styles.order)} optimizers on {len(context.grouped)} scenarios."
    markdown = _markdown(title, summary, notes, render.markdown_sections(context.board), drawn)
    report.markdown.write_text(markdown, encoding="utf-8")
    captions = {f.caption for f in drawn if f.figure is not None}
    report.html.write_text(html.to_html(markdown, title, captions), encoding="utf-8")
    return report


def figure_context(records: list[dict[str, Any]]) -> tuple[Context, list[str]]:
    """What the figures draw from (scored records by scenario, the leaderboard, and one style per
    optimizer numbered as in the standings), and notes on the records left out. Raises
    :class:`~landbench.errors.LandbenchError` when there is nothing to report or matplotlib is missing."""
    mpl.require()
    grouped, notes = data.grouped_records(records)
    if not grouped:
        why = "; ".join(notes) or "none of phase 'score'"
        raise LandbenchError(
            f"no scored runs to report ({len(records)} records: {why}): run a suite first, e.g. "
            "landbench run smoke --out DIR"
        )
    board = rank(records)
    styles = mpl.Styles([s.optimizer for s in board.standings] + data.optimizers(grouped))
    return Context(grouped, board, styles), notes


#: Sections of the leaderboard shown before the figures, with their headings in the report; the
#: pairs and the per-scenario tables, long with many optimizers, come after the figures.
LEADING = {
    "standings": "Standings",
    "optimizers": "Optimizers",
    "families": "By family (mean rank / score)",
    "profiles": "Performance profiles (table)",
}
CONTENTS = "Contents"
FIGURES_NOTE = (
    "In every figure an optimizer has the same colour and marker, and its number in the standings: "
    "legends list optimizers by that number, and box plots label a box by it where names do not fit."
)
_TOC = "<!-- table of contents -->"


def _markdown(title: str, summary: str, notes: list[str], sections: list[Section], drawn: list[Drawn]) -> str:
    """The report: summary, contents, leaderboard, figures, pairs, per-scenario tables, method."""
    by_key = {section.key: section for section in sections}
    lines = [f"# {title}", "", summary] + [f"- note: {n}" for n in notes]
    lines += ["", f"## {CONTENTS}", "", _TOC, "", "## Leaderboard", "", by_key["lead"].body, ""]
    for key, heading in LEADING.items():
        if key in by_key:
            lines += [f"### {heading}", "", by_key[key].body, ""]
    lines += ["## Figures", "", FIGURES_NOTE, ""]
    for figure in drawn:
        lines += [f"### {figure.title}", ""]
        if figure.figure is None:
            lines += [f"_Not drawn: {figure.note}._", ""]
        else:
            lines += [f"![{figure.title}]({FIGURES_DIR}/{figure.name}.png)", "", figure.caption, ""]
    if "pairs" in by_key:
        lines += ["## Pairs", "", by_key["pairs"].body, ""]
    if "scenarios" in by_key:
        lines += ["## Per-scenario tables", ""]
        for heading, body in by_key["scenarios"].parts:
            lines += [f"### {heading}", "", body, ""]
    lines += ["## Method", "", by_key["method"].body, ""]
    text = "\n".join(lines).rstrip() + "\n"
    return text.replace(_TOC, _contents(text), 1)


def _contents(markdown: str) -> str:
    """A nested list of links to the report's sections and their parts (not to each scenario's table)."""
    items, section = [], ""
    for level, text, anchor in html.heading_ids(markdown):
        if level == 2:
            section = text
        if text == CONTENTS or level == 1 or level > 3 or (level == 3 and section == "Per-scenario tables"):
            continue
        items.append(f"{'  ' * (level - 2)}- [{text}](#{anchor})")
    return "\n".join(items)
