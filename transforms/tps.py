"""Thin plate splines through landmark pairs.

``ThinPlateSpline(source_points, target_points)`` maps source space into target
space: ``f(p) = a + A p + sum_i w_i phi(|p - s_i|)``, exact at the landmarks,
with the radial kernel ``phi(r) = r`` in 3D and ``r^2 log r`` in 2D (the
biharmonic kernels) by default. BigWarp uses ``r^2 log r`` in every dimension:
``kernel="r2logr"`` reproduces its 3D splines between the landmarks too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine
from coframe.transforms.base import NumericalInverse, Transform, check_unit_factor, frozen_array

#: Points per block when evaluating the kernel (bounds memory to block x landmarks).
BLOCK_ELEMENTS = 4_000_000

#: Default inverse tolerance as a fraction of the landmarks' bounding-box diagonal.
DEFAULT_TOL_FRACTION = 1e-7


KERNELS = ("biharmonic", "r2logr")


def radial_kernel(r: np.ndarray, dim: int, kernel: str = "biharmonic") -> np.ndarray:
    """The thin plate spline kernel.

    ``biharmonic``: ``r`` in 3D (and 1D), ``r^2 log r`` in 2D; ``r2logr``:
    ``r^2 log r`` in every dimension (BigWarp's choice).
    """
    if kernel == "r2logr" or dim == 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(r > 0, r * r * np.log(np.where(r > 0, r, 1.0)), 0.0)
    return r


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1), 0.0))


@dataclass(frozen=True, eq=False)
class ThinPlateSpline(Transform):
    """A thin plate spline mapping source landmarks exactly onto target landmarks.

    Parameters
    ----------
    source_points
        ``(N, d)`` landmarks in the source (input) space, numpy axis order.
    target_points
        ``(N, d)`` corresponding landmarks in the target (output) space.
    kernel
        ``"biharmonic"`` (default) or ``"r2logr"`` (BigWarp's kernel).

    Raises
    ------
    DimensionError
        If the two sets differ in shape.
    TransformError
        If there are fewer than ``d + 1`` landmarks, duplicated landmarks, or
        all landmarks lie in a lower-dimensional subspace.
    """

    source_points: np.ndarray
    target_points: np.ndarray
    kernel: str = "biharmonic"
    _weights: np.ndarray = field(init=False, repr=False, compare=False)
    _affine: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        src = frozen_array(self.source_points, name="TPS source_points", ndim=2)
        dst = frozen_array(self.target_points, name="TPS target_points", ndim=2)
        if src.shape != dst.shape:
            raise DimensionError(
                f"TPS source_points {src.shape} and target_points {dst.shape} must have the same "
                "shape (N, d)"
            )
        if self.kernel not in KERNELS:
            raise TransformError(
                f"unknown thin plate spline kernel {self.kernel!r}: "
                f"expected one of {', '.join(KERNELS)}"
            )
        n, d = src.shape
        if d < 1 or n < d + 1:
            raise TransformError(
                f"a {d}D thin plate spline needs at least {d + 1} landmark pairs, got {n}"
            )
        if np.unique(src, axis=0).shape[0] != n:
            raise TransformError("TPS source_points contain duplicated landmarks: remove them")
        homogeneous = np.column_stack([np.ones(n), src])
        if np.linalg.matrix_rank(homogeneous) < d + 1:
            raise TransformError(
                f"TPS source_points all lie in a subspace of lower dimension than {d}: add "
                "landmarks off that plane or line"
            )
        system = np.zeros((n + d + 1, n + d + 1))
        system[:n, :n] = radial_kernel(_pairwise_distances(src, src), d, self.kernel)
        system[:n, n:] = homogeneous
        system[n:, :n] = homogeneous.T
        rhs = np.zeros((n + d + 1, d))
        rhs[:n] = dst
        try:
            solution = np.linalg.solve(system, rhs)
        except np.linalg.LinAlgError as e:
            raise TransformError(f"TPS system with {n} landmarks is singular: {e}") from e
        weights = solution[:n].copy()
        affine = solution[n:].copy()  # rows: constant term, then one per input axis
        weights.flags.writeable = False
        affine.flags.writeable = False
        object.__setattr__(self, "source_points", src)
        object.__setattr__(self, "target_points", dst)
        object.__setattr__(self, "_weights", weights)
        object.__setattr__(self, "_affine", affine)

    @property
    def input_dim(self) -> int:
        return self.source_points.shape[1]

    @property
    def output_dim(self) -> int:
        return self.source_points.shape[1]

    @property
    def affine_part(self) -> Transform:
        """The affine part ``a + A p`` of the spline (its behaviour far from the landmarks)."""

        return Affine.from_linear(self._affine[1:].T, self._affine[0])

    def _apply(self, points: np.ndarray) -> np.ndarray:
        n_landmarks, d = self.source_points.shape
        out = np.empty((points.shape[0], d))
        block = max(1, BLOCK_ELEMENTS // n_landmarks)
        for start in range(0, points.shape[0], block):
            p = points[start : start + block]
            kernel = radial_kernel(_pairwise_distances(p, self.source_points), d, self.kernel)
            out[start : start + block] = (
                kernel @ self._weights + self._affine[0] + p @ self._affine[1:]
            )
        return out

    def inverse(self, tol: float | None = None, max_iter: int = 50) -> NumericalInverse:
        """The numerical inverse (damped Newton from the inverse affine part).

        Parameters
        ----------
        tol
            Largest accepted residual in physical units; default
            :data:`DEFAULT_TOL_FRACTION` of the landmarks' bounding-box diagonal.
        max_iter
            Maximum number of iterations.
        """
        if tol is None:
            extent = float(np.linalg.norm(np.ptp(self.target_points, axis=0)))
            tol = DEFAULT_TOL_FRACTION * max(extent, 1e-12)
        try:
            initial = self.affine_part.inverse()
        except TransformError:
            initial = None
        return NumericalInverse(self, tol, max_iter, initial)

    def with_unit_scale(self, factor: float) -> ThinPlateSpline:
        factor = check_unit_factor(factor)
        return ThinPlateSpline(
            self.source_points * factor, self.target_points * factor, kernel=self.kernel
        )
