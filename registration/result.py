"""What a registration returns: the map, how it was found, and the working images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coframe.registration import inputs
from coframe.registration.inputs import WorkImage
from coframe.registration.intensity import StepReport
from coframe.registration.presets import Preset
from coframe.transforms.base import Transform


@dataclass(frozen=True)
class RegistrationResult:
    """The outcome of :func:`register`.

    Parameters
    ----------
    transform
        The FIXED -> MOVING point map (physical units).
    initial
        The map the steps started from.
    initial_source
        How the initial map was made (``identity``, ``geometry``, ``edge``...).
    steps
        One report per step run.
    metric_name
        The metric (``mattes``, ``correlation``, ``meansquares``).
    metric_before, metric_after
        QC metric of ``initial`` and ``transform`` at the working level (lower
        is better).
    diverged
        Why the optimisation diverged, or empty.
    jacobian
        Jacobian determinant statistics of the deformable part, if any.
    fixed, moving
        The working images (levels, regions and masks used).
    seconds
        Wall time of the whole registration.
    preset
        The settings used.
    """

    transform: Transform
    initial: Transform
    initial_source: str
    steps: tuple[StepReport, ...]
    metric_name: str
    metric_before: float
    metric_after: float
    diverged: str
    jacobian: dict[str, float] | None
    fixed: WorkImage
    moving: WorkImage
    seconds: float
    preset: Preset
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def working_voxel(self) -> float:
        """Geometric mean of the fixed working voxel size."""
        return inputs.geometric_voxel(self.fixed.voxel_size)

    def levels(self) -> dict[str, dict[str, Any]]:
        """Level, voxel size and region shape used for each image."""
        return {
            role: {
                "image": w.name,
                "level": w.level,
                "path": w.level_path,
                "voxel_size": [float(v) for v in w.voxel_size],
                "region_origin": [float(v) for v in w.origin],
                "region_shape": list(w.shape),
                "masked_voxels": None if w.mask is None else int(w.mask.sum()),
            }
            for role, w in (("fixed", self.fixed), ("moving", self.moving))
        }
