"""Optional tier (`pytest -m localstack`): the whole graph and a real cleanup against LocalStack
4.9.2 in host mode (no Docker), a server that answers 501 NotImplemented to a conditional DELETE
on general-purpose buckets (issue 21 §2). LocalStack is never part of the project's install: it
runs from a venv of its own (docs/TESTING.md, "LocalStack") named by S3_ASSETS_TEST_LOCALSTACK_VENV,
else a `localstack` on PATH. Where none is found, or it does not start in host mode, every test
here is skipped saying what was tried and what failed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib.prefix_lock import NOTES_ROOT
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import failure_of, run_cleanup

pytestmark = [pytest.mark.integration, pytest.mark.localstack]

VENV_VARIABLE = "S3_ASSETS_TEST_LOCALSTACK_VENV"
START_TIMEOUT = 180.0  # host mode imports much of LocalStack before it listens


def localstack_command() -> tuple[list[str] | None, str]:
    """The `localstack` CLI to start, or None with what was tried."""
    configured = os.environ.get(VENV_VARIABLE, "").strip()
    if configured:
        cli = Path(configured) / "bin" / "localstack"
        if os.access(cli, os.X_OK):
            return [str(cli)], f"{VENV_VARIABLE}={configured}"
        return None, f"{VENV_VARIABLE}={configured} has no executable bin/localstack"
    on_path = shutil.which("localstack")
    if on_path:
        return [on_path], f"`localstack` on PATH ({on_path})"
    return None, (f"{VENV_VARIABLE} is not set and no `localstack` is on PATH; make the venv as "
                  "docs/TESTING.md, \"LocalStack\", says")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_state(url: str) -> str | None:
    """LocalStack's own word on its S3 service (`available`, `running`), None until it answers."""
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=1) as response:
            return json.loads(response.read()).get("services", {}).get("s3")
    except (OSError, ValueError, urllib.error.URLError):
        return None


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def localstack_url(tmp_path_factory) -> Iterator[str]:
    command, tried = localstack_command()
    if command is None:
        pytest.skip(f"LocalStack tier: no LocalStack to start ({tried})")
    root = tmp_path_factory.mktemp("localstack")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Its own environment: no AWS_* or S3_ASSETS_* of the caller's, nothing fetched from outside
    # (DNS server, TLS certificate, analytics), no Pro features, state in the test's folder.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "S3_ASSETS_"))}
    env.update(GATEWAY_LISTEN=f"127.0.0.1:{port}", LOCALSTACK_HOST=f"127.0.0.1:{port}", SERVICES="s3",
               OVERRIDE_IN_DOCKER="0", FILESYSTEM_ROOT=str(root / "fs"), DNS_ADDRESS="0",
               SKIP_SSL_CERT_DOWNLOAD="1", DISABLE_EVENTS="1", ACTIVATE_PRO="0", PERSISTENCE="0")
    log_path = root / "localstack.log"
    with log_path.open("wb") as log:
        try:
            process = subprocess.Popen([*command, "start", "--host", "--no-banner"], cwd=root, env=env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        except OSError as error:
            pytest.skip(f"LocalStack tier: {tried}: `localstack start --host` could not run: {error}")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while s3_state(url) not in ("available", "running"):  # ready when it says so: no fixed wait
            if process.poll() is not None:
                pytest.skip(f"LocalStack tier: {tried}: `localstack start --host` exited with code "
                            f"{process.returncode} before serving S3; log tail ({log_path}):\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.skip(f"LocalStack tier: {tried}: S3 was not available at {url} within "
                            f"{START_TIMEOUT:.0f}s; log tail ({log_path}):\n{log_tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def test_localstack_refuses_a_conditional_delete(localstack_url):
    """What makes LocalStack worth a tier of its own: if it stops refusing, the next test no longer
    shows that the project needs no conditional request, and this one says so."""
    s3 = boto3.client("s3", endpoint_url=localstack_url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}))
    bucket = f"cond-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ETag"]
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert refused.value.response["Error"]["Code"] == "NotImplemented"


def test_a_whole_refresh_and_a_real_cleanup_on_localstack(localstack_url, run_graph, uci_dir):
    s3 = boto3.client("s3", endpoint_url=localstack_url, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    bucket = f"ls-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    outside = {"ins_dataset_old/keep.csv", "ins_datasets/keep.csv", "other/ins_dataset/keep.csv", "keep.csv",
               "dagster-io/ins_dataset_old/keep"}
    for key in outside:
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    connection = S3Connection(target="custom", endpoint_url=localstack_url, region_name="us-east-1", max_attempts=2,
                              aws_access_key_id="test", aws_secret_access_key="test")
    location = S3Prefix(s3=connection, bucket=bucket)

    refreshed = run_graph(location, uci_dir, raise_on_error=False)
    assert refreshed.success, failure_of(refreshed)
    after_refresh = keys_in(s3, bucket)
    assert {"ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv"} <= after_refresh
    assert not {key for key in after_refresh if key.startswith(NOTES_ROOT)}  # the run took its note back

    cleaned = run_cleanup(location, raise_on_error=False, dry_run=False)
    assert cleaned.success, failure_of(cleaned)  # before: DeleteObject ... failed: NotImplemented
    assert keys_in(s3, bucket) == outside  # the prefix's copies and stored outputs gone, nothing else, no note
