"""The built-in CellMap-like synthetic sample with its ground truth and workspace.

:func:`make_demo` renders one seeded :class:`~coframe.demo.tissue.Tissue` as
every modality of a correlative volume-EM experiment and writes:

- ``fibsem.zarr/recon-1/em/fibsem-uint8``: OME-Zarr 0.4 in the CellMap layout
  (8 nm ``s0``, level ``i`` scaled ``2**i`` with half-voxel translations,
  uint8, zstd, ``/`` chunk keys). ``s0`` is declared at the full size of the
  block but holds only a crop; every level within a voxel budget is written
  whole and the finer ones hold the same physical crop. Irregular zero
  padding at the block edges, slice-wise intensity drift and noise; stain
  dark (inverted backscatter, as CellMap publishes ``fibsem-uint8``).
- ``fibsem.zarr/recon-1/labels/nuc``: nucleus instance ids, ``s0`` at 128 nm
  over the whole block, pyramid by the mode.
- ``xray.zarr``: OME-Zarr 0.4 in micrometres, the microCT scan of the whole
  trimmed resin block (:mod:`coframe.demo.geometry`): a field of view 5
  block edges wide on every axis (172 voxels of 0.7 µm for the default 24 µm
  block), contrast inverted relative to the EM, blurred and noisy, showing the
  resin block's top face and sides and the air beyond them. The FIB-SEM block
  sits off-centre in it (a fifth to a quarter of the field along y and x, just
  below the top face), turned by 35-40 degrees about its milling axis (the FIB-SEM
  slice axis z) with tilts of a few degrees, and 4-6.5% larger than its
  FIB-SEM voxel size says (the two calibrations differ); a smooth warp of up
  to 1.5 X-ray voxels follows.
- ``tem/section-*``: TEM images (TIFF, the last one MRC) of oblique sections
  cut next to the block's top face (wider than the block, inside the resin
  and the X-ray field), TEM polarity, each with its own gain and noise.
- ``ground_truth/``: the FIB-SEM -> X-ray point map as OME-NGFF RFC-5 metadata
  (a JSON file and a Zarr group holding the displacement field) and as plain
  numbers (with the X-ray grid and the block's offset in it), the pose of
  every section, and landmark pairs (BigWarp CSV/JSON).
- ``coframe.yaml``: the workspace naming every image.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy.spatial.transform import Rotation

from coframe.app.workspace import init_workspace
from coframe.core.atomic import write_text_atomic
from coframe.core.errors import CoframeError, OverwriteError
from coframe.demo.acquisition import FibsemAcquisition, index_blocks, worker_block, worker_init
from coframe.demo.geometry import DemoGeometry, demo_geometry
from coframe.demo.outputs import (
    EM_PATH,
    FIELD_ARRAY,
    LABELS_PATH,
    OUTPUTS,
    SIZES,
    TRUTH_DIR,
    TRUTH_NGFF,
    XRAY_PATH,
    DemoSample,
    TemSection,
)
from coframe.demo.progress import ProgressCallback, StepTimer
from coframe.demo.render import (
    add_grid_bars,
    render_nucleus_labels,
    render_tem,
    xray_attenuation,
    xray_image,
)
from coframe.demo.render_grid import section_render_grid, squeezed
from coframe.demo.tissue import ResinBlock, Tissue, TissueParams
from coframe.demo.truth import GroundTruth, fit_affine_2d_to_3d
from coframe.resampling.writer import MultiscaleWriter, create_ome_zarr
from coframe.transforms.formats.bigwarp import write_bigwarp_json, write_bigwarp_landmarks
from coframe.transforms.point_pairs import Landmarks
from coframe.volumes.write import write_mrc, write_tiff

#: Compression of the TEM sections along their y axis (the cutting direction).
TEM_COMPRESSION = 0.08

# --------------------------------------------------------------------------- writing steps


@dataclass
class _Context:
    root: Path
    acq: FibsemAcquisition
    steps: StepTimer
    geometry: DemoGeometry
    rng: np.random.Generator
    workers: int
    out: dict[str, Any] = field(default_factory=dict)

    @property
    def truth(self) -> GroundTruth:
        return self.geometry.truth


def _render_level(
    ctx: _Context,
    writer: MultiscaleWriter,
    level: int,
    box: tuple[tuple[int, int], ...],
    title: str,
) -> None:
    """Render one FIB-SEM level over an index box, in worker processes when it is large."""
    spec = writer.levels[level]
    v = spec.voxel_size[0]
    jobs = [
        (a, b, v)
        for a, b in index_blocks(box, (spec.chunks[0], 2 * spec.chunks[1], 2 * spec.chunks[2]))
    ]
    with ctx.steps.step(title, len(jobs)) as advance:
        if ctx.workers > 1 and len(jobs) >= 8:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                ctx.workers, mp_context=spawn, initializer=worker_init, initargs=(ctx.acq,)
            ) as pool:
                for a, data in pool.map(worker_block, jobs):
                    writer.write(level, a, data)
                    advance()
            return
        for job in jobs:
            a, data = ctx.acq.block(*job)
            writer.write(level, a, data)
            advance()


def _write_fibsem(ctx: _Context) -> None:
    size, acq = ctx.acq.size, ctx.acq
    n0 = size.block_voxels
    writer = create_ome_zarr(
        ctx.root / EM_PATH,
        shape0=(n0,) * 3,
        voxel_size0=(size.em_voxel,) * 3,
        dtype=np.uint8,
        chunks=size.chunks,
        n_levels=size.n_levels,
        name="/recon-1/em/fibsem-uint8",
        write_metadata=False,
    )
    levels = writer.levels
    whole = next(i for i, lvl in enumerate(levels) if math.prod(lvl.shape) <= size.whole_budget)
    # the crop straddles the envelope of the nucleus nearest the block centre, aligned to the
    # voxels of every crop-only level
    _, centres, _ = acq.tissue.nuclei()
    block_c = (acq.block_lo + acq.block_hi) / 2
    target = block_c
    if len(centres):
        k = int(np.argmin(np.linalg.norm(centres - block_c, axis=1)))
        cell = int(np.argmin(np.linalg.norm(acq.tissue.nuc_centre - centres[k], axis=1)))
        target = centres[k] + np.array([0.0, 0.0, acq.tissue.nuc_axes[cell].min()])
    align = 2**whole
    start = np.round(
        (target - acq.block_lo) / size.em_voxel - np.asarray(size.crop_shape) / 2
    ).astype(int)
    start = np.clip(start // align * align, 0, n0 - np.asarray(size.crop_shape))
    crop = tuple((int(a), int(a + n)) for a, n in zip(start, size.crop_shape, strict=True))
    _render_level(
        ctx, writer, whole, tuple((0, n) for n in levels[whole].shape), f"FIB-SEM s{whole} (whole)"
    )
    _render_level(ctx, writer, 0, crop, "FIB-SEM s0 crop")
    with ctx.steps.step("FIB-SEM pyramid", len(levels) - 2) as advance:
        for lvl in range(whole, len(levels) - 1):
            writer.downsample_level(lvl)
            advance()
        box: tuple[tuple[int, int], ...] = crop
        for lvl in range(0, whole - 1):
            box = writer.downsample_level(lvl, box=box)
            advance()
    writer.write_metadata()
    ctx.out.update(fibsem_levels=levels, whole_from=whole, crop_index=crop)


def _write_labels(ctx: _Context) -> None:
    size, acq = ctx.acq.size, ctx.acq
    v = size.label_voxel
    writer = create_ome_zarr(
        ctx.root / LABELS_PATH,
        shape0=(math.ceil(size.block_voxels * size.em_voxel / v),) * 3,
        voxel_size0=(v,) * 3,
        origin0=(v / 2 - size.em_voxel / 2,) * 3,  # same lower voxel edge as the EM
        dtype=np.uint32,
        chunks=size.chunks,
        n_levels=size.label_levels,
        name="/recon-1/labels/nuc",
        labels=True,
        extra_attributes={
            "image-label": {"version": "0.4", "source": {"image": "../../em/fibsem-uint8"}}
        },
        write_metadata=False,
    )
    blocks = index_blocks(
        tuple((0, n) for n in writer.levels[0].shape), tuple(2 * c for c in size.chunks)
    )
    with ctx.steps.step("nucleus labels", len(blocks) + len(writer.levels) - 1) as advance:
        for a, b in blocks:
            lo, hi = acq.block_lo + np.asarray(a) * v, acq.block_lo + np.asarray(b) * v
            lab = render_nucleus_labels(acq.tissue, lo, hi, v)
            lab[~acq.valid(lo, v, lab.shape)] = 0
            writer.write(0, a, lab)
            advance()
        for lvl in range(len(writer.levels) - 1):
            writer.downsample_level(lvl)
            advance()
    writer.write_metadata()
    ctx.out["label_levels"] = writer.levels


def _write_xray(ctx: _Context) -> None:
    v, shape = ctx.acq.size.xray_voxel, ctx.geometry.xray_shape
    pts = np.indices(shape).reshape(3, -1).T * v  # voxel centres, X-ray physical nm (origin 0)
    mu = np.empty(len(pts), np.float32)
    with ctx.steps.step("X-ray", 9) as advance:
        for part in np.array_split(np.arange(len(pts)), 8):
            mu[part] = xray_attenuation(ctx.acq.tissue, ctx.truth.inverse(pts[part]), v)
            advance()
        img = xray_image(mu.reshape(shape), psf_sigma=0.7, noise=0.03, seed=ctx.acq.seed + 7)
        writer = create_ome_zarr(
            ctx.root / XRAY_PATH,
            shape0=shape,
            voxel_size0=(v / 1000.0,) * 3,
            unit="micrometer",
            dtype=np.uint16,
            chunks=(64, 64, 64),
            n_levels=3,
            name="xray",
            write_metadata=False,
        )
        writer.write(0, (0, 0, 0), img)
        writer.downsample_level(0)
        writer.downsample_level(1)
        writer.write_metadata()
        advance()
    ctx.out["xray_levels"] = writer.levels


def _write_tem(ctx: _Context) -> None:
    size, acq, rng = ctx.acq.size, ctx.acq, ctx.rng
    px, shape, n = size.tem_pixel, (size.tem_pixels, size.tem_pixels), size.tem_count
    centre_yx = (acq.block_lo[1:] + acq.block_hi[1:]) / 2
    sections = []
    with ctx.steps.step("TEM sections", n) as advance:
        for i in range(1, n + 1):
            # cut parallel-ish to the block face, just above it; tilted about an in-plane axis,
            # then turned about the normal (rotations built in x, y, z and read in z, y, x)
            tilt, axis, spin = (
                12.0 - 8.0 * (i - 1) / max(n - 1, 1),
                rng.uniform(0, 2 * np.pi),
                rng.uniform(-30, 30),
            )
            lateral = rng.uniform(-0.12, 0.12, 2) * acq.length
            centre = np.array(
                [acq.block_lo[0] - acq.length * (0.03 + 0.04 * (i - 1)), *(centre_yx + lateral)]
            )
            tilt_rot = Rotation.from_rotvec(
                np.radians(tilt) * np.array([np.cos(axis), np.sin(axis), 0.0])
            )
            rot = (tilt_rot * Rotation.from_euler("z", spin, degrees=True)).as_matrix()[::-1, ::-1]
            e_y, e_x = rot[:, 1], rot[:, 2]
            # the knife compresses the section along its y axis: pixel rows lie farther apart
            # in the tissue than the pixel size says
            grid = squeezed(section_render_grid(centre, e_y, e_x, shape, px), TEM_COMPRESSION)
            e_y = e_y / (1.0 - TEM_COMPRESSION)
            gain, noise = float(rng.uniform(15_000, 35_000)), float(rng.uniform(0.01, 0.05))
            img = render_tem(acq.tissue, grid, gain=gain, noise=noise, seed=acq.seed + 100 + i)
            img = add_grid_bars(img, np.random.default_rng(acq.seed + 300 + i))
            if i == n:
                path = write_mrc(ctx.root / "tem" / f"section-{i}.mrc", img, px * 10.0)
            else:
                flavor = "imagej" if i % 2 else "ome"
                path = write_tiff(
                    ctx.root / "tem" / f"section-{i}.tif", img, (px, px), "nanometer", flavor=flavor
                )
            origin = grid.origin + (grid.shape[0] - 1) / 2 * grid.axes[0]  # pixel (0, 0), mid-plane
            to_fib = np.column_stack([e_y, e_x, origin])
            ticks = [np.linspace(0, (m - 1) * px, 9) for m in shape]
            uv = np.stack(np.meshgrid(*ticks, indexing="ij"), -1).reshape(-1, 2)
            fib = np.column_stack([uv, np.ones(len(uv))]) @ to_fib.T
            to_x, resid = fit_affine_2d_to_3d(uv, ctx.truth.forward(fib))
            sections.append(
                TemSection(f"tem-{i}", path, shape, px, tilt, to_fib, to_x, resid, TEM_COMPRESSION)
            )
            advance()
    ctx.out["tem"] = tuple(sections)


def _landmarks(ctx: _Context) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Nucleus and nucleolus centres inside the block (padded with random points to 20)."""
    acq = ctx.acq
    margin = 0.08 * (acq.block_hi - acq.block_lo)
    lo, hi = acq.block_lo + margin, acq.block_hi - margin
    ids, centres, nucleoli = acq.tissue.nuclei()
    pts, names = [], []
    for kind, where in (("nucleus", centres), ("nucleolus", nucleoli)):
        for lab, c in zip(ids, where, strict=True):
            if np.all((c >= lo) & (c <= hi)) and len(pts) < 40:
                pts.append(c)
                names.append(f"{kind}-{int(lab)}")
    while len(pts) < 20:
        names.append(f"point-{len(pts)}")
        pts.append(ctx.rng.uniform(lo, hi))
    fixed = np.asarray(pts)
    return fixed, ctx.truth.forward(fixed), names


def _write_truth(ctx: _Context) -> None:
    truth, gt = ctx.truth, ctx.root / TRUTH_DIR
    space = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    systems = [{"name": "fibsem", "axes": space}, {"name": "xray", "axes": space}]

    def scene(field_path: str) -> dict[str, Any]:
        steps = [
            {
                "type": "affine",
                "affine": np.column_stack([truth.matrix, truth.translation]).tolist(),
            },
            {"type": "displacements", "path": field_path, "interpolation": "linear"},
        ]
        sequence = {
            "type": "sequence",
            "name": "fibsem_to_xray",
            "input": "fibsem",
            "output": "xray",
            "transformations": steps,
        }
        return {"coordinateSystems": systems, "coordinateTransformations": [sequence]}

    def dump(name: str, obj: Any) -> None:
        write_text_atomic(gt / name, json.dumps(obj, indent=2) + "\n")

    with ctx.steps.step("ground truth", 3) as advance:
        root = zarr.open_group(str(gt / "fibsem_to_xray.zarr"), mode="w", zarr_format=2)
        root.attrs.update(scene(FIELD_ARRAY))
        arr = root.create_array(
            FIELD_ARRAY,
            shape=truth.field.shape,
            chunks=truth.field.shape,
            dtype=np.float32,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        arr[...] = truth.field.astype(np.float32)
        vector = {"name": "d", "type": "displacement", "unit": "nanometer", "discrete": True}
        grid = [
            {"type": "scale", "scale": [*truth.field_spacing.tolist(), 1.0]},
            {"type": "translation", "translation": [*truth.field_origin.tolist(), 0.0]},
        ]
        arr.attrs.update(
            {
                "coordinateSystems": [
                    {"name": "fibsem_to_xray_displacements", "axes": [*space, vector]}
                ],
                "coordinateTransformations": grid,
            }
        )
        dump(TRUTH_NGFF, scene(f"fibsem_to_xray.zarr/{FIELD_ARRAY}"))
        advance()
        numbers = {
            "description": (
                "FIB-SEM physical points p (nm, z, y, x) map to X-ray physical points x (nm): "
                "q = matrix @ p + translation, then x = q + d(q), d the displacement grid "
                "(trilinear, clamped at the border). matrix = R @ diag(scales), R = Rz @ Ry @ Rx, "
                "right-handed rotations about z, y, x by rotation_deg, on (z, y, x) vectors."
            ),
            "matrix": truth.matrix.tolist(),
            "translation": truth.translation.tolist(),
            "rotation_deg": truth.rotation_deg.tolist(),
            "scales": truth.scales.tolist(),
            "warp_amplitude_nm": truth.warp_amplitude,
            "field": {
                "path": f"fibsem_to_xray.zarr/{FIELD_ARRAY}",
                "shape": list(truth.field.shape),
                "origin": truth.field_origin.tolist(),
                "spacing": truth.field_spacing.tolist(),
                "vector_axis": "last",
            },
            "xray_voxel_size_nm": ctx.acq.size.xray_voxel,
            "xray_shape": list(ctx.geometry.xray_shape),
            "fibsem_block_edge_nm": ctx.geometry.length,
            "block_centre_offset_nm": ctx.geometry.offset.tolist(),
            "crop_index_s0": [list(b) for b in ctx.out["crop_index"]],
        }
        dump("fibsem_to_xray_numbers.json", numbers)
        poses = {
            s.name: {
                "path": str(s.path.relative_to(ctx.root)),
                "shape": list(s.shape),
                "pixel_size_nm": s.pixel_size,
                "tilt_deg": s.tilt_deg,
                "rows": ["z", "y", "x"],
                "columns": ["y", "x", "1"],
                "to_fibsem": s.to_fibsem.tolist(),
                "to_xray": s.to_xray.tolist(),
                "to_xray_max_residual_nm": s.xray_residual,
                "compression": s.compression,
            }
            for s in ctx.out["tem"]
        }
        dump("tem_poses.json", poses)
        advance()
        fixed, moving, names = _landmarks(ctx)  # moving = X-ray, fixed = FIB-SEM
        pairs = Landmarks(moving, fixed, names=tuple(names))
        write_bigwarp_landmarks(gt / "landmarks.csv", pairs)
        write_bigwarp_json(gt / "landmarks.json", pairs, kind=None)
        advance()
    ctx.out.update(landmarks_fixed=fixed, landmarks_moving=moving)


def _write_workspace(ctx: _Context) -> None:
    root = ctx.root
    ws = init_workspace(root, unit="nanometer")
    zyx = ("z", "y", "x")
    ws = ws.add_image("fibsem", root / EM_PATH, "fibsem", "fibsem", axes=zyx)
    ws = ws.add_image("nuc", root / LABELS_PATH, "labels", "fibsem", axes=zyx)
    ws = ws.add_image("xray", root / XRAY_PATH, "xray", "xray", axes=zyx)
    for s in ctx.out["tem"]:
        ws = ws.add_image(s.name, s.path, "tem", s.name, axes=("y", "x"))
    ws.save()


#: The generation steps, in order; each reads and extends the shared context.
GENERATION_STEPS: tuple[tuple[str, Callable[[_Context], None]], ...] = (
    ("fibsem", _write_fibsem),
    ("labels", _write_labels),
    ("xray", _write_xray),
    ("tem", _write_tem),
    ("ground truth", _write_truth),
    ("workspace", _write_workspace),
)


def make_demo(
    out_dir: str | Path,
    *,
    size: str = "default",
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> DemoSample:
    """Write the synthetic sample, its ground truth and its workspace into ``out_dir``.

    Parameters
    ----------
    out_dir
        Output directory (created if missing).
    size
        ``default`` (24 µm block in a 132 µm X-ray field), ``small`` (16 µm
        in 88 µm) or ``tiny`` (12.8 µm in 70 µm, a few seconds: the test
        fixture).
    seed
        Seed of the tissue, the ground-truth map and every noise.
    overwrite
        Replace the outputs of a previous demo in ``out_dir`` (other files are kept).
    progress
        Optional callback ``(step, done, total)``, e.g. from :func:`rich_reporter`.
    workers
        Processes for the large FIB-SEM renders (default: the CPU count, at most
        4; small renders stay in this process).

    Raises
    ------
    OverwriteError
        If demo outputs exist in ``out_dir`` and ``overwrite`` is false.
    """
    if size not in SIZES:
        raise CoframeError(
            f"unknown demo size {size!r}: expected one of {', '.join(SIZES)} (--size)"
        )
    spec, root = SIZES[size], Path(out_dir)
    existing = [root / name for name in OUTPUTS if (root / name).exists()]
    if existing and not overwrite:
        raise OverwriteError(
            f"output {existing[0]} already exists: pass --force to overwrite the demo in {root}"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng([seed, 2024])
    geo = demo_geometry(spec, rng)
    resin = ResinBlock(geo.face_z, geo.resin_centre_yx, geo.resin_half_width_yx)
    tissue = Tissue(
        seed,
        geo.tissue_lo,
        geo.tissue_hi,
        params=TissueParams().scaled(spec.tissue_scale),
        envelope_centre=geo.envelope_centre + rng.uniform(-0.05, 0.05, 3) * geo.length,
        envelope_radii=geo.envelope_radii,
        resin=resin,
    )
    steps = StepTimer(progress)
    n_workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), 4))
    acq = FibsemAcquisition(seed, spec, tissue, geo.block_lo, geo.block_hi)
    ctx = _Context(root, acq, steps, geo, rng, n_workers)
    for _, run in GENERATION_STEPS:
        run(ctx)
    o = ctx.out
    return DemoSample(
        root=root,
        size=size,
        seed=seed,
        workspace=root / "coframe.yaml",
        fibsem=root / EM_PATH,
        labels=root / LABELS_PATH,
        xray=root / XRAY_PATH,
        ground_truth=root / TRUTH_DIR,
        fibsem_levels=o["fibsem_levels"],
        whole_from=o["whole_from"],
        crop_index=o["crop_index"],
        label_levels=o["label_levels"],
        xray_levels=o["xray_levels"],
        tem=o["tem"],
        truth=geo.truth,
        landmarks_fixed=o["landmarks_fixed"],
        landmarks_moving=o["landmarks_moving"],
        block_offset=geo.offset,
        timings=dict(steps.timings),
    )
