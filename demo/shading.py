"""Stain of the demo's tissue at a given window: partial volume, organelles, block shading.

Rendering is band-limited rather than point-sampled: every thin layer
(membranes, envelope, organelle boundaries) is integrated over a window of
width ``w = hypot(voxel size, resolution)`` across the layer (partial volume),
small organelles keep their volume when they shrink below a voxel, and
textures finer than a voxel are averaged down. So a 1 µm X-ray voxel or a
128 nm label voxel sees the same tissue as an 8 nm EM voxel, only blurred.
:func:`shade_block` shades one block of a :class:`~coframe.demo.render_grid.RenderGrid`
with vectorised numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from coframe.demo.noise import coverage, ellipsoid_sd, noise_key, noise_points, noise_separable
from coframe.demo.render_grid import RenderGrid, broadcast_sum
from coframe.demo.tissue import (
    S_ECS,
    S_HETEROCHROMATIN,
    S_LUMEN_SPACE,
    S_MEMBRANE,
    S_MITO_MATRIX,
    S_MITO_MEMBRANE,
    S_NUCLEOLUS,
    S_NUCLEOPLASM,
    S_RESIN,
    S_VESICLE_LUMEN,
    Tissue,
    TissueParams,
)

#: Mean heterochromatin fraction of the clump field.
HC_MEAN = 0.22
_MITO_GAP = 12.0  # between the outer and inner mitochondrial membranes


# --------------------------------------------------------------------------- shading pieces


def hc_fraction(noise: np.ndarray) -> np.ndarray:
    """Heterochromatin fraction of the clump field."""
    return np.clip((noise - 0.35) / 0.9, 0.0, 1.0)


def hc_blend(w: float, scale: float) -> float:
    """Weight of explicit heterochromatin clumps at window ``w`` (0: use the mean)."""
    return float(np.clip(1.5 - w / scale, 0.0, 1.0))


def nucleus_shade(
    u: list[np.ndarray],
    a: Sequence,
    w: float,
    p: TissueParams,
    nl_off: Sequence,
    nl_r: float | np.ndarray,
    hc: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupancy, stain and signed distance of a nucleus in its principal frame.

    The layers (double envelope, heterochromatin rim) are evaluated only in
    the band of samples they can reach; deeper samples are pure interior.
    """
    sd = ellipsoid_sd(u[0], u[1], u[2], a)
    t, g = p.envelope_thickness, p.perinuclear_gap
    hc = np.broadcast_to(np.asarray(hc, dtype=np.float32), sd.shape)
    d_nl = (
        np.sqrt((u[0] - nl_off[0]) ** 2 + (u[1] - nl_off[1]) ** 2 + (u[2] - nl_off[2]) ** 2) - nl_r
    )
    nl = coverage(d_nl, -np.inf, 0.0, w)
    interior = (S_NUCLEOPLASM + (S_HETEROCHROMATIN - S_NUCLEOPLASM) * hc) * (
        1 - nl
    ) + S_NUCLEOLUS * nl
    depth = 2 * t + g + 1.65 * p.heterochromatin_rim + 0.5 * w
    occ = (sd <= -0.5 * w).astype(sd.dtype)
    stain = np.where(sd <= -depth, interior, 0.0).astype(sd.dtype)
    band = np.nonzero((sd > -depth) & (sd < 0.5 * w))
    s = sd[band]
    h = p.heterochromatin_rim * (0.35 + 1.3 * hc[band])  # the rim thickens at clumps
    occ[band] = coverage(s, -np.inf, 0.0, w)
    stain[band] = (
        (coverage(s, -t, 0.0, w) + coverage(s, -2 * t - g, -t - g, w)) * S_MEMBRANE
        + coverage(s, -t - g, -t, w) * S_LUMEN_SPACE
        + coverage(s, -2 * t - g - h, -2 * t - g, w) * S_HETEROCHROMATIN
        + coverage(s, -np.inf, -2 * t - g - h, w) * interior[band]
    )
    return occ, stain, sd


def membranes(
    db: np.ndarray,
    tis1: np.ndarray,
    tis2: np.ndarray,
    inside1: np.ndarray,
    inside2: np.ndarray,
    w: float,
    gap: np.ndarray | float,
    t: float,
) -> np.ndarray:
    """Stain across a cell boundary at distance ``db``: two membranes around a gap."""
    e = 0.5 * gap
    return (
        coverage(db, -e, e, w) * np.where(tis1 & tis2, S_ECS, S_RESIN)
        + coverage(db, e, e + t, w) * np.where(tis1, S_MEMBRANE, S_RESIN)
        + coverage(db, -e - t, -e, w) * np.where(tis2, S_MEMBRANE, S_RESIN)
        + coverage(db, e + t, np.inf, w) * inside1
        + coverage(db, -np.inf, -e - t, w) * inside2
    )


def mito_mean_stain(p: TissueParams) -> float:
    """Volume-averaged stain of a mitochondrion of mean size (its shells and matrix)."""
    a = np.array([np.mean(p.mito_length), np.mean(p.mito_width), 0.85 * np.mean(p.mito_width)])

    def within(depth: float) -> float:  # volume fraction within ``depth`` of the surface
        return float(1.0 - np.prod(1.0 - depth / a))

    t, g = p.mito_membrane, _MITO_GAP
    membranes = within(t) + within(2 * t + g) - within(t + g)
    gap = within(t + g) - within(t)
    return (
        membranes * S_MITO_MEMBRANE + gap * S_LUMEN_SPACE + (1 - within(2 * t + g)) * S_MITO_MATRIX
    )


def mean_content(tissue: Tissue, mito: bool, vesicles: bool) -> np.ndarray:
    """Per-cell cytoplasm stain, with organelles below the voxel size averaged in."""
    p, base = tissue.params, tissue.cyto.copy()
    if mito:
        base += tissue.mito_fraction * (mito_mean_stain(p) - base)
    if vesicles:
        frac = p.vesicle_density * 4 / 3 * np.pi * np.mean(p.vesicle_radius) ** 3 * 1e-9
        base = np.where(tissue.tissue, base + frac * (S_VESICLE_LUMEN + 0.1 - base), base)
    return base


# --------------------------------------------------------------------------- grid blocks


def _nearest_two(
    tissue: Tissue, grid: RenderGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest and second-nearest cell, boundary distance and the seeds tried, on a small block."""
    cand = tissue.candidates(*grid.bbox())
    seeds, shape = tissue.seeds[cand], grid.shape
    f1, f2, tmp = (np.full(shape, np.inf, np.float32) for _ in range(3))
    i1, i2 = np.zeros(shape, np.int16), np.zeros(shape, np.int16)
    m1, m2 = np.empty(shape, bool), np.empty(shape, bool)
    sq = [np.arange(n) ** 2 * float(grid.axes[j] @ grid.axes[j]) for j, n in enumerate(shape)]
    for k, c in enumerate(seeds):  # |p - c|^2 is separable on an orthogonal grid
        rel0 = grid.origin - c
        terms = [sq[j] + 2 * np.arange(n) * float(grid.axes[j] @ rel0) for j, n in enumerate(shape)]
        terms[0] = terms[0] + float(rel0 @ rel0)
        f = broadcast_sum(terms)
        np.less(f, f1, out=m1)
        np.less(f, f2, out=m2)
        np.minimum(f2, np.maximum(f, f1, out=tmp), out=f2)
        np.copyto(i2, k, where=m2)
        np.copyto(i2, i1, where=m1)
        np.copyto(i1, k, where=m1)
        np.minimum(f1, f, out=f1)
    dist = np.linalg.norm(seeds[:, None] - seeds[None], axis=-1).astype(np.float32)
    db = (f2 - f1) / (2 * np.maximum(dist[i1, i2], 1e-3))
    return cand[i1], cand[i2], np.maximum(db, 0.0), cand


def _block_cells(
    tissue: Tissue, grid: RenderGrid
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest, second-nearest cell, boundary distance and candidate cells on a block.

    The block is cut into pieces about a third of a cell across, so that only
    a handful of seeds compete in each piece.
    """
    parts = np.maximum(
        1, np.ceil(grid.steps * grid.shape / (tissue.params.cell_spacing / 3))
    ).astype(int)
    if np.all(parts == 1):
        return _nearest_two(tissue, grid)
    cuts = [
        np.linspace(0, n, m + 1).round().astype(int) for n, m in zip(grid.shape, parts, strict=True)
    ]
    i1, i2 = np.empty(grid.shape, np.int64), np.empty(grid.shape, np.int64)
    db, tried = np.empty(grid.shape, np.float32), []
    for idx in np.ndindex(*parts):
        lo, hi = (
            [int(cuts[k][idx[k]]) for k in range(3)],
            [int(cuts[k][idx[k] + 1]) for k in range(3)],
        )
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        i1[box], i2[box], db[box], cand = _nearest_two(tissue, grid.sub(lo, hi))
        tried.append(cand)
    return i1, i2, db, np.unique(np.concatenate(tried))


def _block_noise(tissue: Tissue, grid: RenderGrid, name: str, scale: float) -> np.ndarray:
    key = noise_key(tissue.seed, name)
    if grid.aligned:
        return noise_separable(key, grid.world_axes(), scale)
    return noise_points(key, grid.points(), scale).reshape(grid.shape)


def shade_nuclei(
    tissue: Tissue,
    grid: RenderGrid,
    cells: np.ndarray,
    w: float,
    content: np.ndarray | None,
    labels: np.ndarray | None,
) -> None:
    """Composite every nucleus of ``cells`` that reaches the block into ``content``/``labels``."""
    p = tissue.params
    blend = hc_blend(w, p.heterochromatin_scale)
    for c in cells[tissue.has_nucleus[cells]]:
        lo, hi = grid.index_range(tissue.nuc_centre[c], tissue.nuc_radius[c] + w)
        if np.any(hi <= lo):
            continue
        sub, box = grid.sub(lo, hi), tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        u = sub.projections(tissue.nuc_rot[c].T, tissue.nuc_centre[c])
        if content is not None:
            hc: np.ndarray | float = HC_MEAN
            if blend > 0:
                clumps = hc_fraction(
                    _block_noise(tissue, sub, "heterochromatin", p.heterochromatin_scale)
                )
                hc = blend * clumps + (1 - blend) * HC_MEAN
            nl_off, nl_r = tissue.nucleolus_offset[c], tissue.nucleolus_radius[c]
            occ, stain, sd = nucleus_shade(u, tissue.nuc_axes[c], w, p, nl_off, nl_r, hc)
            content[box] = stain + (1 - occ) * content[box]
        else:
            sd = ellipsoid_sd(u[0], u[1], u[2], tissue.nuc_axes[c])
        if labels is not None:
            labels[box] = np.where(sd < 0, tissue.labels[c], labels[box])


def splat_objects(
    tissue: Tissue, grid: RenderGrid, kind: int, w: float, content: np.ndarray
) -> None:
    """Composite explicit organelles of one kind into ``content``, keeping their volume.

    Each object is shaded over its whole bounding box on the grid's lattice (so
    that its volume correction is the same in every block it straddles); only
    the samples inside the block are composited.
    """
    p = tissue.params
    obj = tissue.objects_near(kind, *grid.bbox(), w)
    n_obj, steps, shape = len(obj["centre"]), grid.steps, np.asarray(grid.shape)
    basis = np.einsum("ka,nar->nkr", grid.axes / steps[:, None], obj["rot"])  # axis k . principal r
    half = (np.sqrt(np.einsum("nkr,nr->nk", basis**2, obj["axes"] ** 2)) + 0.5 * w) / steps
    c_idx = ((obj["centre"] - grid.origin) @ grid.axes.T) / steps**2
    lo_i = np.ceil(c_idx - half).astype(np.int64)
    dims = np.floor(c_idx + half).astype(np.int64) + 1 - lo_i
    sizes = dims.prod(axis=1)
    keep = np.nonzero(np.all((lo_i < shape) & (lo_i + dims > 0), axis=1) & (sizes > 0))[0]
    if not n_obj or not len(keep):
        return
    columns = [
        c_idx - lo_i,
        (basis * steps[None, :, None]).reshape(n_obj, 9),
        obj["axes"],
        obj["phase"],
    ]
    table = np.column_stack(columns).astype(np.float32)
    true_vol = 4 / 3 * np.pi * obj["axes"].prod(axis=1)
    size = math.prod(grid.shape)
    occ_acc, stain_acc = np.zeros(size), np.zeros(size)
    mtf = max(0.0, float(np.sinc(w / p.cristae_period)))
    t_m, gap_m = p.mito_membrane, _MITO_GAP
    start = 0
    while start < len(keep):  # batches of about half a million samples
        count = np.searchsorted(np.cumsum(sizes[keep[start:]]), 1 << 19, side="right")
        ids, start = keep[start : start + max(1, int(count))], start + max(1, int(count))
        n_el = sizes[ids]
        owner = np.repeat(np.arange(len(ids), dtype=np.int32), n_el)
        offset = np.arange(int(n_el.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(n_el) - n_el, n_el
        )
        d = np.repeat(dims[ids], n_el, axis=0)
        ix = [offset // d[:, 2] // d[:, 1], offset // d[:, 2] % d[:, 1], offset % d[:, 2]]
        par = np.repeat(table[ids], n_el, axis=0)
        rel = [ix[k].astype(np.float32) - par[:, k] for k in range(3)]
        u = [
            rel[0] * par[:, 3 + r] + rel[1] * par[:, 6 + r] + rel[2] * par[:, 9 + r]
            for r in range(3)
        ]
        sd = ellipsoid_sd(u[0], u[1], u[2], (par[:, 12], par[:, 13], par[:, 14]))
        occ = coverage(sd, -np.inf, 0.0, w)
        if kind == 0:
            core = S_MITO_MATRIX + 0.16 * mtf * np.cos(
                2 * np.pi * u[0] / p.cristae_period + par[:, 15]
            )
            stain = (
                (coverage(sd, -t_m, 0.0, w) + coverage(sd, -2 * t_m - gap_m, -t_m - gap_m, w))
                * S_MITO_MEMBRANE
                + coverage(sd, -t_m - gap_m, -t_m, w) * S_LUMEN_SPACE
                + coverage(sd, -np.inf, -2 * t_m - gap_m, w) * core
            )
        else:
            t = p.membrane_thickness
            stain = (
                coverage(sd, -t, 0.0, w) * S_MEMBRANE
                + coverage(sd, -np.inf, -t, w) * S_VESICLE_LUMEN
            )
        # volume preservation: an object below voxel size keeps its integrated stain
        seen = np.bincount(owner, weights=occ, minlength=len(ids)) * float(np.prod(steps))
        fix = np.where(seen > 0, np.clip(true_vol[ids] / np.maximum(seen, 1e-9), 0.0, 4.0), 0.0)
        g = [np.repeat(lo_i[ids, k], n_el) + ix[k] for k in range(3)]
        inside = np.nonzero(
            (g[0] >= 0)
            & (g[0] < shape[0])
            & (g[1] >= 0)
            & (g[1] < shape[1])
            & (g[2] >= 0)
            & (g[2] < shape[2])
        )
        flat = (g[0][inside] * shape[1] + g[1][inside]) * shape[2] + g[2][inside]
        weight = fix.astype(np.float32)[owner[inside]]
        occ_acc += np.bincount(flat, weights=occ[inside] * weight, minlength=size)
        stain_acc += np.bincount(flat, weights=stain[inside] * weight, minlength=size)
    occ_b = occ_acc.reshape(grid.shape)
    content *= (1.0 - np.minimum(occ_b, 1.0)).astype(content.dtype)
    content += (stain_acc.reshape(grid.shape) / np.maximum(occ_b, 1.0)).astype(content.dtype)


def shade_block(tissue: Tissue, grid: RenderGrid, w: float) -> np.ndarray:
    """Stain of one grid block at window ``w``."""
    p = tissue.params
    i1, i2, db, cells = _block_cells(tissue, grid)
    explicit_mito, explicit_ves = w <= 2.0 * p.mito_width[1], w <= 1.5 * p.vesicle_radius[1]
    base = mean_content(tissue, not explicit_mito, not explicit_ves)
    content = base.astype(np.float32)[i1]
    grain = max(p.grain_scale, w)
    amp = p.grain_amplitude * (p.grain_scale / grain) ** 1.5  # grain averaged down to the window
    if amp >= 0.02:
        content += (
            amp * _block_noise(tissue, grid, f"grain{round(grain)}", grain) * tissue.tissue[i1]
        )
    shade_nuclei(tissue, grid, cells, w, content, None)
    if explicit_mito:
        splat_objects(tissue, grid, 0, w, content)
    if explicit_ves:
        splat_objects(tissue, grid, 1, w, content)
    near = np.nonzero(db < 0.5 * p.ecs_gap[1] + p.membrane_thickness + 0.5 * w)  # boundary layers
    if len(near[0]):
        gap: np.ndarray | float = float(np.mean(p.ecs_gap))
        if w < p.ecs_gap[1]:
            noise = _block_noise(tissue, grid, "ecs", 1500.0)[near]
            gap = p.ecs_gap[0] + np.ptp(p.ecs_gap) * np.clip(0.5 + 0.35 * noise, 0, 1)
        a, b = i1[near], i2[near]
        tis = tissue.tissue
        content[near] = membranes(
            db[near], tis[a], tis[b], content[near], base[b], w, gap, p.membrane_thickness
        )
    return content
