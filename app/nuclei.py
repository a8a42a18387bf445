"""Nuclei in the workspace: ``coframe nuclei`` and the nuclei files of ``coframe register``.

- :func:`run_nuclei` finds the nuclei of one image (a workspace image name or
  a path/URL) and writes them as CSV, one row per nucleus, for a viewer;
- :func:`open_labels` opens the nucleus segmentation ``--fixed-labels`` /
  ``--moving-labels`` name (an image of the workspace in the right space, or
  a path);
- :func:`pairs_path` and :func:`write_pairs` put the matched nuclei of a
  stored edge next to it as a BigWarp landmarks CSV: the FIXED nuclei and
  their places under the stored map, so that ``coframe link`` (a thin-plate
  spline through the pairs) gives back the same map and ``--landmarks``
  re-runs from it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coframe.app.images import image_location
from coframe.app.workspace import Workspace
from coframe.core.atomic import write_text_atomic
from coframe.core.errors import OverwriteError, WorkspaceError
from coframe.core.units import canonical_unit
from coframe.registration.nuclei import NucleiResult, find_nuclei
from coframe.registration.presets import load_preset
from coframe.transforms.base import Transform
from coframe.transforms.formats.bigwarp import write_bigwarp_landmarks
from coframe.volumes.open import open_volume
from coframe.volumes.volume import Volume

#: Columns of the nuclei CSV.
COLUMNS = (
    "id",
    "z",
    "y",
    "x",
    "volume",
    "d1",
    "d2",
    "d3",
    "axis_z",
    "axis_y",
    "axis_x",
    "score",
    "partial",
    "kind",
    "unit",
)


@dataclass(frozen=True)
class NucleiRequest:
    """What ``coframe nuclei`` was asked.

    Parameters
    ----------
    image
        A workspace image name, or a path/URL.
    out
        The CSV file to write.
    labels
        Treat the image as a label image (default: when its modality is ``labels``).
    polarity
        ``auto``, ``bright``, ``dark`` or ``both`` for an intensity image.
    diameter
        Size prior (micrometres), default the preset's.
    preset
        Preset whose ``nuclei`` section gives the defaults.
    level
        Level to read instead of the automatic one.
    unit
        Length unit of the CSV.
    voxel_size, input_unit, modality
        For a path: as ``coframe add`` takes them.
    force
        Overwrite ``out``.
    """

    image: str
    out: Path
    labels: bool = False
    polarity: str | None = None
    diameter: tuple[float, ...] | None = None
    preset: str | None = None
    level: str | None = None
    unit: str = "micrometer"
    voxel_size: tuple[float, ...] | None = None
    input_unit: str | None = None
    modality: str | None = None
    force: bool = False


def _open(ws: Workspace | None, req: NucleiRequest) -> Volume:
    if ws is not None and req.image in ws.images:
        volume = ws.open_image(req.image)
        return volume.with_modality(req.modality) if req.modality else volume
    return open_volume(
        image_location(req.image),
        unit=ws.unit if ws is not None else "nanometer",
        voxel_size=req.voxel_size,
        input_unit=req.input_unit,
        modality=req.modality,
    )


def run_nuclei(ws: Workspace | None, req: NucleiRequest) -> dict[str, Any]:
    """Find an image's nuclei and write them as CSV; return a summary.

    Raises
    ------
    OverwriteError
        If ``out`` exists and ``force`` is false.
    RegistrationError
        For a labels image with no label or a float one, or a size prior that finds nothing.
    """
    out = Path(req.out)
    if out.exists() and not req.force:
        raise OverwriteError(f"{out} already exists: pass --force to replace it")
    unit = canonical_unit(req.unit, key="--unit")
    volume = _open(ws, req)
    overrides: dict[str, Any] = {}
    if req.polarity is not None:
        overrides["nuclei.polarity"] = req.polarity
    if req.diameter is not None:
        overrides["nuclei.diameter"] = list(req.diameter)
    cfg = load_preset(req.preset).with_overrides(overrides).nuclei
    if req.labels:
        volume = volume.with_modality("labels")
    sets = find_nuclei(volume, cfg, level=req.level)
    rows = [row for s in sets for row in s.rows(unit)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "unit": unit})
    write_text_atomic(out, text.getvalue(), force=req.force)
    return {
        "image": req.image,
        "written": str(out),
        "unit": unit,
        "sets": [
            {
                "kind": s.polarity,
                "points": len(s),
                "partial": int(s.partial.sum()),
                "level": s.level,
                "voxel_size": list(s.voxel_size),
            }
            for s in sets
        ],
    }


def describe_nuclei(summary: dict[str, Any]) -> str:
    """One line per point set and the file written."""
    lines = []
    for s in summary["sets"]:
        vs = ", ".join(f"{v:.4g}" for v in s["voxel_size"])
        lines.append(
            f"{summary['image']}: {s['points']} nuclei ({s['kind']}; {s['partial']} cut or "
            "fragments) "
            f"at level {s['level']} (voxel {vs})"
        )
    lines.append(f"wrote {summary['written']} (lengths in {summary['unit']})")
    return "\n".join(lines)


def open_labels(ws: Workspace, ref: str | None, space: str, flag: str) -> Volume | None:
    """The nucleus segmentation named by ``flag``: a workspace image in ``space``, or a path.

    Raises
    ------
    WorkspaceError
        If a workspace image of that name lies in another space.
    """
    if ref is None:
        return None
    if ref in ws.images:
        if ws.images[ref].space != space:
            raise WorkspaceError(
                f"{flag} {ref!r} is in space {ws.images[ref].space!r}, not {space!r}: give the "
                f"segmentation of that image (add it with --space {space})"
            )
        return ws.open_image(ref).with_modality("labels")
    return open_volume(image_location(ref), unit=ws.unit, modality="labels")


def pairs_path(ws: Workspace, fixed_space: str, moving_space: str) -> Path:
    """Where the matched nuclei of the edge FIXED -> MOVING go (beside its transform file)."""
    return ws.inside(f"transforms/{fixed_space}-to-{moving_space}.nuclei.csv", "landmarks file")


def write_pairs(
    ws: Workspace, nuclei: NucleiResult, transform: Transform, path: Path, force: bool
) -> Path:
    """Write the matched nuclei as BigWarp landmarks whose spline is ``transform`` itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(write_bigwarp_landmarks(path, nuclei.pairs(transform), force, unit=ws.unit))


def format_nuclei(summary: dict[str, Any], path: Path | None) -> list[str]:
    """Report lines of the nuclei step."""
    s = summary
    loo = "n/a" if s["loo_tre_um"] is None else f"{s['loo_tre_um']:.3g} um"
    line = (
        f"  nuclei ({s['fixed_kind']} / {s['moving_kind']}, {s['model']}): {s['inliers']} matched "
        f"of {s['candidates']} candidates (runner-up {s['runner_up']}, chance "
        f"{s['chance']:.1f}), RMS {s['rms_um']:.3g} um, leave-one-out TRE {loo}"
    )
    lines = [line]
    if s.get("agreement_vox") is not None:
        lines.append(f"  nuclei vs intensity search: {s['agreement_vox']:.2f} working voxels apart")
    if path is not None:
        lines.append(f"  matched nuclei (BigWarp CSV) {path}")
    return lines
