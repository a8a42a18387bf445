"""Reading OME-Zarr images: NGFF 0.4 (Zarr v2) and 0.5 (Zarr v3).

The metadata documents (``zarr.json``, ``.zattrs``, ``.zarray``, ``.zgroup``)
are read and parsed here, so a broken one is reported by file name; the
arrays are opened with zarr-python 3, whose stores (local or fsspec) fetch
only the chunk keys a box covers.

Each level is placed by its dataset ``coordinateTransformations`` followed by
the multiscale-level ones, so the half-voxel offsets of coarser levels come
straight from the file. From NGFF 0.4 on every level must hold a scale; a
level without one is an error, never a guess. NGFF 0.1-0.3 levels, which had
no transforms, are placed from their shapes in level-0 voxels and need
``--voxel-size``. The path given may be an image group
(``<ds>.zarr/recon-1/em/fibsem-uint8``) or one of its arrays
(``.../fibsem-uint8/s0``): an array is placed by the ``multiscales`` of the
nearest enclosing group that lists it, or left uncalibrated if none does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coframe.core.errors import FormatError, InputNotFoundError, MetadataError
from coframe.volumes.reading import (
    AxisSpec,
    RawImage,
    RawLevel,
    default_axes,
    finest_first,
    pyramid_placement,
    resolve_axes,
)
from coframe.volumes.remote import Location
from coframe.volumes.sources import ZarrSource

FORMAT = "ome-zarr"
#: How many directories above an array are searched for the multiscales that list it.
_ANCESTOR_DEPTH = 4
#: NGFF versions from before ``coordinateTransformations`` (levels carry no voxel size).
_LEGACY_VERSIONS = ("0.1", "0.2", "0.3")


@dataclass(frozen=True)
class ZarrNode:
    """Metadata of one zarr group or array.

    Parameters
    ----------
    location
        Where the node is.
    zarr_format
        2 or 3.
    kind
        ``group`` or ``array``.
    attributes
        User attributes (``.zattrs`` or ``zarr.json`` ``attributes``).
    metadata
        Array metadata document (``.zarray`` or ``zarr.json``), empty for groups.
    metadata_key
        Name of the document that holds the attributes, for messages.
    """

    location: Location
    zarr_format: int
    kind: str
    attributes: dict[str, Any]
    metadata: dict[str, Any]
    metadata_key: str

    @property
    def where(self) -> str:
        """The attribute document's path, for messages."""
        return self.location.child(self.metadata_key).target

    def multiscales(self) -> list[Any] | None:
        """The NGFF ``multiscales`` list, or ``None`` if the node has none."""
        attrs = self.attributes
        if self.zarr_format == 3 and isinstance(attrs.get("ome"), dict):
            attrs = attrs["ome"]
        found = attrs.get("multiscales")
        return found if isinstance(found, list) else None

    def ngff_version(self, multiscale: Mapping[str, Any]) -> str | None:
        """NGFF version declared by the node or the multiscale entry."""
        ome = self.attributes.get("ome")
        if isinstance(ome, dict) and ome.get("version"):
            return str(ome["version"])
        version = multiscale.get("version")
        return str(version) if version is not None else None

    def is_label_image(self) -> bool:
        """True if the node declares ``image-label`` metadata."""
        ome = self.attributes.get("ome")
        return "image-label" in self.attributes or (isinstance(ome, dict) and "image-label" in ome)


def _expect_object(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise FormatError(f"{where} holds {type(doc).__name__}: expected a JSON object")
    return doc


def read_zarr_node(location: Location) -> ZarrNode | None:
    """Read the metadata of the zarr group or array at ``location``.

    Returns
    -------
    The node, or ``None`` if no zarr metadata document is there.

    Raises
    ------
    ParseError
        If a metadata document is not valid JSON.
    FormatError
        If a metadata document has the wrong shape.
    """
    v3 = location.read_json("zarr.json")
    if v3 is not None:
        doc = _expect_object(v3, location.child("zarr.json").target)
        kind = doc.get("node_type")
        if kind not in ("group", "array") or doc.get("zarr_format") != 3:
            raise FormatError(
                f"{location.child('zarr.json').target} has zarr_format={doc.get('zarr_format')!r} "
                f"node_type={kind!r}: expected zarr_format 3 and node_type group or array"
            )
        attrs = _expect_object(doc.get("attributes", {}), location.child("zarr.json").target)
        return ZarrNode(location, 3, kind, attrs, doc if kind == "array" else {}, "zarr.json")
    zarray = location.read_json(".zarray")
    zattrs = location.read_json(".zattrs")
    attrs = _expect_object(zattrs, location.child(".zattrs").target) if zattrs is not None else {}
    if zarray is not None:
        meta = _expect_object(zarray, location.child(".zarray").target)
        key = ".zattrs" if zattrs is not None else ".zarray"
        return ZarrNode(location, 2, "array", attrs, meta, key)
    if zattrs is not None:
        return ZarrNode(location, 2, "group", attrs, {}, ".zattrs")
    if location.read_json(".zgroup") is not None:
        return ZarrNode(location, 2, "group", {}, {}, ".zgroup")
    return None


def read_ome_zarr(location: Location, *, select: Mapping[str, int] | None = None) -> RawImage:
    """Read an OME-Zarr image group, or one array of it, as a :class:`RawImage`.

    Parameters
    ----------
    location
        The image group or array (local or remote).
    select
        Index per non-spatial axis (``{"c": 0}``).

    Raises
    ------
    InputNotFoundError
        If no zarr metadata exists at ``location``.
    FormatError
        If the metadata is missing, corrupt or inconsistent.
    AxisError
        If the axes are not 2 or 3 spatial ones after selection.
    """
    node = read_zarr_node(location)
    if node is None:
        raise InputNotFoundError(
            f"no zarr metadata (zarr.json, .zattrs, .zarray, .zgroup) at {location}: "
            "check the path of the image group or array"
        )
    if node.kind == "group":
        multiscales = node.multiscales()
        if not multiscales:
            raise FormatError(_no_multiscales_message(node))
        return _read_multiscale(node, 0, None, select)
    for parent, relative in _ancestors(location):
        group = read_zarr_node(parent)
        if group is None or group.kind != "group":
            continue
        for index, ms in enumerate(group.multiscales() or []):
            paths = [str(d.get("path", "")).strip("/") for d in _datasets(ms, group)]
            if relative in paths:
                return _read_multiscale(group, index, relative, select)
    return _read_plain_array(node, select)


def _ancestors(location: Location) -> list[tuple[Location, str]]:
    """Enclosing directories of ``location`` with its key below each, nearest first."""
    found: list[tuple[Location, str]] = []
    current = location
    for _ in range(_ANCESTOR_DEPTH):
        parent = current.parent()
        if parent is None:
            break
        found.append((parent, location.relative_to(parent)))
        current = parent
    return found


def _no_multiscales_message(node: ZarrNode) -> str:
    """Error text for a group without multiscales, listing image groups below it if local."""
    inside = _image_groups_below(node.location)
    hint = f"; image groups inside: {', '.join(inside)}" if inside else ""
    key = "attributes.ome.multiscales" if node.zarr_format == 3 else "multiscales"
    return (
        f"no OME-Zarr '{key}' in {node.where}: expected an image group "
        f"(e.g. <ds>.zarr/recon-1/em/fibsem-uint8) or one of its arrays{hint}"
    )


def _image_groups_below(location: Location, depth: int = 4, limit: int = 8) -> list[str]:
    """Relative paths of local groups with multiscales below ``location`` (bounded search)."""
    if location.remote or not location.is_dir():
        return []
    found: list[str] = []
    frontier = [location]
    for _ in range(depth):
        nxt: list[Location] = []
        for loc in frontier:
            for child in sorted(loc.path.iterdir()):
                if not child.is_dir() or child.name.startswith("."):
                    continue
                sub = Location(str(child), False)
                has_meta = any((child / k).is_file() for k in ("zarr.json", ".zattrs", ".zgroup"))
                if not has_meta:
                    continue
                try:
                    node = read_zarr_node(sub)
                except FormatError:
                    continue
                if node is None or node.kind != "group":
                    continue
                if node.multiscales():
                    found.append(sub.relative_to(location))
                    if len(found) >= limit:
                        return found
                else:
                    nxt.append(sub)
        frontier = nxt
    return found


def _datasets(ms: Any, node: ZarrNode) -> list[dict[str, Any]]:
    """The ``datasets`` of a multiscale entry, checked."""
    if not isinstance(ms, dict):
        raise FormatError(
            f"multiscales entry in {node.where} is {type(ms).__name__}: expected an object"
        )
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise FormatError(
            f"multiscales in {node.where} has no 'datasets': expected a list of levels"
        )
    for d in datasets:
        if not isinstance(d, dict) or not isinstance(d.get("path"), str):
            raise FormatError(
                f"dataset {d!r} in {node.where}: expected an object with a 'path' string"
            )
    return datasets


def _parse_axes(ms: Mapping[str, Any], ndim: int, node: ZarrNode) -> tuple[AxisSpec, ...]:
    """File axes of a multiscale entry (NGFF >= 0.4 objects or 0.3 name strings)."""
    axes = ms.get("axes")
    if axes is None:
        return default_axes(ndim, node.where)
    if not isinstance(axes, list):
        raise FormatError(f"'axes' in {node.where} is {type(axes).__name__}: expected a list")
    specs: list[AxisSpec] = []
    for a in axes:
        if isinstance(a, str):
            specs.append(AxisSpec(a.lower()))
        elif isinstance(a, dict) and isinstance(a.get("name"), str):
            kind = a.get("type")
            unit = a.get("unit")
            specs.append(
                AxisSpec(
                    a["name"].lower(),
                    str(kind) if kind is not None else None,
                    str(unit) if unit is not None else None,
                )
            )
        else:
            raise FormatError(f"axis {a!r} in {node.where}: expected an object with a 'name'")
    return tuple(specs)


def _compose(transforms: Any, ndim: int, where: str, key: str) -> tuple[list[float], list[float]]:
    """Scale and translation of a list of NGFF scale/translation/identity transforms."""
    scale = [1.0] * ndim
    translation = [0.0] * ndim
    if transforms is None:
        return scale, translation
    if not isinstance(transforms, list):
        raise FormatError(f"{key} in {where} is {type(transforms).__name__}: expected a list")
    for t in transforms:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "identity":
            continue
        if kind not in ("scale", "translation"):
            raise FormatError(
                f"{key} in {where} has a {kind!r} transform: "
                "expected scale, translation or identity"
            )
        if kind not in t:
            raise FormatError(
                f"{kind} transform in {where} ({key}) gives no inline {kind!r} values "
                "(a 'path' to a separate array is not supported): expected a list of numbers"
            )
        values = t[kind]
        if (
            not isinstance(values, list)
            or len(values) != ndim
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            raise FormatError(
                f"{kind} {values!r} in {where} ({key}): expected {ndim} numbers, one per axis"
            )
        if kind == "scale":
            scale = [s * float(v) for s, v in zip(scale, values, strict=True)]
            translation = [t0 * float(v) for t0, v in zip(translation, values, strict=True)]
        else:
            translation = [t0 + float(v) for t0, v in zip(translation, values, strict=True)]
    return scale, translation


def _unplaced_legacy(node: ZarrNode, ms: Mapping[str, Any], datasets: Any) -> bool:
    """True for OME-Zarr 0.1-0.3, which had no transforms, when no level gives a scale.

    Such levels are placed from their shapes in level-0 voxels and need a
    ``--voxel-size``; from 0.4 on every level must give its scale.
    """
    legacy = node.ngff_version(ms) in _LEGACY_VERSIONS
    return legacy and not any(_has_scale(d.get("coordinateTransformations")) for d in datasets)


def _has_scale(transforms: Any) -> bool:
    """True if a dataset's ``coordinateTransformations`` hold a scale transform."""
    return isinstance(transforms, list) and any(
        isinstance(t, dict) and t.get("type") == "scale" for t in transforms
    )


def _no_scale_message(node: ZarrNode, ms: Mapping[str, Any], key: str) -> str:
    """Error text for a level that OME-Zarr metadata leaves without a voxel size."""
    version = node.ngff_version(ms) or ("0.5" if node.zarr_format == 3 else "0.4")
    return (
        f"{key} in {node.where} has no scale transform: OME-Zarr {version} needs one per level "
        'to give its voxel size; add {"type": "scale", "scale": [...]} with one size '
        "per axis to that level"
    )


def _open_array(group: Location, path: str, zarr_format: int, where: str) -> Any:
    """Open one array of a group with zarr-python."""
    import zarr

    store = group.zarr_store()
    try:
        array = zarr.open_array(store=store, path=path, mode="r", zarr_format=zarr_format)
    except FileNotFoundError as e:
        raise FormatError(
            f"array {path!r} listed in {where} is missing under {group}: "
            "expected a zarr array there"
        ) from e
    except (ValueError, TypeError, KeyError, NotImplementedError, RecursionError) as e:
        raise FormatError(f"cannot open array {path!r} under {group}: {e}") from e
    if not all(int(c) > 0 for c in array.chunks):
        raise FormatError(
            f"array {path!r} under {group} has chunks {tuple(array.chunks)}: expected positive "
            "chunk sizes; its array metadata is corrupt"
        )
    return array


def _read_multiscale(
    node: ZarrNode, index: int, only: str | None, select: Mapping[str, int] | None
) -> RawImage:
    """Build the image of multiscale entry ``index`` of a group (or only its level ``only``)."""
    ms = (node.multiscales() or [])[index]
    wanted = [
        d["path"].strip("/")
        for d in _datasets(ms, node)
        if only is None or d["path"].strip("/") == only
    ]
    datasets = {d["path"].strip("/"): d for d in _datasets(ms, node)}
    arrays = {wanted[0]: _open_array(node.location, wanted[0], node.zarr_format, node.where)}
    file_axes = _parse_axes(ms, len(arrays[wanted[0]].shape), node)
    ndim = len(file_axes)
    outer_scale, outer_translation = _compose(
        ms.get("coordinateTransformations"),
        ndim,
        node.where,
        "multiscales.coordinateTransformations",
    )
    outer = (
        " with multiscales.coordinateTransformations" if ms.get("coordinateTransformations") else ""
    )
    unplaced = _unplaced_legacy(node, ms, datasets.values())
    plan = None
    levels: list[RawLevel] = []
    for path in wanted:
        d = datasets[path]
        array = arrays.get(path)
        if array is None:
            array = _open_array(node.location, path, node.zarr_format, node.where)
        if len(array.shape) != ndim:
            raise FormatError(
                f"array {path} under {node.location} has {len(array.shape)} axes but {node.where} "
                f"names {ndim}: expected one axis entry per array dimension"
            )
        if plan is None:
            plan = resolve_axes(file_axes, array.shape, select=select, where=str(node.location))
        elif any(int(array.shape[i]) <= v for i, v in plan.fixed.items()):
            raise FormatError(
                f"array {path} under {node.location} is too small for the selection "
                f"{plan.selection()}"
            )
        key = f"datasets[path={path}].coordinateTransformations"
        transforms = d.get("coordinateTransformations")
        if unplaced:
            base = next(iter(datasets))
            if base not in arrays:
                arrays[base] = _open_array(node.location, base, node.zarr_format, node.where)
            scale_t, translation_t = pyramid_placement(
                (1.0,) * ndim, (0.0,) * ndim, arrays[base].shape, array.shape
            )
            scale, translation = list(scale_t), list(translation_t)
        elif not _has_scale(transforms):
            raise MetadataError(_no_scale_message(node, ms, key))
        else:
            scale, translation = _compose(transforms, ndim, node.where, key)
        scale = [s * o for s, o in zip(scale, outer_scale, strict=True)]
        translation = [
            t * o + ot for t, o, ot in zip(translation, outer_scale, outer_translation, strict=True)
        ]
        source = ZarrSource(array, f"{node.location.child(path)}")
        levels.append(
            RawLevel(
                path=path,
                array=plan.view(source),
                scale=plan.pick(scale),
                translation=plan.pick(translation),
                scale_key=f"{key} scale{outer} in {node.where}",
                translation_key=f"{key} translation{outer} in {node.where}",
            )
        )
    assert plan is not None
    units = plan.pick([a.unit for a in file_axes])
    metadata: dict[str, Any] = {
        "ngff_version": node.ngff_version(ms),
        "zarr_format": node.zarr_format,
        "file_axes": [a.name for a in file_axes],
    }
    if ms.get("name") is not None:
        metadata["name"] = str(ms["name"])
    if plan.fixed:
        metadata["selected"] = plan.selection()
    if only is not None:
        metadata["group"] = str(node.location)
    return RawImage(
        source=str(node.location.child(only)) if only is not None else str(node.location),
        format=FORMAT,
        axes=plan.names,
        units=units,
        levels=finest_first(levels),
        calibrated=not unplaced,
        uncalibrated_reason=f"OME-Zarr {node.ngff_version(ms)} levels carry no scale"
        if unplaced
        else None,
        modality="labels" if node.is_label_image() else None,
        metadata=metadata,
    )


def _read_plain_array(node: ZarrNode, select: Mapping[str, int] | None) -> RawImage:
    """A zarr array outside any multiscales: one level, no physical placement."""
    array = _open_array(node.location, "", node.zarr_format, node.where)
    names = _dimension_names(node)
    if names is not None and len(names) == len(array.shape):
        axes = tuple(AxisSpec(n.lower()) for n in names)
    else:
        axes = default_axes(len(array.shape), str(node.location))
    plan = resolve_axes(axes, array.shape, select=select, where=str(node.location))
    n = len(plan.names)
    level = RawLevel(
        path="",
        array=plan.view(ZarrSource(array, str(node.location))),
        scale=(1.0,) * n,
        translation=(0.0,) * n,
    )
    metadata: dict[str, Any] = {
        "zarr_format": node.zarr_format,
        "file_axes": [a.name for a in axes],
    }
    if plan.fixed:
        metadata["selected"] = plan.selection()
    return RawImage(
        source=str(node.location),
        format=FORMAT,
        axes=plan.names,
        units=(None,) * n,
        levels=(level,),
        calibrated=False,
        uncalibrated_reason="a zarr array with no OME-Zarr multiscales above it",
        metadata=metadata,
    )


def _dimension_names(node: ZarrNode) -> Sequence[str] | None:
    """Axis names of a bare array: zarr v3 ``dimension_names`` or xarray's ``_ARRAY_DIMENSIONS``."""
    names = node.metadata.get("dimension_names") if node.zarr_format == 3 else None
    if names is None:
        names = node.attributes.get("_ARRAY_DIMENSIONS")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None
