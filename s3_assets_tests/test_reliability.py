"""Faults against the real SeaweedFS: the server killed mid-upload, throttling and flaky
responses through a fault proxy, stalls and timeouts, bad configuration; and security:
credentials never leak, ExpectedBucketOwner and SSE on every request, least privilege."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading

import pandas as pd
import pytest
from dagster import DagsterInstance, EnvVar, materialize

from s3_assets.defs import ASSETS, CHECKS
from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib.errors import S3OperationError
from s3_assets.lib.listing import list_objects
from s3_assets.lib.uploading import MULTIPART_THRESHOLD, upload_bytes
from s3_assets.local_s3.server import EmbeddedS3, find_free_ports
from s3_assets_tests.conftest import LEAST, LEAST_BUCKET, graph_resources
from s3_assets_tests.fault_proxy import FaultProxy, Faults


def custom_connection(endpoint: str, creds, **kwargs) -> S3Connection:
    return S3Connection(target="custom", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key, **kwargs)


def test_server_killed_during_upload_then_rerun_completes(tmp_path):
    server = EmbeddedS3(tmp_path / "s3", find_free_ports())
    state = server.ensure_running()
    creds = server.credentials()
    body = os.urandom(3 * MULTIPART_THRESHOLD + 12345)
    killed = threading.Event()

    def kill_at_second_part(method: str, path: str) -> None:
        if "partNumber=2" in path and not killed.is_set():
            killed.set()
            os.killpg(state.pid, signal.SIGKILL)

    try:
        with FaultProxy(state.ports.s3, on_request=kill_at_second_part) as proxy:
            location = S3Prefix(s3=custom_connection(proxy.url, creds, max_attempts=2, connect_timeout=2,
                                                       read_timeout=5), bucket="crash-bucket", create_bucket=True)
            client = location.connect()
            with pytest.raises(S3OperationError) as raised:
                upload_bytes(client, "crash-bucket", "ins_dataset/raw/big.csv", body)
        assert killed.is_set()
        message = str(raised.value)
        assert "s3://crash-bucket/ins_dataset/raw/big.csv" in message and proxy.url in message
        server.ensure_running()  # restart on the same data directory
        direct = S3Prefix(s3=custom_connection(state.endpoint_url, creds), bucket="crash-bucket")
        assert list_objects(direct.connect(), "crash-bucket", "ins_dataset/").empty  # no partial object
        done = upload_bytes(direct.connect(), "crash-bucket", "ins_dataset/raw/big.csv", body)
        assert done.changed
        assert direct.connect().get_object(Bucket="crash-bucket", Key="ins_dataset/raw/big.csv")["Body"].read() == body
    finally:
        server.stop()


def test_throttling_and_flaky_responses_are_retried(s3_server, bucket, uci_dir, tmp_path):
    faults = Faults(slow_down=0.15, internal_error=0.1, reset=0.05, seed=3)
    with FaultProxy(s3_server.state.ports.s3, faults) as proxy:
        connection = custom_connection(proxy.url, s3_server.server.credentials(), max_attempts=10, retry_mode="standard",
                                       read_timeout=10)
        location = S3Prefix(s3=connection, bucket=bucket)
        result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c"),
                             instance=DagsterInstance.ephemeral())
    assert result.success
    assert {"slow_down", "internal_error", "reset"} <= set(proxy.injected)
    frames = result.output_for_node("dataframes")
    assert frames["train"].shape == (5822, 86)


def test_permanent_throttling_gives_up_with_a_clear_error(s3_server, bucket):
    with FaultProxy(s3_server.state.ports.s3, Faults(slow_down=1.0)) as proxy:
        client = custom_connection(proxy.url, s3_server.server.credentials(), max_attempts=3).get_client()
        with pytest.raises(S3OperationError, match=rf"ListObjectsV2 on s3://{bucket}/ins_dataset/ at {proxy.url} failed: SlowDown \(the endpoint is throttling"):
            list_objects(client, bucket, "ins_dataset/")
    assert len(proxy.requests) == 3  # exactly max_attempts, then it gave up


def test_read_timeout_on_a_stalled_endpoint(s3_server, bucket):
    with FaultProxy(s3_server.state.ports.s3, Faults(stall=1.0), stall_seconds=5) as proxy:
        client = custom_connection(proxy.url, s3_server.server.credentials(), max_attempts=1, read_timeout=0.5).get_client()
        with pytest.raises(S3OperationError, match="did not answer in time.*S3_ASSETS_READ_TIMEOUT"):
            list_objects(client, bucket, "ins_dataset/")


def test_connect_timeout_on_an_endpoint_that_never_accepts(s3_server, bucket):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue so the next SYN is never answered
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        client = custom_connection(f"http://127.0.0.1:{port}", s3_server.server.credentials(), max_attempts=1,
                                   connect_timeout=0.5, read_timeout=0.5).get_client()
        with pytest.raises(S3OperationError, match=r"cannot connect to the S3 endpoint|did not answer in time"):
            list_objects(client, bucket, "ins_dataset/")
        for filler in fillers:
            filler.close()


def test_endpoint_that_does_not_answer_fails_fast(s3_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    location = S3Prefix(s3=custom_connection(f"http://127.0.0.1:{port}", s3_server.server.credentials(), max_attempts=1),
                          bucket="any-bucket")
    with pytest.raises(S3OperationError, match=rf"cannot connect to the S3 endpoint at http://127.0.0.1:{port}"):
        location.connect()


def test_wrong_credentials_fail_naming_what_to_fix_and_not_the_secret(s3_server, bucket):
    from s3_assets.local_s3.server import Credentials

    secret = "wrong-secret-that-must-not-leak-123"
    location = S3Prefix(s3=custom_connection(s3_server.state.endpoint_url, Credentials("nosuchkey", secret)),
                          bucket=bucket)
    with pytest.raises(S3OperationError) as raised:
        location.connect()
    assert "InvalidAccessKeyId" in str(raised.value) or "403" in str(raised.value)
    assert secret not in str(raised.value)


def test_expected_bucket_owner_and_sse_on_every_request(s3_server, bucket, uci_dir, tmp_path, s3):
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        location = S3Prefix(s3=custom_connection(proxy.url, s3_server.server.credentials()), bucket=bucket,
                              expected_bucket_owner="111122223333", server_side_encryption="AES256")
        result = materialize(ASSETS, resources=graph_resources(location, uci_dir, tmp_path / "c"),
                             instance=DagsterInstance.ephemeral())
    assert result.success
    s3_requests = [(m, p, h) for m, p, h in proxy.requests]
    assert s3_requests and all(
        {k.lower(): v for k, v in h.items()}.get("x-amz-expected-bucket-owner") == "111122223333"
        for _, _, h in s3_requests)
    puts = [h for m, p, h in s3_requests if m == "PUT" and "/ins_dataset/" in p]
    assert puts and all({k.lower(): v for k, v in h.items()}.get("x-amz-server-side-encryption") == "AES256" for h in puts)
    head = s3.head_object(Bucket=bucket, Key="ins_dataset/raw/train.csv")
    assert head["ServerSideEncryption"] == "AES256"


def test_damaged_upload_is_rejected_by_its_checksum(s3_server, bucket):
    client = s3_server.client()
    original = client.put_object

    # Corrupt the body after upload_bytes computed Content-MD5, as a faulty network would.
    def corrupting_put(**kwargs):
        kwargs["Body"] = kwargs["Body"][:-1] + b"!"
        return original(**kwargs)

    client.put_object = corrupting_put
    with pytest.raises(S3OperationError, match="BadDigest"):
        upload_bytes(client, bucket, "ins_dataset/raw/x.csv", b"a,b\n1,2\n")
    assert list_objects(s3_server.client(), bucket, "ins_dataset/").empty


def test_credentials_never_appear_in_events_logs_or_metadata(s3_server, bucket, uci_dir, tmp_path, capfd, monkeypatch):
    creds = s3_server.server.credentials()
    monkeypatch.setenv("S3_ASSETS_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("S3_ASSETS_SECRET_ACCESS_KEY", creds.secret_access_key)
    connection = S3Connection(target="custom", endpoint_url=s3_server.state.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=EnvVar("S3_ASSETS_ACCESS_KEY_ID"),
                              aws_secret_access_key=EnvVar("S3_ASSETS_SECRET_ACCESS_KEY"))
    location = S3Prefix(s3=connection, bucket=bucket)
    with DagsterInstance.ephemeral() as instance:
        result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c"),
                             instance=instance)
        assert result.success
        records = instance.all_logs(result.run_id)
        events_text = "\n".join(repr(record) for record in records)
        run_text = repr(instance.get_run_by_id(result.run_id))
    captured = capfd.readouterr()
    for secret in (creds.secret_access_key, creds.access_key_id):
        assert secret not in events_text
        assert secret not in run_text
        assert secret not in captured.out + captured.err


def test_least_privilege_identity_runs_everything(s3_server, uci_dir, tmp_path):
    """An identity with only List on the bucket and Read/Write under the data and IO prefixes
    (SeaweedFS enforces it) runs the whole graph and the cleanup, and can do nothing else."""
    from s3_assets.defs.maintenance.cleanup import cleanup_job

    s3_server.client().create_bucket(Bucket=LEAST_BUCKET)
    location = S3Prefix(s3=custom_connection(s3_server.state.endpoint_url, LEAST), bucket=LEAST_BUCKET)
    instance = DagsterInstance.ephemeral()  # one instance: the cleanup sees that the run has finished
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c"),
                         instance=instance)
    assert result.success
    cleanup = cleanup_job.execute_in_process(
        run_config={"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}},
        resources={"s3_prefix": location}, instance=instance)
    assert cleanup.success
    assert list_objects(location.connect(), LEAST_BUCKET, "ins_dataset/").empty
    with pytest.raises(Exception, match="AccessDenied"):
        location.connect().put_object(Bucket=LEAST_BUCKET, Key="elsewhere/x", Body=b"1")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bucket": "Bad_Bucket"}, "invalid bucket name 'Bad_Bucket'"),
    # The bucket root contains the IO prefix: refused before anything could be deleted.
    ({"bucket": "ok-bucket", "prefix": ""}, "refusing to delete with an empty or root prefix"),
])
def test_bad_configuration_fails_fast(connection, kwargs, message):
    with pytest.raises(ValueError, match=message):  # pydantic's ValidationError, from our validators
        S3Prefix(s3=connection, **kwargs)


def test_server_killed_during_a_run_fails_the_step_then_rerun_is_identical(tmp_path, uci_dir):
    """SIGKILL SeaweedFS while the graph uploads train.csv: the step fails naming endpoint and
    object, nothing partial is left, and after a restart a re-run gives the same objects."""
    server = EmbeddedS3(tmp_path / "s3", find_free_ports())
    state = server.ensure_running()
    creds = server.credentials()
    killed = threading.Event()

    def kill_at_train_upload(method: str, path: str) -> None:
        if method == "PUT" and path.startswith("/run-bucket/ins_dataset/raw/train.csv") and not killed.is_set():
            killed.set()
            os.killpg(state.pid, signal.SIGKILL)

    try:
        with FaultProxy(state.ports.s3, on_request=kill_at_train_upload) as proxy:
            location = S3Prefix(s3=custom_connection(proxy.url, creds, max_attempts=2, connect_timeout=2, read_timeout=5),
                                  bucket="run-bucket", create_bucket=True)
            failed = materialize(ASSETS, resources=graph_resources(location, uci_dir, tmp_path / "c"),
                                 instance=DagsterInstance.ephemeral(), raise_on_error=False)
        assert killed.is_set() and not failed.success
        errors = [str(e.event_specific_data.error) for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert any("s3://run-bucket/ins_dataset/raw/train.csv" in e and proxy.url in e for e in errors), errors
        server.ensure_running()
        direct = S3Prefix(s3=custom_connection(state.endpoint_url, creds), bucket="run-bucket")
        assert "ins_dataset/raw/train.csv" not in set(list_objects(direct.connect(), "run-bucket", "ins_dataset/")["key"])
        rerun = materialize(ASSETS, resources=graph_resources(direct, uci_dir, tmp_path / "c"),
                            instance=DagsterInstance.ephemeral())
        assert rerun.success
        after = list_objects(direct.connect(), "run-bucket", "ins_dataset/").set_index("key")
        expected = {"ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv",
                    "ins_dataset/raw/metadata/col_info.csv"}
        assert set(after.index) == expected
        body = pd.read_table(uci_dir / "ticdata2000.txt", header=None).to_csv(index=False).encode()
        assert after.loc["ins_dataset/raw/train.csv", "etag"] == hashlib.md5(body).hexdigest()
    finally:
        server.stop()
