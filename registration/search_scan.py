"""The global search's scan: every translation of many posed templates, scored by FFT.

For each orientation and scale the smaller image (the *template*) is
resampled as the larger one (the *target*) would see it, its features made
(:mod:`~coframe.registration.search_features`), and its score against the
target found for every translation at once: the normalised correlation of
edge features, or the mutual information of quantised intensities. The
best position of each pose becomes a :class:`Hypothesis`.

Templates are independent: they are scored on one thread per core
(:mod:`~coframe.registration.parallel`), each thread with its own reused
spectrum buffers, and taken in order, so a scan is deterministic whatever the
thread count.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from coframe.registration.locate_geometry import GridImage
from coframe.registration.parallel import ordered_map, threads_for
from coframe.registration.search_features import (
    FEATURE_SIGMA,
    cropped_irfft,
    edge_features,
    indicators,
    joint_information,
    padded_rfft3,
    padded_rfft3_into,
    rotation_angle,
)
from coframe.transforms.affine import Affine

#: Smallest share of the template footprint that must fall inside the target.
MIN_INSIDE = 0.7
#: Positions sampled per orientation to estimate the score of unaligned poses.
BASELINE_SAMPLES = 64


@dataclass(frozen=True)
class Hypothesis:
    """A pose of the template in the target.

    Parameters
    ----------
    rotation
        ``(3, 3)`` rotation taking template directions to target directions.
    scale
        Isotropic scale (target length / template length).
    centre
        Target position of the template's centre.
    template_centre
        Template position of its own centre.
    score
        Normalised edge-feature correlation (0..1, higher is better).
    """

    rotation: np.ndarray
    scale: float
    centre: np.ndarray
    template_centre: np.ndarray
    score: float

    def template_to_target(self) -> Affine:
        """The pose as a template -> target affine."""
        linear = self.scale * self.rotation
        return Affine.from_linear(linear, self.centre - linear @ self.template_centre)

    def distinct(self, other: Hypothesis, angle: float, shift: float) -> bool:
        """Whether two poses differ by more than ``angle`` degrees or ``shift`` (physical)."""
        if float(np.linalg.norm(self.centre - other.centre)) > shift:
            return True
        return rotation_angle(self.rotation, other.rotation) > angle


@dataclass
class Target:
    """The target's features on a padded grid, with their spectra."""

    grid: GridImage
    pad: int
    shape: tuple[int, ...]
    spectra: np.ndarray
    energy: np.ndarray
    inside: np.ndarray
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    def buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three complex64 half-spectrum buffers of the calling thread, reused by its templates."""
        held = getattr(self._local, "buffers", None)
        if held is None:
            half = (*self.shape[:-1], self.shape[-1] // 2 + 1)
            held = tuple(np.empty(half, np.complex64) for _ in range(3))
            self._local.buffers = held
        return held

    @classmethod
    def build(cls, image: GridImage, mask: np.ndarray | None, prep: Any, pad: int) -> Target:
        """Features (``prep`` an edge scale) or bin indicators (``prep`` bin edges) on a grid."""
        inside = np.ones(image.shape, np.float32) if mask is None else mask.astype(np.float32)
        if isinstance(prep, np.ndarray):
            feats = indicators(image.array, prep) * inside
        else:
            feats = edge_features(image.array, mask, FEATURE_SIGMA, prep)
        shape = tuple(sfft.next_fast_len(n + 2 * pad, real=True) for n in image.shape)
        box = tuple(slice(pad, pad + n) for n in image.shape)
        padded = np.zeros((len(feats), *shape), np.float32)
        padded[(slice(None), *box)] = feats
        flags = np.zeros(shape, np.float32)
        flags[box] = inside
        energy = (padded * padded).sum(axis=0)
        axes = (1, 2, 3)
        spectra = sfft.rfftn(padded, axes=axes, workers=-1)
        both = sfft.rfftn(np.stack([energy, flags]), axes=axes, workers=-1)
        return cls(image, pad, shape, spectra, both[0], both[1])

    def index_to_point(self, index: np.ndarray) -> np.ndarray:
        """Physical position of padded-grid indices."""
        origin = np.asarray(self.grid.origin) - self.pad * np.asarray(self.grid.spacing)
        return origin + np.asarray(index, float) * np.asarray(self.grid.spacing)


@dataclass(frozen=True)
class Template:
    features: np.ndarray  # edge features, or bin indicators when ``binned``
    footprint: np.ndarray
    half: tuple[int, int, int]
    binned: bool = False


def template_halves(size: np.ndarray, linear: np.ndarray, spacing: float) -> np.ndarray:
    """Half-sizes (voxels per axis) of the box holding a box of ``size`` mapped by ``linear``."""
    return np.ceil(0.5 * (np.abs(linear) @ np.asarray(size)) / spacing).astype(int) + 1


def make_template(
    small: GridImage, mask: np.ndarray | None, rotation: np.ndarray, scale: float, prep: Any
) -> Template:
    """The template resampled as seen in the target frame under ``rotation`` and ``scale``.

    The template grid has the small image's spacing; its voxel ``o`` shows
    the small image at index ``c + R^T (o - half) / scale`` (``c`` the small
    image's centre index).
    """
    h = float(small.spacing[0])
    size = (np.asarray(small.shape) - 1) * h
    half = template_halves(size, scale * rotation, h)
    shape = tuple(int(2 * k + 1) for k in half)
    matrix = rotation.T / scale
    offset = (np.asarray(small.shape) - 1) / 2.0 - matrix @ half
    values = ndimage.affine_transform(
        small.array, matrix, offset, output_shape=shape, order=1, mode="nearest"
    )
    inside = np.ones(small.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    footprint = ndimage.affine_transform(
        inside, matrix, offset, output_shape=shape, order=0, mode="constant", cval=0
    ).astype(bool)
    footprint = ndimage.binary_erosion(footprint, iterations=1)
    if isinstance(prep, np.ndarray):
        features = indicators(values, prep) * footprint.astype(np.float32)
    else:
        features = edge_features(values, footprint, FEATURE_SIGMA, prep)
    halves = (int(half[0]), int(half[1]), int(half[2]))
    return Template(features, footprint, halves, isinstance(prep, np.ndarray))


def scores(
    target: Target, tpl: Template, allowed: np.ndarray, stride: int = 1, workers: int = -1
) -> tuple[np.ndarray, np.ndarray] | None:
    """The score of every translation (mutual information of the bin indicators, or the
    normalised edge-feature correlation), and the valid positions.

    Positions index the template's corner on the padded grid; only those
    whose template box lies inside the grid count (no wrap-around). Returns
    None when the template has no edges or does not fit. ``workers`` are the
    FFT threads.
    """
    shape = target.shape
    valid_shape = tuple(s - n + 1 for s, n in zip(shape, tpl.footprint.shape, strict=True))
    energy_t = float((tpl.features * tpl.features).sum())
    count = float(tpl.footprint.sum())
    if energy_t <= 0 or count <= 0 or min(valid_shape) < 1:
        return None
    box = tuple(slice(0, v) for v in valid_shape)
    if tpl.binned:  # mutual information of every translation
        ft = np.conjugate(padded_rfft3(tpl.features, shape, workers))
        fw = np.conjugate(padded_rfft3(tpl.footprint.astype(np.float32), shape, workers))
        inside = sfft.irfftn(fw * target.inside, s=shape, workers=workers)[box] / count
        ok = (inside >= MIN_INSIDE) & allowed[box]
        score = np.full(inside.shape, -1.0, np.float32)
        score[::stride, ::stride, ::stride] = joint_information(
            ft, target.spectra, shape, box, stride, workers
        )
        if stride > 1:
            sampled = np.zeros_like(ok)
            sampled[::stride, ::stride, ::stride] = True
            ok &= sampled
        return np.where(ok, score, -1.0), ok
    # the channels' correlations summed in the Fourier domain, one channel at a time
    spectrum, acc, product = target.buffers()
    for c in range(tpl.features.shape[0]):
        np.conjugate(padded_rfft3_into(tpl.features[c], shape, spectrum, workers), out=spectrum)
        if c == 0:
            np.multiply(spectrum, target.spectra[0], out=acc)
        else:
            acc += np.multiply(spectrum, target.spectra[c], out=product)
    num = cropped_irfft(acc, shape, valid_shape, workers)
    fw = padded_rfft3_into(tpl.footprint.astype(np.float32), shape, spectrum, workers)
    np.conjugate(fw, out=fw)
    np.multiply(fw, target.energy, out=product)
    energy_s = cropped_irfft(product, shape, valid_shape, workers)
    np.multiply(fw, target.inside, out=product)
    inside = cropped_irfft(product, shape, valid_shape, workers)
    inside /= count
    floor = 0.25 * energy_t
    score = num / np.sqrt(np.maximum(energy_s, floor) * energy_t)
    ok = (inside >= MIN_INSIDE) & allowed[box]
    return np.where(ok, score, -1.0), ok


def allowed_box(
    target: Target, half: tuple[int, int, int], lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Padded-grid positions (template corner) whose template centre lies in [lo, hi]."""
    origin = target.index_to_point(np.zeros(3))
    axes = []
    for k, n in enumerate(target.shape):
        centre = origin[k] + (np.arange(n) + half[k]) * target.grid.spacing[k]
        axes.append((centre >= lo[k] - 1e-9) & (centre <= hi[k] + 1e-9))
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def scan(
    target: Target,
    small: GridImage,
    mask: np.ndarray | None,
    rotations: np.ndarray,
    scales: tuple[float, ...],
    eps: Any,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
    progress: Any = None,
    stride: int = 1,
) -> tuple[list[Hypothesis], list[float]]:
    """The best position of every (orientation, scale), and scores of random positions.

    Mutual information is scored at every ``stride``-th translation only.
    ``progress(done, total)`` is called (from this thread) as orientations
    finish.
    """
    found: list[Hypothesis] = []
    background: list[float] = []
    allowed_cache: dict[tuple[int, int, int], np.ndarray] = {}
    poses = [(i, rotation, scale) for i, rotation in enumerate(rotations) for scale in scales]
    threads = threads_for(len(poses))
    workers = 1 if threads > 1 else -1  # templates in parallel, or each FFT on every core

    def one(pose: tuple[int, np.ndarray, float]) -> tuple[Template, Any]:
        tpl = make_template(small, mask, pose[1], pose[2], eps)
        allowed = allowed_cache.get(tpl.half)
        if allowed is None:
            allowed = allowed_cache.setdefault(tpl.half, allowed_box(target, tpl.half, lo, hi))
        return tpl, scores(target, tpl, allowed, stride, workers)

    for (i, rotation, scale), (tpl, got) in zip(
        poses, ordered_map(one, poses, threads), strict=True
    ):
        if got is not None:
            score, ok = got
            flat = int(np.argmax(score))
            best = float(score.flat[flat])
            if best > 0:
                corner = np.array(np.unravel_index(flat, score.shape))
                centre = target.index_to_point(corner + np.asarray(tpl.half))
                found.append(Hypothesis(rotation, scale, centre, small.center, best))
                valid = np.flatnonzero(ok)
                if valid.size:
                    size = min(BASELINE_SAMPLES, valid.size)
                    picks = rng.choice(valid, size=size, replace=False)
                    background.extend(score.flat[picks].tolist())
        if progress is not None and scale == scales[-1]:
            progress(i + 1, len(rotations))
    return found, background
