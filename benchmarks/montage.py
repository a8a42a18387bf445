"""Peak memory and time of ``coframe locate`` on a TEM montage (not run by CI).

Run ``python benchmarks/montage.py [--side 20000] [--tmp DIR] [--keep]``; results go to
``benchmarks/results/montage.json`` (``--out``) and ``python benchmarks/tables.py``
renders them into the README.

Writes a ``side x side`` uint8 BigTIFF montage, tiled 256 x 256, twice: with
no pyramid, and with a pyramid of halvings (SubIFDs). Its pixels are a plane
cut from a 96^3 phantom of 1 µm voxels along a known pose, at the pixel size
that makes the section 60 µm wide (3 nm for 20k pixels), with grid bars, a
few percent of noise, and an 8 % compression along the section's y axis;
tiles are rendered one at a time, so writing never holds the montage.

Each montage is located in the phantom in its own subprocess
(``coframe locate`` through the CLI, with ``--normal``/``--max-tilt`` and
``--shrinkage``), which reports its own peak RSS (``VmHWM``: the reading of
the montage, the search, the matched slice and the outputs), its wall time
and the pose errors against the truth (normal degrees, offset voxels along the
normal, in-plane centre voxels) and the compression found.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import results
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from locate_synthetic import blob_phantom  # noqa: E402

from coframe.registration.locate_geometry import GridImage, Pose, plane_basis, pose_errors  # noqa: E402
from coframe.transforms.affine import Affine  # noqa: E402
from coframe.volumes.write import write_tiff  # noqa: E402

VOXEL = 1000.0  # nm
VOLUME = 96
WIDTH = 60_000.0  # nm across the montage
TILE = 256
SQUEEZE = 0.92


def _peak_rss_gb() -> float:
    """Peak resident memory of this process (``VmHWM``: reset by exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def truth_pose() -> Pose:
    """The pose of the montage: tilted 10 degrees, compressed along its y axis."""
    n = np.array([np.cos(np.deg2rad(10.0)), np.sin(np.deg2rad(10.0)), 0.0])
    e1, e2 = plane_basis(n)
    t = np.deg2rad(35.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    linear = np.column_stack([e1, e2]) @ rot @ np.diag([1.0 / SQUEEZE, 1.0])
    centre = np.array([47.3, 48.6, 46.1]) * VOXEL
    return Pose(centre, linear, np.array([WIDTH / 2.0, WIDTH / 2.0]))


def tiles(
    volume: GridImage, pose: Pose, side: int, pixel: float, seed: int
) -> Iterator[np.ndarray]:
    """The montage's tiles (row-major), each rendered on its own."""
    rng = np.random.default_rng(seed)
    lo, hi = float(volume.array.min()), float(volume.array.max())
    for r in range(0, side, TILE):
        for c in range(0, side, TILE):
            y = (r + np.arange(TILE) + 0.5) * pixel
            x = (c + np.arange(TILE) + 0.5) * pixel
            yy, xx = np.meshgrid(y, x, indexing="ij")
            pts = pose.apply(np.stack([yy.ravel(), xx.ravel()], axis=1))
            idx = volume.to_index(pts).T
            v = ndimage.map_coordinates(volume.array, idx, order=1, mode="nearest")
            v = (hi - v) / (hi - lo)  # TEM polarity: stain dark
            v = v + rng.normal(0.0, 0.05, v.shape)
            img = np.clip(v * 200 + 30, 0, 255).reshape(TILE, TILE)
            bar_y = yy % 12_000.0 < 1_500.0
            bar_x = xx % 15_000.0 < 1_800.0
            img = np.where(bar_y | bar_x, 6.0, img)  # grid bars: dark and flat
            yield img.astype(np.uint8)


def write_montage(path: Path, volume: GridImage, side: int, pyramid: bool) -> float:
    """Write the montage (tiled BigTIFF, pyramid of halvings if asked); returns the pixel size."""
    import tifffile

    pixel = WIDTH / side
    pose = truth_pose()
    levels = 0
    if pyramid:
        while side >> (levels + 1) >= 512:
            levels += 1
    resolution = (1e7 / pixel, 1e7 / pixel)  # pixels per cm
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            tiles(volume, pose, side, pixel, 0),
            shape=(side, side),
            dtype=np.uint8,
            tile=(TILE, TILE),
            subifds=levels,
            resolution=resolution,
            resolutionunit="CENTIMETER",
            compression="zlib",
        )
        for k in range(1, levels + 1):
            n = side >> k
            tif.write(
                tiles(volume, pose, n, pixel * (1 << k), k),
                shape=(n, n),
                dtype=np.uint8,
                tile=(TILE, TILE),
                subfiletype=1,
                compression="zlib",
            )
    return pixel


def child(root: Path, name: str) -> dict[str, Any]:
    """Locate montage ``name`` in the phantom through the CLI; report time, memory, errors."""
    from typer.testing import CliRunner

    from coframe.cli import app

    runner = CliRunner()
    ws = root / f"ws-{name}"
    runner.invoke(app, ["init", str(ws)])
    for image, path in (("volume", root / "volume.tif"), ("section", root / f"{name}.tif")):
        out = runner.invoke(app, ["add", image, str(path), "-w", str(ws)])
        if out.exit_code != 0:
            raise SystemExit(out.output)
    n = truth_pose().normal
    t0 = time.perf_counter()
    out = runner.invoke(
        app,
        ["locate", "section", "volume", "--normal", ",".join(f"{v:.4f}" for v in n)]
        + ["--max-tilt", "15", "--shrinkage", "--json", "--force", "-w", str(ws)],
    )
    seconds = time.perf_counter() - t0
    if out.exit_code != 0:
        return {"error": out.output.strip(), "seconds": seconds, "peak_rss_gb": _peak_rss_gb()}
    report = json.loads(out.stdout)
    truth = truth_pose()
    err = pose_errors(
        Affine(np.asarray(report["matrix"])), Affine(truth.matrix), truth.section_center, VOXEL
    )
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
        "trustworthy": report["trustworthy"],
        "normal_deg": round(err["normal_deg"], 3),
        "offset_voxels": round(err["offset_voxels"], 3),
        "centre_voxels": round(err["in_plane"] / VOXEL, 3),
        "compression": report["compression"]["compression"],
        "masked": report["masked"],
        "locate_seconds": report["seconds"],
    }


def table(report: dict[str, Any]) -> str:
    """Markdown: one line per montage (flat, pyramid)."""
    lines = [
        "| montage | pixels | on disk | peak RSS | time | normal error | offset | centre | "
        f"compression found (made: {1 - SQUEEZE:.2f}) | trusted |",
        "|" + "---|" * 10,
    ]
    for r in report["rows"]:
        head = f"| {r['montage']} | {r['side']:,}² ({r['pixel_nm']:.2f} nm) | {r['mb']:.0f} MB |"
        if "error" in r:
            lines.append(f"{head} {r['peak_rss_gb']:.2f} GB | failed: {r['error'][:80]} ||||||")
            continue
        lines.append(
            f"{head} {r['peak_rss_gb']:.2f} GB | {r['seconds']:.0f} s | {r['normal_deg']:.2f}° | "
            f"{r['offset_voxels']:.2f} vx | {r['centre_voxels']:.2f} vx | {r['compression']:.3f} | "
            f"{'yes' if r['trustworthy'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20_000, help="montage side (pixels)")
    parser.add_argument("--tmp", type=Path, default=None, help="scratch directory")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--out", type=Path, default=None, help="Results JSON.")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1])))
        return
    meta = results.provenance()
    tmp = tempfile.TemporaryDirectory(dir=args.tmp)
    root = Path(tmp.name)
    volume = blob_phantom((VOLUME,) * 3, VOXEL, seed=2)
    write_tiff(root / "volume.tif", volume.array, VOXEL)
    rows = []
    for name, pyramid in (("flat", False), ("pyramid", True)):
        t0 = time.perf_counter()
        pixel = write_montage(root / f"{name}.tif", volume, args.side, pyramid)
        size = (root / f"{name}.tif").stat().st_size / 2**20
        print(
            f"{name}: wrote {args.side}^2 uint8 ({pixel:.2f} nm pixels, {size:.0f} MB on disk) "
            f"in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        row: dict[str, Any] = {"montage": name, "side": args.side, "pixel_nm": pixel, "mb": size}
        cmd = [sys.executable, __file__, "--child", str(root), name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{name}: child failed: {done.stderr.strip()[-2000:]}")
            tail = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
            row.update(error=tail[-1], peak_rss_gb=float("nan"))
        else:
            print(f"{name}: {done.stdout.strip()}", flush=True)
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        rows.append(row)
    report = {"benchmark": "montage", "side": args.side, "rows": rows}
    print(table(report))
    print(f"results: {results.write('montage', report, meta, args.out)}")
    if args.keep:
        print(f"files kept in {root}")
        tmp.cleanup = lambda: None  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
