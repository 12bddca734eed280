"""A stale state file (`server.json`, `broker.json`, `workers.json`) whose pid now names another
process (issue 19, attack item 8): `status` does not call it running and `stop` does not signal
it; the process must be the one recorded (its start time; an older file: its command line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from s3_assets.lib.local_process import is_recorded_process, started_at
from s3_assets.local_cluster.broker import LocalBroker
from s3_assets.local_cluster.cluster import WORKERS_FILE, LocalCluster
from s3_assets.local_s3.server import STATE_FILE, STATE_VERSION, EmbeddedS3

VICTIM_ARGUMENTS = ("unrelated-victim", "600")


@pytest.fixture
def victim():
    """An unrelated process in a session of its own (so a killpg on its pid would end it). It
    says `ready` once it runs its own code: until then (right after Popen returns, while the
    kernel finishes the exec) /proc may show no command line yet."""
    process = subprocess.Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(600)",
                                *VICTIM_ARGUMENTS], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def private_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(mode=0o700)
    return folder


@pytest.mark.parametrize("started", ["none recorded", "another start time"])
def test_a_stale_server_json_is_not_running_and_stop_signals_nothing(s3_server, tmp_path, victim, started):
    folder = private_folder(tmp_path, "stale")
    record = {"pid": victim.pid, "ports": asdict(s3_server.state.ports), "data_dir": str(folder),
              "version": STATE_VERSION}
    if started == "another start time":
        record["started"] = started_at(victim.pid) - 60
    (folder / STATE_FILE).write_text(json.dumps(record))
    # The ports are those another folder's server (the tests' own) answers on.
    server = EmbeddedS3(folder, s3_server.state.ports)
    assert server.status() is None
    env = {**os.environ, "S3_ASSETS_LOCAL_DIR": str(folder),
           **{f"S3_ASSETS_LOCAL_{name.upper()}_PORT": str(getattr(s3_server.state.ports, name))
              for name in ("s3", "master", "volume", "filer", "admin")}}
    status = subprocess.run([sys.executable, "-m", "s3_assets.local_s3", "status"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 3 and "not running" in status.stdout, status.stdout + status.stderr
    stop = subprocess.run([sys.executable, "-m", "s3_assets.local_s3", "stop"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "not running" in stop.stdout, stop.stdout + stop.stderr
    assert victim.poll() is None  # not signalled
    assert s3_server.server.status() is not None  # the real server is still identified as running


def test_stale_worker_and_broker_records_are_not_stopped(tmp_path, victim):
    folder = private_folder(tmp_path, "cluster")
    cluster = LocalCluster(folder, workers=1)
    (folder / WORKERS_FILE).write_text(json.dumps({cluster.node_names()[0]: victim.pid}))
    (folder / "broker.json").write_text(json.dumps({"pid": victim.pid, "port": 1, "started": started_at(victim.pid)}))
    assert cluster._worker_pids() == {}  # noqa: SLF001 - what status and stop act on
    assert cluster.stop() is False
    assert victim.poll() is None
    assert LocalBroker(folder).status() is None  # the pid is the recorded process, but nothing answers


def test_the_recorded_process_is_identified_by_start_time_or_command_line(victim):
    started = started_at(victim.pid)
    assert is_recorded_process(victim.pid, started)
    assert not is_recorded_process(victim.pid, started + 1)
    assert is_recorded_process(victim.pid, None, Path(sys.executable).name, " ".join(VICTIM_ARGUMENTS))
    assert not is_recorded_process(victim.pid, None, "weed")
    assert not is_recorded_process(victim.pid, None)


def test_an_older_state_file_needs_whole_arguments_not_a_substring(tmp_path):
    """A stale file of an older version names another folder's process whose command line
    holds this folder's path as a prefix (`-dir=/x/s3` in `-dir=/x/s3b`): not ours."""
    other = tmp_path / "s3b"
    program = Path(sys.executable).name
    process = subprocess.Popen([sys.executable, "-c", "import time\nprint('ready', flush=True)\ntime.sleep(600)",
                                f"-dir={other}", "-n", "s3-assets-1@host"], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        # Its command line is final once it runs its code (right after Popen, /proc may show none yet).
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        assert not is_recorded_process(process.pid, None, program, f"-dir={tmp_path / 's3'}")
        assert not is_recorded_process(process.pid, None, program, "-n s3-assets-1@ho")
        assert is_recorded_process(process.pid, None, program, f"-dir={other}", "-n s3-assets-1@host")
    finally:
        process.kill()
        process.wait()
