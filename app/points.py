"""``coframe points``: physical point lists in numpy axis order, mapped between spaces.

A JSON list of points (or one point), or a CSV file with one point per row and
an optional header of axis names (which may reorder the columns).
:func:`map_workspace_points` maps them through a workspace's graph or an
OME-NGFF scene's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.workspace import find_workspace, load_workspace
from coframe.core.atomic import write_text_atomic
from coframe.core.errors import FormatError, InputNotFoundError, ParseError
from coframe.core.units import canonical_unit, unit_factor
from coframe.transforms.formats.ngff import read_scene
from coframe.transforms.graph import SpaceGraph, map_points
from coframe.volumes.volume import SPATIAL_AXES_3D


def read_points(coords: str, *, source: str = "COORDS") -> np.ndarray:
    """Points from a JSON list, a JSON file or a CSV file, as an ``(N, d)`` array.

    Parameters
    ----------
    coords
        ``"[[1, 2, 3], [4, 5, 6]]"``, ``"[1, 2, 3]"`` (one point), or the
        path of a ``.json`` or ``.csv`` file. CSV files hold one point per
        row; an optional header names the axes (``z,y,x``, ``x,y,z``...), and
        columns are reordered into (z, y, x).
    source
        Name of the argument, used in error messages.

    Raises
    ------
    ParseError
        If the text is malformed (the message names line and column).
    InputNotFoundError
        If ``coords`` is neither JSON nor an existing file.
    """
    if coords.strip().startswith("["):
        return _points_from_json(coords, source)
    p = Path(coords)
    try:
        p = p.expanduser()
    except RuntimeError:  # ~user names no user here: the path is taken as written
        pass
    if not p.is_file():
        raise InputNotFoundError(
            f"{source} {coords!r} is neither a JSON list of points like [[z, y, x], ...] "
            f"nor an existing .csv/.json file"
        )
    try:
        content = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"cannot read points file {p}: {e}") from e
    if p.suffix.lower() == ".json":
        return _points_from_json(content, str(p))
    return _points_from_csv(content, str(p))


def map_workspace_points(
    source: str,
    target: str,
    coords: str,
    *,
    scene: Path | None = None,
    workspace: Path | None = None,
    via: Sequence[str] = (),
    unit: str | None = None,
    csv_out: Path | None = None,
    force: bool = False,
) -> np.ndarray:
    """Map the points of ``coords`` from space ``source`` to ``target``.

    Parameters
    ----------
    source, target
        Space (or, in a workspace, image) names.
    coords
        The points (see :func:`read_points`).
    scene
        Read the graph from this OME-NGFF scene instead of a workspace.
    workspace
        Workspace directory (default: found from the current directory upward).
    via
        Spaces the path must pass through, in order.
    unit
        Unit of the points (default: the workspace unit; nanometer for a scene).
        A scene's axes without a unit are taken in it, so points between
        unitless coordinate systems map as plain numbers.
    csv_out
        Also write the mapped points there as CSV.
    force
        Overwrite ``csv_out``.

    Returns
    -------
    The mapped points, ``(N, d)``, in the unit of the input points.
    """
    points = read_points(coords)
    stops, factor = list(via), 1.0
    if scene is not None:
        # Axes without a unit take the points' unit: unitless numbers map as they are.
        scene_unit = canonical_unit(unit or "nanometer", key="--unit")
        graph = SpaceGraph.from_scene(read_scene(scene, unit=scene_unit, file_unit=scene_unit))
    else:
        ws = load_workspace(find_workspace(explicit=workspace))
        graph = ws.graph()
        factor = 1.0 if unit is None else unit_factor(canonical_unit(unit), ws.unit)
        source, target = ws.space_of(source), ws.space_of(target)
        stops = [ws.space_of(v) for v in stops]
    mapped = map_points(graph, source, target, points, stops, scale=factor)
    if csv_out is not None:
        write_text_atomic(csv_out, points_csv_text(mapped, graph.spaces.get(target)), force=force)
    return mapped


def points_csv_text(points: np.ndarray, axes: tuple[str, ...] | None = None) -> str:
    """CSV text of points, one per row, with a header of axis names."""
    arr = np.asarray(points, dtype=float).reshape(-1, np.shape(points)[-1])
    if axes is None or len(axes) != arr.shape[1]:
        axes = SPATIAL_AXES_3D[-arr.shape[1] :] if arr.shape[1] <= 3 else None
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if axes is not None:
        writer.writerow(axes)
    for row in arr:
        writer.writerow([repr(float(v)) for v in row])
    return buf.getvalue()


def _points_from_json(text: str, source: str) -> np.ndarray:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(
            f"{source} line {e.lineno}, column {e.colno}: {e.msg}; expected a JSON list of points "
            f"like [[z, y, x], ...]"
        ) from e
    except (RecursionError, ValueError) as e:
        raise ParseError(
            f"{source}: JSON nests too deeply or holds a number too long to read; expected a "
            "JSON list of points like [[z, y, x], ...]"
        ) from e
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ParseError(
            f"{source}: expected a non-empty JSON list of points like [[z, y, x], ...]"
        )
    dim = None
    for i, point in enumerate(value):
        if not isinstance(point, list) or not point or not all(_is_number(v) for v in point):
            raise ParseError(f"{source}: point {i} is {point!r}; expected a list of numbers")
        if dim is None:
            dim = len(point)
        elif len(point) != dim:
            raise ParseError(
                f"{source}: point {i} has {len(point)} coordinates but point 0 has {dim}; "
                f"give every point the same axes"
            )
    try:
        arr = np.asarray(value, dtype=float)
    except OverflowError:
        arr = np.array([np.inf])
    if not np.all(np.isfinite(arr)):
        raise ParseError(f"{source}: coordinates must be finite numbers")
    return arr


def _points_from_csv(content: str, source: str) -> np.ndarray:
    rows: list[list[float]] = []
    order: list[int] | None = None
    dim = None
    first_line = None
    reader = csv.reader(io.StringIO(content))
    for lineno, row in _csv_rows(reader, source):
        cells = [c.strip() for c in row]
        if not cells or all(not c for c in cells) or cells[0].startswith("#"):
            continue
        if not rows and order is None and not all(_is_float(c) for c in cells):
            order = _header_order(cells, source, lineno)
            dim = len(cells)
            first_line = lineno
            continue
        if dim is None:
            dim, first_line = len(cells), lineno
        if len(cells) != dim:
            raise ParseError(
                f"{source} line {lineno}: {len(cells)} values but line {first_line} has {dim}; "
                f"expected one point per row"
            )
        bad = next((c for c in cells if not _is_float(c)), None)
        if bad is not None:
            raise ParseError(
                f"{source} line {lineno}: {bad!r} is not a number; expected one point per row "
                f"in (z, y, x) order"
            )
        values = [float(c) for c in cells]
        rows.append(values if order is None else [values[k] for k in order])
    if not rows:
        raise ParseError(f"{source}: no points found; expected one point per row")
    arr = np.asarray(rows, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ParseError(f"{source}: coordinates must be finite numbers")
    return arr


def _csv_rows(reader: Any, source: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of each CSV row; a malformed row is a :class:`ParseError`."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ParseError(
                f"{source} line {reader.line_num}: {e}; expected one point per row"
            ) from e
        yield reader.line_num, row


def _header_order(cells: list[str], source: str, lineno: int) -> list[int]:
    names = [c.lower() for c in cells]
    expected = list(SPATIAL_AXES_3D[-len(names) :]) if len(names) <= 3 else []
    if sorted(names) != sorted(expected):
        raise ParseError(
            f"{source} line {lineno}: header {cells} does not name the axes; expected a "
            f"permutation of {', '.join(SPATIAL_AXES_3D)} (or no header, columns in z, y, x order)"
        )
    return [names.index(axis) for axis in expected]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
