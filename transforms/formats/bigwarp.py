"""BigWarp landmark files (CSV and JSON) and the transforms they define.

BigWarp stores landmark pairs between a *moving* and a *fixed* (target) image:

- CSV: no header, every field quoted, one landmark per line:
  ``"name","active","mx","my"[,"mz"],"fx","fy"[,"fz"]`` (six fields in 2D,
  eight in 3D; a variant with an integer id after ``active`` is also read).
  Coordinates are physical, x first.
- JSON: ``{"type": "BigWarpLandmarks", "numDimensions", "movingPoints",
  "fixedPoints", "active", "names"}``, usually wrapped in a transform file
  ``{"type": "Thin Plate Spline", "landmarks": {...}}`` or a settings file
  ``{..., "Transform": {...}}``.

Inside coframe every point is in numpy axis order (z, y, x); the conversion
from and to BigWarp's x-first order happens only here. BigWarp files carry no
unit: they are read and written in the workspace unit unless ``file_unit``
says otherwise.

Like BigWarp, :func:`landmarks_transform` maps *fixed* points to *moving*
points, the direction needed to resample the moving image into the fixed
frame (coframe's convention for registering moving M onto fixed F).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from coframe.core.atomic import write_text_atomic
from coframe.core.errors import (
    DimensionError,
    FormatError,
    InputNotFoundError,
    ParseError,
    TransformError,
)
from coframe.core.units import canonical_unit, unit_factor
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.base import Transform
from coframe.transforms.tps import ThinPlateSpline

#: Transform kinds :func:`landmarks_transform` fits.
KINDS: tuple[str, ...] = ("tps", "affine", "similarity", "rigid", "translation")

#: BigWarp's transform type names and the coframe kind each one maps to.
BIGWARP_TYPES: dict[str, str] = {
    "Thin Plate Spline": "tps",
    "Affine": "affine",
    "Similarity": "similarity",
    "Rotation": "rigid",
    "Translation": "translation",
}

_KIND_TO_BIGWARP = {kind: name for name, kind in BIGWARP_TYPES.items()}


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Pairs of corresponding points in a moving and a fixed image.

    Parameters
    ----------
    moving
        ``(N, d)`` points in the moving image, physical units, numpy axis order
        (z, y, x) or (y, x).
    fixed
        ``(N, d)`` corresponding points in the fixed image.
    names
        ``N`` landmark names (default ``Pt-0``, ``Pt-1``...).
    active
        ``N`` flags; inactive pairs are kept but ignored by
        :func:`landmarks_transform` (default: all active).

    Raises
    ------
    DimensionError
        If shapes disagree or the dimension is not 2 or 3.
    """

    moving: np.ndarray
    fixed: np.ndarray
    names: tuple[str, ...] = field(default=())
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        moving = np.array(self.moving, dtype=np.float64, copy=True)
        fixed = np.array(self.fixed, dtype=np.float64, copy=True)
        if moving.ndim != 2 or moving.shape != fixed.shape:
            raise DimensionError(
                f"moving points {moving.shape} and fixed points {fixed.shape} must both be (N, d)"
            )
        n, d = moving.shape
        if d not in (2, 3):
            raise DimensionError(f"landmarks must be 2D or 3D, got {d} coordinates per point")
        names = (
            tuple(str(s) for s in self.names) if self.names else tuple(f"Pt-{i}" for i in range(n))
        )
        active = np.asarray(self.active, dtype=bool).copy()
        if active.size == 0 and n > 0 and len(self.active) == 0:
            active = np.ones(n, dtype=bool)
        if len(names) != n or active.shape != (n,):
            raise DimensionError(
                f"{n} landmark pairs need {n} names and {n} active flags, got {len(names)} names "
                f"and {active.size} flags"
            )
        for array in (moving, fixed, active):
            array.flags.writeable = False
        object.__setattr__(self, "moving", moving)
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "active", active)

    @property
    def dim(self) -> int:
        """Number of coordinates per point (2 or 3)."""
        return int(self.moving.shape[1])

    def __len__(self) -> int:
        return int(self.moving.shape[0])

    def active_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``(fixed, moving)`` points of the active pairs.

        Raises
        ------
        TransformError
            If an active pair has a non-finite coordinate (an unpaired point).
        """
        fixed, moving = self.fixed[self.active], self.moving[self.active]
        bad = ~(np.all(np.isfinite(fixed), axis=1) & np.all(np.isfinite(moving), axis=1))
        if bad.any():
            name = np.asarray(self.names, dtype=object)[self.active][bad][0]
            raise TransformError(
                f"active landmark {name!r} has no finite position in both images: "
                "place both points or deactivate it"
            )
        return fixed, moving

    def equals(self, other: Landmarks) -> bool:
        """Whether both sets hold the same names, flags and coordinates (NaNs compare equal)."""
        return (
            self.names == other.names
            and np.array_equal(self.active, other.active)
            and np.array_equal(self.moving, other.moving, equal_nan=True)
            and np.array_equal(self.fixed, other.fixed, equal_nan=True)
        )


@dataclass(frozen=True)
class BigWarpJson:
    """The content of a BigWarp landmarks, transform or settings JSON file.

    Parameters
    ----------
    landmarks
        The landmark pairs (numpy axis order, coframe units).
    type_name
        BigWarp's transform type (``"Thin Plate Spline"``, ``"Affine"``...),
        or None when the file holds landmarks only.
    masked
        Whether the file describes a masked transform (a spatial blend that
        coframe does not reproduce).
    """

    landmarks: Landmarks
    type_name: str | None = None
    masked: bool = False

    @property
    def kind(self) -> str:
        """The :func:`landmarks_transform` kind of this file (``"tps"`` when no type is given).

        Raises
        ------
        FormatError
            If BigWarp's type name is not one coframe knows.
        """
        if self.type_name is None:
            return "tps"
        if self.type_name in BIGWARP_TYPES:
            return BIGWARP_TYPES[self.type_name]
        raise FormatError(
            f"BigWarp transform type {self.type_name!r} is not supported: expected one of "
            f"{', '.join(BIGWARP_TYPES)}"
        )

    def to_transform(self) -> Transform:
        """The fixed -> moving transform these landmarks and this type define.

        Raises
        ------
        TransformError
            For a masked transform, or if the landmarks do not determine the fit.
        """
        if self.masked:
            raise TransformError(
                f"masked BigWarp transform {self.type_name!r} blends the fit with the identity "
                "through a spatial mask, which coframe does not reproduce: export it from BigWarp "
                "as a displacement field, or fit the landmarks without the mask"
            )
        return landmarks_transform(self.landmarks, self.kind)


# --------------------------------------------------------------------------- CSV


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


# --------------------------------------------------------------------------- files


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


def _json_points(value: Any, key: str, n: int, dim: int, scale: float) -> np.ndarray:
    try:
        array = np.array([[float(v) for v in point] for point in value], dtype=np.float64).reshape(
            -1, dim
        )
    except (TypeError, ValueError) as e:
        raise ParseError(f"BigWarp JSON {key}: expected a list of {dim}-number points") from e
    if array.shape != (n, dim) or any(len(point) != dim for point in value):
        raise ParseError(
            f"BigWarp JSON {key}: expected {n} points of {dim} numbers, got {len(value)} points"
        )
    return array[:, ::-1] * scale


def _landmarks_from_json(obj: Any, key: str, scale: float) -> Landmarks:
    if not isinstance(obj, dict):
        raise ParseError(
            f"BigWarp JSON {key}: expected an object with movingPoints and fixedPoints"
        )
    for name in ("numDimensions", "movingPoints", "fixedPoints"):
        if name not in obj:
            raise ParseError(f"BigWarp JSON {key}.{name} is missing")
    dim = obj["numDimensions"]
    if dim not in (2, 3) or isinstance(dim, bool):
        raise ParseError(f"BigWarp JSON {key}.numDimensions: expected 2 or 3, got {dim!r}")
    moving_raw, fixed_raw = obj["movingPoints"], obj["fixedPoints"]
    if not isinstance(moving_raw, list) or not isinstance(fixed_raw, list):
        raise ParseError(f"BigWarp JSON {key}.movingPoints/fixedPoints: expected lists of points")
    n = len(moving_raw)
    moving = _json_points(moving_raw, f"{key}.movingPoints", n, dim, scale)
    fixed = _json_points(fixed_raw, f"{key}.fixedPoints", n, dim, scale)
    names = obj.get("names", [f"Pt-{i}" for i in range(n)])
    active = obj.get("active", [True] * n)
    if not isinstance(names, list) or len(names) != n:
        raise ParseError(f"BigWarp JSON {key}.names: expected {n} names")
    if (
        not isinstance(active, list)
        or len(active) != n
        or not all(isinstance(a, bool) for a in active)
    ):
        raise ParseError(f"BigWarp JSON {key}.active: expected {n} true/false flags")
    return Landmarks(moving, fixed, tuple(str(s) for s in names), np.asarray(active, dtype=bool))


def parse_bigwarp_json(obj: Any, *, scale: float = 1.0) -> BigWarpJson:
    """Interpret decoded BigWarp JSON (landmarks, transform or settings object).

    Parameters
    ----------
    obj
        The decoded JSON value.
    scale
        Factor applied to every coordinate (file unit to workspace unit).

    Raises
    ------
    ParseError
        If no landmarks are found or they are malformed.
    """
    if isinstance(obj, dict) and isinstance(obj.get("Transform"), dict):
        obj = obj["Transform"]
        prefix = "Transform"
    else:
        prefix = "$"
    if not isinstance(obj, dict):
        raise ParseError("BigWarp JSON: expected an object at the top level")
    if obj.get("type") == "BigWarpLandmarks" or "movingPoints" in obj:
        return BigWarpJson(_landmarks_from_json(obj, prefix, scale))
    if "landmarks" not in obj:
        raise ParseError(
            f"BigWarp JSON {prefix}: expected a 'landmarks' object (or movingPoints/fixedPoints)"
        )
    type_name = obj.get("type")
    if type_name is not None and not isinstance(type_name, str):
        raise ParseError(f"BigWarp JSON {prefix}.type: expected a string, got {type_name!r}")
    masked = "mask" in obj or (type_name is not None and type_name.startswith("Masked"))
    landmarks = _landmarks_from_json(obj["landmarks"], f"{prefix}.landmarks", scale)
    return BigWarpJson(landmarks, type_name, masked)


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(
            f"{source}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e


def is_bigwarp_json(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a JSON file holding BigWarp landmarks (not, e.g., NGFF metadata)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if isinstance(obj, dict) and isinstance(obj.get("Transform"), dict):
        obj = obj["Transform"]
    return isinstance(obj, dict) and (
        obj.get("type") == "BigWarpLandmarks" or "movingPoints" in obj or "landmarks" in obj
    )


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
    obj = _load_json(text, str(p))
    try:
        return parse_bigwarp_json(obj, scale=_file_scale(unit, file_unit))
    except ParseError as e:
        raise ParseError(f"{p}: {e}") from e


def bigwarp_json_object(
    landmarks: Landmarks, kind: str | None = "tps", *, scale: float = 1.0
) -> dict[str, Any]:
    """The BigWarp JSON object of ``landmarks``: a transform file, or the landmarks alone.

    Parameters
    ----------
    landmarks
        The pairs, numpy axis order.
    kind
        Transform kind to record, or None for the ``BigWarpLandmarks`` object alone.
    scale
        Factor applied to every coordinate (workspace unit to file unit).

    Raises
    ------
    TransformError
        For an unknown kind.
    """
    points = {
        "type": "BigWarpLandmarks",
        "numDimensions": landmarks.dim,
        "movingPoints": [[float(v) * scale for v in p[::-1]] for p in landmarks.moving],
        "fixedPoints": [[float(v) * scale for v in p[::-1]] for p in landmarks.fixed],
        "active": [bool(a) for a in landmarks.active],
        "names": list(landmarks.names),
    }
    if kind is None:
        return points
    if kind not in _KIND_TO_BIGWARP:
        raise TransformError(
            f"unknown landmark transform kind {kind!r}: expected one of {', '.join(KINDS)}"
        )
    return {"type": _KIND_TO_BIGWARP[kind], "landmarks": points}


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


# --------------------------------------------------------------------------- fits


def fit_linear(source: ArrayLike, target: ArrayLike, kind: str) -> Affine | Translation:
    """Least-squares linear map sending ``source`` points onto ``target`` points.

    Parameters
    ----------
    source
        ``(N, d)`` points.
    target
        ``(N, d)`` corresponding points.
    kind
        ``"affine"`` (general), ``"similarity"`` (rotation, uniform scale,
        translation), ``"rigid"`` (rotation and translation) or
        ``"translation"``. Rotations are proper (no reflection), fitted with
        the Kabsch-Umeyama SVD solution.

    Raises
    ------
    TransformError
        If there are too few pairs or the points are degenerate for the kind.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    n, d = src.shape
    needed = {"affine": d + 1, "similarity": d, "rigid": d, "translation": 1}[kind]
    if n < needed:
        raise TransformError(f"a {d}D {kind} fit needs at least {needed} landmark pairs, got {n}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    if kind == "translation":
        return Translation(dst_mean - src_mean)
    a, b = src - src_mean, dst - dst_mean
    if kind == "affine":
        if np.linalg.matrix_rank(a) < d:
            raise TransformError(
                f"the {n} source landmarks lie in a subspace of dimension below {d}: an affine "
                "fit is undetermined; add landmarks off that plane or use kind='similarity'"
            )
        linear = np.linalg.lstsq(a, b, rcond=None)[0].T
        return Affine.from_linear(linear, dst_mean - linear @ src_mean)
    covariance = b.T @ a / n
    u, singular, vt = np.linalg.svd(covariance)
    if singular[0] <= 0 or np.sum(singular > 1e-12 * singular[0]) < d - 1:
        raise TransformError(
            f"the {n} landmarks are (nearly) collinear or coincide: a {d}D {kind} fit is "
            "undetermined; add landmarks off that line"
        )
    signs = np.ones(d)
    signs[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(signs) @ vt
    factor = 1.0
    if kind == "similarity":
        factor = float((singular * signs).sum() / (a * a).sum() * n)
    linear = factor * rotation
    return Affine.from_linear(linear, dst_mean - linear @ src_mean)


def landmarks_transform(landmarks: Landmarks, kind: str = "tps") -> Transform:
    """The transform mapping the FIXED points of active pairs onto their MOVING points.

    Parameters
    ----------
    landmarks
        The landmark pairs (inactive pairs are ignored).
    kind
        ``"tps"`` (thin plate spline, exact at the landmarks), or a
        least-squares ``"affine"``, ``"similarity"``, ``"rigid"`` or
        ``"translation"``. Like BigWarp, linear kinds are fitted moving ->
        fixed and inverted.

    Notes
    -----
    The spline is :class:`~coframe.transforms.tps.ThinPlateSpline` with BigWarp's
    ``r^2 log r`` kernel in every dimension, so it matches BigWarp's warp
    everywhere, not only at the landmarks.

    Raises
    ------
    TransformError
        For an unknown kind, too few pairs, or degenerate landmarks.
    """
    if kind not in KINDS:
        raise TransformError(
            f"unknown landmark transform kind {kind!r}: expected one of {', '.join(KINDS)}"
        )
    fixed, moving = landmarks.active_pairs()
    if kind == "tps":
        return ThinPlateSpline(fixed, moving, kernel="r2logr")
    return fit_linear(moving, fixed, kind).inverse()


def landmark_residuals(landmarks: Landmarks, transform: Transform) -> np.ndarray:
    """Distance between each active pair's moving point and the transformed fixed point."""
    fixed, moving = landmarks.active_pairs()
    return np.linalg.norm(transform.apply(fixed) - moving, axis=1)


def landmarks_from_pairs(
    fixed: ArrayLike, moving: ArrayLike, names: Iterable[str] | None = None
) -> Landmarks:
    """Build :class:`Landmarks` from fixed and moving points (all active)."""
    fixed_arr = np.asarray(fixed, dtype=np.float64)
    return Landmarks(
        np.asarray(moving, dtype=np.float64),
        fixed_arr,
        tuple(names) if names is not None else (),
        np.ones(fixed_arr.shape[0], dtype=bool),
    )
