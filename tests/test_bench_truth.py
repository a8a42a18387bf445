"""The full-pair benchmarks' truth (``benchmarks/truth.py``) agrees with SimpleITK.

The benchmark makes its warps, moving images and truth points with numpy and
scipy; here the same warp is built independently as a SimpleITK transform
(affine + sampled displacement field) and SimpleITK maps the points and
resamples the image.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]


def _truth_module():
    spec = importlib.util.spec_from_file_location("bench_truth", ROOT / "benchmarks" / "truth.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


truth = _truth_module()

SHAPE = (24, 28, 26)
VOXEL = np.array([2.0, 2.0, 2.0])


def _phantom() -> np.ndarray:
    rng = np.random.default_rng(3)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.random(SHAPE), 1.5)
    z, y, x = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    inside = ((z - 12) / 9) ** 2 + ((y - 14) / 11) ** 2 + ((x - 13) / 10) ** 2 < 1
    return ((image - image.min()) * 400 * inside).astype(np.float32)


def _warp(seed: int, deformable: bool):
    extent = np.array(SHAPE) * VOXEL
    centre = (np.array(SHAPE) - 1) / 2 * VOXEL
    return truth.random_warp(np.random.default_rng(seed), centre, extent, deformable)


@pytest.mark.parametrize("deformable", [False, True])
def test_truth_points_agree_with_simpleitk(deformable: bool) -> None:
    warp = _warp(5, deformable)
    fixed = _phantom()
    points, moving_points = truth.truth_points(
        fixed, VOXEL, warp, SHAPE, VOXEL, 1.0, 200, np.random.default_rng(1)
    )
    extent = np.array(SHAPE) * VOXEL
    tx = truth.sitk_transform(warp, -0.25 * extent, 1.5 * extent, 1.0)
    # SimpleITK maps the truth's moving points onto the benchmark's fixed points
    mapped = truth.sitk_apply(tx, moving_points)
    assert np.abs(mapped - points).max() < 0.02
    if deformable:
        assert np.abs(warp.displacement(points)).max() > 0.3  # the bumps do move the points
    else:  # the affine truth is the inverse affine, solved independently
        back = np.linalg.solve(warp.linear, (points - warp.shift).T).T
        assert np.allclose(back, moving_points, atol=1e-9)


def test_rendered_moving_image_agrees_with_simpleitk_resample() -> None:
    warp = _warp(7, True)
    fixed = _phantom()
    moving = truth.render_moving(fixed, VOXEL, warp, SHAPE, VOXEL, slab=5)
    extent = np.array(SHAPE) * VOXEL
    tx = truth.sitk_transform(warp, -0.25 * extent, 1.5 * extent, 1.0)
    image = sitk.GetImageFromArray(fixed)
    image.SetSpacing(tuple(VOXEL[::-1]))
    reference = sitk.Image([int(n) for n in SHAPE[::-1]], sitk.sitkFloat32)
    reference.SetSpacing(tuple(VOXEL[::-1]))
    expected = sitk.GetArrayFromImage(
        sitk.Resample(image, reference, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    )
    inside = (expected > 0) & (moving > 0)
    assert inside.mean() > 0.2
    # equal up to the field's sampling (1 mm grid) and the phantom's edge voxels
    difference = np.abs(moving - expected)[inside]
    assert np.median(difference) < 0.01 * fixed.max()
    assert np.mean(difference < 0.05 * fixed.max()) > 0.98


def test_seeded_warps_repeat_and_differ() -> None:
    a, b, c = _warp(1, True), _warp(1, True), _warp(2, True)
    assert np.array_equal(a.linear, b.linear) and np.array_equal(a.amplitudes, b.amplitudes)
    assert not np.allclose(a.linear, c.linear)
