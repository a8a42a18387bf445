"""The demo's ground truth: the FIB-SEM -> X-ray map and the section-plane fits.

The map is a rotation (mostly about the milling axis), a near-isotropic scale
and a shift, followed by a smooth warp held as a displacement grid in X-ray
space; the X-ray is rendered through its inverse, so the stored grid
reproduces it exactly (:mod:`coframe.demo.sample`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class GroundTruth:
    """The FIB-SEM -> X-ray point map: ``x = q + d(q)`` with ``q = matrix @ p + translation``.

    ``d`` is the trilinear interpolant of a displacement grid in X-ray
    physical space (nm, vectors with z, y, x components, vector axis last),
    clamped at its border. The X-ray was rendered through the inverse of this
    very map, so the stored grid reproduces it exactly.
    """

    matrix: np.ndarray
    translation: np.ndarray
    rotation_deg: np.ndarray
    scales: np.ndarray
    field: np.ndarray
    field_origin: np.ndarray
    field_spacing: np.ndarray

    def displacement(self, q: np.ndarray) -> np.ndarray:
        """Displacement vectors (N, 3) at X-ray-space points (N, 3)."""
        idx = ((np.asarray(q, float) - self.field_origin) / self.field_spacing).T
        comps = [
            ndimage.map_coordinates(self.field[..., k], idx, order=1, mode="nearest")
            for k in range(3)
        ]
        return np.stack(comps, -1)

    def forward(self, p: np.ndarray) -> np.ndarray:
        """FIB-SEM physical points (N, 3, nm) -> X-ray physical points (nm)."""
        q = np.asarray(p, float) @ self.matrix.T + self.translation
        return q + self.displacement(q)

    def inverse(self, x: np.ndarray, iterations: int = 12) -> np.ndarray:
        """X-ray physical points -> FIB-SEM physical points (fixed-point inversion of the warp)."""
        x = np.asarray(x, float)
        q = x.copy()
        for _ in range(iterations):
            q = x - self.displacement(q)
        return np.linalg.solve(self.matrix, (q - self.translation).T).T

    @property
    def warp_amplitude(self) -> float:
        """Largest displacement on the grid (nm)."""
        return float(np.linalg.norm(self.field, axis=-1).max())


def make_truth(
    rng: np.random.Generator,
    c_fib: np.ndarray,
    c_xr: np.ndarray,
    fov: float,
    *,
    offset: np.ndarray,
    xray_voxel: float,
    field_nodes: int,
) -> GroundTruth:
    """A random FIB-SEM -> X-ray map placing the block off-centre, turned and rescaled.

    The linear part is ``R @ diag(scales)``: a turn of 35-40 degrees (either
    way) about the FIB-SEM slice axis z (the milling axis, kept close to the
    X-ray z axis), tilts of 1-3 degrees about y and x, and a near-isotropic
    scale of 1.04-1.065 (the FIB-SEM voxel-size calibration is a few percent
    off the X-ray's), each axis within 0.4% of the others. A smooth warp
    peaking at 1.5 X-ray voxels follows.

    Parameters
    ----------
    rng
        Random generator of the sample.
    c_fib, c_xr
        Centres of the FIB-SEM block and of the X-ray volume (nm).
    fov
        X-ray field of view (nm), which the warp's grid covers.
    offset
        Where the block's centre lands relative to the X-ray centre (nm,
        z, y, x), before the warp.
    xray_voxel
        X-ray voxel size (nm): the warp peaks at 1.5 voxels.
    field_nodes
        Nodes of the displacement grid per axis.
    """
    angles = np.array([rng.uniform(35.0, 40.0), *rng.uniform(1.0, 3.0, 2)])
    angles *= rng.choice([-1, 1], 3)
    scales = (1.0 + rng.uniform(0.04, 0.065)) * (1.0 + rng.uniform(-0.002, 0.002, 3))
    # R = Rz @ Ry @ Rx built in (x, y, z) order, then written on (z, y, x) vectors
    rot = Rotation.from_euler("ZYX", angles, degrees=True).as_matrix()[::-1, ::-1]
    matrix = rot @ np.diag(scales)
    spacing = np.full(3, fov / (field_nodes - 3))
    origin = c_xr - fov / 2 - spacing
    axis = np.arange(field_nodes)
    nodes = np.stack(
        np.meshgrid(*[origin[k] + spacing[k] * axis for k in range(3)], indexing="ij"), -1
    )
    disp = np.zeros(nodes.shape)
    for _ in range(4):  # smooth bumps tens of µm wide
        centre, sigma = c_xr + rng.uniform(-0.4, 0.4, 3) * fov, rng.uniform(0.3, 0.5) * fov
        disp += np.exp(-np.sum((nodes - centre) ** 2, -1) / (2 * sigma**2))[..., None] * rng.normal(
            size=3
        )
    disp *= 1.5 * xray_voxel / np.linalg.norm(disp, axis=-1).max()
    field32 = disp.astype(np.float32).astype(float)  # exactly what is stored
    translation = c_xr + np.asarray(offset, float) - matrix @ c_fib
    return GroundTruth(matrix, translation, angles, scales, field32, origin, spacing)


def fit_affine_2d_to_3d(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares 3x3 matrix ``M`` with ``xyz ~ M @ [u, v, 1]``, and the largest residual."""
    design = np.column_stack([uv, np.ones(len(uv))])
    sol, *_ = np.linalg.lstsq(design, xyz, rcond=None)
    return sol.T, float(np.linalg.norm(design @ sol - xyz, axis=1).max())
