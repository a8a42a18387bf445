"""The sampling grids the demo's tissue is rendered on: axis-aligned boxes and oblique sections.

A :class:`RenderGrid` holds sample positions ``origin + sum_k i_k * axes[k]``
with orthogonal (not necessarily axis-aligned) axes; it is unrelated to the
in-memory images of :mod:`coframe.registration.locate_search`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coframe.core.errors import DimensionError

#: Samples per render block (bounds the memory of one block).
RENDER_BLOCK_VOXELS = 1 << 19


@dataclass(frozen=True)
class RenderGrid:
    """Samples ``p(i) = origin + sum_k i_k * axes[k]`` on a block with orthogonal axes.

    ``axes`` rows are the physical step vectors of the three index axes
    (``diag(voxel_size)`` for an axis-aligned grid).
    """

    origin: np.ndarray
    axes: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def from_box(
        cls, lo: Sequence[float], hi: Sequence[float], voxel_size: float | Sequence[float]
    ) -> RenderGrid:
        """Voxels tiling the box [lo, hi] (voxel edges), centres at ``lo + (i + 1/2) v``."""
        lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
        v = np.broadcast_to(np.asarray(voxel_size, float), (3,))
        if lo_a.shape != (3,) or hi_a.shape != (3,) or np.any(v <= 0):
            raise DimensionError(
                f"box {tuple(lo_a)}..{tuple(hi_a)}, voxel {tuple(v)}: expected 3-D, positive"
            )
        shape = tuple(max(1, int(round(n))) for n in (hi_a - lo_a) / v)
        return cls(lo_a + v / 2, np.diag(v), shape)  # type: ignore[arg-type]

    @property
    def aligned(self) -> bool:
        """True if the index axes are the world axes (enables separable noise)."""
        return bool(np.all(self.axes == np.diag(np.diag(self.axes))))

    @property
    def steps(self) -> np.ndarray:
        """Physical length of one step along each index axis."""
        return np.linalg.norm(self.axes, axis=1)

    def sub(self, lo: Sequence[int], hi: Sequence[int]) -> RenderGrid:
        """The sub-block of indices [lo, hi)."""
        shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
        return RenderGrid(self.origin + np.asarray(lo) @ self.axes, self.axes, shape)  # type: ignore[arg-type]

    def world_axes(self) -> list[np.ndarray]:
        """For aligned grids: the 1-D physical coordinates along z, y and x."""
        return [self.origin[k] + np.arange(self.shape[k]) * self.axes[k, k] for k in range(3)]

    def points(self) -> np.ndarray:
        """All sample positions, (N, 3), C order."""
        return self.origin + np.indices(self.shape).reshape(3, -1).T.astype(np.float64) @ self.axes

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical bounding box of the sample positions."""
        corners = np.array(list(np.ndindex(2, 2, 2)), dtype=float) * (np.asarray(self.shape) - 1)
        pts = self.origin + corners @ self.axes
        return pts.min(axis=0), pts.max(axis=0)

    def projections(self, vectors: np.ndarray, offset: np.ndarray) -> list[np.ndarray]:
        """``(p - offset) . u`` for each row ``u`` of ``vectors``, as broadcast 3-D blocks."""
        out = []
        for u in vectors:
            terms = [np.arange(n) * float(self.axes[k] @ u) for k, n in enumerate(self.shape)]
            terms[0] = terms[0] + float((self.origin - offset) @ u)
            out.append(broadcast_sum(terms))
        return out

    def index_range(self, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Index box [lo, hi) of the samples within ``radius`` of ``centre`` along every axis."""
        c = (self.axes @ (centre - self.origin)) / self.steps**2
        r = radius / self.steps
        return (
            np.clip(np.ceil(c - r), 0, self.shape).astype(int),
            np.clip(np.floor(c + r) + 1, 0, self.shape).astype(int),
        )

    def blocks(
        self, max_voxels: int = RENDER_BLOCK_VOXELS
    ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Index blocks [lo, hi) of at most ``max_voxels`` samples covering the grid."""
        size = list(self.shape)
        while math.prod(size) > max_voxels:
            k = int(np.argmax(size))
            size[k] = max(1, size[k] // 2)
        starts = itertools.product(*[range(0, n, s) for n, s in zip(self.shape, size, strict=True)])
        return [
            (lo, tuple(min(a + s, n) for a, s, n in zip(lo, size, self.shape, strict=True)))
            for lo in starts
        ]


def broadcast_sum(terms: list[np.ndarray]) -> np.ndarray:
    """Sum of three 1-D arrays broadcast over a 3-D block (float32)."""
    a, b, c = (np.asarray(t, dtype=np.float32) for t in terms)
    return (a[:, None] + b[None, :])[:, :, None] + c[None, None, :]


def section_render_grid(
    centre: Sequence[float],
    e_y: Sequence[float],
    e_x: Sequence[float],
    shape: tuple[int, int],
    pixel_size: float,
    *,
    thickness: float = 70.0,
    depth_samples: int = 3,
) -> RenderGrid:
    """Sampling grid of a section: depth samples x rows x columns around a plane.

    Pixel ``(i, j)`` of the mid-plane sits at ``origin + i * pixel_size * e_y +
    j * pixel_size * e_x``, with the section centred on ``centre``; the depth
    samples span the section thickness along the normal.
    """
    ey, ex = (np.asarray(e, float) / np.linalg.norm(e) for e in (e_y, e_x))
    if abs(float(ey @ ex)) > 1e-9:
        raise DimensionError(f"section axes e_y={tuple(ey)} and e_x={tuple(ex)} must be orthogonal")
    normal, dz = np.cross(ey, ex), thickness / depth_samples
    origin = (
        np.asarray(centre, float)
        - (shape[0] - 1) / 2 * pixel_size * ey
        - (shape[1] - 1) / 2 * pixel_size * ex
    )
    axes = np.stack([dz * normal, pixel_size * ey, pixel_size * ex])
    return RenderGrid(origin - (depth_samples - 1) / 2 * dz * normal, axes, (depth_samples, *shape))


def squeezed(grid: RenderGrid, compression: float) -> RenderGrid:
    """A section grid whose rows (axis 1) lie ``1 / (1 - compression)`` farther apart, same centre.

    An image rendered on it is the section compressed by ``compression`` along
    its y axis, as a knife compresses a section along the cutting direction.
    """
    stretch = 1.0 / (1.0 - compression)
    axes = grid.axes.copy()
    axes[1] = axes[1] * stretch
    half = (grid.shape[1] - 1) / 2.0
    origin = grid.origin + half * grid.axes[1] - half * axes[1]
    return RenderGrid(origin, axes, grid.shape)
