"""The ``coframe demo`` step that registers the X-ray onto the FIB-SEM.

It runs ``coframe register xray fibsem --preset xray-to-fibsem`` in the demo
workspace and measures the TRE against the demo's ground truth, read as a
user would read it: the OME-NGFF FIB-SEM -> X-ray transformation under
``ground_truth/`` (:data:`TRUTH_FILE`), passed as ``--ground-truth``.

It then aligns the same pair a second way, from the nuclei alone: the
FIB-SEM's nucleus labels against the X-ray's nucleus-sized blobs (the
``nuclei`` step, as ``--fixed-labels nuc --steps nuclei`` would), and prints
the TRE of both maps over the FIB-SEM block and how far apart they are. The
matched nuclei are written beside the stored edge (BigWarp CSV) for the QC
report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.nuclei import pairs_path, write_pairs
from coframe.app.register import RegisterRequest, format_report, read_truth, run_register
from coframe.app.workspace import Workspace, load_workspace
from coframe.core.errors import CoframeError
from coframe.core.units import unit_factor
from coframe.demo.outputs import SIZES, TRUTH_DIR, TRUTH_NGFF
from coframe.registration import inputs
from coframe.registration.nuclei import agreement, nuclei_step
from coframe.registration.presets import load_preset
from coframe.transforms.base import Transform

#: The demo's FIB-SEM -> X-ray ground truth (OME-NGFF), relative to the workspace.
TRUTH_FILE = Path(TRUTH_DIR) / TRUTH_NGFF


def demo_register_step(directory: Path, sample: Any = None) -> str:
    """The demo's registration: its X-ray (moving) onto its FIB-SEM (fixed), TRE vs the truth.

    Parameters
    ----------
    directory
        The demo workspace.
    sample
        The demo sample description (its size gives the nuclei's size; the
        ground truth is read from the workspace's ``ground_truth/`` folder,
        as a user would).

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
    if outcome.refused:
        text = f"{text}\n  not stored: {outcome.refused}"
    stored = outcome.result.transform if outcome.stored is not None else None
    scale = SIZES[sample.size].tissue_scale if sample is not None else 1.0
    return f"{text}\n{demo_nuclei(ws, truth, stored, scale)}"


#: Nucleus diameters of the demo's tissue (radii 2-3 µm, ellipsoids), in µm before scaling.
DEMO_DIAMETER_UM = (3.2, 7.2)
#: Smallest blob response kept: the demo's X-ray shows its nuclei at 5-10 robust standard
#: deviations (the preset's 6 misses some of the dozen nuclei of its small block).
DEMO_SCORE = 4.0


def _tre_um(ws: Workspace, t: Transform, truth: Transform) -> tuple[float, float]:
    """Mean and largest distance (µm) between a map and the truth over the FIB-SEM block."""
    lo, hi = np.array(ws.open_image("fibsem").levels[0].extent).T
    axes = [np.linspace(a, b, 9)[1:-1] for a, b in zip(lo, hi, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    d = np.linalg.norm(t.apply(points) - truth.apply(points), axis=1) * unit_factor(
        ws.unit, "micrometer"
    )
    return float(d.mean()), float(d.max())


def demo_nuclei(
    ws: Workspace, truth_path: Path, stored: Transform | None, scale: float = 1.0
) -> str:
    """Align the X-ray to the FIB-SEM from the nuclei alone; TREs of both maps vs the truth.

    ``scale`` is the demo tissue's scale (its nuclei are that much smaller or larger).
    """
    xray, fibsem = ws.open_image("xray"), ws.open_image("fibsem")
    preset = load_preset("xray-to-fibsem").with_overrides(
        {"nuclei.diameter": [d * scale for d in DEMO_DIAMETER_UM], "nuclei.min_score": DEMO_SCORE}
    )
    voxel = xray.levels[0].voxel_size[0] * unit_factor(ws.unit, "micrometer")
    truth = read_truth(ws, truth_path, ("fibsem", "xray"))
    lines = ["from the nuclei alone (FIB-SEM nucleus labels against X-ray blobs):"]
    start = time.perf_counter()
    try:
        found = nuclei_step(
            xray,
            fibsem,
            preset.nuclei,
            scale_range=preset.search.scale_range,
            fixed_labels=ws.open_image("nuc"),
            names=("xray", "fibsem"),
        )
    except CoframeError as e:
        return "\n".join([*lines, f"  not found: {e}"])
    s = found.summary(ws.unit, voxel * unit_factor("micrometer", ws.unit))
    lines.append(
        f"  {s['inliers']} of {s['candidates']} candidate nuclei matched ({s['fixed_points']} "
        f"FIB-SEM, {s['moving_points']} X-ray; runner-up {s['runner_up']}), RMS "
        f"{s['rms_um']:.3g} um, leave-one-out TRE {s['loo_tre_um'] or float('nan'):.3g} um, "
        f"{time.perf_counter() - start:.1f} s" + ("" if found.trusted else f"; {found.reason}")
    )
    if isinstance(truth, Transform):
        lines.append(f"  TRE vs ground truth over the FIB-SEM block (X-ray voxel {voxel:.3g} um):")
        maps = [("from the nuclei", found.transform)]
        maps += [("from intensities (the stored edge)", stored)] if stored is not None else []
        for what, t in maps:
            mean, top = _tre_um(ws, t, truth)
            lines.append(
                f"    {what:35} mean {mean:.3g} um ({mean / voxel:.2f} vox), max {top:.3g} um"
            )
    if stored is not None:
        corners = inputs.box_points(*np.array(fibsem.levels[0].extent).T, per_axis=2)
        apart = agreement(
            found.transform, stored, corners, voxel * unit_factor("micrometer", ws.unit)
        )
        lines.append(f"  the two maps agree within {apart:.2f} X-ray voxels over the FIB-SEM block")
        path = write_pairs(ws, found, stored, pairs_path(ws, "fibsem", "xray"), force=True)
        lines.append(f"  matched nuclei beside the edge: {path.relative_to(ws.root)}")
    return "\n".join(lines)
