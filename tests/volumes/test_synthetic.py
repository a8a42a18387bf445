"""The procedural tissue: determinism, blocks, consistency across voxel sizes, polarity."""

from __future__ import annotations

import numpy as np
import pytest

from coframe.core.errors import DimensionError
from coframe.demo import render as syn
from coframe.demo.render_grid import RenderGrid, section_render_grid
from coframe.demo.shading import splat_objects
from coframe.demo.tissue import ResinBlock, Tissue, TissueParams

BOX = 30_000.0


@pytest.fixture(scope="module")
def tissue() -> Tissue:
    """Cells of 6 µm with nuclei of 1.2-1.8 µm in a 30 µm box (a dense, fast sample)."""
    params = TissueParams().scaled(0.6)
    return Tissue(3, (0.0,) * 3, (BOX,) * 3, params=params, envelope_radii=(0.8 * BOX,) * 3)


def _nucleus_box(tissue: Tissue, half: float) -> tuple[np.ndarray, np.ndarray, int]:
    ids, centres, _ = tissue.nuclei()
    k = int(np.argmin(np.linalg.norm(centres - BOX / 2, axis=1)))
    return centres[k] - half, centres[k] + half, int(ids[k])


def test_rendering_is_deterministic_and_seeded(tissue: Tissue) -> None:
    lo, hi = (10_000.0, 10_000.0, 10_000.0), (10_512.0, 12_048.0, 12_048.0)
    a = syn.render_em(tissue, lo, hi, 32.0)
    b = syn.render_em(tissue, lo, hi, 32.0)
    assert a.dtype == np.uint8 and a.shape == (16, 64, 64)
    np.testing.assert_array_equal(a, b)
    other = Tissue(4, (0.0,) * 3, (BOX,) * 3, params=tissue.params)
    assert np.mean(syn.render_em(other, lo, hi, 32.0) != a) > 0.5


def test_blocks_render_like_the_whole(tissue: Tissue) -> None:
    lo, hi, _ = _nucleus_box(tissue, 1200.0)
    whole = syn.render_stain(tissue, lo, hi, 40.0)
    mid = lo + np.array([0.0, 1200.0, 0.0])
    top = syn.render_stain(tissue, lo, (hi[0], mid[1], hi[2]), 40.0)
    bottom = syn.render_stain(tissue, (lo[0], mid[1], lo[2]), hi, 40.0)
    np.testing.assert_allclose(np.concatenate([top, bottom], axis=1), whole, atol=2e-3)


def test_nucleus_labels_are_consistent_across_voxel_sizes(tissue: Tissue) -> None:
    lo, hi = (5_120.0,) * 3, (24_576.0,) * 3
    fine = syn.render_nucleus_labels(tissue, lo, hi, 128.0)
    coarse = syn.render_nucleus_labels(tissue, lo, hi, 256.0)
    assert fine.dtype == np.uint32 and fine.shape == (152, 152, 152)
    frac_fine, frac_coarse = np.mean(fine > 0), np.mean(coarse > 0)
    assert 0.02 < frac_fine < 0.5
    assert frac_coarse == pytest.approx(frac_fine, rel=0.05)
    assert set(np.unique(coarse)) <= set(np.unique(fine)) | {0}
    assert set(np.unique(fine)) - {0} <= set(tissue.labels[tissue.has_nucleus])
    # each nucleus centre carries its own id
    ids, centres, _ = tissue.nuclei()
    inside = np.all((centres > lo) & (centres < hi), axis=1)
    idx = np.floor((centres[inside] - lo) / 128.0).astype(int)
    np.testing.assert_array_equal(fine[tuple(idx.T)], ids[inside])


def test_em_means_agree_across_voxel_sizes(tissue: Tissue) -> None:
    lo, hi, _ = _nucleus_box(tissue, 1024.0)
    fine = syn.render_stain(tissue, lo, hi, 16.0)
    coarse = syn.render_stain(tissue, lo, hi, 128.0)
    # the same region, averaged: within a small fraction of the stain range
    assert coarse.mean() == pytest.approx(fine.mean(), abs=0.02)
    block = fine.reshape(16, 8, 16, 8, 16, 8).mean(axis=(1, 3, 5))
    assert np.corrcoef(block.ravel(), coarse.ravel())[0, 1] > 0.8


def _boundary_point(tissue: Tissue) -> np.ndarray:
    """A point on the membrane between two neighbouring tissue cells near the box centre."""
    inner = np.nonzero(tissue.tissue & np.all(np.abs(tissue.seeds - BOX / 2) < BOX / 4, axis=1))[0]
    _, pair = tissue.tree.query(tissue.seeds[inner], k=2)
    both = np.nonzero(tissue.tissue[pair[:, 1]])[0][0]
    return (tissue.seeds[inner[both]] + tissue.seeds[pair[both, 1]]) / 2


def test_partial_volume_keeps_membrane_stain(tissue: Tissue) -> None:
    # a thin boundary layer seen by coarse voxels is fainter but keeps its integrated darkness
    m = _boundary_point(tissue)
    lo, hi = m - np.array([128.0, 1024.0, 1024.0]), m + np.array([128.0, 1024.0, 1024.0])
    assert tissue.cells_at(m[None])[2][0] < 1.0
    fine = syn.render_stain(tissue, lo, hi, 8.0)
    coarse = syn.render_stain(tissue, lo, hi, 64.0)
    assert coarse.mean() == pytest.approx(fine.mean(), abs=0.01)
    assert coarse.max() < fine.max()


def test_xray_contrast_is_inverted_relative_to_em(tissue: Tissue) -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform(4_000.0, 26_000.0, (4000, 3))
    mu = syn.xray_attenuation(tissue, pts, 750.0)
    grid = RenderGrid.from_box((4_000.0,) * 3, (26_000.0,) * 3, 1_000.0)
    em = syn.em_from_stain(syn.render_grid(tissue, grid, window=750.0))
    idx = np.floor((pts - 4_000.0) / 1_000.0).astype(int)
    assert np.corrcoef(mu, em[tuple(idx.T)])[0, 1] < -0.5
    # points agree with grids at the same window
    at_centres = syn.stain_at_points(tissue, grid.points()[:2000], 750.0)
    np.testing.assert_allclose(
        at_centres, syn.render_grid(tissue, grid, window=750.0).ravel()[:2000], atol=0.02
    )


def test_xray_sees_air_beyond_the_resin_block() -> None:
    resin = ResinBlock(
        face_z=5_000.0, centre_yx=(10_000.0, 10_000.0), half_width_yx=(6_000.0, 6_000.0)
    )
    t = Tissue(1, (0.0,) * 3, (20_000.0,) * 3, resin=resin)
    mu = syn.xray_attenuation(
        t, np.array([[2_000.0, 10_000.0, 10_000.0], [8_000.0, 10_000.0, 10_000.0]]), 750.0
    )
    assert mu[0] == 0.0 and mu[1] > 0.3
    img = syn.xray_image(np.zeros((8, 8, 8), np.float32) + 0.5, noise=0.0)
    assert img.dtype == np.uint16 and np.all(img == 16000)


def test_tem_section_has_tem_polarity(tissue: Tissue) -> None:
    c = np.array([BOX / 2] * 3)
    tilt = np.radians(10.0)
    e_y = np.array([np.sin(tilt), np.cos(tilt), 0.0])
    grid = section_render_grid(c, e_y, (0.0, 0.0, 1.0), (96, 96), 40.0)
    assert grid.shape == (3, 96, 96)
    img = syn.render_tem(tissue, grid, noise=0.0)
    stain = syn.render_grid(tissue, grid).mean(axis=0)
    assert img.dtype == np.uint16
    assert np.corrcoef(img.ravel().astype(float), stain.ravel())[0, 1] < -0.95
    with pytest.raises(DimensionError, match="orthogonal"):
        section_render_grid(c, (0.0, 1.0, 0.0), (0.0, 1.0, 1.0), (8, 8), 40.0)


def test_organelles_keep_their_volume_below_voxel_size(tissue: Tissue) -> None:
    lo = np.array([14_000.0, 14_000.0, 14_000.0])
    hi = lo + 2_048.0
    objs = tissue.objects_near(0, lo, hi, 0.0)
    assert len(objs["centre"]) > 0
    grid_fine = RenderGrid.from_box(lo, hi, 32.0)
    grid_coarse = RenderGrid.from_box(lo, hi, 128.0)
    fine = np.zeros(grid_fine.shape, np.float32)
    coarse = np.zeros(grid_coarse.shape, np.float32)
    splat_objects(tissue, grid_fine, 0, 32.0, fine)
    splat_objects(tissue, grid_coarse, 0, 128.0, coarse)
    assert coarse.sum() * 128.0**3 == pytest.approx(fine.sum() * 32.0**3, rel=0.05)


def test_invalid_boxes_are_refused() -> None:
    with pytest.raises(DimensionError, match="non-empty"):
        Tissue(0, (0.0, 0.0, 0.0), (0.0, 1.0, 1.0))
    with pytest.raises(DimensionError, match="positive"):
        RenderGrid.from_box((0, 0, 0), (1, 1, 1), 0.0)
