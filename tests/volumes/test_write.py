"""Writers: OME-Zarr pyramids (v2/v3), downsampling, TIFF and MRC, read back with the libraries."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

from coframe.core.atomic import write_text_atomic
from coframe.core.errors import DimensionError, MetadataError, OverwriteError
from coframe.resampling.writer import create_ome_zarr
from coframe.volumes.open import open_volume
from coframe.volumes.write import (
    downsample,
    pyramid_specs,
    write_mrc,
    write_tiff,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_pyramid_specs_follow_the_cellmap_convention() -> None:
    specs = pyramid_specs((100, 51, 7), (8.0, 8.0, 8.0), (0.0, 0.0, 0.0), 4, (64, 128, 128))
    assert [s.path for s in specs] == ["s0", "s1", "s2", "s3"]
    assert [s.shape for s in specs] == [(100, 51, 7), (50, 26, 4), (25, 13, 2), (13, 7, 1)]
    assert [s.voxel_size[0] for s in specs] == [8.0, 16.0, 32.0, 64.0]
    # half-voxel translation per level: 8 * (2**i - 1) / 2
    assert [s.origin[0] for s in specs] == [0.0, 4.0, 12.0, 28.0]
    assert specs[1].chunks == (50, 26, 4)


def test_v2_pyramid_round_trip_and_cellmap_metadata(tmp_path) -> None:
    path = tmp_path / "sample.zarr" / "recon-1" / "em" / "fibsem-uint8"
    writer = create_ome_zarr(
        path,
        shape0=(96, 160, 200),
        voxel_size0=(8.0, 8.0, 8.0),
        dtype=np.uint8,
        chunks=(16, 32, 32),
        n_levels=6,
        name="/recon-1/em/fibsem-uint8",
    )
    block = _rng().integers(1, 255, (32, 64, 64), dtype=np.uint8)
    writer.write(0, (16, 32, 64), block)

    s0 = zarr.open_array(str(path / "s0"), mode="r")
    np.testing.assert_array_equal(s0[16:48, 32:96, 64:128], block)
    assert not np.any(s0[48:96, :, :]), "unwritten chunks must read as the fill value"
    assert s0.shape == (96, 160, 200)

    zarray = json.loads((path / "s0" / ".zarray").read_text())
    assert zarray["dimension_separator"] == "/"
    assert zarray["compressor"]["id"] == "zstd" and zarray["compressor"]["level"] == 6
    assert zarray["chunks"] == [16, 32, 32] and zarray["fill_value"] == 0
    assert zarray["zarr_format"] == 2 and zarray["dtype"] == "|u1"
    assert (path / "s0" / "1" / "1" / "2").is_file(), "chunk keys use the '/' separator"
    for parent in (tmp_path / "sample.zarr", path.parent, path.parent.parent):
        assert (parent / ".zgroup").is_file()

    ms = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert ms["version"] == "0.4" and ms["name"] == "/recon-1/em/fibsem-uint8"
    assert ms["axes"] == [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    for i, ds in enumerate(ms["datasets"]):
        scale, translation = ds["coordinateTransformations"]
        assert ds["path"] == f"s{i}"
        assert scale == {"type": "scale", "scale": [8.0 * 2**i] * 3}
        assert translation == {"type": "translation", "translation": [4.0 * (2**i - 1)] * 3}
    assert [ds["path"] for ds in ms["datasets"]] == [f"s{i}" for i in range(6)]


def test_v3_pyramid_writes_ome_zarr_05(tmp_path) -> None:
    path = tmp_path / "img.zarr"
    writer = create_ome_zarr(
        path,
        shape0=(10, 20, 30),
        voxel_size0=(2.0, 1.0, 1.0),
        origin0=(5.0, 0.0, -1.0),
        unit="micrometer",
        dtype=np.float32,
        chunks=(8, 8, 8),
        n_levels=2,
        zarr_version=3,
    )
    data = _rng().random((10, 20, 30)).astype(np.float32)
    writer.write(0, (0, 0, 0), data)
    writer.downsample_level(0)
    root = json.loads((path / "zarr.json").read_text())
    ome = root["attributes"]["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert "version" not in ms
    assert ms["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert ms["datasets"][1]["coordinateTransformations"][1]["translation"] == [6.0, 0.5, -0.5]
    arr_meta = json.loads((path / "s0" / "zarr.json").read_text())
    assert any(c["name"] == "zstd" for c in arr_meta["codecs"])
    np.testing.assert_array_equal(zarr.open_array(str(path / "s0"), mode="r")[:], data)
    np.testing.assert_allclose(
        zarr.open_array(str(path / "s1"), mode="r")[:], downsample(data), rtol=1e-6
    )


def test_existing_outputs_need_overwrite(tmp_path) -> None:
    path = tmp_path / "a.zarr"
    create_ome_zarr(path, shape0=(4, 4, 4), voxel_size0=(1, 1, 1), dtype=np.uint8)
    with pytest.raises(OverwriteError, match="--force"):
        create_ome_zarr(path, shape0=(4, 4, 4), voxel_size0=(1, 1, 1), dtype=np.uint8)
    w = create_ome_zarr(
        path, shape0=(6, 4, 4), voxel_size0=(1, 1, 1), dtype=np.uint8, overwrite=True
    )
    assert w.arrays[0].shape == (6, 4, 4)
    tif = tmp_path / "a.tif"
    write_tiff(tif, np.zeros((4, 4), np.uint8), 1.0)
    with pytest.raises(OverwriteError, match="--force"):
        write_tiff(tif, np.zeros((4, 4), np.uint8), 1.0)
    with pytest.raises(OverwriteError, match="--force"):
        write_mrc(tif, np.zeros((4, 4), np.float32), 1.0)
    with pytest.raises(OverwriteError):
        write_text_atomic(tif, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "a.zarr"], "no temporaries left"


def test_metadata_can_be_written_last(tmp_path) -> None:
    path = tmp_path / "late.zarr"
    writer = create_ome_zarr(
        path, shape0=(8, 8, 8), voxel_size0=(4, 4, 4), dtype=np.uint16, write_metadata=False
    )
    assert "multiscales" not in json.loads((path / ".zattrs").read_text())
    writer.write_metadata()
    assert "multiscales" in json.loads((path / ".zattrs").read_text())


def test_downsample_level_over_a_crop_matches_downsample(tmp_path) -> None:
    writer = create_ome_zarr(
        tmp_path / "c.zarr",
        shape0=(64, 64, 64),
        voxel_size0=(8, 8, 8),
        dtype=np.uint8,
        chunks=(8, 8, 8),
        n_levels=3,
    )
    block = _rng().integers(0, 256, (20, 24, 18), dtype=np.uint8)
    writer.write(0, (8, 16, 4), block)
    box = writer.downsample_level(0, box=((8, 28), (16, 40), (4, 22)))
    assert box == ((4, 14), (8, 20), (2, 11))
    s1 = writer.arrays[1][4:14, 8:20, 2:11]
    np.testing.assert_array_equal(s1, downsample(block))
    assert not np.any(writer.arrays[1][:4]) and not np.any(writer.arrays[1][14:])
    with pytest.raises(DimensionError, match="even"):
        writer.downsample_level(0, box=((1, 9), (0, 8), (0, 8)))


def test_downsample_mean_handles_odd_edges() -> None:
    a = np.arange(5 * 3 * 2, dtype=np.float64).reshape(5, 3, 2)
    out = downsample(a)
    assert out.shape == (3, 2, 1)
    assert out[0, 0, 0] == pytest.approx(a[:2, :2, :2].mean())
    assert out[2, 1, 0] == pytest.approx(a[4:, 2:, :].mean())
    ints = np.array([[1, 2], [2, 2]], dtype=np.uint8)
    assert downsample(ints)[0, 0] == 2  # 1.75 rounds to 2
    assert downsample(np.array([[0, 1]], dtype=np.uint8), (1, 2))[0, 0] == 1  # half rounds up


@pytest.mark.parametrize("method", ["mode", "nearest"])
def test_label_downsampling_never_invents_ids(method: str) -> None:
    rng = _rng()
    for shape in [(9, 7, 5), (16, 16, 16), (3, 1, 4)]:
        labels = rng.choice(np.array([0, 3, 17, 40000], dtype=np.uint32), size=shape)
        out = downsample(labels, labels=True, method=method)
        assert out.dtype == labels.dtype
        assert set(np.unique(out)) <= set(np.unique(labels))
    # an id that holds most of its block wins; ties go to the smallest id
    blk = np.zeros((2, 2, 2), np.uint32)
    blk.flat[:5] = 7
    assert downsample(blk, labels=True)[0, 0, 0] == 7
    blk.flat[:4] = 9
    blk.flat[4:] = 5
    assert downsample(blk, labels=True)[0, 0, 0] == 5
    with pytest.raises(DimensionError, match="averaged"):
        downsample(blk, labels=True, method="mean")


def test_mode_matches_a_brute_force_count() -> None:
    labels = _rng().integers(0, 4, (12, 10, 8)).astype(np.uint16)
    out = downsample(labels, labels=True)
    for idx in np.ndindex(out.shape):
        block = labels[tuple(slice(2 * i, 2 * i + 2) for i in idx)].ravel()
        values, counts = np.unique(block, return_counts=True)
        assert out[idx] == values[np.argmax(counts)]


def test_imagej_tiff_keeps_voxel_size(tmp_path) -> None:
    img = _rng().integers(0, 60000, (3, 20, 30), dtype=np.uint16)
    path = write_tiff(tmp_path / "stack.tif", img, (100.0, 40.0, 20.0), "nanometer")
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), img)
        meta = tif.imagej_metadata
        assert meta["unit"] == "nm" and meta["spacing"] == pytest.approx(100.0)
        page = tif.pages[0]
        xres = page.tags["XResolution"].value
        yres = page.tags["YResolution"].value
        assert xres[1] / xres[0] == pytest.approx(20.0)
        assert yres[1] / yres[0] == pytest.approx(40.0)


def test_ome_tiff_keeps_voxel_size(tmp_path) -> None:
    img = _rng().integers(0, 9, (25, 15), dtype=np.uint32)
    path = write_tiff(tmp_path / "labels.tif", img, (2.0, 0.5), "micrometer", flavor="ome")
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), img)
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.5"' in ome and 'PhysicalSizeY="2.0"' in ome
    assert 'PhysicalSizeXUnit="µm"' in ome


@pytest.mark.parametrize(
    ("flavor", "dtype", "kind"),
    [
        ("imagej", np.uint8, "imagej"),
        ("ome", np.uint8, "ome"),
        ("imagej", np.int32, "ome"),  # ImageJ has no int32: written as OME-TIFF
    ],
)
@pytest.mark.parametrize(
    ("shape", "voxel", "origin"),
    [
        ((3, 20, 30), (100.0, 40.0, 20.0), (120.0, 210.0, 290.0)),
        ((20, 30), (2.5, 4.0), (-7.5, 3.0)),
    ],
)
def test_tiff_origin_reads_back(
    tmp_path, flavor: str, dtype: type, kind: str, shape: tuple, voxel: tuple, origin: tuple
) -> None:
    img = _rng().integers(0, 100, shape).astype(dtype)
    path = write_tiff(tmp_path / "o.tif", img, voxel, "nanometer", origin=origin, flavor=flavor)
    vol = open_volume(path)
    assert vol.metadata["calibration"] == kind
    assert vol.levels[0].voxel_size == pytest.approx(voxel)
    assert vol.levels[0].origin == pytest.approx(origin)
    np.testing.assert_array_equal(vol.levels[0].read(), img)


def test_ome_tiff_origin_is_each_plane_position(tmp_path) -> None:
    img = np.zeros((3, 4, 5), np.uint32)
    path = write_tiff(
        tmp_path / "p.tif", img, (2.0, 1.0, 0.5), "micrometer", origin=(10.0, 20.0, 30.0)
    )
    with tifffile.TiffFile(path) as tif:
        ome = tif.ome_metadata
    assert ome.count("<Plane ") == 3
    assert 'PositionZ="14.0"' in ome and 'PositionZUnit="µm"' in ome
    assert 'PositionX="30.0"' in ome and 'PositionY="20.0"' in ome


def test_tiff_origin_must_be_finite(tmp_path) -> None:
    with pytest.raises(MetadataError, match="origin"):
        write_tiff(tmp_path / "bad.tif", np.zeros((4, 4), np.uint8), 1.0, origin=(0.0, np.nan))
    assert not (tmp_path / "bad.tif").exists()


def test_mrc_keeps_voxel_size(tmp_path) -> None:
    img2 = _rng().integers(0, 4000, (12, 18)).astype(np.int16)
    p2 = write_mrc(tmp_path / "s.mrc", img2, 400.0)
    with mrcfile.open(p2) as mrc:
        np.testing.assert_array_equal(mrc.data, img2)
        assert float(mrc.voxel_size.x) == pytest.approx(400.0)
        assert float(mrc.voxel_size.y) == pytest.approx(400.0)
    img3 = _rng().random((4, 5, 6)).astype(np.float32)
    p3 = write_mrc(tmp_path / "v.mrc", img3, (30.0, 20.0, 10.0))
    with mrcfile.open(p3) as mrc:
        np.testing.assert_array_equal(mrc.data, img3)
        vs = mrc.voxel_size
        assert (float(vs.z), float(vs.y), float(vs.x)) == pytest.approx((30.0, 20.0, 10.0))
