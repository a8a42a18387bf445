"""Mirror-symmetric volumes: the symmetry plane is found and a section's mirror twin ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from locate_synthetic import QUICK, QUICK_PIXELS, blob_phantom, extract_section, grid_volume
from typer.testing import CliRunner

from coframe.app.workspace import load_workspace
from coframe.cli import app
from coframe.registration.locate import locate_section
from coframe.registration.locate_geometry import (
    GridImage,
    Pose,
    plane_basis,
    pose_errors,
    resample_grid,
)
from coframe.registration.locate_result import LocateOptions
from coframe.registration.locate_symmetry import (
    detect_symmetry,
    mirror_pose,
    mirror_profile,
    reflection,
)
from coframe.transforms.affine import Affine
from coframe.volumes.write import write_tiff

VOXEL = 1000.0
PIXEL = 500.0
SECTION = (28, 28)
#: The phantom below mirrors voxel i onto voxel 39 - i along x.
PLANE = 19.5 * VOXEL


def symmetric_phantom(noise: float = 0.005, seed: int = 11) -> GridImage:
    """A 32 x 32 x 40 blob phantom whose right half is the mirror image of its left half."""
    half = blob_phantom((32, 32, 20), VOXEL, seed=seed).array
    array = np.concatenate([half, half[:, :, ::-1]], axis=2)
    rng = np.random.default_rng(seed)
    array = array + rng.normal(0.0, noise, array.shape)
    return GridImage(array.astype(np.float32), (VOXEL,) * 3, (0.0, 0.0, 0.0))


def off_midline_pose() -> Pose:
    """A section tilted about 10 degrees from the z axis, wholly in the left half."""
    normal = np.array([1.0, 0.15, 0.1])
    e1, e2 = plane_basis(normal / np.linalg.norm(normal))
    c, s = np.cos(0.4), np.sin(0.4)
    linear = np.column_stack([e1, e2]) @ np.array([[c, -s], [s, c]])
    size = np.asarray(SECTION) * PIXEL
    return Pose(np.array([15000.0, 16000.0, 9500.0]), linear, size / 2.0)


@pytest.fixture(scope="module")
def volume() -> GridImage:
    return symmetric_phantom()


@pytest.fixture(scope="module")
def section(volume: GridImage) -> GridImage:
    rng = np.random.default_rng(2)
    return extract_section(
        volume, off_midline_pose(), SECTION, PIXEL, rng=rng, blur=1.0, noise=0.2, invert=True
    )


def test_a_volume_built_symmetric_about_an_x_plane_is_detected(volume: GridImage) -> None:
    (plane,) = detect_symmetry(resample_grid(volume, 1.5 * VOXEL))
    assert plane.axis == 2 and plane.axis_name == "x"
    assert plane.position == pytest.approx(PLANE, abs=0.25 * VOXEL)
    assert plane.ncc > 0.95
    positions, ncc = mirror_profile(volume, 2)
    # half-voxel steps of the plane; planes near the faces (overlap < half the axis) score 0
    assert np.allclose(np.diff(positions), VOXEL / 2)
    near_faces = (positions < 9.4 * VOXEL) | (positions > 29.6 * VOXEL)
    assert near_faces.sum() > 30 and np.all(ncc[near_faces] == 0.0)
    assert np.all(ncc[~near_faces] != 0.0)


def test_asymmetric_phantoms_have_no_symmetry() -> None:
    for seed in range(4):
        phantom = blob_phantom((48, 48, 48), VOXEL, seed=seed)
        assert detect_symmetry(resample_grid(phantom, 1.5 * VOXEL)) == ()


def test_a_symmetric_outline_on_a_zero_background_is_not_symmetry() -> None:
    # an ellipsoidal "head" on zeros: its outline mirrors about x = 23.5 voxels
    shape = (40, 44, 48)
    idx = np.indices(shape, dtype=float)
    centre = (np.asarray(shape) - 1) / 2.0
    radii = np.array([16.0, 18.0, 20.0])
    inside = np.sum(((idx - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2, 0) < 1
    content = blob_phantom(shape, VOXEL, seed=4).array
    head = GridImage((inside * (0.5 + content)).astype(np.float32), (VOXEL,) * 3, (0.0,) * 3)
    assert detect_symmetry(head) == ()
    # with content that mirrors too, it is symmetric
    mirrored = np.concatenate([content[:, :, :24], content[:, :, :24][:, :, ::-1]], axis=2)
    twin = GridImage((inside * (0.5 + mirrored)).astype(np.float32), (VOXEL,) * 3, (0.0,) * 3)
    planes = detect_symmetry(twin)
    assert [p.axis for p in planes] == [2]
    assert planes[0].position == pytest.approx(23.5 * VOXEL, abs=0.25 * VOXEL)


unit = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    normal=st.tuples(unit, unit, unit).filter(lambda v: np.linalg.norm(v) > 0.1),
    angle=st.floats(0.0, 2 * np.pi),
    centre=st.tuples(*[st.floats(-50.0, 50.0)] * 3),
    section_center=st.tuples(*[st.floats(0.0, 20.0)] * 2),
    scale=st.floats(0.5, 2.0),
    axis=st.integers(0, 2),
    position=st.floats(-30.0, 30.0),
    point=st.tuples(*[st.floats(-20.0, 40.0)] * 2),
)
def test_mirror_pose_reflects_every_section_point(
    normal: tuple[float, float, float],
    angle: float,
    centre: tuple[float, float, float],
    section_center: tuple[float, float],
    scale: float,
    axis: int,
    position: float,
    point: tuple[float, float],
) -> None:
    e1, e2 = plane_basis(np.asarray(normal))
    c, s = np.cos(angle), np.sin(angle)
    linear = scale * np.column_stack([e1, e2]) @ np.array([[c, -s], [s, c]])
    pose = Pose(np.asarray(centre), linear, np.asarray(section_center))
    twin = mirror_pose(pose, axis, position)
    again = mirror_pose(twin, axis, position)
    assert np.allclose(again.center, pose.center) and np.allclose(again.linear, pose.linear)
    assert np.allclose(again.section_center, pose.section_center)
    r, t = reflection(axis, position)
    p = np.asarray(point)
    assert np.allclose(twin.apply(p), pose.apply(p) @ r.T + t, atol=1e-9)
    assert np.allclose(Affine(twin.matrix).apply(p), twin.apply(p)[0], atol=1e-9)
    # the in-plane frame changes hand: the twin's normal is minus the reflected normal
    assert np.allclose(twin.normal, -(r @ pose.normal))
    assert twin.apply(p)[0][axis] - position == pytest.approx(position - pose.apply(p)[0][axis])


def test_the_mirror_pose_cuts_the_same_section_from_a_symmetric_volume() -> None:
    exact = symmetric_phantom(noise=0.0)
    pose = off_midline_pose()
    here = extract_section(exact, pose, SECTION, PIXEL, order=1)
    there = extract_section(exact, mirror_pose(pose, 2, PLANE), SECTION, PIXEL, order=1)
    assert np.abs(here.array - there.array).max() < 1e-5 * float(np.abs(here.array).max())
    assert float(here.array.std()) > 0.05


@pytest.mark.slow
def test_an_off_midline_section_ties_with_its_mirror_twin(
    volume: GridImage, section: GridImage
) -> None:
    result = locate_section(
        grid_volume(section),
        grid_volume(volume),
        LocateOptions(max_tilt=20.0, search_pixels=QUICK_PIXELS),
    )
    assert [p.axis_name for p in result.symmetry] == ["x"]
    assert result.mirror is not None
    assert result.mirror.plane.axis == 2
    assert result.mirror.plane.position == pytest.approx(PLANE, abs=0.25 * VOXEL)
    assert result.mirror_tie and not result.trustworthy
    assert result.confidence < 0.05
    assert result.runner_up >= result.mirror.score
    # one of the two is the true pose, the other its reflection
    truth = Affine(off_midline_pose().matrix)
    twin = Affine(mirror_pose(off_midline_pose(), 2, PLANE).matrix)
    found = [result.affine, result.mirror.affine]
    for a, b in ((truth, twin), (twin, truth)):
        if pose_errors(found[0], a, section.center, VOXEL)["normal_deg"] < 90:
            for f, expected in zip(found, (a, b), strict=True):
                err = pose_errors(f, expected, section.center, VOXEL)
                assert err["normal_deg"] < 3.0 and err["offset_voxels"] < 1.0, err
                assert err["in_plane"] < 1.5 * VOXEL, err
            break
    else:
        pytest.fail("the located pose is neither the truth nor its mirror")
    summary = result.summary()
    assert summary["mirror"]["tie"] is True and summary["mirror"]["axis"] == "x"
    assert summary["symmetry"][0]["axis"] == "x"
    json.dumps(summary)


@pytest.mark.slow
def test_a_near_point_chooses_between_the_twins(volume: GridImage, section: GridImage) -> None:
    centre = off_midline_pose().apply(section.center)[0]
    options = LocateOptions(
        max_tilt=20.0, near=tuple(centre + 1000.0), near_radius=3000.0, search_pixels=QUICK_PIXELS
    )
    result = locate_section(grid_volume(section), grid_volume(volume), options)
    assert result.mirror is None and not result.mirror_tie
    err = pose_errors(result.affine, Affine(off_midline_pose().matrix), section.center, VOXEL)
    assert err["normal_deg"] < 3.0 and err["offset_voxels"] < 1.0, err
    assert result.trustworthy


@pytest.mark.slow
def test_locate_cli_reports_the_tie_and_stores_nothing_unless_forced(
    volume: GridImage, section: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    write_tiff(tmp_path / "volume.tif", volume.array, VOXEL)
    write_tiff(tmp_path / "section.tif", section.array, PIXEL)
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    for name in ("volume", "section"):
        added = runner.invoke(app, ["add", name, str(tmp_path / f"{name}.tif"), "-w", str(ws)])
        assert added.exit_code == 0, added.output
    args = ["locate", *QUICK, "section", "volume", "--max-tilt", "20", "-w", str(ws)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "MIRROR TIE" in refused.stderr and "mirror-symmetric about x = " in refused.stderr
    assert "--near" in refused.stderr and "--normal" in refused.stderr
    assert "--force" in refused.stderr
    assert load_workspace(ws).edges == ()
    assert not (ws / "locate").exists() and not (ws / "transforms").exists()
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "NOT trustworthy" in forced.stdout
    (tie,) = [line for line in forced.stdout.splitlines() if "MIRROR TIE" in line]
    assert "--near" in tie
    (edge,) = load_workspace(ws).edges
    assert edge.provenance["metric"]["mirror_tie"] is True
    assert edge.provenance["parameters"]["symmetry"][0]["axis"] == "x"
    report = json.loads((ws / "locate" / "section-in-volume" / "locate.json").read_text())
    assert report["mirror"]["tie"] is True and not report["trustworthy"]
