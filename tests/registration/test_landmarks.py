"""Landmark fits (rigid, similarity, affine, thin-plate spline), leave-one-out, CLI use."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SHAPE, VOXEL, Pair, centre
from typer.testing import CliRunner

from coframe.cli import app
from coframe.core.errors import RegistrationError
from coframe.registration.landmarks import check_count, fit, landmark_tre
from coframe.transforms.affine import Affine
from coframe.transforms.formats.bigwarp import write_bigwarp_landmarks
from coframe.transforms.point_pairs import landmarks_from_pairs


def _rotation(degrees: float, axis: int) -> np.ndarray:
    a = np.deg2rad(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return r


_TRUTHS = {
    "rigid": Affine.from_linear(_rotation(20, 0) @ _rotation(-10, 2), (5.0, -3.0, 2.0)),
    "similarity": Affine.from_linear(1.3 * _rotation(15, 1), (1.0, 2.0, -4.0)),
    "affine": Affine.from_linear(
        np.array([[1.1, 0.1, 0.0], [0.05, 0.9, 0.2], [0.0, -0.1, 1.2]]), (3.0, 0.0, 1.0)
    ),
}


@pytest.mark.parametrize("model", ["rigid", "similarity", "affine"])
def test_linear_fits_recover_the_map_exactly(model: str) -> None:
    fixed = np.random.default_rng(1).uniform(-50, 50, (12, 3))
    truth = _TRUTHS[model]
    result = fit(landmarks_from_pairs(fixed, truth.apply(fixed)), model)
    probe = np.random.default_rng(2).uniform(-60, 60, (30, 3))
    np.testing.assert_allclose(result.transform.apply(probe), truth.apply(probe), atol=1e-8)
    assert result.residuals.max() < 1e-8
    assert result.leave_one_out.shape == (12,) and result.leave_one_out.max() < 1e-8


def test_leave_one_out_exceeds_residuals_with_noisy_landmarks() -> None:
    rng = np.random.default_rng(3)
    fixed = rng.uniform(-50, 50, (15, 3))
    moving = _TRUTHS["affine"].apply(fixed) + rng.normal(0.0, 1.0, fixed.shape)
    result = fit(landmarks_from_pairs(fixed, moving, [f"p{i}" for i in range(15)]), "affine")
    assert 0.3 < result.residuals.mean() < result.leave_one_out.mean() < 3.0
    summary = result.summary(voxel=2.0)
    assert summary["pairs"] == 15 and set(summary["loo_per_point"]) == {f"p{i}" for i in range(15)}
    assert summary["loo_mean_vox"] == pytest.approx(summary["loo_mean"] / 2.0)


def test_thin_plate_spline_interpolates_and_reports_leave_one_out() -> None:
    rng = np.random.default_rng(4)
    fixed = rng.uniform(-50, 50, (20, 3))
    moving = fixed + 3.0 * np.sin(fixed / 30.0)
    result = fit(landmarks_from_pairs(fixed, moving), "tps")
    assert result.residuals.max() < 1e-6
    assert np.all(np.isfinite(result.leave_one_out)) and result.leave_one_out.max() > 1e-3
    stats = landmark_tre(result.transform, landmarks_from_pairs(fixed, moving), voxel=1.0)
    assert stats["max"] < 1e-6


def test_too_few_landmarks_name_the_count_and_the_flag() -> None:
    fixed = np.random.default_rng(5).uniform(0, 10, (3, 3))
    with pytest.raises(
        RegistrationError, match=r"3 active pairs .* needs at least 4 \(--landmarks"
    ):
        check_count(landmarks_from_pairs(fixed, fixed), "affine", "lm.csv")
    with pytest.raises(RegistrationError, match="unknown landmark model 'spline'"):
        check_count(landmarks_from_pairs(fixed, fixed), "spline", "lm.csv")


def _landmark_file(path: Path, fixed: np.ndarray, moving: np.ndarray) -> Path:
    return write_bigwarp_landmarks(path, landmarks_from_pairs(fixed, moving))


def _inner_points(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, (count, 3)) * np.array(SHAPE) * VOXEL


def test_landmarks_start_the_registration_and_held_out_ones_measure_it(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    c = centre()
    linear = _rotation(25, 0)
    truth = Affine.from_linear(linear, c + np.array([3000.0, -4000.0, 2000.0]) - linear @ c)
    pair = make_pair(truth.inverse(), truth=truth)
    rng = np.random.default_rng(6)
    start = _inner_points(8, 7)
    rough = truth.apply(start) + rng.normal(0.0, 1500.0, start.shape)
    held = _inner_points(10, 8)
    start_file = _landmark_file(pair.root / "start.csv", start, rough)
    eval_file = _landmark_file(pair.root / "eval.csv", held, truth.apply(held))
    result = runner.invoke(
        app,
        [
            "register", "moving", "fixed", "-w", str(pair.root), "--steps", "rigid", "--json",
            "--landmarks", str(start_file), "--eval-landmarks", str(eval_file),
            "--set", "landmark_model=rigid",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["initial"] == "landmarks"
    assert report["landmark_fit"]["model"] == "rigid" and report["landmark_fit"]["pairs"] == 8
    assert report["landmark_fit"]["loo_mean"] > 500.0
    assert report["tre"]["landmarks"]["n"] == 10
    assert report["tre"]["landmarks"]["mean_vox"] < 0.3
    assert pair.tre_vox(pair.edge()) < 0.3


def test_landmark_file_with_too_few_points_is_refused(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(None)
    points = _inner_points(3, 9)
    path = _landmark_file(pair.root / "few.csv", points, points)
    result = runner.invoke(
        app, ["register", "moving", "fixed", "-w", str(pair.root), "--landmarks", str(path)]
    )
    assert result.exit_code == 2
    assert "3 active pairs" in result.stderr and "needs at least 4" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
