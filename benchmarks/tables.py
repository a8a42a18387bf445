"""Render ``benchmarks/results/*.json`` as the Markdown tables of the README and docs/scale.md.

Run ``python benchmarks/tables.py`` to rewrite every block between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in README.md and
docs/scale.md from the results files (``--check`` only says whether they are
current; ``--print`` prints the tables). Figures are medians with their range
over all runs, never the best of several.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import results

#: Where each block goes: (file, block name) -> renderer of the results file it reads.
TARGETS = {
    "README.md": ("register", "resample", "locate", "montage"),
    "docs/scale.md": ("resample",),
}


def provenance_line(report: dict[str, Any]) -> str:
    """One line: when, where (cores, load), what command and which commit measured a table."""
    m = report["machine"]
    load = f"{m['load_average_start'][0]:.1f}"
    if "load_average_end" in m:
        load += f" at the start, {m['load_average_end'][0]:.1f} at the end"
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    done = ""
    if report.get("complete") is False:
        unit = "poses" if report.get("benchmark") == "locate" else "runs"
        done = f" (interrupted: {len(report['rows'])} {unit} measured)"
    for part in report.get("resumed", []):
        done += (
            f" (resuming a run of coframe {part['coframe_commit']} on {part['date'][:10]}, "
            f"whose {part['poses']} poses are kept)"
        )
    return (
        f"Measured{done} {report['date'][:10]} on {m['cpus']} cores ({m['cpu']}, shared; "
        f"load average {load}), coframe {report['coframe_commit']}: `{report['command']}`. "
        f"Versions: {versions}."
    )


def _verdict(tre: float) -> str:
    """A TRE ratio in words: within 1 % (either way, before rounding) is a tie."""
    if abs(tre - 1.0) < 0.01:
        return "same"
    return "better" if tre < 1 else "worse"


def standing(report: dict[str, Any]) -> str:
    """coframe against each peer row, pair by pair: ratios of the medians."""
    lines = [
        "| pair | coframe vs | TRE mean, coframe / peer | "
        "coframe's speed-up (peer time / coframe time) |",
        "|---|---|---|---|",
    ]
    summary = [e for e in report["summary"] if "tre_mean_vox" in e and e["set"] != "floor"]
    for e in summary:
        if e["method"] == "coframe":
            continue
        ours = next(
            (c for c in summary if c["pair"] == e["pair"] and c["method"] == "coframe"), None
        )
        if ours is None:
            continue
        tre = ours["tre_mean_vox"]["median"] / e["tre_mean_vox"]["median"]
        time = e["seconds"]["median"] / ours["seconds"]["median"]
        lines.append(
            f"| {e['pair']} | {e['method']} | {tre:.2f} ({_verdict(tre)}) | "
            f"{time:.2f}x ({'coframe faster' if time > 1 else 'coframe slower'}) |"
        )
    return "\n".join(lines)


def render(name: str, report: dict[str, Any]) -> str:
    """The Markdown block of one results file."""
    if name == "register":
        import pairs

        body = pairs.table(report)
        sets = (
            f"Tuning pairs (the presets were tuned on these): {', '.join(report['tuning_pairs'])}. "
            f"Evaluation pairs (no preset was tuned on them): "
            f"{', '.join(report['evaluation_pairs'])}. Floor (no warp): "
            f"{', '.join(report.get('floor_pairs', []))}. {report['warps']} seeded random warp(s) "
            f"per pair, {report['repeats']} round-robin repeat(s) each; median (min–max) over "
            "all runs; TRE in fixed voxels over 3000 foreground points."
        )
        return f"{sets}\n\n{body}\n\n{standing(report)}\n\n{provenance_line(report)}"
    if name == "resample":
        import resample

        return f"{resample.table(report)}\n\n{provenance_line(report)}"
    if name == "locate":
        import locate

        # A run given a prior alone goes to locate-prior.json; each line of the
        # table comes from the first file that measured it.
        reports = [r for r in (report, results.load("locate-prior")) if r is not None]
        used = {id(rows[0]) for rows in locate.rows_by_line(*reports).values()}
        sources = [r for r in reports if any(id(row) in used for row in r["rows"])]
        return "\n\n".join([locate.table(*reports), *map(provenance_line, sources)])
    if name == "montage":
        import montage

        return f"{montage.table(report)}\n\n{provenance_line(report)}"
    raise ValueError(name)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` between its markers replaced by ``body``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if start not in text or end not in text:
        raise ValueError(f"no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail if a block is out of date.")
    parser.add_argument("--print", action="store_true", help="Print the tables only.")
    args = parser.parse_args(argv)
    stale = []
    for rel, names in TARGETS.items():
        path = results.ROOT / rel
        text = original = path.read_text()
        for name in names:
            report = results.load(name)
            if report is None:
                print(f"{name}: no benchmarks/results/{name}.json yet; block left as is")
                continue
            body = render(name, report)
            if args.print:
                print(f"## {name}\n\n{body}\n")
                continue
            text = replace_block(text, name, body)
        if text != original:
            stale.append(rel)
            if not args.check:
                Path(path).write_text(text)
                print(f"updated {rel}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python benchmarks/tables.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
