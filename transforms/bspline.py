"""Cubic B-spline free-form deformations, compatible with SimpleITK's ``BSplineTransform``.

The map is ``apply(p) = p + sum_k c_k B(i(p) - k)`` where ``i(p)`` is the
continuous grid index of ``p``, ``c_k`` the displacement coefficient of
control point ``k`` and ``B`` the tensor product of cubic B-spline kernels.
As in ITK, a point is moved only inside the valid region, where its continuous
index ``i`` satisfies ``1 <= i <= grid_size - 2`` along every axis; elsewhere
the displacement is zero. All parameters are in numpy axis order; conversion
to SimpleITK's (x, y, z) lives in :mod:`transforms.sitk_bridge`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from transforms.base import NumericalInverse, Transform, check_unit_factor, frozen_array
from transforms.errors import DimensionError, TransformError

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

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points + self.displacement(points)

    def inverse(self, tol: float | None = None, max_iter: int = 50) -> NumericalInverse:
        """The numerical inverse (damped Newton, see :class:`NumericalInverse`).

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
