"""The benchmark harness itself, at N=200 (the benchmark proper is not part of the suite)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_smoke_run_writes_measured_tables(tmp_path):
    report = load_bench().main(["--sizes", "200", "--smoke", "--out", str(tmp_path)]).read_text()
    assert "## Listing 200 objects" in report and "## Deleting 200 objects" in report
    rows = dict(re.findall(r"^\| (s3-assets \(this project\)|notebook \(boto3 loop\)) \| ([0-9.]+) \|", report, re.M))
    assert float(rows["s3-assets (this project)"]) > 0 and float(rows["notebook (boto3 loop)"]) > 0
    assert "| whole graph on the CLI: ≤ 3 × a plain script |" in report
    assert re.search(r"\| dagster asset materialize --select '\*' \| [0-9.]+ \|", report)
