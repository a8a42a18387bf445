"""The transform model: the abstract :class:`Transform`, identity, sequences, numerical inverses.

A transform maps *points* (physical coordinates, numpy axis order (z, y, x) or
(y, x)) of one space into another. Transforms are immutable values: arrays are
stored as read-only copies and equality compares values.

Subclasses implement :meth:`Transform._apply` on an ``(N, input_dim)`` float64
array; :meth:`Transform.apply` validates shapes and handles single points.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from coframe.core.errors import DimensionError, NotInvertibleError, TransformError

if TYPE_CHECKING:  # annotations only: affine.py builds on this module
    from coframe.transforms.affine import Affine


def frozen_array(
    values: ArrayLike, *, name: str, dtype: type = np.float64, ndim: int | None = None
) -> np.ndarray:
    """Return a read-only copy of ``values`` as a numpy array.

    Parameters
    ----------
    values
        Array-like input.
    name
        Name of the parameter, used in error messages.
    dtype
        Element type of the copy.
    ndim
        Required number of dimensions, or None to accept any.

    Raises
    ------
    TransformError
        If the values are not numeric, not finite, or have the wrong rank.
    """
    try:
        array = np.array(values, dtype=dtype, copy=True)
    except (TypeError, ValueError) as e:
        raise TransformError(f"{name} must be numeric, got {values!r}") from e
    if ndim is not None and array.ndim != ndim:
        raise TransformError(f"{name} must be a {ndim}D array, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise TransformError(f"{name} must be finite, got {array.tolist()!r}")
    array.flags.writeable = False
    return array


def as_points(points: ArrayLike, dim: int, *, name: str = "points") -> tuple[np.ndarray, bool]:
    """Validate points as an ``(N, dim)`` float64 array.

    Parameters
    ----------
    points
        One point ``(dim,)`` or several ``(N, dim)``.
    dim
        Expected number of coordinates per point.
    name
        Name used in error messages.

    Returns
    -------
    tuple
        The ``(N, dim)`` array and whether a single point was given.

    Raises
    ------
    DimensionError
        If the shape is not ``(dim,)`` or ``(N, dim)``.
    """
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DimensionError(f"{name} must be numeric coordinates, got {points!r}") from e
    single = array.ndim == 1
    if single:
        array = array[np.newaxis, :]
    if array.ndim != 2 or array.shape[1] != dim:
        shape = array.shape[1:] if single else array.shape
        raise DimensionError(
            f"{name} of shape {shape} do not fit a transform of input dimension {dim}: "
            f"expected ({dim},) or (N, {dim}) in (z, y, x) order"
        )
    return array, single


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Transform) or isinstance(b, Transform):
        return a == b
    if isinstance(a, (int, float, str, bool, type(None))) and isinstance(
        b, (int, float, str, bool, type(None))
    ):
        return a == b
    # Lazy arrays (zarr and the like): identity only, never read for a comparison.
    return a is b


class Transform(ABC):
    """A point map from one physical space into another.

    Concrete transforms are frozen dataclasses. Points are physical coordinates
    in numpy axis order ((z, y, x) or (y, x)).
    """

    @property
    @abstractmethod
    def input_dim(self) -> int:
        """Number of coordinates of an input point."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Number of coordinates of an output point."""

    @abstractmethod
    def _apply(self, points: np.ndarray) -> np.ndarray:
        """Map an ``(N, input_dim)`` float64 array to ``(N, output_dim)`` float64."""

    def apply(self, points: ArrayLike) -> np.ndarray:
        """Map points of the input space into the output space.

        Parameters
        ----------
        points
            One point ``(input_dim,)`` or ``(N, input_dim)``, physical
            coordinates in numpy axis order.

        Returns
        -------
        numpy.ndarray
            ``(output_dim,)`` for one point, else ``(N, output_dim)``, float64.

        Raises
        ------
        DimensionError
            If the points have the wrong shape.
        """
        array, single = as_points(points, self.input_dim)
        out = np.asarray(self._apply(array), dtype=np.float64)
        return out[0] if single else out

    def inverse(self) -> Transform:
        """Return the inverse transform.

        Raises
        ------
        NotInvertibleError
            If the transform has no inverse.
        """
        raise NotInvertibleError(f"{type(self).__name__} has no inverse")

    def _solve_inverse(
        self, targets: np.ndarray, start: np.ndarray, tol: float, max_iter: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``_apply(x) = targets`` point by point (:func:`newton_solve`).

        A map with a faster solver of its own (a compiled one, an exact
        Jacobian) overrides this; :class:`NumericalInverse` calls it.

        Returns
        -------
        tuple
            Solutions ``(N, d)`` and residual norms ``(N,)``.
        """
        return newton_solve(self._apply, targets, start, tol, max_iter)

    def then(self, other: Transform) -> Transform:
        """Compose: apply ``self`` first, then ``other``.

        Raises
        ------
        DimensionError
            If ``self.output_dim`` differs from ``other.input_dim``.
        """
        return Chain((self, other))

    def as_affine(self) -> Affine | None:
        """The equivalent affine transform when the map is linear, else None."""
        return None

    @property
    def is_linear(self) -> bool:
        """Whether the transform is affine (``as_affine()`` is not None)."""
        return self.as_affine() is not None

    def with_unit_scale(self, factor: float) -> Transform:
        """The same map expressed in lengths multiplied by ``factor``.

        Returns ``T'`` with ``T'(factor * p) == factor * T(p)``; used to change
        the length unit (e.g. micrometre to nanometre: ``factor = 1000``).
        Linear parts are unchanged; translations, origins, spacings and
        displacements are multiplied.

        Parameters
        ----------
        factor
            Positive length conversion factor.
        """

        factor = check_unit_factor(factor)
        return self if factor == 1.0 else UnitScaled(self, factor)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        if not dataclasses.is_dataclass(self):
            return self is other
        return all(
            _values_equal(getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.compare
        )

    __hash__ = None  # type: ignore[assignment]


def check_unit_factor(factor: float) -> float:
    """Validate a positive, finite length conversion factor.

    Raises
    ------
    TransformError
        If the factor is not a positive finite number.
    """
    value = float(factor)
    if not np.isfinite(value) or value <= 0:
        raise TransformError(f"unit scale factor must be positive and finite, got {factor!r}")
    return value


@dataclass(frozen=True, eq=False)
class Chain(Transform):
    """Transforms applied one after the other, in the order listed.

    Nested sequences are flattened. Consecutive dimensions must agree.

    Parameters
    ----------
    transforms
        The transforms, first applied first.

    Raises
    ------
    DimensionError
        If the sequence is empty or one transform's output dimension differs
        from the next one's input dimension.
    """

    transforms: tuple[Transform, ...]

    def __post_init__(self) -> None:
        flat: list[Transform] = []
        for t in tuple(self.transforms):
            if isinstance(t, Chain):
                flat.extend(t.transforms)
            elif isinstance(t, Transform):
                flat.append(t)
            else:
                raise TransformError(f"chain items must be transforms, got {type(t).__name__}")
        if not flat:
            raise DimensionError("a chain needs at least one transform, got none")
        for i, (a, b) in enumerate(zip(flat[:-1], flat[1:], strict=True)):
            if a.output_dim != b.input_dim:
                raise DimensionError(
                    f"cannot chain {type(a).__name__} (output dimension {a.output_dim}) into "
                    f"{type(b).__name__} (input dimension {b.input_dim}) at position {i + 1} "
                    "of the sequence: dimensions must agree"
                )
        object.__setattr__(self, "transforms", tuple(flat))

    @property
    def input_dim(self) -> int:
        return self.transforms[0].input_dim

    @property
    def output_dim(self) -> int:
        return self.transforms[-1].output_dim

    def _apply(self, points: np.ndarray) -> np.ndarray:
        out = points
        for t in self.transforms:
            out = np.asarray(t._apply(out), dtype=np.float64)
        return out

    def inverse(self) -> Transform:
        inverses = tuple(t.inverse() for t in reversed(self.transforms))
        return inverses[0] if len(inverses) == 1 else Chain(inverses)

    def as_affine(self) -> Affine | None:
        affines = [t.as_affine() for t in self.transforms]
        if any(a is None for a in affines):
            return None
        homogeneous = affines[0].homogeneous
        for a in affines[1:]:
            homogeneous = a.homogeneous @ homogeneous
        return type(affines[0])(homogeneous)  # an Affine, without importing its module

    def with_unit_scale(self, factor: float) -> Transform:
        return Chain(tuple(t.with_unit_scale(factor) for t in self.transforms))


@dataclass(frozen=True, eq=False)
class UnitScaled(Transform):
    """A transform expressed in lengths multiplied by ``factor``: ``p -> factor * T(p / factor)``.

    What :meth:`Transform.with_unit_scale` returns for a transform that does
    not rescale its own parameters.

    Parameters
    ----------
    transform
        The transform in the original unit.
    factor
        Positive length conversion factor.
    """

    transform: Transform
    factor: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", check_unit_factor(self.factor))

    @property
    def input_dim(self) -> int:
        return self.transform.input_dim

    @property
    def output_dim(self) -> int:
        return self.transform.output_dim

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return self.factor * np.asarray(self.transform._apply(points / self.factor), float)

    def inverse(self) -> Transform:
        return UnitScaled(self.transform.inverse(), self.factor)

    def as_affine(self) -> Affine | None:
        affine = self.transform.as_affine()
        return None if affine is None else affine.with_unit_scale(self.factor)

    def with_unit_scale(self, factor: float) -> Transform:
        return UnitScaled(self.transform, self.factor * check_unit_factor(factor))


@dataclass(frozen=True, eq=False)
class NumericalInverse(Transform):
    """The inverse of an invertible nonlinear map, solved point by point.

    Each point ``y`` is mapped to the ``x`` with ``forward(x) == y``, found by
    damped Newton iterations (the forward map's own solver, by default
    :func:`newton_solve` with a finite-difference Jacobian), starting from
    ``initial(y)`` (or ``y``). :meth:`apply_with_residual` reports the
    remaining error ``|forward(x) - y|``; :meth:`apply` raises when it exceeds
    ``tol`` for any point.

    Parameters
    ----------
    forward
        The map to invert (same input and output dimension).
    tol
        Largest accepted residual, in physical units.
    max_iter
        Maximum number of iterations.
    initial
        Optional transform giving the starting guess (e.g. the inverse of the
        affine part of the forward map).
    """

    forward: Transform
    tol: float
    max_iter: int = 50
    initial: Transform | None = None

    def __post_init__(self) -> None:
        if self.forward.input_dim != self.forward.output_dim:
            raise NotInvertibleError(
                f"cannot invert a {self.forward.input_dim}D -> {self.forward.output_dim}D "
                f"{type(self.forward).__name__}: dimensions differ"
            )
        tol = float(self.tol)
        if not np.isfinite(tol) or tol <= 0:
            raise TransformError(f"inverse tolerance tol must be positive, got {self.tol!r}")
        object.__setattr__(self, "tol", tol)
        if int(self.max_iter) < 1:
            raise TransformError(f"max_iter must be at least 1, got {self.max_iter!r}")
        object.__setattr__(self, "max_iter", int(self.max_iter))

    @property
    def input_dim(self) -> int:
        return self.forward.output_dim

    @property
    def output_dim(self) -> int:
        return self.forward.input_dim

    def _start(self, targets: np.ndarray) -> np.ndarray:
        if self.initial is None:
            return targets.copy()
        return np.asarray(self.initial._apply(targets), dtype=np.float64)

    def _solve(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the solutions and the residual norm of every target."""
        return self.forward._solve_inverse(targets, self._start(targets), self.tol, self.max_iter)

    def apply_with_residual(self, points: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Map points and report the inversion residual of each.

        Parameters
        ----------
        points
            One point or ``(N, d)`` points of the forward map's output space.

        Returns
        -------
        tuple
            The mapped points (shaped like :meth:`apply`'s result) and the
            residual ``|forward(x) - y|`` of each point in physical units
            (a float for a single point, else ``(N,)``).
        """
        array, single = as_points(points, self.input_dim)
        solution, residual = self._solve(array)
        if single:
            return solution[0], residual[0]
        return solution, residual

    def _apply(self, points: np.ndarray) -> np.ndarray:
        solution, residual = self._solve(points)
        check_residual(residual, points, self.tol, type(self.forward).__name__)
        return solution

    def inverse(self) -> Transform:
        return self.forward

    def with_unit_scale(self, factor: float) -> Transform:
        factor = check_unit_factor(factor)
        initial = None if self.initial is None else self.initial.with_unit_scale(factor)
        return NumericalInverse(
            self.forward.with_unit_scale(factor), self.tol * factor, self.max_iter, initial
        )


def check_residual(residual: np.ndarray, points: np.ndarray, tol: float, what: str) -> None:
    """Raise when an inversion residual exceeds its tolerance.

    Raises
    ------
    TransformError
        Naming the worst point, its residual and the tolerance.
    """
    if residual.size == 0:
        return
    worst = int(np.argmax(np.where(np.isfinite(residual), residual, np.inf)))
    if not np.isfinite(residual[worst]) or residual[worst] > tol:
        raise TransformError(
            f"inverse of {what} did not converge at point {points[worst].tolist()}: residual "
            f"{residual[worst]:.3g} > tol {tol:.3g} (physical units); the map may fold there or "
            "the point lies far outside its domain; pass a larger tol or use apply_with_residual"
        )


def newton_solve(
    forward: Callable[[np.ndarray], np.ndarray],
    targets: np.ndarray,
    start: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``forward(x) = targets`` point by point with damped Newton steps.

    The Jacobian is estimated by forward differences with step ``tol``; a
    step that does not reduce a point's residual is halved (up to 8 times).

    Parameters
    ----------
    forward
        Vectorised map ``(N, d) -> (N, d)``.
    targets
        ``(N, d)`` points to reach.
    start
        ``(N, d)`` initial guesses.
    tol
        Residual at which a point counts as solved; also the difference step.
    max_iter
        Maximum number of Newton iterations.

    Returns
    -------
    tuple
        Solutions ``(N, d)`` and residual norms ``(N,)``.
    """
    x = np.array(start, dtype=np.float64, copy=True)
    n, d = targets.shape
    if n == 0:
        return x, np.zeros(0)
    error = forward(x) - targets
    residual = np.linalg.norm(error, axis=1)
    step = max(tol, 1e-12)
    eye = np.eye(d)
    for _ in range(max_iter):
        active = np.flatnonzero(~(residual <= tol * 0.01))
        if active.size == 0:
            break
        xa = x[active]
        fa = error[active] + targets[active]
        jac = np.empty((active.size, d, d))
        for k in range(d):
            jac[:, :, k] = (forward(xa + step * eye[k]) - fa) / step
        try:
            delta = np.linalg.solve(jac, -error[active][:, :, np.newaxis])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = -np.einsum("nij,nj->ni", np.linalg.pinv(jac), error[active])
        delta = np.where(np.isfinite(delta), delta, 0.0)
        scale = np.ones(active.size)
        pending = np.arange(active.size)
        for _halving in range(8):
            trial = xa[pending] + scale[pending, None] * delta[pending]
            trial_error = forward(trial) - targets[active[pending]]
            trial_res = np.linalg.norm(trial_error, axis=1)
            better = trial_res < residual[active[pending]]
            idx = active[pending[better]]
            x[idx] = trial[better]
            error[idx] = trial_error[better]
            residual[idx] = trial_res[better]
            pending = pending[~better]
            if pending.size == 0:
                break
            scale[pending] *= 0.5
        if pending.size == active.size:
            break
    return x, residual
