"""Self-contained HTML for reports: a page of sections with inline CSS, sortable tables, figures as files or base64."""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Page", "cell", "definitions", "details", "figure", "note", "table"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24; background: #f4f5f7;
       margin: 0; }
header { background: #1f2d3d; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #c9d3de; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #d8dde3; padding: 6px 28px; }
nav a { margin-right: 14px; color: #2357a4; text-decoration: none; white-space: nowrap; }
main { max-width: 1400px; margin: 0 auto; padding: 8px 28px 40px; }
section { background: #fff; border: 1px solid #d8dde3; border-radius: 6px; margin: 16px 0; padding: 4px 20px 16px; }
h2 { font-size: 17px; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.note { color: #5a6470; font-style: italic; }
.warn { background: #fff4d6; border-left: 4px solid #e0a100; padding: 6px 10px; }
figure { margin: 10px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #4a5360; font-size: 13px; max-width: 900px; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid #e3e6ea; display: inline-block; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; border-bottom: 1px solid #eceef1; text-align: left; white-space: nowrap; }
td.num { text-align: right; }
thead th { position: sticky; top: 0; background: #eef1f5; z-index: 1; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #9aa3ad; }
th.asc::after { content: " \\2191"; color: #1b1f24; }
th.desc::after { content: " \\2193"; color: #1b1f24; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dt { color: #5a6470; }
dd { margin: 0; }
details pre { background: #f6f8fa; padding: 8px; max-height: 420px; overflow: auto; font-size: 12px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 14px; height: 14px; vertical-align: -2px; margin-right: 4px; border: 1px solid #555; }
"""

# Sort a table by a clicked header: numbers by value (data-v), text alphabetically; click again to reverse.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      function key(row) { var c = row.cells[col]; return c.hasAttribute("data-v") ? parseFloat(c.getAttribute("data-v")) : c.textContent; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var d = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def cell(value: Any, digits: int = 3) -> str:
    """One ``<td>``: numbers right-aligned with their value in ``data-v`` (for sorting); ``None`` / NaN / -1 floats: ``-``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"<td>{html.escape(str(value))}</td>"
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, float) and (math.isnan(value) or value == -1.0):
        return '<td class="num" data-v="-1e308">-</td>'
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return f'<td class="num" data-v="{value!r}">{text}</td>'


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = True, scroll: bool = True,
          digits: int = 3, table_id: str | None = None) -> str:  # fmt: skip
    """An HTML table (header row ``columns``, one ``<tr>`` per row, see :func:`cell`), sortable by
    clicking a header, inside a scrolling box (sticky header) when ``scroll``."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(v, digits) for v in row) + "</tr>" for row in rows)
    attrs = (f' id="{html.escape(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    out = f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{out}</div>' if scroll else out


def definitions(items: dict[str, Any]) -> str:
    """A two-column list of facts (``<dl>``); values are escaped."""
    return "<dl>" + "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items.items()) + "</dl>"


def details(summary: str, text: str) -> str:
    """A collapsed ``<details>`` block showing ``text`` preformatted (e.g. a config file)."""
    return f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>"


def note(text: str, warn: bool = False) -> str:
    """A paragraph explaining what is missing or how to read something (escaped)."""
    return f'<p class="{"warn" if warn else "note"}">{html.escape(text)}</p>'


def figure(src: str, caption: str = "", alt: str = "", width: int | None = None) -> str:
    """An ``<img>`` with its caption (``src`` from :meth:`Page.image`)."""
    size = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt or caption)}"{size}>{cap}</figure>'


class Page:
    """An HTML page of titled sections, written to ``out_dir / name``.

    Args:
        out_dir: the folder of the page; images are referenced relative to it.
        title: the page's heading; subtitle: a line under it.
        embed: put images into the page as base64 ``data:`` URIs (one file to pass around) instead of
            linking the files beside it.
    """

    def __init__(self, out_dir: str | Path, title: str, subtitle: str = "", embed: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.title = title
        self.subtitle = subtitle
        self.embed = embed
        self.sections: list[tuple[str, str, str]] = []

    def image(self, path: str | Path) -> str:
        """The ``src`` of an image file: relative to the page, or a base64 ``data:`` URI when embedding."""
        path = Path(path)
        if self.embed:
            kind = {"jpg": "jpeg", "jpeg": "jpeg", "svg": "svg+xml"}.get(path.suffix.lstrip(".").lower(), "png")
            return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return Path(os.path.relpath(path, self.out_dir)).as_posix()

    def add(self, section_id: str, title: str, body: str) -> None:
        """Append a ``<section id=section_id>`` with heading ``title`` and the (already HTML) ``body``."""
        self.sections.append((section_id, title, body))

    def render(self) -> str:
        """The whole page as one string: inline CSS and script, no network access."""
        nav = "".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t, _ in self.sections)
        body = "".join(f'<section id="{i}"><h2>{html.escape(t)}</h2>{b}</section>' for i, t, b in self.sections)
        sub = f"<p>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        return (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>'
            f"<header><h1>{html.escape(self.title)}</h1>{sub}</header><nav>{nav}</nav><main>{body}</main>"
            f"<script>{_JS}</script></body></html>"
        )

    def write(self, name: str = "report.html") -> Path:
        """Write :meth:`render` to ``out_dir / name`` (UTF-8) and return the path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        path.write_text(self.render(), encoding="utf-8")
        return path
