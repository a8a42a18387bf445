"""HTML building blocks of the QC report: one self-contained page, no external files.

Pictures are embedded as base64 PNG data URIs, the style sheet is inline and
the only script is a one-line marker that tells a headless browser the page
ran. Every text that comes from a workspace goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np

from coframe.views.render import png_bytes

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;
 background:#f4f5f7;color:#1d1f23}
header{background:#20232a;color:#f0f0f0;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:22px}
header p{margin:2px 0;color:#b8bcc4;font-size:13px}
main{padding:18px 28px;max-width:1400px}
section{background:#fff;border:1px solid #dde0e5;border-radius:6px;margin:0 0 18px 0;
 padding:14px 18px}
h2{font-size:18px;margin:0 0 10px 0}
h3{font-size:15px;margin:14px 0 6px 0}
table{border-collapse:collapse;font-size:13px;margin:4px 0 8px 0}
th,td{border:1px solid #dde0e5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figure img{display:block;max-width:100%;border:1px solid #c9cdd3;image-rendering:pixelated}
figcaption{font-size:12px;color:#50555e;margin-top:3px}
.tag{display:inline-block;border-radius:3px;padding:1px 6px;font-size:12px;margin-left:6px}
.reg{background:#e3f1ff;color:#0b4d8c}.sec{background:#efe6ff;color:#5a2a9c}
.lnk{background:#eceff2;color:#3c424b}
.err{color:#a11;font-size:13px}
pre{background:#f6f7f9;border:1px solid #e1e4e8;padding:8px;font-size:12px;overflow:auto;
 max-height:320px}
.muted{color:#6a707a;font-size:13px}
"""

#: The page's only script: marks the body once the page has run.
READY_SCRIPT = "document.body.setAttribute('data-report-ready','yes');"


def data_uri(rgb: np.ndarray) -> str:
    """An RGB picture as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def figure(rgb: np.ndarray, caption: str, width: int | None = None) -> str:
    """An ``<figure>`` with an embedded picture and its caption."""
    style = f' style="width:{int(width)}px"' if width else ""
    return (
        f'<figure><img src="{data_uri(rgb)}" alt="{escape(caption)}"{style}>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def fmt(value: Any) -> str:
    """A value as short text: numbers with 4 significant digits, lists compact."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, list | tuple) for v in value):
            return "[" + ", ".join(fmt(v) for v in value) + "]"
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    return str(value)


def key_table(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of names and values (a mapping value becomes a nested table)."""
    body = "".join(
        f"<tr><th>{escape(str(k))}</th><td>"
        + (key_table(list(v.items())) if isinstance(v, Mapping) and v else escape(fmt(v)))
        + "</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>" if body else ""


def grid_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table with a header row."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(fmt(c))}</td>'
            if isinstance(c, int | float) and not isinstance(c, bool)
            else f"<td>{escape(fmt(c))}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def matrix_table(matrix: Any) -> str:
    """A small matrix as a table of numbers."""
    m = np.atleast_2d(np.asarray(matrix, dtype=float))
    rows = "".join(
        "<tr>" + "".join(f'<td class="num">{v:.6g}</td>' for v in row) + "</tr>" for row in m
    )
    return f"<table>{rows}</table>"


def details(summary: str, content: Any) -> str:
    """A collapsed block (no script needed) holding JSON text."""
    text = json.dumps(content, indent=2, default=str, ensure_ascii=False)
    return f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


def svg_graph(
    spaces: Sequence[tuple[str, str]],
    edges: Sequence[tuple[str, str, str]],
    width: int = 760,
) -> str:
    """An SVG diagram of the space graph: spaces on a circle, edges as labelled arrows.

    Parameters
    ----------
    spaces
        (name, subtitle) per space.
    edges
        (source, target, label) per edge.
    width
        Width of the drawing in pixels.
    """
    n = max(1, len(spaces))
    height = 120 if n <= 2 else min(520, 180 + 40 * n)
    cx, cy = width / 2, height / 2
    rx, ry = (width / 2 - 110, height / 2 - 40) if n > 2 else (width / 2 - 140, 0)
    pos: dict[str, tuple[float, float]] = {}
    for i, (name, _) in enumerate(spaces):
        angle = math.pi + 2 * math.pi * i / n if n > 2 else math.pi * (1 - i)
        pos[name] = (cx + rx * math.cos(angle), cy + ry * math.sin(angle))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="space graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#3b5b8c"/></marker></defs>',
    ]
    half_w, half_h = 62, 20
    for src, dst, label in edges:
        if src not in pos or dst not in pos:
            continue
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy) or 1.0
        # leave the node boxes: shorten by the box half-size along the direction
        t = min(half_w / abs(dx) if dx else math.inf, half_h / abs(dy) if dy else math.inf)
        sx, sy = x0 + dx * t, y0 + dy * t
        ex, ey = x1 - dx * t, y1 - dy * t
        mx, my = (sx + ex) / 2 - 8 * dy / length, (sy + ey) / 2 + 8 * dx / length
        parts.append(
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#3b5b8c" '
            f'stroke-width="1.6" marker-end="url(#arrow)"/>'
        )
        parts.append(
            f'<text x="{mx:.1f}" y="{my:.1f}" font-size="11" text-anchor="middle" '
            f'fill="#3b5b8c">{escape(label)}</text>'
        )
    for name, subtitle in spaces:
        x, y = pos[name]
        parts.append(
            f'<rect x="{x - half_w:.1f}" y="{y - half_h:.1f}" width="{2 * half_w}" '
            f'height="{2 * half_h}" rx="6" fill="#ffffff" stroke="#20232a" stroke-width="1.4"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{y - 3:.1f}" font-size="13" font-weight="600" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{y + 12:.1f}" font-size="10" fill="#555" '
            f'text-anchor="middle">{escape(subtitle)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def page(title: str, subtitle_lines: Sequence[str], sections: Sequence[str]) -> str:
    """The whole HTML document."""
    subs = "".join(f"<p>{escape(s)}</p>" for s in subtitle_lines)
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{escape(title)}</h1>{subs}</header><main>\n{body}\n</main>"
        f"<script>{READY_SCRIPT}</script></body></html>\n"
    )
