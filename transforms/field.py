"""Dense displacement fields, their numerical inverse, and sampling any map into a field.

A :class:`DisplacementField` stores one displacement vector per node of a
regular, axis-aligned grid: ``apply(p) = p + u(p)`` with ``u`` interpolated
between nodes (linearly by default; nearest node or cubic convolution on
request, as NGFF's ``interpolation`` key allows). Points outside the grid take
the displacement of the nearest grid node on the edge (clamping), so the map
stays defined everywhere.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.base import (
    NumericalInverse,
    Transform,
    as_points,
    check_unit_factor,
    frozen_array,
    newton_solve,
)

#: Default inverse tolerance as a fraction of the smallest grid spacing.
DEFAULT_TOL_FRACTION = 1e-3

#: Grid nodes per axis (at most) whose images seed the inverse of a far-from-identity field.
SEED_NODES = 32

#: How a field is read between its nodes (the values of NGFF's ``interpolation`` key).
INTERPOLATIONS = ("linear", "nearest", "cubic")

#: The free parameter of Keys' cubic convolution kernel (-0.5: third-order accurate).
KEYS_A = -0.5


def _is_lazy_array(values: Any) -> bool:
    return (
        not isinstance(values, np.ndarray)
        and hasattr(values, "shape")
        and hasattr(values, "dtype")
        and hasattr(values, "__getitem__")
    )


@dataclass(frozen=True, eq=False)
class DisplacementField(Transform):
    """A dense displacement field on a regular grid.

    Parameters
    ----------
    vectors
        ``(*grid_shape, d)`` displacements, vector axis last, components in
        numpy axis order (z, y, x), physical units. A numpy array (stored as a
        read-only copy) or a lazy array such as a ``zarr.Array`` (kept as is;
        :meth:`apply` reads only the grid block that covers the query points).
    origin
        ``(d,)`` physical position of grid node 0.
    spacing
        ``(d,)`` physical distance between grid nodes, positive.
    interpolation
        ``linear`` (multilinear between the 2^d surrounding nodes, the
        default), ``nearest`` (the value of the nearest node; a point halfway
        between two nodes takes the upper one) or ``cubic`` (Keys' cubic
        convolution with a = -0.5 over the 4^d surrounding nodes: it passes
        through the node values and needs no prefilter, so any block of the
        grid interpolates exactly as the whole grid does).

    Notes
    -----
    Points outside the grid use the displacement of the nearest edge node
    (clamping); ITK instead uses zero displacement beyond half a node outside
    the grid. The cubic kernel's taps beyond the edge repeat the edge node.
    """

    vectors: Any
    origin: np.ndarray
    spacing: np.ndarray
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        vectors = self.vectors
        if not _is_lazy_array(vectors):
            vectors = np.asarray(vectors)
            if not np.issubdtype(vectors.dtype, np.floating):
                vectors = vectors.astype(np.float64)
            vectors = frozen_array(vectors, name="displacement vectors", dtype=vectors.dtype)
        shape = tuple(int(n) for n in vectors.shape)
        if len(shape) < 2 or shape[-1] != len(shape) - 1:
            raise DimensionError(
                f"displacement vectors of shape {shape} are not (*grid_shape, d) with d = "
                "number of grid axes: put the vector axis last"
            )
        if min(shape[:-1]) < 1:
            raise DimensionError(f"displacement grid of shape {shape[:-1]} is empty")
        d = shape[-1]
        origin = frozen_array(self.origin, name="field origin", ndim=1)
        spacing = frozen_array(self.spacing, name="field spacing", ndim=1)
        if origin.shape != (d,) or spacing.shape != (d,):
            raise DimensionError(
                f"field origin {origin.tolist()} and spacing {spacing.tolist()} must have {d} "
                f"values each for a {d}D field"
            )
        if np.any(spacing <= 0):
            raise TransformError(f"field spacing must be positive, got {spacing.tolist()}")
        if self.interpolation not in INTERPOLATIONS:
            raise TransformError(
                f"field interpolation {self.interpolation!r} is unknown: use one of "
                f"{', '.join(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "spacing", spacing)

    @property
    def input_dim(self) -> int:
        return int(self.vectors.shape[-1])

    @property
    def output_dim(self) -> int:
        return int(self.vectors.shape[-1])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of grid nodes along each axis."""
        return tuple(int(n) for n in self.vectors.shape[:-1])

    def displacement(self, points: ArrayLike) -> np.ndarray:
        """Interpolated displacement ``u(p)`` at points ``(N, d)`` (or one ``(d,)``)."""
        array, single = as_points(points, self.input_dim)
        out = self._displacement(array)
        return out[0] if single else out

    def _displacement(self, points: np.ndarray) -> np.ndarray:
        n, d = points.shape
        out = np.zeros((n, d))
        finite = np.all(np.isfinite(points), axis=1)
        if not finite.all():
            out[~finite] = np.nan
            points = points[finite]
        if points.shape[0] == 0:
            return out
        upper = np.array(self.grid_shape, dtype=np.float64) - 1.0
        index = np.clip((points - self.origin) / self.spacing, 0.0, upper)
        if self.interpolation == "linear":
            out[finite] = self._linear(index)
        elif self.interpolation == "nearest":
            out[finite] = self._nearest(index)
        else:
            out[finite] = self._cubic(index)
        return out

    def nodes(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The grid's vectors over nodes ``lo`` to ``hi - 1`` (clipped to the grid), as float64.

        A lazy field reads only that block.
        """
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.array(self.grid_shape))
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)) + (slice(None),)
        return np.asarray(self.vectors[box], dtype=np.float64)

    def _linear(self, index: np.ndarray) -> np.ndarray:
        d = index.shape[1]
        lo = np.floor(index.min(axis=0)).astype(np.int64)
        block = self.nodes(lo, np.floor(index.max(axis=0)).astype(np.int64) + 2)
        coords = (index - lo).T
        values = np.empty((index.shape[0], d))
        for k in range(d):
            component = np.ascontiguousarray(block[..., k])
            values[:, k] = ndimage.map_coordinates(
                component, coords, order=1, mode="nearest", prefilter=False
            )
        return values

    def _nearest(self, index: np.ndarray) -> np.ndarray:
        upper = np.array(self.grid_shape, dtype=np.int64) - 1
        node = np.minimum(np.floor(index + 0.5).astype(np.int64), upper)
        lo = node.min(axis=0)
        block = self.nodes(lo, node.max(axis=0) + 1)
        return block[tuple((node - lo).T)]

    def _cubic(self, index: np.ndarray) -> np.ndarray:
        n, d = index.shape
        upper = np.array(self.grid_shape, dtype=np.int64) - 1
        base = np.floor(index).astype(np.int64)
        frac = index - base
        lo = np.maximum(base.min(axis=0) - 1, 0)
        block = self.nodes(lo, base.max(axis=0) + 3)
        taps = np.arange(-1, 3)
        # per axis: (n, 4) node offsets into the block and their kernel weights
        nodes = np.clip(base[:, :, None] + taps, 0, upper[None, :, None]) - lo[None, :, None]
        weights = keys_weights(frac)
        values = np.zeros((n, d))
        for combo in itertools.product(range(4), repeat=d):
            w = np.ones(n)
            at = []
            for a, c in enumerate(combo):
                w *= weights[:, a, c]
                at.append(nodes[:, a, c])
            values += w[:, None] * block[tuple(at)]
        return values

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points + self._displacement(points)

    def inverse(self, tol: float | None = None, max_iter: int = 100) -> InverseDisplacementField:
        """The numerical inverse (fixed-point iteration, see :class:`InverseDisplacementField`).

        Parameters
        ----------
        tol
            Largest accepted residual in physical units; default
            :data:`DEFAULT_TOL_FRACTION` of the smallest grid spacing.
        max_iter
            Maximum number of iterations.
        """
        return InverseDisplacementField(self, tol=tol, max_iter=max_iter)

    def with_unit_scale(self, factor: float) -> DisplacementField:
        """The same field in lengths multiplied by ``factor`` (a lazy array is read whole)."""
        factor = check_unit_factor(factor)
        if factor == 1.0:
            return self
        return DisplacementField(
            np.asarray(self.vectors, dtype=np.float64) * factor,
            self.origin * factor,
            self.spacing * factor,
            self.interpolation,
        )


def keys_weights(frac: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution weights of the nodes at offsets -1, 0, 1, 2 from ``floor``.

    ``frac`` holds each point's fractional position past its lower node, any
    shape; the result has one more axis of length 4. The weights sum to 1 and
    give the node's value at ``frac = 0``.
    """
    a = KEYS_A
    s = np.stack([1.0 + frac, frac, 1.0 - frac, 2.0 - frac], axis=-1)
    near = ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0
    far = ((a * s - 5.0 * a) * s + 8.0 * a) * s - 4.0 * a
    return np.where(s < 1.0, near, far)


class InverseDisplacementField(NumericalInverse):
    """The numerical inverse of a :class:`DisplacementField`.

    A point ``y`` maps to the ``x`` with ``x + u(x) = y``, found by the
    fixed-point iteration ``x <- y - u(x)``; points it leaves unconverged are
    finished with damped Newton steps, and those still unsolved (a field far
    from the identity, such as an NGFF ``coordinates`` field from array
    indices to lengths) are solved again by Newton steps from the grid node
    whose image lies nearest (:data:`SEED_NODES` nodes per axis at most). As for any
    :class:`~coframe.transforms.base.NumericalInverse`,
    :meth:`apply_with_residual` reports the residual ``|x + u(x) - y|`` and
    :meth:`apply` raises :class:`TransformError` if it exceeds ``tol`` for
    any point.

    Parameters
    ----------
    field
        The forward field.
    tol
        Largest accepted residual in physical units; None means
        :data:`DEFAULT_TOL_FRACTION` of the field's smallest grid spacing.
    max_iter
        Maximum number of fixed-point iterations.
    """

    def __init__(
        self, field: DisplacementField, tol: float | None = None, max_iter: int = 100
    ) -> None:
        if not isinstance(field, DisplacementField):
            raise TransformError(
                f"InverseDisplacementField needs a DisplacementField, got {type(field).__name__}"
            )
        if tol is None:
            tol = DEFAULT_TOL_FRACTION * float(field.spacing.min())
        super().__init__(field, tol, max_iter)

    @property
    def field(self) -> DisplacementField:
        """The forward field."""
        return self.forward  # type: ignore[return-value]

    def _solve(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        field = self.field
        x = targets.copy()
        n = targets.shape[0]
        residual = np.full(n, np.inf)
        active = np.arange(n)
        goal = 0.01 * self.tol
        for _ in range(self.max_iter):
            if active.size == 0:
                break
            y = targets[active]
            u = field._displacement(x[active])
            error = np.linalg.norm(x[active] + u - y, axis=1)
            residual[active] = error
            keep = ~(error <= goal)
            x[active[keep]] = y[keep] - u[keep]
            active = active[keep]
        if active.size:
            u = field._displacement(x[active])
            residual[active] = np.linalg.norm(x[active] + u - targets[active], axis=1)
            stuck = active[~(residual[active] <= goal)]
            if stuck.size:
                solved, res = newton_solve(
                    field._apply, targets[stuck], x[stuck], self.tol, self.max_iter
                )
                better = res < residual[stuck]
                x[stuck[better]] = solved[better]
                residual[stuck[better]] = res[better]
            stuck = active[~(residual[active] <= self.tol)]
            if stuck.size:
                solved, res = newton_solve(
                    field._apply, targets[stuck], self._seeds(targets[stuck]), self.tol,
                    self.max_iter,
                )  # fmt: skip
                better = res < residual[stuck]
                x[stuck[better]] = solved[better]
                residual[stuck[better]] = res[better]
        return x, residual

    def _seeds(self, targets: np.ndarray) -> np.ndarray:
        """For each target, the grid node (of a subsampled grid) whose image is nearest."""
        field = self.field
        axes = [np.arange(0, n, max(1, -(-n // SEED_NODES))) for n in field.grid_shape]
        index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
        nodes = field.origin + index * field.spacing
        _, nearest = cKDTree(field._apply(nodes)).query(targets)
        return nodes[nearest]

    def with_unit_scale(self, factor: float) -> InverseDisplacementField:
        factor = check_unit_factor(factor)
        return InverseDisplacementField(
            self.field.with_unit_scale(factor), float(self.tol) * factor, self.max_iter
        )


def sample_to_field(
    t: Transform, origin: ArrayLike, spacing: ArrayLike, shape: tuple[int, ...]
) -> DisplacementField:
    """Sample any same-dimension transform into a dense displacement field.

    The field stores ``t(p) - p`` at every grid node ``p = origin + index *
    spacing``; it reproduces ``t`` exactly at the nodes and linearly between
    them. Use it to store maps that file formats cannot hold directly (thin
    plate splines, numerical inverses).

    Parameters
    ----------
    t
        The transform to sample (``input_dim == output_dim``).
    origin
        ``(d,)`` physical position of grid node 0.
    spacing
        ``(d,)`` physical node spacing.
    shape
        Number of grid nodes along each axis.

    Raises
    ------
    DimensionError
        If the transform changes dimension or the grid does not match it.
    """
    d = t.input_dim
    if t.output_dim != d:
        raise DimensionError(
            f"cannot sample a {d}D -> {t.output_dim}D {type(t).__name__} into a displacement "
            "field: dimensions must agree"
        )
    grid_shape = tuple(int(n) for n in shape)
    if len(grid_shape) != d or min(grid_shape) < 1:
        raise DimensionError(
            f"field shape {tuple(shape)} must have {d} positive sizes for a {d}D map"
        )
    origin_arr = np.asarray(origin, dtype=np.float64)
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    if origin_arr.shape != (d,) or spacing_arr.shape != (d,):
        raise DimensionError(
            f"field origin {origin_arr.tolist()} and spacing {spacing_arr.tolist()} must have {d} "
            "values each"
        )
    vectors = np.empty((*grid_shape, d))
    if d == 1:
        inner = np.zeros((1, 0))
    else:
        axes = [np.arange(n, dtype=np.float64) for n in grid_shape[1:]]
        inner = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d - 1)
    for i in range(grid_shape[0]):
        index = np.column_stack([np.full(inner.shape[0], float(i)), inner])
        points = origin_arr + index * spacing_arr
        vectors[i] = (t.apply(points) - points).reshape(*grid_shape[1:], d)
    return DisplacementField(vectors, origin_arr, spacing_arr)
