"""Cubic B-spline free-form deformations, compatible with SimpleITK's ``BSplineTransform``.

The map is ``apply(p) = p + sum_k c_k B(i(p) - k)`` where ``i(p)`` is the
continuous grid index of ``p``, ``c_k`` the displacement coefficient of
control point ``k`` and ``B`` the tensor product of cubic B-spline kernels.
As in ITK, a point is moved only inside the valid region, where its continuous
index ``i`` satisfies ``1 <= i <= grid_size - 2`` along every axis; elsewhere
the displacement is zero. All parameters are in numpy axis order; conversion
to SimpleITK's (x, y, z) lives in :mod:`coframe.transforms.sitk_bridge`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.base import NumericalInverse, Transform, check_unit_factor, frozen_array
from coframe.transforms.bspline_solve import solve_inverse

#: Spline order (cubic), as in SimpleITK's default ``BSplineTransform``.
ORDER = 3

#: Default inverse tolerance as a fraction of the smallest control-point spacing.
DEFAULT_TOL_FRACTION = 1e-3


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline kernel evaluated at ``t``."""
    a = np.abs(t)
    return np.where(
        a < 1.0,
        (4.0 - 6.0 * a**2 + 3.0 * a**3) / 6.0,
        np.where(a < 2.0, (2.0 - a) ** 3 / 6.0, 0.0),
    )


@dataclass(frozen=True, eq=False)
class BSpline(Transform):
    """A cubic B-spline displacement on a control-point grid.

    Parameters
    ----------
    grid_origin
        ``(d,)`` physical position of control point 0 (numpy axis order).
    grid_spacing
        ``(d,)`` physical distance between control points, positive.
    grid_direction
        ``(d, d)`` direction cosines of the grid axes (columns), numpy axis
        order for rows and columns.
    grid_size
        Number of control points along each axis, numpy order.
    coefficients
        ``(*grid_size, d)`` displacement of each control point, components in
        numpy axis order (z, y, x), physical units.

    Raises
    ------
    DimensionError
        If the shapes disagree.
    TransformError
        If the spacing is not positive, the direction singular, or the grid
        smaller than 4 control points along an axis.
    """

    grid_origin: np.ndarray
    grid_spacing: np.ndarray
    grid_direction: np.ndarray
    grid_size: tuple[int, ...]
    coefficients: np.ndarray

    def __post_init__(self) -> None:
        coefficients = frozen_array(self.coefficients, name="B-spline coefficients")
        size = tuple(int(n) for n in self.grid_size)
        d = len(size)
        if coefficients.shape != (*size, d):
            raise DimensionError(
                f"B-spline coefficients of shape {coefficients.shape} do not match grid_size "
                f"{size}: expected {(*size, d)} (vector axis last)"
            )
        if min(size) < ORDER + 1:
            raise TransformError(
                f"B-spline grid_size {size} is too small: expected at least {ORDER + 1} control "
                "points per axis"
            )
        origin = frozen_array(self.grid_origin, name="grid_origin", ndim=1)
        spacing = frozen_array(self.grid_spacing, name="grid_spacing", ndim=1)
        direction = frozen_array(self.grid_direction, name="grid_direction", ndim=2)
        if origin.shape != (d,) or spacing.shape != (d,) or direction.shape != (d, d):
            raise DimensionError(
                f"B-spline grid_origin {origin.shape}, grid_spacing {spacing.shape} and "
                f"grid_direction {direction.shape} must be ({d},), ({d},) and ({d}, {d})"
            )
        if np.any(spacing <= 0):
            raise TransformError(f"B-spline grid_spacing must be positive, got {spacing.tolist()}")
        if abs(np.linalg.det(direction)) < 1e-12:
            raise TransformError(f"B-spline grid_direction {direction.tolist()} is singular")
        object.__setattr__(self, "grid_origin", origin)
        object.__setattr__(self, "grid_spacing", spacing)
        object.__setattr__(self, "grid_direction", direction)
        object.__setattr__(self, "grid_size", size)
        object.__setattr__(self, "coefficients", coefficients)

    @property
    def input_dim(self) -> int:
        return len(self.grid_size)

    @property
    def output_dim(self) -> int:
        return len(self.grid_size)

    def continuous_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous control-grid index of physical points ``(N, d)``."""
        inv = np.linalg.inv(self.grid_direction)
        return ((points - self.grid_origin) @ inv.T) / self.grid_spacing

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """The B-spline displacement at physical points ``(N, d)``."""
        n, d = points.shape
        cindex = self.continuous_index(points)
        size = np.array(self.grid_size, dtype=np.float64)
        low = 0.5 * (ORDER - 1)
        valid = np.all((cindex >= low) & (cindex <= size - 1.0 - low), axis=1)
        cindex = np.where(valid[:, None], cindex, low)
        start = np.floor(cindex - low).astype(np.int64)
        weights = [
            cubic_bspline(cindex[:, a, None] - (start[:, a, None] + np.arange(ORDER + 1)))
            for a in range(d)
        ]
        last = np.array(self.grid_size) - 1
        out = np.zeros((n, d))
        for offsets in itertools.product(range(ORDER + 1), repeat=d):
            w = np.ones(n)
            for a, j in enumerate(offsets):
                w = w * weights[a][:, j]
            # At the upper edge of the valid region the last weight is zero: clip its index.
            index = tuple(np.minimum(start[:, a] + j, last[a]) for a, j in enumerate(offsets))
            out += w[:, None] * self.coefficients[index]
        out[~valid] = 0.0
        return out

    @property
    def axis_aligned(self) -> bool:
        """Whether the control grid's axes are the coordinate axes (a diagonal direction)."""
        direction = self.grid_direction
        return bool(np.count_nonzero(direction - np.diag(np.diag(direction))) == 0)

    def displacement_on_grid(
        self,
        axes: Sequence[np.ndarray],
        *,
        components: Sequence[int] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The displacement at every point of the tensor grid of per-axis coordinates.

        Equal to :meth:`displacement` of the grid's points, computed
        separably: one weight matrix per axis, contracted with the control
        points the grid touches (a few multiply-adds per point instead of
        ``4^d`` weighted sums).

        Parameters
        ----------
        axes
            One 1D array of physical coordinates per axis, numpy order.
        components
            Which displacement components to return, in this order (default
            all, numpy order; ``[2, 1, 0]`` gives ITK's x, y, z).
        out
            A C-contiguous float64 array of the result's shape to fill.

        Returns
        -------
        numpy.ndarray
            ``(*lengths, len(components))`` displacements (``out`` if given).

        Raises
        ------
        DimensionError
            If there is not one coordinate array per axis.
        TransformError
            If the control grid is not axis-aligned (see :attr:`axis_aligned`).
        """
        d = self.input_dim
        if len(axes) != d:
            raise DimensionError(f"{len(axes)} coordinate axes for a {d}D B-spline: expected {d}")
        if not self.axis_aligned:
            raise TransformError(
                "a B-spline whose control grid is rotated is not separable: use displacement()"
            )
        order = list(range(d)) if components is None else [int(c) for c in components]
        lengths = tuple(int(np.size(x)) for x in axes)
        result = np.empty((*lengths, len(order))) if out is None else out
        low = 0.5 * (ORDER - 1)
        matrices = []
        windows = []
        for a in range(d):
            coords = np.asarray(axes[a], dtype=np.float64).ravel()
            size = int(self.grid_size[a])
            cindex = (
                (coords - self.grid_origin[a]) / self.grid_direction[a, a] / self.grid_spacing[a]
            )
            valid = (cindex >= low) & (cindex <= size - 1.0 - low)
            if not valid.any():
                result[...] = 0.0
                return result
            cindex = np.where(valid, cindex, low)
            start = np.floor(cindex - low).astype(np.int64)
            first = int(start[valid].min())
            stop = min(size, int(start[valid].max()) + ORDER + 1)
            matrix = np.zeros((coords.size, stop - first))
            rows = np.nonzero(valid)[0]
            for j in range(ORDER + 1):
                column = start[rows] + j
                keep = column < size  # at the upper edge of the valid region this weight is 0
                weight = cubic_bspline(cindex[rows] - column)
                matrix[rows[keep], column[keep] - first] = weight[keep]
            matrices.append(matrix)
            windows.append(slice(first, stop))
        # Contract the last axes first, each new axis going in front: (*lengths[1:], k, g0);
        # the first axis, the largest product, is one matrix product into the result.
        values = np.moveaxis(self.coefficients[tuple(windows)][..., order], -1, 0)
        for a in reversed(range(1, d)):
            values = np.tensordot(matrices[a], values, axes=([1], [d]))
        values = np.moveaxis(values, -1, 0).reshape(values.shape[-1], -1)
        np.matmul(matrices[0], values, out=result.reshape(lengths[0], -1))
        return result

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points + self.displacement(points)

    def _solve_inverse(
        self, targets: np.ndarray, start: np.ndarray, tol: float, max_iter: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Newton iterations compiled, with the exact Jacobian (:mod:`~.bspline_solve`)."""
        return solve_inverse(self, targets, start, tol, max_iter)

    def inverse(self, tol: float | None = None, max_iter: int = 50) -> NumericalInverse:
        """The numerical inverse (damped Newton, compiled, see :class:`NumericalInverse`).

        Parameters
        ----------
        tol
            Largest accepted residual in physical units; default
            :data:`DEFAULT_TOL_FRACTION` of the smallest control-point spacing.
        max_iter
            Maximum number of iterations.
        """
        if tol is None:
            tol = DEFAULT_TOL_FRACTION * float(self.grid_spacing.min())
        return NumericalInverse(self, tol, max_iter)

    def with_unit_scale(self, factor: float) -> BSpline:
        factor = check_unit_factor(factor)
        return BSpline(
            self.grid_origin * factor,
            self.grid_spacing * factor,
            self.grid_direction,
            self.grid_size,
            self.coefficients * factor,
        )
