"""Small multimodal phantoms with known transforms, written as OME-Zarr images.

A scene is a smooth sum of random ellipsoidal blobs in physical space. The
fixed image samples it directly; the moving image samples it through the
inverse of a known FIXED -> MOVING map with another, inverted intensity
response and noise (a second modality).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.base import Transform


@dataclass(frozen=True)
class Scene:
    """Blobs: centres (K, 3), radii (K, 3), weights (K,)."""

    centres: np.ndarray
    radii: np.ndarray
    weights: np.ndarray

    @classmethod
    def random(cls, seed: int, lo: np.ndarray, hi: np.ndarray, count: int = 40) -> Scene:
        rng = np.random.default_rng(seed)
        size = hi - lo
        centres = lo + rng.uniform(0.15, 0.85, (count, 3)) * size
        radii = rng.uniform(0.05, 0.14, (count, 3)) * size.min()
        weights = rng.uniform(0.4, 1.0, count) * rng.choice([-1.0, 1.0], count, p=[0.3, 0.7])
        return cls(centres, radii, weights)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        out = np.zeros(points.shape[0])
        for c, r, w in zip(self.centres, self.radii, self.weights, strict=True):
            d2 = (((points - c) / r) ** 2).sum(axis=1)
            out += w / (1.0 + np.exp(np.minimum(6.0 * (np.sqrt(d2) - 1.0), 50.0)))
        return out


def grid_points(shape: tuple[int, ...], voxel: float, origin: np.ndarray) -> np.ndarray:
    axes = [origin[a] + voxel * np.arange(n) for a, n in enumerate(shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))


def render(
    scene: Scene,
    shape: tuple[int, ...],
    voxel: float,
    origin: np.ndarray,
    *,
    to_scene: Transform | None = None,
    response: Callable[[np.ndarray], np.ndarray] = lambda v: 60 + 120 * v,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Sample ``response(scene(to_scene(p)))`` on a grid, plus Gaussian noise, as uint8."""
    points = grid_points(shape, voxel, origin)
    if to_scene is not None:
        points = to_scene.apply(points)
    values = response(scene(points)).reshape(shape)
    values = values + np.random.default_rng(seed).normal(0.0, noise, shape)
    return np.clip(values, 1, 255).astype(np.uint8)


def inverted(v: np.ndarray) -> np.ndarray:
    """A second modality's response: contrast inverted and compressed."""
    return 200 - 90 * v - 25 * v**2


def write_image(
    path: Path, array: np.ndarray, voxel: float, origin: np.ndarray, levels: int = 1
) -> Path:
    """Write an OME-Zarr pyramid (nm) with ``levels`` levels."""
    writer = create_ome_zarr(
        path,
        shape0=array.shape,
        voxel_size0=(voxel,) * 3,
        origin0=tuple(float(v) for v in origin),
        dtype=array.dtype,
        chunks=(32, 32, 32),
        n_levels=levels,
    )
    writer.write(0, (0, 0, 0), array)
    for level in range(levels - 1):
        writer.downsample_level(level)
    writer.write_metadata()
    return path
