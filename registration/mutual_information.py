"""Mutual information of paired intensity samples: one implementation, two binnings.

The joint histogram of the pairs is built one of two ways, each kept for
the numbers its caller has always produced:

- ``"linear"``: every pair spreads over the four nearest bin centres
  (Parzen window of order 1, bin centres spanning the ranges end to end),
  smooth in the intensities; :class:`~coframe.registration.metric.Evaluator`
  measures registrations with it;
- ``"hard"``: every pair falls in one bin (:func:`numpy.histogram2d`, values
  outside the ranges clipped to them); the slice-to-volume search scores
  section poses with it
  (:func:`~coframe.registration.locate_refine.pose_score`).

By default the bins span the 0.5-99.5 percentile range of each sample, so a
few extreme values do not squeeze the rest into one bin.
"""

from __future__ import annotations

import numpy as np

#: Ways of filling the joint histogram.
BINNINGS = ("linear", "hard")
#: Percentiles of each sample that the default ranges span.
PERCENTILES = (0.5, 99.5)

Range = tuple[float, float]


def mutual_information(
    a: np.ndarray,
    b: np.ndarray,
    bins: int,
    *,
    binning: str = "hard",
    ranges: tuple[Range, Range] | None = None,
) -> float:
    """Mutual information (nats) of paired samples.

    Parameters
    ----------
    a, b
        Paired samples, same length.
    bins
        Histogram bins per sample.
    binning
        ``"hard"`` (one bin per pair) or ``"linear"`` (shared between
        neighbouring bins).
    ranges
        ``((lo_a, hi_a), (lo_b, hi_b))``, the intensities the bins span
        (default: each sample's 0.5-99.5 percentile range; when either is
        empty, as for a constant sample, the information is 0).

    Raises
    ------
    ValueError
        For an unknown ``binning``.
    """
    if binning not in BINNINGS:
        raise ValueError(f"binning {binning!r}: expected one of {', '.join(BINNINGS)}")
    if ranges is None:
        lo_a, hi_a = np.percentile(a, list(PERCENTILES))
        lo_b, hi_b = np.percentile(b, list(PERCENTILES))
        if hi_a <= lo_a or hi_b <= lo_b:
            return 0.0
        ranges = ((lo_a, hi_a), (lo_b, hi_b))
    if binning == "linear":
        joint = _linear_joint(a, b, ranges, bins)
    else:
        (lo_a, hi_a), (lo_b, hi_b) = ranges
        joint, _, _ = np.histogram2d(
            np.clip(a, lo_a, hi_a),
            np.clip(b, lo_b, hi_b),
            bins=bins,
            range=[[lo_a, hi_a], [lo_b, hi_b]],
        )
    return _information(joint)


def _information(joint: np.ndarray) -> float:
    """Mutual information (nats) of a joint histogram (counts or weights, any scale)."""
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])))


def _soft_bins(
    values: np.ndarray, lo: float, hi: float, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left bin of each value and its weight in the bin to the right."""
    position = (values - lo) / max(hi - lo, 1e-12) * (bins - 1)
    position = np.clip(position, 0.0, bins - 1.000001)
    left = np.floor(position).astype(np.int64)
    return left, position - left


def _linear_joint(
    a: np.ndarray, b: np.ndarray, ranges: tuple[Range, Range], bins: int
) -> np.ndarray:
    """Joint histogram with every pair shared among its four nearest bin centres."""
    al, aw = _soft_bins(a, *ranges[0], bins)
    bl, bw = _soft_bins(b, *ranges[1], bins)
    joint = np.zeros((bins, bins))
    for da, wa in ((0, 1.0 - aw), (1, aw)):
        for db, wb in ((0, 1.0 - bw), (1, bw)):
            np.add.at(joint, (al + da, bl + db), wa * wb)
    return joint
