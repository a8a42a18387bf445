"""The trust gate's scale bounds for searched results, the steps that refine a search's
hypotheses, and the pyramid kept for small images."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.transform import Rotation as ScipyRotation

from coframe.registration.inputs import WorkImage
from coframe.registration.intensity import MIN_LEVEL_VOXELS, usable_levels
from coframe.registration.metric import Evaluator, Pair
from coframe.registration.pipeline import _refining_steps
from coframe.registration.preset_sections import MetricConfig
from coframe.registration.presets import load_preset
from coframe.registration.trust import judge, scale_bounds, scale_problem
from coframe.transforms.affine import Affine


def _image(shape: tuple[int, ...], seed: int = 0) -> WorkImage:
    rng = np.random.default_rng(seed)
    array = ndimage.gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32) * 100
    return WorkImage("img", array, (2.0,) * 3, (0.0,) * 3, None, 0, "")


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.0, 0.3),
    st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3),
    st.integers(0, 2**31 - 1),
)
def test_scale_problem_flags_exactly_the_singular_values_outside_the_bounds(
    scale_range: float, logs: list[float], seed: int
) -> None:
    lo, hi = scale_bounds(scale_range)
    assert lo < 1.0 < hi
    # a rotation times a diagonal scaling times another rotation: singular values exp(logs)
    rot = ScipyRotation.random(2, random_state=seed).as_matrix()
    values = np.exp(np.asarray(logs) * math.log(hi) * 2.0)
    linear = rot[0] @ np.diag(values) @ rot[1]
    inside = bool(np.all((values >= lo * (1 + 1e-9)) & (values <= hi * (1 - 1e-9))))
    outside = bool(np.any((values < lo * (1 - 1e-9)) | (values > hi * (1 + 1e-9))))
    text = scale_problem(linear, scale_range)
    if inside:
        assert text == ""
    if outside:
        assert "outside" in text and "search.scale_range" in text


def test_the_bounds_allow_the_searched_range_and_a_few_percent_of_anisotropy() -> None:
    lo, hi = scale_bounds(0.1)
    assert lo < 1 / 1.1 and hi > 1.1  # the searched scales themselves
    assert lo > 0.8 and hi < 1.2  # not a refinement that halved the image
    assert scale_problem(np.diag([1.08, 0.95, 1.0]), 0.1) == ""
    assert "0.794" in scale_problem(np.eye(3) * 0.794, 0.1)


def test_an_implausible_result_is_refused_whatever_its_metric() -> None:
    image = _image((24, 24, 24))
    evaluate = Evaluator(image, image, MetricConfig(name="mattes", bins=32), points=4000)
    identity = Affine(np.eye(4))
    assert judge(evaluate, identity).trusted
    verdict = judge(evaluate, identity, implausible=scale_problem(np.eye(3) * 0.6, 0.1))
    assert not verdict.trusted
    assert "0.600" in verdict.reason and "--force" in verdict.reason


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((80, 96, 70), (4, 2, 1)), ((40, 50, 60), (2, 1)), ((20, 34, 15), (1,))],
)
def test_levels_too_small_for_the_metric_are_skipped(
    shape: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    big = _image((100, 100, 100), 1)
    pair = Pair(big, _image(shape))
    shrink, sigmas, points = usable_levels(
        pair, (4, 2, 1), (2.0, 1.0, 0.0), (2000, 4000, 20000), 20000
    )
    assert shrink == expected
    # each kept level keeps its own smoothing and sample size
    assert sigmas == tuple({4: 2.0, 2: 1.0, 1: 0.0}[f] for f in shrink)
    assert points == tuple({4: 2000, 2: 4000, 1: 20000}[f] for f in shrink)
    assert all(min(shape) / f >= MIN_LEVEL_VOXELS for f in shrink if f > 1)
    # the coarse levels of a step before the last one: when none is left, the unshrunk
    # level runs with the finest level's sample
    coarse = usable_levels(pair, (4, 2), (2.0, 1.0), (2000, 4000), 20000)
    assert coarse[0] == (expected[:-1] or (1,))
    if not expected[:-1]:
        assert coarse[1:] == ((0.0,), (20000,))


@pytest.mark.parametrize(
    ("steps", "scale_range", "pose", "later"),
    [
        (("moments", "rigid", "affine"), 0.1, ("similarity",), ("affine",)),
        (("search", "rigid", "similarity", "affine", "bspline"), 0.1, ("similarity",),
         ("affine", "bspline")),
        (("rigid", "affine"), 0.0, ("rigid",), ("affine",)),
        (("search", "rigid"), 0.1, ("rigid",), ()),
        (("nuclei", "bspline"), 0.1, ("rigid",), ("bspline",)),
    ],
)  # fmt: skip
def test_hypotheses_are_refined_as_poses_and_the_rest_runs_on_the_winner(
    steps: tuple[str, ...], scale_range: float, pose: tuple[str, ...], later: tuple[str, ...]
) -> None:
    preset = load_preset("multimodal")
    preset = dataclasses.replace(
        preset, steps=steps, search=dataclasses.replace(preset.search, scale_range=scale_range)
    )
    assert _refining_steps(preset) == (pose, later)
