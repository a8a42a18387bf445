"""The QC metric, overlap guard, Jacobian statistics and TRE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from coframe.registration.inputs import WorkImage, block_mean, padding_mask
from coframe.registration.metric import Evaluator
from coframe.registration.mutual_information import mutual_information
from coframe.registration.preset_sections import MetricConfig
from coframe.registration.qc import jacobian_stats, tre
from coframe.transforms.affine import Affine, Translation
from coframe.transforms.bspline import BSpline


def _image(array: np.ndarray, mask: np.ndarray | None = None) -> WorkImage:
    return WorkImage("img", array.astype(np.float32), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), mask, 0, "")


def _blobs(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(32, 32, 32)), 2.0) * 100 + 100


@pytest.mark.parametrize("name", ["mattes", "correlation", "meansquares"])
def test_metric_is_lowest_at_the_true_alignment(name: str) -> None:
    array = _blobs()
    moving = array if name == "meansquares" else 300 - array
    evaluate = Evaluator(_image(array), _image(moving), MetricConfig(name=name), points=5000)
    at_truth = evaluate(Affine(np.eye(4)))
    for shift in (2.0, 4.0):
        assert evaluate(Translation(np.array([shift, 0.0, -shift]))) > at_truth


def test_steps_are_judged_on_the_points_both_maps_share() -> None:
    array = _blobs()
    evaluate = Evaluator(_image(array), _image(300 - array), MetricConfig(), points=4000)
    identity = Affine(np.eye(4))
    assert evaluate.overlap(identity) == 1.0
    # a true 8% magnification keeps fewer fixed points inside the moving image, and is no worse
    magnified = Affine.from_linear(np.eye(3) * 1.08, -0.08 * _image(array).centre)
    assert evaluate.overlap(magnified) < 0.85
    assert evaluate.worse(magnified, identity) == ""
    assert "got worse" in evaluate.worse(identity, magnified)
    # sliding the images apart does not win by small-sample bias
    apart = Translation(np.array([0.0, 14.0, 14.0]))
    assert "got worse" in evaluate.worse(identity, apart)
    assert "too few to compare" in evaluate.worse(identity, Translation(np.array([0, 30.0, 30.0])))
    assert evaluate(Translation(np.array([200.0, 0.0, 0.0]))) == np.inf
    # no alignment at all: the shuffled sample scores far worse than the aligned one
    assert evaluate.shuffled(identity) > 0.5 * evaluate(identity)


def test_a_small_moving_image_is_compared_on_its_own_footprint() -> None:
    # the moving image is an eighth of the fixed one: it sees 1/8 of the fixed sample,
    # and steps on it are still judged (on the points either map places in it)
    array = _blobs()
    crop = WorkImage(
        "crop", (300 - array[8:24, 8:24, 8:24]).astype(np.float32), (2.0,) * 3,
        (16.0, 16.0, 16.0), None, 0, "",
    )  # fmt: skip
    evaluate = Evaluator(_image(array), crop, MetricConfig(), points=8000)
    identity = Affine(np.eye(4))
    off = Translation(np.array([2.0, -2.0, 2.0]))
    assert evaluate.overlap(identity) < 0.2
    assert evaluate.worse(off, identity) == ""
    assert "got worse" in evaluate.worse(identity, off)


@pytest.mark.parametrize("binning", ["hard", "linear"])
def test_mutual_information_of_related_independent_and_constant_samples(binning: str) -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=20000)
    related = mutual_information(a, -3.0 * a + 0.1 * rng.normal(size=a.size), 16, binning=binning)
    independent = mutual_information(a, rng.normal(size=a.size), 16, binning=binning)
    assert related > 1.0 > 0.05 > independent >= 0.0
    assert mutual_information(a, np.full(a.size, 7.0), 16, binning=binning) == 0.0


def test_hard_binning_is_a_clipped_percentile_histogram() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.gamma(2.0, size=5000), rng.normal(size=5000)
    b += a
    ranges = [np.percentile(v, [0.5, 99.5]) for v in (a, b)]
    clipped = [np.clip(v, lo, hi) for v, (lo, hi) in zip((a, b), ranges, strict=True)]
    joint = np.histogram2d(*clipped, bins=8, range=ranges)[0] / a.size
    outer = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    nz = joint > 0
    expected = float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))
    assert mutual_information(a, b, 8) == pytest.approx(expected, rel=1e-12)


def test_padding_mask_drops_border_zeros_only() -> None:
    array = np.ones((20, 20, 20))
    array[:, :, :4] = 0
    array[10, 10, 10] = 0
    mask = padding_mask(array, erode=1)
    assert mask is not None
    assert not mask[:, :, :5].any() and mask[10, 10, 10] and mask[10, 10, 12]
    assert padding_mask(np.ones((5, 5, 5)), 1) is None


def test_block_mean_averages_blocks() -> None:
    array = np.arange(4 * 6 * 5, dtype=float).reshape(4, 6, 5)
    out = block_mean(array, 2)
    assert out.shape == (2, 3, 2)
    assert out[0, 0, 0] == pytest.approx(array[:2, :2, :2].mean())


def test_jacobian_of_a_scaling_and_of_a_folding_spline() -> None:
    work = _image(np.zeros((16, 16, 16)))
    stats = jacobian_stats(Affine.from_linear(np.diag([2.0, 1.0, 1.5])), work)
    assert stats["min"] == pytest.approx(3.0) and stats["max"] == pytest.approx(3.0)
    assert stats["folding_fraction"] == 0.0
    size = (7, 7, 7)
    coefficients = np.zeros((*size, 3))
    coefficients[3, 3, 3, 0] = 40.0
    coefficients[4, 3, 3, 0] = -40.0
    spline = BSpline(np.full(3, -10.0), np.full(3, 10.0), np.eye(3), size, coefficients)
    folded = jacobian_stats(spline, work)
    assert folded["min"] < 0 and folded["folding_fraction"] > 0


def test_tre_statistics_in_units_and_voxels() -> None:
    points = np.zeros((4, 3))
    moving = np.array([[0, 0, 1.0], [0, 0, 2.0], [0, 0, 3.0], [0, 0, 4.0]])
    stats = tre(Affine(np.eye(4)), points, moving, voxel_size=2.0)
    assert stats["n"] == 4 and stats["mean"] == pytest.approx(2.5) and stats["max"] == 4.0
    assert stats["mean_vox"] == pytest.approx(1.25)
