"""Shared pytest fixtures (the CLI runner, the tiny demo written once per session) and marks.

Tests that take more than a few seconds are marked ``slow``; ``pytest -m "not
slow"`` runs the quick subset. Test modules mark their own slow tests with
``@pytest.mark.slow``; :data:`SLOW_TESTS` marks those of modules that do not
yet.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coframe.cli import app
from coframe.demo.outputs import DemoSample
from coframe.demo.sample import make_demo

#: Seed of the session's tiny demo sample.
DEMO_SEED = 1

#: Slow tests (node ids without parameters) of modules that do not mark them themselves.
SLOW_TESTS = frozenset(
    {
        "tests/registration/test_drift.py::test_register_corrects_a_drifting_fixed_image",
        "tests/registration/test_drift.py::test_register_corrects_a_drifting_moving_image",
        "tests/registration/test_locate.py::test_a_section_of_noise_is_not_trustworthy",
        "tests/registration/test_locate.py::test_locate_finds_an_inverted_noisy_oblique_section",
        "tests/registration/test_locate.py::test_priors_restrict_the_search_and_still_find_the_pose",
        "tests/registration/test_locate.py::test_shrinkage_recovers_an_anisotropic_in_plane_scale",
        "tests/registration/test_locate_cli.py::test_an_untrustworthy_pose_is_not_stored_unless_forced",
        "tests/registration/test_locate_cli.py::test_locate_stores_the_edge_and_writes_the_outputs",
        "tests/registration/test_locate_symmetry.py::test_a_near_point_chooses_between_the_twins",
        "tests/registration/test_locate_symmetry.py::"
        "test_an_off_midline_section_ties_with_its_mirror_twin",
        "tests/registration/test_locate_symmetry.py::"
        "test_locate_cli_reports_the_tie_and_stores_nothing_unless_forced",
        "tests/registration/test_register_cli.py::test_multi_start_finds_a_pose_far_from_identity",
        "tests/registration/test_register_cli.py::"
        "test_start_from_an_inverse_bspline_edge_with_a_jump",
        "tests/registration/test_register_deformable.py::"
        "test_bspline_recovers_a_smooth_warp_after_the_affine",
        "tests/registration/test_register_errors.py::"
        "test_a_result_worse_than_the_start_is_refused_unless_forced",
        "tests/transforms/test_resample_distributed.py::"
        "test_local_cluster_of_two_processes_gives_the_same_output",
        "tests/transforms/test_resample_kernel.py::test_random_affines_equal_sitk",
    }
)


@pytest.hookimpl(tryfirst=True)  # before -m selects by mark
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_TESTS` slow; warn about entries no collected test matches."""
    seen = set()
    for item in items:
        name = item.nodeid.split("[")[0]
        if name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
            seen.add(name)
    whole_modules = not config.getoption("keyword") and all(
        Path(arg).is_dir() for arg in config.args
    )
    modules = {item.nodeid.split("::")[0] for item in items}
    for name in sorted(SLOW_TESTS - seen):
        if whole_modules and name.split("::")[0] in modules:
            warnings.warn(f"SLOW_TESTS names {name}, which no test matches", stacklevel=1)


@pytest.fixture
def runner() -> CliRunner:
    """Typer CLI runner (stderr kept apart from stdout)."""
    return CliRunner()


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSample]:
    """The tiny demo sample (seed :data:`DEMO_SEED`, no edges yet), written once per session.

    Shared by every test that asks for it: read it, never change it (the
    session fails if its files change). A test that runs a step, adds an edge
    or writes into the workspace takes :func:`demo_copy` instead.
    """
    sample = make_demo(tmp_path_factory.mktemp("demo") / "tiny", size="tiny", seed=DEMO_SEED)
    before = _files(sample.root)
    yield sample
    assert _files(sample.root) == before, "a test changed the shared tiny demo: use demo_copy"


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``root``."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def demo_copy(tiny_demo: DemoSample, tmp_path: Path) -> DemoSample:
    """A private copy of :func:`tiny_demo` that the test may change."""
    return copy_demo(tiny_demo, tmp_path / "demo")


@pytest.fixture(scope="session")
def demo_cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``coframe demo DIR --size tiny --seed 1`` run once per session: the directory and stdout.

    The whole pipeline ran on it (edges, resampled images, report): read it,
    never change it (copy it with ``shutil.copytree`` first).
    """
    directory = tmp_path_factory.mktemp("demo-cli") / "demo"
    result = CliRunner().invoke(app, ["demo", str(directory), "--size", "tiny", "--seed", "1"])
    assert result.exit_code == 0, result.output
    return directory, result.stdout


def copy_demo(sample: DemoSample, root: Path) -> DemoSample:
    """Copy a demo's directory to ``root``; the sample's description with its paths there."""
    shutil.copytree(sample.root, root)

    def moved(path: Path) -> Path:
        return root / path.relative_to(sample.root)

    return replace(
        sample,
        root=root,
        workspace=moved(sample.workspace),
        fibsem=moved(sample.fibsem),
        labels=moved(sample.labels),
        xray=moved(sample.xray),
        ground_truth=moved(sample.ground_truth),
        tem=tuple(replace(s, path=moved(s.path)) for s in sample.tem),
    )
