"""Phantoms for slice-to-volume registration: textured volumes, random poses, sections.

A section is cut from a volume along a known :class:`~coframe.registration.locate_geometry.Pose`,
then degraded the way a TEM section differs from an X-ray volume: blur,
noise, inverted contrast. Tests, the benchmark and the demo check that
:func:`coframe.registration.locate.locate_section` recovers the pose.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from coframe.core.errors import DimensionError
from coframe.registration.locate_geometry import GridImage, Pose, plane_basis
from coframe.volumes.volume import SPATIAL_AXES_2D, SPATIAL_AXES_3D, Level, Volume

#: Pixels across the section in the global search of the phantom tests (24 by default):
#: these phantoms need no more, and the suite stays fast.
QUICK_PIXELS = 16
#: The same as ``coframe locate`` options.
QUICK = ["--search-pixels", str(QUICK_PIXELS)]


def blob_phantom(
    shape: Sequence[int],
    spacing: float,
    *,
    seed: int = 0,
    density: float = 1.0,
) -> GridImage:
    """A volume of soft ellipsoidal cells with nuclei on a slowly varying background.

    Parameters
    ----------
    shape
        Voxels per axis (z, y, x).
    spacing
        Isotropic voxel size (physical).
    seed
        Random seed.
    density
        Multiplier of the number of cells.

    Returns
    -------
    A float32 grid with values roughly in [0, 1], origin 0.
    """
    rng = np.random.default_rng(seed)
    shp = tuple(int(n) for n in shape)
    out = ndimage.gaussian_filter(rng.standard_normal(shp), sigma=min(shp) / 6.0)
    out = 0.25 * (out - out.min()) / (np.ptp(out) + 1e-12)
    count = int(density * np.prod(shp) / 700.0) + 4
    for _ in range(count):
        centre = rng.uniform(0, np.asarray(shp) - 1)
        radii = rng.uniform(2.0, 6.5, size=3)
        rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        value = rng.uniform(0.3, 0.8)
        _add_ellipsoid(out, centre, radii, rot, value)
        _add_ellipsoid(out, centre, radii * rng.uniform(0.3, 0.5), rot, rng.uniform(-0.5, 0.5))
    out = ndimage.gaussian_filter(out, 0.7)
    return GridImage(out.astype(np.float32), (float(spacing),) * 3, (0.0, 0.0, 0.0))


def _add_ellipsoid(
    out: np.ndarray, centre: np.ndarray, radii: np.ndarray, rot: np.ndarray, value: float
) -> None:
    r = float(radii.max()) + 2.0
    lo = np.maximum(np.floor(centre - r).astype(int), 0)
    hi = np.minimum(np.ceil(centre + r).astype(int) + 1, out.shape)
    if np.any(hi <= lo):
        return
    idx = np.indices(tuple(hi - lo), dtype=float).reshape(3, -1).T + lo - centre
    local = idx @ rot / radii
    rho = np.sqrt(np.sum(local * local, axis=1))
    soft = 1.0 / (1.0 + np.exp((rho - 1.0) * 8.0))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    out[box] += value * soft.reshape(tuple(hi - lo))


def random_pose(
    volume: GridImage,
    section_size: Sequence[float],
    rng: np.random.Generator,
    *,
    max_tilt: float | None = None,
    margin: float = 0.0,
    tries: int = 1000,
) -> Pose:
    """A random pose whose whole section lies inside the volume.

    Parameters
    ----------
    volume
        The volume.
    section_size
        Physical (height, width) of the section.
    rng
        Random generator.
    max_tilt
        Largest angle (degrees) between the normal and the volume z axis
        (either sign); ``None`` draws normals uniformly on the sphere.
    margin
        Physical distance the section keeps from the volume faces.
    tries
        Attempts before giving up.

    Raises
    ------
    DimensionError
        If no pose keeps the section inside the volume.
    """
    size = np.asarray(section_size, dtype=float)
    section_center = size / 2.0
    lo = np.asarray(volume.corners).min(axis=0) + margin
    hi = np.asarray(volume.corners).max(axis=0) - margin
    corners2d = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float) * size
    for _ in range(tries):
        if max_tilt is None:
            n = rng.standard_normal(3)
        else:
            cos_t = rng.uniform(np.cos(np.deg2rad(max_tilt)), 1.0)
            phi = rng.uniform(0, 2 * np.pi)
            sin_t = np.sqrt(1 - cos_t * cos_t)
            n = np.array([cos_t, sin_t * np.cos(phi), sin_t * np.sin(phi)])
            n *= rng.choice([-1.0, 1.0])
        n /= np.linalg.norm(n)
        e1, e2 = plane_basis(n)
        t = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(t), np.sin(t)
        linear = np.column_stack([e1, e2]) @ np.array([[c, -s], [s, c]])
        centre = rng.uniform(lo, hi)
        pose = Pose(centre, linear, section_center)
        pts = pose.apply(corners2d)
        if np.all(pts >= lo) and np.all(pts <= hi):
            return pose
    raise DimensionError(
        f"no pose keeps a section of size {size.tolist()} inside a volume of extent "
        f"{(hi - lo).tolist()}: use a smaller section"
    )


def extract_section(
    volume: GridImage,
    pose: Pose,
    shape: Sequence[int],
    pixel: float,
    *,
    rng: np.random.Generator | None = None,
    blur: float = 0.0,
    noise: float = 0.0,
    invert: bool = False,
    order: int = 3,
) -> GridImage:
    """Cut a section from a volume along a pose, then blur, add noise, invert.

    Parameters
    ----------
    volume
        The volume.
    pose
        Maps section physical (y, x) into the volume; pixel ``(i, j)`` sits at
        ``((i + 0.5) * pixel, (j + 0.5) * pixel)`` (origin half a pixel in).
    shape
        Section pixels (height, width).
    pixel
        Section pixel size (physical).
    rng
        Random generator for the noise.
    blur
        Gaussian blur sigma, in section pixels.
    noise
        Standard deviation of the added Gaussian noise, relative to the
        section's standard deviation.
    invert
        Invert the contrast.
    order
        Spline order of the interpolation.

    Returns
    -------
    The float32 section grid with origin ``(pixel / 2, pixel / 2)``.
    """
    h, w = (int(v) for v in shape)
    origin = (pixel / 2.0, pixel / 2.0)
    pixels = GridImage(np.empty((h, w), dtype=np.float32), (float(pixel), float(pixel)), origin)
    points = pose.apply(pixels.points())
    idx = volume.to_index(points).T
    values = ndimage.map_coordinates(volume.array, idx, order=order, mode="nearest")
    image = values.reshape(h, w).astype(np.float64)
    if blur > 0:
        image = ndimage.gaussian_filter(image, blur)
    if noise > 0:
        gen = np.random.default_rng(0) if rng is None else rng
        image = image + gen.normal(0.0, noise * (image.std() or 1.0), image.shape)
    if invert:
        image = image.max() - image
    return GridImage(image.astype(np.float32), (float(pixel), float(pixel)), origin)


class ArrayInMemory:
    """An in-memory numpy array as a :class:`~coframe.volumes.volume.ArraySource`."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = np.asarray(array)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape."""
        return tuple(int(n) for n in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        """Array data type."""
        return self._array.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        """One chunk: the whole array."""
        return self.shape

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """A copy of the box."""
        return np.array(self._array[box])


def grid_volume(
    grid: GridImage, *, unit: str = "nanometer", modality: str | None = None, source: str = "memory"
) -> Volume:
    """A one-level :class:`~coframe.volumes.volume.Volume` holding a grid in memory."""
    axes = SPATIAL_AXES_3D if grid.array.ndim == 3 else SPATIAL_AXES_2D
    level = Level("", ArrayInMemory(grid.array), tuple(grid.spacing), tuple(grid.origin))
    return Volume(source, "memory", axes, unit, (level,), modality)
