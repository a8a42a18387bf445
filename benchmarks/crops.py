"""Crop cases on real multimodal scans for ``benchmarks/register.py`` ("register from anywhere").

A real pair (A, B) is two scans of one object that are already in register: the
benchmark's *frame* is an axis-aligned grid over A's foreground (numpy order z, y, x;
millimetres; origin 0). A case cuts a crop out of B through a known similarity
``S`` (crop millimetres -> frame millimetres)::

    S(c) = s R (c - c0) + p0

with the crop 1/8 to 1/2 of the scan per axis, centred off the scan's centre on B's
foreground, ``R`` a rotation of up to 180 degrees about one axis followed by a tilt of up
to 20 degrees about an axis perpendicular to it, and ``s`` in 0.92 - 1.08. Most cases
register the crop (moving) onto the whole of A (fixed); every fourth is the other way
round (fixed = the crop, moving = the whole of A), as coframe's X-ray -> FIB-SEM preset
registers the big X-ray onto the small FIB-SEM. Images, points and truth are made
here with numpy and scipy only (nibabel reads the files), never with coframe.

Real pairs (installed by the ``bench`` extra; nothing is downloaded at run time):

- ``s1-t1-epi`` (reported): pycortex's example subject S1 - its T1-weighted anatomical
  (``share/pycortex/db/S1/anatomicals/raw.nii.gz``, 256^3 at 1 mm) as A and the
  reference volume of its ``fullhead`` BOLD EPI session
  (``transforms/fullhead/reference.nii.gz``, 100x100x31 at 2.24x2.24x4.13 mm) as B,
  put in register by the alignment pycortex ships (``matrices.xfm``, ``coord``:
  anatomical world mm -> EPI voxel). One head, two MR contrasts, two acquisitions.
- ``avg152-t1-t2`` (reported): SPM's ``canonical/avg152T1.nii`` (A) and
  ``avg152T2.nii`` (B), the ICBM152 averages of T1- and T2-weighted scans of the same
  152 subjects (91x109x91 at 2 mm, one grid), read from the SPM archive inside the
  ``spm-runtime-r2025b`` wheel.
- ``avg152-t1-pd`` and ``s1-t1-retino`` (tuning, never reported with the others): the
  same A scans with B = ``avg152PD.nii`` (proton density) and B = the reference of S1's
  ``retinotopy`` EPI session (an oblique 72x72x22 slab at 2.25x2.25x2.5 mm).

Caveats: the S1 truth is pycortex's affine alignment, and EPI distortion is left in.
Mattes-MI fits of the whole native EPI onto the T1 started from that alignment move
head points by a median 2.6 mm (ANTs rigid), 5.6 mm (ANTs affine) and 10.7 mm
(SimpleITK rigid, head-masked): on S1 the 2 mm "found" criterion is partly out of
reach even from the truth, hence the looser "located" column. The avg152 images are
averages of real scans (smooth), in register by construction: the exact pair.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Voxel (mm) of every image handed to the methods: the working voxel of the crop cases.
VOXEL = 2.0
TRE_POINTS = 3000
REPORTED = ("s1-t1-epi", "avg152-t1-t2")
TUNING = ("avg152-t1-pd", "s1-t1-retino")
CROP_FRACTION = (1 / 8, 1 / 2)
MAX_TILT = 20.0
SCALE = (0.92, 1.08)
MIN_OFFSET_MM = 15.0
REVERSE_EVERY = 4


@dataclass(frozen=True)
class Scan:
    """One real volume: native array (file index order), world mm -> index map, foreground."""

    name: str
    source: str
    data: np.ndarray
    index_from_world: np.ndarray  # 4x4, world (x, y, z) mm -> native index
    threshold: float

    @property
    def spacing(self) -> np.ndarray:
        """Native voxel size along the file's index axes."""
        return np.linalg.norm(np.linalg.inv(self.index_from_world)[:3, :3], axis=0)


@dataclass(frozen=True)
class Frame:
    """An axis-aligned grid: numpy index (z, y, x) * voxel = frame mm; world = origin + mm[::-1]."""

    origin_world: np.ndarray
    shape: tuple[int, int, int]
    voxel: float

    def world(self, points: np.ndarray) -> np.ndarray:
        """World (x, y, z) mm of frame points (numpy order mm)."""
        return self.origin_world + np.asarray(points)[..., ::-1]

    def grid_points(self) -> np.ndarray:
        """Frame mm of every voxel, (N, 3), C order."""
        axes = [np.arange(n) * self.voxel for n in self.shape]
        return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


# --------------------------------------------------------------------------- real scans


def _package_file(distribution: str, suffix: str) -> Path:
    files = metadata.files(distribution) or []
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            return Path(str(f.locate())).resolve()
    raise FileNotFoundError(f"{suffix} is not in {distribution} (install the bench extra)")


def _nifti(raw: bytes | Path) -> Any:
    import nibabel as nib

    if isinstance(raw, Path):
        return nib.load(str(raw))
    return nib.Nifti1Image.from_bytes(raw)


def _foreground_threshold(data: np.ndarray) -> float:
    return float(0.15 * np.percentile(data, 99))


def _pycortex_scan(kind: str) -> Scan:
    """S1's T1 (``anat``) or the reference of one of its EPI sessions, with its world map."""
    if kind == "anat":
        path = _package_file("pycortex", "db/S1/anatomicals/raw.nii.gz")
        image = _nifti(path)
        index_from_world = np.linalg.inv(image.affine)
    else:
        path = _package_file("pycortex", f"db/S1/transforms/{kind}/reference.nii.gz")
        image = _nifti(path)
        # pycortex's ``coord`` maps the anatomical's world mm to this volume's voxel index
        xfm = json.loads((path.parent / "matrices.xfm").read_text())
        index_from_world = np.asarray(xfm["coord"], dtype=np.float64)
    data = np.asarray(image.get_fdata(dtype=np.float32))
    name = "S1 T1" if kind == "anat" else f"S1 {kind} EPI"
    source = "pycortex: share/pycortex/" + str(path).split("share/pycortex/")[-1]
    return Scan(name, source, data, index_from_world, _foreground_threshold(data))


def _spm_scan(name: str) -> Scan:
    """One of SPM's canonical ICBM152 averages from the archive in the spm-runtime wheel."""
    ctf = _package_file("spm-runtime-r2025b", "_spm/_spm.ctf")
    with zipfile.ZipFile(ctf) as archive:
        raw = archive.read(f"fsroot/_spm/cleaned/spm/canonical/{name}.nii")
    image = _nifti(raw)
    data = np.asarray(image.get_fdata(dtype=np.float32))
    source = f"spm-runtime-r2025b: _spm/_spm.ctf -> spm/canonical/{name}.nii"
    return Scan(name, source, data, np.linalg.inv(image.affine), _foreground_threshold(data))


def load_real_pair(name: str) -> tuple[Scan, Scan]:
    """The scans (A, B) of a named real pair."""
    if name == "s1-t1-epi":
        return _pycortex_scan("anat"), _pycortex_scan("fullhead")
    if name == "s1-t1-retino":
        return _pycortex_scan("anat"), _pycortex_scan("retinotopy")
    if name in ("avg152-t1-t2", "avg152-t1-pd"):
        return _spm_scan("avg152T1"), _spm_scan("avg152" + name[-2:].upper())
    raise ValueError(f"unknown real pair {name!r}")


# --------------------------------------------------------------------------- sampling


def _antialiased(scan: Scan, voxel: float) -> np.ndarray:
    """The native array smoothed for sampling at ``voxel`` (only where it is finer)."""
    from scipy import ndimage

    sigma = 0.5 * np.sqrt(np.maximum((voxel / scan.spacing) ** 2 - 1.0, 0.0))
    if not np.any(sigma > 0.05):
        return scan.data
    return ndimage.gaussian_filter(scan.data, sigma)


def sample(
    scan: Scan, world: np.ndarray, smoothed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Linear samples of a scan at world points (N, 3), and whether each is inside it."""
    from scipy import ndimage

    data = scan.data if smoothed is None else smoothed
    index = world @ scan.index_from_world[:3, :3].T + scan.index_from_world[:3, 3]
    inside = np.all((index >= -0.01) & (index <= np.array(data.shape) - 0.99), axis=1)
    values = ndimage.map_coordinates(data, index.T, order=1, cval=0.0)
    return values.astype(np.float32), inside


def scan_frame(scan: Scan, voxel: float, margin: float = 6.0) -> Frame:
    """An axis-aligned frame over a scan's foreground (bounding box plus margin)."""
    world = _foreground_world(scan)
    lo, hi = world.min(0) - margin, world.max(0) + margin
    shape = tuple(int(n) for n in (np.ceil((hi - lo) / voxel).astype(int) + 1)[::-1])
    return Frame(lo, shape, voxel)  # type: ignore[arg-type]


def _foreground_world(scan: Scan) -> np.ndarray:
    index = np.argwhere(scan.data > scan.threshold).astype(np.float64)
    world_from_index = np.linalg.inv(scan.index_from_world)
    return index @ world_from_index[:3, :3].T + world_from_index[:3, 3]


def render(scan: Scan, frame: Frame, smoothed: np.ndarray | None = None) -> np.ndarray:
    """A scan resampled onto a frame (numpy order)."""
    values, _ = sample(scan, frame.world(frame.grid_points()), smoothed)
    return values.reshape(frame.shape)


# --------------------------------------------------------------------------- similarity


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """The rotation by ``degrees`` about a unit ``axis`` (numpy order, Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def similarity(scale: float, rot: np.ndarray, c0: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """The 4x4 map ``c -> scale * rot (c - c0) + p0`` (numpy order mm)."""
    out = np.eye(4)
    out[:3, :3] = scale * rot
    out[:3, 3] = p0 - scale * rot @ c0
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4x4 affine applied to points (N, 3)."""
    return np.asarray(points) @ matrix[:3, :3].T + matrix[:3, 3]


# --------------------------------------------------------------------------- cases


@dataclass
class RealPairData:
    """A real pair prepared for cutting crops: A on its frame, B's foreground on it."""

    name: str
    a: Scan
    b: Scan
    frame: Frame
    a_frame: np.ndarray
    b_smoothed: np.ndarray
    b_foreground: np.ndarray  # frame voxels (numpy index) where B is foreground and inside
    b_extent: np.ndarray  # B's field of view within A's frame, numpy order mm


def prepare_pair(name: str, voxel: float = VOXEL, frame: Frame | None = None) -> RealPairData:
    """Load a real pair and render A (whole) on its frame (by default over A's foreground)."""
    a, b = load_real_pair(name)
    frame = scan_frame(a, voxel) if frame is None else frame
    a_frame = render(a, frame, _antialiased(a, frame.voxel))
    b_smoothed = _antialiased(b, frame.voxel)
    values, inside = sample(b, frame.world(frame.grid_points()), b_smoothed)
    fg = (values > b.threshold) & inside
    b_foreground = np.argwhere(fg.reshape(frame.shape))
    covered = np.argwhere(inside.reshape(frame.shape))
    b_extent = (covered.max(0) - covered.min(0)) * frame.voxel
    return RealPairData(name, a, b, frame, a_frame, b_smoothed, b_foreground, b_extent)


def _random_rotation(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    axis = int(rng.integers(3))
    angle = float(rng.uniform(-180.0, 180.0))
    main = np.zeros(3)
    main[axis] = 1.0
    direction = rng.normal(size=3)
    direction -= direction.dot(main) * main
    tilt = float(rng.uniform(0.0, MAX_TILT))
    rot = rotation(direction, tilt) @ rotation(main, angle)
    info = {"axis": axis, "angle_deg": angle, "tilt_deg": tilt, "tilt_axis": direction.tolist()}
    return rot, info


def cut_crop(
    pair: RealPairData,
    rng: np.random.Generator,
    shape: tuple[int, int, int] | None = None,
    tries: int = 400,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A crop of B through a random similarity: (crop, S as 4x4 crop mm -> frame mm, info)."""
    frame = pair.frame
    h = frame.voxel  # the crop keeps the frame's voxel
    frame_hi = (np.array(frame.shape) - 1) * frame.voxel
    centre = 0.5 * frame_hi
    for attempt in range(tries):
        if shape is None:
            fractions = rng.uniform(*CROP_FRACTION, size=3)
            extent = np.minimum(pair.b_extent, frame_hi)
            crop_shape = np.maximum(np.round(fractions * extent / h).astype(int), 8)
        else:
            fractions = None
            crop_shape = np.array(shape)
        rot, rot_info = _random_rotation(rng)
        scale = float(rng.uniform(*SCALE))
        p0 = pair.b_foreground[rng.integers(len(pair.b_foreground))] * frame.voxel
        p0 = p0 + rng.uniform(-0.5, 0.5, 3) * frame.voxel
        if np.linalg.norm(p0 - centre) < MIN_OFFSET_MM:
            continue
        c0 = (crop_shape - 1) / 2 * h
        s = similarity(scale, rot, c0, p0)
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in crop_shape], indexing="ij"))
        corners_mm = apply(s, corners.reshape(3, -1).T * h)
        if np.any(corners_mm < 0) or np.any(corners_mm > frame_hi):
            continue  # the crop must lie inside A's frame (the truth exists everywhere)
        _, inside = sample(pair.b, frame.world(corners_mm))
        if not inside.all():
            continue  # and inside B's field of view (no padding in the crop)
        axes = [np.arange(n) * h for n in crop_shape]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        values, _ = sample(pair.b, frame.world(apply(s, grid)), pair.b_smoothed)
        foreground = float((values > pair.b.threshold).mean())
        if foreground < 0.5:
            continue
        info = {
            "crop_shape": crop_shape.tolist(),
            "crop_voxel": h,
            "fractions": None if fractions is None else fractions.tolist(),
            "scale": scale,
            **rot_info,
            "centre_frame_mm": p0.tolist(),
            "offset_from_frame_centre_mm": float(np.linalg.norm(p0 - centre)),
            "foreground_fraction": foreground,
            "tries": attempt + 1,
        }
        return values.reshape(tuple(crop_shape)), s, info
    raise RuntimeError(f"no crop of {pair.name} met the constraints in {tries} tries")


def _pick(index: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    if len(index) > count:
        index = index[rng.choice(len(index), count, replace=False)]
    return index


def make_case(
    pair: RealPairData, case: int, rng: np.random.Generator, crop_is_fixed: bool
) -> dict[str, Any]:
    """One case's arrays and truth: fixed, moving, fixed points and their moving truth.

    Returns a dict with ``fixed``, ``moving`` (arrays), ``points`` (fixed mm, numpy order),
    ``truth`` (moving mm), ``truth_fixed_to_moving`` (4x4), ``error_scale`` (moving mm
    -> fixed mm: the similarity's scale or its inverse) and ``info``.
    """
    crop, s, info = cut_crop(pair, rng)
    h = pair.frame.voxel
    if crop_is_fixed:
        # fixed = the crop; FIXED -> MOVING is S itself; points on the crop's foreground
        index = _pick(np.argwhere(crop > pair.b.threshold), rng, TRE_POINTS)
        points = index * h
        truth_matrix = s
        fixed, moving = crop, pair.a_frame
        error_scale = 1.0 / info["scale"]
    else:
        # fixed = the whole of A; FIXED -> MOVING is S^-1; points on A's foreground that
        # the crop covers
        inverse = np.linalg.inv(s)
        index = np.argwhere(pair.a_frame > pair.a.threshold)
        in_crop = apply(inverse, index * h)
        hi = (np.array(crop.shape) - 1) * h
        covered = np.all((in_crop >= 0) & (in_crop <= hi), axis=1)
        index = _pick(index[covered], rng, TRE_POINTS)
        points = index * h
        truth_matrix = inverse
        fixed, moving = pair.a_frame, crop
        error_scale = info["scale"]
    truth = apply(truth_matrix, points)
    info.update(
        pair=pair.name,
        case=case,
        kind="crop-fixed" if crop_is_fixed else "crop-moving",
        a=pair.a.source,
        b=pair.b.source,
        points=len(points),
    )
    return {
        "fixed": fixed.astype(np.float32),
        "moving": moving.astype(np.float32),
        "points": points.astype(np.float64),
        "truth": truth,
        "truth_fixed_to_moving": truth_matrix,
        "error_scale": error_scale,
        "info": info,
    }


def case_plan(pairs: tuple[str, ...], count: int) -> list[tuple[str, int, bool]]:
    """(pair, case number, crop is fixed) for ``count`` cases spread over ``pairs``."""
    plan = []
    for k in range(count):
        pair = pairs[k % len(pairs)]
        number = k // len(pairs)
        plan.append((pair, number, number % REVERSE_EVERY == REVERSE_EVERY - 1))
    return plan


def timing_case(rng: np.random.Generator, fixed_size: int = 256, moving_size: int = 64) -> dict:
    """S1's T1 at 1 mm on a ``fixed_size``^3 grid (fixed) and a ``moving_size``^3 crop of its
    fullhead EPI at 1 mm through a random similarity (moving)."""
    a, _ = load_real_pair("s1-t1-epi")
    world = _foreground_world(a)
    centre = 0.5 * (world.min(0) + world.max(0))
    frame = Frame(centre - (fixed_size - 1) / 2, (fixed_size,) * 3, 1.0)  # type: ignore[arg-type]
    pair = prepare_pair("s1-t1-epi", frame=frame)
    crop, s, info = cut_crop(pair, rng, shape=(moving_size,) * 3)
    inverse = np.linalg.inv(s)
    index = np.argwhere(pair.a_frame > pair.a.threshold)
    in_crop = apply(inverse, index * frame.voxel)
    covered = np.all((in_crop >= 0) & (in_crop <= (moving_size - 1) * frame.voxel), axis=1)
    points = _pick(index[covered], rng, TRE_POINTS) * frame.voxel
    info.update(pair="s1-t1-epi", kind="timing", a=pair.a.source, b=pair.b.source)
    info["points"] = len(points)
    return {
        "fixed": pair.a_frame.astype(np.float32),
        "moving": crop.astype(np.float32),
        "points": points,
        "truth": apply(inverse, points),
        "truth_fixed_to_moving": inverse,
        "error_scale": info["scale"],
        "info": info,
    }


def describe(pair: RealPairData) -> dict[str, Any]:
    """Where a prepared pair's scans come from and the frame the cases use."""
    return {
        "A": pair.a.source,
        "B": pair.b.source,
        "A_native_voxel_mm": pair.a.spacing.tolist(),
        "B_native_voxel_mm": pair.b.spacing.tolist(),
        "frame_shape": list(pair.frame.shape),
        "frame_voxel_mm": pair.frame.voxel,
        "B_extent_in_frame_mm": pair.b_extent.tolist(),
        "role": "reported" if pair.name in REPORTED else "tuning",
    }
