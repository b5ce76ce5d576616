"""Small HTML building blocks for a self-contained report: escaped tables, embedded PNGs, inline CSS.

Nothing here references a network resource: images are ``data:`` URIs and the style sheet is inline,
so the file opens the same offline, attached to an email, or in a headless browser.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d2329; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
h3 { margin-top: 1.4em; } .muted { color: #636c76; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f3f5f7; } td:first-child, th:first-child { text-align: left; }
th.text { text-align: left; }
td.text { text-align: left; font-family: ui-monospace, monospace; white-space: pre-wrap; }
img { max-width: 100%; border: 1px solid #e3e6ea; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.15em; margin: .8em 0; }
.branch { font-weight: 600; } .leaf { padding-left: 1.6em; }
"""

MAX_JSON_ROWS = 60
"""Rows shown of a list or mapping rendered as a table; the rest is counted, not shown."""


def esc(value: object) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def accuracy_colour(accuracy: float) -> str:
    """Background colour from red (0) through yellow to green (1)."""
    hue = 120 * min(max(accuracy, 0.0), 1.0)
    return f"hsl({hue:.0f}, 70%, 78%)"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    text_columns: Sequence[int] = (),
    colours: Sequence[Sequence[str | None]] | None = None,
    row_classes: Sequence[str] = (),
) -> str:
    """An HTML table of already formatted strings (escaped here).

    ``text_columns`` are shown left-aligned in monospace (prompts, completions); ``colours`` gives an
    optional background per cell; ``row_classes`` a CSS class per row for its first cell.
    """
    head = "".join(
        f'<th class="text">{esc(h)}</th>' if j in text_columns else f"<th>{esc(h)}</th>"
        for j, h in enumerate(header)
    )
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            attrs = []
            if j in text_columns:
                attrs.append('class="text"')
            elif j == 0 and i < len(row_classes):
                attrs.append(f'class="{row_classes[i]}"')
            if colours is not None and colours[i][j]:
                attrs.append(f'style="background:{colours[i][j]}"')
            cells.append(f"<td {' '.join(attrs)}>{esc(cell)}</td>" if attrs else f"<td>{esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` holding ``png`` as a base64 data URI."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def figure_png(fig) -> bytes:
    """A matplotlib figure rendered to PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _inline(value: object) -> bool:
    """Shown in a single cell: a scalar or a list of scalars."""
    return _scalar(value) or isinstance(value, list) and all(_scalar(x) for x in value)


def _fmt(value: object) -> str:
    """A table cell: floats to 3 decimals, lists of scalars comma-joined, anything nested as JSON."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and _inline(value):
        return ", ".join(_fmt(v) for v in value)
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _rows_table(header: list[str], rows: list[list[str]]) -> str:
    more = len(rows) - MAX_JSON_ROWS
    note = f'<p class="muted">{more} more rows not shown.</p>' if more > 0 else ""
    return table(header, rows[:MAX_JSON_ROWS]) + note


def json_view(value: object, depth: int = 0) -> str:
    """Render parsed JSON of unknown shape (a teacher's view of its student) readably.

    A mapping's scalar fields form a two-column table and each nested field gets its own titled
    block, rendered the same way; a mapping of mappings, or a list of mappings, is one table with a
    column per key (deeper values shown as compact JSON in their cell). Tables are cut at
    ``MAX_JSON_ROWS`` rows with a note; below three levels everything is pretty-printed JSON.
    """
    if isinstance(value, dict) and value and depth < 3:
        if len(value) > 1 and all(isinstance(v, dict) for v in value.values()):
            keys = list(dict.fromkeys(k for v in value.values() for k in v))
            rows = [[str(name), *(_fmt(v.get(k)) for k in keys)] for name, v in value.items()]
            return _rows_table(["", *keys], rows)
        flat = [[str(k), _fmt(v)] for k, v in value.items() if _inline(v)]
        parts = [_rows_table(["field", "value"], flat)] if flat else []
        for k, v in value.items():
            if not _inline(v):
                parts.append(f'<p class="muted">{esc(k)}</p>' + json_view(v, depth + 1))
        return "\n".join(parts)
    if isinstance(value, list) and value and depth < 3 and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return _rows_table(keys, [[_fmt(v.get(k)) for k in keys] for v in value])
    if _inline(value):
        return f"<p>{esc(_fmt(value)) or '(empty)'}</p>"
    return f"<pre>{esc(json.dumps(value, indent=2)[:20_000])}</pre>"


def page(title: str, body: str) -> str:
    """A complete HTML document with the inline style sheet."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
