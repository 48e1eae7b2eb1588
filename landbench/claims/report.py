"""``claims.md``, ``claims.html`` and ``claims.json``: each claim's sentence, figure, theory, stated
test, verdict with its statistic and interval, and the command that reproduces it."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landbench._version import __version__
from landbench.claims.base import TIERS

TITLE = "The claims, measured"


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
    """The pages written."""

    markdown: Path
    html: Path
    json: Path


def reproduce_command(name: str, tier: str, device: str) -> str:
    """The command that reproduces one claim's section of the report."""
    flags = " --quick" if tier == "quick" else f" --tier {tier}" if tier != "full" else ""
    place = f" --device {device}" if device != "cpu" else ""
    return f"landbench claims {name}{flags}{place} --out claims"


def write_claims_report(
    outcomes: Sequence[Any], out: str | Path, *, tier: str, device: str, seconds: float
) -> ClaimsReport:
    """Write ``out/claims.md``, ``out/claims.html`` and ``out/claims.json`` for ``outcomes``
    (:class:`~landbench.claims.ClaimOutcome` or :class:`Failed`, in the order of their numbers).
    Figures stay where each claim drew them (``out/NAME/*.png``) and are linked relatively."""
    from landbench.report.html import to_html

    if tier not in TIERS:
        raise ValueError(f"tier {tier!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = _header(tier, device, seconds)
    parts = [f"# {TITLE}", "", header, "", _table(outcomes), ""]
    captions: set[str] = set()
    for outcome in outcomes:
        lines, shown = _section(outcome, out, tier, device)
        parts.extend(lines)
        captions.update(shown)
    markdown = "\n".join(parts).rstrip() + "\n"
    pages = ClaimsReport(out / "claims.md", out / "claims.html", out / "claims.json")
    pages.markdown.write_text(markdown, encoding="utf-8")
    pages.html.write_text(to_html(markdown, TITLE, captions), encoding="utf-8")
    document = {
        "landbench": __version__,
        "tier": tier,
        "device": device,
        "seconds": seconds,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "claims": [_as_json(o, out, tier, device) for o in outcomes],
    }
    pages.json.write_text(json.dumps(document, indent=1, allow_nan=False, default=_default) + "\n", encoding="utf-8")
    return pages


def _header(tier: str, device: str, seconds: float) -> str:
    import torch

    cores = os.cpu_count()
    what = {"quick": "the quick sizes (--quick)", "full": "the full sizes", "test": "the test sizes"}[tier]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Each claim from the texts about optimising deep networks, measured on landscapes whose structure is known: "
        f"its figure with the theory drawn, the stated test, and the verdict that test gives on the data. "
        f"Run at {what} on {device} ({platform.machine()}, {cores} cores), landbench {__version__}, "
        f"torch {torch.__version__}, {when}, in {_duration(seconds)}."
    )


def _table(outcomes: Sequence[Any]) -> str:
    rows = ["| # | claim | verdict | deciding statistic | time |", "|---|---|---|---|---|"]
    for o in outcomes:
        if isinstance(o, Failed):
            rows.append(
                f"| {o.number} | [{_cell(o.title)}](#{_anchor(o.number, o.title)}) | **failed** | "
                f"{_cell(o.error)} | {_duration(o.seconds)} |"
            )
            continue
        e = o.experiment
        first = o.measured.findings[0] if o.measured.findings else None
        statistic = "-" if first is None else f"{first.statistic}: {_number(first.value)}{_interval(first.interval)}"
        rows.append(
            f"| {e.number} | [{_cell(e.title)}](#{_anchor(e.number, e.title)}) | **{o.verdict}** | "
            f"{_cell(statistic)} | {_duration(o.seconds)} |"
        )
    return "\n".join(rows)


def _section(outcome: Any, out: Path, tier: str, device: str) -> tuple[list[str], set[str]]:
    if isinstance(outcome, Failed):
        return [
            f"## {outcome.number}. {outcome.title}",
            "",
            f"**The experiment failed** after {_duration(outcome.seconds)}: `{outcome.error}`. No verdict.",
            "",
            f"Reproduce: `{reproduce_command(outcome.name, tier, device)}`",
            "",
        ], set()
    e, m = outcome.experiment, outcome.measured
    lines = [f"## {e.number}. {e.title}", "", f"> {e.sentence}", "", f"_Source: {e.source}_", ""]
    lines += [f"**Verdict: {outcome.verdict}.** {m.summary}".rstrip(), ""]
    captions = set()
    for i, figure in enumerate(m.figures):
        rel = Path(figure).resolve().relative_to(out.resolve()).as_posix()
        caption = m.captions[i] if i < len(m.captions) else f"{e.title} ({Path(figure).stem})"
        lines += [f"![{_alt(caption)}]({rel})", "", caption, ""]
        captions.add(caption)
    lines += [f"**Theory drawn.** {e.theory}", "", f"**Stated test.** {e.stated_test}", ""]
    if m.findings:
        lines += ["| part | verdict | statistic | value | 95 % interval | why |", "|---|---|---|---|---|---|"]
        for n, f in enumerate(m.findings, 1):
            interval = "-" if f.interval is None else f"[{_number(f.interval[0])}, {_number(f.interval[1])}]"
            lines.append(
                f"| {n} | {f.verdict} | {_cell(f.statistic)} | {_number(f.value)} | {interval} | {_cell(f.why)} |"
            )
        lines.append("")
    lines += [
        f"Measured in {_duration(outcome.seconds)} (work stored in `{e.name}/` is reused on a rerun). "
        f"Reproduce: `{reproduce_command(e.name, tier, device)}`",
        "",
    ]
    return lines, captions


def _as_json(outcome: Any, out: Path, tier: str, device: str) -> dict[str, Any]:
    if isinstance(outcome, Failed):
        return {
            "name": outcome.name,
            "number": outcome.number,
            "title": outcome.title,
            "verdict": None,
            "error": outcome.error,
            "seconds": outcome.seconds,
        }
    e, m = outcome.experiment, outcome.measured
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
        "figures": [Path(p).resolve().relative_to(out.resolve()).as_posix() for p in m.figures],
        "data": _finite(m.data),
        "seconds": outcome.seconds,
        "command": reproduce_command(e.name, tier, device),
    }


def _finite(value: Any) -> Any:
    """JSON-ready data with non-finite floats as None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return _finite(value.item())
        if isinstance(value, np.ndarray):
            return _finite(value.tolist())
    except ImportError:  # pragma: no cover
        pass
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


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{_number(interval[0])}, {_number(interval[1])}]"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
