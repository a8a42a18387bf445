"""Chunked resampling against SimpleITK and scipy, side by side (not run by CI).

Run ``python benchmarks/resample.py [--sizes 256,512,1024] [--repeats 5] [--threads 2]
[--inverse-size 128] [--big 2048] [--tmp DIR] [--quick]``; results go to
``benchmarks/results/resample.json`` (``--out``) and ``python benchmarks/tables.py`` renders them.

Chains (output -> source maps on an ``N^3`` grid of 1 nm voxels):

- ``affine``; ``field``: an affine then a displacement field;
- ``bspline``: a B-spline then an affine, as a registration stores its deformable
  result (sizes up to ``--bspline-max``);
- ``bspline-inverse``: the inverse of that chain (the inverse affine, then the
  numerical inverse of the B-spline), as when a FIB-SEM is resampled into the
  X-ray's frame through a deformable registration (one size, ``--inverse-size``).

Methods:

- ``coframe``: :func:`coframe.resampling.engine.resample` reading the OME-Zarr
  source and writing an OME-Zarr output (level 0 only, no pyramid), local threads;
- ``sitk``: ``sitk.Resample`` of the whole array in memory (the source loaded
  before the timing, the result not written): the old reference;
- ``sitk+io``: the same with the source read from the OME-Zarr and the result
  written as coframe writes level 0 (Zarr v2 via tensorstore, same chunks and
  codec), all inside the timing: the fair peer of ``coframe``;
- ``sitk-dense+io`` (B-spline chains): as ``sitk+io``, but SimpleITK is given
  coframe's dense-field evaluation (``benchmarks/resample_peers.py``): the
  fair peer of ``coframe`` on those chains (on the inverse chain, SimpleITK
  inverts the field sampled at a quarter of the output's resolution);
- ``sitk-fine+io`` (the inverse chain): as ``sitk-dense+io`` with the field
  inverted at every output voxel: the peer of coframe's accuracy (coframe
  solves every voxel's inverse), and the reference its differences are
  measured against;
- ``scipy``: ``ndimage.affine_transform`` order 1 in memory (affine only; one thread).

The source is noise on a texture (a sum of sines, smoothed noise and per-voxel
noise: it compresses poorly, as real data does). Every run is a fresh process
pinned to ``--threads`` cores (coframe, SimpleITK and numba are given that many
threads) that reports its own peak RSS; before each run the previous output is
removed and the source's chunk files are dropped from the page cache
(``posix_fadvise(DONTNEED)``), so each run reads it cold. In its process every
method is first warmed up by one run of its own on a 64^3 grid (from a 64^3
source of its own): libraries load their code there (numba's compiled kernels,
SimpleITK's filters, tensorstore's drivers), as in a long session; the warm-up's
time is kept in the results (``warmup_seconds``). Methods take turns (round
robin) ``--repeats`` times; the table gives the median and range.
(c) resamples a lazily synthesised source (an ArraySource that renders
blocks on demand) onto 512^3 and ``--big``^3 grids and compares time per
voxel.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
import results

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
    if case == "bspline-inverse":  # FIB-SEM into the X-ray's frame: the inverse of the chain
        return chain("bspline", n).inverse()
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


def noisy_pattern(start: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The benchmark source: :func:`pattern` plus smoothed and per-voxel noise (seeded by box)."""
    from scipy import ndimage

    rng = np.random.default_rng([*start, *shape])
    value = pattern(start, shape).astype(np.float32) * 0.6 + 20.0
    value += 30.0 * ndimage.gaussian_filter(rng.standard_normal(shape, np.float32), 1.0)
    value += rng.normal(0.0, 12.0, shape).astype(np.float32)
    return np.clip(value, 0, 255).astype(np.uint8)


def make_source(root: Path, n: int) -> Path:
    """Write the ``n^3`` noisy source as OME-Zarr (once)."""
    from coframe.resampling.writer import create_ome_zarr

    path = root / f"noisy-{n}.zarr"
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
        w.write(0, (z, 0, 0), noisy_pattern((z, 0, 0), (h, n, n)))
    w.write_metadata()
    return path


def drop_from_cache(path: Path) -> None:
    """Evict a file tree from the page cache (clean pages only; other files are untouched)."""
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


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


def _remove(path: Path) -> None:
    """Delete an output (a Zarr folder or an ``.npy`` file) if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pin(threads: int) -> None:
    """Run this process on ``threads`` cores; coframe's local pool sizes itself by cpu_count."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, set(cores))
    os.cpu_count = lambda: threads  # type: ignore[assignment]


#: The warm-up grid: every method first runs once on a WARMUP^3 grid of its own
#: chain in the same process (libraries load their code: numba's compiled kernels,
#: SimpleITK's filters, tensorstore's drivers), then the measured run.
WARMUP = 64


def measure(method: str, case: str, n: int, root: Path, out: Path, threads: int) -> dict[str, Any]:
    """Warm up, then run one method in this process; return seconds, voxels and peak RSS."""
    _pin(threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    # libraries any run imports before it resamples
    import dask.array  # noqa: F401
    import tensorstore  # noqa: F401
    import zarr  # noqa: F401

    import coframe.resampling.kernel  # noqa: F401
    import coframe.resampling.progress  # noqa: F401  (rich)
    import coframe.resampling.writer  # noqa: F401
    import coframe.transforms.sitk_bridge  # noqa: F401
    import coframe.volumes.open  # noqa: F401

    small = root / "warmup"
    small.mkdir(exist_ok=True)
    if case != "synthetic":
        make_source(small, WARMUP)
    warm_out = small / f"{method}-out{out.suffix}"
    warmup, _ = _timed(method, case, WARMUP, small, warm_out)
    _remove(warm_out)
    seconds, extra = _timed(method, case, n, root, out)
    return {
        "seconds": seconds, "voxels": n**3, "peak_rss_gb": _peak_rss_gb(),
        "warmup_seconds": warmup, **extra,
    }  # fmt: skip


def _timed(method: str, case: str, n: int, root: Path, out: Path) -> tuple[float, dict[str, Any]]:
    """One run of ``method`` on an ``n^3`` grid: its seconds and what it reports."""
    from coframe.resampling.plan import OutputGrid

    grid = OutputGrid((n,) * 3, (1.0,) * 3, (0.0,) * 3, ("z", "y", "x"), "nanometer", CHUNKS)
    t = chain("affine" if case == "synthetic" else case, n)
    src = root / f"noisy-{n}.zarr"
    extra: dict[str, Any] = {}
    if method == "coframe":
        from coframe.resampling.engine import resample
        from coframe.resampling.source import ImageSource

        source: Any = SynthSource(n) if case == "synthetic" else ImageSource(str(src))
        start = time.perf_counter()
        result = resample(source, t, grid, out, n_levels=1, progress=False, force=True)
        seconds = time.perf_counter() - start
        extra = {"method_used": result.method, "blocks": result.blocks}
    elif method in ("sitk", "sitk+io", "sitk-dense+io", "sitk-fine+io"):
        from coframe.transforms.sitk_bridge import array_to_image, resample_image, to_sitk

        io = method.endswith("+io")
        if not io:
            image = array_to_image(_load(src), (1.0,) * 3)
        start = time.perf_counter()
        if io:
            image = array_to_image(_load(src), (1.0,) * 3)
        if method in ("sitk-dense+io", "sitk-fine+io"):
            import resample_peers

            members = t.transforms
            spline, affine = (members[1], members[0]) if case.endswith("inverse") else members
            array = resample_peers.resample_dense(
                image, getattr(spline, "forward", spline), to_sitk(affine), grid.shape,
                np.asarray(grid.voxel_size), np.asarray(grid.origin),
                inverse=case.endswith("inverse"),
                inverse_every=1 if method == "sitk-fine+io" else 4,
            )  # fmt: skip
        else:
            array = resample_image(image, to_sitk(t), grid.shape, grid.voxel_size, grid.origin)
        if io:
            _write_level0(out, array)
        seconds = time.perf_counter() - start
        if not io:
            np.save(out, array)
    elif method == "scipy":
        from scipy import ndimage

        data = _load(src)
        affine = t.as_affine()
        start = time.perf_counter()
        array = ndimage.affine_transform(
            data, affine.linear, offset=affine.translation, order=1, mode="constant",
            output=np.uint8,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        np.save(out, array)
    else:
        raise ValueError(method)
    return seconds, extra


def run_child(
    method: str, case: str, n: int, root: Path, out: Path, threads: int
) -> dict[str, Any]:
    """One method in a fresh process, after removing its last output and dropping the source."""
    _remove(out)
    if (root / f"noisy-{n}.zarr").exists():
        drop_from_cache(root / f"noisy-{n}.zarr")
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", method, case, str(n), str(root), str(out)]
    cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
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

#: The fair peer of coframe on each chain: SimpleITK with the read and the write in its timing.
FAIR_PEER = {
    "affine": "sitk+io",
    "field": "sitk+io",
    "bspline": "sitk-dense+io",
    "bspline-inverse": "sitk-dense+io",
}


#: A second peer where the fair one is less accurate: on the inverse chain, SimpleITK
#: inverting the field at every output voxel (not at a quarter of the resolution), so that
#: its inverse is as close to exact as coframe's (which solves every voxel's). It is also
#: the reference the differences of the inverse chain are measured against.
ACCURATE_PEER = {"bspline-inverse": "sitk-fine+io"}


def _methods(case: str) -> list[str]:
    if case == "bspline-inverse":  # SimpleITK has no numerical inverse of a B-spline
        return ["sitk-dense+io", "sitk-fine+io", "coframe"]
    methods = ["sitk", "sitk+io"]
    if case == "bspline":
        methods.append("sitk-dense+io")
    methods.append("coframe")
    return methods + (["scipy"] if case == "affine" else [])


def _output(root: Path, method: str, case: str, n: int) -> Path:
    zarr_out = method == "coframe" or method.endswith("+io")
    return root / f"{method}-{case}-{n}{'.zarr' if zarr_out else '.npy'}"


def run_case(case: str, n: int, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Round-robin repeats of every method of one chain and size; one row per method."""
    methods = _methods(case)
    outs = {m: _output(root, m, case, n) for m in methods}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for _ in range(args.repeats):  # round robin: a slow spell hits every method alike
        for method in methods:
            runs[method].append(run_child(method, case, n, root, outs[method], args.threads))
    reference = "sitk" if "sitk" in methods else ACCURATE_PEER.get(case, FAIR_PEER[case])
    rows = []
    for method in methods:
        good = [r for r in runs[method] if "error" not in r]
        row: dict[str, Any] = {"case": case, "size": n, "method": method, "runs": runs[method]}
        if good:
            diff, share = (
                (0, 0.0)
                if method == reference
                else max_difference(outs[method], outs[reference], n)
            )
            row.update(
                mvox_s=results.spread([r["voxels"] / r["seconds"] / 1e6 for r in good]),
                seconds=results.spread([r["seconds"] for r in good]),
                peak_rss_gb=max(r["peak_rss_gb"] for r in good),
                max_difference=diff,
                share_above_1=share,
                difference_to=reference,
            )
        rows.append(row)
    coframe = [r["seconds"] for r in runs["coframe"] if "error" not in r]
    row = next(r for r in rows if r["method"] == "coframe")
    for key, name in (
        ("vs_fair_peer", FAIR_PEER[case]),
        ("vs_accurate_peer", ACCURATE_PEER.get(case)),
    ):
        peer = [r["seconds"] for r in runs.get(name, []) if "error" not in r]
        if coframe and peer:
            ratios = [p / c for p, c in zip(peer, coframe, strict=False)]
            row[key] = {
                "peer": name,
                "ratio_of_medians": float(np.median(peer) / np.median(coframe)),
                "paired": results.spread(ratios),
            }
    for p in outs.values():
        _remove(p)
    return rows


def table(report: dict[str, Any]) -> str:
    """Markdown: one line per chain, size and method (medians and ranges)."""
    head = (
        "| chain | size | method | Mvox/s | seconds | peak RSS GB | max diff | voxels off by > 1 | "
        "coframe's speed vs the fair peer (peer time / coframe time) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in report["rows"]:
        if "seconds" not in r:
            err = next((x["error"] for x in r["runs"] if "error" in x), "failed")
            lines.append(
                f"| {r['case']} | {r['size']}³ | {r['method']} | failed: {err[:80]} ||||||"
            )
            continue
        ratios = []
        for key in ("vs_fair_peer", "vs_accurate_peer"):
            if key in r:
                v = r[key]
                d = 2 if v["ratio_of_medians"] >= 0.1 else 4
                paired = results.fmt(v["paired"], d)
                ratios.append(f"{v['ratio_of_medians']:.{d}f}x {v['peer']} (paired {paired})")
        ratio = "; ".join(ratios)
        lines.append(
            f"| {r['case']} | {r['size']}³ | {r['method']} | "
            f"{results.fmt(r['mvox_s'], 1 if r['mvox_s']['median'] >= 1 else 3)} | "
            f"{results.fmt(r['seconds'], 2)} | {r['peak_rss_gb']:.2f} | {r['max_difference']} | "
            f"{100 * r['share_above_1']:.2f} % | {ratio} |"
        )
    if report.get("synthetic"):
        s = report["synthetic"]
        lines.append("")
        lines.append(
            f"Lazily synthesised source: time per voxel at {s['big']}³ is "
            f"{s['ratio']:.2f}x that at 512³ ({s['rates']})."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--big", type=int, default=2048, help="(c) size; 0 to skip")
    parser.add_argument("--tmp", default=None, help="Scratch directory (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=5, help="Round-robin runs per method")
    parser.add_argument("--threads", type=int, default=2, help="Cores and threads of every method")
    parser.add_argument("--cases", default="affine,field,bspline")
    parser.add_argument("--bspline-max", type=int, default=512, help="Largest B-spline size")
    parser.add_argument(
        "--inverse-size",
        type=int,
        default=128,
        help="Size of the inverse B-spline chain (coframe solves it point by point: slow); 0 skips",
    )
    parser.add_argument("--quick", action="store_true", help="256^3 only, 1 repeat, no (c)")
    parser.add_argument("--out", type=Path, help="Results JSON (default benchmarks/results/)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, case, n, root, out = args.child
        row = measure(method, case, int(n), Path(root), Path(out), args.threads)
        print(json.dumps(row))
        return
    if args.quick:
        args.sizes, args.repeats, args.big, args.inverse_size = "256", 1, 0, 64
    meta = results.provenance()
    root = Path(args.tmp or tempfile.mkdtemp(prefix="coframe-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"benchmark": "resample", "threads": args.threads,
                              "repeats": args.repeats, "rows": rows}  # fmt: skip
    try:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            make_source(root, n)
            for case in args.cases.split(","):
                if case == "bspline" and n > args.bspline_max:
                    continue
                rows.extend(run_case(case, n, root, args))
                print(table({"rows": rows[-len(_methods(case)) :]}), flush=True)
        if args.inverse_size:
            make_source(root, args.inverse_size)
            rows.extend(run_case("bspline-inverse", args.inverse_size, root, args))
            print(table({"rows": rows[-2:]}), flush=True)
        if args.big:
            per_voxel, rates = {}, {}
            for n in (512, args.big):
                out = root / f"synthetic-{n}.zarr"
                r = run_child("coframe", "synthetic", n, root, out, args.threads)
                shutil.rmtree(out, ignore_errors=True)
                per_voxel[n] = r["seconds"] / r["voxels"]
                rates[n] = f"{n}³: {r['voxels'] / r['seconds'] / 1e6:.1f} Mvox/s"
            report["synthetic"] = {
                "big": args.big,
                "ratio": per_voxel[args.big] / per_voxel[512],
                "rates": ", ".join(rates.values()),
            }
    finally:
        if args.tmp is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(report))
    print(f"results: {results.write('resample', report, meta, args.out)}")


if __name__ == "__main__":
    main()
