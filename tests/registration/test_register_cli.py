"""`coframe register` recovers known transforms of small multimodal phantoms."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import VOXEL, Pair, centre
from typer.testing import CliRunner

from coframe.app.workspace import load_workspace
from coframe.cli import app
from coframe.core.errors import TransformError
from coframe.registration.inputs import WorkImage, box_points
from coframe.registration.intensity import moments_step
from coframe.transforms.affine import Affine
from coframe.transforms.base import Chain
from coframe.transforms.bspline import BSpline
from coframe.transforms.formats.itk import write_itk


def _about_centre(linear: np.ndarray, shift: tuple[float, float, float]) -> Affine:
    c = centre()
    return Affine.from_linear(linear, c + np.asarray(shift) - linear @ c)


def _rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _register(runner: CliRunner, pair: Pair, *args: str) -> object:
    return runner.invoke(app, ["register", "moving", "fixed", "-w", str(pair.root), *args])


def test_rigid_recovered_and_stored_with_provenance(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    truth = _about_centre(_rotation_z(7.0), (2500.0, -2000.0, 3000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    result = _register(runner, pair, "--steps", "moments,rigid", "--set", "init=identity")
    assert result.exit_code == 0, result.output
    assert "rigid" in result.output and "stored" in result.output
    assert pair.tre_vox(pair.edge()) < 0.25
    ws = load_workspace(pair.root)
    (edge,) = ws.edges
    assert (edge.source, edge.target) == ("fixed", "moving")
    assert edge.file == "transforms/fixed-to-moving.tfm"
    prov = edge.provenance
    assert prov["metric"]["after"] < prov["metric"]["before"]
    assert "register" in prov["command"] and "--steps" in prov["command"]
    assert {"coframe", "numpy", "SimpleITK"} <= set(prov["software"])
    assert prov["levels"]["fixed"]["path"] == "s0"
    # the default preset (xray-to-fibsem) removes FIB-SEM slice drift, then refits
    assert [s["name"] for s in prov["steps"]] == ["moments", "rigid", "drift", "rigid"]


def test_affine_recovered_with_default_preset_and_json(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    linear = _rotation_z(-5.0) @ np.diag([1.06, 0.96, 1.03])
    linear[0, 2] += 0.03
    truth = _about_centre(linear, (-2000.0, 1500.0, 2000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    result = _register(runner, pair, "--json", "--set", "init=identity")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    steps = ["moments", "rigid", "affine", "drift", "affine"]
    assert [s["name"] for s in report["steps"]] == steps
    assert report["stored"].endswith("fixed-to-moving.tfm")
    assert report["metric"]["after"] < report["metric"]["before"]
    assert pair.tre_vox(pair.edge()) < 0.2


def test_refuses_to_overwrite_an_edge_without_force(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    truth = _about_centre(np.eye(3), (1500.0, 0.0, -1000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    assert _register(runner, pair, "--steps", "rigid").exit_code == 0
    again = _register(runner, pair, "--steps", "rigid")
    assert again.exit_code == 2
    assert "already exists" in again.output and "--force" in again.output
    forced = _register(runner, pair, "--steps", "rigid", "--init-edge", "--force")
    assert forced.exit_code == 0, forced.output
    assert "start from edge" in forced.output
    assert pair.tre_vox(pair.edge()) < 0.25


@pytest.mark.slow
def test_start_from_an_inverse_bspline_edge_with_a_jump(
    runner: CliRunner, make_pair: Callable[..., Pair], tmp_path: Path
) -> None:
    """FIXED -> MOVING is the inverse of a B-spline edge: points in its jump have no inverse."""
    truth = _about_centre(np.eye(3), (1500.0, 0.0, -1000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    size = (9, 9, 9)  # valid region -2000..46000: its upper edge lies inside the images
    shift = np.broadcast_to([-600.0, 0.0, 0.0], (*size, 3))  # nothing lands in z 45400..46000
    spline = BSpline([-10000.0] * 3, [8000.0] * 3, np.eye(3), size, shift)
    edge = Chain((spline, truth.inverse()))  # moving -> fixed
    with pytest.raises(TransformError, match="did not converge"):
        edge.inverse().apply(box_points(np.zeros(3), np.full(3, 47000.0), 33))
    write_itk(edge, tmp_path / "moving-to-fixed.h5")
    linked = runner.invoke(
        app, ["link", "moving", "fixed", str(tmp_path / "moving-to-fixed.h5"), "-w", str(pair.root)]
    )
    assert linked.exit_code == 0, linked.output
    result = _register(runner, pair, "--steps", "rigid", "--init-edge", "--force")
    assert result.exit_code == 0, result.output
    assert "start from edge" in result.output
    assert pair.tre_vox(pair.edge()) < 0.5


def test_level_choice_reads_the_level_nearest_the_other_voxel(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    truth = _about_centre(np.eye(3), (2000.0, 1000.0, 0.0))
    pair = make_pair(truth.inverse(), truth=truth, fixed_levels=3)
    result = _register(
        runner, pair, "--steps", "rigid", "--set", "working.voxel_size=2000", "--json"
    )
    assert result.exit_code == 0, result.output
    levels = json.loads(result.output)["levels"]
    assert levels["fixed"]["path"] == "s1"
    assert levels["fixed"]["voxel_size"] == [2 * VOXEL] * 3
    assert pair.tre_vox(pair.edge()) < 0.4


def test_auto_level_follows_the_coarser_image_and_never_reads_s0(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    truth = _about_centre(np.eye(3), (1500.0, -2000.0, 1000.0))
    pair = make_pair(truth.inverse(), truth=truth, fixed_levels=3, moving_voxel=2 * VOXEL)
    result = _register(runner, pair, "--steps", "moments,rigid", "--json")
    assert result.exit_code == 0, result.output
    levels = json.loads(result.output)["levels"]
    assert (levels["fixed"]["path"], levels["moving"]["path"]) == ("s1", "s0")
    assert levels["fixed"]["region_shape"] == [24, 24, 24]
    assert pair.tre_vox(pair.edge()) < 0.6  # in 1000 nm voxels: 0.3 working voxels


@pytest.mark.slow
def test_multi_start_finds_a_pose_far_from_identity(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    linear = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) @ _rotation_z(8.0)
    truth = _about_centre(linear, (1000.0, -1500.0, 1000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    args = ["--steps", "rigid,affine", "--set", "init=identity", "--json"]
    plain = _register(runner, pair, *args)
    assert plain.exit_code == 0, plain.output
    assert pair.tre_vox(pair.edge()) > 3.0
    result = _register(runner, pair, *args, "--multi-start", "--force")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["steps"]
    assert steps[0]["name"] == "multi-start" and "90 deg about z" in steps[0]["note"]
    assert pair.tre_vox(pair.edge()) < 0.25


def test_user_preset_file_and_overrides(
    runner: CliRunner, make_pair: Callable[..., Pair], tmp_path: Path
) -> None:
    truth = _about_centre(np.eye(3), (1000.0, 2000.0, -1000.0))
    pair = make_pair(truth.inverse(), truth=truth)
    preset = tmp_path / "mine.yaml"
    preset.write_text("steps: [rigid]\nmetric: {name: correlation}\nsampling: {points: 3000}\n")
    result = _register(runner, pair, "--preset", str(preset), "--set", "seed=5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metric"]["name"] == "correlation"
    assert [s["name"] for s in report["steps"]] == ["rigid"]
    prov = load_workspace(pair.root).edges[0].provenance
    assert prov["parameters"]["preset"] == "user" and prov["parameters"]["seed"] == 5
    assert prov["parameters"]["sampling"]["points"] == [3000]
    assert pair.tre_vox(pair.edge()) < 0.3


def test_moments_keep_a_good_start_when_the_fields_of_view_differ() -> None:
    """Centres of mass of unequal fields of view must not undo a good initial map."""
    fixed = np.zeros((16, 16, 16), np.float32)
    fixed[6:10, 6:10, 6:10] = 1.0
    moving = np.zeros((32, 32, 32), np.float32)  # a wider view: the same blob plus another
    moving[6:10, 6:10, 6:10] = 1.0
    moving[24:30, 24:30, 24:30] = 1.0
    work_f = WorkImage("fixed", fixed, (1.0,) * 3, (0.0,) * 3, None, 0, "s0")
    work_m = WorkImage("moving", moving, (1.0,) * 3, (0.0,) * 3, None, 0, "s0")
    truth = Affine(np.eye(4))

    def evaluate(t: Affine) -> float:  # lower is better; the true map scores 0
        return float(np.abs(t.matrix - truth.matrix).sum())

    kept, report = moments_step(work_f, work_m, truth, evaluate)
    assert kept is truth and not report.accepted and "undone" in report.note
    shifted = Affine.from_linear(np.eye(3), (3.0, 0.0, 0.0))
    moved, report = moments_step(
        work_f, work_f, shifted, lambda t: float(np.abs(t.translation).sum())
    )
    assert report.accepted and np.allclose(moved.translation, 0.0, atol=1e-6)


def test_a_true_eight_percent_magnification_is_kept(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    # the moving modality's voxels are 8% larger than their label says: FIXED -> MOVING
    # shrinks by 1/1.08 per axis, and the overlap the fixed box sees shrinks with it
    linear = _rotation_z(4.0) / 1.08
    truth = _about_centre(linear, (1500.0, -1000.0, 500.0))
    pair = make_pair(truth.inverse(), truth=truth)
    result = _register(runner, pair, "--preset", "multimodal", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert all(s["accepted"] for s in report["steps"] if s["name"] == "affine")
    edge = pair.edge().as_affine()
    assert edge is not None
    # a rigid result (determinant 1) would be 26% off
    assert np.linalg.det(edge.linear) == pytest.approx(1 / 1.08**3, rel=0.05)
    assert pair.tre_vox(edge) < 0.3
    assert report["trust"]["trusted"] is True
