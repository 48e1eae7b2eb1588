"""The report's Markdown as a self-contained HTML page: inline CSS, no scripts, no external URLs.

Only the Markdown the report itself writes is converted: ATX headings, pipe tables (with ``\\|``
escapes), block quotes, ``- `` lists, images ``![alt](src)``, ``_notes_`` (a paragraph in
italics), other paragraphs, and inline ``**bold**`` and ``code``. Text is HTML-escaped before the
inline markup is applied.
"""

from __future__ import annotations

import html
import re

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       max-width: 1080px; margin: 2em auto; padding: 0 1.2em; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.4em 0 0.5em; }
h1 { font-size: 1.7em; } h2 { font-size: 1.35em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1.12em; } h4 { font-size: 1em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f3f4f6; } tr:nth-child(even) td { background: #fafafa; }
blockquote { margin: .6em 0; padding: .4em .9em; border-left: 4px solid #E69F00; background: #fff8ec; }
code { font: 12.5px/1.4 Menlo, Consolas, monospace; background: #f3f4f6; padding: 0 .25em; border-radius: 3px; }
img { max-width: 100%; height: auto; display: block; margin: .6em 0; }
p.caption { color: #444; font-size: 13.5px; margin-top: 0; }
p.skipped { color: #666; font-style: italic; }
"""

_TABLE_SPLIT = re.compile(r"(?<!\\)\|")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def inline(text: str) -> str:
    """Escape ``text`` for HTML and apply the inline markup (code spans are left literal inside)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        out.append(_BOLD.sub(r"<strong>\1</strong>", html.escape(part, quote=False)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    cells = _TABLE_SPLIT.split(line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(lines: list[str]) -> str:
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th>{inline(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _block(lines: list[str]) -> str:
    """One block of consecutive non-blank lines as HTML."""
    first = lines[0]
    if first.startswith("#"):
        level = len(first) - len(first.lstrip("#"))
        text = first[level:].strip()
        anchor = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
        rest = _block(lines[1:]) if len(lines) > 1 else ""
        return f'<h{level} id="{anchor}">{inline(text)}</h{level}>' + (f"\n{rest}" if rest else "")
    if first.startswith("|") and len(lines) > 1 and set(lines[1].replace("|", "").strip()) <= set("-: "):
        return _table(lines)
    if first.startswith(">"):
        return f"<blockquote>{inline(' '.join(line.lstrip('> ').strip() for line in lines))}</blockquote>"
    if first.startswith("- "):
        items = "".join(f"<li>{inline(line[2:].strip())}</li>\n" for line in lines)
        return f"<ul>\n{items}</ul>"
    if (image := _IMAGE.match(first.strip())) and len(lines) == 1:
        alt, src = html.escape(image["alt"]), html.escape(image["src"])
        return f'<img src="{src}" alt="{alt}">'
    if first.startswith("_") and lines[-1].endswith("_"):
        return f'<p class="skipped">{inline(" ".join(lines)[1:-1])}</p>'
    return f"<p>{inline(' '.join(lines))}</p>"


def to_html(markdown: str, title: str, captions: set[str] | None = None) -> str:
    """A complete HTML page of ``markdown``; paragraphs in ``captions`` get the caption style."""
    blocks: list[list[str]] = [[]]
    for line in markdown.splitlines():
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    parts = []
    for block in filter(None, blocks):
        rendered = _block(block)
        if captions and " ".join(block) in captions:
            rendered = rendered.replace("<p>", '<p class="caption">', 1)
        parts.append(rendered)
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
