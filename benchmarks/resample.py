"""Chunked resampling against SimpleITK and scipy, side by side (not run by CI).

Run ``python benchmarks/resample.py [--sizes 256,512,1024] [--big 2048] [--tmp DIR]``.

(a) an affine, (b) an affine + displacement-field chain and (b') a
B-spline + affine chain (as a registration stores its deformable result;
sizes up to ``--bspline-max``) resample an ``N^3`` uint8 volume onto an
``N^3`` grid with these methods:

- coframe: :func:`coframe.resampling.engine.resample` reading an OME-Zarr source
  and writing an OME-Zarr output (level 0 only, no pyramid), local threads,
  256 MB tasks;
- sitk: ``sitk.Resample`` on the whole array in memory (load excluded, the
  result is not written);
- sitk+write: the same, then the result written as coframe writes level 0
  (Zarr v2 through tensorstore, same chunks and compressor) inside the
  timing, which compares like with like;
- scipy: ``ndimage.affine_transform`` order 1 in memory (affine only).

Each method runs in its own subprocess that reports its own peak RSS
(``VmHWM``), so peaks never mix; library imports, the in-memory methods'
loading of the source and the removal of a previous repeat's output are
outside the timings; with ``--repeat R`` the methods take turns R times and
the fastest of each method's R runs counts (the largest peak is kept).
Printed: voxels/s, peak RSS and the largest voxel difference to SimpleITK.
(c) resamples a lazily synthesised source (an ArraySource that renders
blocks on demand) onto 512^3 and ``--big``^3 grids and compares time per
voxel.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNKS = (64, 128, 128)


# --------------------------------------------------------------------------- inputs


def pattern(start: tuple[int, ...], shape: tuple[int, ...], period: float = 1.0) -> np.ndarray:
    """A smooth uint8 texture of an index box (sums of sines; cheap and compressible)."""
    z, y, x = (
        np.arange(a, a + n, dtype=np.float32) * period for a, n in zip(start, shape, strict=True)
    )
    value = (
        60.0 * np.sin(z / 9.0)[:, None, None]
        + 50.0 * np.sin(y / 13.0 + 0.4)[None, :, None]
        + 40.0 * np.sin(x / 7.0 + 1.1)[None, None, :]
        + 20.0 * np.sin((z[:, None, None] + x[None, None, :]) / 23.0)
    )
    return np.clip(value + 128.0, 0, 255).astype(np.uint8)


class SynthArray:
    """An ArraySource whose voxels are rendered on demand by :func:`pattern`."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dtype = np.dtype(np.uint8)
        self.chunks = CHUNKS

    def read(self, box: tuple[slice, ...]) -> np.ndarray:
        """Render a box slab by slab.

        Float temporaries stay a few MB, as in a reader that decodes chunks
        straight to uint8.
        """
        start = tuple(int(s.start) for s in box)
        shape = tuple(int(s.stop - s.start) for s in box)
        out = np.empty(shape, dtype=np.uint8)
        step = max(1, (1 << 22) // max(1, shape[1] * shape[2]))
        for z in range(0, shape[0], step):
            n = min(step, shape[0] - z)
            out[z : z + n] = pattern((start[0] + z, *start[1:]), (n, *shape[1:]))
        return out


@dataclass(frozen=True)
class SynthSource:
    """A picklable spec of a lazily synthesised ``n^3`` uint8 source (1 nm voxels)."""

    n: int

    def open(self) -> Any:
        from coframe.volumes.volume import Level, Volume

        level = Level("s0", SynthArray((self.n,) * 3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        return Volume(f"synth://{self.n}", "synthetic", ("z", "y", "x"), "nanometer", (level,))

    def describe(self) -> dict[str, Any]:
        return {"synthetic": self.n}


def chain(case: str, n: int) -> Any:
    """The output -> source map of a case on an ``n^3`` grid of 1 nm voxels."""
    from coframe.transforms.affine import Affine
    from coframe.transforms.field import DisplacementField

    a = math.radians(4.0)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    centre = np.full(3, (n - 1) / 2.0)
    linear = rot @ np.diag([1.02, 0.99, 1.01])
    affine = Affine.from_linear(linear, centre - linear @ centre + np.array([3.0, -2.5, 1.5]))
    if case == "affine":
        return affine
    rng = np.random.default_rng(0)
    from scipy import ndimage

    if case == "bspline":  # as a registration stores it: B-spline first, then the affine
        from coframe.transforms.base import Chain
        from coframe.transforms.bspline import BSpline

        nodes = 10
        spacing = n / (nodes - 3)
        coefficients = ndimage.gaussian_filter(
            rng.normal(0, 1.0, (nodes,) * 3 + (3,)), (1, 1, 1, 0)
        )
        coefficients *= 2.0 / np.abs(coefficients).max()  # up to about 2 voxels
        spline = BSpline((-spacing,) * 3, (spacing,) * 3, np.eye(3), (nodes,) * 3, coefficients)
        return Chain((spline, affine))

    nodes = 24
    spacing = (n + 2 * 0.1 * n) / (nodes - 1)
    vectors = ndimage.gaussian_filter(rng.normal(0, 1.0, (nodes,) * 3 + (3,)), (2, 2, 2, 0))
    vectors *= 2.0 / np.abs(vectors).max()  # up to 2 voxels
    field = DisplacementField(vectors, (-0.1 * n,) * 3, (spacing,) * 3)
    return affine.then(field)


def make_source(root: Path, n: int) -> Path:
    """Write the ``n^3`` source as OME-Zarr (once)."""
    from coframe.resampling.writer import create_ome_zarr

    path = root / f"src-{n}.zarr"
    if (path / "s0" / ".zarray").exists():
        return path
    w = create_ome_zarr(
        path,
        shape0=(n,) * 3,
        voxel_size0=(1.0,) * 3,
        dtype=np.uint8,
        chunks=CHUNKS,
        overwrite=True,
    )
    step = CHUNKS[0] * 2
    for z in range(0, n, step):
        h = min(step, n - z)
        w.write(0, (z, 0, 0), pattern((z, 0, 0), (h, n, n)))
    return path


# --------------------------------------------------------------------------- one measurement


def _peak_rss_gb() -> float:
    """Peak resident memory of this process (``VmHWM``: reset by exec, unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _load(src: Path) -> np.ndarray:
    import zarr

    return zarr.open_array(str(src / "s0"), mode="r")[...]


def _write_level0(out: Path, data: np.ndarray) -> None:
    """Write an array as coframe writes level 0: Zarr v2 via tensorstore, same chunks and codec."""
    import tensorstore as ts

    from coframe.resampling.writer import DEFAULT_COMPRESSOR
    from coframe.volumes.write import compressors

    codec = compressors(DEFAULT_COMPRESSOR, None, 2)["compressors"]
    metadata = {
        "shape": list(data.shape),
        "chunks": list(CHUNKS),
        "dtype": data.dtype.str,
        "compressor": None if codec is None else codec.get_config(),
        "dimension_separator": "/",
    }
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(out / "s0")}}
    context = ts.Context({"file_io_sync": False})  # as coframe's writer
    array = ts.open(
        {**spec, "metadata": metadata}, create=True, delete_existing=True, context=context
    ).result()
    array.write(data).result()


def measure(method: str, case: str, n: int, root: Path, out: Path) -> dict[str, Any]:
    """Run one method in this process; return seconds, voxels and peak RSS."""
    from coframe.resampling.plan import OutputGrid

    grid = OutputGrid((n,) * 3, (1.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", CHUNKS)
    t = chain(case, n)
    if out.is_dir():  # a previous repeat's output, removed outside the timings
        shutil.rmtree(out)
    out.unlink(missing_ok=True)
    written = method == "sitk+write"
    if written:
        import tensorstore  # noqa: F401

        import coframe.resampling.engine  # noqa: F401
    if method == "coframe":
        # libraries any run imports before it resamples
        import dask.array  # noqa: F401
        import tensorstore  # noqa: F401

        import coframe.resampling.kernel  # noqa: F401  (numba; its compiled code loads in the run)
        import coframe.resampling.progress  # noqa: F401  (rich)
        import coframe.resampling.writer  # noqa: F401
        import coframe.transforms.sitk_bridge  # noqa: F401
        import coframe.volumes.open  # noqa: F401
        from coframe.resampling.engine import resample
        from coframe.resampling.source import ImageSource

        source: Any = ImageSource(str(root / f"src-{n}.zarr"))
        if case == "synthetic":
            source, t = SynthSource(n), chain("affine", n)
        start = time.perf_counter()
        result = resample(source, t, grid, out, n_levels=1, progress=False, force=True)
        seconds = time.perf_counter() - start
        extra = {"method_used": result.method, "blocks": result.blocks}
    elif method in ("sitk", "sitk+write"):
        import SimpleITK as sitk

        from coframe.transforms.sitk_bridge import array_to_image, resample_image, to_sitk

        data = _load(root / f"src-{n}.zarr")
        image = array_to_image(data, (1.0,) * 3)
        del data
        st = to_sitk(t)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
        start = time.perf_counter()
        result_array = resample_image(image, st, grid.shape, grid.voxel_size, grid.origin)
        if written:
            _write_level0(out, result_array)
        seconds = time.perf_counter() - start
        if not written:
            np.save(out, result_array)
        extra = {}
    elif method == "scipy":
        from scipy import ndimage

        data = _load(root / f"src-{n}.zarr")
        affine = t.as_affine()
        start = time.perf_counter()
        result_array = ndimage.affine_transform(
            data,
            affine.linear,
            offset=affine.translation,
            order=1,
            mode="constant",
            output=np.uint8,
        )
        seconds = time.perf_counter() - start
        np.save(out, result_array)
        extra = {}
    else:
        raise ValueError(method)
    return {"seconds": seconds, "voxels": n**3, "peak_rss_gb": _peak_rss_gb(), **extra}


def run_child(method: str, case: str, n: int, root: Path, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", method, case, str(n), str(root), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} {case} {n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_difference(a_path: Path, b_path: Path, n: int) -> tuple[int, float]:
    """Largest absolute voxel difference of two outputs (.npy or OME-Zarr) and the share above 1."""
    import zarr

    def opener(p: Path) -> Any:
        if p.suffix == ".npy":
            return np.load(p, mmap_mode="r")
        return zarr.open_array(str(p / "s0"), mode="r")

    a, b = opener(a_path), opener(b_path)
    worst, above = 0, 0
    for z in range(0, n, 64):
        diff = np.abs(np.asarray(a[z : z + 64]).astype(np.int16) - np.asarray(b[z : z + 64]))
        worst = max(worst, int(diff.max()))
        above += int(np.count_nonzero(diff > 1))
    return worst, above / n**3


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--big", type=int, default=2048, help="(c) size; 0 to skip")
    parser.add_argument("--tmp", default=None, help="Scratch directory (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per method; the fastest counts")
    parser.add_argument(
        "--bspline-max",
        type=int,
        default=512,
        help="Largest size of the B-spline case (SimpleITK needs ~30 s at 512^3)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, case, n, root, out = args.child
        print(json.dumps(measure(method, case, int(n), Path(root), Path(out))))
        return
    root = Path(args.tmp or tempfile.mkdtemp(prefix="coframe-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    header = (
        f"{'case':<14}{'size':>6}{'method':>12}{'Mvox/s':>9}{'s':>8}{'RSS GB':>8}"
        f"{'maxdiff':>9}{'% >1':>9}"
    )
    print(header, flush=True)
    try:
        for n in sizes:
            make_source(root, n)
            for case in ("affine", "field", "bspline"):
                if case == "bspline" and n > args.bspline_max:
                    continue
                methods = ["sitk", "sitk+write", "coframe"] + (
                    ["scipy"] if case == "affine" else []
                )
                outs = {
                    m: root
                    / (f"{m}-{case}-{n}" + (".zarr" if m in ("coframe", "sitk+write") else ".npy"))
                    for m in methods
                }
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
                for _ in range(args.repeat):  # round robin: a slow spell hits every method alike
                    for method in methods:
                        runs[method].append(run_child(method, case, n, root, outs[method]))
                results = {}
                for method in methods:
                    best = min(runs[method], key=lambda r: r["seconds"])
                    best["peak_rss_gb"] = max(r["peak_rss_gb"] for r in runs[method])
                    results[method] = best
                for method, r in results.items():
                    diff, share = (
                        (0, 0.0)
                        if method == "sitk"
                        else max_difference(outs[method], outs["sitk"], n)
                    )
                    rate = r["voxels"] / r["seconds"] / 1e6
                    print(
                        f"{case:<14}{n:>6}{method:>12}{rate:>9.1f}{r['seconds']:>8.2f}"
                        f"{r['peak_rss_gb']:>8.2f}{diff:>9}{100 * share:>9.4f}",
                        flush=True,
                    )
                for base in ("sitk", "sitk+write"):
                    ratio = results[base]["seconds"] / results["coframe"]["seconds"]
                    print(f"{'':<14}{'':>6}  coframe/{base} throughput {ratio:.2f}x", flush=True)
                for p in outs.values():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
        if args.big:
            per_voxel = {}
            for n in (512, args.big):
                out = root / f"synthetic-{n}.zarr"
                r = run_child("coframe", "synthetic", n, root, out)
                shutil.rmtree(out, ignore_errors=True)
                per_voxel[n] = r["seconds"] / r["voxels"]
                rate = r["voxels"] / r["seconds"] / 1e6
                print(
                    f"{'synthetic':<14}{n:>6}{'coframe':>12}{rate:>9.1f}{r['seconds']:>8.1f}"
                    f"{r['peak_rss_gb']:>8.2f}{'-':>9}",
                    flush=True,
                )
            print(f"time/voxel {args.big}^3 vs 512^3: {per_voxel[args.big] / per_voxel[512]:.2f}x")
    finally:
        if args.tmp is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
