"""`coframe nuclei` and `coframe register --fixed-labels/--steps nuclei` on nucleus phantoms."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from nuclei_phantoms import UM, NucleiScene, about, make_scene, rotation
from phantoms import write_image
from typer.testing import CliRunner

from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.transforms.affine import Affine
from coframe.transforms.base import Transform

SIMILARITY = about(1.04 * rotation(70.0, 8.0), 24.0, (14.0, 12.0, 17.0))


def _workspace(root: Path, scene: NucleiScene) -> Path:
    ws = init_workspace(root)
    ws = ws.add_image("xray", scene.xray, "xray", "xray")
    ws = ws.add_image("em", scene.em, "fibsem", "em")
    ws = ws.add_image("lab", scene.labels, "labels", "em")
    ws.save()
    return root


def _edge(root: Path, source: str = "em", target: str = "xray") -> Transform:
    ws = load_workspace(root)
    (edge,) = [e for e in ws.edges if (e.source, e.target) == (source, target)]
    return ws.load_edge(edge)


def _error_um(estimated: Transform, truth: Affine) -> float:
    points = np.random.default_rng(3).uniform(8, 40, (400, 3)) * UM
    return float(np.max(np.linalg.norm(estimated.apply(points) - truth.apply(points), axis=1)))


def _copy(root: Path, tmp_path: Path) -> Path:
    work = tmp_path / "ws"
    shutil.copytree(root, work)
    return work


def _report(output: str) -> dict:
    return json.loads(output[output.index("{") : output.rindex("}") + 1])


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NucleiScene]:
    root = tmp_path_factory.mktemp("nuclei")
    scene = make_scene(root, SIMILARITY)
    return _workspace(root, scene), scene


def test_register_from_labels_recovers_similarity_and_hands_off_landmarks(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    root, scene = scene_root
    work = _copy(root, tmp_path)
    result = runner.invoke(
        app, ["register", "xray", "em", "-w", str(work), "--fixed-labels", "lab", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = _report(result.stdout)
    nuclei = report["nuclei"]
    assert nuclei["trusted"] and nuclei["inliers"] >= 0.6 * nuclei["candidates"]
    assert nuclei["rms_um"] < 1.0 and nuclei["loo_tre_um"] < 1.0
    stored = _edge(work)
    assert _error_um(stored, scene.truth) < 1.0 * UM  # within one X-ray voxel
    pairs = Path(report["nuclei_landmarks"])
    assert pairs.parent == Path(report["stored"]).parent and pairs.suffix == ".csv"
    # the BigWarp file links as an edge that maps like the stored one
    linked = runner.invoke(app, ["link", "em", "xray", str(pairs), "-w", str(work), "--force"])
    assert linked.exit_code == 0, linked.output
    points = np.random.default_rng(1).uniform(0, 48, (200, 3)) * UM
    assert np.allclose(_edge(work).apply(points), stored.apply(points), atol=1.0)


def test_nuclei_step_from_two_intensity_images(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    """Dark EM nuclei against bright X-ray ones, no labels, no intensity step after."""
    root, scene = scene_root
    work = _copy(root, tmp_path)
    result = runner.invoke(
        app, ["register", "xray", "em", "-w", str(work), "--steps", "nuclei", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = _report(result.stdout)
    assert report["nuclei"]["fixed_kind"] == "dark" and report["nuclei"]["moving_kind"] == "bright"
    assert [s["name"] for s in report["steps"]][0] == "nuclei"
    assert _error_um(_edge(work), scene.truth) < 1.0 * UM


def test_affine_pose_recovered_with_the_affine_model(runner: CliRunner, tmp_path: Path) -> None:
    linear = (
        1.03
        * rotation(-125.0, 12.0)
        @ np.array([[1.0, 0.03, 0.0], [0.0, 0.97, 0.02], [0.02, 0.0, 1.02]])
    )
    truth = about(linear, 24.0, (16.0, 10.0, 15.0))
    root = _workspace(tmp_path, make_scene(tmp_path, truth, seed=4))
    result = runner.invoke(
        app,
        ["register", "xray", "em", "-w", str(root), "--fixed-labels", "lab", "--steps", "nuclei"]
        + ["--set", "nuclei.model=affine"],
    )
    assert result.exit_code == 0, result.output
    assert "nuclei (labels / bright, affine)" in result.output
    assert _error_um(_edge(root), truth) < 1.0 * UM


def test_nuclei_command_writes_labels_and_blobs(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    root, scene = scene_root
    out = tmp_path / "lab.csv"
    result = runner.invoke(app, ["nuclei", "lab", "-o", str(out), "-w", str(root)])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0].startswith("id,z,y,x,volume,d1,d2,d3")
    fields = [r.split(",") for r in rows[1:]]
    table = np.array([[float(v) for v in f[1:4]] for f in fields])
    whole = np.array([f[12] == "False" for f in fields])  # the partial column: not cut
    expected = scene.fixed_centres / UM
    nearest = np.min(np.linalg.norm(table[:, None] - expected[None], axis=2), axis=1)
    assert len(table) >= 0.5 * len(expected) and whole.sum() >= 0.5 * len(table)
    assert np.all(nearest[whole] < 0.2)  # a voxelised ball's centroid: within 0.2 voxel
    # a path outside any workspace, as an intensity image: bright blobs of the X-ray
    blobs = tmp_path / "xray.csv"
    result = runner.invoke(app, ["nuclei", str(scene.xray), "-o", str(blobs), "--modality", "xray"])
    assert result.exit_code == 0, result.output
    assert "bright" in result.output and blobs.read_text().count("\n") > 50
    again = runner.invoke(app, ["nuclei", str(scene.xray), "-o", str(blobs)])
    assert again.exit_code == 2 and "--force" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fixed-labels", "XRAY"], "not integer label ids"),
        (["--fixed-labels", "EMPTY"], "holds no label"),
        (["--fixed-labels", "em"], "looks like an intensity image"),
        (["--fixed-labels", "lab", "--set", "nuclei.min_inliers=500"], "matching needs at least"),
        (
            ["--steps", "nuclei", "--set", "nuclei.diameter=[30,40]"],
            "blob of 30-40 micrometres stands out",
        ),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(
    runner: CliRunner,
    scene_root: tuple[Path, NucleiScene],
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    root, scene = scene_root
    work = _copy(root, tmp_path)
    empty = write_image(tmp_path / "empty.zarr", np.zeros((16, 16, 16), np.uint16), UM, np.zeros(3))
    given = {"XRAY": str(scene.xray), "EMPTY": str(empty)}  # a float image; labels with no id
    args = [given.get(a, a) for a in args]
    result = runner.invoke(app, ["register", "xray", "em", "-w", str(work), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert load_workspace(work).edges == () and not (work / "transforms").exists()


def test_report_draws_the_matched_nuclei(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    root, _ = scene_root
    work = _copy(root, tmp_path)
    result = runner.invoke(
        app,
        ["register", "xray", "em", "-w", str(work), "--fixed-labels", "lab", "--steps", "nuclei"],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "report.html"
    made = runner.invoke(app, ["report", "-w", str(work), "-o", str(out), "--size", "96"])
    assert made.exit_code == 0, made.output
    html = out.read_text()
    assert "Matched nuclei" in html and "matched nuclei (em-to-xray.nuclei.csv)" in html


@pytest.mark.slow
def test_nuclei_and_intensity_search_both_run_and_agree(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    root, scene = scene_root
    work = _copy(root, tmp_path)
    result = runner.invoke(
        app,
        ["register", "xray", "em", "-w", str(work), "--fixed-labels", "lab", "--json"]
        + ["--steps", "search,nuclei,similarity"],
    )
    assert result.exit_code == 0, result.output
    report = _report(result.stdout)
    assert report["nuclei"]["agreement_vox"] < 2.0 and report["search"] is not None
    assert _error_um(_edge(work), scene.truth) < 1.0 * UM


def test_nuclei_of_another_sample_are_refused_and_nothing_stored(
    runner: CliRunner, scene_root: tuple[Path, NucleiScene], tmp_path: Path
) -> None:
    """Labels of a different tissue: no pose matches enough nuclei; the gate refuses it."""
    root, _ = scene_root
    work = _copy(root, tmp_path)
    other = make_scene(tmp_path / "other", SIMILARITY, seed=11)
    result = runner.invoke(
        app,
        ["register", "xray", "em", "-w", str(work), "--fixed-labels", str(other.labels)]
        + ["--steps", "nuclei"],
    )
    assert result.exit_code == 2, result.output
    said = result.stderr
    assert "another pose matches nearly as many nuclei" in said or "candidate nuclei match" in said
    assert "\n" not in said.strip() and "--force" in said
    assert load_workspace(work).edges == () and not (work / "transforms").exists()
