"""Contrast-independent features and orientation samples of the global search.

The search compares images of different modalities whose intensities relate
in any way: inverted (stain dark in one, bright in the other) or not
monotonic at all. Edges stay where they are under any such mapping, so the
search compares *where edges are and how they are oriented*, not intensity:
each voxel carries the outer product ``n n^T`` of its normalised gradient
``n = g / sqrt(|g|^2 + eps^2)`` (a normalised gradient field, sign-free, so
that an edge from dark to bright matches one from bright to dark). The six
distinct components are weighted so that the dot product of two feature
vectors is ``(n_a . n_b)^2``, and correlations of the six channels add up in
the Fourier domain: one inverse FFT scores every translation.

Orientations are rotation matrices in numpy axis order (z, y, x) that map the
directions of the smaller image into those of the larger one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.registration.locate_geometry import fibonacci_cap

#: Gaussian smoothing of the feature derivatives, in search voxels.
FEATURE_SIGMA = 1.0
#: Percentile of the gradient magnitude (inside the mask) taken as the edge scale ``eps``.
EDGE_PERCENTILE = 60.0


def _pairs(n: int) -> list[tuple[int, int]]:
    """Distinct entries of an ``n x n`` symmetric matrix, diagonal first (zz, yy, xx, zy, ...)."""
    return [(i, i) for i in range(n)] + [(i, j) for i in range(n) for j in range(i + 1, n)]


def gradients(
    array: np.ndarray, sigma: float, axes: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Gaussian-derivative gradient of an array along ``axes`` (default all), in voxel units.

    The smoothing runs along the gradient axes only: a stack of 2D slices
    (``axes=(1, 2)``) gets each slice's own in-plane gradient.
    """
    axes = tuple(range(array.ndim)) if axes is None else tuple(axes)
    sigmas = [sigma if k in axes else 0.0 for k in range(array.ndim)]
    out = []
    for axis in axes:
        order = [0] * array.ndim
        order[axis] = 1
        out.append(
            ndimage.gaussian_filter(array, sigmas, order=order, mode="nearest", output=np.float32)
        )
    return out


def edge_scale(
    array: np.ndarray, mask: np.ndarray | None, sigma: float, axes: Sequence[int] | None = None
) -> float:
    """The gradient magnitude below which a voxel counts as flat (its ``eps``).

    Returns 0 for an image without any gradient (constant).
    """
    g = gradients(array.astype(np.float32), sigma, axes)
    magnitude = np.sqrt(sum(c * c for c in g))
    values = magnitude if mask is None else magnitude[mask]
    if values.size == 0:
        return 0.0
    return float(np.percentile(values, EDGE_PERCENTILE))


def edge_features(
    array: np.ndarray,
    footprint: np.ndarray | None,
    sigma: float,
    eps: float,
    axes: Sequence[int] | None = None,
) -> np.ndarray:
    """The ``(C, *shape)`` float32 normalised-gradient outer products, 0 outside ``footprint``.

    Parameters
    ----------
    array
        The image: 3D (six channels zz, yy, xx, zy, zx, yx), 2D (three: yy,
        xx, yx), or a stack of 2D slices with ``axes=(1, 2)``.
    footprint
        Voxels that count (bool), or None for all.
    sigma
        Gaussian smoothing of the derivatives, in voxels.
    eps
        Edge scale (:func:`edge_scale`): gradients much weaker than it fade out.
    axes
        The axes the gradient runs along (default all).

    The off-diagonal channels are weighted by sqrt(2), so that the dot
    product of two feature vectors is ``(n_a . n_b)^2``.
    """
    g = gradients(array.astype(np.float32), sigma, axes)
    norm = sum(c * c for c in g) + np.float32(eps * eps)
    inv = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0).astype(np.float32)
    pairs = _pairs(len(g))
    out = np.empty((len(pairs), *array.shape), dtype=np.float32)
    for k, (i, j) in enumerate(pairs):
        np.multiply(g[i], g[j], out=out[k])
        out[k] *= inv * np.float32(1.0 if i == j else np.sqrt(2.0))
    if footprint is not None:
        out *= footprint.astype(np.float32)
    return out


def fill_from_nearest(
    array: np.ndarray, keep: np.ndarray, sampling: Sequence[float] | None = None
) -> np.ndarray:
    """``array`` with every pixel outside ``keep`` set to the value of the nearest one inside.

    Masked parts (grid bars, space outside a volume) then add no edges of
    their own at their border, so features can be computed right up to it.
    ``sampling`` weighs the axes' distances (a large weight on a stack's first
    axis keeps the filling within each slice where it can). An array with
    nothing kept is returned as it is.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.all() or not keep.any():
        return array
    index = ndimage.distance_transform_edt(
        ~keep, sampling=sampling, return_distances=False, return_indices=True
    )
    return array[tuple(index)]


def bin_edges(array: np.ndarray, mask: np.ndarray | None, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` intensity bins holding equal shares of the (masked) voxels."""
    values = array if mask is None else array[mask]
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(edges.astype(np.float32))


def indicators(array: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``(len(edges) + 1, *shape)`` float32 indicators of the bin each voxel falls in."""
    index = np.searchsorted(edges, array, side="right")
    out = np.zeros((len(edges) + 1, *array.shape), dtype=np.float32)
    for k in range(len(edges) + 1):
        out[k] = index == k
    return out


def padded_rfft3(array: np.ndarray, shape: tuple[int, ...], workers: int = -1) -> np.ndarray:
    """``rfftn(array, s=shape)`` over the last three axes, skipping the zero padding.

    A template is small and its padded grid large: transforming one axis at a
    time, each over only the rows the data reaches so far, spares most of the
    work on zeros (the result is the same spectrum).
    """
    out = sfft.rfft(array, n=shape[-1], axis=-1, workers=workers)
    out = sfft.fft(out, n=shape[-2], axis=-2, workers=workers, overwrite_x=True)
    return sfft.fft(out, n=shape[-3], axis=-3, workers=workers, overwrite_x=True)


def padded_rfft3_into(
    array: np.ndarray, shape: tuple[int, ...], out: np.ndarray, workers: int = -1
) -> np.ndarray:
    """:func:`padded_rfft3` of one 3D ``array`` written into ``out`` and returned.

    ``out`` is a complex64 ``(S0, S1, S2 // 2 + 1)`` buffer for the padded
    grid ``shape = (S0, S1, S2)``; reused from one template to the next, it spares the
    allocation and zero-filling of a new padded array for every transform
    (the forward transforms run in place in it).
    """
    t0, t1 = array.shape[0], array.shape[1]
    out[:t0, :t1] = sfft.rfft(array, n=shape[-1], axis=-1, workers=workers)
    out[:t0, t1:] = 0
    sfft.fft(out[:t0], axis=1, workers=workers, overwrite_x=True)
    out[t0:] = 0
    sfft.fft(out, axis=0, workers=workers, overwrite_x=True)
    return out


def cropped_irfft(
    spectrum: np.ndarray, shape: tuple[int, ...], size: Sequence[int], workers: int = -1
) -> np.ndarray:
    """``irfftn(spectrum, s=shape)`` over the last ``len(shape)`` axes, its first ``size`` only.

    The valid placements of a large template fill a small corner of the
    padded grid: after each axis's inverse transform only the kept rows go on
    to the next axis. Leading axes (channels, slices) are carried along.
    """
    first = spectrum.ndim - len(shape)
    out = spectrum
    for j in range(len(shape) - 1):
        out = sfft.ifft(out, axis=first + j, workers=workers, overwrite_x=j > 0)
        out = out[(slice(None),) * (first + j) + (slice(0, size[j]),)]
    out = sfft.irfft(out, n=shape[-1], axis=-1, workers=workers)
    return out[..., : size[-1]]


def joint_information(
    template_conj: np.ndarray,
    target: np.ndarray,
    shape: tuple[int, ...],
    box: tuple[slice, ...],
    stride: int = 1,
    workers: int = -1,
) -> np.ndarray:
    """Mutual information (nats) of every ``stride``-th translation, from bin indicator spectra.

    ``template_conj`` holds the conjugate spectra of the template's bin
    indicators, ``target`` those of the target's; the joint histogram of a
    translation is the correlation of every pair of indicators. The result
    has the shape of ``box`` sampled every ``stride`` voxels.
    """
    box = tuple(slice(b.start, b.stop, stride) for b in box)
    size = [len(range(b.start or 0, b.stop, stride)) for b in box]
    counts = np.empty((template_conj.shape[0], target.shape[0], *size), np.float32)
    for a in range(template_conj.shape[0]):
        for b in range(target.shape[0]):
            corr = sfft.irfftn(template_conj[a] * target[b], s=shape, workers=workers)[box]
            counts[a, b] = np.maximum(corr, 0.0)
    total = counts.sum(axis=(0, 1))
    total = np.where(total > 0, total, 1.0)
    p = counts / total
    pa = p.sum(axis=1, keepdims=True)
    pb = p.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 1e-7, p * np.log(p / (pa * pb)), 0.0)
    return terms.sum(axis=(0, 1)).astype(np.float32)


def axis_rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rotation by ``degrees`` about ``axis`` (z, y, x), as a 3x3 matrix in numpy order."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    return rotvec_matrix(a * np.deg2rad(degrees))


def rotvec_matrix(rotvec: np.ndarray) -> np.ndarray:
    """The rotation matrix of a rotation vector (Rodrigues), both in numpy axis order.

    The sense of rotation follows ``numpy.cross`` on (z, y, x) vectors, so that
    :func:`tilt_to` built from that cross product turns the right way.
    """
    v = np.asarray(rotvec, dtype=float)
    angle = float(np.linalg.norm(v))
    if angle < 1e-15:
        return np.eye(3)
    k = v / angle
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * (cross @ cross)


def tilt_to(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``a`` to unit vector ``d``."""
    axis = np.cross(a, d)
    s = float(np.linalg.norm(axis))
    c = float(np.clip(a @ d, -1.0, 1.0))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        helper = np.zeros(3)
        helper[int(np.argmin(np.abs(a)))] = 1.0
        perpendicular = np.cross(a, helper)
        return rotvec_matrix(np.pi * perpendicular / np.linalg.norm(perpendicular))
    return rotvec_matrix(axis / s * np.arctan2(s, c))


def orientations(
    step: float, axis: Sequence[float] | None = None, max_tilt: float = 180.0
) -> np.ndarray:
    """Rotations spread ``step`` degrees apart over every orientation, or about one axis.

    Parameters
    ----------
    step
        Wanted angle between neighbouring samples, in degrees.
    axis
        The shared axis (z, y, x) the images are rotated about, or None for
        all of SO(3).
    max_tilt
        With ``axis``: largest angle (degrees) between the axis and its image.

    Returns
    -------
    ``(N, 3, 3)`` rotation matrices; the identity is the first.
    """
    a = np.array([1.0, 0.0, 0.0]) if axis is None else np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    cap = 180.0 if axis is None else float(max_tilt)
    directions = fibonacci_cap(a, cap, step) if cap > 0 else a[None]
    turns = max(1, int(np.ceil(360.0 / step - 1e-9)))
    spins = [axis_rotation(a, 360.0 * k / turns) for k in range(turns)]
    out = [tilt_to(a, d) @ spin for d in directions for spin in spins]
    return np.stack(out)


def axis_turns(step: float) -> np.ndarray:
    """The identity and the turns by +-``step`` degrees about each axis: ``(7, 3, 3)``."""
    vectors = np.vstack([np.zeros(3), np.eye(3), -np.eye(3)])
    return np.stack([rotvec_matrix(np.deg2rad(step) * v) for v in vectors])


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation taking ``a`` to ``b``."""
    c = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
