"""Reading TIFF images and stacks with their physical metadata.

2D images, multi-page stacks, ImageJ hyperstacks, OME-TIFF and pyramidal
TIFF are read through ``tifffile``'s zarr view of the first series, so a box
read decodes only the pages, strips or tiles under the box. Remote files are
downloaded once into the temporary cache first.

Voxel size, first match wins:

1. OME-TIFF ``Pixels`` ``PhysicalSizeX/Y/Z`` with their units (default µm);
   the first plane's ``PositionX/Y/Z`` (with a length unit) place voxel 0;
2. ImageJ metadata: ``XResolution``/``YResolution`` (pixels per unit), ``spacing``
   for z, and ``unit`` (``micron``, ``\\u00B5m``, ``nm``...); ImageJ's
   ``xorigin``/``yorigin``/``zorigin`` (in pixels) place voxel 0;
3. a ``ResolutionUnit`` of centimetre, millimetre or micrometre for y and x.

Inch resolutions are ignored (72 dpi is a common meaningless default): such
files, files with no physical metadata, and files whose sizes are not finite
and positive (the error names the field) need ``--voxel-size``.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coframe.core.errors import FormatError, UnitError
from coframe.core.units import canonical_unit, unit_factor
from coframe.volumes.reading import (
    AxisPlan,
    AxisSpec,
    RawImage,
    RawLevel,
    pyramid_placement,
    resolve_axes,
)
from coframe.volumes.remote import Location
from coframe.volumes.sources import ZarrSource

FORMAT = "tiff"

#: tifffile axis letters that carry a known meaning, as (name, NGFF type).
_LETTERS: dict[str, tuple[str, str | None]] = {
    "Z": ("z", "space"),
    "Y": ("y", "space"),
    "X": ("x", "space"),
    "C": ("c", "channel"),
    "S": ("s", "channel"),
    "T": ("t", "time"),
}
#: Generic page-sequence letters that tifffile uses for plain stacks.
_SEQUENCE_LETTERS = ("Q", "I")
_STRUCTURE_WARNING = re.compile(
    r"invalid page offset|invalid offset to page|corrupt|failed to reshape|invalid value offset",
    re.IGNORECASE,
)
_RESUNIT_UNITS = {3: "centimeter", 4: "millimeter", 5: "micrometer"}
#: What tifffile raises, besides its own TiffFileError, while it parses a corrupt file.
_CORRUPT = (
    ValueError,
    OSError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,
    ZeroDivisionError,
    OverflowError,
)
_NO_UNIT = ("", "pixel", "pixels", "px")


class _Collect(logging.Handler):
    """Keeps tifffile's log records instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _captured_tifffile_log() -> Iterator[_Collect]:
    """Collect tifffile warnings (structure problems) instead of printing them."""
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def read_tiff(location: Location, *, select: Mapping[str, int] | None = None) -> RawImage:
    """Read the first series of a TIFF file as a :class:`RawImage`.

    Parameters
    ----------
    location
        The file (local or remote).
    select
        Index per non-spatial axis (``{"c": 0}``, ``{"s": 0}`` for RGB samples).

    Raises
    ------
    FormatError
        If the file is not a readable TIFF or is truncated.
    AxisError
        If the axes are not 2 or 3 spatial ones after selection.
    UnitError
        If the metadata names an unknown unit.
    """
    import tifffile

    path = location.local_copy()
    _check_ifd_chain(path, str(location))
    with _captured_tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, *_CORRUPT) as e:
            raise FormatError(f"cannot read {location} as TIFF: {e}") from e
        try:
            series = tif.series[0] if tif.series else None
        except (tifffile.TiffFileError, *_CORRUPT) as e:
            tif.close()
            raise FormatError(f"cannot read the image series of {location}: {e}") from e
    problems = [m for m in log.messages if _STRUCTURE_WARNING.search(m)]
    if series is None or problems:
        tif.close()
        detail = problems[0] if problems else "no image series found"
        raise FormatError(
            f"{location} is truncated or corrupt ({detail}): expected a complete TIFF file"
        )
    try:
        _check_complete(tif, series, path, str(location))
        file_axes = _file_axes(series.axes)
        plan = resolve_axes(file_axes, series.shape, select=select, where=str(location))
        calibration = _calibration(tif, series, plan, str(location))
        levels = _levels(tif, series, plan, calibration, str(location))
    except BaseException:
        tif.close()
        raise
    metadata: dict[str, Any] = {
        "file_axes": [a.name for a in file_axes],
        "tiff_axes": series.axes,
        "calibration": calibration.kind,
    }
    if plan.fixed:
        metadata["selected"] = plan.selection()
    return RawImage(
        source=str(location),
        format=FORMAT,
        axes=plan.names,
        units=calibration.units,
        levels=levels,
        calibrated=calibration.reason is None,
        uncalibrated_reason=calibration.reason,
        metadata=metadata,
    )


def _check_ifd_chain(path: Path, where: str) -> None:
    """Raise :class:`FormatError` if the chain of image file directories loops.

    tifffile follows a chain whose next-IFD offset points back to an earlier
    IFD page after page, without end, holding every page in memory. Only the
    IFD headers are read here: a count and a next offset per page.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
        if head[:2] not in (b"II", b"MM") or len(head) < 8:
            return  # tifffile reports what this is not
        order = "<" if head[:2] == b"II" else ">"
        big = struct.unpack_from(order + "H", head, 2)[0] == 43
        if big and len(head) < 16:
            return
        count_fmt, entry, offset_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
        offset = struct.unpack_from(order + offset_fmt, head, 8 if big else 4)[0]
        count_size, offset_size = struct.calcsize(count_fmt), struct.calcsize(offset_fmt)
        seen: set[int] = set()
        while offset:
            if offset in seen:
                raise FormatError(
                    f"{where} is corrupt: its chain of image directories loops back to byte "
                    f"{offset} after {len(seen)} pages; expected a complete TIFF file"
                )
            seen.add(offset)
            if offset >= size:
                return  # past the end: tifffile reports the truncation
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) < count_size:
                return
            count = struct.unpack(order + count_fmt, raw)[0]
            if offset + count_size + count * entry >= size:
                return
            fh.seek(offset + count_size + count * entry)
            raw = fh.read(offset_size)
            if len(raw) < offset_size:
                return
            offset = struct.unpack(order + offset_fmt, raw)[0]


def _check_complete(tif: Any, series: Any, path: Path, where: str) -> None:
    """Raise :class:`FormatError` if image data lies beyond the end of the file."""
    size = path.stat().st_size
    for level in series.levels:
        if level.dataoffset is not None:
            end = int(level.dataoffset) + int(level.nbytes)
        else:
            end = 0
            for page in level.pages:
                if page is None:
                    continue
                if len(page.dataoffsets) != len(page.databytecounts):
                    raise FormatError(
                        f"{where} is corrupt: a page lists {len(page.dataoffsets)} data offsets "
                        f"but {len(page.databytecounts)} byte counts; expected a complete TIFF file"
                    )
                pairs = zip(page.dataoffsets, page.databytecounts, strict=True)
                ends = [int(o) + int(c) for o, c in pairs]
                end = max([end, *ends])
        if end > size:
            raise FormatError(
                f"{where} is truncated: image data runs to byte {end} but the file has {size} "
                "bytes; expected a complete TIFF file"
            )
    meta = tif.imagej_metadata if tif.is_imagej else None
    if meta and isinstance(meta.get("images"), int):
        page_size = max(int(series.keyframe.size), 1)
        found = int(series.size) // page_size
        if found < meta["images"]:
            raise FormatError(
                f"{where} is truncated: ImageJ metadata lists {meta['images']} images but "
                f"{found} were found; expected a complete TIFF file"
            )


def _file_axes(letters: str) -> tuple[AxisSpec, ...]:
    """Axes of a tifffile axis string (e.g. ``TZCYX``, ``QYX``, ``YXS``)."""
    has_z = "Z" in letters
    sequences = [c for c in letters if c in _SEQUENCE_LETTERS]
    specs: list[AxisSpec] = []
    for c in letters:
        if c in _LETTERS:
            name, kind = _LETTERS[c]
        elif c in _SEQUENCE_LETTERS and not has_z and len(sequences) == 1:
            name, kind = "z", "space"
        else:
            name, kind = c.lower(), None
        specs.append(AxisSpec(name, kind))
    return tuple(specs)


def _decode_unit(text: Any) -> str | None:
    """ImageJ unit text with ``\\uXXXX`` escapes decoded; ``None`` for pixels or missing."""
    if not isinstance(text, str):
        return None
    decoded = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).strip()
    return None if decoded.lower() in _NO_UNIT else decoded


@dataclass(frozen=True)
class _Calibration:
    """Voxel sizes, units and origin (by axis name) a TIFF's metadata gives.

    ``reason`` says why the image is not calibrated (``None`` when every view
    axis has a size); ``kind`` names the metadata used, ``scale_key`` and
    ``translation_key`` its fields.
    """

    sizes: dict[str, float]
    units: tuple[str | None, ...]
    origin: dict[str, float]
    reason: str | None
    kind: str
    scale_key: str
    translation_key: str


def _calibration(tif: Any, series: Any, plan: AxisPlan, where: str) -> _Calibration:
    """The physical calibration of the view axes (see the module docstring for the order).

    A size that is present but not finite and positive counts as missing, and
    the reason names it, so ``--voxel-size`` can stand in for it.
    """
    names = plan.names
    found: dict[str, tuple[float, str]] = {}
    origin: dict[str, float] = {}
    kind = "none"
    scale_key, translation_key = "voxel size", "origin"
    positions: dict[str, tuple[float, str]] = {}
    if tif.is_ome and tif.ome_metadata:
        found, positions = _ome_metadata(tif.ome_metadata, str(tif.filename))
        kind = "ome"
        scale_key = f"OME-XML PhysicalSizeX/Y/Z in {where}"
        translation_key = f"OME-XML Plane PositionX/Y/Z in {where}"
    elif tif.is_imagej and tif.imagej_metadata is not None:
        meta = tif.imagej_metadata
        unit = _decode_unit(meta.get("unit"))
        if unit is not None:
            kind = "imagej"
            scale_key = f"ImageJ XResolution/YResolution and spacing in {where}"
            translation_key = f"ImageJ xorigin/yorigin/zorigin in {where}"
            x_res, y_res = _resolution(series.keyframe)
            if x_res:
                found["x"] = (1.0 / x_res, unit)
            if y_res:
                found["y"] = (1.0 / y_res, unit)
            spacing = meta.get("spacing")
            if isinstance(spacing, int | float):
                found["z"] = (_float(spacing), unit)
            for axis in ("x", "y", "z"):
                pixels = meta.get(f"{axis}origin")
                if isinstance(pixels, int | float):
                    origin[axis] = -_float(pixels)  # in pixels until the sizes are known
    else:
        resunit = int(getattr(series.keyframe, "resolutionunit", 1) or 1)
        if resunit in _RESUNIT_UNITS:
            kind = "resolution"
            scale_key = f"XResolution/YResolution tags in {where}"
            x_res, y_res = _resolution(series.keyframe)
            if x_res:
                found["x"] = (1.0 / x_res, _RESUNIT_UNITS[resunit])
            if y_res:
                found["y"] = (1.0 / y_res, _RESUNIT_UNITS[resunit])
    unusable = {n: found.pop(n)[0] for n in names if n in found and not _usable(found[n][0])}
    origin = {n: pixels * found[n][0] for n, pixels in origin.items() if n in found}
    for n, (value, unit) in positions.items():
        if n in found:
            origin[n] = value * _position_factor(unit, found[n][1], n, where)
    missing = [n for n in names if n not in found]
    reason = None
    if unusable:
        values = ", ".join(f"{n} = {v:g}" for n, v in unusable.items())
        reason = f"{scale_key} give {values}, not a finite positive size"
    elif missing:
        if kind == "none":
            reason = "no physical metadata"
        else:
            reason = f"{kind} metadata gives no voxel size for axis {', '.join(missing)}"
    sizes = {n: found[n][0] for n in names if n in found}
    units = tuple(found[n][1] if n in found else None for n in names)
    return _Calibration(sizes, units, origin, reason, kind, scale_key, translation_key)


def _float(value: float) -> float:
    """``value`` as a float; an integer too large for one becomes an infinity (then refused)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _usable(size: float) -> bool:
    """True for a finite positive voxel size."""
    return math.isfinite(size) and size > 0


def _resolution(page: Any) -> tuple[float, float]:
    """Pixels per unit along x and y (0 when absent)."""
    tags = page.tags
    values = []
    for name in ("XResolution", "YResolution"):
        tag = tags.get(name)
        if tag is None:
            values.append(0.0)
            continue
        try:
            num, den = tag.value
            values.append(float(num) / float(den) if den else 0.0)
        except (TypeError, ValueError, OverflowError):
            values.append(math.nan)  # a malformed tag: reported as an unusable size
    return values[0], values[1]


def _ome_metadata(
    xml: str, where: str
) -> tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
    """Sizes and position of the first OME ``Pixels`` element, by axis name, with units.

    Sizes are ``PhysicalSize{X,Y,Z}`` (unit default µm); the position is the
    ``Position{X,Y,Z}`` of its first plane (``TheZ``, ``TheC``, ``TheT`` 0),
    the centre of voxel 0, kept only where a length unit is given (OME's
    default unit, ``reference frame``, is not a length).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise FormatError(f"invalid OME-XML in {where}: {e}") from e
    pixels = next((el for el in root.iter() if _tag(el) == "Pixels"), None)
    if pixels is None:
        return {}, {}
    sizes: dict[str, tuple[float, str]] = {}
    for axis in ("X", "Y", "Z"):
        value = _ome_number(pixels, f"PhysicalSize{axis}", where)
        if value is not None:
            sizes[axis.lower()] = (value, pixels.get(f"PhysicalSize{axis}Unit", "µm"))
    first = next(
        (
            el
            for el in pixels
            if _tag(el) == "Plane" and all(el.get(k, "0") == "0" for k in ("TheZ", "TheC", "TheT"))
        ),
        None,
    )
    positions: dict[str, tuple[float, str]] = {}
    if first is not None:
        for axis in ("X", "Y", "Z"):
            value = _ome_number(first, f"Position{axis}", where)
            unit = first.get(f"Position{axis}Unit")
            if value is not None and unit is not None and unit != "reference frame":
                positions[axis.lower()] = (value, unit)
    return sizes, positions


def _tag(element: ET.Element) -> str:
    """An XML element's tag without its namespace."""
    return element.tag.rsplit("}", 1)[-1]


def _ome_number(element: ET.Element, key: str, where: str) -> float | None:
    """A numeric OME-XML attribute, ``None`` if absent."""
    value = element.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError as e:
        raise FormatError(f"{key}={value!r} in the OME-XML of {where}: expected a number") from e


def _position_factor(unit: str, size_unit: str, axis: str, where: str) -> float:
    """Factor from an OME position's unit to its axis's size unit (1 if that one is unknown)."""
    try:
        canonical_unit(size_unit)
    except UnitError:
        return 1.0  # the size's unknown unit is reported when the image is placed
    try:
        return unit_factor(unit, size_unit)
    except UnitError as e:
        raise UnitError(
            f"Position{axis.upper()}Unit {unit!r} in the OME-XML of {where}: expected a length "
            "unit (nm, µm, mm...); fix the metadata"
        ) from e


def _levels(
    tif: Any,
    series: Any,
    plan: AxisPlan,
    calibration: _Calibration,
    where: str,
) -> tuple[RawLevel, ...]:
    """One level per pyramid level of the series, read through tifffile's zarr view."""
    import zarr

    base_scale = tuple(calibration.sizes.get(n, 1.0) for n in plan.names)
    base_translation = tuple(calibration.origin.get(n, 0.0) for n in plan.names)
    levels: list[RawLevel] = []
    base_shape: tuple[int, ...] | None = None
    for index, level in enumerate(series.levels):
        try:
            array = zarr.open(series.aszarr(level=index), mode="r")
        except _CORRUPT as e:
            raise FormatError(f"cannot open level {index} of {where}: {e}") from e
        if not hasattr(array, "shape") or tuple(array.shape) != tuple(level.shape):
            raise FormatError(f"level {index} of {where} does not open as one array")
        view = plan.view(ZarrSource(array, f"{where} level {index}", keepalive=(tif,)))
        if base_shape is None:
            base_shape = view.shape
            scale, translation = base_scale, base_translation
        else:
            scale, translation = pyramid_placement(
                base_scale, base_translation, base_shape, view.shape
            )
        levels.append(
            RawLevel(
                str(index),
                view,
                scale,
                translation,
                scale_key=calibration.scale_key,
                translation_key=calibration.translation_key,
            )
        )
    return tuple(levels)
