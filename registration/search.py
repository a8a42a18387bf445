"""Global search: find the smaller of two volumes anywhere inside the larger one.

A FIB-SEM block is a tiny, rotated, off-centre part of a whole-block X-ray
scan, and registration started from the image centres cannot reach it. The
search places the smaller image (the *template*) in the larger one (the
*target*) over all orientations (or about one axis within a tilt limit) and
an isotropic scale range, and scores every translation at once by FFT
(:mod:`~coframe.registration.search_features`): the mutual information of
quantised intensities (``score: mi``, any contrast relation), or the
correlation of contrast-independent edge features (``score: edges``):

1. **Coarse scan.** Both images are read at a coarse isotropic spacing (the
   template about :attr:`SearchConfig.voxels` voxels across). For every
   orientation and scale the template is resampled, its features computed,
   and its score found for all translations.
2. **Local scans.** The best distinct poses are searched again at half the
   spacing, in a box around each, with finer rotations and scales.
3. The best :attr:`SearchConfig.keep` poses are returned as
   :class:`Hypothesis` objects; the registration chain refines each and the
   refined metric picks the winner (:mod:`coframe.registration.pipeline`).

Priors: a box of the target where the template centre lies (``box``), or a
point and radius (``near``). Everything is in physical units, numpy axis
order; a pose maps template points ``p`` to target points
``centre + scale * R @ (p - template_centre)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.core.errors import RegistrationError
from coframe.registration.inputs import geometric_voxel
from coframe.registration.locate_geometry import GridImage
from coframe.registration.locate_inputs import VolumeReader, volume_extent
from coframe.registration.preset_sections import SearchConfig
from coframe.registration.search_features import (
    FEATURE_SIGMA,
    axis_turns,
    edge_features,
    indicators,
    joint_information,
    orientations,
    padded_rfft3,
    rotation_angle,
)
from coframe.registration.search_inputs import SearchSource, scoring_prep
from coframe.transforms.affine import Affine
from coframe.volumes.volume import Volume

#: Largest number of voxels of the target at the coarse spacing.
MAX_TARGET_VOXELS = 600_000
#: Smallest share of the template footprint that must fall inside the target.
MIN_INSIDE = 0.7
#: Candidates searched again at the finer spacing.
LOCAL_SEEDS = 3
#: Rounds of the local search (each halves the rotation and scale steps).
LOCAL_ROUNDS = 2
#: Positions sampled per orientation to estimate the score of unaligned poses.
BASELINE_SAMPLES = 64


@dataclass(frozen=True)
class Hypothesis:
    """A pose of the template in the target.

    Parameters
    ----------
    rotation
        ``(3, 3)`` rotation taking template directions to target directions.
    scale
        Isotropic scale (target length / template length).
    centre
        Target position of the template's centre.
    template_centre
        Template position of its own centre.
    score
        Normalised edge-feature correlation (0..1, higher is better).
    """

    rotation: np.ndarray
    scale: float
    centre: np.ndarray
    template_centre: np.ndarray
    score: float

    def template_to_target(self) -> Affine:
        """The pose as a template -> target affine."""
        linear = self.scale * self.rotation
        return Affine.from_linear(linear, self.centre - linear @ self.template_centre)

    def distinct(self, other: Hypothesis, angle: float, shift: float) -> bool:
        """Whether two poses differ by more than ``angle`` degrees or ``shift`` (physical)."""
        if float(np.linalg.norm(self.centre - other.centre)) > shift:
            return True
        return rotation_angle(self.rotation, other.rotation) > angle


@dataclass(frozen=True)
class SearchResult:
    """What :func:`global_search` found.

    Parameters
    ----------
    hypotheses
        The best distinct poses, best first.
    template_role
        ``moving`` or ``fixed``: which image was searched for in the other.
    spacing
        Coarse and local search spacings.
    orientations, scales
        How many orientations and scales the coarse scan tried.
    baseline
        Median score of unaligned poses (random positions and orientations).
    seconds
        Wall time.
    region
        The target box searched (``lo``, ``hi``), physical.
    """

    hypotheses: tuple[Hypothesis, ...]
    template_role: str
    spacing: tuple[float, float]
    orientations: int
    scales: tuple[float, ...]
    baseline: float
    seconds: float
    region: tuple[np.ndarray, np.ndarray]
    notes: dict[str, Any] = field(default_factory=dict)

    def fixed_to_moving(self, h: Hypothesis) -> Affine:
        """A hypothesis as the FIXED -> MOVING map the registration chain starts from."""
        pose = h.template_to_target()
        return pose if self.template_role == "fixed" else pose.inverse()

    def summary(self) -> dict[str, Any]:
        """Plain numbers for reports and provenance."""
        return {
            "template": self.template_role,
            "spacing": [round(s, 6) for s in self.spacing],
            "orientations": self.orientations,
            "scales": [round(s, 4) for s in self.scales],
            "baseline_score": round(self.baseline, 4),
            "scores": [round(h.score, 4) for h in self.hypotheses],
            "region": [
                [round(float(v), 6) for v in self.region[0]],
                [round(float(v), 6) for v in self.region[1]],
            ],
            "seconds": round(self.seconds, 2),
            **self.notes,
        }


def extents(volume: Volume) -> np.ndarray:
    """Physical size of a volume along (z, y, x)."""
    lo, hi = volume_extent(volume)
    return hi - lo


def needs_search(moving: Volume, fixed: Volume, ratio: float) -> bool:
    """Whether one image is under ``ratio`` of the other's extent on some axis."""
    m, f = extents(moving), extents(fixed)
    return bool(np.any(m < ratio * f) or np.any(f < ratio * m))


def template_role(moving: Volume, fixed: Volume) -> str:
    """``moving`` when the moving image is the smaller (by physical volume), else ``fixed``."""
    return "moving" if np.prod(extents(moving)) <= np.prod(extents(fixed)) else "fixed"


@dataclass
class _Target:
    """The target's features on a padded grid, with their spectra."""

    grid: GridImage
    pad: int
    shape: tuple[int, ...]
    spectra: np.ndarray
    energy: np.ndarray
    inside: np.ndarray

    @classmethod
    def build(cls, image: GridImage, mask: np.ndarray | None, prep: Any, pad: int) -> _Target:
        """Features (``prep`` an edge scale) or bin indicators (``prep`` bin edges) on a grid."""
        inside = np.ones(image.shape, np.float32) if mask is None else mask.astype(np.float32)
        if isinstance(prep, np.ndarray):
            feats = indicators(image.array, prep) * inside
        else:
            feats = edge_features(image.array, mask, FEATURE_SIGMA, prep)
        shape = tuple(sfft.next_fast_len(n + 2 * pad, real=True) for n in image.shape)
        box = tuple(slice(pad, pad + n) for n in image.shape)
        padded = np.zeros((len(feats), *shape), np.float32)
        padded[(slice(None), *box)] = feats
        flags = np.zeros(shape, np.float32)
        flags[box] = inside
        energy = (padded * padded).sum(axis=0)
        axes = (1, 2, 3)
        spectra = sfft.rfftn(padded, axes=axes, workers=-1)
        both = sfft.rfftn(np.stack([energy, flags]), axes=axes, workers=-1)
        return cls(image, pad, shape, spectra, both[0], both[1])

    def index_to_point(self, index: np.ndarray) -> np.ndarray:
        """Physical position of padded-grid indices."""
        origin = np.asarray(self.grid.origin) - self.pad * np.asarray(self.grid.spacing)
        return origin + np.asarray(index, float) * np.asarray(self.grid.spacing)


@dataclass(frozen=True)
class _Template:
    features: np.ndarray  # edge features, or bin indicators when ``binned``
    footprint: np.ndarray
    half: tuple[int, int, int]
    binned: bool = False


def template_halves(size: np.ndarray, linear: np.ndarray, spacing: float) -> np.ndarray:
    """Half-sizes (voxels per axis) of the box holding a box of ``size`` mapped by ``linear``."""
    return np.ceil(0.5 * (np.abs(linear) @ np.asarray(size)) / spacing).astype(int) + 1


def _make_template(
    small: GridImage, mask: np.ndarray | None, rotation: np.ndarray, scale: float, prep: Any
) -> _Template:
    """The template resampled as seen in the target frame under ``rotation`` and ``scale``.

    The template grid has the small image's spacing; its voxel ``o`` shows
    the small image at index ``c + R^T (o - half) / scale`` (``c`` the small
    image's centre index).
    """
    h = float(small.spacing[0])
    size = (np.asarray(small.shape) - 1) * h
    half = template_halves(size, scale * rotation, h)
    shape = tuple(int(2 * k + 1) for k in half)
    matrix = rotation.T / scale
    offset = (np.asarray(small.shape) - 1) / 2.0 - matrix @ half
    values = ndimage.affine_transform(
        small.array, matrix, offset, output_shape=shape, order=1, mode="nearest"
    )
    inside = np.ones(small.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    footprint = ndimage.affine_transform(
        inside, matrix, offset, output_shape=shape, order=0, mode="constant", cval=0
    ).astype(bool)
    footprint = ndimage.binary_erosion(footprint, iterations=1)
    if isinstance(prep, np.ndarray):
        features = indicators(values, prep) * footprint.astype(np.float32)
    else:
        features = edge_features(values, footprint, FEATURE_SIGMA, prep)
    halves = (int(half[0]), int(half[1]), int(half[2]))
    return _Template(features, footprint, halves, isinstance(prep, np.ndarray))


def _scores(
    target: _Target, tpl: _Template, allowed: np.ndarray, stride: int = 1
) -> tuple[np.ndarray, np.ndarray] | None:
    """The score of every translation (mutual information of the bin indicators, or the
    normalised edge-feature correlation), and the valid positions.

    Positions index the template's corner on the padded grid; only those
    whose template box lies inside the grid count (no wrap-around). Returns
    None when the template has no edges or does not fit.
    """
    shape = target.shape
    valid_shape = tuple(s - n + 1 for s, n in zip(shape, tpl.footprint.shape, strict=True))
    energy_t = float((tpl.features * tpl.features).sum())
    count = float(tpl.footprint.sum())
    if energy_t <= 0 or count <= 0 or min(valid_shape) < 1:
        return None
    ft = padded_rfft3(tpl.features, shape)
    fw = padded_rfft3(tpl.footprint.astype(np.float32), shape)
    np.conjugate(ft, out=ft)
    box = tuple(slice(0, v) for v in valid_shape)
    if tpl.binned:  # mutual information of every translation
        np.conjugate(fw, out=fw)
        inside = sfft.irfftn(fw * target.inside, s=shape, workers=-1)[box] / count
        ok = (inside >= MIN_INSIDE) & allowed[box]
        score = np.full(inside.shape, -1.0, np.float32)
        score[::stride, ::stride, ::stride] = joint_information(
            ft, target.spectra, shape, box, stride
        )
        if stride > 1:
            sampled = np.zeros_like(ok)
            sampled[::stride, ::stride, ::stride] = True
            ok &= sampled
        return np.where(ok, score, -1.0), ok
    acc = ft[0] * target.spectra[0]
    for c in range(1, ft.shape[0]):
        acc += ft[c] * target.spectra[c]
    num = sfft.irfftn(acc, s=shape, workers=-1)
    np.conjugate(fw, out=fw)
    energy_s = sfft.irfftn(fw * target.energy, s=shape, workers=-1)
    inside = sfft.irfftn(fw * target.inside, s=shape, workers=-1)
    num, energy_s, inside = num[box], energy_s[box], inside[box] / count
    floor = 0.25 * energy_t
    score = num / np.sqrt(np.maximum(energy_s, floor) * energy_t)
    ok = (inside >= MIN_INSIDE) & allowed[box]
    return np.where(ok, score, -1.0), ok


def _allowed(
    target: _Target, half: tuple[int, int, int], lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Padded-grid positions (template corner) whose template centre lies in [lo, hi]."""
    origin = target.index_to_point(np.zeros(3))
    axes = []
    for k, n in enumerate(target.shape):
        centre = origin[k] + (np.arange(n) + half[k]) * target.grid.spacing[k]
        axes.append((centre >= lo[k] - 1e-9) & (centre <= hi[k] + 1e-9))
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def _scan(
    target: _Target,
    small: GridImage,
    mask: np.ndarray | None,
    rotations: np.ndarray,
    scales: tuple[float, ...],
    eps: float,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
    progress: Any = None,
    stride: int = 1,
) -> tuple[list[Hypothesis], list[float]]:
    """The best position of every (orientation, scale), and scores of random positions.

    Mutual information is scored at every ``stride``-th translation only.
    """
    found: list[Hypothesis] = []
    background: list[float] = []
    allowed_cache: dict[tuple[int, int, int], np.ndarray] = {}
    for i, rotation in enumerate(rotations):
        for scale in scales:
            tpl = _make_template(small, mask, rotation, scale, eps)
            if tpl.half not in allowed_cache:
                allowed_cache[tpl.half] = _allowed(target, tpl.half, lo, hi)
            got = _scores(target, tpl, allowed_cache[tpl.half], stride)
            if got is None:
                continue
            score, ok = got
            flat = int(np.argmax(score))
            best = float(score.flat[flat])
            if best <= 0:
                continue
            corner = np.array(np.unravel_index(flat, score.shape))
            centre = target.index_to_point(corner + np.asarray(tpl.half))
            found.append(Hypothesis(rotation, scale, centre, small.center, best))
            valid = np.flatnonzero(ok)
            if valid.size:
                picks = rng.choice(valid, size=min(BASELINE_SAMPLES, valid.size), replace=False)
                background.extend(score.flat[picks].tolist())
        if progress is not None:
            progress(i + 1, len(rotations))
    return found, background


def _distinct(found: list[Hypothesis], count: int, angle: float, shift: float) -> list[Hypothesis]:
    chosen: list[Hypothesis] = []
    for h in sorted(found, key=lambda h: -h.score):
        if all(h.distinct(c, angle, shift) for c in chosen):
            chosen.append(h)
        if len(chosen) >= count:
            break
    return chosen


def _scale_values(centre: float, spread: float, count: int) -> tuple[float, ...]:
    if spread <= 0 or count <= 1:
        return (centre,)
    return tuple(float(centre * (1.0 + spread) ** k) for k in range(-(count // 2), count // 2 + 1))


def global_search(
    moving: Volume,
    fixed: Volume,
    config: SearchConfig,
    *,
    exclude_padding: bool = True,
    drift: tuple[str, int] = ("none", 0),
    names: tuple[str, str] = ("MOVING", "FIXED"),
    progress: Any = None,
) -> SearchResult:
    """Find the smaller image inside the larger one (see the module docstring).

    Parameters
    ----------
    moving, fixed
        The volumes (same unit).
    config
        Search settings (orientations, scales, priors, sizes).
    exclude_padding
        Drop zero padding connected to the image borders from the features.
    drift
        ``(image, axis)``: the image (``fixed``, ``moving`` or ``none``) whose
        slices along ``axis`` drift in brightness (a FIB-SEM); its slices are
        levelled to a common median before scoring.
    names
        Image names for messages.
    progress
        Optional ``progress(done, total)`` called as orientations are scanned.

    Raises
    ------
    RegistrationError
        For an image without edges at the search spacing (constant or empty),
        a prior outside the larger image, or a template that cannot fit.
    """
    start = time.perf_counter()
    role = template_role(moving, fixed)
    small_vol, big_vol = (moving, fixed) if role == "moving" else (fixed, moving)
    small_name, big_name = (names[0], names[1]) if role == "moving" else (names[1], names[0])
    small_size = extents(small_vol)
    finest = max(
        geometric_voxel(small_vol.levels[0].voxel_size),
        geometric_voxel(big_vol.levels[0].voxel_size),
    )
    coarse = max(float(np.sort(small_size)[1]) / config.voxels, finest)
    lo_big, hi_big = volume_extent(big_vol)
    lo, hi = _prior_box(config, lo_big, hi_big, small_size, big_name)
    reach = 0.5 * float(np.linalg.norm(small_size)) * (1.0 + config.scale_range)
    read_lo, read_hi = np.maximum(lo - reach, lo_big), np.minimum(hi + reach, hi_big)
    while np.prod((read_hi - read_lo) / coarse) > MAX_TARGET_VOXELS:
        coarse *= 1.25
    fine = max(coarse / 2.0, finest)
    small_reader = SearchSource(
        VolumeReader(small_vol), exclude_padding, drift[1] if drift[0] == role else None
    )
    big_role = "fixed" if role == "moving" else "moving"
    big_reader = SearchSource(
        VolumeReader(big_vol), exclude_padding, drift[1] if drift[0] == big_role else None
    )
    small, small_mask = small_reader.read(coarse)
    eps_small = scoring_prep(small, small_mask, config, small_name)
    big, big_mask = big_reader.read(coarse, read_lo, read_hi)
    eps_big = scoring_prep(big, big_mask, config, big_name)
    # templates may stick out of the target by up to about a third of their size
    target = _Target.build(big, big_mask, eps_big, int(math.ceil(0.3 * reach / coarse)) + 1)
    rotations = orientations(config.angle_step, config.axis or None, config.max_tilt)
    # the coarse scan runs at scale 1 (a 10 % scale moves the template's edge by about one
    # coarse voxel); the local scans search the scale range
    scales = (1.0,)
    spread = (1.0 + config.scale_range) ** 0.5 - 1.0 if config.scale_range > 0 else 0.0
    rng = np.random.default_rng(config.seed)
    # the coarse scan scores mutual information every second translation: the local scans
    # search two coarse voxels around each seed
    found, background = _scan(
        target, small, small_mask, rotations, scales, eps_small, lo, hi, rng, progress, 2
    )
    if not found:
        raise RegistrationError(
            f"the search found no place where {small_name} fits inside {big_name} with at least "
            f"{MIN_INSIDE:.0%} of it inside: check the voxel sizes, --near and --search-box"
        )
    seeds = _distinct(found, LOCAL_SEEDS, config.angle_step, 2 * coarse)
    refined = _local(
        seeds,
        small_reader,
        big_reader,
        fine,
        coarse,
        config,
        exclude_padding,
        lo,
        hi,
        (lo_big, hi_big),
        spread,
    )
    best = _distinct(refined, config.keep, config.angle_step / 2, 2 * fine)
    return SearchResult(
        hypotheses=tuple(best),
        template_role=role,
        spacing=(coarse, fine),
        orientations=len(rotations),
        scales=scales,
        baseline=float(np.median(background)) if background else 0.0,
        seconds=time.perf_counter() - start,
        region=(lo, hi),
        notes={"coarse_best": round(seeds[0].score, 4)},
    )


def _local(
    seeds: list[Hypothesis],
    small_reader: SearchSource,
    big_reader: SearchSource,
    fine: float,
    coarse: float,
    config: SearchConfig,
    exclude_padding: bool,
    lo: np.ndarray,
    hi: np.ndarray,
    big_box: tuple[np.ndarray, np.ndarray],
    spread: float,
) -> list[Hypothesis]:
    """Search around each seed at the fine spacing, in rounds of halving steps.

    Each round scores, for every translation near the current pose, the
    current orientation and its turns by the step about each axis, then the
    best of those at one scale step either side. The first round searches
    translations within 2 coarse voxels, the later ones within 2 fine voxels.
    """
    small, small_mask = small_reader.read(fine)
    eps_small = scoring_prep(small, small_mask, config, "the smaller image")
    size = (np.asarray(small.shape) - 1) * fine
    out: list[Hypothesis] = []
    rng = np.random.default_rng(config.seed)
    for seed in seeds:
        current = seed
        step, ds, shift = config.angle_step / 2.0, spread, 2.0 * coarse
        for _ in range(LOCAL_ROUNDS):
            reach = 0.5 * (np.abs(current.scale * current.rotation) @ size) * (1.0 + ds)
            margin = reach + shift + 2.0 * fine
            box_lo = np.maximum(current.centre - margin, big_box[0])
            box_hi = np.minimum(current.centre + margin, big_box[1])
            clipped = np.maximum(
                box_lo - (current.centre - margin), (current.centre + margin) - box_hi
            )
            big, big_mask = big_reader.read(fine, box_lo, box_hi)
            try:
                eps_big = scoring_prep(big, big_mask, config, "the larger image")
            except RegistrationError:
                break
            pad = 2 + int(math.ceil(float(clipped.max()) / fine))
            target = _Target.build(big, big_mask, eps_big, pad)
            near_lo = np.maximum(current.centre - shift, lo)
            near_hi = np.minimum(current.centre + shift, hi)
            turns = np.einsum("nij,jk->nik", axis_turns(step), current.rotation)
            # the turns include the current orientation, so its best is comparable at this level
            found, _ = _scan(
                target, small, small_mask, turns, (current.scale,), eps_small, near_lo, near_hi, rng
            )
            current = max(found, key=lambda h: h.score, default=current)
            if ds > 0:
                scales = _scale_values(current.scale, ds, 3)[::2]
                found, _ = _scan(
                    target,
                    small,
                    small_mask,
                    current.rotation[None],
                    scales,
                    eps_small,
                    near_lo,
                    near_hi,
                    rng,
                )
                best = max(found, key=lambda h: h.score, default=current)
                current = best if best.score > current.score else current
            step, ds, shift = step / 2.0, ds / 2.0, 2.0 * fine
        out.append(current)
    return out


def _prior_box(
    config: SearchConfig,
    lo: np.ndarray,
    hi: np.ndarray,
    small_size: np.ndarray,
    big_name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Where the template centre may lie: the target box, cut by ``box`` and ``near``."""
    box_lo, box_hi = lo.copy(), hi.copy()
    if config.box:
        given = np.asarray(config.box, dtype=float).reshape(2, 3)
        box_lo, box_hi = np.maximum(box_lo, given.min(0)), np.minimum(box_hi, given.max(0))
    if config.near:
        radius = config.near_radius if config.near_radius > 0 else float(np.max(small_size))
        near = np.asarray(config.near, dtype=float)
        box_lo, box_hi = np.maximum(box_lo, near - radius), np.minimum(box_hi, near + radius)
    if np.any(box_hi < box_lo):
        raise RegistrationError(
            f"the search region (--near/--search-box) lies outside {big_name}, which spans "
            f"{np.round(lo, 4).tolist()} .. {np.round(hi, 4).tolist()} (z, y, x): give a point "
            f"or box inside it"
        )
    return box_lo, box_hi
