"""Registration inside the demo workspace: ground truth found and TRE reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from coframe.app.register import demo_register_step, demo_truth
from coframe.cli import DEMO_PIPELINE, app
from coframe.demo.sample import make_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    make_demo(root, size="tiny", seed=0)
    return root


def test_demo_truth_maps_fibsem_to_xray_like_its_landmarks(demo: Path) -> None:
    truth, source, target = demo_truth(demo / "ground_truth", "nanometer")
    assert (source, target) == ("fibsem", "xray")
    rows = [
        line.replace('"', "").split(",")
        for line in (demo / "ground_truth" / "landmarks.csv").read_text().splitlines()
    ]
    moving = np.array([[float(v) for v in r[2:5]][::-1] for r in rows])
    fixed = np.array([[float(v) for v in r[5:8]][::-1] for r in rows])
    np.testing.assert_allclose(truth.apply(fixed), moving, atol=0.01)
    micro, _, _ = demo_truth(demo / "ground_truth", "micrometer")
    np.testing.assert_allclose(micro.apply(fixed / 1000.0), moving / 1000.0, atol=1e-5)


def test_register_in_the_demo_reports_tre_against_its_ground_truth(
    runner: CliRunner, demo: Path
) -> None:
    result = runner.invoke(
        app, ["register", "xray", "fibsem", "-w", str(demo), "--json", "--force"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    truth = report["tre"]["ground_truth"]
    assert truth["n"] == 3000 and np.isfinite(truth["mean"]) and truth["max"] >= truth["mean"]
    assert report["levels"]["fixed"]["path"] == "s5"  # nearest the 800 nm X-ray voxel
    assert report["levels"]["moving"]["path"] == "s0"
    landmarks = runner.invoke(
        app,
        [
            "register", "xray", "fibsem", "-w", str(demo), "--json", "--force", "--steps",
            "rigid", "--ground-truth", str(demo / "ground_truth" / "landmarks.csv"),
        ],
    )  # fmt: skip
    assert landmarks.exit_code == 0, landmarks.output
    assert json.loads(landmarks.output)["tre"]["ground_truth"]["n"] == 20


def test_the_demo_pipeline_registers_and_prints_the_tre(demo: Path) -> None:
    assert any(step is not None and "register" in title for title, step in DEMO_PIPELINE)
    text = demo_register_step(demo)
    assert "TRE vs ground_truth (3000 points)" in text
    assert "register xray onto fibsem" in text
