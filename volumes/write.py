"""Low-level writing pieces: pyramid geometry, NGFF metadata, codecs, downsampling, TIFF, MRC.

A pyramid follows the CellMap layout: level ``i`` has shape
``ceil(shape0 / 2**i)``, voxel size ``voxel_size0 * 2**i`` and translation
``origin0 + voxel_size0 * (2**i - 1) / 2`` (the half-voxel offset that keeps
every level's lower voxel edge where the finest level's is)
(:func:`pyramid_specs`). :func:`multiscales_attributes` gives the OME-Zarr
0.4 (Zarr v2) or 0.5 (Zarr v3) group attributes of such a pyramid,
:func:`compressors` the chunk codec of a named compressor and
:func:`downsample` fills a coarser level (labels by the mode, never
averaged). The OME-Zarr outputs themselves (arrays, chunks, metadata, resume)
are written by :mod:`coframe.resampling.writer`.

:func:`write_tiff` and :func:`write_mrc` write single files to a temporary
name beside the target and rename them into place; nothing existing is
overwritten unless ``overwrite=True``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numcodecs
import numpy as np
import tifffile
import zarr

from coframe.core.atomic import atomic_output
from coframe.core.errors import AxisError, DimensionError, FormatError, MetadataError
from coframe.core.units import canonical_unit

#: Default chunk shapes by number of axes (CellMap uses 64x128x128).
DEFAULT_CHUNKS: dict[int, tuple[int, ...]] = {2: (512, 512), 3: (64, 128, 128)}
#: Default zstd level (as in CellMap's ``.zarray``).
DEFAULT_ZSTD_LEVEL = 6
_SPATIAL = ("z", "y", "x")
_IMAGEJ_UNITS = {
    "nanometer": "nm",
    "micrometer": "micron",
    "millimeter": "mm",
    "angstrom": "angstrom",
}
_OME_UNITS = {
    "angstrom": "Å",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
}
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


# --------------------------------------------------------------------------- pyramid geometry


@dataclass(frozen=True)
class LevelSpec:
    """Geometry of one pyramid level.

    Parameters
    ----------
    path
        Key of the level array inside the multiscale group (``s0``, ``s1``...).
    shape
        Voxels along each axis.
    voxel_size
        Physical voxel size along each axis.
    origin
        Physical position of the centre of voxel 0 (the OME-Zarr translation).
    chunks
        Chunk shape of the array.
    """

    path: str
    shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    origin: tuple[float, ...]
    chunks: tuple[int, ...]


def pyramid_specs(
    shape0: Sequence[int],
    voxel_size0: Sequence[float],
    origin0: Sequence[float],
    n_levels: int,
    chunks: Sequence[int],
    *,
    factor: int = 2,
    prefix: str = "s",
) -> tuple[LevelSpec, ...]:
    """Geometry of a CellMap-style pyramid (``ceil`` shapes, half-voxel translations).

    Parameters
    ----------
    shape0, voxel_size0, origin0
        Shape, voxel size and voxel-0 centre of the finest level.
    n_levels
        Number of levels (at least 1).
    chunks
        Chunk shape, clipped to each level's shape.
    factor
        Downsampling factor between successive levels.
    prefix
        Level names are ``prefix + str(i)``.
    """
    ndim = len(shape0)
    if not (len(voxel_size0) == len(origin0) == len(chunks) == ndim):
        raise DimensionError(
            f"shape {tuple(shape0)}, voxel size {tuple(voxel_size0)}, origin {tuple(origin0)} and "
            f"chunks {tuple(chunks)} must all have {ndim} entries"
        )
    if n_levels < 1:
        raise DimensionError(f"n_levels={n_levels}: expected at least 1 pyramid level")
    if any(int(n) < 1 for n in shape0):
        raise DimensionError(f"shape {tuple(shape0)}: every axis needs at least one voxel")
    if any(float(v) <= 0 for v in voxel_size0):
        raise MetadataError(f"voxel size {tuple(voxel_size0)} must be positive along every axis")
    specs = []
    for i in range(n_levels):
        f = factor**i
        shape = tuple(max(1, math.ceil(int(n) / f)) for n in shape0)
        vs = tuple(float(v) * f for v in voxel_size0)
        org = tuple(
            float(o) + float(v) * (f - 1) / 2.0 for o, v in zip(origin0, voxel_size0, strict=True)
        )
        ch = tuple(max(1, min(int(c), n)) for c, n in zip(chunks, shape, strict=True))
        specs.append(LevelSpec(f"{prefix}{i}", shape, vs, org, ch))
    return tuple(specs)


def axes_entries(
    axes: Sequence[str], unit: str, channel: str | None = None
) -> list[dict[str, str]]:
    """The NGFF ``axes`` of spatial axes in ``unit``, after a channel axis if one is named.

    Raises
    ------
    AxisError
        Unless the axes are ``("z", "y", "x")`` or ``("y", "x")`` (or a subset in order).
    UnitError
        For an unknown unit.
    """
    names = tuple(axes)
    if len(names) not in (2, 3) or len(set(names)) != len(names) or not set(names) <= set(_SPATIAL):
        raise AxisError(f"axes {names}: expected spatial axes ('z', 'y', 'x') or ('y', 'x')")
    unit = canonical_unit(unit, key="unit")
    lead = [] if channel is None else [{"name": channel, "type": "channel"}]
    return lead + [{"name": n, "type": "space", "unit": unit} for n in names]


def multiscales_entry(
    levels: Sequence[LevelSpec],
    *,
    axes: Sequence[str],
    unit: str,
    name: str | None = None,
    version: str | None = "0.4",
    channel: str | None = None,
) -> dict[str, Any]:
    """One ``multiscales`` entry; ``version=None`` omits the version key (as OME-Zarr 0.5 does).

    With a ``channel`` axis name the arrays hold a leading channel axis (scale
    1, translation 0) and the entry has no top-level scale (optional in
    OME-Zarr).
    """
    lead_scale, lead_shift = ([1.0], [0.0]) if channel is not None else ([], [])
    entry: dict[str, Any] = {}
    if version is not None:
        entry["version"] = version
    entry["name"] = name
    entry["axes"] = axes_entries(axes, unit, channel)
    entry["datasets"] = [
        {
            "path": lvl.path,
            "coordinateTransformations": [
                {"type": "scale", "scale": lead_scale + [float(v) for v in lvl.voxel_size]},
                {
                    "type": "translation",
                    "translation": lead_shift + [float(o) for o in lvl.origin],
                },
            ],
        }
        for lvl in levels
    ]
    if channel is None:
        entry["coordinateTransformations"] = [{"type": "scale", "scale": [1.0] * len(tuple(axes))}]
    return entry


def multiscales_attributes(
    levels: Sequence[LevelSpec],
    *,
    zarr_version: int,
    axes: Sequence[str] = _SPATIAL,
    unit: str = "nanometer",
    name: str | None = None,
    channel: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The multiscale group attributes: OME-Zarr 0.4 for Zarr v2, 0.5 for Zarr v3.

    Zarr v2 groups get ``multiscales`` (with ``version: "0.4"``) in ``.zattrs``;
    Zarr v3 groups get ``{"ome": {"version": "0.5", "multiscales": [...]}}`` in
    the attributes of ``zarr.json``. ``extra`` keys (``image-label``,
    ``omero``...) go beside ``multiscales``.
    """
    if zarr_version == 2:
        attrs: dict[str, Any] = {
            "multiscales": [
                multiscales_entry(levels, axes=axes, unit=unit, name=name, channel=channel)
            ]
        }
        attrs.update(extra or {})
        return attrs
    ome: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            multiscales_entry(
                levels, axes=axes, unit=unit, name=name, version=None, channel=channel
            )
        ],
    }
    ome.update(extra or {})
    return {"ome": ome}


# --------------------------------------------------------------------------- compressors


#: Chunk compressors an output can use (``--compressor``).
COMPRESSORS = ("lz4", "zstd", "gzip", "none")


def compressors(kind: str | None, level: int | None, zarr_version: int) -> dict[str, Any]:
    """The ``compressors=`` argument of :func:`zarr.create_array` for a named compressor.

    Parameters
    ----------
    kind
        ``lz4`` (Blosc LZ4 with byte shuffle: fastest to write and read),
        ``zstd`` (default level :data:`DEFAULT_ZSTD_LEVEL`: smaller files),
        ``gzip`` (level 5: most widely readable) or ``none``/``None``.
    level
        Compression level (default per compressor).
    zarr_version
        2 (numcodecs) or 3 (zarr codecs).

    Raises
    ------
    FormatError
        If the compressor is unknown.
    """
    if kind is None or kind == "none":
        return {"compressors": None}
    if kind == "lz4":
        lvl = 5 if level is None else int(level)
        if zarr_version == 2:
            return {"compressors": numcodecs.Blosc("lz4", lvl, numcodecs.Blosc.SHUFFLE)}
        return {"compressors": zarr.codecs.BloscCodec(cname="lz4", clevel=lvl, shuffle="shuffle")}
    if kind == "zstd":
        lvl = DEFAULT_ZSTD_LEVEL if level is None else int(level)
        if zarr_version == 2:
            return {"compressors": numcodecs.Zstd(level=lvl)}
        return {"compressors": zarr.codecs.ZstdCodec(level=lvl)}
    if kind == "gzip":
        lvl = 5 if level is None else int(level)
        if zarr_version == 2:
            return {"compressors": numcodecs.GZip(level=lvl)}
        return {"compressors": zarr.codecs.GzipCodec(level=lvl)}
    raise FormatError(
        f"compressor {kind!r}: expected one of {', '.join(COMPRESSORS)} (--compressor)"
    )


# --------------------------------------------------------------------------- downsampling


def downsample(
    block: np.ndarray,
    factor: int | Sequence[int] = 2,
    *,
    labels: bool = False,
    method: str | None = None,
) -> np.ndarray:
    """Downsample an array by an integer factor per axis.

    Parameters
    ----------
    block
        Input array (any number of axes).
    factor
        Factor per axis (an int applies to every axis).
    labels
        Integer labels: the default method becomes ``mode`` (never averaging).
    method
        ``mean`` (intensities; integers are rounded half up), ``mode`` (most
        frequent value of each block, ties to the smallest value) or
        ``nearest`` (the first voxel of each block). Both ``mode`` and
        ``nearest`` only ever return values present in the input.

    Returns
    -------
    The array of shape ``ceil(shape / factor)``; edge blocks that are cut short
    use only the voxels they have.
    """
    arr = np.asarray(block)
    f = (
        (int(factor),) * arr.ndim
        if isinstance(factor, int | np.integer)
        else tuple(int(x) for x in factor)
    )
    if len(f) != arr.ndim or any(x < 1 for x in f):
        raise DimensionError(f"factor {factor} does not fit an array of {arr.ndim} axes")
    meth = method or ("mode" if labels else "mean")
    if meth == "nearest":
        return arr[tuple(slice(None, None, x) for x in f)].copy()
    out_shape = tuple(math.ceil(n / x) for n, x in zip(arr.shape, f, strict=True))
    pad = [(0, o * x - n) for o, x, n in zip(out_shape, f, arr.shape, strict=True)]
    split = [d for o, x in zip(out_shape, f, strict=True) for d in (o, x)]
    if meth == "mean":
        if labels:
            raise DimensionError("labels cannot be averaged: use method 'mode' or 'nearest'")
        small = arr.dtype.itemsize <= 2 and arr.dtype.kind in "uif"
        acc_t = np.float32 if small else np.float64
        acc = np.pad(arr.astype(acc_t), pad).reshape(split)
        total = acc.sum(axis=tuple(range(1, 2 * arr.ndim, 2)), dtype=acc_t)
        count = np.ones((), dtype=acc_t)
        for d, (n, x) in enumerate(zip(arr.shape, f, strict=True)):
            c = np.minimum(x, n - np.arange(out_shape[d]) * x).astype(acc_t)
            count = np.multiply.outer(count, c) if count.ndim else c
        mean = total / count
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            return np.clip(np.floor(mean + 0.5), info.min, info.max).astype(arr.dtype)
        return mean.astype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64)
    if meth == "mode":
        padded = np.pad(arr, pad, mode="edge")
        order = [2 * d for d in range(arr.ndim)] + [2 * d + 1 for d in range(arr.ndim)]
        flat = padded.reshape(split).transpose(order).reshape(-1, int(np.prod(f)))
        return _row_mode(flat).reshape(out_shape)
    raise DimensionError(f"downsampling method {meth!r}: expected 'mean', 'mode' or 'nearest'")


def _row_mode(rows: np.ndarray) -> np.ndarray:
    """Most frequent value of each row (ties go to the smallest value)."""
    n, k = rows.shape
    if k == 1 or n == 0:
        return rows[:, 0].copy() if k else rows[:, :0]
    out = rows[:, 0].copy()
    mixed = np.nonzero(np.any(rows != out[:, None], axis=1))[0]
    if len(mixed):
        out[mixed] = _sorted_mode(rows[mixed])
    return out


def _sorted_mode(rows: np.ndarray) -> np.ndarray:
    n, k = rows.shape
    s = np.sort(rows, axis=1)
    new_run = np.ones((n, k), dtype=bool)
    new_run[:, 1:] = s[:, 1:] != s[:, :-1]
    run_id = np.cumsum(new_run, axis=1) - 1 + (np.arange(n) * k)[:, None]
    lengths = np.bincount(run_id.ravel(), minlength=n * k)
    per_elem = lengths[run_id]
    best = np.argmax(per_elem, axis=1)  # first (smallest) value among the longest runs
    return s[np.arange(n), best]


# --------------------------------------------------------------------------- TIFF and MRC


def write_tiff(
    path: str | os.PathLike[str],
    array: np.ndarray,
    voxel_size: Sequence[float] | float,
    unit: str = "nanometer",
    axes: Sequence[str] | None = None,
    *,
    origin: Sequence[float] | None = None,
    flavor: str = "imagej",
    overwrite: bool = False,
) -> Path:
    """Write a 2-D or 3-D image as TIFF with its voxel size and origin, atomically.

    Parameters
    ----------
    path
        Output file.
    array
        Image in numpy axis order (``(y, x)`` or ``(z, y, x)``).
    voxel_size
        Voxel size per axis (numpy order) or one number for all axes.
    unit
        Length unit of ``voxel_size``.
    axes
        Axis names (default ``("y", "x")`` or ``("z", "y", "x")``).
    origin
        Physical position of the centre of voxel 0 per axis (numpy order, in
        ``unit``); default zeros. ImageJ stores it as ``xorigin``/``yorigin``/
        ``zorigin`` (in pixels, negated, as ImageJ's calibration does), OME-XML
        as each plane's ``PositionX/Y/Z`` with their units.
    flavor
        ``imagej`` (XResolution/YResolution in pixels per unit, ``spacing``
        and ``unit`` in the ImageJ description; only uint8, uint16 and
        float32) or ``ome`` (OME-XML ``PhysicalSize*`` with units). ImageJ
        files of other data types are written as OME-TIFF.
    overwrite
        Replace an existing file.
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise DimensionError(f"TIFF image of shape {arr.shape}: expected 2 or 3 axes")
    names = tuple(axes) if axes is not None else _SPATIAL[-arr.ndim :]
    if len(names) != arr.ndim or not set(names) <= set(_SPATIAL):
        raise AxisError(f"axes {names} do not fit an image of shape {arr.shape}")
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=float), (arr.ndim,))
    if np.any(vs <= 0):
        raise MetadataError(f"voxel size {tuple(vs)} must be positive")
    unit = canonical_unit(unit, key="unit")
    size = dict(zip(names, (float(v) for v in vs), strict=True))
    at = np.zeros(arr.ndim) if origin is None else np.asarray(origin, dtype=float)
    if at.shape != (arr.ndim,) or not np.all(np.isfinite(at)):
        raise MetadataError(f"origin {tuple(at.tolist())}: expected {arr.ndim} finite numbers")
    place = dict(zip(names, (float(v) for v in at), strict=True))
    use_imagej = flavor == "imagej" and arr.dtype in _IMAGEJ_DTYPES and unit in _IMAGEJ_UNITS
    if flavor not in ("imagej", "ome"):
        raise FormatError(f"TIFF flavor {flavor!r}: expected 'imagej' or 'ome'")
    axes_text = "".join(n.upper() for n in names)
    with atomic_output(path, force=overwrite) as tmp:
        if use_imagej:
            meta: dict[str, Any] = {"unit": _IMAGEJ_UNITS[unit], "axes": axes_text}
            if "z" in size:
                meta["spacing"] = size["z"]
            for n in names:
                if place[n] != 0:
                    meta[f"{n}origin"] = -place[n] / size[n]
            tifffile.imwrite(
                tmp,
                arr,
                imagej=True,
                resolution=(1.0 / size["x"], 1.0 / size["y"]),
                metadata=meta,
            )
        else:
            ome_unit = _OME_UNITS[unit]
            meta = {"axes": axes_text}
            for n in names:
                meta[f"PhysicalSize{n.upper()}"] = size[n]
                meta[f"PhysicalSize{n.upper()}Unit"] = ome_unit
            if any(place.values()):
                meta["Plane"] = _ome_planes(
                    arr.shape[0] if "z" in size else 1, place, size, ome_unit
                )
            tifffile.imwrite(tmp, arr, ome=True, metadata=meta)
    return Path(path)


def _ome_planes(
    count: int, origin: dict[str, float], size: dict[str, float], unit: str
) -> dict[str, list[Any]]:
    """OME ``Plane`` positions of ``count`` z planes: voxel 0 of each plane, in ``unit``."""
    planes: dict[str, list[Any]] = {}
    for n in ("x", "y", "z"):
        if n not in origin:
            continue
        step = size[n] if n == "z" else 0.0
        planes[f"Position{n.upper()}"] = [origin[n] + i * step for i in range(count)]
        planes[f"Position{n.upper()}Unit"] = [unit] * count
    return planes


def write_mrc(
    path: str | os.PathLike[str],
    array: np.ndarray,
    voxel_size_angstrom: Sequence[float] | float,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a 2-D or 3-D image as MRC with its voxel size in ångström, atomically.

    Parameters
    ----------
    path
        Output file.
    array
        Image in numpy axis order (``(y, x)`` or ``(z, y, x)``); MRC data types
        only (int8, int16, uint16, float32...).
    voxel_size_angstrom
        Voxel size per axis in numpy order, or one number for all axes.
    overwrite
        Replace an existing file.
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise DimensionError(f"MRC image of shape {arr.shape}: expected 2 or 3 axes")
    vs = np.broadcast_to(np.asarray(voxel_size_angstrom, dtype=float), (arr.ndim,))
    if np.any(vs <= 0):
        raise MetadataError(f"voxel size {tuple(vs)} Å must be positive")
    if arr.ndim == 2:
        vx, vy, vz = float(vs[1]), float(vs[0]), float(vs[1])
    else:
        vx, vy, vz = float(vs[2]), float(vs[1]), float(vs[0])
    with atomic_output(path, force=overwrite) as tmp:
        try:
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(np.ascontiguousarray(arr))
                mrc.voxel_size = (vx, vy, vz)
        except ValueError as e:
            raise FormatError(
                f"MRC cannot store data type {arr.dtype}: convert to int16, uint16 or float32"
            ) from e
    return Path(path)
