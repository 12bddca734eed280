"""Benchmark: this project's S3 steps side by side with the notebook's code and the usual tools,
at 0, 20 and 60 ms round trip, in one run, on one local SeaweedFS that this script starts.

    pip install -c constraints.txt -e '.[bench]' && bash bench/setup-tools.sh
    python bench/run.py                     # the full run (about 25 minutes on 2 cores)
    python bench/run.py --smoke --out DIR   # seconds: checks the harness only (the test suite)

Results: docs/BENCHMARKS.md, docs/bench_latency.png and docs/bench_results.json. The harness
lives in bench/harness/ (server and seeding, tools, scenarios, report; programs/ holds the
code that runs in other processes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from harness import report, scenarios, tools
from harness.server import BUCKET, KEY_SPACES, Bench


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtts", type=float, nargs="+", default=[0, 20, 60], help="round trips, ms")
    parser.add_argument("--list-n", type=int, default=100_000)
    parser.add_argument("--load-files", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--delete-n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-graph", action="store_true", help="skip the whole-graph runs")
    parser.add_argument("--graph-repeat", type=int, default=2, help="whole-graph runs per round trip (best kept)")
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "coil2000"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--reduced", default="", help="say in the report which sizes were reduced, and why")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the harness only")
    parser.add_argument("--render-from", help="write the report again from a run's bench_results.json (after "
                        "editing bench/NOTES.md); measures nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render_from:
        raw = json.loads(Path(args.render_from).read_text())
        return write_report(raw, out)
    if args.smoke:
        args.list_n, args.load_files, args.large_mb, args.delete_n, args.repeat = 120, 5, 1, 50, 1
    out.mkdir(parents=True, exist_ok=True)
    raw: dict = {"argv": " ".join(argv if argv is not None else sys.argv[1:]),
                 "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                 "rtts": [f"{r:g}" for r in args.rtts], "repeat": args.repeat, "reduced": args.reduced,
                 "scenarios": {}, "memory": {}, "whole_graph": {}}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="s3-assets-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            run_all(bench, args, raw, Path(tmp))
        finally:
            bench.stop()
    load = max(load, os.getloadavg()[0])
    if load > 1.5:
        raw["shared_machine"] = f"{load:.1f} on {os.cpu_count()} CPUs"
    (out / "bench_results.json").write_text(json.dumps(raw, indent=1, default=str))
    return write_report(raw, out)


def write_report(raw: dict, out: Path) -> Path:
    path = out / "BENCHMARKS.md"
    path.write_text(report.render(raw, out, (ROOT / "bench" / "NOTES.md").read_text()))
    print(f"wrote {path}")
    return path


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run_all(bench: Bench, args: argparse.Namespace, raw: dict, workdir: Path) -> None:
    n = args.list_n
    spaces = {name: f"list-{name[:4]}" for name in KEY_SPACES}
    for name, prefix in spaces.items():
        log(f"seeding {n:,} keys, {name}")
        bench.seed(prefix, n, KEY_SPACES[name])
    small = bench.seed("load-small", args.load_files, KEY_SPACES["date-partitioned"], scenarios.small_csv)
    large = bench.seed("load-large", 1, body=scenarios.large_csv(args.large_mb))
    sizes = {key: bench.direct.head_object(Bucket=BUCKET, Key=key)["ContentLength"] for key in large}
    sizes.update({key: len(scenarios.small_csv(i)) for i, key in enumerate(small)})
    listing_label = {name: f"listing {n:,} objects ({name})" for name in spaces}
    small_label = f"loading {args.load_files:,} small CSVs"
    large_label = f"loading one {sizes[large[0]] / 1e6:.0f} MB CSV"
    delete_label = f"deleting {args.delete_n:,} objects"
    for label in [*listing_label.values(), small_label, large_label, delete_label]:
        raw["scenarios"][label] = {}
    for rtt in args.rtts:
        target = bench.target(rtt)
        key = f"{rtt:g}"
        for name, prefix in spaces.items():
            log(f"{key} ms: {listing_label[name]}")
            raw["scenarios"][listing_label[name]][key] = scenarios.listing(target, prefix, n, args.repeat)
        log(f"{key} ms: change sensor ticks over {n:,} objects")
        raw.setdefault("sensor", {})[key] = scenarios.sensor_ticks(target, spaces["flat"], n)
        log(f"{key} ms: {small_label}")
        raw["scenarios"][small_label][key] = scenarios.loading(target, small_label, small, sizes, args.repeat, workdir)
        raw.setdefault("loading_cpu", {})[key] = dict(tools.CPU)
        log(f"{key} ms: {large_label}")
        raw["scenarios"][large_label][key] = scenarios.loading(target, large_label, large, sizes, args.repeat, workdir)
        log(f"{key} ms: {delete_label}")
        raw["scenarios"][delete_label][key] = scenarios.deleting(bench, target, args.delete_n)
        if not args.no_graph and (rtt == args.rtts[0] or not args.smoke):  # smoke: the graph once
            source = uci_source(args, workdir)
            log(f"{key} ms: whole graph")
            raw["whole_graph"][key] = scenarios.whole_graph(bench, target, source, 1 if args.smoke else args.graph_repeat)
        log(f"{key} ms: done")
    target = bench.target(args.rtts[0])
    log("memory")
    raw["memory"][f"loading one {sizes[large[0]] / 1e6:.0f} MB CSV"] = scenarios.memory(target, "loading", "load-large")
    listing_memory = scenarios.memory(target, "listing", spaces["flat"])
    raw["memory"][f"listing {n:,} objects"] = {**listing_memory, "objects": n}
    raw["import_profile"] = scenarios.import_profile()


def uci_source(args: argparse.Namespace, workdir: Path) -> Path:
    source = Path(args.source)
    if (source / "ticdata2000.txt").exists():
        return source
    from s3_assets_tests.uci_fixtures import write_uci_files

    target = workdir / "uci"
    return target if (target / "ticdata2000.txt").exists() else write_uci_files(target)


if __name__ == "__main__":
    main()
