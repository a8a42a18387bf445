"""The ``coframe demo`` step that registers the X-ray onto the FIB-SEM.

It runs ``coframe register xray fibsem --preset xray-to-fibsem`` in the demo
workspace and measures the TRE against the demo's ground truth, read as a
user would read it: the OME-NGFF FIB-SEM -> X-ray transformation under
``ground_truth/`` (:data:`TRUTH_FILE`), passed as ``--ground-truth``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coframe.app.register import RegisterRequest, format_report, run_register
from coframe.app.workspace import load_workspace
from coframe.demo.outputs import TRUTH_DIR, TRUTH_NGFF

#: The demo's FIB-SEM -> X-ray ground truth (OME-NGFF), relative to the workspace.
TRUTH_FILE = Path(TRUTH_DIR) / TRUTH_NGFF


def demo_register_step(directory: Path, sample: Any = None) -> str:
    """The demo's registration: its X-ray (moving) onto its FIB-SEM (fixed), TRE vs the truth.

    Parameters
    ----------
    directory
        The demo workspace.
    sample
        The demo sample description (unused: the ground truth is read from
        the workspace's ``ground_truth/`` folder, as a user would).

    Returns
    -------
    str
        The report, ending with the refusal reason when nothing was stored.
    """
    ws = load_workspace(directory)
    truth = ws.root / TRUTH_FILE
    request = RegisterRequest(
        moving="xray",
        fixed="fibsem",
        preset="xray-to-fibsem",
        ground_truth=truth,
        command=f"coframe register xray fibsem -w {directory} --ground-truth {truth}",
    )
    ws, outcome = run_register(ws, request)
    if outcome.stored is not None:
        ws.save()
    text = format_report(outcome)
    return f"{text}\n  not stored: {outcome.refused}" if outcome.refused else text
