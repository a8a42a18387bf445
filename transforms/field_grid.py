"""A displacement field behind an affine, evaluated at every voxel centre of a 3D grid (compiled).

Resampling through ``post(f(pre(p)))``, ``f(q) = q + u(q)`` a
:class:`~coframe.transforms.field.DisplacementField` with linear
interpolation, needs ``f(pre(p)) - p`` at every voxel centre ``p`` of a
piece. :func:`field_displacement_on_grid` gives it, vectors in ITK order
(x, y, z) as the resampling kernel reads them: ``pre(p)`` is summed from one
row per axis, and ``u`` interpolated trilinearly between the 8 nodes around
each point, the index clamped to the grid as ``DisplacementField`` does
(ITK's linear interpolator agrees wherever the field covers the point).
Only the block of nodes the grid reaches is read (a lazy field reads no more).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coframe.core.jit import cached_jit
from coframe.transforms.field import DisplacementField


@cached_jit(nogil=True, boundscheck=False)
def _trilinear(along_z, along_y, along_x, translation, lz, ly, lx, block, lo, upper, inv, base,
               out):  # pragma: no cover - compiled  # fmt: skip
    """``q + u(q) - p`` with ``q = pre(p)``, (x, y, z) order, for every voxel of ``out``.

    ``along_*`` hold each axis' row of the affine times the voxel centres,
    ``l*`` the centres themselves; ``block`` the nodes from ``lo`` on,
    ``upper`` the grid's last index; ``inv`` ``1 / spacing`` and ``base``
    the field's origin.
    """
    nz, ny, nx = out.shape[0], out.shape[1], out.shape[2]
    bz, by, bx = block.shape[0] - 1, block.shape[1] - 1, block.shape[2] - 1
    row = np.empty(3)
    for z in range(nz):
        for y in range(ny):
            for a in range(3):
                row[a] = along_z[z, a] + along_y[y, a] + translation[a]
            for x in range(nx):
                qz = row[0] + along_x[x, 0]
                qy = row[1] + along_x[x, 1]
                qx = row[2] + along_x[x, 2]
                cz = min(max((qz - base[0]) * inv[0], 0.0), upper[0])
                cy = min(max((qy - base[1]) * inv[1], 0.0), upper[1])
                cx = min(max((qx - base[2]) * inv[2], 0.0), upper[2])
                kz, ky, kx = int(cz), int(cy), int(cx)  # c >= 0: truncation is floor
                fz, fy, fx = cz - kz, cy - ky, cx - kx
                z0 = min(kz - lo[0], bz)
                y0 = min(ky - lo[1], by)
                x0 = min(kx - lo[2], bx)
                z1 = min(min(kz + 1, upper[0]) - lo[0], bz)
                y1 = min(min(ky + 1, upper[1]) - lo[1], by)
                x1 = min(min(kx + 1, upper[2]) - lo[2], bx)
                for a in range(3):
                    v00 = block[z0, y0, x0, a] + (block[z0, y0, x1, a] - block[z0, y0, x0, a]) * fx
                    v01 = block[z0, y1, x0, a] + (block[z0, y1, x1, a] - block[z0, y1, x0, a]) * fx
                    v10 = block[z1, y0, x0, a] + (block[z1, y0, x1, a] - block[z1, y0, x0, a]) * fx
                    v11 = block[z1, y1, x0, a] + (block[z1, y1, x1, a] - block[z1, y1, x0, a]) * fx
                    v0 = v00 + (v01 - v00) * fy
                    v1 = v10 + (v11 - v10) * fy
                    u = v0 + (v1 - v0) * fz
                    if a == 0:
                        out[z, y, x, 2] = qz + u - lz[z]
                    elif a == 1:
                        out[z, y, x, 1] = qy + u - ly[y]
                    else:
                        out[z, y, x, 0] = qx + u - lx[x]


def field_displacement_on_grid(
    field: DisplacementField,
    linear: np.ndarray,
    translation: np.ndarray,
    origin: Sequence[float],
    voxel_size: Sequence[float],
    shape: Sequence[int],
) -> np.ndarray:
    """``field(linear p + translation) - p`` at a 3D grid's voxel centres, as (x, y, z) vectors.

    Parameters
    ----------
    field
        A 3D displacement field with linear interpolation.
    linear, translation
        The affine applied to the grid's points first (numpy order).
    origin, voxel_size, shape
        The grid (numpy order), physical.
    """
    shape = tuple(int(n) for n in shape)
    linear = np.asarray(linear, dtype=np.float64)
    translation = np.ascontiguousarray(translation, dtype=np.float64)
    axes = [
        float(o) + np.arange(n) * float(v)
        for o, v, n in zip(origin, voxel_size, shape, strict=True)
    ]
    along = [np.ascontiguousarray(a[:, None] * linear[:, k]) for k, a in enumerate(axes)]
    # the nodes the grid reaches: pre(p) over the grid's corners (an affine image of a box)
    ends = [np.stack([along[k][0], along[k][-1]]) for k in range(3)]
    corners = ends[0][:, None, None] + ends[1][None, :, None] + ends[2][None, None, :]
    corners = corners.reshape(-1, 3) + translation
    upper = np.asarray(field.grid_shape, dtype=np.float64) - 1.0
    index = np.clip((corners - field.origin) / field.spacing, 0.0, upper)
    lo = np.floor(index.min(axis=0)).astype(np.int64)
    hi = np.minimum(np.floor(index.max(axis=0)).astype(np.int64) + 2, field.grid_shape)
    block = np.ascontiguousarray(field.nodes(lo, hi))
    out = np.empty((*shape, 3))
    _trilinear(
        *along, translation, *axes, block, lo, upper.astype(np.int64),
        1.0 / field.spacing, np.ascontiguousarray(field.origin, dtype=np.float64), out,
    )  # fmt: skip
    return out
