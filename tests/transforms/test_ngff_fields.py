"""OME-NGFF displacement and coordinate fields stored by other tools: layouts, axes, units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ngff_samples import RNG, ome_group, random_field, random_points

from coframe.core.errors import FormatError, InputNotFoundError, TransformError
from coframe.transforms.field import DisplacementField
from coframe.transforms.formats.ngff import (
    FieldView,
    read_ngff_transform,
    read_scene,
    write_ngff_transform,
)


def _field_scene(tmp_path: Path, vectors_first: bool, zarr_format: int) -> tuple[Path, Any]:
    """A scene with an xyz-ordered field, its vector axis first or last, in micrometres."""
    shape_xyz = (4, 5, 6)
    vectors = RNG.standard_normal((*shape_xyz, 3))  # components (x, y, z), micrometres
    spacing, origin = [2.0, 3.0, 4.0], [1.0, -1.0, 0.5]
    data = np.moveaxis(vectors, -1, 0) if vectors_first else vectors
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "xyz"]
    vector_axis = {"name": "v", "type": "displacement", "discrete": True}
    field_axes = [vector_axis, *axes] if vectors_first else [*axes, vector_axis]
    scale = [1.0, *spacing] if vectors_first else [*spacing, 1.0]
    shift = [0.0, *origin] if vectors_first else [*origin, 0.0]
    root = tmp_path / f"scene-{vectors_first}-{zarr_format}.zarr"
    meta = {
        "version": "0.6",
        "coordinateSystems": [{"name": "moving", "axes": axes}, {"name": "fixed", "axes": axes}],
        "coordinateTransformations": [
            {
                "type": "displacements",
                "path": "coordinateTransformations/warp",
                "input": "moving",
                "output": "fixed",
                "name": "warp",
            }
        ],
    }
    group = ome_group(root, meta, zarr_format)
    array = group.create_array("coordinateTransformations/warp", shape=data.shape, dtype="f8")
    array[...] = data
    field_meta = {
        "coordinateSystems": [{"name": "warp", "axes": field_axes}],
        "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": shift},
        ],
    }
    array.attrs.put({"ome": field_meta} if zarr_format == 3 else field_meta)

    def expected(points_zyx_nm: np.ndarray) -> np.ndarray:
        p_xyz = points_zyx_nm[:, ::-1] / 1000.0
        reference = DisplacementField(vectors, origin, spacing)
        return reference.apply(p_xyz)[:, ::-1] * 1000.0

    return root, expected


@pytest.mark.parametrize("vectors_first", [True, False])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_field_vector_axis_first_or_last(
    tmp_path: Path, vectors_first: bool, zarr_format: int
) -> None:
    root, expected = _field_scene(tmp_path, vectors_first, zarr_format)
    t = read_ngff_transform(root, name="warp")
    pts = random_points(low=0.0, high=12000.0)
    np.testing.assert_allclose(t.apply(pts), expected(pts), rtol=1e-9, atol=1e-6)
    assert isinstance(t, DisplacementField) and isinstance(t.vectors, FieldView)


def test_field_without_vector_axis_type_is_rejected(tmp_path: Path) -> None:
    root, _ = _field_scene(tmp_path, True, 3)
    array = zarr.open_array(str(root / "coordinateTransformations/warp"), mode="r+")
    meta = dict(array.attrs)["ome"]
    meta["coordinateSystems"][0]["axes"][0]["type"] = "channel"
    array.attrs.put({"ome": meta})
    with pytest.raises(FormatError, match="exactly one axis of type 'displacement'"):
        read_scene(root)


def test_field_axes_in_another_order_than_input_are_rejected(tmp_path: Path) -> None:
    root, _ = _field_scene(tmp_path, False, 3)
    array = zarr.open_array(str(root / "coordinateTransformations/warp"), mode="r+")
    meta = dict(array.attrs)["ome"]
    axes = meta["coordinateSystems"][0]["axes"]
    axes[0], axes[2] = axes[2], axes[0]
    array.attrs.put({"ome": meta})
    with pytest.raises(FormatError, match=r"not in the order of its input coordinate system"):
        read_scene(root)


def test_ome_zarr_04_image_is_not_a_scene(tmp_path: Path) -> None:
    root = tmp_path / "image.zarr"
    ome_group(
        root,
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"],
                    "datasets": [
                        {
                            "path": "s0",
                            "coordinateTransformations": [{"type": "scale", "scale": [8, 8, 8]}],
                        }
                    ],
                    "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}],
                }
            ]
        },
        zarr_format=2,
    )
    with pytest.raises(FormatError, match="no coordinateSystems or coordinateTransformations"):
        read_scene(root)


def test_missing_field_array_names_path(tmp_path: Path) -> None:
    f = random_field()
    path = write_ngff_transform(tmp_path / "f.zarr", f, input_space="a", output_space="b")
    import shutil

    shutil.rmtree(path / "coordinateTransformations")
    with pytest.raises(InputNotFoundError, match="coordinateTransformations/a-to-b"):
        read_ngff_transform(path)


def test_coordinates_field(tmp_path: Path) -> None:
    shape = (4, 5)
    spacing, origin = np.array([2.0, 3.0]), np.array([1.0, -1.0])
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    positions = origin + index * spacing
    displacement = RNG.standard_normal((*shape, 2))
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    meta = {
        "coordinateSystems": [{"name": "in", "axes": axes}, {"name": "out", "axes": axes}],
        "coordinateTransformations": [
            {"type": "coordinates", "path": "coords", "input": "in", "output": "out"}
        ],
    }
    root = tmp_path / "coords.zarr"
    group = ome_group(root, meta)
    array = group.create_array("coords", shape=(*shape, 2), dtype="f8")
    array[...] = positions + displacement
    array.attrs.put(
        {
            "ome": {
                "coordinateSystems": [
                    {"name": "c", "axes": [*axes, {"name": "c", "type": "coordinate"}]}
                ],
                "coordinateTransformations": [
                    {"type": "scale", "scale": [*spacing, 1.0]},
                    {"type": "translation", "translation": [*origin, 0.0]},
                ],
            }
        }
    )
    t = read_ngff_transform(root)
    reference = DisplacementField(displacement, origin, spacing)
    pts = RNG.uniform([1.0, -1.0], [7.0, 11.0], (20, 2))
    np.testing.assert_allclose(t.apply(pts), reference.apply(pts), atol=1e-9)


def _interpolated_scene(tmp_path: Path, kind: str, interpolation: str) -> Path:
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    meta = {
        "coordinateSystems": [{"name": "in", "axes": axes}, {"name": "out", "axes": axes}],
        "coordinateTransformations": [
            {"type": kind, "path": "f", "input": "in", "output": "out",
             "interpolation": interpolation}
        ],
    }  # fmt: skip
    root = tmp_path / f"{kind}-{interpolation}.zarr"
    group = ome_group(root, meta)
    array = group.create_array("f", shape=(4, 5, 2), dtype="f8")
    array[...] = RNG.standard_normal((4, 5, 2))
    vector = {"name": "v", "type": "displacement" if kind == "displacements" else "coordinate"}
    array.attrs.put({"ome": {"coordinateSystems": [{"name": "f", "axes": [*axes, vector]}],
                             "coordinateTransformations": [{"type": "identity"}]}})  # fmt: skip
    return root


@pytest.mark.parametrize("interpolation", ["nearest", "cubic"])
def test_field_interpolation_is_read_and_written_back(tmp_path: Path, interpolation: str) -> None:
    t = read_ngff_transform(_interpolated_scene(tmp_path, "displacements", interpolation))
    assert t.interpolation == interpolation
    out = write_ngff_transform(tmp_path / "again.zarr", t, input_space="in", output_space="out")
    again = read_ngff_transform(out)
    assert again.interpolation == interpolation
    pts = RNG.uniform(-1.0, 5.0, (30, 2))
    np.testing.assert_allclose(again.apply(pts), t.apply(pts), atol=1e-12)


@pytest.mark.parametrize(
    ("kind", "interpolation", "match"),
    [
        ("displacements", "spline", "'spline' is not one of the spec's values"),
        ("coordinates", "nearest", "use 'linear' or 'cubic'"),
    ],
)
def test_field_interpolation_refused(
    tmp_path: Path, kind: str, interpolation: str, match: str
) -> None:
    with pytest.raises(TransformError, match=match):
        read_ngff_transform(_interpolated_scene(tmp_path, kind, interpolation))
