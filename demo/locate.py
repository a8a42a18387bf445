"""The ``coframe demo`` step that locates the TEM sections in the X-ray volume.

Every section of the demo was cut along a known oblique plane next to the
FIB-SEM block; its true 2D -> 3D pose in X-ray space is in the ground truth.
The step locates each section (the demo sections are cut roughly parallel to
the block's top face, so the normal is searched within ``MAX_TILT`` degrees of
the volume z axis; they lie on grids whose bars hide part of them, which the
search masks, and are compressed along their y axis, which the refinement
estimates), stores trustworthy poses as workspace edges, and reports the pose
error and the compression against the truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.locate import locate_paths, store_located, truth_errors
from coframe.app.workspace import load_workspace
from coframe.core.errors import CoframeError
from coframe.registration.locate import locate_section
from coframe.registration.locate_result import LocateOptions
from coframe.transforms.affine import Affine

#: Largest tilt (degrees) of the demo sections' normals searched from the z axis.
MAX_TILT = 25.0
#: Pixels across the section's shorter side in the global search.
SEARCH_PIXELS = 24
#: Name of the X-ray image in the demo workspace.
XRAY = "xray"


def demo_locate_step(directory: Path, sample: Any) -> str:
    """Locate every TEM section of a demo sample in its X-ray volume; report the errors.

    Parameters
    ----------
    directory
        The demo workspace directory.
    sample
        The :class:`coframe.demo.sample.DemoSample` written there.

    Returns
    -------
    One block of text per section: pose, score, confidence, and the errors
    (normal angle, offset along the normal in nm and X-ray voxels, in-plane
    position of the centre), and whether the edge was stored.
    """
    ws = load_workspace(directory)
    volume = ws.open_image(XRAY)
    voxel = float(np.mean(volume.levels[0].voxel_size))
    # grid bars hide part of each section and compression distorts it: the global search
    # needs a finer copy of the section than for a clean cut
    options = LocateOptions(max_tilt=MAX_TILT, shrinkage=True, search_pixels=SEARCH_PIXELS)
    lines = [f"(normals within {MAX_TILT:g}° of the X-ray z axis; X-ray voxel {voxel:g} nm)"]
    for tem in sample.tem:
        section = ws.open_image(tem.name)
        try:
            result = locate_section(
                section, volume, options, section_name=tem.name, volume_name=XRAY
            )
        except CoframeError as e:
            lines.append(f"{tem.name}: not located ({e})")
            continue
        err = truth_errors(result.affine, Affine(np.asarray(tem.to_xray)), section, voxel)
        stored = "not stored (not trustworthy)"
        if result.trustworthy:
            paths = locate_paths(ws, tem.name, XRAY, None)
            ws, _ = store_located(
                ws,
                tem.name,
                XRAY,
                result,
                command=f"coframe demo (locate {tem.name} {XRAY} --max-tilt {MAX_TILT:g} "
                f"--shrinkage, {SEARCH_PIXELS} search pixels)",
                paths=paths,
                force=True,
            )
            ws.save()
            stored = f"stored as {tem.name} -> {XRAY}"
        seconds = sum(result.timings.values())
        lines.append(
            f"{tem.name}: score {result.score:.3f}, confidence {result.confidence:.3f}, "
            f"NCC {result.ncc:.3f}, edges {result.edges:.3f}, {seconds:.1f} s; {stored}"
        )
        lines.append(
            f"  error vs truth: normal {err['normal_deg']:.2f}°, in-plane rotation "
            f"{err['in_plane_deg']:.2f}°, offset along the normal {err['offset']:.0f} nm "
            f"({err['offset_voxels']:.2f} X-ray voxels), centre in plane {err['in_plane']:.0f} nm "
            f"({err['in_plane'] / voxel:.2f} voxels)"
        )
        comp = result.compression
        lines.append(
            f"  compression {comp['compression']:.1%} along {comp['angle']:.0f}° from the "
            f"section's y axis (truth {tem.compression:.0%} along 0°); grid bars, film and "
            f"folds masked: {result.masked:.0%} of the section"
        )
    return "\n".join(lines)
