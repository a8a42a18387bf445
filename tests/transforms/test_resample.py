"""Chunked resampling equals SimpleITK's in-memory result; labels stay ids; outputs are safe."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr
from samples import rotation
from scipy import ndimage

import coframe.resampling.block as block_mod
import coframe.resampling.engine as engine_mod
import coframe.resampling.runplan as runplan_mod
import coframe.resampling.source as source_mod
import coframe.resampling.writer as writer_mod
from coframe.core.errors import OutputError, OverwriteError, TransformError
from coframe.resampling.chain import (
    FieldLead,
    InverseLead,
    SplineLead,
    inverse_tolerance,
    map_points_checked,
    prepare_chain,
    spline_lead,
)
from coframe.resampling.engine import resample
from coframe.resampling.plan import OutputGrid
from coframe.resampling.source import ImageSource
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine, Scale, Translation
from coframe.transforms.base import Chain, NumericalInverse, newton_solve
from coframe.transforms.bspline import BSpline
from coframe.transforms.field import DisplacementField
from coframe.transforms.sitk_bridge import array_to_image, resample_image, to_sitk
from coframe.transforms.tps import ThinPlateSpline
from coframe.volumes.open import open_volume

SRC_SHAPE = (40, 48, 56)
SRC_VS = (2.0, 2.0, 2.0)
SRC_ORIGIN = (1.0, -3.0, 2.0)


def _intensities(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    smooth -= smooth.min()
    return (smooth * (255.0 / smooth.max())).astype(np.uint8)


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    z, y, x = np.indices(shape)
    ids = (z // 7) * 100 + (y // 9) * 10 + (x // 11) + 1
    ids[(z + y + x) % 13 == 0] = 0
    return ids.astype(np.uint32)


def _write_source(path: Path, data: np.ndarray, *, labels: bool = False) -> ImageSource:
    writer = create_ome_zarr(
        path,
        shape0=data.shape,
        voxel_size0=SRC_VS,
        origin0=SRC_ORIGIN,
        dtype=data.dtype,
        chunks=(16, 16, 16),
        n_levels=1,
        labels=labels,
    )
    writer.write(0, (0, 0, 0), data)
    return ImageSource(str(path), modality="labels" if labels else None)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resample-src")
    _write_source(root / "em.zarr", _intensities(SRC_SHAPE))
    _write_source(root / "nuc.zarr", _labels(SRC_SHAPE), labels=True)
    return root


def _grid(
    shape: tuple[int, ...] = (36, 44, 50), chunks: tuple[int, ...] = (8, 16, 16)
) -> OutputGrid:
    # Extends past the source on the low y side and high x side: boxes cross the source edge.
    return OutputGrid(
        shape, (2.5, 2.0, 2.2), (-4.0, -12.0, 6.0), ("z", "y", "x"), "nanometer", chunks
    )


def _affine() -> Affine:
    rng = np.random.default_rng(4)
    linear = np.eye(3) + 0.04 * rng.standard_normal((3, 3))
    return Affine.from_linear(linear, (3.0, 5.0, -4.0))


def _field() -> DisplacementField:
    rng = np.random.default_rng(5)
    vectors = ndimage.gaussian_filter(rng.normal(0, 3.0, (10, 10, 10, 3)), (1, 1, 1, 0))
    return DisplacementField(vectors * 3.0, (-30.0, -40.0, -30.0), (20.0, 20.0, 20.0))


def _sitk_reference(
    data: np.ndarray, t: object, grid: OutputGrid, interpolation: str
) -> np.ndarray:
    image = array_to_image(data, SRC_VS, SRC_ORIGIN)
    return resample_image(
        image, to_sitk(t), grid.shape, grid.voxel_size, grid.origin, interpolation=interpolation
    )


def _read(out: Path, level: str = "s0") -> np.ndarray:
    return zarr.open_array(str(out / level), mode="r")[...]


def _multiscales(out: Path) -> list | None:
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    if "ome" in attrs:
        return attrs["ome"].get("multiscales")
    return attrs.get("multiscales")


def _bspline() -> BSpline:
    """Covers part of the grid: its valid region ends inside it, so both cases are sampled."""
    rng = np.random.default_rng(6)
    size = (6, 7, 8)
    return BSpline(
        [-20.0, -30.0, -10.0], [18.0, 15.0, 14.0], np.eye(3), size, rng.normal(0.0, 2.5, (*size, 3))
    )


CHAINS = {
    "affine": lambda: _affine(),
    "bspline": lambda: Chain((_bspline(), _affine())),
    "shifted bspline": lambda: Chain(
        (Scale([1.05, 0.95, 1.0]), Translation([2.0, -1.5, 0.5]), _bspline(), _affine(), _field())
    ),
    "field": lambda: _field(),
    "composed": lambda: (
        _affine().then(_field()).then(Affine.from_linear(np.eye(3), (1.0, 0.5, -0.5)))
    ),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chunked_equals_sitk_in_memory(source_dir: Path, tmp_path: Path, name: str) -> None:
    t = CHAINS[name]()
    grid = _grid()
    out = tmp_path / "out.zarr"
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        t,
        grid,
        out,
        memory_per_task="2MB",
        progress=False,
    )
    # linear resampling through an affine, a B-spline then an affine, or a field between
    # affines runs coframe's kernel; the other chains (two non-linear maps) SimpleITK
    assert result.method == ("sitk" if name == "shifted bspline" else "kernel")
    assert result.blocks > 4
    # a leading B-spline is made a dense field per piece; ITK's B-spline gives the reference
    assert isinstance(prepare_chain(t), SplineLead) == ("bspline" in name)
    # a field between affines too, for the kernel alone (SimpleITK takes it as it is)
    assert isinstance(prepare_chain(t, kernel=True), FieldLead) == (name in ("field", "composed"))
    got = _read(out)
    expected = _sitk_reference(_intensities(SRC_SHAPE), t, grid, "linear")
    assert got.dtype == np.uint8
    assert np.array_equal(got, expected)
    assert 0 < np.count_nonzero(got) < got.size  # part of the grid lies outside the source


@pytest.mark.parametrize("name", ["affine", "composed"])
def test_numpy_method_within_one_grey_level(
    source_dir: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_mod, "choose_method", lambda *a, **k: "numpy")
    t = CHAINS[name]()
    grid = _grid()
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        t,
        grid,
        tmp_path / "o.zarr",
        memory_per_task="2MB",
        progress=False,
    )
    assert result.method == "numpy"
    expected = _sitk_reference(_intensities(SRC_SHAPE), t, grid, "linear")
    diff = np.abs(_read(tmp_path / "o.zarr").astype(np.int16) - expected)
    assert diff.max() <= 1
    assert np.mean(diff > 0) < 0.01


def test_field_leaving_its_grid_uses_coframe_clamping(source_dir: Path, tmp_path: Path) -> None:
    small = DisplacementField(np.full((3, 3, 3, 3), 2.0), (20.0, 20.0, 20.0), (10.0, 10.0, 10.0))
    grid = _grid((12, 14, 16), (8, 8, 8))
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        small,
        grid,
        tmp_path / "o.zarr",
        progress=False,
    )
    assert result.method == "numpy"
    shifted = Affine.from_linear(np.eye(3), (2.0, 2.0, 2.0))
    expected = _sitk_reference(_intensities(SRC_SHAPE), shifted, grid, "linear")
    assert np.abs(_read(tmp_path / "o.zarr").astype(np.int16) - expected).max() <= 1


def test_thin_plate_spline_chain(source_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 80, (12, 3))
    tps = ThinPlateSpline(src, src + rng.normal(0, 1.0, src.shape))
    grid = _grid((16, 20, 24), (8, 8, 8))
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        tps,
        grid,
        tmp_path / "o.zarr",
        memory_per_task="2MB",
        progress=False,
    )
    assert result.method == "numpy"
    index = ((tps.apply(grid.points((0, 0, 0), grid.shape)) - SRC_ORIGIN) / SRC_VS).T
    data = _intensities(SRC_SHAPE).astype(np.float64)
    expected = ndimage.map_coordinates(data, index, order=1, mode="nearest")
    inside = np.all((index >= -0.5) & (index <= np.array(SRC_SHAPE)[:, None] - 0.5), axis=0)
    expected = np.where(inside, np.trunc(expected), 0).reshape(grid.shape)
    assert np.abs(_read(tmp_path / "o.zarr").astype(np.int16) - expected).max() <= 1


@pytest.mark.parametrize("after", [False, True])
def test_inverse_bspline_chain_through_the_kernel(
    source_dir: Path, tmp_path: Path, after: bool
) -> None:
    """FIB-SEM into X-ray: a registration's chain read backwards, solved per voxel.

    The reference solves every voxel with numpy's generic Newton solver (not the
    compiled one) and samples with scipy.
    """
    lead = (Scale([1.05, 0.95, 1.0]),) if after else ()
    t = Chain((*lead, _bspline(), _affine())).inverse()
    assert isinstance(prepare_chain(t), InverseLead)
    grid = _grid()
    out = tmp_path / "out.zarr"
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        t,
        grid,
        out,
        memory_per_task="2MB",
        progress=False,
    )
    assert result.method == "kernel" and result.blocks > 4
    points = grid.points((0, 0, 0), grid.shape)
    members = t.transforms
    current = points
    for member in members:
        if isinstance(member, NumericalInverse):
            solved, residual = newton_solve(
                member.forward._apply, current, current.copy(), member.tol, member.max_iter
            )
            current = np.where((residual <= 0.5 * min(grid.voxel_size))[:, None], solved, np.nan)
        else:
            current = member.apply(current)
    index = ((current - SRC_ORIGIN) / SRC_VS).T
    data = _intensities(SRC_SHAPE).astype(np.float64)
    expected = ndimage.map_coordinates(
        data, np.nan_to_num(index, nan=-9.0), order=1, mode="nearest"
    )
    inside = np.all((index >= -0.5) & (index <= np.array(SRC_SHAPE)[:, None] - 0.5), axis=0)
    expected = np.where(inside, np.trunc(expected), 0).reshape(grid.shape)
    got = _read(out)
    diff = np.abs(got.astype(np.int16) - expected)
    # where the map is not one-to-one (beside its valid region's edge, where the displacement
    # drops to zero) the two solvers may pick different preimages: 0.13 % of voxels here
    assert np.mean(diff > 1) < 0.003
    assert np.mean(diff > 0) < 0.02
    assert 0.3 < np.mean(got > 0) < 1.0


def test_inverse_without_a_solution_leaves_voxels_empty_not_the_run(
    source_dir: Path, tmp_path: Path
) -> None:
    """An inverse B-spline across the jump at its valid region's edge: no exact solution there."""
    size = (8, 9, 10)
    shift = np.broadcast_to([6.0, 0.0, 0.0], (*size, 3))  # +6 in z inside the valid region only
    spline = BSpline([-10.0, -20.0, -10.0], [15.0, 15.0, 15.0], np.eye(3), size, shift)
    t = spline.inverse()  # z in (5, 11) has no preimage: the forward map jumps from 5 to 11
    shape = (20, 24, 28)  # the source region at 4 nm
    grid = OutputGrid(shape, (4.0,) * 3, (0.0, -3.0, 2.0), ("z", "y", "x"), "nanometer", (8, 8, 8))
    points = grid.points((0, 0, 0), shape)
    with pytest.raises(TransformError, match="did not converge"):
        t.apply(points)
    mapped = map_points_checked(t, points, inverse_tolerance(grid.voxel_size))
    gap = ~np.all(np.isfinite(mapped), axis=1)
    assert 0 < gap.sum() < 0.2 * gap.size
    assert np.all(points[gap, 0] == 8.0)  # 3 from either edge of the gap: no voxel within 2
    out = tmp_path / "out.zarr"
    result = resample(ImageSource(str(source_dir / "em.zarr")), t, grid, out, progress=False)
    assert result.method == "kernel"  # the inverse solved per voxel into a dense field
    got = _read(out)
    assert np.all(got.reshape(-1)[gap] == 0)
    # away from the jump the inverse is exact: a shift by -6 in z (inside the valid region)
    shifted = tmp_path / "shifted.zarr"
    resample(
        ImageSource(str(source_dir / "em.zarr")),
        Translation([-6.0, 0.0, 0.0]),
        grid,
        shifted,
        progress=False,
    )
    inner = (slice(3, 20), slice(0, 22), slice(1, 27))  # z 12..76, y -3..81, x 6..106
    diff = np.abs(got[inner].astype(int) - _read(shifted)[inner])
    assert diff.max() <= 1


def test_only_an_axis_aligned_leading_bspline_is_made_dense() -> None:
    b = _bspline()
    rotated = BSpline(b.grid_origin, b.grid_spacing, rotation(0, 0.2), b.grid_size, b.coefficients)
    assert spline_lead(Chain((_affine(), b))) is None  # evaluated at rotated points
    assert spline_lead(Chain((rotated, _affine()))) is None
    assert spline_lead(_affine().then(_field())) is None
    scale, offset, spline, rest = spline_lead(CHAINS["shifted bspline"]())
    assert np.allclose(scale, [1.05, 0.95, 1.0]) and np.allclose(offset, [2.0, -1.5, 0.5])
    assert spline is not None and len(rest) == 2


@pytest.mark.parametrize("name", ["affine", "bspline"])
def test_labels_identical_and_never_averaged(source_dir: Path, tmp_path: Path, name: str) -> None:
    t = CHAINS[name]()
    grid = _grid((40, 48, 56), (8, 16, 16))
    out = tmp_path / "nuc.zarr"
    result = resample(
        ImageSource(str(source_dir / "nuc.zarr"), modality="labels"),
        t,
        grid,
        out,
        memory_per_task="2MB",
        progress=False,
    )
    assert result.interpolation == "nearest"
    assert result.levels >= 2
    labels = _labels(SRC_SHAPE)
    got = _read(out)
    assert got.dtype == np.uint32
    assert np.array_equal(got, _sitk_reference(labels, t, grid, "nearest"))
    ids = set(np.unique(labels).tolist())
    for i in range(result.levels):
        level = _read(out, f"s{i}")
        assert level.dtype == np.uint32
        assert set(np.unique(level).tolist()) <= ids


def test_label_pyramid_takes_the_mode(tmp_path: Path) -> None:
    data = np.zeros((8, 8, 8), dtype=np.uint16)
    data[:, :, :] = 10
    data[0::2, 0::2, 0::2] = 30  # one voxel of eight: a mean would give a new id (12 or 13)
    src = _write_source(tmp_path / "lab.zarr", data, labels=True)
    grid = OutputGrid((8, 8, 8), SRC_VS, SRC_ORIGIN, ("z", "y", "x"), "nanometer", (4, 4, 4))
    out = tmp_path / "out.zarr"
    result = resample(src, Affine(np.eye(4)), grid, out, progress=False)
    assert result.levels == 2
    assert np.array_equal(_read(out), data)
    assert np.all(_read(out, "s1") == 10)


def test_linear_on_labels_is_refused(source_dir: Path, tmp_path: Path) -> None:
    from coframe.core.errors import MetadataError

    with pytest.raises(MetadataError, match="--interpolation nearest"):
        resample(
            ImageSource(str(source_dir / "nuc.zarr"), modality="labels"),
            _affine(),
            _grid(),
            tmp_path / "o.zarr",
            interpolation="linear",
            progress=False,
        )


def test_interrupted_run_resumes_without_recomputing(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _affine().then(_field())
    grid = _grid()
    source = ImageSource(str(source_dir / "em.zarr"))
    reference = tmp_path / "ref.zarr"
    resample(source, t, grid, reference, memory_per_task="2MB", progress=False)

    out = tmp_path / "out.zarr"
    real_write = block_mod.write_piece
    writes = {"n": 0}

    def failing_write(job: object, start: tuple[int, ...], data: np.ndarray) -> None:
        writes["n"] += 1
        if writes["n"] == 7:
            raise KeyboardInterrupt("interrupted")
        real_write(job, start, data)

    monkeypatch.setattr(block_mod, "write_piece", failing_write)
    with pytest.raises(KeyboardInterrupt):
        resample(source, t, grid, out, memory_per_task="2MB", progress=False)
    assert _multiscales(out) is None
    done_dir = out / ".coframe" / "done" / "s0"
    finished = {p.name for p in done_dir.iterdir()}
    assert finished

    monkeypatch.setattr(block_mod, "write_piece", real_write)
    computed: list[str] = []
    real_run = block_mod.run_block

    def counting(job: object, block: object) -> object:
        computed.append(block.name)  # type: ignore[attr-defined]
        return real_run(job, block)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_mod, "run_block", counting)
    result = resample(source, t, grid, out, memory_per_task="2MB", progress=False)
    assert not finished & set(computed)
    # a block still running when the first call raised may have finished since
    assert result.blocks_skipped >= len(finished)
    assert result.blocks_computed == len(computed) == result.blocks - result.blocks_skipped
    assert len(computed) < result.blocks
    for level in ("s0", "s1"):
        assert np.array_equal(_read(out, level), _read(reference, level))
    assert _multiscales(out) is not None
    assert not (out / ".coframe").exists()


def test_existing_outputs_need_force(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ImageSource(str(source_dir / "em.zarr"))
    grid = _grid((12, 14, 16), (8, 8, 8))
    out = tmp_path / "o.zarr"
    resample(source, _affine(), grid, out, progress=False)
    with pytest.raises(OverwriteError, match="--force"):
        resample(source, _affine(), grid, out, progress=False)
    resample(source, _field(), grid, out, progress=False, force=True)
    assert np.array_equal(
        _read(out), _sitk_reference(_intensities(SRC_SHAPE), _field(), grid, "linear")
    )

    # an unfinished run is never mixed with a run of other arguments
    def stop(*args: object) -> None:
        raise KeyboardInterrupt

    partial = tmp_path / "partial.zarr"
    monkeypatch.setattr(block_mod, "write_piece", stop)
    with pytest.raises(KeyboardInterrupt):
        resample(source, _affine(), grid, partial, progress=False)
    with pytest.raises(OverwriteError, match="other arguments .*transform.*--force"):
        resample(source, _field(), grid, partial, progress=False)
    stored = json.loads((partial / ".coframe" / "run.json").read_text())
    assert stored["spec"]["interpolation"] == "linear"

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a Zarr output"):
        resample(source, _affine(), grid, plain, progress=False, force=True)
    assert (plain / "notes.txt").exists()


def test_disk_full_is_one_clear_error(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(block_mod, "write_piece", full)
    with pytest.raises(OutputError, match="no space left .*free space .*resume"):
        resample(
            ImageSource(str(source_dir / "em.zarr")),
            _affine(),
            _grid((12, 14, 16), (8, 8, 8)),
            tmp_path / "o.zarr",
            progress=False,
        )


def test_zarr_v3_sharded_output_reads_back_placed(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runplan_mod, "SHARD_MIN_CHUNKS", 4)
    monkeypatch.setattr(runplan_mod, "SHARD_BYTES", 4 * 8 * 16 * 16)
    grid = _grid()
    out = tmp_path / "v3.zarr"
    result = resample(
        ImageSource(str(source_dir / "em.zarr")),
        _affine(),
        grid,
        out,
        zarr_version=3,
        memory_per_task="2MB",
        progress=False,
    )
    array = zarr.open_array(str(out / "s0"), mode="r")
    assert array.metadata.zarr_format == 3
    assert array.shards is not None and array.shards != array.chunks
    assert np.array_equal(
        array[...], _sitk_reference(_intensities(SRC_SHAPE), _affine(), grid, "linear")
    )
    volume = open_volume(out)
    assert len(volume.levels) == result.levels
    np.testing.assert_allclose(volume.levels[0].voxel_size, grid.voxel_size)
    np.testing.assert_allclose(volume.levels[0].origin, grid.origin)
    np.testing.assert_allclose(volume.levels[1].voxel_size, np.array(grid.voxel_size) * 2)
    np.testing.assert_allclose(
        volume.levels[1].origin, np.array(grid.origin) + np.array(grid.voxel_size) / 2
    )


def test_tiff_output_and_its_size_limit(
    source_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = _grid((12, 14, 16), (8, 8, 8))
    out = tmp_path / "o.tif"
    result = resample(
        ImageSource(str(source_dir / "em.zarr")), _affine(), grid, out, progress=False
    )
    assert result.format == "tiff"
    volume = open_volume(out)
    np.testing.assert_allclose(volume.levels[0].voxel_size, grid.voxel_size, rtol=1e-5)
    expected = _sitk_reference(_intensities(SRC_SHAPE), _affine(), grid, "linear")
    assert np.array_equal(volume.levels[0].read(), expected)
    monkeypatch.setattr(writer_mod, "TIFF_LIMIT", 1000)
    with pytest.raises(OutputError, match="--format ome-zarr"):
        resample(
            ImageSource(str(source_dir / "em.zarr")),
            _affine(),
            grid,
            tmp_path / "big.tif",
            progress=False,
        )


def test_bspline_interpolation_runs_close_to_sitk(source_dir: Path, tmp_path: Path) -> None:
    grid = _grid((20, 24, 28), (8, 8, 8))
    out = tmp_path / "o.zarr"
    resample(
        ImageSource(str(source_dir / "em.zarr")),
        _affine(),
        grid,
        out,
        interpolation="bspline",
        progress=False,
        memory_per_task="2MB",
    )
    image = sitk.Cast(array_to_image(_intensities(SRC_SHAPE), SRC_VS, SRC_ORIGIN), sitk.sitkUInt8)
    expected = resample_image(
        image, to_sitk(_affine()), grid.shape, grid.voxel_size, grid.origin, interpolation="bspline"
    )
    diff = np.abs(_read(out).astype(np.int16) - expected)
    assert np.percentile(diff, 99) <= 1


def test_source_stored_x_first_is_read_in_zyx_order(tmp_path: Path) -> None:
    """A cubic OME-Zarr whose axes are listed x, y, z resamples like its z, y, x view."""
    rng = np.random.default_rng(5)
    file_order = rng.integers(1, 255, size=(8, 8, 8), dtype=np.uint8)  # indexed [x, y, z]
    path = tmp_path / "xyz.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("s0", data=file_order, chunks=(4, 4, 4))
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "xyz"],
            "datasets": [
                {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}
            ],
        }
    ]
    zyx = np.transpose(file_order, (2, 1, 0))
    assert np.array_equal(open_volume(str(path)).level(0).read(), zyx)
    grid = OutputGrid((8, 8, 8), (1.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", (4, 4, 4))
    out = tmp_path / "out.zarr"
    resample(ImageSource(str(path)), Affine(np.eye(4)), grid, out, progress=False)
    assert np.array_equal(_read(out), zyx)


def test_source_read_through_its_reader_equals_sitk_in_memory(tmp_path: Path) -> None:
    """A TIFF source, read by its own reader (not decoded into the image), resamples alike."""
    import tifffile

    data = _intensities(SRC_SHAPE)
    path = tmp_path / "em.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / SRC_VS[2], 1 / SRC_VS[1]),
        metadata={"axes": "ZYX", "spacing": SRC_VS[0], "unit": "nm"},
    )
    source = ImageSource(str(path))
    assert source_mod._direct_array(source, source_mod.open_source(source).levels[0]) is None
    grid = _grid()
    out = tmp_path / "out.zarr"
    t = CHAINS["composed"]()
    resample(source, t, grid, out, memory_per_task="2MB", progress=False)
    image = array_to_image(data, SRC_VS, (0.0, 0.0, 0.0))
    expected = resample_image(image, to_sitk(t), grid.shape, grid.voxel_size, grid.origin)
    assert np.array_equal(_read(out), expected)
    assert np.count_nonzero(expected) > 0


def test_local_run_never_imports_dask_distributed(source_dir: Path, tmp_path: Path) -> None:
    """The local threaded scheduler runs without importing dask.distributed (a slow import)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from coframe.transforms.affine import Affine\n"
        "from coframe.resampling.engine import resample\n"
        "from coframe.resampling.source import ImageSource\n"
        "from coframe.resampling.plan import OutputGrid\n"
        "grid = OutputGrid((16, 16, 16), (2.0,) * 3, (4.0,) * 3, ('z', 'y', 'x'), 'nanometer',"
        " (8, 8, 8))\n"
        "identity = Affine.from_linear([[1, 0, 0], [0, 1, 0], [0, 0, 1]])\n"
        f"source = ImageSource({str(source_dir / 'em.zarr')!r})\n"
        f"r = resample(source, identity, grid, {str(tmp_path / 'out.zarr')!r}, progress=False)\n"
        "assert r.blocks > 1, r.blocks\n"
        "print(any(m == 'distributed' or m.startswith('distributed.') for m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert _read(tmp_path / "out.zarr").shape == (16, 16, 16)


def test_one_thread_tasks_cap_the_process_itk_threads(source_dir: Path, tmp_path: Path) -> None:
    """A one-thread task (a distributed worker) caps ITK's process-wide thread count."""
    from dataclasses import replace

    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    grid = _grid((8, 16, 16), (8, 16, 16))
    job = block_mod.BlockJob(
        source=ImageSource(str(source_dir / "em.zarr")),
        source_level=0,
        transform=_affine(),
        grid=grid,
        interpolation="linear",
        method="sitk",
        dtype="|u1",
        piece_shape=grid.shape,
        slab_points=4096,
        threads=1,
        token="threads-test",
    )
    block = engine_mod.plan_blocks(grid.shape, grid.shape)[0]
    try:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
        _, data, _ = block_mod.run_block(job, block)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
        block_mod.run_block(replace(job, threads=4), block)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
    expected = _sitk_reference(_intensities(SRC_SHAPE), _affine(), grid, "linear")
    assert data is not None and np.array_equal(data, expected)


def test_package_names_resolve_and_shadow_no_module() -> None:
    """What ``coframe.resampling`` and ``coframe.volumes`` export exists and hides no submodule."""
    import pkgutil

    import coframe.resampling
    import coframe.volumes

    for package in (coframe.resampling, coframe.volumes):
        modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        assert not modules & set(package.__all__)
        for name in package.__all__:
            assert getattr(package, name) is not None
