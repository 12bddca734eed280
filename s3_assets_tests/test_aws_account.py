"""The SageMaker default bucket, `sagemaker-{region}-{account}`, against moto's server (a real
STS and S3 over loopback HTTP, started as a subprocess): the region comes from botocore's chain
when S3_ASSETS_REGION is unset, a bucket of that name owned by another account is refused, and
STS failures say which failure, and where, once, before any step."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest
import requests
from dagster import DagsterInstance, materialize

from s3_assets.defs import ASSETS, CHECKS
from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib.errors import ConfigError
from s3_assets_tests.conftest import graph_resources
from s3_assets_tests.fault_proxy import FaultProxy

ACCOUNT = "123456789012"  # moto's account for any credentials
SECRET = "moto-secret-that-must-never-show-0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # ready when it answers; not a fixed wait
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def aws_env(monkeypatch, tmp_path, moto_url):
    """A clean AWS environment: credentials for moto, no region, no profile, STS and S3 at moto."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("")
    (tmp_path / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMOTOTEST0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return monkeypatch


def moto_s3(moto_url: str, region: str = "us-east-1"):
    return boto3.client("s3", endpoint_url=moto_url, region_name=region, aws_access_key_id="AKIAMOTOTEST0001",
                        aws_secret_access_key=SECRET)


def aws_prefix(**connection) -> S3Prefix:
    return S3Prefix(s3=S3Connection(target="aws", max_attempts=2, connect_timeout=2, read_timeout=5, **connection),
                    bucket="", create_bucket=True, prefix="ins_dataset")


def test_region_from_aws_default_region_names_and_creates_the_bucket(aws_env, moto_url):
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    location = aws_prefix()
    assert location.resolved_bucket() == f"sagemaker-eu-west-1-{ACCOUNT}"
    location.connect()  # creates the bucket, in its region
    location_of = moto_s3(moto_url).get_bucket_location(Bucket=f"sagemaker-eu-west-1-{ACCOUNT}")
    assert location_of["LocationConstraint"] == "eu-west-1"


def test_region_from_a_profile_file(aws_env, tmp_path):
    (tmp_path / "config").write_text("[profile analyst]\nregion = ap-southeast-2\n")
    (tmp_path / "credentials").write_text(f"[analyst]\naws_access_key_id = AKIAMOTOTEST0002\naws_secret_access_key = {SECRET}\n")
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    assert aws_prefix(profile_name="analyst").resolved_bucket() == f"sagemaker-ap-southeast-2-{ACCOUNT}"
    aws_env.setenv("AWS_PROFILE", "analyst")  # the profile from the environment, as the notebook would
    assert aws_prefix().resolved_bucket() == f"sagemaker-ap-southeast-2-{ACCOUNT}"


def test_explicit_region_wins_and_none_at_all_is_refused_as_sagemaker_does(aws_env, moto_url):
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert aws_prefix(region_name="us-west-2").resolved_bucket() == f"sagemaker-us-west-2-{ACCOUNT}"
    aws_env.delenv("AWS_DEFAULT_REGION")
    # No region anywhere: `sagemaker.Session()` refuses; so does the project, before any request
    # (no silent us-east-1, which would name a bucket the notebook never uses).
    moto_port = int(moto_url.rsplit(":", 1)[1])
    with FaultProxy(moto_port) as proxy:
        aws_env.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        aws_env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        for attempt in (lambda p: p.resolved_bucket(), lambda p: p.connect(), lambda p: p.s3.resolved_region()):
            with pytest.raises(ConfigError) as raised:
                attempt(aws_prefix())
            message = str(raised.value)
            assert "region supported by SageMaker" in message
            assert "S3_ASSETS_REGION" in message and "AWS_DEFAULT_REGION" in message
            assert "us-east-1" not in message and SECRET not in message
    assert proxy.requests == []  # refused before any call
    # A bucket of one's own needs no region for its name.
    assert S3Prefix(s3=S3Connection(target="aws"), bucket="mine", prefix="p").resolved_bucket() == "mine"


@pytest.mark.parametrize("how", ["S3_ASSETS_REGION", "AWS_DEFAULT_REGION", "profile"])
def test_with_a_region_the_default_bucket_is_sagemakers(aws_env, tmp_path, how):
    """The name `sagemaker.Session().default_bucket()` gives: sagemaker-{region}-{account}, with
    the region from wherever the SDK reads it (botocore's chain) or S3_ASSETS_REGION."""
    region = "ca-central-1"
    if how == "S3_ASSETS_REGION":
        location = aws_prefix(region_name=region)
    elif how == "profile":
        (tmp_path / "config").write_text(f"[default]\nregion = {region}\n")
        location = aws_prefix()
    else:
        aws_env.setenv(how, region)
        location = aws_prefix()
    expected = f"sagemaker-{region}-{ACCOUNT}"
    assert location.resolved_bucket() == expected
    assert location.uri("k") == f"s3://{expected}/k"


def test_a_default_bucket_owned_by_another_account_is_refused(aws_env, moto_url):
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    bucket = f"sagemaker-eu-central-1-{ACCOUNT}"
    moto_s3(moto_url, "eu-central-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    owners = {bucket: "999988887777"}  # someone else took the name first

    def expected_owner_rule(method: str, path: str, headers: dict[str, str]):
        """AWS's answer when ExpectedBucketOwner is not the bucket's owner: 403 AccessDenied."""
        name = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        expected = {k.lower(): v for k, v in headers.items()}.get("x-amz-expected-bucket-owner")
        return (403, "AccessDenied") if name in owners and expected != owners[name] else None

    moto_port = int(moto_url.rsplit(":", 1)[1])
    with FaultProxy(moto_port, answer=expected_owner_rule) as proxy:
        aws_env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        location = aws_prefix()
        with pytest.raises(ConfigError) as raised:
            location.connect()
    message = str(raised.value)
    assert f"bucket '{bucket}'" in message and f"belong to account {ACCOUNT}" in message
    assert "S3_ASSETS_BUCKET" in message and SECRET not in message
    sent = [(m, p, {k.lower(): v for k, v in h.items()}) for m, p, h in proxy.requests]
    assert sent and all(h.get("x-amz-expected-bucket-owner") == ACCOUNT for _, _, h in sent)
    assert not [m for m, _, _ in sent if m in ("PUT", "POST", "DELETE")]  # nothing written


def run_failure_text(result) -> tuple[str, list]:
    texts = []
    for event in result.all_events:
        if event.is_failure or event.event_type_value in ("RUN_FAILURE", "ENGINE_EVENT", "PIPELINE_FAILURE"):
            data = event.event_specific_data
            error = getattr(data, "error", None)
            texts.append(f"{event.message or ''} {error or ''}")
    steps = [e for e in result.all_events if e.event_type_value == "STEP_START"]
    return "\n".join(texts), steps


def test_unreachable_sts_endpoint_fails_the_run_once_before_the_steps_naming_the_endpoint(aws_env, uci_dir, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws_env.setenv("AWS_ENDPOINT_URL_STS", closed)
    location = aws_prefix()
    with pytest.raises(ConfigError) as raised:
        location.resolved_bucket()
    message = str(raised.value)
    assert f"cannot reach the AWS STS endpoint {closed}" in message
    assert "after 2 attempt(s)" in message  # the project's retries (max_attempts=2), not botocore's defaults
    assert "credentials" not in message.lower() and SECRET not in message
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c"),
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    text, steps = run_failure_text(result)
    assert steps == []  # failed before any step
    assert f"cannot reach the AWS STS endpoint {closed}" in text and SECRET not in text


def test_missing_credentials_say_so_and_not_unreachable(aws_env, uci_dir, tmp_path):
    aws_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws_env.delenv("AWS_ACCESS_KEY_ID")
    aws_env.delenv("AWS_SECRET_ACCESS_KEY")
    location = aws_prefix()
    with pytest.raises(ConfigError) as raised:
        location.resolved_bucket()
    message = str(raised.value)
    assert message.startswith("no AWS credentials found for STS GetCallerIdentity at http://127.0.0.1:")
    assert "cannot reach" not in message and "unreachable" not in message
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c"),
                         instance=DagsterInstance.ephemeral(), raise_on_error=False)
    text, steps = run_failure_text(result)
    assert not result.success and steps == []
    assert "no AWS credentials found" in text and "cannot reach" not in text
