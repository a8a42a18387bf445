"""Overlay sampling and rendering: self-overlays, shifts, contrast, scale bars, chunk reads."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from coframe.core.errors import MetadataError, TransformError
from coframe.resampling.chain import map_points_checked
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Identity, Translation
from coframe.transforms.bspline import BSpline
from coframe.transforms.graph import Edge, SpaceGraph
from coframe.views.overlay import orthogonal_plane, sample_plane
from coframe.views.overlay_views import Channel, OverlayOptions, make_overlay
from coframe.views.render import (
    composite,
    difference,
    draw_scale_bar,
    label_display,
    nice_length,
    normalize,
    parse_limits,
    parse_tile,
    robust_limits,
    scale_bar,
)
from coframe.volumes.open import open_volume
from coframe.volumes.volume import Level, Volume


class NumpySource:
    """An in-memory ArraySource that records every box it is asked for."""

    def __init__(self, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
        self.data = data
        self._chunks = chunks or data.shape
        self.boxes: list[tuple[slice, ...]] = []

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self._chunks

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        self.boxes.append(box)
        return self.data[box].copy()


class CountingSource:
    """Wraps an ArraySource and records the chunks each read covers."""

    def __init__(self, base: object) -> None:
        self.base = base
        self.chunk_ids: set[tuple[int, ...]] = set()
        self.reads = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.base.shape

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.base.chunks

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        self.reads += 1
        ranges = [
            range(s.start // c, (s.stop - 1) // c + 1)
            for s, c in zip(box, self.chunks, strict=True)
        ]
        for idx in np.ndindex(*[len(r) for r in ranges]):
            self.chunk_ids.add(tuple(r[i] for r, i in zip(ranges, idx, strict=True)))
        return self.base.read(box)


def make_volume(
    data: np.ndarray, voxel: float = 10.0, origin: float = 0.0, modality: str | None = None
) -> Volume:
    ndim = data.ndim
    level = Level("s0", NumpySource(data), (voxel,) * ndim, (origin,) * ndim)
    axes = ("z", "y", "x")[-ndim:]
    return Volume("mem", "numpy", axes, "nanometer", (level,), modality=modality)


def textured(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 200 + 20).astype(np.float32)


def test_self_overlay_is_grey_in_composite_and_zero_in_difference() -> None:
    vol = make_volume(textured((12, 40, 48)))
    graph = SpaceGraph([Edge("a", "b", Identity(3))], {"a": ("z", "y", "x"), "b": ("z", "y", "x")})
    ov = make_overlay(
        graph, Channel("A", vol, "a"), Channel("B", vol, "b"), OverlayOptions(size=64)
    )
    assert [p.plane.name.split(" ")[0] for p in ov.pairs] == ["z", "y", "x"]
    assert ov.limits_a == ov.limits_b
    for pair in ov.pairs:
        np.testing.assert_array_equal(pair.a.values, pair.b.values)
        a, b = ov.display(pair)
        rgb = composite(a, b)
        assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        assert rgb.max() == 255  # the bright end of the robust range reaches white
        assert not difference(a, b).any()
        # rendered panels (with scale bar) keep the grey property outside the bar
        panel = ov.render(pair, "composite", bar=False)
        assert np.array_equal(panel[..., 0], panel[..., 1])


def test_sampling_matches_voxels_on_an_aligned_grid() -> None:
    data = textured((6, 20, 30))
    vol = make_volume(data, voxel=10.0, origin=5.0)
    plane = orthogonal_plane("a", (0, 0, 0), (60, 200, 300), 10.0, "z", (35.0, 0, 0))
    s = sample_plane(vol, plane, Identity(3))
    assert s.valid.all()
    np.testing.assert_allclose(s.values, data[3], rtol=1e-6)


def test_pixels_an_inverse_cannot_place_stay_empty() -> None:
    """Through an inverse B-spline, pixels in the gap at its valid region's edge are empty."""
    data = textured((20, 40, 40))
    vol = make_volume(data, voxel=1.0)
    size = (6, 8, 8)  # valid region: z 5..20, y and x 0..50
    shift = np.broadcast_to([3.0, 0.0, 0.0], (*size, 3))  # z 5..20 -> 8..23: no preimage in (5, 8)
    t = BSpline([0.0, -10.0, -10.0], [5.0, 10.0, 10.0], np.eye(3), size, shift).inverse()
    plane = orthogonal_plane("a", (0, 0, 0), (20, 40, 40), 1.0, "y", (0, 20.3, 0))
    pixels = plane.points(slice(0, plane.shape[0]), slice(0, plane.shape[1])).reshape(-1, 3)
    with pytest.raises(TransformError, match="did not converge"):
        t.apply(pixels)
    s = sample_plane(vol, plane, t)
    placed = np.all(np.isfinite(map_points_checked(t, pixels, 0.5)), axis=1).reshape(plane.shape)
    assert not placed.all() and placed.mean() > 0.8
    assert not s.valid[~placed].any()
    assert s.valid[placed].mean() > 0.9


def test_known_shift_shows_at_checkerboard_tile_edges() -> None:
    nx = 96
    ramp = np.tile(np.arange(nx, dtype=np.float32) * 2.0 + 10.0, (4, 64, 1))
    vol = make_volume(ramp, voxel=1.0)
    shift = 5.0
    graph = SpaceGraph([Edge("a", "b", Translation(np.array([0.0, 0.0, shift])))])
    options = OverlayOptions(views=("z",), tile="16", limits_a=(0, 255), limits_b=(0, 255))
    box = ((0.0, 0.0, 0.0), (4.0, 64.0, 64.0))
    ov = make_overlay(
        graph, Channel("A", vol, "a"), Channel("B", vol, "b"), replace(options, box=box)
    )
    pair = ov.pairs[0]
    np.testing.assert_allclose(pair.b.values - pair.a.values, 2.0 * shift, atol=1e-4)
    grey = ov.render(pair, "checkerboard", bar=False)[..., 0].astype(int)
    jump = 2.0 * shift * 255 / 255  # B - A in display units (limits 0..255 -> 0..255)
    col_steps = np.abs(np.diff(grey, axis=1))
    row_steps = np.abs(np.diff(grey, axis=0))
    big_cols = sorted({int(c) + 1 for c in np.nonzero(col_steps > jump / 2 + 2)[1]})
    big_rows = sorted({int(r) + 1 for r in np.nonzero(row_steps > jump / 2)[0]})
    assert big_cols == [16, 32, 48]
    assert big_rows == [16, 32, 48]
    assert col_steps[:, :15].max() <= 3  # inside a tile only the ramp's slope


def test_contrast_limits_ignore_zero_padding() -> None:
    data = np.zeros((4, 40, 40), dtype=np.uint16)
    data[:, 10:30, 10:30] = np.linspace(1000, 2000, 400, dtype=np.float32).reshape(20, 20)
    lo, hi = robust_limits(data.astype(float))
    assert 1000 <= lo < 1010 and 1990 < hi <= 2000
    vol = make_volume(data)
    graph = SpaceGraph([Edge("a", "b", Translation(np.array([0.0, 0.0, 150.0])))])
    ov = make_overlay(graph, Channel("A", vol, "a"), Channel("B", vol, "b"), OverlayOptions())
    assert ov.pairs[0].b.valid.mean() < 1.0  # B is partly out of bounds: zero fill
    for limits in (ov.limits_a, ov.limits_b):
        assert limits is not None and limits[0] >= 1000 and limits[1] <= 2000


def test_limits_are_settable_and_all_zero_falls_back() -> None:
    vol = make_volume(textured((3, 8, 8)))
    graph = SpaceGraph([Edge("a", "b", Identity(3))])
    options = OverlayOptions(views=("z",), limits_a=(0.0, 50.0), limits_b=(10.0, 20.0))
    ov = make_overlay(graph, Channel("A", vol, "a"), Channel("B", vol, "b"), options)
    assert (ov.limits_a, ov.limits_b) == ((0.0, 50.0), (10.0, 20.0))
    assert robust_limits(np.zeros((5, 5))) == (0.0, 1.0)


@pytest.mark.parametrize("pixel_size", [37.5, 8.0, 250.0, 3.3])
def test_scale_bar_length_matches_its_label(pixel_size: float) -> None:
    bar = scale_bar(512, pixel_size, "nanometer")
    value, unit = bar.label.split(" ")
    nm = float(value) * {"nm": 1.0, "µm": 1e3, "mm": 1e6}[unit]
    assert float(value) in (1, 2, 5, 10, 20, 50, 100, 200, 500)
    assert abs(bar.pixels - nm / pixel_size) <= 0.5
    assert bar.pixels <= 512 * 0.25 + 1
    rgb = draw_scale_bar(np.zeros((200, 512, 3), np.uint8), bar)
    row = rgb[200 - 8 - 1]  # inside the bar, above its bottom margin
    white = np.nonzero((row == 255).all(axis=1))[0]
    assert len(white) == bar.pixels and white[-1] - white[0] + 1 == bar.pixels


def test_scale_bar_in_micrometre_workspace() -> None:
    bar = scale_bar(400, 0.05, "micrometer")  # 50 nm pixels
    assert bar.label == "5 µm" and bar.pixels == 100 and bar.length == pytest.approx(5.0)
    assert nice_length(7.3) == 5.0 and nice_length(0.19) == pytest.approx(0.1)


def test_tile_parses_pixels_and_lengths() -> None:
    assert parse_tile("32", "nanometer") == (32.0, False)
    assert parse_tile("2um", "nanometer") == (2000.0, True)
    assert parse_tile("0.5 µm", "micrometer") == (0.5, True)


def test_labels_use_nearest_neighbour_and_boundaries() -> None:
    ids = np.zeros((3, 20, 20), dtype=np.uint32)
    ids[:, 2:10, 2:10] = 7
    ids[:, 10:18, 4:16] = 4_000_000_001
    vol = make_volume(ids, modality="labels")
    plane = orthogonal_plane("a", (0, 0, 0), (30, 200, 200), 3.7, "z")
    s = sample_plane(vol, plane, Translation(np.array([0.0, 1.3, 2.9])))
    assert set(np.unique(s.values[s.valid])) <= {0.0, 7.0, 4_000_000_001.0}
    pic = label_display(s.values)
    assert set(np.unique(pic)) == {0.0, np.float32(0.6), 1.0}


def test_max_projection_finds_a_bright_spot_off_the_centre_slice() -> None:
    data = np.full((20, 16, 16), 10.0, np.float32)
    data[2, 5, 7] = 500.0
    vol = make_volume(data, voxel=1.0)
    graph = SpaceGraph([Edge("a", "b", Identity(3))])
    options = OverlayOptions(views=("z", "max-z"), pixel_size=1.0)
    ov = make_overlay(graph, Channel("A", vol, "a"), Channel("B", vol, "b"), options)
    slice_, proj = ov.pairs
    assert slice_.a.values.max() == pytest.approx(10.0)
    assert proj.plane.steps == 20
    assert proj.a.values[5, 7] == pytest.approx(500.0)


def _counted(volume: Volume) -> tuple[Volume, list[CountingSource]]:
    sources = [CountingSource(lvl.array) for lvl in volume.levels]
    levels = tuple(replace(lvl, array=s) for lvl, s in zip(volume.levels, sources, strict=True))
    return replace(volume, levels=levels), sources


def test_overlay_of_a_20000_cubed_source_reads_only_the_chunks_it_shows(tmp_path) -> None:
    path = tmp_path / "big.zarr"
    writer = create_ome_zarr(
        path, shape0=(20000,) * 3, voxel_size0=(8.0,) * 3, dtype=np.uint8, n_levels=6
    )
    block = (np.arange(64 * 128 * 128) % 251 + 1).astype(np.uint8).reshape(64, 128, 128)
    writer.write(0, (9984, 9984, 9984), block)
    writer.write(1, (4992, 4992, 4992), block)
    writer.write(5, (256, 256, 256), block[:32, :64, :64])
    volume, sources = _counted(open_volume(str(path)))
    graph = SpaceGraph([Edge("a", "b", Identity(3))])
    a, b = Channel("A", volume, "a"), Channel("B", volume, "b")

    ov = make_overlay(graph, a, b, OverlayOptions(size=256))
    assert {p.a.level for p in ov.pairs} == {5}  # 625 nm pixels -> the 256 nm level
    assert [s.reads for i, s in enumerate(sources) if i != 5] == [0] * 5
    # three orthogonal slices through the centre touch each at most 2 chunk layers
    coarse = sources[5]
    chunks = volume.levels[5].chunks
    n_chunks = [-(-n // c) for n, c in zip(volume.levels[5].shape, chunks, strict=True)]
    full_planes = n_chunks[1] * n_chunks[2] + n_chunks[0] * n_chunks[2] + n_chunks[0] * n_chunks[1]
    assert 0 < len(coarse.chunk_ids) <= 2 * full_planes
    assert len(coarse.chunk_ids) < np.prod(n_chunks) / 2

    # a small box at the centre reads a fine level and only the chunks around it
    volume, sources = _counted(open_volume(str(path)))
    a, b = Channel("A", volume, "a"), Channel("B", volume, "b")
    c = 10000 * 8.0
    box = ((c - 200, c - 1000, c - 1000), (c + 200, c + 1000, c + 1000))
    ov = make_overlay(graph, a, b, OverlayOptions(box=box, size=128, views=("z",)))
    pair = ov.pairs[0]
    assert pair.a.level == 1 and pair.a.values.max() > 0
    touched = sources[1].chunk_ids
    assert 0 < len(touched) <= 8
    lvl = volume.levels[1]
    for cid in touched:
        lo = np.asarray(cid) * np.asarray(lvl.chunks)
        hi_phys = lvl.index_to_physical((lo + np.asarray(lvl.chunks))[None])[0]
        lo_phys = lvl.index_to_physical(lo[None])[0]
        assert np.all(hi_phys >= np.asarray(box[0]) - 2 * 16) and np.all(
            lo_phys <= np.asarray(box[1])
        )


def test_pixel_size_name_uses_readable_units() -> None:
    plane = orthogonal_plane("a", (0, 0, 0), (3000, 3000, 3000), 10.0, "y", (0, 1500.0, 0))
    assert re.fullmatch(r"y = 1\.5 µm", plane.name)
    assert plane.axes == ("z", "x")


def test_reversed_limits_invert_the_display() -> None:
    values = np.array([[10.0, 20.0, 30.0]])
    np.testing.assert_allclose(normalize(values, (30.0, 10.0)), 1 - normalize(values, (10.0, 30.0)))
    assert parse_limits("200,50", flag="--limits-b") == (200.0, 50.0)
    with pytest.raises(MetadataError, match="--limits-b"):
        parse_limits("5,5", flag="--limits-b")


def test_auto_level_skips_a_level_holding_only_fill_values() -> None:
    fine = NumpySource(np.zeros((8, 16, 16), np.uint8))
    coarse = NumpySource(np.full((4, 8, 8), 90, np.uint8))
    levels = (
        Level("s0", fine, (1.0,) * 3, (0.0,) * 3),
        Level("s1", coarse, (2.0,) * 3, (0.5,) * 3),
    )
    vol = Volume("mem", "numpy", ("z", "y", "x"), "nanometer", levels)
    plane = orthogonal_plane("a", (0, 0, 0), (8, 16, 16), 1.0, "z")
    auto = sample_plane(vol, plane, Identity(3))
    assert auto.level == 1 and np.all(auto.values == 90)
    assert fine.boxes and coarse.boxes
    pinned = sample_plane(vol, plane, Identity(3), level=0)
    assert pinned.level == 0 and not pinned.values.any()
