"""Transform files: choose their reader or writer by suffix and content.

Transform files by suffix (and content for ``.json``):

- ``.tfm``, ``.txt``, ``.h5``, ``.hdf5``, ``.mat``: ITK (through SimpleITK);
- ``.csv``: BigWarp landmarks, turned into a thin-plate spline that maps
  FIXED points to MOVING points (so ``coframe link FIXED MOVING file.csv``);
- ``.json``: BigWarp landmarks/transform JSON when it looks like one, else an
  OME-NGFF coordinate transformation;
- a ``.zarr`` / ``.ome.zarr`` directory or any Zarr group: OME-NGFF.

ITK and BigWarp files carry no unit: they are read in ``file_unit`` and
converted into ``unit``. NGFF files carry units per axis; an explicit
``file_unit`` is the unit of NGFF axes that declare none (without it such an
axis is an error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coframe.core.errors import (
    FormatError,
    InputNotFoundError,
    OverwriteError,
    ParseError,
    TransformError,
)
from coframe.core.units import canonical_unit
from coframe.transforms.base import Transform
from coframe.transforms.formats import bigwarp
from coframe.transforms.formats.bigwarp_json import is_bigwarp_object
from coframe.transforms.formats.itk import read_itk, write_itk
from coframe.transforms.formats.ngff import read_ngff_transform, write_ngff_transform
from coframe.transforms.point_pairs import landmarks_from_pairs, landmarks_transform
from coframe.transforms.tps import ThinPlateSpline

#: Suffixes read and written through SimpleITK.
ITK_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat")
#: Every transform format name, as recorded in the workspace.
FORMATS = ("itk", "ngff", "bigwarp-csv", "bigwarp-json")
_ACCEPTED = "ITK .tfm/.txt/.h5/.hdf5/.mat, BigWarp .csv/.json, OME-NGFF .json or .zarr group"


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
        Unit of lengths in unit-less files (ITK, BigWarp; default ``unit``) and
        of NGFF axes that declare none (no default: such an axis is an error).
    unit
        Unit of the returned transform (the workspace unit).
    format
        One of :data:`FORMATS`; detected from the path when omitted.

    Raises
    ------
    FormatError
        If the format is unknown or the file does not hold a transform.
    """

    p = Path(path)
    fmt = detect_transform_format(p) if format is None else _check_format(format)
    if not p.exists():
        raise InputNotFoundError(f"transform file {p} does not exist: check the path")
    unit = canonical_unit(unit, key="unit")
    if fmt == "ngff":
        return read_ngff_transform(p, unit=unit, file_unit=file_unit)
    file_unit = unit if file_unit is None else canonical_unit(file_unit, key="--unit")
    if fmt == "itk":
        return read_itk(p, file_unit=file_unit, unit=unit)

    if fmt == "bigwarp-csv":
        landmarks = bigwarp.read_bigwarp_landmarks(p, unit=unit, file_unit=file_unit)
        return landmarks_transform(landmarks)
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

    p = Path(path)
    if p.exists() and not force:
        raise OverwriteError(f"{p} already exists: pass --force to overwrite it")
    fmt = _format_from_suffix(p) if format is None else _check_format(format)
    unit = canonical_unit(unit, key="unit")
    file_unit = unit if file_unit is None else canonical_unit(file_unit, key="--unit")
    if fmt == "itk":
        return Path(write_itk(transform, p, file_unit=file_unit, unit=unit, force=force))
    if fmt == "ngff":
        written = write_ngff_transform(
            p, transform, input_space=input_space, output_space=output_space, unit=unit, force=force
        )
        return p if written is None else Path(written)

    if not isinstance(transform, ThinPlateSpline):
        raise TransformError(
            f"a BigWarp file holds the landmarks of a thin-plate spline, not a "
            f"{type(transform).__name__}: write {p.name} as .tfm (ITK) or .zarr (OME-NGFF) instead"
        )
    landmarks = landmarks_from_pairs(transform.source_points, transform.target_points)
    opts: dict[str, Any] = {"force": force, "unit": unit, "file_unit": file_unit}
    if fmt == "bigwarp-csv":
        return Path(bigwarp.write_bigwarp_landmarks(p, landmarks, **opts))
    return Path(bigwarp.write_bigwarp_json(p, landmarks, "tps", **opts))


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
        obj = json.loads(p.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise ParseError(f"{p} line {e.lineno}, column {e.colno}: {e.msg}; fix the JSON") from e
    except (RecursionError, ValueError) as e:
        raise ParseError(
            f"{p}: JSON nests too deeply or holds a number too long to read; fix the JSON"
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"cannot read {p}: {e}") from e
    return is_bigwarp_object(obj)
