"""Concurrency load: 8 coframe processes at once against one workspace, then check nothing is lost.

Run in the project environment (no peers needed)::

    .venv/bin/python benchmarks/load.py --seconds 120 [--workers 8] [--seed 1]
        [--work DIR] [--json OUT]

Set-up (one process, serial): a workspace with ``--pairs`` pairs of 32^3
phantoms (Gaussian blobs, 1 µm voxels, the second of a pair shifted by a
known sub-voxel translation), pair ``k``'s images ``f<k>`` and ``m<k>`` in
their own spaces, and an ITK translation edge ``r<k> -> f<k>`` from a third
image of each pair (for the resamples).

Load: ``--workers`` threads each start ``coframe`` subprocesses one after the
other until ``--seconds`` have passed, in three roles (3 : 2 : 3 of 8):

- ``add``: ``coframe add a<w>-<i> IMAGE`` of a new image file each time;
- ``register``: ``coframe register m<k> f<k> --steps rigid`` of the next
  pair not yet registered (each pair once);
- ``resample``: ``coframe resample f<k> --into r<k> -o out/<w>-<i>.zarr
  --chunks 8,8,8`` (64 blocks), a new output each time.

Checks, after all processes ended:

- every command exited 0, or failed with a one-line error naming the lock
  timeout (counted; any other failure is listed);
- ``coframe.yaml`` holds every image and edge of the set-up and every entry
  of a command that exited 0 (none lost), and loads;
- every resample output equals, array for array and in its metadata, the
  same command run afterwards alone (a serial reference);
- every stored registration edge's translation is within 0.25 voxel of the
  phantom's known shift.

Prints the counts per role and writes them as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage

# the phantoms shared with the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from samples import blobs  # noqa: E402

from coframe.volumes.write import write_tiff  # noqa: E402

COFRAME = str(Path(sys.executable).with_name("coframe"))
LOCK_TEXT = "another coframe command has been writing"
SHAPE = (32, 32, 32)
#: The phantoms' voxel size is 1 of this unit.
UNIT = "micrometer"


def itk_translation(path: Path, offset: tuple[float, float, float]) -> Path:
    """ITK file of a translation given in z, y, x nanometres (written x-first)."""
    z, y, x = offset
    path.write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: TranslationTransform_double_3_3\n"
        f"Parameters: {x} {y} {z}\nFixedParameters:\n"
    )
    return path


def set_up(work: Path, pairs: int, seed: int) -> tuple[Path, dict[int, np.ndarray]]:
    """The workspace and the known shift (voxels, z, y, x) of each pair."""
    from coframe.app.workspace import init_workspace

    rng = np.random.default_rng(seed)
    data = work / "data"
    data.mkdir(parents=True)
    ws = init_workspace(work / "ws")
    shifts = {}
    for k in range(pairs):
        fixed = blobs(SHAPE, 100 + k)
        shift = rng.uniform(-1.5, 1.5, 3)
        moving = ndimage.shift(fixed.astype(float), shift, order=1, mode="nearest")
        shifts[k] = shift
        f = write_tiff(data / f"f{k}.tif", fixed, 1.0, UNIT)
        m = write_tiff(data / f"m{k}.tif", moving.astype(np.uint8), 1.0, UNIT)
        r = write_tiff(data / f"r{k}.tif", blobs(SHAPE, 500 + k), 1.0, UNIT)
        ws = ws.add_image(f"f{k}", f, None)
        ws = ws.add_image(f"m{k}", m, None)
        ws = ws.add_image(f"r{k}", r, None)
        t = itk_translation(data / f"r{k}-to-f{k}.tfm", tuple(rng.uniform(-3000, 3000, 3)))
        ws = ws.add_edge(f"r{k}", f"f{k}", t, "itk", None, {"command": "load set-up"})
    ws.save()
    return ws.root, shifts


class Load:
    """The shared state of the worker threads."""

    def __init__(self, work: Path, root: Path, pairs: int, seconds: float, seed: int) -> None:
        self.work, self.root, self.deadline = work, root, time.monotonic() + seconds
        self.lock = threading.Lock()
        self.pairs = list(range(pairs))
        random.Random(seed).shuffle(self.pairs)
        self.runs: list[dict[str, Any]] = []
        self.n_pairs = pairs

    def next_pair(self) -> int | None:
        with self.lock:
            return self.pairs.pop() if self.pairs else None

    def command(self, role: str, worker: int, i: int) -> list[str] | None:
        if role == "add":
            image = write_tiff(
                self.work / "data" / f"a{worker}-{i}.tif",
                blobs(SHAPE, worker * 1000 + i),
                1.0,
                UNIT,
            )
            return ["add", f"a{worker}-{i}", str(image)]
        if role == "register":
            k = self.next_pair()
            return None if k is None else ["register", f"m{k}", f"f{k}", "--steps", "rigid"]
        k = (worker * 7 + i) % self.n_pairs
        out = self.root / "out" / f"{worker}-{i}.zarr"
        return [
            "resample",
            f"f{k}",
            "--into",
            f"r{k}",
            "-o",
            str(out),
            "--chunks",
            "8,8,8",
            "--quiet",
        ]

    def worker(self, role: str, worker: int) -> None:
        i = 0
        while time.monotonic() < self.deadline:
            argv = self.command(role, worker, i)
            if argv is None:
                break
            start = time.monotonic()
            done = subprocess.run(
                [COFRAME, *argv, "-w", str(self.root)], capture_output=True, text=True, timeout=900
            )
            with self.lock:
                self.runs.append(
                    {
                        "role": role,
                        "argv": argv,
                        "rc": done.returncode,
                        "stderr": done.stderr.strip(),
                        "seconds": round(time.monotonic() - start, 2),
                    }
                )
            i += 1


def zarr_tree(path: Path) -> dict[str, Any]:
    """Array contents and metadata of an OME-Zarr output (its own path, in the command, masked)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = json.dumps(dict(group.attrs), sort_keys=True).replace(str(path), "<out>")
    out: dict[str, Any] = {"attrs": attrs}
    for name, array in group.arrays():
        out[name] = (array.shape, array.chunks, str(array.dtype), np.asarray(array[...]).tobytes())
    return out


def check(load: Load, before: set[str], shifts: dict[int, np.ndarray]) -> dict[str, Any]:
    from coframe.app.workspace import load_workspace
    from coframe.transforms.formats import read_transform

    ws = load_workspace(load.root)
    have = {f"image {k}" for k in ws.images} | {f"edge {e.source}->{e.target}" for e in ws.edges}
    wanted = set(before)
    counts: Counter[str] = Counter()
    failures = []
    for run in load.runs:
        role = run["role"]
        counts[f"{role} runs"] += 1
        if run["rc"] == 0:
            counts[f"{role} ok"] += 1
            if role == "add":
                wanted.add(f"image {run['argv'][1]}")
            elif role == "register":
                wanted.add(f"edge {run['argv'][2]}->{run['argv'][1]}")
        elif run["rc"] == 2 and LOCK_TEXT in run["stderr"] and "\n" not in run["stderr"]:
            counts[f"{role} lock timeouts"] += 1
        else:
            counts[f"{role} failed"] += 1
            failures.append(run)
    lost = sorted(wanted - have)
    # resample outputs against a serial reference
    ref_dir = load.work / "reference"
    ref_dir.mkdir()
    unequal = []
    for run in load.runs:
        if run["role"] != "resample" or run["rc"] != 0:
            continue
        argv = list(run["argv"])
        out = Path(argv[argv.index("-o") + 1])
        ref = ref_dir / out.name
        argv[argv.index("-o") + 1] = str(ref)
        done = subprocess.run(
            [COFRAME, *argv, "-w", str(load.root)], capture_output=True, text=True
        )
        if done.returncode != 0 or zarr_tree(out) != zarr_tree(ref):
            unequal.append(str(out))
        counts["resample outputs compared"] += 1
    # registration edges against the known shifts
    wrong = []
    for edge in ws.edges:
        if edge.source.startswith("f") and edge.target.startswith("m"):
            k = int(edge.source[1:])
            t = read_transform(ws.resolve(edge.file), unit=ws.unit)
            centre = np.array([[16000.0, 16000.0, 16000.0]])
            moved = (t.apply(centre) - centre)[0] / 1000.0  # voxels, z, y, x
            error = float(np.max(np.abs(moved - shifts[k])))  # moving(p + shift) = fixed(p)
            counts["register edges checked"] += 1
            if error > 0.25:
                wrong.append({"edge": f"{edge.source}->{edge.target}", "error_voxels": error})
    return {
        "counts": dict(sorted(counts.items())),
        "lost": lost,
        "unequal_outputs": unequal,
        "wrong_edges": wrong,
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: temp)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="coframe-load-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    root, shifts = set_up(work, args.pairs, args.seed)
    doc = yaml.safe_load((root / "coframe.yaml").read_text())
    before = {f"image {k}" for k in doc["images"]}
    before |= {f"edge {t['from']}->{t['to']}" for t in doc["transforms"]}
    load = Load(work, root, args.pairs, args.seconds, args.seed)
    cycle = ("add", "register", "resample", "add", "resample", "register", "add", "resample")
    roles = [cycle[w % len(cycle)] for w in range(args.workers)]
    threads = [threading.Thread(target=load.worker, args=(r, w)) for w, r in enumerate(roles)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    result = check(load, before, shifts)
    result["wall_seconds"] = round(wall, 1)
    result["workers"] = Counter(roles)
    print(f"{args.workers} processes at once for {wall:.0f} s against one workspace ({root})")
    for key, value in result["counts"].items():
        print(f"  {key:28} {value}")
    print(f"  entries lost                 {len(result['lost'])} {result['lost'] or ''}")
    print(f"  resample outputs unequal     {len(result['unequal_outputs'])}")
    print(
        f"  registration edges wrong     {len(result['wrong_edges'])} {result['wrong_edges'] or ''}"
    )
    for f in result["failures"]:
        print(f"  FAILED {' '.join(f['argv'])}: {f['stderr'][-300:]}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
