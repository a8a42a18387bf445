"""The demo step that locates the TEM sections in the X-ray volume and reports pose errors."""

from __future__ import annotations

import re

from coframe.app.workspace import load_workspace
from coframe.demo.locate import demo_locate_step
from coframe.demo.outputs import DemoSample


def test_demo_step_reports_errors_against_the_truth(demo_copy: DemoSample) -> None:
    text = demo_locate_step(demo_copy.root, demo_copy)
    for tem in demo_copy.tem:
        assert re.search(rf"^{tem.name}: score [0-9.]+, confidence", text, re.M), text
    errors = re.findall(
        r"error vs truth: normal ([0-9.]+)°, in-plane rotation ([0-9.]+)°, .*"
        r"\(([0-9.]+) X-ray voxels\), centre in plane [0-9.]+ nm \(([0-9.]+) voxels\)",
        text,
    )
    assert len(errors) == len(demo_copy.tem), text
    # tiny sections span 8 X-ray voxels: too few to locate or to trust, so nothing is stored,
    # and rightly: every refused pose is off by more than 5 degrees or one X-ray voxel (the
    # default demo's sections are located within stated tolerances in tests/test_demo.py)
    assert text.count("not stored (not trustworthy)") == len(demo_copy.tem)
    for normal, spin, offset, centre in errors:
        assert max(float(normal), float(spin)) > 5.0 or max(float(offset), float(centre)) > 1.0
    assert load_workspace(demo_copy.root).edges == ()
