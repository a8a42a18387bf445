"""Nuclei as landmarks: coframe's point-set match against point-set peers, over random poses.

Each case is a pair of nucleus point clouds in micrometres: MOVING, the nuclei an
X-ray scan of the whole block shows, and FIXED, those of a FIB-SEM block inside it
(a sub-box of the same nuclei seen through a known similarity). 30% of the nuclei are
missing from one set and 30% spurious points are added to the other (the side
alternates case by case), every point is jittered (sigma 0.3 um per axis), and the pose
is random: any rotation about the milling axis z, a tilt of up to 20 degrees, a scale
of 0.95 - 1.05 and an off-centre block. A method *found* the pose when its map places
every true FIXED nucleus (missing ones included) within one X-ray voxel (0.7 um) of the
truth.

Clouds (``--cases``):

- ``demo`` (default): nuclei like the demo's tissue, one per cell of a jittered lattice
  of 10 um cells (10% without one); ``--moving N`` nuclei in the X-ray (default
  2000) and a FIB-SEM block holding about ``--fixed N`` (default 500).
- ``atlas``: a real labelled volume: SPM's Neuromorphometrics atlas
  (``tpm/labels_Neuromorphometrics.nii`` in the archive ``_spm/_spm.ctf`` of the
  ``spm-runtime-r2025b`` wheel, the ``bench`` extra), one point per connected piece of
  every label (centroid), scaled so that the median nearest-neighbour distance is
  10 um like nuclei (137 points; the block holds about half). Its points are as
  irregular as anatomy: no lattice.

Methods:

- ``coframe``: :func:`coframe.registration.nuclei_match.match_points` (similarity,
  tolerance 2 um, scale prior +-10%), and the trust gate's verdict on it;
- ``open3d``: open3d's global registration, FPFH features + RANSAC over feature
  matches (rigid: with scaling, RANSAC shrinks the set onto a few points;
  ``--ransac-iterations``) then point-to-point ICP with scaling: the peer of
  feature-based point-set registration (``open3d-cpu``);
- ``cpd``: rigid coherent point drift with scaling and an outlier weight of 0.3
  (``pycpd``), started with the centroids aligned, from 4 turns about z (the
  best objective kept): the probabilistic peer, a local method; it is slow (tens of
  seconds a case), so it runs on the first ``--cpd-cases`` cases only.

The intensity search is compared on images of the same nuclei by
``--cases images`` (few cases: each renders an X-ray and a FIB-SEM-like image and
runs ``coframe register`` twice, from the nucleus labels and from intensities).

Run it with the bench extra installed (``pip install -e '.[bench]'``)::

    python benchmarks/nuclei.py --count 20
    python benchmarks/nuclei.py --cases atlas --count 20
    python benchmarks/nuclei.py --cases images --count 4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FOUND_UM = 0.7
JITTER_UM = 0.3
TOLERANCE_UM = 2.0


# ------------------------------------------------------------------------------- clouds


def _rotation(z_deg: float, tilt_deg: float, tilt_axis_deg: float) -> np.ndarray:
    a, t, b = np.deg2rad([z_deg, tilt_deg, tilt_axis_deg])
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    # a tilt about an axis in the y-x plane at angle b from y
    u = np.array([0.0, np.cos(b), np.sin(b)])
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    tilt = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return tilt @ rz


def demo_cloud(seed: int, count: int) -> np.ndarray:
    """Nuclei of a jittered lattice of 10 um cells (10% empty), about ``count`` of them."""
    rng = np.random.default_rng(seed)
    side = int(round((count / 0.9) ** (1 / 3)))
    idx = np.indices((side,) * 3).reshape(3, -1).T
    pts = (idx + 0.5 + 0.28 * rng.uniform(-1, 1, idx.shape)) * 10.0
    return pts[rng.random(len(pts)) > 0.1]


def _package_file(distribution: str, suffix: str) -> Path:
    for f in metadata.files(distribution) or []:
        if str(f).replace("\\", "/").endswith(suffix):
            return Path(str(f.locate())).resolve()
    raise FileNotFoundError(f"{suffix} is not in {distribution} (install the bench extra)")


def atlas_cloud() -> tuple[np.ndarray, str]:
    """Centroids of the connected pieces of every label of SPM's Neuromorphometrics atlas."""
    import nibabel as nib
    from scipy import ndimage

    ctf = _package_file("spm-runtime-r2025b", "_spm/_spm.ctf")
    name = "fsroot/_spm/cleaned/spm/tpm/labels_Neuromorphometrics.nii"
    with zipfile.ZipFile(ctf) as archive:
        raw = archive.read(name)
    image = nib.Nifti1Image.from_bytes(raw)
    labels = np.asarray(image.dataobj).astype(np.int64)
    spacing = np.asarray(image.header.get_zooms()[:3], float)
    centres = []
    for value in np.unique(labels[labels > 0]):
        pieces, n = ndimage.label(labels == value)
        sizes = ndimage.sum(np.ones_like(pieces), pieces, np.arange(1, n + 1))
        keep = np.arange(1, n + 1)[sizes >= 20]
        if keep.size:
            centres.append(np.array(ndimage.center_of_mass(pieces > 0, pieces, keep)))
    pts = np.concatenate(centres) * spacing
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts).query(pts, k=2)
    pts = pts * (10.0 / np.median(d[:, 1]))
    return pts, "spm-runtime-r2025b: _spm/_spm.ctf -> spm/tpm/labels_Neuromorphometrics.nii"


def make_case(cloud: np.ndarray, seed: int, fixed_count: int) -> dict[str, Any]:
    """One case: FIXED (block, micrometres), MOVING (whole scan), truth FIXED -> MOVING."""
    rng = np.random.default_rng(1000 + seed)
    lo, hi = cloud.min(axis=0), cloud.max(axis=0)
    frac = min(1.0, (fixed_count / len(cloud)) ** (1 / 3))
    size = (hi - lo) * frac
    centre = lo + size / 2 + rng.uniform(0, 1, 3) * (hi - lo - size)  # off-centre
    block = cloud[np.all(np.abs(cloud - centre) <= size / 2, axis=1)]
    linear = (1 + rng.uniform(-0.05, 0.05)) * _rotation(
        rng.uniform(0, 360), rng.uniform(-20, 20), rng.uniform(0, 180)
    )
    shift = rng.uniform(-30, 30, 3)
    fixed_true = np.linalg.solve(linear, (block - centre - shift).T).T  # block's own frame
    truth = np.eye(4)
    truth[:3, :3], truth[:3, 3] = linear, centre + shift
    fixed, moving = fixed_true.copy(), cloud.copy()
    if seed % 2 == 0:  # nuclei missing from the FIB-SEM, spurious blobs in the X-ray
        fixed = fixed[rng.random(len(fixed)) >= 0.3]
        moving = np.concatenate([moving, rng.uniform(lo, hi, (int(0.3 * len(moving)), 3))])
    else:  # spurious points in the FIB-SEM set, nuclei the X-ray missed
        fake = rng.uniform(fixed.min(axis=0), fixed.max(axis=0), (int(0.3 * len(fixed)), 3))
        fixed = np.concatenate([fixed, fake])
        moving = moving[rng.random(len(moving)) >= 0.3]
    fixed = fixed + rng.normal(0, JITTER_UM, fixed.shape)
    moving = moving + rng.normal(0, JITTER_UM, moving.shape)
    return {
        "fixed": fixed[rng.permutation(len(fixed))],
        "moving": moving[rng.permutation(len(moving))],
        "truth": truth,
        "check": fixed_true,
    }


def error_um(matrix: np.ndarray | None, case: dict[str, Any]) -> float:
    """Largest distance between a FIXED -> MOVING map and the truth at the true FIXED nuclei."""
    if matrix is None or not np.all(np.isfinite(matrix)):
        return math.inf
    p = case["check"]
    t = case["truth"]
    mapped = p @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.max(np.linalg.norm(mapped - (p @ t[:3, :3].T + t[:3, 3]), axis=1)))


# ------------------------------------------------------------------------------- methods


def run_coframe(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from coframe.core.errors import RegistrationError
    from coframe.registration.nuclei import judge_match
    from coframe.registration.nuclei_match import match_points
    from coframe.registration.preset_sections import NucleiConfig

    try:
        m = match_points(case["fixed"], case["moving"], tolerance=TOLERANCE_UM, scale_range=0.1)
    except RegistrationError as e:
        return {"matrix": None, "trusted": False, "note": str(e)[:80]}
    reason = judge_match(m, NucleiConfig(tolerance=TOLERANCE_UM))
    return {
        "matrix": m.transform.homogeneous,
        "trusted": not reason,
        "note": f"{m.inliers}/{m.candidates} inliers, runner-up {m.runner_up}",
    }


def _o3d_cloud(points: np.ndarray, spacing: float) -> Any:
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.5 * spacing, max_nn=30))
    return pc


def run_open3d(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import open3d as o3d

    reg = o3d.pipelines.registration
    spacing = 10.0
    src, dst = _o3d_cloud(case["fixed"], spacing), _o3d_cloud(case["moving"], spacing)
    param = o3d.geometry.KDTreeSearchParamHybrid(radius=5 * spacing, max_nn=100)
    fs = reg.compute_fpfh_feature(src, param)
    fd = reg.compute_fpfh_feature(dst, param)
    ransac = reg.registration_ransac_based_on_feature_matching(
        src,
        dst,
        fs,
        fd,
        True,
        TOLERANCE_UM,
        reg.TransformationEstimationPointToPoint(False),  # with scaling it collapses the set
        3,
        [
            reg.CorrespondenceCheckerBasedOnEdgeLength(0.85),
            reg.CorrespondenceCheckerBasedOnDistance(2 * TOLERANCE_UM),
        ],
        reg.RANSACConvergenceCriteria(args.ransac_iterations, 0.999),
    )
    icp = reg.registration_icp(
        src,
        dst,
        TOLERANCE_UM,
        ransac.transformation,
        reg.TransformationEstimationPointToPoint(True),
    )
    return {"matrix": np.asarray(icp.transformation), "note": f"fitness {icp.fitness:.2f}"}


def run_cpd(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from pycpd import RigidRegistration

    fixed, moving = case["fixed"], case["moving"]
    best = None
    for turn in np.arange(0, 360, 90):
        r = _rotation(turn, 0, 0)
        start = (fixed - fixed.mean(axis=0)) @ r.T + moving.mean(axis=0)
        cpd = RigidRegistration(X=moving, Y=start, w=0.3, scale=True, max_iterations=40)
        cpd.register()
        s, rot, t = cpd.get_registration_parameters()
        # pycpd maps row vectors: Y' = s * Y @ R + t
        linear = s * rot.T @ r
        shift = s * rot.T @ (moving.mean(axis=0) - r @ fixed.mean(axis=0)) + t
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = linear, shift
        if best is None or cpd.q < best[0]:
            best = (cpd.q, matrix)
    assert best is not None
    return {"matrix": best[1], "note": f"objective {best[0]:.3g}"}


METHODS: dict[str, Callable[[dict[str, Any], argparse.Namespace], dict[str, Any]]] = {
    "coframe": run_coframe,
    "open3d": run_open3d,
    "cpd": run_cpd,
}


def run_points(clouds: list[tuple[str, np.ndarray]], args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for name, cloud in clouds:
        fixed_count = min(args.fixed, len(cloud) // 2)  # the block holds at most half
        for seed in range(args.count):
            case = make_case(cloud, seed, fixed_count)
            for method in args.methods:
                if method == "cpd" and seed >= args.cpd_cases:
                    continue  # the slowest peer runs on the first cases only
                t0 = time.perf_counter()
                out = METHODS[method](case, args)
                seconds = time.perf_counter() - t0
                err = error_um(out["matrix"], case)
                rows[method].append(
                    {
                        "cloud": name,
                        "seed": seed,
                        "fixed": len(case["fixed"]),
                        "moving": len(case["moving"]),
                        "error_um": err,
                        "found": err <= FOUND_UM,
                        "trusted": out.get("trusted"),
                        "seconds": seconds,
                        "note": out.get("note", ""),
                    }
                )
                print(
                    f"{name:6} {seed:3d} {method:8} {len(case['fixed']):5d} vs "
                    f"{len(case['moving']):5d}  error {err:9.3f} um  {seconds:6.2f} s  "
                    f"{out.get('note', '')}",
                    flush=True,
                )
    return rows


def summarise(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for method, rs in rows.items():
        errors = np.array([r["error_um"] for r in rs])
        found = np.array([r["found"] for r in rs])
        entry = {
            "cases": len(rs),
            "found": int(found.sum()),
            "found_rate": float(found.mean()) if rs else math.nan,
            "median_error_um": float(np.median(errors)) if rs else math.nan,
            "median_seconds": float(np.median([r["seconds"] for r in rs])) if rs else math.nan,
            "max_seconds": float(np.max([r["seconds"] for r in rs])) if rs else math.nan,
        }
        if rs and rs[0]["trusted"] is not None:
            trusted = np.array([bool(r["trusted"]) for r in rs])
            entry["trusted"] = int(trusted.sum())
            entry["trusted_but_wrong"] = int((trusted & ~found).sum())
            entry["refused_but_right"] = int((~trusted & found).sum())
        out[method] = entry
    return out


# ------------------------------------------------------------------------------- images


def run_images(args: argparse.Namespace) -> dict[str, Any]:
    """Register rendered nucleus images from labels (nuclei step) and from intensities."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "registration"))
    from nuclei_phantoms import UM, about, make_scene, rotation
    from typer.testing import CliRunner

    from coframe.app.workspace import init_workspace, load_workspace
    from coframe.cli import app

    runner = CliRunner()
    rows: list[dict[str, Any]] = []
    for seed in range(args.count):
        rng = np.random.default_rng(seed)
        linear = (1 + rng.uniform(-0.05, 0.05)) * rotation(
            rng.uniform(0, 360), rng.uniform(-20, 20)
        )
        truth = about(linear, 24.0, tuple(rng.uniform(10, 18, 3)))
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            scene = make_scene(root, truth, seed=seed, xray_um=96, fixed_um=48)
            for how, flags in (
                ("nuclei", ["--fixed-labels", "lab"]),
                ("intensity", ["--steps", "search,similarity,affine"]),
            ):
                ws = init_workspace(root / how)
                ws = ws.add_image("xray", scene.xray, "xray", "xray")
                ws = ws.add_image("em", scene.em, "fibsem", "em")
                ws = ws.add_image("lab", scene.labels, "labels", "em")
                ws.save()
                t0 = time.perf_counter()
                res = runner.invoke(app, ["register", "xray", "em", "-w", str(root / how), *flags])
                seconds = time.perf_counter() - t0
                ws = load_workspace(root / how)
                err = math.inf
                if ws.edges:
                    edge = ws.load_edge(ws.edges[0])
                    pts = rng.uniform(4, 44, (500, 3)) * UM
                    err = float(np.max(np.linalg.norm(edge.apply(pts) - truth.apply(pts), axis=1)))
                rows.append(
                    {
                        "seed": seed,
                        "method": how,
                        "stored": bool(ws.edges),
                        "error_um": err / UM,
                        "seconds": seconds,
                        "exit": res.exit_code,
                    }
                )
                print(
                    f"images {seed:3d} {how:9} stored {bool(ws.edges)!s:5} "
                    f"error {err / UM:8.3f} um  {seconds:6.1f} s",
                    flush=True,
                )
    summary = {}
    for how in ("nuclei", "intensity"):
        rs = [r for r in rows if r["method"] == how]
        summary[how] = {
            "cases": len(rs),
            "stored": sum(r["stored"] for r in rs),
            "found": sum(r["error_um"] <= FOUND_UM for r in rs),
            "median_error_um": float(np.median([r["error_um"] for r in rs])),
            "median_seconds": float(np.median([r["seconds"] for r in rs])),
        }
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", choices=("demo", "atlas", "images"), default="demo")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--moving", type=int, default=2000, help="nuclei in the X-ray (demo)")
    parser.add_argument("--fixed", type=int, default=500, help="nuclei in the block (about)")
    parser.add_argument("--methods", default="coframe,open3d,cpd")
    parser.add_argument("--ransac-iterations", type=int, default=1_000_000)
    parser.add_argument("--cpd-cases", type=int, default=6, help="cases CPD runs on (slow)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.cases == "images":
        result: dict[str, Any] = run_images(args)
        print(json.dumps(result["summary"], indent=2))
    else:
        if args.cases == "demo":
            clouds = [("demo", demo_cloud(0, args.moving))]
        else:
            pts, source = atlas_cloud()
            print(f"atlas: {len(pts)} points from {source}")
            clouds = [("atlas", pts)]
        rows = run_points(clouds, args)
        result = {"rows": rows, "summary": summarise(rows)}
        print(json.dumps(result["summary"], indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
