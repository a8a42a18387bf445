"""``coframe locate`` on sections as real TEM gives them: grid bars, compression, partial
overlap, montages read band by band, and the bad inputs that are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from locate_synthetic import QUICK, blob_phantom, extract_section, random_pose
from scipy import ndimage
from typer.testing import CliRunner

from coframe.cli import app
from coframe.registration.locate_geometry import (
    GridImage,
    Pose,
    Stretch,
    in_plane_maps,
    pose_errors,
    resample_grid,
)
from coframe.registration.locate_inputs import read_section_image
from coframe.registration.locate_mask import (
    auto_section_mask,
    fold_mask,
    masked_coarser,
    section_with_mask,
)
from coframe.registration.locate_scores import make_templates
from coframe.transforms.affine import Affine
from coframe.volumes.binned import read_binned
from coframe.volumes.open import open_volume
from coframe.volumes.write import write_tiff

VOXEL = 1000.0
PIXEL = 500.0
SHAPE = (44, 52)


@pytest.fixture(scope="module")
def phantom() -> GridImage:
    """A 40^3 phantom of 1 µm voxels (lengths in nm)."""
    return blob_phantom((40, 40, 40), VOXEL, seed=5)


def _cut(phantom: GridImage, seed: int, squeeze: float = 1.0) -> tuple[GridImage, Pose]:
    """A noisy inverted section and its pose (pixel (0, 0) at the origin, as in the file)."""
    rng = np.random.default_rng(seed)
    size = (SHAPE[0] * PIXEL, SHAPE[1] * PIXEL)
    rigid = random_pose(phantom, size, rng, margin=2 * VOXEL, max_tilt=30.0)
    # a section squeezed along its y axis: its lengths are ``squeeze`` of the volume's
    pose = Pose(rigid.center, rigid.linear @ np.diag([1 / squeeze, 1.0]), rigid.section_center)
    section = extract_section(
        phantom, pose, SHAPE, PIXEL, rng=rng, blur=1.0, noise=0.2, invert=True
    )
    shifted = Pose(pose.center, pose.linear, pose.section_center - np.asarray(section.origin))
    return section, shifted


def _workspace(root: Path, runner: CliRunner, images: dict[str, np.ndarray], phantom: GridImage):
    """A workspace holding ``volume`` and the given 2D images (``PIXEL`` pixels)."""
    ws = root / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    write_tiff(root / "volume.tif", phantom.array, VOXEL)
    files = {"volume": root / "volume.tif"}
    for name, array in images.items():
        files[name] = root / f"{name}.tif"
        write_tiff(files[name], array, PIXEL)
    for name, path in files.items():
        result = runner.invoke(app, ["add", name, str(path), "-w", str(ws)])
        assert result.exit_code == 0, result.output
    return ws


def _errors(report: dict, truth: Pose) -> dict[str, float]:
    found = Affine(np.asarray(report["matrix"]))
    centre = np.asarray(SHAPE) * PIXEL / 2.0
    return pose_errors(found, Affine(truth.matrix), centre, VOXEL)


def _bars(section: np.ndarray) -> np.ndarray:
    """The section behind two dark grid bars (about a fifth of its area)."""
    out = section.copy()
    low = float(section.min()) - 0.2 * float(np.ptp(section))
    out[:, 10:15] = low
    out[30:35, :] = low
    return out


def test_binned_read_of_a_tiled_tiff_matches_a_whole_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, size=(300, 270), dtype=np.uint16)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, image, tile=(64, 64), resolution=(1 / 0.5, 1 / 0.5), resolutionunit=3)
    level = open_volume(path).levels[0]
    for factor in (1, 3, (2, 5)):
        fy, fx = np.broadcast_to(np.asarray(factor), (2,))
        h, w = image.shape[0] // fy, image.shape[1] // fx
        whole = image[: h * fy, : w * fx].astype(np.float64).reshape(h, fy, w, fx).mean((1, 3))
        got = read_binned(level, factor, band_bytes=20_000)  # many small bands
        assert got.shape == whole.shape
        assert np.allclose(got, whole, rtol=1e-6)
    assert np.array_equal(read_binned(level, 2, binary=True) > 0, read_binned(level, 2) > 0)


def test_the_section_reader_bins_as_a_whole_read_would(tmp_path: Path) -> None:

    rng = np.random.default_rng(1)
    image = rng.random((400, 360)).astype(np.float32)
    path = tmp_path / "section.tif"
    tifffile.imwrite(path, image, tile=(64, 64), resolution=(1e4, 1e4), resolutionunit=3)
    section = open_volume(path)
    lvl = section.levels[0]
    whole = resample_grid(GridImage(image, lvl.voxel_size, lvl.origin), 7.0 * lvl.voxel_size[0])
    got = read_section_image(section, 7.0 * lvl.voxel_size[0])
    assert got.shape == whole.shape and np.allclose(got.origin, whole.origin)
    assert np.allclose(got.array, whole.array, atol=1e-5)


def test_a_pyramidal_montage_is_read_from_its_level_not_its_base(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, size=(512, 512), dtype=np.uint8)
    levels = [base, base.reshape(256, 2, 256, 2).mean((1, 3)).astype(np.uint8)]
    levels.append(levels[1].reshape(128, 2, 128, 2).mean((1, 3)).astype(np.uint8))
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(base, tile=(64, 64), subifds=2, resolution=(1e4, 1e4), resolutionunit=3)
        for level in levels[1:]:
            tif.write(level, tile=(64, 64), subfiletype=1)
    section = open_volume(path)
    assert len(section.levels) == 3
    pixel = section.levels[0].voxel_size[0]
    got = read_section_image(section, 4 * pixel)  # level 2 exactly: no base pixel is read
    assert got.shape == (128, 128)
    assert np.allclose(got.array, levels[2], atol=1e-3)


def test_an_mrc_section_is_read_band_by_band_from_its_memory_map(tmp_path: Path) -> None:
    from coframe.volumes.write import write_mrc

    rng = np.random.default_rng(3)
    image = rng.integers(0, 30000, size=(240, 200)).astype(np.int16)
    section = open_volume(write_mrc(tmp_path / "section.mrc", image, 20.0))
    got = read_binned(section.levels[0], 4, band_bytes=10_000)
    whole = image.astype(np.float64).reshape(60, 4, 50, 4).mean((1, 3))
    assert np.allclose(got, whole, rtol=1e-6)


def test_the_automatic_mask_finds_grid_bars_and_keeps_tissue(phantom: GridImage) -> None:
    section, _ = _cut(phantom, seed=11)
    assert auto_section_mask(section.array).all()  # nothing to mask on plain tissue
    barred = _bars(section.array)
    usable = auto_section_mask(barred)
    bar = barred == barred.min()
    assert not usable[bar].any()
    assert usable[~bar].mean() > 0.85


def _tissue(seed: int, size: int = 160) -> np.ndarray:
    """A textured section: smoothed noise at two scales, as cells and their organelles."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6.0)
    fine = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5)
    return (coarse / coarse.std() + 0.5 * fine / fine.std()).astype(np.float32)


def _fold(
    image: np.ndarray, angle: float, width: float, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` folded along a straight band: doubled (mirrored onto itself) and darkened."""
    h, w = image.shape
    yy, xx = np.indices(image.shape, dtype=float)
    normal = np.array([np.cos(angle), np.sin(angle)])
    d = (yy - h / 2) * normal[0] + (xx - w / 2) * normal[1] - offset
    band = np.abs(d) <= width / 2
    mirrored = ndimage.map_coordinates(
        image,
        [yy - 2 * (d + width / 2) * normal[0], xx - 2 * (d + width / 2) * normal[1]],
        order=1,
        mode="nearest",
    )
    span = float(np.ptp(image))
    return np.where(band, 0.5 * (image + mirrored) - 0.35 * span, image), band


@pytest.mark.parametrize("seed", range(6))
def test_a_fold_is_masked_and_plain_tissue_is_not(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tissue = _tissue(seed)
    assert fold_mask(tissue).all()  # no fold, nothing masked
    folded, band = _fold(tissue, rng.uniform(0, np.pi), rng.uniform(5, 9), rng.uniform(-30, 30))
    kept = fold_mask(folded)
    assert 1.0 - kept[band].mean() >= 0.95  # the fold is masked ...
    assert (~kept & ~band).mean() <= 0.03  # ... with a margin of a pixel or two
    # behind grid bars too: the bars are found first, the fold among what they leave
    barred = folded.copy()
    barred[:, 40:52] = barred[100:112, :] = folded.min() - float(np.ptp(folded))
    usable = auto_section_mask(barred)
    bar = barred == barred.min()
    assert not usable[bar].any() and usable[band & ~bar].mean() <= 0.05, usable[band & ~bar].mean()
    assert usable[~bar & ~band].mean() > 0.9


def test_one_dark_structure_is_not_a_fold() -> None:
    tissue = _tissue(7)
    yy, xx = np.indices(tissue.shape)
    blob = (yy - 60) ** 2 + (xx - 90) ** 2 <= 15**2  # a nucleus-sized dark disc
    dark = np.where(blob, tissue - 0.4 * float(np.ptp(tissue)), tissue)
    assert fold_mask(dark).all()


def test_grid_bars_are_not_averaged_into_the_tissue_beside_them(phantom: GridImage) -> None:
    section, _ = _cut(phantom, seed=11)
    tissue = section.array
    span = float(np.ptp(tissue))
    barred = tissue.copy()
    barred[:, 10:15] = barred[30:35, :] = tissue.min() - 10 * span  # opaque, far below tissue
    grid = GridImage(barred, section.spacing, section.origin)
    working = section_with_mask(grid, None, grid)
    assert working.mask is not None and not working.usable[:, 10:15].any()
    for factor in (1.0, 2.5, 4.0):  # the working grid and two search spacings
        spacing = factor * section.spacing[0]
        coarse = masked_coarser(working, spacing)
        clean = resample_grid(section, spacing)  # the tissue as if there were no bars
        kept = coarse.usable
        assert coarse.shape == clean.shape and kept.mean() > 0.3
        # kept pixels hold tissue only: a bar weighing even 1 % would move them by 10 % of
        # the tissue's range (averaged with the bars, they moved by up to 19 %)
        assert np.abs(coarse.array - clean.array)[kept].max() <= 0.02 * span


def test_a_masked_sections_overlap_is_that_of_its_whole_rectangle(phantom: GridImage) -> None:
    """Grid bars leave the footprints (what is scored) but not the rectangles (what must lie
    inside the volume): a masked section's rotations share the few rectangles of a whole one."""
    section, _ = _cut(phantom, seed=11)
    usable = _bars(section.array) > section.array.min()
    masked = GridImage(section.array, section.spacing, section.origin, usable)
    maps = in_plane_maps(np.arange(0.0, 360.0, 30.0), mirror=True)
    whole, barred = (
        make_templates(section, maps, score="edges"),
        make_templates(masked, maps, score="edges"),
    )
    assert len(barred.masks) > len(whole.masks)  # the bars break the rectangle's symmetries
    assert np.array_equal(barred.rectangles, whole.masks)
    for g in range(len(maps)):
        rect = barred.rectangles[barred.box_of[barred.mask_of[g]]]
        assert np.array_equal(rect, whole.masks[whole.mask_of[g]])
        assert np.all(barred.masks[barred.mask_of[g]] <= rect)
    # a stack half outside the volume: the share is the rectangle's, bars or not
    size = barred.size
    inside = np.zeros((1, size, 2 * size - 1), np.float32)
    inside[..., size:] = 1.0
    shape = (size, 2 * size)
    spectra = np.fft.rfft2(barred.rectangles, s=shape).astype(np.complex64)
    shares, valid = barred.overlaps(inside, spectra, shape)
    shares = list(shares)
    assert len(shares) == len(barred.masks) and valid == (1, size)
    for u, share in enumerate(shares):
        rect = barred.rectangles[barred.box_of[u]]
        expected = [rect[:, size - j :].sum() / rect.sum() for j in range(size)]
        np.testing.assert_allclose(share[0, 0], expected, atol=1e-4)


@pytest.mark.slow
def test_a_section_behind_grid_bars_is_found(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    section, truth = _cut(phantom, seed=11)
    barred = _bars(section.array)
    ws = _workspace(tmp_path, runner, {"barred": barred}, phantom)
    result = runner.invoke(app, ["locate", *QUICK, "barred", "volume", "--json", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"] and 0.15 < report["masked"] < 0.45, report["masked"]
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err


@pytest.mark.slow
def test_a_user_mask_hides_a_fold(phantom: GridImage, tmp_path: Path, runner: CliRunner) -> None:
    section, truth = _cut(phantom, seed=12)
    folded = section.array.copy()
    folded[5:20, 8:30] = np.flip(folded[20:35, 8:30], axis=0) * 1.5  # a fold: doubled, wrong
    mask = np.ones(SHAPE, np.uint8)
    mask[3:22, 6:32] = 0
    tifffile.imwrite(tmp_path / "mask.tif", mask)  # no pixel size: takes the section's
    ws = _workspace(tmp_path, runner, {"folded": folded}, phantom)
    result = runner.invoke(
        app,
        [
            "locate",
            *QUICK,
            "folded",
            "volume",
            "--section-mask",
            str(tmp_path / "mask.tif"),
            "--json",
        ]
        + ["-w", str(ws)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"] and report["masked"] > 0.2
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err


@pytest.mark.slow
def test_a_compressed_section_is_found_and_its_compression_reported(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    section, truth = _cut(phantom, seed=13, squeeze=0.95)
    ws = _workspace(tmp_path, runner, {"squeezed": section.array}, phantom)
    # one run: the text goes to the terminal, the same report to locate.json
    result = runner.invoke(
        app, ["locate", *QUICK, "squeezed", "volume", "--shrinkage", "-w", str(ws)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((ws / "locate" / "squeezed-in-volume" / "locate.json").read_text())
    comp = report["compression"]
    assert abs(comp["compression"] - 0.05) < 0.02, comp
    assert min(comp["angle"], 180.0 - comp["angle"]) < 15.0, comp  # along the section's y
    assert f"compression {100 * comp['compression']:.1f}%" in result.stdout, result.stdout
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err


def test_a_pose_of_the_stretched_section_maps_the_section_as_it_does_the_stretched_one(
    phantom: GridImage,
) -> None:
    section, truth = _cut(phantom, seed=13, squeeze=0.85)
    stretch = Stretch(axis=0, factor=1 / 0.85, origin=np.array([300.0, -200.0]))
    long = stretch.grid(section)
    assert long.spacing == (PIXEL / 0.85, PIXEL) and long.array is section.array
    # a pixel sits at p in the section and at p' in the stretched copy
    pixels = np.array([[0, 0], [43, 0], [10, 51], [43, 51]], dtype=float)
    p = np.asarray(section.origin) + pixels * np.asarray(section.spacing)
    q = np.asarray(long.origin) + pixels * np.asarray(long.spacing)
    # the rigid pose of the stretched section is the true one with the squeeze undone
    rigid = Pose(truth.center, truth.linear * np.array([0.85, 1.0]), np.zeros(2))
    rigid = Pose(rigid.apply(q[:1])[0], rigid.linear, q[0])
    back = stretch.pose(rigid)
    np.testing.assert_allclose(back.apply(p), rigid.apply(q), atol=1e-6)
    np.testing.assert_allclose(back.linear, truth.linear, atol=1e-9)


@pytest.mark.slow
def test_a_section_compressed_beyond_the_scans_reach_is_found_stretched_back(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    section, truth = _cut(phantom, seed=14, squeeze=0.75)
    ws = _workspace(tmp_path, runner, {"squeezed": section.array}, phantom)
    args = ["locate", *QUICK, "squeezed", "volume", "--shrinkage", "--json", "-w", str(ws)]
    cone = ["--normal", "1,0,0", "--max-tilt", "30"]
    # searched as it is, the section is not trusted (the scans match it rigidly)
    result = runner.invoke(app, [*args, *cone, "--assumed-compression", "0"])
    assert result.exit_code != 0 or not json.loads(result.stdout)["trustworthy"], result.output
    result = runner.invoke(app, [*args, *cone, "--assumed-compression", "0.25", "--force"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"], report
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err
    assert abs(report["compression"]["compression"] - 0.25) < 0.03, report["compression"]


def _outside_pose(phantom: GridImage, fraction_out: float) -> Pose:
    """A tilted pose whose section sticks out of the volume's +x face by ``fraction_out``."""
    c, s = np.cos(np.deg2rad(12.0)), np.sin(np.deg2rad(12.0))
    linear = np.array([[0.0, s], [1.0, 0.0], [0.0, c]])  # section y -> volume y; x tilted
    width = SHAPE[1] * PIXEL * c
    x_hi = 40 * VOXEL - 0.5 * VOXEL
    centre = np.array([20.3 * VOXEL, 19.6 * VOXEL, x_hi + width * (fraction_out - 0.5)])
    return Pose(centre, linear, np.asarray(SHAPE) * PIXEL / 2.0)


@pytest.mark.slow
def test_a_section_partly_outside_the_volume_is_found_on_the_part_inside(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    pose = _outside_pose(phantom, 0.3)
    section = extract_section(phantom, pose, SHAPE, PIXEL, blur=1.0, noise=0.2, invert=True)
    rng = np.random.default_rng(4)
    image = section.array.copy()
    out = pose.apply(section.points())[:, 2].reshape(SHAPE) > 40 * VOXEL - 0.5 * VOXEL
    image[out] = rng.normal(image.mean(), image.std(), int(out.sum()))  # tissue beyond the scan
    truth = Pose(pose.center, pose.linear, pose.section_center - np.asarray(section.origin))
    ws = _workspace(tmp_path, runner, {"edge": image}, phantom)
    result = runner.invoke(app, ["locate", *QUICK, "edge", "volume", "--json", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"] and report["inside"] == pytest.approx(0.7, abs=0.08)
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err


def test_a_section_of_one_value_is_refused(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    ws = _workspace(tmp_path, runner, {"blank": np.full(SHAPE, 7.0, np.float32)}, phantom)
    result = runner.invoke(app, ["locate", *QUICK, "blank", "volume", "-w", str(ws)])
    assert result.exit_code == 2
    assert "all one value" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_assumed_compression_out_of_range_is_refused(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    section, _ = _cut(phantom, seed=13)
    ws = _workspace(tmp_path, runner, {"sec": section.array}, phantom)
    args = ["locate", *QUICK, "sec", "volume", "--shrinkage", "-w", str(ws)]
    result = runner.invoke(app, [*args, "--assumed-compression", "12"])
    assert result.exit_code == 2
    assert "--assumed-compression" in result.stderr and "0.12" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_mostly_masked_section_is_refused(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    section, _ = _cut(phantom, seed=14)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:10, :10] = 1
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    ws = _workspace(tmp_path, runner, {"section": section.array}, phantom)
    result = runner.invoke(
        app,
        ["locate", *QUICK, "section", "volume", "--section-mask", str(tmp_path / "mask.tif")]
        + ["-w", str(ws)],
    )
    assert result.exit_code == 2
    assert "usable" in result.stderr and "--section-mask" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_3d_mask_is_refused(phantom: GridImage, tmp_path: Path, runner: CliRunner) -> None:
    section, _ = _cut(phantom, seed=14)
    ws = _workspace(tmp_path, runner, {"section": section.array}, phantom)
    result = runner.invoke(
        app, ["locate", *QUICK, "section", "volume", "--section-mask", "volume", "-w", str(ws)]
    )
    assert result.exit_code == 2
    assert "--section-mask" in result.stderr and "2D" in result.stderr


def test_a_pose_with_too_little_inside_is_refused_with_its_numbers(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    from dataclasses import replace

    from coframe.app.locate import locate_paths, store_located
    from coframe.app.workspace import load_workspace
    from coframe.core.errors import RegistrationError
    from coframe.registration.locate_result import LocateResult

    section, truth = _cut(phantom, seed=15)
    ws = _workspace(tmp_path, runner, {"section": section.array}, phantom)
    workspace = load_workspace(ws)
    good = LocateResult(
        affine=Affine(truth.matrix),
        pose=truth,
        score=0.9,
        runner_up=0.1,
        confidence=0.89,
        ncc=-0.95,
        edges=0.7,
        working_level=0,
        working_spacing=VOXEL,
        spacings={"global": VOXEL},
        candidates=(),
        working_pixels=22,
        inside=1.0,
    )
    assert good.trustworthy
    partial = replace(good, inside=0.3)
    assert not partial.trustworthy and partial.summary()["inside"] == 0.3
    paths = locate_paths(workspace, "section", "volume", None)
    with pytest.raises(RegistrationError, match=r"only 30% of the section's unmasked pixels"):
        store_located(workspace, "section", "volume", partial, command="t", paths=paths)
    assert not paths.transform.exists()


@pytest.mark.slow
def test_a_tiled_pyramidal_montage_is_located_through_its_pyramid(
    phantom: GridImage, tmp_path: Path, runner: CliRunner
) -> None:
    rng = np.random.default_rng(16)
    fine = PIXEL / 4.0
    shape = (SHAPE[0] * 4, SHAPE[1] * 4)
    pose = random_pose(phantom, (SHAPE[0] * PIXEL, SHAPE[1] * PIXEL), rng, margin=2 * VOXEL)
    section = extract_section(phantom, pose, shape, fine, rng=rng, blur=2.0, noise=0.2, invert=True)
    truth = Pose(pose.center, pose.linear, pose.section_center - np.asarray(section.origin))
    image = np.clip(section.array * 60 + 100, 0, 255).astype(np.uint8)  # nothing saturated
    image[:, 40:60] = 3  # grid bars, four times finer than in _bars
    image[120:140, :] = 3
    path = tmp_path / "montage.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        res = (1e7 / fine, 1e7 / fine)  # pixels per cm
        tif.write(image, tile=(64, 64), subifds=2, resolution=res, resolutionunit=3)
        for k in (2, 4):  # levels of block means, as a pyramid is built
            h, w = shape[0] // k, shape[1] // k
            level = image.astype(float).reshape(h, k, w, k).mean((1, 3))
            tif.write(np.rint(level).astype(np.uint8), tile=(64, 64), subfiletype=1)
    ws = _workspace(tmp_path, runner, {}, phantom)
    assert runner.invoke(app, ["add", "montage", str(path), "-w", str(ws)]).exit_code == 0
    normal = ",".join(f"{v:.3f}" for v in pose.normal)
    result = runner.invoke(
        app,
        ["locate", *QUICK, "montage", "volume", "--normal", normal, "--max-tilt", "20", "--json"]
        + ["-w", str(ws)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trustworthy"] and report["spacings"]["working"] == pytest.approx(VOXEL)
    assert report["masked"] > 0.1
    err = _errors(report, truth)
    assert err["normal_deg"] <= 2.0 and err["offset_voxels"] <= 1.0, err
