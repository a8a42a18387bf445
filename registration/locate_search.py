"""Exhaustive search of a 2D section's pose inside a 3D volume by FFT cross-correlation.

For every candidate normal the volume is resampled into a stack of slices
parallel to the plane; the section, rotated by every candidate in-plane map,
is correlated with every slice by FFT, so that in-plane translations are
searched at once. The similarity (:mod:`~coframe.registration.locate_scores`)
is ``edges``, which survives any relation between the two contrasts, or
``ncc``, which survives inversion only. Footprints of in-plane maps that
differ by a symmetry of the section rectangle are shared, so the local sums
under them are computed once per normal and footprint. Normals are scanned
side by side on one thread per core (:mod:`~coframe.registration.parallel`).

Poses, images and orientations are those of
:mod:`~coframe.registration.locate_geometry` (numpy axis order, physical units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.core.errors import DimensionError
from coframe.registration.locate_geometry import (
    GridImage,
    Pose,
    fibonacci_cap,
    in_plane_maps,
    plane_basis,
    poses_distinct,
    transported_basis,
)
from coframe.registration.locate_inputs import WHOLE_LEVEL_VOXELS, VolumeReader, level_not_coarser
from coframe.registration.locate_result import LocateOptions
from coframe.registration.locate_scores import (
    FLAT_TOLERANCE,
    SCAN_SCORES,
    edge_scores,
    make_templates,
    ncc_scores,
)
from coframe.registration.parallel import ordered_map, threads_for


@dataclass(frozen=True)
class Candidate:
    """A scored pose found by the search.

    Parameters
    ----------
    pose
        The pose.
    score
        The scan's similarity (edge-feature correlation, or absolute masked NCC).
    sign
        Sign of the correlation (-1 for inverted contrast; +1 for edges,
        which carry no sign).
    kind
        The similarity that found it (``edges`` or ``ncc``).
    """

    pose: Pose
    score: float
    sign: float
    kind: str = "edges"


@dataclass(frozen=True)
class Region:
    """Where the section centre may lie, for one normal: ranges in the plane frame.

    Parameters
    ----------
    origin
        Physical point the ranges are measured from.
    d_range, a_range, b_range
        (min, max) physical coordinates along the normal and the plane axes e1, e2.
    """

    origin: np.ndarray
    d_range: tuple[float, float]
    a_range: tuple[float, float]
    b_range: tuple[float, float]


def volume_region(volume: GridImage, normal: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> Region:
    """The region spanned by the volume's box, seen from the plane frame of ``normal``."""
    corners = volume.corners - volume.center
    ranges = [
        (float(c.min()), float(c.max())) for c in (corners @ normal, corners @ e1, corners @ e2)
    ]
    return Region(volume.center, ranges[0], ranges[1], ranges[2])


def local_region(
    point: np.ndarray,
    normal: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    half_d: float,
    half_u: float,
) -> Region:
    """A box of half-sizes ``half_d`` (along the normal) and ``half_u`` (in plane) at ``point``."""
    return Region(np.asarray(point, float), (-half_d, half_d), (-half_u, half_u), (-half_u, half_u))


def _axis_values(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(np.floor((hi - lo) / step)) + 1
    start = (lo + hi) / 2.0 - (n - 1) / 2.0 * step
    return start + step * np.arange(max(n, 1))


def sample_stack(
    volume: GridImage,
    origin: np.ndarray,
    normal: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    d: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    fill: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample the volume on slices ``origin + d n + a e1 + b e2`` (linear interpolation).

    Returns
    -------
    tuple
        ``(values, inside)``: ``(D, A, B)`` float32 samples (``fill`` outside
        the volume) and a float32 indicator of samples inside it.
    """
    shape = (len(d), len(a), len(b))
    base = volume.to_index(origin)
    sp = np.asarray(volume.spacing)
    idx = np.empty((3, *shape), dtype=np.float32)
    for k in range(3):
        idx[k] = (
            base[k]
            + (d * normal[k] / sp[k])[:, None, None]
            + (a * e1[k] / sp[k])[None, :, None]
            + (b * e2[k] / sp[k])[None, None, :]
        )
    values = ndimage.map_coordinates(
        volume.array, idx, order=1, mode="constant", cval=fill, output=np.float32
    )
    inside = np.ones(shape, dtype=bool)
    for k in range(3):
        inside &= (idx[k] > -0.5) & (idx[k] < volume.shape[k] - 0.5)
    return values, inside.astype(np.float32)


#: One normal's best score, sign and section centre per (in-plane map, slice).
_Row = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ScanResult:
    """Best score per (normal, in-plane map, slice) of a scan.

    Parameters
    ----------
    scores
        ``(N, G, D)`` absolute NCC (0 where the overlap is too small).
    signs
        ``(N, G, D)`` sign of the NCC.
    centres
        ``(N, G, D, 3)`` physical position of the section centre.
    """

    scores: np.ndarray
    signs: np.ndarray
    centres: np.ndarray


def scan(
    volume: GridImage,
    section: GridImage,
    normals: np.ndarray,
    maps: np.ndarray,
    *,
    regions: Sequence[Region] | None = None,
    bases: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    d_step: float | None = None,
    min_overlap: float = 0.6,
    pad: float = 0.5,
    scores: Sequence[str] = ("edges",),
) -> tuple[dict[str, ScanResult], list[tuple[np.ndarray, np.ndarray]]]:
    """Score every (normal, in-plane map, offset, in-plane translation) of the section.

    Parameters
    ----------
    volume
        The volume at the search spacing.
    section
        The section at the same (isotropic) spacing.
    normals
        ``(N, 3)`` unit normals.
    maps
        ``(G, 2, 2)`` in-plane maps, shared by every normal.
    regions
        One region per normal where the section centre may lie (default: the
        whole volume box).
    bases
        One plane basis ``(e1, e2)`` per normal, with ``cross(e1, e2)`` the
        normal (default: :func:`plane_basis`).
    d_step
        Spacing of the slices along the normal (default: the search spacing).
    min_overlap
        Smallest fraction of the section that must fall inside the volume.
    pad
        How far (in template half-sizes) the slices extend beyond each region.
    scores
        The similarities to score with, ``edges`` (contrast-independent)
        and/or ``ncc`` (see :mod:`~coframe.registration.locate_scores`); the
        volume is resampled once for all of them.

    Returns
    -------
    tuple
        A :class:`ScanResult` per similarity and, per normal, its plane basis
        ``(e1, e2)``.
    """
    if section.array.ndim != 2 or volume.array.ndim != 3:
        raise DimensionError(
            f"scan needs a 2D section and a 3D volume, got shapes {section.shape} and "
            f"{volume.shape}"
        )
    unknown = [k for k in scores if k not in SCAN_SCORES]
    if unknown or not scores:
        raise ValueError(f"unknown scan scores {list(scores)}: expected some of {SCAN_SCORES}")
    step = float(section.spacing[0])
    d_step = step if d_step is None else d_step
    tpls = {kind: make_templates(section, maps, score=kind) for kind in scores}
    half, size = tpls[scores[0]].half, tpls[scores[0]].size
    fill = float(volume.array.mean())
    flat = (FLAT_TOLERANCE * (float(volume.array.std()) or 1.0)) ** 2
    spectra: dict[tuple[str, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}
    first = tpls[scores[0]]
    same_footprints = all(
        np.array_equal(t.masks, first.masks) and np.array_equal(t.mask_of, first.mask_of)
        for t in tpls.values()
    )

    def one(i: int) -> tuple[dict[str, _Row], tuple[np.ndarray, np.ndarray]]:
        n = normals[i]
        e1, e2 = plane_basis(n) if bases is None else bases[i]
        region = volume_region(volume, n, e1, e2) if regions is None else regions[i]
        d = _axis_values(*region.d_range, d_step)
        margin = pad * half * step
        a = _axis_values(region.a_range[0] - margin, region.a_range[1] + margin, step)
        b = _axis_values(region.b_range[0] - margin, region.b_range[1] + margin, step)
        if min(len(a), len(b)) < size:
            full = half * step
            a = _axis_values(region.a_range[0] - full, region.a_range[1] + full, step)
            b = _axis_values(region.b_range[0] - full, region.b_range[1] + full, step)
        values, inside = sample_stack(volume, region.origin, n, e1, e2, d, a, b, fill)
        values -= fill
        shape = (sfft.next_fast_len(len(a), real=True), sfft.next_fast_len(len(b), real=True))
        out: dict[str, _Row] = {}
        for kind, tpl in tpls.items():
            if (kind, shape) not in spectra:  # threads may both make it: the same arrays
                masks = sfft.rfft2(tpl.masks, s=shape, workers=-1)
                spectra[kind, shape] = (
                    np.conj(sfft.rfft2(tpl.arrays, s=shape, axes=(-2, -1), workers=-1)),
                    masks,
                    masks
                    if tpl.rectangles is tpl.masks
                    else sfft.rfft2(tpl.rectangles, s=shape, workers=-1),
                )
        shared = None  # the footprints' shares inside the volume, made once for both scores
        if len(tpls) > 1 and same_footprints:
            made, _ = first.overlaps(inside, spectra[scores[0], shape][2], shape)
            shared = list(made)
        for kind, tpl in tpls.items():
            if kind == "edges":
                best, sign, where = edge_scores(
                    values, inside, tpl, spectra[kind, shape], shape, min_overlap, shared
                )
            else:
                best, sign, where = ncc_scores(
                    values, inside, tpl, spectra[kind, shape], shape, min_overlap, flat, shared
                )
            best[~tpl.usable] = 0.0
            ia, ib = np.unravel_index(where, shape)
            centres = (
                region.origin
                + d[None, :, None] * n
                + a[ia + half][..., None] * e1
                + b[ib + half][..., None] * e2
            )
            out[kind] = (best, sign, centres)
        return out, (e1, e2)

    # normals are independent: scanned side by side, taken in order
    rows: dict[str, list[_Row]] = {k: [] for k in scores}
    used: list[tuple[np.ndarray, np.ndarray]] = []
    for row, basis in ordered_map(one, range(len(normals)), threads_for(len(normals))):
        for kind in scores:
            rows[kind].append(row[kind])
        used.append(basis)
    return {kind: _stacked(rows[kind], len(maps)) for kind in scores}, used


def _stacked(rows: list[_Row], n_maps: int) -> ScanResult:
    """One :class:`ScanResult` from the rows of every normal (offsets padded with 0)."""
    n_d = max(r[0].shape[1] for r in rows)
    scores = np.zeros((len(rows), n_maps, n_d), dtype=np.float32)
    signs = np.ones_like(scores)
    centres_all = np.zeros((*scores.shape, 3))
    for i, (sc, sg, ce) in enumerate(rows):
        scores[i, :, : sc.shape[1]] = sc
        signs[i, :, : sc.shape[1]] = sg
        centres_all[i, :, : sc.shape[1]] = ce
    return ScanResult(scores, signs, centres_all)


def pose_of(
    normal: np.ndarray,
    basis: tuple[np.ndarray, np.ndarray],
    in_plane: np.ndarray,
    centre: np.ndarray,
    section_center: np.ndarray,
) -> Pose:
    """The pose whose plane has ``basis`` and whose section is mapped by ``in_plane``."""
    e1, e2 = basis
    linear = np.column_stack([e1, e2]) @ in_plane
    return Pose(np.asarray(centre, float), linear, np.asarray(section_center, float))


def best_candidates(
    result: ScanResult,
    normals: np.ndarray,
    bases: Sequence[tuple[np.ndarray, np.ndarray]],
    maps: np.ndarray,
    section_center: np.ndarray,
    *,
    count: int,
    max_angle: float,
    max_shift: float,
    per_cell: int = 3,
    kind: str = "edges",
) -> list[Candidate]:
    """The ``count`` best mutually distinct candidates of a scan.

    Each (normal, in-plane map) cell contributes its ``per_cell`` best
    offsets; candidates are then taken by decreasing score, skipping those
    not distinct (see
    :func:`~coframe.registration.locate_geometry.poses_distinct`) from one already taken;
    ``kind`` names the scan's similarity.
    """
    n_norm, n_map, n_d = result.scores.shape
    flat = result.scores.reshape(n_norm * n_map, n_d)
    top = np.argsort(-flat, axis=1)[:, : min(per_cell, n_d)]
    cells = np.repeat(np.arange(n_norm * n_map), top.shape[1])
    ds = top.ravel()
    scores = flat[cells, ds]
    order = np.argsort(-scores, kind="stable")
    chosen: list[Candidate] = []
    # the taken poses' centres, normals and in-plane y axes, for a vectorised
    # poses_distinct against all of them at once
    taken = np.empty((count, 3, 3))
    cos_max = np.cos(np.radians(max_angle))
    for j in order:
        if scores[j] <= 0 or len(chosen) >= count:
            break
        i, g = divmod(int(cells[j]), n_map)
        d = int(ds[j])
        pose = pose_of(normals[i], bases[i], maps[g], result.centres[i, g, d], section_center)
        y = pose.linear[:, 0] / np.linalg.norm(pose.linear[:, 0])
        k = len(chosen)
        if k:
            t = taken[:k]
            close = (
                (np.linalg.norm(t[:, 0] - pose.center, axis=1) <= max_shift)
                & (t[:, 1] @ pose.normal >= cos_max)
                & (t[:, 2] @ y >= cos_max)
            )
            if close.any():
                continue
        taken[k] = (pose.center, pose.normal, y)
        chosen.append(Candidate(pose, float(scores[j]), float(result.signs[i, g, d]), kind))
    return chosen


def _scan_around(
    volume: GridImage,
    section: GridImage,
    normals: np.ndarray,
    maps: np.ndarray,
    regions: Sequence[Region],
    bases: Sequence[tuple[np.ndarray, np.ndarray]],
    kind: str,
) -> tuple[ScanResult, list[tuple[np.ndarray, np.ndarray]]]:
    """:func:`scan` of small boxes of centres around known poses, at the section's spacing.

    Slices are one pixel apart and reach a whole template beyond each box; a
    placement is judged with half the section inside the volume.
    """
    results, used = scan(
        volume,
        section,
        normals,
        maps,
        regions=regions,
        bases=bases,
        d_step=float(section.spacing[0]),
        min_overlap=0.5,
        pad=1.0,
        scores=(kind,),
    )
    return results[kind], used


def rescore(
    volume: GridImage,
    section: GridImage,
    candidates: Sequence[Candidate],
    *,
    half_d: float,
    half_u: float,
) -> list[Candidate]:
    """Score candidates again at a finer spacing, each over a small box of centres.

    The orientation of each candidate is kept; its section centre is searched
    within ``half_d`` along the normal and ``half_u`` in plane (physical) of
    where the coarser scan put it, since the coarser grid of centres may miss
    the finer optimum by a fraction of its step. Candidates are scored side by
    side, as the normals of :func:`scan`, under their own similarity.

    Parameters
    ----------
    volume, section
        Volume and section at the (isotropic) finer spacing.
    candidates
        Poses from a coarser scan.
    half_d, half_u
        Physical half-ranges of the centre search.

    Returns
    -------
    list
        The candidates at their best centre, by decreasing finer score.
    """
    identity = in_plane_maps(np.array([0.0]), mirror=False)
    found: list[Candidate] = []
    for kind in dict.fromkeys(c.kind for c in candidates):
        group = [c for c in candidates if c.kind == kind]
        normals = np.array([c.pose.normal for c in group])
        bases = [transported_basis(c.pose.linear, n) for c, n in zip(group, normals, strict=True)]
        regions = [
            local_region(c.pose.apply(section.center)[0], n, e1, e2, half_d, half_u)
            for c, n, (e1, e2) in zip(group, normals, bases, strict=True)
        ]
        result, used = _scan_around(volume, section, normals, identity, regions, bases, kind)
        for i in range(len(group)):
            d = int(np.argmax(result.scores[i, 0]))
            centre = result.centres[i, 0, d]
            pose = pose_of(normals[i], used[i], identity[0], centre, section.center)
            score, sign = float(result.scores[i, 0, d]), float(result.signs[i, 0, d])
            found.append(Candidate(pose, score, sign, kind))
    return sorted(found, key=lambda c: -c.score)


def local_search(
    volume: GridImage,
    section: GridImage,
    seeds: Sequence[Candidate],
    *,
    cone: float,
    normal_step: float,
    angle_range: float,
    angle_step: float,
    half_d: float,
    half_u: float,
    max_angle: float,
    max_shift: float,
    per_seed: int = 1,
    score: str = "edges",
) -> list[Candidate]:
    """Search around each seed pose at a finer spacing; return candidates by score.

    Parameters
    ----------
    volume, section
        Volume and section at the (isotropic) local spacing.
    seeds
        Poses to search around.
    cone, normal_step
        Normals within ``cone`` degrees of a seed's, ``normal_step`` apart.
    angle_range, angle_step
        In-plane rotations within ``angle_range`` degrees, ``angle_step`` apart.
    half_d, half_u
        Physical half-ranges of the section centre along the normal and in plane.
    max_angle, max_shift
        Distinctness thresholds of the candidates kept per seed.
    per_seed
        Candidates kept per seed.
    score
        Similarity of the scan (see :func:`scan`).
    """
    count = max(int(np.floor(angle_range / angle_step)), 0)
    maps = in_plane_maps(angle_step * np.arange(-count, count + 1), mirror=False)
    # every seed's cone of normals goes into one scan: the templates are made once and the
    # threads share out all the seeds' normals
    cones = [fibonacci_cap(seed.pose.normal, cone, normal_step) for seed in seeds]
    normals, bases, regions, spans = [], [], [], []
    for seed, cap in zip(seeds, cones, strict=True):
        spans.append((len(normals), len(normals) + len(cap)))
        centre = seed.pose.apply(section.center)[0]
        for n in cap:
            e1, e2 = transported_basis(seed.pose.linear, n)
            normals.append(n)
            bases.append((e1, e2))
            regions.append(local_region(centre, n, e1, e2, half_d, half_u))
    if not normals:
        return []
    result, used = _scan_around(volume, section, np.array(normals), maps, regions, bases, score)
    found: list[Candidate] = []
    for i0, i1 in spans:
        part = ScanResult(result.scores[i0:i1], result.signs[i0:i1], result.centres[i0:i1])
        found.extend(
            best_candidates(
                part,
                np.array(normals[i0:i1]),
                used[i0:i1],
                maps,
                section.center,
                count=per_seed,
                max_angle=max_angle,
                max_shift=max_shift,
                kind=score,
            )
        )
    return sorted(found, key=lambda c: -c.score)


def local_stage(
    reader: VolumeReader,
    sec_b: GridImage,
    seeds: list[Candidate],
    s_a: float,
    s_b: float,
    opts: LocateOptions,
) -> list[Candidate]:
    """The local search around each seed at spacing ``s_b``, distinct candidates by score.

    The whole level is read when small enough, else a box around each seed.
    """
    whole = reader.volume.levels[level_not_coarser(reader.volume, s_b)]
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
    for vol_b, seeds_in in groups:
        for kind in dict.fromkeys(c.kind for c in seeds_in):
            group = [c for c in seeds_in if c.kind == kind]
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
                    score=kind,
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
