"""`coframe register` finds a small crop anywhere in a large image, and doubts what it should.

The phantoms: a textured volume (the fixed image) and a crop of it (the
moving image) seen through a known similarity far from the centre, under a
non-monotonic contrast (a second modality), with noise. The truth is built
here with numpy and scipy alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from phantoms import write_image
from scipy import ndimage
from typer.testing import CliRunner

from coframe.app.workspace import init_workspace, load_workspace
from coframe.cli import app
from coframe.registration import pipeline
from coframe.transforms.formats.dispatch import read_transform

VOXEL = 1000.0
BIG = 64
SMALL = 24


def _texture(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.float32)
    for sigma in (1.5, 3.0, 6.0):
        layer = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
        out += layer / layer.std()
    return np.tanh(out)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return r


@dataclass(frozen=True)
class Crop:
    """A workspace with ``fixed`` (the whole texture) and ``moving`` (a crop), and the truth."""

    root: Path
    rotation: np.ndarray
    scale: float | np.ndarray  # per crop axis when anisotropic
    centre: np.ndarray  # fixed position (nm) of the crop's centre

    def fixed_to_moving(self, points: np.ndarray) -> np.ndarray:
        """The true FIXED -> MOVING map (nm)."""
        cp = (SMALL - 1) / 2 * VOXEL
        return cp + (points - self.centre) @ self.rotation / self.scale

    def tre_vox(self) -> float:
        """Mean TRE (voxels) of the stored edge over fixed points inside the crop."""
        ws = load_workspace(self.root)
        (edge,) = [e for e in ws.edges if (e.source, e.target) == ("fixed", "moving")]
        rng = np.random.default_rng(3)
        offsets = rng.uniform(-0.35, 0.35, (400, 3)) * SMALL * VOXEL
        points = self.centre + offsets @ self.rotation.T
        errors = np.linalg.norm(
            ws.load_edge(edge).apply(points) - self.fixed_to_moving(points), axis=1
        )
        return float(errors.mean()) / VOXEL


def _crop(
    root: Path,
    *,
    rotation: np.ndarray,
    scale: float | np.ndarray,
    offset: tuple[float, float, float],
    seed: int = 0,
    unrelated: bool = False,
    constant: bool = False,
) -> Crop:
    big = _texture((BIG,) * 3, seed)
    centre_vox = (BIG - 1) / 2 + np.asarray(offset)
    cp = (SMALL - 1) / 2
    index = np.indices((SMALL,) * 3).reshape(3, -1).T - cp
    source = _texture((BIG,) * 3, seed + 100) if unrelated else big
    where = centre_vox + scale * index @ rotation.T
    values = ndimage.map_coordinates(source, where.T, order=1).reshape((SMALL,) * 3)
    rng = np.random.default_rng(seed + 7)
    moving = 128 + 90 * np.cos(2.2 * values) + rng.normal(0, 6, values.shape)
    if constant:
        moving[:] = 100
    fixed = 128 + 100 * big + rng.normal(0, 6, big.shape)
    init_workspace(root)
    write_image(root / "fixed.zarr", np.clip(fixed, 1, 255).astype(np.uint8), VOXEL, np.zeros(3))
    write_image(root / "moving.zarr", np.clip(moving, 1, 255).astype(np.uint8), VOXEL, np.zeros(3))
    ws = load_workspace(root)
    ws = ws.add_image("fixed", root / "fixed.zarr", "xray", axes=("z", "y", "x"))
    ws = ws.add_image("moving", root / "moving.zarr", "xray", axes=("z", "y", "x"))
    ws.save()
    return Crop(root, rotation, scale, centre_vox * VOXEL)


def _register(root: Path, *args: str) -> object:
    return CliRunner().invoke(
        app, ["register", "moving", "fixed", "-w", str(root), "--preset", "multimodal", *args]
    )


def test_search_finds_a_rotated_scaled_crop_far_from_the_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotation = _rotation(0, 125.0) @ _rotation(1, 8.0)
    crop = _crop(tmp_path / "ws", rotation=rotation, scale=1.06, offset=(10.0, -14.0, 12.0))
    chains: list[tuple[str, ...]] = []
    register_from = pipeline.register_from

    def recorded(*args: object, **kwargs: object) -> object:
        chains.append(args[2].steps)  # type: ignore[attr-defined]
        return register_from(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "register_from", recorded)
    result = _register(crop.root, "--axis", "1,0,0", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["initial"] == "search" and report["stored"]
    assert report["steps"][0]["name"] == "search"
    # the search measured a scale: the preset's rigid step refines it as a similarity
    assert [s["name"] for s in report["steps"]] == ["search", "similarity", "affine"]
    # every hypothesis is refined and compared as a similarity; only the winner gets the affine
    refined = len(report["search"]["refined"])
    assert refined >= 2 and chains == [("similarity",)] * refined + [("affine",)]
    assert report["trust"]["trusted"] is True
    search = report["search"]
    assert search["template"] == "moving" and search["runner_up"] != search["chosen"]
    assert crop.tre_vox() < 0.5
    # the true magnification is kept: FIXED -> MOVING shrinks by 1 / 1.06 per axis
    edge = read_transform(crop.root / report["stored"], unit="nanometer").as_affine()
    assert edge is not None
    assert np.cbrt(np.linalg.det(edge.linear)) == pytest.approx(1 / 1.06, rel=0.01)
    prov = load_workspace(crop.root).edges[0].provenance
    assert prov["trust"]["trusted"] is True and prov["search"]["orientations"] > 1


def test_a_later_step_stretching_beyond_the_searched_range_is_undone(tmp_path: Path) -> None:
    # 12 % along one crop axis: the similarity takes the mean stretch; the affine would fit
    # 1.12, beyond what a 3 % search allows (0.93 to 1.08), so it is undone and the pose stands
    stretch = np.array([1.0, 1.0, 1.12])
    crop = _crop(tmp_path / "ws", rotation=_rotation(0, 60.0), scale=stretch, offset=(8, -10, 9))
    result = _register(crop.root, "--axis", "1,0,0", "--set", "search.scale_range=0.03", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    names = [(s["name"], s["accepted"]) for s in report["steps"]]
    assert names == [("search", True), ("similarity", True), ("affine", False)]
    assert (
        "undone" in report["steps"][-1]["note"]
        and "scales directions" in report["steps"][-1]["note"]
    )
    edge = read_transform(crop.root / report["stored"], unit="nanometer").as_affine()
    assert edge is not None
    values = np.linalg.svd(edge.linear, compute_uv=False)
    assert values.max() / values.min() == pytest.approx(1.0, abs=1e-6)  # a similarity


@pytest.mark.slow
def test_search_over_every_orientation(tmp_path: Path) -> None:
    rotation = _rotation(1, 100.0) @ _rotation(2, 35.0)
    crop = _crop(tmp_path / "ws", rotation=rotation, scale=0.95, offset=(-12.0, 10.0, 8.0), seed=4)
    result = _register(crop.root)
    assert result.exit_code == 0, result.output
    assert "searched moving image" in result.output and "trusted" in result.output
    assert crop.tre_vox() < 0.5


def test_trust_gate_refuses_unrelated_images(tmp_path: Path) -> None:
    crop = _crop(
        tmp_path / "ws", rotation=np.eye(3), scale=1.0, offset=(8.0, 8.0, -8.0), unrelated=True
    )
    result = _register(crop.root, "--axis", "1,0,0")
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "not trusted" in last and "--near" in last and "--force" in last
    assert not load_workspace(crop.root).edges
    assert not (crop.root / "transforms").exists() or not any((crop.root / "transforms").iterdir())
    forced = _register(crop.root, "--axis", "1,0,0", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["trust"]["trusted"] is False
    assert load_workspace(crop.root).edges[0].provenance["trust"]["trusted"] is False


def test_a_search_box_that_excludes_the_answer_stores_nothing(tmp_path: Path) -> None:
    crop = _crop(tmp_path / "ws", rotation=_rotation(0, 60.0), scale=1.0, offset=(10.0, 12.0, 12.0))
    box = "0,0,0:20000,20000,20000"  # the crop's centre is near (42, 44, 44) um
    result = _register(crop.root, "--axis", "1,0,0", "--search-box", box)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "not trusted" in last or "got worse" in last
    assert "nothing was stored" in last or "--force" in last
    assert not load_workspace(crop.root).edges


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--near", "900000,0,0"), "outside fixed"),
        (("--axis", "1,0"), "--axis"),
        (("--search-box", "0,0:1,1"), "--search-box"),
        (("--axis", "0,0,0"), "search.axis"),
    ],
)
def test_bad_priors_are_one_line_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    crop = _crop(tmp_path / "ws", rotation=np.eye(3), scale=1.0, offset=(8.0, 8.0, 8.0))
    result = _register(crop.root, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not load_workspace(crop.root).edges


def test_a_constant_image_is_a_one_line_error(tmp_path: Path) -> None:
    crop = _crop(
        tmp_path / "ws", rotation=np.eye(3), scale=1.0, offset=(8.0, 8.0, 8.0), constant=True
    )
    result = _register(crop.root)
    assert result.exit_code == 2
    assert "is constant" in result.stderr and "moving" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
