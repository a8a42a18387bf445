"""Workspace edges from files: link a transform file, move edges to and from an OME-NGFF scene."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.provenance import make_provenance
from coframe.app.workspace import Workspace
from coframe.app.workspace_file import EdgeEntry, check_name
from coframe.core.errors import (
    AxisError,
    DimensionError,
    OverwriteError,
    TransformError,
    WorkspaceError,
)
from coframe.core.units import canonical_unit
from coframe.transforms.base import Transform
from coframe.transforms.cycles import conflicting_cycle
from coframe.transforms.field import sample_to_field
from coframe.transforms.formats.dispatch import detect_transform_format, read_transform
from coframe.transforms.formats.ngff import (
    SceneTransformation,
    read_scene,
    scene_metadata,
    write_ngff_transform,
    write_scene,
)
from coframe.transforms.formats.ngff_axes import Axis, CoordinateSystem
from coframe.transforms.graph import summarize_transform
from coframe.volumes.volume import SPATIAL_AXES_3D

#: Most nodes of a displacement field sampled for a scene (``--field-spacing``).
MAX_FIELD_NODES = 2**24
#: Nodes along the longest side of the field whose spacing an error message suggests.
SUGGESTED_NODES = 64


def link_transform(
    workspace: Workspace,
    source: str,
    target: str,
    file: str | Path,
    *,
    file_unit: str | None = None,
    command: str = "",
    force: bool = False,
) -> tuple[Workspace, Transform]:
    """Read a transform file and add it to a workspace as the edge ``source -> target``.

    The file is read (validating it), its dimensions are checked against the
    spaces' axes when known, and the edge is recorded with its type summary
    and provenance (command, time, file SHA-256, software versions). The file
    is referenced where it is, not copied. The workspace is not saved.

    Parameters
    ----------
    workspace
        The workspace.
    source, target
        Space (or image) names; the transform maps points of ``source`` into ``target``.
    file
        The transform file.
    file_unit
        Unit of unit-less files (ITK, BigWarp; default the workspace unit) and of
        NGFF axes that declare none (no default: such an axis is refused).
    command
        The command line, recorded in the provenance.
    force
        Replace an existing edge ``source -> target``.

    Returns
    -------
    The new workspace and the transform read.

    Raises
    ------
    DimensionError
        If the transform's dimensions disagree with the spaces' axes.
    """

    src, dst = workspace.space_of(source), workspace.space_of(target)
    path = Path(file).expanduser().absolute()
    fmt = detect_transform_format(path)
    t = read_transform(path, format=fmt, file_unit=file_unit, unit=workspace.unit)
    spaces = workspace.all_spaces()
    for space, dim in ((src, t.input_dim), (dst, t.output_dim)):
        axes = spaces[space].axes
        if axes is not None and len(axes) != dim:
            raise DimensionError(
                f"{path.name} maps {t.input_dim}D points to {t.output_dim}D but space {space!r} "
                f"has axes {list(axes)}: check the FROM_SPACE TO_SPACE order or the file"
            )
    unit = None if file_unit is None else canonical_unit(file_unit, key="--unit")
    params = {"format": fmt, "file_unit": unit or workspace.unit}
    prov = make_provenance(command, parameters=params, files={"file": path})
    ws = workspace.add_edge(
        src, dst, path, fmt, unit, prov, force=force, kind=summarize_transform(t)
    )
    return ws, t


def export_scene(
    workspace: Workspace,
    out: str | Path,
    *,
    force: bool = False,
    field_spacing: float | None = None,
) -> Path:
    """Write a workspace's spaces and edges as one OME-NGFF scene (a Zarr group).

    Every edge is read; a space without declared axes takes (z, y, x) or
    (y, x) from the dimension of the edges that touch it. An edge OME-NGFF
    cannot hold (a thin-plate spline, a B-spline) is stored as a displacement
    field sampled every ``field_spacing`` over the images of its source space.

    Raises
    ------
    WorkspaceError
        If a space has neither declared axes nor edges to tell its dimension.
    TransformError
        If an edge cannot be stored and ``field_spacing`` is not given (the
        message names the ``coframe export-scene`` command to run).
    OverwriteError
        If ``out`` exists and ``force`` is false.
    """

    p = Path(out)
    if p.exists() and not force:
        raise OverwriteError(f"{p} already exists: pass --force to overwrite it")
    graph = workspace.graph()
    dims: dict[str, int] = {}
    loaded = []
    for i, e in enumerate(workspace.edges):
        t = graph.load(i)
        dims.setdefault(e.source, t.input_dim)
        dims.setdefault(e.target, t.output_dim)
        loaded.append((e, t))
    _refuse_disagreeing_cycle(workspace, loaded)
    systems = []
    for name, space in workspace.all_spaces().items():
        axes = space.axes or (
            SPATIAL_AXES_3D[-dims[name] :] if 0 < dims.get(name, 0) <= 3 else None
        )
        if axes is None:
            raise WorkspaceError(
                f"the axes of space {name!r} are unknown: declare spaces.{name}.axes in "
                f"{workspace.file} or add an image or edge in it"
            )
        systems.append(
            CoordinateSystem(name, tuple(Axis(a, "space", workspace.unit) for a in axes))
        )
    items = []
    for e, t in loaded:
        t = _storable(workspace, e, t, systems, p, field_spacing)
        items.append(SceneTransformation(e.source, e.target, t, f"{e.source} -> {e.target}"))
    return Path(write_scene(p, systems, items, unit=workspace.unit, force=force))


def _refuse_disagreeing_cycle(workspace: Workspace, loaded: list[tuple[EdgeEntry, Any]]) -> None:
    """A scene may not hold a cycle of edges that disagree: it would not read back."""
    conflict = conflicting_cycle([(e.source, e.target, t) for e, t in loaded])
    if conflict is None:
        return
    edge = loaded[conflict.edge][0]
    chain = [loaded[i][0] for i, _ in conflict.chain]
    off = max(conflict.linear, conflict.translation)
    raise WorkspaceError(
        f"edge {edge.source} -> {edge.target} ({edge.file}) disagrees with the chain through "
        f"{', '.join(f'{c.source} -> {c.target}' for c in chain)} by up to {off:.3g}: an OME-NGFF "
        f"scene holding both would be refused when read; remove or fix one of them in "
        f"{workspace.file} before exporting"
    )


def _storable(
    ws: Workspace,
    edge: EdgeEntry,
    t: Transform,
    systems: list[CoordinateSystem],
    out: Path,
    spacing: float | None,
) -> Transform:
    """``t``, or ``t`` sampled into a displacement field when OME-NGFF cannot hold it."""
    try:
        scene_metadata(systems, [SceneTransformation(edge.source, edge.target, t)], unit=ws.unit)
        return t
    except TransformError:
        if t.input_dim != t.output_dim:
            raise
    box = _space_box(ws, edge.source)
    what = f"edge {edge.source} -> {edge.target} ({edge.file}) is a {summarize_transform(t)}"
    if spacing is None:
        longest = 0.0 if box is None else float(np.max(box[:, 1] - box[:, 0]))
        suggest = f"{longest / (SUGGESTED_NODES - 1):.2g}" if longest > 0 else "SPACING"
        first = "" if box is not None else f"add an image in space {edge.source!r}, then "
        raise TransformError(
            f"{what}, which OME-NGFF cannot hold: {first}run `coframe export-scene {out} "
            f"--field-spacing {suggest}` to store it as a displacement field sampled every "
            f"{suggest} {ws.unit} over the images of space {edge.source!r}"
        )
    if not 0 < spacing < float("inf"):
        raise WorkspaceError(
            f"--field-spacing {spacing:g} is not a positive length: give the node spacing of "
            f"the field in {ws.unit}"
        )
    if box is None:
        raise WorkspaceError(
            f"{what}: space {edge.source!r} has no image to span its displacement field: add "
            f"one with `coframe add NAME PATH --space {edge.source}`"
        )
    shape = tuple(int(n) for n in np.floor((box[:, 1] - box[:, 0]) / spacing) + 2)
    if math.prod(shape) > MAX_FIELD_NODES:
        fits = float(np.prod(box[:, 1] - box[:, 0]) / MAX_FIELD_NODES) ** (1 / len(shape))
        raise WorkspaceError(
            f"{what}: --field-spacing {spacing:g} gives a field of {list(shape)} nodes over "
            f"space {edge.source!r}, more than {MAX_FIELD_NODES}: use --field-spacing "
            f"{fits * 1.01:.2g} or more"
        )
    return sample_to_field(t, box[:, 0], np.full(len(shape), float(spacing)), shape)


def _space_box(ws: Workspace, space: str) -> np.ndarray | None:
    """``(d, 2)`` physical box holding every image of ``space`` (None without images)."""
    boxes = [np.asarray(ws.open_image(n).levels[0].extent, float) for n in ws.images_in(space)]
    if not boxes:
        return None
    return np.column_stack(
        [np.min([b[:, 0] for b in boxes], axis=0), np.max([b[:, 1] for b in boxes], axis=0)]
    )


def import_scene(
    workspace: Workspace,
    path: str | Path,
    *,
    unit: str | None = None,
    force: bool = False,
    command: str = "",
) -> Workspace:
    """Add an OME-NGFF scene's coordinate systems as spaces and its transformations as edges.

    Each transformation is written as its own NGFF group under the
    workspace's ``transforms/`` directory (``<input>-to-<output>.zarr``) and
    recorded with provenance. Nothing is written unless every edge and file
    can be added. The workspace is not saved.

    Parameters
    ----------
    unit
        Unit of the scene's spatial axes that declare none (``--unit``); the
        files written declare it on those axes.

    Raises
    ------
    UnitError
        If a spatial axis has no unit and ``unit`` is not given.
    OverwriteError
        If an edge or a file exists and ``force`` is false.
    """

    scene = read_scene(path, unit=workspace.unit, file_unit=unit)
    ws = workspace
    for name in scene.coordinate_systems:
        check_name(name, f"coordinate system in {path}")
        try:
            axes: tuple[str, ...] | None = scene.coframe_axes(name)
        except (AxisError, DimensionError):
            axes = None
        if axes is not None and len(axes) not in (2, 3):
            axes = None
        ws = ws.with_space(name, axes, force=force)
    planned: list[tuple[Path, Any]] = []
    for item in scene.transformations:
        for name in (item.input, item.output):
            if name not in ws.all_spaces():
                ws = ws.with_space(name, None)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{item.input}-to-{item.output}")
        out = ws.inside(f"transforms/{stem}.zarr", "transform file")
        if out.exists() and not force:
            raise OverwriteError(f"{out} already exists: pass --force to overwrite it")
        ws.add_edge(item.input, item.output, out, "ngff", None, None, force=force)
        planned.append((out, item))
    for out, item in planned:
        spaces = [scene.coordinate_systems.get(n, n) for n in (item.input, item.output)]
        if unit is not None:
            spaces = [s.with_unit(unit) if isinstance(s, CoordinateSystem) else s for s in spaces]
        write_ngff_transform(
            out,
            item.transform,
            input_space=spaces[0],
            output_space=spaces[1],
            unit=ws.unit,
            force=force,
            name=item.name,
        )
        prov = make_provenance(command, inputs={"scene": str(path)}, files={"file": out})
        kind = summarize_transform(item.transform)
        ws = ws.add_edge(item.input, item.output, out, "ngff", None, prov, force=force, kind=kind)
    return ws
