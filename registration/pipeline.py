"""Chained registration of a moving volume onto a fixed one.

:func:`register` runs the preset's steps (``moments -> rigid -> similarity ->
affine -> bspline``), each starting from the result of the one before, on the
working levels and overlapping regions chosen by :mod:`coframe.registration.inputs`.
It returns a :class:`RegistrationResult`: the FIXED -> MOVING map (the ITK
convention: what resampling the moving image into the fixed frame needs) and,
separately, what the optimisation did. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from coframe.core.errors import RegistrationError
from coframe.registration import inputs
from coframe.registration.deformable import bspline_step
from coframe.registration.drift import estimate_slice_drift
from coframe.registration.inputs import WorkImage
from coframe.registration.intensity import StepReport, linear_step, moments_step, multi_start
from coframe.registration.metric import Evaluator, Pair, value_range
from coframe.registration.preset_sections import MetricConfig, drift_image
from coframe.registration.presets import LINEAR_STEPS, Preset
from coframe.registration.result import RegistrationResult
from coframe.registration.search import Hypothesis, global_search, needs_search
from coframe.registration.search_inputs import level_slices
from coframe.registration.trust import TRUST_BINS, WAY_FORWARD, judge, scale_problem
from coframe.resampling.chain import inverse_tolerance, map_points_checked
from coframe.transforms.affine import Affine, Identity, Translation
from coframe.transforms.base import Transform
from coframe.transforms.point_pairs import fit_linear
from coframe.volumes.volume import Volume


def geometry_start(moving: Volume, fixed: Volume) -> Translation:
    """The translation that puts the fixed image's centre on the moving image's centre."""
    return Translation(_centre(moving) - _centre(fixed))


def _centre(volume: Volume) -> np.ndarray:
    lo, hi = np.array(volume.levels[0].extent).T
    return 0.5 * (lo + hi)


def resolve_start(
    moving: Volume,
    fixed: Volume,
    init: str,
    given: Transform | None,
    given_source: str,
    auto_start: str = "geometry",
) -> tuple[Transform, str]:
    """The initial FIXED -> MOVING map and how it was made.

    Parameters
    ----------
    moving, fixed
        The volumes.
    init
        The preset's ``init``: ``auto``, ``identity``, ``geometry``,
        ``moments``, ``edge`` or ``landmarks``.
    given
        A map from an edge or landmarks, when the caller has one.
    given_source
        What ``given`` is (``edge``, ``landmarks``).
    auto_start
        What ``auto`` falls back to without ``given``: ``identity`` or ``geometry``.
    """
    if given is not None and init in ("auto", given_source):
        return given, given_source
    if init == "geometry" or (init == "auto" and auto_start == "geometry"):
        return geometry_start(moving, fixed), "geometry"
    return Identity(3), "identity"


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


def register(
    moving: Volume,
    fixed: Volume,
    preset: Preset,
    *,
    initial: Transform | None = None,
    initial_source: str = "edge",
    fixed_mask: Volume | None = None,
    moving_mask: Volume | None = None,
    level_moving: int | str | None = None,
    level_fixed: int | str | None = None,
    names: tuple[str, str] = ("MOVING", "FIXED"),
    progress: Any = None,
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with the preset's chained steps.

    Without a start (no edge, no landmarks) and with one image much smaller
    than the other, or with ``search`` in the steps, a global search finds
    the smaller image in the larger first (:func:`searching`); its best
    hypotheses are each refined by the chain and the best refined one wins.
    Every result carries the trust gate's verdict in ``extras["trust"]``
    (:mod:`coframe.registration.trust`), and a searched one the search's
    numbers in ``extras["search"]``.

    Parameters
    ----------
    moving, fixed
        3D volumes in the same unit.
    preset
        Steps and settings (:mod:`coframe.registration.presets`).
    initial
        A starting FIXED -> MOVING map (from a workspace edge or landmarks);
        used when ``preset.init`` is ``auto`` or ``initial_source``.
    initial_source
        What ``initial`` is.
    fixed_mask, moving_mask
        Mask images in the fixed and moving spaces (non-zero = use).
    level_moving, level_fixed
        Pyramid levels to work at instead of the automatic choice.
    names
        Names of the moving and fixed images, for messages.
    progress
        Optional ``progress(done, total)`` called while the search scans.

    Returns
    -------
    RegistrationResult
        The map and the report. A diverged result carries the reason in
        ``diverged`` and its transform is the last sane one.

    Raises
    ------
    RegistrationError
        No overlap after initialisation, masks that empty the sample, NaNs
        in the data.
    DimensionError, UnitError, LevelError
        For 2D volumes, disagreeing units, missing levels.
    """
    start = time.perf_counter()
    inputs.check_pair(moving, fixed)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(preset.threads)
    if preset.init == "moments" and preset.steps[0] != "moments":
        preset = dataclasses.replace(preset, steps=("moments", *preset.steps))
    role = drift_image(preset.drift.image, moving.modality, fixed.modality)
    if role != preset.drift.image:  # named by modality: the fixed or the moving image, or none
        preset = dataclasses.replace(preset, drift=dataclasses.replace(preset.drift, image=role))
    start_map, source = resolve_start(
        moving, fixed, preset.init, initial, initial_source, preset.auto_start
    )
    if preset.init == "edge" and source != "edge":
        raise RegistrationError(
            f"--init-edge (init: edge) needs a {names[1]} -> {names[0]} path in the workspace "
            "and there is none: link or register one first, or use --set init=auto"
        )
    if preset.init == "landmarks" and source != "landmarks":
        raise RegistrationError(
            "init is 'landmarks' but no landmark file was given: pass --landmarks FILE or "
            "--set init=auto"
        )
    reads = _Reads(fixed_mask, moving_mask, level_moving, level_fixed, names)
    if searching(preset, moving, fixed, source):
        result = _register_searched(moving, fixed, preset, reads, progress)
    else:
        chain = dataclasses.replace(preset, steps=tuple(s for s in preset.steps if s != "search"))
        result = _register_from(moving, fixed, chain, start_map, source, reads)
        trust_eval = Evaluator(result.fixed, result.moving, TRUST_METRIC, seed=preset.seed)
        result.extras["trust"] = judge(trust_eval, result.transform)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


#: The metric of the trust gate and of the choice between searched hypotheses.
TRUST_METRIC = MetricConfig(name="mattes", bins=TRUST_BINS)


@dataclass(frozen=True)
class _Reads:
    """What the caller asked about masks, levels and names."""

    fixed_mask: Volume | None
    moving_mask: Volume | None
    level_moving: int | str | None
    level_fixed: int | str | None
    names: tuple[str, str]


def searching(preset: Preset, moving: Volume, fixed: Volume, source: str) -> bool:
    """Whether a registration starts with the global search.

    It does when no edge or landmarks gave the start and either ``steps``
    names ``search`` or (``init: auto``, ``search.auto``) one image is under
    ``search.auto_ratio`` of the other's extent on some axis.
    """
    if source in ("edge", "landmarks"):
        return False
    if "search" in preset.steps:
        return True
    return (
        preset.init == "auto"
        and preset.search.auto
        and needs_search(moving, fixed, preset.search.auto_ratio)
    )


def _register_searched(
    moving: Volume, fixed: Volume, preset: Preset, reads: _Reads, progress: Any
) -> RegistrationResult:
    """Search, refine each hypothesis with the chain, keep the best on one common sample."""
    found = global_search(
        moving,
        fixed,
        preset.search,
        exclude_padding=preset.mask.exclude_padding,
        drift=(preset.drift.image, "zyx".index(preset.drift.axis)),
        names=reads.names,
        progress=progress,
    )
    chain = dataclasses.replace(preset, steps=_refining_steps(preset))
    results: list[RegistrationResult] = []
    refined: list[Hypothesis] = []  # the hypothesis each result started from
    failures: list[str] = []
    for h in found.hypotheses:
        try:
            results.append(
                _register_from(moving, fixed, chain, found.fixed_to_moving(h), "search", reads)
            )
            refined.append(h)
        except RegistrationError as e:
            failures.append(str(e))
    if not results:
        raise RegistrationError(
            f"none of the {len(found.hypotheses)} poses the search found could be refined "
            f"({failures[0] if failures else 'no pose'}); {WAY_FORWARD}"
        )
    small_is_fixed = found.template_role == "fixed"
    small = _whole_image(
        fixed if small_is_fixed else moving, results[0], small_is_fixed, preset, reads
    )
    bigs = [r.moving if small_is_fixed else r.fixed for r in results]
    ranges = [value_range(b) for b in bigs]
    common = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    scored = []
    for r, big in zip(results, bigs, strict=True):
        evaluate = Evaluator(small, big, TRUST_METRIC, seed=preset.seed, moving_range=common)
        mapping = r.transform if small_is_fixed else r.transform.inverse()
        scored.append((-evaluate(mapping), evaluate, mapping))
    problems = [
        scale_problem(linear_part(r.transform, r.fixed).linear, preset.search.scale_range)
        for r in results
    ]
    # the winner is the best plausible result; every other one is a rival (an implausible
    # one too: its place matched nearly as well, and only its refinement went astray)
    win = min(range(len(results)), key=lambda i: (bool(problems[i]), -scored[i][0]))
    rivals = [i for i in range(len(results)) if i != win]
    order = [win, *sorted(rivals, key=lambda i: -scored[i][0])]
    tolerance = 2.0 * inputs.geometric_voxel(bigs[win].voxel_size)
    corners = inputs.box_points(small.lo, small.hi, per_axis=2)
    runner = next(
        (
            i
            for i in order[1:]
            if np.max(
                np.linalg.norm(scored[i][2].apply(corners) - scored[win][2].apply(corners), axis=1)
            )
            > tolerance
        ),
        None,
    )
    trust = judge(
        scored[win][1],
        scored[win][2],
        None if runner is None else scored[runner][0],
        implausible=problems[win],
    )
    summary = found.summary()
    summary["refined"] = [
        {
            "search_score": round(h.score, 4),
            "mutual_information": round(scored[i][0], 5) if math.isfinite(scored[i][0]) else None,
            "scale": round(
                float(np.cbrt(abs(np.linalg.det(linear_part(r.transform, r.fixed).linear)))), 4
            ),
            "implausible": problems[i] or None,
        }
        for i, (h, r) in enumerate(zip(refined, results, strict=True))
    ]
    summary["chosen"] = win
    summary["runner_up"] = runner
    summary["failed"] = failures
    result = results[win]
    search_step = StepReport(
        name="search",
        metric_before=math.nan,
        metric_after=-scored[win][0],
        seconds=found.seconds,
        iterations=found.orientations,
        stop=f"{len(found.hypotheses)} hypotheses, {len(results)} refined",
        note=_search_note(found, win, runner, scored),
    )
    result = dataclasses.replace(result, steps=(search_step, *result.steps))
    result.extras["search"] = summary
    result.extras["trust"] = trust
    return result


def _refining_steps(preset: Preset) -> tuple[str, ...]:
    """The chain that refines a search hypothesis: the preset's steps after the search.

    The search measured a scale; a rigid step that a scaling step follows would
    throw it away (and be undone), so it becomes a similarity step.
    """
    steps = [s for s in preset.steps if s not in ("search", "moments")]
    scaling = preset.search.scale_range > 0 and any(s in ("similarity", "affine") for s in steps)
    steps = ["similarity" if s == "rigid" and scaling else s for s in steps]
    return tuple(dict.fromkeys(steps))


def _search_note(found: Any, win: int, runner: int | None, scored: list[Any]) -> str:
    text = f"best of {len(scored)}: hypothesis {win + 1} (MI {scored[win][0]:.4f})"
    if runner is not None:
        text += f", runner-up {runner + 1} (MI {scored[runner][0]:.4f})"
    return f"{text}; searched {found.template_role} image, {found.orientations} orientations"


def _whole_image(
    volume: Volume, result: RegistrationResult, is_fixed: bool, preset: Preset, reads: _Reads
) -> WorkImage:
    """The smaller image whole, at the level the chain worked at, with its masks.

    When it is the image whose slices drift in brightness, its slices are
    levelled (as the search saw them), so that no candidate gains from its
    own drift estimate.
    """
    role = "fixed" if is_fixed else "moving"
    work = result.fixed if is_fixed else result.moving
    lo, hi = inputs.level_extent(volume.levels[work.level])
    name = reads.names[1] if is_fixed else reads.names[0]
    whole = inputs.combine_masks(
        inputs.read_work_image(volume, work.level, lo, hi, name),
        role,
        exclude_padding=preset.mask.exclude_padding,
        erode=preset.mask.erode,
        user=reads.fixed_mask if is_fixed else reads.moving_mask,
        unit=volume.unit,
    )
    if preset.drift.image != role:
        return whole
    levelled = level_slices(whole.array, whole.mask, "zyx".index(preset.drift.axis))
    return dataclasses.replace(whole, array=levelled)


def _register_from(
    moving: Volume,
    fixed: Volume,
    preset: Preset,
    start_map: Transform,
    source: str,
    reads: _Reads,
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
    that already aligns the images (an edge or landmarks) measures the drift
    first; otherwise the linear steps run, the drift is measured on their
    result, and the last linear step (and any B-spline step) runs again on
    the corrected images. Returns the map, the step reports, the divergence
    reason (empty if none), the Jacobian statistics, the working images and
    the evaluator the chain ended with.
    """
    start = linear_part(start_map, fixed)
    if preset.drift.image == "none":
        result = _run_steps(Pair(fixed, moving), fixed, moving, start, preset, evaluate)
        return (*result, fixed, moving, evaluate)
    if source in ("edge", "landmarks"):
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
