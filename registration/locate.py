"""Slice-to-volume registration: find where a 2D section lies inside a 3D volume.

:func:`locate_section` returns the 2D -> 3D affine that maps the section's
physical (y, x) into the volume's physical (z, y, x), with a score and a
confidence. It works global then local:

1. **global**: every orientation on a sphere grid (Fibonacci normals, optionally
   restricted by ``max_tilt`` around ``normal`` or the volume z axis) times
   in-plane rotations (both faces of the section) times offsets along the
   normal, with in-plane translations searched by FFT
   (:mod:`coframe.registration.locate_search`) under edge correlation
   (:mod:`coframe.registration.locate_scores`), on a coarse copy of the
   volume where the section spans about ``search_pixels`` pixels; the
   ``screen`` x ``seeds`` best distinct placements are scored again at
   ``screen_spacing`` times that spacing (each over a coarse voxel of
   centres: the coarse grid can rank the truth thousands deep, the finer
   look puts it near the top), and the ``seeds`` best of them go on;
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

When that pose is not trustworthy, stages 1 to 5 run again under masked
cross-correlation (same or inverted contrast: broader peaks, kinder to
coarse or compressed sections), and the best pose of both rounds wins
(``search_score="auto"``; ``both`` scans the two scores at once, each
bringing half of the seeds). With ``shrinkage``, when still no pose is
trustworthy, the first round runs again on the section stretched by
``1 / (1 - assumed_compression)`` along its y axis, then its x axis
(:class:`~coframe.registration.locate_geometry.Stretch`): the scans match the
section rigidly in plane, which a section compressed 12-15 % by the knife
defeats. Their poses are mapped back to the section and scored as the others.

Only the levels and boxes needed are read: the global search reads a coarse
level (the whole volume, or a box around ``near``), the later stages read
boxes around the candidates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from coframe.core.errors import DimensionError, RegistrationError, TransformError
from coframe.registration.inputs import geometric_voxel
from coframe.registration.locate_geometry import (
    GridImage,
    Pose,
    Stretch,
    fibonacci_cap,
    in_plane_maps,
    poses_distinct,
)
from coframe.registration.locate_inputs import (
    VolumeReader,
    check_section,
    check_sizes,
    read_section_image,
    volume_extent,
)
from coframe.registration.locate_mask import (
    MASK_PIXELS,
    masked_coarser,
    section_with_mask,
)
from coframe.registration.locate_refine import (
    RefineSettings,
    inside_fraction,
    pose_score,
    refine_pose,
    tilt_margin,
)
from coframe.registration.locate_result import LocateOptions, LocateResult, ScoredPose
from coframe.registration.locate_scores import SCAN_SCORES
from coframe.registration.locate_search import (
    Candidate,
    best_candidates,
    local_stage,
    rescore,
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

#: The scans of each ``search_score``, in order; a round runs only while the pose found so far
#: is not trustworthy (``auto``: correlation only where edges leave doubt).
SEARCH_ROUNDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "auto": (("edges",), ("ncc",)),
    "both": (SCAN_SCORES,),
    "edges": (("edges",),),
    "ncc": (("ncc",),),
}


def locate_section(
    section: Volume,
    volume: Volume,
    options: LocateOptions | None = None,
    *,
    section_name: str = "section",
    volume_name: str = "volume",
    section_mask: Volume | None = None,
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
    section_mask
        The user's 2D mask of the section (nonzero = tissue to match), placed
        in the section's physical (y, x); grid bars, empty film and folds are
        also masked when ``options.auto_mask`` is set.

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
        If no placement of the section overlaps the volume, the section is all
        one value, or too little of it is left after masking.
    """
    opts = options or LocateOptions()
    check_sizes(section, volume, section_name=section_name, volume_name=volume_name)
    if opts.near is not None and np.shape(opts.near) != (3,):
        raise DimensionError(f"near point {list(opts.near)} must be (z, y, x) (--near)")
    if opts.search_pixels < 8:
        raise DimensionError(
            f"search pixels {opts.search_pixels}: expected at least 8 across the section "
            f"(--search-pixels)"
        )
    if not 0.0 <= opts.assumed_compression <= 0.5:
        raise RegistrationError(
            f"assumed compression {opts.assumed_compression:g}: expected a fraction from 0 to "
            f"0.5, such as 0.12 for 12 % (--assumed-compression)"
        )
    if opts.search_score not in SEARCH_ROUNDS:
        raise RegistrationError(
            f"search score {opts.search_score!r}: expected one of {', '.join(SEARCH_ROUNDS)} "
            f"(--search-score)"
        )
    normals = fibonacci_cap(*_tilt_cap(opts), opts.angle_step)
    if section.unit != volume.unit:
        section = section.in_unit(volume.unit)
    if section_mask is not None and section_mask.unit != volume.unit:
        section_mask = section_mask.in_unit(volume.unit)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    sec_pixel = geometric_voxel(section.levels[0].voxel_size)
    size = np.asarray(section.levels[0].shape) * np.asarray(section.levels[0].voxel_size)
    shorter = float(size.min())
    working = max(sec_pixel, float(size.max()) / opts.max_working_pixels)
    level = volume.nearest_level(working)
    s_w = geometric_voxel(volume.levels[level].voxel_size)
    lo, hi = volume_extent(volume)
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
    reader = VolumeReader(volume)
    vol_a = reader.grid(s_a, lo if near is not None else None, hi if near is not None else None)
    # the mask is made at the working spacing (grid bars found finer) and carried to the
    # search spacings; each read bins the section band by band (montages are never whole)
    user_mask = None
    if section_mask is not None:
        check_section(section_mask, "--section-mask")
        user_mask = read_section_image(section_mask, s_w, name="--section-mask", binary=True)
    fine = None
    if opts.auto_mask:  # grid bars, film and folds are found finer than the working spacing
        s_m = min(s_w, max(sec_pixel, float(size.max()) / MASK_PIXELS))
        fine = read_section_image(section, s_m, name=section_name)
    sec_w = section_with_mask(
        read_section_image(section, s_w, name=section_name), user_mask, fine, name=section_name
    )

    def coarser(spacing: float) -> GridImage:
        """The section at a search spacing: from the file, or from the masked working grid."""
        if sec_w.mask is not None:  # grid bars must not be averaged into the tissue beside them
            return masked_coarser(sec_w, spacing)
        return read_section_image(section, spacing, name=section_name)

    sec_a = coarser(s_a)
    if min(sec_a.shape) < 4:
        raise RegistrationError(
            f"section {section_name!r} spans only {min(sec_a.shape)} pixels at the search "
            f"spacing {s_a:g} {volume.unit} (volume {volume_name!r} is much larger): give "
            f"--near to search a smaller box"
        )
    screen = None
    s_r = max(s_w, opts.screen_spacing * s_a)
    if opts.screen > 0 and s_r < 0.9 * s_a:  # a finer look at the global candidates
        vol_r = reader.grid(s_r, lo if near is not None else None, hi if near is not None else None)
        screen = (vol_r, coarser(s_r))
    timings["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    symmetry = detect_symmetry(vol_a)
    timings["symmetry"] = time.perf_counter() - t0

    angles = np.arange(0.0, 360.0, opts.angle_step)
    maps = np.concatenate([in_plane_maps(angles, False), in_plane_maps(angles, True)])
    for k in ("global", "local", "refine", "mirror"):
        timings[k] = 0.0
    spacings = {"global": s_a, "local": s_b, "working": s_w}
    if screen is not None:
        spacings["screen"] = s_r
    sec_b = coarser(s_b)
    scored: list[ScoredPose] = []
    result, mirror = None, None
    rounds: list[tuple[tuple[str, ...], Stretch | None]] = [
        (kinds, None) for kinds in SEARCH_ROUNDS[opts.search_score]
    ]
    if opts.shrinkage and opts.assumed_compression > 0:  # last: as if compressed along y, then x
        factor = 1.0 / (1.0 - opts.assumed_compression)
        first = SEARCH_ROUNDS[opts.search_score][0]
        rounds += [(first, Stretch(axis, factor, np.asarray(sec_w.origin))) for axis in (0, 1)]
    for kinds, stretch in rounds:
        sections = (sec_a, sec_b, sec_w, screen)
        if stretch is not None:
            sections = _stretched(stretch, sec_w, s_a, s_b, screen)
        t0 = time.perf_counter()
        seeds = _global_stage(
            vol_a, sections[0], normals, maps, kinds, opts, near, near_radius, sections[3]
        )
        timings["global"] += time.perf_counter() - t0
        if not seeds:
            continue
        t0 = time.perf_counter()
        local = local_stage(reader, sections[1], seeds, s_a, s_b, opts)
        timings["local"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        found = _refine_stage(reader, level, sections[2], local, s_a, s_w, opts)
        if stretch is not None:  # back to the section's own frame, scored as the other rounds
            margin = 2 * s_a + 4 * s_w
            found = [
                replace(
                    _score_pose(reader, level, sec_w, stretch.pose(p.pose), margin, opts),
                    refined=p.refined,
                )
                for p in found
            ]
        best = scored[0] if scored else None
        scored = sorted(scored + found, key=lambda p: -p.score)
        timings["refine"] += time.perf_counter() - t0
        if not scored:
            continue
        if scored[0] is not best:  # a round that keeps the best pose keeps its twins too
            t0 = time.perf_counter()
            mirror, scored = _mirror_rival(
                reader, level, sec_w, scored, symmetry, s_a, s_w, opts, near, near_radius
            )
            timings["mirror"] += time.perf_counter() - t0
        result = _decide(
            reader, level, volume, sec_w, scored, mirror, opts, symmetry, spacings, timings
        )
        if result.trustworthy:  # "auto": correlation is scanned only where edges leave doubt
            break
    if result is None:
        raise RegistrationError(
            f"no placement of section {section_name!r} overlaps volume {volume_name!r} enough "
            f"to be scored: expected the section inside the volume; check --near, --normal "
            f"and the voxel sizes"
        )
    return result


def _stretched(
    stretch: Stretch,
    sec_w: GridImage,
    s_a: float,
    s_b: float,
    screen: tuple[GridImage, GridImage] | None,
) -> tuple[GridImage, GridImage, GridImage, tuple[GridImage, GridImage] | None]:
    """The section at the global, local and working spacings (and the screen's), stretched."""
    long = stretch.grid(sec_w)
    s_w = float(sec_w.spacing[0])
    finer = None if screen is None else (screen[0], masked_coarser(long, screen[1].spacing[0]))
    return (
        masked_coarser(long, s_a),
        masked_coarser(long, s_b),
        masked_coarser(long, s_w),
        finer,
    )


def seed_count(options: LocateOptions, normals: int) -> int:
    """Seeds for a scan over ``normals`` normals: ``options.seeds`` per whole sphere.

    A cone of normals (``--normal``/``--max-tilt``) holds fewer rival places,
    so it gets its share of the seeds by normals scanned, never under a quarter.
    """
    whole = len(fibonacci_cap(np.array([1.0, 0.0, 0.0]), 90.0, options.angle_step))
    share = int(np.ceil(options.seeds * normals / whole))
    return int(min(options.seeds, max(share, -(-options.seeds // 4))))


def _global_stage(
    vol_a: GridImage,
    sec_a: GridImage,
    normals: np.ndarray,
    maps: np.ndarray,
    kinds: tuple[str, ...],
    opts: LocateOptions,
    near: np.ndarray | None,
    near_radius: float,
    screen: tuple[GridImage, GridImage] | None = None,
) -> list[Candidate]:
    """The global scan under ``kinds``, each bringing its share of the seeds.

    With a ``screen`` (the volume and the section at a finer spacing),
    ``opts.screen`` times as many candidates are taken and scored again
    there, and the best become the seeds (see :class:`LocateOptions`).
    """
    s_a = float(vol_a.spacing[0])
    share = -(-seed_count(opts, len(normals)) // len(kinds))
    taken = share * opts.screen if screen is not None else share
    results, bases = scan(vol_a, sec_a, normals, maps, d_step=opts.offset_step * s_a, scores=kinds)
    seeds = []
    for kind in kinds:
        found = best_candidates(
            results[kind],
            normals,
            bases,
            maps,
            sec_a.center,
            count=taken * 4 if near is not None else taken,
            max_angle=0.75 * opts.angle_step,
            max_shift=2.0 * s_a,
            kind=kind,
        )
        if near is not None:
            found = [c for c in found if np.linalg.norm(c.pose.center - near) <= near_radius]
        found = found[:taken]
        if screen is not None and found:
            found = rescore(*screen, found, half_d=s_a, half_u=s_a)
        seeds.extend(found[:share])
    return seeds


def _decide(
    reader: VolumeReader,
    level: int,
    volume: Volume,
    sec_w: GridImage,
    scored: list[ScoredPose],
    mirror: ScoredPose | None,
    opts: LocateOptions,
    symmetry: list,
    spacings: dict[str, float],
    timings: dict[str, float],
) -> LocateResult:
    """The best pose, its confidence against the best distinct rival, and its checks."""
    s_w = spacings["working"]
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
    edges, _ = pose_score(crop, best.pose, sec_w, metric="edges")
    margin = tilt_margin(
        crop, best.pose, sec_w, degrees=opts.tilt_check, metric=opts.score, bins=opts.bins
    )
    pose = best.pose
    inside = inside_fraction(np.stack(volume_extent(volume), axis=1), pose, sec_w)
    return LocateResult(
        affine=Affine(pose.matrix),
        pose=pose,
        score=best.score,
        runner_up=runner_up,
        confidence=confidence,
        ncc=ncc * sign,
        edges=edges,
        working_level=level,
        working_spacing=s_w,
        spacings=spacings,
        candidates=tuple(scored),
        timings=timings,
        options=opts,
        working_pixels=int(min(sec_w.shape)),
        symmetry=symmetry,
        mirror=mirror,
        tilt_margin=margin,
        inside=inside,
        masked=1.0 - float(sec_w.usable.mean()),
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


def _refine_stage(
    reader: VolumeReader,
    level: int,
    sec_w: GridImage,
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
    reader: VolumeReader,
    level: int,
    sec_w: GridImage,
    pose: Pose,
    margin: float,
    opts: LocateOptions,
) -> ScoredPose:
    """A pose scored at the working level, unrefined."""
    crop = reader.level_grid(level, *_pose_box(pose, sec_w, margin))
    score, sign = pose_score(crop, pose, sec_w, metric=opts.score, bins=opts.bins)
    return ScoredPose(pose, score, sign, refined=False)


def _refine_one(
    reader: VolumeReader,
    level: int,
    sec_w: GridImage,
    item: ScoredPose,
    margin: float,
    opts: LocateOptions,
) -> ScoredPose:
    """A scored pose optimised with SimpleITK and scored again (unchanged if that fails).

    With ``metric="auto"`` a section that correlates with its slice is refined
    by correlation; when that lowers the pose's own score (a non-monotonic
    contrast can correlate best at a wrong pose), mutual information refines
    it again from the start and the better of the two is kept.
    """
    crop = reader.level_grid(level, *_pose_box(item.pose, sec_w, margin))
    metrics = [opts.metric]
    if opts.metric == "auto":  # correlation where the contrasts correlate, else mutual information
        ncc, _ = pose_score(crop, item.pose, sec_w, metric="ncc")  # absolute
        metrics = ["correlation", "mattes"] if ncc >= opts.min_ncc else ["mattes"]
    best = item
    for metric in metrics:
        stages = [RefineSettings(kind="similarity", metric=metric, bins=opts.bins * 2)]
        if opts.shrinkage:
            stages.append(
                RefineSettings(
                    kind="affine", metric=metric, bins=opts.bins * 2, shrink=(1,), smoothing=(0.0,)
                )
            )
        pose = item.pose
        try:
            for settings in stages:
                pose, _ = refine_pose(crop, sec_w, pose, settings)
        except TransformError:
            continue
        score, sign = pose_score(crop, pose, sec_w, metric=opts.score, bins=opts.bins)
        if not best.refined or score > best.score:
            best = ScoredPose(pose, score, sign, refined=True)
        if score >= item.score:  # the refinement did not lead away
            break
    return best


def _mirror_rival(
    reader: VolumeReader,
    level: int,
    sec_w: GridImage,
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
    lo, hi = volume_extent(reader.volume)

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


def _recentre(pose: Pose, section: GridImage) -> Pose:
    """The same map with ``section_center`` at the centre of ``section``."""
    c = section.center
    return Pose(pose.apply(c)[0], pose.linear, c)


def _pose_box(pose: Pose, section: GridImage, margin: float) -> tuple[np.ndarray, np.ndarray]:
    corners = section.corners
    pts = pose.apply(corners)
    return pts.min(axis=0) - margin, pts.max(axis=0) + margin
