"""The global search's FFT helpers agree with the plain computations they replace."""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from coframe.registration.search_features import (
    bin_edges,
    cropped_irfft,
    edge_features,
    fill_from_nearest,
    gradients,
    indicators,
    joint_information,
    padded_rfft3,
    padded_rfft3_into,
)


@settings(max_examples=25, deadline=None)
@given(
    small=st.tuples(*[st.integers(1, 9)] * 3),
    extra=st.tuples(*[st.integers(0, 12)] * 3),
    channels=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_padded_spectrum_is_the_padded_rfftn(
    small: tuple[int, int, int], extra: tuple[int, int, int], channels: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    array = rng.normal(size=(channels, *small)).astype(np.float32)
    shape = tuple(s + e for s, e in zip(small, extra, strict=True))
    expected = sfft.rfftn(array, s=shape, axes=(1, 2, 3))
    got = padded_rfft3(array, shape)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-4 * float(np.abs(expected).max()))
    # the same spectrum written into a reused buffer, whatever it held before
    out = np.full(expected.shape[1:], 7 + 3j, np.complex64)
    for c in range(channels):
        assert padded_rfft3_into(array[c], shape, out) is out
        assert np.allclose(out, expected[c], atol=1e-4 * float(np.abs(expected).max()))


def test_joint_information_of_the_true_shift_is_the_largest() -> None:
    rng = np.random.default_rng(3)
    image = rng.normal(size=(20, 20, 20)).astype(np.float32)
    image = np.cbrt(image)  # any contrast relation: the template is a non-monotonic map
    template = np.abs(image[5:13, 6:14, 4:12])
    t_edges, i_edges = bin_edges(template, None, 4), bin_edges(image, None, 4)
    shape = image.shape
    t_spec = np.conj(padded_rfft3(indicators(template, t_edges), shape))
    i_spec = sfft.rfftn(indicators(image, i_edges), axes=(1, 2, 3))
    box = tuple(slice(0, n - 8 + 1) for n in shape)
    mi = joint_information(t_spec, i_spec, shape, box)
    assert np.unravel_index(np.argmax(mi), mi.shape) == (5, 6, 4)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), ndim=st.sampled_from([2, 3]))
def test_edge_features_dot_product_is_the_squared_cosine_of_the_gradients(
    seed: int, ndim: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (9,) * ndim
    a = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    b = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    fa, fb = (edge_features(x, None, 1.0, 0.0) for x in (a, b))
    assert fa.shape == ((3 if ndim == 2 else 6), *shape)
    ga = np.stack(gradients(a.astype(np.float32), 1.0))
    gb = np.stack(gradients(b.astype(np.float32), 1.0))
    na = ga / np.linalg.norm(ga, axis=0)
    nb = gb / np.linalg.norm(gb, axis=0)
    expected = np.sum(na * nb, axis=0) ** 2
    np.testing.assert_allclose(np.sum(fa * fb, axis=0), expected, atol=1e-4)
    # a slice stack with axes=(1, 2) gets each slice's own 2D features
    stack = np.stack([a, b]) if ndim == 2 else a
    if ndim == 2:
        per_slice = edge_features(stack, None, 1.0, 0.0, axes=(1, 2))
        np.testing.assert_allclose(per_slice[:, 0], fa, atol=1e-5)


def test_masked_pixels_take_the_nearest_kept_value() -> None:
    array = np.arange(25, dtype=float).reshape(5, 5)
    keep = np.zeros((5, 5), bool)
    keep[:, :2] = True
    filled = fill_from_nearest(array, keep)
    np.testing.assert_array_equal(filled[:, :2], array[:, :2])
    np.testing.assert_array_equal(filled[:, 2:], np.repeat(array[:, 1:2], 3, axis=1))
    assert fill_from_nearest(array, np.zeros((5, 5), bool)) is array


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(*[st.integers(2, 14)] * 3),
    keep=st.tuples(*[st.floats(0.05, 1.0)] * 3),
    seed=st.integers(0, 2**16),
)
def test_cropped_inverse_is_the_corner_of_the_full_inverse(
    shape: tuple[int, int, int], keep: tuple[float, float, float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    spectrum = sfft.rfftn(rng.normal(size=shape))
    size = tuple(max(1, int(round(k * n))) for k, n in zip(keep, shape, strict=True))
    expected = sfft.irfftn(spectrum, s=shape)[: size[0], : size[1], : size[2]]
    got = cropped_irfft(spectrum, shape, size)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-9)
