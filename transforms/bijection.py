"""A transform paired with an explicitly given inverse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coframe.core.errors import DimensionError, TransformError
from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform


@dataclass(frozen=True, eq=False)
class Bijection(Transform):
    """A forward map and its inverse, both stored (e.g. a field and its inverse field).

    ``apply`` uses ``forward``; ``inverse()`` swaps the two without any
    numerical inversion. The pair is trusted to be mutually inverse.

    Parameters
    ----------
    forward
        The map applied by :meth:`apply`.
    inverse
        The map from the forward output space back to its input space.

    Raises
    ------
    DimensionError
        If the dimensions of the two maps do not mirror each other.
    """

    forward: Transform
    inverse_transform: Transform

    def __init__(self, forward: Transform, inverse: Transform) -> None:
        object.__setattr__(self, "forward", forward)
        object.__setattr__(self, "inverse_transform", inverse)
        self.__post_init__()

    def __post_init__(self) -> None:
        for name, t in (("forward", self.forward), ("inverse", self.inverse_transform)):
            if not isinstance(t, Transform):
                raise TransformError(
                    f"Bijection {name} must be a transform, got {type(t).__name__}"
                )
        f, i = self.forward, self.inverse_transform
        if f.input_dim != i.output_dim or f.output_dim != i.input_dim:
            raise DimensionError(
                f"Bijection forward {f.input_dim}D -> {f.output_dim}D does not mirror inverse "
                f"{i.input_dim}D -> {i.output_dim}D"
            )

    @property
    def input_dim(self) -> int:
        return self.forward.input_dim

    @property
    def output_dim(self) -> int:
        return self.forward.output_dim

    def _apply(self, points: np.ndarray) -> np.ndarray:
        return self.forward._apply(points)

    def inverse(self) -> Bijection:
        return Bijection(self.inverse_transform, self.forward)

    def as_affine(self) -> Affine | None:
        return self.forward.as_affine()

    def with_unit_scale(self, factor: float) -> Bijection:
        return Bijection(
            self.forward.with_unit_scale(factor), self.inverse_transform.with_unit_scale(factor)
        )
