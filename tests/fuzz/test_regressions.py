"""Inputs the fuzzers found that escaped as other errors (or crashed the process), one test each.

Each test builds the smallest input known to trigger its bug and checks the
reader now refuses it with a one-line coframe error that names the file and
the field.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import tifffile
import yaml
import zarr
from samples import cellmap_pyramid

from coframe.app.points import read_points
from coframe.app.workspace import load_workspace
from coframe.core.errors import (
    FormatError,
    InputNotFoundError,
    MetadataError,
    ParseError,
    RegistrationError,
    TransformError,
    WorkspaceError,
)
from coframe.registration.landmarks import fit, load_landmarks
from coframe.transforms.formats.dispatch import read_transform
from coframe.transforms.formats.ngff import read_scene
from coframe.transforms.sitk_bridge import from_sitk
from coframe.volumes.open import open_volume

DEEP_JSON = "[" * 100_000 + "]" * 100_000
LONG_INTEGER = "1" + "0" * 5000  # more digits than Python converts (4300)


def _pyramid(path: Path, zarr_format: int = 2) -> Path:
    data = (np.arange(8**3) % 251).astype(np.uint8).reshape(8, 8, 8)
    return cellmap_pyramid(path, data, levels=2, zarr_format=zarr_format)


# ---------------------------------------------------------------------- ITK .tfm

_HEADER = "#Insight Transform File V1.0\n#Transform 0\n"
_DIRECTION = "1 0 0 0 1 0 0 0 1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # an empty Parameters list crashed the process (segmentation fault)
        (
            "Transform: Euler3DTransform_double_3_3\nParameters: \nFixedParameters: 1 2 3 0\n",
            r"holds 0 Parameters and 4 FixedParameters but needs 6 and 3",
        ),
        # ITK stops at 1e400 and read the scale past its end
        (
            "Transform: ScaleTransform_double_3_3\nParameters: 1e400 2 0.5\n"
            "FixedParameters: 0 0 0\n",
            r"Parameters holds '1e400': expected finite decimal numbers",
        ),
        # a grid of 10^10 nodes corrupted ITK's heap (double free, abort)
        (
            "Transform: BSplineTransform_double_3_3\nParameters: 0 0 0\n"
            f"FixedParameters: 1e10 2 2 0 0 0 1 1 1 {_DIRECTION}\n",
            r"holds 3 Parameters .* needs 120000000000 for the grid size 1e10 x 2 x 2",
        ),
        (
            "Transform: BSplineTransform_double_3_3\nParameters: 0 0 0\n"
            f"FixedParameters: 100000 100000 100000 0 0 0 1 1 1 {_DIRECTION}\n",
            r"needs 3000000000000000 for the grid size 100000 x 100000 x 100000",
        ),
        # SimpleITK wraps an unknown kind in a composite of itself (RecursionError)
        (
            "Transform: MatrixOffsetTransformBase_double_3_3\n"
            "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n",
            r"'MatrixOffsetTransformBase_double_3_3' is not an ITK transform coframe reads",
        ),
    ],
)
def test_corrupt_itk_text_is_refused_before_itk_reads_it(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "t.tfm"
    path.write_text(_HEADER + body)
    with pytest.raises(FormatError, match=message):
        read_transform(path)


def test_itk_text_of_every_kind_written_still_reads(tmp_path: Path) -> None:
    bspline = sitk.BSplineTransform(3, 3)
    bspline.SetTransformDomainMeshSize((2, 1, 1))
    kinds = [
        sitk.AffineTransform(3),
        sitk.Euler3DTransform(),
        sitk.Euler2DTransform(),
        sitk.Similarity2DTransform(),
        sitk.Similarity3DTransform(),
        sitk.VersorTransform(),
        sitk.VersorRigid3DTransform(),
        sitk.ScaleVersor3DTransform(),
        sitk.ScaleSkewVersor3DTransform(),
        sitk.ScaleTransform(2),
        sitk.TranslationTransform(3, (1.0, 2.0, 3.0)),
        sitk.Transform(3, sitk.sitkIdentity),
        bspline,
        sitk.CompositeTransform([sitk.AffineTransform(3), bspline]),
    ]
    for i, t in enumerate(kinds):
        path = tmp_path / f"t{i}.txt"
        sitk.WriteTransform(t, str(path))
        assert read_transform(path).input_dim == t.GetDimension()


def test_binary_itk_file_naming_a_kind_in_bytes_is_a_format_error(tmp_path: Path) -> None:
    # SimpleITK's error quoted the bytes and raised UnicodeDecodeError
    path = tmp_path / "t.mat"
    sitk.WriteTransform(sitk.AffineTransform(3), str(path))
    path.write_bytes(path.read_bytes().replace(b"_double_3_3", b"_double\xff3_3"))
    with pytest.raises(FormatError, match=r"t\.mat' as an ITK transform file: it names"):
        read_transform(path)


def test_unknown_kind_wrapped_in_itself_is_a_transform_error(tmp_path: Path) -> None:
    path = tmp_path / "t.tfm"
    path.write_text(
        _HEADER + "Transform: MatrixOffsetTransformBase_double_3_3\n"
        "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n"
    )
    with pytest.raises(TransformError, match="nests more than 16 composites deep"):
        from_sitk(sitk.ReadTransform(str(path)))


# ---------------------------------------------------------------------- OME-Zarr, N5


@pytest.mark.parametrize("text", [DEEP_JSON, f'{{"multiscales": {LONG_INTEGER}}}'])
def test_zattrs_too_deep_or_too_long_a_number_is_a_parse_error(tmp_path: Path, text: str) -> None:
    image = _pyramid(tmp_path / "image.zarr")
    (image / ".zattrs").write_text(text)
    with pytest.raises(ParseError, match=r"\.zattrs nests too deeply or holds a number too long"):
        open_volume(image)


def test_array_metadata_too_deep_is_a_format_error(tmp_path: Path) -> None:
    image = _pyramid(tmp_path / "image.zarr", zarr_format=3)
    (image / "s0" / "zarr.json").write_text(DEEP_JSON)
    with pytest.raises(FormatError, match=r"cannot open array 's0'"):
        open_volume(image)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zero_chunk_size_is_a_format_error(tmp_path: Path, zarr_format: int) -> None:
    image = _pyramid(tmp_path / "image.zarr", zarr_format)
    document = image / "s0" / (".zarray" if zarr_format == 2 else "zarr.json")
    doc = json.loads(document.read_text())
    if zarr_format == 2:
        doc["chunks"] = [0, 4, 4]
    else:
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [0, 4, 4]
    document.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"'s0' .* has chunks \(0, 4, 4\): expected positive"):
        open_volume(image)


def test_n5_attributes_too_deep_is_a_parse_error(tmp_path: Path) -> None:
    group = tmp_path / "image.n5"
    group.mkdir()
    (group / "attributes.json").write_text(DEEP_JSON)
    with pytest.raises(ParseError, match=r"attributes\.json nests too deeply"):
        open_volume(group)


@pytest.mark.parametrize(
    ("unit", "scale", "translation", "message"),
    [
        ("meter", 8.0, 1e300, r"translation .* an origin of \(inf, 0, 0\) nanometer"),
        ("angstrom", 5e-324, 0.0, r"scale .* a voxel size of \(0, 8, 8\) nanometer"),
    ],
)
def test_placement_beyond_a_float_in_the_workspace_unit_is_refused(
    tmp_path: Path, unit: str, scale: float, translation: float, message: str
) -> None:
    image = _pyramid(tmp_path / "image.zarr")
    attrs = json.loads((image / ".zattrs").read_text())
    attrs["multiscales"][0]["axes"][0]["unit"] = unit
    s0 = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    s0[0]["scale"][0], s0[1]["translation"][0] = scale, translation
    (image / ".zattrs").write_text(json.dumps(attrs))
    with pytest.raises(MetadataError, match=message):
        open_volume(image)


def test_zarr_group_is_still_an_ome_zarr(tmp_path: Path) -> None:
    # the seeds the fuzzers break are valid
    assert open_volume(_pyramid(tmp_path / "image.zarr")).levels[0].shape == (8, 8, 8)
    assert zarr.open_group(str(tmp_path / "image.zarr"), mode="r").attrs["multiscales"]


# ---------------------------------------------------------------------- TIFF


def _tiff_with_entry(tag: int, *, count: int | None = None, value: int | None = None) -> bytes:
    """A 5x6 uint8 TIFF of one strip per row, with one IFD entry's count or value replaced."""
    buf = io.BytesIO()
    data = (np.arange(30) % 251).astype(np.uint8).reshape(5, 6)
    tifffile.imwrite(
        buf, data, rowsperstrip=1, resolution=(2.0, 2.0), resolutionunit=5, photometric=1
    )
    raw = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for i in range(struct.unpack_from("<H", raw, ifd)[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", raw, at)[0] == tag:
            if count is not None:
                struct.pack_into("<I", raw, at + 4, count)
            if value is not None:
                struct.pack_into("<I", raw, at + 8, value)
            return bytes(raw)
    raise AssertionError(f"tag {tag} not written")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"tag": 256, "value": 0}, "cannot read the image series"),  # ImageWidth 0
        ({"tag": 278, "value": 0}, "cannot open level 0"),  # RowsPerStrip 0
        ({"tag": 279, "count": 4}, "lists 5 data offsets but 4 byte counts"),  # StripByteCounts
    ],
)
def test_corrupt_tiff_tags_are_format_errors(
    tmp_path: Path, entry: dict[str, int], message: str
) -> None:
    path = tmp_path / "image.tif"
    path.write_bytes(_tiff_with_entry(**entry))
    with pytest.raises(FormatError, match=message):
        open_volume(path)


def test_xresolution_with_two_rationals_is_an_unusable_size(tmp_path: Path) -> None:
    path = tmp_path / "image.tif"
    path.write_bytes(_tiff_with_entry(282, count=2))
    with pytest.raises(MetadataError, match=r"XResolution/YResolution tags .* give x = nan"):
        open_volume(path)
    assert open_volume(path, voxel_size=0.5, input_unit="micrometer").levels[0].voxel_size == (
        500.0,
        500.0,
    )


def test_imagej_spacing_too_large_for_a_float_is_an_unusable_size(tmp_path: Path) -> None:
    path = tmp_path / "image.tif"
    data = np.zeros((3, 5, 6), dtype=np.uint8)
    tifffile.imwrite(
        path, data, imagej=True, metadata={"unit": "um", "spacing": 10**400, "axes": "ZYX"}
    )
    with pytest.raises(MetadataError, match=r"spacing .* give z = inf"):
        open_volume(path)


@pytest.mark.timeout(60)
def test_tiff_whose_directories_loop_is_a_format_error(tmp_path: Path) -> None:
    # tifffile followed the loop page after page, its memory growing without end
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((2, 5, 6), dtype=np.uint8), photometric="minisblack")
    raw = bytearray(path.read_bytes())
    first = struct.unpack_from("<I", raw, 4)[0]
    second = struct.unpack_from(
        "<I", raw, first + 2 + 12 * struct.unpack_from("<H", raw, first)[0]
    )[0]
    end = second + 2 + 12 * struct.unpack_from("<H", raw, second)[0]
    struct.pack_into("<I", raw, end, first)
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"directories loops back to byte \d+ after 2 pages"):
        open_volume(path)


def test_tiff_whose_first_directory_lies_beyond_any_file_is_a_format_error(
    tmp_path: Path,
) -> None:
    # seeking there to look for a loop raised OSError (Invalid argument)
    path = tmp_path / "big.tif"
    path.write_bytes(b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 2**63 + 5) + bytes(64))
    with pytest.raises(FormatError, match=r"big\.tif"):
        open_volume(path)


# ---------------------------------------------------------------------- MRC


def test_mrc_header_whose_data_size_overflows_is_a_format_error(tmp_path: Path) -> None:
    import mrcfile

    path = tmp_path / "tomo.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((3, 4, 5), dtype=np.int16))
    raw = bytearray(path.read_bytes())
    struct.pack_into("<ii", raw, 0, -1, 2**31 - 1)  # nx = -1, ny = 2^31 - 1
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"cannot read .*tomo\.mrc as MRC"):
        open_volume(path)


# ---------------------------------------------------------------------- NGFF, BigWarp


def test_ngff_scene_too_deep_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "scene.json"
    path.write_text(DEEP_JSON)
    with pytest.raises(ParseError, match=r"scene\.json: JSON nests too deeply"):
        read_scene(path)


def test_ngff_number_too_large_for_a_float_is_a_parse_error(tmp_path: Path) -> None:
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    doc = {
        "coordinateSystems": [{"name": "a", "axes": axes}, {"name": "b", "axes": axes}],
        "coordinateTransformations": [
            {"type": "translation", "input": "a", "output": "b", "translation": [10**400, 0, 0]}
        ],
    }
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ParseError, match=r"\[0\]\.translation: expected numbers"):
        read_scene(path)


def test_bigwarp_json_too_deep_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "landmarks.json"
    path.write_text('{"landmarks": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(ParseError, match=r"landmarks\.json: JSON nests too deeply"):
        read_transform(path)


def test_bigwarp_json_point_too_large_for_a_float_is_a_parse_error(tmp_path: Path) -> None:
    points = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 10**400]]
    doc = {"type": "BigWarpLandmarks", "numDimensions": 3}
    doc.update(movingPoints=points, fixedPoints=points[:3] + [[0, 0, 1]])
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ParseError, match=r"movingPoints: expected a list of 3-number points"):
        read_transform(path)


def test_landmarks_too_large_to_fit_are_refused(tmp_path: Path) -> None:
    points = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]
    path = tmp_path / "landmarks.csv"
    path.write_text(
        "".join(
            f'"Pt-{i}","true",{",".join(f"{1e200 * v:g}" for v in p * 2)}\n'
            for i, p in enumerate(points)
        )
    )
    landmarks = load_landmarks(path, unit="nanometer")
    with pytest.raises(RegistrationError, match=r"coordinates up to 1e\+200 overflow a 3D rigid"):
        fit(landmarks, "rigid", str(path))


# ---------------------------------------------------------------------- coframe.yaml


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("coframe: 1\nspaces:\n  ? [a, b]\n  : {axes: [z, y, x]}\n", ParseError, "unhashable key"),
        ("coframe: 1\ntransforms: " + "[" * 5000 + "]" * 5000, ParseError, "nests too deeply"),
        (f"coframe: 1\nunit: {LONG_INTEGER}\n", ParseError, "a number too long"),
        ("coframe: 1\nunit: \x1f\n", ParseError, r"unacceptable character #x001f: special"),
        (
            f"coframe: 1\nimages: {{x: {{path: a.tif, voxel_size: 1{'0' * 400}}}}}\n",
            WorkspaceError,
            "must be positive and finite",
        ),
    ],
)
def test_broken_workspace_yaml_is_one_line_error(
    tmp_path: Path, text: str, error: type[Exception], message: str
) -> None:
    (tmp_path / "coframe.yaml").write_text(text)
    with pytest.raises(error, match=message) as caught:
        load_workspace(tmp_path)
    assert "\n" not in str(caught.value)


def test_workspace_seed_still_loads(tmp_path: Path) -> None:
    doc = {"coframe": 1, "images": {"x": {"path": "a.tif", "voxel_size": [8, 8.0, 2**60]}}}
    (tmp_path / "coframe.yaml").write_text(yaml.safe_dump(doc))
    assert load_workspace(tmp_path).images["x"].voxel_size == (8.0, 8.0, float(2**60))


# ---------------------------------------------------------------------- points


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[1e3, 2, 3], [" + "1" + "0" * 400 + ", 2, 3]]", "coordinates must be finite"),
        (DEEP_JSON, "nests too deeply"),
        (f"[[{LONG_INTEGER}, 2, 3]]", "a number too long"),
    ],
)
def test_broken_points_json_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        read_points(text)


def test_points_csv_with_a_huge_field_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text('z,y,x\n1,2,"' + "3" * 200_000 + "\n")
    with pytest.raises(ParseError, match=r"points\.csv line 2: field larger than field limit"):
        read_points(str(path))


def test_points_path_of_an_unknown_user_is_not_found() -> None:
    with pytest.raises(InputNotFoundError, match="nobody-here"):
        read_points("~nobody-here/points.csv")
