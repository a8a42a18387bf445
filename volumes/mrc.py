"""Reading MRC / CCP4 maps and images (``.mrc``, ``.map``, ``.rec``, ``.st``...).

The header is validated with ``mrcfile.mmap`` (permissive mode off, so a
corrupt header is an error); the data is then memory-mapped, so a box read
touches only the pages under it. Voxel size comes from the header
(``cella / mx,my,mz``, in ångström) and is converted like any other unit;
the origin is the header ``origin`` when non-zero, else ``nxstart``... times
the voxel size. A voxel size of 0 (or not finite) leaves the image to be
placed with ``--voxel-size``. The ``mapc/mapr/maps`` axis order is honoured. A single
section (``nz == 1``) becomes a 2D (y, x) image. Remote files are downloaded
once into the temporary cache first.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from coframe.core.errors import FormatError
from coframe.volumes.reading import AxisSpec, RawImage, RawLevel, resolve_axes
from coframe.volumes.remote import Location
from coframe.volumes.sources import MemmapSource

FORMAT = "mrc"
_UNIT = "angstrom"
_AXIS_NAMES = {1: "x", 2: "y", 3: "z"}


def read_mrc(location: Location, *, select: Mapping[str, int] | None = None) -> RawImage:
    """Read an MRC file as a :class:`RawImage` (one level, memory-mapped).

    Parameters
    ----------
    location
        The file (local or remote).
    select
        Unused for MRC (no non-spatial axes); accepted for a uniform reader signature.

    Raises
    ------
    FormatError
        If the header is corrupt or the data does not fit the file.
    """
    import mrcfile

    path = location.local_copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                header = mrc.header
                data = mrc.data
                if data is None:
                    raise FormatError(f"{location} has an MRC header but no data")
                shape = tuple(int(n) for n in data.shape)
                dtype = data.dtype
                offset = int(data.offset)
                voxel = tuple(float(v) for v in mrc.voxel_size.item())
                origin_xyz = tuple(float(v) for v in header.origin.item())
                start_xyz = (int(header.nxstart), int(header.nystart), int(header.nzstart))
                order = (int(header.mapc), int(header.mapr), int(header.maps))
        except (ValueError, OSError, EOFError, OverflowError) as e:
            raise FormatError(
                f"cannot read {location} as MRC: {e}; expected an MRC2014 file"
            ) from e
    if sorted(order) != [1, 2, 3]:
        raise FormatError(
            f"mapc/mapr/maps = {order} in {location}: expected a permutation of 1, 2, 3"
        )
    # data axes (slowest first) hold the physical axes maps, mapr, mapc
    if len(shape) == 3 and shape[0] == 1:
        file_names: tuple[str, ...] = (_AXIS_NAMES[order[1]], _AXIS_NAMES[order[0]])
        view_shape = shape[1:]
    elif len(shape) == 3:
        file_names = (_AXIS_NAMES[order[2]], _AXIS_NAMES[order[1]], _AXIS_NAMES[order[0]])
        view_shape = shape
    elif len(shape) == 2:
        file_names = (_AXIS_NAMES[order[1]], _AXIS_NAMES[order[0]])
        view_shape = shape
    else:
        raise FormatError(
            f"{location} holds a {len(shape)}D array: expected a 2D image or 3D volume"
        )
    if len(file_names) == 2 and sorted(file_names) != ["x", "y"]:
        file_names = ("y", "x")
    file_axes = tuple(AxisSpec(n, "space", _UNIT) for n in file_names)
    plan = resolve_axes(file_axes, view_shape, select=select, where=str(location))
    chunks = (1, *view_shape[1:]) if len(view_shape) == 3 else view_shape
    source = MemmapSource(path, dtype, offset, view_shape, chunks)
    by_name = dict(zip("xyz", voxel, strict=True))
    unusable = {
        n: by_name[n] for n in plan.names if not (math.isfinite(by_name[n]) and by_name[n] > 0)
    }
    calibrated = not unusable
    scale = tuple(by_name[n] if calibrated else 1.0 for n in plan.names)
    origin_by_name = dict(zip("xyz", origin_xyz, strict=True))
    start_by_name = dict(zip("xyz", start_xyz, strict=True))
    if any(origin_by_name[n] != 0 for n in plan.names):
        translation = tuple(origin_by_name[n] if calibrated else 0.0 for n in plan.names)
        translation_key = f"header origin in {location}"
    else:
        translation = tuple(start_by_name[n] * s for n, s in zip(plan.names, scale, strict=True))
        translation_key = f"header nxstart/nystart/nzstart in {location}"
    level = RawLevel(
        "",
        plan.view(source),
        scale,
        translation,
        scale_key=f"header voxel size (cella / mx, my, mz) in {location}",
        translation_key=translation_key,
    )
    if all(v == 0 for v in unusable.values()):
        reason = "header voxel size is 0"
    else:
        values = ", ".join(f"{n} = {v:g}" for n, v in unusable.items())
        reason = f"header voxel size (cella / mx, my, mz) is {values}, not a finite positive size"
    metadata: dict[str, Any] = {
        "file_axes": list(file_names),
        "mode": int(_mode_of(dtype)),
        "header_warnings": [str(w.message) for w in caught],
    }
    return RawImage(
        source=str(location),
        format=FORMAT,
        axes=plan.names,
        units=(_UNIT,) * len(plan.names) if calibrated else (None,) * len(plan.names),
        levels=(level,),
        calibrated=calibrated,
        uncalibrated_reason=None if calibrated else reason,
        metadata=metadata,
    )


def _mode_of(dtype: np.dtype) -> int:
    """MRC mode number of a data type (-1 if it has none)."""
    from mrcfile.utils import mode_from_dtype

    try:
        return int(mode_from_dtype(dtype))
    except ValueError:
        return -1
