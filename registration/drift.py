"""Slice-wise intensity drift: estimated against the other image, then removed.

FIB-SEM volumes are milled and imaged one slice at a time; the detector's
brightness drifts from slice to slice (beam current, charging, stage), so
the same tissue is a little brighter or darker in some slices than in
others. Mutual information reads that drift as structure: an affine shifts
or tilts along the milling axis to line slices up with X-ray features, and a
B-spline deforms to do more of the same.

The drift cannot be read from one image alone at registration scale, since
slices a micrometre apart hold different tissue. It is read against the
other image instead, once the linear steps have aligned the two: every
masked voxel of the drifting image is paired with the other image's value
at its mapped position; the other image's values predict the drifting
image's (a conditional mean over quantile bins of the other image, so any
monotonic or non-monotonic modality relationship works); the median of
``value - prediction`` over each slice is that slice's offset. Prediction
and offsets are re-estimated a few times, the offsets of slices with too
few paired voxels are interpolated from their neighbours, and the offsets
are centred (a constant offset is not drift).

The correction is additive. Medians keep slices whose content differs from
the rest (a nucleus filling one slice) from being mistaken for drift.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from coframe.registration.inputs import WorkImage
from coframe.transforms.base import Transform

#: Slices whose paired voxels are fewer than this share of the median slice's take
#: their offset from their neighbours.
MIN_SLICE_SHARE = 0.25
#: Fewest paired voxels for a slice offset of its own.
MIN_SLICE_POINTS = 30


@dataclass(frozen=True)
class SliceDrift:
    """Per-slice additive intensity offsets of a working image.

    Parameters
    ----------
    axis
        Numpy axis of the slices (0: z).
    offsets
        Offset of every slice, in the image's intensity units (subtracted by
        :meth:`correct`); centred on the measured slices.
    measured
        Which slices had enough paired voxels for an offset of their own.
    """

    axis: int
    offsets: np.ndarray
    measured: np.ndarray

    def correct(self, work: WorkImage) -> WorkImage:
        """The working image with each slice's offset removed (inside its mask only)."""
        shape = [1] * work.array.ndim
        shape[self.axis] = -1
        offsets = self.offsets.reshape(shape).astype(np.float32)
        corrected = work.array - offsets
        if work.mask is not None:
            corrected = np.where(work.mask, corrected, work.array)
        return replace(work, array=corrected.astype(np.float32))

    @property
    def span(self) -> float:
        """Largest minus smallest slice offset."""
        return float(self.offsets.max() - self.offsets.min()) if self.offsets.size else 0.0

    def summary(self) -> str:
        """One line: slices, measured share and the offsets' range and spread."""
        return (
            f"{self.offsets.size} slices along axis {'zyx'[self.axis]} "
            f"({int(self.measured.sum())} measured), offsets {self.offsets.min():+.3g} .. "
            f"{self.offsets.max():+.3g} (sd {self.offsets.std():.3g})"
        )


def estimate_slice_drift(
    drifting: WorkImage,
    reference: WorkImage,
    to_reference: Transform,
    *,
    axis: int = 0,
    bins: int = 32,
    iterations: int = 3,
) -> SliceDrift:
    """Estimate the per-slice intensity offsets of ``drifting`` against ``reference``.

    Parameters
    ----------
    drifting
        The working image whose slices drift (its mask, if any, selects the
        voxels used).
    reference
        The other working image.
    to_reference
        Map of ``drifting``'s physical points into ``reference``'s.
    axis
        Numpy axis of the slices (0: z, the FIB-SEM milling axis).
    bins
        Quantile bins of the reference values for the prediction.
    iterations
        Rounds of prediction and offsets.

    Returns
    -------
    SliceDrift
        The offsets; all zero when fewer than two slices can be measured.
    """
    n_slices = drifting.shape[axis]
    keep = np.ones(drifting.shape, dtype=bool) if drifting.mask is None else drifting.mask
    index = np.argwhere(keep)
    points = drifting.lo + index * np.asarray(drifting.voxel_size)
    mapped = to_reference.apply(points)
    ref_index = (mapped - reference.lo) / np.asarray(reference.voxel_size)
    upper = np.asarray(reference.shape) - 1
    inside = np.all(np.isfinite(ref_index), axis=1) & np.all(
        (ref_index >= 0) & (ref_index <= upper), axis=1
    )
    if reference.mask is not None:
        near = np.clip(np.rint(ref_index[inside]).astype(np.int64), 0, upper)
        sub = reference.mask[tuple(near.T)]
        inside[np.flatnonzero(inside)[~sub]] = False
    index, ref_index = index[inside], ref_index[inside]
    zero = SliceDrift(axis, np.zeros(n_slices), np.zeros(n_slices, dtype=bool))
    if index.shape[0] < 2 * MIN_SLICE_POINTS:
        return zero
    values = drifting.array[tuple(index.T)].astype(np.float64)
    ref = ndimage.map_coordinates(reference.array, ref_index.T, order=1, prefilter=False)
    slices = index[:, axis]
    counts = np.bincount(slices, minlength=n_slices)
    typical = float(np.median(counts[counts > 0]))
    measured = counts >= max(MIN_SLICE_POINTS, MIN_SLICE_SHARE * typical)
    if measured.sum() < 2:
        return zero
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)))
    which = np.clip(np.searchsorted(edges, ref, side="right") - 1, 0, max(0, edges.size - 2))
    n_bins = int(which.max()) + 1
    order = np.argsort(slices, kind="stable")
    starts = np.searchsorted(slices[order], np.arange(n_slices + 1))
    offsets = np.zeros(n_slices)
    for _ in range(max(1, iterations)):
        corrected = values - offsets[slices]
        totals = np.bincount(which, weights=corrected, minlength=n_bins)
        prediction = totals / np.maximum(np.bincount(which, minlength=n_bins), 1)
        residual = (values - prediction[which])[order]
        new = np.zeros(n_slices)
        for k in np.flatnonzero(measured):
            new[k] = np.median(residual[starts[k] : starts[k + 1]])
        centre = float(np.average(new[measured], weights=counts[measured]))
        new[measured] -= centre
        positions = np.flatnonzero(measured)
        new = np.interp(np.arange(n_slices), positions, new[positions])
        offsets = new
    return SliceDrift(axis, offsets, measured)
