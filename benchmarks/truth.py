"""Known warps for the full-pair benchmarks, made with numpy and scipy only (never coframe).

A warp ``G`` maps a point ``q`` of the MOVING image's space to the point of the
FIXED image's space whose tissue it shows (numpy axis order z, y, x; physical
units)::

    p = A q + t                       (a random affine)
    G(q) = p + sum_k a_k exp(-|p - c_k|^2 / (2 s^2))   (smooth Gaussian bumps, optional)

The moving image is the fixed-space contrast sampled at ``G(q)`` for every
moving voxel ``q`` (scipy ``map_coordinates``, linear). The truth needs no
inverse: the truth points are moving voxels ``q`` whose image ``p = G(q)``
falls in the fixed foreground; a method's FIXED -> MOVING map should send
``p`` to ``q``. Every value here is closed-form, so the truth is exact.

:func:`sitk_transform` builds the same warp as a SimpleITK transform (an
affine followed by a displacement field sampled on a grid): the independent
evaluation that ``tests/test_bench_truth.py`` and the benchmark's own check
compare against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest rotation (degrees, per axis), scale change, shear and shift (physical) of a warp.
AFFINE_LIMITS = {"degrees": 8.0, "scale": 0.05, "shear": 0.03, "shift": 6.0}
#: Bumps of a deformable warp: count, width (physical) and amplitude s.d. (physical).
BUMPS = {"count": 10, "sigma": 18.0, "amplitude": 2.5}


@dataclass(frozen=True)
class Warp:
    """A moving -> fixed warp: affine (``linear``, ``shift``) then Gaussian bumps."""

    linear: np.ndarray  # 3x3, numpy order
    shift: np.ndarray  # 3
    centres: np.ndarray  # (k, 3) bump centres (fixed space)
    amplitudes: np.ndarray  # (k, 3) bump displacements
    sigma: float

    def affine_part(self, q: np.ndarray) -> np.ndarray:
        """``A q + t`` for points (n, 3)."""
        return np.asarray(q, dtype=np.float64) @ self.linear.T + self.shift

    def displacement(self, p: np.ndarray) -> np.ndarray:
        """The bumps' displacement at fixed-space points (n, 3)."""
        p = np.asarray(p, dtype=np.float64)
        out = np.zeros_like(p)
        for centre, amplitude in zip(self.centres, self.amplitudes, strict=True):
            weight = np.exp(-((p - centre) ** 2).sum(-1) / (2.0 * self.sigma**2))
            out += weight[:, None] * amplitude
        return out

    def apply(self, q: np.ndarray) -> np.ndarray:
        """``G(q)``: moving-space points (n, 3) -> fixed-space points."""
        p = self.affine_part(q)
        return p + self.displacement(p)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of the warp."""
        return {
            "linear": self.linear.tolist(),
            "shift": self.shift.tolist(),
            "bump_centres": self.centres.tolist(),
            "bump_amplitudes": self.amplitudes.tolist(),
            "bump_sigma": self.sigma,
            "max_bump": float(np.abs(self.amplitudes).max()) if len(self.amplitudes) else 0.0,
        }


def _rotation(angles: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def random_warp(
    rng: np.random.Generator, centre: np.ndarray, extent: np.ndarray, deformable: bool
) -> Warp:
    """A seeded random warp about ``centre`` of an object of size ``extent`` (physical)."""
    lim = AFFINE_LIMITS
    angles = np.deg2rad(rng.uniform(-lim["degrees"], lim["degrees"], 3))
    scale = np.diag(1.0 + rng.uniform(-lim["scale"], lim["scale"], 3))
    shear = np.eye(3)
    shear[0, 1], shear[1, 2] = rng.uniform(-lim["shear"], lim["shear"], 2)
    linear = _rotation(angles) @ shear @ scale
    shift = rng.uniform(-lim["shift"], lim["shift"], 3)
    centre = np.asarray(centre, dtype=np.float64)
    # about the centre: A (q - c) + c + shift
    translation = centre + shift - linear @ centre
    count = BUMPS["count"] if deformable else 0
    centres = centre + rng.uniform(-0.35, 0.35, (count, 3)) * np.asarray(extent)
    amplitudes = rng.normal(0.0, BUMPS["amplitude"], (count, 3))
    return Warp(linear, translation, centres, amplitudes, BUMPS["sigma"])


def grid_points(shape: tuple[int, ...], voxel: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Physical positions (n, 3) of every voxel centre of a grid, C order."""
    axes = [o + np.arange(n) * v for n, v, o in zip(shape, voxel, origin, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def render_moving(
    contrast: np.ndarray,
    contrast_voxel: np.ndarray,
    warp: Warp,
    shape: tuple[int, ...],
    voxel: np.ndarray,
    slab: int = 16,
) -> np.ndarray:
    """The moving image: ``contrast`` (fixed space, origin 0) sampled at ``G(q)``."""
    from scipy import ndimage

    contrast_voxel = np.asarray(contrast_voxel, dtype=np.float64)
    out = np.empty(shape, dtype=np.float32)
    for z in range(0, shape[0], slab):
        n = min(slab, shape[0] - z)
        q = grid_points((n, *shape[1:]), voxel, np.array([z * voxel[0], 0.0, 0.0]))
        index = warp.apply(q) / contrast_voxel
        values = ndimage.map_coordinates(contrast, index.T, order=1, cval=0.0)
        out[z : z + n] = values.reshape(n, *shape[1:])
    return out


def truth_points(
    fixed: np.ndarray,
    fixed_voxel: np.ndarray,
    warp: Warp,
    moving_shape: tuple[int, ...],
    moving_voxel: np.ndarray,
    threshold: float,
    count: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` fixed points ``p = G(q)`` in the fixed foreground and their truth ``q``."""
    from scipy import ndimage

    moving_voxel = np.asarray(moving_voxel, dtype=np.float64)
    candidates = rng.uniform(0, 1, (count * 20, 3)) * (np.array(moving_shape) - 1) * moving_voxel
    p = warp.apply(candidates)
    index = p / np.asarray(fixed_voxel, dtype=np.float64)
    value = ndimage.map_coordinates(fixed, index.T, order=1, cval=0.0)
    keep = np.flatnonzero(value > threshold)
    if keep.size < count:
        raise ValueError(f"only {keep.size} of {count} truth points fall in the fixed foreground")
    pick = keep[:count]
    return p[pick], candidates[pick]


def sitk_transform(warp: Warp, origin: np.ndarray, size: np.ndarray, spacing: float) -> Any:
    """The warp as SimpleITK: ``AffineTransform`` then a sampled ``DisplacementFieldTransform``.

    The field covers the box ``origin`` + ``size`` (physical, numpy order) on a grid of
    ``spacing``; SimpleITK's axes are (x, y, z), so every vector is reversed here.
    """
    import SimpleITK as sitk

    affine = sitk.AffineTransform(3)
    affine.SetMatrix(warp.linear[::-1, ::-1].ravel().tolist())
    affine.SetTranslation(warp.shift[::-1].tolist())
    shape = tuple(int(np.ceil(s / spacing)) + 1 for s in size)
    nodes = grid_points(shape, np.full(3, spacing), np.asarray(origin, dtype=np.float64))
    vectors = warp.displacement(nodes).reshape(*shape, 3)[..., ::-1]
    image = sitk.GetImageFromArray(np.ascontiguousarray(vectors), isVector=True)
    image.SetSpacing((float(spacing),) * 3)
    image.SetOrigin(tuple(float(v) for v in np.asarray(origin)[::-1]))
    field = sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))
    # ITK's composite applies the transform added last first: the field must act after the affine
    return sitk.CompositeTransform([field, affine])


def sitk_apply(transform: Any, points: np.ndarray) -> np.ndarray:
    """Points (n, 3, numpy order) through a SimpleITK transform."""
    return np.array([transform.TransformPoint(tuple(p[::-1])) for p in points])[:, ::-1]
