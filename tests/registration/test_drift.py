"""Slice-wise intensity drift: estimated against the other image, removed, used by register."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from conftest import SHAPE, VOXEL, Pair, centre
from phantoms import Scene, grid_points, inverted
from typer.testing import CliRunner

from coframe.app.workspace import load_workspace
from coframe.cli import app
from coframe.registration.drift import estimate_slice_drift
from coframe.registration.inputs import WorkImage
from coframe.registration.preset_sections import drift_image
from coframe.transforms.affine import Affine, Identity


def _drift(n: int, seed: int = 2) -> np.ndarray:
    """Slow drift plus slice jitter, in grey levels."""
    rng = np.random.default_rng(seed)
    z = np.arange(n)
    return 12.0 * np.sin(2 * np.pi * z / (0.7 * n)) + 4.0 * np.sin(z / 1.3) + rng.normal(0, 2, n)


def _scene_pair(shape: tuple[int, ...], offsets: np.ndarray) -> tuple[WorkImage, WorkImage]:
    scene = Scene.random(7, np.zeros(3), np.array(shape) * VOXEL)
    values = scene(grid_points(shape, VOXEL, np.zeros(3))).reshape(shape)
    rng = np.random.default_rng(3)
    fib = 60 + 120 * values + offsets[:, None, None] + rng.normal(0, 3, shape)
    xray = inverted(values) + rng.normal(0, 3, shape)
    mask = np.ones(shape, dtype=bool)
    mask[:, :3] = False  # a masked band stays untouched
    work = (VOXEL,) * 3, (0.0,) * 3
    return (
        WorkImage("fib", fib.astype(np.float32), *work, mask, 0, "s0"),
        WorkImage("xray", xray.astype(np.float32), *work, None, 0, "s0"),
    )


def test_offsets_of_every_slice_are_recovered_and_removed() -> None:
    shape = (40, 36, 36)
    truth = _drift(shape[0])
    fib, xray = _scene_pair(shape, truth)
    drift = estimate_slice_drift(fib, xray, Identity(3))
    assert drift.measured.all()
    expected = truth - truth.mean()
    assert np.abs(drift.offsets - expected).max() < 2.0  # of a 30-grey-level spread
    assert "40 slices along axis z (40 measured)" in drift.summary()
    corrected = drift.correct(fib)
    inside = corrected.array[:, 3:]
    per_slice = inside.mean(axis=(1, 2)) - fib.array[:, 3:].mean(axis=(1, 2))
    np.testing.assert_allclose(per_slice, -drift.offsets, atol=1e-3)
    assert np.array_equal(corrected.array[:, :3], fib.array[:, :3])


def test_no_drift_gives_small_offsets_and_a_map_is_followed() -> None:
    shape = (32, 32, 32)
    fib, xray = _scene_pair(shape, np.zeros(shape[0]))
    assert np.abs(estimate_slice_drift(fib, xray, Identity(3)).offsets).max() < 1.5
    # the reference seen through a shift: offsets come out only with the right map
    shift = np.array([0.0, 0.0, 3.0 * VOXEL])
    drifted, _ = _scene_pair(shape, _drift(shape[0]))
    moved = WorkImage("xray", xray.array, xray.voxel_size, tuple(shift), None, 0, "s0")
    right = estimate_slice_drift(drifted, moved, Affine.from_linear(np.eye(3), shift))
    expected = _drift(shape[0]) - _drift(shape[0]).mean()
    assert np.abs(right.offsets - expected).max() < 2.5


def test_slices_without_enough_pairs_take_their_neighbours_offsets() -> None:
    shape = (24, 32, 32)
    fib, xray = _scene_pair(shape, _drift(shape[0]))
    mask = fib.mask.copy()
    mask[10] = False
    fib = WorkImage("fib", fib.array, fib.voxel_size, fib.origin, mask, 0, "s0")
    drift = estimate_slice_drift(fib, xray, Identity(3))
    assert not drift.measured[10] and drift.measured.sum() == shape[0] - 1
    assert drift.offsets[10] == pytest.approx(0.5 * (drift.offsets[9] + drift.offsets[11]))


def _drifting(fixed: np.ndarray) -> np.ndarray:
    """The fixed (FIB-SEM) image with 3x the slice drift added."""
    offsets = 3.0 * _drift(SHAPE[0])
    return np.clip(fixed + offsets[:, None, None], 1, 255).astype(np.uint8)


@pytest.mark.slow
def test_register_corrects_a_drifting_fixed_image(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    c = centre()
    a = np.deg2rad(4.0)
    linear = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    truth = Affine.from_linear(linear, c + np.array([1500.0, -1000.0, 800.0]) - linear @ c)
    pair = make_pair(truth.inverse(), truth=truth, fixed_array=_drifting)
    args = ["register", "moving", "fixed", "-w", str(pair.root), "--set", "init=identity"]
    result = runner.invoke(app, [*args, "--set", "drift.image=fixed", "--json"])
    assert result.exit_code == 0, result.output
    names = [s["name"] for s in json.loads(result.stdout)["steps"]]
    assert names[-2:] == ["drift", "affine"]
    assert pair.tre_vox(pair.edge()) < 0.2

    # starting from the stored edge, the drift is measured before any step
    again = runner.invoke(
        app, [*args[:-2], "--set", "drift.image=fixed", "--steps", "rigid", "--force", "--json"]
    )
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["initial"] == "edge"
    assert [s["name"] for s in report["steps"]] == ["drift", "rigid"]
    assert pair.tre_vox(pair.edge()) < 0.2

    bad = runner.invoke(app, [*args, "--set", "drift.image=both", "--force"])
    assert bad.exit_code == 2
    assert "drift.image 'both'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "fibsem" in bad.stderr  # a modality names the image too


def test_drift_named_by_modality_follows_the_image() -> None:
    assert drift_image("fibsem", "xray", "fibsem") == "fixed"
    assert drift_image("fibsem", "fibsem", "xray") == "moving"
    assert drift_image("fibsem", "xray", "tem") == "none"
    assert drift_image("fibsem", None, None) == "none"
    assert drift_image("moving", "xray", "fibsem") == "moving"


@pytest.mark.slow
@pytest.mark.parametrize("image", ["moving", "fibsem"])
def test_register_corrects_a_drifting_moving_image(
    runner: CliRunner, make_pair: Callable[..., Pair], image: str
) -> None:
    """The drifting image may be the moving one: register the FIB-SEM onto the X-ray.

    Named by its role or by its modality (as the shipped preset does).
    """
    c = centre()
    a = np.deg2rad(-3.0)
    linear = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    truth = Affine.from_linear(linear, c + np.array([1200.0, -900.0, 700.0]) - linear @ c)
    pair = make_pair(truth.inverse(), truth=truth, fixed_array=_drifting)
    args = ["register", "fixed", "moving", "-w", str(pair.root), "--set", "init=identity"]
    result = runner.invoke(app, [*args, "--set", f"drift.image={image}", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    drift = [s for s in report["steps"] if s["name"] == "drift"]
    assert len(drift) == 1 and "moving image" in drift[0]["note"]
    ws = load_workspace(pair.root)
    (edge,) = [e for e in ws.edges if (e.source, e.target) == ("moving", "fixed")]
    # moving -> fixed is the inverse of the true fixed -> moving map
    pair_inverse = Pair(pair.root, truth.inverse(), pair.scene)
    assert pair_inverse.tre_vox(ws.load_edge(edge)) < 0.2
