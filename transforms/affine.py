"""Linear transforms: :class:`Affine`, :class:`Translation`, :class:`Scale`, :class:`Rotation`.

Matrices act on column vectors of physical coordinates in numpy axis order
((z, y, x) or (y, x)): ``q = linear @ p + translation``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from coframe.core.errors import (
    CoframeWarning,
    DimensionError,
    NotInvertibleError,
    TransformError,
)
from coframe.transforms.base import Transform, check_unit_factor, frozen_array

#: Largest ``|R R^T - I|`` (any entry) of a matrix that :class:`Rotation` takes as it is.
ROTATION_TOLERANCE = 1e-6

#: Largest ``|R R^T - I|`` of a matrix that :meth:`Rotation.from_rounded` orthonormalises.
#: Entries written to three decimals are off by at most ``e = 5e-4``; for ``R + E``,
#: ``(R + E)(R + E)^T - I = R E^T + E R^T + E E^T`` has entries of at most
#: ``2 sqrt(d) e + d e^2``: 1.42e-3 in 2D, 1.73e-3 in 3D (1.41e-3 and 1.67e-3 seen over
#: 10^5 random rotations). 2e-3 takes every 3-decimal rounding of a 2D or 3D rotation and
#: refuses a matrix that scales by 0.1% or more.
ROUNDED_ROTATION_TOLERANCE = 2e-3

#: Reciprocal condition number below which a square linear part counts as singular.
SINGULAR_RCOND = 1e-12


def _is_homogeneous_row(row: np.ndarray) -> bool:
    return bool(np.all(row[:-1] == 0.0) and row[-1] == 1.0)


def nearest_rotation(matrix: ArrayLike) -> np.ndarray:
    """The proper rotation closest to a square matrix (the polar factor, determinant +1)."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] *= -1
        rotation = u @ vt
    return rotation


def orthonormality_residual(matrix: np.ndarray) -> float:
    """``|R R^T - I|``, the largest entry, of a square matrix."""
    return float(np.abs(matrix @ matrix.T - np.eye(matrix.shape[0])).max())


def _square_rotation_matrix(matrix: ArrayLike) -> np.ndarray:
    """``matrix`` as a frozen array, checked square and not a reflection."""
    m = frozen_array(matrix, name="rotation matrix", ndim=2)
    if m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise TransformError(f"rotation matrix must be square (d, d), got shape {m.shape}")
    det = np.linalg.det(m)
    if det < 0:
        raise TransformError(
            f"rotation matrix {m.tolist()} has determinant {det:.3g}: a reflection is not a "
            "rotation; use Affine"
        )
    return m


@dataclass(frozen=True, eq=False)
class Affine(Transform):
    """An affine map ``q = linear @ p + translation``.

    Parameters
    ----------
    matrix
        Either ``(out, in + 1)`` (last column the translation), or homogeneous
        ``(out + 1, in + 1)`` whose last row is ``[0, ..., 0, 1]``. A square
        matrix whose last row is ``[0, ..., 0, 1]`` is read as homogeneous. A
        2D -> 3D map (``in = 2, out = 3``, the pose of a section in a volume)
        is allowed; it has no inverse but :meth:`plane_inverse`.

    Raises
    ------
    TransformError
        If the matrix is not 2D, not finite, or has no room for a translation.
    """

    matrix: np.ndarray

    def __post_init__(self) -> None:
        m = frozen_array(self.matrix, name="affine matrix", ndim=2)
        rows, cols = m.shape
        if cols < 2 or rows < 1:
            raise TransformError(
                f"affine matrix of shape {m.shape} is too small: expected (out, in + 1) or "
                "homogeneous (out + 1, in + 1) with in >= 1"
            )
        if rows >= 2 and rows in (cols, cols + 1) and _is_homogeneous_row(m[-1]):
            m = frozen_array(m[:-1], name="affine matrix")
        object.__setattr__(self, "matrix", m)

    @classmethod
    def from_linear(cls, linear: ArrayLike, translation: ArrayLike | None = None) -> Affine:
        """Build an affine from its linear part ``(out, in)`` and translation ``(out,)``.

        Raises
        ------
        TransformError
            If the shapes disagree.
        """
        lin = np.asarray(linear, dtype=np.float64)
        if lin.ndim != 2:
            raise TransformError(f"linear part must be a 2D matrix, got shape {lin.shape}")
        t = (
            np.zeros(lin.shape[0])
            if translation is None
            else np.asarray(translation, dtype=np.float64)
        )
        if t.shape != (lin.shape[0],):
            raise TransformError(
                f"translation of shape {t.shape} does not fit a linear part of shape {lin.shape}: "
                f"expected ({lin.shape[0]},)"
            )
        m = np.column_stack([lin, t])
        if m.shape[0] == m.shape[1] and _is_homogeneous_row(m[-1]):
            # e.g. a section pose whose z row is [0, 0, 1]: the linear part says what it is,
            # so the matrix is not read as homogeneous (which would drop that row)
            out = cls.__new__(cls)
            object.__setattr__(out, "matrix", frozen_array(m, name="affine matrix", ndim=2))
            return out
        return cls(m)

    @property
    def input_dim(self) -> int:
        return self.matrix.shape[1] - 1

    @property
    def output_dim(self) -> int:
        return self.matrix.shape[0]

    @property
    def linear(self) -> np.ndarray:
        """The ``(out, in)`` linear part."""
        return self.matrix[:, :-1]

    @property
    def translation(self) -> np.ndarray:
        """The ``(out,)`` translation."""
        return self.matrix[:, -1]

    @property
    def homogeneous(self) -> np.ndarray:
        """The ``(out + 1, in + 1)`` homogeneous matrix (a new array)."""
        bottom = np.zeros((1, self.input_dim + 1))
        bottom[0, -1] = 1.0
        return np.vstack([self.matrix, bottom])

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.linear.T + self.translation

    def inverse(self) -> Affine:
        """The exact inverse.

        Raises
        ------
        NotInvertibleError
            If the map is not square (e.g. 2D -> 3D) or the linear part is singular.
        """
        if self.input_dim != self.output_dim:
            raise NotInvertibleError(
                f"a {self.input_dim}D -> {self.output_dim}D affine has no inverse; "
                "use Affine.plane_inverse() for a least-squares projection back"
            )
        lin = self.linear
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cond = np.linalg.cond(lin)
            det = np.linalg.det(lin)
        if not np.isfinite(cond) or cond * SINGULAR_RCOND > 1.0:
            raise NotInvertibleError(
                f"affine linear part is singular (det={det:.3g}, "
                f"matrix {lin.tolist()}): expected an invertible matrix"
            )
        inv = np.linalg.inv(lin)
        return Affine.from_linear(inv, -inv @ self.translation)

    def plane_inverse(self) -> Affine:
        """Least-squares inverse of a map into a higher dimension (e.g. 2D -> 3D).

        Returns the ``out -> in`` affine that sends each point of the output
        space to the input point whose image is nearest (orthogonal projection
        onto the embedded plane, then back into its coordinates).

        Raises
        ------
        NotInvertibleError
            If the linear part does not have full column rank.
        """
        lin = self.linear
        if np.linalg.matrix_rank(lin) < self.input_dim:
            raise NotInvertibleError(
                f"affine linear part {lin.tolist()} has rank below {self.input_dim}: "
                "its image is not a full plane"
            )
        pinv = np.linalg.pinv(lin)
        return Affine.from_linear(pinv, -pinv @ self.translation)

    def as_affine(self) -> Affine:
        return self

    def with_unit_scale(self, factor: float) -> Affine:
        factor = check_unit_factor(factor)
        return Affine.from_linear(self.linear, self.translation * factor)


@dataclass(frozen=True, eq=False)
class Translation(Transform):
    """A shift ``q = p + offset``.

    Parameters
    ----------
    offset
        ``(d,)`` shift in physical units, numpy axis order.
    """

    offset: np.ndarray

    def __post_init__(self) -> None:
        offset = frozen_array(self.offset, name="translation offset", ndim=1)
        if offset.size == 0:
            raise DimensionError("translation offset is empty: expected one value per axis")
        object.__setattr__(self, "offset", offset)

    @property
    def input_dim(self) -> int:
        return self.offset.shape[0]

    @property
    def output_dim(self) -> int:
        return self.offset.shape[0]

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points + self.offset

    def inverse(self) -> Translation:
        return Translation(-self.offset)

    def as_affine(self) -> Affine:
        return Affine.from_linear(np.eye(self.input_dim), self.offset)

    def with_unit_scale(self, factor: float) -> Translation:
        return Translation(self.offset * check_unit_factor(factor))


@dataclass(frozen=True, eq=False)
class Scale(Transform):
    """An axis-aligned scaling about the origin, ``q = factors * p``.

    Parameters
    ----------
    factors
        ``(d,)`` scale factors, numpy axis order.
    """

    factors: np.ndarray

    def __post_init__(self) -> None:
        factors = frozen_array(self.factors, name="scale factors", ndim=1)
        if factors.size == 0:
            raise DimensionError("scale factors are empty: expected one value per axis")
        object.__setattr__(self, "factors", factors)

    @property
    def input_dim(self) -> int:
        return self.factors.shape[0]

    @property
    def output_dim(self) -> int:
        return self.factors.shape[0]

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points * self.factors

    def inverse(self) -> Scale:
        """The inverse scaling.

        Raises
        ------
        NotInvertibleError
            If a factor is zero.
        """
        if np.any(self.factors == 0):
            raise NotInvertibleError(
                f"scale factors {self.factors.tolist()} contain a zero: expected non-zero factors"
            )
        return Scale(1.0 / self.factors)

    def as_affine(self) -> Affine:
        return Affine.from_linear(np.diag(self.factors))

    def with_unit_scale(self, factor: float) -> Scale:
        check_unit_factor(factor)
        return self


@dataclass(frozen=True, eq=False)
class Rotation(Transform):
    """A proper rotation about the origin, ``q = matrix @ p``.

    Parameters
    ----------
    matrix
        ``(d, d)`` orthonormal matrix with determinant +1 (``|R R^T - I|`` at
        most :data:`ROTATION_TOLERANCE`), numpy axis order. A matrix read from
        a file, possibly rounded, goes through :meth:`from_rounded`.

    Raises
    ------
    TransformError
        If the matrix is not square, not orthonormal, or a reflection.
    """

    matrix: np.ndarray

    def __post_init__(self) -> None:
        m = _square_rotation_matrix(self.matrix)
        err = orthonormality_residual(m)
        if err > ROTATION_TOLERANCE:
            raise TransformError(
                f"rotation matrix {m.tolist()} is not orthonormal (|R R^T - I| = {err:.3g}): "
                "use Affine for a general linear map"
            )
        object.__setattr__(self, "matrix", m)

    @classmethod
    def from_rounded(cls, matrix: ArrayLike, *, source: str = "rotation") -> Rotation:
        """A rotation from a matrix that may be rounded, as people and other tools write them.

        A matrix within :data:`ROUNDED_ROTATION_TOLERANCE` of orthonormal
        (every 3-decimal rounding of a rotation is) but beyond
        :data:`ROTATION_TOLERANCE` is replaced by the nearest rotation (the
        polar factor of its SVD), with a :class:`CoframeWarning` giving the
        residual and how far the entries moved.

        Parameters
        ----------
        matrix
            ``(d, d)`` matrix, numpy axis order.
        source
            Where the matrix comes from (a file key), named in the messages.

        Raises
        ------
        TransformError
            If the matrix is not square, is a reflection, or is further from
            orthonormal than :data:`ROUNDED_ROTATION_TOLERANCE`.
        """
        try:
            m = _square_rotation_matrix(matrix)
        except TransformError as e:
            raise TransformError(f"{source}: {e}") from e
        err = orthonormality_residual(m)
        if err <= ROTATION_TOLERANCE:
            return cls(m)
        if err > ROUNDED_ROTATION_TOLERANCE:
            raise TransformError(
                f"{source}: matrix {m.tolist()} is not a rotation (|R R^T - I| = {err:.3g}, "
                f"above the {ROUNDED_ROTATION_TOLERANCE:g} allowed for rounding): write an "
                "'affine' for a general linear map, or fix the matrix"
            )
        nearest = nearest_rotation(m)
        moved = float(np.abs(nearest - m).max())
        warnings.warn(
            f"{source}: matrix {m.tolist()} is not exactly orthonormal (|R R^T - I| = {err:.3g}, "
            f"within the {ROUNDED_ROTATION_TOLERANCE:g} allowed for rounding): using the "
            f"nearest rotation, entries moved by up to {moved:.3g}",
            CoframeWarning,
            stacklevel=2,
        )
        return cls(nearest)

    @property
    def input_dim(self) -> int:
        return self.matrix.shape[0]

    @property
    def output_dim(self) -> int:
        return self.matrix.shape[0]

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix.T

    def inverse(self) -> Rotation:
        return Rotation(self.matrix.T)

    def as_affine(self) -> Affine:
        return Affine.from_linear(self.matrix)

    def with_unit_scale(self, factor: float) -> Rotation:
        check_unit_factor(factor)
        return self


@dataclass(frozen=True, eq=False)
class Identity(Transform):
    """The identity map of a ``dim``-dimensional space.

    Parameters
    ----------
    dim
        Number of coordinates.
    """

    dim: int

    def __post_init__(self) -> None:
        if int(self.dim) != self.dim or self.dim < 1:
            raise DimensionError(f"Identity dimension must be a positive integer, got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))

    @property
    def input_dim(self) -> int:
        return self.dim

    @property
    def output_dim(self) -> int:
        return self.dim

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return points.copy()

    def inverse(self) -> Identity:
        return self

    def as_affine(self) -> Affine:
        return Affine(np.eye(self.dim + 1))

    def with_unit_scale(self, factor: float) -> Identity:
        check_unit_factor(factor)
        return self
