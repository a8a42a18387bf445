"""OME-NGFF 0.6 (RFC-5) coordinate systems and transformations: scenes and single transforms.

A *scene* is a Zarr group whose attributes list named ``coordinateSystems``
(coframe spaces) and the ``coordinateTransformations`` between them
(coframe edges); parameter arrays such as displacement fields live in the
same group. coframe reads scenes from Zarr v3 (``zarr.json``, metadata under
``"ome"``, optionally inside ``"scene"``), Zarr v2 (``.zattrs``) and plain
``.json`` files, and writes Zarr v3 groups by default, atomically.

Transforms come back in coframe's conventions: points in numpy order
(z, y, x) and lengths in the workspace unit, whatever the axis order and
units of the coordinate systems in the file. Writing converts back.

Public functions
----------------
- :func:`read_scene`, :func:`write_scene`
- :func:`read_ngff_transform`, :func:`write_ngff_transform` (one edge)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coframe.core.errors import DimensionError, FormatError, ParseError, TransformError
from coframe.core.units import canonical_unit
from coframe.transforms.base import Transform
from coframe.transforms.cycles import conflicting_cycle
from coframe.transforms.formats.ngff_axes import (
    Axis,
    CoordinateSystem,
    canonical_order,
    coordinate_frame,
)
from coframe.transforms.formats.ngff_bydimension import ByDimension
from coframe.transforms.formats.ngff_decode import KNOWN_TYPES, Decoder
from coframe.transforms.formats.ngff_encode import Encoder
from coframe.transforms.formats.ngff_frames import FieldView
from coframe.transforms.formats.ngff_io import NGFF_VERSION, NgffSource, write_container

__all__ = [
    "KNOWN_TYPES",
    "Axis",
    "ByDimension",
    "CoordinateSystem",
    "FieldView",
    "Scene",
    "SceneTransformation",
    "coframe_axes",
    "read_ngff_transform",
    "read_scene",
    "write_ngff_transform",
    "write_scene",
]


@dataclass(frozen=True)
class SceneTransformation:
    """One transformation of a scene: an edge between two coordinate systems.

    Parameters
    ----------
    input
        Name of the input coordinate system (space).
    output
        Name of the output coordinate system.
    transform
        The point map from ``input`` to ``output``, numpy axis order, workspace unit.
    name
        Optional name of the transformation.
    """

    input: str
    output: str
    transform: Transform
    name: str | None = None


@dataclass(frozen=True)
class Scene:
    """Coordinate systems and the transformations between them.

    Parameters
    ----------
    coordinate_systems
        The coordinate systems by name, axes as listed in the file.
    transformations
        The transformations, in file order.
    unit
        The workspace unit the transforms are expressed in.
    """

    coordinate_systems: dict[str, CoordinateSystem]
    transformations: list[SceneTransformation]
    unit: str = "nanometer"

    def coframe_axes(self, name: str) -> tuple[str, ...]:
        """Axis names of a coordinate system in coframe's order (e.g. ``("z", "y", "x")``)."""
        return coframe_axes(self.coordinate_systems[name])


def coframe_axes(system: CoordinateSystem) -> tuple[str, ...]:
    """Axis names of ``system`` in the order coframe's transforms use them."""
    return tuple(system.axis_names[i] for i in canonical_order(system))


def _scene_metadata(ome: Mapping[str, Any]) -> list[tuple[str, Any, str, Any]]:
    """Lists of coordinate systems and transformations with their metadata keys."""
    blocks: list[tuple[str, Any, str, Any]] = []
    scene = ome.get("scene")
    if isinstance(scene, Mapping):
        blocks.append(
            (
                "scene.coordinateSystems",
                scene.get("coordinateSystems", []),
                "scene.coordinateTransformations",
                scene.get("coordinateTransformations", []),
            )
        )
    if "coordinateSystems" in ome or "coordinateTransformations" in ome:
        blocks.append(
            (
                "coordinateSystems",
                ome.get("coordinateSystems", []),
                "coordinateTransformations",
                ome.get("coordinateTransformations", []),
            )
        )
    for i, ms in enumerate(ome.get("multiscales") or []):
        # Only RFC-5 multiscales name their coordinate systems; 0.4 ones carry image axes only.
        if isinstance(ms, Mapping) and "coordinateSystems" in ms:
            blocks.append(
                (
                    f"multiscales[{i}].coordinateSystems",
                    ms.get("coordinateSystems", []),
                    f"multiscales[{i}].coordinateTransformations",
                    ms.get("coordinateTransformations", []),
                )
            )
    return blocks


def read_scene(
    path: str | os.PathLike[str], *, unit: str = "nanometer", file_unit: str | None = None
) -> Scene:
    """Read the coordinate systems and transformations of an NGFF container.

    Parameters
    ----------
    path
        A Zarr group (v2 or v3, local path or URL) or a ``.json`` file.
    unit
        The workspace unit the transforms are returned in.
    file_unit
        Unit assumed for spatial axes that declare none (otherwise such an
        axis is an error); ``file_unit == unit`` maps their numbers as they are.

    Returns
    -------
    Scene
        Transforms in numpy axis order (z, y, x) and ``unit``.

    Raises
    ------
    InputNotFoundError
        If the container, or an array it refers to, does not exist.
    ParseError
        If the metadata is malformed (naming line/column or key).
    FormatError
        If a transformation type is unknown or no transformations are found.
    DimensionError
        If parameters do not fit their coordinate systems.
    """
    source = NgffSource.open(path)
    blocks = _scene_metadata(source.ome)
    if not blocks:
        raise FormatError(
            f"{source.location}: no coordinateSystems or coordinateTransformations found in "
            "the NGFF metadata (looked at the top level, 'scene' and 'multiscales')"
        )
    systems: dict[str, CoordinateSystem] = {}
    for systems_key, systems_json, _, _ in blocks:
        if not isinstance(systems_json, list):
            raise ParseError(f"{source.location}: {systems_key}: expected a list")
        for i, obj in enumerate(systems_json):
            cs = CoordinateSystem.from_json(obj, key=f"{systems_key}[{i}]")
            if cs.name in systems and systems[cs.name] != cs:
                raise ParseError(
                    f"{source.location}: {systems_key}[{i}]: coordinate system {cs.name!r} is "
                    "defined twice with different axes"
                )
            systems[cs.name] = cs
    if file_unit is not None:
        file_unit = canonical_unit(file_unit, key="--unit")
    decoder = Decoder(systems, canonical_unit(unit, key="unit"), file_unit, source)
    transformations: list[SceneTransformation] = []
    keys: list[str] = []
    for _, _, transforms_key, transforms_json in blocks:
        if not isinstance(transforms_json, list):
            raise ParseError(f"{source.location}: {transforms_key}: expected a list")
        for i, obj in enumerate(transforms_json):
            key = f"{transforms_key}[{i}]"
            for side in ("input", "output"):
                if isinstance(obj, Mapping) and obj.get(side) is None:
                    raise ParseError(
                        f"{source.location}: {key}.{side}: a top-level transformation must name "
                        f"its {side} coordinate system"
                    )
            try:
                t, _, _ = decoder.decode(obj, key)
                names = [decoder.reference_name(obj[s], f"{key}.{s}") for s in ("input", "output")]
            except (ParseError, FormatError, DimensionError, TransformError) as e:
                if str(e).startswith(source.location):
                    raise
                raise type(e)(f"{source.location}: {e}") from e
            name = obj.get("name")
            transformations.append(
                SceneTransformation(names[0], names[1], t, name if isinstance(name, str) else None)
            )
            keys.append(key)
    _check_cycles(transformations, keys, source.location, canonical_unit(unit))
    systems.update(decoder.image_systems)
    return Scene(systems, transformations, canonical_unit(unit))


def _check_cycles(
    items: list[SceneTransformation], keys: list[str], location: str, unit: str
) -> None:
    """Refuse a transformation that disagrees with the chain of others between its systems."""
    conflict = conflicting_cycle([(t.input, t.output, t.transform) for t in items])
    if conflict is None:
        return
    item = items[conflict.edge]
    label = f"{item.name}: " if item.name else ""
    spaces = [item.input]
    for index, backwards in conflict.chain:
        step = items[index]
        spaces.append(step.input if backwards else step.output)
    off = (
        f"{conflict.linear:.3g} in the linear part"
        if conflict.linear > conflict.translation
        else f"{conflict.translation:.3g} {unit} in the translation"
    )
    raise FormatError(
        f"{location}: {keys[conflict.edge]} ({label}{item.input} -> {item.output}) disagrees "
        f"with the chain {' -> '.join(spaces)} of the other transformations by up to {off}: "
        "the transformations of a cycle must agree: correct or remove one of them"
    )


def read_ngff_transform(
    path: str | os.PathLike[str],
    *,
    unit: str = "nanometer",
    file_unit: str | None = None,
    name: str | None = None,
    input_space: str | None = None,
    output_space: str | None = None,
) -> Transform:
    """Read the one transformation of an NGFF container (or the one selected).

    Parameters
    ----------
    path
        A Zarr group or ``.json`` file.
    unit
        The workspace unit of the returned transform.
    file_unit
        Unit assumed for spatial axes that declare none.
    name
        Select the transformation with this name.
    input_space
        Select the transformation with this input coordinate system.
    output_space
        Select the transformation with this output coordinate system.

    Raises
    ------
    FormatError
        If no transformation, or more than one, matches (listing them).
    """
    scene = read_scene(path, unit=unit, file_unit=file_unit)
    matches = [
        st
        for st in scene.transformations
        if (name is None or st.name == name)
        and (input_space is None or st.input == input_space)
        and (output_space is None or st.output == output_space)
    ]
    if len(matches) == 1:
        return matches[0].transform
    listed = " | ".join(
        f"{st.input} -> {st.output}" + (f" ({st.name})" if st.name else "")
        for st in scene.transformations
    )
    if not matches:
        raise FormatError(
            f"{os.fspath(path)}: no transformation matches (name={name!r}, input={input_space!r}, "
            f"output={output_space!r}); found: {listed or 'none'}"
        )
    raise FormatError(
        f"{os.fspath(path)}: {len(matches)} transformations match: {listed}; select one by name "
        "or input/output space"
    )


def _system_map(
    coordinate_systems: Mapping[str, CoordinateSystem] | Iterable[CoordinateSystem],
) -> dict[str, CoordinateSystem]:
    items = (
        list(coordinate_systems.values())
        if isinstance(coordinate_systems, Mapping)
        else list(coordinate_systems)
    )
    out: dict[str, CoordinateSystem] = {}
    for cs in items:
        if not isinstance(cs, CoordinateSystem):
            raise TransformError(f"expected CoordinateSystem objects, got {type(cs).__name__}")
        if not cs.name:
            raise TransformError("every coordinate system of a scene needs a name")
        if cs.name in out and out[cs.name] != cs:
            raise TransformError(
                f"coordinate system {cs.name!r} is given twice with different axes"
            )
        out[cs.name] = cs
    return out


def scene_metadata(
    coordinate_systems: Mapping[str, CoordinateSystem] | Iterable[CoordinateSystem],
    transformations: Iterable[SceneTransformation],
    *,
    unit: str = "nanometer",
) -> tuple[dict[str, Any], Encoder]:
    """The OME metadata of a scene and the encoder holding its parameter arrays.

    Raises
    ------
    TransformError
        If a transformation names an unknown coordinate system or cannot be stored.
    DimensionError
        If a transform does not fit its coordinate systems.
    """
    systems = _system_map(coordinate_systems)
    workspace = canonical_unit(unit, key="unit")
    encoder = Encoder()
    encoded = []
    for k, st in enumerate(transformations):
        for side in (st.input, st.output):
            if side not in systems:
                raise TransformError(
                    f"transformation {st.name or k!r} refers to coordinate system {side!r}, which "
                    f"is not among {sorted(systems)}"
                )
        fin = coordinate_frame(systems[st.input], unit=workspace)
        fout = coordinate_frame(systems[st.output], unit=workspace)
        t = st.transform
        if t.input_dim != fin.dim or t.output_dim != fout.dim:
            raise DimensionError(
                f"transformation {st.input} -> {st.output} maps {t.input_dim}D -> {t.output_dim}D "
                f"but the coordinate systems have {fin.dim} and {fout.dim} axes"
            )
        stem = st.name or f"{st.input}-to-{st.output}"
        obj = encoder.encode(t, fin, fout, stem=stem)
        obj = {**obj, "input": st.input, "output": st.output}
        if st.name:
            obj["name"] = st.name
        encoded.append(obj)
    metadata = {
        "version": NGFF_VERSION,
        "scene": {
            "coordinateSystems": [cs.to_json() for cs in systems.values()],
            "coordinateTransformations": encoded,
        },
    }
    return metadata, encoder


def write_scene(
    path: str | os.PathLike[str],
    coordinate_systems: Mapping[str, CoordinateSystem] | Iterable[CoordinateSystem],
    transformations: Iterable[SceneTransformation],
    *,
    unit: str = "nanometer",
    force: bool = False,
    zarr_format: int = 3,
) -> Path:
    """Write coordinate systems and transformations as an NGFF scene, atomically.

    Parameters
    ----------
    path
        Output Zarr group directory (or a ``.json`` file when no transform
        needs arrays).
    coordinate_systems
        The coordinate systems (by name, or a list).
    transformations
        The transformations; their transforms are in coframe's order and ``unit``.
    unit
        The unit of the transforms; values are converted into the units of
        each coordinate system's axes.
    force
        Replace an existing output.
    zarr_format
        3 (default, metadata under ``"ome"``) or 2.

    Raises
    ------
    OverwriteError
        If the output exists and ``force`` is false.
    TransformError
        If a transform cannot be stored in NGFF (e.g. a thin plate spline).
    """
    metadata, encoder = scene_metadata(coordinate_systems, transformations, unit=unit)
    return write_container(
        path, metadata, tuple(encoder.arrays), zarr_format=zarr_format, force=force
    )


def _space(value: str | CoordinateSystem, dim: int, unit: str) -> CoordinateSystem:
    if isinstance(value, CoordinateSystem):
        return value
    return CoordinateSystem.spatial(value, dim, unit)


def write_ngff_transform(
    path: str | os.PathLike[str],
    transform: Transform,
    *,
    input_space: str | CoordinateSystem,
    output_space: str | CoordinateSystem,
    unit: str = "nanometer",
    force: bool = False,
    name: str | None = None,
    zarr_format: int = 3,
) -> Path:
    """Write one transform as an NGFF group with its two coordinate systems.

    Parameters
    ----------
    path
        Output Zarr group (or ``.json`` file for transforms without arrays).
    transform
        The point map, numpy axis order, in ``unit``.
    input_space
        Name of the input space (a ``z, y, x`` or ``y, x`` coordinate system in
        ``unit`` is written), or a full :class:`CoordinateSystem`.
    output_space
        Name or coordinate system of the output space.
    unit
        The unit of the transform.
    force
        Replace an existing output.
    name
        Optional transformation name.
    zarr_format
        3 (default) or 2.

    Raises
    ------
    OverwriteError
        If the output exists and ``force`` is false.
    TransformError
        If both spaces have the same name or the transform cannot be stored.
    """
    source = _space(input_space, transform.input_dim, unit)
    target = _space(output_space, transform.output_dim, unit)
    if source.name == target.name:
        raise TransformError(
            f"input and output spaces are both named {source.name!r}: a transformation needs "
            "two distinct coordinate systems"
        )
    edge = SceneTransformation(source.name, target.name, transform, name)
    return write_scene(
        path, [source, target], [edge], unit=unit, force=force, zarr_format=zarr_format
    )
