"""Fixtures: small workspaces holding a fixed image and a moving image with a known map."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from phantoms import Scene, inverted, render, write_image  # noqa: E402

from coframe.app.workspace import init_workspace, load_workspace  # noqa: E402
from coframe.transforms.base import Transform  # noqa: E402

#: Voxel size of the phantoms (nm) and their number of voxels per axis.
VOXEL = 1000.0
SHAPE = (48, 48, 48)


@dataclass(frozen=True)
class Pair:
    """A workspace with images ``fixed`` and ``moving`` and the true FIXED -> MOVING map."""

    root: Path
    truth: Transform | None
    scene: Scene

    def tre_vox(self, estimated: Transform, count: int = 500) -> float:
        """Mean TRE (voxels) of a FIXED -> MOVING map over inner fixed points."""
        rng = np.random.default_rng(5)
        points = rng.uniform(0.25, 0.75, (count, 3)) * np.array(SHAPE) * VOXEL
        assert self.truth is not None
        errors = np.linalg.norm(estimated.apply(points) - self.truth.apply(points), axis=1)
        return float(errors.mean()) / VOXEL

    def edge(self) -> Transform:
        """The stored fixed -> moving edge."""
        ws = load_workspace(self.root)
        (edge,) = [e for e in ws.edges if (e.source, e.target) == ("fixed", "moving")]
        return ws.load_edge(edge)


def centre() -> np.ndarray:
    return (np.array(SHAPE) - 1) / 2 * VOXEL


@pytest.fixture
def make_pair(tmp_path: Path) -> Callable[..., Pair]:
    """Build a workspace whose moving image is the scene seen through ``moving_to_fixed``.

    ``moving_to_fixed`` maps moving points into the fixed (scene) frame; the
    true FIXED -> MOVING map is its inverse (``truth``, given or computed).
    """

    def build(
        moving_to_fixed: Transform | None = None,
        *,
        truth: Transform | None = None,
        noise: float = 4.0,
        moving_origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
        moving_levels: int = 1,
        fixed_levels: int = 1,
        fixed_array: Callable[[np.ndarray], np.ndarray] | None = None,
        moving_voxel: float = VOXEL,
    ) -> Pair:
        scene = Scene.random(3, np.zeros(3), np.array(SHAPE) * VOXEL)
        fixed = render(scene, SHAPE, VOXEL, np.zeros(3), noise=noise, seed=1)
        if fixed_array is not None:
            fixed = fixed_array(fixed)
        moving_shape = tuple(int(round(n * VOXEL / moving_voxel)) for n in SHAPE)
        moving = render(
            scene,
            moving_shape,
            moving_voxel,
            np.asarray(moving_origin),
            to_scene=moving_to_fixed,
            response=inverted,
            noise=noise,
            seed=2,
        )
        root = tmp_path / "ws"
        ws = init_workspace(root)
        write_image(root / "fixed.zarr", fixed, VOXEL, np.zeros(3), fixed_levels)
        write_image(
            root / "moving.zarr", moving, moving_voxel, np.asarray(moving_origin), moving_levels
        )
        ws = ws.add_image("fixed", root / "fixed.zarr", "fibsem", axes=("z", "y", "x"))
        ws = ws.add_image("moving", root / "moving.zarr", "xray", axes=("z", "y", "x"))
        ws.save()
        if truth is None and moving_to_fixed is not None:
            truth = moving_to_fixed.inverse()
        return Pair(root, truth, scene)

    return build
