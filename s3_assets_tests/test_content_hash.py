"""The content's SHA-256 decides "same bytes", never the ETag: multipart uploads (ETag
`md5-of-parts-N`) are skipped when unchanged, pass the copy check, and a changed body is seen."""

from __future__ import annotations

import hashlib
import os

import pytest
from dagster import AssetCheckKey, AssetKey, AssetSelection

from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib import uploading
from s3_assets.lib.uploading import difference, stored_object, upload_bytes
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_dictionary_and_checks import check_results

PART = 5 * 1024 * 1024  # S3's smallest part


def count_writes(client) -> list[str]:
    """Every request that writes (PUT, POST), as 'METHOD url', recorded before it is sent."""
    writes: list[str] = []

    def record(request, **kwargs):
        if request.method in ("PUT", "POST"):
            writes.append(f"{request.method} {request.url}")

    client.meta.events.register("before-send.s3", record)
    return writes


def test_forced_multipart_upload_is_skipped_when_unchanged_and_a_change_is_seen(s3, bucket):
    writes = count_writes(s3)
    body = os.urandom(PART + 12345)
    first = upload_bytes(s3, bucket, "p/big.bin", body, multipart_threshold=PART)
    assert first.changed
    assert first.etag.endswith("-2") and first.etag != hashlib.md5(body).hexdigest()  # multipart: no MD5
    assert any("uploadId=" in w for w in writes)  # it really went multipart
    stored = stored_object(s3, bucket, "p/big.bin")
    assert stored.recorded_sha256 == hashlib.sha256(body).hexdigest()
    assert stored.s3_sha256 is None  # S3's multipart checksum is composite (`...-2`): not used as the content's
    assert difference(stored, len(body), first.sha256) is None  # what the copy check decides on

    writes.clear()
    second = upload_bytes(s3, bucket, "p/big.bin", body, multipart_threshold=PART)
    assert not second.changed and writes == []  # no PUT, no POST: only a HEAD

    changed = body[:-1] + bytes([body[-1] ^ 1])  # same size, one bit different
    problem = difference(stored_object(s3, bucket, "p/big.bin"), len(changed), hashlib.sha256(changed).hexdigest())
    assert problem and problem.startswith("SHA-256 ") and "recorded in S3" in problem
    third = upload_bytes(s3, bucket, "p/big.bin", changed, multipart_threshold=PART)
    assert third.changed and writes
    assert s3.get_object(Bucket=bucket, Key="p/big.bin")["Body"].read() == changed


def test_single_part_upload_uses_s3s_own_checksum(s3, bucket):
    body = b"a,b\n1,2\n"
    upload_bytes(s3, bucket, "p/small.csv", body)
    stored = stored_object(s3, bucket, "p/small.csv")
    assert stored.s3_sha256 == stored.recorded_sha256 == hashlib.sha256(body).hexdigest()
    # someone else writes other bytes of the same size, without our metadata
    s3.put_object(Bucket=bucket, Key="p/small.csv", Body=b"a,b\n1,3\n")
    assert "not written by this project" in difference(stored_object(s3, bucket, "p/small.csv"), len(body),
                                                        hashlib.sha256(body).hexdigest())
    # or copies our metadata onto other bytes: S3's own checksum still tells
    s3.put_object(Bucket=bucket, Key="p/small.csv", Body=b"a,b\n1,3\n", ChecksumAlgorithm="SHA256",
                  Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    assert "(S3's checksum)" in difference(stored_object(s3, bucket, "p/small.csv"), len(body),
                                           hashlib.sha256(body).hexdigest())
    assert upload_bytes(s3, bucket, "p/small.csv", body).changed


def test_graph_with_multipart_copies_checks_pass_reruns_skip_and_a_change_fails(
        s3_server, s3, bucket, run_graph, uci_dir, monkeypatch):
    monkeypatch.setattr(uploading, "MULTIPART_THRESHOLD", 1024)  # every copy goes multipart
    with FaultProxy(s3_server.state.ports.s3) as proxy:  # records every request the runs send
        creds = s3_server.server.credentials()
        location = S3Prefix(bucket=bucket, s3=S3Connection(
            target="custom", endpoint_url=proxy.url, region_name="us-east-1",
            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key))
        first = run_graph(location, uci_dir)
        head = s3.head_object(Bucket=bucket, Key="ins_dataset/raw/train.csv")
        assert head["ETag"].strip('"').endswith("-1")  # a multipart ETag, not the MD5
        checks = check_results(first)
        assert all(checks[f"matches_raw_table@{name}_csv"].passed for name in ("train", "test", "gt", "col_info"))

        del proxy.requests[:]
        again = run_graph(location, uci_dir)
        under_prefix = [(method, path) for method, path, _ in proxy.requests
                        if path.startswith(f"/{bucket}/ins_dataset/")]  # the data, not the stored outputs
        assert ("HEAD", f"/{bucket}/ins_dataset/raw/train.csv") in under_prefix  # the second run looked...
        assert not [r for r in under_prefix if r[0] in ("PUT", "POST")]  # ...and uploaded nothing
        for name in ("train", "test", "gt", "col_info"):
            events = [e for e in again.get_asset_materialization_events() if e.asset_key == AssetKey(f"{name}_csv")]
            assert events[-1].materialization.metadata["uploaded"].value is False
        assert all(c.passed for k, c in check_results(again).items() if k.startswith("matches_raw_table"))

        s3.put_object(Bucket=bucket, Key="ins_dataset/raw/gt.csv", Body=b"CARAVAN\n1\n")
        result = run_graph(location, uci_dir, selection=AssetSelection.checks(
            AssetCheckKey(AssetKey("gt_csv"), "matches_raw_table")), raise_on_error=False)
    check = check_results(result)["matches_raw_table@gt_csv"]
    assert not check.passed
    expected_size = len(first.output_for_node("ground_truth").to_csv(index=False).encode())
    assert check.description == f"size 10 in S3, {expected_size:,} expected"


@pytest.mark.parametrize("size_in_s3", [8_002, 8_010])
def test_copy_check_says_why_in_words(size_in_s3):
    stored = uploading.StoredObject(size_in_s3, "etag", "0" * 64, None)
    problem = difference(stored, 8_010, "1" * 64)
    if size_in_s3 == 8_002:
        assert problem == "size 8,002 in S3, 8,010 expected"
    else:
        assert problem == "SHA-256 0000000000000000… recorded in S3, 1111111111111111… expected"
