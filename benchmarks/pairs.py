"""The full pairs of ``benchmarks/register.py`` (``--cases pairs``): data, runs and summary.

Pairs (fixed <- moving; the moving image is the fixed anatomy in another
contrast, warped by a seeded random warp of ``benchmarks/truth.py``, made with
numpy and scipy only):

Tuning pairs (the presets were tuned on these; reported apart):

- ``mni-affine``, ``mni-deformable``: nilearn's ICBM152 2009 T1 at 1.5 mm as
  fixed; as moving, a contrast made from its GM and WM tissue maps (grey
  matter brightest) with noise, warped by an affine (and Gaussian bumps).

Evaluation pairs (no preset was tuned on them):

- ``avg152-affine``, ``avg152-deformable``: SPM's avg152 T1 (fixed) and
  avg152 T2 (moving), real averages of T1- and T2-weighted scans of the same
  152 subjects on one 2 mm grid (so in register by construction), the T2
  warped by an affine (and Gaussian bumps), with noise.

Floor pair (``avg152-floor``): the avg152 pair with no warp at all. The two
averages need not be in register in the sense of mutual information; what
each method reports here is its measurement floor on the avg152 pairs.

Each pair is made for ``--warps`` seeds (warp ``w`` uses seed ``[pair, w]``)
and every method runs ``--repeats`` times on each, round robin (method after
method over every pair and warp, then the next repeat), with the random seed of
repeat ``r`` given to every method that samples. The summary is the median and
range over all runs. The results file is rewritten after every run and marked
``complete`` at the end, so an interrupted run keeps its whole rounds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import results
import truth

TUNING_PAIRS = ("mni-affine", "mni-deformable")
EVALUATION_PAIRS = ("avg152-affine", "avg152-deformable")
#: The measurement floor: the avg152 pair with no warp (one warp, the identity).
FLOOR_PAIRS = ("avg152-floor",)
PAIRS = TUNING_PAIRS + EVALUATION_PAIRS + FLOOR_PAIRS
#: Methods of the full pairs: coframe's preset, and each peer at its defaults and matched.
PAIR_METHODS = ("coframe", "elastix", "elastix-matched", "ants", "ants-matched")
TRE_POINTS = 3000


def _nilearn_data() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def _load_mni(name: str) -> np.ndarray:
    import SimpleITK as sitk

    path = _nilearn_data() / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkFloat32))


def source_images(pair: str) -> dict[str, Any]:
    """Fixed image, the moving contrast (fixed space), voxel, thresholds, noise and sources."""
    from scipy import ndimage

    if pair.startswith("mni-"):
        voxel = 1.5
        t1, gm, wm = (ndimage.zoom(_load_mni(n), 1 / voxel, order=1) for n in ("t1", "gm", "wm"))
        head = t1 > 5
        return {
            "fixed": t1.astype(np.float32),
            "contrast": ((40 + 0.7 * gm + 0.25 * wm) * head).astype(np.float32),
            "voxel": voxel,
            "threshold": 20.0,
            "noise": 4.0,
            "source": "nilearn ICBM152 2009 T1 (fixed), GM/WM maps (moving contrast)",
        }
    if pair.startswith("avg152-"):
        import crops

        t1, t2 = crops.load_real_pair("avg152-t1-t2")
        # file index order is (x, y, z): numpy (z, y, x); both share one grid
        fixed = np.ascontiguousarray(t1.data.transpose(2, 1, 0), dtype=np.float32)
        contrast = np.ascontiguousarray(t2.data.transpose(2, 1, 0), dtype=np.float32)
        return {
            "fixed": fixed,
            "contrast": contrast,
            "voxel": float(np.mean(t1.spacing)),
            "threshold": t1.threshold,
            "noise": 0.02 * float(np.percentile(contrast, 99)),
            "source": f"{t1.source} (fixed), {t2.source} (moving)",
        }
    raise ValueError(f"unknown pair {pair!r}")


def matched_settings(preset_name: str, voxel: float) -> dict[str, Any]:
    """coframe's levels, iterations and samples, given to the matched peers.

    The B-spline grid spacing is in working voxels: the pairs are under the preset's
    ``working.max_voxels``, so the working voxel is the fixed voxel.
    """
    from coframe.registration.presets import load_preset

    p = load_preset(preset_name)
    shrink = list(p.pyramid.shrink_factors)
    return {
        "preset": preset_name,
        "shrink": shrink,
        "smoothing": list(p.pyramid.smoothing_sigmas),
        "iterations": p.optimizer.iterations,
        "samples": list(p.sampling.per_level(len(shrink))),
        "bins": p.metric.bins,
        "bspline": {
            "shrink": list(p.bspline.shrink_factors),
            "iterations": p.bspline.iterations,
            "points": p.bspline.points,
            "grid_mm": p.bspline.grid_spacing * voxel,
        },
    }


def make_pair(pair: str, warp_index: int, out: Path, images: dict[str, Any]) -> dict[str, Any]:
    """Render warp ``warp_index`` of ``pair`` into ``out`` (npy arrays, points, meta.json)."""
    deformable = pair.endswith("-deformable")
    fixed, contrast, voxel = images["fixed"], images["contrast"], images["voxel"]
    rng = np.random.default_rng([PAIRS.index(pair), warp_index])
    spacing = np.full(3, voxel)
    extent = np.array(fixed.shape) * spacing
    centre = (np.array(fixed.shape) - 1) / 2 * spacing
    warp = truth.random_warp(rng, centre, extent, deformable)
    if pair in FLOOR_PAIRS:
        warp = truth.Warp(np.eye(3), np.zeros(3), np.zeros((0, 3)), np.zeros((0, 3)), 1.0)
    moving = truth.render_moving(contrast, spacing, warp, fixed.shape, spacing)
    moving = moving + rng.normal(0, images["noise"], moving.shape) * (moving > 0)
    points, moving_points = truth.truth_points(
        fixed, spacing, warp, fixed.shape, spacing, images["threshold"], TRE_POINTS, rng
    )
    # the independent check: SimpleITK maps the truth onto the same fixed points
    tx = truth.sitk_transform(warp, -0.25 * extent, 1.5 * extent, 2 * voxel)
    check = np.abs(truth.sitk_apply(tx, moving_points[:200]) - points[:200]).max()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "fixed.npy", fixed)
    np.save(out / "moving.npy", moving.astype(np.float32))
    np.save(out / "points.npy", points)
    np.save(out / "truth.npy", moving_points)
    meta = {
        "family": "pairs",
        "pair": pair,
        "warp": warp_index,
        "deformable": deformable,
        "preset": "multimodal",
        "fixed_voxel": [voxel] * 3,
        "moving_voxel": [voxel] * 3,
        "fixed_origin": [0.0] * 3,
        "moving_origin": [0.0] * 3,
        "unit": "mm",
        "voxel": voxel,
        "fixed_shape": list(fixed.shape),
        "moving_shape": list(moving.shape),
        "matched": matched_settings("multimodal", voxel),
        "threads": 2,
        "truth": warp.describe(),
        "truth_check_sitk_max_mm": float(check),
        "source": images["source"],
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def run_pairs(args: Any, tmp: Path, run_child: Any, save: Any = None) -> dict[str, Any]:
    """Every repeat x pair x warp x method; returns the report.

    Repeats are the outer loop, so an interrupted run has whole rounds over
    every pair and warp. ``save(report)`` (if given) is called after every run
    with the report so far, marked ``complete: False``.
    """
    methods = (args.methods or ",".join(PAIR_METHODS)).split(",")
    pairs = args.pairs.split(",")
    print(f"tuning pairs (presets tuned here): {', '.join(TUNING_PAIRS)}", flush=True)
    print(f"evaluation pairs (no preset tuned here): {', '.join(EVALUATION_PAIRS)}", flush=True)
    print(f"floor pairs (no warp): {', '.join(FLOOR_PAIRS)}", flush=True)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    pair_meta: dict[str, Any] = {}
    cases = []
    for pair in pairs:
        images = source_images(pair)
        for w in range(1 if pair in FLOOR_PAIRS else args.warps):
            data = tmp / f"{pair}-w{w}"
            meta = make_pair(pair, w, data, images)
            pair_meta.setdefault(pair, {"source": meta["source"], "warps": []})
            pair_meta[pair]["warps"].append(meta["truth"])
            print(f"{pair} warp {w}: truth vs SimpleITK {meta['truth_check_sitk_max_mm']:.2g} mm")
            cases.append((pair, w, data, meta))

    def report(complete: bool) -> dict[str, Any]:
        # an interrupted run is summarised over its whole rounds (all methods alike)
        whole = len(rows) // (len(cases) * len(methods))
        summed = [r for r in rows if r["repeat"] < whole] if whole else rows
        return {
            "benchmark": "register",
            "tuning_pairs": list(TUNING_PAIRS),
            "evaluation_pairs": list(EVALUATION_PAIRS),
            "floor_pairs": list(FLOOR_PAIRS),
            "pairs": pair_meta,
            "methods": methods,
            "warps": args.warps,
            "repeats": args.repeats,
            "summary": summarise(summed, methods),
            "rows": rows,
            "total_seconds": time.perf_counter() - started,
            "complete": complete,
            "whole_rounds": whole,
        }

    for repeat in range(args.repeats):
        for pair, w, data, meta in cases:
            for method in methods:  # round robin: a slow spell hits every method alike
                row = run_child(method, data, meta["deformable"], tmp, args.timeout, repeat)
                row.update(pair=pair, warp=w, repeat=repeat, voxel=meta["voxel"])
                print(f"  {pair} w{w} r{repeat} {method}: {_brief(row)}", flush=True)
                rows.append(row)
                if save is not None:
                    save(report(False))
    return report(True)


def _brief(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    return (
        f"TRE mean {row['mean'] / row['voxel']:.3f} vox, max {row['max'] / row['voxel']:.3f}, "
        f"{row['seconds']:.1f} s, {row['peak_gb']:.2f} GB  {row.get('note', '')}"
    )


def pair_set(pair: str) -> str:
    """``tuning``, ``evaluation`` or ``floor``."""
    if pair in TUNING_PAIRS:
        return "tuning"
    return "floor" if pair in FLOOR_PAIRS else "evaluation"


def summarise(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Per pair and method: median and range of mean TRE (voxels), time and memory."""
    out = []
    for pair in dict.fromkeys(r["pair"] for r in rows):
        for method in methods:
            sel = [r for r in rows if r["pair"] == pair and r["method"] == method]
            ok = [r for r in sel if "error" not in r]
            entry: dict[str, Any] = {
                "pair": pair,
                "set": pair_set(pair),
                "method": method,
                "runs": len(sel),
                "failed": len(sel) - len(ok),
                "errors": sorted({r["error"] for r in sel if "error" in r}),
            }
            if ok:
                entry.update(
                    tre_mean_vox=results.spread([r["mean"] / r["voxel"] for r in ok]),
                    tre_max_vox=results.spread([r["max"] / r["voxel"] for r in ok]),
                    seconds=results.spread([r["seconds"] for r in ok]),
                    peak_gb=results.spread([r["peak_gb"] for r in ok]),
                    note=ok[0].get("note", ""),
                )
            out.append(entry)
    return out


def table(report: dict[str, Any]) -> str:
    """The Markdown table of a register report (medians, ranges in brackets)."""
    head = (
        "| set | pair | method | runs | TRE mean, voxels | TRE max, voxels | time, s | "
        "peak GB | settings |"
    )
    lines = [head, "|" + "---|" * 9]
    for e in report["summary"]:
        if "tre_mean_vox" not in e:
            lines.append(
                f"| {e['set']} | {e['pair']} | {e['method']} | {e['runs']} | failed | - | - | - | "
                f"{'; '.join(e['errors'])[:120]} |"
            )
            continue
        failed = f" ({e['failed']} failed)" if e["failed"] else ""
        lines.append(
            f"| {e['set']} | {e['pair']} | {e['method']} | {e['runs']}{failed} | "
            f"{results.fmt(e['tre_mean_vox'], 3)} | {results.fmt(e['tre_max_vox'], 2)} | "
            f"{results.fmt(e['seconds'], 1)} | {results.fmt(e['peak_gb'], 2)} | {e['note']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a module of register.py
    sys.exit("run benchmarks/register.py")
