"""The local cluster: the broker plus N Celery worker processes (two by default), started,
inspected and stopped together, with the Dagster instance (DAGSTER_HOME) they share.

Each worker is its own Celery node (`s3-assets-<folder hash>-<i>@<host>`) with one pool process, so a step
runs in one process and a killed process takes one step with it, reported as failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3_assets.lib.local_process import (
    is_recorded_process,
    open_private,
    pid_alive,
    private_dir,
    recorded_start,
    started_at,
    terminate,
    write_private,
)
from s3_assets.local_cluster.broker import BrokerState, ClusterError, LocalBroker
from s3_assets.local_cluster.settings import QUEUE, cluster_dir, cluster_settings

WORKERS_FILE = "workers.json"
SETTINGS_FILE = "workers-settings.json"
SETTINGS_KEY_FILE = "workers-settings.key"  # the HMAC key of SETTINGS_FILE's digests, owner-only
# The cluster's own variables; every other S3_ASSETS_* setting must match between the workers
# and the process that runs a job, or steps would read and write another bucket or prefix.
CLUSTER_VARIABLES = {"S3_ASSETS_CLUSTER_DIR", "S3_ASSETS_CLUSTER_WORKERS", "S3_ASSETS_CELERY_BROKER_URL",
                     "S3_ASSETS_REDIS_BINARY"}
# botocore's variables choose the target as much: endpoints (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,
# ...), region, profile, config and credentials files, keys, roles, container and instance
# credentials. So every AWS_* variable counts, except these, which only tune how calls are made.
AWS_TUNING_VARIABLES = {"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_METADATA_SERVICE_TIMEOUT",
                        "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_SDK_UA_APP_ID", "AWS_REQUEST_CHECKSUM_CALCULATION",
                        "AWS_RESPONSE_CHECKSUM_VALIDATION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME"}


# A session's token (and its expiry), left out of the comparison: see `chooses_target`.
AWS_ROTATING_VARIABLES = {"AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION"}


def chooses_target(name: str) -> bool:
    """Whether an environment variable chooses where data goes or who the caller is.

    A session token is not compared: it rotates (each refresh of a role, SSO or
    `credential_process` session issues a new one) while the caller it proves is named by what is
    compared (AWS_ACCESS_KEY_ID and its secret, AWS_PROFILE, AWS_ROLE_ARN, ...). The workers'
    botocore credential chain refreshes such a session itself; a token given in the environment
    that has expired fails their requests with S3's ExpiredToken, which names it. Comparing it
    would refuse every run after each refresh until the workers restart, guarding nothing."""
    if name.startswith("S3_ASSETS_"):
        return name not in CLUSTER_VARIABLES
    return name.startswith("AWS_") and name not in AWS_TUNING_VARIABLES | AWS_ROTATING_VARIABLES


def settings_fingerprint(env: dict[str, str], key: bytes) -> dict[str, str]:
    """name -> HMAC-SHA256 (under the cluster's own random `key`) of each variable that chooses
    the target (S3_ASSETS_*, botocore's AWS_*), to compare the workers' settings with a run's.
    Keyed digests, never values nor plain hashes: some are secrets, and a plain hash of one is a
    copy that can be guessed offline; without the key (owner-only, in the cluster's folder) a
    digest says nothing."""
    return {name: hmac.new(key, value.strip().encode(), hashlib.sha256).hexdigest()
            for name, value in sorted(env.items()) if chooses_target(name) and value.strip()}


DAGSTER_YAML = """\
# Written by `s3-assets-cluster start`. Runs launched with this DAGSTER_HOME (backfills, the UI)
# run on the cluster's Celery workers; the broker and its password come from the cluster
# directory, not from this file.
run_launcher:
  module: s3_assets.local_cluster.launcher
  class: ClusterRunLauncher
# Submitted runs go to the workers at once (no dagster-daemon needed to dequeue them); the
# workers' number bounds how many run at a time.
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


def default_worker_count() -> int:
    """S3_ASSETS_CLUSTER_WORKERS (validated by its field: 1 to 64)."""
    return cluster_settings().workers


@dataclass
class ClusterStatus:
    broker: BrokerState | None
    workers: dict[str, int] = field(default_factory=dict)  # node name -> pid of live workers
    answering: list[str] = field(default_factory=list)  # node names that answered a ping

    @property
    def running(self) -> bool:
        return self.broker is not None and bool(self.workers)


class LocalCluster:
    def __init__(self, directory: Path | str | None = None, workers: int | None = None,
                 env: dict[str, str] | None = None):
        """env: extra environment for the workers (tests point them at their own S3)."""
        self.directory = Path(directory or cluster_dir()).resolve()
        self.extra_env = dict(env or {})
        self.broker = LocalBroker(self.directory)
        self.worker_count = workers or default_worker_count()
        self._app: Any = None

    @property
    def dagster_home(self) -> Path:
        return self.directory / "dagster-home"

    def node_names(self) -> list[str]:
        """`s3-assets-<folder>-<i>@<host>`, <folder> a short hash of the cluster's folder: two
        cluster folders never name a worker alike, so an older `workers.json` (no start time),
        matched by command line, can only find this folder's workers."""
        host = socket.gethostname()
        return [f"{self._name_stem()}{i}@{host}" for i in range(1, self.worker_count + 1)]

    def _name_stem(self) -> str:
        return f"s3-assets-{hashlib.sha256(str(self.directory).encode()).hexdigest()[:10]}-"

    def _worker_pids(self) -> dict[str, int]:
        """The recorded workers that still run: each pid must still name the worker process
        started then (`{"pid", "started"}`; an older file's bare pid: a celery worker of that
        name), never whatever reuses the pid."""
        try:
            raw = json.loads((self.directory / WORKERS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        pids = {}
        for name, record in raw.items():
            try:
                pid = int(record["pid"] if isinstance(record, dict) else record)
            except (KeyError, TypeError, ValueError):
                continue
            started = recorded_start(record)
            if started is None and not str(name).startswith(self._name_stem()):
                continue  # by command line, only a name of this folder's (an older version's names are everyone's)
            if is_recorded_process(pid, started, "celery", f"-n {name}"):
                pids[str(name)] = pid
        return pids

    def _record_workers(self, pids: dict[str, int]) -> None:
        """Each worker's pid with its process's start time (the running ones were identified)."""
        write_private(self.directory / WORKERS_FILE, json.dumps(
            {name: {"pid": pid, "started": started_at(pid)} for name, pid in pids.items()}))

    def worker_env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env.update(DAGSTER_HOME=str(self.dagster_home), S3_ASSETS_CLUSTER_DIR=str(self.directory))
        return env

    def _write_dagster_home(self) -> None:
        private_dir(self.dagster_home, "the local cluster's DAGSTER_HOME")
        write_private(self.dagster_home / "dagster.yaml", DAGSTER_YAML)

    def start(self, timeout: float = 180.0) -> ClusterStatus:
        """Start what is not running (broker, then workers) and wait until every worker answers."""
        broker = self.broker.ensure_running()
        self._write_dagster_home()
        with self.broker.lock():
            pids = self._worker_pids()
            if pids:
                self.check_settings(self.worker_env())
            else:
                self.record_settings(self.worker_env())
            for name in self.node_names():
                if name not in pids:
                    pids[name] = self._start_worker(name)
            self._record_workers(pids)
        self._wait_for_workers(list(pids), timeout)
        return ClusterStatus(broker=broker, workers=pids, answering=list(pids))

    def _start_worker(self, name: str) -> int:
        short = name.split("@")[0]
        log = self.directory / f"{short}.log"
        args = [
            sys.executable, "-m", "celery", "-A", "s3_assets.local_cluster.celery_app", "worker",
            "-Q", QUEUE, "-n", name, "-c", "1", "-P", "prefork", "-l", "INFO", f"--logfile={log}",
            "--without-gossip", "--without-mingle",
        ]
        with open(open_private(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as stderr:
            process = subprocess.Popen(args, cwd=self.directory, env=self.worker_env(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        return process.pid

    def ping(self, timeout: float = 1.0) -> list[str]:
        """Names of the workers that answer over the broker."""
        from dagster_celery.make_app import make_app

        from s3_assets.local_cluster.settings import app_args

        if self._app is None:
            self._app = make_app(app_args(self.directory))
        replies = self._app.control.ping(timeout=timeout) or []
        return sorted(name for reply in replies for name in reply)

    def _wait_for_workers(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, pid in self._worker_pids().items() if name in names and not pid_alive(pid)]
            missing_pid = [name for name in names if name not in self._worker_pids()]
            if dead or missing_pid:
                raise ClusterError(f"worker(s) {', '.join(dead + missing_pid)} exited while starting; "
                                   f"see the logs in {self.directory}")
            if set(names) <= set(self.ping()):
                return
        raise ClusterError(f"the workers did not answer within {timeout:.0f}s; see the logs in {self.directory}")

    def _settings_key(self, create: bool = False) -> bytes | None:
        """The cluster's HMAC key for the settings digests: random, made once per cluster folder
        (owner-only, never through a symlink); None if there is none (workers started by a
        version that stored plain hashes: their settings cannot be compared, so they differ)."""
        path = self.directory / SETTINGS_KEY_FILE
        if create:
            private_dir(self.directory, "the local cluster's directory (S3_ASSETS_CLUSTER_DIR)")
            with contextlib.suppress(FileExistsError):
                write_private(path, secrets.token_hex(32), exclusive=True)
        try:
            with os.fdopen(open_private(path, os.O_RDONLY)) as handle:
                key = handle.read().strip()
        except FileNotFoundError:
            return None
        return key.encode() if len(key) >= 32 else None

    def record_settings(self, env: dict[str, str]) -> None:
        """Keep the digests of the workers' target-choosing settings, for `check_settings`."""
        key = self._settings_key(create=True)
        assert key is not None  # just made, owner-only
        write_private(self.directory / SETTINGS_FILE, json.dumps(settings_fingerprint(env, key)))

    def check_settings(self, env: dict[str, str]) -> None:
        """Refuse to use workers started with other settings (S3_ASSETS_*, botocore's AWS_*
        variables that choose the target or the caller), naming the variables, never their values."""
        try:
            theirs = json.loads((self.directory / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            theirs = {}
        if not isinstance(theirs, dict):
            theirs = {}
        key = self._settings_key()
        ours = settings_fingerprint(env, key) if key else {name: "" for name, value in env.items()
                                                                if chooses_target(name) and value.strip()}
        differing = sorted(name for name in theirs.keys() | ours.keys() if theirs.get(name) != ours.get(name))
        if differing:
            raise ClusterError(
                f"the cluster's workers were started with other settings ({', '.join(differing)} differ): "
                "restart them in this environment with `s3-assets-cluster stop` and `s3-assets-cluster start`"
            )

    def status(self) -> ClusterStatus:
        broker = self.broker.status()
        workers = self._worker_pids()
        answering = self.ping() if broker and workers else []
        return ClusterStatus(broker=broker, workers=workers, answering=answering)

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the workers (their running steps fail), then the broker; True if anything ran."""
        if not self.directory.exists():
            return False  # nothing to stop, and nothing to create
        with self.broker.lock():
            pids = self._worker_pids()
            for pid in pids.values():  # all at once: each waits for its running step
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            for pid in pids.values():
                terminate(pid, timeout)
            (self.directory / WORKERS_FILE).unlink(missing_ok=True)
        return self.broker.stop() or bool(pids)
