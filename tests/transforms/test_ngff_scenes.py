"""OME-NGFF scenes: several coordinate systems, image references, inverses and bijections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ngff_samples import AFFINE, assert_same_map, ome_group, random_field, random_points, xyz_system

from coframe.core.errors import FormatError
from coframe.transforms.affine import Affine
from coframe.transforms.base import Chain
from coframe.transforms.bijection import Bijection
from coframe.transforms.formats.ngff import (
    Axis,
    CoordinateSystem,
    SceneTransformation,
    read_ngff_transform,
    read_scene,
    write_scene,
)


def _three_space_scene() -> tuple[list[CoordinateSystem], list[SceneTransformation]]:
    xray = xyz_system("xray", "micrometer")
    fibsem = CoordinateSystem.spatial("fibsem", 3, "nanometer")
    tem = CoordinateSystem(
        "tem", (Axis("y", "space", "nanometer"), Axis("x", "space", "nanometer"))
    )
    to_xray = Chain((AFFINE, random_field()))
    pose = Affine([[0.0, 0.0, 5000.0], [1.0, 0.0, 100.0], [0.0, 1.0, 200.0]])
    edges = [
        SceneTransformation("fibsem", "xray", to_xray, "fibsem-to-xray"),
        SceneTransformation("tem", "xray", pose, "tem-pose"),
    ]
    return [xray, fibsem, tem], edges


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_scene_with_three_spaces(tmp_path: Path, zarr_format: int) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges, zarr_format=zarr_format)
    scene = read_scene(path)
    assert sorted(scene.coordinate_systems) == ["fibsem", "tem", "xray"]
    assert [(st.input, st.output, st.name) for st in scene.transformations] == [
        ("fibsem", "xray", "fibsem-to-xray"),
        ("tem", "xray", "tem-pose"),
    ]
    assert_same_map(scene.transformations[0].transform, edges[0].transform, random_points())
    pose = scene.transformations[1].transform
    assert (pose.input_dim, pose.output_dim) == (2, 3)
    assert_same_map(pose, edges[1].transform, random_points(dim=2))
    assert scene.coordinate_systems["xray"].axis_names == ("x", "y", "z")
    assert scene.coframe_axes("xray") == ("z", "y", "x")


def test_scene_in_micrometres(tmp_path: Path) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges)
    in_um = read_scene(path, unit="micrometer")
    pts = random_points(dim=2)
    np.testing.assert_allclose(
        in_um.transformations[1].transform.apply(pts / 1000.0),
        edges[1].transform.apply(pts) / 1000.0,
        rtol=1e-9,
    )


def test_spec_style_multiscales_and_scene_layout(tmp_path: Path) -> None:
    axes = [{"type": "space", "name": n, "unit": "micrometer"} for n in "zyx"]
    meta = {
        "version": "0.6dev2",
        "multiscales": [
            {
                "name": "multiscales",
                "coordinateSystems": [
                    {"name": "sheared", "axes": axes},
                    {"name": "physical", "axes": axes},
                ],
                "datasets": [
                    {
                        "path": "array",
                        "coordinateTransformations": [
                            {
                                "type": "scale",
                                "scale": [1, 1, 1],
                                "input": "array",
                                "output": "physical",
                            }
                        ],
                    }
                ],
                "coordinateTransformations": [
                    {
                        "type": "affine",
                        "input": "physical",
                        "output": "sheared",
                        "path": "affineParams",
                        "name": "physical-to-sheared",
                    }
                ],
            }
        ],
    }
    root = tmp_path / "spec.zarr"
    group = ome_group(root, meta)
    params = group.create_array("affineParams", shape=(3, 4), dtype="f8")
    params[...] = np.array([[1.0, 0.5, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
    t = read_ngff_transform(root)
    np.testing.assert_allclose(t.apply([1000.0, 2000.0, 3000.0]), [3000.0, 4000.0, 6000.0])


def test_inverse_of_and_bijection_json(tmp_path: Path) -> None:
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    doc = {
        "coordinateSystems": [{"name": "a", "axes": axes}, {"name": "b", "axes": axes}],
        "coordinateTransformations": [
            {
                "type": "inverseOf",
                "input": "a",
                "output": "b",
                "transformation": {"type": "scale", "scale": [2.0, 4.0]},
            },
            {
                "type": "bijection",
                "input": "a",
                "output": "b",
                "forward": {"type": "translation", "translation": [1.0, 2.0]},
                "inverse": {"type": "translation", "translation": [-1.0, -2.0]},
            },
        ],
    }
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    inverse, bijection = (st.transform for st in read_scene(path).transformations)
    np.testing.assert_allclose(inverse.apply([2.0, 4.0]), [1.0, 1.0])
    assert isinstance(bijection, Bijection)
    np.testing.assert_allclose(bijection.inverse().apply([1.0, 2.0]), [0.0, 0.0])


def test_image_path_references(tmp_path: Path) -> None:
    root = tmp_path / "scene.zarr"
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "yx"]
    ome_group(
        root,
        {
            "version": "0.6",
            "scene": {
                "coordinateSystems": [{"name": "world", "axes": axes}],
                "coordinateTransformations": [
                    {
                        "type": "translation",
                        "translation": [0, 348],
                        "output": "world",
                        "input": {"path": "tile_1", "name": "physical"},
                        "name": "tile_1 to world",
                    }
                ],
            },
        },
    )
    ome_group(
        root / "tile_1",
        {
            "version": "0.6",
            "multiscales": [
                {"coordinateSystems": [{"name": "physical", "axes": axes}], "datasets": []}
            ],
        },
    )
    scene = read_scene(root)
    st = scene.transformations[0]
    assert (st.input, st.output) == ("tile_1/physical", "world")
    assert "tile_1/physical" in scene.coordinate_systems
    np.testing.assert_allclose(st.transform.apply([0.0, 0.0]), [0.0, 348000.0])


def test_selection_among_several_transformations(tmp_path: Path) -> None:
    systems, edges = _three_space_scene()
    path = write_scene(tmp_path / "scene.zarr", systems, edges)
    with pytest.raises(FormatError, match="2 transformations match: fibsem -> xray"):
        read_ngff_transform(path)
    t = read_ngff_transform(path, input_space="tem")
    assert t.input_dim == 2
    with pytest.raises(FormatError, match="no transformation matches"):
        read_ngff_transform(path, name="nope")
