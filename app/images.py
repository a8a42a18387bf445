"""Images of a workspace: where a user's path is kept, and adding an image once it opens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from coframe.app.workspace import Workspace
from coframe.app.workspace_file import check_name
from coframe.volumes.open import open_volume
from coframe.volumes.volume import Volume


def image_location(path: str | Path) -> str:
    """A path or URL as coframe keeps it: URLs as given, local paths absolute."""
    text = str(path)
    return text if "://" in text else str(Path(text).expanduser().absolute())


def add_image(
    ws: Workspace,
    name: str,
    path: str | Path,
    *,
    modality: str | None = None,
    voxel_size: Sequence[float] | None = None,
    input_unit: str | None = None,
    space: str | None = None,
    force: bool = False,
) -> tuple[Workspace, Volume]:
    """Open an image (validating it) and add it to the workspace as ``name`` (not saved).

    The space's axes are declared (or checked) from the opened image, and its
    modality is the given one or the one its metadata tells.

    Returns
    -------
    tuple
        The new workspace and the opened image.
    """
    check_name(name, "NAME")
    if space is not None:
        check_name(space, "--space")
    location = image_location(path)
    volume = open_volume(
        location, unit=ws.unit, voxel_size=voxel_size, input_unit=input_unit, modality=modality
    )
    modality = modality or volume.modality
    ws = ws.add_image(
        name, location, modality, space, voxel_size, input_unit, force, axes=volume.axes
    )
    return ws, volume


def describe_added(ws: Workspace, name: str, volume: Volume) -> str:
    """The line ``coframe add`` prints about image ``name`` of ``ws``, opened as ``volume``."""
    img, level = ws.images[name], volume.levels[0]
    return (
        f"added {name} ({img.modality or 'unknown modality'}) in space {img.space}: {img.path}, "
        f"axes {list(volume.axes)}, shape {list(level.shape)}, voxel {list(level.voxel_size)} "
        f"{volume.unit}, {len(volume.levels)} level(s)"
    )
