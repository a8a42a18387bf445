"""The registration pair in SimpleITK form, and its image similarity metric.

The engine works in *working voxel units*: every length handed to SimpleITK is
divided by the geometric mean of the fixed working voxel size, so optimiser
steps, tolerances and control-point spacings read as voxels whatever the
workspace unit. Transforms cross that boundary with
:meth:`~coframe.transforms.base.Transform.with_unit_scale`.

Metric values follow SimpleITK: lower is better (Mattes mutual information
and correlation are negated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from coframe.registration.inputs import WorkImage, block_mean, geometric_voxel
from coframe.registration.mutual_information import mutual_information
from coframe.registration.preset_sections import MetricConfig
from coframe.resampling.chain import inverse_tolerance, map_points_checked
from coframe.transforms.base import Transform
from coframe.transforms.sitk_bridge import from_sitk, to_sitk

#: Fixed points sampled to measure the metric before and after a registration.
QC_POINTS = 20000
#: Fraction of the sample that must map into the moving image for a finite metric.
MIN_OVERLAP = 0.1
#: Of the sample points either of two maps places in the moving image, the fraction both
#: must place there for the two to be compared.
MIN_COMMON = 0.5
#: Fewest common sample points on which two maps are compared.
MIN_COMMON_POINTS = 200


def value_range(work: WorkImage) -> tuple[float, float]:
    """Smallest and largest value of a working image inside its mask."""
    inside = work.array if work.mask is None else work.array[work.mask]
    return float(inside.min()), float(inside.max())


def shrink_image(work: WorkImage, factor: int, sigma: float) -> WorkImage:
    """A working image smoothed by ``sigma`` voxels and downsampled by ``factor``.

    Blocks are averaged first (which smooths by about ``sqrt((f^2 - 1) / 12)``
    voxels), then the remaining smoothing is applied at the coarse level; the
    mask keeps coarse voxels that are mostly inside.
    """
    if factor == 1 and sigma <= 0:
        return work
    coarse = block_mean(work.array.astype(np.float32), factor).astype(np.float32)
    rest = math.sqrt(max(sigma**2 - (factor**2 - 1) / 12.0, 0.0)) / factor
    if rest > 0.05:
        coarse = ndimage.gaussian_filter(coarse, rest, mode="nearest").astype(np.float32)
    mask = None
    if work.mask is not None:
        mask = block_mean(work.mask.astype(np.float32), factor) > 0.5
    vs = np.asarray(work.voxel_size)
    origin = np.asarray(work.origin) + 0.5 * (factor - 1) * vs
    return WorkImage(
        work.name,
        coarse,
        tuple(vs * factor),
        tuple(origin),
        mask,
        work.level,
        work.level_path,
    )


@dataclass(frozen=True)
class LevelImages:
    """One pyramid level of the pair in SimpleITK form (lengths in working voxels).

    Parameters
    ----------
    fixed, moving
        The images.
    fixed_mask, moving_mask
        uint8 masks or None.
    fixed_voxels
        Number of fixed voxels inside the fixed mask.
    """

    fixed: sitk.Image
    moving: sitk.Image
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None
    fixed_voxels: int


class Pair:
    """A fixed and a moving working image, with a cached multi-resolution pyramid.

    Lengths handed to SimpleITK are in working voxels: physical lengths
    divided by :attr:`scale`, the geometric mean of the fixed voxel size.

    Parameters
    ----------
    fixed, moving
        The working images.
    """

    def __init__(self, fixed: WorkImage, moving: WorkImage) -> None:
        self.fixed_work = fixed
        self.moving_work = moving
        self.scale = geometric_voxel(fixed.voxel_size)
        self._levels: dict[tuple[int, float], LevelImages] = {}
        image = self.level(1, 0.0).fixed
        index = [(n - 1) / 2.0 for n in image.GetSize()]
        self.centre = tuple(float(v) for v in image.TransformContinuousIndexToPhysicalPoint(index))

    def level(self, factor: int, sigma: float) -> LevelImages:
        """The pair smoothed by ``sigma`` working voxels and shrunk by ``factor`` (cached)."""
        key = (int(factor), round(float(sigma), 6))
        if key not in self._levels:
            f = shrink_image(self.fixed_work, *key)
            m = shrink_image(self.moving_work, *key)
            count = int(np.prod(f.shape)) if f.mask is None else int(f.mask.sum())
            self._levels[key] = LevelImages(
                f.image(self.scale),
                m.image(self.scale),
                f.mask_image(self.scale),
                m.mask_image(self.scale),
                count,
            )
        return self._levels[key]

    def to_engine(self, t: Transform) -> sitk.Transform:
        """A physical-unit coframe transform as a SimpleITK transform in working voxels."""
        return to_sitk(t.with_unit_scale(1.0 / self.scale))

    def from_engine(self, t: sitk.Transform) -> Transform:
        """A SimpleITK transform in working voxels as a physical-unit coframe transform."""
        return from_sitk(t).with_unit_scale(self.scale)


def configure_metric(
    method: sitk.ImageRegistrationMethod,
    level: LevelImages,
    metric: MetricConfig,
    *,
    strategy: str,
    points: int,
    seed: int,
) -> None:
    """Set metric, sampling, interpolator and masks on a one-level registration method."""
    if metric.name == "mattes":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=metric.bins)
    elif metric.name == "correlation":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM if strategy == "random" else method.REGULAR)
    method.SetMetricSamplingPercentage(min(1.0, points / max(1, level.fixed_voxels)), seed)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0.0])
    if level.fixed_mask is not None:
        method.SetMetricFixedMask(level.fixed_mask)
    if level.moving_mask is not None:
        method.SetMetricMovingMask(level.moving_mask)


class Evaluator:
    """The metric of FIXED -> MOVING transforms on one fixed sample (lower is better).

    A fixed set of random fixed voxels (inside the fixed mask) is drawn once;
    each call maps them through the transform, interpolates the moving image
    linearly and scores the pairs, so values of different transforms compare.
    Points that land outside the moving image (or its mask) are dropped;
    when fewer than :data:`MIN_OVERLAP` of them remain the value is ``inf``.

    Mutual information is negated, its joint histogram binned linearly
    (:mod:`~coframe.registration.mutual_information`) over the fixed sample's
    and the moving image's intensity ranges; correlation is the negated squared
    normalised cross-correlation (either polarity); mean squares is plain.

    Parameters
    ----------
    fixed, moving
        The working images.
    metric
        Metric name and histogram bins.
    points
        Size of the fixed sample.
    seed
        Seed of the sample.
    moving_range
        Intensity range of the moving image's histogram bins (default: the
        moving image's own), so that evaluators of different moving regions
        compare.
    """

    def __init__(
        self,
        fixed: WorkImage,
        moving: WorkImage,
        metric: MetricConfig,
        *,
        points: int = QC_POINTS,
        seed: int = 1,
        moving_range: tuple[float, float] | None = None,
    ) -> None:
        self.metric = metric
        self.moving = moving
        self.seed = seed
        self.points = fixed.masked_points(points, seed)
        index = np.rint((self.points - fixed.lo) / np.asarray(fixed.voxel_size)).astype(np.int64)
        self.fixed_values = fixed.array[tuple(index.T)].astype(np.float64)
        self.moving_range = moving_range or value_range(moving)
        self.fixed_range = (float(self.fixed_values.min()), float(self.fixed_values.max()))

    def moving_values(self, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
        """Moving intensities at the mapped sample points, and which points count.

        A point a numerical inverse in ``transform`` cannot place within half a
        moving voxel does not count.
        """
        mapped = map_points_checked(
            transform, self.points, inverse_tolerance(self.moving.voxel_size)
        )
        index = (mapped - self.moving.lo) / np.asarray(self.moving.voxel_size)
        upper = np.asarray(self.moving.shape) - 1
        keep = np.all(np.isfinite(index), axis=1) & np.all((index >= 0) & (index <= upper), axis=1)
        index = index[keep]
        values = ndimage.map_coordinates(self.moving.array, index.T, order=1, prefilter=False)
        if self.moving.mask is not None:
            near = np.rint(index).astype(np.int64)
            inside = self.moving.mask[tuple(near.T)]
            full = np.zeros(keep.shape, dtype=bool)
            full[np.flatnonzero(keep)[inside]] = True
            return values[inside].astype(np.float64), full
        return values.astype(np.float64), keep

    def overlap(self, transform: Transform) -> float:
        """Fraction of the fixed sample that a transform maps into the moving image."""
        return float(self.moving_values(transform)[1].mean())

    def compare(self, before: Transform, after: Transform) -> tuple[float, float, float]:
        """The metric of two maps on the sample points that both place in the moving image.

        Mutual information measured on fewer points is biased upwards, so
        values on different subsets do not compare: a map that slides the
        images apart, or a true change of scale, changes which points count.
        On a common subset that bias is the same for both.

        Returns
        -------
        tuple
            ``(metric_before, metric_after, common_fraction)``, the fraction taken of
            the points either map places in the moving image (a small moving image
            covers little of the fixed sample, and that is no reason to refuse); the
            metrics are ``inf`` when it is under :data:`MIN_COMMON` or fewer than
            :data:`MIN_COMMON_POINTS` points are shared.
        """
        m0, keep0 = self.moving_values(before)
        m1, keep1 = self.moving_values(after)
        common = keep0 & keep1
        fraction = float(common.sum() / max(1, (keep0 | keep1).sum()))
        if fraction < MIN_COMMON or common.sum() < MIN_COMMON_POINTS:
            return math.inf, math.inf, fraction
        v0 = m0[common[keep0]]
        v1 = m1[common[keep1]]
        f = self.fixed_values[common]
        return self._score(f, v0), self._score(f, v1), fraction

    def worse(self, before: Transform, after: Transform) -> str:
        """Why ``after`` is not better than ``before`` on their common points (empty if it is)."""
        m0, m1, common = self.compare(before, after)
        if not math.isfinite(m1):
            return (
                f"the maps share only {common:.0%} of the sampled fixed points either places in "
                "the moving image, too few to compare"
            )
        if m1 > m0:
            return (
                f"the metric got worse ({m0:.5g} -> {m1:.5g} on the {common:.0%} of the placed "
                "sample points both maps place in the moving image)"
            )
        return ""

    def shuffled(self, transform: Transform) -> float:
        """The metric with the moving values shuffled among the sample: no alignment at all."""
        m, keep = self.moving_values(transform)
        if keep.sum() < 50:
            return math.inf
        rng = np.random.default_rng(self.seed)
        return self._score(self.fixed_values[keep], rng.permutation(m))

    def __call__(self, transform: Transform) -> float:
        """The metric of one FIXED -> MOVING transform (physical units)."""
        m, keep = self.moving_values(transform)
        if keep.sum() < MIN_OVERLAP * self.points.shape[0] or keep.sum() < 50:
            return math.inf
        return self._score(self.fixed_values[keep], m)

    def _score(self, f: np.ndarray, m: np.ndarray) -> float:
        if self.metric.name == "meansquares":
            return float(np.mean((f - m) ** 2))
        if self.metric.name == "correlation":
            fc, mc = f - f.mean(), m - m.mean()
            denominator = float((fc * fc).sum() * (mc * mc).sum())
            return -float((fc * mc).sum() ** 2 / denominator) if denominator > 0 else 0.0
        ranges = (self.fixed_range, self.moving_range)
        return -mutual_information(f, m, self.metric.bins, binning="linear", ranges=ranges)
