"""Nucleus phantoms: one tissue of round nuclei seen by an X-ray (bright blobs) and a FIB-SEM.

Nuclei sit on a jittered lattice in the MOVING (X-ray) frame, micrometres
apart like cells; the FIXED frame is the X-ray frame seen through a known
FIXED -> MOVING map. The FIXED side has a nucleus segmentation (some nuclei
missing) and an EM-like image (dark nuclei); the X-ray has every nucleus and
spurious blobs. Lengths are nanometres (the workspace unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from phantoms import write_image

from coframe.transforms.affine import Affine

UM = 1000.0


def rotation(z_deg: float, tilt_deg: float = 0.0) -> np.ndarray:
    """A turn about the z axis after a tilt about the y axis (z, y, x order)."""
    a, t = np.deg2rad(z_deg), np.deg2rad(tilt_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    return rz @ ry


def lattice(
    seed: int, lo: float, hi: float, spacing: float = 10 * UM, jitter: float = 0.25
) -> np.ndarray:
    """Nucleus centres: a jittered cubic lattice over [lo, hi]^3, 10% of cells without one."""
    rng = np.random.default_rng(seed)
    ticks = np.arange(lo + spacing / 2, hi - spacing / 4, spacing)
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid + rng.uniform(-jitter, jitter, grid.shape) * spacing
    return grid[rng.random(len(grid)) > 0.1]


def render(
    shape: tuple[int, int, int],
    voxel: float,
    centres: np.ndarray,
    radii: np.ndarray,
    values: np.ndarray,
    dtype: type = np.float32,
) -> np.ndarray:
    """Balls of the given values (ids or intensities) on a grid whose voxel 0 is at the origin."""
    out = np.zeros(shape, dtype)
    for c, r, v in zip(centres, radii, values, strict=True):
        lo = np.maximum(np.floor((c - r) / voxel).astype(int), 0)
        hi = np.minimum(np.ceil((c + r) / voxel).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        idx = np.indices(tuple(hi - lo)).reshape(3, -1).T + lo
        inside = (((idx * voxel - c) ** 2).sum(axis=1)) <= r * r
        sel = tuple(idx[inside].T)
        out[sel] = v
    return out


@dataclass(frozen=True)
class NucleiScene:
    """Files of one phantom and its truth."""

    xray: Path
    em: Path
    labels: Path
    truth: Affine  # FIXED -> MOVING
    fixed_centres: np.ndarray  # nuclei inside the fixed box (before dropping)


def make_scene(
    root: Path,
    truth: Affine,
    *,
    seed: int = 0,
    xray_um: int = 80,
    fixed_um: int = 48,
    voxel_um: float = 1.0,
    missing: float = 0.3,
    spurious: float = 0.2,
) -> NucleiScene:
    """Write the X-ray (moving), EM and labels (fixed) images of a phantom."""
    rng = np.random.default_rng(seed + 7)
    v = voxel_um * UM
    centres = lattice(seed, 0.0, xray_um * UM)
    radii = rng.uniform(2.6, 3.4, len(centres)) * UM
    scale = float(abs(np.linalg.det(truth.linear)) ** (1 / 3))
    fixed = truth.inverse().apply(centres)
    inside = np.all((fixed > 0) & (fixed < fixed_um * UM), axis=1)
    kept = inside & (rng.random(len(centres)) >= missing)
    n_fake = int(spurious * len(centres))
    fakes = rng.uniform(0, xray_um * UM, (n_fake, 3))
    far = np.min(np.linalg.norm(fakes[:, None] - centres[None], axis=2), axis=1) > 7 * UM
    fakes = fakes[far]
    shape_x = (int(xray_um / voxel_um),) * 3
    xray = render(
        shape_x,
        v,
        np.concatenate([centres, fakes]),
        np.concatenate([radii, rng.uniform(2.6, 3.4, len(fakes)) * UM]),
        np.full(len(centres) + len(fakes), 100.0),
    )
    xray += 20.0 + rng.normal(0, 12.0, shape_x).astype(np.float32)
    shape_f = (int(fixed_um / voxel_um),) * 3
    ids = np.arange(1, len(centres) + 1)
    labels = render(shape_f, v, fixed[kept], radii[kept] / scale, ids[kept], np.uint32)
    em = render(shape_f, v, fixed[inside], radii[inside] / scale, np.full(inside.sum(), 1.0))
    em = (200.0 - 120.0 * em + rng.normal(0, 10.0, shape_f)).clip(1, 255).astype(np.uint8)
    origin = np.zeros(3)
    return NucleiScene(
        write_image(root / "xray.zarr", xray, v, origin),
        write_image(root / "em.zarr", em, v, origin),
        write_image(root / "labels.zarr", labels, v, origin),
        truth,
        fixed[inside],
    )


def about(linear: np.ndarray, centre_um: float, shift_um: tuple[float, float, float]) -> Affine:
    """FIXED -> MOVING: ``linear`` about the fixed point ``centre_um``, then a shift."""
    c = np.full(3, centre_um * UM)
    return Affine.from_linear(linear, c + np.asarray(shift_um) * UM - linear @ c)
