"""BigWarp landmark CSV/JSON reading and writing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from coframe.core.errors import InputNotFoundError, OverwriteError, ParseError, TransformError
from coframe.transforms.formats.bigwarp import (
    is_bigwarp_json,
    read_bigwarp_json,
    read_bigwarp_landmarks,
    write_bigwarp_json,
    write_bigwarp_landmarks,
)
from coframe.transforms.formats.bigwarp_json import BigWarpJson
from coframe.transforms.point_pairs import Landmarks, landmarks_from_pairs

#: The CellMap-style BigWarp example (no header, all quoted, x-first, physical nm).
EXAMPLE_CSV = (
    '"Pt-0","true","81234.5","60211.0","70120.3","80110.2","61002.7","69880.1"\n'
    '"Pt-1","true","95012.0","72010.4","68000.0","94100.9","72990.3","67810.6"\n'
)


#: Files BigWarp itself wrote (``LandmarkTableModel.save``: opencsv, every field quoted, no
#: header, Java's ``Double.toString`` numbers), as in BigWarp's own test resources
#: (``src/test/resources/landmarks2d-blobs.csv``, ``mri-stack-translation-landmarks.csv``).
BIGWARP_WRITTEN_CSV = {
    2: (
        '"Pt-0","true","47.5","103.99999999999999","51.09375","195.28125"\n'
        '"Pt-1","true","162.5","42.90624999999999","120.09375","49.37499999999999"\n'
        '"Pt-2","true","234.375","119.09374999999999","125.84375","160.78125"\n'
    ),
    3: (
        '"Pt-0","true","78.04761904761905","113.78571428571429","135.0",'
        '"13.833333333333314","111.21428571428572","135.0"\n'
        '"Pt-1","true","235.1904761904762","116.16666666666667","135.0",'
        '"170.97619047619045","111.80952380952381","135.0"\n'
        '"Pt-2","true","148.8809523809524","201.28571428571428","135.0",'
        '"87.64285714285714","200.5","135.0"\n'
    ),
}

#: A transform object as BigWarp writes it (``TransformWriterJson``: type, then landmarks with
#: type, numDimensions, movingPoints, fixedPoints, active, names), as in its settings test.
BIGWARP_WRITTEN_JSON = {
    "type": "Thin Plate Spline",
    "landmarks": {
        "type": "BigWarpLandmarks",
        "numDimensions": 3,
        "movingPoints": [
            [193.1527102803737, 163.57943925233658, 130.00000000000003],
            [132.8910280373831, 248.17757009345803, 130.00000000000003],
            [222.70411214953256, 272.51401869158883, 130.00000000000003],
            [182.72280373831765, 159.52336448598143, 170.5607476635514],
        ],
        "fixedPoints": [
            [216.01797508417232, 233.3341910984992, 126.86263579832789],
            [145.77520051769838, 213.26482693664948, 126.8626357983279],
            [146.49196352347872, 298.5596246245108, 126.86263579832789],
            [182.72280373831765, 159.52336448598143, 170.5607476635514],
        ],
        "active": [True, True, True, False],
        "names": ["Pt-0", "Pt-1", "Pt-2", "Pt-3"],
    },
}


def _random_landmarks(dim: int, n: int = 12, seed: int = 0) -> Landmarks:
    rng = np.random.default_rng(seed)
    fixed = rng.uniform(0, 1000, (n, dim))
    moving = fixed + rng.normal(0, 20, (n, dim))
    return landmarks_from_pairs(fixed, moving)


def test_example_file_parses_in_zyx_order(tmp_path: Path) -> None:
    example = tmp_path / "bigwarp_landmarks.csv"
    example.write_text(EXAMPLE_CSV)
    lm = read_bigwarp_landmarks(example)
    assert lm.dim == 3 and len(lm) == 2
    assert lm.names == ("Pt-0", "Pt-1")
    assert lm.active.tolist() == [True, True]
    # File columns are x, y, z: moving (81234.5, 60211.0, 70120.3) -> (z, y, x).
    np.testing.assert_array_equal(lm.moving[0], [70120.3, 60211.0, 81234.5])
    np.testing.assert_array_equal(lm.fixed[1], [67810.6, 72990.3, 94100.9])


def test_csv_2d_and_3d_round_trip_keeps_inactive_points(tmp_path: Path) -> None:
    for dim in (2, 3):
        lm = _random_landmarks(dim)
        active = np.ones(len(lm), dtype=bool)
        active[3] = False
        moving = lm.moving.copy()
        moving[5] = np.inf  # an unpaired point, as BigWarp writes it
        active[5] = False
        lm = Landmarks(moving, lm.fixed, lm.names, active)
        path = write_bigwarp_landmarks(tmp_path / f"lm{dim}.csv", lm)
        text = path.read_text()
        assert text.splitlines()[0].count('","') == 2 * dim + 1
        assert '"Infinity"' in text and '"false"' in text
        back = read_bigwarp_landmarks(path)
        assert back.equals(lm)


def test_csv_columns_are_x_first(tmp_path: Path) -> None:
    lm = Landmarks(
        np.array([[3.0, 2.0, 1.0]]), np.array([[6.0, 5.0, 4.0]]), ("a",), np.array([True])
    )
    path = write_bigwarp_landmarks(tmp_path / "one.csv", lm)
    assert path.read_text() == '"a","true","1.0","2.0","3.0","4.0","5.0","6.0"\n'


def test_csv_units_convert(tmp_path: Path) -> None:
    path = tmp_path / "um.csv"
    path.write_text('"p","true","1.5","2","3","4","5","6"\n')
    lm = read_bigwarp_landmarks(path, unit="nanometer", file_unit="micrometer")
    np.testing.assert_allclose(lm.moving[0], [3000.0, 2000.0, 1500.0])
    out = write_bigwarp_landmarks(tmp_path / "back.csv", lm, unit="nanometer", file_unit="um")
    assert read_bigwarp_landmarks(out, file_unit="micrometer").equals(lm)


def test_csv_with_id_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "id.csv"
    path.write_text('"Pt-0","true","7","1","2","3","4"\n')
    lm = read_bigwarp_landmarks(path)
    assert lm.dim == 2
    np.testing.assert_array_equal(lm.moving[0], [2.0, 1.0])
    np.testing.assert_array_equal(lm.fixed[0], [4.0, 3.0])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('"a","true","1","2","3"\n', "line 1: expected 6 fields"),
        ('"a","true","1","2","3","4"\n"b","true","1","2","3","4","5","6"\n', "line 2 has 8 fields"),
        ('"a","yes","1","2","3","4"\n', "line 1, field 2 (active): expected true or false"),
        (
            '"a","true","1","2","3","4"\n"b","true","1","oops","3","4"\n',
            "line 2, field 4 (moving y)",
        ),
        ("\n\n", "holds no landmark line"),
    ],
)
def test_malformed_csv_names_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ParseError, match=re.escape(expected)) as info:
        read_bigwarp_landmarks(path)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        read_bigwarp_landmarks("/nonexistent/landmarks.csv")


def test_no_overwrite_without_force(tmp_path: Path) -> None:
    lm = _random_landmarks(2)
    path = write_bigwarp_landmarks(tmp_path / "a.csv", lm)
    with pytest.raises(OverwriteError, match="--force"):
        write_bigwarp_landmarks(path, lm)
    write_bigwarp_landmarks(path, lm, force=True)
    assert read_bigwarp_landmarks(path).equals(lm)
    assert list(tmp_path.iterdir()) == [path]


def test_json_round_trip_and_kinds(tmp_path: Path) -> None:
    lm = _random_landmarks(3)
    for kind in ("tps", "affine", "similarity", "rigid", "translation", None):
        path = write_bigwarp_json(tmp_path / f"{kind}.json", lm, kind)
        bw = read_bigwarp_json(path)
        assert bw.landmarks.equals(lm)
        assert bw.kind == (kind or "tps")
        assert is_bigwarp_json(path)
    obj = json.loads((tmp_path / "tps.json").read_text())
    assert obj["type"] == "Thin Plate Spline"
    assert obj["landmarks"]["type"] == "BigWarpLandmarks"
    # x first in the file
    assert obj["landmarks"]["movingPoints"][0] == lm.moving[0][::-1].tolist()


def test_json_settings_file_and_mask(tmp_path: Path) -> None:
    lm = _random_landmarks(2)
    inner = json.loads(write_bigwarp_json(tmp_path / "t.json", lm, "affine").read_text())
    inner["mask"] = {"interpolationType": "LINEAR"}
    settings = {"ViewerP": {}, "Transform": inner}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    bw = read_bigwarp_json(path)
    assert bw.masked and bw.type_name == "Affine" and bw.landmarks.equals(lm)
    with pytest.raises(TransformError, match="masked BigWarp transform"):
        bw.to_transform()


def test_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"type": "Thin Plate Spline",\n "landmarks": {"numDimensions": 3,,}}')
    with pytest.raises(ParseError, match="line 2, column"):
        read_bigwarp_json(path)
    path.write_text('{"type": "Affine", "landmarks": {"numDimensions": 3, "movingPoints": []}}')
    with pytest.raises(ParseError, match=r"landmarks\.fixedPoints is missing"):
        read_bigwarp_json(path)
    path.write_text(
        '{"landmarks": {"numDimensions": 2, "movingPoints": [[1, 2]], "fixedPoints": [[1, 2, 3]]}}'
    )
    with pytest.raises(ParseError, match="fixedPoints"):
        read_bigwarp_json(path)
    path.write_text('{"coordinateSystems": []}')
    assert not is_bigwarp_json(path)
    bw = BigWarpJson(_random_landmarks(2), "Spiral")
    with pytest.raises(Exception, match="'Spiral' is not supported"):
        bw.to_transform()


@pytest.mark.parametrize("dim", [2, 3])
def test_csv_bigwarp_wrote_is_written_back_byte_for_byte(tmp_path: Path, dim: int) -> None:
    """coframe writes BigWarp's own column layout: a file BigWarp wrote comes back identical."""
    original = tmp_path / "bigwarp.csv"
    original.write_text(BIGWARP_WRITTEN_CSV[dim])
    lm = read_bigwarp_landmarks(original)
    assert lm.dim == dim and lm.names == ("Pt-0", "Pt-1", "Pt-2")
    # x first in the file, numpy order (z, y, x) in coframe: Pt-0's moving x is the first number
    first = [float(v.strip('"')) for v in BIGWARP_WRITTEN_CSV[dim].split("\n")[0].split(",")[2:]]
    np.testing.assert_array_equal(lm.moving[0], first[:dim][::-1])
    np.testing.assert_array_equal(lm.fixed[0], first[dim:][::-1])
    out = write_bigwarp_landmarks(tmp_path / "coframe.csv", lm)
    assert out.read_bytes() == original.read_bytes()


def test_json_bigwarp_wrote_is_written_back_with_its_layout(tmp_path: Path) -> None:
    """A BigWarp transform object read and written by coframe keeps its keys, order and values."""
    original = tmp_path / "bigwarp.json"
    original.write_text(json.dumps(BIGWARP_WRITTEN_JSON, indent=4))
    bw = read_bigwarp_json(original)
    assert bw.type_name == "Thin Plate Spline" and list(bw.landmarks.active) == [1, 1, 1, 0]
    out = write_bigwarp_json(tmp_path / "coframe.json", bw.landmarks, bw.kind)
    written = json.loads(out.read_text())
    assert written == BIGWARP_WRITTEN_JSON
    assert list(written) == list(BIGWARP_WRITTEN_JSON)
    assert list(written["landmarks"]) == list(BIGWARP_WRITTEN_JSON["landmarks"])


def test_written_csv_has_the_example_layout_byte_for_byte(tmp_path: Path) -> None:
    """Read then written, the example comes back identical: no header, every field quoted,
    name, active, moving x, y, z, fixed x, y, z, numbers as written, one line each."""
    example = tmp_path / "example.csv"
    example.write_text(EXAMPLE_CSV)
    out = write_bigwarp_landmarks(tmp_path / "out.csv", read_bigwarp_landmarks(example))
    assert out.read_bytes() == EXAMPLE_CSV.encode()
