"""Reading OME-NGFF (RFC-5) ``coordinateTransformations`` into coframe transforms.

Each transformation is first built as NGFF writes it (coordinates in the
order and units of its coordinate systems), then re-expressed in coframe's
axis order (z, y, x) and workspace unit through the frames of its input and
output coordinate systems (:func:`~coframe.transforms.formats.ngff_axes.coordinate_frame`).

Every RFC-5 type is read: identity, mapAxis (axis-name and index forms),
translation, scale, affine (rows ``(M, N+1)``, homogeneous, or flat),
rotation, sequence, displacements, coordinates, inverseOf, bijection and
byDimension (wrapped ``transformation`` with ``input_axes``/``output_axes``
by index or name, or children with ``input``/``output`` axis-name lists).
Parameters may be inline or in a Zarr array (``path``).

NGFF requires a ``rotation`` to be orthonormal but says nothing of rounding.
coframe takes a matrix within
:data:`~coframe.transforms.affine.ROUNDED_ROTATION_TOLERANCE` of orthonormal
(every matrix written to three decimals) and replaces it by the nearest
rotation, with a :class:`~coframe.core.errors.CoframeWarning` that gives the
residual; a matrix further off is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from coframe.core.errors import (
    CoframeError,
    DimensionError,
    FormatError,
    ParseError,
    TransformError,
)
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bijection import Bijection
from coframe.transforms.field import INTERPOLATIONS
from coframe.transforms.formats.ngff_axes import (
    Axis,
    CoordinateSystem,
    Frame,
    Monomial,
    coordinate_frame,
)
from coframe.transforms.formats.ngff_bydimension import by_dimension
from coframe.transforms.formats.ngff_fields import (
    check_axis_order,
    field_array,
    grid_origin_spacing,
    unit_ratio,
    vector_axis,
)
from coframe.transforms.formats.ngff_frames import change_frames, field_in_frames, raw_field_view
from coframe.transforms.formats.ngff_io import NgffSource, ome_metadata

#: Every transformation type RFC-5 defines.
KNOWN_TYPES: tuple[str, ...] = (
    "identity",
    "mapAxis",
    "translation",
    "scale",
    "affine",
    "rotation",
    "sequence",
    "displacements",
    "coordinates",
    "inverseOf",
    "bijection",
    "byDimension",
)

Decoded = tuple[Transform, Frame, Frame]


def pick_frame(dim: int, outer: Frame | None, previous: Frame | None) -> Frame:
    """Frame of an unnamed space inside a transformation (e.g. between sequence steps).

    The enclosing output coordinate system if it has ``dim`` axes, else the
    previous space's, else an anonymous space. Writers use the same rule.
    """
    if outer is not None and outer.dim == dim:
        return outer
    if previous is not None and previous.dim == dim:
        return previous
    return Frame.anonymous(dim)


def _numbers(value: Any, key: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise ParseError(f"{key}: expected numbers, got {value!r}") from e
    if array.ndim != ndim or array.size == 0:
        shape = "a list of numbers" if ndim == 1 else "a list of rows of numbers"
        raise ParseError(f"{key}: expected {shape}, got {value!r}")
    if not np.all(np.isfinite(array)):
        raise ParseError(f"{key}: expected finite numbers, got {value!r}")
    return array


def _strip_io(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("input", "output")}


@dataclass(frozen=True)
class Ends:
    """What is known about the input and output spaces of a transformation being decoded.

    Parameters
    ----------
    fin
        Frame of the input space, if named here or by the enclosing object.
    fout
        Frame of the output space, if known.
    outer
        Output frame of the enclosing transformation, used to choose the frame
        of an unnamed output (see :func:`pick_frame`).
    hints
        ``(outer, previous)`` frames to choose the frame of an unnamed input.
    """

    fin: Frame | None = None
    fout: Frame | None = None
    outer: Frame | None = None
    hints: tuple[Frame | None, Frame | None] = (None, None)

    def input_frame(self, dim: int) -> Frame:
        """The input frame, chosen by :func:`pick_frame` when not known."""
        return self.fin if self.fin is not None else pick_frame(dim, *self.hints)

    def output_frame(self, dim: int, fin: Frame) -> Frame:
        """The output frame, chosen by :func:`pick_frame` when not known."""
        return self.fout if self.fout is not None else pick_frame(dim, self.outer, fin)


@dataclass
class Decoder:
    """Decode NGFF transformations read from one container.

    Parameters
    ----------
    systems
        The named coordinate systems of the metadata.
    unit
        The workspace length unit.
    file_unit
        Unit assumed for spatial axes that declare none.
    source
        The container parameter arrays are read from (None for bare JSON).
    image_systems
        Coordinate systems found in image groups, filled while decoding.
    """

    systems: Mapping[str, CoordinateSystem]
    unit: str = "nanometer"
    file_unit: str | None = None
    source: NgffSource | None = None
    image_systems: dict[str, CoordinateSystem] = field(default_factory=dict)

    # ------------------------------------------------------------------ spaces

    def reference_name(self, ref: Any, key: str) -> str:
        """The space name an ``input``/``output`` value refers to.

        A string names a coordinate system (or an image path); an object
        ``{"path": p, "name": n}`` names coordinate system ``n`` of the image
        at ``p`` and becomes ``"p/n"`` (``"p"`` without a name).

        Raises
        ------
        ParseError
            If the value is neither.
        """
        if isinstance(ref, str) and ref:
            return ref
        if isinstance(ref, Mapping):
            path, name = ref.get("path"), ref.get("name", ref.get("coordinateSystem"))
            if isinstance(path, str) and path:
                return path if not isinstance(name, str) or not name else f"{path}/{name}"
            if isinstance(name, str) and name:
                return name
        raise ParseError(
            f"{key}: expected a coordinate system name or an object with 'name' and/or 'path', "
            f"got {ref!r}"
        )

    def resolve(self, ref: Any, key: str) -> CoordinateSystem:
        """The coordinate system an ``input``/``output`` value refers to.

        Raises
        ------
        FormatError
            If it is defined neither in the metadata nor in an image group.
        """
        name = self.reference_name(ref, key)
        path = ref.get("path") if isinstance(ref, Mapping) else None
        if path is None and name in self.systems:
            return self.systems[name]
        if name in self.image_systems:
            return self.image_systems[name]
        image = path if isinstance(path, str) else name
        wanted = ref.get("name") if isinstance(ref, Mapping) else None
        found = self._image_system(image, wanted, key)
        if found is None:
            known = ", ".join(sorted(self.systems)) or "none"
            raise FormatError(
                f"{key}: coordinate system {name!r} is not defined: expected one of {known} "
                "(or the path of an image group with multiscales metadata)"
            )
        system = CoordinateSystem(name, found.axes)
        self.image_systems[name] = system
        return system

    def _image_system(self, path: str, wanted: Any, key: str) -> CoordinateSystem | None:
        if self.source is None:
            return None
        try:
            node = self.source.node(path, key=key)
        except CoframeError:
            return None
        ome = ome_metadata(dict(node.attrs))
        for i, ms in enumerate(ome.get("multiscales") or []):
            systems = ms.get("coordinateSystems") if isinstance(ms, Mapping) else None
            for j, obj in enumerate(systems or []):
                cs = CoordinateSystem.from_json(
                    obj, key=f"{path}: multiscales[{i}].coordinateSystems[{j}]"
                )
                if wanted is None or cs.name == wanted:
                    return cs
        return None

    def frame(self, system: CoordinateSystem) -> Frame:
        """The coframe frame of a coordinate system."""
        return coordinate_frame(system, unit=self.unit, file_unit=self.file_unit)

    # ------------------------------------------------------------------ dispatch

    def decode(self, obj: Any, key: str, ends: Ends | None = None) -> Decoded:
        """Decode one transformation object.

        Parameters
        ----------
        obj
            The JSON object.
        key
            Its location in the metadata, for messages.
        ends
            What the enclosing object tells about its input and output spaces.

        Returns
        -------
        tuple
            The coframe transform and the frames of its input and output.

        Raises
        ------
        ParseError
            If a field is missing or malformed.
        FormatError
            If the type is unknown.
        """
        if not isinstance(obj, Mapping):
            raise ParseError(f"{key}: expected a transformation object, got {obj!r}")
        kind = obj.get("type")
        if not isinstance(kind, str):
            raise ParseError(f"{key}.type: expected a transformation type string, got {kind!r}")
        ends = ends if ends is not None else Ends()
        if obj.get("input") is not None:
            ends = replace(ends, fin=self.frame(self.resolve(obj["input"], f"{key}.input")))
        if obj.get("output") is not None:
            ends = replace(ends, fout=self.frame(self.resolve(obj["output"], f"{key}.output")))
        handlers: dict[str, Callable[..., Decoded]] = {
            "identity": self._identity,
            "mapAxis": self._map_axis,
            "translation": self._translation,
            "scale": self._scale,
            "affine": self._affine,
            "rotation": self._rotation,
            "sequence": self._sequence,
            "displacements": self._field,
            "coordinates": self._field,
            "inverseOf": self._inverse_of,
            "bijection": self._bijection,
            "byDimension": self._by_dimension,
        }
        if kind not in handlers:
            raise FormatError(
                f"{key}.type: unknown transformation type {kind!r}: expected one of "
                f"{', '.join(KNOWN_TYPES)}"
            )
        return handlers[kind](obj, key, ends)

    def _finish(self, raw: Transform, key: str, ends: Ends) -> Decoded:
        """Re-express a transform built in NGFF coordinates in coframe's frames."""
        fin = ends.input_frame(raw.input_dim)
        fout = ends.output_frame(raw.output_dim, fin)
        for frame, dim, side in ((fin, raw.input_dim, "input"), (fout, raw.output_dim, "output")):
            if frame.dim != dim:
                name = frame.system.name or "(unnamed)"
                raise DimensionError(
                    f"{key}: a {raw.input_dim}D -> {raw.output_dim}D {type(raw).__name__} does "
                    f"not fit {side} coordinate system {name!r} with {frame.dim} axes "
                    f"{list(frame.system.axis_names)}: give parameters for {frame.dim} axes, "
                    f"or make its {side} a coordinate system with {dim} axes"
                )
        return change_frames(raw, fin.to_coframe.inverse(), fout.to_coframe), fin, fout

    def _parameters(self, obj: Mapping[str, Any], name: str, key: str, ndim: int) -> np.ndarray:
        if obj.get(name) is not None and "path" not in obj:
            return _numbers(obj[name], f"{key}.{name}", ndim)
        if "path" in obj:
            if self.source is None:
                raise FormatError(f"{key}.path: parameters in arrays need a Zarr container")
            array = self.source.array(obj["path"], key=f"{key}.path")
            values = np.asarray(array[...], dtype=np.float64)
            return _numbers(values.tolist(), f"{key}.path ({obj['path']})", ndim)
        raise ParseError(f"{key}: expected a {name!r} list or a 'path' to an array")

    # ------------------------------------------------------------------ types

    def _identity(self, obj: Any, key: str, ends: Ends) -> Decoded:
        known = ends.fin if ends.fin is not None else ends.fout
        if known is None:
            raise FormatError(f"{key}: an identity needs its input or output coordinate system")
        return self._finish(Identity(known.dim), key, ends)

    def _translation(self, obj: Any, key: str, ends: Ends) -> Decoded:
        raw = Translation(self._parameters(obj, "translation", key, 1))
        return self._finish(raw, key, ends)

    def _scale(self, obj: Any, key: str, ends: Ends) -> Decoded:
        raw = Scale(self._parameters(obj, "scale", key, 1))
        return self._finish(raw, key, ends)

    def _matrix(self, obj: Any, name: str, key: str, fin: Frame | None, square: bool) -> np.ndarray:
        value = obj.get(name) if "path" not in obj else None
        flat = (
            value is not None
            and isinstance(value, list)
            and value
            and not isinstance(value[0], list)
        )
        if flat:
            numbers = _numbers(value, f"{key}.{name}", 1)
            if fin is None:
                raise FormatError(f"{key}.{name}: a flat matrix needs the input coordinate system")
            n = fin.dim
            cols = n if square else n + 1
            if numbers.size % cols:
                raise ParseError(
                    f"{key}.{name}: {numbers.size} numbers do not form rows of {cols} for a "
                    f"{n}D input"
                )
            return numbers.reshape(-1, cols)
        return self._parameters(obj, name, key, 2)

    def _affine(self, obj: Any, key: str, ends: Ends) -> Decoded:
        try:
            raw = Affine(self._matrix(obj, "affine", key, ends.fin, square=False))
        except TransformError as e:
            raise ParseError(f"{key}.affine: {e}") from e
        return self._finish(raw, key, ends)

    def _rotation(self, obj: Any, key: str, ends: Ends) -> Decoded:
        """A rotation; a rounded matrix is made orthonormal with a warning (see Rotation)."""
        matrix = self._matrix(obj, "rotation", key, ends.fin, square=True)
        where = f"{self.source.location}: " if self.source is not None else ""
        raw = Rotation.from_rounded(matrix, source=f"{where}{key}.rotation")
        return self._finish(raw, key, ends)

    def _map_axis(self, obj: Any, key: str, ends: Ends) -> Decoded:
        spec = obj.get("mapAxis")
        fin, fout = ends.fin, ends.fout
        if isinstance(spec, Mapping):
            if fin is None or fout is None:
                raise FormatError(
                    f"{key}.mapAxis: a map of axis names needs its input and output coordinate "
                    "systems"
                )
            sources = []
            for out_axis in fout.system.axis_names:
                if out_axis not in spec:
                    raise ParseError(
                        f"{key}.mapAxis: output axis {out_axis!r} has no entry: expected one "
                        f"per axis of {fout.system.name!r} {list(fout.system.axis_names)}"
                    )
                in_axis = spec[out_axis]
                sources.append(fin.system.axis_index(in_axis, key=f"{key}.mapAxis.{out_axis}"))
            n_in = fin.dim
        elif (
            isinstance(spec, list)
            and spec
            and all(isinstance(i, int) and not isinstance(i, bool) for i in spec)
        ):
            sources = list(spec)
            n_in = fin.dim if fin is not None else max(sources) + 1
            if min(sources) < 0 or max(sources) >= n_in:
                raise ParseError(
                    f"{key}.mapAxis: indices {sources} must lie in 0..{n_in - 1} for a "
                    f"{n_in}D input"
                )
        else:
            raise ParseError(
                f"{key}.mapAxis: expected a list of input axis indices or an object mapping "
                f"output to input axis names, got {spec!r}"
            )
        matrix = np.zeros((len(sources), n_in))
        matrix[np.arange(len(sources)), sources] = 1.0
        return self._finish(Affine.from_linear(matrix), key, ends)

    def _sequence(self, obj: Any, key: str, ends: Ends) -> Decoded:
        steps = obj.get("transformations")
        if not isinstance(steps, list) or not steps:
            raise ParseError(f"{key}.transformations: expected a non-empty list of transformations")
        target = ends.fout if ends.fout is not None else ends.outer
        out: list[Transform] = []
        frames: list[Frame] = []
        step_ends = Ends(ends.fin, None, target, ends.hints)
        for i, step in enumerate(steps):
            if i == len(steps) - 1:
                step_ends = replace(step_ends, fout=ends.fout)
            t, a, b = self.decode(step, f"{key}.transformations[{i}]", step_ends)
            out.append(t)
            frames += [a, b]
            step_ends = Ends(b, None, target)
        return (out[0] if len(out) == 1 else Chain(tuple(out))), frames[0], frames[-1]

    def _inverse_of(self, obj: Any, key: str, ends: Ends) -> Decoded:
        inner = obj.get("transformation", obj.get("transform"))
        inner_key = f"{key}.transformation"
        # The inner map runs backwards: its input is our output and vice versa.
        inner_ends = Ends(
            fin=ends.fout,
            fout=ends.fin,
            outer=ends.hints[0] if ends.fin is None else None,
            hints=(ends.outer, ends.fin),
        )
        t, a, b = self.decode(inner, inner_key, inner_ends)
        try:
            return t.inverse(), b, a
        except TransformError as e:
            raise TransformError(f"{inner_key}: {e}") from e

    def _bijection(self, obj: Any, key: str, ends: Ends) -> Decoded:
        forward, a, b = self.decode(obj.get("forward"), f"{key}.forward", ends)
        inverse, _, _ = self.decode(obj.get("inverse"), f"{key}.inverse", Ends(b, a))
        try:
            return Bijection(forward, inverse), a, b
        except DimensionError as e:
            raise DimensionError(f"{key}: {e}") from e

    def _axes(self, values: Any, system: CoordinateSystem, key: str) -> tuple[int, ...]:
        if not isinstance(values, list) or not values:
            raise ParseError(f"{key}: expected a non-empty list of axis names or indices")
        out = []
        for v in values:
            if isinstance(v, str):
                out.append(system.axis_index(v, key=key))
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < system.dim:
                out.append(v)
            else:
                raise ParseError(
                    f"{key}: {v!r} is not an axis of {system.name!r} {list(system.axis_names)}"
                )
        return tuple(out)

    def _by_dimension(self, obj: Any, key: str, ends: Ends) -> Decoded:
        fin, fout = ends.fin, ends.fout
        if fin is None or fout is None:
            raise FormatError(f"{key}: byDimension needs its input and output coordinate systems")
        children = obj.get("transformations")
        if not isinstance(children, list) or not children:
            raise ParseError(f"{key}.transformations: expected a non-empty list")
        parts, ins, outs = [], [], []
        for i, child in enumerate(children):
            ckey = f"{key}.transformations[{i}]"
            if not isinstance(child, Mapping):
                raise ParseError(f"{ckey}: expected an object")
            names_in = child.get("input_axes", child.get("inputAxes", child.get("input")))
            names_out = child.get("output_axes", child.get("outputAxes", child.get("output")))
            ia = self._axes(names_in, fin.system, f"{ckey}.input_axes")
            oa = self._axes(names_out, fout.system, f"{ckey}.output_axes")
            inner = child["transformation"] if "transformation" in child else child
            inner = {
                k: v
                for k, v in _strip_io(inner).items()
                if k not in ("input_axes", "output_axes", "inputAxes", "outputAxes")
            }
            anonymous = Ends(Frame.anonymous(len(ia)), Frame.anonymous(len(oa)))
            part, _, _ = self.decode(inner, ckey, anonymous)
            parts.append(part)
            ins.append(ia)
            outs.append(oa)
        try:
            raw = by_dimension(tuple(parts), tuple(ins), tuple(outs), fin.dim, fout.dim)
        except DimensionError as e:
            raise DimensionError(f"{key}: {e}") from e
        return self._finish(raw, key, ends)

    # ------------------------------------------------------------------ fields

    def _field(self, obj: Any, key: str, ends: Ends) -> Decoded:
        kind = obj["type"]
        interpolation = obj.get("interpolation", "linear")
        if interpolation not in INTERPOLATIONS:
            raise TransformError(
                f"{key}.interpolation: {interpolation!r} is not one of the spec's values: use "
                f"{', '.join(INTERPOLATIONS)}"
            )
        if kind == "coordinates" and interpolation == "nearest":
            raise TransformError(
                f"{key}.interpolation: a coordinates field read at its nearest node maps every "
                "point of a cell to one position, which coframe cannot invert or compose: use "
                "'linear' or 'cubic'"
            )
        if self.source is None:
            raise FormatError(f"{key}.path: {kind} fields need a Zarr container")
        path = obj.get("path")
        array, system, grid = field_array(self.source, path, f"{key}.path")
        vaxis = vector_axis(system, kind, path, f"{key}.path")
        n, m = array.ndim - 1, int(array.shape[vaxis])
        fin = ends.input_frame(n)
        fout = ends.output_frame(m, fin)
        if fin.dim != n or fout.dim != m:
            raise DimensionError(
                f"{key}: field {path!r} of shape {tuple(array.shape)} maps {n}D -> {m}D but its "
                f"input/output coordinate systems have {fin.dim} and {fout.dim} axes"
            )
        grid_axes = [a for i, a in enumerate(system.axes) if i != vaxis]
        check_axis_order(grid_axes, fin.system, f"{key}.path ({path})")
        origin, spacing = self._grid(grid, array.ndim, vaxis, f"{key}.path ({path})")
        length = unit_ratio(grid_axes, fin.system.axes)
        vector_unit = system.axes[vaxis].unit
        vector_scale = unit_ratio([Axis("v", "space", vector_unit)] * m, fout.system.axes)
        post = Monomial(tuple(range(m)), tuple(vector_scale)).then(fout.to_coframe)
        t = field_in_frames(
            raw_field_view(array, vaxis),
            origin * length,
            spacing * length,
            fin.to_coframe.inverse(),
            post,
            coordinates=kind == "coordinates",
            interpolation=interpolation,
        )
        return t, fin, fout

    def _grid(
        self, grid: list[Any], ndim: int, vaxis: int, key: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Origin and spacing of a field's grid from its array-to-space transformations."""
        anonymous = Frame.anonymous(ndim)
        matrix = np.eye(ndim + 1)
        for i, obj in enumerate(grid):
            if not isinstance(obj, Mapping):
                raise ParseError(f"{key}.coordinateTransformations[{i}]: expected an object")
            t, _, _ = self.decode(
                _strip_io(obj), f"{key}.coordinateTransformations[{i}]", Ends(anonymous, anonymous)
            )
            affine = t.as_affine()
            if affine is None:
                raise FormatError(
                    f"{key}: the field grid transformation must be a scale/translation"
                )
            matrix = affine.homogeneous @ matrix
        return grid_origin_spacing(matrix, vaxis, key)
