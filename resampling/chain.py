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

A chain through the inverse of such a B-spline between affines (X-ray ->
FIB-SEM read backwards: the FIB-SEM resampled into the X-ray's frame) is an
:class:`InverseLead`: per piece, every voxel centre's inverse is solved
(:mod:`coframe.transforms.bspline_solve`, compiled) in slabs into a dense
displacement field on the piece's grid (:func:`piece_inverse_displacement`),
NaN where no solution lies within half an output voxel, and the kernel reads
that field as it reads a B-spline's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from coframe.transforms.affine import Affine
from coframe.transforms.base import Chain, NumericalInverse, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.bspline import BSpline
from coframe.transforms.bspline_lattice import solve_inverse_grid
from coframe.transforms.field import DisplacementField
from coframe.transforms.field_grid import field_displacement_on_grid
from coframe.transforms.sitk_bridge import bspline_grid_transform, bspline_grid_vectors, to_sitk

#: Largest inversion residual resampling accepts, in output voxels (see :func:`map_points_checked`).
INVERSE_TOLERANCE_VOXELS = 0.5
#: Largest error (output voxels) of an inverse interpolated between solved lattice points
#: (:mod:`~coframe.transforms.bspline_lattice`; ITK's own field inversion accepts 0.1).
LATTICE_ERROR_VOXELS = 0.05

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


@dataclass(frozen=True, eq=False)
class InverseLead:
    """A chain ``rest(spline^-1(pre(p)))``: a B-spline's inverse, made a dense field per piece.

    Parameters
    ----------
    pre
        The affine applied first (often the identity).
    inverse
        The B-spline's numerical inverse.
    rest
        SimpleITK transform of the affine applied after the inverse, or ``None``.
    """

    pre: Affine
    inverse: NumericalInverse
    rest: Any


def _affine_of(members: Sequence[Transform], d: int) -> Affine | None:
    """The members composed into one affine, or ``None`` if one is not affine."""
    affine = Chain(tuple(members)).as_affine() if members else Affine(np.eye(d + 1))
    if affine is None or affine.linear.shape != (d, d):
        return None
    return affine


def _around_one(t: Transform, wanted: Any) -> tuple[Affine, Transform, Any] | None:
    """``(pre, member, rest)`` of a 3D chain of affines around one member that ``wanted`` picks.

    ``rest`` is the SimpleITK transform of the affines after it, or ``None``.
    """
    members = chain_members(t)
    found = [i for i, m in enumerate(members) if wanted(m)]
    if len(found) != 1 or t.input_dim != 3 or t.output_dim != 3:
        return None
    i = found[0]
    pre = _affine_of(members[:i], 3)
    post = _affine_of(members[i + 1 :], 3)
    if pre is None or post is None:
        return None
    return pre, members[i], None if members[i + 1 :] == [] else to_sitk(post)


def inverse_lead(t: Transform) -> InverseLead | None:
    """A 3D chain of affines around one numerical inverse of a B-spline, or ``None``."""
    found = _around_one(
        t, lambda m: isinstance(m, NumericalInverse) and isinstance(m.forward, BSpline)
    )
    return None if found is None else InverseLead(*found)


def piece_inverse_displacement(
    lead: InverseLead,
    origin: Sequence[float],
    voxel_size: Sequence[float],
    shape: Sequence[int],
    slab_points: int,
) -> np.ndarray:
    """``spline^-1(pre(p)) - p`` at a piece's voxel centres ``p``, as ``(*shape, 3)`` (x, y, z).

    Solved on a lattice and interpolated where a bound proves the result
    within :data:`LATTICE_ERROR_VOXELS`, elsewhere voxel by voxel in slabs
    of about ``slab_points`` (:func:`~coframe.transforms.bspline_lattice.solve_inverse_grid`).
    NaN where the inverse has no solution within half an output voxel (the
    voxel then reads as outside the source, as in :func:`map_points_checked`).
    """
    shape = tuple(int(n) for n in shape)
    smallest = float(np.min(voxel_size))
    out, residual, _ = solve_inverse_grid(
        lead.inverse.forward,
        lead.pre.linear,
        lead.pre.translation,
        origin,
        voxel_size,
        shape,
        lead.inverse.tol,
        lead.inverse.max_iter,
        LATTICE_ERROR_VOXELS * smallest,
        slab_points,
    )
    for a in range(3):  # the solution less the voxel centre, in place
        centres = float(origin[a]) + np.arange(shape[a]) * float(voxel_size[a])
        out[..., a] -= centres.reshape([-1 if b == a else 1 for b in range(3)])
    out[~(residual <= inverse_tolerance(voxel_size))] = np.nan
    rows = max(1, slab_points // max(1, shape[1] * shape[2]))
    for r0 in range(0, shape[0], rows):  # (z, y, x) -> (x, y, z), a slab at a time
        slab = out[r0 : r0 + rows]
        slab[...] = slab[..., ::-1].copy()
    return out


@dataclass(frozen=True, eq=False)
class FieldLead:
    """A chain ``rest(field(pre(p)))``: a displacement field made dense on each piece.

    Parameters
    ----------
    pre
        The affine applied first (often the identity).
    field
        The 3D displacement field, linear interpolation.
    rest
        SimpleITK transform of the affine applied after the field, or ``None``.
    """

    pre: Affine
    field: DisplacementField
    rest: Any


def field_lead(t: Transform) -> FieldLead | None:
    """A 3D chain of affines around one linear displacement field, or ``None``."""
    found = _around_one(t, lambda m: isinstance(m, DisplacementField))
    if found is None or found[1].interpolation != "linear":
        return None
    return FieldLead(*found)


def piece_field_displacement(
    lead: FieldLead, origin: Sequence[float], voxel_size: Sequence[float], shape: Sequence[int]
) -> np.ndarray:
    """``field(pre(p)) - p`` at a piece's voxel centres ``p``, as ``(*shape, 3)`` (x, y, z)."""
    return field_displacement_on_grid(
        lead.field, lead.pre.linear, lead.pre.translation, origin, voxel_size, shape
    )


def prepare_chain(t: Transform, kernel: bool = False) -> Any:
    """The chain as SimpleITK or the kernel needs it: an ITK transform, or a lead.

    A :class:`SplineLead`, or an :class:`InverseLead` (the kernel's alone:
    :func:`~coframe.resampling.runplan.choose_method` never hands SimpleITK
    a numerical inverse); for the kernel (``kernel``), a :class:`FieldLead`
    too, which SimpleITK takes as its own transform.
    """

    affine = t.as_affine()
    if affine is not None:
        return to_sitk(affine)
    if kernel:
        lead = field_lead(t)
        if lead is not None:
            return lead
    inverse = inverse_lead(t)
    if inverse is not None:
        return inverse
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
