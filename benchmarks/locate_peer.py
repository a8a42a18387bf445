"""A peer baseline for ``benchmarks/locate.py``: SimpleITK slice-to-volume from a grid of starts.

The section is a one-slice 3D image (fixed), the volume the moving image; a
rigid ``Euler3DTransform`` about the section centre maps section points into
the volume. Starts: every combination of a normal (Fibonacci points on the
whole sphere), an in-plane rotation (0, 90, 180, 270 degrees) and a centre on a
grid over the volume's foreground, taken in a seeded random order. From each
start SimpleITK runs Mattes mutual information (32 bins, 20 % random samples;
the section's contrast is not the volume's) with regular-step gradient
descent at one level (the volume smoothed once by one voxel); the start with
the lowest final metric wins. Starts are tried until the time budget
(coframe's time on the same section) runs out. numpy order (z, y, x)
outside, ITK order (x, y, z) inside.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

#: Starts of the grid: normals on the sphere, in-plane rotations, centres per axis.
NORMALS = 48
ROTATIONS = (0.0, 90.0, 180.0, 270.0)
CENTRES_PER_AXIS = 3


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)])


def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(normal, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(normal, e1)


def starts(volume: Any, threshold: float, rng: np.random.Generator) -> list[tuple]:
    """(normal, in-plane degrees, centre) of every start, numpy order, shuffled."""
    fg = np.argwhere(volume.array > threshold)
    lo, hi = fg.min(0), fg.max(0)
    axes = [np.linspace(a, b, CENTRES_PER_AXIS + 2)[1:-1] for a, b in zip(lo, hi, strict=True)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = np.asarray(volume.origin) + centres * np.asarray(volume.spacing)
    out = [
        (n, r, c) for n in _fibonacci_sphere(NORMALS) for r in ROTATIONS for c in centres
    ]  # fmt: skip
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _images(section: Any, volume: Any) -> tuple[Any, Any]:
    import SimpleITK as sitk

    fixed = sitk.GetImageFromArray(section.array[None].astype(np.float32))
    pixel = float(section.spacing[0])
    fixed.SetSpacing((float(section.spacing[1]), pixel, pixel))
    fixed.SetOrigin((float(section.origin[1]), float(section.origin[0]), 0.0))
    moving = sitk.GetImageFromArray(volume.array.astype(np.float32))
    moving.SetSpacing(tuple(float(v) for v in volume.spacing[::-1]))
    moving.SetOrigin(tuple(float(v) for v in volume.origin[::-1]))
    return fixed, moving


def _initial(normal: np.ndarray, degrees: float, centre: np.ndarray, section_centre: np.ndarray):
    import SimpleITK as sitk

    e1, e2 = _basis(normal)
    a = np.deg2rad(degrees)
    ey = np.cos(a) * e1 + np.sin(a) * e2  # image of the section's y axis (numpy order)
    ex = -np.sin(a) * e1 + np.cos(a) * e2  # of its x axis
    r = np.column_stack([ex[::-1], ey[::-1], np.cross(ex[::-1], ey[::-1])])  # ITK (x, y, z)
    tx = sitk.Euler3DTransform()
    c = np.array([section_centre[1], section_centre[0], 0.0])
    tx.SetCenter(tuple(c))
    tx.SetMatrix(tuple(r.ravel()))
    tx.SetTranslation(tuple(centre[::-1] - c))
    return tx


def _method(fixed: Any, seed: int, iterations: int) -> Any:
    import SimpleITK as sitk

    m = sitk.ImageRegistrationMethod()
    m.SetMetricAsMattesMutualInformation(32)
    m.SetMetricSamplingStrategy(m.RANDOM)
    m.SetMetricSamplingPercentage(0.2, seed)
    m.SetInterpolator(sitk.sitkLinear)
    m.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.01, numberOfIterations=iterations, relaxationFactor=0.6
    )
    m.SetOptimizerScalesFromPhysicalShift()
    m.SetShrinkFactorsPerLevel([1])
    m.SetSmoothingSigmasPerLevel([0.0])
    return m


def locate(
    section: Any, volume: Any, budget: float, threshold: float, seed: int, iterations: int = 40
) -> dict[str, Any]:
    """Best pose found within ``budget`` seconds: its 2D -> 3D matrix, metric and starts tried."""
    import SimpleITK as sitk

    started = time.perf_counter()
    fixed, moving = _images(section, volume)
    moving = sitk.SmoothingRecursiveGaussian(moving, float(np.mean(volume.spacing)))
    rng = np.random.default_rng(seed)
    best: tuple[float, Any] | None = None
    tried = 0
    section_centre = np.asarray(section.center, dtype=float)
    for normal, degrees, centre in starts(volume, threshold, rng):
        if time.perf_counter() - started > budget:
            break
        m = _method(fixed, seed + tried, iterations)
        m.SetInitialTransform(_initial(normal, degrees, centre, section_centre), inPlace=True)
        try:
            tx = m.Execute(fixed, moving)
            value = m.GetMetricValue()
        except RuntimeError:  # too few samples inside the volume from this start
            tried += 1
            continue
        tried += 1
        if best is None or value < best[0]:
            best = (value, sitk.Euler3DTransform(tx))
    seconds = time.perf_counter() - started
    if best is None:
        return {"matrix": None, "metric": None, "starts": tried, "seconds": seconds}
    return {"matrix": _matrix(best[1]), "metric": best[0], "starts": tried, "seconds": seconds}


def _matrix(tx: Any) -> np.ndarray:
    """The ``[linear | t]`` (3x3, numpy order) of section (y, x) -> volume (z, y, x)."""
    origin = np.array(tx.TransformPoint((0.0, 0.0, 0.0)))
    ex = np.array(tx.TransformPoint((1.0, 0.0, 0.0))) - origin
    ey = np.array(tx.TransformPoint((0.0, 1.0, 0.0))) - origin
    return np.column_stack([ey[::-1], ex[::-1], origin[::-1]])
