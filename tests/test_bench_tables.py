"""The benchmark tables: medians and ranges from the results files, blocks kept current.

``benchmarks/tables.py`` renders ``benchmarks/results/*.json`` into README.md and
docs/scale.md between markers; these checks keep the figures there equal to the
files and the summaries honest (median and range, never the best run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import pairs  # noqa: E402
import results  # noqa: E402
import tables  # noqa: E402


def _row(method: str, mean: float, seconds: float, repeat: int) -> dict:
    return {
        "pair": "avg152-affine", "method": method, "mean": mean, "max": 2 * mean,
        "seconds": seconds, "peak_gb": 0.5, "voxel": 2.0, "note": "n", "repeat": repeat,
    }  # fmt: skip


def test_summary_is_median_and_range_not_best() -> None:
    rows = [
        _row("coframe", m, s, i) for i, (m, s) in enumerate([(1.0, 9.0), (2.0, 1.0), (6.0, 4.0)])
    ]
    rows.append({"pair": "avg152-affine", "method": "ants", "error": "boom", "repeat": 0})
    summary = pairs.summarise(rows, ["coframe", "ants"])
    ours = summary[0]
    # TRE in voxels (2 mm): 0.5, 1, 3 -> median 1; seconds median 4, not the best (1)
    assert ours["tre_mean_vox"] == {"median": 1.0, "min": 0.5, "max": 3.0, "n": 3}
    assert ours["seconds"]["median"] == 4.0
    assert summary[1]["failed"] == 1 and "tre_mean_vox" not in summary[1]
    text = pairs.table({"summary": summary})
    assert "1.000 (0.500–3.000)" in text and "4.0 (1.0–9.0)" in text
    assert "| evaluation | avg152-affine | ants | 1 | failed |" in text


def test_replace_block_touches_only_its_markers() -> None:
    text = "a\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nb <!-- bench:y -->keep<!-- /bench:y -->"
    out = tables.replace_block(text, "x", "new")
    assert (
        out
        == "a\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\nb <!-- bench:y -->keep<!-- /bench:y -->"
    )
    with pytest.raises(ValueError):
        tables.replace_block(text, "z", "new")


def test_readme_and_scale_tables_are_those_of_the_results_files() -> None:
    # every block whose results file exists must equal its rendering (run tables.py to fix)
    assert tables.main(["--check"]) == 0
    assert results.fmt({"median": 1.0, "min": 1.0, "max": 1.0, "n": 1}, 2) == "1.00"


def test_locate_lines_come_from_the_first_file_that_measured_them() -> None:
    import locate

    def rows(prior: float, found: list[bool]) -> list[dict]:
        return [
            {"volume": "v", "prior_deg": prior, "found": f, "mirror": False,
             "found_or_flagged": f, "trustworthy": f, "normal_deg": 0.1,
             "in_plane_voxels": 0.1, "seconds": 10.0}
            for f in found
        ]  # fmt: skip

    new = {"rows": rows(0.0, [True] * 9 + [False]), "complete": False, "benchmark": "locate"}
    old = {"rows": rows(0.0, [False, False]) + rows(10.0, [True, True, False])}
    lines = locate.rows_by_line(new, old)
    assert [len(v) for v in lines.values()] == [10, 3]
    text = locate.table(new, old)
    assert "| v | 9/10 = 90 %" in text and "| v, normal given 10° off" in text
    assert "2/3 = 67 %" in text and "0/2" not in text
    meta = {"date": "2026-12-07", "coframe_commit": "c", "command": "x", "versions": {}}
    meta["machine"] = {"cpus": 2, "cpu": "cpu", "load_average_start": [1.0]}
    assert "(interrupted: 10 poses measured)" in tables.provenance_line({**meta, **new})


def test_an_interrupted_register_run_keeps_whole_rounds(monkeypatch, tmp_path) -> None:
    """Repeats are the outer loop; the file saved mid-round sums whole rounds only."""
    from types import SimpleNamespace

    monkeypatch.setattr(pairs, "source_images", lambda pair: None)
    monkeypatch.setattr(
        pairs,
        "make_pair",
        lambda pair, w, data, images: {
            "source": pair, "truth": w, "deformable": False, "voxel": 2.0,
            "truth_check_sitk_max_mm": 0.0,
        },
    )  # fmt: skip
    calls: list[tuple] = []
    saved: list[dict] = []

    def run_child(method, data, deformable, tmp, timeout, repeat):
        calls.append((repeat, data.name, method))
        if len(calls) == 7:  # the second round is cut short
            raise KeyboardInterrupt
        return {"method": method, "mean": 1.0 + repeat, "max": 2.0, "seconds": 1.0,
                "peak_gb": 0.1}  # fmt: skip

    args = SimpleNamespace(methods="coframe,elastix", pairs="avg152-affine", warps=2,
                           repeats=3, timeout=None)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        pairs.run_pairs(args, tmp_path, run_child, saved.append)
    assert [c[0] for c in calls] == [0, 0, 0, 0, 1, 1, 1]
    assert [c[1] for c in calls[:4]] == ["avg152-affine-w0"] * 2 + ["avg152-affine-w1"] * 2
    last = saved[-1]
    assert last["complete"] is False and last["whole_rounds"] == 1 and len(last["rows"]) == 6
    assert {e["runs"] for e in last["summary"]} == {2}
    assert all(e["tre_mean_vox"]["median"] == 0.5 for e in last["summary"])


def test_montage_table_gives_memory_and_errors_per_montage() -> None:
    import montage

    ok = {"montage": "flat", "side": 20000, "pixel_nm": 3.0, "mb": 390.0, "seconds": 41.0,
          "peak_rss_gb": 0.61, "trustworthy": True, "normal_deg": 0.12, "offset_voxels": 0.05,
          "centre_voxels": 0.1, "compression": 0.079}  # fmt: skip
    bad = {"montage": "pyramid", "side": 20000, "pixel_nm": 3.0, "mb": 420.0,
           "peak_rss_gb": 0.5, "error": "refused"}  # fmt: skip
    text = montage.table({"rows": [ok, bad]})
    assert "| flat | 20,000² (3.00 nm) | 390 MB | 0.61 GB | 41 s | 0.12° |" in text
    assert "| pyramid |" in text and "failed: refused" in text


def test_standing_calls_a_tie_a_tie() -> None:
    assert tables._verdict(1.004) == "same" and tables._verdict(0.996) == "same"
    assert tables._verdict(0.95) == "better" and tables._verdict(1.05) == "worse"


def test_a_resumed_locate_run_keeps_its_poses_and_draws_the_same_later_sections(
    monkeypatch,
) -> None:
    import locate
    import numpy as np
    from locate_synthetic import blob_phantom

    from coframe.transforms.affine import Affine

    seen: list[float] = []

    def fake_locate(section, target, options):  # records the section it is given
        seen.append(float(np.asarray(section.levels[0].read(), dtype=np.float64).sum()))
        return type("R", (), {
            "affine": Affine(np.column_stack([np.eye(3)[:, 1:], np.zeros(3)])),
            "working_spacing": 1.0, "confidence": 0.5, "trustworthy": False,
            "mirror_tie": False, "ncc": 0.1, "edges": 0.1, "timings": {},
        })()  # fmt: skip

    monkeypatch.setattr(locate, "locate_section", fake_locate)
    monkeypatch.setitem(locate.SETTINGS, "toy", (12.0, 1.0, 0.0))
    volume = blob_phantom((24, 24, 24), 1.0, seed=3)
    whole = locate.run_volume("toy", volume, "micrometer", 5, 7, 0)
    first = list(seen)
    seen.clear()
    kept = {i: {**whole[i], "kept": True} for i in (0, 1, 3)}
    resumed = locate.run_volume("toy", volume, "micrometer", 5, 7, 0, done=kept)
    assert [r["pose"] for r in resumed] == list(range(5))
    assert [r.get("kept", False) for r in resumed] == [True, True, False, True, False]
    assert seen == [first[2], first[4]]  # poses 2 and 4 drawn as in the whole run
