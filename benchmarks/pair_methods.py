"""The methods of the full pairs (``register.py --cases pairs``), each run in a child process.

Every method is warmed up by a small run of the same kind in its own process
(libraries load, code compiles) before the timed call; the arrays are loaded
before it and no result image is written or warped inside it. The timed call
is the optimisation only, but for ANTs, whose library always writes its
transforms to files (the affine as ``.mat`` and, for SyN, the forward and
inverse fields as ``.nii.gz``) inside its call.

- ``coframe``: the pair's preset (``multimodal``; ``bspline`` appended for the
  deformable pairs) on in-memory volumes, ``seed`` = the repeat's seed.
- ``elastix`` (defaults): elastix's default ``affine`` map (and default
  ``bspline`` map), started at the geometric centres, ``WriteResultImage``
  false.
- ``elastix-matched``: ``rigid`` -> ``affine`` (-> ``bspline``) maps with
  coframe's levels (smoothing pyramid 4, 2, 1), iterations and samples per
  level, 32-bin Mattes MI, started at the centres of gravity (as coframe's
  moments), the B-spline grid at coframe's spacing (physical) refined 4, 2, 1
  as coframe's, no bending penalty, full-resolution images at every level.
- ``ants`` (defaults): ``ants.registration`` with ``Affine`` or ``SyN`` and
  ANTsPy's defaults (its SyN does no full-resolution iteration); its call also
  resamples both images in memory.
- ``ants-matched``: ``antsRegistration`` called directly (no warped images):
  ``Rigid`` then ``Affine`` (Mattes 32 bins, regular 25 % sampling, coframe's
  levels and iterations, smoothing in voxels), then for the deformable pairs
  ``SyN[0.1,3,0]`` with Mattes and (100, 70, 50, 20) iterations at shrink
  8, 4, 2, 1 (antsRegistrationSyN.sh's schedule), the mask (if any) on every
  stage, started at the centres of mass.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

Runner = tuple[np.ndarray, float, str, dict[str, Any]]
#: Seed of repeat ``r`` for every sampling method (elastix and ANTs read 0 as "unseeded").
SEED_BASE = 1000


# --------------------------------------------------------------------------- coframe


class _InMemory:
    """A numpy array as coframe's ArraySource (no file read inside the timing)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.chunks = tuple(min(64, n) for n in array.shape)

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        return np.array(self._array[box])


def _volume(array: np.ndarray, voxel: list[float], origin: list[float]) -> Any:
    from coframe.volumes.volume import Level, Volume

    level = Level("s0", _InMemory(array), tuple(voxel), tuple(origin))
    return Volume("memory", "memory", ("z", "y", "x"), "millimeter", (level,))


def _small_pair(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    a = ndimage.gaussian_filter(rng.random((size,) * 3), 2).astype(np.float32) * 100
    return a, np.roll(a, 2, axis=0)


def coframe(data: Path, meta: dict[str, Any], deformable: bool, seed: int) -> Runner:
    from coframe.registration.pipeline import register
    from coframe.registration.presets import load_preset

    preset = load_preset(meta.get("preset", "multimodal"))
    if deformable:
        preset = preset.with_overrides({"steps": [*preset.steps, "bspline"]})
    preset = preset.with_overrides({"seed": SEED_BASE + seed})
    a, b = _small_pair()
    start = time.perf_counter()
    register(_volume(b, [2.0] * 3, [0.0] * 3), _volume(a, [2.0] * 3, [0.0] * 3), preset)
    warm = time.perf_counter() - start
    fixed = _volume(np.load(data / "fixed.npy"), meta["fixed_voxel"], meta["fixed_origin"])
    moving = _volume(np.load(data / "moving.npy"), meta["moving_voxel"], meta["moving_origin"])
    start = time.perf_counter()
    result = register(moving, fixed, preset)
    seconds = time.perf_counter() - start
    steps = ", ".join(f"{s.name}{'' if s.accepted else ' (undone)'}" for s in result.steps)
    info = {
        "warm_up_seconds": warm,
        "steps": [
            {"name": s.name, "seconds": s.seconds, "accepted": s.accepted} for s in result.steps
        ],
        "working_voxel": result.working_voxel,
    }
    return result.transform.apply(np.load(data / "points.npy")), seconds, steps, info


# --------------------------------------------------------------------------- elastix


def _itk_image(array: np.ndarray, voxel: list[float], origin: list[float]) -> Any:
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(v) for v in voxel[::-1]))  # ITK wants (x, y, z)
    image.SetOrigin(tuple(float(v) for v in origin[::-1]))
    return image


def elastix_maps(itk: Any, meta: dict[str, Any], deformable: bool, matched: bool, seed: int) -> Any:
    """The parameter maps of the defaults or the matched row."""
    params = itk.ParameterObject.New()
    common = {"WriteResultImage": ["false"], "RandomSeed": [str(SEED_BASE + seed)]}
    if not matched:
        affine = params.GetDefaultParameterMap("affine")
        affine["AutomaticTransformInitialization"] = ["true"]
        affine["AutomaticTransformInitializationMethod"] = ["GeometricalCenter"]
        affine.update(common)
        params.AddParameterMap(affine)
        if deformable:
            bspline = params.GetDefaultParameterMap("bspline")
            bspline.update(common)
            params.AddParameterMap(bspline)
        return params
    m = meta["matched"]
    levels = len(m["shrink"])
    schedule = [str(f) for f in m["shrink"] for _ in range(3)]
    for name in ("rigid", "affine"):
        pmap = params.GetDefaultParameterMap(name, levels)
        pmap.update(common)
        pmap["ImagePyramidSchedule"] = schedule
        pmap["MaximumNumberOfIterations"] = [str(m["iterations"])]
        pmap["NumberOfSpatialSamples"] = [str(n) for n in m["samples"]]
        pmap["NumberOfHistogramBins"] = [str(m["bins"])]
        if name == "rigid":
            pmap["AutomaticTransformInitialization"] = ["true"]
            pmap["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
        params.AddParameterMap(pmap)
    if deformable:
        b = m["bspline"]
        blevels = len(b["shrink"])
        pmap = params.GetDefaultParameterMap("bspline", blevels)
        pmap.update(common)
        pmap["Metric"] = ["AdvancedMattesMutualInformation"]  # no bending penalty, as coframe
        pmap.pop("Metric0Weight", None)
        pmap.pop("Metric1Weight", None)
        pmap["ImagePyramidSchedule"] = [str(f) for f in b["shrink"] for _ in range(3)]
        pmap["FinalGridSpacingInPhysicalUnits"] = [str(b["grid_mm"])]
        pmap["GridSpacingSchedule"] = [str(2.0**k) for k in reversed(range(blevels))]
        pmap["MaximumNumberOfIterations"] = [str(b["iterations"])]
        pmap["NumberOfSpatialSamples"] = [str(b["points"])]
        pmap["NumberOfHistogramBins"] = [str(m["bins"])]
        params.AddParameterMap(pmap)
    return params


def _elastix_warm_up(itk: Any) -> float:
    start = time.perf_counter()
    a, b = _small_pair(24)
    params = itk.ParameterObject.New()
    for name in ("rigid", "affine", "bspline"):
        pmap = params.GetDefaultParameterMap(name, 1)
        pmap["MaximumNumberOfIterations"] = ["2"]
        pmap["WriteResultImage"] = ["false"]
        params.AddParameterMap(pmap)
    itk.elastix_registration_method(
        itk.image_from_array(a), itk.image_from_array(b), parameter_object=params,
        log_to_console=False,
    )  # fmt: skip
    return time.perf_counter() - start


def elastix(data: Path, meta: dict[str, Any], deformable: bool, seed: int, matched: bool) -> Runner:
    import itk
    from scipy import ndimage

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(meta.get("threads", 2))
    cold = _elastix_warm_up(itk)
    fixed = _itk_image(np.load(data / "fixed.npy"), meta["fixed_voxel"], meta["fixed_origin"])
    moving = _itk_image(np.load(data / "moving.npy"), meta["moving_voxel"], meta["moving_origin"])
    params = elastix_maps(itk, meta, deformable, matched, seed)
    start = time.perf_counter()
    _, result = itk.elastix_registration_method(
        fixed, moving, parameter_object=params, log_to_console=False
    )
    seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        field = itk.transformix_deformation_field(moving, result, output_directory=tmp)
    vectors = np.asarray(itk.array_from_image(field), dtype=np.float64)[..., ::-1]
    points = np.load(data / "points.npy")
    index = (points - np.asarray(meta["fixed_origin"])) / np.asarray(meta["fixed_voxel"])
    shift = np.stack(
        [ndimage.map_coordinates(vectors[..., k], index.T, order=1) for k in range(3)], 1
    )
    names = [
        result.GetParameterMap(i)["Transform"][0] for i in range(result.GetNumberOfParameterMaps())
    ]
    note = ("matched: " if matched else "defaults: ") + " -> ".join(names)
    return points + shift, seconds, note, {"warm_up_seconds": cold}


# --------------------------------------------------------------------------- ANTs


def ants_images(data: Path, meta: dict[str, Any]) -> tuple[Any, Any]:
    import ants

    # ANTsPy keeps the array axis order: its x, y, z are the numpy (z, y, x) axes here
    fixed = ants.from_numpy(
        np.load(data / "fixed.npy"), origin=meta["fixed_origin"], spacing=meta["fixed_voxel"]
    )
    moving = ants.from_numpy(
        np.load(data / "moving.npy"), origin=meta["moving_origin"], spacing=meta["moving_voxel"]
    )
    return fixed, moving


def ants_points(data: Path, transforms: list[str]) -> np.ndarray:
    import ants
    import pandas as pd

    frame = pd.DataFrame(np.load(data / "points.npy"), columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, frame, transforms)
    return mapped[["x", "y", "z"]].to_numpy()


def ants_matched_args(
    fixed: str,
    moving: str,
    mask: str,
    meta: dict[str, Any],
    deformable: bool,
    prefix: str,
    seed: int,
) -> list[str]:
    """``antsRegistration`` arguments of the matched row (images as ANTsPy pointer strings)."""
    m = meta["matched"]
    shrink = "x".join(str(f) for f in m["shrink"])
    smooth = "x".join(f"{s:g}" for s in m["smoothing"]) + "vox"
    iterations = "x".join([str(m["iterations"])] * len(m["shrink"]))
    mattes = f"Mattes[{fixed},{moving},1,{m['bins']},Regular,0.25]"
    args = ["--dimensionality", "3", "--float", "1", "--collapse-output-transforms", "1"]
    args += ["--output", prefix, "--interpolation", "Linear", "--use-histogram-matching", "0"]
    args += ["--winsorize-image-intensities", "[0.005,0.995]"]
    args += ["--initial-moving-transform", f"[{fixed},{moving},1]"]
    for kind in ("Rigid[0.1]", "Affine[0.1]"):
        args += ["--transform", kind, "--metric", mattes]
        args += ["--convergence", f"[{iterations},1e-6,10]"]
        args += ["--shrink-factors", shrink, "--smoothing-sigmas", smooth, "--masks", mask]
    if deformable:
        args += ["--transform", "SyN[0.1,3,0]", "--metric", f"Mattes[{fixed},{moving},1,32]"]
        args += ["--convergence", "[100x70x50x20,1e-6,10]"]
        args += ["--shrink-factors", "8x4x2x1", "--smoothing-sigmas", "3x2x1x0vox"]
        args += ["--masks", mask]
    args += ["--random-seed", str(SEED_BASE + seed)]
    return args


def _ants_warm_up() -> float:
    import ants

    start = time.perf_counter()
    a, b = _small_pair(24)
    ants.registration(
        ants.from_numpy(a), ants.from_numpy(b), type_of_transform="SyN",
        aff_iterations=(5, 5), aff_shrink_factors=(2, 1), aff_smoothing_sigmas=(1, 0),
        reg_iterations=(5, 5),
    )  # fmt: skip
    return time.perf_counter() - start


def ants(data: Path, meta: dict[str, Any], deformable: bool, seed: int, matched: bool) -> Runner:
    import ants as ants_module
    from ants.internal import get_lib_fn, get_pointer_string, process_arguments

    ants_module.config._random_seed = SEED_BASE + seed  # ants.registration reads it
    warm = _ants_warm_up()
    fixed, moving = ants_images(data, meta)
    mask = None
    if (data / "fixed_mask.npy").exists():
        mask = ants_module.from_numpy(
            np.load(data / "fixed_mask.npy").astype(np.float32),
            origin=meta["fixed_origin"], spacing=meta["fixed_voxel"],
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if not matched:
            extra = {} if mask is None else {"mask": mask}
            kind = "SyN" if deformable else "Affine"
            start = time.perf_counter()
            result = ants_module.registration(
                fixed, moving, type_of_transform=kind, outprefix=str(Path(tmp) / "r"), **extra
            )
            seconds = time.perf_counter() - start
            return (
                ants_points(data, result["fwdtransforms"]),
                seconds,
                f"defaults: {kind}",
                {"warm_up_seconds": warm},
            )
        f32, m32 = fixed.clone("float"), moving.clone("float")
        mask_str = "[NA,NA]" if mask is None else f"[{get_pointer_string(mask != 0)},NA]"
        prefix = str(Path(tmp) / "r")
        args = ants_matched_args(
            get_pointer_string(f32), get_pointer_string(m32), mask_str, meta, deformable, prefix,
            seed,
        )  # fmt: skip
        start = time.perf_counter()
        code = get_lib_fn("antsRegistration")(process_arguments(args))
        seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"antsRegistration failed with code {code}")
        transforms = [prefix + "0GenericAffine.mat"]
        if deformable:
            transforms.insert(0, prefix + "1Warp.nii.gz")
        mapped = ants_points(data, transforms)
    stages = "Rigid -> Affine" + (" -> SyN (100,70,50,20)" if deformable else "")
    return mapped, seconds, f"matched: {stages}", {"warm_up_seconds": warm}


def run(method: str, data: Path, meta: dict[str, Any], deformable: bool, seed: int) -> Runner:
    """Dispatch one method of the full pairs."""
    if method == "coframe":
        return coframe(data, meta, deformable, seed)
    if method in ("elastix", "elastix-matched"):
        return elastix(data, meta, deformable, seed, method.endswith("-matched"))
    if method in ("ants", "ants-matched"):
        return ants(data, meta, deformable, seed, method.endswith("-matched"))
    raise ValueError(f"{method} is not a method of the full pairs")
