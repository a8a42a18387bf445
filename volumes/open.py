"""Opening any supported image as a :class:`~coframe.volumes.volume.Volume`.

:func:`open_volume` finds the format (:func:`detect_format`), lets the format
reader describe the image in the file's own terms, applies the caller's
overrides (voxel size, origin, unit of those numbers, non-spatial axis
selection, modality) and converts every voxel size and origin into the
workspace unit. Levels come back finest first with lazy backends.

Override rules:

- ``voxel_size`` replaces the level-0 voxel size; every level keeps its place
  *in level-0 voxels* (coarser levels stay 2, 4... times larger with their
  offsets), so a file without units or with wrong numbers is re-placed
  consistently.
- ``origin`` moves level 0's voxel-0 centre there; the other levels move with it.
- ``input_unit`` is the unit of ``voxel_size`` and ``origin`` (default: ``unit``),
  and the unit of the file's own numbers when the file names none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coframe.core.errors import AxisError, FormatError, InputNotFoundError, MetadataError, UnitError
from coframe.core.units import canonical_unit, unit_factor
from coframe.volumes.mrc import read_mrc
from coframe.volumes.n5 import read_n5
from coframe.volumes.ome_zarr import read_ome_zarr
from coframe.volumes.reading import RawImage, check_placement
from coframe.volumes.remote import Location
from coframe.volumes.tiff import read_tiff
from coframe.volumes.volume import MODALITIES, Level, Volume

FORMATS = ("ome-zarr", "n5", "tiff", "mrc")
_ZARR_KEYS = ("zarr.json", ".zattrs", ".zgroup", ".zarray")
_N5_KEY = "attributes.json"
_METADATA_FILES = (*_ZARR_KEYS, _N5_KEY)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
_MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".ccp4")
_HEAD_BYTES = 1024

_READERS: dict[str, Callable[..., RawImage]] = {
    "ome-zarr": read_ome_zarr,
    "n5": read_n5,
    "tiff": read_tiff,
    "mrc": read_mrc,
}


def _locate(path_or_url: str | Path) -> Location:
    """Location of the image; a metadata file given directly stands for its directory."""
    loc = Location.parse(path_or_url)
    if loc.name in _METADATA_FILES:
        is_file = loc.remote or Path(loc.target).is_file()
        parent = loc.parent()
        if is_file and parent is not None:
            return parent
    return loc


def _format_of_file(name: str, head: bytes | None) -> str | None:
    """``tiff`` or ``mrc`` from magic bytes, then from the file name; ``None`` if neither."""
    if head:
        if head[:4] in _TIFF_MAGIC:
            return "tiff"
        if head[208:212] == b"MAP ":
            return "mrc"
    lower = name.lower()
    if lower.endswith(_TIFF_SUFFIXES):
        return "tiff"
    if lower.endswith(_MRC_SUFFIXES):
        return "mrc"
    return None


def _detect(loc: Location) -> str:
    """Format of the image at a location (see :func:`detect_format`)."""
    expected = "expected an OME-Zarr or N5 image (group or array), a TIFF or an MRC file"
    if not loc.remote:
        path = Path(loc.target)
        if not path.exists():
            raise InputNotFoundError(f"{path} does not exist: check the path")
        if path.is_dir():
            if any((path / k).is_file() for k in _ZARR_KEYS):
                return "ome-zarr"
            if (path / _N5_KEY).is_file():
                return "n5"
            raise FormatError(
                f"directory {path} holds no zarr.json, .zattrs, .zgroup, .zarray or "
                f"attributes.json: {expected}"
            )
        found = _format_of_file(path.name, loc.read_bytes(length=_HEAD_BYTES))
        if found is None:
            raise FormatError(
                f"cannot tell the format of {path} from its content or name: {expected}"
            )
        return found
    if loc.name.lower().endswith(_TIFF_SUFFIXES + _MRC_SUFFIXES):
        head = loc.read_bytes(length=_HEAD_BYTES)
        if head is None:
            raise InputNotFoundError(f"{loc} does not exist: check the URL")
        found = _format_of_file(loc.name, head)
        assert found is not None
        return found
    for key in _ZARR_KEYS:
        if loc.read_bytes(key, length=1) is not None:
            return "ome-zarr"
    if loc.read_bytes(_N5_KEY, length=1) is not None:
        return "n5"
    head = loc.read_bytes(length=_HEAD_BYTES)
    if head is None:
        raise InputNotFoundError(
            f"{loc} does not exist (no file there and no zarr.json, .zattrs, .zarray, .zgroup or "
            "attributes.json below it): check the URL"
        )
    found = _format_of_file(loc.name, head)
    if found is None:
        raise FormatError(f"cannot tell the format of {loc} from its content or name: {expected}")
    return found


def detect_format(path_or_url: str | Path) -> str:
    """Which reader opens an image: ``ome-zarr``, ``n5``, ``tiff`` or ``mrc``.

    Directories are recognised by their metadata documents (``zarr.json``,
    ``.zattrs``, ``.zgroup``, ``.zarray`` for zarr; ``attributes.json`` for N5),
    files by their magic bytes, then by their suffix. Remote URLs are probed
    for the same documents.

    Raises
    ------
    InputNotFoundError
        If nothing exists at the path or URL.
    FormatError
        If the format cannot be told.
    """
    return _detect(_locate(path_or_url))


def parse_floats(text: str, *, flag: str) -> tuple[float, ...]:
    """Numbers of a flag value: one number or a comma list in (z, y, x) order.

    Parameters
    ----------
    text
        e.g. ``"8"`` or ``"40,8,8"``.
    flag
        The flag name, for the error message.

    Raises
    ------
    MetadataError
        If the text is not a list of finite numbers.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as e:
        raise MetadataError(
            f"{flag} {text!r}: expected one number or z,y,x numbers separated by commas "
            "(e.g. 8 or 40,8,8)"
        ) from e
    if not values or len(values) > 3 or not all(np.isfinite(values)):
        raise MetadataError(
            f"{flag} {text!r}: expected 1 to 3 finite numbers separated by commas "
            "(e.g. 8 or 40,8,8)"
        )
    return values


def parse_point(text: str, *, flag: str) -> tuple[float, float, float]:
    """Three numbers ``z,y,x`` of a flag (a point or a direction).

    Raises
    ------
    MetadataError
        If the text is not three finite numbers.
    """
    values = parse_floats(text, flag=flag)
    if len(values) != 3:
        raise MetadataError(f"{flag} {text!r}: expected three numbers z,y,x separated by commas")
    return (values[0], values[1], values[2])


def parse_box(
    text: str, ndim: int | None = None, *, flag: str = "--box"
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Corners of a physical box written ``"z0,y0,x0:z1,y1,x1"`` (or ``"y0,x0:y1,x1"``).

    The one box syntax of every command; ``..`` may stand for ``:``.

    Parameters
    ----------
    text
        The flag value.
    ndim
        Number of axes required, or None for 2 or 3.
    flag
        The flag name, for the error message.

    Raises
    ------
    MetadataError
        If the text is not two corners of ``ndim`` numbers with lo < hi.
    """
    parts = re.split(r"\.\.|:", str(text))
    expected = f"expected lo:hi corners in z,y,x order, e.g. 0,0,0:4000,8000,8000 ({flag})"
    if len(parts) != 2:
        raise MetadataError(f"{flag} {text!r}: {expected}")
    try:
        lo = tuple(float(v) for v in parts[0].split(","))
        hi = tuple(float(v) for v in parts[1].split(","))
    except ValueError as e:
        raise MetadataError(f"{flag} {text!r}: {expected}") from e
    wanted = (ndim,) if ndim is not None else (2, 3)
    if len(lo) != len(hi) or len(lo) not in wanted:
        axes = f"the target has {ndim} axes" if ndim is not None else "expected 2 or 3 per corner"
        raise MetadataError(
            f"{flag} {text!r} has corners of {len(lo)} and {len(hi)} numbers: {axes}; {expected}"
        )
    if not all(np.isfinite(lo + hi)) or any(a >= b for a, b in zip(lo, hi, strict=True)):
        raise MetadataError(f"{flag} {text!r}: every lo must be below its hi; {expected}")
    return lo, hi


def parse_select(items: Sequence[str] | None) -> dict[str, int]:
    """``--select AXIS=INDEX`` values as a mapping (``["c=0", "t=2"]`` -> ``{"c": 0, "t": 2}``).

    Raises
    ------
    AxisError
        If an item is not ``NAME=INDEX`` with a non-negative integer index.
    """
    selection: dict[str, int] = {}
    for item in items or ():
        name, sep, index = str(item).partition("=")
        name = name.strip().lower()
        if not sep or not name or not index.strip().isdigit():
            raise AxisError(
                f"--select {item!r}: expected AXIS=INDEX with a non-negative index (e.g. c=0)"
            )
        if name in selection:
            raise AxisError(f"--select names axis {name!r} twice: give one index per axis")
        selection[name] = int(index)
    return selection


def _per_axis(
    values: float | Sequence[float], axes: tuple[str, ...], flag: str, source: str
) -> np.ndarray:
    """One value per axis from a scalar or a (z, y, x)-ordered sequence."""
    array = np.atleast_1d(np.asarray(values, dtype=float))
    if array.ndim != 1 or array.size not in (1, len(axes)):
        raise MetadataError(
            f"{flag} has {array.size} values but {source} has {len(axes)} axes "
            f"({', '.join(axes)}): give 1 or {len(axes)}"
        )
    if not np.all(np.isfinite(array)):
        raise MetadataError(f"{flag} {tuple(array.tolist())}: expected finite numbers")
    return np.broadcast_to(array, (len(axes),)).astype(float)


def _file_unit(text: str, axis: str, source: str) -> str:
    """Canonical unit of a unit string found in a file."""
    try:
        return canonical_unit(text)
    except UnitError as e:
        raise UnitError(
            f"unknown unit {text!r} for axis {axis} in {source}: expected nanometer, micrometer, "
            "millimeter or angstrom; pass --voxel-size (in --input-unit) to place the image"
        ) from e


def place(
    raw: RawImage,
    *,
    unit: str = "nanometer",
    voxel_size: float | Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    input_unit: str | None = None,
    modality: str | None = None,
) -> Volume:
    """Turn a reader's :class:`RawImage` into a :class:`Volume` in ``unit``.

    See the module docstring for how overrides apply.

    Raises
    ------
    MetadataError
        If the voxel size is missing (names ``--voxel-size``), a level's voxel
        size is not finite and positive or its origin not finite (names the
        file's field), or the file's numbers have no unit (names ``--input-unit``).
    UnitError
        If a unit is unknown.
    """
    target = canonical_unit(unit, key="--unit")
    given = canonical_unit(input_unit, key="--input-unit") if input_unit is not None else None
    axes = raw.axes
    level0 = raw.levels[0]
    check_placement(raw)
    s0 = np.asarray(level0.scale, dtype=float)
    if voxel_size is not None:
        wanted = _per_axis(voxel_size, axes, "--voxel-size", raw.source)
        if np.any(wanted <= 0):
            raise MetadataError(
                f"--voxel-size {tuple(wanted.tolist())}: expected positive sizes for {raw.source}"
            )
        factors = wanted * unit_factor(given or target, target) / s0
        placed_by = "--voxel-size"
        file_units = [given or target] * len(axes)
    else:
        if not raw.calibrated:
            raise MetadataError(
                f"{raw.source} has no physical voxel size ({raw.uncalibrated_reason}): pass "
                f"--voxel-size z,y,x or one number (in --input-unit, default {target})"
            )
        file_units = []
        for axis, text in zip(axes, raw.units, strict=True):
            if text is None and given is None:
                raise MetadataError(
                    f"{raw.source} gives voxel sizes without a unit for axis {axis}: pass "
                    "--input-unit (the unit of the file's numbers) or --voxel-size"
                )
            file_units.append(_file_unit(text, axis, raw.source) if text is not None else given)
        factors = np.array([unit_factor(u, target) for u in file_units])
        placed_by = "file"
    shift = np.zeros(len(axes))
    if origin is not None:
        wanted_origin = _per_axis(origin, axes, "--origin", raw.source)
        shift = (
            wanted_origin * unit_factor(given or target, target)
            - np.asarray(level0.translation) * factors
        )
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        levels = tuple(
            Level(
                path=lvl.path,
                array=lvl.array,
                voxel_size=tuple(float(v) for v in np.asarray(lvl.scale) * factors),
                origin=tuple(float(v) for v in np.asarray(lvl.translation) * factors + shift),
            )
            for lvl in raw.levels
        )
    _check_converted(raw, levels, target, placed_by)
    chosen = modality if modality is not None else raw.modality
    if chosen is not None and chosen not in MODALITIES:
        raise MetadataError(
            f"modality {chosen!r} for {raw.source}: expected one of {', '.join(MODALITIES)} "
            "(--modality)"
        )
    metadata: dict[str, Any] = dict(raw.metadata)
    metadata["placed_by"] = placed_by
    metadata["file_units"] = [u if isinstance(u, str) else None for u in file_units]
    return Volume(
        source=raw.source,
        format=raw.format,
        axes=axes,
        unit=target,
        levels=levels,
        modality=chosen,
        metadata=metadata,
    )


def _check_converted(raw: RawImage, levels: Sequence[Level], unit: str, placed_by: str) -> None:
    """Refuse a level whose voxel size or origin leaves a float's range in ``unit``.

    The file's numbers passed :func:`check_placement`; converted into the
    workspace unit (or scaled by ``--voxel-size``) they may still overflow to
    infinity or underflow to zero.
    """
    for raw_level, level in zip(raw.levels, levels, strict=True):
        where = f"level {level.path} of {raw.source}" if level.path else raw.source
        if not all(math.isfinite(v) and v > 0 for v in level.voxel_size):
            key = raw_level.scale_key if placed_by == "file" else "--voxel-size"
            values = (level.voxel_size, "a voxel size")
        elif not all(math.isfinite(v) for v in level.origin):
            key, values = raw_level.translation_key, (level.origin, "an origin")
        else:
            continue
        shown = ", ".join(f"{v:g}" for v in values[0])
        raise MetadataError(
            f"{key} gives {where} {values[1]} of ({shown}) {unit}, beyond a float's range: "
            "correct the file's metadata or its unit, or pass --voxel-size and --origin"
        )


def open_volume(
    path_or_url: str | Path,
    *,
    unit: str = "nanometer",
    voxel_size: Sequence[float] | float | None = None,
    origin: Sequence[float] | None = None,
    input_unit: str | None = None,
    modality: str | None = None,
    axis_select: Mapping[str, int] | None = None,
) -> Volume:
    """Open an image file, container or URL as a lazily read, physically placed volume.

    Parameters
    ----------
    path_or_url
        A local path, ``file://``, ``http(s)://``, ``s3://`` (anonymous) or other
        fsspec URL of an OME-Zarr group or array, an N5 group or dataset, a TIFF
        or an MRC file.
    unit
        Workspace unit every voxel size and origin is converted into.
    voxel_size
        Level-0 voxel size, one number or (z, y, x), in ``input_unit``; replaces
        or supplies the file's.
    origin
        Physical position of the centre of voxel 0 of level 0, (z, y, x), in
        ``input_unit``.
    input_unit
        Unit of ``voxel_size`` and ``origin`` (default ``unit``); also the unit
        of the file's own numbers where the file names none.
    modality
        ``xray``, ``fibsem``, ``tem`` or ``labels`` (OME-Zarr label images
        default to ``labels``).
    axis_select
        Index per non-spatial axis, e.g. ``{"c": 0}``; singleton non-spatial
        axes are dropped without it.

    Returns
    -------
    The volume, levels finest first.

    Raises
    ------
    InputNotFoundError, FormatError, UnitError, MetadataError, AxisError
        One-line errors naming the problem and the flag that fixes it.
    """
    canonical_unit(unit, key="--unit")
    if input_unit is not None:
        canonical_unit(input_unit, key="--input-unit")
    if modality is not None and modality not in MODALITIES:
        raise MetadataError(
            f"modality {modality!r}: expected one of {', '.join(MODALITIES)} (--modality)"
        )
    location = _locate(path_or_url)
    raw = _READERS[_detect(location)](location, select=axis_select)
    return place(
        raw,
        unit=unit,
        voxel_size=voxel_size,
        origin=origin,
        input_unit=input_unit,
        modality=modality,
    )
