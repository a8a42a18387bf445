"""Fault injection: ``kill -9`` coframe commands at random moments, rerun them, check what is left.

Run in the project environment (no peers needed)::

    .venv/bin/python benchmarks/faults.py --kills 50 --seed 1 [--commands add,resample,...]
        [--work DIR] [--json OUT]

Inputs are generated: ``coframe demo --size tiny`` writes a small workspace
once (X-ray, FIB-SEM, labels, two TEM sections, ground truth); every trial
runs in a fresh copy of it. The commands:

- ``add``: ``coframe add extra tem/section-1.tif --modality tem``
- ``register``: ``coframe register xray fibsem`` (the demo's edge removed first)
- ``locate``: ``coframe locate tem-2 xray --normal 1,0,0 --max-tilt 25 --force``
- ``resample``: ``coframe resample xray --into fibsem --voxel-size 48 --chunks 16,16,16``
  (27 blocks of one output chunk each, 6 levels)
- ``demo``: ``coframe demo d --size tiny`` in an empty directory

For each command an uninterrupted reference run is timed first, twice (two
copies), which also tells whether the command is deterministic. Each trial
starts the command as a subprocess (its own process group), sends SIGKILL to
the group after a delay drawn uniformly over 2-98 % of the reference run
time, then checks:

- *half-written*: every file under its final name parses (JSON, YAML --
  ``coframe.yaml`` through the workspace loader --, ITK ``.tfm``/``.h5``,
  TIFF, MRC, PNG's end marker) and every Zarr array's metadata opens.
  Temporary files (``.NAME.xxxx.tmp``) are not final names; those left after
  the rerun are counted apart (*stale temps*).
- *entries lost*: every image and edge of ``coframe.yaml`` before the start is
  still there after the kill and after the rerun.
- the rerun (the same command) runs to completion; if it refuses with a
  one-line error naming ``--force`` it is run again with ``--force``
  (*needed --force*).
- *identical*: the rerun's tree equals the reference's: same file names;
  binary files (Zarr chunks, TIFF, PNG, ``.tfm``) byte for byte; JSON and YAML
  parsed, with the fields that record when and how long (``created``,
  ``seconds``, ``timings``) and the trial directory's own path removed;
  ``report.html`` with its time figures masked. A command whose two
  reference runs already differ (``register`` and ``demo``: the registration
  is not bit-reproducible; the demo's MRC header holds its creation time) is
  compared with the reference within a tolerance instead: it may differ only
  in the files where the two reference runs differ, with ``.tfm`` matrix entries
  within ``--tolerance`` 2e-3 and translations within ``--tolerance-nm`` 20 nm
  (a twentieth of the X-ray voxel); the table says so.

Prints one table row per command and writes the trials as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

COFRAME = str(Path(sys.executable).with_name("coframe"))
TEMP = re.compile(r"\.tmp|\.old-[0-9a-f]{8}$")
IGNORED = {".coframe.yaml.lock"}
DROP_KEYS = {"created", "seconds", "timings", "elapsed"}
JSON_NAMES = {".zattrs", ".zarray", ".zgroup", "zarr.json"}


@dataclass
class Case:
    """One command under test: how to prepare its directory and what to run."""

    name: str
    argv: list[str]
    prepare: str  # "copy", "copy-no-edge" or "empty"


CASES = {
    "add": Case("add", ["add", "extra", "tem/section-1.tif", "--modality", "tem"], "copy"),
    "register": Case("register", ["register", "xray", "fibsem"], "copy-no-edge"),
    "locate": Case(
        "locate",
        ["locate", "tem-2", "xray", "--normal", "1,0,0", "--max-tilt", "25", "--force"],
        "copy",
    ),
    "resample": Case(
        "resample",
        ["resample", "xray", "--into", "fibsem", "--voxel-size", "48", "--chunks", "16,16,16"]
        + ["-o", "out.zarr", "--quiet"],
        "copy",
    ),
    "demo": Case("demo", ["demo", "d", "--size", "tiny"], "empty"),
}


@dataclass
class Row:
    """Counts of one command's trials."""

    kills: int = 0
    finished_first: int = 0
    identical: int = 0
    within_tolerance: int = 0
    differing: int = 0
    half_written: int = 0
    entries_lost: int = 0
    needed_force: int = 0
    refused_done: int = 0
    rerun_failed: int = 0
    stale_temps: int = 0
    deterministic: bool = True
    ref_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    ref_diffs: list[str] = field(default_factory=list)


def make_base(work: Path) -> Path:
    """The tiny demo workspace every trial copies (written once)."""
    base = work / "base"
    if not (base / "coframe.yaml").is_file():
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(
            [COFRAME, "demo", str(base), "--size", "tiny"], check=True, capture_output=True
        )
        shutil.rmtree(base / "resampled")
        (base / "report.html").unlink()
    return base


def prepare(case: Case, base: Path, where: Path) -> Path:
    """A fresh directory for one run of ``case``; returns the directory to run in."""
    shutil.rmtree(where, ignore_errors=True)
    if case.prepare == "empty":
        where.mkdir(parents=True)
        return where
    shutil.copytree(base, where)
    if case.prepare == "copy-no-edge":
        doc = yaml.safe_load((where / "coframe.yaml").read_text())
        doc["transforms"] = [t for t in doc["transforms"] if t["from"] != "fibsem"]
        (where / "coframe.yaml").write_text(yaml.safe_dump(doc))
        (where / "transforms" / "fibsem-to-xray.tfm").unlink()
    return where


def run(argv: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COFRAME, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def workspace_dir(case: Case, cwd: Path) -> Path:
    return cwd / "d" if case.prepare == "empty" else cwd


def entries(ws: Path) -> set[str]:
    """Images and edges of a workspace (empty when it has no readable file)."""
    try:
        doc = yaml.safe_load((ws / "coframe.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return set()
    if not isinstance(doc, dict):
        return set()
    found = {f"image {k}" for k in doc.get("images") or {}}
    found |= {f"edge {t['from']}->{t['to']}" for t in doc.get("transforms") or []}
    return found


def final_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not TEMP.search(d)]
        out.extend(Path(dirpath, f) for f in filenames if not TEMP.search(f) and f not in IGNORED)
    return sorted(out)


def temps(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out.extend(Path(dirpath, n) for n in [*dirnames, *filenames] if TEMP.search(n))
    return out


def half_written(root: Path) -> list[str]:
    """Files under their final names that do not parse (a write seen half done)."""
    import SimpleITK as sitk
    import tifffile
    import zarr

    from coframe.app.workspace import load_workspace

    bad = []
    for path in final_files(root):
        name, suffix = path.name, path.suffix
        try:
            if name == "coframe.yaml":
                load_workspace(path.parent)
            elif name in JSON_NAMES or suffix == ".json":
                json.loads(path.read_text())
            elif suffix in (".yaml", ".yml"):
                yaml.safe_load(path.read_text())
            elif suffix in (".tfm", ".h5"):
                sitk.ReadTransform(str(path))
            elif suffix in (".tif", ".tiff"):
                tifffile.imread(path)
            elif suffix == ".png":
                if not path.read_bytes().endswith(b"IEND\xaeB`\x82"):
                    raise ValueError("no PNG end marker")
            elif suffix == ".mrc":
                import mrcfile

                mrcfile.open(path).close()
            if name in (".zarray", "zarr.json"):
                meta = json.loads(path.read_text())
                if name == ".zarray" or meta.get("node_type") == "array":
                    zarr.open_array(str(path.parent), mode="r")
        except Exception as e:  # noqa: BLE001 - any failure to parse is what is counted
            bad.append(f"{path.relative_to(root)}: {type(e).__name__}: {str(e)[:80]}")
    return bad


def _clean(value: Any, root: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _clean(_without_force(v) if k == "command" else v, root)
            for k, v in value.items()
            if k not in DROP_KEYS
        }
    if isinstance(value, list):
        return [_clean(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<dir>")
    return value


def _without_force(command: Any) -> Any:
    """A recorded command line without ``--force``: a rerun that needed it did the same work.

    A kill after the output is complete but before the workspace records it
    leaves an output the rerun must be allowed to replace (counted apart as
    ``needed_force``); the command it records then carries the flag.
    """
    if not isinstance(command, str):
        return command
    return " ".join(word for word in command.split(" ") if word != "--force")


def _content(path: Path, root: Path) -> Any:
    name, suffix = path.name, path.suffix
    if name in JSON_NAMES or suffix == ".json":
        return _clean(json.loads(path.read_text()), str(root))
    if suffix in (".yaml", ".yml"):
        return _clean(yaml.safe_load(path.read_text()), str(root))
    if suffix == ".html":
        text = path.read_text().replace(str(root), "<dir>")
        text = re.sub(r"\d+(\.\d+)? ?(s|ms|seconds)\b", "<t>", text)
        return re.sub(r"\d{4}-\d\d-\d\dT[\d:]+(\+\d\d:\d\d)?", "<time>", text)
    return path.read_bytes()


def compare(ref: Path, got: Path) -> list[str]:
    """Differences between two output trees (empty: identical up to times and paths)."""
    a = {p.relative_to(ref): p for p in final_files(ref)}
    b = {p.relative_to(got): p for p in final_files(got)}
    diffs = [f"only in reference: {k}" for k in sorted(set(a) - set(b))]
    diffs += [f"only in rerun: {k}" for k in sorted(set(b) - set(a))]
    for key in sorted(set(a) & set(b)):
        if _content(a[key], ref) != _content(b[key], got):
            diffs.append(f"differs: {key}")
    return diffs


def _tfm_parameters(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in root.rglob("*.tfm"):
        for line in path.read_text().splitlines():
            if line.startswith("Parameters:"):
                out[str(path.relative_to(root))] = np.array(line.split()[1:], float)
    return out


def parameter_spread(ref: Path, got: Path) -> tuple[float, float] | None:
    """Largest difference of the ``.tfm`` matrix entries and translations (nm) of two trees.

    None if the trees hold other ``.tfm`` files or parameter counts.
    """
    pa, pb = _tfm_parameters(ref), _tfm_parameters(got)
    if set(pa) != set(pb) or any(pa[k].shape != pb[k].shape for k in pa):
        return None
    if not pa:
        return 0.0, 0.0
    matrix = max(float(np.max(np.abs(pa[k][:9] - pb[k][:9]))) for k in pa)
    shift = max(float(np.max(np.abs(pa[k][9:] - pb[k][9:]))) for k in pa)
    return matrix, shift


def close_enough(
    ref: Path, got: Path, diffs: list[str], allowed: list[str], tolerance: float, nm: float
) -> bool:
    """Whether a rerun differs only where two uninterrupted runs do, and within tolerance.

    ``allowed`` lists the differences between the two reference runs; ``.tfm``
    matrix entries must agree within ``tolerance``, translations within ``nm``.
    """
    if not set(diffs) <= set(allowed):
        return False
    spread = parameter_spread(ref, got)
    return spread is not None and spread[0] <= tolerance and spread[1] <= nm


def one_line_error(result: subprocess.CompletedProcess[str]) -> bool:
    lines = [
        ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")
    ]
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:")


def trial(
    case: Case, base: Path, cwd: Path, delay: float, row: Row, ref: Path, tol: float, tol_nm: float
) -> dict:
    """One kill, the checks after it, the rerun and its comparison."""
    cwd = prepare(case, base, cwd)
    ws = workspace_dir(case, cwd)
    before = entries(ws)
    proc = subprocess.Popen(
        [COFRAME, *case.argv],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    record: dict[str, Any] = {"command": case.name, "delay": round(delay, 2), "finished": finished}
    if finished:
        row.finished_first += 1
        return record
    row.kills += 1
    bad = half_written(cwd)
    lost = sorted(before - entries(ws))
    record["written_before_kill"] = sorted(entries(ws) - before)
    rerun = run(case.argv, cwd)
    if rerun.returncode != 0 and one_line_error(rerun) and "--force" in rerun.stderr:
        record["refused"] = rerun.stderr.strip()
        if record["written_before_kill"] and case.prepare != "empty":
            row.refused_done += 1  # the kill came after the command stored its entry
            # (the demo refuses its whole unfinished directory: counted as --force)
        else:
            row.needed_force += 1
        rerun = run([*case.argv, "--force"], cwd)
    lost += sorted(before - entries(ws))
    stale = temps(cwd)
    record.update(half_written=bad, lost=lost, rerun_rc=rerun.returncode)
    record["stale_temps"] = [str(p.relative_to(cwd)) for p in stale]
    row.half_written += len(bad)
    row.entries_lost += len(lost)
    row.stale_temps += bool(stale)
    if rerun.returncode != 0:
        row.rerun_failed += 1
        record["rerun_error"] = rerun.stderr.strip()[-400:]
        return record
    diffs = compare(ref, cwd)
    record["differences"] = diffs
    record["parameter_spread"] = parameter_spread(ref, cwd)
    if not diffs:
        row.identical += 1
    elif not row.deterministic and close_enough(ref, cwd, diffs, row.ref_diffs, tol, tol_nm):
        row.within_tolerance += 1
    else:
        row.differing += 1
    return record


def kill_trials(
    case: Case,
    base: Path,
    work: Path,
    kills: int,
    rng: random.Random,
    tolerance: float = 2e-3,
    tolerance_nm: float = 20.0,
    records: list[dict] | None = None,
) -> Row:
    """Two reference runs of ``case``, then ``kills`` trials (:func:`trial`); the counts."""
    row = Row()
    refs = []
    for i in range(2):
        cwd = prepare(case, base, work / f"{case.name}-ref{i}")
        start = time.monotonic()
        done = run(case.argv, cwd)
        row.ref_seconds = max(row.ref_seconds, time.monotonic() - start)
        if done.returncode != 0:
            sys.exit(f"reference run of {case.name} failed: {done.stderr.strip()}")
        refs.append(cwd)
    ref_diffs = compare(refs[0], refs[1])
    row.deterministic, row.ref_diffs = not ref_diffs, ref_diffs
    if ref_diffs:
        spread = parameter_spread(refs[0], refs[1])
        row.notes.append(
            "two uninterrupted runs differ: " + "; ".join(ref_diffs) + f" (matrix, nm: {spread})"
        )
    attempts = 0
    while row.kills < kills and attempts < 3 * kills:
        attempts += 1
        delay = rng.uniform(0.02, 0.98) * row.ref_seconds
        rec = trial(
            case, base, work / f"{case.name}-trial", delay, row, refs[0], tolerance, tolerance_nm
        )
        if records is not None:
            records.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="kills over all commands")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--commands", default="add,resample,register,locate,demo")
    parser.add_argument(
        "--weights",
        default="add=15,resample=15,register=7,locate=8,demo=5",
        help="share of the kills per command",
    )
    parser.add_argument("--tolerance", type=float, default=2e-3, help="matrix entries")
    parser.add_argument("--tolerance-nm", type=float, default=20.0, help="translations")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: temp)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    names = args.commands.split(",")
    weights = {k: float(v) for k, v in (w.split("=") for w in args.weights.split(","))}
    total = sum(weights.get(n, 1.0) for n in names)
    quota = {n: max(1, round(args.kills * weights.get(n, 1.0) / total)) for n in names}
    work = args.work or Path(tempfile.mkdtemp(prefix="coframe-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    base = make_base(work)
    rows: dict[str, Row] = {}
    records: list[dict] = []
    for name in names:
        rows[name] = kill_trials(
            CASES[name], base, work, quota[name], rng, args.tolerance, args.tolerance_nm, records
        )
    head = (
        f"{'command':9} {'ref s':>6} {'kills':>5} {'identical':>9} {'within tol':>10} "
        f"{'differ':>6} {'half-written':>12} {'lost':>4} {'done':>4} {'--force':>7} "
        f"{'rerun failed':>12} "
        f"{'stale temps':>11} {'finished first':>14}"
    )
    print(head)
    for name, r in rows.items():
        print(
            f"{name:9} {r.ref_seconds:6.1f} {r.kills:5d} {r.identical:9d} "
            f"{r.within_tolerance if not r.deterministic else '-':>10} {r.differing:6d} "
            f"{r.half_written:12d} {r.entries_lost:4d} {r.refused_done:4d} {r.needed_force:7d} "
            f"{r.rerun_failed:12d} "
            f"{r.stale_temps:11d} {r.finished_first:14d}"
        )
        for note in r.notes:
            print(f"  {name}: {note}")
    if args.json:
        doc = {"rows": {k: vars(v) for k, v in rows.items()}, "trials": records}
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
