"""Images, poses and orientations of the slice-to-volume search.

A section's pose in a volume is a plane orientation (unit normal), a position
of the section centre, and an in-plane 2x2 map (rotation, possibly a mirror):
:class:`Pose`. The search works on :class:`GridImage` copies of the section
and the volume resampled to isotropic spacings (:func:`resample_grid`), and
spreads candidate normals over spherical caps (:func:`fibonacci_cap`).

Everything here is in numpy axis order (z, y, x) and physical units. The
normal of a pose is ``cross(column_y, column_x)`` of its 3x2 linear part, so a
section lying in a z-plane with its axes along y and x has normal +z.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from coframe.registration.inputs import block_mean
from coframe.transforms.affine import Affine

#: Golden angle of the Fibonacci lattice, in radians.
_GOLDEN = np.pi * (3.0 - np.sqrt(5.0))
#: Mirror of the in-plane axes (swaps the section's y and x).
MIRROR = np.array([[0.0, 1.0], [1.0, 0.0]])


@dataclass(frozen=True)
class GridImage:
    """An image in memory on an axis-aligned grid, with its physical placement.

    Parameters
    ----------
    array
        Voxels (float32), axes (z, y, x) or (y, x).
    spacing
        Physical voxel size per axis.
    origin
        Physical position of the centre of voxel 0.
    mask
        Pixels that count (True), same shape as ``array``; None when all do
        (a section's grid bars, empty film and the user's mask are False).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    mask: np.ndarray | None = None

    @property
    def usable(self) -> np.ndarray:
        """Boolean mask of the pixels that count (all True when :attr:`mask` is None)."""
        if self.mask is None:
            return np.ones(self.array.shape, dtype=bool)
        return np.asarray(self.mask, dtype=bool)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of voxels per axis."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def center(self) -> np.ndarray:
        """Physical position of the grid centre."""
        return np.asarray(self.origin) + (np.asarray(self.shape) - 1) / 2.0 * np.asarray(
            self.spacing
        )

    @property
    def corners(self) -> np.ndarray:
        """Physical positions of the outer corners (voxel edges), ``(2**ndim, ndim)``."""
        lo = np.asarray(self.origin) - np.asarray(self.spacing) / 2.0
        hi = lo + np.asarray(self.shape) * np.asarray(self.spacing)
        ndim = len(self.shape)
        idx = np.indices((2,) * ndim).reshape(ndim, -1).T
        return np.where(idx == 0, lo, hi)

    def points(self) -> np.ndarray:
        """Physical positions of every voxel centre, ``(N, ndim)`` in C order."""
        axes = [
            o + d * np.arange(n)
            for o, d, n in zip(self.origin, self.spacing, self.shape, strict=True)
        ]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Fractional voxel indices of physical points (last axis the coordinates)."""
        return (np.asarray(points) - np.asarray(self.origin)) / np.asarray(self.spacing)


@dataclass(frozen=True)
class Pose:
    """Pose of a section in a volume: ``X = center + linear @ (p - section_center)``.

    Parameters
    ----------
    center
        Physical (z, y, x) position of the section centre in the volume.
    linear
        ``(3, 2)`` map of section (y, x) displacements into volume (z, y, x)
        displacements (orthonormal columns for a rigid pose; scaled or sheared
        after a similarity or affine refinement).
    section_center
        Physical (y, x) position of the section centre in the section.
    """

    center: np.ndarray
    linear: np.ndarray
    section_center: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """Unit normal ``cross(column_y, column_x)``."""
        n = np.cross(self.linear[:, 0], self.linear[:, 1])
        return n / np.linalg.norm(n)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(3, 3)`` matrix ``[linear | translation]`` of the 2D -> 3D affine."""
        t = self.center - self.linear @ self.section_center
        return np.column_stack([self.linear, t])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map section physical (y, x) points ``(N, 2)`` into the volume ``(N, 3)``."""
        p = np.atleast_2d(np.asarray(points, dtype=float))
        return self.center + (p - self.section_center) @ self.linear.T


@dataclass(frozen=True)
class Stretch:
    """A section's pixels made ``factor`` times longer along ``axis`` (0: y, 1: x).

    A section compressed by ``c`` along its cutting direction shows ``1 / (1 - c)``
    times more tissue per pixel along it: stretched by that factor, it looks
    like the volume's slice again, which the in-plane rigid scans can match.
    Points move away from ``origin``: ``p' = origin + k (p - origin)``.
    """

    axis: int
    factor: float
    origin: np.ndarray

    @property
    def scales(self) -> np.ndarray:
        """Factor per axis (y, x)."""
        k = np.ones(2)
        k[self.axis] = self.factor
        return k

    def grid(self, grid: GridImage) -> GridImage:
        """The image stretched (same pixels, longer along the axis; its mask too)."""
        o = np.asarray(self.origin, dtype=float)
        origin = o + self.scales * (np.asarray(grid.origin, dtype=float) - o)
        spacing = np.asarray(grid.spacing, dtype=float) * self.scales
        return GridImage(grid.array, tuple(spacing), tuple(origin), grid.mask)

    def pose(self, pose: Pose) -> Pose:
        """A pose of the stretched section as the same map from the section itself."""
        o = np.asarray(self.origin, dtype=float)
        centre = o + (np.asarray(pose.section_center, dtype=float) - o) / self.scales
        return Pose(pose.center, pose.linear * self.scales, centre)


def fibonacci_cap(axis: Sequence[float], max_angle: float, spacing: float) -> np.ndarray:
    """Unit vectors spread evenly over a spherical cap.

    Parameters
    ----------
    axis
        Cap centre (z, y, x), any length.
    max_angle
        Cap half-angle in degrees (90 gives a hemisphere, 180 the sphere).
    spacing
        Wanted distance between neighbouring vectors, in degrees.

    Returns
    -------
    ``(N, 3)`` unit vectors; the first is ``axis`` itself.
    """
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    alpha = np.deg2rad(min(max(max_angle, 0.0), 180.0))
    step = np.deg2rad(spacing)
    area = 2.0 * np.pi * (1.0 - np.cos(alpha))
    count = max(1, int(np.ceil(area / (0.866 * step * step))))
    i = np.arange(count, dtype=float)
    cos_t = 1.0 - (1.0 - np.cos(alpha)) * (i + 0.5) / count
    if count == 1:
        cos_t = np.ones(1)
    sin_t = np.sqrt(np.clip(1.0 - cos_t * cos_t, 0.0, None))
    phi = i * _GOLDEN
    local = np.column_stack([cos_t, sin_t * np.cos(phi), sin_t * np.sin(phi)])
    e1, e2 = plane_basis(a)
    out = local[:, :1] * a + local[:, 1:2] * e1 + local[:, 2:3] * e2
    if count > 1:
        out = np.vstack([a, out])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def plane_basis(normal: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``(e1, e2)`` spanning the plane, with ``cross(e1, e2) = normal``."""
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    helper = np.zeros(3)
    helper[int(np.argmin(np.abs(n)))] = 1.0
    e1 = helper - helper.dot(n) * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return e1, e2


def in_plane_maps(angles: Sequence[float], mirror: bool) -> np.ndarray:
    """In-plane 2x2 maps: rotations by ``angles`` (degrees), after a mirror if asked.

    Returns
    -------
    ``(G, 2, 2)`` matrices ``G`` such that a section point ``p`` (relative to
    its centre) lands at plane coordinates ``G @ p``.
    """
    t = np.deg2rad(np.asarray(angles, dtype=float))
    c, s = np.cos(t), np.sin(t)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    return rot @ MIRROR if mirror else rot


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors, in degrees."""
    c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def in_plane_angle(a: Pose, b: Pose) -> float:
    """Angle (degrees) between the images of the section's y axis under two poses."""
    return angle_between(a.linear[:, 0], b.linear[:, 0])


def poses_distinct(a: Pose, b: Pose, *, max_angle: float, max_shift: float) -> bool:
    """Whether two poses differ: normals or in-plane axes by more than ``max_angle``
    degrees, or section centres by more than ``max_shift`` (physical)."""
    if np.linalg.norm(a.center - b.center) > max_shift:
        return True
    if angle_between(a.normal, b.normal) > max_angle:
        return True
    return in_plane_angle(a, b) > max_angle


def transported_basis(linear: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A basis of the plane of ``normal`` aligned with the in-plane axes of ``linear``.

    ``e1`` is the section's y axis (first column of ``linear``) projected onto
    the plane; ``e2 = cross(normal, e1)``.
    """
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    y = linear[:, 0] - linear[:, 0].dot(n) * n
    if np.linalg.norm(y) < 1e-6:
        return plane_basis(n)
    e1 = y / np.linalg.norm(y)
    return e1, np.cross(n, e1)


#: Smallest fraction of a resampled pixel's support that must be usable for it to count:
#: a pixel that mixes in a little of a grid bar takes the bar's extreme value with it, and
#: bar edges then dominate a correlation (a wrong pose was trusted at 0.75).
MASK_KEEP = 0.98


def resample_grid(grid: GridImage, spacing: float) -> GridImage:
    """Resample an image to an isotropic spacing covering the same extent.

    The image is low-pass filtered first (Gaussian of sigma ``0.5 * ratio``
    pixels along each axis that shrinks, after a block mean by the integer
    part of large ratios), then interpolated linearly. A mask is resampled
    the same way; a new pixel counts when at least :data:`MASK_KEEP` of its
    support did.

    Parameters
    ----------
    grid
        The image.
    spacing
        The new spacing (physical).
    """
    out = _resample_array(grid.array, grid.spacing, grid.origin, spacing)
    if grid.mask is None:
        return out
    mask = _resample_array(grid.usable.astype(np.float32), grid.spacing, grid.origin, spacing)
    return GridImage(out.array, out.spacing, out.origin, mask.array >= MASK_KEEP)


def _resample_array(
    image: np.ndarray, spacing_in: Sequence[float], origin_in: Sequence[float], spacing: float
) -> GridImage:
    array = np.asarray(image, dtype=np.float32)
    sp = np.asarray(spacing_in, dtype=float)
    origin = np.asarray(origin_in, dtype=float)
    factors = np.maximum(np.floor(spacing / sp).astype(int), 1)
    if np.any(factors > 2):
        block = np.where(factors > 2, factors // 2, 1)
        array = block_mean(array, block)
        origin = origin + (block - 1) / 2.0 * sp
        sp = sp * block
    ratio = spacing / sp
    sigma = np.where(ratio > 1.0, 0.5 * np.sqrt(np.maximum(ratio * ratio - 1.0, 0.0)), 0.0)
    if np.any(sigma > 0):
        array = ndimage.gaussian_filter(array, sigma, mode="nearest")
    extent = np.asarray(array.shape) * sp
    shape = np.maximum(np.floor(extent / spacing + 1e-6).astype(int), 1)
    lo = origin - sp / 2.0
    new_origin = lo + (extent - shape * spacing) / 2.0 + spacing / 2.0
    axes = [
        (new_origin[k] + spacing * np.arange(shape[k]) - origin[k]) / sp[k]
        for k in range(array.ndim)
    ]
    idx = np.meshgrid(*axes, indexing="ij")
    out = ndimage.map_coordinates(array, idx, order=1, mode="nearest", output=np.float32)
    return GridImage(out, (float(spacing),) * array.ndim, tuple(float(v) for v in new_origin))


def pose_errors(
    estimate: Affine, truth: Affine, section_center: Sequence[float], voxel: float
) -> dict[str, float]:
    """How far an estimated section pose is from the truth.

    Parameters
    ----------
    estimate, truth
        2D -> 3D affines (section physical (y, x) -> volume physical (z, y, x)).
    section_center
        Physical (y, x) of the section centre.
    voxel
        Voxel size used to express the offset in voxels.

    Returns
    -------
    ``normal_deg`` (angle between the normals; a section seen from the wrong
    face is 180 degrees off),
    ``in_plane_deg`` (angle between the images of the section's y axis),
    ``offset`` and ``offset_voxels`` (distance of the estimated centre from
    the true plane, along its normal), ``in_plane`` (distance within the
    plane between the estimated and true centres), ``center`` (distance
    between the centres).
    """
    c = np.asarray(section_center, dtype=float)
    est = Pose(estimate.apply(c), estimate.linear, c)
    tru = Pose(truth.apply(c), truth.linear, c)
    n = tru.normal
    diff = est.center - tru.center
    along = float(abs(diff @ n))
    return {
        "normal_deg": angle_between(est.normal, n),
        "in_plane_deg": in_plane_angle(est, tru),
        "offset": along,
        "offset_voxels": along / voxel,
        "in_plane": float(np.linalg.norm(diff - (diff @ n) * n)),
        "center": float(np.linalg.norm(diff)),
    }
