"""What a registration works on: pyramid levels, overlapping regions and masks.

Resolution gaps between modalities are large (8 nm FIB-SEM against 1 µm
X-ray), so a registration never reads a fine level whole. It:

1. finds the physical box of the fixed image that the initial transform maps
   into the moving image (:func:`overlap_boxes`), and the moving box those
   fixed points land in, widened by a margin;
2. picks one pyramid level of each image near a common working voxel size
   (:func:`choose_levels`), coarser if the box would hold too many voxels;
3. reads only those boxes (:func:`read_work_image`) as float32, and builds
   masks that drop the zero padding at the borders of FIB-SEM volumes and
   apply the user's mask images (:func:`padding_mask`, :func:`mask_on_grid`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike
from scipy import ndimage

from coframe.core.errors import (
    DimensionError,
    LevelError,
    NotInvertibleError,
    RegistrationError,
    TransformError,
    UnitError,
)
from coframe.resampling.chain import map_points_checked
from coframe.transforms.base import Transform
from coframe.transforms.sitk_bridge import array_to_image
from coframe.volumes.volume import Level, Volume

#: Smallest number of masked voxels a working image must keep.
MIN_MASK_VOXELS = 200
#: Factor by which the moving region may hold more voxels than the fixed budget.
MOVING_BUDGET_FACTOR = 4


@dataclass(frozen=True)
class WorkImage:
    """A region of one pyramid level, read into memory for registration.

    Parameters
    ----------
    name
        Image name (for messages and reports).
    array
        float32 voxels, numpy axis order.
    voxel_size
        Physical voxel size per axis.
    origin
        Physical centre of voxel 0 of ``array``.
    mask
        Voxels that take part in the metric (bool, same shape), or None for all.
    level
        Index of the pyramid level read.
    level_path
        Key of that level (``s3``...).
    """

    name: str
    array: np.ndarray
    voxel_size: tuple[float, ...]
    origin: tuple[float, ...]
    mask: np.ndarray | None
    level: int
    level_path: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of voxels along each axis."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def lo(self) -> np.ndarray:
        """Physical centre of the first voxel."""
        return np.asarray(self.origin, dtype=np.float64)

    @property
    def hi(self) -> np.ndarray:
        """Physical centre of the last voxel."""
        return self.lo + (np.asarray(self.shape) - 1) * np.asarray(self.voxel_size)

    @property
    def centre(self) -> np.ndarray:
        """Physical centre of the region."""
        return 0.5 * (self.lo + self.hi)

    def image(self, unit_scale: float = 1.0) -> sitk.Image:
        """The region as a SimpleITK image, lengths divided by ``unit_scale``."""
        return array_to_image(
            self.array,
            np.asarray(self.voxel_size) / unit_scale,
            np.asarray(self.origin) / unit_scale,
        )

    def mask_image(self, unit_scale: float = 1.0) -> sitk.Image | None:
        """The mask as a uint8 SimpleITK image (lengths divided by ``unit_scale``), or None."""
        if self.mask is None:
            return None
        return array_to_image(
            self.mask.astype(np.uint8),
            np.asarray(self.voxel_size) / unit_scale,
            np.asarray(self.origin) / unit_scale,
        )

    def grid_points(self, step: int = 1) -> np.ndarray:
        """Physical coordinates ``(N, d)`` of every ``step``-th voxel centre."""
        axes = [
            o + v * np.arange(0, n, step)
            for o, v, n in zip(self.origin, self.voxel_size, self.shape, strict=True)
        ]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))

    def masked_points(self, count: int, seed: int) -> np.ndarray:
        """Up to ``count`` random physical points of voxel centres inside the mask."""
        keep = np.ones(self.shape, dtype=bool) if self.mask is None else self.mask
        index = np.argwhere(keep)
        rng = np.random.default_rng(seed)
        if index.shape[0] > count:
            index = index[rng.choice(index.shape[0], size=count, replace=False)]
        return self.lo + index * np.asarray(self.voxel_size)


def geometric_voxel(voxel_size: ArrayLike) -> float:
    """Geometric mean of a voxel size (one length for an anisotropic voxel)."""
    return float(np.exp(np.mean(np.log(np.asarray(voxel_size, dtype=np.float64)))))


def block_mean(array: np.ndarray, factor: int | Sequence[int]) -> np.ndarray:
    """Average blocks of ``factor`` voxels along every axis (one factor, or one per axis).

    The remainder along each axis is dropped.
    """
    factors = [int(f) for f in np.broadcast_to(np.asarray(factor), (array.ndim,))]
    if all(f == 1 for f in factors):
        return array
    shape = [n // f for n, f in zip(array.shape, factors, strict=True)]
    cropped = array[tuple(slice(0, n * f) for n, f in zip(shape, factors, strict=True))]
    split = [v for n, f in zip(shape, factors, strict=True) for v in (n, f)]
    return cropped.reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2)))


def check_pair(moving: Volume, fixed: Volume) -> None:
    """Check that two volumes can be registered: both 3D, same unit.

    Raises
    ------
    DimensionError
        If either volume is not 3D.
    UnitError
        If their units differ.
    """
    for role, vol in (("MOVING", moving), ("FIXED", fixed)):
        if vol.ndim != 3:
            raise DimensionError(
                f"{role} image {vol.source} is {vol.ndim}D with axes {list(vol.axes)}: intensity "
                "registration needs 3D volumes (place a 2D section with `coframe locate`)"
            )
    if moving.unit != fixed.unit:
        raise UnitError(
            f"MOVING is in {moving.unit} but FIXED is in {fixed.unit}: open both in the workspace "
            "unit (coframe add) before registering"
        )


def level_extent(level: Level) -> tuple[np.ndarray, np.ndarray]:
    """Physical centres of the first and last voxel of a level."""
    lo = np.asarray(level.origin, dtype=np.float64)
    hi = lo + (np.asarray(level.shape) - 1) * np.asarray(level.voxel_size)
    return lo, hi


def box_points(lo: ArrayLike, hi: ArrayLike, per_axis: int = 5) -> np.ndarray:
    """Points on a regular ``per_axis``-per-axis grid spanning a box (corners included)."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    axes = [np.linspace(a, b, per_axis) for a, b in zip(lo_a, hi_a, strict=True)]
    return np.array(list(itertools.product(*axes)))


def _map_box(t: Transform, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of a box's mapped lattice points.

    Points a numerical inverse in ``t`` cannot place within 1 % of the box's
    largest side (at a B-spline's valid-region jump) are left out.
    """
    tolerance = 0.01 * float(np.max(np.asarray(hi) - np.asarray(lo)))
    mapped = map_points_checked(t, box_points(lo, hi), max(tolerance, 1e-9))
    mapped = mapped[np.all(np.isfinite(mapped), axis=1)]
    if mapped.shape[0] == 0:
        raise RegistrationError(
            "the initial transform maps the fixed region to non-finite points: check --init-edge "
            "or --landmarks"
        )
    return mapped.min(axis=0), mapped.max(axis=0)


@dataclass(frozen=True)
class Overlap:
    """Physical boxes (voxel-centre corners) a registration reads.

    Parameters
    ----------
    fixed_lo, fixed_hi
        The fixed box: the part of the fixed image the initial transform maps
        into the moving image.
    moving_lo, moving_hi
        The moving box: where the fixed box lands, widened by the margin and
        clipped to the moving image.
    """

    fixed_lo: np.ndarray
    fixed_hi: np.ndarray
    moving_lo: np.ndarray
    moving_hi: np.ndarray


def overlap_boxes(
    moving: Volume,
    fixed: Volume,
    initial: Transform,
    margin: float,
    *,
    rotations: bool = False,
) -> Overlap:
    """The fixed and moving boxes a registration reads.

    Parameters
    ----------
    moving, fixed
        The volumes (same unit).
    initial
        The initial FIXED -> MOVING point map.
    margin
        Fraction of the mapped box's size added on every side of the moving box.
    rotations
        Widen the moving box to hold the fixed box rotated about its centre
        (multi-start).

    Raises
    ------
    RegistrationError
        If the initial transform maps no part of the fixed image into the
        moving image.
    """
    f_lo, f_hi = level_extent(fixed.levels[0])
    m_lo, m_hi = level_extent(moving.levels[0])
    try:
        inverse = initial.inverse()
        back_lo, back_hi = _map_box(inverse, m_lo, m_hi)
        lo, hi = np.maximum(f_lo, back_lo), np.minimum(f_hi, back_hi)
    except (NotInvertibleError, TransformError):
        lo, hi = f_lo, f_hi
    if np.any(hi < lo):
        raise RegistrationError(
            f"no overlap after initialisation: the fixed image spans {_box_text(f_lo, f_hi)} but "
            f"the moving image maps back onto {_box_text(back_lo, back_hi)} ({fixed.unit}); give "
            "a better start with --init-edge, --landmarks or --set init=geometry"
        )
    to_lo, to_hi = _map_box(initial, lo, hi)
    size = to_hi - to_lo
    widen = margin * size
    if rotations:
        widen = np.maximum(widen, 0.5 * np.linalg.norm(size) - 0.5 * size + margin * size)
    mov_lo, mov_hi = np.maximum(to_lo - widen, m_lo), np.minimum(to_hi + widen, m_hi)
    if np.any(mov_hi < mov_lo):
        raise RegistrationError(
            f"no overlap after initialisation: the fixed image maps onto {_box_text(to_lo, to_hi)} "
            f"but the moving image spans {_box_text(m_lo, m_hi)} ({moving.unit}); give a better "
            "start with --init-edge, --landmarks or --set init=geometry"
        )
    return Overlap(lo, hi, mov_lo, mov_hi)


def _box_text(lo: np.ndarray, hi: np.ndarray) -> str:
    return "[" + ", ".join(f"{a:.4g}..{b:.4g}" for a, b in zip(lo, hi, strict=True)) + "] (z, y, x)"


def _box_voxels(level: Level, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.prod(np.floor((hi - lo) / np.asarray(level.voxel_size)) + 1))


def _level_index(volume: Volume, level: int | str, flag: str) -> int:
    try:
        chosen = volume.level(level)
    except LevelError as e:
        raise LevelError(f"{e} ({flag})") from e
    return volume.levels.index(chosen)


def choose_levels(
    moving: Volume,
    fixed: Volume,
    overlap: Overlap,
    *,
    voxel_size: float | str = "auto",
    max_voxels: int = 4_000_000,
    level_moving: int | str | None = None,
    level_fixed: int | str | None = None,
) -> tuple[int, int]:
    """Pick the pyramid level of each image to register at.

    The working voxel size is the coarser of the two images' finest voxel
    sizes (or ``voxel_size``); each image uses its level nearest to it
    (:meth:`Volume.nearest_level`). While the fixed box would hold more than
    ``max_voxels`` voxels (or the moving box more than
    :data:`MOVING_BUDGET_FACTOR` times that), the working size doubles.

    Parameters
    ----------
    moving, fixed
        The volumes.
    overlap
        The boxes to read (:func:`overlap_boxes`).
    voxel_size
        ``"auto"`` or the working voxel size in the volumes' unit.
    max_voxels
        Voxel budget of the fixed box.
    level_moving, level_fixed
        Levels chosen by the user (kept as given).

    Returns
    -------
    tuple
        Level indices ``(moving, fixed)``.

    Raises
    ------
    LevelError
        If a user level does not exist.
    """
    if voxel_size == "auto":
        target = max(
            geometric_voxel(moving.levels[0].voxel_size),
            geometric_voxel(fixed.levels[0].voxel_size),
        )
    else:
        target = float(voxel_size)
    fixed_user = None if level_fixed is None else _level_index(fixed, level_fixed, "--level-fixed")
    moving_user = (
        None if level_moving is None else _level_index(moving, level_moving, "--level-moving")
    )
    for _ in range(64):
        lf = fixed.nearest_level(target) if fixed_user is None else fixed_user
        lm = moving.nearest_level(target) if moving_user is None else moving_user
        nf = _box_voxels(fixed.levels[lf], overlap.fixed_lo, overlap.fixed_hi)
        nm = _box_voxels(moving.levels[lm], overlap.moving_lo, overlap.moving_hi)
        fixed_ok = nf <= max_voxels or fixed_user is not None or lf == len(fixed.levels) - 1
        moving_ok = (
            nm <= MOVING_BUDGET_FACTOR * max_voxels
            or moving_user is not None
            or lm == len(moving.levels) - 1
        )
        if fixed_ok and moving_ok:
            return lm, lf
        target *= 2.0
    return lm, lf


def read_work_image(
    volume: Volume, level: int, lo: ArrayLike, hi: ArrayLike, name: str
) -> WorkImage:
    """Read the voxels of one level inside a physical box, as float32.

    Raises
    ------
    RegistrationError
        If the box misses the level, holds fewer than 4 voxels along an axis,
        or the data hold NaN or infinite values.
    """
    lvl = volume.levels[level]
    read = volume.read_box(np.asarray(lo), np.asarray(hi), level=level, margin=1)
    if read is None:
        raise RegistrationError(
            f"no overlap after initialisation: the box {_box_text(np.asarray(lo), np.asarray(hi))} "
            f"misses image {name} at level {lvl.path or level}; check the initial transform"
        )
    data, origin = read
    if min(data.shape) < 4:
        raise RegistrationError(
            f"image {name} overlaps the other over only {list(data.shape)} voxels at level "
            f"{lvl.path or level}: too thin to register; choose a finer level (--level-moving, "
            "--level-fixed) or a better start"
        )
    array = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise RegistrationError(
            f"image {name} holds {bad} NaN or infinite voxels at level {lvl.path or level}: "
            "fill them or pass a mask image that excludes them (--fixed-mask/--moving-mask)"
        )
    return WorkImage(name, array, tuple(lvl.voxel_size), tuple(origin), None, level, lvl.path)


def padding_mask(array: np.ndarray, erode: int) -> np.ndarray | None:
    """Voxels that are not zero padding connected to the border, eroded.

    Parameters
    ----------
    array
        The image.
    erode
        Voxels removed from the kept region next to the padding.

    Returns
    -------
    numpy.ndarray or None
        The bool mask, or None when the image has no border padding.
    """
    zero = array == 0
    if not zero.any():
        return None
    labels, _ = ndimage.label(zero)
    faces = [
        labels[tuple(slice(None) if a != k else e for a in range(array.ndim))]
        for k in range(array.ndim)
        for e in (0, -1)
    ]
    touching = np.unique(np.concatenate([f.ravel() for f in faces]))
    touching = touching[touching > 0]
    if touching.size == 0:
        return None
    keep = ~np.isin(labels, touching)
    if erode > 0:
        keep = ndimage.binary_erosion(keep, iterations=erode, border_value=1)
    return keep


def mask_on_grid(mask: Volume, work: WorkImage) -> np.ndarray:
    """A mask image resampled (nearest voxel) onto a working image's grid.

    The mask lives in the same physical space as the working image; voxels
    outside the mask image count as excluded.

    Raises
    ------
    DimensionError
        If the mask does not have the working image's number of axes.
    UnitError
        If the mask is in another unit.
    """
    if mask.ndim != len(work.shape):
        raise DimensionError(
            f"mask {mask.source} is {mask.ndim}D but image {work.name} is {len(work.shape)}D: "
            "give a mask with the same axes"
        )
    level = mask.levels[mask.nearest_level(work.voxel_size)]
    index = mask.levels.index(level)
    read = mask.read_box(work.lo, work.hi, level=index, margin=1)
    out = np.zeros(work.shape, dtype=bool)
    if read is None:
        return out
    data, origin = read
    picks = []
    inside = []
    for a in range(len(work.shape)):
        coords = work.origin[a] + work.voxel_size[a] * np.arange(work.shape[a])
        i = np.rint((coords - origin[a]) / level.voxel_size[a]).astype(np.int64)
        inside.append((i >= 0) & (i < data.shape[a]))
        picks.append(np.clip(i, 0, data.shape[a] - 1))
    values = np.asarray(data)[np.ix_(*picks)] != 0
    return values & _outer(inside)


def _outer(flags: list[np.ndarray]) -> np.ndarray:
    out = flags[0]
    for f in flags[1:]:
        out = np.multiply.outer(out, f)
    return out.astype(bool)


def combine_masks(
    work: WorkImage,
    role: str,
    *,
    exclude_padding: bool,
    erode: int,
    user: Volume | None,
    unit: str,
) -> WorkImage:
    """The working image with its automatic and user masks combined.

    Parameters
    ----------
    work
        The working image.
    role
        ``fixed`` or ``moving`` (for messages).
    exclude_padding
        Drop border zero padding (:func:`padding_mask`).
    erode
        Erosion of the padding mask, in voxels.
    user
        A mask image in the same space, or None.
    unit
        Unit of the working image; the mask must be in the same one.

    Raises
    ------
    UnitError
        If the mask is in another unit.
    RegistrationError
        If the mask leaves fewer than :data:`MIN_MASK_VOXELS` voxels.
    """
    mask = padding_mask(work.array, erode) if exclude_padding else None
    if user is not None:
        if user.unit != unit:
            raise UnitError(
                f"mask {user.source} is in {user.unit} but the images are in {unit}: open the "
                f"mask in the workspace unit (--{role}-mask)"
            )
        grid = mask_on_grid(user, work)
        mask = grid if mask is None else (mask & grid)
    if mask is not None:
        kept = int(np.count_nonzero(mask))
        if kept < MIN_MASK_VOXELS:
            flag = f"--{role}-mask" if user is not None else "--set mask.exclude_padding=false"
            raise RegistrationError(
                f"the {role} mask empties the sample: {kept} of {mask.size} voxels of {work.name} "
                f"are left (need {MIN_MASK_VOXELS}); check {flag}"
            )
    return WorkImage(
        work.name, work.array, work.voxel_size, work.origin, mask, work.level, work.level_path
    )
