"""The procedural tissue of the demo, in physical coordinates (nanometres).

The tissue is a function of position, deterministic from a seed: Voronoi-like
cells (seeds on a jittered lattice), membranes and a thin extracellular gap at
the cell boundaries, one ellipsoidal nucleus per cell (double nuclear envelope,
a heterochromatin rim, heterochromatin clumps and a nucleolus), mitochondria
(elongated blobs with a double membrane and cristae), vesicles, cytoplasmic
grain, resin-filled lumens and the resin around the tissue. Its value is a
*stain density* in [0, 1] (how much heavy metal a point holds); the materials'
densities are the ``S_*`` constants. :mod:`coframe.demo.shading` turns the
geometry into stain at a given voxel size, :mod:`coframe.demo.render` into
each modality's image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from coframe.core.errors import DimensionError
from coframe.demo.noise import coverage, ellipsoid_sd, hash01, noise_key, random_rotations

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
