"""Starting a real local cluster (broker and two Celery workers) for a test, pointed at the
test's SeaweedFS and bucket, and running Dagster's CLI against it as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from s3_assets.local_cluster.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def worker_env(s3_server, bucket: str, tmp_path: Path, source: Path | str, prefix: str = "ins_dataset") -> dict:
    """Settings for the workers and the run's process: both must see the same S3."""
    return {
        "S3_ASSETS_TARGET": "local", "S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket,
        "S3_ASSETS_PREFIX": prefix, "S3_ASSETS_SOURCE": str(source), "S3_ASSETS_OFFLINE_SOURCE": "",
        "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache"), "S3_ASSETS_CLUSTER_DIR": str(tmp_path / "cluster"),
    }


def cli_env(cluster: LocalCluster) -> dict:
    return {**os.environ, **cluster.extra_env, "DAGSTER_HOME": str(cluster.dagster_home)}


def dagster_cli(cluster: LocalCluster, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], check=False, cwd=REPO, env=cli_env(cluster), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def step_pids(instance: DagsterInstance, run_id: str) -> dict[str, int]:
    """step key -> pid of the process that started it (the worker's pool process)."""
    return {event.step_key: event.dagster_event.pid
            for event in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)}


def failures(instance: DagsterInstance, run_id: str) -> list[str]:
    """What a failed run said: its step and run failure messages, for an assertion's message."""
    said = []
    for event in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}):
        data = event.dagster_event.event_specific_data if event.dagster_event else None
        error, messages = getattr(data, "error", None), []
        while error is not None:  # the error's own words and its causes', not the stack
            messages.append(error.message.strip())
            error = error.cause
        said.append(f"{event.step_key}: {event.message} {' <- '.join(messages)}"[:3000])
    return said
