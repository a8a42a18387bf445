"""Slice-to-volume registration: success rate and time over random section poses (not run by CI).

Run in the benchmark environment (nilearn provides the real volume)::

    /tmp/bench/bin/python benchmarks/locate.py [--poses 100] [--volumes demo,mni,mni-left]
        [--demo DIR] [--no-peer | --peer-poses N] [--prior DEG] [--out JSON]

Results go to ``benchmarks/results/locate.json`` (``--out``), rewritten after
every pose and marked complete at the end; ``benchmarks/tables.py`` renders
them, with the lines of ``locate-prior.json`` (a run with ``--prior`` alone)
that ``locate.json`` does not have.

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
random in-plane rotation and position, the whole section inside the volume)
from the volume seen in *another contrast*: the volume's values pass through
a non-monotonic transfer (:func:`other_contrast`: mid-range values brightest,
both ends dark), so neither the volume nor its inverse matches the section.
The section is compressed in-plane by 5-15 % along one of its axes (a
microtome's compression; the truth is the uncompressed pose, whose centre is
the section's centre), blurred (1 pixel) and given Gaussian noise (0.3 of its
standard deviation). Then it gets a TEM grid's defects (:func:`add_defects`;
``--no-defects`` leaves them out): two opaque grid bars (about 15 % of the
area), a fold (a doubled, darker band, 3-6 % of the side wide), dark dirt
specks and knife chatter, so that some 20 % of the section is hidden or wrong.
Nothing tells ``locate_section`` where they are: its automatic mask finds what
it can. ``locate_section`` runs with no prior, with
``shrinkage`` (an affine stage, as for compressed sections) and otherwise its
defaults: the scan scores edges (any contrast relation), and correlation too
where the edges' pose is not trustworthy; the refinement uses mutual
information where the section does not correlate with its slice. With
``--prior DEG`` it is told a normal DEG degrees off the truth and
``max_tilt`` 20 (``--normal ... --max-tilt 20``). A pose is found
when its normal is within 2 degrees of the truth, its centre within 1 working
voxel of the true plane (along the normal) and within 1 working voxel of the
true centre in the plane. Rates come with a 95 % Wilson interval. Times are
wall times of ``locate_section`` on this machine.

Peer baseline (``benchmarks/locate_peer.py``): SimpleITK slice-to-volume (rigid,
Mattes MI) from a grid of starts over normals, in-plane rotations and
centres, tried in random order until it has used coframe's time on the same
section; the best final metric wins. Judged by the same criteria.

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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import results
from scipy import ndimage

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

#: Largest normal error (degrees), offset and in-plane centre error (working voxels) of a
#: found pose.
MAX_NORMAL_DEG = 2.0
MAX_OFFSET_VOXELS = 1.0
MAX_IN_PLANE_VOXELS = 1.0
#: coframe's options for compressed sections: an affine (shrinking) stage.
OPTIONS = LocateOptions(shrinkage=True)
#: In-plane compression of a section along one axis (fraction).
COMPRESSION = (0.05, 0.15)

#: ``max_tilt`` (degrees) given with a normal prior (``--prior``): the CLI's default with --normal.
PRIOR_TILT = 20.0


def other_contrast(array: np.ndarray) -> np.ndarray:
    """The volume in another contrast: a non-monotonic transfer of its normalised values."""
    lo, hi = np.percentile(array, [1, 99.5])
    v = np.clip((array - lo) / max(hi - lo, 1e-12), 0, 1)
    return (np.exp(-(((v - 0.55) / 0.2) ** 2)) + 0.3 * v).astype(np.float32)


#: The defects :func:`add_defects` can add.
DEFECTS = ("chatter", "fold", "dirt", "bars")


def add_defects(
    image: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = DEFECTS
) -> tuple[np.ndarray, dict[str, float]]:
    """A section as a TEM grid shows it: grid bars, a fold, dirt and knife chatter.

    - Grid bars: one opaque bar along each axis, 7-9 % of the side wide, at the
      detector's dark level (below every tissue value) with read noise.
    - A fold: a straight band (3-6 % of the side wide, any direction) where the
      section lies doubled: the tissue mirrored across the band's edge, added to
      its own and darkened (twice the thickness stops more electrons).
    - Dirt: 2-6 dark specks (stain precipitate), 4-10 % of the side across.
    - Chatter: brightness bands of +-8 % across the cutting direction.

    Returns the damaged image and the fraction of its area each defect covers
    (bars are what an automatic mask should find; the fold and dirt are the
    "wrong" area a robust score must tolerate). ``kinds`` picks the defects;
    the random draws are the same whichever are picked.
    """
    h, w = image.shape
    out = image.astype(np.float64)
    span = float(np.ptp(out)) or 1.0
    low = float(out.min())
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # chatter: periodic thickness changes along the cutting direction
    period = rng.uniform(0.05, 0.15) * min(h, w)
    phase = rng.uniform(0, 2 * np.pi)
    if "chatter" in kinds:
        out = out * (1.0 + 0.08 * np.sin(2 * np.pi * yy / period + phase))
    # a fold: pixels within half a width of a line, doubled and darkened
    angle = rng.uniform(0, np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    width = rng.uniform(0.03, 0.06) * min(h, w)
    c = np.array([h, w]) * rng.uniform(0.25, 0.75, 2)
    d = (yy - c[0]) * normal[0] + (xx - c[1]) * normal[1]
    fold = np.abs(d) <= width / 2
    my = np.clip(yy - 2 * (d + width / 2) * normal[0], 0, h - 1)
    mx = np.clip(xx - 2 * (d + width / 2) * normal[1], 0, w - 1)
    mirrored = ndimage.map_coordinates(out, [my, mx], order=1)
    fold &= "fold" in kinds
    out = np.where(fold, 0.5 * (out + mirrored) - 0.35 * span, out)
    # dirt: dark specks
    dirt = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(2, 7))):
        r = rng.uniform(0.02, 0.05) * min(h, w)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        dirt |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    dirt &= "dirt" in kinds
    out = np.where(dirt, low - 0.1 * span + rng.normal(0, 0.02 * span, out.shape), out)
    # grid bars: opaque, at the dark level with read noise
    bars = np.zeros((h, w), bool)
    for axis, n in enumerate((h, w)):
        bar = max(2, int(round(rng.uniform(0.07, 0.09) * n)))
        start = int(rng.integers(n // 8, n - n // 8 - bar))
        index: list[Any] = [slice(None), slice(None)]
        index[axis] = slice(start, start + bar)
        bars[tuple(index)] = True
    bars &= "bars" in kinds
    out = np.where(bars, low - 0.3 * span + rng.normal(0, 0.01 * span, out.shape), out)
    fractions = {
        "bars": float(bars.mean()),
        "fold": float((fold & ~bars).mean()),
        "dirt": float((dirt & ~bars & ~fold).mean()),
    }
    return out.astype(np.float32), fractions


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def judge(err: dict[str, float], spacing: float) -> bool:
    """Normal, offset and in-plane centre all within the limits."""
    return (
        err["normal_deg"] <= MAX_NORMAL_DEG
        and err["offset_voxels"] <= MAX_OFFSET_VOXELS
        and err["in_plane"] / spacing <= MAX_IN_PLANE_VOXELS
    )


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
    name: str,
    volume: GridImage,
    unit: str,
    poses: int,
    seed: int,
    peer: int,
    with_defects: bool = True,
    prior: float = 0.0,
    progress: Callable[[list[dict[str, Any]]], None] | None = None,
    done: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Locate ``poses`` random sections of one volume; one row per pose.

    The peer runs on the first ``peer`` poses (0: none). ``progress`` gets
    the rows so far after every pose. Poses in ``done`` (rows of an earlier,
    interrupted run, by pose number) keep their row: their sections are drawn
    all the same, so the later poses are those of an uninterrupted run.

    With ``prior`` (degrees), ``locate_section`` is told a normal that far
    from the truth, in a random direction, and ``max_tilt`` 20 (as
    ``--normal N --max-tilt 20``); the sections are the same as without.
    """
    side, pixel, inside = SETTINGS[name]
    shape = (int(round(side / pixel)),) * 2
    rng = np.random.default_rng(seed)
    threshold = float(np.percentile(volume.array, 60)) if inside > 0 else -np.inf
    target = grid_volume(volume, unit=unit)
    other = GridImage(other_contrast(volume.array), volume.spacing, volume.origin)
    voxel = float(np.mean(volume.spacing))
    midline = MNI_MIDLINE if name.startswith("mni") else float(volume.center[2])
    prior_rng = np.random.default_rng(seed + 10_000)  # apart: the sections stay the same
    rows = []
    for i in range(poses):
        for _ in range(200):
            pose = random_pose(volume, (side, side), rng, margin=voxel)
            if inside <= 0 or _foreground_fraction(volume, pose, side, threshold) >= inside:
                break
        compression = float(rng.uniform(*COMPRESSION))
        axis = int(rng.integers(2))
        stretch = np.ones(2)
        stretch[axis] = 1.0 / (1.0 - compression)  # the section shows more tissue per pixel
        squeezed = Pose(pose.center, pose.linear * stretch, pose.section_center)
        section = extract_section(other, squeezed, shape, pixel, rng=rng, blur=1.0, noise=0.3)
        defects: dict[str, float] = {}
        if with_defects:
            damaged, defects = add_defects(section.array, rng)
            section = GridImage(damaged, section.spacing, section.origin)
        if done and i in done:
            rows.append(done[i])
            continue
        options = OPTIONS
        if prior > 0:
            normal = pose.normal / np.linalg.norm(pose.normal)
            across = np.cross(normal, prior_rng.normal(size=3))
            across /= np.linalg.norm(across)
            angle = np.radians(prior)
            told = np.cos(angle) * normal + np.sin(angle) * across
            options = replace(OPTIONS, normal=tuple(float(v) for v in told), max_tilt=PRIOR_TILT)
        start = time.perf_counter()
        result = locate_section(grid_volume(section, unit=unit), target, options)
        seconds = time.perf_counter() - start
        truth = Affine(pose.matrix)
        spacing = result.working_spacing
        err = pose_errors(result.affine, truth, section.center, spacing)
        mirror = pose_errors(
            result.affine, Affine(mirror_pose(pose, 2, midline).matrix), section.center, spacing
        )
        found = judge(err, spacing)
        twin = not found and judge(mirror, spacing)
        row = {
            "volume": name,
            "pose": i,
            "compression": compression,
            "compressed_axis": "yx"[axis],
            "defects": defects,
            "found": found,
            "mirror": twin,
            "flagged": result.mirror_tie,
            "found_or_flagged": found or (twin and result.mirror_tie),
            "trustworthy": result.trustworthy,
            "normal_deg": err["normal_deg"],
            "offset_voxels": err["offset_voxels"],
            "in_plane_voxels": err["in_plane"] / spacing,
            "confidence": result.confidence,
            "ncc": result.ncc,
            "edges": result.edges,
            "seconds": seconds,
            "prior_deg": prior,
            "symmetry_seconds": result.timings.get("symmetry", 0.0),
            "mirror_seconds": result.timings.get("mirror", 0.0),
        }
        with_peer = i < peer
        if with_peer:
            import locate_peer

            p = locate_peer.locate(section, volume, seconds, threshold, seed * 1000 + i)
            row["peer_starts"], row["peer_seconds"] = p["starts"], p["seconds"]
            row["peer_found"] = False
            if p["matrix"] is not None:
                perr = pose_errors(Affine(p["matrix"]), truth, section.center, spacing)
                row["peer_found"] = judge(perr, spacing)
                row["peer_normal_deg"] = perr["normal_deg"]
        rows.append(row)
        print(
            f"  {name} pose {i:3d}: {'found ' if found else 'MIRROR' if twin else 'MISSED'} "
            f"normal {err['normal_deg']:6.2f} deg, offset {err['offset_voxels']:5.2f} vx, "
            f"in-plane {row['in_plane_voxels']:5.2f} vx, confidence {result.confidence:.3f}, "
            f"edges {result.edges:.2f}, ncc {result.ncc:+.2f}"
            f"{'' if result.trustworthy else ' (untrusted)'}"
            f"{' (mirror tie)' if result.mirror_tie else ''}, {seconds:5.1f} s"
            + (
                f"; peer {'found' if row['peer_found'] else 'missed'} ({row['peer_starts']} starts)"
                if with_peer
                else ""
            ),
            flush=True,
        )
        if progress is not None:
            progress(rows)
    return rows


def _rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.0f} % (95 % CI {100 * lo:.0f}–{100 * hi:.0f} %)"


def rows_by_line(*reports: dict[str, Any]) -> dict[tuple[str, float], list[dict[str, Any]]]:
    """Rows per table line (volume, prior), each line from the first report that has it."""
    lines: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for report in reports:
        mine: dict[tuple[str, float], list[dict[str, Any]]] = {}
        for r in report["rows"]:
            mine.setdefault((r["volume"], r.get("prior_deg", 0.0)), []).append(r)
        for key, sel in mine.items():
            lines.setdefault(key, sel)
    return lines


def table(*reports: dict[str, Any]) -> str:
    """The summary table (one line per volume and prior) of locate reports.

    A line (volume, prior) comes from the first report that measured it, so a
    later run of one line replaces it without dropping the others.
    """
    head = (
        "| volume | found (normal ≤ 2°, offset ≤ 1 vx, in-plane ≤ 1 vx) | mirror twin | "
        "found or flagged tie | trusted & wrong | median normal err (found) | "
        "median in-plane (found) | time, median (range) | peer found, same time |"
    )
    lines = [head, "|" + "---|" * 9]
    for (name, prior), sel in rows_by_line(*reports).items():
        ok = [r for r in sel if r["found"]]
        n = len(sel)

        def med(key: str, s: list[dict[str, Any]] = ok) -> str:
            return f"{np.median([r[key] for r in s]):.2f}" if s else "-"

        peer = [r for r in sel if "peer_found" in r]
        peer_text = _rate(sum(r["peer_found"] for r in peer), len(peer)) if peer else "not run"
        label = f"{name}, normal given {prior:g}° off (max tilt {PRIOR_TILT:g}°)" if prior else name
        lines.append(
            f"| {label} | {_rate(len(ok), n)} | {sum(r['mirror'] for r in sel)} | "
            f"{_rate(sum(r['found_or_flagged'] for r in sel), n)} | "
            f"{sum(r['trustworthy'] and not r['found'] for r in sel)} | "
            f"{med('normal_deg')}° | {med('in_plane_voxels')} vx | "
            f"{results.fmt(results.spread([r['seconds'] for r in sel]), 1)} s | {peer_text} |"
        )
    return "\n".join(lines)


def _earlier(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """An interrupted run's results, to resume ``report``'s run from; exits on a mismatch."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--resume {path}: not a results file ({exc})") from None
    for key in ("seed", "defects", "priors_deg"):
        if old.get(key) != report[key]:
            raise SystemExit(
                f"--resume {path}: its {key} is {old.get(key)!r}, this run's {report[key]!r}; "
                "run with the same --seed, --prior and defects"
            )
    return old


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poses", type=int, default=100)
    parser.add_argument("--volumes", default="demo,mni,mni-left")
    parser.add_argument("--demo", type=Path, default=None, help="Existing demo folder.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="Skip the SimpleITK baseline.")
    parser.add_argument(
        "--peer-poses",
        type=int,
        default=None,
        help="Run the peer on the first N poses of each volume only (default: every pose).",
    )
    parser.add_argument(
        "--no-defects", action="store_true", help="Sections without grid bars, fold or dirt."
    )
    parser.add_argument(
        "--prior",
        default="0",
        help="Give a normal this many degrees off the truth, with --max-tilt 20 (0: no prior); "
        "a list (0,10) runs the same sections once per value.",
    )
    parser.add_argument("--out", type=Path, default=None, help="Results JSON.")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="An interrupted run's results file (same seed, defects and priors): its poses "
        "are kept, the others are run; the report names the commit each part measured.",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    peer = 0 if args.no_peer else args.poses if args.peer_poses is None else args.peer_poses
    meta = results.provenance()
    rows: list[dict[str, Any]] = []
    priors = [float(v) for v in args.prior.split(",") if v.strip()]
    report = {
        "benchmark": "locate",
        "poses": args.poses,
        "seed": args.seed,
        "defects": not args.no_defects,
        "priors_deg": priors,
        "complete": False,
        "rows": rows,
    }
    earlier: list[dict[str, Any]] = []
    if args.resume:
        old = _earlier(args.resume, report)
        earlier = old["rows"]
        report["resumed"] = [
            *old.get("resumed", []),
            {"coframe_commit": old["coframe_commit"], "date": old["date"], "poses": len(earlier)},
        ]

    def progress(done: list[dict[str, Any]]) -> None:
        # The file is rewritten after every pose (atomically), marked incomplete
        # until the end, so an interrupted run keeps what it measured.
        results.write("locate", {**report, "rows": rows + done}, meta, args.out)

    for name, prior in ((n, p) for p in priors for n in args.volumes.split(",")):
        if name == "demo":
            volume, unit = demo_volume(args.demo)
        else:
            volume, unit = mni_volume()
            if name == "mni-left":
                array = np.ascontiguousarray(volume.array[:, :, :MNI_LEFT])
                volume = GridImage(array, volume.spacing, volume.origin)
        print(f"{name}: volume {volume.shape} of {volume.spacing[0]:g} {unit}", flush=True)
        rows.extend(
            run_volume(
                name,
                volume,
                unit,
                args.poses,
                args.seed,
                peer if prior == 0 else 0,
                not args.no_defects,
                prior,
                progress,
                {
                    r["pose"]: r
                    for r in earlier
                    if (r["volume"], r.get("prior_deg", 0.0)) == (name, prior)
                },
            )
        )
    report["complete"] = True
    print()
    print(table(report))
    print(f"results: {results.write('locate', report, meta, args.out)}")


if __name__ == "__main__":
    main()
