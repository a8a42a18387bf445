"""Slice-to-volume registration: success rate and time over random section poses (not run by CI).

Run in the benchmark environment (nilearn provides the real volume)::

    /tmp/bench/bin/python benchmarks/locate.py [--poses 20] [--volumes demo,mni]
        [--demo DIR] [--json OUT]

Volumes:

- ``demo``: the X-ray volume of ``coframe demo`` (default size: 172^3 voxels of
  700 nm; written to a temporary folder unless ``--demo`` names one).
  Sections of 30 x 30 µm (40 voxels) at 375 nm pixels.
- ``mni``: nilearn's ICBM152 2009 T1 template at 1 mm (197 x 233 x 189,
  ``load_mni152_template(resolution=1)``, offline). Sections of 80 x 80 mm
  at 0.5 mm pixels, at least 70 % inside the head. The template is
  left-right *symmetric*: a section and its mirror image across the
  mid-sagittal plane match equally well, so the mirror pose is reported
  apart ("mirror twin") and counts as a failure in the strict success rate.
  ``locate_section`` detects the symmetry itself and scores the mirror twin
  of its pose as a rival: a tie is flagged (``LocateResult.mirror_tie``) and
  the result is not trustworthy.
- ``mni-left``: the same template cropped to x < 105 mm (the left hemisphere
  and 7 mm past the midline), where most mirror twins fall outside.

Every section is cut along a random pose (normal uniform on the sphere,
random in-plane rotation and position, the whole section inside the volume),
then blurred (1 pixel), given Gaussian noise (0.3 of its standard deviation)
and inverted. ``locate_section`` runs with no prior. A pose is found when its
normal is within 2 degrees of the truth and its centre within 1 working voxel
of the true plane (along the normal). Times are wall times of
``locate_section`` on this machine.

Columns: "found" is the strict success rate; "mirror twin" counts results at
the mirror image of the true pose; "flagged tie" counts results that
``locate_section`` flagged as tied with their mirror twin (whether at the true
pose or at its twin); "found or flagged tie" counts results that are found, or
are the mirror twin *and* flagged (so untrusted: the user is told to give
``--near``/``--normal``). "trusted & wrong" is the count that matters most:
a wrong pose the user would be given as trustworthy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# the phantoms shared with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from locate_synthetic import (  # noqa: E402
    extract_section,
    grid_volume,
    random_pose,
)

from coframe.demo.sample import make_demo  # noqa: E402
from coframe.registration.locate import locate_section  # noqa: E402
from coframe.registration.locate_geometry import GridImage, Pose, pose_errors  # noqa: E402
from coframe.registration.locate_result import LocateOptions  # noqa: E402
from coframe.registration.locate_symmetry import mirror_pose  # noqa: E402
from coframe.transforms.affine import Affine  # noqa: E402
from coframe.volumes.open import open_volume  # noqa: E402

#: Largest normal error (degrees) and offset (working voxels) of a found pose.
MAX_NORMAL_DEG = 2.0
MAX_OFFSET_VOXELS = 1.0


def demo_volume(directory: Path | None) -> tuple[GridImage, str]:
    """The demo X-ray volume (level 0) as a grid in nanometres."""
    if directory is None or not (directory / "xray.zarr").exists():
        directory = directory or Path(tempfile.mkdtemp(prefix="coframe-locate-bench-"))
        make_demo(directory, size="default", seed=0, overwrite=True)
    lvl = open_volume(directory / "xray.zarr").levels[0]
    return GridImage(lvl.read().astype(np.float32), lvl.voxel_size, lvl.origin), "nanometer"


def mni_volume() -> tuple[GridImage, str]:
    """nilearn's ICBM152 T1 template at 1 mm, axes (z, y, x), in millimetres."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.get_fdata(), dtype=np.float32).transpose(2, 1, 0)
    return GridImage(np.ascontiguousarray(data), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), "millimeter"


#: Per volume: section side (physical), section pixel, smallest fraction inside the object.
SETTINGS: dict[str, tuple[float, float, float]] = {
    "demo": (30_000.0, 375.0, 0.0),
    "mni": (80.0, 0.5, 0.7),
    "mni-left": (80.0, 0.5, 0.7),
}
#: x of the mid-sagittal plane of the MNI template (mm from voxel 0).
MNI_MIDLINE = 98.0
#: Voxels along x kept by ``mni-left`` (the left hemisphere and 7 mm past the midline).
MNI_LEFT = 105


def _foreground_fraction(volume: GridImage, pose: Pose, side: float, threshold: float) -> float:
    grid = np.linspace(0.05, 0.95, 15) * side
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pts = pose.apply(np.column_stack([yy.ravel(), xx.ravel()]))
    idx = np.round(volume.to_index(pts)).astype(int)
    idx = np.clip(idx, 0, np.asarray(volume.shape) - 1)
    values = volume.array[idx[:, 0], idx[:, 1], idx[:, 2]]
    return float(np.mean(values > threshold))


def run_volume(
    name: str, volume: GridImage, unit: str, poses: int, seed: int
) -> list[dict[str, Any]]:
    """Locate ``poses`` random sections of one volume; one row per pose."""
    side, pixel, inside = SETTINGS[name]
    shape = (int(round(side / pixel)),) * 2
    rng = np.random.default_rng(seed)
    threshold = float(np.percentile(volume.array, 60)) if inside > 0 else -np.inf
    target = grid_volume(volume, unit=unit)
    voxel = float(np.mean(volume.spacing))
    rows = []
    for i in range(poses):
        for _ in range(200):
            pose = random_pose(volume, (side, side), rng, margin=voxel)
            if inside <= 0 or _foreground_fraction(volume, pose, side, threshold) >= inside:
                break
        section = extract_section(
            volume, pose, shape, pixel, rng=rng, blur=1.0, noise=0.3, invert=True
        )
        start = time.perf_counter()
        result = locate_section(grid_volume(section, unit=unit), target, LocateOptions())
        seconds = time.perf_counter() - start
        truth = Affine(pose.matrix)
        err = pose_errors(result.affine, truth, section.center, result.working_spacing)
        midline = MNI_MIDLINE if name.startswith("mni") else float(volume.center[2])
        mirror = pose_errors(
            result.affine,
            Affine(mirror_pose(pose, 2, midline).matrix),
            section.center,
            result.working_spacing,
        )
        found = err["normal_deg"] <= MAX_NORMAL_DEG and err["offset_voxels"] <= MAX_OFFSET_VOXELS
        twin = (
            not found
            and mirror["normal_deg"] <= MAX_NORMAL_DEG
            and mirror["offset_voxels"] <= MAX_OFFSET_VOXELS
        )
        row = {
            "volume": name,
            "pose": i,
            "found": found,
            "mirror": twin,
            "flagged": result.mirror_tie,
            "found_or_flagged": found or (twin and result.mirror_tie),
            "trustworthy": result.trustworthy,
            "normal_deg": err["normal_deg"],
            "offset_voxels": err["offset_voxels"],
            "in_plane_voxels": err["in_plane"] / result.working_spacing,
            "confidence": result.confidence,
            "ncc": result.ncc,
            "seconds": seconds,
            "symmetry_seconds": result.timings.get("symmetry", 0.0),
            "mirror_seconds": result.timings.get("mirror", 0.0),
        }
        rows.append(row)
        print(
            f"  {name} pose {i:2d}: {'found ' if found else 'MIRROR' if twin else 'MISSED'} "
            f"normal {err['normal_deg']:6.2f} deg, offset {err['offset_voxels']:5.2f} vx, "
            f"in-plane {row['in_plane_voxels']:5.2f} vx, confidence {result.confidence:.3f}"
            f"{'' if result.trustworthy else ' (untrusted)'}"
            f"{' (mirror tie)' if result.mirror_tie else ''}, {seconds:5.1f} s",
            flush=True,
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The summary table (one line per volume)."""
    head = (
        "| volume | poses | found (normal <= 2 deg, offset <= 1 vx) | mirror twin | "
        "flagged tie | found or flagged tie | "
        "median normal err (found) | median offset (found) | trusted & wrong | "
        "untrusted & right | median time | max time |"
    )
    lines = [head, "|" + "---|" * 12]
    for name in dict.fromkeys(r["volume"] for r in rows):
        sel = [r for r in rows if r["volume"] == name]
        ok = [r for r in sel if r["found"]]

        def med(key: str, s: list[dict[str, Any]] = ok) -> str:
            return f"{np.median([r[key] for r in s]):.2f}" if s else "-"

        times = [r["seconds"] for r in sel]
        either = sum(r["found_or_flagged"] for r in sel)
        lines.append(
            f"| {name} | {len(sel)} | {len(ok)} ({100 * len(ok) / len(sel):.0f} %) | "
            f"{sum(r['mirror'] for r in sel)} | {sum(r['flagged'] for r in sel)} | "
            f"{either} ({100 * either / len(sel):.0f} %) | {med('normal_deg')} deg | "
            f"{med('offset_voxels')} vx | "
            f"{sum(r['trustworthy'] and not r['found'] for r in sel)} | "
            f"{sum(r['found'] and not r['trustworthy'] for r in sel)} | "
            f"{np.median(times):.1f} s | {max(times):.1f} s |"
        )
    lines.append("")
    for name in dict.fromkeys(r["volume"] for r in rows):
        sel = [r for r in rows if r["volume"] == name]
        sym = np.median([r["symmetry_seconds"] for r in sel])
        twin = [r["mirror_seconds"] for r in sel]
        lines.append(
            f"{name}: symmetry detection {1000 * sym:.0f} ms (median), mirror twin scoring "
            f"{1000 * np.median(twin):.0f} ms (median), {1000 * max(twin):.0f} ms (max)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=20)
    parser.add_argument("--volumes", default="demo,mni,mni-left")
    parser.add_argument("--demo", type=Path, default=None, help="Existing demo folder.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="Write the rows as JSON.")
    args = parser.parse_args(argv)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    rows: list[dict[str, Any]] = []
    for name in args.volumes.split(","):
        if name == "demo":
            volume, unit = demo_volume(args.demo)
        else:
            volume, unit = mni_volume()
            if name == "mni-left":
                array = np.ascontiguousarray(volume.array[:, :, :MNI_LEFT])
                volume = GridImage(array, volume.spacing, volume.origin)
        print(f"{name}: volume {volume.shape} of {volume.spacing[0]:g} {unit}", flush=True)
        rows.extend(run_volume(name, volume, unit, args.poses, args.seed))
    print()
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
