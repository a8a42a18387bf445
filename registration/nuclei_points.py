"""Nuclei as points: one point per label of a segmentation, or per blob of an intensity image.

:func:`points_from_labels` reads a nucleus instance segmentation (integer
ids) block by block at the coarsest pyramid level whose voxels are at most a
quarter of the smallest nucleus diameter, and accumulates each id's voxel
count and first and second moments: its centroid (physical), volume and
principal axes. No level is read whole.

:func:`points_from_intensity` finds nucleus-sized blobs in an intensity image
(an X-ray scan): the scale-normalised Laplacian of Gaussian over the
diameters of the size prior, its local maxima in space and scale, block by
block with overlapping margins. Nuclei are bright (X-ray of stained tissue)
or dark (EM); the polarity is given or taken from the modality.

Both return a :class:`NucleusPoints` value; nothing is written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from coframe.core.errors import DimensionError, RegistrationError
from coframe.core.units import unit_factor
from coframe.volumes.volume import Level, Volume

#: Voxels across the smallest nucleus at the level read.
VOXELS_ACROSS = 4
#: Voxels of one block read at a time (about 128^3).
BLOCK_VOXELS = 128**3
#: A label under this share of the smallest nucleus's volume is a fragment.
FRAGMENT = 0.5
#: Diameters tried between the size prior's bounds.
SCALES = 6


@dataclass(frozen=True)
class NucleusPoints:
    """Nuclei of one image as points.

    Parameters
    ----------
    centres
        ``(N, 3)`` centroids (labels) or blob centres, physical (z, y, x), ``unit``.
    volumes
        ``(N,)`` volumes in ``unit`` cubed (labels: voxel count; blobs: the
        sphere of the detected diameter).
    axes
        ``(N, 3)`` diameters of the equivalent ellipsoid along its principal
        axes, largest first (blobs: the detected diameter three times).
    directions
        ``(N, 3, 3)`` unit principal directions (z, y, x), one per row, in the
        order of ``axes``.
    scores
        ``(N,)`` confidence: voxel count for labels, the normalised blob
        response for blobs.
    ids
        ``(N,)`` label ids (0 for blobs).
    partial
        ``(N,)`` True where the nucleus is not whole: it touches the level's
        edge, or (labels) it is a fragment under half the volume of the size
        prior's smallest nucleus (cut by the sample's face, say). Its centre
        is then biased, and matching leaves it out.
    polarity
        ``labels``, ``bright`` or ``dark``: how the points were found.
    unit
        Length unit.
    level
        Path (or number) of the level read, and its voxel size.
    voxel_size
        Voxel size of that level, in ``unit``.
    """

    centres: np.ndarray
    volumes: np.ndarray
    axes: np.ndarray
    directions: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    partial: np.ndarray
    polarity: str
    unit: str
    level: str
    voxel_size: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    def usable(self) -> NucleusPoints:
        """The points whose centres are trustworthy (not cut by the image's edge)."""
        return self.subset(~self.partial)

    def subset(self, keep: np.ndarray) -> NucleusPoints:
        """The points where ``keep`` is true (a boolean mask or indices)."""
        return replace(
            self,
            centres=self.centres[keep],
            volumes=self.volumes[keep],
            axes=self.axes[keep],
            directions=self.directions[keep],
            scores=self.scores[keep],
            ids=self.ids[keep],
            partial=self.partial[keep],
        )

    def rows(self, unit: str) -> list[dict[str, object]]:
        """One plain row per point, lengths in ``unit`` (for CSV and JSON)."""
        f = unit_factor(self.unit, unit)
        out = []
        for i in range(len(self)):
            z, y, x = (float(v) * f for v in self.centres[i])
            d1, d2, d3 = (float(v) * f for v in self.axes[i])
            dz, dy, dx = (float(v) for v in self.directions[i, 0])
            out.append(
                {
                    "id": int(self.ids[i]),
                    "z": z,
                    "y": y,
                    "x": x,
                    "volume": float(self.volumes[i]) * f**3,
                    "d1": d1,
                    "d2": d2,
                    "d3": d3,
                    "axis_z": dz,
                    "axis_y": dy,
                    "axis_x": dx,
                    "score": float(self.scores[i]),
                    "partial": bool(self.partial[i]),
                    "kind": self.polarity,
                }
            )
        return out


def diameters_in(volume: Volume, diameter_um: Sequence[float]) -> tuple[float, float]:
    """The size prior (micrometres) in the volume's unit."""
    f = unit_factor("micrometer", volume.unit)
    return float(diameter_um[0]) * f, float(diameter_um[1]) * f


def nucleus_level(volume: Volume, smallest: float) -> int:
    """The coarsest level whose largest voxel side is at most ``smallest / 4``.

    The finest level when none is fine enough.
    """
    fine = [
        i
        for i, lvl in enumerate(volume.levels)
        if max(lvl.voxel_size) <= smallest / VOXELS_ACROSS * (1 + 1e-6)
    ]
    return max(fine) if fine else 0


def _blocks(level: Level, margin: int = 0) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """Boxes of whole chunks covering the level, about :data:`BLOCK_VOXELS` each.

    Yields ``(core, read)``: the box a block owns and the box read (``core``
    grown by ``margin`` voxels, clipped).
    """
    shape, chunks = level.shape, level.chunks
    per_axis = max(1, round(BLOCK_VOXELS ** (1 / 3)))
    step = [max(c, (per_axis // c) * c) for c in chunks]
    starts = [range(0, n, s) for n, s in zip(shape, step, strict=True)]
    for corner in itertools.product(*starts):
        core = tuple(slice(a, min(a + s, n)) for a, s, n in zip(corner, step, shape, strict=True))
        read = tuple(
            slice(max(0, c.start - margin), min(n, c.stop + margin))
            for c, n in zip(core, shape, strict=True)
        )
        yield core, read


def _check_3d(volume: Volume, what: str) -> None:
    if volume.ndim != 3:
        raise DimensionError(
            f"{volume.source} is {volume.ndim}D: nuclei are found in 3D {what} volumes"
        )


def points_from_labels(
    volume: Volume, diameter: Sequence[float], *, level: int | str | None = None
) -> NucleusPoints:
    """One point per label id: centroid, volume and principal axes, block by block.

    Parameters
    ----------
    volume
        A nucleus instance segmentation (integer ids, 0 = background).
    diameter
        Smallest and largest nucleus diameter, micrometres: the level read is
        the coarsest with at least :data:`VOXELS_ACROSS` voxels across the smallest.
    level
        The level to read instead.

    Raises
    ------
    RegistrationError
        If the image is not integer-valued or holds no label.
    """
    _check_3d(volume, "label")
    if not np.issubdtype(volume.dtype, np.integer) and volume.dtype != np.bool_:
        raise RegistrationError(
            f"{volume.source} holds {volume.dtype} values, not integer label ids: give the nucleus "
            "segmentation (--moving-labels/--fixed-labels, or coframe nuclei --intensity for an "
            "intensity image)"
        )
    smallest, _ = diameters_in(volume, diameter)
    index = nucleus_level(volume, smallest) if level is None else level
    lvl = volume.level(index)
    vs = np.asarray(lvl.voxel_size, float)
    origin = np.asarray(lvl.origin, float)
    ids_all, sums_all, edge_ids = [], [], []
    background = total = 0
    for core, _ in _blocks(lvl):
        block = lvl.read(core)
        background += int(block.size - np.count_nonzero(block))
        total += block.size
        nz = np.nonzero(block)
        if nz[0].size == 0:
            continue
        ids, inverse = np.unique(block[nz], return_inverse=True)
        coords = [
            (nz[a] + core[a].start) * vs[a] + origin[a] for a in range(3)
        ]  # physical centres of the labelled voxels
        columns = [np.ones_like(coords[0])]
        columns += coords
        columns += [coords[a] * coords[b] for a in range(3) for b in range(a, 3)]
        sums = np.stack([np.bincount(inverse, w, minlength=ids.size) for w in columns], axis=1)
        ids_all.append(ids.astype(np.int64))
        sums_all.append(sums)
        for a, n in enumerate(lvl.shape):
            for edge, touches in ((0, core[a].start == 0), (n - 1, core[a].stop == n)):
                if touches:
                    face = np.take(block, edge - core[a].start, axis=a)
                    edge_ids.append(np.unique(face[face != 0]).astype(np.int64))
    if not ids_all:
        raise RegistrationError(
            f"{volume.source} (level {lvl.path or index}) holds no label: give the nucleus "
            "segmentation whose ids are non-zero, or find blobs in an intensity image instead"
        )
    if background < 0.01 * total:
        raise RegistrationError(
            f"{volume.source} (level {lvl.path or index}) has almost no background (0) voxels: "
            "it looks like an intensity image, not a nucleus segmentation; give the labels "
            "(--moving-labels/--fixed-labels), or find blobs in the image instead"
        )
    ids = np.concatenate(ids_all)
    unique, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((unique.size, 10))
    np.add.at(sums, inverse, np.concatenate(sums_all))
    count = sums[:, 0]
    mean = sums[:, 1:4] / count[:, None]
    second = np.zeros((unique.size, 3, 3))
    k = 4
    for a in range(3):
        for b in range(a, 3):
            second[:, a, b] = second[:, b, a] = sums[:, k] / count
            k += 1
    cov = second - mean[:, :, None] * mean[:, None, :]
    cov += np.diag(vs**2 / 12.0)[None]  # a voxel's own extent
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values, axis=1)[:, ::-1]
    values = np.take_along_axis(values, order, axis=1)
    vectors = np.take_along_axis(vectors, order[:, None, :], axis=2)
    partial = np.isin(unique, np.concatenate(edge_ids)) if edge_ids else np.zeros(unique.size, bool)
    volumes = count * float(np.prod(vs))
    partial |= volumes < FRAGMENT * math.pi / 6.0 * smallest**3
    return NucleusPoints(
        centres=mean,
        volumes=volumes,
        axes=2.0 * np.sqrt(5.0 * np.clip(values, 0, None)),
        directions=np.transpose(vectors, (0, 2, 1)),
        scores=count,
        ids=unique,
        partial=partial,
        polarity="labels",
        unit=volume.unit,
        level=lvl.path or str(index),
        voxel_size=tuple(float(v) for v in vs),
    )


def modality_polarity(modality: str | None) -> tuple[str, ...]:
    """Polarities of nuclei in an image: bright in X-ray, dark in EM, both when unknown."""
    if modality == "xray":
        return ("bright",)
    if modality in ("fibsem", "tem"):
        return ("dark",)
    return ("bright", "dark")


def points_from_intensity(
    volume: Volume,
    diameter: Sequence[float],
    polarity: str = "bright",
    *,
    min_score: float = 6.0,
    max_points: int = 5000,
    level: int | str | None = None,
) -> NucleusPoints:
    """Nucleus-sized blobs: maxima of the scale-normalised Laplacian of Gaussian.

    Parameters
    ----------
    volume
        An intensity image.
    diameter
        Smallest and largest nucleus diameter, micrometres (the size prior).
    polarity
        ``bright`` or ``dark`` nuclei.
    min_score
        Smallest response kept, in robust standard deviations of the response
        at that scale.
    max_points
        Most blobs kept (the strongest).
    level
        The level to read instead of the automatic one.

    Raises
    ------
    RegistrationError
        If no blob of the prior's size stands out.
    """
    _check_3d(volume, "intensity")
    if polarity not in ("bright", "dark"):
        raise RegistrationError(f"polarity {polarity!r}: expected bright or dark (nuclei.polarity)")
    smallest, largest = diameters_in(volume, diameter)
    index = nucleus_level(volume, smallest) if level is None else level
    lvl = volume.level(index)
    vs = np.asarray(lvl.voxel_size, float)
    diameters = (
        np.geomspace(smallest, largest, SCALES) if largest > smallest else np.array([smallest])
    )
    sigmas = diameters / (2.0 * math.sqrt(3.0))  # a ball of radius r: LoG peaks at r / sqrt(3)
    margin = int(math.ceil(3.0 * sigmas[-1] / vs.min())) + 1
    sign = -1.0 if polarity == "bright" else 1.0
    found: list[np.ndarray] = []
    noise = _response_noise(lvl, sigmas, sign)
    for core, read in _blocks(lvl, margin):
        block = lvl.read(read).astype(np.float32)
        if not np.any(block != block.flat[0]):
            continue
        stack = np.stack(
            [
                sign * s**2 * ndimage.gaussian_laplace(block, s / vs, mode="nearest") / noise[k]
                for k, s in enumerate(sigmas)
            ]
        )
        size = max(3, int(round(smallest / 2 / vs.min())) | 1)
        peaks = (stack == ndimage.maximum_filter(stack, size=(3, size, size, size))) & (
            stack >= min_score
        )
        k, z, y, x = np.nonzero(peaks)
        idx = np.stack([z, y, x], axis=1) + [r.start for r in read]
        inside = np.all((idx >= [c.start for c in core]) & (idx < [c.stop for c in core]), axis=1)
        score = stack[k, z, y, x]
        found.append(np.column_stack([idx[inside], k[inside], score[inside]]))
    rows = np.concatenate(found) if found else np.zeros((0, 5))
    if rows.shape[0] == 0:
        raise RegistrationError(
            f"no {polarity} blob of {diameter[0]:g}-{diameter[1]:g} micrometres stands out in "
            f"{volume.source} (level {lvl.path or index}): check the size prior "
            "(--set nuclei.diameter=MIN,MAX, micrometres), nuclei.polarity or nuclei.min_score"
        )
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    centres = lvl.index_to_physical(rows[:, :3])
    keep = _suppress(centres, smallest / 2.0)[:max_points]
    rows, centres = rows[keep], centres[keep]
    d = diameters[rows[:, 3].astype(int)]
    n = rows.shape[0]
    lo = np.array([0.0, 0.0, 0.0])
    hi = (np.asarray(lvl.shape) - 1) * vs
    rel = centres - np.asarray(lvl.origin)
    partial = np.any((rel - d[:, None] / 2 < lo) | (rel + d[:, None] / 2 > hi), axis=1)
    return NucleusPoints(
        centres=centres,
        volumes=math.pi / 6.0 * d**3,
        axes=np.repeat(d[:, None], 3, axis=1),
        directions=np.repeat(np.eye(3)[None], n, axis=0),
        scores=rows[:, 4],
        ids=np.zeros(n, np.int64),
        partial=partial,
        polarity=polarity,
        unit=volume.unit,
        level=lvl.path or str(index),
        voxel_size=tuple(float(v) for v in vs),
    )


def _response_noise(lvl: Level, sigmas: np.ndarray, sign: float) -> np.ndarray:
    """Robust spread of each scale's response, on a central sample block of the level."""
    vs = np.asarray(lvl.voxel_size, float)
    shape = np.asarray(lvl.shape)
    side = np.minimum(shape, max(32, int(round(BLOCK_VOXELS ** (1 / 3)))))
    lo = (shape - side) // 2
    sample = lvl.read(tuple(slice(int(a), int(a + s)) for a, s in zip(lo, side, strict=True)))
    sample = sample.astype(np.float32)
    out = []
    for s in sigmas:
        r = sign * s**2 * ndimage.gaussian_laplace(sample, s / vs, mode="nearest")
        mad = float(np.median(np.abs(r - np.median(r))))
        out.append(1.4826 * mad if mad > 0 else float(np.std(r)) or 1.0)
    return np.asarray(out)


def _suppress(centres: np.ndarray, radius: float) -> np.ndarray:
    """Indices of points (ordered strongest first) with no stronger point within ``radius``."""
    tree = cKDTree(centres)
    taken = np.zeros(len(centres), bool)
    keep = []
    for i in range(len(centres)):
        if taken[i]:
            continue
        keep.append(i)
        taken[tree.query_ball_point(centres[i], radius)] = True
    return np.asarray(keep, dtype=int)
