"""Landmark pairs, and the transforms they define.

:class:`Landmarks` holds corresponding points of a *moving* and a *fixed*
image (numpy axis order, physical units), with names and active flags as
landmark tools keep them. :func:`landmarks_transform` is the map a set of
pairs defines, from FIXED points to MOVING points (the direction that
resamples the moving image into the fixed frame, coframe's convention for
registering moving M onto fixed F): a thin-plate spline through the pairs,
or a least-squares linear map (:func:`fit_linear`).

These are BigWarp's definitions: a BigWarp transform file stores landmarks
and a transform type, not parameters, so reading one
(:mod:`coframe.transforms.formats.bigwarp`) needs them; that is why the
least-squares fits live in the transform layer. The estimator built on them
(model choice, minimum counts, leave-one-out errors) is
:mod:`coframe.registration.landmarks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.base import Transform
from coframe.transforms.tps import ThinPlateSpline

#: Transform kinds :func:`landmarks_transform` fits.
KINDS: tuple[str, ...] = ("tps", "affine", "similarity", "rigid", "translation")


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Pairs of corresponding points in a moving and a fixed image.

    Parameters
    ----------
    moving
        ``(N, d)`` points in the moving image, physical units, numpy axis order
        (z, y, x) or (y, x).
    fixed
        ``(N, d)`` corresponding points in the fixed image.
    names
        ``N`` landmark names (default ``Pt-0``, ``Pt-1``...).
    active
        ``N`` flags; inactive pairs are kept but ignored by
        :func:`landmarks_transform` (default: all active).

    Raises
    ------
    DimensionError
        If shapes disagree or the dimension is not 2 or 3.
    """

    moving: np.ndarray
    fixed: np.ndarray
    names: tuple[str, ...] = field(default=())
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        moving = np.array(self.moving, dtype=np.float64, copy=True)
        fixed = np.array(self.fixed, dtype=np.float64, copy=True)
        if moving.ndim != 2 or moving.shape != fixed.shape:
            raise DimensionError(
                f"moving points {moving.shape} and fixed points {fixed.shape} must both be (N, d)"
            )
        n, d = moving.shape
        if d not in (2, 3):
            raise DimensionError(f"landmarks must be 2D or 3D, got {d} coordinates per point")
        names = (
            tuple(str(s) for s in self.names) if self.names else tuple(f"Pt-{i}" for i in range(n))
        )
        active = np.asarray(self.active, dtype=bool).copy()
        if active.size == 0 and n > 0 and len(self.active) == 0:
            active = np.ones(n, dtype=bool)
        if len(names) != n or active.shape != (n,):
            raise DimensionError(
                f"{n} landmark pairs need {n} names and {n} active flags, got {len(names)} names "
                f"and {active.size} flags"
            )
        for array in (moving, fixed, active):
            array.flags.writeable = False
        object.__setattr__(self, "moving", moving)
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "active", active)

    @property
    def dim(self) -> int:
        """Number of coordinates per point (2 or 3)."""
        return int(self.moving.shape[1])

    def __len__(self) -> int:
        return int(self.moving.shape[0])

    def active_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``(fixed, moving)`` points of the active pairs.

        Raises
        ------
        TransformError
            If an active pair has a non-finite coordinate (an unpaired point).
        """
        fixed, moving = self.fixed[self.active], self.moving[self.active]
        bad = ~(np.all(np.isfinite(fixed), axis=1) & np.all(np.isfinite(moving), axis=1))
        if bad.any():
            name = np.asarray(self.names, dtype=object)[self.active][bad][0]
            raise TransformError(
                f"active landmark {name!r} has no finite position in both images: "
                "place both points or deactivate it"
            )
        return fixed, moving

    def equals(self, other: Landmarks) -> bool:
        """Whether both sets hold the same names, flags and coordinates (NaNs compare equal)."""
        return (
            self.names == other.names
            and np.array_equal(self.active, other.active)
            and np.array_equal(self.moving, other.moving, equal_nan=True)
            and np.array_equal(self.fixed, other.fixed, equal_nan=True)
        )


def landmarks_from_pairs(
    fixed: ArrayLike, moving: ArrayLike, names: Iterable[str] | None = None
) -> Landmarks:
    """Build :class:`Landmarks` from fixed and moving points (all active)."""
    fixed_arr = np.asarray(fixed, dtype=np.float64)
    return Landmarks(
        np.asarray(moving, dtype=np.float64),
        fixed_arr,
        tuple(names) if names is not None else (),
        np.ones(fixed_arr.shape[0], dtype=bool),
    )


def fit_linear(source: ArrayLike, target: ArrayLike, kind: str) -> Affine | Translation:
    """Least-squares linear map sending ``source`` points onto ``target`` points.

    Parameters
    ----------
    source
        ``(N, d)`` points.
    target
        ``(N, d)`` corresponding points.
    kind
        ``"affine"`` (general), ``"similarity"`` (rotation, uniform scale,
        translation), ``"rigid"`` (rotation and translation) or
        ``"translation"``. Rotations are proper (no reflection), fitted with
        the Kabsch-Umeyama SVD solution.

    Raises
    ------
    TransformError
        If there are too few pairs or the points are degenerate for the kind.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    n, d = src.shape
    needed = {"affine": d + 1, "similarity": d, "rigid": d, "translation": 1}[kind]
    if n < needed:
        raise TransformError(f"a {d}D {kind} fit needs at least {needed} landmark pairs, got {n}")
    with np.errstate(over="ignore", invalid="ignore"):
        src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
        a, b = src - src_mean, dst - dst_mean
        spread = float((a * a).sum() + (b * b).sum())
    if not np.isfinite(spread):
        largest = float(np.abs(np.concatenate([src, dst])).max())
        raise TransformError(
            f"landmark coordinates up to {largest:g} overflow a {d}D {kind} fit: check the "
            "landmark file's numbers and its unit"
        )
    if kind == "translation":
        return Translation(dst_mean - src_mean)
    if kind == "affine":
        if np.linalg.matrix_rank(a) < d:
            raise TransformError(
                f"the {n} source landmarks lie in a subspace of dimension below {d}: an affine "
                "fit is undetermined; add landmarks off that plane or use kind='similarity'"
            )
        linear = np.linalg.lstsq(a, b, rcond=None)[0].T
        return Affine.from_linear(linear, dst_mean - linear @ src_mean)
    covariance = b.T @ a / n
    u, singular, vt = np.linalg.svd(covariance)
    if singular[0] <= 0 or np.sum(singular > 1e-12 * singular[0]) < d - 1:
        raise TransformError(
            f"the {n} landmarks are (nearly) collinear or coincide: a {d}D {kind} fit is "
            "undetermined; add landmarks off that line"
        )
    signs = np.ones(d)
    signs[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(signs) @ vt
    factor = 1.0
    if kind == "similarity":
        factor = float((singular * signs).sum() / (a * a).sum() * n)
    linear = factor * rotation
    return Affine.from_linear(linear, dst_mean - linear @ src_mean)


def landmarks_transform(landmarks: Landmarks, kind: str = "tps") -> Transform:
    """The transform mapping the FIXED points of active pairs onto their MOVING points.

    Parameters
    ----------
    landmarks
        The landmark pairs (inactive pairs are ignored).
    kind
        ``"tps"`` (thin plate spline, exact at the landmarks), or a
        least-squares ``"affine"``, ``"similarity"``, ``"rigid"`` or
        ``"translation"``. Like BigWarp, linear kinds are fitted moving ->
        fixed and inverted.

    Notes
    -----
    The spline is :class:`~coframe.transforms.tps.ThinPlateSpline` with BigWarp's
    ``r^2 log r`` kernel in every dimension, so it matches BigWarp's warp
    everywhere, not only at the landmarks.

    Raises
    ------
    TransformError
        For an unknown kind, too few pairs, or degenerate landmarks.
    """
    if kind not in KINDS:
        raise TransformError(
            f"unknown landmark transform kind {kind!r}: expected one of {', '.join(KINDS)}"
        )
    fixed, moving = landmarks.active_pairs()
    if kind == "tps":
        return ThinPlateSpline(fixed, moving, kernel="r2logr")
    return fit_linear(moving, fixed, kind).inverse()
