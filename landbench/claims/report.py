"""``claims.md``, ``claims.html`` and ``claims.json``: each claim's sentence, figure, theory, stated
test, verdict with its statistic and interval, and the command that reproduces it.

``claims.json`` is the record: one entry per claim, from which both pages are rendered. A run of
some claims into a folder that holds a report keeps the other claims' entries (each says its own
sizes and date), so that following one section's "Reproduce" line never loses the others.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landbench._version import __version__
from landbench.claims.base import TIERS, deciding

TITLE = "The claims, measured"
JSON_NAME = "claims.json"


@dataclass(frozen=True)
class Failed:
    """A claim whose experiment raised: no verdict, the error in one line."""

    name: str
    number: int
    title: str
    error: str
    seconds: float


@dataclass(frozen=True)
class ClaimsReport:
    """The pages written, and the entries they hold (this run's and those kept from before)."""

    markdown: Path
    html: Path
    json: Path
    entries: list[dict[str, Any]]


def reproduce_command(name: str, tier: str, device: str, out: str) -> str:
    """The command that reproduces one claim's section of the report into the same folder."""
    flags = {"quick": " --quick", "test": " --tier test", "full": ""}[tier]
    place = f" --device {device}" if device != "cpu" else ""
    return f"landbench claims {name}{flags}{place} --out {shlex.quote(out)}"


def write_claims_report(
    outcomes: Sequence[Any], out: str | Path, *, tier: str, device: str, known: Sequence[str] | None = None
) -> ClaimsReport:
    """Write ``out/claims.json``, ``out/claims.md`` and ``out/claims.html`` for ``outcomes``
    (:class:`~landbench.claims.ClaimOutcome` or :class:`Failed`), keeping the entries of an earlier
    ``claims.json`` in ``out`` for the claims not run now (those still in ``known``, the names of the
    shipped claims). Figures stay where each claim drew them (``out/NAME/*.png``), linked relatively."""
    from landbench.report.html import to_html

    if tier not in TIERS:
        raise ValueError(f"tier {tier!r} is not one of {', '.join(TIERS)}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fresh = [_entry(o, folder, tier, device, str(out), now) for o in outcomes]
    names = {e["name"] for e in fresh}
    kept = [e for e in _earlier(folder / JSON_NAME) if e["name"] not in names and (known is None or e["name"] in known)]
    entries = sorted(fresh + kept, key=lambda e: (e["number"], e["name"]))
    pages = ClaimsReport(folder / "claims.md", folder / "claims.html", folder / JSON_NAME, entries)
    document = {"landbench": __version__, "claims": entries}
    pages.json.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    markdown, captions = render_markdown(entries)
    pages.markdown.write_text(markdown, encoding="utf-8")
    pages.html.write_text(to_html(markdown, TITLE, captions), encoding="utf-8")
    return pages


def render_markdown(entries: Sequence[dict[str, Any]]) -> tuple[str, set[str]]:
    """The report page of ``claims.json``'s entries, and the figure captions it shows."""
    parts = [f"# {TITLE}", "", _header(entries), "", _table(entries), ""]
    captions: set[str] = set()
    for entry in entries:
        lines, shown = _section(entry)
        parts.extend(lines)
        captions.update(shown)
    return "\n".join(parts).rstrip() + "\n", captions


def _entry(outcome: Any, folder: Path, tier: str, device: str, out: str, now: str) -> dict[str, Any]:
    import torch

    common = {
        "tier": tier,
        "device": device,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "landbench": __version__,
        "date": now,
        "seconds": outcome.seconds,
    }
    if isinstance(outcome, Failed):
        return {
            "name": outcome.name,
            "number": outcome.number,
            "title": outcome.title,
            "verdict": None,
            "error": outcome.error,
            "command": reproduce_command(outcome.name, tier, device, out),
            **common,
        }
    e, m = outcome.experiment, outcome.measured
    figures = [Path(p).resolve().relative_to(folder.resolve()).as_posix() for p in m.figures]
    captions = [m.captions[i] if i < len(m.captions) else f"{e.title} ({Path(p).stem})" for i, p in enumerate(figures)]
    return {
        "name": e.name,
        "number": e.number,
        "title": e.title,
        "sentence": e.sentence,
        "source": e.source,
        "theory": e.theory,
        "stated_test": e.stated_test,
        "verdict": outcome.verdict,
        "summary": m.summary,
        "findings": [f.as_dict() for f in m.findings],
        "figures": figures,
        "captions": captions,
        "data": _finite(m.data),
        "command": reproduce_command(e.name, tier, device, out),
        **common,
    }


def _earlier(path: Path) -> list[dict[str, Any]]:
    """The entries of an earlier report; nothing when there is none or it cannot be read."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    claims = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(claims, list):
        return []
    needed = ("name", "number", "title", "tier", "seconds", "command")
    return [c for c in claims if isinstance(c, dict) and all(k in c for k in needed)]


def _header(entries: Sequence[dict[str, Any]]) -> str:
    runs = sorted({(e["tier"], e["device"], e["machine"], e["torch"], e["landbench"]) for e in entries})
    sizes = {"quick": "the quick sizes (--quick)", "full": "the full sizes", "test": "the test sizes"}
    where = "; ".join(
        f"{sizes[tier]} on {device} ({machine}), landbench {lb}, torch {tv}" for tier, device, machine, tv, lb in runs
    )
    total = sum(e["seconds"] for e in entries)
    dates = sorted(e["date"][:10] for e in entries)
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (
        "Each claim from the texts about optimising deep networks, measured on landscapes whose structure is "
        "known: its figure with the theory drawn, the stated test, and the verdict that test gives on the data. "
        f"Run at {where}; {span}; {_duration(total)} in all."
    )


def _table(entries: Sequence[dict[str, Any]]) -> str:
    rows = ["| # | claim | verdict | deciding statistic | sizes | time |", "|---|---|---|---|---|---|"]
    for e in entries:
        link = f"[{_cell(e['title'])}](#{_anchor(e['number'], e['title'])})"
        if e["verdict"] is None:
            verdict, statistic = "**failed**", _cell(e.get("error", ""))
        else:
            part = deciding(e["findings"], e["verdict"])
            verdict = f"**{e['verdict']}**"
            statistic = (
                "-"
                if part is None
                else _cell(f"{part['statistic']}: {_number(part['value'])}{_interval(part['interval'])}")
            )
        rows.append(f"| {e['number']} | {link} | {verdict} | {statistic} | {e['tier']} | {_duration(e['seconds'])} |")
    return "\n".join(rows)


def _section(e: dict[str, Any]) -> tuple[list[str], set[str]]:
    head = f"## {e['number']}. {e['title']}"
    if e["verdict"] is None:
        return [
            head,
            "",
            f"**The experiment failed** after {_duration(e['seconds'])}: `{e.get('error', '')}`. No verdict.",
            "",
            f"Reproduce: `{e['command']}`",
            "",
        ], set()
    lines = [head, "", f"> {e['sentence']}", "", f"_Source: {e['source']}_", ""]
    lines += [f"**Verdict: {e['verdict']}.** {e['summary']}".rstrip(), ""]
    for figure, caption in zip(e["figures"], e["captions"]):
        lines += [f"![{_alt(caption)}]({figure})", "", caption, ""]
    lines += [f"**Theory drawn.** {e['theory']}", "", f"**Stated test.** {e['stated_test']}", ""]
    if e["findings"]:
        lines += ["| part | verdict | statistic | value | 95 % interval | why |", "|---|---|---|---|---|---|"]
        for n, f in enumerate(e["findings"], 1):
            interval = "-" if f["interval"] is None else f"[{_number(f['interval'][0])}, {_number(f['interval'][1])}]"
            lines.append(
                f"| {n} | {f['verdict']} | {_cell(f['statistic'])} | {_number(f['value'])} | {interval} | "
                f"{_cell(f['why'])} |"
            )
        lines.append("")
    lines += [
        f"Measured at the {e['tier']} sizes on {e['device']} in {_duration(e['seconds'])}, {e['date'][:10]} "
        f"(work stored in `{e['name']}/` is reused on a rerun). Reproduce: `{e['command']}`",
        "",
    ]
    return lines, set(e["captions"])


def _finite(value: Any) -> Any:
    """JSON-ready data: non-finite floats as None (strict JSON), numpy scalars and arrays as Python."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _anchor(number: int, title: str) -> str:
    from landbench.report.html import slug

    return slug(f"{number}. {title}")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _alt(text: str) -> str:
    return " ".join(text.split()).replace("]", ")").replace("[", "(")


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _interval(interval: Sequence[float | None] | None) -> str:
    return "" if interval is None else f" [{_number(interval[0])}, {_number(interval[1])}]"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
