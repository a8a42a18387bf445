"""The resampling step of ``coframe demo``: each modality into the other's frame.

With an edge joining the FIB-SEM and X-ray spaces (from ``coframe register``
or ``coframe link``), the step writes under ``<demo>/resampled/``:

- the X-ray and the nucleus labels in FIB-SEM space, on the FIB-SEM level
  nearest :data:`FIBSEM_VOXEL` over a box around the written crop;
- the FIB-SEM in X-ray space, on the X-ray grid (read from the FIB-SEM
  level nearest the X-ray voxel size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coframe.app.resample import ResampleOptions, resample_workspace
from coframe.app.workspace import load_workspace
from coframe.core.errors import NoPathError
from coframe.demo.outputs import RESAMPLED_DIR
from coframe.resampling.engine import ResampleResult

#: Output voxel size (nm) of the resampling into FIB-SEM space.
FIBSEM_VOXEL = 128.0
#: Margin (nm) added around the written FIB-SEM crop.
CROP_MARGIN = 2000.0
#: Folder of the outputs inside the demo workspace.
OUT_DIR = RESAMPLED_DIR


def _crop_box(level_extent: Any, sample: Any) -> tuple[list[float], list[float]]:
    """The written crop widened by :data:`CROP_MARGIN`, inside the level's extent."""
    lo = np.array([a for a, _ in level_extent])
    hi = np.array([b for _, b in level_extent])
    crop = getattr(sample, "crop_box", None)
    if crop is None:
        return lo.tolist(), hi.tolist()
    c_lo, c_hi = (np.asarray(v, dtype=np.float64) for v in crop)
    return np.maximum(lo, c_lo - CROP_MARGIN).tolist(), np.minimum(hi, c_hi + CROP_MARGIN).tolist()


def _line(what: str, r: ResampleResult, root: Path) -> str:
    g = r.grid
    return (
        f"  {what:<22} {r.output.relative_to(root)}  shape {list(g.shape)} at "
        f"{g.voxel_size[0]:g} {g.unit}, source level {r.source_level} ({r.interpolation}), "
        f"{r.blocks} blocks in {r.seconds:.1f} s"
    )


def demo_resample_step(directory: Path, sample: Any = None) -> str:
    """Resample the demo's X-ray and labels into FIB-SEM space and the FIB-SEM into X-ray space.

    Parameters
    ----------
    directory
        The demo workspace.
    sample
        The :class:`coframe.demo.sample.DemoSample` (its crop box places the
        FIB-SEM-space outputs; without it they cover the whole block).

    Returns
    -------
    str
        One line per output, or why the step was skipped.
    """

    root = Path(directory)
    ws = load_workspace(root)
    try:
        ws.graph().path(ws.space_of("fibsem"), ws.space_of("xray"))
    except NoPathError:
        return (
            "  skipped: no transform joins the fibsem and xray spaces yet; store one with "
            "`coframe register xray fibsem` or `coframe link fibsem xray FILE`"
        )
    fibsem = ws.open_image("fibsem")
    level = fibsem.nearest_level(FIBSEM_VOXEL)
    box = _crop_box(fibsem.levels[level].extent, sample)
    out = root / OUT_DIR
    runs = (
        ("X-ray -> FIB-SEM", "xray", "fibsem", {"level": level, "box": box}, "xray-in-fibsem.zarr"),
        ("labels -> FIB-SEM", "nuc", "fibsem", {"level": level, "box": box}, "nuc-in-fibsem.zarr"),
        ("FIB-SEM -> X-ray", "fibsem", "xray", {"level": 0}, "fibsem-in-xray.zarr"),
    )
    lines = []
    for what, source, target, grid, name in runs:
        options = ResampleOptions(force=True, progress=False, **grid)
        result = resample_workspace(ws, source, target, out / name, options)
        lines.append(_line(what, result, root))
    return "\n".join(lines)
