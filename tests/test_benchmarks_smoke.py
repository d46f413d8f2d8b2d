"""Smoke test of the benchmark harness: ``benchmarks/run.py hdbscan --quick`` end to end,
plus the label comparison the ``hdbscan`` suite relies on."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # ``benchmarks`` is a folder of the checkout, not installed
    sys.path.insert(0, str(REPO))

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from benchmarks.harness import Bench  # noqa: E402
from benchmarks.report import markdown_table  # noqa: E402
from benchmarks.suites.hdbscan import cases, same_partition  # noqa: E402


def test_same_partition_accepts_renaming_only():
    reference = np.array([0, 0, 1, 1, -1, 2])
    assert same_partition(np.array([5, 5, 3, 3, -1, 0]), reference)
    assert not same_partition(np.array([5, 5, 3, 3, 0, 0]), reference)  # noise differs
    assert not same_partition(np.array([5, 5, 5, 5, -1, 0]), reference)  # clusters merged
    assert not same_partition(np.array([0, 1, 2, 2, -1, 3]), reference)  # cluster split


def test_bench_time_and_memory(tmp_path):
    bench = Bench(tmp_path, show_progress=False)
    calls = []
    timing = bench.time(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and len(timing.times) == 4
    assert timing.best <= timing.median <= max(timing.times)
    stopped = bench.time(lambda: calls.append(1), repeat=5, warmup=0, max_total_s=0.0)
    assert len(stopped.times) == 1  # the budget is spent after the first timed call
    peak = bench.peak_memory(lambda: np.ones(4_000_000).sum())  # 32 MB temporary
    assert 28e6 < peak.bytes < 200e6, peak


def test_markdown_table_hoists_constant_text_and_formats():
    records = [
        {"case": "c", "library": lib, "seconds": s, "status": "ok", "params": {"n": 10},
         "reference": "a", "speedup_vs_x": sp, "peak_bytes": 2**21}
        for lib, s, sp in (("a", 1.0, 2.0), ("b", 0.5, 4.0))]
    table = markdown_table(records)
    assert table.startswith("reference: a")
    assert "| 10 | b | 0.5 | 4.00× | 2.0 | ok |" in table


def test_record_rewrites_json_and_expectations_come_from_it(tmp_path):
    first = Bench(tmp_path, show_progress=False)
    first.record("s", "c", "lib", 1.5, params={"n": 3})
    second = Bench(tmp_path, show_progress=False)
    assert second.expected_seconds("s", "c", "lib", {"n": 3}) == 1.5
    assert second.expected_seconds("s", "c", "lib", {"n": 4}) is None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "hdbscan", "--quick",
         "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_quick_run_writes_json_markdown_and_plots(quick_run):
    payload = json.loads((quick_run / "hdbscan.json").read_text())
    assert payload["quick"] is True
    assert payload["machine"]["python"]
    recorded = {(r["case"], r["params"]["n"]) for r in payload["records"]}
    assert {(c.name, c.n) for c in cases(quick=True)} <= recorded
    markdown = (quick_run / "hdbscan.md").read_text()
    assert "## sweep_d32" in markdown and "| library |" not in markdown.split("## ")[0]
    for case in {c.name for c in cases(quick=True)}:
        assert (quick_run / f"hdbscan_{case}.png").stat().st_size > 1000


def test_quick_run_exact_libraries_agree(quick_run):
    """On well separated blobs every exact library finds the reference's partition."""
    payload = json.loads((quick_run / "hdbscan.json").read_text())
    timed = [r for r in payload["records"] if r["case"] != "first_call" and r["status"] == "ok"]
    assert any(r["library"] == "hdbscan exact" for r in timed)
    for rec in timed:
        if rec["library"] in ("medscore cpp", "medscore numba", "hdbscan exact"):
            assert rec["same_labels_as_ref"], rec
        assert rec["seconds"] > 0
