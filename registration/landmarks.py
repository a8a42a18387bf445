"""Registration from landmark pairs: least-squares fits, thin-plate splines, leave-one-out TRE.

Landmarks come from BigWarp files (:mod:`coframe.transforms.formats.bigwarp`).
The transform a set of pairs defines (a thin-plate spline through them or a
least-squares linear map) is :func:`coframe.transforms.point_pairs.landmarks_transform`:
reading a BigWarp transform file needs it, and transforms never import
estimators. This module adds what registration needs on top: model names,
minimum point counts with errors that name the file, residuals, leave-one-out
errors, and TRE of any transform on held-out landmarks.

Every fit returns the FIXED -> MOVING point map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coframe.core.errors import RegistrationError, TransformError
from coframe.registration.qc import tre
from coframe.transforms.base import Transform
from coframe.transforms.formats.bigwarp import read_bigwarp_landmarks
from coframe.transforms.point_pairs import Landmarks, landmarks_transform

#: Landmark models and the minimum number of pairs each needs in 3D.
MODELS: dict[str, int] = {"rigid": 3, "similarity": 3, "affine": 4, "tps": 5}


@dataclass(frozen=True)
class LandmarkFit:
    """A landmark fit and its errors.

    Parameters
    ----------
    model
        ``rigid``, ``similarity``, ``affine`` or ``tps``.
    transform
        The FIXED -> MOVING map.
    residuals
        Distance of each active pair after the fit (physical units; zero for a
        thin-plate spline, which interpolates).
    leave_one_out
        Distance of each active pair when the fit leaves it out.
    names
        Names of the active pairs.
    """

    model: str
    transform: Transform
    residuals: np.ndarray
    leave_one_out: np.ndarray
    names: tuple[str, ...]

    def summary(self, voxel: float) -> dict[str, object]:
        """Plain statistics (physical units and voxels of size ``voxel``)."""
        loo = self.leave_one_out
        known = loo[np.isfinite(loo)]
        mean = float(known.mean()) if known.size else float("nan")
        return {
            "model": self.model,
            "pairs": int(loo.size),
            "residual_mean": float(self.residuals.mean()),
            "loo_mean": mean,
            "loo_max": float(known.max()) if known.size else float("nan"),
            "loo_mean_vox": mean / voxel,
            "loo_per_point": {n: float(v) for n, v in zip(self.names, loo, strict=True)},
        }


def load_landmarks(path: str | Path, *, unit: str, file_unit: str | None = None) -> Landmarks:
    """Read a BigWarp landmark file (CSV or JSON) in the workspace unit."""
    return read_bigwarp_landmarks(path, unit=unit, file_unit=file_unit)


def check_count(landmarks: Landmarks, model: str, source: str, flag: str = "--landmarks") -> None:
    """Check that there are enough active pairs for a model.

    Raises
    ------
    RegistrationError
        If the model is unknown or there are too few pairs.
    """
    if model not in MODELS:
        raise RegistrationError(
            f"unknown landmark model {model!r}: expected one of {', '.join(MODELS)} "
            "(--set landmark_model=...)"
        )
    needed = MODELS[model] if landmarks.dim == 3 else MODELS[model] - 1
    have = int(np.count_nonzero(landmarks.active))
    if have < needed:
        raise RegistrationError(
            f"landmark file {source} has {have} active pairs but a {landmarks.dim}D {model} fit "
            f"needs at least {needed} ({flag}; add landmarks or use a simpler landmark_model)"
        )


def _subset(landmarks: Landmarks, keep: np.ndarray) -> Landmarks:
    active = landmarks.active.copy()
    active[~keep] = False
    return Landmarks(landmarks.moving, landmarks.fixed, landmarks.names, active)


def fit(landmarks: Landmarks, model: str, source: str = "landmarks") -> LandmarkFit:
    """Fit a FIXED -> MOVING map to the active pairs, with leave-one-out errors.

    Linear models are least-squares fits (Kabsch-Umeyama for rigid and
    similarity), ``tps`` a thin-plate spline through the points. Each
    leave-one-out error refits without one pair and measures that pair.

    Raises
    ------
    RegistrationError
        If there are too few pairs or they are degenerate for the model.
    """
    check_count(landmarks, model, source)
    try:
        transform = landmarks_transform(landmarks, model)
    except TransformError as e:
        raise RegistrationError(f"cannot fit a {model} to {source}: {e} (--landmarks)") from e
    residuals = landmark_residuals(landmarks, transform)
    active_index = np.flatnonzero(landmarks.active)
    loo = np.full(active_index.size, np.nan)
    if active_index.size > MODELS[model]:
        for k, i in enumerate(active_index):
            keep = np.ones(len(landmarks), dtype=bool)
            keep[i] = False
            try:
                t = landmarks_transform(_subset(landmarks, keep), model)
            except TransformError:
                continue
            loo[k] = float(np.linalg.norm(t.apply(landmarks.fixed[i]) - landmarks.moving[i]))
    names = tuple(landmarks.names[i] for i in active_index)
    return LandmarkFit(model, transform, residuals, loo, names)


def landmark_residuals(landmarks: Landmarks, transform: Transform) -> np.ndarray:
    """Distance between each active pair's moving point and the transformed fixed point."""
    fixed, moving = landmarks.active_pairs()
    return np.linalg.norm(transform.apply(fixed) - moving, axis=1)


def landmark_tre(transform: Transform, landmarks: Landmarks, voxel: float) -> dict[str, float]:
    """TRE of a FIXED -> MOVING map on the active landmark pairs."""
    fixed, moving = landmarks.active_pairs()
    return tre(transform, fixed, moving, voxel)
