"""Small images and matrices shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr


def blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 image of six Gaussian blobs on a grey floor (no zero padding)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    out = np.zeros(shape)
    for _ in range(6):
        centre = [rng.uniform(0, n) for n in shape]
        r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
        out += 150 * np.exp(-r2 / (2 * (min(shape) / 5) ** 2))
    return np.clip(out + 20, 0, 255).astype(np.uint8)


def rotation(axis: int, angle: float) -> np.ndarray:
    """3D rotation about one numpy axis."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def cellmap_pyramid(
    path: Path,
    data: np.ndarray,
    levels: int = 4,
    unit: str = "nanometer",
    zarr_format: int = 2,
) -> Path:
    """A hand-written OME-Zarr pyramid of 8 nm s0 with half-voxel offsets (CellMap convention).

    Zarr v2 gets OME-Zarr 0.4 metadata, Zarr v3 gets 0.5; chunks are 4^3.
    """
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=zarr_format)
    datasets = []
    for i in range(levels):
        f = 2**i
        level = np.ascontiguousarray(data[::f, ::f, ::f])
        group.create_array(f"s{i}", shape=level.shape, chunks=(4, 4, 4), dtype=level.dtype)[...] = (
            level
        )
        datasets.append(
            {
                "path": f"s{i}",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [8.0 * f] * 3},
                    {"type": "translation", "translation": [4.0 * (f - 1)] * 3},
                ],
            }
        )
    axes = [{"name": n, "type": "space", "unit": unit} for n in "zyx"]
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    else:
        group.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [{"axes": axes, "datasets": datasets}],
        }
    return path


def em_workspace(root: Path, workspace: str) -> np.ndarray:
    """A workspace at ``root`` (its ``coframe.yaml`` text given) with a 32^3 FIB-SEM
    pyramid ``fibsem.zarr`` and its labels ``nuc.zarr`` (id 5 on the bright half);
    returns the FIB-SEM array."""
    root.mkdir()
    (root / "coframe.yaml").write_text(workspace)
    em = (blobs((32, 32, 32), seed=3) * 255).astype(np.uint8)
    cellmap_pyramid(root / "fibsem.zarr", em, levels=3)
    cellmap_pyramid(root / "nuc.zarr", (em > 128).astype(np.uint32) * 5, levels=2)
    return em
