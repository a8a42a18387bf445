"""Run the fuzz targets and regenerate the "Fuzzing" table of docs/reliability.md.

    .venv/bin/python tests/fuzz/report.py            # ci and long profiles, rewrite the table
    .venv/bin/python tests/fuzz/report.py --no-long  # ci profile only (about half a minute)
    .venv/bin/python tests/fuzz/report.py --print    # print the tables, leave the doc alone
    .venv/bin/python tests/fuzz/report.py --save DIR # also keep the tallies (DIR/ci.json...)
    .venv/bin/python tests/fuzz/report.py --load DIR # rewrite the table from kept tallies

Each profile runs ``pytest tests/fuzz/test_fuzz_*.py`` in a subprocess with
``COFRAME_FUZZ_COLLECT=1`` (a bug is recorded and the run goes on, so every
distinct bug is counted) and ``COFRAME_FUZZ_TALLY`` (every example's outcome
per target). The table between the ``fuzz-table`` markers of
docs/reliability.md is replaced; the rest of the document is left as written.
The bugs found and fixed are this project's record (:data:`TARGETS`), not
measured: a bug that the current run finds is listed as open.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- fuzz-table:start -->", "<!-- fuzz-table:end -->"
#: Profiles whose pytest run failed (a generator error): their table is printed, not written.
FAILED: list[str] = []


@dataclass(frozen=True)
class Target:
    """What one fuzz target reads, how, and what it found."""

    entry: str
    inputs: str
    fixed: tuple[str, ...]
    guarantee: str


TARGETS: dict[str, Target] = {
    "ome-zarr metadata": Target(
        "`volumes.open.open_volume` (then `describe`, a corner of each level)",
        "OME-Zarr 0.4 `.zattrs`/`.zarray` and 0.5 `zarr.json` (group and arrays) with fields "
        "replaced, removed or added; their bytes mutated; JSON nested 100,000 deep or with "
        "5,000-digit integers",
        (
            "RecursionError on deeply nested metadata JSON",
            "ValueError on an integer of more than 4300 digits (probe)",
            "ZeroDivisionError reading an array whose chunk size is 0",
            "an origin or voxel size beyond a float once converted into the workspace unit "
            "opened as inf or 0 (seen as an overflow warning in a long run; the property now "
            "checks every level's placement)",
        ),
        "opens, or a one-line error naming the document and key",
    ),
    "n5 attributes": Target(
        "`volumes.open.open_volume`",
        "COSEM group and dataset `attributes.json` mutated as above (transform, "
        "pixelResolution, scales, axes, units, dimensions); bytes mutated",
        (),
        "opens, or a one-line error naming the attributes file and key",
    ),
    "tiff tags": Target(
        "`volumes.open.open_volume`",
        "TIFFs written with ImageJ (unit, spacing, origins, images, slices), OME-XML "
        "(PhysicalSize, units, Plane positions, DimensionOrder) or resolution tags, 0-3 of "
        "them broken: zero, negative, NaN, inf, 10^400, unknown units",
        ("OverflowError on an ImageJ spacing or origin too large for a float",),
        "opens, or a one-line error; a broken size is reported as unusable, so --voxel-size "
        "still places the image",
    ),
    "tiff bytes": Target(
        "`volumes.open.open_volume`",
        "valid ImageJ, OME, resolution-tag and pyramid TIFFs with bytes flipped, set, "
        "inserted, deleted, duplicated or the file truncated",
        (
            "KeyError, TypeError (2), RuntimeError, ZeroDivisionError (2) from tifffile while "
            "it parses a corrupt file",
            "ValueError: a page with more strip offsets than byte counts",
            "ValueError: an XResolution tag of two rationals",
            "a hang with memory growing without end: image directories that loop back",
            "OSError in that loop check itself on a BigTIFF offset of 2^63 (caught by the long "
            "run before release)",
        ),
        "opens, or a one-line format error naming the file",
    ),
    "mrc header": Target(
        "`volumes.open.open_volume`",
        "MRC2014 volume and section with 1-3 header fields (nx..nz, mode, starts, mx..mz, "
        "cella, mapc/mapr/maps, ispg, nsymbt, nversion, origin) set to extreme int32/float32 "
        "values; bytes mutated",
        ("OverflowError when the header's data size overflows the memory map",),
        "opens, or a one-line error; a zero or non-finite voxel size asks for --voxel-size",
    ),
    "itk tfm": Target(
        "`transforms.formats.dispatch.read_transform` (then applied to points)",
        "`.tfm`/`.txt` files of every kind coframe reads (affine, Euler, versor, similarity, "
        "scale, translation, B-spline, composite) with the kind, precision, dimensions, "
        "Parameters and FixedParameters broken; bytes and tokens mutated",
        (
            "segmentation fault: a rigid, similarity, versor or scale kind with no Parameters",
            "out-of-bounds read (then crash): a token ITK stops at, e.g. 1e400",
            "abort (heap corruption): a B-spline grid size of 10^10 (probe)",
            "RecursionError: an ITK kind SimpleITK does not know, e.g. "
            "MatrixOffsetTransformBase (probe)",
        ),
        "reads, or a one-line format error naming the transform and the counts; the "
        "process never crashes on a text file",
    ),
    "itk mat/h5": Target(
        "`transforms.formats.dispatch.read_transform` (then applied to points)",
        "valid `.mat` (affine) and `.h5` (affine, B-spline; long profile only) files with "
        "bytes flipped, set, inserted, deleted, duplicated or the file truncated",
        ("UnicodeDecodeError: SimpleITK's error quoting a kind name that is not text",),
        "reads, or a one-line format error; no crash was seen (these files reach SimpleITK "
        "unchecked); open: a corrupt `.h5` also makes HDF5 print diagnostics on stderr",
    ),
    "ngff scene": Target(
        "`transforms.formats.ngff.read_scene` (every transformation applied)",
        "an RFC-5 scene (sequence, affine, scale, translation, mapAxis, byDimension, "
        "inverseOf, rotation, bijection, identity) as `.json`, mutated; a Zarr v3 scene with "
        "a displacement field whose group and array attributes are mutated; bytes mutated",
        (
            "RecursionError on deeply nested JSON",
            "OverflowError on a parameter too large for a float",
        ),
        "reads, or a one-line error naming the file and the metadata key",
    ),
    "bigwarp csv": Target(
        "`transforms.formats.dispatch.read_transform` (then applied to points)",
        "landmark CSV rows with fields replaced (NaN, Infinity, 1e400, text, empty), rows "
        "dropped, duplicated, shortened or lengthened; bytes and tokens mutated",
        (),
        "reads, or a one-line error naming the line and field",
    ),
    "bigwarp json": Target(
        "`transforms.formats.dispatch.read_transform` (then applied to points)",
        "BigWarp landmarks, transform and settings JSON, mutated; bytes mutated; nested "
        "50,000 deep",
        (
            "RecursionError on deeply nested JSON (probe)",
            "OverflowError on a landmark coordinate too large for a float",
        ),
        "reads, or a one-line error naming the file and key",
    ),
    "bigwarp landmarks fit": Target(
        "`registration.landmarks.load_landmarks`, `check_count`, `fit` (each model)",
        "the broken CSV and JSON files above",
        ("LinAlgError (SVD did not converge) on coordinates whose spread overflows",),
        "fits, or a one-line parse or registration error",
    ),
    "workspace coframe.yaml": Target(
        "`app.workspace.load_workspace`, `describe_graph`, first edge composed",
        "the workspace document mutated (spaces, images, voxel sizes, units, edges, "
        "provenance); YAML bytes mutated; aliases (billion laughs), complex keys, tags, "
        "5,000-deep lists, duplicate keys, BOM, NUL",
        (
            "TypeError on an unhashable (complex) mapping key",
            "RecursionError on deeply nested YAML",
            "OverflowError on a voxel size too large for a float",
            "a YAML reader error printed over two lines",
            "ValueError on an integer of more than 4300 digits (probe)",
        ),
        "loads, or a one-line error naming the file, line or key",
    ),
    "points json/csv": Target(
        "`app.points.read_points` (COORDS of `coframe points`)",
        "JSON point lists (argument and file) mutated; CSV with a header mutated; bytes "
        "mutated; arbitrary argument text",
        (
            "RecursionError on deeply nested JSON",
            "OverflowError on an integer too large for a float",
            "csv.Error on a field over the csv module's limit",
            "RuntimeError on a ~user path of an unknown user",
        ),
        "reads, or a one-line parse or not-found error",
    ),
}


def run_profile(profile: str) -> tuple[dict[str, dict[str, object]], float]:
    """Run the fuzz tests with ``profile``; the tally per target and the wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        tally = Path(tmp) / "tally.json"
        env = dict(os.environ)
        env.update(
            COFRAME_FUZZ=profile,
            COFRAME_FUZZ_COLLECT="1",
            COFRAME_FUZZ_TALLY=str(tally),
        )
        tests = sorted(str(p) for p in (ROOT / "tests" / "fuzz").glob("test_fuzz_*.py"))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
        start = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - start
        if done.returncode != 0 or not tally.is_file():
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            if not tally.is_file():
                raise SystemExit(f"the {profile} fuzz run failed (exit {done.returncode})")
            FAILED.append(profile)
        return json.loads(tally.read_text()), elapsed


def _examples(entry: dict[str, object] | None) -> int:
    outcomes = (entry or {}).get("outcomes", {})
    assert isinstance(outcomes, dict)
    return sum(int(v) for v in outcomes.values())


def tables(
    ci: dict[str, dict[str, object]],
    long: dict[str, dict[str, object]] | None,
    seconds: dict[str, float],
) -> str:
    """The Markdown tables: one row per target, then the outcomes of the largest run."""
    biggest = long if long is not None else ci
    lines = [
        "| Target | Entry point | Inputs generated | Examples CI / long | Bugs found and fixed "
        "| Open now | Guaranteed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, target in TARGETS.items():
        runs = f"{_examples(ci.get(name))} / "
        runs += f"{_examples(long.get(name))}" if long is not None else "not run"
        found = "; ".join(target.fixed) if target.fixed else "none"
        bugs = (biggest.get(name) or {}).get("bugs", {})
        assert isinstance(bugs, dict)
        open_now = "; ".join(f"`{k}`" for k in bugs) or "0"
        lines.append(
            f"| {name} | {target.entry} | {target.inputs} | {runs} | "
            f"{len(target.fixed)}: {found} | {open_now} | {target.guarantee} |"
        )
    total_fixed = sum(len(t.fixed) for t in TARGETS.values())
    ci_total = sum(_examples(v) for v in ci.values())
    long_total = sum(_examples(v) for v in long.values()) if long is not None else 0
    lines += [
        f"| **all** | | | **{ci_total} / {long_total or 'not run'}** | **{total_fixed}** | | |",
        "",
        f"Wall time on this machine: ci {seconds.get('ci', 0):.0f} s"
        + (f", long {seconds['long']:.0f} s" if "long" in seconds else "")
        + ". (probe): found while writing the generators, by a targeted input, then added to them."
        + f" A read over {os.environ.get('COFRAME_FUZZ_HANG', '30')} s counts as a hang (a bug).",
        "",
        f"Outcomes of the {'long' if long is not None else 'ci'} run (examples per result):",
        "",
        "| Target | read | refused (coframe error classes) | other exception |",
        "|---|---|---|---|",
    ]
    for name in TARGETS:
        outcomes = dict((biggest.get(name) or {}).get("outcomes", {}))
        ok, bug = outcomes.pop("ok", 0), outcomes.pop("bug", 0)
        refused = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "0"
        lines.append(f"| {name} | {ok} | {refused} | {bug} |")
    return "\n".join(lines) + "\n"


def rewrite(doc: Path, table: str) -> None:
    """Replace the text between the fuzz-table markers of ``doc``."""
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-long", action="store_true", help="run the ci profile only")
    parser.add_argument("--print", action="store_true", help="print, do not rewrite the doc")
    parser.add_argument("--save", type=Path, help="keep the tallies and times in this directory")
    parser.add_argument("--load", type=Path, help="use the tallies kept there; run nothing")
    args = parser.parse_args()
    if args.load is not None:
        seconds = json.loads((args.load / "seconds.json").read_text())
        ci = json.loads((args.load / "ci.json").read_text())
        kept = args.load / "long.json"
        long = json.loads(kept.read_text()) if kept.is_file() else None
    else:
        seconds = {}
        ci, seconds["ci"] = run_profile("ci")
        long = None
        if not args.no_long:
            long, seconds["long"] = run_profile("long")
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, tally in (("ci", ci), ("long", long)):
            if tally is not None:
                (args.save / f"{name}.json").write_text(json.dumps(tally, indent=1))
        (args.save / "seconds.json").write_text(json.dumps(seconds))
    table = tables(ci, long, seconds)
    if args.print or FAILED:
        sys.stdout.write(table)
        if FAILED:
            raise SystemExit(f"pytest failed in the {', '.join(FAILED)} run: the doc is unchanged")
    else:
        rewrite(DOC, table)
        print(f"rewrote the fuzzing table of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
