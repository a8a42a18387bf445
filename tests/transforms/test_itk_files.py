"""ITK transform files: round trips, units, overwrite rules, errors, and resampling by SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from samples import rotation
from scipy import ndimage
from sitk_helpers import apply_sitk

from coframe.core.errors import (
    FormatError,
    InputNotFoundError,
    OverwriteError,
    TransformError,
    UnitError,
)
from coframe.transforms.affine import Affine, Identity, Rotation, Scale, Translation
from coframe.transforms.base import Chain, Transform
from coframe.transforms.bspline import BSpline
from coframe.transforms.field import DisplacementField, sample_to_field
from coframe.transforms.formats.itk import read_itk, write_itk
from coframe.transforms.tps import ThinPlateSpline

SUFFIXES = (".tfm", ".txt", ".h5", ".mat")


#: Anisotropic, non-symmetric affine (shear, unequal scales, rotation about two axes).
AFFINE = Affine.from_linear(
    np.diag([1.15, 0.92, 1.04]) @ rotation(0, 0.12) @ rotation(2, -0.07)
    + np.array([[0.0, 0.03, -0.02], [0.01, 0.0, 0.05], [0.0, -0.04, 0.0]]),
    [14.0, -9.0, 5.5],
)


def make_field(
    origin: np.ndarray, spacing: np.ndarray, shape: tuple[int, ...]
) -> DisplacementField:
    """A smooth, non-symmetric field whose z, y and x components all differ."""
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    zz, yy, xx = grids
    vectors = np.stack(
        [
            3.0 * np.sin(yy / 3.0) + 0.2 * xx,
            2.0 * np.cos(xx / 4.0) - 0.1 * zz,
            -1.5 * np.sin(zz / 2.0 + yy / 5.0),
        ],
        axis=-1,
    )
    return DisplacementField(vectors, origin, spacing)


FIELD = make_field(np.array([-20.0, -30.0, -15.0]), np.array([25.0, 12.0, 8.0]), (16, 16, 16))


def make_bspline() -> BSpline:
    size = (7, 8, 9)
    rng = np.random.default_rng(5)
    return BSpline(
        grid_origin=[-80.0, -40.0, -30.0],
        grid_spacing=[90.0, 30.0, 20.0],
        grid_direction=np.eye(3),
        grid_size=size,
        coefficients=rng.normal(scale=2.0, size=(*size, 3)),
    )


CASES: dict[str, Transform] = {
    "identity": Identity(3),
    "translation": Translation([100.0, -20.0, 3.0]),
    "scale": Scale([1.5, 0.8, 2.0]),
    "rotation": Rotation(rotation(1, 0.3)),
    "affine": AFFINE,
    "affine2d": Affine.from_linear([[1.1, 0.2], [-0.1, 0.95]], [3.0, -4.0]),
    "sequence": Chain((Translation([1.0, 2.0, 3.0]), AFFINE)),
    "field": FIELD,
    "bspline": make_bspline(),
    "affine-then-field": AFFINE.then(FIELD),
}


def sample_points(t: Transform, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(10.0, 150.0, size=(n, t.input_dim))


# A .mat file holds no composite: nonlinear sequences go to the other formats only.
ROUND_TRIPS = [
    (name, suffix)
    for name, t in CASES.items()
    for suffix in SUFFIXES
    if not (suffix == ".mat" and isinstance(t, Chain) and not t.is_linear)
]


@pytest.mark.parametrize(("name", "suffix"), ROUND_TRIPS)
def test_round_trip_same_point_mapping(tmp_path: Path, name: str, suffix: str) -> None:
    t = CASES[name]
    path = write_itk(t, tmp_path / f"t{suffix}")
    assert path == tmp_path / f"t{suffix}"
    back = read_itk(path)
    p = sample_points(t)
    assert np.allclose(back.apply(p), t.apply(p), rtol=1e-6, atol=1e-9)
    assert [f.name for f in tmp_path.iterdir()] == [f"t{suffix}"]


def test_composite_round_trip_keeps_order(tmp_path: Path) -> None:
    seq = Chain((Scale([2.0, 2.0, 2.0]), Translation([0.0, 0.0, 1.0])))
    back = read_itk(write_itk(seq, tmp_path / "c.h5"))
    assert back == seq
    # SimpleITK itself applies the scale first too.
    st = sitk.ReadTransform(str(tmp_path / "c.h5"))
    assert st.TransformPoint((1.0, 1.0, 1.0)) == (3.0, 2.0, 2.0)


def test_linear_sequence_collapses_into_one_mat_affine(tmp_path: Path) -> None:
    seq = Chain((Translation([1.0, 2.0, 3.0]), AFFINE))
    back = read_itk(write_itk(seq, tmp_path / "c.mat"))
    assert isinstance(back, Affine)
    assert np.allclose(back.matrix, seq.as_affine().matrix)


def test_nonlinear_sequence_refused_for_mat(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"\.mat file holds a single transform.*\.h5"):
        write_itk(AFFINE.then(FIELD), tmp_path / "c.mat")
    assert list(tmp_path.iterdir()) == []


def test_reads_files_written_by_simpleitk(tmp_path: Path) -> None:
    euler = sitk.Euler3DTransform((10.0, 20.0, 30.0), 0.1, -0.25, 0.3, (4.0, -5.0, 6.0))
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(euler)
    composite.AddTransform(sitk.ScaleTransform(3, (1.2, 0.9, 1.1)))
    sitk.WriteTransform(composite, str(tmp_path / "sitk.tfm"))
    t = read_itk(tmp_path / "sitk.tfm")
    p = sample_points(t)
    assert np.allclose(t.apply(p), apply_sitk(composite, p), rtol=1e-9)


def test_units_scale_lengths_only(tmp_path: Path) -> None:
    t = Chain((Rotation(rotation(0, 0.2)), Translation([1000.0, 2000.0, 3000.0])))
    path = write_itk(t, tmp_path / "um.tfm", file_unit="micrometer", unit="nanometer")
    raw = sitk.ReadTransform(str(path))
    # The file holds micrometres (x, y, z order): the translation is 3, 2, 1.
    assert np.allclose(raw.TransformPoint((0.0, 0.0, 0.0)), (3.0, 2.0, 1.0))
    back = read_itk(path, file_unit="micrometer", unit="nanometer")
    p = sample_points(t) * 100.0
    assert np.allclose(back.apply(p), t.apply(p))
    as_um = read_itk(path, file_unit="micrometer", unit="micrometer")
    assert np.allclose(as_um.apply(p / 1000.0), t.apply(p) / 1000.0)


def test_field_units(tmp_path: Path) -> None:
    path = write_itk(FIELD, tmp_path / "f.h5", file_unit="micrometer", unit="nanometer")
    raw = read_itk(path, file_unit="micrometer", unit="micrometer")
    assert isinstance(raw, DisplacementField)
    assert np.allclose(raw.spacing, FIELD.spacing / 1000.0)
    assert np.allclose(raw.origin, FIELD.origin / 1000.0)
    assert np.allclose(np.asarray(raw.vectors), np.asarray(FIELD.vectors) / 1000.0)
    back = read_itk(path, file_unit="um", unit="nm")
    p = sample_points(FIELD)
    assert np.allclose(back.apply(p), FIELD.apply(p))


def test_unknown_unit(tmp_path: Path) -> None:
    with pytest.raises(UnitError, match="furlong"):
        write_itk(AFFINE, tmp_path / "a.tfm", file_unit="furlong")


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = write_itk(Translation([1.0, 2.0, 3.0]), tmp_path / "t.tfm")
    with pytest.raises(OverwriteError, match=r"t\.tfm.*--force"):
        write_itk(Translation([4.0, 5.0, 6.0]), path)
    assert np.allclose(read_itk(path).apply([0.0, 0.0, 0.0]), [1.0, 2.0, 3.0])
    write_itk(Translation([4.0, 5.0, 6.0]), path, force=True)
    assert np.allclose(read_itk(path).apply([0.0, 0.0, 0.0]), [4.0, 5.0, 6.0])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.tfm"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    tps = ThinPlateSpline(
        np.random.default_rng(1).uniform(0, 10, (6, 3)),
        np.random.default_rng(2).uniform(0, 10, (6, 3)),
    )
    with pytest.raises(TransformError, match="ThinPlateSpline.*sample_to_field"):
        write_itk(tps, tmp_path / "tps.h5")
    assert list(tmp_path.iterdir()) == []
    # Sampled into a field, it can be stored.
    field = sample_to_field(tps, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], (11, 11, 11))
    back = read_itk(write_itk(field, tmp_path / "tps.h5"))
    p = np.random.default_rng(3).uniform(1, 9, (20, 3))
    assert np.allclose(back.apply(p), field.apply(p))


def test_creates_missing_parent_directory(tmp_path: Path) -> None:
    path = write_itk(AFFINE, tmp_path / "a" / "b" / "t.h5")
    assert path.is_file()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"nope\.tfm.*does not exist"):
        read_itk(tmp_path / "nope.tfm")


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tfm"
    bad.write_text("this is not a transform\n")
    with pytest.raises(FormatError, match=r"bad\.tfm.*ITK transform"):
        read_itk(bad)
    corrupt = tmp_path / "bad.h5"
    corrupt.write_bytes(b"\x00\x01garbage")
    with pytest.raises(FormatError, match=r"bad\.h5"):
        read_itk(corrupt)


def test_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"\.tfm, \.txt"):
        write_itk(AFFINE, tmp_path / "t.json")
    with pytest.raises(FormatError, match="expected a suffix"):
        read_itk(tmp_path / "t.csv")


# Resampling by SimpleITK of a coframe-written file equals coframe's own point map.

MOVING_SHAPE = (17, 21, 26)  # z, y, x: non-cubic
MOVING_SPACING = np.array([12.0, 7.0, 4.0])  # anisotropic
MOVING_ORIGIN = np.array([-6.0, 3.0, -2.0])
REF_SHAPE = (11, 13, 17)
REF_SPACING = np.array([14.0, 9.0, 5.0])
REF_ORIGIN = np.array([5.0, 10.0, 4.0])


def _image(array: np.ndarray, spacing: np.ndarray, origin: np.ndarray) -> sitk.Image:
    """Build the SimpleITK image by hand (not through the bridge under test)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    image.SetOrigin(tuple(float(v) for v in origin[::-1]))
    return image


def _coframe_resample(t: Transform, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample with coframe's point map and scipy; also return a safely-inside mask."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in REF_SHAPE], indexing="ij"), axis=-1)
    points = REF_ORIGIN + index.reshape(-1, 3) * REF_SPACING
    moving_index = (t.apply(points) - MOVING_ORIGIN) / MOVING_SPACING
    values = ndimage.map_coordinates(moving, moving_index.T, order=1, mode="constant", cval=0.0)
    upper = np.array(MOVING_SHAPE) - 1.5
    inside = np.all((moving_index >= 0.5) & (moving_index <= upper), axis=1)
    return values.reshape(REF_SHAPE), inside.reshape(REF_SHAPE)


@pytest.mark.parametrize("name", ["affine", "field", "bspline", "affine-then-field", "sequence"])
def test_simpleitk_resamples_coframe_file_like_coframe(tmp_path: Path, name: str) -> None:
    t = CASES[name]
    moving = np.random.default_rng(7).uniform(0.0, 100.0, size=MOVING_SHAPE)
    path = write_itk(t, tmp_path / "t.h5")
    st = sitk.ReadTransform(str(path))
    reference = _image(np.zeros(REF_SHAPE), REF_SPACING, REF_ORIGIN)
    resampled = sitk.Resample(
        _image(moving, MOVING_SPACING, MOVING_ORIGIN), reference, st, sitk.sitkLinear, 0.0
    )
    by_sitk = sitk.GetArrayFromImage(resampled)
    by_coframe, inside = _coframe_resample(t, moving)
    assert inside.mean() > 0.5
    assert np.allclose(by_sitk[inside], by_coframe[inside], atol=1e-6)
    # A transposed or mirrored map would not match.
    assert not np.allclose(by_sitk[inside], moving.mean(), atol=5.0)
