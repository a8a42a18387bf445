"""The section's templates and the similarity of every placement on a stack of slices.

:func:`~coframe.registration.locate_search.scan` resamples the volume into
slices parallel to a candidate plane; the functions here score the section,
under every in-plane map, at every in-plane translation of every slice by FFT:

- ``edges`` correlates normalised-gradient outer products
  (:func:`~coframe.registration.search_features.edge_features`, the features
  of ``register``'s 3D search, here in each slice's plane). It compares where
  edges are and how they run, so it survives any relation between the two
  contrasts, inverted or not monotonic (TEM against X-ray);
- ``ncc`` is the absolute normalised cross-correlation over the section's
  footprint (masked NCC): it tolerates inverted contrast only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.registration.locate_geometry import GridImage
from coframe.registration.search_features import (
    FEATURE_SIGMA,
    cropped_irfft,
    edge_features,
    edge_scale,
    fill_from_nearest,
)

#: Smallest masked standard deviation (relative to the volume's) that counts as texture.
FLAT_TOLERANCE = 1e-3
#: Templates correlated per FFT batch.
TEMPLATE_BATCH = 8
#: Similarities of the scan.
SCAN_SCORES = ("edges", "ncc")


@dataclass(frozen=True)
class Templates:
    """The section under every in-plane map, ready for masked NCC or edge correlation.

    Parameters
    ----------
    arrays
        ``(G, S, S)`` float32 templates, zero mean and unit norm over their
        footprint, 0 outside it; with ``edges``, ``(G, 3, S, S)`` edge
        features, 0 outside the footprint (computed after masked pixels take
        their nearest unmasked value, so grid bars add no edges of their own).
    masks
        ``(U, S, S)`` float32 footprints (the rotated section rectangle), each
        shared by the templates whose maps differ by a symmetry of the rectangle.
    mask_of
        ``(G,)`` index of each template's footprint in ``masks``.
    usable
        ``(G,)`` whether the template has texture.
    half
        Half-size of the square templates (``S = 2 * half + 1``).
    energy
        ``(G,)`` sum of the squared edge features (``edges`` only).
    rectangles
        ``(V, S, S)`` float32 rotated section rectangles, masked pixels
        included: what :meth:`overlaps` measures (the very ``masks`` array
        when the section has no mask).
    box_of
        ``(U,)`` index of each footprint's rectangle in ``rectangles``.
    """

    arrays: np.ndarray
    masks: np.ndarray
    mask_of: np.ndarray
    usable: np.ndarray
    half: int
    energy: np.ndarray | None
    rectangles: np.ndarray
    box_of: np.ndarray

    @property
    def size(self) -> int:
        """Side of the square templates, in pixels."""
        return 2 * self.half + 1

    @property
    def counts(self) -> np.ndarray:
        """``(U,)`` pixels in each footprint."""
        return self.masks.reshape(len(self.masks), -1).sum(axis=1)

    def overlaps(
        self, inside: np.ndarray, spectra: np.ndarray, shape: tuple[int, int]
    ) -> tuple[Iterator[np.ndarray], tuple[int, int]]:
        """The share of each footprint's section rectangle inside the volume, at every valid
        placement on a stack.

        The rectangle includes masked pixels (grid bars): a section's
        rotations share a few rectangles, so a masked section needs no more
        transforms here than a whole one. Returns the ``(D, A', B')``
        fractions of one footprint after another (``spectra`` holds the
        spectra of :attr:`rectangles`), made as they are taken, and the valid
        extent ``(A', B')`` of the placements.
        """
        valid = (inside.shape[1] - self.size + 1, inside.shape[2] - self.size + 1)
        rects = self.rectangles
        counts = rects.reshape(len(rects), -1).sum(axis=1)

        def shares() -> Iterator[np.ndarray]:  # nothing is transformed until one is taken
            if inside.min() > 0:  # the whole stack lies inside the volume: every share is 1
                whole = np.ones((inside.shape[0], *valid), dtype=np.float32)
                for _ in range(len(self.masks)):
                    yield whole
                return
            fin = sfft.rfft2(inside, s=shape, workers=-1)
            made: dict[int, np.ndarray] = {}
            for u in range(len(self.masks)):
                v = int(self.box_of[u])
                if v not in made:
                    made[v] = _correlate(fin, spectra[v][None], shape, valid) / counts[v]
                yield made[v]

        return shares(), valid


def make_templates(
    section: GridImage, maps: np.ndarray, shrink: float = 0.0, score: str = "ncc"
) -> Templates:
    """Resample the section under in-plane maps, centred, and normalise for NCC
    (or compute its edge features, ``score="edges"``).

    Parameters
    ----------
    section
        The section at the search spacing (isotropic).
    maps
        ``(G, 2, 2)`` in-plane maps (see :func:`in_plane_maps`).
    shrink
        Pixels trimmed from every side of the footprint (keeps interpolation
        away from the section's border).

    The footprint of a masked section (:attr:`GridImage.mask`) leaves out its
    masked pixels, so they take no part in the correlation.
    """
    hy, hx = ((np.asarray(section.shape, dtype=float) - 1.0) / 2.0) - shrink
    half = int(np.ceil(np.hypot(hy, hx)))
    size = 2 * half + 1
    q = np.indices((size, size), dtype=float).reshape(2, -1) - half
    centre = (np.asarray(section.shape, dtype=float) - 1.0) / 2.0
    edges = score == "edges"
    arrays = np.zeros((len(maps), *((3,) if edges else ()), size, size), dtype=np.float32)
    energy = np.zeros(len(maps))
    usable = np.zeros(len(maps), dtype=bool)
    eps = edge_scale(section.array, section.usable, FEATURE_SIGMA) if edges else 0.0
    # masked pixels take their nearest unmasked value: grid bars add no edges at their border
    source = fill_from_nearest(section.array, section.usable) if edges else section.array
    mask_of = np.zeros(len(maps), dtype=np.int64)
    masks: list[np.ndarray] = []
    keys: dict[bytes, int] = {}
    boxes: list[np.ndarray] = []  # the rectangles, masked pixels included
    box_keys: dict[bytes, int] = {}
    box_of: list[int] = []
    for g, m in enumerate(maps):
        p = np.linalg.inv(m) @ q
        inside = ((np.abs(p[0]) <= hy + 1e-6) & (np.abs(p[1]) <= hx + 1e-6)).reshape(size, size)
        box_key = np.packbits(inside).tobytes()
        if box_key not in box_keys:
            box_keys[box_key] = len(boxes)
            boxes.append(inside.astype(np.float32))
        if section.mask is not None:  # masked pixels (grid bars, film) leave the footprint
            kept = ndimage.map_coordinates(
                section.usable.astype(np.float32), p + centre[:, None], order=1, mode="nearest"
            )
            inside &= kept.reshape(size, size) >= 0.5
        key = np.packbits(inside).tobytes()
        if key not in keys:
            keys[key] = len(masks)
            masks.append(inside.astype(np.float32))
            box_of.append(box_keys[box_key])
        mask_of[g] = keys[key]
        values = ndimage.map_coordinates(
            source, p + centre[:, None], order=1, mode="nearest"
        ).reshape(size, size)
        if edges:
            arrays[g] = edge_features(values, inside, FEATURE_SIGMA, eps)
            energy[g] = float(np.sum(arrays[g] * arrays[g]))
            usable[g] = eps > 0 and energy[g] > 0
            continue
        t = np.where(inside, values, 0.0)
        t[inside] -= t[inside].mean()
        norm = float(np.sqrt(np.sum(t * t)))
        if norm > 0:
            arrays[g] = t / norm
            usable[g] = True
    footprints = np.stack(masks)
    return Templates(
        arrays,
        footprints,
        mask_of,
        usable,
        half,
        energy if edges else None,
        footprints if section.mask is None else np.stack(boxes),  # unmasked: the same
        np.asarray(box_of, dtype=np.int64),
    )


def _correlate(
    fa: np.ndarray, fb: np.ndarray, shape: tuple[int, int], valid: tuple[int, int]
) -> np.ndarray:
    """The correlation of two spectra on ``shape`` at the ``valid`` placements."""
    return cropped_irfft(fa * np.conj(fb), shape, valid)


def _on_grid(where: np.ndarray, valid: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of the valid placements as flat indices of the padded grid."""
    return (where // valid[1]) * shape[1] + where % valid[1]


def ncc_scores(
    values: np.ndarray,
    inside: np.ndarray,
    tpl: Templates,
    spectra: tuple[np.ndarray, np.ndarray, np.ndarray],
    shape: tuple[int, int],
    min_overlap: float,
    flat: float,
    overlaps: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best absolute masked NCC, its sign and its position, per (map, slice).

    ``spectra`` holds the templates' conjugate spectra and those of their
    footprints and rectangles (:attr:`Templates.rectangles`). ``overlaps``
    are the footprints' shares inside the volume (:meth:`Templates.overlaps`)
    when already made for another score.
    """
    ft_conj, fm, fb = spectra
    n_maps, n_d = len(tpl.arrays), len(values)
    counts = tpl.counts
    shares, (va, vb) = tpl.overlaps(inside, fb, shape)
    overlaps = shares if overlaps is None else overlaps
    fs = sfft.rfft2(values, s=shape, workers=-1)
    fs2 = sfft.rfft2(values * values, s=shape, workers=-1)
    # 1 / denominator at the valid placements, 0 where the template is not judged
    inv_den = np.zeros((len(fm), n_d, va, vb), dtype=np.float32)
    for u, overlap in enumerate(overlaps):
        sum1 = _correlate(fs, fm[u][None], shape, (va, vb))
        sum2 = _correlate(fs2, fm[u][None], shape, (va, vb))
        var = sum2 - sum1 * sum1 / counts[u]
        ok = (overlap >= min_overlap) & (var > flat * counts[u])
        inv_den[u] = np.where(ok, 1.0 / np.sqrt(np.where(ok, var, 1.0)), 0.0)
    best = np.zeros((n_maps, n_d), dtype=np.float32)
    sign = np.ones((n_maps, n_d), dtype=np.float32)
    where = np.zeros((n_maps, n_d), dtype=np.int64)
    for g0 in range(0, n_maps, TEMPLATE_BATCH):
        g1 = min(g0 + TEMPLATE_BATCH, n_maps)
        ncc = cropped_irfft(fs[None] * ft_conj[g0:g1, None], shape, (va, vb))
        for j in range(g1 - g0):
            ncc[j] *= inv_den[tpl.mask_of[g0 + j]]
        flat_ncc = ncc.reshape(g1 - g0, n_d, -1)
        hi = np.argmax(flat_ncc, axis=2)
        lo = np.argmin(flat_ncc, axis=2)
        # 0 where nothing is judged: a correlation of one sign only still has 0 as the other
        v_hi = np.maximum(np.take_along_axis(flat_ncc, hi[..., None], axis=2)[..., 0], 0.0)
        v_lo = np.minimum(np.take_along_axis(flat_ncc, lo[..., None], axis=2)[..., 0], 0.0)
        neg = -v_lo > v_hi
        best[g0:g1] = np.where(neg, -v_lo, v_hi)
        sign[g0:g1] = np.where(neg, -1.0, 1.0)
        where[g0:g1] = _on_grid(np.where(neg, lo, hi), (va, vb), shape)
    return best, sign, where


def edge_scores(
    values: np.ndarray,
    inside: np.ndarray,
    tpl: Templates,
    spectra: tuple[np.ndarray, np.ndarray, np.ndarray],
    shape: tuple[int, int],
    min_overlap: float,
    overlaps: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best normalised edge-feature correlation and its position, per (map, slice).

    The score of a placement is ``sum F_v . F_t / sqrt(max(E_v, E_t / 4) E_t)``
    (``E`` the feature energies under the footprint), as in ``register``'s
    3D search: 1 when every edge of the section meets an edge of the same
    direction, whatever the two contrasts are. ``overlaps`` as in
    :func:`ncc_scores`.
    """
    ft_conj, fm, fb = spectra
    n_maps, n_d = len(tpl.arrays), len(values)
    kept = inside > 0
    eps = edge_scale(values, kept, FEATURE_SIGMA, axes=(1, 2)) if kept.any() else 0.0
    best = np.zeros((n_maps, n_d), dtype=np.float32)
    where = np.zeros((n_maps, n_d), dtype=np.int64)
    if eps <= 0:  # no edges in any slice (a flat region of the volume)
        return best, np.ones_like(best), where
    # samples outside the volume take the nearest inside value (in their slice where it has
    # one): the volume's border adds no edges
    filled = fill_from_nearest(values, kept, sampling=(float(max(values.shape)), 1.0, 1.0))
    feats = edge_features(filled, kept, FEATURE_SIGMA, eps, axes=(1, 2))  # (3, D, A, B)
    fv = sfft.rfft2(feats, s=shape, workers=-1)
    f_energy = sfft.rfft2(np.sum(feats * feats, axis=0), s=shape, workers=-1)
    shares, (va, vb) = tpl.overlaps(inside, fb, shape)
    overlaps = shares if overlaps is None else overlaps
    energy_v = np.zeros((len(fm), n_d, va, vb), dtype=np.float32)
    ok_at = np.zeros((len(fm), n_d, va, vb), dtype=bool)
    for u, overlap in enumerate(overlaps):
        energy_v[u] = _correlate(f_energy, fm[u][None], shape, (va, vb))
        ok_at[u] = overlap >= min_overlap
    for g in range(n_maps):
        e_t = float(tpl.energy[g]) if tpl.energy is not None else 0.0
        if e_t <= 0:
            continue
        acc = fv[0] * ft_conj[g, 0][None]
        for c in range(1, fv.shape[0]):
            acc += fv[c] * ft_conj[g, c][None]
        num = cropped_irfft(acc, shape, (va, vb))
        u = tpl.mask_of[g]
        den = np.sqrt(np.maximum(energy_v[u], 0.25 * e_t) * e_t)
        score = np.where(ok_at[u], num / den, 0.0).reshape(n_d, -1)
        at = np.argmax(score, axis=1)
        where[g] = _on_grid(at, (va, vb), shape)
        # 0 where nothing scores above it (the padded grid's unjudged placements score 0)
        best[g] = np.maximum(np.take_along_axis(score, at[:, None], axis=1)[:, 0], 0.0)
    return best, np.ones_like(best), where
