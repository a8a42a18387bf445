"""What a slice-to-volume search is told (:class:`LocateOptions`) and returns
(:class:`LocateResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coframe.registration.locate_geometry import Pose
from coframe.registration.locate_symmetry import MirrorPlane, MirrorTwin
from coframe.transforms.affine import Affine


@dataclass(frozen=True)
class LocateOptions:
    """Prior knowledge and search settings of :func:`locate_section`.

    Parameters
    ----------
    normal
        Expected plane normal (z, y, x), either sign (``--normal``).
    near
        A physical point (z, y, x) near the section centre (``--near``).
    near_radius
        How far from ``near`` the centre may be (default: the section's
        half-diagonal).
    max_tilt
        Largest angle (degrees) between the normal and ``normal`` (or the
        volume z axis) (``--max-tilt``); default 90 (any orientation), or 20
        when ``normal`` is given.
    shrinkage
        Add an affine stage: the in-plane part may shrink and shear (``--shrinkage``).
    assumed_compression
        With ``shrinkage``: when no round of the search finds a trustworthy
        pose, the section is searched again as if compressed by this
        fraction along its y axis, then along its x axis (stretched back by
        ``1 / (1 - assumed_compression)``; cutting compresses sections 5-15 %
        along the cutting direction, more than the scans tolerate); 0: never
        (``--assumed-compression``).
    search_pixels
        Pixels across the section's shorter side at the global level.
    angle_step
        Spacing (degrees) of normals and in-plane rotations of the global search.
    offset_step
        Spacing of the offsets along the normal in the global search, in
        global voxels.
    max_search_voxels
        Largest volume (voxels) of the global level; the spacing grows to fit.
    seeds
        Distinct global candidates searched locally, over all orientations; a
        cone of normals (``normal``, ``max_tilt``) gets its share by normals
        scanned, at least a quarter (:func:`~coframe.registration.locate.seed_count`).
    screen, screen_spacing
        ``screen`` times as many distinct global candidates as seeds are
        scored again at ``screen_spacing`` times the global spacing (not
        finer than the working spacing), each over a global voxel of
        centres, and the best of them become the seeds: the global scan's
        coarse grid can rank the right place below thousands of others, a
        finer look puts it near the top (0: no screen).
    local_pixels
        Pixels across the section's shorter side at the local level.
    local_step
        Spacing (degrees) of normals and rotations of the local search.
    refine
        Candidates optimised with SimpleITK.
    max_working_pixels
        Largest side (pixels) of the section at the working spacing.
    search_score
        Similarity of the global and local scans: ``edges`` (normalised
        gradient directions: any contrast relation), ``ncc`` (masked NCC: the
        same or inverted contrast; broader peaks, kinder to compressed or
        coarse sections), ``both`` (each scan brings half of the seeds; the
        global scan then takes about twice as long) or ``auto`` (the
        default: edges, then, only when the pose found is not trustworthy,
        NCC's own seeds too, the best pose of both rounds winning); see
        :mod:`~coframe.registration.locate_scores`.
    metric
        Metric the refinement optimises: ``correlation`` (squared NCC, either
        contrast), ``mattes`` (mutual information, any contrast relation) or
        ``auto`` (the default: per candidate, ``correlation`` when the section
        correlates with its slice by at least ``min_ncc`` in absolute value
        at the start, else ``mattes``; mutual information is noisier on small
        sections, so it is used where correlation cannot work).
    score
        Score of the final poses: ``mi`` (mutual information) or ``ncc``.
    bins
        Histogram bins of the mutual information.
    min_ncc
        Absolute normalised cross-correlation of a candidate with its slice
        from which the ``auto`` refinement uses correlation.
    min_edges
        A pose is not trustworthy unless the section matches its slice by
        edge agreement (any contrast relation) at least ``min_edges``. A
        correlation alone does not do: a non-monotonic contrast can correlate
        at a wrong pose.
    min_confidence
        Confidences below this are not trustworthy.
    min_pixels
        Sections spanning fewer working voxels (shorter side) are not
        trustworthy: too little of the volume to tell places apart.
    tilt_check, min_tilt_margin
        The plane tilted by ``tilt_check`` degrees must score more than
        ``min_tilt_margin`` (relative) below the pose; by default a pose that
        a tilt improves is not even a local optimum of its own score, so its
        tilt is not determined and it is not trustworthy.
    distinct_angle
        Angle (degrees) beyond which two poses are distinct.
    distinct_voxels
        Centre distance (working voxels) beyond which two poses are distinct.
    auto_mask
        Mask grid bars, empty film and folds of the section automatically
        (:func:`~coframe.registration.locate_mask.auto_section_mask`).
    min_inside
        Poses that place less than this fraction of the section's unmasked
        pixels inside the volume are not trustworthy: too little to judge.
    """

    normal: tuple[float, float, float] | None = None
    near: tuple[float, float, float] | None = None
    near_radius: float | None = None
    max_tilt: float | None = None
    shrinkage: bool = False
    assumed_compression: float = 0.12
    search_pixels: int = 24
    angle_step: float = 15.0
    offset_step: float = 1.0
    max_search_voxels: int = 56**3
    seeds: int = 128
    screen: int = 16
    screen_spacing: float = 0.6
    local_pixels: int = 24
    local_step: float = 5.0
    refine: int = 8
    max_working_pixels: int = 256
    search_score: str = "auto"
    metric: str = "auto"
    score: str = "mi"
    bins: int = 16
    min_ncc: float = 0.6
    min_edges: float = 0.7
    min_confidence: float = 0.1
    min_pixels: int = 12
    tilt_check: float = 4.0
    min_tilt_margin: float = 0.0
    distinct_angle: float = 10.0
    distinct_voxels: float = 3.0
    auto_mask: bool = True
    min_inside: float = 0.5


@dataclass(frozen=True)
class ScoredPose:
    """A pose with its final score.

    Parameters
    ----------
    pose
        The pose.
    score
        Its score (higher is better).
    sign
        Sign of its correlation (-1 for inverted contrast).
    refined
        Whether SimpleITK optimised it.
    """

    pose: Pose
    score: float
    sign: float
    refined: bool


@dataclass(frozen=True)
class LocateResult:
    """Where a section lies in a volume.

    Parameters
    ----------
    affine
        2D -> 3D affine: section physical (y, x) -> volume physical (z, y, x).
    pose
        The same map as a :class:`~coframe.registration.locate_geometry.Pose`.
    score
        Final score of the pose (``options.score``; higher is better).
    runner_up
        Best score of a pose distinct from it (0 if none was found).
    confidence
        ``1 - runner_up / score``: 0 when a distinct pose scores as well.
    ncc
        Normalised cross-correlation of the section with the matched slice
        (negative for inverted contrast).
    edges
        Edge agreement of the section with the matched slice (cosine of their
        edge features, :func:`coframe.registration.locate_refine.edge_agreement`):
        the fit measure that holds under any contrast relation.
    working_level
        Index of the volume level used for the refinement.
    working_spacing
        Spacing (physical) of the section during the refinement.
    spacings
        Spacings of the global and local searches.
    candidates
        Every pose scored at the working level, best first.
    timings
        Seconds per stage.
    options
        The options used.
    working_pixels
        Working voxels across the section's shorter side.
    symmetry
        Planes about which the volume (its global level) is mirror-symmetric.
    mirror
        The best pose's mirror twin about one of those planes, refined and
        scored (None when the volume is not symmetric, the twin is the pose
        itself, or ``near``/``normal`` exclude it).
    tilt_margin
        Relative score drop when the plane tilts by ``options.tilt_check``
        degrees (:func:`coframe.registration.locate_refine.tilt_margin`).
    inside
        Fraction of the section's unmasked pixels that the pose places inside
        the volume (the scores use only those).
    masked
        Fraction of the section masked out (grid bars, empty film, the user's mask).
    """

    affine: Affine
    pose: Pose
    score: float
    runner_up: float
    confidence: float
    ncc: float
    edges: float
    working_level: int
    working_spacing: float
    spacings: dict[str, float]
    candidates: tuple[ScoredPose, ...]
    timings: dict[str, float] = field(default_factory=dict)
    options: LocateOptions = field(default_factory=LocateOptions)
    working_pixels: int = 0
    symmetry: tuple[MirrorPlane, ...] = ()
    mirror: MirrorTwin | None = None
    tilt_margin: float = 1.0
    inside: float = 1.0
    masked: float = 0.0

    @property
    def compression(self) -> dict[str, float]:
        """In-plane anisotropic scale of the pose (section compression).

        ``scales`` are the singular values of the 3x2 linear part (volume
        length per section length), largest first; ``compression`` is
        ``1 - smaller / larger``: the fraction by which the section is shorter
        along ``angle`` (degrees from the section's y axis towards its x axis,
        in [0, 180)) than along the perpendicular direction.
        """
        _, sv, vt = np.linalg.svd(self.pose.linear, full_matrices=False)
        angle = float(np.degrees(np.arctan2(vt[0, 1], vt[0, 0]))) % 180.0
        return {
            "scales": [round(float(v), 6) for v in sv],
            "compression": round(float(1.0 - sv[1] / sv[0]), 6),
            "angle": round(angle, 2),
        }

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the plane, ``cross(column_y, column_x)``."""
        return self.pose.normal

    @property
    def mirror_tie(self) -> bool:
        """Whether the mirror twin scores within ``min_confidence`` of the pose."""
        if self.mirror is None or self.score <= 0:
            return self.mirror is not None
        return 1.0 - self.mirror.score / self.score < self.options.min_confidence

    @property
    def trustworthy(self) -> bool:
        """Whether edge agreement, confidence, section size and the fraction inside the
        volume reach the options' thresholds and no mirror twin ties."""
        return (
            self.matches
            and self.confidence >= self.options.min_confidence
            and self.working_pixels >= self.options.min_pixels
            and self.tilt_margin > self.options.min_tilt_margin
            and self.inside >= self.options.min_inside
            and not self.mirror_tie
        )

    @property
    def matches(self) -> bool:
        """Whether the section matches its slice by edge agreement, whatever the contrasts."""
        return self.edges >= self.options.min_edges

    def summary(self) -> dict[str, Any]:
        """Plain numbers: score, runner-up, confidence, NCC, normal, scale, centre, symmetry
        planes and the mirror twin (with ``tie``)."""
        scales = np.linalg.norm(self.pose.linear, axis=0)
        mirror = None if self.mirror is None else {**self.mirror.summary(), "tie": self.mirror_tie}
        return {
            "score": round(self.score, 6),
            "runner_up": round(self.runner_up, 6),
            "confidence": round(self.confidence, 6),
            "ncc": round(self.ncc, 6),
            "edges": round(self.edges, 6),
            "normal": [round(float(v), 6) for v in self.normal],
            "in_plane_scale": [round(float(v), 6) for v in scales],
            "center": [round(float(v), 3) for v in self.pose.center],
            "symmetry": [p.summary() for p in self.symmetry],
            "mirror": mirror,
            "tilt_margin": round(self.tilt_margin, 6),
            "inside": round(self.inside, 4),
            "masked": round(self.masked, 4),
            "compression": self.compression,
        }
