"""The napari reader, called through npe2 as napari calls it (napari itself is not needed).

The workspace holds a FIB-SEM pyramid and its nucleus labels (space fibsem), an
X-ray pyramid, a 2D TEM section and a warped volume. Edges: ``fibsem -> xray``
(a hand-written ITK affine, x-first in the file), ``tem -> xray`` (the
section's 2D -> 3D pose, OME-NGFF) and ``warped -> fibsem`` (BigWarp
landmarks: a thin-plate spline, not affine). Expected places are computed here
with plain numpy and checked against ``coframe points``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from samples import cellmap_pyramid, em_workspace

from coframe.app.napari_reader import SPACE_VARIABLE, get_reader
from coframe.app.points import map_workspace_points
from coframe.core.errors import CoframeWarning, WorkspaceError
from coframe.volumes import volume as volume_module

npe2 = pytest.importorskip("npe2")

A_XYZ = np.array([[0.99, 0.06, -0.01], [-0.05, 1.01, 0.02], [0.02, -0.03, 0.97]])
T_XYZ = np.array([-250.0, 80.0, 120.0])
# TEM pose: rows z, y, x; columns y, x, 1 (section nm -> X-ray nm)
POSE = np.array([[0.12, 0.0, 40.0], [0.97, 0.21, -30.0], [-0.2, 0.96, 15.0]])

WORKSPACE = """\
coframe: 1
unit: nanometer
spaces:
  fibsem: {axes: [z, y, x]}
  xray: {axes: [z, y, x]}
  tem: {axes: [y, x]}
images:
  fibsem: {path: fibsem.zarr, modality: fibsem, space: fibsem}
  nuc: {path: nuc.zarr, modality: labels, space: fibsem}
  xray: {path: xray.zarr, modality: xray, space: xray}
  tem: {path: tem.zarr, modality: tem, space: tem}
  warped: {path: warped.zarr, modality: xray, space: warped}
transforms:
  - {from: fibsem, to: xray, file: fibsem-to-xray.tfm, format: itk, unit: nanometer}
  - {from: tem, to: xray, file: tem-pose.json, format: ngff, unit: nanometer}
  - {from: warped, to: fibsem, file: warped.csv, format: bigwarp-csv, unit: nanometer}
"""


def _fibsem_to_xray(p: np.ndarray) -> np.ndarray:
    return (p[:, ::-1] @ A_XYZ.T + T_XYZ)[:, ::-1]


def _tem_to_xray(p: np.ndarray) -> np.ndarray:
    return p @ POSE[:, :2].T + POSE[:, 2]


def _section(path: Path) -> None:
    """A 2D OME-Zarr 0.4 image, 4 nm pixels, one level."""
    group = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(16, 20), chunks=(8, 8), dtype="uint8")[...] = 7
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "yx"]
    scale = [{"type": "scale", "scale": [4.0, 4.0]}]
    datasets = [{"path": "0", "coordinateTransformations": scale}]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    em = em_workspace(root, WORKSPACE)
    cellmap_pyramid(root / "xray.zarr", 255 - em, levels=2)
    cellmap_pyramid(root / "warped.zarr", em, levels=1)
    _section(root / "tem.zarr")
    params = " ".join(repr(float(v)) for v in [*A_XYZ.ravel(), *T_XYZ])
    (root / "fibsem-to-xray.tfm").write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {params}\nFixedParameters: 0 0 0\n"
    )
    axes = {n: [{"name": a, "type": "space", "unit": "nanometer"} for a in n2] for n, n2 in
            (("tem", "yx"), ("xray", "zyx"))}  # fmt: skip
    (root / "tem-pose.json").write_text(
        json.dumps(
            {
                "coordinateSystems": [{"name": n, "axes": a} for n, a in axes.items()],
                "coordinateTransformations": [
                    {"type": "affine", "affine": POSE.tolist(), "input": "tem", "output": "xray"}
                ],
            }
        )
    )
    rng = np.random.default_rng(0)
    moving = rng.uniform(0, 256, (8, 3))
    fixed = moving + rng.normal(0, 6, (8, 3))
    rows = [
        ",".join(f'"{v}"' for v in [f"Pt-{i}", "true", *m, *f])
        for i, (m, f) in enumerate(zip(moving, fixed, strict=True))
    ]
    (root / "warped.csv").write_text("\n".join(rows) + "\n")
    return root


def _read(path: str) -> dict[str, tuple]:
    pm = npe2.PluginManager.instance()
    pm.discover()  # the `napari.manifest` entry point declared in pyproject.toml
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = npe2.read([path], stack=False, plugin_name="coframe")
    _read.warnings = [str(w.message) for w in caught if w.category is CoframeWarning]
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


def _world(kwargs: dict, index: np.ndarray) -> np.ndarray:
    """napari's data -> world map: ``affine`` after ``scale`` then ``translate``."""
    physical = np.asarray(index, float) * kwargs["scale"] + kwargs["translate"]
    m = np.asarray(kwargs["affine"])
    return physical @ m[:-1, :-1].T + m[:-1, -1]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Voxels read from any backend array, per read."""
    counts: list[int] = []
    getitem = volume_module._DaskAdapter.__getitem__

    def counted(self: object, key: tuple[slice, ...]) -> np.ndarray:
        out = getitem(self, key)
        counts.append(int(out.size))
        return out

    monkeypatch.setattr(volume_module._DaskAdapter, "__getitem__", counted)
    return counts


def test_layers_are_lazy_pyramids_placed_in_the_default_space(ws: Path, reads: list[int]) -> None:
    layers = _read(str(ws))
    assert list(layers) == ["fibsem", "nuc", "xray", "tem"]
    assert [kind for _, _, kind in layers.values()] == ["image", "labels", "image", "image"]
    assert any("'warped'" in w and "not affine" in w for w in _read.warnings)
    fibsem, kwargs, _ = layers["fibsem"]
    assert kwargs["multiscale"] and len(fibsem) == 3 and len(layers["nuc"][0]) == 2
    assert all(isinstance(a, da.Array) for a in fibsem)
    assert [a.shape for a in fibsem] == [(32, 32, 32), (16, 16, 16), (8, 8, 8)]
    assert sum(reads) == 0, "opening the workspace read voxels"
    fibsem[0][:4, :4, :4].compute()
    assert sum(reads) == 64, "one chunk asked, more read"
    np.testing.assert_allclose(_world(kwargs, [[3, 5, 7]]), [[24.0, 40.0, 56.0]])
    # the X-ray, placed in fibsem space through the inverse of the ITK affine
    _, xray_kwargs, _ = layers["xray"]
    voxel = np.array([[2.0, 9.0, 4.0]])
    expected = map_workspace_points(
        "xray", "fibsem", json.dumps((voxel * 8).tolist()), workspace=ws
    )
    np.testing.assert_allclose(_world(xray_kwargs, voxel), expected, atol=1e-9)
    np.testing.assert_allclose(_fibsem_to_xray(expected), voxel * 8, atol=1e-9)


def test_a_chosen_space_places_volumes_and_sections(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers = _read(f"{ws / 'coframe.yaml'}#xray")
    assert set(layers) == {"fibsem", "nuc", "xray", "tem"}
    voxel = np.array([[3.0, 5.0, 7.0]])
    for name in ("fibsem", "nuc"):  # labels share fibsem's space
        np.testing.assert_allclose(
            _world(layers[name][1], voxel), _fibsem_to_xray(voxel * 8), atol=1e-9
        )
    tem, kwargs, kind = layers["tem"]
    assert kind == "image" and not kwargs["multiscale"] and tem.shape == (1, 16, 20)
    pixel = np.array([[0.0, 6.0, 11.0]])  # the section's own plane is index 0 of the added axis
    expected = map_workspace_points(
        "tem", "xray", json.dumps((pixel[:, 1:] * 4).tolist()), workspace=ws
    )
    np.testing.assert_allclose(_world(kwargs, pixel), expected, atol=1e-9)
    np.testing.assert_allclose(expected, _tem_to_xray(pixel[:, 1:] * 4), atol=1e-9)
    m = np.asarray(kwargs["affine"])[:3, :3]
    assert abs(np.linalg.det(m)) > 0 and np.allclose(m[:, 0] @ m[:, 1:], 0)
    monkeypatch.setenv(SPACE_VARIABLE, "warped")
    assert set(_read(str(ws))) == {"warped"}  # everything else reaches it through the warp
    assert sum("not affine" in w for w in _read.warnings) == 4


def test_bad_paths_and_spaces_are_refused(ws: Path, tmp_path: Path) -> None:
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(ws / "fibsem.zarr")) is None
    assert get_reader([str(ws), str(ws)]) is None
    with pytest.raises(WorkspaceError, match=r"unknown space 'nowhere' .*known spaces .*fibsem"):
        _read(f"{ws / 'coframe.yaml'}#nowhere")
    assert set(_read(f"{ws / 'coframe.yaml'}#tem")) == {"tem"}  # volumes have no place in it
    assert sum("has no inverse" in w or "no place" in w for w in _read.warnings) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "coframe.yaml").write_text("coframe: 1\nunit: nanometer\n")
    with pytest.raises(WorkspaceError, match=r"has no images or spaces to show"):
        _read(str(empty))
