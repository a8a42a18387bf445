"""A napari reader (npe2 plugin ``coframe``) for a workspace: every image placed in one space.

napari opens a workspace given as its directory or its ``coframe.yaml``::

    napari ws/coframe.yaml --plugin coframe           # the default space
    napari 'ws/coframe.yaml#xray' --plugin coframe    # every image placed in space xray

The space the images are shown in is, in order of preference: the ``#SPACE``
suffix of the path, the environment variable :data:`SPACE_VARIABLE`
(``COFRAME_NAPARI_SPACE``), or the workspace's first space (the first one
declared in ``coframe.yaml``, usually the space of the first image added). An
image name instead of a space name means that image's space.

Each image becomes one layer, ``labels`` for a labels image (modality
``labels``: ids are never interpolated), else ``image``. Its data is a list
of dask arrays, one per pyramid level (multiscale), read chunk by chunk when
napari draws them: opening reads no voxel. Its placement is napari's
``scale`` and ``translate`` (the finest level's voxel size and the centre of
voxel 0, in the workspace unit) followed by ``affine``, the chain from the
image's space into the chosen one (:meth:`~coframe.transforms.graph.SpaceGraph.transform`).
A 2D section placed in a 3D space by a 2D -> 3D affine is given a leading
axis of one voxel, as thick as its pixels, laid along the section's normal.

An image that cannot be placed by an affine is skipped with a
:class:`~coframe.core.errors.CoframeWarning` naming the way forward: a chain
that is not affine (B-spline, displacement field, landmark warp: resample it
with ``coframe resample``, or open the workspace in its own space), no chain,
or a volume shown in a section's space. napari draws each coarser level by
the ratio of its shape to the finest level's, so a pyramid whose levels are
offset by half a voxel (OME-Zarr, CellMap) shows its coarse levels shifted by
up to half a coarse voxel; the finest level is placed exactly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.workspace import Workspace, load_workspace
from coframe.app.workspace_file import WORKSPACE_FILE, listing
from coframe.core.errors import CoframeError, CoframeWarning, WorkspaceError
from coframe.transforms.affine import Affine
from coframe.transforms.graph import SpaceGraph

#: Environment variable naming the space the reader places every image in.
SPACE_VARIABLE = "COFRAME_NAPARI_SPACE"

#: A napari layer data tuple: data, layer keyword arguments, layer type.
LayerData = tuple[Any, dict[str, Any], str]


class _Skip(Exception):
    """An image that cannot be shown in the chosen space, with the reason."""


def split_space(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The workspace location and the ``#SPACE`` suffix (``None`` without one) of a path."""
    text = os.fspath(path)
    location, sep, space = text.rpartition("#")
    if not sep or not space or "/" in space or os.sep in space:
        return Path(text), None
    return Path(location), space


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The npe2 reader command: :func:`read_workspace` for a workspace, else ``None``.

    Parameters
    ----------
    path
        A workspace directory or ``coframe.yaml`` path, with an optional
        ``#SPACE`` suffix; a list of several paths is refused.
    """
    if not isinstance(path, str | os.PathLike):
        if len(path) != 1:
            return None
        path = path[0]
    location, _ = split_space(path)
    if location.is_dir():
        location = location / WORKSPACE_FILE
    return read_workspace if location.name == WORKSPACE_FILE and location.is_file() else None


def read_workspace(path: str | Sequence[str]) -> list[LayerData]:
    """Layer data of every image of a workspace, placed in one space.

    Parameters
    ----------
    path
        A workspace directory or ``coframe.yaml`` path, with an optional
        ``#SPACE`` suffix naming the space (else :data:`SPACE_VARIABLE`, else
        the workspace's first space).

    Raises
    ------
    WorkspaceError
        If the space is unknown, or no image can be placed in it (the message
        gives each image's reason).
    """
    if not isinstance(path, str | os.PathLike):
        path = path[0]
    location, space = split_space(path)
    ws = load_workspace(location)
    return workspace_layers(ws, space or os.environ.get(SPACE_VARIABLE) or None)


def workspace_layers(ws: Workspace, space: str | None = None) -> list[LayerData]:
    """napari layer data of the images of ``ws`` placed in ``space``; see the module docstring.

    Images that cannot be placed are skipped, each with a
    :class:`~coframe.core.errors.CoframeWarning`.

    Raises
    ------
    WorkspaceError
        If ``space`` is unknown, the workspace has no image, or none can be placed.
    """
    frame = choose_space(ws, space)
    graph = ws.graph()
    layers: list[LayerData] = []
    skipped: list[str] = []
    for name in ws.images:
        try:
            layers.append(image_layer(ws, graph, name, frame))
        except _Skip as e:
            skipped.append(f"{name}: {e}")
            warnings.warn(
                CoframeWarning(f"napari: image {name!r} not shown in space {frame!r}: {e}"),
                stacklevel=2,
            )
    if not layers:
        reasons = "; ".join(skipped) or f"no images in {ws.file}"
        raise WorkspaceError(
            f"no image of {ws.file} can be shown in space {frame!r} ({reasons}): "
            f"open it as {ws.file}#SPACE with another space, or add images with `coframe add`"
        )
    return layers


def choose_space(ws: Workspace, space: str | None) -> str:
    """The space to show: ``space`` (a space or image name), else the workspace's first space.

    Raises
    ------
    WorkspaceError
        If ``space`` is unknown (the message lists the spaces), or the workspace has none.
    """
    spaces = ws.all_spaces()
    if space is None:
        if not spaces:
            raise WorkspaceError(
                f"{ws.file} has no images or spaces to show: add images with `coframe add`"
            )
        return next(iter(spaces))
    if space in spaces:
        return space
    if space in ws.images:
        return ws.images[space].space
    raise WorkspaceError(
        f"unknown space {space!r} for napari in {ws.file}: known spaces {listing(spaces)} "
        f"(the path's #SPACE suffix or {SPACE_VARIABLE})"
    )


def image_layer(ws: Workspace, graph: SpaceGraph, name: str, frame: str) -> LayerData:
    """The lazy, placed napari layer of image ``name`` in space ``frame``.

    Raises
    ------
    _Skip
        If the image cannot be opened or placed in ``frame`` by an affine.
    """
    img = ws.images[name]
    try:
        volume = ws.open_image(name)
        chain = graph.transform(img.space, frame)
    except CoframeError as e:
        raise _Skip(str(e)) from e
    affine = chain.as_affine()
    if affine is None:
        raise _Skip(
            f"the chain {img.space} -> {frame} is not affine and napari places a layer by an "
            f"affine only: open {ws.file}#{img.space}, or resample it "
            f"(`coframe resample {name} --into IMAGE_IN_{frame} -o OUT.zarr`) and open that"
        )
    first = volume.levels[0]
    levels = [lvl.to_dask() for lvl in volume.levels]
    scale = np.asarray(first.voxel_size, dtype=float)
    translate = np.asarray(first.origin, dtype=float)
    matrix = affine.homogeneous
    if affine.input_dim == 2 and affine.output_dim == 3:
        levels = [a[None] for a in levels]
        matrix, thickness = _section_matrix(affine, scale)
        scale = np.concatenate([[thickness], scale])
        translate = np.concatenate([[0.0], translate])
    elif affine.input_dim != affine.output_dim:
        raise _Skip(
            f"a {affine.input_dim}D image has no place in the {affine.output_dim}D space {frame}: "
            f"open {ws.file}#{img.space} or a 3D space"
        )
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(float(v) for v in scale),
        "translate": tuple(float(v) for v in translate),
        "affine": matrix,
        "multiscale": len(levels) > 1,
        "metadata": {
            "coframe": {
                "workspace": str(ws.root),
                "image": name,
                "image_space": img.space,
                "space": frame,
                "unit": ws.unit,
                "levels": [lvl.path for lvl in volume.levels],
            }
        },
    }
    if not volume.is_labels and volume.dtype == np.uint8:
        kwargs["contrast_limits"] = (0, 255)  # napari would otherwise read a level to find them
    data = levels if len(levels) > 1 else levels[0]
    return data, kwargs, "labels" if volume.is_labels else "image"


def _section_matrix(affine: Affine, pixel: np.ndarray) -> tuple[np.ndarray, float]:
    """The 4 x 4 matrix of a section's 2D -> 3D pose with its normal as a leading axis.

    Returns the matrix and the thickness of the added axis: the mean size of
    the section's pixels in the frame.
    """
    linear = affine.linear
    normal = np.cross(linear[:, 0], linear[:, 1])
    length = float(np.linalg.norm(normal))
    if length == 0.0:
        raise _Skip("its pose maps the section onto a line (a degenerate 2D -> 3D affine)")
    matrix = np.eye(4)
    matrix[:3, 0] = normal / length
    matrix[:3, 1:3] = linear
    matrix[:3, 3] = affine.translation
    thickness = float(np.mean(np.linalg.norm(linear, axis=0) * pixel))
    return matrix, thickness
