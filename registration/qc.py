"""Quality control of a registration: TRE, Jacobian determinants, metric change.

- :func:`tre` measures target registration errors: the distance between
  where an estimated FIXED -> MOVING map sends fixed points and where they
  truly are in the moving image (landmarks or a known transform).
- :func:`jacobian_stats` summarises the Jacobian determinant of a map over a
  working image: values <= 0 mean the map folds space.
- :func:`verdict` decides whether a result may be stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike

from coframe.core.errors import DimensionError, TransformError
from coframe.registration.inputs import WorkImage, geometric_voxel
from coframe.registration.metric import block_mean
from coframe.transforms.base import Transform
from coframe.transforms.sitk_bridge import array_to_image, to_sitk

#: Largest number of grid points the Jacobian determinant is measured on.
JACOBIAN_POINTS = 2_000_000


def tre(
    estimated: Transform,
    fixed_points: ArrayLike,
    moving_points: ArrayLike,
    voxel_size: float,
) -> dict[str, float]:
    """Target registration error statistics.

    Parameters
    ----------
    estimated
        The FIXED -> MOVING map.
    fixed_points
        ``(N, d)`` points in the fixed image.
    moving_points
        ``(N, d)`` where those points truly are in the moving image.
    voxel_size
        Length of one voxel, to report errors in voxels too.

    Returns
    -------
    dict
        ``n``, ``mean``, ``median``, ``p95``, ``max`` (physical units) and the
        same divided by ``voxel_size`` (``mean_vox``...).

    Raises
    ------
    DimensionError
        If the point sets do not match.
    """
    f = np.asarray(fixed_points, dtype=np.float64)
    m = np.asarray(moving_points, dtype=np.float64)
    if f.shape != m.shape or f.ndim != 2 or f.shape[0] == 0:
        raise DimensionError(
            f"TRE needs matching (N, d) fixed and moving points, got {f.shape} and {m.shape}"
        )
    errors = np.linalg.norm(estimated.apply(f) - m, axis=1)
    stats = {
        "mean": float(errors.mean()),
        "median": float(np.median(errors)),
        "p95": float(np.percentile(errors, 95)),
        "max": float(errors.max()),
    }
    out: dict[str, float] = {"n": float(errors.size), **stats}
    out.update({f"{k}_vox": v / voxel_size for k, v in stats.items()})
    out["voxel"] = float(voxel_size)
    return out


def _reference(work: WorkImage) -> tuple[sitk.Image, np.ndarray | None]:
    """A grid over the working image (coarsened to at most JACOBIAN_POINTS) and its mask."""
    factor = max(1, math.ceil((np.prod(work.shape) / JACOBIAN_POINTS) ** (1.0 / len(work.shape))))
    shape = tuple(max(1, n // factor) for n in work.shape)
    vs = np.asarray(work.voxel_size) * factor
    origin = np.asarray(work.origin) + 0.5 * (factor - 1) * np.asarray(work.voxel_size)
    image = array_to_image(np.zeros(shape, dtype=np.uint8), vs, origin)
    mask = None
    if work.mask is not None:
        mask = (
            block_mean(work.mask.astype(np.float32), factor)[tuple(slice(0, n) for n in shape)]
            > 0.5
        )
    return image, mask


def jacobian_stats(transform: Transform, work: WorkImage) -> dict[str, float]:
    """Jacobian determinant statistics of a map over a working image (inside its mask).

    Parameters
    ----------
    transform
        A same-dimension map that SimpleITK can hold (B-spline, field,
        affine or a sequence of them).
    work
        The image whose grid (coarsened to at most :data:`JACOBIAN_POINTS`
        points) the determinant is measured on.

    Returns
    -------
    dict
        ``min``, ``p01``, ``mean``, ``p99``, ``max`` of the determinant,
        ``folding_fraction`` (share of points with determinant <= 0) and
        ``folding_points``.

    Raises
    ------
    TransformError
        If the map cannot be expressed for SimpleITK (thin plate splines:
        sample them into a field first).
    """
    try:
        engine = to_sitk(transform.with_unit_scale(1.0 / geometric_voxel(work.voxel_size)))
    except TransformError as e:
        raise TransformError(f"cannot measure the Jacobian of this map: {e}") from e
    reference, mask = _reference(work)
    scale = geometric_voxel(work.voxel_size)
    reference.SetSpacing(tuple(v / scale for v in reference.GetSpacing()))
    reference.SetOrigin(tuple(v / scale for v in reference.GetOrigin()))
    field = sitk.TransformToDisplacementField(
        engine,
        sitk.sitkVectorFloat64,
        reference.GetSize(),
        reference.GetOrigin(),
        reference.GetSpacing(),
        reference.GetDirection(),
    )
    det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    # The filter's one-sided differences at the grid border are halved: drop that layer.
    inner = tuple(slice(1, n - 1) if n > 2 else slice(None) for n in det.shape)
    det = det[inner]
    mask = None if mask is None else mask[inner]
    values = det[mask] if mask is not None and mask.any() else det.ravel()
    folded = int(np.count_nonzero(values <= 0))
    return {
        "min": float(values.min()),
        "p01": float(np.percentile(values, 1)),
        "mean": float(values.mean()),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "folding_fraction": folded / max(1, values.size),
        "folding_points": float(folded),
    }


def verdict(
    metric_before: float,
    metric_after: float,
    diverged: str,
    *,
    force: bool,
) -> tuple[bool, str]:
    """Whether a result may be stored, and why not.

    Parameters
    ----------
    metric_before, metric_after
        The QC metric of the initial and final transforms (lower is better).
    diverged
        Why the optimisation diverged, or empty.
    force
        Store a result whose metric got worse anyway (``--force``); a
        diverged result is never stored.

    Returns
    -------
    tuple
        ``(ok, reason)``.
    """
    if diverged:
        return False, f"the optimisation diverged ({diverged}); nothing was stored"
    if not math.isfinite(metric_after):
        return False, f"the final metric is {metric_after}; nothing was stored"
    if metric_after > metric_before and not force:
        return False, (
            f"the metric got worse ({metric_before:.6g} -> {metric_after:.6g}, lower is better); "
            "nothing was stored (pass --force to store it anyway)"
        )
    return True, ""


def rounded(values: Mapping[str, Any], digits: int = 6) -> dict[str, Any]:
    """Floats rounded to ``digits`` significant digits, for reports."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float):
            out[k] = float(f"{v:.{digits}g}") if math.isfinite(v) else str(v)
        else:
            out[k] = v
    return out
