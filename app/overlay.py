"""``coframe overlay``: two workspace images in one frame, as pictures and a viewer export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coframe.app.channels import resolve_plane, workspace_channels
from coframe.app.viewer import export_viewer
from coframe.app.workspace import Workspace
from coframe.views.overlay_views import (
    Overlay,
    OverlayOptions,
    make_overlay,
    overlay_summary,
    write_overlay,
)


def overlay_in_workspace(ws: Workspace, a: str, b: str, options: OverlayOptions) -> Overlay:
    """Overlay of two workspace images (``coframe overlay A B``)."""
    ca, cb = workspace_channels(ws, a, b)
    options, plane_volume = resolve_plane(ws, options)
    return make_overlay(ws.graph(), ca, cb, options, unit=ws.unit, plane_volume=plane_volume)


def write_workspace_overlay(
    ws: Workspace,
    a: str,
    b: str,
    out: str | os.PathLike[str],
    options: OverlayOptions,
    *,
    viewer_out: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the overlay of images A and B, and with ``viewer_out`` their viewer export too.

    Returns
    -------
    The overlay's JSON-ready summary (:func:`coframe.views.overlay_views.overlay_summary`);
    its ``files`` are the pictures written, and ``viewer`` (with ``viewer_out``)
    the export's summary (:func:`coframe.app.viewer.export_viewer`).
    """
    overlay = overlay_in_workspace(ws, a, b, options)
    files = write_overlay(overlay, Path(out), force=force)
    summary = overlay_summary(overlay, files)
    if viewer_out is not None:
        summary["viewer"] = export_viewer(ws, a, b, viewer_out, options, force=force)
    return summary
