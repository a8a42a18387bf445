"""The ``nuclei`` step: a start found from the nuclei both images show, with its own trust gate.

Each image gives points: a nucleus segmentation one per label
(:func:`~coframe.registration.nuclei_points.points_from_labels`), an intensity
image one per nucleus-sized blob
(:func:`~coframe.registration.nuclei_points.points_from_intensity`, both
polarities when the modality does not tell). The sets are matched with no
start (:func:`~coframe.registration.nuclei_match.match_points`); the matched
pairs are fitted by :func:`coframe.registration.landmarks.fit` (the same fit
``--landmarks`` uses, with its leave-one-out errors).

The gate refuses a match with too few inliers (``nuclei.min_inliers``, and at
least three times what a random pose gets by chance), or whose runner-up pose
matches nearly as many (``nuclei.runner_up_ratio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coframe.core.errors import RegistrationError
from coframe.core.units import unit_factor
from coframe.registration import landmarks as lmk
from coframe.registration.nuclei_match import PointMatch, match_points
from coframe.registration.nuclei_points import (
    NucleusPoints,
    modality_polarity,
    points_from_intensity,
    points_from_labels,
)
from coframe.registration.preset_sections import NucleiConfig
from coframe.transforms.base import Transform
from coframe.transforms.point_pairs import Landmarks, landmarks_from_pairs
from coframe.volumes.volume import Volume

#: How to go on when the nuclei do not give a trusted start.
NUCLEI_WAY_FORWARD = (
    "check the size prior (--set nuclei.diameter=MIN,MAX micrometres) and the labels "
    "(--fixed-labels/--moving-labels), give --landmarks, or store it anyway with --force"
)


def find_nuclei(
    volume: Volume,
    cfg: NucleiConfig,
    *,
    labels: Volume | None = None,
    level: int | str | None = None,
) -> list[NucleusPoints]:
    """The nuclei of an image: from its labels if given (or if it is a labels image), else blobs.

    Returns one point set per polarity tried (``nuclei.polarity``; ``auto``
    takes it from the modality, both when unknown).
    """
    source = labels if labels is not None else volume
    if source.is_labels or labels is not None:
        return [points_from_labels(source, cfg.diameter, level=level)]
    polarities = (
        modality_polarity(volume.modality)
        if cfg.polarity == "auto"
        else ("bright", "dark")
        if cfg.polarity == "both"
        else (cfg.polarity,)
    )
    return [
        points_from_intensity(
            volume,
            cfg.diameter,
            p,
            min_score=cfg.min_score,
            max_points=cfg.max_points,
            level=level,
        )
        for p in polarities
    ]


@dataclass(frozen=True)
class NucleiResult:
    """What the nuclei step found.

    Parameters
    ----------
    fixed_points, moving_points
        The nuclei matched (the polarity that matched best), border nuclei left out.
    match
        The point-set match.
    fit
        The least-squares fit of the inlier pairs with leave-one-out errors.
    reason
        Why the gate doubts the result (empty: trusted).
    """

    fixed_points: NucleusPoints
    moving_points: NucleusPoints
    match: PointMatch
    fit: lmk.LandmarkFit
    reason: str = ""

    @property
    def transform(self) -> Transform:
        """The FIXED -> MOVING map fitted to the matched nuclei."""
        return self.fit.transform

    @property
    def trusted(self) -> bool:
        """True when the gate found no reason to doubt the match."""
        return not self.reason

    def pairs(self, transform: Transform | None = None) -> Landmarks:
        """The matched pairs as landmarks (FIXED nuclei; MOVING nuclei or their mapped places).

        With ``transform`` the moving points are the fixed nuclei mapped by it,
        so that a thin-plate spline through the pairs is that map exactly.
        """
        fixed = self.fixed_points.centres[self.match.fixed_index]
        if transform is None:
            moving = self.moving_points.centres[self.match.moving_index]
        else:
            moving = transform.apply(fixed)
        names = [
            f"nucleus-{int(i)}" if int(i) else f"blob-{k}"
            for k, i in enumerate(self.fixed_points.ids[self.match.fixed_index])
        ]
        return landmarks_from_pairs(fixed, moving, names)

    def summary(self, unit: str, voxel: float) -> dict[str, Any]:
        """Plain numbers: counts, inliers out of candidates, RMS and leave-one-out TRE in µm."""
        f = unit_factor(unit, "micrometer")
        loo = self.fit.leave_one_out
        known = loo[np.isfinite(loo)]
        return {
            "trusted": self.trusted,
            "reason": self.reason or None,
            "model": self.fit.model,
            "fixed_points": len(self.fixed_points),
            "moving_points": len(self.moving_points),
            "fixed_kind": self.fixed_points.polarity,
            "moving_kind": self.moving_points.polarity,
            "fixed_level": self.fixed_points.level,
            "moving_level": self.moving_points.level,
            "inliers": self.match.inliers,
            "candidates": self.match.candidates,
            "runner_up": self.match.runner_up,
            "chance": round(self.match.chance, 2),
            "rms_um": _r(float(np.sqrt(np.mean(self.fit.residuals**2))) * f),
            "loo_tre_um": _r(float(known.mean()) * f) if known.size else None,
            "loo_tre_max_um": _r(float(known.max()) * f) if known.size else None,
            "loo_tre_vox": _r(float(known.mean()) / voxel) if known.size else None,
            "hypotheses": self.match.hypotheses,
            "seconds": round(self.match.seconds, 3),
        }


def _r(v: float) -> float:
    return round(v, 4)


def nuclei_step(
    moving: Volume,
    fixed: Volume,
    cfg: NucleiConfig,
    *,
    scale_range: float = 0.1,
    moving_labels: Volume | None = None,
    fixed_labels: Volume | None = None,
    names: tuple[str, str] = ("MOVING", "FIXED"),
) -> NucleiResult:
    """Find the nuclei of both images, match them, fit the FIXED -> MOVING map, judge it.

    Raises
    ------
    RegistrationError
        No labels, a float image as labels, too few or flat point sets, a
        size prior that finds nothing, or no pose.
    """
    fixed_sets = [s.usable() for s in find_nuclei(fixed, cfg, labels=fixed_labels)]
    moving_sets = [s.usable() for s in find_nuclei(moving, cfg, labels=moving_labels)]
    tol = cfg.tolerance * unit_factor("micrometer", fixed.unit)
    best: tuple[PointMatch, NucleusPoints, NucleusPoints] | None = None
    errors: list[RegistrationError] = []
    for fs in fixed_sets:
        for ms in moving_sets:
            try:
                m = match_points(
                    fs.centres,
                    ms.centres,
                    tolerance=tol,
                    model=cfg.model,
                    scale_range=scale_range,
                    min_points=cfg.min_inliers,
                    names=(names[1], names[0]),
                )
            except RegistrationError as e:
                errors.append(e)
                continue
            if best is None or m.inliers > best[0].inliers:
                best = (m, fs, ms)
    if best is None:
        raise errors[0]
    match, fs, ms = best
    pairs = landmarks_from_pairs(fs.centres[match.fixed_index], ms.centres[match.moving_index])
    if match.inliers < lmk.MODELS[cfg.model]:
        raise RegistrationError(
            f"only {match.inliers} nuclei of {names[1]} and {names[0]} match: too few for a "
            f"{cfg.model} fit; {NUCLEI_WAY_FORWARD}"
        )
    fit = lmk.fit(pairs, cfg.model, "the matched nuclei")
    return NucleiResult(fs, ms, match, fit, judge_match(match, cfg))


def judge_match(match: PointMatch, cfg: NucleiConfig) -> str:
    needed = max(cfg.min_inliers, int(np.ceil(3 * match.chance)))
    reason = ""
    if match.inliers < needed:
        reason = (
            f"only {match.inliers} of {match.candidates} candidate nuclei match (need {needed}; "
            f"a random pose matches {match.chance:.1f})"
        )
    elif match.runner_up >= cfg.runner_up_ratio * match.inliers:
        reason = (
            f"another pose matches nearly as many nuclei ({match.runner_up} against "
            f"{match.inliers}): the answer is ambiguous"
        )
    return f"not trusted: {reason}; {NUCLEI_WAY_FORWARD}" if reason else ""


def agreement(a: Transform, b: Transform, corners: np.ndarray, voxel: float) -> float:
    """Largest distance, in voxels of size ``voxel``, between two maps of a region's corners."""
    return float(np.max(np.linalg.norm(a.apply(corners) - b.apply(corners), axis=1)) / voxel)
