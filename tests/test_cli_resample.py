"""``coframe resample SOURCE --into TARGET -o OUT`` in a workspace."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage
from typer.testing import CliRunner

import coframe.resampling.block as block_mod
from coframe.cli import app
from coframe.resampling.source import ImageSource
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.formats.itk import write_itk
from coframe.transforms.sitk_bridge import array_to_image, resample_image, to_sitk
from coframe.volumes.open import open_volume

EM_SHAPE = (32, 40, 48)
EM_VS = (4.0, 4.0, 4.0)


def _em() -> np.ndarray:
    rng = np.random.default_rng(7)
    data = ndimage.gaussian_filter(rng.random(EM_SHAPE), 1.5)
    return ((data - data.min()) * (255 / np.ptp(data))).astype(np.uint8)


def _nuc() -> np.ndarray:
    z, y, x = np.indices((16, 20, 24))
    return (((z // 5) * 16 + (y // 6) * 4 + x // 7) % 9).astype(np.uint16)


def _affine() -> Affine:
    return Affine.from_linear(
        [[1.0, 0.03, 0.0], [-0.02, 0.98, 0.04], [0.0, 0.02, 1.02]], (6.0, -4.0, 10.0)
    )


@pytest.fixture
def ws(tmp_path: Path, runner: CliRunner) -> Path:
    """A workspace: FIB-SEM-like `em` (2 levels) with labels `nuc`, an X-ray-like `xr`, an edge."""
    root = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    em = create_ome_zarr(
        root / "em.zarr",
        shape0=EM_SHAPE,
        voxel_size0=EM_VS,
        dtype=np.uint8,
        chunks=(16, 16, 16),
        n_levels=2,
    )
    em.write(0, (0, 0, 0), _em())
    em.downsample_level(0)
    nuc = create_ome_zarr(
        root / "nuc.zarr",
        shape0=(16, 20, 24),
        voxel_size0=(8.0, 8.0, 8.0),
        origin0=(2.0, 2.0, 2.0),
        dtype=np.uint16,
        chunks=(8, 8, 8),
        labels=True,
    )
    nuc.write(0, (0, 0, 0), _nuc())
    xr = create_ome_zarr(
        root / "xr.zarr",
        shape0=(12, 14, 16),
        voxel_size0=(10.0, 10.0, 10.0),
        dtype=np.uint8,
        chunks=(8, 8, 8),
    )
    xr.write(0, (0, 0, 0), np.full((12, 14, 16), 7, np.uint8))
    other = create_ome_zarr(
        root / "other.zarr", shape0=(4, 4, 4), voxel_size0=(10.0,) * 3, dtype=np.uint8
    )
    other.write(0, (0, 0, 0), np.ones((4, 4, 4), np.uint8))
    sec = create_ome_zarr(root / "sec.zarr", shape0=(8, 8), voxel_size0=(10.0,) * 2, dtype=np.uint8)
    sec.write(0, (0, 0), np.ones((8, 8), np.uint8))
    for name, path, extra in (
        ("em", "em.zarr", ["--modality", "fibsem"]),
        ("nuc", "nuc.zarr", ["--modality", "labels", "--space", "em"]),
        ("xr", "xr.zarr", ["--modality", "xray"]),
        ("other", "other.zarr", []),
        ("sec", "sec.zarr", ["--modality", "tem"]),
    ):
        result = runner.invoke(app, ["add", name, str(root / path), *extra, "-w", str(root)])
        assert result.exit_code == 0, result.output
    write_itk(_affine(), root / "xr-to-em.tfm")
    linked = runner.invoke(app, ["link", "xr", "em", str(root / "xr-to-em.tfm"), "-w", str(root)])
    assert linked.exit_code == 0, linked.output
    return root


def _run(runner: CliRunner, ws: Path, *args: str) -> object:
    return runner.invoke(app, ["resample", *args, "--quiet", "-w", str(ws)])


def _expected(
    data: np.ndarray,
    vs: tuple[float, ...],
    grid_shape: tuple[int, ...],
    grid_vs: tuple[float, ...],
    origin: tuple[float, ...],
    interpolation: str,
) -> np.ndarray:
    image = array_to_image(data, vs, (0.0,) * 3 if data.dtype == np.uint8 else (2.0,) * 3)
    return resample_image(
        image, to_sitk(_affine()), grid_shape, grid_vs, origin, interpolation=interpolation
    )


def test_resample_em_into_xray_frame(runner: CliRunner, ws: Path) -> None:
    out = ws / "em-in-xr.zarr"
    result = _run(runner, ws, "em", "--into", "xr", "-o", str(out), "--source-level", "0")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "source level s0" in result.stdout
    volume = open_volume(out)
    level = volume.levels[0]
    assert level.shape == (12, 14, 16)
    np.testing.assert_allclose(level.voxel_size, (10.0,) * 3)
    expected = _expected(_em(), EM_VS, (12, 14, 16), (10.0,) * 3, (0.0,) * 3, "linear")
    assert np.array_equal(level.read(), expected)

    again = _run(runner, ws, "em", "--into", "xr", "-o", str(out))
    assert again.exit_code == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    forced = _run(
        runner, ws, "em", "--into", "xr", "-o", str(out), "--force", "--zarr-version", "3"
    )
    assert forced.exit_code == 0, forced.output
    assert zarr.open_group(str(out), mode="r").metadata.zarr_format == 3


def test_a_run_opens_its_source_once(
    runner: CliRunner, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workspace driver, the engine and the local tasks share one opened source."""
    opened: list[str] = []
    real_open = ImageSource.open

    def counting(self: ImageSource) -> object:
        opened.append(Path(self.path).name)
        return real_open(self)

    monkeypatch.setattr(ImageSource, "open", counting)
    first = _run(runner, ws, "em", "--into", "xr", "-o", str(ws / "a.zarr"), "--chunks", "4,4,4")
    assert first.exit_code == 0, first.output
    assert "0 resumed" in first.stdout and opened == ["em.zarr"]
    # the next run reads the source afresh
    second = _run(runner, ws, "em", "--into", "xr", "-o", str(ws / "b.tif"))
    assert second.exit_code == 0, second.output
    assert opened == ["em.zarr", "em.zarr"]


@pytest.mark.parametrize(
    ("version", "compressor", "codec"),
    [(2, None, "blosc"), (2, "zstd", "zstd"), (3, None, "blosc"), (3, "none", None)],
)
def test_output_compressor(
    runner: CliRunner, ws: Path, version: int, compressor: str | None, codec: str | None
) -> None:
    out = ws / "c.zarr"
    args = ["em", "--into", "xr", "-o", str(out), "--source-level", "0"]
    args += ["--zarr-version", str(version)]
    result = _run(runner, ws, *args, *(["--compressor", compressor] if compressor else []))
    assert result.exit_code == 0, result.output
    array = zarr.open_array(str(out / "s0"), mode="r")
    names = [type(c).__name__.lower() for c in array.compressors]
    assert names == ([] if codec is None else [codec + ("codec" if version == 3 else "")])
    if codec == "blosc":
        assert str(array.compressors[0].cname).endswith("lz4")
    expected = _expected(_em(), EM_VS, (12, 14, 16), (10.0,) * 3, (0.0,) * 3, "linear")
    assert np.array_equal(open_volume(out).levels[0].read(), expected)


def test_voxel_size_box_and_automatic_source_level(runner: CliRunner, ws: Path) -> None:
    out = ws / "box.zarr"
    result = _run(
        runner,
        ws,
        "em",
        "--into",
        "xr",
        "-o",
        str(out),
        "--voxel-size",
        "8",
        "--box",
        "0,0,0:60,80,100",
    )
    assert result.exit_code == 0, result.output
    assert "source level s1" in result.stdout
    level = open_volume(out).levels[0]
    np.testing.assert_allclose(level.voxel_size, (8.0,) * 3)
    assert level.shape == (7, 10, 12)  # centres 7, 15, ... inside the box
    np.testing.assert_allclose(level.origin, (7.0, 7.0, 7.0))


@pytest.mark.parametrize("source", ["em", "nuc"])
def test_tiff_output_keeps_its_origin(runner: CliRunner, ws: Path, source: str) -> None:
    box = ["--voxel-size", "5", "--box", "20,30,40:60,80,100"]
    for out in ("box.zarr", "box.tif"):
        result = _run(runner, ws, source, "--into", "xr", "-o", str(ws / out), *box)
        assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", str(ws / "box.tif"), "--json"])
    assert info.exit_code == 0, info.output
    level = json.loads(info.stdout)["levels"][0]
    reference = open_volume(ws / "box.zarr").levels[0]
    assert min(reference.origin) >= 20.0
    assert level["origin"] == pytest.approx(reference.origin)
    assert level["voxel_size"] == pytest.approx(reference.voxel_size)
    assert level["shape"] == list(reference.shape)
    tif = open_volume(ws / "box.tif").levels[0]
    np.testing.assert_array_equal(tif.read(), reference.read())


def test_labels_keep_ids_and_dtype(runner: CliRunner, ws: Path) -> None:
    out = ws / "nuc.tif"
    result = _run(runner, ws, "nuc", "--into", "xr", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "nearest" in result.stdout
    got = open_volume(out).levels[0].read()
    assert got.dtype == np.uint16
    expected = _expected(_nuc(), (8.0,) * 3, (12, 14, 16), (10.0,) * 3, (0.0,) * 3, "nearest")
    assert np.array_equal(got, expected)
    bad = _run(
        runner, ws, "nuc", "--into", "xr", "-o", str(ws / "n2.zarr"), "--interpolation", "linear"
    )
    assert bad.exit_code == 2 and "--interpolation nearest" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["em", "--into", "other"], "no chain of transforms"),
        (["em", "--into", "xr", "--level", "7"], "level 7 does not exist"),
        (["em", "--into", "xr", "--source-level", "s9"], "'s9' does not exist"),
        (["em", "--into", "xr", "--box", "0,0,0:500,10,10"], "outside"),
        (["em", "--into", "xr", "--box", "0,0:10,10"], "--box"),
        (["em", "--into", "xr", "--interpolation", "cubic"], "--interpolation"),
        (["em", "--into", "xr", "--memory-per-task", "lots"], "--memory-per-task"),
        (["nope", "--into", "xr"], "unknown image"),
        (["em", "--into", "xr", "--compressor", "brotli"], "--compressor"),
        (["sec", "--into", "xr"], "a section has no values off its plane"),
    ],
)
def test_bad_input_is_one_line(runner: CliRunner, ws: Path, args: list[str], message: str) -> None:
    result = _run(runner, ws, *args, "-o", str(ws / "bad.zarr"))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (ws / "bad.zarr").exists()


@pytest.mark.parametrize(
    ("name", "kept"), [("out.zarr", "finished blocks are kept"), ("o.tif", "nothing was written")]
)
def test_ctrl_c_says_how_to_resume(
    runner: CliRunner, ws: Path, monkeypatch: pytest.MonkeyPatch, name: str, kept: str
) -> None:
    import coframe.cli as cli_mod

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "resample_workspace", interrupted)
    result = _run(runner, ws, "em", "--into", "xr", "-o", str(ws / name))
    assert result.exit_code == 130
    assert kept in result.stderr and "run the same command again to resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_disk_full_then_rerun_resumes(
    runner: CliRunner, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = block_mod.write_piece
    calls = {"n": 0}

    def fill_up(job: object, start: tuple[int, ...], data: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(job, start, data)

    monkeypatch.setattr(block_mod, "write_piece", fill_up)
    out = ws / "full.zarr"
    args = ["em", "--into", "xr", "-o", str(out), "--voxel-size", "4", "--chunks", "8,8,8"]
    full = _run(runner, ws, *args)
    assert full.exit_code == 2
    assert "no space left" in full.stderr and "free space" in full.stderr
    assert "resume" in full.stderr
    monkeypatch.setattr(block_mod, "write_piece", real)
    resumed = _run(runner, ws, *args)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed)" in resumed.stdout and " 0 resumed" not in resumed.stdout
    level = open_volume(out).levels[0]
    expected = _expected(_em(), EM_VS, level.shape, (4.0,) * 3, level.origin, "linear")
    assert np.array_equal(level.read(), expected)
