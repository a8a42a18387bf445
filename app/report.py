"""The QC report of a workspace: one self-contained HTML page (``coframe report``).

The page shows every space and edge of the workspace graph, then one card per
edge:

- a **registration** edge (its provenance holds a method, metric, TRE or
  Jacobian statistics) lists its method and parameters, the metric before and
  after, the target registration error, the Jacobian statistics, and overlays
  of its two images *before* (the provenance's initial transform, else the
  images' own geometry) and *after* (the edge);
- a **located section** (an edge from a 2D space into a 3D one) shows its
  pose, its confidence, and the section beside the volume slice it matched;
- any other edge shows its kind, file and an overlay through it.

Provenance keys are looked up at the top level and inside ``metric``,
``qc``, ``parameters`` and ``result``, so estimators may group them as they
like. An edge that cannot be shown (missing image, unreadable file) gets its
one-line error in its card; the rest of the page is still written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.workspace import EdgeEntry, Workspace
from coframe.core.atomic import refuse_existing, write_text_atomic
from coframe.core.errors import CoframeError, MetadataError, WorkspaceError
from coframe.core.units import unit_factor
from coframe.transforms.affine import Affine, Identity
from coframe.transforms.base import Transform
from coframe.transforms.formats.bigwarp import read_bigwarp_landmarks
from coframe.transforms.formats.dispatch import read_transform
from coframe.transforms.graph import describe_graph
from coframe.views.overlay_views import Channel, OverlayOptions, build_planes, make_overlay
from coframe.views.points_marks import mark_points
from coframe.views.render import Panel, panel_grid, render_mode, upscale, zoom_factor
from coframe.views.report_html import (
    details,
    figure,
    grid_table,
    key_table,
    matrix_table,
    page,
    svg_graph,
)

#: Where provenance values may be grouped.
_GROUPS = ("metric", "metrics", "qc", "parameters", "result")
#: Modes shown for each overlay in the report.
REPORT_MODES = ("composite", "checkerboard", "difference")


@dataclass
class EdgeCard:
    """What the report shows about one edge.

    Parameters
    ----------
    edge
        The workspace edge.
    role
        ``registration``, ``section`` or ``link``.
    facts
        (name, value) rows of the summary table.
    html
        Extra HTML blocks (tables, figures), in order.
    error
        One-line error if the edge could not be shown fully.
    """

    edge: EdgeEntry
    role: str
    facts: list[tuple[str, Any]] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    error: str | None = None


def find_value(prov: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` found in a provenance record (top level, then its groups)."""
    for name in names:
        if name in prov:
            return prov[name]
    for group in _GROUPS:
        inner = prov.get(group)
        if isinstance(inner, Mapping):
            for name in names:
                if name in inner:
                    return inner[name]
    return None


def edge_role(ws: Workspace, edge: EdgeEntry) -> str:
    """``section`` for a 2D -> 3D edge, ``registration`` when provenance tells how it was
    estimated, else ``link``."""
    spaces = ws.all_spaces()
    src, dst = spaces[edge.source].axes, spaces[edge.target].axes
    if src is not None and dst is not None and len(src) == 2 and len(dst) == 3:
        return "section"
    prov = edge.provenance
    command = str(prov.get("command", ""))
    if " locate " in f" {command} ":
        return "section"
    if find_value(prov, "method", "tre", "jacobian") is not None or " register " in f" {command} ":
        return "registration"
    return "link"


def _image_in(ws: Workspace, space: str) -> str | None:
    names = ws.images_in(space)
    names.sort(key=lambda n: ws.images[n].modality == "labels")
    return names[0] if names else None


def _channels(ws: Workspace, edge: EdgeEntry) -> tuple[Channel, Channel]:
    a_name, b_name = _image_in(ws, edge.source), _image_in(ws, edge.target)
    if a_name is None or b_name is None:
        missing = edge.source if a_name is None else edge.target
        raise WorkspaceError(f"no image in space {missing!r} to show (add one with `coframe add`)")
    return (
        Channel(a_name, ws.open_image(a_name), edge.source),
        Channel(b_name, ws.open_image(b_name), edge.target),
    )


def _initial_transform(ws: Workspace, prov: Mapping[str, Any], dim: int) -> tuple[Transform, str]:
    initial = find_value(prov, "initial", "initial_transform", "init_edge", "init")
    if isinstance(initial, Mapping) and "matrix" in initial:
        source = f" ({initial['source']})" if initial.get("source") else ""
        return Affine(np.asarray(initial["matrix"], float)), f"initial transform{source}"
    if isinstance(initial, list):
        return Affine(np.asarray(initial, float)), "initial transform"
    if isinstance(initial, str) and initial:
        if "->" in initial:
            src, _, dst = (part.strip() for part in initial.partition("->"))
            for e in ws.edges:
                if (e.source, e.target) == (src, dst):
                    return ws.load_edge(e), f"initial edge {src} -> {dst}"
        path = ws.resolve(initial)
        if Path(path).exists():
            return read_transform(path, unit=ws.unit), f"initial transform {initial}"
    return Identity(dim), "identity: the images' own geometry"


def _overlay_figures(
    ws: Workspace,
    a: Channel,
    b: Channel,
    transform: Transform,
    label: str,
    size: int,
    limits: tuple[Any, Any] | None = None,
) -> tuple[str, Any]:
    options = OverlayOptions(modes=REPORT_MODES, size=size)
    graph = ws.graph()
    planes = build_planes(graph, a, b, options, ws.unit)
    if limits is not None:
        options = OverlayOptions(
            modes=REPORT_MODES, size=size, limits_a=limits[0], limits_b=limits[1]
        )
    dim = planes[0].dim
    ov = make_overlay(
        graph,
        a,
        b,
        options,
        unit=ws.unit,
        transform_a=Identity(dim),
        transform_b=transform,
        planes=planes,
    )
    title = f"{label}: A = {a.name} (magenta), B = {b.name} (green), frame {a.space}"
    return figure(ov.grid(title=title), label), ov


def _registration_card(ws: Workspace, edge: EdgeEntry, card: EdgeCard, size: int) -> None:
    prov = edge.provenance
    method = find_value(prov, "method", "methods", "steps")
    params = prov.get("parameters")
    card.facts.append(("method", method if method is not None else "-"))
    metric = find_value(prov, "metric", "metrics")
    rows = []
    if isinstance(metric, Mapping):
        name = metric.get("name", metric.get("metric", "metric"))
        if "before" in metric or "after" in metric:
            rows.append([str(name), metric.get("before", "-"), metric.get("after", "-")])
        for k, v in metric.items():
            if isinstance(v, Mapping) and ("before" in v or "after" in v):
                rows.append([k, v.get("before", "-"), v.get("after", "-")])
    if rows:
        card.html.append("<h3>Metric</h3>" + grid_table(["metric", "before", "after"], rows))
    tre = find_value(prov, "tre", "TRE")
    if tre is not None:
        tre_rows = list(tre.items()) if isinstance(tre, Mapping) else [("tre", tre)]
        card.html.append("<h3>Target registration error</h3>" + key_table(tre_rows))
    jac = find_value(prov, "jacobian", "jacobian_stats")
    if jac is not None:
        jac_rows = list(jac.items()) if isinstance(jac, Mapping) else [("jacobian", jac)]
        card.html.append("<h3>Jacobian determinant</h3>" + key_table(jac_rows))
    if isinstance(params, Mapping) and params:
        card.html.append("<h3>Parameters</h3>" + key_table(list(params.items())))
    a, b = _channels(ws, edge)
    after_t = ws.load_edge(edge)
    before_t, before_label = _initial_transform(ws, prov, after_t.input_dim)
    after_fig, ov = _overlay_figures(ws, a, b, after_t, "after (with the edge)", size)
    before_fig, _ = _overlay_figures(
        ws, a, b, before_t, f"before ({before_label})", size, (ov.limits_a, ov.limits_b)
    )
    card.html.append("<h3>Overlays before and after</h3>" + before_fig + after_fig)
    nuclei = _nuclei_figure(ws, edge, a, ov)
    if nuclei:
        card.html.append("<h3>Matched nuclei</h3>" + nuclei)


#: Ring radius of a matched nucleus in the report, and how far from a slice it is shown (µm).
NUCLEUS_RING_UM = (3.0, 3.0)


def _nuclei_figure(ws: Workspace, edge: EdgeEntry, a: Channel, ov: Any) -> str:
    """The matched nuclei of a nuclei registration (BigWarp CSV beside the edge) as rings."""
    given = edge.provenance.get("nuclei_landmarks")
    path = (
        Path(given) if given else ws.root / f"transforms/{edge.source}-to-{edge.target}.nuclei.csv"
    )
    if not path.is_file():
        return ""
    pairs = read_bigwarp_landmarks(path, unit=ws.unit)
    points = pairs.fixed if a.space == edge.source else pairs.moving
    um = unit_factor("micrometer", ws.unit)
    radius, depth = (v * um for v in NUCLEUS_RING_UM)
    panels = []
    for pair in ov.pairs:
        rgb, shown = mark_points(
            ov.render(pair, "composite", min_side=192), pair.plane, points, radius, depth
        )
        panels.append(Panel(rgb, f"{pair.plane.name} · {shown} nuclei"))
    title = f"{len(points)} matched nuclei (yellow) over the composite, frame {a.space}"
    return figure(panel_grid([panels], title), f"matched nuclei ({path.name})")


def _section_card(ws: Workspace, edge: EdgeEntry, card: EdgeCard, size: int) -> None:
    prov = edge.provenance
    pose = ws.load_edge(edge)
    affine = pose.as_affine()
    confidence = find_value(prov, "confidence", "score")
    card.facts.append(("confidence", confidence if confidence is not None else "-"))
    if affine is not None:
        lin = affine.linear
        card.facts.append(("pose origin (z, y, x)", affine.translation.tolist()))
        card.facts.append(("normal (z, y, x)", _normal(lin)))
        card.facts.append(("in-plane scale", np.linalg.norm(lin, axis=0).tolist()))
        card.html.append("<h3>Pose (section (y, x) -> volume (z, y, x))</h3>")
        card.html.append(matrix_table(affine.homogeneous))
    a, b = _channels(ws, edge)
    options = OverlayOptions(modes=("composite",), size=size)
    ov = make_overlay(
        ws.graph(), a, b, options, unit=ws.unit, transform_a=Identity(2), transform_b=pose
    )
    pair = ov.pairs[0]
    sa, sb = ov.display(pair)
    zoom = zoom_factor(sa.shape, 2 * size // 3)
    section = upscale(render_mode("blend", sa, sa), zoom)
    matched = upscale(render_mode("blend", sb, sb), zoom)
    small = 2 * size // 3
    card.html.append(
        "<h3>Section and matched slice</h3>"
        + figure(section, f"section {a.name}")
        + figure(matched, f"{b.name} on the section's plane")
        + figure(
            ov.render(pair, "composite", min_side=small),
            "composite (section magenta, volume green)",
        )
        + figure(ov.render(pair, "checkerboard", min_side=small), "checkerboard")
    )


def _normal(linear: np.ndarray) -> list[float]:
    if linear.shape != (3, 2):
        return []
    n = np.cross(linear[:, 0], linear[:, 1])
    norm = float(np.linalg.norm(n))
    return (n / norm).tolist() if norm > 0 else []


def _link_card(ws: Workspace, edge: EdgeEntry, card: EdgeCard, size: int) -> None:
    a, b = _channels(ws, edge)
    fig, _ = _overlay_figures(ws, a, b, ws.load_edge(edge), "through the edge", size)
    card.html.append("<h3>Overlay</h3>" + fig)


def edge_card(ws: Workspace, edge: EdgeEntry, size: int = 256) -> EdgeCard:
    """Gather what the report shows about one edge (errors become the card's ``error``)."""
    card = EdgeCard(edge, edge_role(ws, edge))
    card.facts += [
        ("kind", edge.kind or "-"),
        ("file", f"{edge.file} ({edge.format}, {edge.unit})"),
    ]
    prov = edge.provenance
    for key in ("command", "created"):
        if key in prov:
            card.facts.append((key, prov[key]))
    builders = {"registration": _registration_card, "section": _section_card, "link": _link_card}
    try:
        builders[card.role](ws, edge, card, size)
    except CoframeError as e:
        card.error = str(e)
    return card


def _card_html(index: int, card: EdgeCard) -> str:
    tag = {"registration": "reg", "section": "sec", "link": "lnk"}[card.role]
    label = {"registration": "registration", "section": "located section", "link": "link"}
    e = card.edge
    parts = [
        f'<section id="edge-{index}"><h2>{escape(e.source)} &rarr; {escape(e.target)}'
        f'<span class="tag {tag}">{label[card.role]}</span></h2>',
        key_table(card.facts),
    ]
    if card.error:
        parts.append(f'<p class="err">cannot show this edge: {escape(card.error)}</p>')
    parts += card.html
    if e.provenance:
        parts.append(details("full provenance", dict(e.provenance)))
    parts.append("</section>")
    return "".join(parts)


def check_size(size: int) -> None:
    """Refuse a report view size below one pixel (``--size``), which no card could draw.

    Raises
    ------
    MetadataError
        If ``size`` is below 1.
    """
    if size < 1:
        raise MetadataError(
            f"--size {size}: expected a positive number of pixels (the longest side of each "
            "overlay view, e.g. 256)"
        )


def build_report(ws: Workspace, *, size: int = 256) -> str:
    """The report of a workspace as one HTML document.

    Parameters
    ----------
    ws
        The workspace.
    size
        Longest side of each overlay view in pixels.

    Raises
    ------
    MetadataError
        If ``size`` is not a positive number of pixels.
    """
    check_size(size)

    desc = describe_graph(ws)
    spaces = []
    rows = []
    for s in desc["spaces"]:
        axes = "".join(s["axes"]) if s["axes"] else "?"
        imgs = ", ".join(f"{i['name']} ({i['modality'] or '?'})" for i in s["images"])
        spaces.append((s["name"], f"{axes} · {len(s['images'])} image(s)"))
        rows.append([s["name"], ",".join(s["axes"] or []) or "?", imgs or "-"])
    edges = [(e["from"], e["to"], e.get("kind") or "?") for e in desc["edges"]]
    graph_html = (
        '<section id="graph"><h2>Spaces and transforms</h2>'
        + svg_graph(spaces, edges)
        + grid_table(["space", "axes", "images"], rows)
        + grid_table(
            ["from", "to", "kind", "file", "made by"],
            [
                [e["from"], e["to"], e.get("kind") or e.get("error", "?"), e["file"]]
                + [e["provenance"].get("command", "-")]
                for e in desc["edges"]
            ],
        )
        + f'<p class="muted">connected components: '
        f"{escape(' | '.join('{' + ', '.join(c) + '}' for c in desc['components']))}</p>"
        "</section>"
    )
    cards = [_card_html(i, edge_card(ws, e, size)) for i, e in enumerate(ws.edges)]
    if not cards:
        cards = [
            '<section><p class="muted">No edges yet: add one with <code>coframe link</code>, '
            "<code>coframe register</code> or <code>coframe locate</code>.</p></section>"
        ]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    subtitle = [f"workspace {ws.root}", f"unit {ws.unit} · written {now}"]
    return page(f"coframe report: {ws.root.name}", subtitle, [graph_html, *cards])


def write_report(
    ws: Workspace,
    out: str | os.PathLike[str] | None = None,
    *,
    size: int = 256,
    force: bool = False,
) -> Path:
    """Write the report atomically (default ``report.html`` in the workspace directory).

    Raises
    ------
    MetadataError
        If ``size`` is not a positive number of pixels.
    OverwriteError
        If the file exists and ``force`` is false.
    """

    check_size(size)
    target = Path(out) if out is not None else ws.root / "report.html"
    refuse_existing(target, force)
    return write_text_atomic(target, build_report(ws, size=size), force=force)
