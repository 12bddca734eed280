"""Wall time of the whole graph on the CLI with each executor, written to docs/EXECUTORS.md.

    python bench/executors.py [--repeat 3]

Runs `dagster job execute -j refresh_all` (in-process, the default) and
`-j refresh_all_multiprocess` (a process per step) against a fresh local SeaweedFS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3_assets.local_s3.server import EmbeddedS3, find_free_ports

JOBS = {"in-process (default: `refresh_all`, `dagster asset materialize`)": "refresh_all",
        "multiprocess (`refresh_all_multiprocess`)": "refresh_all_multiprocess"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "coil2000"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedS3(Path(tmp) / "s3", find_free_ports())
        server.ensure_running()
        source = Path(args.source)
        if not (source / "ticdata2000.txt").exists():
            from s3_assets_tests.uci_fixtures import write_uci_files

            source = write_uci_files(Path(tmp) / "uci")
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "S3_ASSETS_LOCAL_DIR": str(server.data_dir), "S3_ASSETS_SOURCE": str(source),
               "S3_ASSETS_OFFLINE_SOURCE": "", "DAGSTER_HOME": str(home), "S3_ASSETS_BUCKET": "executor-bench"}
        dagster = str(Path(sys.executable).parent / "dagster")
        times: dict[str, list[float]] = {}
        try:
            for label, job in JOBS.items():
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    subprocess.run([dagster, "job", "execute", "-m", "s3_assets.definitions", "-j", job], env=env,
                                   check=True, capture_output=True)
                    times.setdefault(label, []).append(time.perf_counter() - start)
        finally:
            server.stop()
    lines = ["# Executors: the whole graph on the CLI", "",
             (f"Measured by `python bench/executors.py --repeat {args.repeat}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, real UCI data, local "
             "SeaweedFS; wall time of the whole `dagster job execute` process."), "",
             "| executor | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|"]
    for label, values in times.items():
        lines.append(f"| {label} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    lines += ["", (ROOT / "bench" / "EXECUTORS_NOTES.md").read_text()]
    (ROOT / "docs" / "EXECUTORS.md").write_text("\n".join(lines) + "\n")
    print((ROOT / "docs" / "EXECUTORS.md").read_text())


if __name__ == "__main__":
    main()
