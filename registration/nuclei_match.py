"""Matching two sets of nucleus points with no start: invariant tetrahedra, votes, verification.

The two sets (nuclei of a FIB-SEM segmentation and blobs of an X-ray scan,
say) share some nuclei, miss others and hold spurious ones; their frames
differ by any rotation, a translation and a scale within a prior. The match:

1. takes the set covering the smaller region (the FIB-SEM block's) as the
   *query* set and the other as the *target*, whose neighbourhoods are searched
   deeper by their density ratio;
2. describes every point of each by the tetrahedra it forms with its nearest
   neighbours: the six edge lengths, divided by their mean (the mean is kept
   to check the scale prior). Query tetrahedra are indexed in every vertex
   order, target ones in one, so no ordering needs to be stable;
3. pairs each query tetrahedron with its nearest target descriptors (a
   KD-tree): each pair is a similarity through four point pairs;
4. scores every such hypothesis on the apex's neighbourhood (how many of its
   neighbours land on a target point), keeps the best few hundred, counts
   their inliers over the whole set (KD-tree), and refines the best by
   least squares on one-to-one inliers, a few rounds (ICP with a fixed
   tolerance), with the final model (similarity or affine);
5. reports the winner's inliers, its RMS residual, the inliers of the best
   pose that differs from it (the runner-up) and the inliers a random pose
   would get by chance.

Plain RANSAC over random triplets would need millions of draws at 30%
missing and 30% spurious points; the descriptors make nearly every
proposal a plausible one.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from coframe.core.errors import RegistrationError, TransformError
from coframe.transforms.affine import Affine
from coframe.transforms.point_pairs import fit_linear

#: Neighbours of a query point whose triples form its tetrahedra.
QUERY_NEIGHBOURS = 4
#: Most neighbours of a target point whose triples form its tetrahedra.
TARGET_NEIGHBOURS = 12
#: Target descriptors paired with each query descriptor.
PAIRS_PER_QUERY = 6
#: Neighbours of an apex checked by the local vote.
VOTE_NEIGHBOURS = 12
#: Hypotheses whose inliers are counted over the whole set.
VERIFIED = 300
#: Hypotheses refined by least squares.
REFINED = 12
#: Refinement rounds.
ROUNDS = 6


@dataclass(frozen=True)
class PointMatch:
    """The match of two point sets.

    Parameters
    ----------
    transform
        The map of FIXED points onto MOVING points.
    fixed_index, moving_index
        Indices of the matched (inlier) pairs, one-to-one.
    candidates
        Points the match could have paired: of the smaller set, those the map
        places inside the other set's bounding box.
    runner_up
        Inliers of the best pose that differs from the winner (0: none).
    chance
        Inliers a random pose would get (the target's density times the
        tolerance ball, times the candidates).
    rms
        RMS distance of the inlier pairs after the fit.
    hypotheses
        Poses proposed by the descriptors.
    seconds
        Wall time.
    model
        ``similarity`` or ``affine``.
    """

    transform: Affine
    fixed_index: np.ndarray
    moving_index: np.ndarray
    candidates: int
    runner_up: int
    chance: float
    rms: float
    hypotheses: int
    seconds: float
    model: str

    @property
    def inliers(self) -> int:
        """Number of matched pairs."""
        return int(self.fixed_index.size)

    def summary(self) -> dict[str, object]:
        """Plain numbers for reports."""
        return {
            "model": self.model,
            "inliers": self.inliers,
            "candidates": self.candidates,
            "runner_up": self.runner_up,
            "chance": round(self.chance, 2),
            "rms": self.rms,
            "hypotheses": self.hypotheses,
            "seconds": round(self.seconds, 3),
        }


def check_points(points: np.ndarray, what: str, needed: int) -> None:
    """Refuse point sets too small or flat to fix a 3D pose (``what`` names the image).

    Raises
    ------
    RegistrationError
        Fewer than ``needed`` points, or all of them (nearly) on a line or a plane.
    """
    n = int(points.shape[0])
    if n < needed:
        raise RegistrationError(
            f"{n} nuclei found in {what} but matching needs at least {needed}: use a larger "
            "region or level, loosen the size prior (--set nuclei.diameter=MIN,MAX) or give "
            "--landmarks"
        )
    centred = points - points.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if s[0] <= 0 or s[2] < 1e-3 * s[0]:
        shape = "on one line" if s[1] < 1e-3 * s[0] else "on one plane"
        raise RegistrationError(
            f"the {n} nuclei of {what} lie {shape}: they cannot fix a 3D pose; use a volume "
            "with nuclei in depth, or give --landmarks"
        )


def _box_volume(points: np.ndarray) -> float:
    return float(np.prod(np.ptp(points, axis=0)))


def _spacing(points: np.ndarray) -> float:
    d, _ = cKDTree(points).query(points, k=2)
    return float(np.median(d[:, 1]))


def _descriptors(points: np.ndarray, neighbours: np.ndarray, every_order: bool) -> tuple:
    """Tetrahedra (apex, a, b, c) of each point with triples of its neighbours.

    Returns the vertex indices ``(T, 4)``, normalised descriptors ``(T, 6)``
    and mean edge lengths ``(T,)``.
    """
    n, k = neighbours.shape
    triples = list(itertools.combinations(range(1, k + 1), 3))
    if every_order:
        triples = [p for t in triples for p in itertools.permutations(t)]
    tri = np.asarray(triples)
    local = np.concatenate([np.arange(n)[:, None], neighbours], axis=1)  # apex first
    p = points[local]
    dist = np.linalg.norm(p[:, :, None] - p[:, None, :], axis=3)  # (n, k+1, k+1), once
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    edges = np.stack(
        [dist[:, 0, a], dist[:, 0, b], dist[:, 0, c], dist[:, b, c], dist[:, a, c], dist[:, a, b]],
        axis=2,
    ).reshape(-1, 6)
    verts = np.concatenate(
        [np.repeat(np.arange(n), len(tri))[:, None], local[:, tri].reshape(-1, 3)], axis=1
    )
    mean = edges.mean(axis=1)
    return verts, edges / mean[:, None], mean


def _similarities(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarities (Umeyama) of batches ``(H, n, 3)``: scales, rotations, shifts."""
    ms, md = src.mean(axis=1), dst.mean(axis=1)
    a, b = src - ms[:, None], dst - md[:, None]
    cov = np.einsum("hni,hnj->hij", b, a) / src.shape[1]
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0
    sign = np.ones((src.shape[0], 3))
    sign[:, 2] = d
    rot = u @ (sign[:, :, None] * vt)
    var = (a * a).sum(axis=(1, 2)) / src.shape[1]
    scale = (s * sign).sum(axis=1) / np.where(var > 0, var, np.inf)
    shift = md - scale[:, None] * np.einsum("hij,hj->hi", rot, ms)
    return scale, rot, shift


def _apply(scale: np.ndarray, rot: np.ndarray, shift: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map ``(H, n, 3)`` points by each hypothesis."""
    return scale[:, None, None] * np.einsum("hij,hnj->hni", rot, pts) + shift[:, None]


def _one_to_one(mapped: np.ndarray, tree: cKDTree, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (query index, target index) within ``tol``, each target used once (nearest kept)."""
    d, j = tree.query(mapped, distance_upper_bound=tol)
    ok = np.isfinite(d)
    qi, tj, dist = np.flatnonzero(ok), j[ok], d[ok]
    order = np.lexsort((dist, tj))
    first = np.ones(order.size, bool)
    first[1:] = tj[order][1:] != tj[order][:-1]
    keep = order[first]
    return qi[keep], tj[keep]


def _refine(
    query: np.ndarray, tree: cKDTree, target: np.ndarray, start: Affine, tol: float, model: str
) -> tuple[Affine, np.ndarray, np.ndarray]:
    """ICP with a fixed tolerance and one-to-one pairs, from ``start``."""
    current = start
    qi = tj = np.zeros(0, int)
    for _ in range(ROUNDS):
        qi, tj = _one_to_one(current.apply(query), tree, tol)
        if qi.size < 4:
            break
        try:
            fitted = fit_linear(query[qi], target[tj], model)
        except TransformError:
            break
        affine = fitted.as_affine()
        assert affine is not None
        if np.allclose(affine.homogeneous, current.homogeneous, atol=1e-9 * tol):
            current = affine
            break
        current = affine
    qi, tj = _one_to_one(current.apply(query), tree, tol)
    return current, qi, tj


def match_points(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    tolerance: float,
    model: str = "similarity",
    scale_range: float = 0.1,
    min_points: int = 4,
    names: tuple[str, str] = ("FIXED", "MOVING"),
) -> PointMatch:
    """Match FIXED points to MOVING points with no start (any rotation, scale within the prior).

    Parameters
    ----------
    fixed, moving
        ``(N, 3)`` and ``(M, 3)`` physical points, one unit.
    tolerance
        Largest distance of a matched pair after the fit, in that unit.
    model
        ``similarity`` or ``affine``.
    scale_range
        The scale between the sets lies in ``1 +- scale_range``.
    min_points
        Fewest points either set must hold.
    names
        What the sets are, for messages.

    Raises
    ------
    RegistrationError
        Too few points, degenerate sets, or no pose found.
    """
    start = time.perf_counter()
    fixed, moving = np.asarray(fixed, float), np.asarray(moving, float)
    check_points(fixed, names[0], max(min_points, 5))
    check_points(moving, names[1], max(min_points, 5))
    # the set covering the smaller region queries the other: its nearest neighbours, found
    # inside that region, stay among the other set's near neighbours (which also has
    # neighbours beyond the region, and spurious ones: looked for deeper, by the density ratio)
    swap = _box_volume(moving) < _box_volume(fixed)
    query, target = (moving, fixed) if swap else (fixed, moving)
    ratio = max(1.0, (_spacing(query) / _spacing(target)) ** 3)
    kq = min(QUERY_NEIGHBOURS, query.shape[0] - 1)
    kt = min(target.shape[0] - 1, max(kq + 4, int(math.ceil(kq * ratio * 2.0))), TARGET_NEIGHBOURS)
    qtree, ttree = cKDTree(query), cKDTree(target)
    qn = qtree.query(query, k=kq + 1)[1][:, 1:]
    tn = ttree.query(target, k=kt + 1)[1][:, 1:]
    qv, qd, qm = _descriptors(query, qn, every_order=True)
    tv, td, tm = _descriptors(target, tn, every_order=False)
    side = float(np.median(qm))
    radius = float(np.clip(1.2 * tolerance / side, 0.05, 0.35))
    # approximate neighbours (eps): six times faster in 6D, the same pairs in practice
    dist, idx = cKDTree(td).query(
        qd, k=min(PAIRS_PER_QUERY, td.shape[0]), distance_upper_bound=radius, eps=0.5
    )
    dist, idx = dist.reshape(qd.shape[0], -1), idx.reshape(qd.shape[0], -1)
    qh, kh = np.nonzero(np.isfinite(dist))
    th = idx[qh, kh]
    lo, hi = (1 - scale_range) / 1.05, (1 + scale_range) * 1.05
    if swap:  # query -> target maps moving onto fixed: the scale is inverted
        lo, hi = 1 / hi, 1 / lo
    s_ratio = tm[th] / qm[qh]
    ok = (s_ratio >= lo) & (s_ratio <= hi)
    qh, th, hdist = qh[ok], th[ok], dist[qh, kh][ok]
    if qh.size == 0:
        raise RegistrationError(
            f"no group of four nuclei of {names[0]} looks like one of {names[1]} within the "
            f"scale prior 1 +- {scale_range:g}: check the voxel sizes, the size prior "
            "(nuclei.diameter) and nuclei.tolerance, or give --landmarks"
        )
    scale, rot, shift = _similarities(query[qv[qh]], target[tv[th]])
    fit_err = np.linalg.norm(_apply(scale, rot, shift, query[qv[qh]]) - target[tv[th]], axis=2).max(
        axis=1
    )
    good = (fit_err <= tolerance) & (scale >= lo) & (scale <= hi)
    qh, th, hdist, scale, rot, shift = (
        qh[good],
        th[good],
        hdist[good],
        scale[good],
        rot[good],
        shift[good],
    )
    hypotheses = int(qh.size)
    if hypotheses == 0:
        raise RegistrationError(
            f"no pose fits four nuclei of {names[0]} onto four of {names[1]} within the "
            "tolerance: loosen nuclei.tolerance (micrometres) or give --landmarks"
        )
    votes = _local_votes(
        query, target, qtree, qv[qh, 0], tv[th, 0], scale, rot, shift, tolerance, ratio
    )
    order = np.lexsort((hdist, -votes))[:VERIFIED]
    counts = np.array(
        [
            np.count_nonzero(
                np.isfinite(
                    ttree.query(
                        _apply(scale[[h]], rot[[h]], shift[[h]], query[None])[0],
                        distance_upper_bound=tolerance,
                    )[0]
                )
            )
            for h in order
        ]
    )
    best = order[np.argsort(-counts, kind="stable")[:REFINED]]
    refined = []
    for h in best:
        start_map = Affine.from_linear(scale[h] * rot[h], shift[h])
        fitted, qi, tj = _refine(query, ttree, target, start_map, tolerance, "similarity")
        if model == "affine" and qi.size >= 8:
            fitted, qi, tj = _refine(query, ttree, target, fitted, tolerance, "affine")
        refined.append((qi.size, fitted, qi, tj))
    refined.sort(key=lambda r: -r[0])
    n_in, t_best, qi, tj = refined[0]
    runner = _runner_up(refined, query, tolerance)
    mapped = t_best.apply(query)
    inside = np.all((mapped >= target.min(axis=0)) & (mapped <= target.max(axis=0)), axis=1)
    back = t_best.inverse().apply(target)
    grow = tolerance / max(abs(np.linalg.det(t_best.linear)) ** (1 / 3), 1e-12)
    inside_t = np.all(
        (back >= query.min(axis=0) - grow) & (back <= query.max(axis=0) + grow), axis=1
    )
    candidates = max(int(min(inside.sum(), inside_t.sum())), int(qi.size))
    box = np.prod(np.ptp(target, axis=0))
    density = target.shape[0] / box if box > 0 else 0.0
    chance = float(candidates * density * 4.0 / 3.0 * math.pi * tolerance**3)
    rms = (
        float(np.sqrt(np.mean(np.sum((mapped[qi] - target[tj]) ** 2, axis=1))))
        if qi.size
        else math.nan
    )
    transform = t_best.inverse() if swap else t_best
    f_idx, m_idx = (tj, qi) if swap else (qi, tj)
    order_f = np.argsort(f_idx)
    return PointMatch(
        transform=transform,
        fixed_index=f_idx[order_f],
        moving_index=m_idx[order_f],
        candidates=candidates,
        runner_up=runner,
        chance=chance,
        rms=rms,
        hypotheses=hypotheses,
        seconds=time.perf_counter() - start,
        model=model,
    )


def _local_votes(
    query: np.ndarray,
    target: np.ndarray,
    qtree: cKDTree,
    q_apex: np.ndarray,
    t_apex: np.ndarray,
    scale: np.ndarray,
    rot: np.ndarray,
    shift: np.ndarray,
    tol: float,
    ratio: float,
) -> np.ndarray:
    """Neighbours of each hypothesis's query apex that land on a target point near its apex."""
    kv = min(VOTE_NEIGHBOURS, query.shape[0] - 1)
    kt = min(target.shape[0], int(math.ceil((kv + 1) * ratio * 1.6)) + 4)
    qn = qtree.query(query, k=kv + 1)[1][:, 1:]
    tn = cKDTree(target).query(target, k=kt)[1]  # the apex itself included
    votes = np.zeros(q_apex.size, int)
    step = max(1, 2_000_000 // (kv * kt * 3))
    for a in range(0, q_apex.size, step):
        sl = slice(a, a + step)
        mapped = _apply(scale[sl], rot[sl], shift[sl], query[qn[q_apex[sl]]])
        near = target[tn[t_apex[sl]]]
        d2 = ((mapped[:, :, None, :] - near[:, None, :, :]) ** 2).sum(axis=3)
        votes[sl] = (d2.min(axis=2) <= tol * tol).sum(axis=1)
    return votes


def _runner_up(refined: list, query: np.ndarray, tol: float) -> int:
    """Inliers of the best refined pose whose map of the query points differs from the winner's."""
    win = refined[0][1].apply(query)
    for n, t, _, _ in refined[1:]:
        moved = np.sqrt(np.mean(np.sum((t.apply(query) - win) ** 2, axis=1)))
        if moved > 2 * tol:
            return int(n)
    return 0
