"""The sections of a registration preset: metric, sampling, pyramid, optimiser, search...

Each is a frozen dataclass whose fields are the keys of one section of a
preset's YAML (:mod:`coframe.registration.presets` reads and checks them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricConfig:
    """Image similarity metric.

    Parameters
    ----------
    name
        ``mattes`` (Mattes mutual information, any modality pair),
        ``correlation`` (normalised cross-correlation, same modality, either
        polarity sign kept) or ``meansquares`` (same modality and scale).
    bins
        Histogram bins of Mattes mutual information.
    """

    name: str = "mattes"
    bins: int = 32


@dataclass(frozen=True)
class SamplingConfig:
    """Which fixed-image points the metric is evaluated on.

    Parameters
    ----------
    strategy
        ``random`` or ``regular`` (a grid with random jitter).
    points
        Number of sampled points at each pyramid level, coarsest first (one
        number for every level). A count, not a percentage: the cost stays
        flat whatever the image size.
    """

    strategy: str = "random"
    points: tuple[int, ...] = (3000, 3000, 10000)

    def per_level(self, levels: int) -> tuple[int, ...]:
        """Points of each of ``levels`` levels (the last value repeats)."""
        values = self.points or (3000,)
        return tuple(values[min(i, len(values) - 1)] for i in range(levels))


@dataclass(frozen=True)
class PyramidConfig:
    """Multi-resolution schedule, coarsest level first.

    Parameters
    ----------
    shrink_factors
        Downsampling factor of each level, relative to the working level.
    smoothing_sigmas
        Gaussian smoothing of each level, in working voxels.
    """

    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)


@dataclass(frozen=True)
class OptimizerConfig:
    """Regular-step gradient descent of the linear steps.

    Parameters
    ----------
    iterations
        Maximum iterations per pyramid level.
    learning_rate
        First step length, in working voxels of shift.
    min_step
        Step length that ends a level (converged), in working voxels.
    relaxation
        Factor the step shrinks by when the gradient changes direction.
    """

    iterations: int = 200
    learning_rate: float = 1.0
    min_step: float = 0.001
    relaxation: float = 0.6


@dataclass(frozen=True)
class WorkingConfig:
    """Which resolution and region the registration works on.

    Parameters
    ----------
    voxel_size
        ``"auto"`` (the coarser of the two images' finest voxel sizes) or a
        number in the workspace unit.
    max_voxels
        Largest number of fixed voxels at the working level; a coarser level
        is used when the overlap holds more.
    margin
        Extra moving region read around the fixed box mapped through the
        initial transform, as a fraction of that box's size.
    """

    voxel_size: Any = "auto"
    max_voxels: int = 4_000_000
    margin: float = 0.2


@dataclass(frozen=True)
class MaskConfig:
    """Automatic masks.

    Parameters
    ----------
    exclude_padding
        Exclude the zero padding that touches the border of the fixed and
        moving images (FIB-SEM volumes are padded with zeros).
    erode
        Working voxels the kept region is eroded by, away from the padding.
    """

    exclude_padding: bool = True
    erode: int = 2


@dataclass(frozen=True)
class MultiStartConfig:
    """Several rotated starts for poses far from identity.

    Parameters
    ----------
    enabled
        Try the starts (also ``--multi-start``).
    angles
        Rotation angles in degrees tried about each axis (identity is always tried).
    iterations
        Rigid iterations at the coarsest level for each start.
    """

    enabled: bool = False
    angles: tuple[float, ...] = (90.0, 180.0, 270.0)
    iterations: int = 40


@dataclass(frozen=True)
class SearchConfig:
    """The global search that finds a small image anywhere inside a large one.

    Parameters
    ----------
    auto
        Run the search when no start is given (no edge, no landmarks) and one
        image's extent is under ``auto_ratio`` of the other's on some axis,
        even if ``steps`` does not name it.
    auto_ratio
        Extent ratio below which the search runs by itself.
    angle_step
        Spacing of the coarse orientations, in degrees.
    axis
        The axis (z, y, x) the images are rotated about, if known (empty:
        every orientation); also ``--axis``.
    max_tilt
        With ``axis``: largest tilt of the axis, in degrees (``--max-tilt``).
    scale_range
        Isotropic scale searched: ``1 +- scale_range``.
    voxels
        Size of the smaller image at the coarse spacing (voxels along its
        middle axis).
    keep
        Hypotheses refined by the registration chain.
    near
        Where the smaller image's centre lies in the larger one (z, y, x),
        physical (``--near``); empty: anywhere.
    near_radius
        Half-size of the box searched around ``near`` (0: the smaller
        image's largest extent).
    box
        Box of the larger image (z0, y0, x0, z1, y1, x1) where the smaller
        image's centre lies (``--search-box``); empty: anywhere.
    score
        How poses are scored: ``mi`` (mutual information of quantised
        intensities, any contrast relation) or ``edges`` (correlation of
        normalised-gradient outer products; cheaper, needs shared edges).
    bins
        Intensity bins of each image for ``mi``.
    seed
        Seed of the random positions that estimate the unaligned score.
    """

    auto: bool = True
    auto_ratio: float = 0.5
    angle_step: float = 30.0
    axis: tuple[float, ...] = ()
    max_tilt: float = 20.0
    scale_range: float = 0.1
    voxels: int = 24
    keep: int = 3
    near: tuple[float, ...] = ()
    near_radius: float = 0.0
    box: tuple[float, ...] = ()
    score: str = "mi"
    bins: int = 6
    seed: int = 1


@dataclass(frozen=True)
class NucleiConfig:
    """The ``nuclei`` step: nuclei found in both images, matched as point sets.

    Lengths are in micrometres whatever the workspace unit.

    Parameters
    ----------
    diameter
        Smallest and largest nucleus diameter (the size prior): the level
        read is the coarsest whose voxels are at most a quarter of the
        smallest; blobs are detected over this range.
    polarity
        ``auto`` (from the modality: bright in X-ray, dark in EM), ``bright``,
        ``dark`` or ``both`` (each tried, the match with more inliers kept),
        for an image searched for blobs (not a labels image).
    model
        ``similarity`` or ``affine``: the map fitted to the matched nuclei.
    tolerance
        Largest distance between a matched pair after the fit.
    min_inliers
        Fewest matched pairs a result is trusted with.
    runner_up_ratio
        A different pose matching this share of the winner's pairs is a tie.
    min_score
        Smallest blob response, in robust standard deviations of the response.
    max_points
        Most blobs kept per image (the strongest).
    """

    diameter: tuple[float, ...] = (4.0, 10.0)
    polarity: str = "auto"
    model: str = "similarity"
    tolerance: float = 2.0
    min_inliers: int = 8
    runner_up_ratio: float = 0.75
    min_score: float = 6.0
    max_points: int = 5000


@dataclass(frozen=True)
class DriftConfig:
    """Slice-wise intensity drift of one image, removed before the final fits.

    Parameters
    ----------
    image
        ``none``, ``fixed``, ``moving``, or a modality (``fibsem``: whichever
        of the two images has it, none if neither): the image whose slices
        drift in brightness (a FIB-SEM volume), corrected against the other
        once the linear steps have aligned them (:mod:`coframe.registration.drift`);
        the last linear step and any B-spline step then run on the corrected
        image.
    axis
        ``z``, ``y`` or ``x``: the slicing (milling) axis of that image.
    bins
        Quantile bins of the other image's values that predict the drifting one's.
    """

    image: str = "none"
    axis: str = "z"
    bins: int = 32


def drift_image(image: str, moving_modality: str | None, fixed_modality: str | None) -> str:
    """``none``, ``fixed`` or ``moving`` for a drift setting naming a role or a modality."""
    if image in ("none", "fixed", "moving"):
        return image
    if fixed_modality == image:
        return "fixed"
    if moving_modality == image:
        return "moving"
    return "none"


@dataclass(frozen=True)
class BSplineConfig:
    """The deformable B-spline step.

    Parameters
    ----------
    grid_spacing
        Control-point spacing at the finest level, in working voxels.
    shrink_factors
        Image downsampling of each level, coarsest first; the control grid is
        twice as coarse at each coarser level.
    smoothing_sigmas
        Gaussian smoothing of each level, in working voxels.
    iterations
        Iterations per level.
    points
        Sampled fixed points per iteration (a new random sample every iteration).
    learning_rate
        Largest control-point step of an iteration, in working voxels.
    update_smoothing
        Gaussian smoothing (in control points) of every update, a regulariser
        that keeps regions without image structure smooth; 0 disables it.
    max_jacobian_folding
        Largest fraction of sampled points with Jacobian determinant <= 0
        accepted before the step counts as diverged.
    """

    grid_spacing: float = 10.0
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 60
    points: int = 5000
    learning_rate: float = 0.5
    update_smoothing: float = 1.0
    max_jacobian_folding: float = 0.0
