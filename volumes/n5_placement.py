"""Where an N5 level sits: its COSEM / N5-viewer attributes read in N5 dimension order.

An N5 dataset lists its ``dimensions`` fastest first (x, y, z for an EM
volume), and tensorstore opens it in that order, called *file order* here.
Every number of a placement is put in file order by the axis names it comes
with, never by position alone:

- ``transform`` {axes, scale, translate, units[, ordering]} (COSEM, per dataset
  or in the group's ``multiscales[0].datasets[i]``): ``ordering: "F"`` lists the
  entries in file order, ``"C"`` in reverse (slowest first). Without
  ``ordering`` the names decide: they are matched to the dimensions named by
  the dataset's or the group's ``axes``, or to N5's x, y, z; names that match
  neither are read as ``"C"`` (COSEM's default, e.g. z, y, x). Names that put
  the dimensions in another order than ``axes`` does are an error.
- ``pixelResolution`` ({dimensions, unit} or a list), ``downsamplingFactors``,
  the group's ``scales[i]``, ``axes`` and ``units`` are in file order.

A level is placed by its dataset ``transform``, else the group's
``multiscales[0].datasets[i].transform``, else ``pixelResolution`` times the
level's factors with the centre of voxel 0 moved by ``(factor - 1) / 2`` base
voxels as for block averaging. Where several of these are given they must
agree (voxel sizes to 1 part in 10^4, transforms also in translation): a
disagreement is an error naming both fields, never a silent pick.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coframe.core.errors import FormatError, MetadataError, UnitError
from coframe.core.units import unit_factor
from coframe.volumes.reading import AxisSpec

#: N5's own dimension names, fastest first.
_N5_NAMES = ("x", "y", "z")
_ORDERINGS = ("C", "F")
#: Relative tolerance within which two sources of one voxel size agree.
_RTOL = 1e-4


@dataclass(frozen=True)
class Placement:
    """One level's placement in file (N5) axis order.

    Parameters
    ----------
    names
        Dimension names in file order, if the source names them.
    scale, translation
        Voxel size and centre of voxel 0 per dimension.
    units
        Unit per dimension as written, or ``None``.
    calibrated
        False if no source gives a physical voxel size.
    scale_key, translation_key
        The fields the numbers come from, for messages.
    """

    names: tuple[str, ...] | None
    scale: tuple[float, ...]
    translation: tuple[float, ...]
    units: tuple[str | None, ...]
    calibrated: bool
    scale_key: str
    translation_key: str


def numbers(values: Any, n: int, where: str, key: str) -> tuple[float, ...]:
    """``n`` numbers from a metadata list, or a FormatError naming ``key`` in ``where``."""
    if (
        not isinstance(values, list)
        or len(values) != n
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ):
        raise FormatError(f"{key} = {values!r} in {where}: expected {n} numbers, one per axis")
    return tuple(float(v) for v in values)


def _strings(values: Any, n: int) -> bool:
    return isinstance(values, list) and len(values) == n and all(isinstance(v, str) for v in values)


@dataclass(frozen=True)
class _Names:
    """Dimension names in file order and the field that gives them."""

    names: tuple[str, ...]
    field: str


def _declared_names(
    ds_attrs: Mapping[str, Any],
    group_attrs: Mapping[str, Any],
    ndim: int,
    where: str,
    group_where: str,
) -> _Names | None:
    """The dataset's, else the group's ``axes`` (file order, lower case), or ``None``."""
    for attrs, doc in ((ds_attrs, where), (group_attrs, group_where)):
        axes = attrs.get("axes")
        if _strings(axes, ndim):
            return _Names(tuple(str(a).lower() for a in axes), f"axes in {doc}")
    return None


def _group_units(group_attrs: Mapping[str, Any], ndim: int) -> tuple[str | None, ...]:
    """Units from a group's ``units`` list (file order), or none."""
    units = group_attrs.get("units")
    return tuple(units) if _strings(units, ndim) else (None,) * ndim


def _transform_order(
    transform: Mapping[str, Any], ndim: int, declared: _Names | None, key: str, doc: str
) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
    """Which transform entry holds each file dimension, and the dimension names.

    Returns ``perm`` (file dimension ``k`` is entry ``perm[k]``) and the names in
    file order (``None`` if the transform names no axes).
    """
    raw_names = transform.get("axes")
    names = tuple(str(n).lower() for n in raw_names) if _strings(raw_names, ndim) else None
    ordering = transform.get("ordering")
    if ordering is not None and ordering not in _ORDERINGS:
        raise FormatError(
            f'{key}.ordering = {ordering!r} in {doc}: expected "C" (axes listed slowest first) or '
            '"F" (listed as the N5 dimensions, fastest first)'
        )
    reverse = tuple(range(ndim - 1, -1, -1))
    if ordering == "F":
        perm: tuple[int, ...] = tuple(range(ndim))
    elif ordering == "C" or names is None:
        perm = reverse
    elif declared is not None and set(declared.names) == set(names):
        perm = tuple(names.index(n) for n in declared.names)
    elif set(names) == set(_N5_NAMES[:ndim]):
        perm = tuple(names.index(n) for n in _N5_NAMES[:ndim])
    else:
        perm = reverse
    file_names = tuple(names[i] for i in perm) if names is not None else None
    if file_names is not None and declared is not None and file_names != declared.names:
        said = f"ordering {ordering!r}" if ordering is not None else "its axis names"
        raise MetadataError(
            f"{key}.axes = {list(names or ())} in {doc} ({said}) puts the N5 dimensions in order "
            f"{list(file_names)} but {declared.field} lists {list(declared.names)}: the two "
            "disagree; correct one of them"
        )
    return perm, file_names


def _from_transform(
    transform: Any,
    key: str,
    doc: str,
    group_attrs: Mapping[str, Any],
    declared: _Names | None,
    ndim: int,
) -> Placement | None:
    """The placement a COSEM ``transform`` gives, or ``None`` if there is none."""
    if not isinstance(transform, dict) or "scale" not in transform:
        return None
    perm, names = _transform_order(transform, ndim, declared, key, doc)
    scale = numbers(transform["scale"], ndim, doc, f"{key}.scale")
    translate = numbers(transform.get("translate", [0.0] * ndim), ndim, doc, f"{key}.translate")
    units = transform.get("units")
    return Placement(
        names=names,
        scale=tuple(scale[i] for i in perm),
        translation=tuple(translate[i] for i in perm),
        units=tuple(units[i] for i in perm)
        if _strings(units, ndim)
        else _group_units(group_attrs, ndim),
        calibrated=True,
        scale_key=f"{key}.scale in {doc}",
        translation_key=f"{key}.translate in {doc}",
    )


def _resolution(
    value: Any, doc: str, group_attrs: Mapping[str, Any], ndim: int
) -> tuple[tuple[float, ...], tuple[str | None, ...]] | None:
    """Numbers and units of a ``pixelResolution`` ({dimensions, unit} or a list), or ``None``."""
    units = _group_units(group_attrs, ndim)
    if isinstance(value, dict) and "dimensions" in value:
        base = numbers(value["dimensions"], ndim, doc, "pixelResolution.dimensions")
        if isinstance(value.get("unit"), str):
            units = (value["unit"],) * ndim
        return base, units
    if isinstance(value, list):
        return numbers(value, ndim, doc, "pixelResolution"), units
    return None


def _by_resolution(
    base: tuple[float, ...],
    units: tuple[str | None, ...],
    factors: tuple[float, ...] | None,
    placed_by: str,
) -> Placement:
    """``base`` times the level's factors, voxel 0 moved as for block averaging."""
    f = factors or (1.0,) * len(base)
    return Placement(
        names=None,
        scale=tuple(b * k for b, k in zip(base, f, strict=True)),
        translation=tuple((k - 1.0) / 2.0 * b for b, k in zip(base, f, strict=True)),
        units=units,
        calibrated=True,
        scale_key=f"voxel size from {placed_by}",
        translation_key=f"offset from {placed_by}",
    )


def _from_resolutions(
    ds_attrs: Mapping[str, Any],
    group_attrs: Mapping[str, Any],
    index: int | None,
    ndim: int,
    where: str,
    group_where: str,
    *,
    needed: bool,
) -> tuple[Placement, list[list[Placement]]]:
    """What ``pixelResolution`` says about a level (``needed``: no transform places it).

    Returns
    -------
    placement, readings
        The placement it gives (the group's, else the dataset's, times the
        level's factors; uncalibrated if neither is given), and per
        ``pixelResolution`` given, the voxel sizes it may mean: a transform must
        agree with one of each. The group's is level 0's, so it needs the
        level's factors; the dataset's is its own level's (COSEM) or, with
        factors, level 0's (N5-viewer).
    """
    factors = ds_attrs.get("downsamplingFactors")
    factors_key, factors_doc = "downsamplingFactors", where
    scales = group_attrs.get("scales")
    if factors is None and index is not None and isinstance(scales, list):
        if index >= len(scales) and needed and "pixelResolution" in group_attrs:
            raise FormatError(
                f"scales in {group_where} has {len(scales)} entries but level {index} needs "
                "its factors: give one entry per level (or the level's downsamplingFactors)"
            )
        factors = scales[index] if index < len(scales) else None
        factors_key, factors_doc = f"scales[{index}]", group_where
    f = numbers(factors, ndim, factors_doc, factors_key) if factors is not None else None
    times = f" times {factors_key} in {factors_doc}" if f is not None else ""
    readings: list[list[Placement]] = []
    placements: list[Placement] = []
    group = _resolution(group_attrs.get("pixelResolution"), group_where, group_attrs, ndim)
    if group is not None:
        placed = _by_resolution(*group, f, f"pixelResolution in {group_where}{times}")
        placements.append(placed)
        if f is not None or index == 0:
            readings.append([placed])
    own = _resolution(ds_attrs.get("pixelResolution"), where, group_attrs, ndim)
    if own is not None:
        placed = _by_resolution(*own, f, f"pixelResolution in {where}{times}")
        placements.append(placed)
        as_own = _by_resolution(*own, None, f"pixelResolution in {where}")
        readings.append([as_own, placed] if f is not None else [as_own])
    if placements:
        return placements[0], readings
    uncalibrated = _by_resolution((1.0,) * ndim, _group_units(group_attrs, ndim), f, "factors")
    return replace(uncalibrated, calibrated=False), readings


def level_placement(
    ds_attrs: Mapping[str, Any],
    entry: Mapping[str, Any],
    group_attrs: Mapping[str, Any],
    index: int | None,
    ndim: int,
    where: str,
    group_where: str,
) -> Placement:
    """Placement of one level in file order (see the module docstring).

    Parameters
    ----------
    ds_attrs, entry, group_attrs
        The dataset's attributes, its group ``multiscales[0].datasets`` entry
        (or ``{}``) and the group's attributes (or ``{}``).
    index
        The level's number in the group, if known.
    ndim
        Number of N5 dimensions.
    where, group_where
        The dataset's and the group's ``attributes.json``, named in errors.

    Raises
    ------
    FormatError
        If a field is malformed.
    MetadataError
        If two fields place the level differently, or name its axes differently.
    """
    declared = _declared_names(ds_attrs, group_attrs, ndim, where, group_where)
    own = _from_transform(
        ds_attrs.get("transform"), "transform", where, group_attrs, declared, ndim
    )
    listed = _from_transform(
        entry.get("transform"),
        f"multiscales[0].datasets[path={entry.get('path')}].transform",
        group_where,
        group_attrs,
        declared,
        ndim,
    )
    by_resolution, readings = _from_resolutions(
        ds_attrs,
        group_attrs,
        index,
        ndim,
        where,
        group_where,
        needed=own is None and listed is None,
    )
    if own is not None and listed is not None:
        _check_agree(own, [listed], translation=True)
    transform = own or listed
    if transform is not None:
        for reading in readings:
            _check_agree(transform, reading, translation=False)
    chosen = transform or by_resolution
    if chosen.names is None and declared is not None:
        chosen = replace(chosen, names=declared.names)
    return chosen


def _in_nm(
    values: Sequence[float], units: Sequence[str | None], other: Sequence[str | None]
) -> list[float]:
    """Values in nanometres where units are known (a missing unit borrows the other's)."""
    out = []
    for v, u, o in zip(values, units, other, strict=True):
        unit = u if u is not None else o
        out.append(v * unit_factor(unit, "nanometer") if unit is not None else v)
    return out


def _check_agree(a: Placement, readings: Sequence[Placement], *, translation: bool) -> None:
    """Raise :class:`MetadataError` unless ``a`` agrees with one reading of another field.

    Values that are not finite are left to :func:`~coframe.volumes.reading.check_placement`.
    """
    for b in readings:
        values = (*a.scale, *b.scale, *a.translation, *b.translation)
        if not all(math.isfinite(v) for v in values):
            return
        try:
            if _agree(a, b, translation=translation):
                return
        except UnitError:
            return  # an unknown unit is reported when the volume is placed
    b = readings[0]
    what = "translation" if translation and _agree(a, b, translation=False) else "scale"
    raw_a, raw_b = (a.translation, b.translation) if what == "translation" else (a.scale, b.scale)
    key_a, key_b = (
        (a.translation_key, b.translation_key)
        if what == "translation"
        else (a.scale_key, b.scale_key)
    )
    order = ", ".join(a.names) if a.names else "N5 dimension order"
    raise MetadataError(
        f"{key_a} gives {_show(raw_a, a.units)} but {key_b} gives {_show(raw_b, b.units)} "
        f"({order}): the two disagree on the {what} of one level; correct one of them"
    )


def _agree(a: Placement, b: Placement, *, translation: bool) -> bool:
    """True if two placements give the same voxel size (and translation), in nanometres."""
    scale_a, scale_b = _in_nm(a.scale, a.units, b.units), _in_nm(b.scale, b.units, a.units)
    pairs = [(scale_a, scale_b)]
    if translation:
        pairs.append(
            (_in_nm(a.translation, a.units, b.units), _in_nm(b.translation, b.units, a.units))
        )
    size = max(abs(v) for v in scale_a + scale_b)
    return all(
        math.isclose(x, y, rel_tol=_RTOL, abs_tol=_RTOL * size)
        for one, other in pairs
        for x, y in zip(one, other, strict=True)
    )


def _show(values: Sequence[float], units: Sequence[str | None]) -> str:
    """``(8 nm, 8 nm, 30 nm)``."""
    return (
        "("
        + ", ".join(f"{v:g} {u}" if u else f"{v:g}" for v, u in zip(values, units, strict=True))
        + ")"
    )


def file_axes(placement: Placement, ndim: int) -> tuple[AxisSpec, ...]:
    """Axes in file (N5) order: as the placement names them, or N5's x, y, z."""
    names: Sequence[str] | None = placement.names
    if names is None:
        names = _N5_NAMES[:ndim] if ndim <= 3 else [f"dim_{i}" for i in range(ndim)]
    return tuple(AxisSpec(name=n, unit=u) for n, u in zip(names, placement.units, strict=True))
