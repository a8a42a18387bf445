"""Chained registration of a moving volume onto a fixed one.

:func:`register` runs the preset's steps (``moments -> rigid -> similarity ->
affine -> bspline``), each starting from the result of the one before, on the
working levels and overlapping regions chosen by :mod:`coframe.registration.inputs`
(one chain from one start: :mod:`coframe.registration.chain`), from a start
given, found by the global search, or found from matched nuclei
(:mod:`coframe.registration.nuclei`). It returns a :class:`RegistrationResult`:
the FIXED -> MOVING map (the ITK convention: what resampling the moving image
into the fixed frame needs) and, separately, what the optimisation did. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import SimpleITK as sitk

from coframe.core.errors import RegistrationError
from coframe.registration import inputs
from coframe.registration.chain import Reads, linear_part, register_from
from coframe.registration.inputs import WorkImage
from coframe.registration.intensity import StepReport
from coframe.registration.metric import Evaluator, value_range
from coframe.registration.nuclei import agreement, nuclei_step
from coframe.registration.preset_sections import MetricConfig, drift_image
from coframe.registration.presets import Preset
from coframe.registration.result import RegistrationResult
from coframe.registration.search import Hypothesis, global_search, needs_search
from coframe.registration.search_inputs import level_slices
from coframe.registration.trust import TRUST_BINS, WAY_FORWARD, judge, scale_problem
from coframe.transforms.affine import Identity, Translation
from coframe.transforms.base import Transform
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
    moving_labels: Volume | None = None,
    fixed_labels: Volume | None = None,
) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` with the preset's chained steps.

    Without a start (no edge, no landmarks) and with one image much smaller
    than the other, or with ``search`` in the steps, a global search finds
    the smaller image in the larger first (:func:`searching`); its best
    hypotheses are each refined as a pose (a similarity, or a rigid map), the
    best refined pose wins and is judged against the runner-up, and the
    winner alone goes on through the preset's other steps (affine, B-spline).
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
    moving_labels, fixed_labels
        Nucleus segmentations in the moving and fixed spaces, for the
        ``nuclei`` step (without one, an image's nuclei are found as blobs).

    With ``nuclei`` in the steps (and no ``--landmarks``), the matched nuclei
    give the start (:mod:`coframe.registration.nuclei`); the result carries
    them in ``extras["nuclei"]`` and the gate also refuses a doubtful match.
    With ``search`` as well, the intensity search runs too, as a second
    opinion: its distance from the nuclei result is reported, and a
    disagreement of more than :data:`AGREEMENT_VOXELS` working voxels is a
    reason to doubt both.

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
    reads = Reads(fixed_mask, moving_mask, level_moving, level_fixed, names)
    if "nuclei" in preset.steps and source != "landmarks":
        result = _register_nuclei(
            moving, fixed, preset, reads, progress, moving_labels, fixed_labels
        )
    elif searching(preset, moving, fixed, source):
        result = _register_searched(moving, fixed, preset, reads, progress)
    else:
        chain = dataclasses.replace(
            preset, steps=tuple(s for s in preset.steps if s not in ("search", "nuclei"))
        )
        result = register_from(moving, fixed, chain, start_map, source, reads)
        trust_eval = Evaluator(result.fixed, result.moving, TRUST_METRIC, seed=preset.seed)
        result.extras["trust"] = judge(trust_eval, result.transform)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


#: The metric of the trust gate and of the choice between searched hypotheses.
TRUST_METRIC = MetricConfig(name="mattes", bins=TRUST_BINS)
#: Largest disagreement (working voxels) between the nuclei and the intensity search.
AGREEMENT_VOXELS = 2.0


def _register_nuclei(
    moving: Volume,
    fixed: Volume,
    preset: Preset,
    reads: Reads,
    progress: Any,
    moving_labels: Volume | None,
    fixed_labels: Volume | None,
) -> RegistrationResult:
    """Start from the matched nuclei, run the rest of the chain, judge both."""
    nuclei = nuclei_step(
        moving,
        fixed,
        preset.nuclei,
        scale_range=preset.search.scale_range,
        moving_labels=moving_labels,
        fixed_labels=fixed_labels,
        names=reads.names,
    )
    chain = dataclasses.replace(
        preset, steps=tuple(s for s in preset.steps if s not in ("search", "nuclei"))
    )
    result = register_from(moving, fixed, chain, nuclei.transform, "nuclei", reads)
    step = StepReport(
        name="nuclei",
        metric_before=math.nan,
        metric_after=result.metric_before,
        seconds=nuclei.match.seconds,
        iterations=nuclei.match.hypotheses,
        stop=f"{nuclei.match.inliers} of {nuclei.match.candidates} nuclei matched",
        note=f"{len(nuclei.fixed_points)} fixed, {len(nuclei.moving_points)} moving nuclei",
    )
    result = dataclasses.replace(result, steps=(step, *result.steps))
    trust = judge(
        Evaluator(result.fixed, result.moving, TRUST_METRIC, seed=preset.seed), result.transform
    )
    summary = nuclei.summary(fixed.unit, result.working_voxel)
    reason = nuclei.reason
    if "search" in preset.steps:  # a second opinion from the intensities
        searched = _register_searched(moving, fixed, preset, reads, progress)
        corners = inputs.box_points(result.fixed.lo, result.fixed.hi, per_axis=2)
        apart = agreement(result.transform, searched.transform, corners, result.working_voxel)
        summary["agreement_vox"] = round(apart, 3)
        summary["search_trusted"] = searched.extras["trust"].trusted
        if apart > AGREEMENT_VOXELS and not reason:
            reason = (
                f"not trusted: the nuclei and the intensity search disagree by {apart:.1f} "
                f"working voxels (more than {AGREEMENT_VOXELS:g}); give --landmarks, or store "
                "it anyway with --force"
            )
        result.extras["search"] = searched.extras.get("search")
    if reason:  # the nuclei's own doubt says more than the intensities'
        trust = dataclasses.replace(trust, reason=reason)
    result.extras["trust"] = trust
    result.extras["nuclei"] = summary
    result.extras["nuclei_result"] = nuclei
    return result


def searching(preset: Preset, moving: Volume, fixed: Volume, source: str) -> bool:
    """Whether a registration starts with the global search.

    It does when no edge or landmarks gave the start and either ``steps``
    names ``search`` or (``init: auto``, ``search.auto``) one image is under
    ``search.auto_ratio`` of the other's extent on some axis.
    """
    if source in ("edge", "landmarks", "nuclei"):
        return False
    if "search" in preset.steps:
        return True
    return (
        preset.init == "auto"
        and preset.search.auto
        and needs_search(moving, fixed, preset.search.auto_ratio)
    )


def _register_searched(
    moving: Volume, fixed: Volume, preset: Preset, reads: Reads, progress: Any
) -> RegistrationResult:
    """Search, refine each hypothesis as a pose, keep the best on one common sample.

    The trust gate judges the winning pose against the runner-up at the same
    model; the steps that follow (affine, B-spline) refine the believed pose.
    """
    found = global_search(
        moving,
        fixed,
        preset.search,
        exclude_padding=preset.mask.exclude_padding,
        drift=(preset.drift.image, "zyx".index(preset.drift.axis)),
        names=reads.names,
        progress=progress,
    )
    pose_steps, later_steps = _refining_steps(preset)
    chain = dataclasses.replace(preset, steps=pose_steps)
    results: list[RegistrationResult] = []
    refined: list[Hypothesis] = []  # the hypothesis each result started from
    failures: list[str] = []
    for h in found.hypotheses:
        try:
            results.append(
                register_from(moving, fixed, chain, found.fixed_to_moving(h), "search", reads)
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
    result = results[win]
    if later_steps and not result.diverged:
        # the believed pose goes on through the preset's other steps (affine, B-spline)
        later = register_from(
            moving,
            fixed,
            dataclasses.replace(preset, steps=later_steps),
            result.transform,
            "pose",
            reads,
        )
        stretch = scale_problem(
            linear_part(later.transform, later.fixed).linear, preset.search.scale_range
        )
        if stretch:  # they stretched it beyond the searched range, fitting noise: the pose stands
            undone = [
                dataclasses.replace(s, accepted=False, note=f"undone: {stretch}")
                for s in later.steps
            ]
            result = dataclasses.replace(result, steps=(*result.steps, *undone))
        else:
            result = dataclasses.replace(
                later,
                initial=result.initial,
                initial_source=result.initial_source,
                steps=(*result.steps, *later.steps),
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


def _refining_steps(preset: Preset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The steps that refine each search hypothesis, and those that refine the winner.

    Hypotheses are refined and compared as poses, with the search's own
    model: a similarity when the search measured a scale and the preset
    scales, otherwise a rigid map. Comparing them after an affine or
    B-spline step would let a wrong place gain from fitting more freedom to
    noise. Only the winning pose goes on through the preset's other steps.
    """
    steps = [s for s in preset.steps if s not in ("search", "nuclei", "moments")]
    scaling = preset.search.scale_range > 0 and any(s in ("similarity", "affine") for s in steps)
    pose = "similarity" if scaling else "rigid"
    later = tuple(s for s in steps if s not in ("rigid", "similarity"))
    return (pose,), later


def _search_note(found: Any, win: int, runner: int | None, scored: list[Any]) -> str:
    text = f"best of {len(scored)}: hypothesis {win + 1} (MI {scored[win][0]:.4f})"
    if runner is not None:
        text += f", runner-up {runner + 1} (MI {scored[runner][0]:.4f})"
    return f"{text}; searched {found.template_role} image, {found.orientations} orientations"


def _whole_image(
    volume: Volume, result: RegistrationResult, is_fixed: bool, preset: Preset, reads: Reads
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
