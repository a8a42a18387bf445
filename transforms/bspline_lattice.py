"""A B-spline's inverse on a regular grid: solved on a coarser lattice, interpolated where proven.

Resampling through ``spline^-1(L p + t)`` needs the inverse at every voxel
centre ``p`` of a piece. The inverse is smooth, so it is solved only on a
lattice of every ``k``-th voxel per axis (:func:`~.bspline_solve.solve_inverse`)
and interpolated trilinearly in between, in every lattice cell where a bound
proves the interpolation within ``max_error`` of the exact inverse. Voxels of
the other cells are solved one by one, as before.

The bound. Write ``F`` for the spline map, ``G`` for its inverse and
``J = F'``. Differentiating ``F(G(y)) = y`` twice gives
``G'' = -J^-1 F''[G', G']``, so ``|G''[v, v]| <= |J^-1|^3 |F''| |v|^2``, with
``|F''[h, w]| <= 2 K |h| |w|`` inside the valid region (``K`` from
:func:`~.bspline_solve.curvature_bound`). Along output axis ``i`` the grid
steps by ``a_i = L[:, i] * voxel_i`` in the spline's output space, and
trilinear interpolation over a cell of ``h_i`` voxels errs by at most
``1/8 sum_i h_i^2 max |d^2 x / d p_i^2| <= 1/8 sum_i h_i^2 |a_i|^2 m^3 2K``,
where ``m`` bounds ``|J^-1|`` over the cell's preimage. From a corner's
``m_c``, ``|J(x)^-1| <= m_c / (1 - m_c 2K |x - x_c|)``, and the preimage lies
within ``max_error`` of the interpolant, which lies in the box of the corner
solutions: so within ``R`` = the corners' spread plus ``max_error`` of every
corner. (The bound, once it holds, keeps the preimage there: the error is
zero at the corners and continuous.) A cell is certified when every corner
solved, ``m_c 2K R < 1/2``, the box of its corners widened by ``max_error``
lies in the valid region (where ``K`` holds), and the bound (plus the
corners' own solving error) is at most ``max_error``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from coframe.core.jit import cached_jit
from coframe.transforms.bspline_solve import (
    _inside,
    _map,
    curvature_bound,
    solve_inverse,
    spline_arrays,
)

#: Largest lattice step (voxels).
MAX_STEP = 8
#: Headroom of the a-priori step on ``|J^-1|`` (the cells' own bound decides).
STEP_HEADROOM = 1.25


def lattice_step(curvature: float, step_lengths: np.ndarray, max_error: float) -> int:
    """The lattice step ``k`` whose cells meet ``max_error`` when ``|J^-1|`` is about 1."""
    spread = 2.0 * curvature * float(np.sum(np.square(step_lengths))) * STEP_HEADROOM**3
    if spread <= 0.0:
        return MAX_STEP
    return int(np.clip(np.floor(np.sqrt(8.0 * max_error / spread)), 1, MAX_STEP))


def lattice_axis(n: int, k: int) -> np.ndarray:
    """Voxel indices of the lattice along an axis of ``n``: every ``k``-th and the last."""
    idx = np.arange(0, n, k)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


@cached_jit(nogil=True)
def _corner_norms(xl, origin, to_index, size, strides, coefficients, minv, jnorm, inside):
    # pragma: no cover - compiled
    """Bounds of ``|J^-1|_2`` and ``|J|_2`` at every lattice solution, and whether it is valid."""
    n = xl.shape[0]
    value = np.empty(3)
    jac = np.empty((3, 3))
    w = np.empty((3, 4))
    dw = np.empty((3, 4))
    first = np.empty((3, 4), dtype=np.int64)
    for p in range(n):
        x = xl[p]
        inside[p] = _inside(x, origin, to_index, size)
        _map(x, origin, to_index, size, strides, coefficients, value, jac, w, dw, first)
        j = jac
        c00 = j[1, 1] * j[2, 2] - j[1, 2] * j[2, 1]
        c01 = j[1, 2] * j[2, 0] - j[1, 0] * j[2, 2]
        c02 = j[1, 0] * j[2, 1] - j[1, 1] * j[2, 0]
        det = j[0, 0] * c00 + j[0, 1] * c01 + j[0, 2] * c02
        if det == 0.0 or not np.isfinite(det):
            minv[p] = np.inf
            jnorm[p] = np.inf
            continue
        c10 = j[0, 2] * j[2, 1] - j[0, 1] * j[2, 2]
        c11 = j[0, 0] * j[2, 2] - j[0, 2] * j[2, 0]
        c12 = j[0, 1] * j[2, 0] - j[0, 0] * j[2, 1]
        c20 = j[0, 1] * j[1, 2] - j[0, 2] * j[1, 1]
        c21 = j[0, 2] * j[1, 0] - j[0, 0] * j[1, 2]
        c22 = j[0, 0] * j[1, 1] - j[0, 1] * j[1, 0]
        # the adjugate's rows are those of det * J^-1 transposed; |A|_2 <= sqrt(|A|_1 |A|_inf)
        r0 = abs(c00) + abs(c10) + abs(c20)
        r1 = abs(c01) + abs(c11) + abs(c21)
        r2 = abs(c02) + abs(c12) + abs(c22)
        k0 = abs(c00) + abs(c01) + abs(c02)
        k1 = abs(c10) + abs(c11) + abs(c12)
        k2 = abs(c20) + abs(c21) + abs(c22)
        minv[p] = np.sqrt(max(r0, r1, r2) * max(k0, k1, k2)) / abs(det)
        rows = 0.0
        cols = 0.0
        for a in range(3):
            rows = max(rows, abs(j[a, 0]) + abs(j[a, 1]) + abs(j[a, 2]))
            cols = max(cols, abs(j[0, a]) + abs(j[1, a]) + abs(j[2, a]))
        jnorm[p] = np.sqrt(rows * cols)


@cached_jit(nogil=True, inline="always")
def _apart(lo, hi, origin, to_index, size):  # pragma: no cover - compiled
    """Whether the box ``[lo, hi]`` misses the valid region (a separating index axis)."""
    for a in range(3):
        least = np.inf
        most = -np.inf
        for c in range(8):
            v = 0.0
            for b in range(3):
                v += to_index[a, b] * ((hi[b] if (c >> b) & 1 else lo[b]) - origin[b])
            least = min(least, v)
            most = max(most, v)
        if most < 1.0 or least > size[a] - 2.0:
            return True
    return False


@cached_jit(nogil=True)
def _fill(
    xl, resl, ok, inside, minv, jnorm, lz, ly, lx, lengths2, twok, max_error, origin, to_index,
    size, x_out, res_out, todo,
):  # pragma: no cover - compiled  # fmt: skip
    """Interpolate every certified cell into ``x_out``; clear ``todo`` over it.

    ``xl`` is ``(len(lz), len(ly), len(lx), 3)``; ``resl``, ``ok`` (solved),
    ``inside`` (in the valid region), ``minv`` and ``jnorm`` are per lattice
    point. A cell is certified by the bound (module docstring) when its
    corners lie inside the valid region, or exactly when the box of its
    corners misses it: there the map is the identity, so the inverse is the
    affine the lattice interpolates. ``res_out`` gets a bound of the residual
    ``|F(x) - y|`` of each interpolated voxel.
    """
    corner = np.empty(3)
    lo = np.empty(3)
    hi = np.empty(3)
    for i in range(max(1, lz.shape[0] - 1)):
        i1 = min(i + 1, lz.shape[0] - 1)
        for j in range(max(1, ly.shape[0] - 1)):
            j1 = min(j + 1, ly.shape[0] - 1)
            for l in range(max(1, lx.shape[0] - 1)):  # noqa: E741
                l1 = min(l + 1, lx.shape[0] - 1)
                solved = True
                within = True
                m = 0.0
                jn = 0.0
                err = 0.0
                for a in range(3):
                    lo[a] = np.inf
                    hi[a] = -np.inf
                for c in range(8):
                    ci = i1 if c & 4 else i
                    cj = j1 if c & 2 else j
                    cl = l1 if c & 1 else l
                    if not ok[ci, cj, cl]:
                        solved = False
                        break
                    within = within and inside[ci, cj, cl]
                    m = max(m, minv[ci, cj, cl])
                    jn = max(jn, jnorm[ci, cj, cl])
                    err = max(err, resl[ci, cj, cl])
                    for a in range(3):
                        lo[a] = min(lo[a], xl[ci, cj, cl, a])
                        hi[a] = max(hi[a], xl[ci, cj, cl, a])
                if not solved:
                    continue
                if within:
                    spread = 0.0
                    for a in range(3):
                        spread += (hi[a] - lo[a]) ** 2
                    reach = np.sqrt(spread) + max_error
                    q = m * twok * reach
                    if q >= 0.5:
                        continue
                    mp = m / (1.0 - q)
                    hz = lz[i1] - lz[i]
                    hy = ly[j1] - ly[j]
                    hx = lx[l1] - lx[l]
                    h2 = hz * hz * lengths2[0] + hy * hy * lengths2[1] + hx * hx * lengths2[2]
                    bound = 0.125 * h2 * mp * mp * mp * twok + mp * err
                    if bound > max_error:
                        continue
                    for c in range(8):  # the preimages lie in the valid region
                        for a in range(3):
                            corner[a] = hi[a] + max_error if (c >> a) & 1 else lo[a] - max_error
                        if not _inside(corner, origin, to_index, size):
                            within = False
                            break
                    if not within:
                        continue
                    residual = (jn + twok * reach) * bound
                elif _apart(lo, hi, origin, to_index, size):
                    residual = err
                else:
                    continue
                _interpolate(xl, i, i1, j, j1, l, l1, lz, ly, lx, residual, x_out, res_out, todo)


@cached_jit(nogil=True, inline="always")
def _interpolate(xl, i, i1, j, j1, l, l1, lz, ly, lx, residual, x_out, res_out, todo):  # noqa: E741
    # pragma: no cover - compiled
    """Trilinear interpolation of one lattice cell's corners into its voxels.

    Per row, the ends are interpolated in z and y, then each voxel along x.
    """
    hz = lz[i1] - lz[i]
    hy = ly[j1] - ly[j]
    hx = lx[l1] - lx[l]
    start = np.empty(3)
    slope = np.empty(3)
    for z in range(lz[i], lz[i1] + 1):
        tz = (z - lz[i]) / hz if hz > 0 else 0.0
        for y in range(ly[j], ly[j1] + 1):
            ty = (y - ly[j]) / hy if hy > 0 else 0.0
            for a in range(3):
                left0 = xl[i, j, l, a] + (xl[i, j1, l, a] - xl[i, j, l, a]) * ty
                left1 = xl[i1, j, l, a] + (xl[i1, j1, l, a] - xl[i1, j, l, a]) * ty
                right0 = xl[i, j, l1, a] + (xl[i, j1, l1, a] - xl[i, j, l1, a]) * ty
                right1 = xl[i1, j, l1, a] + (xl[i1, j1, l1, a] - xl[i1, j, l1, a]) * ty
                left = left0 + (left1 - left0) * tz
                start[a] = left
                slope[a] = (right0 + (right1 - right0) * tz - left) / hx if hx > 0 else 0.0
            for x in range(lx[l], lx[l1] + 1):
                dx = x - lx[l]
                x_out[z, y, x, 0] = start[0] + slope[0] * dx
                x_out[z, y, x, 1] = start[1] + slope[1] * dx
                x_out[z, y, x, 2] = start[2] + slope[2] * dx
                res_out[z, y, x] = residual
                todo[z, y, x] = False


def solve_inverse_grid(
    spline: object,
    linear: np.ndarray,
    translation: np.ndarray,
    origin: Sequence[float],
    voxel_size: Sequence[float],
    shape: Sequence[int],
    tol: float,
    max_iter: int,
    max_error: float,
    slab_points: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``spline^-1(linear p + translation)`` at every voxel centre ``p`` of a 3D grid.

    Parameters
    ----------
    spline
        A 3D :class:`~coframe.transforms.bspline.BSpline`.
    linear, translation
        The affine applied to the grid's points first.
    origin, voxel_size, shape
        The grid (numpy order), physical.
    tol, max_iter
        Residual and iterations of each point solved (:func:`~.bspline_solve.solve_inverse`).
    max_error
        Largest error, physical, of an interpolated voxel's inverse.
    slab_points
        Voxels solved one by one per call (bounded memory).

    Returns
    -------
    tuple
        The solutions ``(*shape, 3)``, the residual ``|F(x) - y|`` of each
        voxel (for an interpolated voxel, a bound of it) and the lattice step.
    """
    shape = tuple(int(n) for n in shape)
    linear = np.asarray(linear, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    axes = [
        float(o) + np.arange(n) * float(v)
        for o, v, n in zip(origin, voxel_size, shape, strict=True)
    ]
    along = [a[:, None] * linear[:, k] for k, a in enumerate(axes)]  # (n_k, 3) per axis
    x_out = np.empty((*shape, 3))
    res_out = np.full(shape, np.inf)
    todo = np.ones(shape, dtype=bool)
    arrays = spline_arrays(spline)
    curvature = curvature_bound(spline, arrays[1])
    lengths = np.linalg.norm(linear, axis=0) * np.asarray(voxel_size, dtype=float)
    k = lattice_step(curvature, lengths, max_error)
    if k > 1:
        lat = [lattice_axis(n, k) for n in shape]
        targets = (
            along[0][lat[0], None, None, :]
            + along[1][None, lat[1], None, :]
            + along[2][None, None, lat[2], :]
            + translation
        ).reshape(-1, 3)
        solved, residual = solve_inverse(spline, targets, targets, tol, max_iter)
        n = solved.shape[0]
        minv, jnorm, inside = np.empty(n), np.empty(n), np.empty(n, dtype=bool)
        _corner_norms(solved, *arrays, minv, jnorm, inside)
        ok = (residual <= tol) & np.isfinite(minv)
        lshape = tuple(len(v) for v in lat)
        _fill(
            solved.reshape(*lshape, 3), residual.reshape(lshape), ok.reshape(lshape),
            inside.reshape(lshape), minv.reshape(lshape), jnorm.reshape(lshape), *lat,
            np.square(lengths), 2.0 * curvature, float(max_error), arrays[0], arrays[1], arrays[2],
            x_out, res_out, todo,
        )  # fmt: skip
    rest = np.flatnonzero(todo)
    flat_x, flat_res = x_out.reshape(-1, 3), res_out.reshape(-1)
    for s in range(0, rest.size, slab_points):
        idx = rest[s : s + slab_points]
        iz, iy, ix = np.unravel_index(idx, shape)
        targets = along[0][iz] + along[1][iy] + along[2][ix] + translation
        flat_x[idx], flat_res[idx] = solve_inverse(spline, targets, targets, tol, max_iter)
    return x_out, res_out, k
