"""A transform built from lower-dimensional transforms on subsets of axes (NGFF byDimension)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coframe.core.errors import DimensionError, NotInvertibleError, TransformError
from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform


def _indices(values: tuple[int, ...], dim: int, what: str) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out or any(v < 0 or v >= dim for v in out) or len(set(out)) != len(out):
        raise DimensionError(
            f"byDimension {what} axes {list(values)} must be distinct indices in 0..{dim - 1}"
        )
    return out


@dataclass(frozen=True, eq=False)
class ByDimension(Transform):
    """Lower-dimensional transforms acting on subsets of the axes.

    Part ``k`` reads the input coordinates ``input_axes[k]`` (in that order)
    and writes the output coordinates ``output_axes[k]``. Every output axis is
    written by exactly one part.

    Parameters
    ----------
    parts
        The transforms.
    input_axes
        For each part, the input axis indices it reads.
    output_axes
        For each part, the output axis indices it writes.
    dim_in
        Number of input coordinates.
    dim_out
        Number of output coordinates.

    Raises
    ------
    DimensionError
        If the axis lists do not fit the parts, or the output axes are not
        covered exactly once.
    """

    parts: tuple[Transform, ...]
    input_axes: tuple[tuple[int, ...], ...]
    output_axes: tuple[tuple[int, ...], ...]
    dim_in: int
    dim_out: int

    def __post_init__(self) -> None:
        parts = tuple(self.parts)
        if not parts or len(self.input_axes) != len(parts) or len(self.output_axes) != len(parts):
            raise DimensionError("byDimension needs one input and one output axis list per part")
        ins = tuple(_indices(a, self.dim_in, "input") for a in self.input_axes)
        outs = tuple(_indices(a, self.dim_out, "output") for a in self.output_axes)
        for k, (t, i, o) in enumerate(zip(parts, ins, outs, strict=True)):
            if not isinstance(t, Transform):
                raise TransformError(f"byDimension part {k} is not a transform")
            if t.input_dim != len(i) or t.output_dim != len(o):
                raise DimensionError(
                    f"byDimension part {k} ({type(t).__name__}, {t.input_dim}D -> "
                    f"{t.output_dim}D) does not fit input axes {list(i)} and output axes {list(o)}"
                )
        written = sorted(j for o in outs for j in o)
        if written != list(range(self.dim_out)):
            raise DimensionError(
                f"byDimension parts write output axes {written}: every one of the "
                f"{self.dim_out} output axes must be written exactly once"
            )
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "input_axes", ins)
        object.__setattr__(self, "output_axes", outs)
        object.__setattr__(self, "dim_in", int(self.dim_in))
        object.__setattr__(self, "dim_out", int(self.dim_out))

    @property
    def input_dim(self) -> int:
        return self.dim_in

    @property
    def output_dim(self) -> int:
        return self.dim_out

    def _apply(self, points: np.ndarray) -> np.ndarray:
        out = np.empty((points.shape[0], self.dim_out))
        for t, i, o in zip(self.parts, self.input_axes, self.output_axes, strict=True):
            out[:, list(o)] = t._apply(np.ascontiguousarray(points[:, list(i)]))
        return out

    def inverse(self) -> Transform:
        """The inverse, part by part.

        Raises
        ------
        NotInvertibleError
            If the parts do not read every input axis exactly once, or a
            part has no inverse.
        """
        read = sorted(j for i in self.input_axes for j in i)
        if self.dim_in != self.dim_out or read != list(range(self.dim_in)):
            raise NotInvertibleError(
                f"byDimension parts read input axes {read} of {self.dim_in}: the map is "
                "invertible only when every input axis is read exactly once"
            )
        return ByDimension(
            tuple(t.inverse() for t in self.parts),
            self.output_axes,
            self.input_axes,
            self.dim_out,
            self.dim_in,
        )

    def as_affine(self) -> Affine | None:
        matrix = np.zeros((self.dim_out, self.dim_in + 1))
        for t, i, o in zip(self.parts, self.input_axes, self.output_axes, strict=True):
            a = t.as_affine()
            if a is None:
                return None
            matrix[np.ix_(list(o), list(i))] = a.linear
            matrix[list(o), -1] = a.translation
        return Affine(matrix)

    def with_unit_scale(self, factor: float) -> ByDimension:
        return ByDimension(
            tuple(t.with_unit_scale(factor) for t in self.parts),
            self.input_axes,
            self.output_axes,
            self.dim_in,
            self.dim_out,
        )


def by_dimension(
    parts: tuple[Transform, ...],
    input_axes: tuple[tuple[int, ...], ...],
    output_axes: tuple[tuple[int, ...], ...],
    dim_in: int,
    dim_out: int,
) -> Transform:
    """A :class:`ByDimension`, or the single :class:`Affine` it equals when every part is linear."""
    combined = ByDimension(parts, input_axes, output_axes, dim_in, dim_out)
    affine = combined.as_affine()
    return combined if affine is None else affine
