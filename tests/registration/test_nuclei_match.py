"""Nucleus point sets: extraction from labels and blobs, matching with no start, the gate."""

from __future__ import annotations

import numpy as np
import pytest
from nuclei_phantoms import lattice, render, rotation
from scipy import ndimage

from coframe.core.errors import RegistrationError
from coframe.registration import nuclei_points
from coframe.registration.nuclei import judge_match
from coframe.registration.nuclei_match import check_points, match_points
from coframe.registration.nuclei_points import (
    nucleus_level,
    points_from_intensity,
    points_from_labels,
)
from coframe.registration.preset_sections import NucleiConfig
from coframe.volumes.volume import Level, Volume


class _Array:
    """An in-memory array source with chunks, counting the voxels read."""

    def __init__(self, array: np.ndarray, chunks: tuple[int, ...] = (16, 16, 16)) -> None:
        self.array, self.chunks, self.read_voxels, self.largest = array, chunks, 0, 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        out = self.array[box]
        self.read_voxels += out.size
        self.largest = max(self.largest, out.size)
        return out


def _volume(*levels: np.ndarray, voxel: float = 1.0, modality: str | None = None) -> Volume:
    made = tuple(
        Level(f"s{i}", _Array(a), (voxel * 2**i,) * 3, (voxel * (2**i - 1) / 2,) * 3)
        for i, a in enumerate(levels)
    )
    return Volume("mem", "mem", ("z", "y", "x"), "micrometer", made, modality)


def _cloud(seed: int, n_side: int = 9) -> np.ndarray:
    return lattice(seed, 0.0, 10.0 * n_side, spacing=10.0)


def _pose(seed: int, linear_extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    linear = (1 + rng.uniform(-0.05, 0.05)) * rotation(rng.uniform(0, 360), rng.uniform(-20, 20))
    if linear_extra is not None:
        linear = linear @ linear_extra
    return linear, rng.uniform(-40, 40, 3)


def _sets(seed: int, linear: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FIXED: a sub-block with 30% missing; MOVING: all, 30% spurious, jittered (0.3)."""
    rng = np.random.default_rng(seed + 1)
    moving = _cloud(seed)
    lo = moving.mean(axis=0) - 22
    sub = moving[np.all((moving > lo) & (moving < lo + 44), axis=1)]
    fixed = np.linalg.solve(linear, (sub - shift).T).T
    fixed = fixed[rng.random(len(fixed)) >= 0.3]
    fixed = fixed + rng.normal(0, 0.3, fixed.shape)
    fake = rng.uniform(moving.min(axis=0), moving.max(axis=0), (int(0.3 * len(moving)), 3))
    moving = np.concatenate([moving, fake]) + rng.normal(0, 0.3, (len(moving) + len(fake), 3))
    return fixed, moving[rng.permutation(len(moving))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_found_with_missing_and_spurious_points(seed: int) -> None:
    linear, shift = _pose(seed)
    fixed, moving = _sets(seed, linear, shift)
    m = match_points(fixed, moving, tolerance=2.0)
    expected = fixed @ linear.T + shift
    assert np.max(np.linalg.norm(m.transform.apply(fixed) - expected, axis=1)) < 0.7
    assert m.inliers >= 0.9 * len(fixed) and m.runner_up < 0.5 * m.inliers
    assert m.rms < 0.8 and m.chance < 0.2 * m.inliers


def test_affine_found_with_the_affine_model() -> None:
    shear = np.array([[1.0, 0.04, 0.0], [0.0, 0.96, 0.03], [0.02, 0.0, 1.03]])
    linear, shift = _pose(5, shear)
    fixed, moving = _sets(5, linear, shift)
    m = match_points(fixed, moving, tolerance=2.0, model="affine")
    assert np.allclose(m.transform.linear, linear, atol=0.01)
    expected = fixed @ linear.T + shift
    assert np.max(np.linalg.norm(m.transform.apply(fixed) - expected, axis=1)) < 0.7


def test_unrelated_sets_are_not_trusted() -> None:
    rng = np.random.default_rng(3)
    fixed = rng.uniform(0, 50, (40, 3))
    moving = rng.uniform(0, 100, (300, 3))
    try:
        m = match_points(fixed, moving, tolerance=1.0)
    except RegistrationError:
        return  # refusing to propose a pose at all is as good
    assert judge_match(m, NucleiConfig(tolerance=1.0)).startswith("not trusted")


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (np.arange(12.0)[:, None] * np.ones(3), "on one line"),
        (np.c_[np.zeros(16), np.indices((4, 4)).reshape(2, -1).T * 10.0], "on one plane"),
        (np.eye(3), "3 nuclei found in FIXED but matching needs at least 5"),
    ],
)
def test_degenerate_sets_refused(points: np.ndarray, message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        check_points(points, "FIXED", 5)


def test_labels_give_centroids_volumes_and_axes_block_by_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nuclei_points, "BLOCK_VOXELS", 16**3)
    centres = _cloud(0, 4)[:20] + 4  # 4..44
    radii = np.full(len(centres), 3.0)
    fine = render((52, 52, 52), 1.0, centres, radii, np.arange(1, 21), np.uint32)
    coarse = fine[::2, ::2, ::2]  # nuclei 3 voxels across at s1: too coarse
    volume = _volume(fine, coarse)
    assert nucleus_level(volume, 4.0) == 0
    pts = points_from_labels(volume, (4.0, 10.0))
    ids = np.arange(1, 21)
    expected = np.array(ndimage.center_of_mass(fine > 0, fine, ids))
    assert np.array_equal(pts.ids, ids[np.isin(ids, np.unique(fine))])
    assert np.allclose(pts.centres, expected[pts.ids - 1], atol=1e-9)
    counts = ndimage.sum(np.ones_like(fine), fine, pts.ids)
    assert np.allclose(pts.volumes, counts)
    assert np.all(np.abs(pts.axes - 6.0) < 0.8)  # a ball's diameter on every axis
    # blocks of whole chunks were read, never the level at once
    assert volume.levels[0].array.largest <= 16**3


def test_labels_refused_when_empty_or_float() -> None:
    with pytest.raises(RegistrationError, match="holds no label"):
        points_from_labels(_volume(np.zeros((20, 20, 20), np.uint16)), (4.0, 10.0))
    with pytest.raises(RegistrationError, match="not integer label ids"):
        points_from_labels(_volume(np.ones((20, 20, 20), np.float32)), (4.0, 10.0))


@pytest.mark.parametrize("polarity", ["bright", "dark"])
def test_blobs_found_at_nucleus_scale_with_their_polarity(polarity: str) -> None:
    centres = _cloud(2, 4) + 4
    image = render((52, 52, 52), 1.0, centres, np.full(len(centres), 3.0), np.ones(len(centres)))
    sign = 1.0 if polarity == "bright" else -1.0
    noise = np.random.default_rng(0).normal(0, 0.15, image.shape)
    volume = _volume((100 + 60 * sign * image + 60 * noise).astype(np.float32))
    pts = points_from_intensity(volume, (4.0, 10.0), polarity).usable()
    nearest = np.min(np.linalg.norm(pts.centres[:, None] - centres[None], axis=2), axis=1)
    assert len(pts) >= 0.7 * len(centres) and np.all(nearest < 1.0)
    other = "dark" if polarity == "bright" else "bright"
    with pytest.raises(RegistrationError, match=f"no {other} blob"):
        points_from_intensity(volume, (4.0, 10.0), other, min_score=50)
