"""Reading N5 containers with COSEM / N5-viewer multiscale attributes.

zarr-python 3 has no N5 store, so arrays are opened with tensorstore's ``n5``
driver. tensorstore is maintained by Google, reads N5 (and zarr, zarr3) over
local, ``http(s)``, ``s3`` and ``gs`` key-value stores, and fetches only the
blocks under the box a read asks for - which is what multi-terabyte CellMap
volumes require. The small ``attributes.json`` documents are read directly
(through :class:`coframe.volumes.remote.Location`) so a broken one is reported by
file name.

tensorstore keeps the file's own dimension order, which for N5 is x fastest
(``dimensions`` = [X, Y, Z]); the reader presents it as (z, y, x). How each
level is placed, and how the axis names of its attributes map onto the
dimensions, is :mod:`coframe.volumes.n5_placement`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from coframe.core.errors import FormatError, InputNotFoundError
from coframe.volumes.n5_placement import file_axes as n5_file_axes
from coframe.volumes.n5_placement import level_placement
from coframe.volumes.reading import AxisSpec, RawImage, RawLevel, finest_first, resolve_axes
from coframe.volumes.remote import Location
from coframe.volumes.retry import retry_policy, tensorstore_context
from coframe.volumes.sources import TensorStoreSource

FORMAT = "n5"
ATTRIBUTES = "attributes.json"
_LEVEL_NAME = re.compile(r"^s(\d+)$")


def is_n5_dataset(attrs: Mapping[str, Any]) -> bool:
    """True if an ``attributes.json`` describes an array (has dimensions and dataType)."""
    return "dimensions" in attrs and "dataType" in attrs


def _object(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise FormatError(f"{where} holds {type(doc).__name__}: expected a JSON object")
    return doc


def read_n5(location: Location, *, select: Mapping[str, int] | None = None) -> RawImage:
    """Read an N5 multiscale group, or one dataset of it, as a :class:`RawImage`.

    Parameters
    ----------
    location
        The group (``<ds>.n5/em/fibsem-uint8``) or dataset (``.../s0``).
    select
        Index per non-spatial axis.

    Raises
    ------
    InputNotFoundError
        If no ``attributes.json`` exists at ``location``.
    FormatError
        If the attributes are missing, corrupt or inconsistent.
    AxisError
        If the axes are not 2 or 3 spatial ones after selection.
    """
    doc = location.read_json(ATTRIBUTES)
    if doc is None:
        raise InputNotFoundError(
            f"no {ATTRIBUTES} at {location}: expected an N5 group or dataset directory"
        )
    attrs = _object(doc, location.child(ATTRIBUTES).target)
    if is_n5_dataset(attrs):
        return _read_single_dataset(location, attrs, select)
    return _read_group(location, attrs, select)


def _group_entries(group: Location, attrs: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, multiscales entry) of every level listed by a group."""
    where = group.child(ATTRIBUTES).target
    multiscales = attrs.get("multiscales")
    if isinstance(multiscales, list) and multiscales:
        first = _object(multiscales[0], where)
        datasets = first.get("datasets")
        if not isinstance(datasets, list) or not datasets:
            raise FormatError(f"multiscales[0] in {where} has no 'datasets': expected a list")
        entries = []
        for d in datasets:
            d = _object(d, where)
            if not isinstance(d.get("path"), str):
                raise FormatError(f"dataset {d!r} in {where}: expected a 'path' string")
            entries.append((d["path"].strip("/"), d))
        return entries
    scales = attrs.get("scales")
    if isinstance(scales, list) and scales:
        return [(f"s{i}", {}) for i in range(len(scales))]
    raise FormatError(
        f"no 'multiscales' or 'scales' in {where}: expected a COSEM / N5-viewer multiscale group "
        "(or open one of its datasets, e.g. .../s0)"
    )


def _read_group(
    group: Location, attrs: Mapping[str, Any], select: Mapping[str, int] | None
) -> RawImage:
    """All levels of a multiscale group."""
    entries = _group_entries(group, attrs)
    levels = []
    for index, (path, entry) in enumerate(entries):
        ds = group.child(path)
        ds_doc = ds.read_json(ATTRIBUTES)
        if ds_doc is None:
            raise FormatError(
                f"level {path!r} listed in {group.child(ATTRIBUTES)} has no {ATTRIBUTES} under "
                f"{group}: expected an N5 dataset there"
            )
        ds_attrs = _object(ds_doc, ds.child(ATTRIBUTES).target)
        if not is_n5_dataset(ds_attrs):
            raise FormatError(
                f"{ds.child(ATTRIBUTES)} has no 'dimensions'/'dataType': expected an N5 dataset"
            )
        levels.append((path, ds, ds_attrs, entry, index))
    return _build(
        attrs,
        levels,
        select,
        source=str(group),
        group_source=None,
        group_doc=group.child(ATTRIBUTES).target,
    )


def _read_single_dataset(
    location: Location, attrs: dict[str, Any], select: Mapping[str, int] | None
) -> RawImage:
    """One dataset, placed by its own transform or by the group above it."""
    parent = location.parent()
    parent_attrs: Mapping[str, Any] = {}
    entry: Mapping[str, Any] = {}
    index: int | None = None
    if parent is not None:
        doc = parent.read_json(ATTRIBUTES)
        if isinstance(doc, dict) and not is_n5_dataset(doc):
            parent_attrs = doc
            try:
                for i, (path, e) in enumerate(_group_entries(parent, doc)):
                    if path == location.name:
                        entry, index = e, i
            except FormatError:
                entry, index = {}, None
    if index is None:
        match = _LEVEL_NAME.match(location.name)
        scales = parent_attrs.get("scales")
        if match and isinstance(scales, list) and int(match.group(1)) < len(scales):
            index = int(match.group(1))
    levels = [(location.name, location, attrs, entry, index)]
    group_source = str(parent) if parent_attrs else None
    group_doc = parent.child(ATTRIBUTES).target if parent is not None else ""
    return _build(
        parent_attrs,
        levels,
        select,
        source=str(location),
        group_source=group_source,
        group_doc=group_doc,
    )


def _open_dataset(location: Location) -> Any:
    """Open an N5 dataset with tensorstore (metadata only; no voxel is read)."""
    import tensorstore as ts

    spec = {
        "driver": "n5",
        "kvstore": location.kvstore_spec(),
        "context": tensorstore_context(retry_policy()),
    }
    try:
        return ts.open(spec, read=True, open=True).result()
    except ValueError as e:
        raise FormatError(f"cannot open N5 dataset {location}: {e}") from e


def _build(
    group_attrs: Mapping[str, Any],
    levels: list[tuple[str, Location, dict[str, Any], Mapping[str, Any], int | None]],
    select: Mapping[str, int] | None,
    *,
    source: str,
    group_source: str | None,
    group_doc: str,
) -> RawImage:
    """Open every level's array and assemble the image (``group_doc``: the group's attributes)."""
    plan = None
    raw_levels: list[RawLevel] = []
    calibrated = True
    file_axes: tuple[AxisSpec, ...] = ()
    for path, ds, ds_attrs, entry, index in levels:
        where = ds.child(ATTRIBUTES).target
        dims = ds_attrs["dimensions"]
        if not isinstance(dims, list) or not all(isinstance(n, int) for n in dims):
            raise FormatError(f"dimensions = {dims!r} in {where}: expected a list of integers")
        ndim = len(dims)
        placement = level_placement(ds_attrs, entry, group_attrs, index, ndim, where, group_doc)
        calibrated = calibrated and placement.calibrated
        store = _open_dataset(ds)
        if tuple(int(n) for n in store.shape) != tuple(dims):
            raise FormatError(
                f"N5 dataset {ds} opens with shape {tuple(store.shape)} but {where} says {dims}"
            )
        if plan is None:
            file_axes = n5_file_axes(placement, ndim)
            plan = resolve_axes(file_axes, store.shape, select=select, where=source)
        array = plan.view(TensorStoreSource(store, str(ds)))
        raw_levels.append(
            RawLevel(
                path=path,
                array=array,
                scale=plan.pick(placement.scale),
                translation=plan.pick(placement.translation),
                scale_key=placement.scale_key,
                translation_key=placement.translation_key,
            )
        )
    assert plan is not None
    metadata: dict[str, Any] = {"file_axes": [a.name for a in file_axes]}
    if plan.fixed:
        metadata["selected"] = plan.selection()
    if group_source is not None:
        metadata["group"] = group_source
    return RawImage(
        source=source,
        format=FORMAT,
        axes=plan.names,
        units=plan.pick([a.unit for a in file_axes]),
        levels=finest_first(raw_levels),
        calibrated=calibrated,
        uncalibrated_reason=None
        if calibrated
        else "no transform or pixelResolution in N5 attributes",
        metadata=metadata,
    )
