"""What a slice-to-volume search reads: the section and the volume at chosen spacings.

Real volumes are far too large to read whole at their finest level: the
search reads the coarsest level not coarser than each spacing it needs, whole
when that level is small (:data:`WHOLE_LEVEL_VOXELS`) and box by box
otherwise, and resamples it to an isotropic :class:`GridImage`.
"""

from __future__ import annotations

import numpy as np

from coframe.core.errors import DimensionError, RegistrationError
from coframe.registration.inputs import geometric_voxel
from coframe.registration.locate_geometry import GridImage, resample_grid
from coframe.volumes.binned import binned_placement, read_binned
from coframe.volumes.volume import Level, Volume

#: Largest number of voxels of a level read whole (else boxes are read).
WHOLE_LEVEL_VOXELS = 48_000_000


def check_sizes(section: Volume, volume: Volume, *, section_name: str, volume_name: str) -> None:
    """Refuse a section that cannot fit the volume, or a volume that is not 3D.

    Raises
    ------
    DimensionError
        If the volume is not 3D, the section not 2D, or the section's shorter
        side is longer than the volume's longest extent.
    """
    if volume.ndim != 3:
        raise DimensionError(
            f"image {volume_name!r} has {volume.ndim} axes {list(volume.axes)}: a 3D volume "
            f"(z, y, x) is expected as VOLUME"
        )
    check_section(section, section_name)
    size = np.asarray(section.levels[0].shape) * np.asarray(section.levels[0].voxel_size)
    lo, hi = volume_extent(volume)
    longest = float(np.max(hi - lo))
    if float(size.min()) > longest:
        raise DimensionError(
            f"section {section_name!r} is {size[0]:g} x {size[1]:g} {section.unit} but volume "
            f"{volume_name!r} spans at most {longest:g} {volume.unit}: expected a section "
            f"smaller than the volume; check the pixel sizes (coframe add --voxel-size)"
        )


def read_section_image(
    section: Volume, spacing: float, *, name: str = "section", binary: bool = False
) -> GridImage:
    """Read a 2D section at (about) ``spacing``, as an isotropic float32 grid.

    The coarsest level whose pixels are not larger than ``spacing`` is read
    band by band and binned (:func:`coframe.volumes.binned.read_binned`), so
    a montage far larger than memory is never held whole, then resampled.

    Parameters
    ----------
    section
        The 2D image.
    spacing
        The spacing wanted (physical).
    name
        Name used in error messages.
    binary
        Read ``value != 0`` (a mask): the grid holds the fraction of nonzero pixels.

    Raises
    ------
    DimensionError
        If the image is not 2D.
    """
    check_section(section, name)
    lvl = section.levels[level_not_coarser(section, spacing)]
    factors = np.maximum(np.floor(spacing / np.asarray(lvl.voxel_size)).astype(int), 1)
    block = np.where(factors > 2, factors // 2, 1)  # resample_grid's own block mean
    size, origin = binned_placement(lvl, block)
    binned = GridImage(read_binned(lvl, block, binary=binary), size, origin)
    return resample_grid(binned, spacing)


def check_section(section: Volume, name: str) -> None:
    """Refuse a SECTION that is not a 2D image.

    Raises
    ------
    DimensionError
        If the image does not have two axes.
    """
    if section.ndim != 2:
        raise DimensionError(
            f"image {name!r} has {section.ndim} axes {list(section.axes)}: a 2D section "
            f"(y, x) is expected as SECTION"
        )


def read_level(level: Level) -> GridImage:
    """A whole pyramid level as a float32 image."""
    return GridImage(level.read().astype(np.float32), level.voxel_size, level.origin)


def level_not_coarser(volume: Volume, spacing: float) -> int:
    """The coarsest level whose geometric-mean voxel size does not exceed ``spacing``."""
    best = 0
    for i, lvl in enumerate(volume.levels):
        if geometric_voxel(lvl.voxel_size) <= spacing * 1.001:
            if geometric_voxel(lvl.voxel_size) >= geometric_voxel(volume.levels[best].voxel_size):
                best = i
    return best


def volume_extent(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Physical corners ``(lo, hi)`` of a volume's box, voxel edge to voxel edge."""
    ext = np.asarray(volume.levels[0].extent, dtype=float)
    return ext[:, 0], ext[:, 1]


class VolumeReader:
    """Reads a volume at a spacing, whole or in boxes, caching whole levels."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self._whole: dict[int, GridImage] = {}

    def level_grid(
        self, index: int, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> GridImage:
        """Level ``index`` as a float32 grid: the box [lo, hi] (or all of it).

        A level of at most :data:`WHOLE_LEVEL_VOXELS` voxels is read whole
        once and cropped; a larger one is read box by box.

        Raises
        ------
        RegistrationError
            If a large level is asked for whole, or the box misses the volume.
        """
        lvl = self.volume.levels[index]
        if index not in self._whole and int(np.prod(lvl.shape)) <= WHOLE_LEVEL_VOXELS:
            self._whole[index] = read_level(lvl)
        if index in self._whole:
            whole = self._whole[index]
            return whole if lo is None or hi is None else _crop(whole, lo, hi)
        if lo is None or hi is None:
            raise RegistrationError(
                f"level {lvl.path or index} of {self.volume.source} ({lvl.shape}) is too large to "
                f"search whole: give --near to search a box, or add a pyramid to the volume"
            )
        got = self.volume.read_box(lo, hi, level=index, margin=2)
        if got is None:
            raise RegistrationError(
                f"box {np.round(lo, 1).tolist()} .. {np.round(hi, 1).tolist()} misses volume "
                f"{self.volume.source}: check --near"
            )
        array, origin = got
        return GridImage(array.astype(np.float32), lvl.voxel_size, origin)

    def grid(
        self, spacing: float, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> GridImage:
        """The volume (or the box [lo, hi]) resampled to an isotropic ``spacing``."""
        index = level_not_coarser(self.volume, spacing)
        return resample_grid(self.level_grid(index, lo, hi), spacing)


def _crop(grid: GridImage, lo: np.ndarray, hi: np.ndarray, margin: int = 2) -> GridImage:
    lo_i = np.floor(grid.to_index(lo)).astype(int) - margin
    hi_i = np.ceil(grid.to_index(hi)).astype(int) + margin + 1
    lo_i = np.clip(lo_i, 0, grid.shape)
    hi_i = np.clip(hi_i, 0, grid.shape)
    if np.any(hi_i <= lo_i):
        raise RegistrationError(
            f"box {np.round(lo, 1).tolist()} .. {np.round(hi, 1).tolist()} misses the volume: "
            "check --near"
        )
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo_i, hi_i, strict=True))
    origin = np.asarray(grid.origin) + lo_i * np.asarray(grid.spacing)
    return GridImage(grid.array[box], grid.spacing, tuple(float(v) for v in origin))
