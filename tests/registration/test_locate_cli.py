"""``coframe locate`` through the CLI: outputs, the stored 2D -> 3D edge, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from locate_synthetic import QUICK, blob_phantom, extract_section, random_pose
from typer.testing import CliRunner

from coframe.app.workspace import load_workspace
from coframe.cli import app
from coframe.registration.locate_geometry import GridImage, Pose
from coframe.volumes.open import open_volume
from coframe.volumes.write import write_tiff

VOXEL = 1000.0
PIXEL = 500.0
SHAPE = (44, 52)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pose, GridImage]:
    """Image files: a 40^3 phantom volume, a section cut from it, a noise section, a big one."""
    root = tmp_path_factory.mktemp("locate-images")
    volume = blob_phantom((40, 40, 40), VOXEL, seed=5)
    rng = np.random.default_rng(3)
    pose = random_pose(volume, (SHAPE[0] * PIXEL, SHAPE[1] * PIXEL), rng, margin=VOXEL)
    section = extract_section(volume, pose, SHAPE, PIXEL, rng=rng, blur=1.0, noise=0.2, invert=True)
    write_tiff(root / "volume.tif", volume.array, VOXEL)
    # the section file puts pixel (0, 0) at the origin: shift the pose accordingly
    write_tiff(root / "section.tif", section.array, PIXEL)
    shifted = Pose(pose.center, pose.linear, pose.section_center - np.asarray(section.origin))
    # the same pose seen in another contrast: mid-range values brightest, both ends dark
    other = GridImage(non_monotonic(volume.array), volume.spacing, volume.origin)
    cut = extract_section(other, pose, SHAPE, PIXEL, rng=rng, blur=1.0, noise=0.2)
    write_tiff(root / "other.tif", cut.array, PIXEL)
    noise = rng.standard_normal(SHAPE).astype(np.float32)
    write_tiff(root / "noise.tif", noise, PIXEL)
    write_tiff(root / "big.tif", np.zeros((30, 30), np.float32), 2000.0)
    return root, shifted, section


def non_monotonic(array: np.ndarray) -> np.ndarray:
    """A contrast neither the volume's nor its inverse: a bump over the normalised values.

    The bump sits between the background and the cells: both the darkest and the
    brightest parts of the volume turn dark (its values correlate with the volume's at
    about 0.03).
    """
    v = (array - array.min()) / np.ptp(array)
    return (np.exp(-(((v - 0.2) / 0.1) ** 2)) + 0.3 * v).astype(np.float32)


def _mapped_corners(runner: CliRunner, ws: Path, section: str) -> tuple[np.ndarray, np.ndarray]:
    """Three corners of the section and where its stored edge maps them in the volume."""
    corners = np.array([[0.0, 0.0], [0.0, SHAPE[1] * PIXEL], [SHAPE[0] * PIXEL, 0.0]])
    args = ["points", section, "volume", json.dumps(corners.tolist()), "-w", str(ws)]
    points = runner.invoke(app, args)
    assert points.exit_code == 0, points.output
    return corners, np.array(json.loads(points.stdout)["coordinates"])


@pytest.fixture
def ws(scene: tuple[Path, Pose, GridImage], tmp_path: Path, runner: CliRunner) -> Path:
    """A workspace with images volume, section, noise and big."""
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    images = (("volume", "xray"), ("section", "tem"), ("other", "tem"), ("noise", "tem"))
    for name, modality in images:
        result = runner.invoke(
            app,
            ["add", name, str(scene[0] / f"{name}.tif"), "--modality", modality, "-w", str(root)],
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["add", "big", str(scene[0] / "big.tif"), "-w", str(root)])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.slow
def test_locate_stores_the_edge_and_writes_the_outputs(
    ws: Path, scene: tuple[Path, Pose, GridImage], runner: CliRunner
) -> None:
    _, truth, _ = scene
    result = runner.invoke(app, ["locate", *QUICK, "section", "volume", "--json", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"] and report["ncc"] < -0.8
    assert report["edge"] == "section -> volume"
    for key in ("transform", "matched_slice", "picture", "report"):
        assert Path(report["files"][key]).is_file()
    # the matched slice carries its pixel size
    matched = open_volume(report["files"]["matched_slice"])
    assert matched.levels[0].voxel_size == pytest.approx((PIXEL, PIXEL))
    assert matched.levels[0].shape == SHAPE
    # the edge maps section points where the true pose does
    edge = load_workspace(ws).edges[0]
    assert (edge.source, edge.target, edge.format) == ("section", "volume", "ngff")
    assert edge.provenance["metric"]["confidence"] == pytest.approx(report["confidence"], abs=1e-5)
    assert "locate" in edge.provenance["command"]
    corners, mapped = _mapped_corners(runner, ws, "section")
    assert np.abs(mapped - truth.apply(corners)).max() < 1.5 * VOXEL
    assert np.array(report["corners"]["volume"]).shape == (4, 3)
    # a second run refuses to overwrite
    again = runner.invoke(app, ["locate", *QUICK, "section", "volume", "-w", str(ws)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "--force" in again.stderr


@pytest.mark.slow
def test_a_section_of_non_monotonic_contrast_is_found_by_its_edges(
    ws: Path, scene: tuple[Path, Pose, GridImage], runner: CliRunner
) -> None:
    _, truth, _ = scene
    result = runner.invoke(app, ["locate", *QUICK, "other", "volume", "--json", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # intensities do not correlate; edges agree, and edge agreement is what the trust needs
    assert abs(report["ncc"]) < 0.6 and report["edges"] >= 0.7 and report["trustworthy"]
    corners, mapped = _mapped_corners(runner, ws, "other")
    assert np.abs(mapped - truth.apply(corners)).max() < 1.5 * VOXEL


def test_a_3d_image_as_section_is_refused(ws: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["locate", *QUICK, "volume", "volume", "-w", str(ws)])
    assert result.exit_code == 2
    assert "'volume'" in result.stderr and "2D section" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_section_larger_than_the_volume_is_refused(ws: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["locate", *QUICK, "big", "volume", "-w", str(ws)])
    assert result.exit_code == 2
    assert "'big'" in result.stderr and "smaller than the volume" in result.stderr


def test_a_bad_normal_is_refused(ws: Path, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["locate", *QUICK, "section", "volume", "--normal", "1,0", "-w", str(ws)]
    )
    assert result.exit_code == 2
    assert "--normal" in result.stderr


def test_too_few_search_pixels_are_refused(ws: Path, runner: CliRunner) -> None:
    args = ["locate", "section", "volume", "--search-pixels", "2", "-w", str(ws)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--search-pixels" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert load_workspace(ws).edges == ()


def test_an_unknown_search_score_is_refused(ws: Path, runner: CliRunner) -> None:
    args = ["locate", *QUICK, "section", "volume", "--search-score", "mi", "-w", str(ws)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "'mi'" in result.stderr and "auto, both, edges, ncc" in result.stderr
    assert "--search-score" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert load_workspace(ws).edges == ()


@pytest.mark.slow
def test_an_untrustworthy_pose_is_not_stored_unless_forced(ws: Path, runner: CliRunner) -> None:
    # what is stored is the subject here, not the search: a cone of normals keeps it short
    # (noise over the whole sphere: tests/registration/test_locate.py)
    cone = ["--normal", "1,0,0", "--max-tilt", "20"]
    result = runner.invoke(app, ["locate", *QUICK, *cone, "noise", "volume", "-w", str(ws)])
    assert result.exit_code == 2
    assert "not trustworthy" in result.stderr and "--force" in result.stderr
    assert load_workspace(ws).edges == ()
    assert not (ws / "locate").exists() and not (ws / "transforms").exists()
    forced = runner.invoke(
        app, ["locate", *QUICK, *cone, "noise", "volume", "--force", "-w", str(ws)]
    )
    assert forced.exit_code == 0, forced.output
    assert "NOT trustworthy" in forced.stdout
    assert [(e.source, e.target) for e in load_workspace(ws).edges] == [("noise", "volume")]
