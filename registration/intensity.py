"""Intensity-based linear steps: moments, rigid, similarity, affine, and multi-start.

Each step starts from the FIXED -> MOVING affine of the step before and
returns a new one with a :class:`StepReport`; optimiser state stays here. The
linear steps run SimpleITK's ``ImageRegistrationMethod`` (regular-step
gradient descent, scales from physical shifts, multi-resolution, a fixed
number of sampled points per level) in working voxel units
(:mod:`coframe.registration.metric`). Rigid and similarity steps are centred on the
fixed image, so rotations do not drag translations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from coframe.registration.inputs import WorkImage
from coframe.registration.metric import Evaluator, Pair, configure_metric
from coframe.registration.presets import Preset
from coframe.transforms.affine import Affine, Rotation, Translation, nearest_rotation
from coframe.transforms.base import Chain

#: Largest accepted singular value ratio of a linear step's matrix to the identity.
MAX_SCALE_CHANGE = 4.0
#: Fewest voxels a pyramid level keeps on either image's shortest axis (else it is skipped).
MIN_LEVEL_VOXELS = 16


@dataclass(frozen=True)
class StepReport:
    """What one step did.

    Parameters
    ----------
    name
        Step name (``rigid``, ``bspline``...).
    metric_before, metric_after
        Metric at the working level before and after the step (lower is better).
    seconds
        Wall time.
    iterations
        Optimiser iterations over all levels.
    stop
        Why the optimiser stopped.
    accepted
        False when the step was undone (metric worse) or diverged.
    note
        Extra information (why a step was rejected, multi-start choice...).
    """

    name: str
    metric_before: float
    metric_after: float
    seconds: float
    iterations: int = 0
    stop: str = ""
    accepted: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain values for reports and provenance."""
        return {
            "name": self.name,
            "metric_before": _finite(self.metric_before),
            "metric_after": _finite(self.metric_after),
            "seconds": round(self.seconds, 3),
            "iterations": self.iterations,
            "stop": self.stop,
            "accepted": self.accepted,
            "note": self.note,
        }


def _finite(value: float) -> float | str:
    return round(float(value), 6) if math.isfinite(value) else str(value)


# ---------------------------------------------------------------------- moments


def _centre_of_mass(work: WorkImage) -> np.ndarray:
    """Centre of the intensity deviation from the border level (polarity-free)."""
    array = work.array
    border = np.concatenate(
        [
            array[tuple(slice(None) if a != k else e for a in range(array.ndim))].ravel()
            for k in range(array.ndim)
            for e in (0, -1)
        ]
    )
    weight = np.abs(array - np.median(border)).astype(np.float64)
    if work.mask is not None:
        weight = weight * work.mask
    total = weight.sum()
    if total <= 0 or not np.isfinite(total):
        return work.centre
    index = np.array(
        [
            (weight.sum(axis=tuple(b for b in range(array.ndim) if b != a)) * np.arange(n)).sum()
            for a, n in enumerate(array.shape)
        ]
    )
    return work.lo + index / total * np.asarray(work.voxel_size)


def moments_step(
    fixed: WorkImage, moving: WorkImage, initial: Affine, evaluate: Evaluator
) -> tuple[Affine, StepReport]:
    """Shift the initial map so the images' centres of mass meet.

    Centres are weighted by each voxel's deviation from the image's border
    level, so inverted contrast does not matter. When the shift makes the
    metric worse (a start from a good edge or landmarks, with fields of view
    of different extent), the initial map is kept.
    """
    start = time.perf_counter()
    before = evaluate(initial)
    target = _centre_of_mass(moving)
    mapped = initial.apply(_centre_of_mass(fixed))
    result = _as_affine(Chain((initial, Translation(target - mapped))))
    after = evaluate(result)
    seconds = time.perf_counter() - start
    if after > before:
        note = "undone: the metric got worse"
        return initial, StepReport("moments", before, after, seconds, 0, "", False, note)
    return result, StepReport("moments", before, after, seconds)


def _as_affine(t: Chain | Affine) -> Affine:
    affine = t.as_affine()
    assert affine is not None
    return affine


# ---------------------------------------------------------------------- linear steps


def parametrised(kind: str, start: sitk.Transform, centre: tuple[float, ...]) -> sitk.Transform:
    """A centred SimpleITK transform of ``kind`` equal (or nearest) to ``start``.

    Parameters
    ----------
    kind
        ``rigid``, ``similarity`` or ``affine``.
    start
        A 3D SimpleITK matrix-offset transform (as made by
        :func:`coframe.transforms.sitk_bridge.to_sitk`).
    centre
        Centre of rotation, SimpleITK point.
    """
    d = start.GetDimension()
    matrix = np.array(start.GetMatrix(), dtype=np.float64).reshape(d, d)
    c = np.array(centre, dtype=np.float64)
    image_of_centre = np.array(start.TransformPoint(tuple(centre)), dtype=np.float64)
    rotation = nearest_rotation(matrix)
    if kind == "rigid":
        out: sitk.Transform = sitk.Euler3DTransform()
        out.SetCenter(tuple(c))
        out.SetMatrix(tuple(rotation.ravel()))
    elif kind == "similarity":
        factor = abs(np.linalg.det(matrix)) ** (1.0 / d)
        out = sitk.Similarity3DTransform()
        out.SetCenter(tuple(c))
        out.SetMatrix(tuple((factor * rotation).ravel()), 1e-6)
    else:
        out = sitk.AffineTransform(d)
        out.SetCenter(tuple(c))
        out.SetMatrix(tuple(matrix.ravel()))
    out.SetTranslation(tuple(image_of_centre - c))
    return out


def exploded(result: Affine, initial: Affine, size: float) -> str:
    """Why a linear result looks diverged (empty when it looks sane).

    Parameters
    ----------
    result, initial
        The step's result and its start.
    size
        Physical size of the fixed region (its diagonal).
    """
    if not np.all(np.isfinite(result.matrix)):
        return "non-finite parameters"
    change = result.linear @ np.linalg.inv(initial.linear)
    singular = np.linalg.svd(change, compute_uv=False)
    if singular.max() > MAX_SCALE_CHANGE or singular.min() < 1.0 / MAX_SCALE_CHANGE:
        return f"the matrix scaled by {singular.min():.3g}..{singular.max():.3g}"
    centre = np.zeros(result.input_dim)
    shift = np.linalg.norm(result.apply(centre) - initial.apply(centre))
    if shift > 10 * size + 10 * np.linalg.norm(initial.translation):
        return f"the translation moved by {shift:.4g}, far beyond the region size {size:.4g}"
    return ""


def usable_levels(
    pair: Pair,
    shrink: tuple[int, ...],
    sigmas: tuple[float, ...],
    points: tuple[int, ...],
    finest_points: int,
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """The pyramid levels (factors, sigmas, sample sizes) at which both images keep
    :data:`MIN_LEVEL_VOXELS` a side.

    A small image shrunk by the preset's coarsest factor is a few voxels
    across, too few for the metric to see its structure: such levels are
    skipped, each kept level keeps its own sample size. When none is left,
    the unshrunk level is used with ``finest_points`` samples.
    """
    side = min(min(pair.fixed_work.shape), min(pair.moving_work.shape))
    kept = [
        (f, s, n)
        for f, s, n in zip(shrink, sigmas, points, strict=True)
        if f == 1 or side / f >= MIN_LEVEL_VOXELS
    ]
    if not kept:
        kept = [(1, 0.0, finest_points)]
    return (
        tuple(f for f, _, _ in kept),
        tuple(s for _, s, _ in kept),
        tuple(n for _, _, n in kept),
    )


def linear_step(
    kind: str,
    pair: Pair,
    initial: Affine,
    preset: Preset,
    evaluate: Evaluator | None,
    *,
    shrink_factors: tuple[int, ...] | None = None,
    smoothing_sigmas: tuple[float, ...] | None = None,
    iterations: int | None = None,
    region_size: float = math.inf,
) -> tuple[Affine, StepReport]:
    """Optimise a rigid, similarity or affine map, starting from ``initial``.

    Parameters
    ----------
    kind
        ``rigid``, ``similarity`` or ``affine``.
    pair
        The images.
    initial
        Starting FIXED -> MOVING affine (physical units).
    preset
        Metric, sampling, pyramid and optimiser settings.
    evaluate
        The QC metric, measured before and after; None skips it (and the
        divergence checks), as in multi-start.
    shrink_factors, smoothing_sigmas, iterations
        Override the preset's pyramid and iteration count (multi-start).
    region_size
        Physical diagonal of the fixed region (divergence check).

    Returns
    -------
    tuple
        The optimised affine (or ``initial`` when the step diverged or made
        the metric worse) and the step report.
    """
    start = time.perf_counter()
    wanted = shrink_factors or preset.pyramid.shrink_factors
    shrink, sigmas, points = usable_levels(
        pair,
        wanted,
        smoothing_sigmas or preset.pyramid.smoothing_sigmas,
        preset.sampling.per_level(len(wanted)),
        preset.sampling.per_level(len(wanted) + 1)[-1],
    )
    before = evaluate(initial) if evaluate is not None else math.nan
    transform = parametrised(kind, pair.to_engine(initial), pair.centre)
    problem, stop, count = "", "", 0
    for factor, sigma, count_ in zip(shrink, sigmas, points, strict=True):
        rate = preset.optimizer.learning_rate * factor / max(wanted)
        method = _linear_method(pair, factor, sigma, preset, iterations, count_, rate)
        method.SetInitialTransform(transform, inPlace=True)
        counter = _IterationCounter(method)
        try:
            method.Execute(pair.level(factor, sigma).fixed, pair.level(factor, sigma).moving)
        except RuntimeError as e:
            problem = str(e).strip().splitlines()[-1]
            break
        count += counter.count
        stop = _short(method.GetOptimizerStopConditionDescription())
        problem = counter.problem
        if problem:
            break
    seconds = time.perf_counter() - start
    result = pair.from_engine(transform).as_affine()
    if problem or result is None:
        note = f"diverged: {problem}"
        return initial, StepReport(kind, before, math.nan, seconds, count, stop, False, note)
    if evaluate is None:
        return result, StepReport(
            kind, math.nan, float(method.GetMetricValue()), seconds, count, stop
        )
    problem = exploded(result, initial, region_size)
    after = evaluate(result)
    seconds = time.perf_counter() - start
    if problem or not math.isfinite(after):
        note = f"diverged: {problem or 'metric is ' + str(after)}"
        return initial, StepReport(kind, before, after, seconds, count, stop, False, note)
    worse = evaluate.worse(initial, result)
    if worse:
        return initial, StepReport(
            kind, before, after, seconds, count, stop, False, f"undone: {worse}"
        )
    return result, StepReport(kind, before, after, seconds, count, stop)


def _linear_method(
    pair: Pair,
    factor: int,
    sigma: float,
    preset: Preset,
    iterations: int | None,
    points: int,
    rate: float,
) -> sitk.ImageRegistrationMethod:
    """A one-level registration method with regular-step gradient descent."""
    opt = preset.optimizer
    method = sitk.ImageRegistrationMethod()
    configure_metric(
        method,
        pair.level(factor, sigma),
        preset.metric,
        strategy=preset.sampling.strategy,
        points=points,
        seed=preset.seed,
    )
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=rate,
        minStep=opt.min_step,
        numberOfIterations=iterations or opt.iterations,
        relaxationFactor=opt.relaxation,
        gradientMagnitudeTolerance=1e-10,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.split(": ", 1)[-1][:120]


class _IterationCounter:
    """Counts iterations and watches for a NaN metric during optimisation."""

    def __init__(self, method: sitk.ImageRegistrationMethod) -> None:
        self.count = 0
        self.problem = ""
        self._method = method
        method.AddCommand(sitk.sitkIterationEvent, self._on_iteration)

    def _on_iteration(self) -> None:
        self.count += 1
        if not self.problem and not math.isfinite(self._method.GetMetricValue()):
            self.problem = (
                f"metric became {self._method.GetMetricValue()} at iteration {self.count}"
            )


# ---------------------------------------------------------------------- multi-start


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def start_rotations(angles: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    """Identity and rotations by each angle about each axis (numpy axis order)."""
    out = [("identity", np.eye(3))]
    for axis, name in enumerate("zyx"):
        for angle in angles:
            out.append((f"{angle:g} deg about {name}", _rotation(axis, angle)))
    return out


def multi_start(
    fixed: WorkImage, pair: Pair, initial: Affine, preset: Preset, evaluate: Evaluator
) -> tuple[Affine, StepReport]:
    """Try rotated starts about the fixed centre; keep the best after a short rigid fit.

    Each start runs :attr:`MultiStartConfig.iterations` rigid iterations at
    the coarsest pyramid level; the start with the lowest metric wins.
    """
    start = time.perf_counter()
    before = evaluate(initial)
    centre = fixed.centre
    shrink = (max(preset.pyramid.shrink_factors),)
    sigma = (max(preset.pyramid.smoothing_sigmas),)
    best: tuple[float, Affine, str] | None = None
    for name, rotation in start_rotations(preset.multi_start.angles):
        about = Chain((Translation(-centre), Rotation(rotation), Translation(centre), initial))
        candidate = _as_affine(about)
        fitted, step = linear_step(
            "rigid",
            pair,
            candidate,
            preset,
            None,
            shrink_factors=shrink,
            smoothing_sigmas=sigma,
            iterations=preset.multi_start.iterations,
        )
        value = evaluate(fitted)
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, fitted, name)
    if best is None:
        note = "no start overlapped the moving image"
        return initial, StepReport(
            "multi-start", before, before, time.perf_counter() - start, accepted=False, note=note
        )
    value, chosen, name = best
    return chosen, StepReport(
        "multi-start", before, value, time.perf_counter() - start, note=f"best start: {name}"
    )
