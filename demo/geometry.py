"""Where the demo's FIB-SEM block sits in its X-ray scan: the geometry of a correlative experiment.

The X-ray microCT images the whole trimmed resin block; the FIB-SEM block is a
small part of it. :func:`demo_geometry` lays out one sample like that:

- the X-ray field of view is ``DemoSize.xray_fov`` (5 by default) block edges on every
  axis, in voxels of ``DemoSize.xray_voxel``;
- the block's centre lands off the field's centre, by 20-27% of the field
  along y and along x (either way) and 15% towards the top (z) so that the
  block sits just below the resin's top face, with air above it;
- the FIB-SEM -> X-ray map turns the block by 35-40 degrees about its milling
  axis (the FIB-SEM slice axis z, close to the X-ray z axis), tilts it by a few
  degrees and scales it by 1.04-1.065 (:func:`coframe.demo.truth.make_truth`);
- the trimmed resin block spans the middle of the field and holds the FIB-SEM
  block and the TEM sections cut next to it; the tissue fills an ellipsoid around the block and the
  region above its top face where the TEM sections are cut, spreading over
  much of the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coframe.demo.outputs import DemoSize
from coframe.demo.truth import GroundTruth, make_truth

#: Offsets of the block centre from the X-ray field's centre, in fields of view:
#: z (towards the top face) and the range of |y| and |x|.
OFFSET_Z = -0.15
OFFSET_YX = (0.18, 0.25)
#: Depth (in block edges) of the resin's top face above the FIB-SEM block.
FACE_ABOVE = 0.5
#: Largest normalised envelope radius of the points the tissue must cover.
ENVELOPE_FILL = 0.8


@dataclass(frozen=True)
class DemoGeometry:
    """The FIB-SEM block, the X-ray grid and the map between them (lengths in nm).

    ``block_lo``/``block_hi`` are the block's voxel edges in FIB-SEM
    physical space; the X-ray voxel centres are ``index * xray_voxel``
    (``xray_shape`` per axis); ``offset`` is where the block centre lands
    relative to the X-ray field's centre, before the warp; the remaining
    fields place the resin block and the tissue in FIB-SEM space.
    """

    block_lo: np.ndarray
    block_hi: np.ndarray
    xray_shape: tuple[int, int, int]
    xray_voxel: float
    offset: np.ndarray
    truth: GroundTruth
    face_z: float
    resin_centre_yx: tuple[float, float]
    resin_half_width_yx: tuple[float, float]
    tissue_lo: np.ndarray
    tissue_hi: np.ndarray
    envelope_centre: np.ndarray
    envelope_radii: np.ndarray

    @property
    def length(self) -> float:
        """Edge of the FIB-SEM block (nm)."""
        return float(self.block_hi[0] - self.block_lo[0])

    @property
    def fov(self) -> float:
        """Edge of the X-ray field of view (nm)."""
        return self.xray_shape[0] * self.xray_voxel


def demo_geometry(spec: DemoSize, rng: np.random.Generator) -> DemoGeometry:
    """Lay out the block, the X-ray scan, the resin and the tissue of one demo sample."""
    block_lo = np.full(3, -spec.em_voxel / 2)
    length = spec.block_voxels * spec.em_voxel
    block_hi = block_lo + length
    c_fib = (block_lo + block_hi) / 2
    v = spec.xray_voxel
    n_x = math.ceil(spec.xray_fov * length / v)
    fov = n_x * v
    c_xr = np.full(3, (n_x - 1) / 2 * v)
    offset = np.array([OFFSET_Z, *(rng.uniform(*OFFSET_YX, 2) * rng.choice([-1, 1], 2))]) * fov
    truth = make_truth(
        rng, c_fib, c_xr, fov, offset=offset, xray_voxel=v, field_nodes=spec.field_nodes
    )
    scale = float(np.mean(truth.scales))

    # the trimmed resin block: the smallest box (in the block's axes) holding both the middle
    # of the field and the FIB-SEM block with the sections cut next to it (air is X-ray only:
    # no section may reach beyond the resin)
    mid = truth.inverse(c_xr[None])[0, 1:]
    reach = 0.6 * length + 0.12 * length + 0.75 * spec.tem_pixels * spec.tem_pixel
    lo_yx = np.minimum(mid - 0.3 * fov / scale, c_fib[1:] - reach)
    hi_yx = np.maximum(mid + 0.3 * fov / scale, c_fib[1:] + reach)
    resin_c, half = (lo_yx + hi_yx) / 2, (hi_yx - lo_yx) / 2

    # the tissue: around the block and above its top face (where the sections are cut),
    # reaching towards the field's centre
    block_xr = c_xr + offset
    centre_xr = np.array([c_xr[0] + 0.1 * fov, *(0.5 * (c_xr[1:] + block_xr[1:]))])
    env_c = truth.inverse(centre_xr[None])[0]
    side = 0.5 * length + 0.5 * spec.tem_pixels * spec.tem_pixel
    must = np.array(
        [
            *(block_lo + np.array(c) * length for c in np.ndindex(2, 2, 2)),
            *(
                np.array([block_lo[0] - 0.15 * length, c_fib[1] + sy * side, c_fib[2] + sx * side])
                for sy in (-1, 1)
                for sx in (-1, 1)
            ),
        ]
    )
    radii = np.array([0.4, 0.42, 0.42]) * fov / scale
    reach = float(np.max(np.linalg.norm((must - env_c) / radii, axis=1)))
    radii *= max(1.0, reach / ENVELOPE_FILL)

    corners = truth.inverse(np.array(list(np.ndindex(2, 2, 2)), float) * fov - v / 2)
    return DemoGeometry(
        block_lo=block_lo,
        block_hi=block_hi,
        xray_shape=(n_x, n_x, n_x),
        xray_voxel=v,
        offset=offset,
        truth=truth,
        face_z=float(block_lo[0] - FACE_ABOVE * length),
        resin_centre_yx=(float(resin_c[0]), float(resin_c[1])),
        resin_half_width_yx=(float(half[0]), float(half[1])),
        tissue_lo=corners.min(axis=0) - 2000.0,
        tissue_hi=corners.max(axis=0) + 2000.0,
        envelope_centre=env_c,
        envelope_radii=radii,
    )
