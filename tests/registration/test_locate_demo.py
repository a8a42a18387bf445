"""The demo step that locates the TEM sections in the X-ray volume and reports pose errors."""

from __future__ import annotations

import re
from pathlib import Path

from coframe.app.workspace import load_workspace
from coframe.demo.locate import demo_locate_step
from coframe.demo.sample import make_demo


def test_demo_step_reports_errors_against_the_truth(tmp_path: Path) -> None:
    sample = make_demo(tmp_path / "demo", size="tiny", seed=0)
    text = demo_locate_step(tmp_path / "demo", sample)
    for tem in sample.tem:
        assert re.search(rf"^{tem.name}: score [0-9.]+, confidence", text, re.M), text
    errors = re.findall(r"error vs truth: normal ([0-9.]+)°.*\(([0-9.]+) X-ray voxels\)", text)
    assert len(errors) == len(sample.tem)
    # tiny sections span 8 X-ray voxels: too few to trust, so nothing is stored
    assert text.count("not stored (not trustworthy)") == len(sample.tem)
    assert load_workspace(tmp_path / "demo").edges == ()
