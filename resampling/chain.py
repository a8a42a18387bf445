"""How resampling evaluates a chain: with coframe's maps, and handed to SimpleITK.

:func:`map_points_checked` applies a chain as resampling needs it: where a numerical
inverse has no solution within half an output voxel the point comes back
NaN (outside the source) rather than failing the whole piece.

For SimpleITK, an affine chain becomes one ITK affine. Any other chain ITK
can hold becomes its ITK composite, except one that starts with a cubic
B-spline on an axis-aligned control grid (the deformable step of a
registration, e.g. FIB-SEM -> X-ray): ITK evaluates a B-spline from 4^3
control points per voxel, about 7x the cost of the rest of the resampling.
Such a chain is prepared once (:func:`prepare_chain`) and, for each piece,
its B-spline is evaluated separably on the piece's voxel centres
(:meth:`~coframe.transforms.bspline.BSpline.displacement_on_grid`) into a dense
displacement field on the piece's own grid, which ITK then reads at its
nodes: the same points, the same values. The compiled kernel
(:mod:`coframe.resampling.kernel`) takes the same field as an array
(:func:`piece_displacement`) and reads it as ITK does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from coframe.transforms.base import Chain, NumericalInverse, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.bspline import BSpline
from coframe.transforms.sitk_bridge import bspline_grid_transform, bspline_grid_vectors, to_sitk

#: Largest inversion residual resampling accepts, in output voxels (see :func:`map_points_checked`).
INVERSE_TOLERANCE_VOXELS = 0.5

#: Bytes per output voxel and axis of a piece's dense B-spline field (float64,
#: written straight into the SimpleITK image), with room for the last
#: contraction's operand.
SPLINE_FIELD_BYTES = 2 * 8


def chain_members(t: Transform) -> list[Transform]:
    """The maps of a chain in the order they apply (nested sequences and bijections opened)."""

    if isinstance(t, Chain):
        return [m for member in t.transforms for m in chain_members(member)]
    if isinstance(t, Bijection):
        return chain_members(t.forward)
    return [t]


def map_points_checked(t: Transform, points: np.ndarray, max_residual: float) -> np.ndarray:
    """``t.apply(points)``, with points a numerical inverse cannot solve returned as NaN.

    An inverse B-spline or field has no exact solution where the forward map
    jumps (at the edge of a B-spline's valid region) or folds. A numerical
    inverse in the chain keeps its best solution where its residual is at
    most ``max_residual`` (well below the output voxel, invisible in the
    output) and gives NaN elsewhere, which resampling treats as outside the
    source; ``t.apply`` would raise for the whole piece instead.

    Parameters
    ----------
    t
        The output -> source map.
    points
        ``(N, d)`` physical points.
    max_residual
        Largest accepted inversion residual, physical units.
    """
    current = np.asarray(points, dtype=np.float64)
    for member in chain_members(t):
        if isinstance(member, NumericalInverse):
            solved, residual = member.apply_with_residual(current)
            current = np.where((residual <= max_residual)[:, None], solved, np.nan)
        else:
            current = member.apply(current)
    return current


def inverse_tolerance(voxel_size: Sequence[float]) -> float:
    """The largest inversion residual accepted on a grid of this voxel size: half a voxel."""
    return INVERSE_TOLERANCE_VOXELS * float(np.min(voxel_size))


@dataclass(frozen=True, eq=False)
class SplineLead:
    """A chain ``rest(spline(scale * p + offset))`` whose B-spline is evaluated per piece.

    Parameters
    ----------
    scale, offset
        The axis-aligned affine applied before the B-spline (often identity).
    spline
        The B-spline, on an axis-aligned control grid.
    rest
        SimpleITK transform of the maps after the B-spline, or ``None``.
    """

    scale: np.ndarray
    offset: np.ndarray
    spline: BSpline
    rest: Any


def spline_lead(t: Transform) -> tuple[np.ndarray, np.ndarray, BSpline, list[Transform]] | None:
    """Split a chain that starts with an axis-aligned B-spline, or ``None``.

    Maps before the B-spline may only scale and shift each axis (a diagonal
    affine), so the points it is evaluated at still form a tensor grid.

    Returns
    -------
    tuple or None
        ``(scale, offset, spline, rest)``: the folded leading affine, the
        B-spline and the maps after it.
    """
    members = chain_members(t)
    d = t.input_dim
    scale, offset = np.ones(d), np.zeros(d)
    for i, member in enumerate(members):
        if isinstance(member, BSpline):
            if not member.axis_aligned:
                return None
            return scale, offset, member, members[i + 1 :]
        affine = member.as_affine()
        if affine is None or affine.linear.shape != (d, d):
            return None
        diagonal = np.diag(affine.linear)
        if np.count_nonzero(affine.linear - np.diag(diagonal)):
            return None
        scale, offset = diagonal * scale, diagonal * offset + affine.translation
    return None


def prepare_chain(t: Transform) -> Any:
    """The chain as SimpleITK needs it: an ITK transform, or a :class:`SplineLead`."""

    affine = t.as_affine()
    if affine is not None:
        return to_sitk(affine)
    lead = spline_lead(t)
    if lead is None:
        return to_sitk(t)
    scale, offset, spline, rest = lead
    tail = None
    if len(rest) == 1:
        tail = to_sitk(rest[0])
    elif rest:
        tail = to_sitk(Chain(tuple(rest)))
    return SplineLead(scale, offset, spline, tail)


def _lead_axes(
    prepared: SplineLead, origin: Sequence[float], voxel_size: Sequence[float], shape: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Where a piece's voxel centres meet the B-spline (per axis) and its lead's shifts."""
    d = len(shape)
    points = [float(origin[a]) + np.arange(int(shape[a])) * float(voxel_size[a]) for a in range(d)]
    moved = [prepared.scale[a] * points[a] + prepared.offset[a] for a in range(d)]
    shifts = [
        None if prepared.scale[a] == 1.0 and prepared.offset[a] == 0.0 else moved[a] - points[a]
        for a in range(d)
    ]
    return moved, shifts


def piece_displacement(
    prepared: SplineLead, origin: Sequence[float], voxel_size: Sequence[float], shape: Sequence[int]
) -> np.ndarray:
    """The dense field :func:`piece_transform` gives ITK, as ``(*shape, d)`` vectors (x, y, z)."""

    moved, shifts = _lead_axes(prepared, origin, voxel_size, shape)
    return bspline_grid_vectors(prepared.spline, moved, shifts)


def piece_transform(
    prepared: Any,
    origin: Sequence[float],
    voxel_size: Sequence[float],
    shape: Sequence[int],
) -> Any:
    """The ITK transform of one piece: ``prepared`` itself, or a :class:`SplineLead` made dense.

    Parameters
    ----------
    prepared
        From :func:`prepare_chain`.
    origin, voxel_size, shape
        The piece's grid: physical centre of its first voxel, voxel size,
        voxels per axis (numpy order).
    """
    if not isinstance(prepared, SplineLead):
        return prepared
    moved, shifts = _lead_axes(prepared, origin, voxel_size, shape)
    lead = bspline_grid_transform(prepared.spline, moved, origin, voxel_size, shifts)
    if prepared.rest is None:
        return lead
    composite = sitk.CompositeTransform(len(shape))
    composite.AddTransform(prepared.rest)
    composite.AddTransform(lead)  # added last: applied first
    return composite
