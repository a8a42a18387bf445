"""Reading MRC: ångström header sizes and origins, 2D sections, axis order, corrupt files."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from coframe.core.errors import FormatError, MetadataError
from coframe.volumes.open import detect_format, open_volume


def _write(
    path: Path, data: np.ndarray, voxel_xyz: tuple[float, float, float], **header: object
) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_xyz
        for key, value in header.items():
            setattr(mrc.header, key, value)


def test_volume_voxel_size_in_angstrom_becomes_nanometres(tmp_path: Path) -> None:
    path = tmp_path / "tomo.mrc"
    data = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    _write(path, data, (20.0, 10.0, 30.0), origin=(100.0, 200.0, 300.0))
    assert detect_format(path) == "mrc"
    vol = open_volume(path)
    assert vol.format == "mrc"
    assert vol.axes == ("z", "y", "x")
    assert vol.levels[0].voxel_size == pytest.approx((3.0, 1.0, 2.0))  # header is x, y, z
    assert vol.levels[0].origin == pytest.approx((30.0, 20.0, 10.0))
    np.testing.assert_array_equal(vol.levels[0].read(), data)
    box = (slice(1, 3), slice(2, 5), slice(0, 4))
    np.testing.assert_array_equal(vol.levels[0].read(box), data[box])


def test_single_section_is_2d_and_start_indices_place_it(tmp_path: Path) -> None:
    path = tmp_path / "section.mrc"
    data = np.arange(6 * 8, dtype=np.int16).reshape(6, 8)
    _write(path, data, (12.0, 12.0, 12.0), nxstart=10, nystart=-2)
    vol = open_volume(path, unit="angstrom")
    assert vol.axes == ("y", "x")
    assert vol.levels[0].voxel_size == (12.0, 12.0)
    assert vol.levels[0].origin == (-24.0, 120.0)
    np.testing.assert_array_equal(vol.levels[0].read(), data)


def test_permuted_map_axes_are_put_in_zyx_order(tmp_path: Path) -> None:
    path = tmp_path / "permuted.map"
    # stored sections along x (maps = 1), rows along z (mapr = 3), columns along y (mapc = 2)
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 2, 3, 1
        mrc.header.mx, mrc.header.my, mrc.header.mz = 3, 5, 4
        mrc.header.cella = (3 * 1.0, 5 * 2.0, 4 * 3.0)
    vol = open_volume(path, unit="angstrom")
    assert vol.levels[0].shape == (4, 5, 3)  # (z, y, x)
    assert vol.levels[0].voxel_size == pytest.approx((3.0, 2.0, 1.0))
    np.testing.assert_array_equal(vol.levels[0].read(), data.transpose(1, 2, 0))


def test_zero_voxel_size_needs_an_override(tmp_path: Path) -> None:
    path = tmp_path / "nosize.mrc"
    _write(path, np.zeros((2, 4, 4), np.uint8), (0.0, 0.0, 0.0))
    with pytest.raises(MetadataError, match="header voxel size is 0.*--voxel-size"):
        open_volume(path)
    assert open_volume(path, voxel_size=5).levels[0].voxel_size == (5.0, 5.0, 5.0)


def test_random_bytes_and_truncated_files_are_format_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(FormatError, match="cannot read .*junk.mrc as MRC"):
        open_volume(junk)
    good = tmp_path / "good.mrc"
    _write(good, np.zeros((4, 16, 16), np.float32), (1.0, 1.0, 1.0))
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(FormatError, match="cut.mrc"):
        open_volume(cut)
