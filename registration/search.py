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
   and its score found for all translations
   (:mod:`~coframe.registration.search_scan`, templates in parallel).
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

from coframe.core.errors import RegistrationError
from coframe.registration.inputs import geometric_voxel
from coframe.registration.locate_inputs import VolumeReader, volume_extent
from coframe.registration.preset_sections import SearchConfig
from coframe.registration.search_features import axis_turns, orientations
from coframe.registration.search_inputs import SearchSource, scoring_prep
from coframe.registration.search_scan import MIN_INSIDE, Hypothesis, Target, scan
from coframe.transforms.affine import Affine
from coframe.volumes.volume import Volume

#: Largest number of voxels of the target at the coarse spacing.
MAX_TARGET_VOXELS = 600_000
#: Candidates searched again at the finer spacing.
LOCAL_SEEDS = 3
#: Rounds of the local search (each halves the rotation and scale steps).
LOCAL_ROUNDS = 2


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
    target = Target.build(big, big_mask, eps_big, int(math.ceil(0.3 * reach / coarse)) + 1)
    rotations = orientations(config.angle_step, config.axis or None, config.max_tilt)
    # the coarse scan runs at scale 1 (a 10 % scale moves the template's edge by about one
    # coarse voxel); the local scans search the scale range
    scales = (1.0,)
    spread = (1.0 + config.scale_range) ** 0.5 - 1.0 if config.scale_range > 0 else 0.0
    rng = np.random.default_rng(config.seed)
    # the coarse scan scores mutual information every second translation: the local scans
    # search two coarse voxels around each seed
    found, background = scan(
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
            target = Target.build(big, big_mask, eps_big, pad)
            near_lo = np.maximum(current.centre - shift, lo)
            near_hi = np.minimum(current.centre + shift, hi)
            turns = np.einsum("nij,jk->nik", axis_turns(step), current.rotation)
            # the turns include the current orientation, so its best is comparable at this level
            found, _ = scan(
                target, small, small_mask, turns, (current.scale,), eps_small, near_lo, near_hi, rng
            )
            current = max(found, key=lambda h: h.score, default=current)
            if ds > 0:
                scales = _scale_values(current.scale, ds, 3)[::2]
                found, _ = scan(
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
