"""Commands killed at random moments leave nothing half-written and rerun to the same result.

A few kills of ``benchmarks/faults.py`` on a small workspace, so that the path
stays exercised; ``benchmarks/faults.py --kills 50`` is the full measurement.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from coframe.app.workspace import init_workspace
from coframe.volumes.write import write_tiff

ROOT = Path(__file__).resolve().parents[1]


def _faults():
    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _stack(path: Path, seed: int) -> Path:
    data = np.random.default_rng(seed).integers(0, 255, (24, 24, 24), dtype=np.uint8)
    return write_tiff(path, data, 1.0, "micrometer")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["add", "resample"])
def test_killed_command_reruns_to_the_uninterrupted_result(tmp_path: Path, command: str) -> None:
    faults = _faults()
    base = tmp_path / "base"
    ws = init_workspace(base)
    for name, seed in (("a", 1), ("b", 2)):
        ws = ws.add_image(name, _stack(tmp_path / f"{name}.tif", seed), None)
    tfm = tmp_path / "ab.tfm"
    tfm.write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: TranslationTransform_double_3_3\n"
        "Parameters: 1500 -700 300\nFixedParameters:\n"
    )
    ws.add_edge("b", "a", tfm, "itk", None, {"command": "test"}).save()
    argv = {
        "add": ["add", "c", str(_stack(tmp_path / "c.tif", 3))],
        "resample": ["resample", "a", "--into", "b", "-o", "out.zarr", "--chunks", "8,8,8"],
    }[command]
    case = faults.Case(command, [*argv, *(["--quiet"] if command == "resample" else [])], "copy")
    row = faults.kill_trials(case, base, tmp_path / "work", 3, random.Random(7))
    assert row.kills >= 1
    assert row.deterministic, row.notes
    assert (row.half_written, row.entries_lost, row.rerun_failed, row.differing) == (0, 0, 0, 0)
    assert row.identical == row.kills
