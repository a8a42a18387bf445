"""BigWarp landmark files (CSV and JSON): reading and writing.

BigWarp stores landmark pairs between a *moving* and a *fixed* (target)
image, as CSV (:mod:`~coframe.transforms.formats.bigwarp_csv`) or JSON
(:mod:`~coframe.transforms.formats.bigwarp_json`). Inside coframe every point
is in numpy axis order (z, y, x); the conversion from and to BigWarp's
x-first order happens only in those two modules. BigWarp files carry no
unit: they are read and written in the workspace unit unless ``file_unit``
says otherwise.

The transform a file defines maps *fixed* points to *moving* points, like
BigWarp (:func:`coframe.transforms.point_pairs.landmarks_transform`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from coframe.core.atomic import write_text_atomic
from coframe.core.errors import FormatError, InputNotFoundError, ParseError
from coframe.core.units import canonical_unit, unit_factor
from coframe.transforms.formats.bigwarp_csv import format_bigwarp_csv, parse_bigwarp_csv
from coframe.transforms.formats.bigwarp_json import (
    BigWarpJson,
    bigwarp_json_object,
    is_bigwarp_object,
    parse_bigwarp_json,
)
from coframe.transforms.formats.ngff_io import load_json
from coframe.transforms.point_pairs import Landmarks


def _file_scale(unit: str, file_unit: str | None) -> float:
    """Factor converting lengths in the file unit into the workspace unit."""
    workspace = canonical_unit(unit, key="unit")
    source = workspace if file_unit is None else canonical_unit(file_unit, key="file_unit")
    return unit_factor(source, workspace)


def _read_text(path: str | os.PathLike[str]) -> tuple[Path, str]:
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"BigWarp file {str(p)!r} does not exist: expected a file")
    try:
        return p, p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"cannot read BigWarp file {str(p)!r}: {e}") from e


def read_bigwarp_landmarks(
    path: str | os.PathLike[str], *, unit: str = "nanometer", file_unit: str | None = None
) -> Landmarks:
    """Read a BigWarp landmarks CSV (or landmarks JSON) file.

    Parameters
    ----------
    path
        A ``.csv`` file, or a ``.json`` BigWarp landmarks/transform file.
    unit
        The workspace unit of the returned coordinates.
    file_unit
        The unit of the coordinates in the file (default: ``unit``).

    Returns
    -------
    Landmarks
        Moving and fixed points in numpy axis order (z, y, x), inactive
        pairs kept and flagged.

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    ParseError
        If the file is malformed (the message names the line).
    """
    if Path(path).suffix.lower() == ".json":
        return read_bigwarp_json(path, unit=unit, file_unit=file_unit).landmarks
    p, text = _read_text(path)
    return parse_bigwarp_csv(text, scale=_file_scale(unit, file_unit), source=str(p))


def write_bigwarp_landmarks(
    path: str | os.PathLike[str],
    landmarks: Landmarks,
    force: bool = False,
    *,
    unit: str = "nanometer",
    file_unit: str | None = None,
) -> Path:
    """Write landmarks as a BigWarp CSV file, atomically.

    Parameters
    ----------
    path
        Output ``.csv`` path.
    landmarks
        The pairs, numpy axis order, in ``unit``.
    force
        Overwrite an existing file.
    unit
        Unit of the coordinates in ``landmarks``.
    file_unit
        Unit to write (default: ``unit``).

    Raises
    ------
    OverwriteError
        If the file exists and ``force`` is false.
    """
    scale = 1.0 / _file_scale(unit, file_unit)
    return write_text_atomic(path, format_bigwarp_csv(landmarks, scale=scale), force=force)


def is_bigwarp_json(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a JSON file holding BigWarp landmarks (not, e.g., NGFF metadata)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return False
    return is_bigwarp_object(obj)


def read_bigwarp_json(
    path: str | os.PathLike[str], *, unit: str = "nanometer", file_unit: str | None = None
) -> BigWarpJson:
    """Read a BigWarp landmarks, transform or settings JSON file.

    Parameters
    ----------
    path
        The JSON file.
    unit
        The workspace unit of the returned coordinates.
    file_unit
        The unit of the coordinates in the file (default: ``unit``).

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    ParseError
        If the JSON is malformed (line and column) or lacks landmarks (key).
    """
    p, text = _read_text(path)
    obj = load_json(text, str(p))
    try:
        return parse_bigwarp_json(obj, scale=_file_scale(unit, file_unit))
    except ParseError as e:
        raise ParseError(f"{p}: {e}") from e


def write_bigwarp_json(
    path: str | os.PathLike[str],
    landmarks: Landmarks,
    kind: str | None = "tps",
    *,
    force: bool = False,
    unit: str = "nanometer",
    file_unit: str | None = None,
) -> Path:
    """Write a BigWarp transform JSON file (``{"type", "landmarks"}``), atomically.

    Parameters
    ----------
    path
        Output ``.json`` path.
    landmarks
        The pairs, numpy axis order, in ``unit``.
    kind
        The transform kind to record (``"tps"``, ``"affine"``...), or None
        to write the landmarks object alone.
    force
        Overwrite an existing file.
    unit
        Unit of the coordinates in ``landmarks``.
    file_unit
        Unit to write (default: ``unit``).

    Raises
    ------
    OverwriteError
        If the file exists and ``force`` is false.
    """
    scale = 1.0 / _file_scale(unit, file_unit)
    obj = bigwarp_json_object(landmarks, kind, scale=scale)
    return write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=True) + "\n", force=force)
