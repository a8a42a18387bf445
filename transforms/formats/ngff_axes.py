"""OME-NGFF coordinate systems, and the one map from an NGFF axis order to coframe's.

An NGFF coordinate system lists its axes in any order (``x, y, z`` is
common) and gives each a unit. coframe keeps every point in numpy order
(z, y, x) and in the workspace unit. :func:`coordinate_frame` is the single
place that decides how the coordinates of a point written in an NGFF
coordinate system become coframe coordinates: a permutation of the axes
followed by a unit factor per axis (a :class:`Monomial` map).

Axes without a unit
-------------------
NGFF makes an axis's ``unit`` optional and says nothing of what a unitless
spatial axis measures. coframe does not guess: a unitless spatial axis takes
the unit the caller gives for it (``file_unit``, the ``--unit`` of the
command). Mapping points through a scene (``coframe points --scene``) gives
it the points' own unit, so between unitless coordinate systems the numbers
map as they are, with no unit conversion. Placing such a coordinate system
in a workspace (``link``, ``import-scene``) needs a physical unit, and
without ``--unit`` is refused in one line that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from coframe.core.errors import AxisError, DimensionError, ParseError, UnitError
from coframe.core.units import NANOMETERS_PER_UNIT, canonical_unit, unit_factor

#: Axis types whose coordinates are lengths.
SPACE = "space"

#: Names of spatial axes in coframe's order.
SPATIAL_ORDER = ("z", "y", "x")


@dataclass(frozen=True)
class Axis:
    """One axis of an NGFF coordinate system.

    Parameters
    ----------
    name
        Axis name, unique within its coordinate system.
    type
        ``"space"``, ``"time"``, ``"channel"``, ``"array"``,
        ``"displacement"``, ``"coordinate"`` or a custom string; None if absent.
    unit
        Unit name as written in the metadata, or None.
    discrete
        Whether the axis is discrete, or None if absent.
    long_name
        Optional description.
    """

    name: str
    type: str | None = None
    unit: str | None = None
    discrete: bool | None = None
    long_name: str | None = None

    @property
    def is_length(self) -> bool:
        """Whether coordinates along this axis are lengths (a spatial axis)."""
        if self.type is not None:
            return self.type == SPACE
        if self.name.lower() in SPATIAL_ORDER:
            return True
        if self.unit is not None:
            try:
                canonical_unit(self.unit)
            except UnitError:
                return False
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        """The NGFF JSON object of this axis."""
        out: dict[str, Any] = {"name": self.name}
        if self.type is not None:
            out["type"] = self.type
        if self.unit is not None:
            out["unit"] = self.unit
        if self.discrete is not None:
            out["discrete"] = self.discrete
        if self.long_name is not None:
            out["longName"] = self.long_name
        return out

    @classmethod
    def from_json(cls, obj: Any, *, key: str) -> Axis:
        """Parse an NGFF axis object.

        Raises
        ------
        ParseError
            If the object or one of its fields has the wrong type (naming ``key``).
        """
        if isinstance(obj, str):
            return cls(obj)
        if not isinstance(obj, Mapping):
            raise ParseError(f"{key}: expected an axis object with a name, got {obj!r}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise ParseError(f"{key}.name: expected a non-empty string, got {name!r}")
        fields: dict[str, Any] = {}
        for json_key, attr, kind in (
            ("type", "type", str),
            ("unit", "unit", str),
            ("discrete", "discrete", bool),
            ("longName", "long_name", str),
        ):
            value = obj.get(json_key)
            if value is not None and not isinstance(value, kind):
                raise ParseError(f"{key}.{json_key}: expected a {kind.__name__}, got {value!r}")
            fields[attr] = value
        return cls(name, **fields)


@dataclass(frozen=True)
class CoordinateSystem:
    """A named list of axes (an NGFF ``coordinateSystem``).

    Parameters
    ----------
    name
        Unique name of the coordinate system (a coframe space); empty for an
        unnamed intermediate space.
    axes
        The axes in the order NGFF lists them.

    Raises
    ------
    AxisError
        If there are no axes or axis names repeat.
    """

    name: str
    axes: tuple[Axis, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(self.axes))
        if not self.axes:
            raise AxisError(f"coordinate system {self.name!r} has no axes")
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise AxisError(
                f"coordinate system {self.name!r} repeats an axis name in {names}: "
                "names must be unique"
            )

    @property
    def dim(self) -> int:
        """Number of axes."""
        return len(self.axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Axis names in NGFF order."""
        return tuple(a.name for a in self.axes)

    def axis_index(self, name: str, *, key: str) -> int:
        """Index of the axis called ``name``.

        Raises
        ------
        ParseError
            If no axis has that name (naming ``key`` and the axes).
        """
        try:
            return self.axis_names.index(name)
        except ValueError as e:
            raise ParseError(
                f"{key}: axis {name!r} is not in coordinate system {self.name!r} "
                f"(axes {list(self.axis_names)})"
            ) from e

    @classmethod
    def spatial(cls, name: str, dim: int, unit: str = "nanometer") -> CoordinateSystem:
        """A ``(z, y, x)`` (or ``(y, x)``) coordinate system in ``unit``.

        Raises
        ------
        DimensionError
            If ``dim`` is not 1, 2 or 3.
        """
        if dim not in (1, 2, 3):
            raise DimensionError(f"a spatial coordinate system has 1 to 3 axes, got {dim}")
        unit = canonical_unit(unit)
        return cls(name, tuple(Axis(a, SPACE, unit) for a in SPATIAL_ORDER[3 - dim :]))

    def with_unit(self, unit: str) -> CoordinateSystem:
        """This coordinate system with ``unit`` on each spatial axis that declares none.

        Raises
        ------
        UnitError
            If ``unit`` is unknown.
        """
        unit = canonical_unit(unit, key="--unit")
        axes = tuple(
            replace(a, unit=unit) if a.unit is None and a.is_length else a for a in self.axes
        )
        return CoordinateSystem(self.name, axes)

    def to_json(self) -> dict[str, Any]:
        """The NGFF JSON object of this coordinate system."""
        return {"name": self.name, "axes": [a.to_json() for a in self.axes]}

    @classmethod
    def from_json(cls, obj: Any, *, key: str) -> CoordinateSystem:
        """Parse an NGFF coordinate system object.

        Raises
        ------
        ParseError
            If a field is missing or has the wrong type (naming ``key``).
        """
        if not isinstance(obj, Mapping):
            raise ParseError(f"{key}: expected a coordinate system object, got {obj!r}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise ParseError(f"{key}.name: expected a non-empty string, got {name!r}")
        axes = obj.get("axes")
        if not isinstance(axes, list) or not axes:
            raise ParseError(f"{key}.axes: expected a non-empty list of axes, got {axes!r}")
        parsed = tuple(Axis.from_json(a, key=f"{key}.axes[{i}]") for i, a in enumerate(axes))
        try:
            return cls(name, parsed)
        except AxisError as e:
            raise ParseError(f"{key}: {e}") from e


@dataclass(frozen=True)
class Monomial:
    """A linear map that permutes coordinates and scales each: ``q[j] = factors[j] * p[perm[j]]``.

    Parameters
    ----------
    perm
        For each output coordinate, the input coordinate it takes.
    factors
        For each output coordinate, its positive scale factor.
    """

    perm: tuple[int, ...]
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        perm = tuple(int(i) for i in self.perm)
        factors = tuple(float(f) for f in self.factors)
        if sorted(perm) != list(range(len(perm))) or len(factors) != len(perm):
            raise DimensionError(f"invalid axis permutation {perm} with factors {factors}")
        if not all(np.isfinite(f) and f > 0 for f in factors):
            raise UnitError(f"unit factors must be positive, got {factors}")
        object.__setattr__(self, "perm", perm)
        object.__setattr__(self, "factors", factors)

    @classmethod
    def identity(cls, dim: int) -> Monomial:
        """The identity map of ``dim`` coordinates."""
        return cls(tuple(range(dim)), (1.0,) * dim)

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return len(self.perm)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(dim, dim)`` matrix."""
        m = np.zeros((self.dim, self.dim))
        m[np.arange(self.dim), self.perm] = self.factors
        return m

    @property
    def homogeneous(self) -> np.ndarray:
        """The ``(dim + 1, dim + 1)`` homogeneous matrix."""
        h = np.eye(self.dim + 1)
        h[: self.dim, : self.dim] = self.matrix
        return h

    @property
    def is_identity(self) -> bool:
        """Whether the map changes nothing."""
        return self.perm == tuple(range(self.dim)) and all(f == 1.0 for f in self.factors)

    @property
    def uniform_factor(self) -> float | None:
        """The common factor when all factors are equal, else None."""
        first = self.factors[0]
        return (
            first if all(np.isclose(f, first, rtol=1e-15, atol=0) for f in self.factors) else None
        )

    @property
    def permutation(self) -> Monomial:
        """The permutation part (all factors one)."""
        return Monomial(self.perm, (1.0,) * self.dim)

    def inverse(self) -> Monomial:
        """The inverse map."""
        inv = np.argsort(self.perm)
        return Monomial(tuple(int(i) for i in inv), tuple(1.0 / self.factors[i] for i in inv))

    def then(self, other: Monomial) -> Monomial:
        """The map applying ``self`` first, then ``other``."""
        if other.dim != self.dim:
            raise DimensionError(f"cannot chain a {self.dim}D and a {other.dim}D axis map")
        return Monomial(
            tuple(self.perm[other.perm[j]] for j in range(self.dim)),
            tuple(other.factors[j] * self.factors[other.perm[j]] for j in range(self.dim)),
        )

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map ``(..., dim)`` coordinates."""
        return np.asarray(values)[..., list(self.perm)] * np.asarray(self.factors)


@dataclass(frozen=True)
class Frame:
    """How points of one NGFF coordinate system become coframe coordinates.

    Parameters
    ----------
    system
        The NGFF coordinate system (axes in NGFF order).
    to_coframe
        The map from NGFF-order coordinates in the axes' units to coframe's
        order in the workspace unit.
    """

    system: CoordinateSystem
    to_coframe: Monomial

    @property
    def dim(self) -> int:
        """Number of axes."""
        return self.system.dim

    @classmethod
    def anonymous(cls, dim: int) -> Frame:
        """An unnamed space whose coordinates are used as they are (axes ``dim_0``...)."""
        axes = tuple(Axis(f"dim_{i}", "array") for i in range(dim))
        return cls(CoordinateSystem("", axes), Monomial.identity(dim))


def canonical_order(system: CoordinateSystem) -> tuple[int, ...]:
    """For each coframe coordinate, the index of the NGFF axis it takes.

    Axes named ``z``, ``y`` and ``x`` (any case) are put in that order, in the
    positions they occupy together; every other axis keeps its position. So
    ``[x, y, z]`` becomes ``(z, y, x)`` and ``[c, x, y]`` becomes ``(c, y, x)``.
    """
    names = [a.name.lower() for a in system.axes]
    spatial = [i for i, n in enumerate(names) if n in SPATIAL_ORDER and system.axes[i].is_length]
    if len({names[i] for i in spatial}) != len(spatial):
        return tuple(range(system.dim))
    ordered = sorted(spatial, key=lambda i: SPATIAL_ORDER.index(names[i]))
    perm = list(range(system.dim))
    for slot, source in zip(spatial, ordered, strict=True):
        perm[slot] = source
    return tuple(perm)


def coordinate_frame(
    system: CoordinateSystem, *, unit: str = "nanometer", file_unit: str | None = None
) -> Frame:
    """The map from coordinates in ``system`` to coframe's order and workspace unit.

    This is the one place where an NGFF axis order becomes numpy order (see
    :func:`canonical_order`) and where NGFF units become the workspace unit.
    Spatial axes are converted from their unit into ``unit``; a spatial axis
    without a unit takes ``file_unit`` (``file_unit == unit`` maps its numbers
    as they are). Other axes (array indices, time, channels) are left as they are.

    Parameters
    ----------
    system
        The NGFF coordinate system.
    unit
        The workspace length unit.
    file_unit
        Unit assumed for spatial axes that declare none.

    Raises
    ------
    UnitError
        If a spatial axis has an unknown unit, or has none and ``file_unit``
        is not given.
    """
    workspace = canonical_unit(unit, key="unit")
    factors = []
    for axis in system.axes:
        if not axis.is_length:
            factors.append(1.0)
            continue
        if axis.unit is None:
            if file_unit is None:
                raise UnitError(
                    f"axis {axis.name!r} of coordinate system {system.name!r} has no unit, and "
                    f"one is needed to place it in {workspace}: pass --unit with the unit of its "
                    f"numbers (one of {', '.join(NANOMETERS_PER_UNIT)}) or add a 'unit' to the axis"
                )
            source = canonical_unit(file_unit, key="file_unit")
        else:
            source = canonical_unit(
                axis.unit, key=f"coordinate system {system.name!r} axis {axis.name!r} unit"
            )
        factors.append(unit_factor(source, workspace))
    perm = canonical_order(system)
    return Frame(system, Monomial(perm, tuple(factors[i] for i in perm)))
