"""Shared pytest fixtures (the CLI runner, the tiny demo written once per session) and marks.

Tests that take more than a few seconds are marked ``@pytest.mark.slow``;
``pytest -m "not slow"`` runs the quick subset. ``tests/bench/`` (marked
``bench``) needs the bench environment's peers and is collected only when the
mark expression names it: ``pytest -m bench tests/bench``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from coframe.cli import app
from coframe.demo.outputs import DemoSample
from coframe.demo.sample import make_demo

#: Seed of the session's tiny demo sample.
DEMO_SEED = 1


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave ``tests/bench/`` out of a run unless ``-m`` names ``bench``."""
    if collection_path == Path(__file__).parent / "bench":
        return "bench" not in (config.getoption("markexpr") or "") or None
    return None


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


#: What the earlier demo under :func:`demo_cli_run` left in its report.
STALE_REPORT = "<html><body>an earlier demo's report</body></html>"


@pytest.fixture(scope="session")
def demo_cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``coframe demo DIR --size tiny --seed 1 --force`` run once per run: the directory and stdout.

    It runs over an earlier demo: the tiny sample with a stale ``fibsem ->
    xray`` edge (an identity) and a stale report, which the forced run must
    replace (a first run into an empty directory is the default demo's test,
    ``tests/test_demo.py``). The whole pipeline ran on it (edges, resampled
    images, report): read it, never change it (copy it with
    ``shutil.copytree`` first). Under xdist the workers share one run: the
    first to ask makes it, under a file lock, in the directory that holds
    every worker's temporary root.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    directory, out = shared / "demo-cli" / "demo", shared / "demo-cli" / "stdout.txt"
    with FileLock(shared / "demo-cli.lock"):
        if not out.is_file():
            shutil.rmtree(directory.parent, ignore_errors=True)
            make_demo(directory, size="tiny", seed=DEMO_SEED)
            stale = directory.parent / "identity.tfm"
            stale.write_text(
                "#Insight Transform File V1.0\n#Transform 0\n"
                "Transform: AffineTransform_double_3_3\n"
                "Parameters: 1 0 0 0 1 0 0 0 1 0 0 0\nFixedParameters: 0 0 0\n",
                encoding="utf-8",
            )
            workspace = ["-w", str(directory)]
            linked = CliRunner().invoke(
                app, ["link", "fibsem", "xray", str(stale), "--unit", "nanometer", *workspace]
            )
            assert linked.exit_code == 0, linked.output
            (directory / "report.html").write_text(STALE_REPORT, encoding="utf-8")
            result = CliRunner().invoke(
                app, ["demo", str(directory), "--size", "tiny", "--seed", str(DEMO_SEED), "--force"]
            )
            assert result.exit_code == 0, result.output
            out.write_text(result.stdout, encoding="utf-8")  # written last: the run is whole
    return directory, out.read_text(encoding="utf-8")


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
