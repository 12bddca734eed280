"""The whole graph on a real local cluster: a password-protected Redis-protocol broker and two
Celery worker processes, started by the project (s3_assets.local_cluster), runs driven by
Dagster's own CLI. Killing a worker mid-step fails the run clearly, and S3 keeps whole objects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, build_sensor_context

from s3_assets.lib.file_partitions import partition_key
from s3_assets.lib.prefix_lock import NOTES_ROOT
from s3_assets.local_cluster.broker import CONFIG_FILE, PASSWORD_FILE
from s3_assets.local_cluster.cluster import LocalCluster
from s3_assets.per_file import s3_files
from s3_assets.per_file.sensor import build_file_partitions_sensor
from s3_assets_tests import cluster_jobs
from s3_assets_tests.cluster_support import (
    DAGSTER,
    REPO,
    cli_env,
    dagster_cli,
    failures,
    parent_pid,
    step_pids,
    worker_env,
)
from s3_assets_tests.test_file_partitions import stored_frame
from s3_assets_tests.test_graph import COPIES, notebook_csv

pytestmark = pytest.mark.cluster


@pytest.fixture
def start_cluster(tmp_path):
    started = []

    def start(env: dict) -> LocalCluster:
        cluster = LocalCluster(tmp_path / "cluster", workers=2, env=env)
        started.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def test_whole_graph_runs_on_two_worker_processes(s3_server, s3, bucket, tmp_path, uci_dir, start_cluster):
    cluster = start_cluster(worker_env(s3_server, bucket, tmp_path, uci_dir))
    workers = set(cluster.status().workers.values())
    assert len(workers) == 2

    done = dagster_cli(cluster, "job", "execute", "-m", "s3_assets.definitions", "-j", "refresh_all_celery")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    instance = DagsterInstance.from_config(str(cluster.dagster_home))
    run = instance.get_runs(limit=1)[0]
    assert run.job_name == "refresh_all_celery" and run.status == DagsterRunStatus.SUCCESS
    pids = step_pids(instance, run.run_id)
    assert len(pids) >= 20  # every asset and check step
    assert os.getpid() not in pids.values()
    # Each step ran in a pool process of one of the two workers, and both workers took steps.
    assert {parent_pid(pid) for pid in set(pids.values())} == workers
    for relative, source in COPIES.items():
        body = s3.get_object(Bucket=bucket, Key=f"ins_dataset/{relative}")["Body"].read()
        assert body == notebook_csv(uci_dir / source, header=None)
    # The run's process held the run's lock note throughout and deleted it at the end; so did each step.
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=NOTES_ROOT).get("Contents")



def test_launched_whole_graph_runs_do_not_hold_the_workers_their_steps_need(
        s3_server, s3, bucket, tmp_path, uci_dir, start_cluster):
    """Two `refresh_all_celery` runs launched at once (the UI's Launch, `dagster job launch`)
    on two workers: were each run a Celery task, both workers would hold a run whose steps wait
    for a free worker, for ever. The launcher runs them in processes of their own instead."""
    from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

    from s3_assets.local_cluster.launcher import RUN_PROCESS_TAG, run_process

    cluster = start_cluster(worker_env(s3_server, bucket, tmp_path, uci_dir))
    workers = set(cluster.status().workers.values())
    for _ in range(2):
        launched = dagster_cli(cluster, "job", "launch", "-m", "s3_assets.definitions", "-j", "refresh_all_celery")
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    instance = DagsterInstance.from_config(str(cluster.dagster_home))
    deadline = time.monotonic() + 900  # generous for a loaded machine; a deadlock never ends
    while True:
        runs = instance.get_runs(RunsFilter(job_name="refresh_all_celery"))
        if len(runs) == 2 and all(run.is_finished for run in runs):
            break
        assert time.monotonic() < deadline, [(run.run_id, str(run.status)) for run in runs]
        time.sleep(1)  # polling the runs' status, not ordering a race
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS] * 2, [
        failures(instance, run.run_id) for run in runs]
    for run in runs:
        # Not a Celery task (it held no worker) but a process of its own, ended with the run.
        assert DAGSTER_CELERY_TASK_ID_TAG not in run.tags and RUN_PROCESS_TAG in run.tags
        process = run_process(run)
        if process is not None:  # it reported the run's end and is exiting
            process.wait(timeout=120)
        assert {parent_pid(pid) for pid in step_pids(instance, run.run_id).values()} <= workers

def _wait_for(path, process: subprocess.Popen, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return path.read_text()


def _release(fifo) -> threading.Thread:
    """Let a paused step go on: open the pipe it waits on (this blocks until it reads)."""
    thread = threading.Thread(target=lambda: open(fifo, "w").close(), daemon=True)
    thread.start()
    return thread


def test_worker_killed_mid_step_fails_the_run_and_leaves_whole_objects(
        s3_server, s3, bucket, tmp_path, uci_dir, start_cluster):
    """Killed first: the pool process running the step (its worker reports WorkerLostError);
    then a whole worker (the executor notices it no longer answers pings). Both fail the run
    naming the step; neither leaves a half-written object; the cluster then completes the run."""
    cluster = start_cluster(worker_env(s3_server, bucket, tmp_path, uci_dir))
    big_key, whole_key = f"ins_dataset/{cluster_jobs.BIG_KEY}", f"ins_dataset/{cluster_jobs.WHOLE_KEY}"
    s3.put_object(Bucket=bucket, Key=big_key, Body=b"old version")
    pause = tmp_path / "pause"
    pause.mkdir()
    os.mkfifo(pause / "release")
    config = tmp_path / "run.yaml"
    config.write_text(f"ops:\n  upload_paused_before_complete:\n    config:\n      pause_dir: {pause}\n")
    args = [DAGSTER, "job", "execute", "-m", "s3_assets_tests.cluster_jobs", "-j", "interrupted_upload", "-c", str(config)]

    for killed, expected in [
        ("pool process", "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)"),
        ("whole worker", "stopped answering while it ran step upload_paused_before_complete"),
    ]:
        (pause / "paused").unlink(missing_ok=True)
        run = subprocess.Popen(args, cwd=REPO, env=cli_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL)
        step_pid = int(_wait_for(pause / "paused", run))
        worker_pid = parent_pid(step_pid)
        assert worker_pid in cluster.status().workers.values()
        # Every part is uploaded; only CompleteMultipartUpload is left when the process dies.
        assert s3.list_multipart_uploads(Bucket=bucket, Prefix=big_key).get("Uploads")
        os.kill(step_pid if killed == "pool process" else worker_pid, signal.SIGKILL)
        output = run.communicate(timeout=900)[0]

        assert run.returncode != 0, killed
        assert "[upload_paused_before_complete]" in output and expected in output, output[-3000:]
        # Nothing half-written: the first step's object is whole, the interrupted one is the old one.
        assert s3.get_object(Bucket=bucket, Key=whole_key)["Body"].read() == cluster_jobs.whole_body()
        assert s3.get_object(Bucket=bucket, Key=big_key)["Body"].read() == b"old version"

    # `start` replaces the lost worker, and the same run completes.
    cluster.start()
    assert len(cluster.status().answering) == 2
    (pause / "paused").unlink()
    releaser = _release(pause / "release")
    rerun = subprocess.run(args, check=False, cwd=REPO, env=cli_env(cluster), capture_output=True, text=True, timeout=900,
                           stdin=subprocess.DEVNULL)
    releaser.join(timeout=5)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert s3.get_object(Bucket=bucket, Key=big_key)["Body"].read() == cluster_jobs.big_body()


def test_broker_refuses_clients_without_the_password(s3_server, bucket, tmp_path, uci_dir, start_cluster, capsys,
                                                      monkeypatch):
    cluster = start_cluster(worker_env(s3_server, bucket, tmp_path, uci_dir))
    port = cluster.broker.status().port
    password = cluster.broker.password()

    with pytest.raises(redis.AuthenticationError, match="Authentication required"):
        redis.Redis(host="127.0.0.1", port=port, protocol=2).ping()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # the server's own words
        raw.sendall(b"PING\r\n")
        assert raw.recv(100).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="not-the-password").ping()
    client = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
    assert client.ping()
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("protected-mode")["protected-mode"] == "yes"
    assert client.config_get("dir")["dir"].startswith(str(cluster.directory))
    client.close()

    for name in (PASSWORD_FILE, CONFIG_FILE):
        assert (cluster.directory / name).stat().st_mode & 0o777 == 0o600
    status = cluster.status()
    for pid in [status.broker.pid, *status.workers.values()]:
        for view in ("cmdline", "environ"):  # what `ps` and /proc show of each process
            assert password.encode() not in Path(f"/proc/{pid}/{view}").read_bytes()

    # A job run with other settings than the workers have is refused, naming the variable.
    other = {**cluster.extra_env, "S3_ASSETS_BUCKET": "another-bucket"}
    refused = subprocess.run([DAGSTER, "job", "execute", "-m", "s3_assets.definitions", "-j", "refresh_all_celery"],
                             check=False, cwd=REPO, env={**cli_env(cluster), **other}, capture_output=True, text=True,
                             timeout=900, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "started with other settings (S3_ASSETS_BUCKET differ)" in refused.stdout + refused.stderr
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    from s3_assets.local_cluster.cli import main

    monkeypatch.setenv("S3_ASSETS_CLUSTER_DIR", str(cluster.directory))
    assert main(["status"]) == 0
    printed = capsys.readouterr().out
    assert "answering" in printed and password not in printed
    assert main(["stop"]) == 0
    assert cluster.broker.status() is None and not cluster.status().workers


BACKFILL_FILES = 40


def test_backfill_of_all_file_partitions_runs_on_both_workers(s3_server, s3, bucket, tmp_path, uci_dir, start_cluster,
                                                              make_location):
    cluster = start_cluster(worker_env(s3_server, bucket, tmp_path, uci_dir))
    workers = set(cluster.status().workers.values())
    keys = [f"ins_dataset/files/part-{i:03d}.csv" for i in range(BACKFILL_FILES)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=f"id,value\n{i},{i * 2}\n".encode())
    instance = DagsterInstance.from_config(str(cluster.dagster_home))
    location = make_location(bucket)
    with build_sensor_context(instance=instance, resources={"s3_prefix": location}) as context:
        tick = build_file_partitions_sensor()(context)
    for request in tick.dynamic_partitions_requests:  # what the sensor daemon does with them
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    assert len(instance.get_dynamic_partitions(s3_files.name)) == BACKFILL_FILES

    submitted = dagster_cli(cluster, "job", "backfill", "-m", "s3_assets.per_file_definitions", "-j", "load_files",
                            "--all", "--noprompt")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    deadline = time.monotonic() + 1200  # generous: on a loaded 2-core machine 40 runs take minutes
    while True:  # the runs finish on the workers; wait for all of them
        runs = instance.get_runs(RunsFilter(job_name="load_files"))
        if len(runs) == BACKFILL_FILES and all(run.is_finished for run in runs):
            break
        assert time.monotonic() < deadline, (len(runs), sorted(str(run.status) for run in runs))
        time.sleep(1)
    assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
    assert {run.tags["dagster/partition"] for run in runs} == {partition_key(k.removeprefix("ins_dataset/")) for k in keys}
    run_pids = {pid for run in runs for pid in step_pids(instance, run.run_id).values()}
    assert {parent_pid(pid) for pid in run_pids} == workers  # both workers ran partitions
    for i, key in enumerate(keys):
        frame = stored_frame(s3, bucket, location, partition_key(key.removeprefix("ins_dataset/")))
        assert frame.to_dict("list") == {"id": [i], "value": [i * 2]}
