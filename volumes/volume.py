"""The image model: a lazily read, physically placed, multiscale volume.

A :class:`Volume` is one image (2D or 3D) with its pyramid of :class:`Level`
arrays. Arrays are never loaded whole: every read names an index box, and the
backend touches only the chunks under it. Axes are numpy order ((z, y, x) or
(y, x)); voxel sizes and origins are in the volume's ``unit`` (the workspace
unit after loading). The origin is the physical position of the *centre* of
voxel (0, 0, 0), as in OME-NGFF and ITK.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from coframe.core.errors import DimensionError, LevelError
from coframe.core.units import canonical_unit, unit_factor

SPATIAL_AXES_3D = ("z", "y", "x")
SPATIAL_AXES_2D = ("y", "x")
MODALITIES = ("xray", "fibsem", "tem", "labels")


@runtime_checkable
class ArraySource(Protocol):
    """What a backend array must offer: shape, dtype, chunks and box reads.

    ``read`` takes one ``slice`` per axis (steps of 1) and returns a numpy
    array, touching only the chunks under the box.
    """

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def chunks(self) -> tuple[int, ...]: ...

    def read(self, box: tuple[slice, ...]) -> np.ndarray: ...


@dataclass(frozen=True)
class Level:
    """One pyramid level: a lazy array and its physical placement.

    Parameters
    ----------
    path
        Key of the level inside its container (``s0``, ``s1``...), or ``""``.
    array
        The lazy backend array.
    voxel_size
        Physical size of one voxel along each axis, in the volume unit.
    origin
        Physical position of the centre of voxel 0 along each axis.
    """

    path: str
    array: ArraySource
    voxel_size: tuple[float, ...]
    origin: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of voxels along each axis."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk (block) shape of the backend array."""
        return tuple(int(c) for c in self.array.chunks)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the voxels."""
        return np.dtype(self.array.dtype)

    @property
    def extent(self) -> tuple[tuple[float, float], ...]:
        """Physical (min, max) along each axis, from voxel edge to voxel edge."""
        return tuple(
            (o - v / 2.0, o + (n - 0.5) * v)
            for o, v, n in zip(self.origin, self.voxel_size, self.shape, strict=True)
        )

    def index_to_physical(self, index: np.ndarray) -> np.ndarray:
        """Physical coordinates of (fractional) voxel indices, shape (N, ndim)."""
        return np.asarray(index, dtype=float) * np.asarray(self.voxel_size) + np.asarray(
            self.origin
        )

    def physical_to_index(self, points: np.ndarray) -> np.ndarray:
        """Fractional voxel indices of physical points, shape (N, ndim)."""
        return (np.asarray(points, dtype=float) - np.asarray(self.origin)) / np.asarray(
            self.voxel_size
        )

    def box_to_slices(
        self, lo: Sequence[float], hi: Sequence[float], margin: int = 0
    ) -> tuple[slice, ...] | None:
        """Index slices of the voxels whose centres lie in the physical box [lo, hi].

        The box is clipped to the array; ``margin`` voxels are added on every
        side (for interpolation). Returns ``None`` if the box misses the array.
        """
        lo_i = np.ceil(self.physical_to_index(np.asarray(lo, float)[None])[0] - 1e-9).astype(int)
        hi_i = np.floor(self.physical_to_index(np.asarray(hi, float)[None])[0] + 1e-9).astype(int)
        lo_i -= margin
        hi_i += margin + 1
        shape = np.asarray(self.shape)
        lo_c = np.clip(lo_i, 0, shape)
        hi_c = np.clip(hi_i, 0, shape)
        if np.any(hi_c <= lo_c):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo_c, hi_c, strict=True))

    def read(self, box: tuple[slice, ...] | None = None) -> np.ndarray:
        """Read an index box (default: the whole level; only for small levels)."""
        if box is None:
            box = tuple(slice(0, n) for n in self.shape)
        if len(box) != len(self.shape):
            raise DimensionError(
                f"box has {len(box)} axes but level {self.path or '0'} has {len(self.shape)}"
            )
        return np.asarray(self.array.read(box))

    def to_dask(self) -> Any:
        """This level as a dask array chunked like the backend (reads stay lazy)."""
        import dask.array as da

        return da.from_array(_DaskAdapter(self.array), chunks=self.chunks, asarray=True, lock=False)


class _DaskAdapter:
    """Slicing adapter so dask can read an :class:`ArraySource` block by block."""

    def __init__(self, source: ArraySource) -> None:
        self.source = source
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(key, self.shape, strict=True))
        return self.source.read(box)


@dataclass(frozen=True)
class Volume:
    """A physically placed image with its multiscale levels.

    Parameters
    ----------
    source
        Path or URL the volume was opened from.
    format
        Reader that opened it (``ome-zarr``, ``n5``, ``tiff``, ``mrc``...).
    axes
        Axis names in numpy order: ``("z", "y", "x")`` or ``("y", "x")``.
    unit
        Canonical length unit of every voxel size and origin.
    levels
        Pyramid levels, finest first.
    modality
        ``xray``, ``fibsem``, ``tem``, ``labels`` or ``None`` if unknown.
    metadata
        Reader-specific extras (name, channel, original unit...).
    """

    source: str
    format: str
    axes: tuple[str, ...]
    unit: str
    levels: tuple[Level, ...]
    modality: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return len(self.axes)

    @property
    def dtype(self) -> np.dtype:
        """Voxel data type (same at every level)."""
        return self.levels[0].dtype

    @property
    def is_labels(self) -> bool:
        """True for instance/semantic label images, which must never be interpolated."""
        return self.modality == "labels"

    def level(self, index: int | str) -> Level:
        """Level by number (0 = finest) or by path (``"s2"``)."""
        if isinstance(index, str):
            for lvl in self.levels:
                if lvl.path == index:
                    return lvl
            if index.isdigit():
                index = int(index)
            else:
                names = ", ".join(lvl.path or str(i) for i, lvl in enumerate(self.levels))
                raise LevelError(
                    f"level {index!r} does not exist in {self.source}: "
                    f"choose one of {names} (--level)"
                )
        if not 0 <= index < len(self.levels):
            raise LevelError(
                f"level {index} does not exist in {self.source}: "
                f"it has levels 0..{len(self.levels) - 1} (--level)"
            )
        return self.levels[index]

    def nearest_level(self, voxel_size: float | Sequence[float]) -> int:
        """Index of the level whose voxel size is nearest ``voxel_size``.

        Nearness is measured on a log scale (geometric mean over axes), so a
        1 µm target against an 8 nm pyramid picks the 1024 nm level, not the
        coarsest one that happens to be closest in absolute terms.
        """
        target = np.broadcast_to(np.asarray(voxel_size, dtype=float), (self.ndim,))
        if np.any(target <= 0):
            raise DimensionError(f"target voxel size {tuple(target)} must be positive")
        scores = [
            abs(float(np.mean(np.log(np.asarray(lvl.voxel_size) / target)))) for lvl in self.levels
        ]
        return int(np.argmin(scores))

    def read_box(
        self,
        lo: Sequence[float],
        hi: Sequence[float],
        level: int | str = 0,
        margin: int = 0,
    ) -> tuple[np.ndarray, tuple[float, ...]] | None:
        """Read the voxels of a level whose centres lie in a physical box.

        Parameters
        ----------
        lo, hi
            Box corners in physical units, axis order as :attr:`axes`.
        level
            Level number or path.
        margin
            Extra voxels on each side (clipped to the array).

        Returns
        -------
        The array and the physical origin of its first voxel, or ``None`` if
        the box misses the level.
        """
        lvl = self.level(level)
        if len(lo) != self.ndim or len(hi) != self.ndim:
            raise DimensionError(
                f"box corners have {len(lo)} and {len(hi)} coordinates but {self.source} "
                f"has {self.ndim} axes {self.axes}"
            )
        box = lvl.box_to_slices(lo, hi, margin=margin)
        if box is None:
            return None
        start = np.array([s.start for s in box], dtype=float)
        origin = tuple(lvl.index_to_physical(start[None])[0])
        return lvl.read(box), origin

    def in_unit(self, unit: str) -> Volume:
        """The same volume with voxel sizes and origins expressed in ``unit``."""
        target = canonical_unit(unit)
        if target == self.unit:
            return self
        f = unit_factor(self.unit, target)
        levels = tuple(
            replace(
                lvl,
                voxel_size=tuple(v * f for v in lvl.voxel_size),
                origin=tuple(o * f for o in lvl.origin),
            )
            for lvl in self.levels
        )
        return replace(self, unit=target, levels=levels)

    def with_modality(self, modality: str | None) -> Volume:
        """The same volume tagged with another modality."""
        return replace(self, modality=modality)
