"""The deformable step: a cubic B-spline on top of the linear result.

The B-spline lives on the fixed image domain and acts first; the affine of the
linear steps acts after it, so the FIXED -> MOVING map is
``Chain((bspline, affine))``: a fixed point is displaced by the spline and
then carried into the moving image by the affine.

The optimiser is a stochastic gradient descent written for this problem (as in
elastix, rather than SimpleITK's, whose Mattes metric keeps a dense derivative
buffer of ``bins^2 x parameters`` and slows to seconds per iteration on a
modest grid):

- every iteration draws a fresh random sample of fixed points (off the voxel
  grid, inside the fixed mask), maps them through spline and affine, and
  interpolates the moving image and its gradient;
- the metric derivative reaches the control points through the sparse cubic
  B-spline weights (64 per point), scattered with ``bincount``;
- the step length decays as ``a / (1 + k / A) ** 0.602`` with ``a`` set so the
  first steps move the largest control point by ``learning_rate`` voxels;
- the control grid starts ``2^(levels-1)`` times coarser than ``grid_spacing``
  and is refined exactly (cubic B-spline subdivision) between pyramid levels.
  The coarse grid is the regulariser; the result is checked for folding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from coframe.registration.inputs import WorkImage, geometric_voxel
from coframe.registration.intensity import StepReport
from coframe.registration.metric import Evaluator, Pair, shrink_image
from coframe.registration.presets import Preset
from coframe.registration.qc import jacobian_stats
from coframe.transforms.affine import Affine
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bspline import BSpline

#: Exponent of the step-length decay.
DECAY = 0.602
#: Iterations ``A`` of the step-length decay.
DECAY_START = 20.0
#: Iterations whose gradients set the first step length.
PROBE_ITERATIONS = 4
#: Final share of each level's iterations whose coefficients are averaged (noise reduction).
AVERAGE_FRACTION = 0.3
#: How far past the finest wanted mesh a refinement may go (small images keep coarse grids).
REFINE_SLACK = 1.25
#: Padding bins on each side of the moving histogram (cubic Parzen window).
PAD_BINS = 2


def _subdivide(coefficients: np.ndarray, axis: int) -> np.ndarray:
    """Exact cubic B-spline refinement of control coefficients along one axis.

    A grid of ``n`` control points becomes ``2 n - 3`` points at half the
    spacing that reproduce the same spline: points at old nodes take
    ``(c[i-1] + 6 c[i] + c[i+1]) / 8``, midpoints ``(c[i] + c[i+1]) / 2``.
    """
    c = np.moveaxis(coefficients, axis, 0)
    n = c.shape[0]
    out = np.empty((2 * n - 3, *c.shape[1:]))
    out[0::2] = 0.5 * (c[:-1] + c[1:])
    out[1::2] = (c[:-2] + 6.0 * c[1:-1] + c[2:]) / 8.0
    return np.moveaxis(out, 0, axis)


def refine(spline: BSpline) -> BSpline:
    """The same B-spline on a control grid twice as fine (exact)."""
    coefficients = np.asarray(spline.coefficients)
    for axis in range(spline.input_dim):
        coefficients = _subdivide(coefficients, axis)
    offset = spline.grid_direction @ (0.5 * spline.grid_spacing)
    return BSpline(
        spline.grid_origin + offset,
        0.5 * spline.grid_spacing,
        spline.grid_direction,
        tuple(2 * n - 3 for n in spline.grid_size),
        coefficients,
    )


def initial_spline(work: WorkImage, spacing: float) -> BSpline:
    """A zero B-spline whose control grid covers a working image.

    Parameters
    ----------
    work
        The fixed working image; its voxel centres span the grid's domain.
    spacing
        Wanted control-point spacing in working voxels (each axis gets a whole
        number of mesh cells over the domain).
    """
    lo, hi = work.lo, work.hi
    voxel = geometric_voxel(work.voxel_size)
    mesh = np.maximum(1, np.rint((hi - lo) / (spacing * voxel))).astype(int)
    h = np.maximum(hi - lo, np.asarray(work.voxel_size)) / mesh
    size = tuple(int(m) + 3 for m in mesh)
    d = len(size)
    return BSpline(lo - h, h, np.eye(d), size, np.zeros((*size, d)))


# ---------------------------------------------------------------------- sampling helpers


class _Table:
    """Several same-shape arrays interleaved for one gather per corner in trilinear lookups."""

    def __init__(self, arrays: tuple[np.ndarray, ...]) -> None:
        self.shape = np.asarray(arrays[0].shape)
        self.values = np.stack([np.asarray(a, np.float32).ravel() for a in arrays], axis=1)
        self.strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1])
        self.corners = [
            (
                int(np.dot([(c >> 2) & 1, (c >> 1) & 1, c & 1], self.strides)),
                (c >> 2) & 1,
                (c >> 1) & 1,
                c & 1,
            )
            for c in range(8)
        ]

    def lookup(self, index: np.ndarray) -> np.ndarray:
        """Trilinear values ``(N, k)`` at continuous indices ``(N, 3)`` inside the arrays."""
        base = np.clip(np.floor(index).astype(np.int64), 0, self.shape - 2)
        t = index - base
        u = 1.0 - t
        flat = base @ self.strides
        out = np.zeros((index.shape[0], self.values.shape[1]))
        for offset, dz, dy, dx in self.corners:
            w = (t[:, 0] if dz else u[:, 0]) * (t[:, 1] if dy else u[:, 1])
            w = w * (t[:, 2] if dx else u[:, 2])
            out += w[:, None] * self.values[flat + offset]
        return out


def _cubic(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(a < 1, (4 - 6 * a**2 + 3 * a**3) / 6, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def _cubic_derivative(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    d = np.where(a < 1, (-12 * a + 9 * a**2) / 6, np.where(a < 2, -0.5 * (2 - a) ** 2, 0.0))
    return d * np.sign(t)


@dataclass
class _SplineWeights:
    """Sparse cubic B-spline weights of sample points: 64 control points per point."""

    flat: np.ndarray  # (N, 64) flat control-point indices
    weights: np.ndarray  # (N, 64)

    @classmethod
    def at(cls, spline: BSpline, points: np.ndarray) -> _SplineWeights:
        cindex = (points - spline.grid_origin) / spline.grid_spacing
        size = np.asarray(spline.grid_size)
        start = np.clip(np.floor(cindex - 1.0).astype(np.int64), 0, size - 4)
        w = [_cubic(cindex[:, a, None] - (start[:, a, None] + np.arange(4))) for a in range(3)]
        weights = w[0][:, :, None, None] * w[1][:, None, :, None] * w[2][:, None, None, :]
        strides = np.array([size[1] * size[2], size[2], 1])
        offsets = (
            np.arange(4)[:, None, None] * strides[0]
            + np.arange(4)[None, :, None] * strides[1]
            + np.arange(4)[None, None, :]
        ).ravel()
        flat = (start @ strides)[:, None] + offsets[None, :]
        return cls(flat, weights.reshape(-1, 64))

    def displacement(self, coefficients: np.ndarray) -> np.ndarray:
        """Displacements ``(N, 3)`` from coefficients ``(n_control, 3)``."""
        return np.stack(
            [(self.weights * coefficients[:, d][self.flat]).sum(axis=1) for d in range(3)], axis=1
        )

    def scatter(self, vectors: np.ndarray, n_control: int) -> np.ndarray:
        """Sum ``weights * vectors`` into the control points: ``(n_control, 3)``."""
        flat = self.flat.ravel()
        out = np.empty((n_control, 3))
        for d in range(3):
            contrib = (self.weights * vectors[:, d, None]).ravel()
            out[:, d] = np.bincount(flat, weights=contrib, minlength=n_control)
        return out


# ---------------------------------------------------------------------- metric and gradient


class _Level:
    """One pyramid level: images, moving gradient and the fixed sample pool."""

    def __init__(self, pair: Pair, factor: int, sigma: float, preset: Preset) -> None:
        fixed = shrink_image(pair.fixed_work, factor, sigma)
        moving = shrink_image(pair.moving_work, factor, sigma)
        self.fixed = fixed
        self.moving = moving
        self.f_table = _Table((fixed.array,))
        vs = np.asarray(moving.voxel_size)
        gradient = np.gradient(moving.array.astype(np.float32))
        self.m_table = _Table(
            (moving.array, *(g / np.float32(v) for g, v in zip(gradient, vs, strict=True)))
        )
        keep = fixed.mask if fixed.mask is not None else np.ones(fixed.shape, dtype=bool)
        self.pool = np.argwhere(keep).astype(np.int32)
        self.m_mask = moving.mask
        self.metric = preset.metric
        inside = moving.array if moving.mask is None else moving.array[moving.mask]
        self.m_range = (float(inside.min()), float(inside.max()))
        self.f_range = (float(fixed.array.min()), float(fixed.array.max()))

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Random off-grid fixed points (physical) and their fixed values."""
        pick = self.pool[rng.integers(0, self.pool.shape[0], size=count)]
        jitter = rng.uniform(-0.5, 0.5, size=pick.shape)
        upper = np.asarray(self.fixed.shape) - 1.0
        index = np.clip(pick + jitter, 0.0, upper)
        values = self.f_table.lookup(index)[:, 0]
        return self.fixed.lo + index * np.asarray(self.fixed.voxel_size), values

    def moving_at(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Moving values, gradients ``(N, 3)`` and which points fall inside."""
        index = (points - self.moving.lo) / np.asarray(self.moving.voxel_size)
        upper = np.asarray(self.moving.shape) - 1.0
        inside = np.all((index >= 0) & (index <= upper), axis=1)
        if self.m_mask is not None:
            near = np.rint(np.clip(index, 0, upper)).astype(np.int64)
            inside &= self.m_mask[tuple(near.T)]
        looked = self.m_table.lookup(index[inside])
        return looked[:, 0], looked[:, 1:], inside


def _metric_and_derivative(
    name: str, bins: int, f: np.ndarray, m: np.ndarray, level: _Level
) -> tuple[float, np.ndarray]:
    """Cost (lower is better) and its derivative with respect to each moving value."""
    n = f.size
    if name == "meansquares":
        diff = f - m
        return float(np.mean(diff**2)), -2.0 * diff / n
    if name == "correlation":
        fc, mc = f - f.mean(), m - m.mean()
        sff, smm, sfm = (fc * fc).sum(), (mc * mc).sum(), (fc * mc).sum()
        if sff <= 0 or smm <= 0:
            return 0.0, np.zeros(n)
        cost = -(sfm**2) / (sff * smm)
        return float(cost), -(2 * sfm * fc * smm - 2 * sfm**2 * mc) / (sff * smm**2)
    f_lo, f_hi = level.f_range
    m_lo, m_hi = level.m_range
    a = np.clip(((f - f_lo) / max(f_hi - f_lo, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    width = max(m_hi - m_lo, 1e-12) / (bins - 1)
    beta = np.clip((m - m_lo) / width, 0.0, bins - 1.0) + PAD_BINS
    total_bins = bins + 2 * PAD_BINS
    first = np.floor(beta).astype(np.int64) - 1
    offsets = first[:, None] + np.arange(4)
    t = offsets - beta[:, None]
    w = _cubic(t)
    joint = np.bincount(
        (a[:, None] * total_bins + offsets).ravel(), weights=w.ravel(), minlength=bins * total_bins
    ).reshape(bins, total_bins)
    joint /= joint.sum()
    pm = joint.sum(axis=0)
    pf = joint.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(joint > 0, joint / pm[None, :], 1.0)
        log_ratio = np.log(ratio)
        mi = float(np.sum(np.where(joint > 0, joint * np.log(joint / np.outer(pf, pm)), 0.0)))
    dk = _cubic_derivative(t)
    # d(-MI)/d beta_i = (1/n) sum_b K'(b - beta_i) log(p(a_i, b) / p(b))
    d_beta = (dk * log_ratio[a[:, None], offsets]).sum(axis=1) / n
    return -mi, d_beta / width


def _gradient(
    level: _Level,
    spline: BSpline,
    coefficients: np.ndarray,
    affine: Affine,
    rng: np.random.Generator,
    count: int,
) -> tuple[float, np.ndarray, float]:
    """Cost, its gradient with respect to the coefficients, and the inside fraction."""
    points, f = level.sample(rng, count)
    weights = _SplineWeights.at(spline, points)
    displaced = points + weights.displacement(coefficients)
    mapped = displaced @ affine.linear.T + affine.translation
    m, grad_m, inside = level.moving_at(mapped)
    if inside.sum() < 0.1 * count:
        return math.inf, np.zeros_like(coefficients), float(inside.mean())
    cost, d_m = _metric_and_derivative(level.metric.name, level.metric.bins, f[inside], m, level)
    vectors = np.zeros((count, 3))
    vectors[inside] = (d_m[:, None] * grad_m) @ affine.linear
    return cost, weights.scatter(vectors, coefficients.shape[0]), float(inside.mean())


def _with_coefficients(spline: BSpline, coefficients: np.ndarray) -> BSpline:
    return BSpline(
        spline.grid_origin,
        spline.grid_spacing,
        spline.grid_direction,
        spline.grid_size,
        coefficients.reshape(*spline.grid_size, 3),
    )


def optimise_level(
    level: _Level,
    spline: BSpline,
    affine: Affine,
    preset: Preset,
    rng: np.random.Generator,
    voxel: float,
) -> tuple[BSpline, int, str]:
    """Stochastic gradient descent of the spline coefficients on one level.

    Returns
    -------
    tuple
        The spline, the iterations run and a problem description (empty if none).
    """
    cfg = preset.bspline
    smoothing = float(cfg.update_smoothing)
    coefficients = np.asarray(spline.coefficients, dtype=np.float64).reshape(-1, 3).copy()
    largest = []
    for _ in range(PROBE_ITERATIONS):
        cost, grad, _ = _gradient(level, spline, coefficients, affine, rng, cfg.points)
        if not math.isfinite(cost):
            return spline, 0, "the sampled fixed points map outside the moving image"
        largest.append(float(np.abs(grad).max()))
    size = float(np.median(largest))
    if not math.isfinite(size) or size <= 0:
        return spline, 0, "the metric has no usable gradient"
    rate = cfg.learning_rate * voxel / size
    limit = 4.0 * cfg.learning_rate * voxel
    time_ = 0.0
    previous: np.ndarray | None = None
    average = np.zeros_like(coefficients)
    averaged = 0
    first_averaged = int(cfg.iterations * (1.0 - AVERAGE_FRACTION))
    for k in range(cfg.iterations):
        cost, grad, _ = _gradient(level, spline, coefficients, affine, rng, cfg.points)
        if not math.isfinite(cost):
            return spline, k, f"the metric became {cost} at iteration {k}"
        if previous is not None:
            time_ = max(0.0, time_ + _time_step(grad, previous))
        previous = grad
        if smoothing > 0:
            grad = _smooth_update(grad, spline.grid_size, smoothing)
        step = rate * (DECAY_START / (DECAY_START + time_)) ** DECAY * grad
        np.clip(step, -limit, limit, out=step)
        coefficients -= step
        if k >= first_averaged:
            average += coefficients
            averaged += 1
    final = average / averaged if averaged else coefficients
    return _with_coefficients(spline, final), cfg.iterations, ""


def _smooth_update(gradient: np.ndarray, grid: tuple[int, ...], sigma: float) -> np.ndarray:
    """The coefficient gradient smoothed over the control grid (a regularised update)."""
    field = gradient.reshape(*grid, 3)
    out = np.empty_like(field)
    for d in range(3):
        out[..., d] = ndimage.gaussian_filter(field[..., d], sigma, mode="constant")
    return out.reshape(-1, 3)


def _time_step(gradient: np.ndarray, previous: np.ndarray) -> float:
    """Adaptive step-length clock: advance when successive gradients disagree.

    ``f(x) = f_min + (f_max - f_min) / (1 - (f_max / f_min) exp(-x / w))`` of
    ``x = -cos(g_k, g_k-1)`` (adaptive stochastic gradient descent): gradients
    that keep their direction pull the clock back (longer steps), opposed
    ones push it on (shorter steps).
    """
    norm = float(np.linalg.norm(gradient) * np.linalg.norm(previous))
    if norm <= 0:
        return 1.0
    x = -float((gradient * previous).sum()) / norm
    f_max, f_min, width = 1.0, -0.8, 0.1
    return f_min + (f_max - f_min) / (1.0 - (f_max / f_min) * math.exp(-x / width))


def bspline_step(
    pair: Pair,
    affine: Affine,
    preset: Preset,
    evaluate: Evaluator,
) -> tuple[Transform, StepReport, dict[str, float]]:
    """Optimise a cubic B-spline acting before ``affine``.

    Parameters
    ----------
    pair
        The images.
    affine
        The FIXED -> MOVING affine of the linear steps (physical units).
    preset
        Metric and :class:`~coframe.registration.presets.BSplineConfig` settings.
    evaluate
        The QC metric.

    Returns
    -------
    tuple
        The FIXED -> MOVING map ``Chain((bspline, affine))`` (or ``affine``
        when the step diverged, folded or made the metric worse), the step
        report, and Jacobian determinant statistics of the spline.
    """
    start = time.perf_counter()
    cfg = preset.bspline
    before = evaluate(affine)
    levels = list(zip(cfg.shrink_factors, cfg.smoothing_sigmas, strict=True))
    spline = initial_spline(pair.fixed_work, cfg.grid_spacing * 2 ** (len(levels) - 1))
    finest = np.asarray(initial_spline(pair.fixed_work, cfg.grid_spacing).grid_size) - 3
    rng = np.random.default_rng(preset.seed)
    count, problem = 0, ""
    for index, (factor, sigma) in enumerate(levels):
        cells = np.asarray(spline.grid_size) - 3
        if index > 0 and np.all(2 * cells <= REFINE_SLACK * finest):
            spline = refine(spline)
        level = _Level(pair, factor, sigma, preset)
        spline, done, problem = optimise_level(level, spline, affine, preset, rng, pair.scale)
        count += done
        if problem:
            break
    seconds = time.perf_counter() - start
    stop = f"{count} iterations over {len(levels)} levels"
    if problem:
        note = f"diverged: {problem}"
        return (
            affine,
            StepReport("bspline", before, math.nan, seconds, count, stop, False, note),
            {},
        )
    result = Chain((spline, affine))
    stats = jacobian_stats(spline, pair.fixed_work)
    after = evaluate(result)
    seconds = time.perf_counter() - start
    if not math.isfinite(after):
        note = f"diverged: the metric is {after}"
        return (
            affine,
            StepReport("bspline", before, after, seconds, count, stop, False, note),
            stats,
        )
    if stats["folding_fraction"] > cfg.max_jacobian_folding:
        note = (
            f"undone: {stats['folding_fraction']:.3%} of the region folds (Jacobian determinant "
            "<= 0); raise bspline.grid_spacing or lower bspline.learning_rate"
        )
        return (
            affine,
            StepReport("bspline", before, after, seconds, count, stop, False, note),
            stats,
        )
    worse = evaluate.worse(affine, result)
    if worse:
        note = f"undone: {worse}"
        return (
            affine,
            StepReport("bspline", before, after, seconds, count, stop, False, note),
            stats,
        )
    return result, StepReport("bspline", before, after, seconds, count, stop), stats
