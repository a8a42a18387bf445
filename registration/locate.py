"""Slice-to-volume registration: find where a 2D section lies inside a 3D volume.

:func:`locate_section` returns the 2D -> 3D affine that maps the section's
physical (y, x) into the volume's physical (z, y, x), with a score and a
confidence. It works global then local:

1. **global**: every orientation on a sphere grid (Fibonacci normals, optionally
   restricted by ``max_tilt`` around ``normal`` or the volume z axis) times
   in-plane rotations (both faces of the section) times offsets along the
   normal, with in-plane translations searched by FFT cross-correlation
   (:mod:`coframe.registration.locate_search`), on a coarse copy of the volume where
   the section spans about ``search_pixels`` pixels;
2. **local**: finer orientations and offsets around each of the best distinct
   global candidates, at about twice that resolution;
3. **refine**: the best local candidates, scored at the working level (the
   volume level nearest the section's pixel size), are optimised with
   SimpleITK on a one-voxel-thick fixed image
   (:mod:`coframe.registration.locate_refine`); with ``shrinkage`` an affine stage
   follows, so the in-plane part may shrink or shear;
4. **mirror**: when the volume is mirror-symmetric about a plane across one
   of its axes (:mod:`coframe.registration.locate_symmetry`, measured once on the
   global level), the best pose's reflection through the plane is refined and
   scored like the other candidates (unless ``near`` or ``normal`` exclude
   it): its section content is the same, so it is a rival that no score can
   beat, and a tie makes the result untrustworthy;
5. **decide**: the refined pose with the best score wins; the confidence
   compares it with the best pose found that is *distinct* from it (normal or
   in-plane axes more than ``distinct_angle`` degrees apart, or centre more
   than ``distinct_voxels`` working voxels apart).

Only the levels and boxes needed are read: the global search reads a coarse
level (the whole volume, or a box around ``near``), the later stages read
boxes around the candidates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coframe.core.errors import DimensionError, RegistrationError, TransformError
from coframe.registration.locate_refine import (
    RefineSettings,
    pose_score,
    refine_pose,
    tilt_margin,
)
from coframe.registration.locate_search import (
    Candidate,
    Grid,
    Pose,
    angle_between,
    best_candidates,
    fibonacci_cap,
    in_plane_angle,
    in_plane_maps,
    local_search,
    poses_distinct,
    resample_grid,
    scan,
)
from coframe.registration.locate_symmetry import (
    MirrorPlane,
    MirrorTwin,
    detect_symmetry,
    mirror_pose,
    within_priors,
)
from coframe.transforms.affine import Affine
from coframe.volumes.volume import Volume

#: Largest number of voxels of a level read whole (else boxes are read).
WHOLE_LEVEL_VOXELS = 48_000_000


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
        Distinct global candidates searched locally.
    local_pixels
        Pixels across the section's shorter side at the local level.
    local_step
        Spacing (degrees) of normals and rotations of the local search.
    refine
        Candidates optimised with SimpleITK.
    max_working_pixels
        Largest side (pixels) of the section at the working spacing.
    metric
        Metric the refinement optimises: ``correlation`` (squared NCC, either
        contrast) or ``mattes`` (mutual information).
    score
        Score of the final poses: ``mi`` (mutual information) or ``ncc``.
    bins
        Histogram bins of the mutual information.
    min_ncc
        Absolute normalised cross-correlations of the section with its
        matched slice below this are not trustworthy.
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
    """

    normal: tuple[float, float, float] | None = None
    near: tuple[float, float, float] | None = None
    near_radius: float | None = None
    max_tilt: float | None = None
    shrinkage: bool = False
    search_pixels: int = 16
    angle_step: float = 15.0
    offset_step: float = 1.0
    max_search_voxels: int = 56**3
    seeds: int = 64
    local_pixels: int = 24
    local_step: float = 5.0
    refine: int = 8
    max_working_pixels: int = 256
    metric: str = "correlation"
    score: str = "mi"
    bins: int = 16
    min_ncc: float = 0.6
    min_confidence: float = 0.1
    min_pixels: int = 12
    tilt_check: float = 4.0
    min_tilt_margin: float = 0.0
    distinct_angle: float = 10.0
    distinct_voxels: float = 3.0


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
        The same map as a :class:`~coframe.registration.locate_search.Pose`.
    score
        Final score of the pose (``options.score``; higher is better).
    runner_up
        Best score of a pose distinct from it (0 if none was found).
    confidence
        ``1 - runner_up / score``: 0 when a distinct pose scores as well.
    ncc
        Normalised cross-correlation of the section with the matched slice
        (negative for inverted contrast).
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
    """

    affine: Affine
    pose: Pose
    score: float
    runner_up: float
    confidence: float
    ncc: float
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
        """Whether correlation, confidence and section size reach the options' thresholds
        and no mirror twin ties."""
        return (
            abs(self.ncc) >= self.options.min_ncc
            and self.confidence >= self.options.min_confidence
            and self.working_pixels >= self.options.min_pixels
            and self.tilt_margin > self.options.min_tilt_margin
            and not self.mirror_tie
        )

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
            "normal": [round(float(v), 6) for v in self.normal],
            "in_plane_scale": [round(float(v), 6) for v in scales],
            "center": [round(float(v), 3) for v in self.pose.center],
            "symmetry": [p.summary() for p in self.symmetry],
            "mirror": mirror,
            "tilt_margin": round(self.tilt_margin, 6),
        }


def section_grid(section: Volume, spacing: float, *, name: str = "section") -> Grid:
    """Read a 2D section at (about) ``spacing``, as an isotropic float32 grid.

    The coarsest level whose pixels are not larger than ``spacing`` is read
    whole and resampled.

    Raises
    ------
    DimensionError
        If the image is not 2D.
    """
    if section.ndim != 2:
        raise DimensionError(
            f"image {name!r} has {section.ndim} axes {list(section.axes)}: a 2D section "
            f"(y, x) is expected as SECTION"
        )
    index = _level_not_coarser(section, spacing)
    lvl = section.levels[index]
    grid = Grid(lvl.read().astype(np.float32), lvl.voxel_size, lvl.origin)
    return resample_grid(grid, spacing)


def _level_not_coarser(volume: Volume, spacing: float) -> int:
    """The coarsest level whose geometric-mean voxel size does not exceed ``spacing``."""
    best = 0
    for i, lvl in enumerate(volume.levels):
        if _geo(lvl.voxel_size) <= spacing * 1.001:
            if _geo(lvl.voxel_size) >= _geo(volume.levels[best].voxel_size):
                best = i
    return best


def _geo(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def _extent(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    ext = np.asarray(volume.levels[0].extent, dtype=float)
    return ext[:, 0], ext[:, 1]


class _VolumeReader:
    """Reads a volume at a spacing, whole or in boxes, caching whole levels."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self._whole: dict[int, Grid] = {}

    def level_grid(
        self, index: int, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> Grid:
        """Level ``index`` as a float32 grid: the box [lo, hi] (or all of it).

        A level of at most :data:`WHOLE_LEVEL_VOXELS` voxels is read whole
        once and cropped; a larger one is read box by box.

        Raises
        ------
        RegistrationError
            If a large level is asked for whole, or the box misses the volume.
        """
        lvl = self.volume.levels[index]
        if index not in self._whole and int(np.prod(lvl.shape)) <= WHOLE_LEVEL_VOXELS:
            self._whole[index] = Grid(lvl.read().astype(np.float32), lvl.voxel_size, lvl.origin)
        if index in self._whole:
            whole = self._whole[index]
            return whole if lo is None or hi is None else _crop(whole, lo, hi)
        if lo is None or hi is None:
            raise RegistrationError(
                f"level {lvl.path or index} of {self.volume.source} ({lvl.shape}) is too large to "
                f"search whole: give --near to search a box, or add a pyramid to the volume"
            )
        got = self.volume.read_box(lo, hi, level=index, margin=2)
        if got is None:
            raise RegistrationError(
                f"box {np.round(lo, 1).tolist()} .. {np.round(hi, 1).tolist()} misses volume "
                f"{self.volume.source}: check --near"
            )
        array, origin = got
        return Grid(array.astype(np.float32), lvl.voxel_size, origin)

    def grid(
        self, spacing: float, lo: np.ndarray | None = None, hi: np.ndarray | None = None
    ) -> Grid:
        """The volume (or the box [lo, hi]) resampled to an isotropic ``spacing``."""
        index = _level_not_coarser(self.volume, spacing)
        return resample_grid(self.level_grid(index, lo, hi), spacing)


def _crop(grid: Grid, lo: np.ndarray, hi: np.ndarray, margin: int = 2) -> Grid:
    lo_i = np.floor(grid.to_index(lo)).astype(int) - margin
    hi_i = np.ceil(grid.to_index(hi)).astype(int) + margin + 1
    lo_i = np.clip(lo_i, 0, grid.shape)
    hi_i = np.clip(hi_i, 0, grid.shape)
    if np.any(hi_i <= lo_i):
        raise RegistrationError(
            f"box {np.round(lo, 1).tolist()} .. {np.round(hi, 1).tolist()} misses the volume: "
            "check --near"
        )
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo_i, hi_i, strict=True))
    origin = np.asarray(grid.origin) + lo_i * np.asarray(grid.spacing)
    return Grid(grid.array[box], grid.spacing, tuple(float(v) for v in origin))


def _pose_box(pose: Pose, section: Grid, margin: float) -> tuple[np.ndarray, np.ndarray]:
    corners = section.corners
    pts = pose.apply(corners)
    return pts.min(axis=0) - margin, pts.max(axis=0) + margin


def check_sizes(section: Volume, volume: Volume, *, section_name: str, volume_name: str) -> None:
    """Refuse a section that cannot fit the volume, or a volume that is not 3D.

    Raises
    ------
    DimensionError
        If the volume is not 3D, the section not 2D, or the section's shorter
        side is longer than the volume's longest extent.
    """
    if volume.ndim != 3:
        raise DimensionError(
            f"image {volume_name!r} has {volume.ndim} axes {list(volume.axes)}: a 3D volume "
            f"(z, y, x) is expected as VOLUME"
        )
    if section.ndim != 2:
        raise DimensionError(
            f"image {section_name!r} has {section.ndim} axes {list(section.axes)}: a 2D section "
            f"(y, x) is expected as SECTION"
        )
    size = np.asarray(section.levels[0].shape) * np.asarray(section.levels[0].voxel_size)
    lo, hi = _extent(volume)
    longest = float(np.max(hi - lo))
    if float(size.min()) > longest:
        raise DimensionError(
            f"section {section_name!r} is {size[0]:g} x {size[1]:g} {section.unit} but volume "
            f"{volume_name!r} spans at most {longest:g} {volume.unit}: expected a section "
            f"smaller than the volume; check the pixel sizes (coframe add --voxel-size)"
        )


def _tilt_cap(options: LocateOptions) -> tuple[np.ndarray, float]:
    """The axis (unit) and half-angle (degrees) of the cone of normals searched."""
    axis = np.array([1.0, 0.0, 0.0]) if options.normal is None else np.asarray(options.normal)
    if axis.shape != (3,) or np.linalg.norm(axis) == 0:
        raise DimensionError(
            f"normal {list(np.ravel(axis))} must be a non-zero (z, y, x) vector (--normal)"
        )
    tilt = options.max_tilt
    if tilt is None:
        tilt = 20.0 if options.normal is not None else 90.0
    if not 0.0 <= tilt <= 90.0:
        raise DimensionError(f"max tilt {tilt:g} degrees: expected 0 to 90 (--max-tilt)")
    return axis / np.linalg.norm(axis), float(tilt)


def locate_section(
    section: Volume,
    volume: Volume,
    options: LocateOptions | None = None,
    *,
    section_name: str = "section",
    volume_name: str = "volume",
) -> LocateResult:
    """Find the pose of a 2D section inside a 3D volume.

    Parameters
    ----------
    section
        The 2D image (axes y, x), in the same unit as ``volume``.
    volume
        The 3D image (axes z, y, x).
    options
        Priors and search settings.
    section_name, volume_name
        Names used in error messages.

    Returns
    -------
    The pose as a 2D -> 3D affine with its score and confidence (check
    :attr:`LocateResult.trustworthy`).

    Raises
    ------
    DimensionError
        If the images have the wrong number of axes, or the section is larger
        than the volume.
    RegistrationError
        If no placement of the section overlaps the volume.
    """
    opts = options or LocateOptions()
    check_sizes(section, volume, section_name=section_name, volume_name=volume_name)
    if opts.near is not None and np.shape(opts.near) != (3,):
        raise DimensionError(f"near point {list(opts.near)} must be (z, y, x) (--near)")
    normals = fibonacci_cap(*_tilt_cap(opts), opts.angle_step)
    if section.unit != volume.unit:
        section = section.in_unit(volume.unit)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sec_pixel = _geo(section.levels[0].voxel_size)
    size = np.asarray(section.levels[0].shape) * np.asarray(section.levels[0].voxel_size)
    shorter = float(size.min())
    working = max(sec_pixel, float(size.max()) / opts.max_working_pixels)
    level = volume.nearest_level(working)
    s_w = _geo(volume.levels[level].voxel_size)
    lo, hi = _extent(volume)
    near = None if opts.near is None else np.asarray(opts.near, dtype=float)
    half_diag = 0.5 * float(np.hypot(*size))
    near_radius = half_diag if opts.near_radius is None else float(opts.near_radius)
    if near is not None:
        if near.shape != (3,):
            raise DimensionError(f"near point {near.tolist()} must be (z, y, x) (--near)")
        lo = np.maximum(lo, near - near_radius - half_diag)
        hi = np.minimum(hi, near + near_radius + half_diag)
        if np.any(hi <= lo):
            raise RegistrationError(
                f"near point {near.tolist()} is farther than {near_radius:g} {volume.unit} from "
                f"volume {volume_name!r}: expected a point inside it (--near)"
            )
    box_volume = float(np.prod(hi - lo))
    s_a = max(s_w, shorter / opts.search_pixels, (box_volume / opts.max_search_voxels) ** (1 / 3))
    s_b = min(s_a, max(s_w, shorter / opts.local_pixels))
    reader = _VolumeReader(volume)
    vol_a = reader.grid(s_a, lo if near is not None else None, hi if near is not None else None)
    sec_a = section_grid(section, s_a, name=section_name)
    if min(sec_a.shape) < 4:
        raise RegistrationError(
            f"section {section_name!r} spans only {min(sec_a.shape)} pixels at the search "
            f"spacing {s_a:g} {volume.unit} (volume {volume_name!r} is much larger): give "
            f"--near to search a smaller box"
        )
    timings["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    symmetry = detect_symmetry(vol_a)
    timings["symmetry"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    angles = np.arange(0.0, 360.0, opts.angle_step)
    maps = np.concatenate([in_plane_maps(angles, False), in_plane_maps(angles, True)])
    result, bases = scan(vol_a, sec_a, normals, maps, d_step=opts.offset_step * s_a)
    seeds = best_candidates(
        result,
        normals,
        bases,
        maps,
        sec_a.center,
        count=opts.seeds * 4 if near is not None else opts.seeds,
        max_angle=0.75 * opts.angle_step,
        max_shift=2.0 * s_a,
    )
    if near is not None:
        seeds = [c for c in seeds if np.linalg.norm(c.pose.center - near) <= near_radius]
        seeds = seeds[: opts.seeds]
    if not seeds:
        raise RegistrationError(
            f"no placement of section {section_name!r} overlaps volume {volume_name!r} enough "
            f"to be scored: expected the section inside the volume; check --near, --normal "
            f"and the voxel sizes"
        )
    timings["global"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    local = _local_stage(reader, section, seeds, s_a, s_b, opts, section_name)
    timings["local"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sec_w = section_grid(section, s_w, name=section_name)
    scored = _refine_stage(reader, level, sec_w, local, s_a, s_w, opts)
    timings["refine"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mirror, scored = _mirror_rival(
        reader, level, sec_w, scored, symmetry, s_a, s_w, opts, near, near_radius
    )
    timings["mirror"] = time.perf_counter() - t0

    best = scored[0]
    distinct = [
        c
        for c in scored[1:]
        if poses_distinct(
            c.pose, best.pose, max_angle=opts.distinct_angle, max_shift=opts.distinct_voxels * s_w
        )
    ]
    # a refined rival is compared first: refinement raises scores, so an unrefined
    # runner-up would flatter the winner
    runner = next((c for c in distinct if c.refined), distinct[0] if distinct else None)
    runner_up = max(0.0 if runner is None else runner.score, mirror.score if mirror else 0.0)
    confidence = 0.0 if best.score <= 0 else max(0.0, 1.0 - runner_up / best.score)
    crop = reader.level_grid(level, *_pose_box(best.pose, sec_w, 4 * s_w))
    ncc, sign = pose_score(crop, best.pose, sec_w, metric="ncc")
    margin = tilt_margin(
        crop, best.pose, sec_w, degrees=opts.tilt_check, metric=opts.score, bins=opts.bins
    )
    pose = best.pose
    affine = Affine(pose.matrix)
    return LocateResult(
        affine=affine,
        pose=pose,
        score=best.score,
        runner_up=runner_up,
        confidence=confidence,
        ncc=ncc * sign,
        working_level=level,
        working_spacing=s_w,
        spacings={"global": s_a, "local": s_b, "working": s_w},
        candidates=tuple(scored),
        timings=timings,
        options=opts,
        working_pixels=int(min(sec_w.shape)),
        symmetry=symmetry,
        mirror=mirror,
        tilt_margin=margin,
    )


def _local_stage(
    reader: _VolumeReader,
    section: Volume,
    seeds: list[Candidate],
    s_a: float,
    s_b: float,
    opts: LocateOptions,
    section_name: str,
) -> list[Candidate]:
    sec_b = section_grid(section, s_b, name=section_name)
    whole = reader.volume.levels[_level_not_coarser(reader.volume, s_b)]
    found: list[Candidate] = []
    half_diag = 0.5 * float(np.hypot(*(np.asarray(sec_b.shape) * s_b)))
    if int(np.prod(whole.shape)) <= WHOLE_LEVEL_VOXELS:
        vol_b = reader.grid(s_b)
        groups = [(vol_b, seeds)]
    else:
        groups = []
        for seed in seeds:
            c = seed.pose.center
            m = half_diag + 3 * s_a
            groups.append((reader.grid(s_b, c - m, c + m), [seed]))
    for vol_b, group in groups:
        found.extend(
            local_search(
                vol_b,
                sec_b,
                group,
                cone=0.6 * opts.angle_step,
                normal_step=opts.local_step,
                angle_range=0.6 * opts.angle_step,
                angle_step=opts.local_step,
                half_d=1.0 * s_a,
                half_u=1.0 * s_a,
                max_angle=opts.distinct_angle,
                max_shift=opts.distinct_voxels * s_b,
            )
        )
    found.sort(key=lambda c: -c.score)
    kept: list[Candidate] = []
    for c in found:
        if all(
            poses_distinct(c.pose, k.pose, max_angle=opts.local_step, max_shift=2 * s_b)
            for k in kept
        ):
            kept.append(c)
    return kept


def _refine_stage(
    reader: _VolumeReader,
    level: int,
    sec_w: Grid,
    local: list[Candidate],
    s_a: float,
    s_w: float,
    opts: LocateOptions,
) -> list[ScoredPose]:
    margin = 2 * s_a + 4 * s_w
    scored = [
        _score_pose(reader, level, sec_w, _recentre(c.pose, sec_w), margin, opts) for c in local
    ]
    scored.sort(key=lambda p: -p.score)
    out = [_refine_one(reader, level, sec_w, item, margin, opts) for item in scored[: opts.refine]]
    out.extend(scored[opts.refine :])
    out.sort(key=lambda p: -p.score)
    return out


def _score_pose(
    reader: _VolumeReader, level: int, sec_w: Grid, pose: Pose, margin: float, opts: LocateOptions
) -> ScoredPose:
    """A pose scored at the working level, unrefined."""
    crop = reader.level_grid(level, *_pose_box(pose, sec_w, margin))
    score, sign = pose_score(crop, pose, sec_w, metric=opts.score, bins=opts.bins)
    return ScoredPose(pose, score, sign, refined=False)


def _refine_one(
    reader: _VolumeReader,
    level: int,
    sec_w: Grid,
    item: ScoredPose,
    margin: float,
    opts: LocateOptions,
) -> ScoredPose:
    """A scored pose optimised with SimpleITK and scored again (unchanged if that fails)."""
    stages = [RefineSettings(kind="similarity", metric=opts.metric, bins=opts.bins * 2)]
    if opts.shrinkage:
        stages.append(
            RefineSettings(
                kind="affine", metric=opts.metric, bins=opts.bins * 2, shrink=(1,), smoothing=(0.0,)
            )
        )
    pose = item.pose
    crop = reader.level_grid(level, *_pose_box(pose, sec_w, margin))
    try:
        for settings in stages:
            pose, _ = refine_pose(crop, sec_w, pose, settings)
    except TransformError:
        return item
    score, sign = pose_score(crop, pose, sec_w, metric=opts.score, bins=opts.bins)
    return ScoredPose(pose, score, sign, refined=True)


def _mirror_rival(
    reader: _VolumeReader,
    level: int,
    sec_w: Grid,
    scored: list[ScoredPose],
    planes: Sequence[MirrorPlane],
    s_a: float,
    s_w: float,
    opts: LocateOptions,
    near: np.ndarray | None,
    near_radius: float,
) -> tuple[MirrorTwin | None, list[ScoredPose]]:
    """Refine and score the best pose's mirror twins about the volume's symmetry planes.

    A twin counts when it is distinct from the best pose, centred inside the
    volume and within the priors; it is refined, keeping the start when that
    scores better. A twin
    that outscores the best pose takes its place (the search had found the
    reflection of the true pose): the twin recorded is then the former best.

    Returns
    -------
    tuple
        The best twin (or None) and the candidates with the twins added, best first.
    """
    best = scored[0]
    axis, tilt = _tilt_cap(opts)
    margin = 2 * s_a + 4 * s_w
    shift = opts.distinct_voxels * s_w
    lo, hi = _extent(reader.volume)

    def distinct(pose: Pose) -> bool:
        return poses_distinct(pose, best.pose, max_angle=opts.distinct_angle, max_shift=shift)

    twins: list[tuple[MirrorPlane, ScoredPose]] = []
    for plane in planes:
        start = mirror_pose(best.pose, plane.axis, plane.position)
        inside = bool(np.all((start.center >= lo) & (start.center <= hi)))
        if not (inside and distinct(start) and within_priors(start, near, near_radius, axis, tilt)):
            continue
        unrefined = _score_pose(reader, level, sec_w, start, margin, opts)
        item = _refine_one(reader, level, sec_w, unrefined, margin, opts)
        # the optimiser may wander off (or back onto the best pose): the start then stands
        good = item.score >= unrefined.score and distinct(item.pose)
        twins.append((plane, item if good else unrefined))
    if not twins:
        return None, scored
    plane, twin = max(twins, key=lambda t: t[1].score)
    out = sorted([*scored, *(t for _, t in twins)], key=lambda p: -p.score)
    if twin.score > best.score:
        return MirrorTwin(plane, best.pose, best.score, best.refined), out
    return MirrorTwin(plane, twin.pose, twin.score, twin.refined), out


def _recentre(pose: Pose, section: Grid) -> Pose:
    """The same map with ``section_center`` at the centre of ``section``."""
    c = section.center
    return Pose(pose.apply(c)[0], pose.linear, c)


def pose_errors(
    estimate: Affine, truth: Affine, section_center: Sequence[float], voxel: float
) -> dict[str, float]:
    """How far an estimated section pose is from the truth.

    Parameters
    ----------
    estimate, truth
        2D -> 3D affines (section physical (y, x) -> volume physical (z, y, x)).
    section_center
        Physical (y, x) of the section centre.
    voxel
        Voxel size used to express the offset in voxels.

    Returns
    -------
    ``normal_deg`` (angle between the normals; a section seen from the wrong
    face is 180 degrees off),
    ``in_plane_deg`` (angle between the images of the section's y axis),
    ``offset`` and ``offset_voxels`` (distance of the estimated centre from
    the true plane, along its normal), ``in_plane`` (distance within the
    plane between the estimated and true centres), ``center`` (distance
    between the centres).
    """
    c = np.asarray(section_center, dtype=float)
    est = Pose(estimate.apply(c), estimate.linear, c)
    tru = Pose(truth.apply(c), truth.linear, c)
    n = tru.normal
    diff = est.center - tru.center
    along = float(abs(diff @ n))
    return {
        "normal_deg": angle_between(est.normal, n),
        "in_plane_deg": in_plane_angle(est, tru),
        "offset": along,
        "offset_voxels": along / voxel,
        "in_plane": float(np.linalg.norm(diff - (diff @ n) * n)),
        "center": float(np.linalg.norm(diff)),
    }
