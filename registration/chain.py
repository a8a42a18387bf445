"""One registration chain run from a start: working images, steps, slice drift.

:func:`register_from` reads the working images around a start map (levels and
overlapping regions from :mod:`coframe.registration.inputs`), runs the
preset's steps from it (``moments -> rigid -> similarity -> affine ->
bspline``, each from the last), removing a FIB-SEM's slice-wise brightness
drift where the preset asks, and returns a :class:`RegistrationResult`.
:mod:`coframe.registration.pipeline` decides where the start comes from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from coframe.core.errors import RegistrationError
from coframe.registration import inputs
from coframe.registration.deformable import bspline_step
from coframe.registration.drift import estimate_slice_drift
from coframe.registration.inputs import WorkImage
from coframe.registration.intensity import StepReport, linear_step, moments_step, multi_start
from coframe.registration.metric import Evaluator, Pair
from coframe.registration.presets import LINEAR_STEPS, Preset
from coframe.registration.result import RegistrationResult
from coframe.resampling.chain import inverse_tolerance, map_points_checked
from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform
from coframe.transforms.point_pairs import fit_linear
from coframe.volumes.volume import Volume


def linear_part(t: Transform, work: WorkImage) -> Affine:
    """The affine of a map, or its least-squares affine over a working image when nonlinear."""
    affine = t.as_affine()
    if affine is not None:
        return affine
    points = work.masked_points(4000, seed=7)
    # points a numerical inverse cannot place within half a voxel are left out of the fit
    mapped = map_points_checked(t, points, inverse_tolerance(work.voxel_size))
    placed = np.all(np.isfinite(mapped), axis=1)
    fitted = fit_linear(points[placed], mapped[placed], "affine").as_affine()
    assert fitted is not None
    return fitted


@dataclass(frozen=True)
class Reads:
    """What the caller asked about masks, levels and names."""

    fixed_mask: Volume | None
    moving_mask: Volume | None
    level_moving: int | str | None
    level_fixed: int | str | None
    names: tuple[str, str]


def register_from(
    moving: Volume,
    fixed: Volume,
    preset: Preset,
    start_map: Transform,
    source: str,
    reads: Reads,
) -> RegistrationResult:
    """Read the working images around ``start_map`` and run the preset's chain from it."""
    names = reads.names
    start = time.perf_counter()
    overlap = inputs.overlap_boxes(
        moving, fixed, start_map, preset.working.margin, rotations=preset.multi_start.enabled
    )
    lm, lf = inputs.choose_levels(
        moving,
        fixed,
        overlap,
        voxel_size=preset.working.voxel_size,
        max_voxels=preset.working.max_voxels,
        level_moving=reads.level_moving,
        level_fixed=reads.level_fixed,
    )
    fixed_work = inputs.read_work_image(fixed, lf, overlap.fixed_lo, overlap.fixed_hi, names[1])
    moving_work = inputs.read_work_image(moving, lm, overlap.moving_lo, overlap.moving_hi, names[0])
    mask_opts = {"exclude_padding": preset.mask.exclude_padding, "erode": preset.mask.erode}
    fixed_work = inputs.combine_masks(
        fixed_work, "fixed", user=reads.fixed_mask, unit=fixed.unit, **mask_opts
    )
    moving_work = inputs.combine_masks(
        moving_work, "moving", user=reads.moving_mask, unit=moving.unit, **mask_opts
    )
    evaluate = Evaluator(fixed_work, moving_work, preset.metric, seed=preset.seed)
    before = evaluate(start_map)
    if not math.isfinite(before):
        raise RegistrationError(
            f"no overlap after initialisation: fewer than 10% of the sampled {names[1]} points "
            f"map into {names[0]}; give a better start with --init-edge, --landmarks or "
            "--set init=geometry"
        )
    current, steps, diverged, jacobian, fixed_work, moving_work, evaluate = _run_chain(
        fixed_work, moving_work, start_map, source, preset, evaluate
    )
    before = evaluate(start_map)  # on the images the chain ended with (drift removed)
    after = evaluate(current)
    return RegistrationResult(
        transform=current,
        initial=start_map,
        initial_source=source,
        steps=tuple(steps),
        metric_name=preset.metric.name,
        metric_before=before,
        metric_after=after,
        diverged=diverged,
        jacobian=jacobian,
        fixed=fixed_work,
        moving=moving_work,
        seconds=time.perf_counter() - start,
        preset=preset,
    )


def _run_chain(
    fixed: WorkImage,
    moving: WorkImage,
    start_map: Transform,
    source: str,
    preset: Preset,
    evaluate: Evaluator,
) -> tuple[
    Transform, list[StepReport], str, dict[str, float] | None, WorkImage, WorkImage, Evaluator
]:
    """Run the preset's steps, removing slice drift where the preset asks for it.

    Without drift correction the steps simply run in order. With it, a start
    that already aligns the images (an edge, landmarks, nuclei or a searched
    pose) measures the drift first; otherwise the linear steps run, the drift
    is measured on their result, and the last linear step (and any B-spline
    step) runs again on the corrected images. Returns the map, the step
    reports, the divergence reason (empty if none), the Jacobian statistics,
    the working images and the evaluator the chain ended with.
    """
    start = linear_part(start_map, fixed)
    if preset.drift.image == "none":
        result = _run_steps(Pair(fixed, moving), fixed, moving, start, preset, evaluate)
        return (*result, fixed, moving, evaluate)
    if source in ("edge", "landmarks", "nuclei", "pose"):
        fixed, moving, evaluate, report = _correct_drift(fixed, moving, start, preset, evaluate)
        current, steps, diverged, jacobian = _run_steps(
            Pair(fixed, moving), fixed, moving, start, preset, evaluate
        )
        return current, [report, *steps], diverged, jacobian, fixed, moving, evaluate
    first = dataclasses.replace(preset, steps=tuple(s for s in preset.steps if s != "bspline"))
    current, steps, diverged, jacobian = _run_steps(
        Pair(fixed, moving), fixed, moving, start, first, evaluate
    )
    if diverged:
        return current, steps, diverged, jacobian, fixed, moving, evaluate
    fixed, moving, evaluate, report = _correct_drift(fixed, moving, current, preset, evaluate)
    steps.append(report)
    refit = [s for s in preset.steps if s in LINEAR_STEPS][-1:]
    refit += [s for s in preset.steps if s == "bspline"]
    if refit:
        again = dataclasses.replace(
            preset,
            steps=tuple(refit),
            multi_start=dataclasses.replace(preset.multi_start, enabled=False),
        )
        current, more, diverged, jacobian = _run_steps(
            Pair(fixed, moving), fixed, moving, linear_part(current, fixed), again, evaluate
        )
        steps.extend(more)
    return current, steps, diverged, jacobian, fixed, moving, evaluate


def _correct_drift(
    fixed: WorkImage,
    moving: WorkImage,
    current: Transform,
    preset: Preset,
    evaluate: Evaluator,
) -> tuple[WorkImage, WorkImage, Evaluator, StepReport]:
    """Remove the slice-wise drift of the preset's drifting image; a new evaluator scores both."""
    start = time.perf_counter()
    axis = "zyx".index(preset.drift.axis)
    if preset.drift.image == "fixed":
        drift = estimate_slice_drift(fixed, moving, current, axis=axis, bins=preset.drift.bins)
        fixed = drift.correct(fixed)
    else:
        drift = estimate_slice_drift(
            moving, fixed, linear_part(current, fixed).inverse(), axis=axis, bins=preset.drift.bins
        )
        moving = drift.correct(moving)
    corrected = Evaluator(fixed, moving, preset.metric, seed=preset.seed)
    report = StepReport(
        name="drift",
        metric_before=evaluate(current),
        metric_after=corrected(current),
        seconds=time.perf_counter() - start,
        note=f"{preset.drift.image} image: {drift.summary()}",
    )
    return fixed, moving, corrected, report


def _run_steps(
    pair: Pair,
    fixed: WorkImage,
    moving: WorkImage,
    start: Affine,
    preset: Preset,
    evaluate: Evaluator,
) -> tuple[Transform, list[StepReport], str, dict[str, float] | None]:
    """Run the chain; stop at the first diverged step."""
    size = float(np.linalg.norm(fixed.hi - fixed.lo))
    affine = start
    current: Transform = start
    reports: list[StepReport] = []
    jacobian = None
    linear = [s for s in preset.steps if s in LINEAR_STEPS]
    multi_done = not preset.multi_start.enabled
    for name in preset.steps:
        if name != "moments" and not multi_done:
            affine, report = multi_start(fixed, pair, affine, preset, evaluate)
            reports.append(report)
            current, multi_done = affine, True
        if name == "moments":
            affine, report = moments_step(fixed, moving, affine, evaluate)
        elif name in LINEAR_STEPS:
            shrink, sigmas = preset.pyramid.shrink_factors, preset.pyramid.smoothing_sigmas
            if name != linear[-1] and len(shrink) > 1:
                shrink, sigmas = shrink[:-1], sigmas[:-1]
            affine, report = linear_step(
                name,
                pair,
                affine,
                preset,
                evaluate,
                shrink_factors=shrink,
                smoothing_sigmas=sigmas,
                region_size=size,
            )
        else:
            bspline_result, report, stats = bspline_step(pair, affine, preset, evaluate)
            jacobian = stats or None
            reports.append(report)
            if report.note.startswith("diverged"):
                return current, reports, report.note.removeprefix("diverged: "), jacobian
            current = bspline_result
            continue
        reports.append(report)
        current = affine
        if report.note.startswith("diverged"):
            return current, reports, report.note.removeprefix("diverged: "), jacobian
    return current, reports, "", jacobian
