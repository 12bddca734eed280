"""What is measured: each scenario runs every tool against one round trip's proxy and returns
{tool: seconds or None (not installed)}. Seeding happens once per key space, straight to the
server; only the measured calls go through the proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from botocore.config import Config

from harness import tools
from harness.server import BUCKET, Bench, Target
from harness.tools import NOTEBOOK, PROJECT, run_process, timed
from s3_assets.lib.cleanup import delete_prefix
from s3_assets.lib.listing import list_objects
from s3_assets.lib.loading import ClientOrigin, load_frames

ROOT = Path(__file__).resolve().parents[2]
Results = dict[str, float | None]


def resource(target: Target):
    return boto3.resource("s3", endpoint_url=target.endpoint, region_name="us-east-1",
                          aws_access_key_id=target.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=target.env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(s3={"addressing_style": "path"}))


# -- listing ---------------------------------------------------------------------------------
ONE_PAGINATOR = "one paginator (this project's parser, parallelism=1)"


def listing(target: Target, prefix: str, n: int, repeat: int) -> Results:
    """Every object under prefix/: this project, one paginator, the notebook, aws, s5cmd, awswrangler."""
    root = f"{prefix}/"
    slow = 1 if n >= 50_000 and target.rtt_ms > 0 else repeat
    results: Results = {}
    results[PROJECT], table = timed(lambda: list_objects(target.client, BUCKET, root), repeat)
    assert len(table) == n, (len(table), n)
    results[ONE_PAGINATOR], table = timed(lambda: list_objects(target.client, BUCKET, root, parallelism=1), slow)
    assert len(table) == n

    def notebook() -> pd.DataFrame:  # the notebook: Bucket.objects.filter(Prefix) and a row per object
        rows = [{"key": o.key, "size": o.size, "last_modified": o.last_modified, "etag": o.e_tag}
                for o in resource(target).Bucket(BUCKET).objects.filter(Prefix=root)]
        return pd.DataFrame(rows)

    results[NOTEBOOK + " (objects.filter)"], frame = timed(notebook, slow)
    assert len(frame) == n
    aws, s5cmd, python = tools.aws(), tools.s5cmd(), tools.tools_python()
    results["aws s3 ls --recursive"] = run_process(
        [aws, "--endpoint-url", target.endpoint, "s3", "ls", "--recursive", f"s3://{BUCKET}/{root}"],
        target.env, slow) if aws else None
    results["s5cmd ls"] = run_process([s5cmd, "--endpoint-url", target.endpoint, "ls", f"s3://{BUCKET}/{root}*"],
                                      target.env, repeat) if s5cmd else None
    results["awswrangler list_objects"] = float(tools.run_program(
        python, "wrangler_list.py", [target.endpoint, f"s3://{BUCKET}/{root}", str(n), str(slow)],
        target.env)) if python else None
    return results


# -- loading ---------------------------------------------------------------------------------
def small_csv(i: int) -> bytes:
    rng = np.random.default_rng(i)
    return pd.DataFrame(rng.integers(0, 10, size=(100, 10))).to_csv(index=False).encode()


def large_csv(megabytes: int) -> bytes:
    rows = max(1, megabytes * 1024 * 1024 // 60)
    frame = pd.DataFrame(np.random.default_rng(0).integers(0, 100000, size=(rows, 10)))
    return frame.to_csv(index=False).encode()


def parse(body: bytes) -> pd.DataFrame:
    return pa_csv.read_csv(pa.BufferReader(body), read_options=pa_csv.ReadOptions(use_threads=False)).to_pandas()


def s3fs_candidate(target: Target, keys: list[str]) -> list[pd.DataFrame]:
    """s3fs/aiobotocore: every GET on fsspec's event loop, parsed here."""
    import s3fs

    fs = s3fs.S3FileSystem(key=target.env["AWS_ACCESS_KEY_ID"], secret=target.env["AWS_SECRET_ACCESS_KEY"],
                           client_kwargs={"endpoint_url": target.endpoint, "region_name": "us-east-1"},
                           skip_instance_cache=True)
    bodies = fs.cat([f"{BUCKET}/{key}" for key in keys], batch_size=64)
    return [parse(body) for body in bodies.values()]


def loading(target: Target, label: str, keys: list[str], sizes: dict[str, int], repeat: int,
            workdir: Path) -> Results:
    """The same objects loaded into DataFrames by each tool and candidate."""
    mapping = {key: key for key in keys}
    slow = 1 if target.rtt_ms > 0 else repeat
    results: Results = {}
    origin = ClientOrigin.with_keys(target.env["AWS_ACCESS_KEY_ID"], target.env["AWS_SECRET_ACCESS_KEY"])
    load_frames(target.client, BUCKET, {keys[0]: keys[0]}, sizes, origin=origin)  # arrow's S3 set-up, once per process
    tools.CPU.clear()
    results[PROJECT + ": pyarrow.fs.S3FileSystem"], frames = timed(
        lambda: load_frames(target.client, BUCKET, mapping, sizes, origin=origin), repeat, PROJECT + ": pyarrow.fs.S3FileSystem")
    assert len(frames) == len(keys)
    del frames
    results["candidate: botocore get_object, threads"], _ = timed(
        lambda: load_frames(target.client, BUCKET, mapping, sizes, botocore_only=True), slow,
        "candidate: botocore get_object, threads")
    if len(keys) > 1:
        results["candidate: s3fs/aiobotocore cat"], _ = timed(lambda: s3fs_candidate(target, keys), slow,
                                                              "candidate: s3fs/aiobotocore cat")
    storage = {"key": target.env["AWS_ACCESS_KEY_ID"], "secret": target.env["AWS_SECRET_ACCESS_KEY"],
               "client_kwargs": {"endpoint_url": target.endpoint, "region_name": "us-east-1"}}
    uris = [f"s3://{BUCKET}/{key}" for key in keys]
    results[NOTEBOOK + " (read_csv loop)"], _ = timed(
        lambda: {uri: pd.read_csv(uri, storage_options=storage) for uri in uris}, 1, NOTEBOOK + " (read_csv loop)")
    python, s5cmd, aws = tools.tools_python(), tools.s5cmd(), tools.aws()
    if python:
        paths = workdir / "paths.txt"
        paths.write_text("\n".join(uris))
        results["awswrangler read_csv(use_threads)"] = float(tools.run_program(
            python, "wrangler_read.py", [target.endpoint, str(paths), str(slow)], target.env))
    else:
        results["awswrangler read_csv(use_threads)"] = None
    prefix = os.path.commonprefix(keys).rsplit("/", 1)[0] + "/"
    for name, command in (("s5cmd cp, then read_csv", s5cmd), ("aws s3 cp --recursive, then read_csv", aws)):
        if command is None:
            results[name] = None
            continue

        def download_and_read(command: str = command) -> int:
            local = Path(tempfile.mkdtemp(dir=workdir))
            try:
                if "s5cmd" in command:
                    subprocess.run([command, "--endpoint-url", target.endpoint, "cp", f"s3://{BUCKET}/{prefix}*",
                                    f"{local}/"], env=target.env, check=True, capture_output=True)
                else:
                    subprocess.run([command, "--endpoint-url", target.endpoint, "s3", "cp", "--recursive",
                                    f"s3://{BUCKET}/{prefix}", f"{local}/"], env=target.env, check=True,
                                   capture_output=True)
                files = [path for path in local.rglob("*") if path.is_file()]
                return len([parse(path.read_bytes()) for path in files])
            finally:
                shutil.rmtree(local)

        results[name], count = timed(download_and_read, slow)
        assert count == len(keys), (name, count, len(keys))
    return results


# -- deleting --------------------------------------------------------------------------------
def deleting(bench: Bench, target: Target, n: int) -> Results:
    """n objects deleted by each tool, each on its own freshly seeded prefix."""
    aws, s5cmd = tools.aws(), tools.s5cmd()

    def notebook(prefix: str) -> float:
        return timed(lambda: resource(target).Bucket(BUCKET).objects.filter(Prefix=prefix).delete(), 1)[0]

    runs = {
        PROJECT: lambda p: timed(lambda: delete_prefix(target.client, BUCKET, p, dry_run=False), 1)[0],
        NOTEBOOK + " (objects.filter().delete())": notebook,
        "aws s3 rm --recursive": (lambda p: run_process(
            [aws, "--endpoint-url", target.endpoint, "s3", "rm", "--recursive", f"s3://{BUCKET}/{p}"],
            target.env)) if aws else None,
        "s5cmd rm": (lambda p: run_process([s5cmd, "--endpoint-url", target.endpoint, "rm", f"s3://{BUCKET}/{p}*"],
                                           target.env)) if s5cmd else None,
    }
    results: Results = {}
    for index, (name, run) in enumerate(runs.items()):
        if run is None:
            results[name] = None
            continue
        prefix = f"del-{int(target.rtt_ms)}-{index}"
        bench.seed(prefix, n)
        results[name] = run(f"{prefix}/")
        left = len(list_objects(bench.direct, BUCKET, f"{prefix}/"))
        if left:
            raise RuntimeError(f"{name} left {left} objects under {prefix}/")
    return results


# -- memory (each in a fresh process, peak RSS above the baseline) ---------------------------
def memory(target: Target, step: str, prefix: str) -> dict[str, int]:
    env = {**target.env, "PYTHONPATH": str(ROOT)}
    line = tools.run_program(sys.executable, "memory_probe.py", [step, target.endpoint, BUCKET, f"{prefix}/"], env)
    return json.loads(line)


# -- the change sensor ----------------------------------------------------------------------
def sensor_ticks(target: Target, prefix: str, n: int) -> dict[str, float | int]:
    """`s3_change_sensor` as the daemon runs it, tick after tick, over n objects: its first sweep
    (the baseline, ticks bounded by pages and seconds) and the sweep after it that finds no change
    (several ticks too, on a large prefix)."""
    import time as clock

    from dagster import DagsterInstance, build_sensor_context

    from s3_assets.defs.analysis.sensors import s3_change_sensor
    from s3_assets.defs.resources import S3Connection, S3Prefix

    s3_prefix = S3Prefix(bucket=BUCKET, prefix=prefix, s3=S3Connection(
        target="custom", endpoint_url=target.endpoint, region_name="us-east-1",
        aws_access_key_id=target.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=target.env["AWS_SECRET_ACCESS_KEY"]))

    def sweep_from(cursor: str | None) -> tuple[list[float], Any]:
        ticks = []
        while True:
            with build_sensor_context(instance=instance, cursor=cursor, resources={"s3_prefix": s3_prefix}) as context:
                started = clock.perf_counter()
                result = s3_change_sensor(context)
                ticks.append(clock.perf_counter() - started)
            cursor = result.cursor
            if json.loads(cursor)["token"] is None:
                return ticks, result

    with DagsterInstance.ephemeral() as instance:
        sweep, baseline = sweep_from(None)
        quiet_ticks, quiet = sweep_from(baseline.cursor)
        assert not quiet.run_requests and json.loads(quiet.cursor)["objects"] == n
    ticks = sweep + quiet_ticks
    return {"objects": n, "baseline_ticks": len(sweep), "baseline_seconds": sum(sweep),
            "quiet_ticks": len(ticks) - len(sweep), "longest_tick": max(ticks)}


# -- the whole graph on the CLI --------------------------------------------------------------
def whole_graph(bench: Bench, target: Target, source: Path, repeat: int) -> Results:
    home = bench.workdir / f"dagster_home_{int(target.rtt_ms)}"
    home.mkdir(exist_ok=True)
    bucket = f"graph-{int(target.rtt_ms)}"
    env = {**target.env, "S3_ASSETS_TARGET": "custom", "S3_ASSETS_ENDPOINT_URL": target.endpoint,
           "S3_ASSETS_ACCESS_KEY_ID": target.env["AWS_ACCESS_KEY_ID"],
           "S3_ASSETS_SECRET_ACCESS_KEY": target.env["AWS_SECRET_ACCESS_KEY"], "S3_ASSETS_REGION": "us-east-1",
           "S3_ASSETS_BUCKET": bucket, "S3_ASSETS_CREATE_BUCKET": "true", "S3_ASSETS_SOURCE": str(source),
           "S3_ASSETS_OFFLINE_SOURCE": "", "S3_ASSETS_CACHE_DIR": str(bench.workdir / "cache"),
           "DAGSTER_HOME": str(home)}
    dagster = str(Path(sys.executable).parent / "dagster")
    python = sys.executable
    return {
        "dagster asset materialize --select '*'": run_process(
            [dagster, "asset", "materialize", "-m", "s3_assets.definitions", "--select", "*"], env, repeat),
        "plain script of the notebook's steps": run_process(
            [python, str(tools.PROGRAMS / "notebook_steps.py"), str(source), target.endpoint, f"script-{bucket}"],
            env, repeat),
        "import s3_assets.definitions (python -c)": run_process(
            [python, "-c", "import s3_assets.definitions"], {**env, "PYTHONPATH": str(ROOT)}, repeat),
        "python -c pass": run_process([python, "-c", "pass"], env, repeat),
    }


def import_profile() -> list[tuple[str, float]]:
    """What each import adds to `import s3_assets.definitions`, in the order a CLI run meets
    them (programs/import_steps.py, a fresh process)."""
    line = tools.run_program(sys.executable, "import_steps.py", [], {**os.environ, "PYTHONPATH": str(ROOT)})
    return [(name, seconds) for name, seconds in json.loads(line)]
