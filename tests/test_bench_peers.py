"""Pieces of the benchmarks' peers and statistics, checked against independent values.

- ``benchmarks/resample_peers.py`` evaluates a B-spline's displacement separably
  for the SimpleITK dense-field peer: it must equal the B-spline evaluated point
  by point, and SimpleITK through it must give the same voxels as through the
  B-spline transform itself.
- ``benchmarks/locate.py``: the Wilson interval, the other contrast and the section defects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import locate  # noqa: E402
import resample_peers  # noqa: E402

from coframe.transforms.affine import Affine  # noqa: E402
from coframe.transforms.bspline import BSpline  # noqa: E402
from coframe.transforms.sitk_bridge import array_to_image, resample_image, to_sitk  # noqa: E402


def _spline(n: int) -> BSpline:
    rng = np.random.default_rng(4)
    nodes = 7
    spacing = n / (nodes - 3)
    coefficients = rng.normal(0, 1.0, (nodes,) * 3 + (3,))
    return BSpline((-spacing,) * 3, (spacing,) * 3, np.eye(3), (nodes,) * 3, coefficients)


def test_separable_field_equals_pointwise_spline() -> None:
    spline = _spline(20)
    axes = [np.arange(20.0), np.arange(3.0, 17.0), np.linspace(0, 19, 11)]
    field = resample_peers.spline_field(spline, axes)
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    assert np.allclose(field.reshape(-1, 3), spline.displacement(points), atol=1e-9)


def test_dense_peer_resamples_like_simpleitk_bspline() -> None:
    n = 24
    rng = np.random.default_rng(0)
    source = rng.integers(0, 255, (n, n, n)).astype(np.uint8)
    spline = _spline(n)
    affine = Affine.from_linear(np.eye(3) * 1.01, np.array([0.5, -0.3, 0.2]))
    image = array_to_image(source, (1.0,) * 3)
    voxel, origin = np.ones(3), np.zeros(3)
    dense = resample_peers.resample_dense(
        image, spline, to_sitk(affine), (n, n, n), voxel, origin, slab=5
    )
    from coframe.transforms.base import Chain

    direct = resample_image(image, to_sitk(Chain((spline, affine))), (n,) * 3, voxel, origin)
    assert np.abs(dense.astype(int) - direct.astype(int)).max() <= 1
    assert np.mean(dense != direct) < 0.01


def test_wilson_interval_and_other_contrast() -> None:
    lo, hi = locate.wilson(0, 20)
    assert lo == 0.0 and abs(hi - 0.1611) < 1e-3
    lo, hi = locate.wilson(50, 100)
    assert abs(lo - 0.404) < 1e-3 and abs(hi - 0.596) < 1e-3
    values = np.linspace(0, 1, 201, dtype=np.float32)
    out = locate.other_contrast(values)
    steps = np.sign(np.diff(out))
    assert (steps > 0).any() and (steps < 0).any()  # not monotonic, so not just inverted


def test_section_defects_hide_about_a_fifth_and_leave_the_rest_alone() -> None:
    rng = np.random.default_rng(0)
    for seed in range(5):
        image = (rng.random((160, 140)) + 1.0).astype(np.float32)  # tissue in [1, 2)
        out, fractions = locate.add_defects(image, np.random.default_rng(seed))
        again, _ = locate.add_defects(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.float32
        assert np.array_equal(out, again)  # seeded
        assert 0.12 <= fractions["bars"] <= 0.19
        assert fractions["fold"] <= 0.07 and fractions["dirt"] <= 0.06
        assert 0.15 <= sum(fractions.values()) <= 0.3
        # the bars are opaque: darker than every tissue value, and flat
        dark = out < 0.8
        assert fractions["bars"] <= dark.mean() <= sum(fractions.values())
        # outside the bars, the fold and the dirt only the knife chatter (+-8 %) changed values
        changed = np.abs(out / image - 1.0) > 0.08 + 1e-5
        assert changed.mean() <= sum(fractions.values()) + 1e-9
        assert changed.mean() >= fractions["bars"]
