"""Sizes in bytes: reading ``"2TB"``-like flag values, writing them, bounding an output.

:func:`parse_size` reads a size flag (``--memory-per-task``,
``--max-output-size``), :func:`format_bytes` writes one, and
:func:`check_output_size` refuses an output grid above a bound (default
:data:`DEFAULT_MAX_OUTPUT`) before anything is created.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from coframe.core.errors import MetadataError, OutputError

#: Largest output written unless ``--max-output-size`` says otherwise. The largest images
#: of the field, a CellMap FIB-SEM ``s0`` of ~20,000 voxels a side, are ~8 TB of uint8: a
#: full-resolution copy of one (uint16 too) passes, while a grid made by a slip of unit or
#: exponent (``--voxel-size 1e-6`` gives 10^25 voxels) is refused before anything is created.
DEFAULT_MAX_OUTPUT = "16TB"
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str | int, *, flag: str) -> int:
    """Bytes of a size such as ``"256MB"``, ``"1.5GiB"``, ``"2TB"`` or ``268435456``.

    Raises
    ------
    MetadataError
        If the text is not a positive size (names ``flag``).
    """
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise MetadataError(
                f"{flag} {text!r}: expected a size such as 256MB, 1GB, 2TB or 512MiB"
            )
        value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value < 1:
        raise MetadataError(f"{flag} {text!r}: expected a positive size")
    return value


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units (``"1.5 GB"``, ``"21 YB"``), as sizes are given."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if abs(n) < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} YB"


def check_output_size(
    shape: Sequence[int], voxel_size: Sequence[float], unit: str, dtype: Any, limit: int
) -> None:
    """Refuse an output grid of more than ``limit`` bytes (``--max-output-size``).

    Parameters
    ----------
    shape, voxel_size, unit
        The grid (numpy order).
    dtype
        Voxel data type.
    limit
        Largest size in bytes (:func:`parse_size`).

    Raises
    ------
    OutputError
        If the grid holds more bytes than ``limit``; the message gives its
        shape and size, and the flags that make it smaller or allow it.
    """
    voxels = math.prod(int(n) for n in shape)  # Python ints: no int64 overflow
    size = voxels * np.dtype(dtype).itemsize
    if size > limit:
        text = " x ".join(str(n) for n in shape)
        count = f"{voxels:,}" if voxels < 10**9 else f"{voxels:.3g}"
        vs = ",".join(f"{v:g}" for v in voxel_size)
        raise OutputError(
            f"the output grid is {text} voxels ({count} voxels of "
            f"{np.dtype(dtype).name}, {format_bytes(size)}), above --max-output-size "
            f"{format_bytes(limit)}: check the voxel size ({vs} {unit}; --voxel-size, "
            "--level) and --box, or raise --max-output-size if you mean it"
        )
