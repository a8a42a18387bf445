"""What ``coframe demo`` writes and where: paths, sample sizes and the record of a sample.

:class:`DemoSample` is what :func:`coframe.demo.sample.make_demo` returns: the
paths it wrote, the levels of every image, the TEM sections and the ground
truth, with :meth:`DemoSample.summary` for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coframe.demo.truth import GroundTruth
from coframe.volumes.write import LevelSpec

#: The FIB-SEM image and the nucleus labels (CellMap layout), the X-ray and the truth.
EM_PATH = "fibsem.zarr/recon-1/em/fibsem-uint8"
LABELS_PATH = "fibsem.zarr/recon-1/labels/nuc"
XRAY_PATH = "xray.zarr"
TRUTH_DIR = "ground_truth"
FIELD_ARRAY = "coordinateTransformations/fibsem_to_xray_displacements"
#: Where the demo's resampling step writes, inside the workspace.
RESAMPLED_DIR = "resampled"
#: Top-level outputs of a demo, replaced by ``--force`` (with the transforms its steps stored
#: and the images they resampled, which belong to the workspace being replaced).
OUTPUTS = ("coframe.yaml", "fibsem.zarr", XRAY_PATH, "tem", TRUTH_DIR, "transforms", RESAMPLED_DIR)
#: The FIB-SEM -> X-ray ground truth as OME-NGFF (inside :data:`TRUTH_DIR`).
TRUTH_NGFF = "fibsem_to_xray.json"


@dataclass(frozen=True)
class DemoSize:
    """Dimensions of a demo sample (lengths in nm)."""

    name: str
    block_voxels: int  # FIB-SEM s0 voxels per axis
    n_levels: int
    whole_budget: int  # levels of at most this many voxels are written over the whole block
    crop_shape: tuple[int, int, int]  # s0 voxels of the crop
    chunks: tuple[int, int, int]
    label_levels: int
    xray_voxel: float  # X-ray voxel (nm)
    tem_count: int
    tem_pixel: float
    tem_pixels: int
    tissue_scale: float = 1.0
    field_nodes: int = 12
    em_voxel: float = 8.0
    label_voxel: float = 128.0
    em_noise: float = 10.0
    xray_fov: float = 5.0  # X-ray field of view per axis, in FIB-SEM block edges


SIZES: dict[str, DemoSize] = {
    "default": DemoSize(
        "default", 3000, 8, 8_000_000, (128, 384, 384), (64, 128, 128), 4, 700.0, 3, 50.0, 800
    ),
    "small": DemoSize(
        "small", 2000, 7, 8_000_000, (128, 256, 256), (64, 128, 128), 3, 1000.0, 3, 50.0, 400
    ),
    "tiny": DemoSize(
        "tiny",
        1600,
        6,
        1_200_000,
        (64, 128, 128),
        (32, 64, 64),
        2,
        450.0,
        2,
        80.0,
        80,
        0.6,
        8,
        xray_fov=3.2,
    ),
}


@dataclass(frozen=True)
class TemSection:
    """One written TEM section and where it was cut.

    ``to_fibsem`` and ``to_xray`` are 3x3 matrices (rows z, y, x; columns y,
    x, 1) mapping section physical coordinates (nm; pixel ``(i, j)`` at
    ``(i * pixel_size, j * pixel_size)``) into FIB-SEM and X-ray physical
    space; the X-ray one is a least-squares fit of the warped map, its
    largest residual in ``xray_residual`` (nm). The section is compressed by
    ``compression`` along its y axis (its y lengths are ``1 - compression``
    of the tissue's), so the y column of both maps is longer than 1.
    """

    name: str
    path: Path
    shape: tuple[int, int]
    pixel_size: float
    tilt_deg: float
    to_fibsem: np.ndarray
    to_xray: np.ndarray
    xray_residual: float
    compression: float = 0.0


@dataclass(frozen=True)
class DemoSample:
    """Everything :func:`make_demo` wrote, with the ground-truth numbers."""

    root: Path
    size: str
    seed: int
    workspace: Path
    fibsem: Path
    labels: Path
    xray: Path
    ground_truth: Path
    fibsem_levels: tuple[LevelSpec, ...]
    whole_from: int
    crop_index: tuple[tuple[int, int], ...]
    label_levels: tuple[LevelSpec, ...]
    xray_levels: tuple[LevelSpec, ...]
    tem: tuple[TemSection, ...]
    truth: GroundTruth
    landmarks_fixed: np.ndarray
    landmarks_moving: np.ndarray
    block_offset: np.ndarray  # block centre - X-ray field centre (nm, z, y, x), before the warp
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def crop_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical box (voxel edges, nm) of the written ``s0`` crop."""
        v = np.asarray(self.fibsem_levels[0].voxel_size)
        idx = np.asarray(self.crop_index, float)
        return idx[:, 0] * v - v / 2, idx[:, 1] * v - v / 2

    def summary(self) -> str:
        """A human-readable account of what was written."""

        def rel(p: Path) -> str:
            return str(p.relative_to(self.root))

        t, (lo, hi), lab, x0 = self.truth, self.crop_box, self.label_levels[0], self.xray_levels[0]
        lines = [
            f"demo sample '{self.size}' (seed {self.seed}) in {self.root}",
            f"  workspace    {rel(self.workspace)}",
        ]
        lines.append(f"  FIB-SEM      {rel(self.fibsem)}  (OME-Zarr 0.4, uint8)")
        for i, lvl in enumerate(self.fibsem_levels):
            part = "whole block" if i >= self.whole_from else "crop only"
            size = f"{_shape(lvl.shape):>18} voxels of {lvl.voxel_size[0]:g} nm"
            lines.append(f"    {lvl.path:<3} {size}, {part}")
        lines.append(f"    crop {_um(lo)} .. {_um(hi)} µm (z, y, x)")
        size = f"s0 {_shape(lab.shape)} of {lab.voxel_size[0]:g} nm"
        lines.append(f"  labels       {rel(self.labels)}  ({size})")
        size = f"{_shape(x0.shape)} voxels of {x0.voxel_size[0]:g} µm"
        lines.append(f"  X-ray        {rel(self.xray)}  ({size})")
        fov = np.asarray(x0.shape) * np.asarray(x0.voxel_size) * 1000.0
        edge = self.fibsem_levels[0].shape[0] * self.fibsem_levels[0].voxel_size[0]
        lines.append(
            f"    field of view {_um(fov)} µm, {fov.min() / edge:.1f}x the FIB-SEM block; block "
            f"centre {_um(self.block_offset)} µm from the field's centre"
        )
        for s in self.tem:
            size = f"{_shape(s.shape)} pixels of {s.pixel_size:g} nm, tilted {s.tilt_deg:.1f}°"
            lines.append(f"  {s.name:<12} {rel(s.path)}  ({size})")
        lines.append(f"  ground truth {rel(self.ground_truth)}/  (FIB-SEM -> X-ray)")
        lines.append(
            f"    rotation {_fmt(t.rotation_deg)}° about z, y, x; scales {_fmt(t.scales, 4)}"
        )
        lines.append(
            f"    translation {_um(t.translation)} µm; warp up to {t.warp_amplitude:.0f} nm"
        )
        lines.append(f"    {len(self.landmarks_fixed)} landmark pairs (BigWarp CSV and JSON)")
        return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(int(n)) for n in shape)


def _fmt(values: np.ndarray, digits: int = 2) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


def _um(values: np.ndarray) -> str:
    return _fmt(np.asarray(values) / 1000.0)
