"""The report's Markdown as a self-contained HTML page: inline CSS, no scripts, no external URLs.

Only the Markdown the report itself writes is converted: ATX headings, pipe tables (with ``\\|``
escapes), block quotes, ``- `` lists (nested by two spaces), images ``![alt](src)``, ``_notes_`` (a
paragraph in italics), ``<details>`` / ``<summary>text</summary>`` / ``</details>`` lines (a
collapsed part, as GitHub renders it), other paragraphs, and inline ``**bold**``, ``code`` and links
to anchors of the page ``[text](#id)``. Text is HTML-escaped before the inline markup is applied.

Headings get GitHub's ids (:func:`heading_ids`): lower case, punctuation dropped, spaces as hyphens,
``-1``, ``-2`` ... after repeats; so a link ``[text](#id)`` works on the page and in the Markdown on
GitHub alike, and no two elements share an id.
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
details { margin: .4em 0 1.2em; } summary { cursor: pointer; color: #0b4f8a; }
nav ul, ul.toc { margin: .3em 0; } a { color: #0b4f8a; text-decoration: none; } a:hover { text-decoration: underline; }
img { max-width: 100%; height: auto; display: block; margin: .6em 0; }
p.caption { color: #444; font-size: 13.5px; margin-top: 0; }
p.skipped { color: #666; font-style: italic; }
"""

_TABLE_SPLIT = re.compile(r"(?<!\\)\|")
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\((#[^)\s\"<>]*)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_SUMMARY = re.compile(r"^<summary>(.*)</summary>$")


def slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, every character but letters, digits, ``_``, ``-``
    and spaces dropped, spaces as hyphens."""
    text = text.replace("`", "").replace("**", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def heading_ids(markdown: str) -> list[tuple[int, str, str]]:
    """Every ATX heading of ``markdown`` in order as (level, text, id); ids are unique, repeats
    numbered as GitHub numbers them (``x``, ``x-1``, ``x-2``)."""
    counts: dict[str, int] = {}
    out = []
    for line in markdown.splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match[2]) or "section"
        anchor = base
        while anchor in counts:
            counts[base] += 1
            anchor = f"{base}-{counts[base]}"
        counts[anchor] = 0
        out.append((len(match[1]), match[2], anchor))
    return out


def inline(text: str) -> str:
    """Escape ``text`` for HTML and apply the inline markup (code spans are left literal inside)."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        text = _BOLD.sub(r"<strong>\1</strong>", html.escape(part, quote=False))
        out.append(_LINK.sub(r'<a href="\2">\1</a>', text))
    return "".join(out)


def _cells(line: str) -> list[str]:
    cells = _TABLE_SPLIT.split(line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(lines: list[str]) -> str:
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    head = "".join(f"<th>{inline(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _list(lines: list[str]) -> str:
    """``- `` items, those indented by two spaces nested in the item before them."""
    html_lines, depth = ["<ul>"], 0
    for line in lines:
        level = (len(line) - len(line.lstrip(" "))) // 2
        while depth < level:
            html_lines[-1] = html_lines[-1].removesuffix("</li>")
            html_lines.append("<ul>")
            depth += 1
        while depth > level:
            html_lines += ["</ul>", "</li>"]
            depth -= 1
        html_lines.append(f"<li>{inline(line.strip()[2:].strip())}</li>")
    while depth > 0:
        html_lines += ["</ul>", "</li>"]
        depth -= 1
    return "\n".join(html_lines + ["</ul>"])


def _details(lines: list[str]) -> str | None:
    """A block of ``<details>``, ``<summary>text</summary>`` and ``</details>`` lines, or None."""
    out = []
    for line in lines:
        line = line.strip()
        if line in ("<details>", "</details>"):
            out.append(line)
        elif summary := _SUMMARY.match(line):
            out.append(f"<summary>{inline(summary[1])}</summary>")
        else:
            return None
    return "\n".join(out)


def _block(lines: list[str], anchor: str = "") -> str:
    """One block of consecutive non-blank lines as HTML (a heading is a block of its own, with id ``anchor``)."""
    first = lines[0]
    if heading := _HEADING.match(first):
        return f'<h{len(heading[1])} id="{anchor}">{inline(heading[2])}</h{len(heading[1])}>'
    if first.startswith("|") and len(lines) > 1 and set(lines[1].replace("|", "").strip()) <= set("-: "):
        return _table(lines)
    if first.startswith(">"):
        return f"<blockquote>{inline(' '.join(line.lstrip('> ').strip() for line in lines))}</blockquote>"
    if first.startswith("- ") and all(line.lstrip(" ").startswith("- ") for line in lines):
        return _list(lines)
    if first.startswith("<") and (details := _details(lines)) is not None:
        return details
    if (image := _IMAGE.match(first.strip())) and len(lines) == 1:
        alt, src = html.escape(image["alt"]), html.escape(image["src"])
        return f'<img src="{src}" alt="{alt}">'
    if first.startswith("_") and lines[-1].endswith("_"):
        return f'<p class="skipped">{inline(" ".join(lines)[1:-1])}</p>'
    return f"<p>{inline(' '.join(lines))}</p>"


def to_html(markdown: str, title: str, captions: set[str] | None = None) -> str:
    """A complete HTML page of ``markdown``; paragraphs in ``captions`` get the caption style."""
    anchors = [anchor for _, _, anchor in heading_ids(markdown)]
    blocks: list[list[str]] = [[]]
    for line in markdown.splitlines():
        if _HEADING.match(line):  # a heading is a block of its own, as it ends a paragraph in Markdown
            blocks += [[line], []]
        elif line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    parts = []
    for block in filter(None, blocks):
        rendered = _block(block, anchors.pop(0) if _HEADING.match(block[0]) else "")
        if captions and " ".join(block) in captions:
            rendered = rendered.replace("<p>", '<p class="caption">', 1)
        parts.append(rendered)
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
