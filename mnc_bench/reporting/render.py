"""A report as a list of blocks, written as Markdown (``report.md``) and as one self-contained HTML page
(``report.html``: styles inline, figures embedded as base64 PNG, no scripts, nothing fetched)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph; `backticks` mark code."""

    text: str


@dataclass(frozen=True)
class Alert:
    """A warning the reader must see before the numbers, e.g. runs trained from uncommitted code."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    bold: frozenset[tuple[int, int]] = field(default_factory=frozenset)  # (row, column) cells to mark best
    table_id: str = ""


@dataclass(frozen=True)
class Image:
    path: str  # relative to the report folder
    caption: str


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Text | Alert | Bullets | Table | Image | Code

_CODE_SPAN = re.compile(r"`([^`]+)`")
_NUMERIC = re.compile(r"^[-+−]?\d|^—$")  # right-aligned cells: numbers, intervals, the missing mark


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            out.append(block.text)
        elif isinstance(block, Alert):
            out.append(f"> **Warning:** {block.text}")
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                     "|" + "|".join("---" for _ in block.header) + "|"]
            for i, row in enumerate(block.rows):
                cells = [f"**{c}**" if (i, j) in block.bold else c for j, c in enumerate(row)]
                lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*")
        elif isinstance(block, Code):
            out.append(f"```\n{block.text}\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return _CODE_SPAN.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; white-space: nowrap; }
td:not(.n) { min-width: 8em; }
thead th { border-bottom: 2px solid #444; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; width: 495px; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; max-width: 700px; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
code { font-size: 0.9em; }
p.warning { background: #fff4e5; border-left: 4px solid #e08a00; padding: 0.6em 0.8em; }
"""


def to_html(blocks: list[Block], title: str, root: Path) -> str:
    """The page; images are read from ``root`` / path and embedded."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Alert):
            body.append('<p class="warning" role="alert"><strong>Warning:</strong> '
                        f"{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            attr = f' id="{html.escape(block.table_id)}"' if block.table_id else ""
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            rows = []
            for i, row in enumerate(block.rows):
                cells = []
                for j, text in enumerate(row):
                    content = (f"<strong>{html.escape(text)}</strong>" if (i, j) in block.bold
                               else html.escape(text))
                    cells.append(f'<td class="n">{content}</td>' if _NUMERIC.match(text)
                                 else f"<td>{content}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            body.append(f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode((root / block.path).read_bytes()).decode("ascii")
            caption = html.escape(block.caption)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                        f"<figcaption>{caption}</figcaption></figure>")
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
