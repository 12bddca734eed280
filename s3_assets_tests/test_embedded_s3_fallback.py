"""The embedded SeaweedFS where no private /tmp can be made (issue 21 §1): a system that allows no
unprivileged user namespace (`unshare` refuses, as in many containers) or has no `unshare` on
PATH. The server still starts and serves S3 to its credentials only, its gRPC sockets go to /tmp
owner-only and are removed at its stop, and the fallback is said exactly once per process, data
directory and binary, with the reason. Forced through PATH, as such a system would be."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from s3_assets.local_s3.server import EmbeddedS3
from s3_assets.local_s3.server import find_free_ports as free_ports
from s3_assets_tests.test_embedded_s3 import client_for, port_settings, serves

pytestmark = pytest.mark.integration

FALLBACK = "the embedded S3 runs without a private /tmp"
REFUSAL = "unshare: unshare failed: Operation not permitted"


def no_namespace_path(tmp_path: Path, how: str) -> tuple[str, Path]:
    """A PATH on which no private mount namespace can be made, and the file that counts the
    calls of the refusing `unshare` (one line per call)."""
    bin_dir = tmp_path / f"bin {how}"  # a space: paths are arguments, never shell text
    bin_dir.mkdir()
    calls = tmp_path / "unshare-calls"
    if how == "unshare refuses":
        script = bin_dir / "unshare"
        script.write_text(f'#!/bin/sh\necho call >> "{calls}"\necho "{REFUSAL}" >&2\nexit 1\n')
        script.chmod(0o755)
        return f"{bin_dir}{os.pathsep}{os.environ['PATH']}", calls
    (bin_dir / "mount").symlink_to("/usr/bin/mount" if os.path.exists("/usr/bin/mount") else "/bin/mount")
    return str(bin_dir), calls  # `mount` only: no unshare anywhere


def tmp_sockets(state) -> list[Path]:
    ports = state.ports
    names = [f"seaweedfs-{name}-grpc-{getattr(ports, name) + ports.grpc_offset}.sock"
             for name in ("master", "volume", "filer", "s3", "admin")]
    return [Path("/tmp") / name for name in names if (Path("/tmp") / name).exists()]


def refuses_anonymous(state) -> bool:
    client = boto3.client("s3", endpoint_url=state.endpoint_url, region_name="us-east-1",
                          config=Config(signature_version=UNSIGNED))
    try:
        client.get_object(Bucket="anywhere", Key="k.csv")
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] in (401, 403)
    finally:
        client.close()
    return False


@pytest.mark.parametrize("how", ["unshare refuses", "no unshare on PATH"])
def test_without_a_private_tmp_the_server_serves_and_says_so_once(tmp_path, monkeypatch, caplog, how):
    path, calls = no_namespace_path(tmp_path, how)
    monkeypatch.setenv("PATH", path)
    caplog.set_level(logging.WARNING, logger="s3_assets.local_s3.server")
    server = EmbeddedS3(tmp_path / "s3 data", free_ports())
    try:
        state = server.ensure_running()
        assert not state.private_tmp  # the fallback, not the namespace
        assert serves(server, state) == b"1,2\n"  # with its credentials
        assert refuses_anonymous(state)  # and only to them
        sockets = tmp_sockets(state)
        assert sockets, "without a private /tmp weed's gRPC sockets are in /tmp"
        for socket_path in sockets:
            info = socket_path.lstat()
            assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0, socket_path
        assert server.stop()
        assert not tmp_sockets(state)  # its stop removes them
        # A second start of the same server in this process: served again, not said again.
        state = server.ensure_running()
        assert not state.private_tmp
        client = client_for(server, state)
        assert client.get_object(Bucket="anywhere", Key="k.csv")["Body"].read() == b"1,2\n"
        client.close()
    finally:
        server.stop()
    said = [record for record in caplog.records if FALLBACK in record.getMessage()]
    assert len(said) == 1, [record.getMessage() for record in said]
    assert said[0].levelno == logging.WARNING and not said[0].exc_info  # a warning, no traceback
    reason = "Operation not permitted" if how == "unshare refuses" else "`unshare` is not on PATH"
    assert reason in said[0].getMessage()
    if how == "unshare refuses":  # probed once; weed itself never run through the refusing unshare
        assert len(calls.read_text().splitlines()) == 1


def test_the_local_command_says_the_fallback_once_without_a_traceback(tmp_path):
    path, _ = no_namespace_path(tmp_path, "unshare refuses")
    ports = free_ports()
    env = {**os.environ, "PATH": path, "S3_ASSETS_LOCAL_DIR": str(tmp_path / "local s3"), **port_settings(ports)}
    command = [sys.executable, "-m", "s3_assets.local_s3"]
    try:
        started = subprocess.run([*command, "start"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        assert started.stderr.count(FALLBACK) == 1, started.stderr[-2000:]
        assert "Operation not permitted" in started.stderr and "Traceback" not in started.stderr
        assert "gRPC sockets in /tmp, owner-only (no private /tmp here)" in started.stdout
    finally:
        stopped = subprocess.run([*command, "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr[-2000:]
