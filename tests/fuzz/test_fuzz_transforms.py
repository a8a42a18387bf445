"""Fuzzing the transform readers: ITK ``.tfm`` text, OME-NGFF scenes, BigWarp CSV and JSON.

Each example writes a broken transform file and reads it with
:func:`read_transform` (what ``coframe link`` and the workspace graph call) or
:func:`read_scene` (``coframe points --scene``, ``import-scene``); a transform
that reads is applied to a few points. BigWarp landmarks are also fitted as
``coframe register --landmarks`` does. Any of these either works or raises a
one-line coframe error.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from fuzz.harness import fuzz_settings, profile, reads_or_refuses
from fuzz.mutations import mutated_bytes, mutated_document, mutated_text, unreadable_json
from fuzz.seeds import write_json
from hypothesis import given
from hypothesis import strategies as st

from coframe.registration.landmarks import MODELS, check_count, fit, load_landmarks
from coframe.transforms.base import Transform
from coframe.transforms.formats.dispatch import read_transform
from coframe.transforms.formats.ngff import read_scene


def read_and_apply(path: Path, **kwargs: Any) -> Transform:
    """Read a transform file and map a few points of its input dimension through it."""
    t = read_transform(path, **kwargs)
    points = np.array([[0.0] * t.input_dim, [1.0] * t.input_dim, [-250.0] * t.input_dim])
    t.apply(points)
    return t


# ---------------------------------------------------------------------- ITK .tfm


@functools.cache
def itk_seeds() -> dict[str, str]:
    """Text of valid ITK transform files of every kind coframe reads."""
    bspline3 = sitk.BSplineTransform(3, 3)
    bspline3.SetTransformDomainMeshSize((1, 1, 1))
    bspline3.SetParameters(tuple(float(i % 5) for i in range(bspline3.GetNumberOfParameters())))
    bspline2 = sitk.BSplineTransform(2, 3)
    bspline2.SetTransformDomainMeshSize((1, 2))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.0, 0.1, 0, 0, 1.1, 0, 0, 0, 0.9))
    affine.SetTranslation((5.0, -3.0, 2.0))
    affine.SetCenter((10.0, 10.0, 10.0))
    transforms: dict[str, sitk.Transform] = {
        "affine": affine,
        "euler3d": sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.1, 0.2, 0.3, (4.0, 5.0, 6.0)),
        "versor": sitk.VersorRigid3DTransform((0.0, 0.0, 0.1, 0.99)),
        "similarity2d": sitk.Similarity2DTransform(1.1, 0.2, (3.0, 4.0)),
        "translation": sitk.TranslationTransform(3, (1.0, 2.0, 3.0)),
        "scale": sitk.ScaleTransform(3, (1.0, 2.0, 0.5)),
        "bspline3d": bspline3,
        "bspline2d": bspline2,
        "composite": sitk.CompositeTransform([affine, bspline3]),
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, t in transforms.items():
            path = Path(tmp) / f"{name}.tfm"
            sitk.WriteTransform(t, str(path))
            out[name] = path.read_text()
    return out


_ITK_KINDS = (
    "AffineTransform",
    "Euler3DTransform",
    "Euler2DTransform",
    "VersorRigid3DTransform",
    "Similarity3DTransform",
    "ScaleTransform",
    "TranslationTransform",
    "BSplineTransform",
    "DisplacementFieldTransform",
    "CompositeTransform",
    "IdentityTransform",
    "ScaleSkewVersor3DTransform",
    "QuaternionRigidTransform",
    "BogusTransform",
)
_ITK_NUMBERS = st.one_of(
    st.sampled_from(
        ["0", "1", "-1", "2", "-2", "1e10", "1e400", "nan", "inf", "-inf", "2.5", "x", "", "1e-320"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
)


@st.composite
def broken_itk_text(draw: st.DrawFn) -> str:
    """A seed ``.tfm`` with its type line, parameters or fixed parameters broken."""
    name = draw(st.sampled_from(sorted(itk_seeds())))
    lines = itk_seeds()[name].splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if line.startswith("Transform:"):
            kind = draw(st.sampled_from(_ITK_KINDS))
            precision = draw(st.sampled_from(["double", "float", "int"]))
            dims = draw(st.sampled_from([(3, 3), (2, 2), (3, 2), (4, 4), (1, 1), (0, 0)]))
            lines[i] = f"Transform: {kind}_{precision}_{dims[0]}_{dims[1]}"
        elif ":" in line and not line.startswith("#"):
            key, _, values = line.partition(":")
            tokens = values.split()
            op = draw(st.sampled_from(["replace", "drop", "add", "empty"]))
            if op == "replace" and tokens:
                tokens[draw(st.integers(0, len(tokens) - 1))] = draw(_ITK_NUMBERS)
            elif op == "drop" and tokens:
                del tokens[draw(st.integers(0, len(tokens) - 1))]
            elif op == "add":
                tokens.insert(draw(st.integers(0, len(tokens))), draw(_ITK_NUMBERS))
            else:
                tokens = []
            lines[i] = f"{key}: {' '.join(tokens)}"
        else:
            op = draw(st.sampled_from(["delete", "duplicate", "garble"]))
            if op == "delete":
                del lines[i]
            elif op == "duplicate":
                lines.insert(i, line)
            else:
                lines[i] = draw(st.sampled_from(["#Transform 7", "#Insight Transform File V9", ""]))
        if not lines:
            break
    return "\n".join(lines) + "\n"


@fuzz_settings(ci=60, long=2000)
@given(text=broken_itk_text(), suffix=st.sampled_from([".tfm", ".txt"]))
def test_itk_text(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"transform{suffix}"
        path.write_text(text)
        reads_or_refuses("itk tfm", lambda: read_and_apply(path, file_unit="micrometer"))


@fuzz_settings(ci=25, long=800)
@given(data=st.data(), name=st.sampled_from(["affine", "euler3d", "bspline3d", "composite"]))
def test_itk_bytes(data: st.DataObject, name: str) -> None:
    raw = data.draw(mutated_text(itk_seeds()[name]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "transform.tfm"
        path.write_bytes(raw)
        reads_or_refuses("itk tfm", lambda: read_and_apply(path))


@functools.cache
def itk_binary_seeds() -> dict[str, bytes]:
    """Bytes of valid ITK ``.mat`` (affine) and ``.h5`` (affine, B-spline) transform files."""
    affine = sitk.AffineTransform(3)
    affine.SetTranslation((1.0, 2.0, 3.0))
    bspline = sitk.BSplineTransform(3, 3)
    bspline.SetTransformDomainMeshSize((1, 1, 1))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, t in (("affine.mat", affine), ("affine.h5", affine), ("bspline.h5", bspline)):
            sitk.WriteTransform(t, str(Path(tmp) / name))
            out[name] = (Path(tmp) / name).read_bytes()
    return out


#: A corrupt .h5 leaves HDF5 handles open and HDF5 prints diagnostics on stderr, also at
#: exit ("infinite loop closing library"): upstream, so only the long profile fuzzes .h5.
_BINARY = ["affine.mat"] + (["affine.h5", "bspline.h5"] if profile() == "long" else [])


@fuzz_settings(ci=15, long=600)
@given(name=st.sampled_from(_BINARY), data=st.data())
def test_itk_binary_bytes(name: str, data: st.DataObject) -> None:
    raw = data.draw(mutated_bytes(itk_binary_seeds()[name]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(raw)
        reads_or_refuses("itk mat/h5", lambda: read_and_apply(path))


# ---------------------------------------------------------------------- NGFF scenes


def _system(name: str, axes: str = "zyx", unit: str = "nanometer") -> dict[str, Any]:
    return {"name": name, "axes": [{"name": a, "type": "space", "unit": unit} for a in axes]}


NGFF_SCENE: dict[str, Any] = {
    "ome": {
        "version": "0.6",
        "scene": {
            "coordinateSystems": [
                _system("fibsem"),
                _system("xray", unit="micrometer"),
                _system("tem", axes="yx"),
                _system("tem-2", axes="xy", unit="micrometer"),
                _system("xyz", axes="xyz"),
                # the byDimension's and the identity's own outputs: into xray and fibsem they
                # would close cycles with fibsem -> xray that disagree, which a valid scene may
                # not hold
                _system("xray-2", unit="micrometer"),
                _system("xray-3", unit="micrometer"),
            ],
            "coordinateTransformations": [
                {
                    "type": "sequence",
                    "input": "fibsem",
                    "output": "xray",
                    "name": "fibsem-to-xray",
                    "transformations": [
                        {"type": "scale", "scale": [0.001, 0.001, 0.001]},
                        {
                            "type": "affine",
                            "affine": [[1, 0.1, 0, 5], [0, 1, 0, -2], [0, 0, 1, 3]],
                        },
                        {"type": "translation", "translation": [1.0, 2.0, 3.0]},
                    ],
                },
                {
                    "type": "affine",
                    "input": "tem",
                    "output": "fibsem",
                    "affine": [[0, 0, 100], [1, 0, 0], [0, 1, 0]],
                },
                {
                    "type": "mapAxis",
                    "input": "fibsem",
                    "output": "xyz",
                    "mapAxis": {"x": "x", "y": "y", "z": "z"},
                },
                {
                    "type": "byDimension",
                    "input": "xyz",
                    "output": "xray-2",
                    "transformations": [
                        {
                            "type": "scale",
                            "scale": [2.0, 3.0],
                            "input_axes": ["x", "y"],
                            "output_axes": ["x", "y"],
                        },
                        {
                            "type": "translation",
                            "translation": [4.0],
                            "input_axes": ["z"],
                            "output_axes": ["z"],
                        },
                    ],
                },
                {
                    "type": "inverseOf",
                    "input": "tem-2",
                    "output": "tem",
                    "transformation": {
                        "type": "rotation",
                        "rotation": [[0, -1], [1, 0]],
                    },
                },
                {
                    "type": "bijection",
                    "input": "xyz",
                    "output": "fibsem",
                    "forward": {"type": "mapAxis", "mapAxis": [2, 1, 0]},
                    "inverse": {"type": "mapAxis", "mapAxis": [2, 1, 0]},
                },
                {"type": "identity", "input": "xray", "output": "xray-3"},
            ],
        },
    }
}


def _use_scene(path: Path) -> None:
    scene = read_scene(path, unit="nanometer")
    for st_ in scene.transformations:
        t = st_.transform
        t.apply(np.zeros((2, t.input_dim)))


@fuzz_settings(ci=80, long=2000)
@given(doc=mutated_document(NGFF_SCENE, max_mutations=4))
def test_ngff_scene_json(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.json"
        write_json(path, doc)
        reads_or_refuses("ngff scene", lambda: _use_scene(path))


@fuzz_settings(ci=20, long=600)
@given(data=st.data())
def test_ngff_scene_bytes(data: st.DataObject) -> None:
    text = json.dumps(NGFF_SCENE, indent=1)
    raw = data.draw(mutated_text(text) | unreadable_json())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scene.json"
        path.write_bytes(raw)
        reads_or_refuses("ngff scene", lambda: _use_scene(path))


def _field_group(root: Path, group_attrs: dict[str, Any], field_attrs: dict[str, Any]) -> Path:
    import zarr

    path = root / "scene.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    field = group.create_array(
        "coordinateTransformations/field", shape=(3, 4, 5, 3), dtype="float64", chunks=(3, 4, 5, 3)
    )
    field[...] = np.linspace(-1, 1, 180).reshape(3, 4, 5, 3)
    field.attrs.put({"ome": field_attrs})
    group.attrs.put({"ome": group_attrs})
    return path


FIELD_GROUP: dict[str, Any] = {
    "version": "0.6",
    "coordinateSystems": [_system("fibsem"), _system("xray")],
    "coordinateTransformations": [
        {
            "type": "displacements",
            "input": "fibsem",
            "output": "xray",
            "path": "coordinateTransformations/field",
            "interpolation": "linear",
        }
    ],
}
FIELD_ARRAY: dict[str, Any] = {
    "version": "0.6",
    "coordinateSystems": [
        {
            "name": "field",
            "axes": [
                *({"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"),
                {"name": "d", "type": "displacement", "unit": "nanometer"},
            ],
        }
    ],
    "coordinateTransformations": [
        {
            "type": "sequence",
            "output": "field",
            "transformations": [
                {"type": "scale", "scale": [10.0, 10.0, 10.0, 1.0]},
                {"type": "translation", "translation": [5.0, 0.0, -5.0, 0.0]},
            ],
        }
    ],
}


@fuzz_settings(ci=25, long=400)
@given(
    group_attrs=mutated_document(FIELD_GROUP) | st.just(FIELD_GROUP),
    field_attrs=mutated_document(FIELD_ARRAY) | st.just(FIELD_ARRAY),
)
def test_ngff_displacement_group(group_attrs: Any, field_attrs: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = _field_group(Path(tmp), group_attrs, field_attrs)
        except (TypeError, ValueError):
            return  # zarr refuses to store these attributes (not JSON)
        reads_or_refuses("ngff scene", lambda: _use_scene(path))


# ---------------------------------------------------------------------- BigWarp

BIGWARP_CSV = "\n".join(
    f'"Pt-{i}","true","{x:.1f}","{y:.1f}","{z:.1f}","{x + 3:.1f}","{y - 2:.1f}","{z + 1:.1f}"'
    for i, (x, y, z) in enumerate(
        [(0, 0, 0), (100, 0, 0), (0, 100, 0), (0, 0, 100), (100, 100, 50), (30, 70, 20)]
    )
)

_CSV_FIELDS = st.one_of(
    st.sampled_from(
        ["nan", "NaN", "Infinity", "-inf", "1e400", "", " ", "true", "false", "TRUE", "yes", "1"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


@st.composite
def broken_bigwarp_csv(draw: st.DrawFn) -> str:
    """The seed CSV with fields replaced, rows dropped, duplicated or given other lengths."""
    rows = [line.split(",") for line in BIGWARP_CSV.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        r = draw(st.integers(0, len(rows) - 1))
        op = draw(st.sampled_from(["field", "field", "drop", "duplicate", "short", "long"]))
        if not rows[r]:
            rows[r] = [json.dumps(draw(_CSV_FIELDS))]
        elif op == "field":
            c = draw(st.integers(0, len(rows[r]) - 1))
            rows[r][c] = json.dumps(draw(_CSV_FIELDS))
        elif op == "drop" and len(rows) > 1:
            del rows[r]
        elif op == "duplicate":
            rows.insert(r, list(rows[r]))
        elif op == "short":
            rows[r] = rows[r][: draw(st.integers(0, len(rows[r]) - 1))]
        else:
            rows[r] = rows[r] + [json.dumps(draw(_CSV_FIELDS))]
    return "\n".join(",".join(r) for r in rows) + "\n"


def _fit_landmarks(path: Path, model: str) -> None:
    landmarks = load_landmarks(path, unit="nanometer", file_unit="micrometer")
    check_count(landmarks, model, str(path))
    fitted = fit(landmarks, model, str(path))
    fitted.summary(8.0)


@fuzz_settings(ci=60, long=1200)
@given(text=broken_bigwarp_csv(), model=st.sampled_from(sorted(MODELS)))
def test_bigwarp_csv(text: str, model: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "landmarks.csv"
        path.write_text(text)
        reads_or_refuses("bigwarp csv", lambda: read_and_apply(path))
        reads_or_refuses("bigwarp landmarks fit", lambda: _fit_landmarks(path, model))


@fuzz_settings(ci=20, long=600)
@given(data=st.data())
def test_bigwarp_csv_bytes(data: st.DataObject) -> None:
    raw = data.draw(mutated_text(BIGWARP_CSV))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "landmarks.csv"
        path.write_bytes(raw)
        reads_or_refuses("bigwarp csv", lambda: read_and_apply(path))


def _landmarks_json(kind: str) -> dict[str, Any]:
    rows = [line.replace('"', "").split(",") for line in BIGWARP_CSV.splitlines()]
    points = {
        "type": "BigWarpLandmarks",
        "numDimensions": 3,
        "movingPoints": [[float(v) for v in r[2:5]] for r in rows],
        "fixedPoints": [[float(v) for v in r[5:8]] for r in rows],
        "active": [True] * len(rows),
        "names": [r[0] for r in rows],
    }
    if kind == "landmarks":
        return points
    transform = {"type": "Thin Plate Spline", "landmarks": points}
    return transform if kind == "transform" else {"Transform": transform, "Bookmarks": {}}


BIGWARP_JSON = {kind: _landmarks_json(kind) for kind in ("landmarks", "transform", "settings")}


@fuzz_settings(ci=60, long=1200)
@given(
    kind=st.sampled_from(sorted(BIGWARP_JSON)),
    data=st.data(),
    model=st.sampled_from(sorted(MODELS)),
)
def test_bigwarp_json(kind: str, data: st.DataObject, model: str) -> None:
    doc = data.draw(mutated_document(BIGWARP_JSON[kind], max_mutations=4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "landmarks.json"
        write_json(path, doc)
        reads_or_refuses("bigwarp json", lambda: read_and_apply(path))
        reads_or_refuses("bigwarp landmarks fit", lambda: _fit_landmarks(path, model))


@fuzz_settings(ci=20, long=600)
@given(kind=st.sampled_from(sorted(BIGWARP_JSON)), data=st.data())
def test_bigwarp_json_bytes(kind: str, data: st.DataObject) -> None:
    raw = data.draw(mutated_text(json.dumps(BIGWARP_JSON[kind], indent=1)) | unreadable_json())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "landmarks.json"
        path.write_bytes(raw)
        reads_or_refuses("bigwarp json", lambda: read_and_apply(path))


def test_seeds_read() -> None:
    """Every seed reads: the fuzzers start from valid files."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in itk_seeds().items():
            (Path(tmp) / f"{name}.tfm").write_text(text)
            read_and_apply(Path(tmp) / f"{name}.tfm")
        write_json(Path(tmp) / "scene.json", NGFF_SCENE)
        _use_scene(Path(tmp) / "scene.json")
        _use_scene(_field_group(Path(tmp), FIELD_GROUP, FIELD_ARRAY))
        (Path(tmp) / "landmarks.csv").write_text(BIGWARP_CSV)
        read_and_apply(Path(tmp) / "landmarks.csv")
        for kind, doc in BIGWARP_JSON.items():
            write_json(Path(tmp) / f"{kind}.json", doc)
            read_and_apply(Path(tmp) / f"{kind}.json")
