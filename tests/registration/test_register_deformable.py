"""The B-spline step: smooth nonlinear maps recovered through the CLI; exact grid refinement."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from conftest import SHAPE, VOXEL, Pair, centre
from typer.testing import CliRunner

from coframe.cli import app
from coframe.registration.deformable import initial_spline, refine
from coframe.registration.inputs import WorkImage
from coframe.transforms.affine import Affine
from coframe.transforms.base import Chain
from coframe.transforms.bspline import BSpline
from coframe.transforms.field import DisplacementField


def _smooth_warp() -> DisplacementField:
    """Two Gaussian bumps of about 2 voxels on a 3-voxel grid (moving -> fixed frame)."""
    spacing = 3 * VOXEL
    n = SHAPE[0] // 3 + 3
    origin = np.full(3, -spacing)
    axes = [origin[a] + spacing * np.arange(n) for a in range(3)]
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    c = centre()
    vectors = np.zeros(nodes.shape)
    for offset, vec in (((-8, 6, -6), (1.8, -1.2, 1.0)), ((7, -7, 8), (-1.2, 1.6, -1.4))):
        d2 = ((nodes - (c + np.asarray(offset) * VOXEL)) ** 2).sum(axis=-1)
        vectors += np.exp(-d2 / (2 * (9 * VOXEL) ** 2))[..., None] * np.asarray(vec) * VOXEL
    return DisplacementField(vectors, origin, np.full(3, spacing))


_FAST = [
    "--set",
    "bspline.shrink_factors=[2, 1]",
    "--set",
    "bspline.smoothing_sigmas=[1.0, 0.0]",
    "--set",
    "bspline.grid_spacing=6",
    "--set",
    "bspline.iterations=120",
    "--set",
    "init=identity",
]


@pytest.mark.slow
def test_bspline_recovers_a_smooth_warp_after_the_affine(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    shift = Affine.from_linear(np.eye(3), (600.0, -900.0, 500.0))
    pair = make_pair(Chain((_smooth_warp(), shift)), noise=3.0)
    args = ["register", "moving", "fixed", "-w", str(pair.root), "--json", *_FAST]
    linear = runner.invoke(app, [*args, "--steps", "rigid,affine"])
    assert linear.exit_code == 0, linear.output
    affine_tre = pair.tre_vox(pair.edge())
    result = runner.invoke(app, [*args, "--steps", "rigid,affine,bspline", "--force"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["stored"].endswith("fixed-to-moving.h5")
    assert report["jacobian"]["folding_fraction"] == 0.0
    assert 0.5 < report["jacobian"]["min"] <= 1.0 <= report["jacobian"]["max"] < 2.0
    edge = pair.edge()
    assert isinstance(edge, Chain)
    assert isinstance(edge.transforms[0], BSpline) and edge.transforms[1].is_linear
    deformable_tre = pair.tre_vox(edge)
    assert affine_tre > 0.5
    assert deformable_tre < 0.5 * affine_tre
    assert deformable_tre < 0.3


def test_refinement_reproduces_the_spline_exactly() -> None:
    rng = np.random.default_rng(0)
    work = WorkImage(
        "f", np.zeros((20, 24, 28), np.float32), (2.0, 1.0, 1.5), (5, -3, 1), None, 0, ""
    )
    zero = initial_spline(work, 6.0)
    coarse = BSpline(
        zero.grid_origin,
        zero.grid_spacing,
        zero.grid_direction,
        zero.grid_size,
        rng.normal(0.0, 1.0, (*zero.grid_size, 3)),
    )
    fine = refine(coarse)
    assert fine.grid_size == tuple(2 * n - 3 for n in coarse.grid_size)
    points = work.lo + rng.uniform(0, 1, (400, 3)) * (work.hi - work.lo)
    np.testing.assert_allclose(fine.apply(points), coarse.apply(points), atol=1e-9)


def test_initial_spline_covers_the_image() -> None:
    work = WorkImage(
        "f", np.zeros((10, 30, 30), np.float32), (3.0, 1.0, 1.0), (0, 0, 0), None, 0, ""
    )
    spline = initial_spline(work, 5.0)
    assert spline.grid_size == (7, 7, 7)  # 27-29 units over 4 cells of about 5 x 1.44
    index = (work.hi - spline.grid_origin) / spline.grid_spacing
    np.testing.assert_allclose(index, np.array(spline.grid_size) - 2.0)
