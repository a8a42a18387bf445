"""What every format reader hands back, and how file axes become (z, y, x).

A reader describes an image in the file's own terms - its numbers in the
file's units, a unit per axis (or none), the axes it found - as a
:class:`RawImage`. :func:`resolve_axes` decides which file axes are spatial,
which non-spatial axes are fixed to one index (``--select c=0``) or dropped
(singletons), and in which order the spatial ones are presented.
:mod:`coframe.volumes.open` then applies user overrides and converts everything into
the workspace unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coframe.core.errors import AxisError, MetadataError
from coframe.volumes.sources import AxisView
from coframe.volumes.volume import ArraySource

SPACE = "space"
_SPATIAL_NAMES = ("z", "y", "x")


@dataclass(frozen=True)
class AxisSpec:
    """One axis as a file declares it.

    Parameters
    ----------
    name
        Axis name (lower case).
    type
        ``space``, ``channel``, ``time``, another string, or ``None`` if the file
        gives no type.
    unit
        Unit string as written in the file, or ``None``.
    """

    name: str
    type: str | None = None
    unit: str | None = None

    @property
    def is_spatial(self) -> bool:
        """True for ``type: space`` axes, and for untyped axes named z, y or x."""
        if self.type is not None:
            return self.type.lower() == SPACE
        return self.name.lower() in _SPATIAL_NAMES


@dataclass(frozen=True)
class AxisPlan:
    """How a file's axes map onto the spatial view.

    Parameters
    ----------
    keep
        File axes kept, in view order ((z, y, x) or (y, x)).
    fixed
        Index chosen on each dropped file axis.
    names
        View axis names: ``("z", "y", "x")`` or ``("y", "x")``.
    file_axes
        All file axes, in file order.
    """

    keep: tuple[int, ...]
    fixed: dict[int, int]
    names: tuple[str, ...]
    file_axes: tuple[AxisSpec, ...]

    @property
    def is_identity(self) -> bool:
        """True if the view is the file array unchanged."""
        return not self.fixed and self.keep == tuple(range(len(self.keep)))

    def view(self, array: ArraySource) -> ArraySource:
        """The spatial view of a file-order array."""
        if len(array.shape) != len(self.file_axes):
            raise AxisError(
                f"array has {len(array.shape)} axes but the metadata names {len(self.file_axes)} "
                f"({', '.join(a.name for a in self.file_axes)})"
            )
        return array if self.is_identity else AxisView(array, self.keep, self.fixed)

    def pick(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """Entries of a per-file-axis vector (scale, unit...) in view order."""
        return tuple(values[k] for k in self.keep)

    def selection(self) -> dict[str, int]:
        """Index fixed on each dropped file axis, by axis name."""
        return {self.file_axes[k].name: v for k, v in sorted(self.fixed.items())}


def resolve_axes(
    axes: Sequence[AxisSpec],
    shape: Sequence[int],
    *,
    select: Mapping[str, int] | None,
    where: str,
) -> AxisPlan:
    """Decide which file axes are spatial and how the others are reduced.

    Non-spatial axes (channel, time, untyped names other than z/y/x) must be
    fixed with ``select`` unless they hold a single entry. Spatial axes named
    z, y, x are put in that order; other spatial names are taken in file order.

    Parameters
    ----------
    axes
        File axes, in file order.
    shape
        File array shape (same length as ``axes``).
    select
        Index to keep per non-spatial axis name (from ``--select AXIS=INDEX``).
    where
        The file or URL, named in errors.

    Raises
    ------
    AxisError
        If fewer than 2 or more than 3 axes are spatial, a non-spatial axis of
        length > 1 is not selected, or ``select`` names a bad axis or index.
    """
    axes = tuple(axes)
    if len(axes) != len(shape):
        raise AxisError(
            f"{where} names {len(axes)} axes ({', '.join(a.name for a in axes)}) but its array "
            f"has {len(shape)}: fix the 'axes' metadata"
        )
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise AxisError(f"{where} repeats an axis name in {names}: expected distinct names")
    select = {str(k).lower(): int(v) for k, v in (select or {}).items()}
    described = ", ".join(f"{a.name}({a.type or 'untyped'})" for a in axes)
    spatial = [i for i, a in enumerate(axes) if a.is_spatial]
    if not 2 <= len(spatial) <= 3:
        raise AxisError(
            f"{where} has {len(spatial)} spatial axes among {described}: expected 2 or 3 axes of "
            "type 'space' (named z, y, x)"
        )
    for key, index in select.items():
        if key not in names:
            raise AxisError(
                f"--select {key}={index} names no axis of {where}: its axes are {', '.join(names)}"
            )
        axis = names.index(key)
        if axes[axis].is_spatial:
            raise AxisError(
                f"--select {key}={index}: {key} is a spatial axis of {where}; only non-spatial "
                "axes (channel, time...) can be selected"
            )
        if not 0 <= index < int(shape[axis]):
            raise AxisError(
                f"--select {key}={index} is out of range: axis {key} of {where} has "
                f"{shape[axis]} entries (0..{int(shape[axis]) - 1})"
            )
    fixed: dict[int, int] = {}
    for i, a in enumerate(axes):
        if a.is_spatial:
            continue
        if a.name in select:
            fixed[i] = select[a.name]
        elif int(shape[i]) == 1:
            fixed[i] = 0
        else:
            kind = f"{a.type} axis" if a.type else "axis without a spatial type"
            slices = (
                "; if its entries are z slices, the file mislabels them: save it with a z axis "
                "(ImageJ 'slices', OME SizeZ, OME-Zarr axis type 'space')"
                if len(spatial) == 2
                else ""
            )
            raise AxisError(
                f"{where} has a non-spatial {kind} {a.name!r} of length {shape[i]} (axes "
                f"{described}): choose one entry with --select {a.name}=INDEX{slices}"
            )
    spatial_names = [names[i] for i in spatial]
    if len(spatial) == 3 and sorted(spatial_names) == sorted(_SPATIAL_NAMES):
        keep = tuple(spatial[spatial_names.index(n)] for n in _SPATIAL_NAMES)
    elif len(spatial) == 2 and sorted(spatial_names) == ["x", "y"]:
        keep = tuple(spatial[spatial_names.index(n)] for n in ("y", "x"))
    else:
        keep = tuple(spatial)
    view_names = _SPATIAL_NAMES if len(keep) == 3 else _SPATIAL_NAMES[1:]
    return AxisPlan(keep=keep, fixed=fixed, names=view_names, file_axes=axes)


def default_axes(ndim: int, where: str) -> tuple[AxisSpec, ...]:
    """Axes assumed for an array whose file names none: (y, x) or (z, y, x)."""
    if ndim == 2:
        return (AxisSpec("y", SPACE), AxisSpec("x", SPACE))
    if ndim == 3:
        return tuple(AxisSpec(n, SPACE) for n in _SPATIAL_NAMES)
    raise AxisError(
        f"{where} has {ndim} unnamed axes: expected 2 (y, x) or 3 (z, y, x); store axis names "
        "in the metadata (OME-Zarr 'axes') to select the others with --select AXIS=INDEX"
    )


@dataclass(frozen=True)
class RawLevel:
    """One level as the file places it, in the file's numbers.

    Parameters
    ----------
    path
        Key of the level in its container.
    array
        Spatial view of the level's array (view order).
    scale
        Voxel size per view axis, in the file's units (or in level-0 voxels when
        the image is not calibrated).
    translation
        Position of the centre of voxel 0 per view axis, same units as ``scale``.
    scale_key, translation_key
        Where in the file ``scale`` and ``translation`` come from (a metadata
        key, tag or header field, with the document holding it), named when
        they are not usable.
    """

    path: str
    array: ArraySource
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    scale_key: str = "voxel size"
    translation_key: str = "origin"


@dataclass(frozen=True)
class RawImage:
    """An image as a reader found it, before overrides and unit conversion.

    Parameters
    ----------
    source
        The path or URL opened.
    format
        Reader name (``ome-zarr``, ``n5``, ``tiff``, ``mrc``).
    axes
        View axis names, ``("z", "y", "x")`` or ``("y", "x")``.
    units
        File unit per view axis (as written), or ``None`` where the file names none.
    levels
        Levels, finest first.
    calibrated
        False if the file holds no physical voxel size; ``uncalibrated_reason``
        then says what is missing.
    uncalibrated_reason
        Why the image is not calibrated.
    modality
        Modality the file implies (``labels`` for OME-Zarr label images), or ``None``.
    metadata
        Reader-specific extras, JSON-ready.
    """

    source: str
    format: str
    axes: tuple[str, ...]
    units: tuple[str | None, ...]
    levels: tuple[RawLevel, ...]
    calibrated: bool = True
    uncalibrated_reason: str | None = None
    modality: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def check_placement(raw: RawImage) -> None:
    """Refuse a level whose voxel size is not finite and positive or whose origin is not finite.

    Every reader's numbers pass here before they place a volume, so a NaN,
    an infinity or a zero never reaches a resampling grid.

    Raises
    ------
    MetadataError
        Naming the level, the file's field (``scale_key`` / ``translation_key``)
        and its values.
    """
    axes = ", ".join(raw.axes)
    for lvl in raw.levels:
        level = f"level {lvl.path} of {raw.source}" if lvl.path else raw.source
        if not all(math.isfinite(v) and v > 0 for v in lvl.scale):
            raise MetadataError(
                f"{lvl.scale_key} = {_numbers(lvl.scale)} ({axes}) for {level}: expected finite "
                "positive voxel sizes; correct the file's metadata"
            )
        if not all(math.isfinite(v) for v in lvl.translation):
            raise MetadataError(
                f"{lvl.translation_key} = {_numbers(lvl.translation)} ({axes}) for {level}: "
                "expected finite numbers; correct the file's metadata"
            )


def _numbers(values: Sequence[float]) -> str:
    """``(8, nan, inf)``: values as a short tuple for messages."""
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def finest_first(levels: Sequence[RawLevel]) -> tuple[RawLevel, ...]:
    """Levels sorted finest first: by voxel volume, then by voxel count."""

    def key(lvl: RawLevel) -> tuple[float, int]:
        volume = 1.0
        for s in lvl.scale:
            volume *= abs(s)
        count = 1
        for n in lvl.array.shape:
            count *= int(n)
        return (volume, -count)

    return tuple(sorted(levels, key=key))


def pyramid_placement(
    base_scale: Sequence[float],
    base_translation: Sequence[float],
    base_shape: Sequence[int],
    shape: Sequence[int],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translation of a downsampled level given only its shape.

    The downsampling factor per axis is the ratio of shapes (rounded to an
    integer when the shapes come from ceiling division); the centre of voxel 0
    moves by ``(factor - 1) / 2`` base voxels, as for block averaging.
    """
    factors = [_factor(int(b), int(n)) for b, n in zip(base_shape, shape, strict=True)]
    scale = tuple(float(s) * f for s, f in zip(base_scale, factors, strict=True))
    translation = tuple(
        float(t) + (f - 1.0) / 2.0 * float(s)
        for t, f, s in zip(base_translation, factors, base_scale, strict=True)
    )
    return scale, translation


def _factor(base: int, size: int) -> float:
    """Downsampling factor from ``base`` to ``size`` voxels."""
    ratio = base / max(size, 1)
    whole = round(ratio)
    if whole >= 1 and -(-base // whole) == size:
        return float(whole)
    return ratio
