"""A procedural tissue in physical coordinates (nanometres), rendered at any voxel size.

The tissue is a function of position, deterministic from a seed: Voronoi-like
cells (seeds on a jittered lattice), membranes and a thin extracellular gap at
the cell boundaries, one ellipsoidal nucleus per cell (double nuclear envelope,
a heterochromatin rim, heterochromatin clumps and a nucleolus), mitochondria
(elongated blobs with a double membrane and cristae), vesicles, cytoplasmic
grain, resin-filled lumens and the resin around the tissue. Its value is a
*stain density* in [0, 1] (how much heavy metal a point holds); each modality
turns stain into intensity:

- FIB-SEM ``uint8`` (CellMap ``fibsem-uint8``): inverted from the raw
  backscatter so it reads like TEM: stain dark on a light background
  (membranes dark, resin light). :func:`render_em`.
- X-ray microCT: stain absorbs X-rays, so stained tissue is bright, resin
  darker, air darkest (inverted relative to the EM). :func:`xray_attenuation`.
- TEM sections: transmitted electrons, stain dark. :func:`render_tem`.

Rendering is band-limited rather than point-sampled: every thin layer
(membranes, envelope, organelle boundaries) is integrated over a window of
width ``w = hypot(voxel size, resolution)`` across the layer (partial volume),
small organelles keep their volume when they shrink below a voxel, and
textures finer than a voxel are averaged down. So a 1 µm X-ray voxel or a
128 nm label voxel sees the same tissue as an 8 nm EM voxel, only blurred.
Renders proceed block by block with vectorised numpy, so memory stays bounded
whatever the box.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from coframe.core.errors import DimensionError
from coframe.demo.noise import (
    coverage,
    ellipsoid_sd,
    hash01,
    noise_key,
    noise_points,
    noise_separable,
    random_rotations,
)

# stain density of each material (0 = clear resin, 1 = saturated stain)
S_RESIN = 0.03
S_ECS = 0.10
S_MEMBRANE = 0.90
S_LUMEN_SPACE = 0.22
S_NUCLEOPLASM = 0.42
S_HETEROCHROMATIN = 0.74
S_NUCLEOLUS = 0.68
S_MITO_MATRIX = 0.56
S_MITO_MEMBRANE = 0.86
S_VESICLE_LUMEN = 0.12

_BLOCK_VOXELS = 1 << 19  # samples per render block (memory bound)
_HC_MEAN = 0.22  # mean heterochromatin fraction of the clump field
_MITO_GAP = 12.0  # between the outer and inner mitochondrial membranes


@dataclass(frozen=True)
class TissueParams:
    """Physical parameters of the tissue (lengths in nanometres)."""

    cell_spacing: float = 10_000.0
    cell_jitter: float = 0.28
    nucleus_radius: tuple[float, float] = (2_000.0, 3_000.0)
    nucleus_probability: float = 0.9
    lumen_probability: float = 0.06
    membrane_thickness: float = 11.0
    ecs_gap: tuple[float, float] = (25.0, 70.0)
    envelope_thickness: float = 8.0
    perinuclear_gap: float = 30.0
    heterochromatin_rim: float = 200.0
    heterochromatin_scale: float = 350.0
    cytoplasm_stain: tuple[float, float] = (0.28, 0.42)
    grain_scale: float = 30.0
    grain_amplitude: float = 0.12
    mito_fraction: tuple[float, float] = (0.02, 0.10)
    mito_length: tuple[float, float] = (250.0, 600.0)
    mito_width: tuple[float, float] = (120.0, 200.0)
    mito_membrane: float = 7.0
    cristae_period: float = 90.0
    vesicle_density: float = 6.0
    vesicle_radius: tuple[float, float] = (20.0, 55.0)
    resolution: float = 6.0
    tile: float = 4_000.0

    def scaled(self, factor: float) -> TissueParams:
        """The same tissue with cells and nuclei ``factor`` times larger (organelles unchanged)."""
        f = float(factor)
        lo, hi = self.nucleus_radius
        return replace(self, cell_spacing=self.cell_spacing * f, nucleus_radius=(lo * f, hi * f))


@dataclass(frozen=True)
class ResinBlock:
    """The trimmed resin block: air above its face and beyond its sloped sides.

    Resin fills ``z >= face_z`` with ``|y - cy| <= half_width[0] + slope * (z - face_z)``
    (likewise for x); everything else is air.
    """

    face_z: float
    centre_yx: tuple[float, float]
    half_width_yx: tuple[float, float]
    slope: float = 0.3

    def coverage(self, pts: np.ndarray, width: float) -> np.ndarray:
        """Fraction of a window of ``width`` around each point (N, 3) that is resin."""
        depth = pts[:, 0] - self.face_z
        out = coverage(depth, 0.0, np.inf, width)
        for k in (0, 1):
            room = (
                self.half_width_yx[k]
                + self.slope * depth
                - np.abs(pts[:, k + 1] - self.centre_yx[k])
            )
            out = out * coverage(room / math.hypot(1.0, self.slope), 0.0, np.inf, width)
        return out


# --------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class Grid:
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
    ) -> Grid:
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

    def sub(self, lo: Sequence[int], hi: Sequence[int]) -> Grid:
        """The sub-block of indices [lo, hi)."""
        shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
        return Grid(self.origin + np.asarray(lo) @ self.axes, self.axes, shape)  # type: ignore[arg-type]

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
            out.append(_broadcast(terms))
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
        self, max_voxels: int = _BLOCK_VOXELS
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


def _broadcast(terms: list[np.ndarray]) -> np.ndarray:
    """Sum of three 1-D arrays broadcast over a 3-D block (float32)."""
    a, b, c = (np.asarray(t, dtype=np.float32) for t in terms)
    return (a[:, None] + b[None, :])[:, :, None] + c[None, None, :]


# --------------------------------------------------------------------------- the tissue


class Tissue:
    """A seeded procedural tissue defined everywhere in physical space (nm, z, y, x).

    Parameters
    ----------
    seed
        Determines every random choice.
    lo, hi
        Box (nm) where cells are instantiated; outside it the tissue is resin.
    params
        Physical parameters.
    envelope_centre, envelope_radii
        Ellipsoid (with a gentle wobble) holding the tissue: cells whose seed
        lies outside are resin. Default: centred in the box, radii 45% of it.
    resin
        Optional resin block outside which there is air (X-ray only).
    """

    def __init__(
        self,
        seed: int,
        lo: Sequence[float],
        hi: Sequence[float],
        *,
        params: TissueParams | None = None,
        envelope_centre: Sequence[float] | None = None,
        envelope_radii: Sequence[float] | None = None,
        resin: ResinBlock | None = None,
    ) -> None:
        self.seed = int(seed)
        self.params = params or TissueParams()
        self.lo, self.hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if self.lo.shape != (3,) or np.any(self.hi <= self.lo):
            raise DimensionError(
                f"tissue box {tuple(self.lo)}..{tuple(self.hi)}: expected a non-empty 3-D box"
            )
        centre = (self.lo + self.hi) / 2 if envelope_centre is None else envelope_centre
        radii = 0.45 * (self.hi - self.lo) if envelope_radii is None else envelope_radii
        self.envelope_centre, self.envelope_radii = (
            np.asarray(centre, float),
            np.asarray(radii, float),
        )
        self.resin = resin
        self._objects: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
        self._build_cells()

    def _u(self, name: str, idx: np.ndarray, k: int | None = None) -> np.ndarray:
        """Per-cell uniform numbers for one named quantity (component ``k``)."""
        return hash01(noise_key(self.seed, name if k is None else f"{name}{k}"), *idx.T)

    def _seed_positions(self, idx: np.ndarray) -> np.ndarray:
        jit = np.stack([self._u("jitter", idx, k) for k in range(3)], -1)
        return (idx + 0.5 + self.params.cell_jitter * (2 * jit - 1)) * self.params.cell_spacing

    def _build_cells(self) -> None:
        p, s = self.params, self.params.cell_spacing
        first, last = np.floor(self.lo / s).astype(int) - 1, np.floor(self.hi / s).astype(int) + 1
        idx = np.array(
            list(itertools.product(*[range(a, b + 1) for a, b in zip(first, last, strict=True)]))
        )
        n = len(idx)
        self.seeds = self._seed_positions(idx)
        self.tree = cKDTree(self.seeds)
        # nearest-neighbour distance from the 26 lattice neighbours (independent of the box)
        dnn = np.full(n, np.inf)
        for o in itertools.product((-1, 0, 1), repeat=3):
            if any(o):
                dnn = np.minimum(
                    dnn, np.linalg.norm(self._seed_positions(idx + o) - self.seeds, axis=1)
                )
        rel = (self.seeds - self.envelope_centre) / self.envelope_radii
        wobble = 0.08 * np.sin(self.seeds @ np.array([1.3, -0.7, 0.9]) / (2.5 * s) + self.seed % 7)
        inside = np.linalg.norm(rel, axis=1) + wobble < 1.0
        self.tissue = inside & (self._u("lumen", idx) >= p.lumen_probability)
        cyto = p.cytoplasm_stain[0] + np.ptp(p.cytoplasm_stain) * self._u("cyto", idx)
        self.cyto = np.where(self.tissue, cyto, S_RESIN)
        mito = p.mito_fraction[0] + np.ptp(p.mito_fraction) * self._u("mito", idx)
        self.mito_fraction = np.where(self.tissue, mito, 0.0)
        self.has_nucleus = self.tissue & (self._u("nuc", idx) < p.nucleus_probability)
        radius = p.nucleus_radius[0] + np.ptp(p.nucleus_radius) * self._u("na", idx)
        shape = np.stack(
            [np.ones(n), 0.78 + 0.22 * self._u("nb", idx), 0.62 + 0.25 * self._u("nc", idx)], -1
        )
        axes = radius[:, None] * shape
        margin = 400.0  # the nucleus and its partial-volume window stay inside its cell
        axes *= np.minimum(1.0, np.maximum(0.5 * dnn - margin, 300.0) / axes.max(axis=1))[:, None]
        self.nuc_rot = random_rotations(np.stack([self._u("nrot", idx, k) for k in range(3)], -1))
        off = np.stack([self._u("noff", idx, k) for k in range(3)], -1) * 2 - 1
        room = np.clip(0.5 * dnn - margin - axes.max(axis=1), 0.0, 0.3 * s) * self._u("noffr", idx)
        off *= (room / np.maximum(np.linalg.norm(off, axis=1), 1e-9))[:, None]
        self.nuc_centre, self.nuc_axes, self.nuc_radius = self.seeds + off, axes, axes.max(axis=1)
        nl = np.stack([self._u("nl", idx, k) for k in range(4)], -1)
        self.nucleolus_radius = (0.18 + 0.07 * nl[:, 3]) * axes.min(axis=1)
        self.nucleolus_offset = (nl[:, :3] * 2 - 1) * 0.35 * axes
        self.labels = np.where(self.has_nucleus, np.arange(1, n + 1), 0).astype(np.uint32)

    def nuclei(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label ids, centres (K, 3) and nucleolus centres (K, 3) of the nuclei in the box."""
        keep = self.has_nucleus & np.all(
            (self.nuc_centre >= self.lo) & (self.nuc_centre <= self.hi), axis=1
        )
        nucleolus = self.nuc_centre[keep] + np.einsum(
            "nij,nj->ni", self.nuc_rot[keep], self.nucleolus_offset[keep]
        )
        return self.labels[keep], self.nuc_centre[keep], nucleolus

    def candidates(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Seeds that can be the first or second nearest for some point of the box [lo, hi]."""
        near = np.linalg.norm(np.maximum(np.maximum(lo - self.seeds, self.seeds - hi), 0), axis=1)
        far = np.linalg.norm(np.maximum(np.abs(self.seeds - lo), np.abs(self.seeds - hi)), axis=1)
        cand = np.nonzero(near <= np.partition(far, 1)[1] + 1e-6)[0]
        return cand[np.argsort(near[cand])]

    def cells_at(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest cell, second-nearest cell and distance to their shared boundary (N points)."""
        d, i = self.tree.query(pts, k=2, workers=-1 if len(pts) > 100_000 else 1)
        gap = np.linalg.norm(self.seeds[i[:, 0]] - self.seeds[i[:, 1]], axis=1)
        return i[:, 0], i[:, 1], (d[:, 1] ** 2 - d[:, 0] ** 2) / (2 * gap)

    def nucleus_sd_at(self, pts: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """Signed distance (nm) to the nucleus of ``cell`` (inf where it has none)."""
        u = np.einsum("nji,nj->ni", self.nuc_rot[cell], pts - self.nuc_centre[cell])
        sd = ellipsoid_sd(u[:, 0], u[:, 1], u[:, 2], self.nuc_axes[cell].T)
        return np.where(self.has_nucleus[cell], sd, np.inf)

    def objects(self, kind: int, tile: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Organelles (0: mitochondria, 1: vesicles) whose centres fall in one tile (cached)."""
        hit = self._objects.get((kind, *tile))
        if hit is not None:
            return hit
        p = self.params
        rng = np.random.default_rng([self.seed, 101 + kind, *(t + (1 << 20) for t in tile)])
        vol = (p.tile / 1000.0) ** 3
        if kind == 0:
            mean_vol = 4 / 3 * np.pi * np.mean(p.mito_length) * np.mean(p.mito_width) ** 2 * 0.9e-9
            count = rng.poisson(max(p.mito_fraction) / mean_vol * vol)
        else:
            count = rng.poisson(p.vesicle_density * vol)
        centre = (np.asarray(tile) + rng.random((count, 3))) * p.tile
        if kind == 0:
            a = np.stack(
                [rng.uniform(*p.mito_length, count), *rng.uniform(*p.mito_width, (2, count))], -1
            )
            a[:, 2] *= rng.uniform(0.7, 1.0, count)
        else:
            a = np.repeat(rng.uniform(*p.vesicle_radius, count)[:, None], 3, axis=1)
        rot, phase, accept = (
            random_rotations(rng.random((count, 3))),
            rng.uniform(0, 2 * np.pi, count),
            rng.random(count),
        )
        ok = np.zeros(count, bool)
        if count:  # inside the cytoplasm of a tissue cell, clear of membranes and nucleus
            cell, _, db = self.cells_at(centre)
            r = a.max(axis=1) + 80.0
            ok = self.tissue[cell] & (db > r) & (self.nucleus_sd_at(centre, cell) > r)
            if kind == 0:
                ok &= accept < self.mito_fraction[cell] / max(p.mito_fraction)
        out = {"centre": centre[ok], "axes": a[ok], "rot": rot[ok], "phase": phase[ok]}
        self._objects[(kind, *tile)] = out
        return out

    def objects_near(
        self, kind: int, lo: np.ndarray, hi: np.ndarray, margin: float
    ) -> dict[str, np.ndarray]:
        """Organelles of one kind whose bounding spheres may reach the box [lo, hi]."""
        t = self.params.tile
        a, b = np.floor((lo - margin) / t).astype(int), np.floor((hi + margin) / t).astype(int)
        parts = [
            self.objects(kind, tuple(int(x) for x in a + tile)) for tile in np.ndindex(*(b - a + 1))
        ]
        merged = {
            k: np.concatenate([q[k] for q in parts]) for k in ("centre", "axes", "rot", "phase")
        }
        r = merged["axes"].max(axis=1, initial=0.0)[:, None] + margin
        near = np.all((merged["centre"] >= lo - r) & (merged["centre"] <= hi + r), axis=1)
        return {k: v[near] for k, v in merged.items()}


# --------------------------------------------------------------------------- shading pieces


def _hc_fraction(noise: np.ndarray) -> np.ndarray:
    """Heterochromatin fraction of the clump field."""
    return np.clip((noise - 0.35) / 0.9, 0.0, 1.0)


def _hc_blend(w: float, scale: float) -> float:
    """Weight of explicit heterochromatin clumps at window ``w`` (0: use the mean)."""
    return float(np.clip(1.5 - w / scale, 0.0, 1.0))


def _nucleus_shade(
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


def _membranes(
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


def _mito_mean_stain(p: TissueParams) -> float:
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


def _mean_content(tissue: Tissue, mito: bool, vesicles: bool) -> np.ndarray:
    """Per-cell cytoplasm stain, with organelles below the voxel size averaged in."""
    p, base = tissue.params, tissue.cyto.copy()
    if mito:
        base += tissue.mito_fraction * (_mito_mean_stain(p) - base)
    if vesicles:
        frac = p.vesicle_density * 4 / 3 * np.pi * np.mean(p.vesicle_radius) ** 3 * 1e-9
        base = np.where(tissue.tissue, base + frac * (S_VESICLE_LUMEN + 0.1 - base), base)
    return base


# --------------------------------------------------------------------------- grid rendering


def _nearest_two(
    tissue: Tissue, grid: Grid
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
        f = _broadcast(terms)
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
    tissue: Tissue, grid: Grid
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


def _block_noise(tissue: Tissue, grid: Grid, name: str, scale: float) -> np.ndarray:
    key = noise_key(tissue.seed, name)
    if grid.aligned:
        return noise_separable(key, grid.world_axes(), scale)
    return noise_points(key, grid.points(), scale).reshape(grid.shape)


def _shade_nuclei(
    tissue: Tissue,
    grid: Grid,
    cells: np.ndarray,
    w: float,
    content: np.ndarray | None,
    labels: np.ndarray | None,
) -> None:
    """Composite every nucleus of ``cells`` that reaches the block into ``content``/``labels``."""
    p = tissue.params
    blend = _hc_blend(w, p.heterochromatin_scale)
    for c in cells[tissue.has_nucleus[cells]]:
        lo, hi = grid.index_range(tissue.nuc_centre[c], tissue.nuc_radius[c] + w)
        if np.any(hi <= lo):
            continue
        sub, box = grid.sub(lo, hi), tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        u = sub.projections(tissue.nuc_rot[c].T, tissue.nuc_centre[c])
        if content is not None:
            hc: np.ndarray | float = _HC_MEAN
            if blend > 0:
                clumps = _hc_fraction(
                    _block_noise(tissue, sub, "heterochromatin", p.heterochromatin_scale)
                )
                hc = blend * clumps + (1 - blend) * _HC_MEAN
            nl_off, nl_r = tissue.nucleolus_offset[c], tissue.nucleolus_radius[c]
            occ, stain, sd = _nucleus_shade(u, tissue.nuc_axes[c], w, p, nl_off, nl_r, hc)
            content[box] = stain + (1 - occ) * content[box]
        else:
            sd = ellipsoid_sd(u[0], u[1], u[2], tissue.nuc_axes[c])
        if labels is not None:
            labels[box] = np.where(sd < 0, tissue.labels[c], labels[box])


def _splat_objects(tissue: Tissue, grid: Grid, kind: int, w: float, content: np.ndarray) -> None:
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


def _shade_block(tissue: Tissue, grid: Grid, w: float) -> np.ndarray:
    """Stain of one grid block at window ``w``."""
    p = tissue.params
    i1, i2, db, cells = _block_cells(tissue, grid)
    explicit_mito, explicit_ves = w <= 2.0 * p.mito_width[1], w <= 1.5 * p.vesicle_radius[1]
    base = _mean_content(tissue, not explicit_mito, not explicit_ves)
    content = base.astype(np.float32)[i1]
    grain = max(p.grain_scale, w)
    amp = p.grain_amplitude * (p.grain_scale / grain) ** 1.5  # grain averaged down to the window
    if amp >= 0.02:
        content += (
            amp * _block_noise(tissue, grid, f"grain{round(grain)}", grain) * tissue.tissue[i1]
        )
    _shade_nuclei(tissue, grid, cells, w, content, None)
    if explicit_mito:
        _splat_objects(tissue, grid, 0, w, content)
    if explicit_ves:
        _splat_objects(tissue, grid, 1, w, content)
    near = np.nonzero(db < 0.5 * p.ecs_gap[1] + p.membrane_thickness + 0.5 * w)  # boundary layers
    if len(near[0]):
        gap: np.ndarray | float = float(np.mean(p.ecs_gap))
        if w < p.ecs_gap[1]:
            noise = _block_noise(tissue, grid, "ecs", 1500.0)[near]
            gap = p.ecs_gap[0] + np.ptp(p.ecs_gap) * np.clip(0.5 + 0.35 * noise, 0, 1)
        a, b = i1[near], i2[near]
        tis = tissue.tissue
        content[near] = _membranes(
            db[near], tis[a], tis[b], content[near], base[b], w, gap, p.membrane_thickness
        )
    return content


def render_grid(tissue: Tissue, grid: Grid, *, window: float | None = None) -> np.ndarray:
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
    for lo, hi in grid.blocks(_BLOCK_VOXELS if grid.aligned else _BLOCK_VOXELS >> 3):
        out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = _shade_block(
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
    return render_grid(tissue, Grid.from_box(box_lo, box_hi, voxel_size))


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
    grid = Grid.from_box(box_lo, box_hi, voxel_size)
    labels = np.zeros(grid.shape, np.uint32)
    lo, hi = grid.bbox()
    r = tissue.nuc_radius[:, None]
    near = np.all((tissue.nuc_centre >= lo - r) & (tissue.nuc_centre <= hi + r), axis=1)
    _shade_nuclei(tissue, grid, np.nonzero(near)[0], 0.0, None, labels)
    return labels


# --------------------------------------------------------------------------- points (X-ray)


def stain_at_points(tissue: Tissue, pts: np.ndarray, window: float) -> np.ndarray:
    """Stain at arbitrary points (N, 3) for coarse windows (X-ray voxels).

    Organelles and cytoplasmic grain enter through their mean stain, so this
    is meant for windows of a few hundred nanometres and more.
    """
    p, pts = tissue.params, np.asarray(pts, dtype=np.float64)
    i1, i2, db = tissue.cells_at(pts)
    base = _mean_content(tissue, True, True)
    content = base[i1].astype(np.float32)
    dist = np.linalg.norm(pts - tissue.nuc_centre[i1], axis=1)
    sel = np.nonzero(tissue.has_nucleus[i1] & (dist < tissue.nuc_radius[i1] + window))[0]
    if len(sel):
        c = i1[sel]
        u = list(np.einsum("nji,nj->ni", tissue.nuc_rot[c], pts[sel] - tissue.nuc_centre[c]).T)
        blend = _hc_blend(window, p.heterochromatin_scale)
        hc: np.ndarray | float = _HC_MEAN
        if blend > 0:
            clumps = _hc_fraction(
                noise_points(
                    noise_key(tissue.seed, "heterochromatin"), pts[sel], p.heterochromatin_scale
                )
            )
            hc = blend * clumps + (1 - blend) * _HC_MEAN
        nl_off, nl_r = tissue.nucleolus_offset[c].T, tissue.nucleolus_radius[c]
        occ, stain, _ = _nucleus_shade(u, tissue.nuc_axes[c].T, window, p, nl_off, nl_r, hc)
        content[sel] = stain + (1 - occ) * content[sel]
    tis, gap = tissue.tissue, float(np.mean(p.ecs_gap))
    content = _membranes(db, tis[i1], tis[i2], content, base[i2], window, gap, p.membrane_thickness)
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


# --------------------------------------------------------------------------- TEM sections


def section_grid(
    centre: Sequence[float],
    e_y: Sequence[float],
    e_x: Sequence[float],
    shape: tuple[int, int],
    pixel_size: float,
    *,
    thickness: float = 70.0,
    depth_samples: int = 3,
) -> Grid:
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
    return Grid(origin - (depth_samples - 1) / 2 * dz * normal, axes, (depth_samples, *shape))


def render_tem(
    tissue: Tissue, grid: Grid, *, gain: float = 24_000.0, noise: float = 0.02, seed: int = 0
) -> np.ndarray:
    """TEM image (uint16) of a section grid from :func:`section_grid`: stain dark.

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
