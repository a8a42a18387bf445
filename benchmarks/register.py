"""Registration against itk-elastix and ANTsPy, side by side (not run by CI).

Run in the separate benchmark environment (the peers pin older libraries)::

    python3 -m venv /tmp/bench
    /tmp/bench/bin/pip install -e '.[bench]'
    /tmp/bench/bin/python benchmarks/register.py [--demo DIR] [--skip-demo]

Pairs (fixed <- moving, ground truth known):

- ``mni-affine``: nilearn's ICBM152 T1 (resampled to 1.5 mm) as fixed; as
  moving, an image of another contrast made from the GM and WM tissue maps
  (grey matter brightest), noisy, warped by a known affine.
- ``mni-deformable``: the same, warped by an affine and a smooth field
  (several Gaussian bumps, up to about 5 mm).
- ``demo``: the ``coframe demo`` sample: its X-ray (moving) onto its FIB-SEM
  (fixed) at the working levels coframe picks (the FIB-SEM level nearest the
  X-ray voxel), ground truth from the demo.

Methods: coframe (the ``multimodal`` preset for the MNI pairs, whose zero
background is real, and ``xray-to-fibsem`` for the demo, whose FIB-SEM zero
padding is masked; ``bspline`` appended for the deformable rows),
itk-elastix (default ``affine`` and ``affine`` + ``bspline`` parameter maps,
AdvancedMattesMutualInformation; warm time, cold time reported too) and
ANTsPy (``Affine`` and ``SyN``, mattes). Every method runs in its own
subprocess with 2 threads on the same arrays and starts from the same
frames; it reports the wall time of the registration call only and its own
peak RSS. TRE is measured on the same fixed foreground points (3000) for
all: the distance between where a method's FIXED -> MOVING map sends them
and where the ground truth does, in voxels of the fixed image and in physical
units.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Every method runs in a child process (this script with --child) that reports its own peak
# memory, so coframe, itk and ants are imported inside the functions that use them: a peer's
# child never loads coframe, nor coframe's child a peer.
THREADS = 2
TRE_POINTS = 3000
PAIRS = ("mni-affine", "mni-deformable", "demo")
METHODS = ("coframe", "elastix", "ants")


# --------------------------------------------------------------------------- pair data


def _nilearn_data() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def _load_mni(name: str) -> np.ndarray:
    import SimpleITK as sitk

    path = _nilearn_data() / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkFloat32))


def _mni_truth(kind: str, shape: tuple[int, ...], voxel: float, rng: np.random.Generator) -> Any:
    """The moving -> fixed warp ``G`` (numpy order, mm) used to render the moving image."""
    from coframe.transforms.affine import Affine
    from coframe.transforms.base import Chain
    from coframe.transforms.field import DisplacementField

    centre = (np.array(shape) - 1) / 2 * voxel
    a = np.deg2rad(8.0 if kind == "affine" else 4.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    lin = rot @ np.diag([1.05, 0.97, 1.02] if kind == "affine" else [1.03, 0.98, 1.01])
    lin[0, 2] += 0.03 if kind == "affine" else 0.0
    shift = np.array([4.0, -6.0, 3.0] if kind == "affine" else [2.0, -3.0, 1.5])
    affine = Affine.from_linear(lin, centre + shift - lin @ centre)
    if kind == "affine":
        return affine
    spacing = 3.0
    nodes_shape = tuple(int(np.ceil(n * voxel / spacing)) + 1 for n in shape)
    axes = [np.arange(n) * spacing for n in nodes_shape]
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    vectors = np.zeros(nodes.shape)
    for _ in range(10):
        c = centre + rng.uniform(-0.35, 0.35, 3) * np.array(shape) * voxel
        amplitude = rng.normal(0.0, 2.5, 3)
        weight = np.exp(-((nodes - c) ** 2).sum(-1) / (2 * 18.0**2))
        vectors += amplitude * weight[..., None]
    return Chain((affine, DisplacementField(vectors, np.zeros(3), np.full(3, spacing))))


def make_mni_pair(kind: str, out: Path) -> dict[str, Any]:
    """Render the MNI pair ``kind`` into ``out`` (npy arrays, truth points)."""
    from scipy import ndimage

    voxel = 1.5
    t1, gm, wm = (ndimage.zoom(_load_mni(n), 1 / voxel, order=1) for n in ("t1", "gm", "wm"))
    rng = np.random.default_rng(0)
    head = t1 > 5
    contrast = (40 + 0.7 * gm + 0.25 * wm) * head
    warp = _mni_truth(kind, t1.shape, voxel, rng)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in t1.shape], indexing="ij"), -1)
    source = warp.apply(grid.reshape(-1, 3) * voxel) / voxel
    moving = ndimage.map_coordinates(contrast, source.T, order=1, cval=0).reshape(t1.shape)
    moving = (moving + rng.normal(0, 4, moving.shape) * (moving > 0)).astype(np.float32)
    fixed = t1.astype(np.float32)
    index = np.argwhere(fixed > 20)
    pick = index[rng.choice(index.shape[0], TRE_POINTS, replace=False)]
    points = pick * voxel
    truth = warp.inverse().apply(points)
    meta = _save_pair(out, fixed, moving, (voxel,) * 3, (voxel,) * 3, points, truth, "mm", voxel)
    meta["preset"] = "multimodal"
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def make_demo_pair(demo: Path, out: Path) -> dict[str, Any]:
    """The demo's FIB-SEM (fixed, level nearest the X-ray voxel) and X-ray, in µm."""
    from coframe.app.workspace import load_workspace
    from coframe.registration.inputs import padding_mask
    from coframe.transforms.formats.dispatch import read_transform

    ws = load_workspace(demo)
    xray, fib = ws.open_image("xray"), ws.open_image("fibsem")
    level = fib.levels[fib.nearest_level(xray.levels[0].voxel_size)]
    fixed = level.read().astype(np.float32)
    moving_level = xray.levels[0]
    moving = moving_level.read().astype(np.float32)
    truth_map = read_transform(demo / "ground_truth" / "fibsem_to_xray.json", unit=ws.unit)
    rng = np.random.default_rng(0)
    mask = padding_mask(fixed, 2)
    index = np.argwhere(mask if mask is not None else np.ones(fixed.shape, bool))
    pick = index[rng.choice(index.shape[0], TRE_POINTS, replace=False)]
    points_nm = level.index_to_physical(pick)
    truth_nm = truth_map.apply(points_nm)
    scale = 1e-3  # nm -> µm for every method
    meta = _save_pair(
        out,
        fixed,
        moving,
        tuple(v * scale for v in level.voxel_size),
        tuple(v * scale for v in moving_level.voxel_size),
        points_nm * scale,
        truth_nm * scale,
        "µm",
        float(np.mean(level.voxel_size)) * scale,
        fixed_origin=tuple(v * scale for v in level.origin),
        moving_origin=tuple(v * scale for v in moving_level.origin),
    )
    if mask is not None:
        np.save(out / "fixed_mask.npy", mask.astype(np.uint8))
    meta["demo"] = str(demo)
    meta["fixed_level"] = level.path
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def _save_pair(
    out: Path,
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_voxel: tuple[float, ...],
    moving_voxel: tuple[float, ...],
    points: np.ndarray,
    truth: np.ndarray,
    unit: str,
    voxel: float,
    fixed_origin: tuple[float, ...] = (0.0, 0.0, 0.0),
    moving_origin: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "fixed.npy", fixed)
    np.save(out / "moving.npy", moving)
    np.save(out / "points.npy", points)
    np.save(out / "truth.npy", truth)
    meta = {
        "fixed_voxel": list(fixed_voxel),
        "moving_voxel": list(moving_voxel),
        "fixed_origin": list(fixed_origin),
        "moving_origin": list(moving_origin),
        "unit": unit,
        "voxel": voxel,
        "fixed_shape": list(fixed.shape),
        "moving_shape": list(moving.shape),
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


# --------------------------------------------------------------------------- methods (children)


def _coframe(data: Path, meta: dict[str, Any], deformable: bool) -> tuple[np.ndarray, float, str]:
    from coframe.registration.pipeline import register
    from coframe.registration.presets import load_preset, parse_overrides
    from coframe.resampling.writer import create_ome_zarr
    from coframe.volumes.open import open_volume

    preset = load_preset(meta.get("preset", "xray-to-fibsem"))
    if deformable:
        preset = preset.with_overrides({"steps": [*preset.steps, "bspline"]})
    overrides = os.environ.get("COFRAME_BENCH_SET", "")
    if overrides:
        preset = preset.with_overrides(parse_overrides(overrides.split(";")))
    volumes = []
    for role in ("fixed", "moving"):
        array = np.load(data / f"{role}.npy")
        path = data / f"{role}.zarr"
        if not path.exists():
            writer = create_ome_zarr(
                path,
                shape0=array.shape,
                voxel_size0=meta[f"{role}_voxel"],
                origin0=meta[f"{role}_origin"],
                dtype=np.float32,
                unit="micrometer" if meta["unit"] == "µm" else "millimeter",
                chunks=(64, 64, 64),
            )
            writer.write(0, (0, 0, 0), array)
            writer.write_metadata()
        unit = "micrometer" if meta["unit"] == "µm" else "millimeter"
        volumes.append(open_volume(path, unit=unit))
    fixed, moving = volumes
    start = time.perf_counter()
    result = register(moving, fixed, preset)
    seconds = time.perf_counter() - start
    points = np.load(data / "points.npy")
    steps = ", ".join(f"{s.name}{'' if s.accepted else ' (undone)'}" for s in result.steps)
    return result.transform.apply(points), seconds, steps


def _reversed(values: Any) -> np.ndarray:
    """Coordinates (last axis) in reverse order: ITK's (x, y, z) from numpy's (z, y, x) or back."""
    return np.asarray(values, dtype=np.float64)[..., ::-1].copy()


def _itk_image(array: np.ndarray, voxel: list[float], origin: list[float]) -> Any:
    """An ITK image of a numpy-order array; ITK wants (x, y, z) spacing and origin."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(v) for v in _reversed(voxel)))
    image.SetOrigin(tuple(float(v) for v in _reversed(origin)))
    return image


def _elastix(data: Path, meta: dict[str, Any], deformable: bool) -> tuple[np.ndarray, float, str]:
    import itk
    from scipy import ndimage

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(THREADS)
    fixed = _itk_image(np.load(data / "fixed.npy"), meta["fixed_voxel"], meta["fixed_origin"])
    moving = _itk_image(np.load(data / "moving.npy"), meta["moving_voxel"], meta["moving_origin"])
    mask_file = data / "fixed_mask.npy"
    mask = None
    if mask_file.exists():
        mask_array = np.load(mask_file).astype(np.uint8)
        mask = itk.image_from_array(np.ascontiguousarray(mask_array))
        mask.CopyInformation(fixed)
    params = itk.ParameterObject.New()
    affine = params.GetDefaultParameterMap("affine")
    affine["AutomaticTransformInitialization"] = ["true"]
    affine["AutomaticTransformInitializationMethod"] = ["GeometricalCenter"]
    params.AddParameterMap(affine)
    if deformable:
        params.AddParameterMap(params.GetDefaultParameterMap("bspline"))
    extra = {} if mask is None else {"fixed_mask": mask}
    cold_start = time.perf_counter()
    itk.elastix_registration_method(
        fixed, moving, parameter_object=params, log_to_console=False, **extra
    )
    cold = time.perf_counter() - cold_start
    start = time.perf_counter()
    _, result = itk.elastix_registration_method(
        fixed, moving, parameter_object=params, log_to_console=False, **extra
    )
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        field = itk.transformix_deformation_field(moving, result, output_directory=tmp)
    vectors = _reversed(itk.array_from_image(field))  # (z, y, x, 3), numpy components
    points = np.load(data / "points.npy")
    index = (points - np.asarray(meta["fixed_origin"])) / np.asarray(meta["fixed_voxel"])
    shift = np.stack(
        [ndimage.map_coordinates(vectors[..., k], index.T, order=1) for k in range(3)], 1
    )
    return points + shift, seconds, f"cold {cold:.2f} s"


def _ants(data: Path, meta: dict[str, Any], deformable: bool) -> tuple[np.ndarray, float, str]:
    import ants
    import pandas as pd

    # ANTsPy keeps the array axis order: its x, y, z are the numpy (z, y, x) axes here,
    # so physical points go in and come out in numpy order without reordering.
    fixed = ants.from_numpy(
        np.load(data / "fixed.npy"), origin=meta["fixed_origin"], spacing=meta["fixed_voxel"]
    )
    moving = ants.from_numpy(
        np.load(data / "moving.npy"), origin=meta["moving_origin"], spacing=meta["moving_voxel"]
    )
    kind = "SyN" if deformable else "Affine"
    extra = {}
    if (data / "fixed_mask.npy").exists():
        extra["mask"] = ants.from_numpy(
            np.load(data / "fixed_mask.npy").astype(np.float32),
            origin=meta["fixed_origin"],
            spacing=meta["fixed_voxel"],
        )
    start = time.perf_counter()
    result = ants.registration(
        fixed, moving, type_of_transform=kind, aff_metric="mattes", syn_metric="mattes", **extra
    )
    seconds = time.perf_counter() - start
    points = np.load(data / "points.npy")
    frame = pd.DataFrame(points, columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, frame, result["fwdtransforms"])
    return mapped[["x", "y", "z"]].to_numpy(), seconds, kind


def _peak_gb() -> float:
    """This process's own peak resident memory (VmHWM: ``ru_maxrss`` survives ``exec``)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def child(method: str, data: Path, deformable: bool) -> None:
    """Run one method on one pair and print its JSON line."""
    meta = json.loads((data / "meta.json").read_text())
    runner = {"coframe": _coframe, "elastix": _elastix, "ants": _ants}[method]
    mapped, seconds, note = runner(data, meta, deformable)
    truth = np.load(data / "truth.npy")
    errors = np.linalg.norm(mapped - truth, axis=1)
    peak = _peak_gb()
    print(
        json.dumps(
            {
                "method": method,
                "seconds": seconds,
                "peak_gb": peak,
                "mean": float(errors.mean()),
                "p95": float(np.percentile(errors, 95)),
                "max": float(errors.max()),
                "note": note,
            }
        )
    )


# --------------------------------------------------------------------------- driver


def _run_child(method: str, data: Path, deformable: bool, tmp: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(THREADS),
        OMP_NUM_THREADS=str(THREADS),
        OPENBLAS_NUM_THREADS=str(THREADS),
        TMPDIR=str(tmp),
    )
    args = [sys.executable, __file__, "--child", method, "--data", str(data)]
    if deformable:
        args.append("--deformable")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"method": method, "error": " | ".join(tail)}
    return json.loads(lines[-1])


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'pair':15} {'method':8} {'TRE mean/p95/max (vox)':>24} {'TRE mean/p95/max (phys)':>27} "
        f"{'time s':>7} {'peak GB':>7}  coframe ratio TRE/time  note"
    )
    out = [header, "-" * len(header)]
    for row in rows:
        if "error" in row:
            out.append(f"{row['pair']:15} {row['method']:8} failed: {row['error']}")
            continue
        v = row["voxel"]
        vox = f"{row['mean'] / v:.3f}/{row['p95'] / v:.3f}/{row['max'] / v:.3f}"
        phys = f"{row['mean']:.3g}/{row['p95']:.3g}/{row['max']:.3g} {row['unit']}"
        ratio = ""
        if row["method"] != "coframe" and row.get("coframe") is not None:
            c = row["coframe"]
            ratio = f"{c['mean'] / row['mean']:.2f} / {c['seconds'] / row['seconds']:.2f}"
        out.append(
            f"{row['pair']:15} {row['method']:8} {vox:>24} {phys:>27} {row['seconds']:7.2f} "
            f"{row['peak_gb']:7.2f}  {ratio:>22}  {row.get('note', '')}"
        )
    return "\n".join(out)


def main() -> None:
    """Parse the command line; run the children or the whole comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=METHODS)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--deformable", action="store_true")
    parser.add_argument("--demo", type=Path, help="An existing `coframe demo` directory.")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--tmp", type=Path)
    parser.add_argument(
        "--coframe-set",
        action="append",
        default=[],
        help="Override a coframe preset key (key=value), as `coframe register --set`.",
    )
    args = parser.parse_args()
    if args.coframe_set:
        os.environ["COFRAME_BENCH_SET"] = ";".join(args.coframe_set)
    if args.child:
        child(args.child, args.data, args.deformable)
        return
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="coframe-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    pairs = [p for p in args.pairs.split(",") if not (p == "demo" and args.skip_demo)]
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        data = tmp / pair
        if pair == "demo":
            demo = args.demo
            if demo is None:
                from coframe.demo.sample import make_demo

                demo = tmp / "demo-sample"
                if not (demo / "coframe.yaml").exists():
                    make_demo(demo, size="default", seed=0)
            meta = make_demo_pair(demo, data)
        else:
            meta = make_mni_pair(pair.removeprefix("mni-"), data)
        for deformable in (False, True) if pair == "demo" else (pair == "mni-deformable",):
            label = f"{pair}{'+def' if deformable and pair == 'demo' else ''}"
            results = []
            for method in args.methods.split(","):
                row = _run_child(method, data, deformable, tmp)
                row.update(pair=label, voxel=meta["voxel"], unit=meta["unit"])
                results.append(row)
                print(f"  {label} {method}: {row}", file=sys.stderr)
            ours = next((r for r in results if r["method"] == "coframe" and "error" not in r), None)
            for row in results:
                if "error" not in row:
                    row["coframe"] = ours
            rows.extend(results)
    print(_table(rows))


if __name__ == "__main__":
    main()
