"""BigWarp JSON objects: landmarks, transform and settings files, decoded and encoded.

``{"type": "BigWarpLandmarks", "numDimensions", "movingPoints",
"fixedPoints", "active", "names"}``, usually wrapped in a transform file
``{"type": "Thin Plate Spline", "landmarks": {...}}`` or a settings file
``{..., "Transform": {...}}``. Points are x first in the file and numpy axis
order (z, y, x) in coframe. Files are read and written by
:mod:`coframe.transforms.formats.bigwarp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coframe.core.errors import FormatError, ParseError, TransformError
from coframe.transforms.base import Transform
from coframe.transforms.point_pairs import KINDS, Landmarks, landmarks_transform

#: BigWarp's transform type names and the coframe kind each one maps to.
BIGWARP_TYPES: dict[str, str] = {
    "Thin Plate Spline": "tps",
    "Affine": "affine",
    "Similarity": "similarity",
    "Rotation": "rigid",
    "Translation": "translation",
}

_KIND_TO_BIGWARP = {kind: name for name, kind in BIGWARP_TYPES.items()}


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


def _json_points(value: Any, key: str, n: int, dim: int, scale: float) -> np.ndarray:
    try:
        array = np.array([[float(v) for v in point] for point in value], dtype=np.float64).reshape(
            -1, dim
        )
    except (TypeError, ValueError, OverflowError) as e:
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


def _settings_transform(obj: Any) -> tuple[Any, str]:
    """The object under a settings file's ``"Transform"`` key (else ``obj``), and its key."""
    if isinstance(obj, dict) and isinstance(obj.get("Transform"), dict):
        return obj["Transform"], "Transform"
    return obj, "$"


def is_bigwarp_object(obj: Any) -> bool:
    """Whether decoded JSON is a BigWarp landmarks, transform or settings object."""
    obj, _ = _settings_transform(obj)
    return isinstance(obj, dict) and (
        obj.get("type") == "BigWarpLandmarks" or "movingPoints" in obj or "landmarks" in obj
    )


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
    obj, prefix = _settings_transform(obj)
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
