"""The demo's tissue as each modality sees it, rendered at any voxel size.

Each modality turns the tissue's stain (:mod:`coframe.demo.shading`) into intensity:

- FIB-SEM ``uint8`` (CellMap ``fibsem-uint8``): inverted from the raw
  backscatter so it reads like TEM: stain dark on a light background
  (membranes dark, resin light). :func:`render_em`.
- X-ray microCT: stain absorbs X-rays, so stained tissue is bright, resin
  darker, air darkest (inverted relative to the EM). :func:`xray_attenuation`.
- TEM sections: transmitted electrons, stain dark. :func:`render_tem`.

Renders proceed block by block, so memory stays bounded whatever the box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from coframe.demo.noise import noise_key, noise_points
from coframe.demo.render_grid import RENDER_BLOCK_VOXELS, RenderGrid
from coframe.demo.shading import (
    HC_MEAN,
    hc_blend,
    hc_fraction,
    mean_content,
    membranes,
    nucleus_shade,
    shade_block,
    shade_nuclei,
)
from coframe.demo.tissue import S_RESIN, Tissue


def render_grid(tissue: Tissue, grid: RenderGrid, *, window: float | None = None) -> np.ndarray:
    """Stain (float32) on any orthogonal grid, block by block.

    ``window`` is the partial-volume width (default: the largest grid step
    combined with the tissue's resolution).
    """
    w = (
        window
        if window is not None
        else math.hypot(float(grid.steps.max()), tissue.params.resolution)
    )
    out = np.empty(grid.shape, np.float32)
    for lo, hi in grid.blocks(RENDER_BLOCK_VOXELS if grid.aligned else RENDER_BLOCK_VOXELS >> 3):
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = shade_block(
            tissue, grid.sub(lo, hi), w
        )
    return out


def render_stain(
    tissue: Tissue,
    box_lo: Sequence[float],
    box_hi: Sequence[float],
    voxel_size: float | Sequence[float],
) -> np.ndarray:
    """Stain density (float32, z, y, x) of the voxels tiling the box [box_lo, box_hi] (nm)."""
    return render_grid(tissue, RenderGrid.from_box(box_lo, box_hi, voxel_size))


def em_from_stain(stain: np.ndarray) -> np.ndarray:
    """CellMap ``fibsem-uint8`` polarity (float): stain dark on a light background."""
    return 232.0 - 190.0 * stain


def render_em(
    tissue: Tissue,
    box_lo: Sequence[float],
    box_hi: Sequence[float],
    voxel_size: float | Sequence[float],
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """FIB-SEM-like ``uint8`` image of the box: membranes, envelope and chromatin dark.

    Parameters
    ----------
    tissue
        The sample.
    box_lo, box_hi
        Box corners (voxel edges), nm, (z, y, x).
    voxel_size
        Voxel size (nm), scalar or per axis.
    noise
        Standard deviation of additive Gaussian noise, in grey levels.
    seed
        Seed of the noise.
    """
    em = em_from_stain(render_stain(tissue, box_lo, box_hi, voxel_size))
    if noise > 0:
        em += np.random.default_rng(seed).normal(0.0, noise, em.shape).astype(np.float32)
    return np.clip(np.rint(em), 1, 255).astype(np.uint8)


def render_nucleus_labels(
    tissue: Tissue,
    box_lo: Sequence[float],
    box_hi: Sequence[float],
    voxel_size: float | Sequence[float],
) -> np.ndarray:
    """Nucleus instance ids (uint32, 0 = background) of the voxels of a box, at their centres."""
    grid = RenderGrid.from_box(box_lo, box_hi, voxel_size)
    labels = np.zeros(grid.shape, np.uint32)
    lo, hi = grid.bbox()
    r = tissue.nuc_radius[:, None]
    near = np.all((tissue.nuc_centre >= lo - r) & (tissue.nuc_centre <= hi + r), axis=1)
    shade_nuclei(tissue, grid, np.nonzero(near)[0], 0.0, None, labels)
    return labels


# --------------------------------------------------------------------------- points (X-ray)


def stain_at_points(tissue: Tissue, pts: np.ndarray, window: float) -> np.ndarray:
    """Stain at arbitrary points (N, 3) for coarse windows (X-ray voxels).

    Organelles and cytoplasmic grain enter through their mean stain, so this
    is meant for windows of a few hundred nanometres and more.
    """
    p, pts = tissue.params, np.asarray(pts, dtype=np.float64)
    i1, i2, db = tissue.cells_at(pts)
    base = mean_content(tissue, True, True)
    content = base[i1].astype(np.float32)
    dist = np.linalg.norm(pts - tissue.nuc_centre[i1], axis=1)
    sel = np.nonzero(tissue.has_nucleus[i1] & (dist < tissue.nuc_radius[i1] + window))[0]
    if len(sel):
        c = i1[sel]
        u = list(np.einsum("nji,nj->ni", tissue.nuc_rot[c], pts[sel] - tissue.nuc_centre[c]).T)
        blend = hc_blend(window, p.heterochromatin_scale)
        hc: np.ndarray | float = HC_MEAN
        if blend > 0:
            clumps = hc_fraction(
                noise_points(
                    noise_key(tissue.seed, "heterochromatin"), pts[sel], p.heterochromatin_scale
                )
            )
            hc = blend * clumps + (1 - blend) * HC_MEAN
        nl_off, nl_r = tissue.nucleolus_offset[c].T, tissue.nucleolus_radius[c]
        occ, stain, _ = nucleus_shade(u, tissue.nuc_axes[c].T, window, p, nl_off, nl_r, hc)
        content[sel] = stain + (1 - occ) * content[sel]
    tis, gap = tissue.tissue, float(np.mean(p.ecs_gap))
    content = membranes(db, tis[i1], tis[i2], content, base[i2], window, gap, p.membrane_thickness)
    outside = np.any((pts < tissue.lo) | (pts > tissue.hi), axis=1)
    return np.where(outside, S_RESIN, content).astype(np.float32)


def xray_attenuation(
    tissue: Tissue, pts: np.ndarray, voxel_size: float, *, chunk: int = 1 << 18
) -> np.ndarray:
    """Linear attenuation at points (N, 3): stained tissue bright, resin dim, air zero."""
    out = np.empty(len(pts), np.float32)
    for s in range(0, len(pts), chunk):
        q = np.asarray(pts[s : s + chunk], dtype=np.float64)
        mu = 0.30 + 1.0 * stain_at_points(tissue, q, voxel_size)
        out[s : s + chunk] = (
            mu if tissue.resin is None else mu * tissue.resin.coverage(q, voxel_size)
        )
    return out


def xray_image(
    mu: np.ndarray, *, psf_sigma: float = 0.7, noise: float = 0.03, seed: int = 0
) -> np.ndarray:
    """Scanner output (uint16) from attenuation: blur by the PSF (in voxels), add noise."""
    img = ndimage.gaussian_filter(mu.astype(np.float32), psf_sigma, mode="nearest")
    img += np.random.default_rng(seed).normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(np.rint(1000.0 + 30000.0 * img), 0, 65535).astype(np.uint16)


def render_tem(
    tissue: Tissue, grid: RenderGrid, *, gain: float = 24_000.0, noise: float = 0.02, seed: int = 0
) -> np.ndarray:
    """TEM image (uint16) of a section grid from :func:`section_render_grid`: stain dark.

    The stain is averaged through the section thickness (the depth samples)
    and turned into transmitted intensity ``gain * exp(-1.7 * stain)``;
    ``noise`` is relative, shot-like noise.
    """
    w = math.hypot(float(grid.steps[1:].max()), tissue.params.resolution)
    img = gain * np.exp(-1.7 * render_grid(tissue, grid, window=w).mean(axis=0))
    shot = (
        np.random.default_rng(seed).normal(0.0, 1.0, img.shape)
        * noise
        * np.sqrt(np.maximum(img * gain, 1e-6))
    )
    return np.clip(np.rint(img + shot + 200.0), 0, 65535).astype(np.uint16)


def add_grid_bars(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The TEM image behind the bars of its support grid: dark, flat bands across it.

    One bar along each axis, about 8 % of the side wide, at a random place
    (about a sixth of the area hidden), at the dark level of the detector
    with a little read noise.
    """
    out = image.copy()
    dark = np.clip(np.rint(rng.normal(205.0, 2.0, image.shape)), 0, None).astype(image.dtype)
    for axis in (0, 1):
        n = image.shape[axis]
        width = max(2, round(0.08 * n))
        start = int(rng.integers(n // 8, n - n // 8 - width))
        index = [slice(None), slice(None)]
        index[axis] = slice(start, start + width)
        out[tuple(index)] = dark[tuple(index)]
    return out
