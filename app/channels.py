"""Two workspace images as overlay channels, and the plane of a located section.

Shared by ``coframe overlay`` (:mod:`coframe.app.overlay`) and
``coframe export-viewer`` (:mod:`coframe.app.viewer`).
"""

from __future__ import annotations

from dataclasses import replace

from coframe.app.workspace import Workspace
from coframe.core.errors import WorkspaceError
from coframe.views.overlay_views import Channel, OverlayOptions
from coframe.volumes.volume import Volume


def workspace_channels(ws: Workspace, a: str, b: str) -> tuple[Channel, Channel]:
    """Open two workspace images as overlay channels."""
    if a not in ws.images or b not in ws.images:
        missing = a if a not in ws.images else b
        raise WorkspaceError(
            f"unknown image {missing!r} in {ws.file}: known images {', '.join(ws.images) or '-'} "
            f"(add it with `coframe add`)"
        )
    return (
        Channel(a, ws.open_image(a), ws.images[a].space),
        Channel(b, ws.open_image(b), ws.images[b].space),
    )


def resolve_plane(ws: Workspace, options: OverlayOptions) -> tuple[OverlayOptions, Volume | None]:
    """Options whose ``plane`` names a space, and the image living in it (if any).

    ``--plane`` may name a space, an image (its space is used) or an edge
    ``SPACE -> VOLUME`` (its source space is used).
    """
    if options.plane is None:
        return options, None
    name = options.plane.split("->")[0].strip()
    try:
        space = ws.space_of(name)
    except WorkspaceError as e:
        raise WorkspaceError(f"--plane {options.plane!r}: {e}") from e
    names = sorted(ws.images_in(space), key=lambda n: ws.images[n].modality == "labels")
    volume = ws.open_image(names[0]) if names else None
    return replace(options, plane=space), volume
