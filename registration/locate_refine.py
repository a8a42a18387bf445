"""Local refinement of a section pose with SimpleITK, and the final pose score.

The section becomes a 3D image one voxel thick (its plane is ``z' = 0`` of a
local frame (z', y, x) whose (y, x) are the section's physical coordinates);
the volume is the moving image. A centred 3D transform (rigid, similarity or
affine) is optimised so that the section's plane lands on the matching
oblique slice of the volume; its restriction to ``z' = 0`` is the 2D -> 3D
pose. The similarity metric is SimpleITK's correlation (the negative squared
normalised cross-correlation: indifferent to inverted contrast) or Mattes
mutual information.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from coframe.core.errors import TransformError
from coframe.registration.locate_geometry import GridImage, Pose, resample_grid
from coframe.registration.mutual_information import mutual_information
from coframe.registration.search_features import (
    FEATURE_SIGMA,
    edge_features,
    edge_scale,
    fill_from_nearest,
)
from coframe.transforms.affine import Affine, nearest_rotation
from coframe.transforms.sitk_bridge import array_to_image, from_sitk, to_sitk_centered

#: Metrics the refinement can optimise.
REFINE_METRICS = ("correlation", "mattes")


@dataclass(frozen=True)
class RefineSettings:
    """Optimiser settings of one refinement stage.

    Parameters
    ----------
    kind
        ``rigid``, ``similarity`` or ``affine``.
    metric
        ``correlation`` or ``mattes``.
    iterations
        Most optimiser iterations per pyramid level.
    shrink
        Shrink factors of the pyramid levels (coarse first).
    smoothing
        Gaussian smoothing sigmas (pixels) of the pyramid levels.
    learning_rate
        First step length (physical units scaled by the optimiser scales).
    min_step
        Step length at which the optimiser stops.
    bins
        Histogram bins of Mattes mutual information.
    """

    kind: str = "similarity"
    metric: str = "correlation"
    iterations: int = 150
    shrink: tuple[int, ...] = (2, 1)
    smoothing: tuple[float, ...] = (1.0, 0.0)
    learning_rate: float = 1.0
    min_step: float = 1e-3
    bins: int = 32


def section_frame_affine(pose: Pose) -> Affine:
    """The 3D affine ``(z', y, x) -> volume`` whose plane ``z' = 0`` is the pose.

    The ``z'`` column is the pose normal scaled by the mean length of the
    in-plane columns, so a rigid or similarity pose stays a scaled rotation.
    """
    scale = float(np.mean(np.linalg.norm(pose.linear, axis=0)))
    linear = np.column_stack([pose.normal * scale, pose.linear])
    translation = pose.center - pose.linear @ pose.section_center
    return Affine.from_linear(linear, translation)


def pose_from_frame(affine: Affine, section_center: np.ndarray) -> Pose:
    """The pose of the plane ``z' = 0`` of a 3D affine ``(z', y, x) -> volume``."""
    linear = affine.linear[:, 1:]
    centre = affine.apply(np.concatenate([[0.0], section_center]))
    return Pose(centre, linear.copy(), np.asarray(section_center, float))


def _closest_similarity(linear: np.ndarray) -> np.ndarray:
    """The nearest rotation scaled by the geometric mean of the singular values."""
    factor = abs(float(np.linalg.det(linear))) ** (1.0 / linear.shape[0])
    return nearest_rotation(linear) * factor


def refine_pose(
    volume: GridImage,
    section: GridImage,
    pose: Pose,
    settings: RefineSettings,
) -> tuple[Pose, float]:
    """Optimise a pose with SimpleITK.

    Parameters
    ----------
    volume
        The volume (or a crop holding the plane), any spacing.
    section
        The section at the refinement spacing; its physical (y, x) are those
        of ``pose.section_center``.
    pose
        The starting pose.
    settings
        The optimiser settings.

    Returns
    -------
    tuple
        The refined pose and the final metric value (lower is better).
    """
    if settings.metric not in REFINE_METRICS:
        raise TransformError(
            f"refinement metric {settings.metric!r}: expected one of {', '.join(REFINE_METRICS)}"
        )
    start = section_frame_affine(pose)
    if settings.kind != "affine":
        start = Affine.from_linear(_closest_similarity(start.linear), start.translation)
    # Lengths are divided by the section radius: one unit of any parameter (radians,
    # matrix entries, translations) then moves the section by about one unit.
    radius = 0.5 * float(np.hypot(*(np.asarray(section.shape) * np.asarray(section.spacing))))
    f = 1.0 / radius
    centre = np.concatenate([[0.0], pose.section_center]) * f
    transform = to_sitk_centered(start.with_unit_scale(f), centre, settings.kind)
    value = 0.0
    for shrink, sigma in zip(settings.shrink, settings.smoothing, strict=True):
        fixed_grid = section if shrink <= 1 else resample_grid(section, shrink * section.spacing[0])
        spacing = float(np.mean(fixed_grid.spacing))
        fixed_array = fixed_grid.array
        moving_array = volume.array
        if sigma > 0:
            fixed_array = ndimage.gaussian_filter(fixed_array, sigma, mode="nearest")
            voxel_sigma = sigma * spacing / np.asarray(volume.spacing)
            moving_array = ndimage.gaussian_filter(moving_array, voxel_sigma, mode="nearest")
        fixed = array_to_image(
            fixed_array[None].astype(np.float32),
            np.array([spacing, *fixed_grid.spacing]) * f,
            np.array([0.0, *fixed_grid.origin]) * f,
        )
        moving = array_to_image(
            moving_array.astype(np.float32),
            np.asarray(volume.spacing) * f,
            np.asarray(volume.origin) * f,
        )
        reg = sitk.ImageRegistrationMethod()
        if fixed_grid.mask is not None:  # masked pixels take no part in the metric
            mask = array_to_image(
                fixed_grid.usable[None].astype(np.uint8),
                np.array([spacing, *fixed_grid.spacing]) * f,
                np.array([0.0, *fixed_grid.origin]) * f,
            )
            reg.SetMetricFixedMask(sitk.Cast(mask, sitk.sitkUInt8))
        if settings.metric == "correlation":
            reg.SetMetricAsCorrelation()
        else:
            reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
        reg.SetMetricSamplingStrategy(reg.NONE)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=settings.learning_rate * spacing * f,
            minStep=settings.min_step * spacing * f,
            numberOfIterations=settings.iterations,
            relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-10,
        )
        reg.SetOptimizerScales([1.0] * transform.GetNumberOfParameters())
        reg.SetInitialTransform(transform, inPlace=True)
        try:
            value = float(reg.Execute(fixed, moving) and reg.GetMetricValue())
        except RuntimeError as e:
            raise TransformError(
                f"slice-to-volume refinement failed ({str(e).strip().splitlines()[-1]}): the "
                "section may not overlap the volume; give --near or --normal"
            ) from e
    refined = from_sitk(transform).as_affine()
    if refined is None:
        raise TransformError("slice-to-volume refinement returned a non-linear transform")
    return pose_from_frame(refined.with_unit_scale(radius), pose.section_center), value


def slice_values(
    volume: GridImage, pose: Pose, section: GridImage
) -> tuple[np.ndarray, np.ndarray]:
    """The volume resampled on the section's pixel grid placed by ``pose``.

    Returns
    -------
    tuple
        ``(values, inside)``: float32 samples (linear interpolation, 0
        outside) and a boolean mask of pixels inside the volume.
    """
    h, w = section.shape
    idx = volume.to_index(pose.apply(section.points())).T
    values = ndimage.map_coordinates(volume.array, idx, order=1, mode="constant", cval=0.0)
    inside = np.all((idx > -0.5) & (idx < np.asarray(volume.shape)[:, None] - 0.5), axis=0)
    return values.reshape(h, w).astype(np.float32), inside.reshape(h, w)


def inside_fraction(volume_extent: np.ndarray, pose: Pose, section: GridImage) -> float:
    """Fraction of the section's unmasked pixels that the pose places inside the volume.

    Parameters
    ----------
    volume_extent
        ``(3, 2)`` physical (min, max) of the volume along z, y, x.
    pose
        The pose.
    section
        The section (its mask, if any, says which pixels count).
    """
    usable = section.usable.ravel()
    if not usable.any():
        return 0.0
    pts = pose.apply(section.points()[usable])
    ext = np.asarray(volume_extent, dtype=float)
    ok = np.all((pts >= ext[:, 0]) & (pts <= ext[:, 1]), axis=1)
    return float(ok.mean())


#: Similarities :func:`pose_score` computes.
SCORE_METRICS = ("mi", "ncc", "edges")


def pose_score(
    volume: GridImage,
    pose: Pose,
    section: GridImage,
    *,
    metric: str = "mi",
    bins: int = 16,
    min_overlap: float = 0.5,
) -> tuple[float, float]:
    """Similarity of the section with the volume's slice under a pose.

    Only pixels inside the volume and not masked (:attr:`GridImage.mask`)
    count; a pose that leaves less than ``min_overlap`` of the section's
    unmasked pixels inside scores 0.

    Parameters
    ----------
    volume
        The volume (or a crop holding the plane).
    pose
        The pose.
    section
        The section at the scoring spacing.
    metric
        ``mi`` (mutual information, nats, of ``bins`` x ``bins`` histograms),
        ``ncc`` (absolute normalised cross-correlation) or ``edges`` (cosine
        of the two images' edge features,
        :func:`~coframe.registration.search_features.edge_features`: 1 when
        every edge runs the same way in both, whatever the contrasts).
    bins
        Histogram bins of ``mi``.
    min_overlap
        Smallest fraction of the section inside the volume.

    Returns
    -------
    tuple
        ``(score, sign)``: the score (higher is better) and the sign of the
        correlation (-1 for inverted contrast).
    """
    if metric not in SCORE_METRICS:
        raise TransformError(f"score metric {metric!r}: expected one of {', '.join(SCORE_METRICS)}")
    values, inside = slice_values(volume, pose, section)
    usable = section.usable
    inside &= usable
    if inside.sum() < min_overlap * max(int(usable.sum()), 1):
        return 0.0, 1.0
    a = section.array[inside].astype(np.float64)
    b = values[inside].astype(np.float64)
    ac, bc = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.sum(ac * ac) * np.sum(bc * bc)))
    ncc = float(np.sum(ac * bc) / den) if den > 0 else 0.0
    sign = -1.0 if ncc < 0 else 1.0
    if metric == "ncc":
        return abs(ncc), sign
    if metric == "edges":
        return edge_agreement(section.array, values, inside), sign
    return mutual_information(a, b, bins), sign


def edge_agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Cosine of the edge features of two 2D images over ``mask``; 0 when either has no
    edges there (pixels outside the mask take their nearest value inside first)."""
    if not mask.any():
        return 0.0
    fa, fb = (
        edge_features(
            fill_from_nearest(x, mask), mask, FEATURE_SIGMA, edge_scale(x, mask, FEATURE_SIGMA)
        )
        for x in (a, b)
    )
    den = float(np.sqrt(np.sum(fa * fa) * np.sum(fb * fb)))
    return float(np.sum(fa * fb) / den) if den > 0 else 0.0


def tilt_margin(
    volume: GridImage,
    pose: Pose,
    section: GridImage,
    *,
    degrees: float,
    metric: str = "mi",
    bins: int = 16,
) -> float:
    """How much the score drops when the plane tilts by ``degrees``: ``1 - best tilted / score``.

    The pose is tilted both ways about each in-plane axis, through the
    section's centre. A margin near zero or negative means the volume does
    not pin the plane's tilt down to ``degrees`` (a tilted plane scores as
    well or better), whatever the confidence against distinct poses says.

    Parameters
    ----------
    volume
        The volume (or a crop holding the plane and its tilts).
    pose
        The pose.
    section
        The section at the scoring spacing.
    degrees
        Tilt tried.
    metric, bins
        As in :func:`pose_score`.
    """
    score = pose_score(volume, pose, section, metric=metric, bins=bins)[0]
    if score <= 0:
        return 0.0
    tilted = []
    for k in range(2):
        a = pose.linear[:, k] / np.linalg.norm(pose.linear[:, k])
        cross = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        for sign in (-1.0, 1.0):
            angle = np.deg2rad(sign * degrees)  # Rodrigues: rotation about the in-plane axis
            rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * (cross @ cross)
            moved = Pose(pose.center, rotation @ pose.linear, pose.section_center)
            tilted.append(pose_score(volume, moved, section, metric=metric, bins=bins)[0])
    return float(1.0 - max(tilted) / score)
