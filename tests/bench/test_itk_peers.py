"""ITK files coframe writes, applied by ANTsPy and by elastix's transformix (bench target).

Each transform (affine, B-spline, displacement field, a sequence) is written
with :func:`coframe.transforms.formats.itk.write_itk` as ``.h5`` and ``.tfm``
and applied by the peers to points and to an image:

- ANTsPy: ``ants.apply_transforms_to_points`` maps the grid's points through
  the file, ``ants.apply_transforms`` resamples the moving image (linear);
- transformix (itk-elastix): a transform parameter file naming the ITK file
  (``(Transform "File")``, ``(TransformFileName ...)``), as the README shows,
  maps the points (``transformix_pointset``) and resamples the image.

Points must equal coframe's point map and images coframe's own resampling
(:func:`coframe.resampling.resample`). Needs the bench environment
(``pip install -e '.[test,bench]'``); run with ``pytest -m bench tests/bench``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr

ants = pytest.importorskip("ants")
itk = pytest.importorskip("itk")
pd = pytest.importorskip("pandas")

from coframe.resampling import ImageSource, OutputGrid, resample  # noqa: E402
from coframe.resampling.writer import create_ome_zarr  # noqa: E402
from coframe.transforms.affine import Affine  # noqa: E402
from coframe.transforms.base import Chain, Transform  # noqa: E402
from coframe.transforms.bspline import BSpline  # noqa: E402
from coframe.transforms.field import DisplacementField  # noqa: E402
from coframe.transforms.formats.itk import write_itk  # noqa: E402

pytestmark = [
    pytest.mark.bench,
    pytest.mark.filterwarnings("ignore:builtin type Swig:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:builtin type swigvarlink:DeprecationWarning"),
]

#: Both peers compute points in single precision: agreement to float32's resolution.
POINT_TOLERANCE = {"rtol": 1e-6, "atol": 1e-4}

# numpy order (z, y, x), nanometres; anisotropic, non-cubic, off the origin
MOVING_SHAPE = (20, 26, 30)
MOVING_SPACING = np.array([12.0, 7.0, 5.0])
MOVING_ORIGIN = np.array([-6.0, 3.0, -2.0])
REF_SHAPE = (14, 17, 19)
REF_SPACING = np.array([14.0, 9.0, 6.0])
REF_ORIGIN = np.array([20.0, 25.0, 18.0])

AFFINE = Affine.from_linear(
    [[1.04, 0.05, -0.03], [0.02, 0.95, 0.06], [-0.04, 0.03, 1.1]], [-9.0, 6.0, 4.0]
)


def _field() -> DisplacementField:
    """A smooth field whose grid holds every point the tests map through it.

    Beyond half a node outside its grid ITK's field gives no displacement while
    coframe's keeps the edge node's: the cases stay inside, where both agree.
    """
    shape = (14, 14, 14)
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    vectors = np.stack(
        [
            3.0 * np.sin(yy / 3.0) + 0.2 * xx,
            2.0 * np.cos(xx / 4.0) - 0.1 * zz,
            -1.5 * np.sin(zz / 2),
        ],
        axis=-1,
    )
    return DisplacementField(vectors, [-60.0, -60.0, -60.0], [30.0, 22.0, 18.0])


def _bspline() -> BSpline:
    size = (7, 8, 9)
    return BSpline(
        grid_origin=[-60.0, -40.0, -30.0],
        grid_spacing=[60.0, 30.0, 25.0],
        grid_direction=np.eye(3),
        grid_size=size,
        coefficients=np.random.default_rng(5).normal(scale=3.0, size=(*size, 3)),
    )


CASES: dict[str, Transform] = {
    "affine": AFFINE,
    "bspline": _bspline(),
    "field": _field(),
    "affine-then-field": Chain((AFFINE, _field())),
}


def _grid_points() -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in REF_SHAPE], indexing="ij"), axis=-1)
    return REF_ORIGIN + index.reshape(-1, 3) * REF_SPACING


def _moving() -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in MOVING_SHAPE], indexing="ij")
    return (100 + 40 * np.sin(z / 3.0) * np.cos(y / 4.0) + 30 * np.sin(x / 5.0 + z / 7.0)).astype(
        np.float32
    )


def _inside(t: Transform) -> np.ndarray:
    """Output voxels whose linear sample needs no voxel beyond the moving image (no edge rule)."""
    index = (t.apply(_grid_points()) - MOVING_ORIGIN) / MOVING_SPACING
    inside = np.all((index >= 0.5) & (index <= np.array(MOVING_SHAPE) - 1.5), axis=1)
    return inside.reshape(REF_SHAPE)


def _by_coframe(t: Transform, tmp_path: Path) -> np.ndarray:
    src = tmp_path / "moving.zarr"
    if not src.exists():
        writer = create_ome_zarr(
            src, shape0=MOVING_SHAPE, voxel_size0=MOVING_SPACING, origin0=MOVING_ORIGIN,
            dtype=np.float32, chunks=(8, 8, 8),
        )  # fmt: skip
        writer.write(0, (0, 0, 0), _moving())
    grid = OutputGrid(
        REF_SHAPE, tuple(REF_SPACING), tuple(REF_ORIGIN), ("z", "y", "x"), "nanometer", (8, 8, 8)
    )
    out = tmp_path / "by-coframe.zarr"
    resample(ImageSource(str(src)), t, grid, out, n_levels=1, progress=False, force=True)
    return np.asarray(zarr.open_array(str(out / "s0"), mode="r")[...])


def _assert_inside_fields(t: Transform, points: np.ndarray) -> None:
    """Every field of ``t`` is met by points inside its grid (where ITK and coframe agree)."""
    for member in t.transforms if isinstance(t, Chain) else (t,):
        if isinstance(member, DisplacementField):
            index = (points - member.origin) / member.spacing
            assert np.all((index >= 0) & (index <= np.array(member.grid_shape) - 1))
        points = member.apply(points)


# ---- ANTsPy


def _ants_image(array: np.ndarray, spacing: np.ndarray, origin: np.ndarray):  # noqa: ANN202
    # ANTs images are x-first: transpose the array, reverse spacing and origin
    return ants.from_numpy(
        np.ascontiguousarray(array.T.astype(np.float32)),
        origin=tuple(float(v) for v in origin[::-1]),
        spacing=tuple(float(v) for v in spacing[::-1]),
    )


def _ants_points(path: Path, points: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(points[:, ::-1], columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, frame, [str(path)])
    return mapped[["x", "y", "z"]].to_numpy()[:, ::-1]


def _ants_resample(path: Path) -> np.ndarray:
    fixed = _ants_image(np.zeros(REF_SHAPE), REF_SPACING, REF_ORIGIN)
    moving = _ants_image(_moving(), MOVING_SPACING, MOVING_ORIGIN)
    warped = ants.apply_transforms(fixed, moving, [str(path)], interpolator="linear")
    return warped.numpy().T


# ---- transformix

#: A transform parameter file for transformix: the transform (``{transform}``) and the grid.
PARAMETERS = """\
{transform}
(NumberOfParameters 0)
(HowToCombineTransforms "Compose")
(FixedImageDimension 3)
(MovingImageDimension 3)
(Size {size})
(Spacing {spacing})
(Origin {origin})
(Index 0 0 0)
(Direction 1 0 0 0 1 0 0 0 1)
(ResampleInterpolator "FinalLinearInterpolator")
(Resampler "DefaultResampler")
(DefaultPixelValue 0)
(ResultImagePixelType "float")
"""

#: An ITK transform file handed to transformix as it is (affine, B-spline...).
ITK_FILE = '(Transform "File")\n(TransformFileName "{path}")'
#: A displacement field: elastix has no component for ITK's field transform, it takes the
#: field as a vector image instead.
FIELD_IMAGE = (
    '(Transform "DeformationFieldTransform")\n(DeformationFieldFileName "{path}")\n'
    "(DeformationFieldInterpolationOrder 1)"
)


def _words(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) if isinstance(v, float) else str(v) for v in values[::-1])


def _members(path: Path, tmp_path: Path) -> list[str]:
    """Transform lines for transformix, in the order they apply, from the ITK file.

    A file holding one transform that elastix models is named as it is; a
    composite is split by SimpleITK into its members (ITK applies the last one
    first) and a displacement field is written out as a vector image.
    """
    st = sitk.ReadTransform(str(path))
    if st.GetTransformEnum() != sitk.sitkComposite:
        if st.GetTransformEnum() != sitk.sitkDisplacementField:
            return [ITK_FILE.format(path=path)]
        members = [st]
    else:
        st = sitk.CompositeTransform(st)
        members = [st.GetNthTransform(i) for i in range(st.GetNumberOfTransforms())][::-1]
    lines = []
    for i, member in enumerate(members):
        if member.GetTransformEnum() == sitk.sitkDisplacementField:
            image = tmp_path / f"member{i}-field.mha"
            field = sitk.DisplacementFieldTransform(member).GetDisplacementField()
            sitk.WriteImage(field, str(image))
            lines.append(FIELD_IMAGE.format(path=image))
        else:
            file = tmp_path / f"member{i}.tfm"
            sitk.WriteTransform(member, str(file))
            lines.append(ITK_FILE.format(path=file))
    return lines


def _transformix_parameters(path: Path, tmp_path: Path):  # noqa: ANN202
    files = []
    for i, transform in enumerate(_members(path, tmp_path)):
        text = PARAMETERS.format(
            transform=transform,
            size=_words(np.array(REF_SHAPE)),
            spacing=_words(REF_SPACING.astype(float)),
            origin=_words(REF_ORIGIN.astype(float)),
        )
        files.append(tmp_path / f"TransformParameters.{i}.txt")
        files[-1].write_text(text)
    parameters = itk.ParameterObject.New()
    for file in files:  # the first map applies first
        one = itk.ParameterObject.New()
        one.ReadParameterFile(str(file))
        parameters.AddParameterMap(one.GetParameterMap(0))
    return parameters


def _itk_image(array: np.ndarray, spacing: np.ndarray, origin: np.ndarray):  # noqa: ANN202
    image = itk.image_from_array(np.ascontiguousarray(array.astype(np.float32)))
    image.SetSpacing(tuple(float(v) for v in spacing[::-1]))
    image.SetOrigin(tuple(float(v) for v in origin[::-1]))
    return image


def _transformix_resample(path: Path, tmp_path: Path) -> np.ndarray:
    moving = _itk_image(_moving(), MOVING_SPACING, MOVING_ORIGIN)
    out = itk.transformix_filter(
        moving, _transformix_parameters(path, tmp_path), log_to_console=False
    )
    return np.asarray(itk.array_from_image(out))


def _transformix_points(path: Path, points: np.ndarray, tmp_path: Path) -> np.ndarray:
    listing = tmp_path / "points.txt"
    rows = "\n".join(" ".join(repr(float(v)) for v in p[::-1]) for p in points)
    listing.write_text(f"point\n{len(points)}\n{rows}\n")
    out_dir = tmp_path / "transformix-points"
    out_dir.mkdir(exist_ok=True)
    moving = _itk_image(_moving(), MOVING_SPACING, MOVING_ORIGIN)
    itk.transformix_pointset(
        moving,
        _transformix_parameters(path, tmp_path),
        fixed_point_set_file_name=str(listing),
        output_directory=str(out_dir),
        log_to_console=False,
    )
    text = (out_dir / "outputpoints.txt").read_text()
    found = re.findall(r"OutputPoint = \[ ([^\]]+) \]", text)
    return np.array([[float(v) for v in row.split()] for row in found])[:, ::-1]


@pytest.fixture(autouse=True)
def _two_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ANTs leaves temporary transform files in $TMPDIR; both peers take all cores by default
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(2)


SUFFIXES = (".h5", ".tfm")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", list(CASES))
def test_ants_maps_points_like_coframe(tmp_path: Path, name: str, suffix: str) -> None:
    t = CASES[name]
    path = write_itk(t, tmp_path / f"t{suffix}")
    points = _grid_points()
    _assert_inside_fields(t, points)
    np.testing.assert_allclose(_ants_points(path, points), t.apply(points), **POINT_TOLERANCE)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", list(CASES))
def test_transformix_maps_points_like_coframe(tmp_path: Path, name: str, suffix: str) -> None:
    t = CASES[name]
    path = write_itk(t, tmp_path / f"t{suffix}")
    points = _grid_points()
    mapped = _transformix_points(path, points, tmp_path)
    np.testing.assert_allclose(mapped, t.apply(points), **POINT_TOLERANCE)


@pytest.mark.parametrize("name", list(CASES))
def test_peers_resample_like_coframe(tmp_path: Path, name: str) -> None:
    t = CASES[name]
    path = write_itk(t, tmp_path / "t.h5")
    inside = _inside(t)
    assert inside.mean() > 0.3, inside.mean()
    by_coframe = _by_coframe(t, tmp_path)
    by_ants = _ants_resample(path)
    by_transformix = _transformix_resample(path, tmp_path)
    for by_peer in (by_ants, by_transformix):
        assert by_peer.shape == REF_SHAPE
        np.testing.assert_allclose(by_peer[inside], by_coframe[inside], atol=1e-3)
    # a transposed or mirrored map would not match: the images vary over the region
    assert np.ptp(by_coframe[inside]) > 20.0
