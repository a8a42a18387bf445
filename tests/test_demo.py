"""The demo sample: CLI, CellMap layout, crop, labels, X-ray, TEM and ground truth."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import yaml
import zarr
from scipy import ndimage

from coframe.app.workspace import load_workspace
from coframe.cli import app
from coframe.core.errors import OverwriteError
from coframe.demo.outputs import EM_PATH, FIELD_ARRAY, LABELS_PATH, SIZES, DemoSample
from coframe.demo.pipeline import DEMO_PIPELINE
from coframe.demo.sample import make_demo


@pytest.fixture
def sample(tiny_demo: DemoSample) -> DemoSample:
    return tiny_demo


def _attrs(path: Path) -> dict:
    return json.loads((path / ".zattrs").read_text())


@pytest.mark.slow
def test_cli_writes_the_tiny_demo(demo_cli_run: tuple[Path, str]) -> None:
    out, stdout = demo_cli_run
    for text in ("fibsem.zarr/recon-1/em/fibsem-uint8", "xray.zarr", "tem-1", "landmark pairs"):
        assert text in stdout
    headings = re.findall(r"^== (.+)$", stdout, re.M)
    assert headings == [title for title, _ in DEMO_PIPELINE] + ["QC report"]
    for rel in (
        "coframe.yaml",
        EM_PATH + "/s0/.zarray",
        LABELS_PATH + "/.zattrs",
        "xray.zarr/.zattrs",
    ):
        assert (out / rel).exists(), rel
    assert (out / "tem" / "section-1.tif").is_file() and (out / "tem" / "section-2.mrc").is_file()
    for name in ("fibsem_to_xray.json", "landmarks.csv", "landmarks.json", "tem_poses.json"):
        assert (out / "ground_truth" / name).is_file(), name


def test_cli_demo_refuses_existing_outputs_and_bad_sizes(
    demo_copy: DemoSample, runner, tmp_path: Path
) -> None:
    out = demo_copy.root
    again = runner.invoke(app, ["demo", str(out), "--size", "tiny"])
    assert again.exit_code == 2
    assert "--force" in again.stderr and "coframe.yaml" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    bad = runner.invoke(app, ["demo", str(tmp_path / "x"), "--size", "huge"])
    assert bad.exit_code == 2 and "huge" in bad.stderr and "--size" in bad.stderr


@pytest.mark.slow
def test_cli_demo_with_force_runs_again_over_a_previous_demo(
    demo_cli_run: tuple[Path, str],
) -> None:
    """The shared run was forced over an earlier demo: its stale edge and report are replaced."""
    out, stdout = demo_cli_run
    assert stdout.rstrip().endswith(f"== QC report\n{out / 'report.html'}")
    edge = next(e for e in load_workspace(out).edges if (e.source, e.target) == ("fibsem", "xray"))
    assert "coframe register" in edge.provenance["command"], edge.provenance
    assert "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0" not in (out / edge.file).read_text()
    assert "an earlier demo's report" not in (out / "report.html").read_text(encoding="utf-8")


def test_make_demo_refuses_to_overwrite(sample: DemoSample) -> None:
    with pytest.raises(OverwriteError, match="--force"):
        make_demo(sample.root, size="tiny")


def test_workspace_names_every_image(sample: DemoSample) -> None:
    doc = yaml.safe_load(sample.workspace.read_text())
    assert doc["coframe"] == 1 and doc["unit"] == "nanometer" and doc["transforms"] == []
    images = doc["images"]
    assert images["fibsem"] == {"path": EM_PATH, "modality": "fibsem", "space": "fibsem"}
    assert images["nuc"] == {"path": LABELS_PATH, "modality": "labels", "space": "fibsem"}
    assert images["xray"]["space"] == "xray" and images["tem-1"]["modality"] == "tem"
    for entry in images.values():
        assert (sample.root / entry["path"]).exists()
    assert doc["spaces"]["tem-1"] == {"axes": ["y", "x"]}


def test_fibsem_is_cellmap_like_with_a_crop(sample: DemoSample) -> None:
    ms = _attrs(sample.fibsem)["multiscales"][0]
    assert ms["version"] == "0.4" and [a["unit"] for a in ms["axes"]] == ["nanometer"] * 3
    for i, ds in enumerate(ms["datasets"]):
        scale, translation = ds["coordinateTransformations"]
        assert scale["scale"] == [8.0 * 2**i] * 3
        assert translation["translation"] == [4.0 * (2**i - 1)] * 3
    s0 = zarr.open_array(str(sample.fibsem / "s0"), mode="r")
    meta = json.loads((sample.fibsem / "s0" / ".zarray").read_text())
    assert meta["dimension_separator"] == "/" and meta["compressor"]["id"] == "zstd"
    assert s0.dtype == np.uint8 and s0.shape == (1600, 1600, 1600)
    (z0, z1), (y0, y1), (x0, x1) = sample.crop_index
    crop = s0[z0:z1, y0:y1, x0:x1]
    assert crop.mean() > 60 and crop.std() > 5
    # outside the crop nothing was written: it reads as the fill value
    assert not np.any(s0[: max(z0 - 1, 1), :64, :64])
    assert not np.any(s0[z1 : z1 + 32, y0:y1, x0:x1])
    # whole levels hold the block, with zero padding at its edges
    whole = zarr.open_array(str(sample.fibsem / f"s{sample.whole_from}"), mode="r")[:]
    assert 0.05 < np.mean(whole == 0) < 0.5
    assert not np.any(whole[:, :, 0]) and np.mean(whole[50] > 0) > 0.5
    # a crop level and the whole level agree where both exist (same physical place)
    level = sample.whole_from - 1
    fine = zarr.open_array(str(sample.fibsem / f"s{level}"), mode="r")
    lo = [a // 2**level for a, _ in sample.crop_index]
    hi = [b // 2**level for _, b in sample.crop_index]
    part = fine[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(float)
    coarse = part.reshape(part.shape[0] // 2, 2, part.shape[1] // 2, 2, part.shape[2] // 2, 2).mean(
        axis=(1, 3, 5)
    )
    ref = whole[lo[0] // 2 : hi[0] // 2, lo[1] // 2 : hi[1] // 2, lo[2] // 2 : hi[2] // 2].astype(
        float
    )
    assert abs(coarse.mean() - ref.mean()) < 6.0


def test_labels_pyramid(sample: DemoSample) -> None:
    attrs = _attrs(sample.labels)
    ms = attrs["multiscales"][0]
    assert attrs["image-label"]["version"] == "0.4"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [128.0] * 3
    assert ms["datasets"][0]["coordinateTransformations"][1]["translation"] == [60.0] * 3
    s0 = zarr.open_array(str(sample.labels / "s0"), mode="r")[:]
    s1 = zarr.open_array(str(sample.labels / "s1"), mode="r")[:]
    assert s0.dtype == np.uint32 and s0.shape == (100, 100, 100)
    ids = set(np.unique(s0)) - {0}
    assert ids and set(np.unique(s1)) - {0} <= ids


def test_xray_is_placed_by_the_ground_truth(sample: DemoSample) -> None:
    ms = _attrs(sample.xray)["multiscales"][0]
    assert ms["axes"][0]["unit"] == "micrometer"
    voxel_um = SIZES["tiny"].xray_voxel / 1000.0
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx(
        [voxel_um] * 3
    )
    xray = zarr.open_array(str(sample.xray / "s0"), mode="r")[:].astype(float)
    em = zarr.open_array(str(sample.fibsem / f"s{sample.whole_from}"), mode="r")[:].astype(float)
    lvl = sample.fibsem_levels[sample.whole_from]
    # the block's slice-wise intensity drift would dominate the smoothed EM of a block that
    # holds only tissue: compare each slice's deviations from its own mean
    em_n = np.zeros_like(em)
    for z, plane in enumerate(em):
        if np.any(plane > 0):
            vals = plane[plane > 0]
            em_n[z] = np.where(plane > 0, (plane - vals.mean()) / vals.std(), 0.0)
    em_n = ndimage.uniform_filter(em_n, 6)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, em.shape[0], (3000, 3))
    keep = em[tuple(idx.T)] > 0
    fib = idx[keep] * lvl.voxel_size[0] + lvl.origin[0]

    def corr(shift: float) -> float:
        x_idx = (sample.truth.forward(fib) + [0.0, shift, 0.0]) / (1000.0 * voxel_um)
        x_vals = ndimage.map_coordinates(xray, x_idx.T, order=1)
        return float(np.corrcoef(em_n[tuple(idx[keep].T)], x_vals)[0, 1])

    assert corr(0.0) < -0.5  # inverted contrast, same tissue
    assert corr(0.0) < corr(2000.0) - 0.2  # and not anywhere nearby
    assert xray.min() < 2500 < xray.max()  # air and stained tissue


def test_the_block_is_small_turned_and_off_centre_in_the_xray(sample: DemoSample) -> None:
    numbers = json.loads((sample.ground_truth / "fibsem_to_xray_numbers.json").read_text())
    shape, voxel = np.asarray(numbers["xray_shape"]), numbers["xray_voxel_size_nm"]
    edge = numbers["fibsem_block_edge_nm"]
    assert list(shape) == list(zarr.open_array(str(sample.xray / "s0"), mode="r").shape)
    fov = shape * voxel
    # the tiny sample's field is narrower than the default's 5 block edges, to keep tests fast
    assert np.all(fov >= SIZES["tiny"].xray_fov * edge - voxel) and edge == 1600 * 8.0
    # the block's corners, mapped by the truth: well inside the field, around a centre that
    # is off the field's centre by at least 15% of the field on at least two axes
    corners = np.array(list(np.ndindex(2, 2, 2)), float) * edge - 4.0
    mapped = sample.truth.forward(corners)
    assert np.all(mapped > 0) and np.all(mapped < fov - voxel)
    centre = sample.truth.forward(np.full((1, 3), edge / 2 - 4.0))[0]
    off = (centre - (shape - 1) / 2 * voxel) / fov
    assert np.sum(np.abs(off) >= 0.15) >= 2 and np.all(np.abs(off) <= 0.3)
    np.testing.assert_allclose(numbers["block_centre_offset_nm"], off * fov, atol=1.5 * voxel)
    # turned about the milling axis (FIB-SEM z, nearly X-ray z), rescaled by a few percent
    matrix = np.asarray(numbers["matrix"])
    scale = np.linalg.svd(matrix, compute_uv=False)
    assert np.all((scale > 1.03) & (scale < 1.08)) and np.ptp(scale) < 0.01
    rot = matrix / scale.mean()
    turn = np.degrees(np.arctan2(rot[1, 2], rot[1, 1]))  # x-axis of the block, seen in (y, x)
    assert 30.0 <= abs(turn) <= 45.0
    assert np.degrees(np.arccos(abs(rot[0, 0]))) < 5.0  # the milling axis stays near X-ray z


def test_ground_truth_field_and_landmarks_agree(sample: DemoSample) -> None:
    gt = sample.ground_truth
    doc = json.loads((gt / "fibsem_to_xray.json").read_text())
    seq = doc["coordinateTransformations"][0]
    assert seq["type"] == "sequence" and (seq["input"], seq["output"]) == ("fibsem", "xray")
    affine, disp = seq["transformations"]
    matrix = np.asarray(affine["affine"])
    assert affine["type"] == "affine" and matrix.shape == (3, 4)
    field_arr = zarr.open_array(str(gt / disp["path"]), mode="r")
    assert disp["path"] == f"fibsem_to_xray.zarr/{FIELD_ARRAY}"
    axes = field_arr.attrs["coordinateSystems"][0]["axes"]
    assert [a["type"] for a in axes] == ["space", "space", "space", "displacement"]
    scale, translation = field_arr.attrs["coordinateTransformations"]
    field = field_arr[:]
    spacing, origin = np.asarray(scale["scale"][:3]), np.asarray(translation["translation"][:3])

    rows = list(csv.reader((gt / "landmarks.csv").read_text().splitlines()))
    assert len(rows) >= 20 and all(len(r) == 8 and r[1] == "true" for r in rows)
    assert (gt / "landmarks.csv").read_text().startswith('"')
    moving = np.array([[float(v) for v in r[2:5]] for r in rows])[:, ::-1]  # x-first in the file
    fixed = np.array([[float(v) for v in r[5:8]] for r in rows])[:, ::-1]
    q = fixed @ matrix[:, :3].T + matrix[:, 3]
    grid_idx = ((q - origin) / spacing).T
    d = np.stack(
        [
            ndimage.map_coordinates(field[..., k], grid_idx, order=1, mode="nearest")
            for k in range(3)
        ],
        -1,
    )
    np.testing.assert_allclose(q + d, moving, atol=0.01)
    assert np.abs(d).max() > 100.0  # the warp is not negligible
    np.testing.assert_allclose(sample.truth.inverse(moving), fixed, atol=0.01)

    bw = json.loads((gt / "landmarks.json").read_text())
    assert bw["type"] == "BigWarpLandmarks" and bw["numDimensions"] == 3
    np.testing.assert_allclose(np.asarray(bw["fixedPoints"])[:, ::-1], fixed, atol=1e-3)

    numbers = json.loads((gt / "fibsem_to_xray_numbers.json").read_text())
    np.testing.assert_allclose(numbers["matrix"], matrix[:, :3])
    turn, *tilts = numbers["rotation_deg"]
    assert 35.0 <= abs(turn) <= 40.0 and all(1.0 <= abs(a) <= 3.0 for a in tilts)
    assert all(1.035 <= s <= 1.07 for s in numbers["scales"]) and np.ptp(numbers["scales"]) < 0.01
    assert numbers["warp_amplitude_nm"] == pytest.approx(1.5 * SIZES["tiny"].xray_voxel)


def test_tem_sections_and_their_poses(sample: DemoSample) -> None:
    poses = json.loads((sample.ground_truth / "tem_poses.json").read_text())
    xray_shape = np.asarray(zarr.open_array(str(sample.xray / "s0"), mode="r").shape)
    assert set(poses) == {"tem-1", "tem-2"}
    with tifffile.TiffFile(sample.root / "tem" / "section-1.tif") as tif:
        img = tif.asarray()
        assert tif.imagej_metadata["unit"] == "nm"
        assert tif.pages[0].tags["XResolution"].value == (1, 80)
    with mrcfile.open(sample.root / "tem" / "section-2.mrc") as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(800.0)
        assert mrc.data.shape == (80, 80)
    assert img.dtype == np.uint16 and img.std() > 100
    for sec in sample.tem:
        pose = poses[sec.name]
        to_fib = np.asarray(pose["to_fibsem"])
        # the in-plane axes are orthogonal, tilted from the block face by the recorded angle;
        # the section is compressed along its y axis, so y lengths grow into the tissue
        assert pose["compression"] == pytest.approx(0.08)
        stretch = np.diag([1.0 / (1.0 - pose["compression"]) ** 2, 1.0])
        np.testing.assert_allclose(to_fib[:, :2].T @ to_fib[:, :2], stretch, atol=1e-9)
        normal = np.cross(to_fib[:, 0], to_fib[:, 1])
        normal = normal / np.linalg.norm(normal)
        assert np.degrees(np.arccos(abs(normal[0]))) == pytest.approx(sec.tilt_deg, abs=1e-6)
        # just above the block, inside the X-ray field of view
        centre = to_fib @ np.array([40 * 80.0, 40 * 80.0, 1.0])
        assert -2_000.0 < centre[0] < 0.0
        uv1 = np.array([[i * 79 * 80.0, j * 79 * 80.0, 1.0] for i in (0, 1) for j in (0, 1)])
        corners = uv1 @ np.asarray(pose["to_xray"]).T
        err = np.linalg.norm(corners - sample.truth.forward(uv1 @ to_fib.T), axis=1)
        assert np.all(err <= pose["to_xray_max_residual_nm"] + 1e-6)
        assert np.all((corners > 0) & (corners < xray_shape * SIZES["tiny"].xray_voxel))


@pytest.mark.slow
def test_the_default_demo_recovers_its_ground_truth(runner, tmp_path: Path) -> None:
    """The README's first command: section poses and TRE within stated tolerances."""
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(out)])
    assert result.exit_code == 0, result.output
    text, xray_voxel = result.stdout, 1000.0
    # the sections are searched for in the whole X-ray field, 5.5 block edges wide
    poses = re.findall(
        r"^(tem-\d): .*; (stored as \1 -> xray|not stored \(not trustworthy\))\n"
        r"  error vs truth: normal ([0-9.]+)°, in-plane rotation ([0-9.]+)°, offset along the "
        r"normal [0-9.]+ nm \(([0-9.]+) X-ray voxels\), centre in plane [0-9.]+ nm "
        r"\(([0-9.]+) voxels\)",
        text,
        re.M,
    )
    assert [p[0] for p in poses] == ["tem-1", "tem-2", "tem-3"], text
    for name, _, normal, spin, offset, centre in poses:
        assert float(normal) < 5.0 and float(spin) < 5.0, name  # degrees
        assert float(offset) < 1.0 and float(centre) < 0.5, name  # X-ray voxels
    assert sum(p[1].startswith("stored") for p in poses) >= 2, text
    number = r"([0-9.]+(?:e[+-][0-9]+)?)"
    tre = re.search(rf"TRE vs ground_truth \(3000 points\): mean {number} .* max {number} ", text)
    assert tre, text
    mean, worst = (float(v) for v in tre.groups())
    assert mean < 0.5 * xray_voxel and worst < 2.0 * xray_voxel, tre.group(0)
    assert text.count("blocks in") == 3, text
