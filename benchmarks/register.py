"""Registration against itk-elastix and ANTsPy, side by side (not run by CI).

Run in the separate benchmark environment (the peers pin older libraries)::

    python3 -m venv /tmp/bench
    /tmp/bench/bin/pip install -e '.[bench]'
    /tmp/bench/bin/python benchmarks/register.py [--pairs P,...] [--warps 3] [--repeats 5]
    /tmp/bench/bin/python benchmarks/register.py --quick     # 1 warp, 1 repeat: a check
    /tmp/bench/bin/python benchmarks/register.py --cases crops [--count 24] [--seed 0]
    /tmp/bench/bin/python benchmarks/register.py --cases crops-tuning
    /tmp/bench/bin/python benchmarks/register.py --cases search-timing [--repeats 3]

``--cases pairs`` (the default) runs the full pairs (below); ``crops`` runs the
"register from anywhere" cases on real multimodal scans (``benchmarks/crops.py``
says which scans, how the crops are cut and how the truth is made): ``--count``
cases spread over the reported real pairs, each method in its own child process,
and a table of the fraction found (median TRE within 1 working voxel = 2 mm,
the fixed voxel every method is given), median and max TRE, median time and peak
memory, with coframe's refusals and trusted-but-wrong results counted apart.
``crops-tuning`` runs the same on the tuning pairs (tune presets there, report
``crops``). ``search-timing`` times coframe's search step on a 64^3 moving image
(1 mm) inside a 256^3 fixed image (1 mm), both from the real S1 pair. Results also
go to ``--out`` (JSON; default ``results-<cases>.json`` in the temporary folder).

``--cases pairs`` (the default): the full pairs of ``benchmarks/pairs.py``
(tuning pairs on nilearn's MNI template, evaluation pairs on SPM's avg152 T1/T2,
a floor pair with no warp), each under ``--warps`` seeded random warps made with
numpy and scipy (``benchmarks/truth.py``), every method ``--repeats`` times round
robin with the repeat's seed; methods and their defaults/matched settings are in
``benchmarks/pair_methods.py``. Results: ``benchmarks/results/register.json``
(``--out``); ``benchmarks/tables.py`` renders them. ``--quick`` runs one warp and
one repeat.

Crop cases, matched effort: every method gets the same two arrays (2 mm voxels,
origin 0 each) and no start but the images' geometry. coframe: the
``multimodal`` preset with no start (its search step runs when one image is
under about half the other on some axis; the result's ``trust`` and ``search``
extras are recorded). elastix: ``rigid`` then ``affine`` maps, 3 resolutions,
200 iterations, 4000 random samples, 32-bin Mattes MI, the rigid map initialised
at the geometric centres (``AutomaticTransformInitialization``), no result
image; the elastix modules are loaded by a tiny warm-up run before the timed
call. ANTs ``Affine``: from the image centres (a translation file), 3 levels
(shrink 4, 2, 1; smoothing 2, 1, 0 voxels), 200 iterations each, Mattes MI, 20 %
of the voxels. ANTs search: ``ants.affine_initializer`` (rotations about two
principal axes over the whole circle in 30 degree steps from the centres of
mass, 5 local iterations each, on both images smoothed and resampled to 4 mm,
as at 2 mm it took 80-95 s a case) and then the same ``Affine`` at 2 mm.
elastix cannot always start a crop-as-moving case (too few fixed samples fall
inside a small moving image): such a run is counted as failed, with elastix's
reason. TRE is measured in the fixed space (a moving-space error times the
similarity's scale).
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

import crop_summary
import crops
import numpy as np
import pair_methods
import pairs
import results

#: What a method's child returns: mapped points, seconds, a note and extra facts.
Runner = tuple[np.ndarray, float, str, dict[str, Any]]

# Every method runs in a child process (this script with --child) that reports its own peak
# memory, so coframe, itk and ants are imported inside the functions that use them: a peer's
# child never loads coframe, nor coframe's child a peer.
THREADS = 2
TRE_POINTS = 3000
METHODS = ("coframe", "elastix", "ants", "ants-search")
CASES = ("pairs", "crops", "crops-tuning", "search-timing")
#: Matched effort of the peers on the crop cases (see the module docstring).
LEVELS = {"shrink": (4, 2, 1), "smooth": (2, 1, 0), "iterations": 200, "samples": 4000}
ANTS_SEARCH = {"search_factor": 30, "radian_fraction": 1.0, "local_search_iterations": 5}
#: ``affine_initializer`` runs on both images smoothed and resampled to this many working voxels.
ANTS_SEARCH_SHRINK = 2


# --------------------------------------------------------------------------- case data


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


def _coframe(data: Path, meta: dict[str, Any], deformable: bool) -> Runner:
    from coframe.registration.pipeline import register
    from coframe.registration.presets import load_preset, parse_overrides
    from coframe.resampling.writer import create_ome_zarr
    from coframe.volumes.open import open_volume

    preset = load_preset(meta.get("preset", "xray-to-fibsem"))
    if deformable:
        preset = preset.with_overrides({"steps": [*preset.steps, "bspline"]})
    if meta.get("coframe_set"):
        preset = preset.with_overrides(meta["coframe_set"])
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
    trust = result.extras.get("trust")
    trust = None if trust is None else trust.to_dict()
    search = result.extras.get("search")
    runner = None
    if search is not None and search.get("runner_up") is not None:
        runner = search["refined"][search["runner_up"]]
    info = {
        "steps": [
            {
                "name": s.name,
                "seconds": s.seconds,
                "accepted": s.accepted,
                "metric": [_plain(s.metric_before), _plain(s.metric_after)],
            }
            for s in result.steps
        ],
        "search_seconds": sum(s.seconds for s in result.steps if s.name == "search"),
        "searched": search is not None,
        "trusted": True if trust is None else bool(trust["trusted"]),
        "trust_reported": trust is not None,
        "trust": trust,
        "search": _plain(search),
        "runner_up": runner,
        "working_voxel": result.working_voxel,
        "levels": result.levels(),
    }
    return result.transform.apply(points), seconds, steps, info


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of a result's extras (long arrays shortened)."""
    if depth > 6:
        return repr(value)[:200]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value[:32]]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{value.shape}"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN (a search step has no metric before it)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)[:200]


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


def _elastix_maps(itk: Any, meta: dict[str, Any], deformable: bool) -> Any:
    """The parameter maps: elastix's default affine map (the pairs) or matched rigid -> affine."""
    params = itk.ParameterObject.New()
    if meta.get("family") != "crops":
        affine = params.GetDefaultParameterMap("affine")
        affine["AutomaticTransformInitialization"] = ["true"]
        affine["AutomaticTransformInitializationMethod"] = ["GeometricalCenter"]
        params.AddParameterMap(affine)
        if deformable:
            params.AddParameterMap(params.GetDefaultParameterMap("bspline"))
        return params
    for name in ("rigid", "affine"):
        pmap = params.GetDefaultParameterMap(name, len(LEVELS["shrink"]))
        pmap["MaximumNumberOfIterations"] = [str(LEVELS["iterations"])]
        pmap["NumberOfSpatialSamples"] = [str(LEVELS["samples"])]
        pmap["NumberOfHistogramBins"] = ["32"]
        pmap["WriteResultImage"] = ["false"]
        # a small moving image covers a sliver of a large fixed one: accept few valid samples
        pmap["RequiredRatioOfValidSamples"] = ["0.01"]
        pmap["MaximumNumberOfSamplingAttempts"] = ["8"]
        if name == "rigid":
            pmap["AutomaticTransformInitialization"] = ["true"]
            pmap["AutomaticTransformInitializationMethod"] = ["GeometricalCenter"]
        params.AddParameterMap(pmap)
    return params


def _elastix_warm_up(itk: Any) -> float:
    """Load elastix's modules with a tiny run; returns its seconds (the cold cost)."""
    from scipy import ndimage

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    array = ndimage.gaussian_filter(rng.random((24, 24, 24)), 2).astype(np.float32)
    image = itk.image_from_array(array)
    params = itk.ParameterObject.New()
    pmap = params.GetDefaultParameterMap("rigid", 1)
    pmap["MaximumNumberOfIterations"] = ["2"]
    pmap["WriteResultImage"] = ["false"]
    params.AddParameterMap(pmap)
    itk.elastix_registration_method(image, image, parameter_object=params, log_to_console=False)
    return time.perf_counter() - start


def _elastix_reason(logs: Path) -> str:
    """The ``Description:`` line of an elastix log (why a run stopped), if any."""
    for log in sorted(logs.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "Description:" in line:
                return "elastix: " + line.split("Description:", 1)[1].split("):", 1)[-1].strip()
    return ""


def _elastix(data: Path, meta: dict[str, Any], deformable: bool) -> Runner:
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
    params = _elastix_maps(itk, meta, deformable)
    extra = {} if mask is None else {"fixed_mask": mask}
    if meta.get("family") == "crops":
        cold = _elastix_warm_up(itk)
    else:
        cold_start = time.perf_counter()
        itk.elastix_registration_method(
            fixed, moving, parameter_object=params, log_to_console=False, **extra
        )
        cold = time.perf_counter() - cold_start
    with tempfile.TemporaryDirectory() as logs:
        start = time.perf_counter()
        try:
            _, result = itk.elastix_registration_method(
                fixed, moving, parameter_object=params, log_to_console=False,
                log_to_file=True, output_directory=logs, **extra,
            )  # fmt: skip
        except RuntimeError as e:
            raise RuntimeError(_elastix_reason(Path(logs)) or str(e)) from e
        seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        field = itk.transformix_deformation_field(moving, result, output_directory=tmp)
    vectors = _reversed(itk.array_from_image(field))  # (z, y, x, 3), numpy components
    points = np.load(data / "points.npy")
    index = (points - np.asarray(meta["fixed_origin"])) / np.asarray(meta["fixed_voxel"])
    shift = np.stack(
        [ndimage.map_coordinates(vectors[..., k], index.T, order=1) for k in range(3)], 1
    )
    return points + shift, seconds, f"cold {cold:.2f} s", {"cold_seconds": cold}


def _ants_matched() -> dict[str, Any]:
    """``ants.registration`` settings matched to the other methods' effort (crop cases)."""
    return {
        "aff_metric": "mattes",
        "aff_iterations": (LEVELS["iterations"],) * len(LEVELS["shrink"]),
        "aff_shrink_factors": LEVELS["shrink"],
        "aff_smoothing_sigmas": LEVELS["smooth"],
    }


def _ants_centres(fixed: Any, moving: Any, path: Path) -> str:
    """A translation file putting the fixed image's centre on the moving image's centre."""
    import ants

    def centre(image: Any) -> np.ndarray:
        size = np.array(image.shape) - 1
        return np.asarray(image.origin) + size / 2 * np.asarray(image.spacing)

    shift = centre(moving) - centre(fixed)  # ANTs maps fixed points into moving space
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=shift.tolist()
    )
    ants.write_transform(tx, str(path))
    return str(path)


def _ants(data: Path, meta: dict[str, Any], deformable: bool) -> Runner:
    import ants

    fixed, moving = pair_methods.ants_images(data, meta)
    kind = "SyN" if deformable else "Affine"
    extra: dict[str, Any] = {}
    if (data / "fixed_mask.npy").exists():
        extra["mask"] = ants.from_numpy(
            np.load(data / "fixed_mask.npy").astype(np.float32),
            origin=meta["fixed_origin"],
            spacing=meta["fixed_voxel"],
        )
    if meta.get("family") == "crops":
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            init = _ants_centres(fixed, moving, Path(tmp) / "centres.mat")
            result = ants.registration(
                fixed,
                moving,
                type_of_transform="Affine",
                initial_transform=[init],
                **_ants_matched(),
            )
            seconds = time.perf_counter() - start
            mapped = pair_methods.ants_points(data, result["fwdtransforms"])
            return mapped, seconds, "Affine, centres", {}
    start = time.perf_counter()
    result = ants.registration(
        fixed, moving, type_of_transform=kind, aff_metric="mattes", syn_metric="mattes", **extra
    )
    seconds = time.perf_counter() - start
    return pair_methods.ants_points(data, result["fwdtransforms"]), seconds, kind, {}


def _ants_search(data: Path, meta: dict[str, Any], deformable: bool) -> Runner:
    """ANTs' own rotation search (``affine_initializer``) and then its ``Affine``."""
    import ants

    del deformable
    fixed, moving = pair_methods.ants_images(data, meta)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        coarse = [
            ants.resample_image(
                ants.smooth_image(image, 1.0),  # sigma 1 (physical units: 1 voxel here)
                tuple(float(v) * ANTS_SEARCH_SHRINK for v in image.spacing),
                use_voxels=False,
                interp_type=0,
            )
            for image in (fixed, moving)
        ]
        init = ants.affine_initializer(
            *coarse, use_principal_axis=False, txfn=str(Path(tmp) / "search.mat"), **ANTS_SEARCH
        )
        searched = time.perf_counter() - start
        result = ants.registration(
            fixed, moving, type_of_transform="Affine", initial_transform=[init],
            **_ants_matched(),
        )  # fmt: skip
        seconds = time.perf_counter() - start
        mapped = pair_methods.ants_points(data, result["fwdtransforms"])
    note = f"affine_initializer {searched:.1f} s + Affine"
    return mapped, seconds, note, {"search_seconds": searched}


def _peak_gb() -> float:
    """This process's own peak resident memory (VmHWM: ``ru_maxrss`` survives ``exec``)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def child(method: str, data: Path, deformable: bool, seed: int = 0) -> None:
    """Run one method on one pair and print its JSON line."""
    meta = json.loads((data / "meta.json").read_text())
    if meta.get("family") == "pairs":
        mapped, seconds, note, info = pair_methods.run(method, data, meta, deformable, seed)
    else:
        runner = {
            "coframe": _coframe, "elastix": _elastix, "ants": _ants, "ants-search": _ants_search
        }  # fmt: skip
        mapped, seconds, note, info = runner[method](data, meta, deformable)
    truth = np.load(data / "truth.npy")
    # in the moving space, times the moving -> fixed scale (1 but for the crop cases)
    errors = np.linalg.norm(mapped - truth, axis=1) * float(meta.get("error_scale", 1.0))
    peak = _peak_gb()
    print(
        json.dumps(
            {
                "method": method,
                "seconds": seconds,
                "peak_gb": peak,
                "mean": float(errors.mean()),
                "median": float(np.median(errors)),
                "p95": float(np.percentile(errors, 95)),
                "max": float(errors.max()),
                "note": note,
                "info": info,
            }
        )
    )


# --------------------------------------------------------------------------- driver


def _run_child(
    method: str,
    data: Path,
    deformable: bool,
    tmp: Path,
    timeout: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(THREADS),
        OMP_NUM_THREADS=str(THREADS),
        OPENBLAS_NUM_THREADS=str(THREADS),
        TMPDIR=str(tmp),
    )
    args = [sys.executable, __file__, "--child", method, "--data", str(data)]
    args += ["--run-seed", str(seed)]
    if deformable:
        args.append("--deformable")
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd=tmp, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"method": method, "error": tail[-1] if tail else f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def main() -> None:
    """Parse the command line; run the children or the whole comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=tuple(dict.fromkeys(METHODS + pairs.PAIR_METHODS)))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--deformable", action="store_true")
    parser.add_argument("--cases", choices=CASES, default="pairs")
    parser.add_argument("--pairs", default=",".join(pairs.PAIRS), help="Full pairs to run.")
    parser.add_argument(
        "--methods",
        help=f"Default: {','.join(pairs.PAIR_METHODS)} (pairs), {','.join(METHODS)} (crops).",
    )
    parser.add_argument("--warps", type=int, default=3, help="Seeded random warps per full pair.")
    parser.add_argument("--quick", action="store_true", help="Full pairs: 1 warp, 1 repeat.")
    parser.add_argument("--run-seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=24, help="Crop cases, over the pairs.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the crop cases.")
    parser.add_argument(
        "--repeats", type=int, help="Runs per warp of the full pairs (5), of the search timing (3)."
    )
    parser.add_argument(
        "--timeout", type=float, help="Seconds per child run (1800 full pairs, 600 otherwise)."
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Results JSON (default: benchmarks/results/register.json for "
        "the full pairs, results-<cases>.json in the temporary folder otherwise).",
    )
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
        child(args.child, args.data, args.deformable, args.run_seed)
        return
    if args.repeats is None:
        args.repeats = 5 if args.cases == "pairs" else 3
    if args.timeout is None:
        args.timeout = 1800.0 if args.cases == "pairs" else 600.0
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="coframe-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.cases != "pairs":
        out = args.out or tmp / f"results-{args.cases}.json"
        run_crops(args, tmp, out)
        return
    if args.quick:
        args.warps, args.repeats = 1, 1
    meta = results.provenance()

    def save(partial: dict[str, Any]) -> None:
        results.write("register", partial, meta, args.out)

    report = pairs.run_pairs(args, tmp, _run_child, save)
    print(pairs.table(report))
    print(f"results: {results.write('register', report, meta, args.out)}")


# --------------------------------------------------------------------------- crop cases


def _save_case(data: Path, case: dict[str, Any], coframe_set: dict[str, Any] | None) -> dict:
    """Write one crop case in the pairs' layout (npy arrays, meta.json) for the children."""
    h = crops.VOXEL if case["info"]["kind"] != "timing" else 1.0
    meta = _save_pair(
        data, case["fixed"], case["moving"], (h,) * 3, (h,) * 3,
        case["points"], case["truth"], "mm", h,
    )  # fmt: skip
    meta.update(
        family="crops",
        preset="multimodal",
        error_scale=case["error_scale"],
        truth_fixed_to_moving=np.asarray(case["truth_fixed_to_moving"]).tolist(),
        case=case["info"],
    )
    if coframe_set:
        meta["coframe_set"] = coframe_set
    (data / "meta.json").write_text(json.dumps(meta))
    return meta


def run_crops(args: argparse.Namespace, tmp: Path, out: Path) -> None:
    """The crop cases (reported or tuning pairs) or the search timing: run, print, write."""
    methods = (args.methods or ",".join(METHODS)).split(",")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if args.cases == "search-timing":
        methods = args.methods.split(",") if args.methods else ["coframe"]
        case = crops.timing_case(np.random.default_rng([args.seed, 99]))
        forced = {"steps": ["search", "rigid", "affine"], "working.max_voxels": 256**3 + 1}
        meta = _save_case(tmp / "search-timing", case, forced)
        for repeat in range(args.repeats):
            for method in methods:
                row = _run_child(method, tmp / "search-timing", False, tmp, args.timeout)
                row.update(case="timing", repeat=repeat, voxel=1.0, kind="timing")
                print(f"  timing {repeat} {method}: {crop_summary.brief(row)}", file=sys.stderr)
                rows.append(row)
        report = crop_summary.timing(rows, meta)
    else:
        pairs = crops.REPORTED if args.cases == "crops" else crops.TUNING
        prepared: dict[str, crops.RealPairData] = {}
        metas = []
        for pair, number, reverse in crops.case_plan(pairs, args.count):
            if pair not in prepared:
                prepared[pair] = crops.prepare_pair(pair)
            rng = np.random.default_rng([args.seed, pairs.index(pair), number])
            case = crops.make_case(prepared[pair], number, rng, reverse)
            label = f"{pair}-{number:02d}"
            meta = _save_case(tmp / label, case, None)
            metas.append({"case": label, **meta["case"]})
            for method in methods:
                row = _run_child(method, tmp / label, False, tmp, args.timeout)
                row.update(case=label, pair=pair, kind=meta["case"]["kind"], voxel=crops.VOXEL)
                print(f"  {label} {method}: {crop_summary.brief(row)}", file=sys.stderr)
                rows.append(row)
        report = crop_summary.summarise(rows, methods, crops.VOXEL)
        report["cases"] = metas
        report["pairs"] = {name: crops.describe(prepared[name]) for name in prepared}
    report.update(
        family=args.cases,
        seed=args.seed,
        count=args.count,
        threads=THREADS,
        total_seconds=time.perf_counter() - started,
        rows=rows,
        command=" ".join(sys.argv),
    )
    print(crop_summary.table(report))
    out.write_text(json.dumps(report, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
