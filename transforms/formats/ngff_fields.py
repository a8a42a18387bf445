"""Displacement and coordinate fields of OME-NGFF (RFC-5): their arrays and grids.

A ``displacements`` or ``coordinates`` transformation names a Zarr array (or a
multiscale group) whose coordinate system has one vector axis (of type
``displacement`` or ``coordinate``) and spatial axes in the order of the
transformation's input; its own ``coordinateTransformations`` place the grid.
These helpers find the array and check that layout for
:class:`~coframe.transforms.formats.ngff_decode.Decoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from coframe.core.errors import FormatError, TransformError, UnitError
from coframe.core.units import canonical_unit, unit_factor
from coframe.transforms.formats.ngff_axes import Axis, CoordinateSystem
from coframe.transforms.formats.ngff_io import NgffSource, ome_metadata


def field_array(source: NgffSource, path: Any, key: str) -> tuple[Any, CoordinateSystem, list[Any]]:
    """The field array, its coordinate system and its array-to-grid transformations."""
    node = source.node(path, key=key)
    ome = ome_metadata(dict(node.attrs))
    if isinstance(node, zarr.Group):
        multiscales = ome.get("multiscales")
        if not isinstance(multiscales, list) or not multiscales:
            raise FormatError(f"{key}: {path!r} is a group without multiscales metadata")
        ms = multiscales[0]
        datasets = ms.get("datasets") or []
        if not datasets or not isinstance(datasets[0], Mapping):
            raise FormatError(f"{key}: multiscales of {path!r} list no datasets")
        array = node[datasets[0]["path"]]
        systems = ms.get("coordinateSystems") or []
        grid = list(datasets[0].get("coordinateTransformations") or [])
    else:
        array = node
        systems = ome.get("coordinateSystems") or []
        grid = list(ome.get("coordinateTransformations") or [])
    parsed = [
        CoordinateSystem.from_json(s, key=f"{key}: coordinateSystems[{i}]")
        for i, s in enumerate(systems)
    ]
    fitting = [s for s in parsed if s.dim == array.ndim]
    with_vector = [
        s for s in fitting if any(a.type in ("displacement", "coordinate") for a in s.axes)
    ]
    if not fitting:
        raise FormatError(
            f"{key}: field {path!r} has no coordinate system with {array.ndim} axes: its "
            "metadata must name every axis, including the vector axis"
        )
    return array, (with_vector or fitting)[0], grid


def vector_axis(system: CoordinateSystem, kind: str, path: Any, key: str) -> int:
    """Index of the one vector axis of a ``displacements``/``coordinates`` field's system.

    Raises
    ------
    FormatError
        If there is not exactly one axis of the type the field kind needs.
    """
    vector_type = "displacement" if kind == "displacements" else "coordinate"
    vaxes = [i for i, a in enumerate(system.axes) if a.type == vector_type]
    if len(vaxes) != 1:
        types = [a.type for a in system.axes]
        raise FormatError(
            f"{key}: field {path!r} must have exactly one axis of type {vector_type!r} "
            f"(the vector axis) in its coordinate system, got axis types {types}"
        )
    return vaxes[0]


def check_axis_order(grid_axes: list[Axis], system: CoordinateSystem, key: str) -> None:
    """Refuse a field whose spatial axes are the input's axes in another order."""
    mine = [a.name for a in grid_axes]
    theirs = list(system.axis_names)
    spatial = all(a.is_length for a in grid_axes) and all(a.is_length for a in system.axes)
    if spatial and sorted(mine) == sorted(theirs) and mine != theirs:
        raise FormatError(
            f"{key}: the field's axes {mine} are not in the order of its input coordinate "
            f"system {system.name!r} {theirs}; RFC-5 requires the same order"
        )


def unit_ratio(axes: list[Axis], targets: tuple[Axis, ...]) -> np.ndarray:
    """Factors from each axis's unit to the unit of the matching target axis (1 if unknown)."""
    out = np.ones(len(axes))
    for k, (a, b) in enumerate(zip(axes, targets, strict=False)):
        if a.unit is None or b.unit is None or not b.is_length:
            continue
        try:
            out[k] = unit_factor(canonical_unit(a.unit), canonical_unit(b.unit))
        except UnitError:
            continue
    return out


def grid_origin_spacing(matrix: np.ndarray, vaxis: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Origin and spacing of a field's grid from its homogeneous array-to-space matrix.

    Raises
    ------
    TransformError
        If the grid is not axis-aligned with positive spacing.
    """
    keep = [i for i in range(matrix.shape[0] - 1) if i != vaxis]
    linear = matrix[np.ix_(keep, keep)]
    if np.any(np.abs(linear - np.diag(np.diag(linear))) > 0) or np.any(np.diag(linear) <= 0):
        raise TransformError(
            f"{key}: the field grid must be axis-aligned with positive spacing, got "
            f"{linear.tolist()}"
        )
    return matrix[keep, -1].copy(), np.diag(linear).copy()
