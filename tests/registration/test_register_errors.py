"""QC refusals, divergence and bad input: one-line errors, exit code 2, nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SHAPE, VOXEL, Pair
from phantoms import write_image
from test_register_deformable import _smooth_warp
from typer.testing import CliRunner

from coframe.app.workspace import Workspace, load_workspace
from coframe.cli import app
from coframe.core.errors import DimensionError, UnitError
from coframe.registration.inputs import check_pair
from coframe.registration.qc import verdict
from coframe.resampling.writer import create_ome_zarr
from coframe.transforms.affine import Affine
from coframe.transforms.formats.bigwarp import write_bigwarp_landmarks
from coframe.transforms.formats.dispatch import write_transform
from coframe.transforms.point_pairs import landmarks_from_pairs
from coframe.volumes.open import open_volume


def _run(runner: CliRunner, pair: Pair, *args: str) -> object:
    return runner.invoke(app, ["register", "moving", "fixed", "-w", str(pair.root), *args])


def _error_line(result: object, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _nothing_stored(pair: Pair) -> None:
    assert load_workspace(pair.root).edges == ()
    assert not (pair.root / "transforms").exists() or not any((pair.root / "transforms").iterdir())


@pytest.mark.slow
def test_a_result_worse_than_the_start_is_refused_unless_forced(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(_smooth_warp(), noise=2.0)
    grid = np.stack(
        np.meshgrid(*[np.linspace(0.1, 0.9, 4) * n * VOXEL for n in SHAPE], indexing="ij"), -1
    ).reshape(-1, 3)
    assert pair.truth is not None
    path = write_bigwarp_landmarks(
        pair.root / "dense.csv", landmarks_from_pairs(grid, pair.truth.apply(grid))
    )
    args = ["--landmarks", str(path), "--set", "landmark_model=tps", "--steps", "rigid"]
    refused = _run(runner, pair, *args)
    _error_line(refused, "metric got worse", "--force")
    assert "rigid" in refused.stdout
    _nothing_stored(pair)
    forced = _run(runner, pair, *args, "--force")
    assert forced.exit_code == 0, forced.output
    assert len(load_workspace(pair.root).edges) == 1


def test_a_diverged_optimisation_is_reported_and_not_stored(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(None)
    result = _run(
        runner, pair, "--steps", "rigid", "--set", "optimizer.learning_rate=1e6", "--force"
    )
    _error_line(result, "diverged", "nothing was stored")
    assert "DIVERGED" in result.stdout
    _nothing_stored(pair)


def test_no_overlap_after_initialisation(runner: CliRunner, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(None, moving_origin=(1e7, 0.0, 0.0))
    _error_line(_run(runner, pair, "--set", "init=identity"), "no overlap after initialisation")
    _nothing_stored(pair)


def test_a_fixed_mask_that_empties_the_sample(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    pair = make_pair(None)
    mask = write_image(pair.root / "mask.zarr", np.zeros(SHAPE, np.uint8), VOXEL, np.zeros(3))
    _error_line(
        _run(runner, pair, "--fixed-mask", str(mask)),
        "fixed mask empties the sample",
        "--fixed-mask",
    )


def test_user_masks_restrict_the_metric(runner: CliRunner, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(None)
    inner = np.zeros(SHAPE, np.uint8)
    inner[8:-8, 8:-8, 8:-8] = 1
    mask = write_image(pair.root / "mask.zarr", inner, VOXEL, np.zeros(3))
    result = _run(runner, pair, "--steps", "rigid", "--fixed-mask", str(mask), "--json")
    assert result.exit_code == 0, result.output
    assert '"masked_voxels": 32768' in result.stdout


def test_nan_voxels_are_refused(runner: CliRunner, make_pair: Callable[..., Pair]) -> None:
    def with_nan(a: np.ndarray) -> np.ndarray:
        out = a.astype(np.float32)
        out[3, 4, 5] = np.nan
        return out

    pair = make_pair(None, fixed_array=with_nan)
    _error_line(_run(runner, pair), "NaN", "--fixed-mask")


def _with_section(pair: Pair) -> Workspace:
    """The pair's workspace with a 2D image ``section`` added (not saved)."""
    path = pair.root / "section.zarr"
    writer = create_ome_zarr(
        path, shape0=(32, 32), voxel_size0=(VOXEL, VOXEL), dtype=np.uint8, axes=("y", "x")
    )
    writer.write(0, (0, 0), np.full((32, 32), 7, np.uint8))
    writer.write_metadata()
    return load_workspace(pair.root).add_image("section", path, "tem", axes=("y", "x"))


def test_a_2d_image_is_refused(runner: CliRunner, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(None)
    _with_section(pair).save()
    result = runner.invoke(app, ["register", "section", "fixed", "-w", str(pair.root)])
    _error_line(result, "2D", "3D volumes")


def test_units_must_agree() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(UnitError, match="nanometer .* micrometer|micrometer .* nanometer"):
        root = Path(__import__("tempfile").mkdtemp())
        path = write_image(root / "a.zarr", rng.integers(0, 9, SHAPE, np.uint8), VOXEL, np.zeros(3))
        volume = open_volume(path)
        check_pair(volume, volume.in_unit("micrometer"))


def test_dimension_check_names_the_role(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(None)
    volume = open_volume(pair.root / "fixed.zarr")
    path = pair.root / "flat.zarr"
    writer = create_ome_zarr(path, shape0=(8, 8), voxel_size0=(1.0, 1.0), dtype=np.uint8)
    writer.write(0, (0, 0), np.ones((8, 8), np.uint8))
    writer.write_metadata()
    with pytest.raises(DimensionError, match="FIXED image .* is 2D"):
        check_pair(volume, open_volume(path))


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--set", "sampling.pointz=5"], ["unknown preset key 'sampling.pointz'"]),
        (["--set", "metric.name=magic"], ["metric.name 'magic'", "--set"]),
        (["--steps", "rigid,warp"], ["unknown step 'warp'", "--steps"]),
        (["--set", "optimizer.iterations=many"], ["optimizer.iterations", "integer"]),
        (["--preset", "no-such-preset"], ["no-such-preset", "--preset"]),
        (["--level-fixed", "s9"], ["s9", "--level-fixed"]),
        (["--landmarks-unit", "parsec", "--landmarks", "x.csv"], ["parsec"]),
        (["--init-edge"], ["--init-edge", "fixed -> moving path", "there is none"]),
        (["--init", "landmarks"], ["no landmark file was given", "--landmarks"]),
    ],
)
def test_bad_options_give_one_line_errors(
    runner: CliRunner, make_pair: Callable[..., Pair], args: list[str], needles: list[str]
) -> None:
    pair = make_pair(None)
    if "x.csv" in args:
        (pair.root / "x.csv").write_text('"a","true","1","2","3","1","2","3"\n')
        args = [str(pair.root / "x.csv") if a == "x.csv" else a for a in args]
    _error_line(_run(runner, pair, *args), *needles)


def test_unknown_images_and_same_space(runner: CliRunner, make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(None)
    unknown = runner.invoke(app, ["register", "nope", "fixed", "-w", str(pair.root)])
    _error_line(unknown, "MOVING 'nope'", "coframe add")
    same = runner.invoke(app, ["register", "fixed", "fixed", "-w", str(pair.root)])
    _error_line(same, "both in space 'fixed'")


def test_verdict_rules() -> None:
    assert verdict(-0.5, -0.7, "", force=False) == (True, "")
    ok, reason = verdict(-0.5, -0.4, "", force=False)
    assert not ok and "--force" in reason
    assert verdict(-0.5, -0.4, "", force=True)[0]
    ok, reason = verdict(-0.5, -0.9, "metric became nan", force=True)
    assert not ok and "diverged" in reason
    assert not verdict(-0.5, float("nan"), "", force=True)[0]


def test_a_located_2d_section_is_refused_before_its_edge_is_used(
    runner: CliRunner, make_pair: Callable[..., Pair]
) -> None:
    """With a stored 2D -> 3D edge (a located section), the 2D error still comes first."""
    pair = make_pair(None)
    ws = _with_section(pair)
    pose = Affine(np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    edge = write_transform(
        pose,
        pair.root / "transforms" / "section-to-fixed.json",
        unit=ws.unit,
        input_space="section",
        output_space=ws.space_of("fixed"),
    )
    ws.add_edge("section", ws.space_of("fixed"), edge, "ngff", None, {}).save()
    result = runner.invoke(app, ["register", "section", "fixed", "-w", str(pair.root)])
    _error_line(result, "2D", "3D volumes")
