"""ITK transform files (``.tfm``, ``.txt``, ``.h5``, ``.mat``) through SimpleITK.

ITK files store (x, y, z)-ordered parameters and carry no length unit. Reading
converts them into a coframe transform in numpy axis order, and scales every
length from ``file_unit`` into the workspace ``unit``: translations, offsets,
displacement vectors, grid origins and spacings, B-spline coefficients and
landmarks are multiplied by the unit factor; rotation, scale and other linear
parts are unit-free and stay as they are. Writing does the reverse.

Every kind :func:`coframe.transforms.sitk_bridge.to_sitk` supports can be written to
``.tfm``/``.txt``/``.h5``; a ``.mat`` file holds one transform, not a
composite (a sequence of linear maps is collapsed into one affine for it).
Writes are atomic (a temporary file beside the target, then a rename) and an
existing file is only replaced with ``force=True``. A text file is checked
(:mod:`coframe.transforms.formats.itk_text`) before SimpleITK reads it, as ITK
trusts the counts of its text files.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from coframe.core.atomic import atomic_output
from coframe.core.errors import (
    FormatError,
    InputNotFoundError,
    OverwriteError,
    TransformError,
)
from coframe.core.units import unit_factor
from coframe.transforms.base import Chain, Transform
from coframe.transforms.formats.itk_text import check_itk_text
from coframe.transforms.sitk_bridge import from_sitk, to_sitk

#: File name suffixes SimpleITK reads and writes as transforms.
ITK_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".hdf", ".mat")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in ITK_SUFFIXES:
        raise FormatError(
            f"{str(path)!r} does not name an ITK transform file: expected a suffix among "
            f"{', '.join(ITK_SUFFIXES)}"
        )
    return suffix


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def read_itk(
    path: str | os.PathLike[str], *, file_unit: str = "nanometer", unit: str = "nanometer"
) -> Transform:
    """Read an ITK transform file into a coframe transform.

    Parameters
    ----------
    path
        A ``.tfm``, ``.txt``, ``.h5``/``.hdf5`` or ``.mat`` transform file.
    file_unit
        Length unit of the numbers in the file (ITK files do not say).
    unit
        Length unit of the returned transform (the workspace unit).

    Returns
    -------
    Transform
        The transform in numpy axis order and ``unit``; an ITK composite
        becomes a :class:`~coframe.transforms.base.Chain` in application order.

    Raises
    ------
    InputNotFoundError
        If the file does not exist.
    FormatError
        If the suffix is not an ITK one or SimpleITK cannot read the file.
    TransformError
        If the file holds a transform kind coframe does not model.
    UnitError
        If a unit is unknown.
    """
    p = Path(path)
    _suffix(p)
    factor = unit_factor(file_unit, unit)
    if not p.is_file():
        raise InputNotFoundError(f"ITK transform file {str(p)!r} does not exist: check the path")
    if p.suffix.lower() in (".tfm", ".txt"):
        check_itk_text(p)
    try:
        st = sitk.ReadTransform(str(p))
    except RuntimeError as e:
        raise FormatError(
            f"cannot read {str(p)!r} as an ITK transform file: {_first_line(e)}"
        ) from e
    except UnicodeDecodeError as e:  # ITK's message quotes the file's bytes
        raise FormatError(
            f"cannot read {str(p)!r} as an ITK transform file: it names a transform kind that "
            "is not text"
        ) from e
    return from_sitk(st).with_unit_scale(factor)


def _for_suffix(t: Transform, suffix: str, path: Path) -> Transform:
    if suffix != ".mat" or not isinstance(t, Chain):
        return t
    affine = t.as_affine()
    if affine is None:
        raise FormatError(
            f"{str(path)!r}: a .mat file holds a single transform, not a sequence of "
            f"{len(t.transforms)} with nonlinear members: write .h5 or .tfm instead"
        )
    return affine


def write_itk(
    t: Transform,
    path: str | os.PathLike[str],
    *,
    file_unit: str = "nanometer",
    unit: str = "nanometer",
    force: bool = False,
) -> Path:
    """Write a coframe transform as an ITK transform file, atomically.

    Parameters
    ----------
    t
        The transform, numpy axis order, lengths in ``unit``.
    path
        Target file; the suffix picks the format (``.tfm``/``.txt`` text,
        ``.h5``/``.hdf5`` HDF5, ``.mat`` MATLAB).
    file_unit
        Length unit of the numbers written to the file.
    unit
        Length unit of ``t`` (the workspace unit).
    force
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    OverwriteError
        If the file exists and ``force`` is false.
    FormatError
        If the suffix is not an ITK one, or ``.mat`` is asked for a nonlinear
        sequence.
    TransformError
        If ITK cannot hold the transform (thin plate spline, numerical
        inverse, dimension change): sample it into a displacement field first.
    """
    p = Path(path)
    suffix = _suffix(p)
    if p.exists() and not force:
        raise OverwriteError(f"{str(p)!r} exists: pass --force to overwrite it")
    factor = unit_factor(unit, file_unit)
    st = to_sitk(_for_suffix(t, suffix, p).with_unit_scale(factor))
    try:
        with atomic_output(p, force=force) as tmp:
            sitk.WriteTransform(st, str(tmp))
    except RuntimeError as e:
        raise TransformError(
            f"SimpleITK could not write {type(t).__name__} to {str(p)!r}: {_first_line(e)}"
        ) from e
    return p
