"""BigWarp landmark CSV text: parsing and formatting.

No header, every field quoted, one landmark per line:
``"name","active","mx","my"[,"mz"],"fx","fy"[,"fz"]`` (six fields in 2D,
eight in 3D; a variant with an integer id after ``active`` is also read).
Coordinates are physical, x first; coframe keeps numpy axis order (z, y, x),
so they are reversed here. Files are read and written by
:mod:`coframe.transforms.formats.bigwarp`.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from coframe.core.errors import ParseError
from coframe.transforms.point_pairs import Landmarks


def _parse_bool(text: str, line: int, source: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "false"):
        return value == "true"
    raise ParseError(
        f"{source}: BigWarp CSV line {line}, field 2 (active): expected true or false, got {text!r}"
    )


def _parse_float(text: str, line: int, column: int, what: str, source: str) -> float:
    try:
        return float(text.strip())
    except ValueError as e:
        raise ParseError(
            f"{source}: BigWarp CSV line {line}, field {column} ({what}): expected a number, "
            f"got {text!r}"
        ) from e


def _layout(n_fields: int, line: int, source: str) -> tuple[int, int]:
    """Return (dimension, index of the first coordinate) for a row of ``n_fields`` fields."""
    layouts = {6: (2, 2), 8: (3, 2), 7: (2, 3), 9: (3, 3)}
    if n_fields not in layouts:
        raise ParseError(
            f"{source}: BigWarp CSV line {line}: expected 6 fields (name, active, moving x,y, "
            f"fixed x,y) or 8 fields (name, active, moving x,y,z, fixed x,y,z), got {n_fields}"
        )
    return layouts[n_fields]


def parse_bigwarp_csv(text: str, *, scale: float = 1.0, source: str = "<text>") -> Landmarks:
    """Parse BigWarp landmark CSV text.

    Parameters
    ----------
    text
        The file content.
    scale
        Factor applied to every coordinate (file unit to workspace unit).
    source
        Name of the file, for error messages.

    Raises
    ------
    ParseError
        Naming the line and field that is malformed.
    """
    names: list[str] = []
    active: list[bool] = []
    moving: list[list[float]] = []
    fixed: list[list[float]] = []
    dim = first = 0
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        rows = list(reader)
    except csv.Error as e:
        raise ParseError(f"{source}: BigWarp CSV line {reader.line_num} is malformed: {e}") from e
    for number, row in enumerate(rows, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        row_dim, row_first = _layout(len(row), number, source)
        if dim and (row_dim, row_first) != (dim, first):
            raise ParseError(
                f"{source}: BigWarp CSV line {number} has {len(row)} fields but the first landmark "
                f"line has {2 + 2 * dim + (first - 2)}: every line must have the same layout"
            )
        dim, first = row_dim, row_first
        axes = "xyz"[:dim]
        names.append(row[0])
        active.append(_parse_bool(row[1], number, source))
        if first == 3 and not row[2].strip().lstrip("-").isdigit():
            raise ParseError(
                f"{source}: BigWarp CSV line {number}, field 3 (id): expected an integer, "
                f"got {row[2]!r}"
            )
        values = [
            _parse_float(row[first + k], number, first + k + 1, f"{role} {axes[k % dim]}", source)
            for k, role in enumerate(["moving"] * dim + ["fixed"] * dim)
        ]
        # BigWarp lists x first; coframe keeps numpy order (z, y, x).
        moving.append(values[:dim][::-1])
        fixed.append(values[dim:][::-1])
    if not names:
        raise ParseError(f"{source}: BigWarp CSV holds no landmark line")
    return Landmarks(
        np.asarray(moving) * scale, np.asarray(fixed) * scale, tuple(names), np.asarray(active)
    )


def _java_number(value: float) -> str:
    """Format a number so that Java's ``Double.parseDouble`` reads it back exactly."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def format_bigwarp_csv(landmarks: Landmarks, *, scale: float = 1.0) -> str:
    """BigWarp CSV text of ``landmarks`` (x first, every field quoted).

    Parameters
    ----------
    landmarks
        The landmark pairs in numpy axis order.
    scale
        Factor applied to every coordinate (workspace unit to file unit).
    """
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for i in range(len(landmarks)):
        coords = [*landmarks.moving[i][::-1], *landmarks.fixed[i][::-1]]
        writer.writerow(
            [
                landmarks.names[i],
                "true" if landmarks.active[i] else "false",
                *(_java_number(float(v) * scale) for v in coords),
            ]
        )
    return out.getvalue()
