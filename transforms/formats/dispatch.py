"""Transform files: choose their reader or writer, link them into a workspace, fingerprint them.

Also here: moving a workspace's edges to and from one OME-NGFF scene, the
provenance record of a stored transform (command, time, SHA-256, software
versions), atomic text writes, and the point lists of ``coframe points``.

Transform files by suffix (and content for ``.json``):

- ``.tfm``, ``.txt``, ``.h5``, ``.hdf5``, ``.mat``: ITK (through SimpleITK);
- ``.csv``: BigWarp landmarks, turned into a thin-plate spline that maps
  FIXED points to MOVING points (so ``coframe link FIXED MOVING file.csv``);
- ``.json``: BigWarp landmarks/transform JSON when it looks like one, else an
  OME-NGFF coordinate transformation;
- a ``.zarr`` / ``.ome.zarr`` directory or any Zarr group: OME-NGFF.

ITK and BigWarp files carry no unit: they are read in ``file_unit`` and
converted into ``unit``. NGFF files carry units per axis.

Point lists (``coframe points``) are physical coordinates in numpy axis order:
a JSON list of points (or one point), or a CSV file with one point per row and
an optional header of axis names (which may reorder the columns).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from coframe.core.errors import (
    FormatError,
    InputNotFoundError,
    OverwriteError,
    ParseError,
    TransformError,
)

if TYPE_CHECKING:
    from coframe.app.workspace import Workspace
    from coframe.transforms.base import Transform

#: Suffixes read and written through SimpleITK.
ITK_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat")
#: Every transform format name, as recorded in the workspace.
FORMATS = ("itk", "ngff", "bigwarp-csv", "bigwarp-json")
_ACCEPTED = "ITK .tfm/.txt/.h5/.hdf5/.mat, BigWarp .csv/.json, OME-NGFF .json or .zarr group"
_AXIS_ORDER = ("z", "y", "x")


def detect_transform_format(path: str | Path) -> str:
    """Format name (one of :data:`FORMATS`) of a transform file.

    Raises
    ------
    InputNotFoundError
        If the path does not exist.
    FormatError
        If the suffix is none of the accepted ones (the message lists them).
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"transform file {p} does not exist: check the path")
    suffix = p.suffix.lower()
    if suffix in ITK_SUFFIXES:
        return "itk"
    if suffix == ".csv":
        return "bigwarp-csv"
    if suffix == ".json":
        return "bigwarp-json" if _looks_like_bigwarp_json(p) else "ngff"
    if p.is_dir() and (
        suffix == ".zarr"
        or any((p / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))
    ):
        return "ngff"
    raise FormatError(
        f"cannot tell the transform format of {p} (suffix {suffix or 'none'!r}): "
        f"expected {_ACCEPTED}"
    )


def read_transform(
    path: str | Path,
    *,
    file_unit: str | None = None,
    unit: str = "nanometer",
    format: str | None = None,
) -> Transform:
    """Read a transform file into a transform in ``unit``.

    Parameters
    ----------
    path
        The transform file or Zarr group.
    file_unit
        Unit of lengths in unit-less files (ITK, BigWarp); default ``unit``.
    unit
        Unit of the returned transform (the workspace unit).
    format
        One of :data:`FORMATS`; detected from the path when omitted.

    Raises
    ------
    FormatError
        If the format is unknown or the file does not hold a transform.
    """
    from coframe.core.units import canonical_unit

    p = Path(path)
    fmt = detect_transform_format(p) if format is None else _check_format(format)
    if not p.exists():
        raise InputNotFoundError(f"transform file {p} does not exist: check the path")
    unit = canonical_unit(unit, key="unit")
    file_unit = unit if file_unit is None else canonical_unit(file_unit, key="--unit")
    if fmt == "itk":
        from coframe.transforms.formats.itk import read_itk

        return read_itk(p, file_unit=file_unit, unit=unit)
    if fmt == "ngff":
        from coframe.transforms.formats.ngff import read_ngff_transform

        return read_ngff_transform(p, unit=unit)
    from coframe.transforms.formats import bigwarp

    if fmt == "bigwarp-csv":
        landmarks = bigwarp.read_bigwarp_landmarks(p, unit=unit, file_unit=file_unit)
        return bigwarp.landmarks_transform(landmarks)
    return bigwarp.read_bigwarp_json(p, unit=unit, file_unit=file_unit).to_transform()


def write_transform(
    transform: Transform,
    path: str | Path,
    *,
    unit: str = "nanometer",
    file_unit: str | None = None,
    format: str | None = None,
    input_space: str = "input",
    output_space: str = "output",
    force: bool = False,
) -> Path:
    """Write a transform (in ``unit``) to a file whose format follows its suffix.

    Parameters
    ----------
    transform
        The transform, lengths in ``unit``.
    path
        Output file or Zarr group.
    unit
        Unit of the transform's lengths (the workspace unit).
    file_unit
        Unit written into unit-less files (ITK, BigWarp); default ``unit``.
    format
        One of :data:`FORMATS`; from the suffix when omitted (``.json`` and
        ``.zarr`` give NGFF).
    input_space, output_space
        Coordinate system names recorded in NGFF files.
    force
        Overwrite an existing file.

    Raises
    ------
    OverwriteError
        If the output exists and ``force`` is false.
    FormatError
        If the suffix is unknown or the format cannot hold this transform.
    """
    from coframe.core.units import canonical_unit

    p = Path(path)
    if p.exists() and not force:
        raise OverwriteError(f"{p} already exists: pass --force to overwrite it")
    fmt = _format_from_suffix(p) if format is None else _check_format(format)
    unit = canonical_unit(unit, key="unit")
    file_unit = unit if file_unit is None else canonical_unit(file_unit, key="--unit")
    if fmt == "itk":
        from coframe.transforms.formats.itk import write_itk

        return Path(write_itk(transform, p, file_unit=file_unit, unit=unit, force=force))
    if fmt == "ngff":
        from coframe.transforms.formats.ngff import write_ngff_transform

        written = write_ngff_transform(
            p, transform, input_space=input_space, output_space=output_space, unit=unit, force=force
        )
        return p if written is None else Path(written)
    from coframe.transforms.formats import bigwarp
    from coframe.transforms.tps import ThinPlateSpline

    if not isinstance(transform, ThinPlateSpline):
        raise TransformError(
            f"a BigWarp file holds the landmarks of a thin-plate spline, not a "
            f"{type(transform).__name__}: write {p.name} as .tfm (ITK) or .zarr (OME-NGFF) instead"
        )
    landmarks = bigwarp.landmarks_from_pairs(transform.source_points, transform.target_points)
    opts: dict[str, Any] = {"force": force, "unit": unit, "file_unit": file_unit}
    if fmt == "bigwarp-csv":
        return Path(bigwarp.write_bigwarp_landmarks(p, landmarks, **opts))
    return Path(bigwarp.write_bigwarp_json(p, landmarks, "tps", **opts))


# ---------------------------------------------------------------------- workspace edges


def link_transform(
    workspace: Workspace,
    source: str,
    target: str,
    file: str | Path,
    *,
    file_unit: str | None = None,
    command: str = "",
    force: bool = False,
) -> tuple[Workspace, Transform]:
    """Read a transform file and add it to a workspace as the edge ``source -> target``.

    The file is read (validating it), its dimensions are checked against the
    spaces' axes when known, and the edge is recorded with its type summary
    and provenance (command, time, file SHA-256, software versions). The file
    is referenced where it is, not copied. The workspace is not saved.

    Parameters
    ----------
    workspace
        The workspace.
    source, target
        Space (or image) names; the transform maps points of ``source`` into ``target``.
    file
        The transform file.
    file_unit
        Unit of unit-less files (ITK, BigWarp); default the workspace unit.
    command
        The command line, recorded in the provenance.
    force
        Replace an existing edge ``source -> target``.

    Returns
    -------
    The new workspace and the transform read.

    Raises
    ------
    DimensionError
        If the transform's dimensions disagree with the spaces' axes.
    """
    from coframe.core.errors import DimensionError
    from coframe.core.units import canonical_unit
    from coframe.transforms.graph import summarize_transform

    src, dst = workspace.space_of(source), workspace.space_of(target)
    path = Path(file).expanduser().absolute()
    fmt = detect_transform_format(path)
    t = read_transform(path, format=fmt, file_unit=file_unit, unit=workspace.unit)
    spaces = workspace.all_spaces()
    for space, dim in ((src, t.input_dim), (dst, t.output_dim)):
        axes = spaces[space].axes
        if axes is not None and len(axes) != dim:
            raise DimensionError(
                f"{path.name} maps {t.input_dim}D points to {t.output_dim}D but space {space!r} "
                f"has axes {list(axes)}: check the FROM_SPACE TO_SPACE order or the file"
            )
    unit = None if fmt == "ngff" or file_unit is None else canonical_unit(file_unit, key="--unit")
    params = {"format": fmt, "file_unit": unit or workspace.unit}
    prov = make_provenance(command, parameters=params, files={"file": path})
    ws = workspace.add_edge(
        src, dst, path, fmt, unit, prov, force=force, kind=summarize_transform(t)
    )
    return ws, t


def export_scene(workspace: Workspace, out: str | Path, *, force: bool = False) -> Path:
    """Write a workspace's spaces and edges as one OME-NGFF scene (a Zarr group).

    Every edge is read; a space without declared axes takes (z, y, x) or
    (y, x) from the dimension of the edges that touch it.

    Raises
    ------
    WorkspaceError
        If a space has neither declared axes nor edges to tell its dimension.
    OverwriteError
        If ``out`` exists and ``force`` is false.
    """
    from coframe.core.errors import WorkspaceError
    from coframe.transforms.formats.ngff import SceneTransformation, write_scene
    from coframe.transforms.formats.ngff_axes import Axis, CoordinateSystem

    p = Path(out)
    if p.exists() and not force:
        raise OverwriteError(f"{p} already exists: pass --force to overwrite it")
    graph = workspace.graph()
    dims: dict[str, int] = {}
    items = []
    for i, e in enumerate(workspace.edges):
        t = graph.load(i)
        dims.setdefault(e.source, t.input_dim)
        dims.setdefault(e.target, t.output_dim)
        items.append(SceneTransformation(e.source, e.target, t, f"{e.source} -> {e.target}"))
    systems = []
    for name, space in workspace.all_spaces().items():
        axes = space.axes or (_AXIS_ORDER[-dims[name] :] if 0 < dims.get(name, 0) <= 3 else None)
        if axes is None:
            raise WorkspaceError(
                f"the axes of space {name!r} are unknown: declare spaces.{name}.axes in "
                f"{workspace.file} or add an image or edge in it"
            )
        systems.append(
            CoordinateSystem(name, tuple(Axis(a, "space", workspace.unit) for a in axes))
        )
    return Path(write_scene(p, systems, items, unit=workspace.unit, force=force))


def import_scene(
    workspace: Workspace, path: str | Path, *, force: bool = False, command: str = ""
) -> Workspace:
    """Add an OME-NGFF scene's coordinate systems as spaces and its transformations as edges.

    Each transformation is written as its own NGFF group under the
    workspace's ``transforms/`` directory (``<input>-to-<output>.zarr``) and
    recorded with provenance. Nothing is written unless every edge and file
    can be added. The workspace is not saved.

    Raises
    ------
    OverwriteError
        If an edge or a file exists and ``force`` is false.
    """
    import re

    from coframe.core.errors import AxisError, DimensionError
    from coframe.transforms.formats.ngff import read_scene, write_ngff_transform
    from coframe.transforms.graph import summarize_transform

    scene = read_scene(path, unit=workspace.unit)
    ws = workspace
    for name in scene.coordinate_systems:
        try:
            axes: tuple[str, ...] | None = scene.coframe_axes(name)
        except (AxisError, DimensionError):
            axes = None
        if axes is not None and len(axes) not in (2, 3):
            axes = None
        ws = ws.with_space(name, axes, force=force)
    planned: list[tuple[Path, Any]] = []
    for item in scene.transformations:
        for name in (item.input, item.output):
            if name not in ws.all_spaces():
                ws = ws.with_space(name, None)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{item.input}-to-{item.output}")
        out = ws.root / "transforms" / f"{stem}.zarr"
        if out.exists() and not force:
            raise OverwriteError(f"{out} already exists: pass --force to overwrite it")
        ws.add_edge(item.input, item.output, out, "ngff", None, None, force=force)
        planned.append((out, item))
    for out, item in planned:
        spaces = [scene.coordinate_systems.get(n, n) for n in (item.input, item.output)]
        write_ngff_transform(
            out,
            item.transform,
            input_space=spaces[0],
            output_space=spaces[1],
            unit=ws.unit,
            force=force,
            name=item.name,
        )
        prov = make_provenance(command, inputs={"scene": str(path)}, files={"file": out})
        kind = summarize_transform(item.transform)
        ws = ws.add_edge(item.input, item.output, out, "ngff", None, prov, force=force, kind=kind)
    return ws


# ---------------------------------------------------------------------- provenance


def make_provenance(
    command: str,
    *,
    inputs: Mapping[str, str | Path] | None = None,
    parameters: Mapping[str, Any] | None = None,
    metric: Mapping[str, Any] | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """A provenance record for a stored transform.

    Parameters
    ----------
    command
        The command line that made the transform.
    inputs
        Input identities (image names to paths or URLs).
    parameters
        Parameters of the method (plain values).
    metric
        Metric values (e.g. ``{"before": ..., "after": ...}``).
    files
        Local files to fingerprint, each recorded under ``sha256`` (a
        directory, such as a Zarr group, is hashed over its relative file
        names and contents).

    Returns
    -------
    A mapping with ``command``, ``created`` (UTC, ISO 8601), the optional
    sections given, and ``software`` (versions).
    """
    record: dict[str, Any] = {
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": plain_values(parameters or {}),
        "inputs": {k: str(p) for k, p in (inputs or {}).items()},
        "sha256": {k: sha256_path(p) for k, p in (files or {}).items()},
        "metric": plain_values(metric or {}),
    }
    record = {k: val for k, val in record.items() if val != {}}
    record["software"] = software_versions()
    return record


def software_versions() -> dict[str, str]:
    """Versions of Python, coframe and the numerical libraries it relies on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("coframe", "numpy", "scipy", "SimpleITK", "zarr"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def sha256_path(path: str | Path) -> str:
    """SHA-256 of a file, or of a directory's relative file names and contents.

    Raises
    ------
    InputNotFoundError
        If the path does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist: cannot fingerprint it")
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def plain_values(value: Any) -> Any:
    """Plain YAML/JSON-safe values (numpy scalars and arrays, tuples, paths converted)."""
    if isinstance(value, Mapping):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_values(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    tolist = getattr(value, "tolist", None)
    return plain_values(tolist()) if callable(tolist) else str(value)


# ---------------------------------------------------------------------- point lists


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
    p = Path(coords).expanduser()
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


def points_csv_text(points: np.ndarray, axes: tuple[str, ...] | None = None) -> str:
    """CSV text of points, one per row, with a header of axis names."""
    arr = np.asarray(points, dtype=float).reshape(-1, np.shape(points)[-1])
    if axes is None or len(axes) != arr.shape[1]:
        axes = _AXIS_ORDER[-arr.shape[1] :] if arr.shape[1] <= 3 else None
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if axes is not None:
        writer.writerow(axes)
    for row in arr:
        writer.writerow([repr(float(v)) for v in row])
    return buf.getvalue()


# ---------------------------------------------------------------------- helpers


def _check_format(name: str) -> str:
    if name not in FORMATS:
        raise FormatError(
            f"unknown transform format {name!r}: expected one of {', '.join(FORMATS)}"
        )
    return name


def _format_from_suffix(p: Path) -> str:
    name = p.name.lower()
    suffix = p.suffix.lower()
    if suffix in ITK_SUFFIXES:
        return "itk"
    if suffix == ".csv":
        return "bigwarp-csv"
    if suffix == ".json" or name.endswith(".zarr"):
        return "ngff"
    raise FormatError(
        f"cannot tell the transform format to write from {p.name} (suffix {suffix or 'none'!r}): "
        f"expected {_ACCEPTED}"
    )


def _looks_like_bigwarp_json(p: Path) -> bool:
    try:
        json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ParseError(f"{p} line {e.lineno}, column {e.colno}: {e.msg}; fix the JSON") from e
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"cannot read {p}: {e}") from e
    from coframe.transforms.formats.bigwarp import is_bigwarp_json

    return is_bigwarp_json(p)


def _points_from_json(text: str, source: str) -> np.ndarray:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(
            f"{source} line {e.lineno}, column {e.colno}: {e.msg}; expected a JSON list of points "
            f"like [[z, y, x], ...]"
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
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ParseError(f"{source}: coordinates must be finite numbers")
    return arr


def _points_from_csv(content: str, source: str) -> np.ndarray:
    rows: list[list[float]] = []
    order: list[int] | None = None
    dim = None
    first_line = None
    for lineno, row in enumerate(csv.reader(io.StringIO(content)), start=1):
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


def _header_order(cells: list[str], source: str, lineno: int) -> list[int]:
    names = [c.lower() for c in cells]
    expected = list(_AXIS_ORDER[-len(names) :]) if len(names) <= 3 else []
    if sorted(names) != sorted(expected):
        raise ParseError(
            f"{source} line {lineno}: header {cells} does not name the axes; expected a "
            f"permutation of {', '.join(_AXIS_ORDER)} (or no header, columns in z, y, x order)"
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
