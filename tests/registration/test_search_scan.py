"""The search's scan: a cube cut from a textured volume is found, on any number of threads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from coframe.registration import search_scan
from coframe.registration.locate_geometry import GridImage
from coframe.registration.search_features import FEATURE_SIGMA, axis_rotation, edge_scale


def _phantom() -> tuple[GridImage, GridImage]:
    rng = np.random.default_rng(11)
    volume = ndimage.gaussian_filter(rng.normal(size=(40, 40, 40)), 2.0).astype(np.float32)
    volume = np.cos(6.0 * volume / volume.std())  # a non-monotonic contrast of the texture
    template = -volume[8:24, 14:30, 12:28]  # inverted; its centre is voxel (15.5, 21.5, 19.5)
    return (
        GridImage(volume, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
        GridImage(np.ascontiguousarray(template), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    )


def _scan(threads: int, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    monkeypatch.setattr(search_scan, "threads_for", lambda tasks: min(threads, tasks))
    big, small = _phantom()
    target = search_scan.Target.build(big, None, edge_scale(big.array, None, FEATURE_SIGMA), 3)
    rotations = np.stack([axis_rotation((1.0, 0.0, 0.0), a) for a in (0.0, 30.0, 60.0, 90.0)])
    done: list[tuple[int, int]] = []
    found, background = search_scan.scan(
        target,
        small,
        None,
        rotations,
        (0.95, 1.0),
        edge_scale(small.array, None, FEATURE_SIGMA),
        np.zeros(3),
        np.full(3, 39.0),
        np.random.default_rng(0),
        lambda i, n: done.append((i, n)),
    )
    assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]  # progress once per orientation, in order
    return found, background


def test_the_scan_finds_the_cut_and_its_threads_do_not_change_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serial, serial_background = _scan(1, monkeypatch)
    pooled, pooled_background = _scan(3, monkeypatch)
    best = max(serial, key=lambda h: h.score)
    assert np.allclose(best.centre, (15.5, 21.5, 19.5), atol=0.51)
    assert np.allclose(best.rotation, np.eye(3)) and best.scale == 1.0
    turned = [h for h in serial if not np.allclose(h.rotation, np.eye(3))]
    runner_up = max(h.score for h in turned)  # every other orientation scores far less
    assert best.score > 0.6 and runner_up < 0.6 * best.score, (best.score, runner_up)
    assert len(pooled) == len(serial) == 8
    for a, b in zip(serial, pooled, strict=True):
        assert a.scale == b.scale and np.array_equal(a.rotation, b.rotation)
        assert np.array_equal(a.centre, b.centre) and a.score == pytest.approx(b.score, abs=1e-6)
    assert np.allclose(serial_background, pooled_background, atol=1e-6)
